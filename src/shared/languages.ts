// The languages execute_code takes and the language runtimes that run them (node, bun, python).
// "Runtime" in this project means only these; the OCI runtime (runc, runsc) is "ociRuntime".
// Which image and runner each one uses is the sandbox's business (sandbox/runtimes.ts).
import { InputError } from "./errors.js";

export const LANGUAGES = ["typescript", "javascript", "python"] as const;
export type Language = (typeof LANGUAGES)[number];

export const RUNTIMES = ["node", "bun", "python"] as const;
export type RuntimeName = (typeof RUNTIMES)[number];

/** What the Python image holds besides the standard library: the data stack (numpy, pandas, matplotlib, scipy, openpyxl, Pillow) or nothing. */
export const PYTHON_PACKAGES = ["data", "stdlib"] as const;
export type PythonPackages = (typeof PYTHON_PACKAGES)[number];

/** The runtimes a caller may pick for TypeScript/JavaScript (Python has exactly one). */
export const JS_RUNTIMES = ["node", "bun"] as const;

/** Bun comes from its npm package (@oven/bun-linux-<arch>), pinned by version and integrity. */
export const BUN_VERSION = "1.4.5";

/** What people call each runtime, and what it runs. */
export const RUNTIME_INFO: Record<RuntimeName, { title: string; languages: readonly Language[] }> = {
  node: { title: "Node.js", languages: ["typescript", "javascript"] },
  bun: { title: "Bun", languages: ["typescript", "javascript"] },
  python: { title: "CPython", languages: ["python"] },
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
    throw new InputError(`the ${RUNTIME_INFO[chosen].title} runtime is turned off on this server (sandbox.runtimes = ${JSON.stringify(enabled)}). Use one of: ${enabled.join(", ")}.`);
  }
  return chosen;
}

/** The runtime used when nothing says otherwise: Node when it is offered, else the first offered. */
export function defaultRuntime(enabled: readonly RuntimeName[]): RuntimeName {
  return enabled.includes("node") ? "node" : (enabled[0] ?? "node");
}

/** The languages the enabled runtimes can run. */
export function languagesOf(enabled: readonly RuntimeName[]): Language[] {
  return LANGUAGES.filter((l) => enabled.some((r) => RUNTIME_INFO[r].languages.includes(l)));
}
