import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import type { Language } from "../../src/shared/languages.js";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { closeAndCheck, expectNoRunContainers, testApp } from "../helpers.js";

// Each test runs real code in a real container on the real engine, under runc and under gVisor.
describe.each(["runc", "runsc"] as const)("sandbox under %s", (runtime) => {
const gvisor = runtime === "runsc";
let app: App;
const run = (code: string, opts: { language?: Language; timeoutMs?: number; userId?: string; signal?: AbortSignal } = {}) =>
  app.runs.execute({ userId: opts.userId ?? "alice", code, language: opts.language ?? "typescript", timeoutMs: opts.timeoutMs, signal: opts.signal });

beforeAll(() => {
  app = testApp({ "sandbox.ociRuntime": runtime, "sandbox.profiles": { light: {}, standard: { timeoutMs: 15_000 }, heavy: {} } });
});

afterEach(async () => {
  // Acceptance: after every test, no container with the project's labels remains (idle warm ones aside).
  await expectNoRunContainers(app);
});

afterAll(async () => {
  await closeAndCheck(app);
});

describe("running code", () => {
  it("runs TypeScript with types stripped and returns what it printed", async () => {
    const r = await run("const x: number = 21; console.log(x * 2)");
    expect(r).toMatchObject({ exitCode: 0, stdout: "42\n", stderr: "", timedOut: false, oomKilled: false, stdoutTruncated: false });
  });

  it("runs JavaScript as an ES module with top-level await and Node built-ins", async () => {
    const r = await run(
      'import { createHash } from "node:crypto"; await new Promise((r) => setTimeout(r, 20)); console.log(createHash("sha256").update("a").digest("hex").slice(0, 8))',
      { language: "javascript" },
    );
    expect(r.stdout).toBe("ca978112\n");
    expect(r.exitCode).toBe(0);
  });

  it("supports TypeScript-only syntax: interfaces, enums, generics, type imports", async () => {
    const r = await run(`
      import type { Stats } from "node:fs";
      interface P { name: string }
      enum Color { Red, Green }
      function first<T>(xs: T[]): T | undefined { return xs[0]; }
      const s: Stats | null = null;
      console.log(first<P>([{ name: "ada" }])?.name, Color.Green, s);`);
    expect(r.stdout).toBe("ada 1 null\n");
  });

  it("reports a thrown error on stderr with exit code 1", async () => {
    const r = await run('throw new Error("boom")');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain("Error: boom");
    expect(r.stderr).not.toContain("/opt/codebox");
  });

  it("reports a syntax error clearly", async () => {
    const r = await run("const a: number = ;");
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Unexpected token/);
  });

  it("passes the exit code through", async () => {
    expect((await run("process.exitCode = 7")).exitCode).toBe(7);
  });

  it("returns invalid UTF-8 and output without a newline intact", async () => {
    const r = await run('process.stdout.write(Buffer.from([0x61, 0xff, 0xfe, 0x62])); process.stderr.write("no newline")');
    expect(r.stdout).toBe("a\uFFFD\uFFFDb");
    expect(r.stderr).toBe("no newline");
  });
});

describe("hardening, measured from inside the container", () => {
  it("has a read-only root filesystem", async () => {
    const r = await run('import fs from "node:fs"; try { fs.writeFileSync("/etc/x", "1"); console.log("wrote") } catch (e) { console.log(e.code) }');
    // gVisor reports a write to its read-only root as EACCES.
    expect(r.stdout).toBe(gvisor ? "EACCES\n" : "EROFS\n");
  });

  it("runs as a non-root user with no capabilities, no-new-privileges and seccomp filtering", async () => {
    const r = await run(`
      import fs from "node:fs";
      const status = fs.readFileSync("/proc/self/status", "utf8");
      const field = (k: string) => status.match(new RegExp("^" + k + ":\\\\s*(\\\\S+)", "m"))?.[1];
      console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), capEff: field("CapEff"), capPrm: field("CapPrm"), noNewPrivs: field("NoNewPrivs"), seccomp: field("Seccomp") }));`);
    const facts = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(facts.uid).not.toBe(0);
    expect(facts.gid).not.toBe(0);
    expect(facts.capEff).toBe("0000000000000000");
    expect(facts.capPrm).toBe("0000000000000000");
    // gVisor's /proc/self/status has no NoNewPrivs line (the flag is applied by runsc itself).
    expect(facts.noNewPrivs).toBe(gvisor ? undefined : "1");
    expect(facts.seccomp).toBe("2");
  });

  it("has no network: TCP connects and DNS lookups fail", async () => {
    const r = await run(`
      import net from "node:net";
      import dns from "node:dns/promises";
      const tcp = await new Promise<string>((resolve) => {
        const s = net.connect({ host: "1.1.1.1", port: 443, timeout: 3000 });
        s.on("connect", () => resolve("connected"));
        s.on("timeout", () => resolve("timeout"));
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
      const lookup = await dns.lookup("example.com").then(() => "resolved", (e) => e.code);
      const interfaces = Object.keys((await import("node:os")).networkInterfaces());
      console.log(JSON.stringify({ tcp, lookup, interfaces }));`);
    const facts = JSON.parse(r.stdout) as { tcp: string; lookup: string; interfaces: string[] };
    expect(facts.tcp).not.toBe("connected");
    expect(facts.tcp).toMatch(/ENETUNREACH|EHOSTUNREACH|ECONNREFUSED|EPERM|EACCES|timeout/);
    expect(facts.lookup).not.toBe("resolved");
    expect(facts.interfaces.filter((i) => i !== "lo")).toEqual([]);
  });

  it("sees none of the server's environment", async () => {
    process.env.CODEBOX_TEST_CANARY = "canary-7f3a";
    try {
      const r = await run('import fs from "node:fs"; console.log(JSON.stringify(process.env), fs.readFileSync("/proc/1/environ", "utf8"))');
      expect(r.stdout).not.toContain("canary-7f3a");
      expect(Object.keys(JSON.parse(r.stdout.split(" ")[0]!)).sort()).toEqual(["CODEBOX_BRIDGE_SOCKET", "CODEBOX_BRIDGE_TOKEN", "HOME", "HOSTNAME", "NODE_NO_WARNINGS", "PATH", "TMPDIR"]);
    } finally {
      delete process.env.CODEBOX_TEST_CANARY;
    }
  });

  it("mounts no docker socket", async () => {
    const r = await run('import fs from "node:fs"; console.log(["/var/run/docker.sock", "/run/docker.sock"].map((p) => fs.existsSync(p)).join(","))');
    expect(r.stdout).toBe("false,false\n");
  });
});

describe("files", () => {
  it("keeps a file written to /workspace for the next run of the same user, and not for another user", async () => {
    const first = await run('import fs from "node:fs"; fs.writeFileSync("/workspace/note.txt", "kept"); console.log(process.cwd())');
    expect(first.stdout).toBe("/workspace\n");
    const again = await run('import fs from "node:fs"; console.log(fs.readFileSync("note.txt", "utf8"))');
    expect(again.stdout).toBe("kept\n");
    const other = await run('import fs from "node:fs"; console.log(fs.existsSync("/workspace/note.txt"))', { userId: "bob" });
    expect(other.stdout).toBe("false\n");
    expect(readFileSync(join(app.config.dataDir, "users", "alice", "workspace", "note.txt"), "utf8")).toBe("kept");
  });

  it("imports TypeScript modules from /workspace and /skills", async () => {
    await run('import fs from "node:fs"; fs.writeFileSync("/workspace/util.ts", "export const double = (n: number): number => n * 2;"); fs.mkdirSync("/skills/math", { recursive: true }); fs.writeFileSync("/skills/math/index.ts", "export function inc(n: number): number { return n + 1 }")');
    const r = await run('import { double } from "./util.ts"; import { inc } from "/skills/math/index.ts"; import { double as d2 } from "./util"; console.log(double(inc(20)), d2(1))');
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("42 2\n");
  });

  it("gives /tmp as scratch space that does not survive the run", async () => {
    const a = await run('import fs from "node:fs"; fs.writeFileSync("/tmp/scratch", "x"); console.log(fs.existsSync("/tmp/scratch"))');
    expect(a.stdout).toBe("true\n");
    const b = await run('import fs from "node:fs"; console.log(fs.existsSync("/tmp/scratch"))');
    expect(b.stdout).toBe("false\n");
  });
});

describe("limits", () => {
  it("kills an endless loop at the timeout, reports timedOut, and leaves no container", async () => {
    const started = Date.now();
    const r = await run("while (true) {}", { timeoutMs: 2_000 });
    const elapsed = Date.now() - started;
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
    // Acceptance: ends within timeout + 2 s (measured around the whole call).
    expect(elapsed).toBeLessThan(2_000 + 2_000 + 1_500 /* container create + start before the clock starts */);
    expect(r.durationMs).toBeLessThan(2_000 + 2_000);
  });

  it("reports a 1 GiB allocation as oomKilled", async () => {
    const r = await run("const b = Buffer.alloc(2 ** 30, 1); console.log(b.length)");
    expect(r.oomKilled).toBe(true);
    expect(r.stdout).toBe("");
  });

  it("reports a runaway JS heap as oomKilled", async () => {
    const r = await run("const keep: number[][] = []; while (true) keep.push(new Array(1e6).fill(1));");
    expect(r.oomKilled).toBe(true);
  });

  it("cuts 10 MB of output at the cap and flags it", async () => {
    const r = await run('process.stdout.write("x".repeat(10_000_000)); process.stderr.write("e".repeat(100_000))');
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stdout.length).toBe(app.config.sandbox.maxOutputBytes);
    expect(r.stdoutBytes).toBe(10_000_000);
    expect(r.stderrTruncated).toBe(true);
    expect(r.exitCode).toBe(0);
  });

  it("never splits a multi-byte character at the cap", async () => {
    const r = await run('process.stdout.write("é".repeat(40_000))');
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stdout).toMatch(/^é+$/);
  });

  it("kills and removes the container when the caller cancels", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 1_500);
    await expect(run("await new Promise((r) => setTimeout(r, 60_000))", { signal: ac.signal })).rejects.toMatchObject({ code: "CODEBOX_CANCELED" });
  });

  it("caps the number of processes", async () => {
    const r = await run(`
      import { spawn } from "node:child_process";
      let spawned = 0, failed = 0;
      for (let i = 0; i < 200; i++) {
        try { const c = spawn("/usr/local/bin/node", ["-e", "setTimeout(()=>{}, 5000)"]); c.on("error", () => failed++); spawned++; } catch { failed++; }
      }
      await new Promise((r) => setTimeout(r, 1500));
      console.log(failed > 0 ? "limited" : "unlimited");
      process.exit(0);`);
    if (gvisor) {
      // Under gVisor the pids cap also bounds its own kernel's threads: the spawns fail, or the
      // whole sandbox is stopped. Either way the loop is contained.
      expect(r.stdout === "limited\n" || r.exitCode !== 0).toBe(true);
    } else expect(r.stdout).toBe("limited\n");
  });
});

describe("clean-up", () => {
  it("removes containers left by a server that died, and keeps those of live servers", async () => {
    const { docker } = app.backend;
    const image = app.backend.imageTag("node");
    const labels = (instance: string, pid: number) => ({
      [LABEL.managed]: "true",
      [LABEL.instance]: instance,
      [LABEL.host]: app.backend.instance.host,
      [LABEL.pid]: String(pid),
      [LABEL.expires]: String(Date.now() + 3_600_000),
    });
    // A pid that is certainly not running: past the kernel's pid_max.
    const dead = await docker.createContainer({ Image: image, Labels: labels("dead-server", 2 ** 22 + 1), HostConfig: { NetworkMode: "none" } });
    const alive = await docker.createContainer({ Image: image, Labels: labels("live-server", process.pid === 1 ? 2 : process.ppid), HostConfig: { NetworkMode: "none" } });
    try {
      expect(await app.backend.reapOrphans()).toBeGreaterThanOrEqual(1);
      await expect(docker.getContainer(dead.id).inspect()).rejects.toMatchObject({ statusCode: 404 });
      await expect(docker.getContainer(alive.id).inspect()).resolves.toBeTruthy();
    } finally {
      await alive.remove({ force: true }).catch(() => {});
      await dead.remove({ force: true }).catch(() => {});
    }
  });

  it("creates user directories that are real directories, never following a planted symlink", async () => {
    const ws = join(app.config.dataDir, "users", "carol");
    const { symlinkSync, mkdirSync } = await import("node:fs");
    mkdirSync(ws, { recursive: true });
    symlinkSync("/etc", join(ws, "workspace"));
    await expect(run("console.log(1)", { userId: "carol" })).rejects.toMatchObject({ code: "CODEBOX_UNSAFE_PATH" });
    expect(existsSync("/etc/passwd")).toBe(true);
  });
});
});
