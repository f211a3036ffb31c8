import { constants, promises as fs } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { UnsafePathError } from "../shared/errors.js";
import { removeTree } from "./safe-tree.js";
import type { UserVolumes } from "./volumes.js";

// Host-side handling of a user's directories. Sandboxed code can write anything inside
// /workspace and /skills, including symlinks and hardlinks to host paths. Everything here treats
// those directories as hostile: never follow a link, never trust a name.

/** User ids and other names that become path segments: letters, digits, '_', '.', '-'; no dot-only names. */
const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function assertSafeSegment(kind: string, value: string): void {
  // Security: a segment can never be "..", contain "/", or start with "." (hidden / traversal).
  if (!SAFE_SEGMENT.test(value) || value.includes("..")) {
    throw new UnsafePathError(`Invalid ${kind} "${value}": use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit.`);
  }
}

/** Joins `parts` under `root` and checks the result is still inside root (resolve-then-prefix). */
export function safeJoin(root: string, ...parts: string[]): string {
  const base = resolve(root);
  const target = resolve(base, ...parts);
  const rel = relative(base, target);
  // Security: reject anything that resolves outside the root.
  if (rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel))) return target;
  throw new UnsafePathError(`Path ${join(...parts)} escapes ${base}.`);
}

/**
 * Creates `path` (one level) as a real directory, or checks the existing one is a real directory:
 * never a symlink. Returns after chowning it through an O_NOFOLLOW handle when `owner` is given.
 */
async function ensureRealDir(path: string, mode: number, owner?: number): Promise<void> {
  try {
    await fs.mkdir(path, { mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  // Security: O_NOFOLLOW|O_DIRECTORY refuses a symlink swapped in for the directory.
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || code === "ENOTDIR") throw new UnsafePathError(`${path} is not a real directory (a symlink or a file); refusing to use it.`);
    throw err;
  }
  try {
    if (owner !== undefined) {
      const st = await handle.stat();
      if (st.uid !== owner || st.gid !== owner) await handle.chown(owner, owner);
    }
  } finally {
    await handle.close();
  }
}

export interface UserDirs {
  root: string;
  workspace: string;
  skills: string;
  /** Installed packages (node/, python/), mounted read-only at /deps; written only by package installs. */
  deps: string;
}

export class UserDirectories {
  constructor(
    private readonly dataDir: string,
    /** uid (and gid) the sandbox runs as; its directories must be writable by it. */
    private readonly sandboxUid: number,
    /** Per-user storage volumes (quotas); without it, plain directories. */
    readonly volumes?: UserVolumes,
  ) {}

  pathsFor(userId: string): UserDirs {
    assertSafeSegment("user id", userId);
    const root = safeJoin(this.dataDir, "users", userId);
    return { root, workspace: join(root, "workspace"), skills: join(root, "skills"), deps: join(root, "deps") };
  }

  /**
   * Moves a user's folder from the id an older version gave them to their current id, once: only
   * when the new one does not exist yet, the old one is a real directory, and the caller vouches
   * that the old id belongs to nobody else. Returns whether it moved. A folder that is a mounted
   * quota volume cannot be moved; it is left where it is (nothing is deleted) and false returned.
   */
  async adoptLegacy(legacyId: string, userId: string): Promise<boolean> {
    const from = this.pathsFor(legacyId).root;
    const to = this.pathsFor(userId).root;
    const [src, dst] = await Promise.all([fs.lstat(from).catch(() => undefined), fs.lstat(to).catch(() => undefined)]);
    if (!src?.isDirectory() || dst) return false;
    try {
      await fs.rename(from, to);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Removes everything of a user on this host: their tree and, with kernel quotas, their volume
   * (unmounted first). For a user who moved to another cell, after the switch.
   */
  async remove(userId: string): Promise<void> {
    const dirs = this.pathsFor(userId);
    const image = await this.volumes?.unmount(userId, dirs.root);
    const users = join(this.dataDir, "users");
    const present = await fs.lstat(dirs.root).then(
      () => true,
      () => false,
    );
    if (present && !(await removeTree(users, userId))) throw new Error(`could not remove ${dirs.root} completely`);
    if (image) await fs.rm(image, { force: true });
  }

  /** Creates the user's directories if needed and returns their host paths. */
  async ensure(userId: string): Promise<UserDirs> {
    const dirs = this.pathsFor(userId);
    await fs.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await ensureRealDir(join(this.dataDir, "users"), 0o700);
    await ensureRealDir(dirs.root, 0o700);
    if (this.volumes) {
      await this.volumes.prepare(userId, dirs.root);
      await ensureRealDir(dirs.root, 0o700);
    }
    const own = process.getuid?.() ?? 0;
    // Root can hand the directories to the sandbox uid; anyone else runs the sandbox as themselves.
    const owner = own === 0 ? this.sandboxUid : undefined;
    await ensureRealDir(dirs.workspace, 0o700, owner);
    await ensureRealDir(dirs.skills, 0o700, owner);
    // The host's own (installs swap folders in it); the sandbox only reads it.
    await ensureRealDir(dirs.deps, 0o755);
    return dirs;
  }
}
