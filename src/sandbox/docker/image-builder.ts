import { createHash } from "node:crypto";
import { createReadStream, lstatSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import type Docker from "dockerode";
import { pack, type Pack } from "tar-stream";
import { ImageBuildError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { packagePath, packageVersion } from "../../shared/paths.js";
import { BUN_VERSION, type PythonPackages, type RuntimeName } from "../../shared/languages.js";
import { RUNTIME_SPECS } from "../runtimes.js";
import { PYTHON_DATA_PACKAGES, Staging, stageRuntime } from "./rootfs.js";
import { withTimeout } from "../../shared/timeout.js";

/**
 * The data image's environment: one BLAS/OpenMP thread (a run has at most a CPU or so, and
 * threads count against its process limit); matplotlib draws with Agg, keeps its config and font
 * cache in the run's /tmp (the root is read-only), and `plt.show()` hands figures to the runner.
 */
export const DATA_ENV = ["OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "MPLCONFIGDIR=/tmp/.matplotlib", "MPLBACKEND=Agg"];

/** Bump when an image's layout changes in a way the runner files do not show. */
const IMAGE_RECIPE = "3";
/** Bump when the Python data image's layout changes. */
const DATA_RECIPE = "1";

function runnerDir(runtime: RuntimeName): string {
  return packagePath("dist", "sandbox-image", runtime);
}

function readRunnerFiles(runtime: RuntimeName): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of RUNTIME_SPECS[runtime].runnerFiles) {
    try {
      files.set(name, readFileSync(`${runnerDir(runtime)}/${name}`));
    } catch (err) {
      throw new ImageBuildError(`the bundled runner ${runnerDir(runtime)}/${name} is missing (run \`npm run build\`)`, err);
    }
  }
  return files;
}

/**
 * A runtime's default image tag: changes whenever its runner, the recipe or the runtime inside
 * would (Node: this machine's version; Bun: the pinned version), so an upgrade never runs
 * against a stale image.
 */
export function defaultImageTag(runtime: RuntimeName = "node", pythonPackages: PythonPackages = "data"): string {
  const hash = createHash("sha256");
  for (const [name, body] of readRunnerFiles(runtime)) hash.update(name).update(body);
  hash.update(IMAGE_RECIPE).update(runtime);
  if (runtime === "node") hash.update(process.version);
  if (runtime === "bun") hash.update(BUN_VERSION);
  // The data stack is its own image (and tag): switching the setting never runs the other one.
  const variant = runtime === "python" && pythonPackages === "data" ? "data-" : "";
  if (variant) hash.update(DATA_RECIPE).update(PYTHON_DATA_PACKAGES.join(","));
  return `${RUNTIME_SPECS[runtime].repository}:${packageVersion()}-${variant}${hash.digest("hex").slice(0, 12)}`;
}

export interface BuildOptions {
  runtime: RuntimeName;
  tag: string;
  /** Python only: the data stack or the standard library alone. */
  pythonPackages?: PythonPackages;
  /** true: never try a registry; false: never fall back; undefined: registry first, offline if it cannot be pulled. */
  offline?: boolean | undefined;
  logger: Logger;
}

export async function buildImage(docker: Docker, options: BuildOptions): Promise<{ tag: string; method: "registry" | "offline" }> {
  const spec = RUNTIME_SPECS[options.runtime];
  if (options.offline !== true) {
    let pulled = true;
    for (const base of spec.registryBases) pulled = pulled && (await tryPull(docker, base, options.logger));
    if (pulled) {
      await runBuild(docker, registryContext(options.runtime), options.tag, spec.dockerfile, options.runtime, options.runtime === "python" ? { PACKAGES: options.pythonPackages ?? "data" } : {});
      return { tag: options.tag, method: "registry" };
    }
    if (options.offline === false) throw new ImageBuildError(`the base images ${spec.registryBases.join(", ")} cannot be pulled`);
    options.logger.info(`no registry reachable for ${spec.registryBases.join(", ")}; assembling the ${spec.title} sandbox image offline`);
  }
  const staging = await Staging.create();
  try {
    await stageRuntime(options.runtime, staging, options.logger, options.pythonPackages ?? "data");
    for (const [name, body] of readRunnerFiles(options.runtime)) await staging.write(`/opt/codebox/${name}`, body);
    await staging.dockerfile(options.runtime, options.runtime === "python" && options.pythonPackages !== "stdlib" ? DATA_ENV : []);
    await runBuild(docker, await directoryContext(staging), options.tag, "Dockerfile", options.runtime);
  } finally {
    await staging.remove();
  }
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

async function runBuild(docker: Docker, context: Pack, tag: string, dockerfile: string, runtime: RuntimeName, buildargs: Record<string, string> = {}): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(Readable.from(context), { t: tag, dockerfile, buildargs, rm: true, forcerm: true, labels: { "dev.codebox-mcp.image": "sandbox", "dev.codebox-mcp.runtime": runtime } });
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

function registryContext(runtime: RuntimeName): Pack {
  const spec = RUNTIME_SPECS[runtime];
  const tar = pack();
  tar.entry({ name: spec.dockerfile, mode: 0o644 }, readFileSync(packagePath(spec.dockerfile)));
  for (const [name, body] of readRunnerFiles(runtime)) tar.entry({ name: `dist/sandbox-image/${runtime}/${name}`, mode: 0o644 }, body);
  tar.finalize();
  return tar;
}

/** The staging directory as a tar stream, owned by root, files streamed one after another. */
async function directoryContext(staging: Staging): Promise<Pack> {
  const entries = await staging.entries();
  const tar = pack();
  void (async () => {
    try {
      for (const rel of entries) {
        const full = join(staging.dir, rel);
        const st = lstatSync(full);
        const base = { name: rel, mode: st.mode & 0o7777, uid: 0, gid: 0 };
        if (st.isDirectory()) tar.entry({ ...base, type: "directory" });
        else if (st.isSymbolicLink()) tar.entry({ ...base, type: "symlink", linkname: readlinkSync(full) });
        else {
          await new Promise<void>((resolve, reject) => {
            const entry = tar.entry({ ...base, size: st.size }, (err) => (err ? reject(err) : resolve()));
            createReadStream(full).on("error", reject).pipe(entry);
          });
        }
      }
      tar.finalize();
    } catch (err) {
      tar.destroy(err as Error);
    }
  })();
  return tar;
}
