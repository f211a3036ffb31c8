// The programs the codebox://sandbox/<runtime> resource runs inside a sandbox: they measure the isolation from the
// inside, the way an attacker would see it, and print one JSON object. They are real source files
// (sandbox-image/probe/), read from the package.
import { readFileSync } from "node:fs";
import type { Language, RuntimeName } from "../shared/languages.js";
import { packagePath } from "../shared/paths.js";

export interface SandboxFacts {
  uid: number;
  gid: number;
  capEff: string | null;
  capPrm: string | null;
  capBnd: string | null;
  noNewPrivs: boolean | null;
  seccompMode: number | null;
  readOnlyRoot: boolean;
  writable: { workspace: boolean; skills: boolean; tmp: boolean; servers: boolean };
  network: { interfaces: string[]; tcpToInternet: string; cloudMetadata: string; dns: string };
  limits: { memoryBytes: number | "max" | null; cpus: number | null; pids: number | "max" | null; openFiles: number | "unlimited" | null; fileSizeBytes: number | "unlimited" | null; tmpBytes: number | null };
  dockerSocket: boolean;
  environment: string[];
  kernel: string;
  /** The language runtime that ran the probe. */
  interpreter: { name: string; version: string };
}

const cache = new Map<string, string>();

/** The probe for a runtime: Python's for python, the JavaScript one for Node and Bun. */
export function probeProgram(runtime: RuntimeName): { code: string; language: Language } {
  const file = runtime === "python" ? "probe.py" : "probe.mjs";
  let code = cache.get(file);
  if (code === undefined) {
    code = readFileSync(packagePath("sandbox-image", "probe", file), "utf8");
    cache.set(file, code);
  }
  return { code, language: runtime === "python" ? "python" : "javascript" };
}
