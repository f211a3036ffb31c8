import { execFile } from "node:child_process";
import { constants, existsSync, promises as fs } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { CodeboxError, errorMessage, QuotaExceededError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { usageBeneath } from "./safe-tree.js";

const execFileP = promisify(execFile);


export type QuotaMode = "kernel" | "soft" | "off";

export interface VolumeOptions {
  dataDir: string;
  mode: "auto" | "kernel" | "soft" | "off";
  quotaMiB: number;
  quotaInodes: number;
  logger: Logger;
}

/** Mount points as the kernel lists them (octal escapes decoded). */
async function mountPoints(): Promise<Set<string>> {
  const text = await fs.readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const points = new Set<string>();
  for (const line of text.split("\n")) {
    const field = line.split(" ")[4];
    if (field) points.add(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return points;
}

/**
 * Per-user storage caps. "kernel": each user's directory is its own ext4 filesystem in a sparse
 * image file of exactly the quota's size (loop-mounted nosuid,nodev), so filling it gives the
 * code ENOSPC and can never take more of the host's disk than the quota. "soft" (no root, no
 * loop devices): usage is counted before each run and a user over quota cannot start runs; one
 * run can still overshoot (bounded by the fsize ulimit per file). See docs/SECURITY.md.
 */
export class UserVolumes {
  private resolved: Promise<QuotaMode> | undefined;
  private fallbackReason: string | undefined;
  private readonly preparing = new Map<string, Promise<void>>();

  constructor(private readonly o: VolumeOptions) {}

  get quotaBytes(): number {
    return this.o.quotaMiB * 1024 * 1024;
  }

  /** The mode in force (auto resolved), and why kernel enforcement is not used, if it is not. */
  async mode(): Promise<{ mode: QuotaMode; reason?: string | undefined }> {
    const mode = await this.resolve();
    return { mode, reason: this.fallbackReason };
  }

  private resolve(): Promise<QuotaMode> {
    this.resolved ??= (async (): Promise<QuotaMode> => {
      if (this.o.mode === "off" || this.o.mode === "soft") return this.o.mode;
      const problems: string[] = [];
      if ((process.getuid?.() ?? 1) !== 0) problems.push("the server does not run as root");
      if (!existsSync("/dev/loop-control")) problems.push("no loop devices (/dev/loop-control)");
      if (!(await which("mkfs.ext4"))) problems.push("mkfs.ext4 is missing (apt-get install e2fsprogs)");
      if (!(await which("mount"))) problems.push("mount is missing");
      if (problems.length === 0) return "kernel";
      if (this.o.mode === "kernel") throw new CodeboxError("CODEBOX_CONFIG_INVALID", `storage.quota is "kernel" but ${problems.join("; ")}. Use "auto" or "soft".`);
      this.fallbackReason = problems.join("; ");
      this.o.logger.warn(`workspace quotas are soft (counted between runs), not kernel-enforced: ${this.fallbackReason}`);
      return "soft";
    })();
    return this.resolved;
  }

  /**
   * Makes `userRoot` ready before the user's directories are created in it: in kernel mode, the
   * user's own filesystem mounted there. Serialised per user.
   */
  prepare(userId: string, userRoot: string): Promise<void> {
    const pending = this.preparing.get(userId);
    if (pending) return pending;
    const p = this.doPrepare(userId, userRoot).finally(() => this.preparing.delete(userId));
    this.preparing.set(userId, p);
    return p;
  }

  private async doPrepare(userId: string, userRoot: string): Promise<void> {
    if ((await this.resolve()) !== "kernel") return;
    if ((await mountPoints()).has(userRoot)) return;
    const volumes = join(this.o.dataDir, "volumes");
    await fs.mkdir(volumes, { recursive: true, mode: 0o700 });
    const image = join(volumes, `${userId}.ext4`);
    let fresh = false;
    try {
      // Security: O_EXCL|O_NOFOLLOW: never adopt a file or link someone else put there.
      const h = await fs.open(image, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
      await h.truncate(this.quotaBytes);
      await h.close();
      fresh = true;
      await execFileP("mkfs.ext4", ["-q", "-F", "-m", "0", "-N", String(this.o.quotaInodes), "-E", "lazy_itable_init=1,lazy_journal_init=1", image]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        if (fresh) await fs.rm(image, { force: true });
        throw new CodeboxError("CODEBOX_SANDBOX_FAILED", `Could not create the storage volume for user ${userId}: ${errorMessage(err)}`, { cause: err });
      }
    }
    const st = await fs.lstat(userRoot).catch(() => undefined);
    if (st && !st.isDirectory()) throw new CodeboxError("CODEBOX_UNSAFE_PATH", `${userRoot} is not a directory; refusing to mount over it.`);
    const hasOldData = st ? (await fs.readdir(userRoot)).length > 0 : false;
    if (hasOldData) await this.migrate(userId, userRoot, image);
    else await fs.mkdir(userRoot, { recursive: true, mode: 0o700 });
    await this.mount(image, userRoot);
    await fs.chmod(userRoot, 0o700);
    await fs.rm(join(userRoot, "lost+found"), { recursive: true, force: true });
    this.o.logger.info("mounted the user's storage volume", { userId, quotaMiB: this.o.quotaMiB, quotaInodes: this.o.quotaInodes });
  }

  private async mount(image: string, at: string): Promise<void> {
    try {
      await execFileP("mount", ["-o", "loop,nosuid,nodev,noatime", image, at]);
    } catch (err) {
      throw new CodeboxError("CODEBOX_SANDBOX_FAILED", `Could not mount the storage volume ${image}: ${errorMessage(err)}. Set storage.quota to "soft" to run without kernel quotas.`, { cause: err });
    }
  }

  /** Files saved before quotas were on move into the new volume; the old directory is kept aside, never deleted. */
  private async migrate(userId: string, userRoot: string, image: string): Promise<void> {
    // Security: the work folders live outside users/, so no user id can name one of them.
    const work = join(this.o.dataDir, "volume-work");
    const staging = join(work, "staging", userId);
    await fs.mkdir(staging, { recursive: true, mode: 0o700 });
    await this.mount(image, staging);
    try {
      // Security: verbatimSymlinks copies links as links, never what they point at.
      await fs.cp(userRoot, staging, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true, force: false, errorOnExist: false });
    } finally {
      await execFileP("umount", [staging]).catch(() => {});
      await fs.rmdir(staging).catch(() => {});
    }
    const aside = join(work, "before-quota", userId, String(Date.now()));
    await fs.mkdir(join(work, "before-quota", userId), { recursive: true, mode: 0o700 });
    await fs.rename(userRoot, aside);
    await fs.mkdir(userRoot, { mode: 0o700 });
    this.o.logger.warn(`moved existing files of ${userRoot} into its new quota volume; the originals are kept at ${aside}`);
  }

  /** Kernel mode: unmounts the user's volume (if mounted) so its folder can go; returns the image's path. */
  async unmount(userId: string, userRoot: string): Promise<string | undefined> {
    if ((await this.resolve()) !== "kernel") return undefined;
    if ((await mountPoints()).has(userRoot)) {
      try {
        await execFileP("umount", [userRoot]);
      } catch (err) {
        throw new CodeboxError("CODEBOX_SANDBOX_FAILED", `Could not unmount ${userRoot}: ${errorMessage(err)} (a container of this user may still be running)`, { cause: err });
      }
    }
    return join(this.o.dataDir, "volumes", `${userId}.ext4`);
  }

  /** Soft mode: refuses a run when the user is already over quota. */
  async check(dirs: string[]): Promise<void> {
    if ((await this.resolve()) !== "soft") return;
    let bytes = 0;
    let inodes = 0;
    for (const d of dirs) {
      const u = await usageBeneath(d);
      bytes += u.bytes;
      inodes += u.inodes;
    }
    if (bytes > this.quotaBytes || inodes > this.o.quotaInodes) throw new QuotaExceededError(bytes, inodes, this.quotaBytes, this.o.quotaInodes);
  }
}

async function which(cmd: string): Promise<boolean> {
  for (const dir of ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"]) {
    if (existsSync(join(dir, cmd))) return true;
  }
  return false;
}
