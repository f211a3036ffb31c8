import { describe, expect, it } from "vitest";
import { DEFAULT_PROFILES } from "../../src/config/schema.js";
import { RUNTIMES } from "../../src/shared/languages.js";
import { RUNTIME_SPECS } from "../../src/sandbox/runtimes.js";
import { containerSpec } from "../../src/sandbox/docker/host-config.js";

const spec = containerSpec({
  image: "img",
  runtimeSpec: RUNTIME_SPECS.node,
  uid: 10001,
  labels: { a: "b" },
  profile: DEFAULT_PROFILES.standard,
  runtime: "runc",
  seccompJson: '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}',
  workspaceDir: "/data/users/u/workspace",
  skillsDir: "/data/users/u/skills",
  nofile: 256,
  fsizeBytes: 1024,
});
const hc = spec.HostConfig!;

// Every layer of the security model, pinned. A change here must be a decision, not an accident.
describe("hardened container spec", () => {
  it("runs as the given non-root user with only our environment", () => {
    expect(spec.User).toBe("10001:10001");
    expect(spec.Env).toEqual(["HOME=/tmp", "TMPDIR=/tmp", "PATH=/usr/local/bin", "NODE_NO_WARNINGS=1"]);
    expect(spec.Cmd).toEqual(["/usr/local/bin/node", "--max-old-space-size=256", "--experimental-vm-modules", "/opt/codebox/runner.cjs"]);
    expect(spec.WorkingDir).toBe("/workspace");
    // A container started ahead of its run also tells the runner so (it loads its hooks at boot).
    const warm = containerSpec({ image: "img", runtimeSpec: RUNTIME_SPECS.node, warmEnv: ["CODEBOX_RUNNER_WARM=1"], uid: 10001, labels: {}, profile: DEFAULT_PROFILES.standard, runtime: "runc", seccompJson: "{}", workspaceDir: "/w", skillsDir: "/s", nofile: 256, fsizeBytes: 1024 });
    expect(warm.Env).toEqual(["HOME=/tmp", "TMPDIR=/tmp", "PATH=/usr/local/bin", "NODE_NO_WARNINGS=1", "CODEBOX_RUNNER_WARM=1"]);
  });

  it("boots warm runners fuller only where it pays: Node's hooks under runsc, Python's preload in the data image with room for it", () => {
    const ctx = { ociRuntime: "runc", memoryMiB: 256, pythonPackages: "data" as const, pythonPreload: ["numpy", "pandas"] };
    expect(RUNTIME_SPECS.node.warmEnv?.(ctx)).toEqual([]);
    expect(RUNTIME_SPECS.node.warmEnv?.({ ...ctx, ociRuntime: "runsc" })).toEqual(["CODEBOX_RUNNER_WARM=1"]);
    expect(RUNTIME_SPECS.python.warmEnv?.(ctx)).toEqual(["CODEBOX_PYTHON_PRELOAD=numpy,pandas"]);
    expect(RUNTIME_SPECS.python.warmEnv?.({ ...ctx, memoryMiB: 255 })).toEqual([]);
    expect(RUNTIME_SPECS.python.warmEnv?.({ ...ctx, ociRuntime: "runsc" })).toEqual([]);
    expect(RUNTIME_SPECS.python.warmEnv?.({ ...ctx, pythonPackages: "stdlib" })).toEqual([]);
    expect(RUNTIME_SPECS.python.warmEnv?.({ ...ctx, pythonPreload: [] })).toEqual([]);
    expect(RUNTIME_SPECS.bun.warmEnv).toBeUndefined();
  });
  it("drops all capabilities, forbids new privileges and applies the seccomp profile", () => {
    expect(hc.CapDrop).toEqual(["ALL"]);
    expect(hc.CapAdd).toBeUndefined();
    expect(hc.Privileged).toBe(false);
    expect(hc.SecurityOpt).toContain("no-new-privileges:true");
    expect(hc.SecurityOpt?.find((o) => o.startsWith("seccomp="))).toContain("SCMP_ACT_ERRNO");
  });
  it("has no network, a read-only root and a small noexec /tmp", () => {
    expect(hc.NetworkMode).toBe("none");
    expect(spec.NetworkDisabled).toBe(true);
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(hc.Tmpfs?.["/tmp"]).toMatch(/noexec/);
    expect(hc.Tmpfs?.["/tmp"]).toMatch(/nosuid/);
    expect(hc.Tmpfs?.["/tmp"]).toMatch(/nodev/);
    expect(hc.Tmpfs?.["/tmp"]).toMatch(/size=64m/);
    expect(hc.IpcMode).toBe("none");
  });
  it("limits memory without swap, CPU, processes, files and file size", () => {
    expect(hc.Memory).toBe(256 * 1024 * 1024);
    expect(hc.MemorySwap).toBe(hc.Memory);
    // Under host memory pressure the kernel kills a sandbox first, not the server.
    expect(hc.OomScoreAdj).toBe(1000);
    expect(hc.NanoCpus).toBe(0.5e9);
    expect(hc.PidsLimit).toBe(64);
    expect(hc.Ulimits).toEqual(expect.arrayContaining([{ Name: "nofile", Soft: 256, Hard: 256 }, { Name: "fsize", Soft: 1024, Hard: 1024 }]));
  });
  it("mounts only the user's own directories and keeps no logs", () => {
    expect(hc.Binds).toBeUndefined();
    expect(hc.Mounts?.map((m) => [m.Source, m.Target, m.ReadOnly])).toEqual([
      ["/data/users/u/workspace", "/workspace", false],
      ["/data/users/u/skills", "/skills", false],
    ]);
    expect(hc.LogConfig?.Type).toBe("none");
    expect(hc.AutoRemove).toBe(true);
  });
});

describe("the container spec of each language runtime", () => {
  for (const name of RUNTIMES) {
    it(`${name}: its runner is PID 1, only its own variables, the same hardening`, () => {
      const s = containerSpec({ image: "img", runtimeSpec: RUNTIME_SPECS[name], uid: 10001, labels: { a: "b" }, profile: DEFAULT_PROFILES.standard, runtime: "runc", seccompJson: '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}', workspaceDir: "/data/users/u/workspace", skillsDir: "/data/users/u/skills", nofile: 256, fsizeBytes: 1024 });
      expect(s.Cmd?.[0]).toMatch(/^\/usr\/(local\/)?bin\/(node|bun|python3)$/);
      expect(s.Cmd?.at(-1)).toMatch(/^\/opt\/codebox\/runner\.(cjs|mjs|py)$/);
      expect(s.Env?.every((e) => /^(HOME|TMPDIR|PATH|NODE_|BUN_|DO_NOT_TRACK|PYTHON)/.test(e))).toBe(true);
      expect(s.HostConfig).toEqual(hc);
    });
  }
});
