// How each language runtime is packaged: its image, its runner, its PID 1. Everything else
// (hardening, mounts, the bridge, the pool) is the same for all of them.
import { type Language, type PythonPackages, RUNTIME_INFO, type RuntimeName } from "../shared/languages.js";


/** What decides how a warm container's runner boots. */
export interface WarmContext {
  ociRuntime: string;
  memoryMiB: number;
  pythonPackages: PythonPackages;
  pythonPreload: readonly string[];
}

/** Preloading takes ~70 MB: not in profiles smaller than this. */
export const PRELOAD_MIN_MEMORY_MIB = 256;

export interface RuntimeSpec {
  name: RuntimeName;
  /** What people call it, for descriptions and doctor. */
  title: string;
  languages: readonly Language[];
  /** Files of dist/sandbox-image/<name>/ copied to /opt/codebox/ in the image. */
  runnerFiles: readonly string[];
  /** Image repository; the tag adds the package version and a content hash. */
  repository: string;
  /** The Dockerfile for engines that reach a registry, and the base images it needs. */
  dockerfile: string;
  registryBases: readonly string[];
  /** The container's PID 1: the runtime with its runner. */
  command(memoryMiB: number): string[];
  /** Variables set at container creation (besides HOME, TMPDIR, PATH). */
  env: readonly string[];
  /** More variables for a container started ahead of its run (the runner may boot fuller). */
  warmEnv?: (o: WarmContext) => string[];
  path: string;
}

export const RUNTIME_SPECS: Record<RuntimeName, RuntimeSpec> = {
  node: {
    name: "node",
    ...RUNTIME_INFO.node,
    runnerFiles: ["runner.cjs", "hooks.mjs", "strip.mjs", "egress.cjs"],
    repository: "codebox-mcp-sandbox",
    dockerfile: "Dockerfile.sandbox",
    registryBases: ["node:22-alpine"],
    // V8 may grow its heap to the whole memory limit, so running out of memory ends in the
    // kernel's OOM kill (reported as oomKilled) rather than a V8 abort that looks like a crash.
    command: (memoryMiB) => ["/usr/local/bin/node", `--max-old-space-size=${memoryMiB}`, "--experimental-vm-modules", "/opt/codebox/runner.cjs"],
    env: ["NODE_NO_WARNINGS=1"],
    // A warm container under runsc loads its module hooks at boot, while nobody waits; under runc
    // it is often taken right after it starts (bursts), so they load when the code needs them
    // (docs/PERFORMANCE.md).
    warmEnv: (o) => (o.ociRuntime === "runsc" ? ["CODEBOX_RUNNER_WARM=1"] : []),
    path: "/usr/local/bin",
  },
  bun: {
    name: "bun",
    ...RUNTIME_INFO.bun,
    runnerFiles: ["runner.mjs"],
    repository: "codebox-mcp-sandbox-bun",
    dockerfile: "Dockerfile.bun",
    registryBases: ["node:22-slim", "debian:bookworm-slim"],
    command: () => ["/usr/local/bin/bun", "/opt/codebox/runner.mjs"],
    // No transpiler cache on disk, no telemetry (there is no network anyway).
    env: ["BUN_RUNTIME_TRANSPILER_CACHE_PATH=0", "DO_NOT_TRACK=1", "BUN_INSTALL_CACHE_DIR=/tmp/.bun-cache"],
    path: "/usr/local/bin",
  },
  python: {
    name: "python",
    ...RUNTIME_INFO.python,
    runnerFiles: ["runner.py"],
    repository: "codebox-mcp-sandbox-python",
    dockerfile: "Dockerfile.python",
    registryBases: ["debian:bookworm-slim"],
    // -s: no user site-packages; -B: no .pyc written into /workspace; -X utf8: UTF-8 stdio
    // whatever the (absent) locale says.
    command: () => ["/usr/bin/python3", "-s", "-B", "-X", "utf8", "/opt/codebox/runner.py"],
    env: ["PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1"],
    // A warm container of the data image imports the heavy modules in the background while it
    // waits: `import pandas` in the run then finds them loaded. Not under runsc: there the imports
    // take ~7 s of a 0.5-CPU sandbox, and a run that came meanwhile ran 3-5× slower (docs/PERFORMANCE.md).
    warmEnv: (o) =>
      o.pythonPackages === "data" && o.ociRuntime !== "runsc" && o.pythonPreload.length > 0 && o.memoryMiB >= PRELOAD_MIN_MEMORY_MIB ? [`CODEBOX_PYTHON_PRELOAD=${o.pythonPreload.join(",")}`] : [],
    path: "/usr/local/bin:/usr/bin",
  },
};
