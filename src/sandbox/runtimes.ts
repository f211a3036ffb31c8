// The language runtimes a sandbox can run: one image each, one runner each (sandbox-image/<name>/).
// Everything else (hardening, mounts, the bridge, the pool) is the same for all of them.
import { InputError } from "../shared/errors.js";

export const LANGUAGES = ["typescript", "javascript", "python"] as const;
export type Language = (typeof LANGUAGES)[number];

export const RUNTIMES = ["node", "bun", "python"] as const;
export type RuntimeName = (typeof RUNTIMES)[number];

/** The runtimes a caller may pick for TypeScript/JavaScript (Python has exactly one). */
export const JS_RUNTIMES = ["node", "bun"] as const;

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
  path: string;
}

/** Bun comes from its npm package (@oven/bun-linux-<arch>), pinned by version and integrity. */
export const BUN_VERSION = "1.4.5";

export const RUNTIME_SPECS: Record<RuntimeName, RuntimeSpec> = {
  node: {
    name: "node",
    title: "Node.js",
    languages: ["typescript", "javascript"],
    runnerFiles: ["runner.mjs", "hooks.mjs"],
    repository: "codebox-mcp-sandbox",
    dockerfile: "Dockerfile.sandbox",
    registryBases: ["node:22-alpine"],
    // V8 may grow its heap to the whole memory limit, so running out of memory ends in the
    // kernel's OOM kill (reported as oomKilled) rather than a V8 abort that looks like a crash.
    command: (memoryMiB) => ["/usr/local/bin/node", `--max-old-space-size=${memoryMiB}`, "/opt/codebox/runner.mjs"],
    env: ["NODE_NO_WARNINGS=1"],
    path: "/usr/local/bin",
  },
  bun: {
    name: "bun",
    title: "Bun",
    languages: ["typescript", "javascript"],
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
    title: "CPython",
    languages: ["python"],
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

/**
 * Which runtime runs a request: Python code runs on CPython; TypeScript and JavaScript on Node
 * unless the caller asks for Bun. A combination that makes no sense is refused, saying what works.
 */
export function runtimeFor(language: Language, runtime: RuntimeName | undefined, enabled: readonly RuntimeName[]): RuntimeName {
  let chosen: RuntimeName;
  if (language === "python") {
    if (runtime !== undefined && runtime !== "python") {
      throw new InputError(`runtime "${runtime}" does not run Python. Omit runtime (or pass "python") for language "python".`);
    }
    chosen = "python";
  } else {
    if (runtime === "python") {
      throw new InputError(`runtime "python" runs only language "python"; for ${language} pass runtime "node" or "bun", or omit it.`);
    }
    chosen = runtime ?? "node";
  }
  if (!enabled.includes(chosen)) {
    throw new InputError(`the ${RUNTIME_SPECS[chosen].title} runtime is turned off on this server (sandbox.runtimes = ${JSON.stringify(enabled)}). Use one of: ${enabled.join(", ")}.`);
  }
  return chosen;
}

/** The runtime used when nothing says otherwise: Node when it is offered, else the first offered. */
export function defaultRuntime(enabled: readonly RuntimeName[]): RuntimeName {
  return enabled.includes("node") ? "node" : (enabled[0] ?? "node");
}

/** The languages the enabled runtimes can run. */
export function languagesOf(enabled: readonly RuntimeName[]): Language[] {
  return LANGUAGES.filter((l) => enabled.some((r) => RUNTIME_SPECS[r].languages.includes(l)));
}
