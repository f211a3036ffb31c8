// How each language runtime is packaged: its image, its runner, its PID 1. Everything else
// (hardening, mounts, the bridge, the pool) is the same for all of them.
import { type Language, RUNTIME_INFO, type RuntimeName } from "../shared/languages.js";


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
  warmEnv?: readonly string[];
  path: string;
}

export const RUNTIME_SPECS: Record<RuntimeName, RuntimeSpec> = {
  node: {
    name: "node",
    ...RUNTIME_INFO.node,
    runnerFiles: ["runner.cjs", "hooks.mjs", "strip.mjs"],
    repository: "codebox-mcp-sandbox",
    dockerfile: "Dockerfile.sandbox",
    registryBases: ["node:22-alpine"],
    // V8 may grow its heap to the whole memory limit, so running out of memory ends in the
    // kernel's OOM kill (reported as oomKilled) rather than a V8 abort that looks like a crash.
    command: (memoryMiB) => ["/usr/local/bin/node", `--max-old-space-size=${memoryMiB}`, "--experimental-vm-modules", "/opt/codebox/runner.cjs"],
    env: ["NODE_NO_WARNINGS=1"],
    // A warm container under runsc loads its module hooks at boot, while nobody waits; otherwise
    // they load only if the code needs them (docs/PERFORMANCE.md).
    warmEnv: ["CODEBOX_RUNNER_WARM=1"],
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
    path: "/usr/local/bin:/usr/bin",
  },
};
