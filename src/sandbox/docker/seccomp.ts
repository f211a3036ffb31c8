// The seccomp allowlist (seccomp/profile.json) as the engine wants it: JSON text, checked once.
import { readFileSync } from "node:fs";
import type { OciRuntime } from "../../config/schema.js";
import { SandboxError, errorMessage } from "../../shared/errors.js";

export interface SeccompProfile {
  defaultAction: string;
  syscalls: Array<{ names: string[]; action: string; errnoRet?: number }>;
}

/**
 * gVisor applies the OCI profile inside its own kernel (runsc --oci-seccomp) but ignores a
 * rule's errnoRet: clone3 would fail with EPERM instead of ENOSYS and glibc would not fall back
 * to clone, so no thread could start. Under gVisor clone3 is allowed: it reaches gVisor's
 * kernel, not the host's, and namespaces made there are gVisor's own.
 */
export function forOciRuntime(profile: SeccompProfile, ociRuntime: OciRuntime): SeccompProfile {
  if (ociRuntime !== "runsc") return profile;
  return {
    ...profile,
    syscalls: profile.syscalls.map((s) => (s.names.length === 1 && s.names[0] === "clone3" ? { names: ["clone3"], action: "SCMP_ACT_ALLOW" } : s)),
  };
}

/** Parses a profile's text; throws a SandboxError that names the file when it cannot be used. */
export function parseSeccompProfile(text: string, path: string): SeccompProfile {
  try {
    const parsed = JSON.parse(text) as { defaultAction?: unknown; syscalls?: unknown };
    if (typeof parsed.defaultAction !== "string" || !Array.isArray(parsed.syscalls)) throw new Error("missing defaultAction or syscalls");
    return parsed as SeccompProfile;
  } catch (err) {
    throw new SandboxError(`The seccomp profile ${path} cannot be used: ${errorMessage(err)}. Fix the file or unset sandbox.seccompProfile.`, err);
  }
}

/** The profile at `path` for `ociRuntime`, as the JSON text the engine's SecurityOpt takes. */
export function loadSeccompProfile(path: string, ociRuntime: OciRuntime): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new SandboxError(`The seccomp profile ${path} cannot be read: ${errorMessage(err)}. Fix the path or unset sandbox.seccompProfile.`, err);
  }
  return JSON.stringify(forOciRuntime(parseSeccompProfile(text, path), ociRuntime));
}
