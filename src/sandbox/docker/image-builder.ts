import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, realpathSync, statSync } from "node:fs";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import type Docker from "dockerode";
import { pack, type Pack } from "tar-stream";
import { ImageBuildError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { packagePath, packageVersion } from "../../shared/paths.js";

const execFileP = promisify(execFile);

/** The base image of Dockerfile.sandbox, for users whose engine reaches a registry. */
export const REGISTRY_BASE_IMAGE = "node:22-alpine";
/** uid/gid of the sandbox user baked into the image (the container's User is set per run). */
export const SANDBOX_IMAGE_UID = 10001;

const RUNNER_FILES = ["runner.mjs", "hooks.mjs"] as const;
/** Bump when the image's layout changes in a way the runner files do not show. */
const IMAGE_RECIPE = "2";

function runnerDir(): string {
  return packagePath("dist", "sandbox-image");
}

function readRunnerFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of RUNNER_FILES) {
    try {
      files.set(name, readFileSync(`${runnerDir()}/${name}`));
    } catch (err) {
      throw new ImageBuildError(`the bundled runner ${runnerDir()}/${name} is missing (run \`npm run build\`)`, err);
    }
  }
  return files;
}

/**
 * The default image tag: changes whenever the runner or the Node version inside would, so an
 * upgrade never runs against a stale image.
 */
export function defaultImageTag(): string {
  const hash = createHash("sha256");
  for (const [name, body] of readRunnerFiles()) hash.update(name).update(body);
  hash.update(process.version).update(IMAGE_RECIPE);
  return `codebox-mcp-sandbox:${packageVersion()}-${hash.digest("hex").slice(0, 12)}`;
}

export interface BuildOptions {
  tag: string;
  /** true: never try a registry; false: never fall back; undefined: registry first, offline if it cannot be pulled. */
  offline?: boolean | undefined;
  logger: Logger;
}

export async function buildImage(docker: Docker, options: BuildOptions): Promise<{ tag: string; method: "registry" | "offline" }> {
  if (options.offline !== true) {
    const pulled = await tryPull(docker, REGISTRY_BASE_IMAGE, options.logger);
    if (pulled) {
      await runBuild(docker, registryContext(), options.tag, "Dockerfile.sandbox");
      return { tag: options.tag, method: "registry" };
    }
    if (options.offline === false) throw new ImageBuildError(`the base image ${REGISTRY_BASE_IMAGE} cannot be pulled`);
    options.logger.info(`no registry reachable for ${REGISTRY_BASE_IMAGE}; assembling the sandbox image offline from this machine's Node`);
  }
  const context = await offlineContext();
  await runBuild(docker, context, options.tag, "Dockerfile");
  return { tag: options.tag, method: "offline" };
}

async function tryPull(docker: Docker, image: string, logger: Logger): Promise<boolean> {
  try {
    const stream = await withTimeout(docker.pull(image), 30_000);
    await withTimeout(
      new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve()))),
      300_000,
    );
    return true;
  } catch (err) {
    logger.debug("base image pull failed", { image, err });
    return false;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

async function runBuild(docker: Docker, context: Pack, tag: string, dockerfile: string): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(Readable.from(context), { t: tag, dockerfile, rm: true, forcerm: true, labels: { "dev.codebox-mcp.image": "sandbox" } });
  } catch (err) {
    throw new ImageBuildError((err as Error).message, err);
  }
  const log: string[] = [];
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err, output: Array<{ error?: string; errorDetail?: { message?: string } }> | undefined) => {
        const failed = err ?? output?.find((o) => o.error || o.errorDetail);
        if (failed) {
          const message = err ? (err as Error).message : (failed as { error?: string }).error ?? "unknown error";
          reject(new ImageBuildError(`${message}\n${log.slice(-20).join("")}`));
        } else resolve();
      },
      (event: { stream?: string }) => {
        if (event.stream) log.push(event.stream);
      },
    );
  });
}

function addFile(tar: Pack, name: string, body: Buffer | string, mode = 0o644): void {
  tar.entry({ name, mode, uid: 0, gid: 0 }, body);
}

function addDir(tar: Pack, name: string, mode = 0o755): void {
  tar.entry({ name, type: "directory", mode, uid: 0, gid: 0 });
}

function registryContext(): Pack {
  const tar = pack();
  addFile(tar, "Dockerfile.sandbox", readFileSync(packagePath("Dockerfile.sandbox")));
  for (const [name, body] of readRunnerFiles()) addFile(tar, `dist/sandbox-image/${name}`, body);
  tar.finalize();
  return tar;
}

/** Shared libraries the Node binary loads, as `ldd` lists them (the loader included). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileP("ldd", [binary]));
  } catch (err) {
    const text = `${(err as { stdout?: string }).stdout ?? ""}${(err as { stderr?: string }).stderr ?? ""}`;
    if (/not a dynamic executable|statically linked/.test(text)) return [];
    throw new ImageBuildError(`cannot list the shared libraries of ${binary} with ldd (install libc-bin)`, err);
  }
  const libs = new Set<string>();
  for (const line of stdout.split("\n")) {
    const m = /=>\s+(\/\S+)\s+\(/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  return [...libs];
}

/**
 * A FROM-scratch build context: this machine's Node binary, the libraries it links, the runner
 * and a passwd entry. No registry, no shell, no package manager in the result.
 */
async function offlineContext(): Promise<Pack> {
  const node = realpathSync(process.execPath);
  const libs = await sharedLibraries(node);
  const runner = readRunnerFiles();
  const tar = pack();
  const dockerfile = [
    "FROM scratch",
    "COPY rootfs/ /",
    `USER ${SANDBOX_IMAGE_UID}:${SANDBOX_IMAGE_UID}`,
    "WORKDIR /workspace",
    "ENV HOME=/tmp TMPDIR=/tmp PATH=/usr/local/bin",
    'CMD ["/usr/local/bin/node", "/opt/codebox/runner.mjs"]',
    "",
  ].join("\n");
  addFile(tar, "Dockerfile", dockerfile);
  const dirs = new Set<string>(["rootfs/etc", "rootfs/opt/codebox", "rootfs/usr/local/bin", "rootfs/workspace", "rootfs/skills", "rootfs/servers", "rootfs/run", "rootfs/run/codebox"]);
  for (const lib of libs) {
    const parts = lib.split("/").slice(1, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(`rootfs/${parts.slice(0, i).join("/")}`);
  }
  for (const dir of [...dirs].sort()) addDir(tar, dir);
  addDir(tar, "rootfs/tmp", 0o1777);
  addFile(tar, "rootfs/etc/passwd", `root:x:0:0:root:/nonexistent:/sbin/nologin\nsandbox:x:${SANDBOX_IMAGE_UID}:${SANDBOX_IMAGE_UID}:sandbox:/tmp:/sbin/nologin\n`);
  addFile(tar, "rootfs/etc/group", `root:x:0:\nsandbox:x:${SANDBOX_IMAGE_UID}:\n`);
  for (const [name, body] of runner) addFile(tar, `rootfs/opt/codebox/${name}`, body);

  const binaries: Array<{ from: string; to: string; mode: number }> = [
    { from: node, to: "rootfs/usr/local/bin/node", mode: 0o755 },
    ...libs.map((lib) => ({ from: realpathSync(lib), to: `rootfs${lib}`, mode: 0o755 })),
  ];
  // Stream the large files one after another (tar-stream takes one entry at a time).
  void (async () => {
    try {
      for (const b of binaries) {
        const size = statSync(b.from).size;
        await new Promise<void>((resolve, reject) => {
          const entry = tar.entry({ name: b.to, mode: b.mode, size, uid: 0, gid: 0 }, (err) => (err ? reject(err) : resolve()));
          createReadStream(b.from).on("error", reject).pipe(entry);
        });
      }
      tar.finalize();
    } catch (err) {
      tar.destroy(err as Error);
    }
  })();
  return tar;
}
