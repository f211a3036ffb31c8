import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// @ts-expect-error plain JS module without types
import { BLOCKED, buildProfile, renderProfile } from "../../seccomp/build-profile.mjs";
import { repoRoot } from "../helpers.js";

describe("seccomp profile", () => {
  it("is what seccomp/build-profile.mjs generates (run it after editing the lists)", () => {
    expect(readFileSync(join(repoRoot, "seccomp", "profile.json"), "utf8")).toBe(renderProfile());
  });

  it("denies by default and never allows a blocked call", () => {
    const profile = buildProfile() as { defaultAction: string; syscalls: Array<{ names: string[]; action: string }> };
    expect(profile.defaultAction).toBe("SCMP_ACT_ERRNO");
    const allowed = new Set(profile.syscalls.filter((s) => s.action === "SCMP_ACT_ALLOW").flatMap((s) => s.names));
    for (const name of Object.keys(BLOCKED as Record<string, string>)) expect(allowed.has(name), name).toBe(false);
    for (const name of ["ptrace", "bpf", "mount", "unshare", "setns", "keyctl", "userfaultfd", "io_uring_setup", "perf_event_open", "personality", "process_vm_readv"]) {
      expect(allowed.has(name), name).toBe(false);
    }
  });
});
