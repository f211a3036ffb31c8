import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, statfsSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { docker, ourContainers, removeDir, repoRoot, waitForNoContainers } from "../helpers.js";
import { type Lab, type Row, type Runtime, type UserSession, installProbe, makeLab, renderTable } from "./harness.js";

// The red-team suite: every attack is code sent through execute_code by a real MCP client to a
// real server process (or a client action), with an automatic pass condition. The table it prints
// is published in docs/SECURITY.md. Where gVisor answers differently, the attack says so.

const SANDBOX_UID = 10001;

interface Ctx {
  lab: Lab;
  alice: UserSession;
  bob: UserSession;
}

interface Attack {
  name: string;
  expected: string;
  run(ctx: Ctx): Promise<{ observed: string; pass: boolean }>;
}

const probeAttack = (syscall: string, label = syscall): Attack => ({
  name: `syscall ${label}`,
  expected: "EPERM from the seccomp filter",
  async run({ alice }) {
    const r = await alice.run(`import { execFileSync } from "node:child_process"; console.log(execFileSync("/workspace/syscall-probe", [${JSON.stringify(syscall)}], { encoding: "utf8" }).trim())`);
    const observed = r.stdout.trim() || r.stderr.trim();
    return { observed, pass: new RegExp(`^${syscall} -1 EPERM$`).test(observed) };
  },
});

const readAttack = (path: string, what: string): Attack => ({
  name: `read ${path}`,
  expected: `no ${what}: error or empty`,
  async run({ alice }) {
    const r = await alice.run(`
      import fs from "node:fs";
      let out: string;
      try {
        const st = fs.statSync(${JSON.stringify(path)});
        if (st.isDirectory()) out = "dir entries: " + fs.readdirSync(${JSON.stringify(path)}).length;
        else { const fd = fs.openSync(${JSON.stringify(path)}, "r"); const b = Buffer.alloc(4096); const n = fs.readSync(fd, b, 0, 4096, 0); out = "read bytes: " + n; }
      } catch (e) { out = "error " + e.code; }
      console.log(out);`);
    const observed = r.stdout.trim();
    return { observed, pass: /^error |^read bytes: 0$|^dir entries: 0$/.test(observed) };
  },
});

const writeAttack = (path: string): Attack => ({
  name: `write ${path}`,
  expected: "refused (EROFS, EACCES, EPERM or ENOENT)",
  async run({ alice }) {
    const r = await alice.run(`import fs from "node:fs"; try { fs.writeFileSync(${JSON.stringify(path)}, "1"); console.log("written") } catch (e) { console.log("error " + e.code) }`);
    const observed = r.stdout.trim();
    return { observed, pass: /^error (EROFS|EACCES|EPERM|ENOENT)$/.test(observed) };
  },
});

const connectAttack = (host: string, port: number, label: string): Attack => ({
  name: label,
  expected: "no connection",
  async run({ alice }) {
    const r = await alice.run(`
      import net from "node:net";
      const res = await new Promise((resolve) => {
        const s = net.connect({ host: ${JSON.stringify(host)}, port: ${port}, timeout: 3000 });
        s.on("connect", () => resolve("connected")); s.on("timeout", () => resolve("timeout")); s.on("error", (e: any) => resolve("error " + e.code));
      });
      console.log(res);`);
    const observed = r.stdout.trim();
    return { observed, pass: observed !== "connected" && observed.length > 0 };
  },
});

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}
function fingerprint(path: string): string {
  const st = lstatSync(path);
  return `${st.uid}:${st.gid}:${st.mode}:${st.size}:${st.mtimeMs}:${sha(path)}`;
}

const ATTACKS: Attack[] = [
  // ---- exhausting the host
  {
    name: "fork bomb",
    expected: "contained: spawns fail at the pids cap (gVisor: or its kernel stops the sandbox); the next run works",
    async run({ alice, lab }) {
      const r = await alice.run(`
        import { spawn } from "node:child_process";
        let ok = 0, failed = 0;
        for (let i = 0; i < 150; i++) {
          try { const c = spawn("/usr/local/bin/node", ["-e", "setInterval(()=>{},1000)"], { detached: true, stdio: "ignore" }); c.on("error", () => failed++); ok++; } catch { failed++; }
          await new Promise((r) => setImmediate(r));
        }
        await new Promise((r) => setTimeout(r, 2000));
        console.log(JSON.stringify({ ok, failed }));`, { timeoutMs: 15_000 });
      const after = await alice.run("console.log('alive')");
      const facts = r.stdout ? (JSON.parse(r.stdout) as { failed: number }) : { failed: -1 };
      const sandboxStopped = lab.runtime === "runsc" && r.exitCode !== 0;
      return { observed: `${r.stdout.trim() || (r.timedOut ? "timed out" : `exit ${r.exitCode}`)}; next run: ${after.stdout.trim()}`, pass: after.stdout === "alive\n" && (facts.failed > 0 || r.timedOut || r.oomKilled || sandboxStopped) };
    },
  },
  {
    name: "memory bomb (JS heap)",
    expected: "oomKilled",
    async run({ alice }) {
      const r = await alice.run("const keep: number[][] = []; while (true) keep.push(new Array(1e6).fill(1));");
      return { observed: `oomKilled=${r.oomKilled} exit=${r.exitCode}`, pass: r.oomKilled };
    },
  },
  {
    name: "memory bomb (native Buffer)",
    expected: "oomKilled",
    async run({ alice }) {
      const r = await alice.run("const bufs: Buffer[] = []; for (let i = 0; i < 64; i++) bufs.push(Buffer.alloc(64 * 1024 * 1024, 1)); console.log(bufs.length)");
      return { observed: `oomKilled=${r.oomKilled} exit=${r.exitCode} stdout=${r.stdout.trim()}`, pass: r.oomKilled };
    },
  },
  {
    name: "/tmp fill",
    expected: "ENOSPC at the tmpfs size (64 MiB)",
    async run({ alice }) {
      const r = await alice.run(`
        import fs from "node:fs";
        let written = 0; const chunk = Buffer.alloc(1 << 20, 1);
        try { const fd = fs.openSync("/tmp/fill", "w"); for (;;) { fs.writeSync(fd, chunk); written += chunk.length; if (written > 1 << 30) break; } } catch (e) { console.log(e.code, Math.round(written / 1048576)); }`);
      const [code, mib] = r.stdout.trim().split(" ");
      return { observed: r.stdout.trim() || `exit ${r.exitCode} oom=${r.oomKilled}`, pass: (code === "ENOSPC" && Number(mib) <= 64) || r.oomKilled };
    },
  },
  {
    name: "/dev/shm fill",
    expected: "no /dev/shm to fill",
    async run({ alice }) {
      const r = await alice.run('import fs from "node:fs"; try { fs.writeFileSync("/dev/shm/x", Buffer.alloc(1 << 20)); console.log("written") } catch (e) { console.log("error " + e.code) }');
      return { observed: r.stdout.trim(), pass: /^error /.test(r.stdout.trim()) };
    },
  },
  {
    name: "workspace fill (bytes)",
    expected: "ENOSPC at the quota; host disk use ≤ quota; saved files intact",
    async run({ alice, lab }) {
      await alice.run('import fs from "node:fs"; fs.writeFileSync("/workspace/precious.txt", "keep me " + "x".repeat(1000))');
      const precious = join(lab.workspaceOf(lab.users.alice), "precious.txt");
      const before = sha(precious);
      const freeBefore = statfsSync(lab.dataDir).bavail * statfsSync(lab.dataDir).bsize;
      const r = await alice.run(`
        import fs from "node:fs";
        let written = 0, n = 0; const chunk = Buffer.alloc(1 << 20, 7); let err = "none";
        try { for (;;) { fs.writeFileSync("/workspace/fill-" + n++, Buffer.alloc(0)); const fd = fs.openSync("/workspace/fill-" + (n - 1), "w"); for (let i = 0; i < 32; i++) { fs.writeSync(fd, chunk); written += chunk.length; } fs.closeSync(fd); } } catch (e) { err = e.code; }
        console.log(err, Math.round(written / 1048576));
        for (let i = 0; i < n; i++) fs.rmSync("/workspace/fill-" + i, { force: true });`, { timeoutMs: 20_000 });
      const freeAfterFill = freeBefore - statfsSync(lab.dataDir).bavail * statfsSync(lab.dataDir).bsize;
      const image = join(lab.dataDir, "volumes", `${lab.users.alice}.ext4`);
      const imageBytes = statSync(image).blocks * 512;
      const quota = lab.quotaMiB * 1024 * 1024;
      const [code, mib] = r.stdout.trim().split(" ");
      const intact = sha(precious) === before;
      return {
        observed: `${code} after ${mib} MiB; volume image holds ${Math.round(imageBytes / 1048576)} MiB of ${lab.quotaMiB}; precious file intact=${intact}; host free-space change ${Math.round(freeAfterFill / 1048576)} MiB`,
        pass: (code === "ENOSPC" || code === "EDQUOT") && imageBytes <= quota && intact,
      };
    },
  },
  {
    name: "workspace fill (inodes)",
    expected: "ENOSPC at the inode quota; saved files intact",
    async run({ alice, lab }) {
      const precious = join(lab.workspaceOf(lab.users.alice), "precious.txt");
      const before = existsSync(precious) ? sha(precious) : "";
      const r = await alice.run(`
        import fs from "node:fs";
        fs.mkdirSync("/workspace/inodes", { recursive: true });
        let n = 0, err = "none";
        try { for (; n < 100000; n++) fs.writeFileSync("/workspace/inodes/f" + n, ""); } catch (e) { err = e.code; }
        console.log(err, n);
        fs.rmSync("/workspace/inodes", { recursive: true, force: true });`, { timeoutMs: 20_000 });
      const [code, n] = r.stdout.trim().split(" ");
      const intact = !before || sha(precious) === before;
      return { observed: `${code} after ${n} files; precious intact=${intact}`, pass: (code === "ENOSPC" || code === "EDQUOT") && Number(n) <= 4096 && intact };
    },
  },
  {
    name: "sparse file (100 GiB)",
    expected: "refused: EFBIG (fsize ulimit) or ENOSPC",
    async run({ alice }) {
      const r = await alice.run('import fs from "node:fs"; try { fs.truncateSync(fs.openSync("/workspace/sparse", "w") && "/workspace/sparse", 100 * 2 ** 30); console.log("created", fs.statSync("/workspace/sparse").size) } catch (e) { console.log("error " + e.code) } finally { fs.rmSync("/workspace/sparse", { force: true }) }');
      const o = r.stdout.trim() || `killed (exit ${r.exitCode})`;
      return { observed: o, pass: /^error (EFBIG|ENOSPC|EINVAL)$/.test(o) || r.exitCode === 153 /* SIGXFSZ */ };
    },
  },
  {
    name: "CPU spin with a SIGTERM handler",
    expected: "killed at the deadline (SIGKILL), timedOut",
    async run({ alice }) {
      const started = Date.now();
      const r = await alice.run('process.on("SIGTERM", () => {}); process.on("SIGINT", () => {}); while (true) {}', { timeoutMs: 3_000 });
      const took = Date.now() - started;
      return { observed: `timedOut=${r.timedOut} durationMs=${r.durationMs} call took ${took} ms`, pass: r.timedOut && r.durationMs < 3_000 + 2_000 };
    },
  },
  {
    name: "detached child still running at the deadline",
    expected: "container and child gone after the run",
    async run({ alice, lab }) {
      const r = await alice.run('import { spawn } from "node:child_process"; const c = spawn("/usr/local/bin/node", ["-e", "setInterval(() => {}, 1000)"], { detached: true, stdio: "ignore" }); c.unref(); console.log("child", c.pid); while (true) {}', { timeoutMs: 3_000 });
      const left = await waitForNoContainers({ label: LABEL.user, value: lab.users.alice }, 10_000);
      return { observed: `timedOut=${r.timedOut}; containers left: ${left.length}`, pass: r.timedOut && left.length === 0 };
    },
  },
  {
    name: "output flood (1 GB)",
    expected: "cut at the cap, flagged; the server keeps serving",
    async run({ alice }) {
      const r = await alice.run('const chunk = "x".repeat(1 << 20); for (let i = 0; i < 1024; i++) process.stdout.write(chunk);', { timeoutMs: 20_000 });
      const after = await alice.run("console.log('alive')");
      return { observed: `stdout ${r.stdout.length} chars, truncated=${r.stdoutTruncated}, timedOut=${r.timedOut}; next run: ${after.stdout.trim()}`, pass: r.stdoutTruncated && r.stdout.length <= 64 * 1024 && after.stdout === "alive\n" };
    },
  },
  {
    name: "output: one 50 MB line without a newline",
    expected: "cut at the cap, flagged",
    async run({ alice }) {
      const r = await alice.run('process.stdout.write("y".repeat(50 * 1024 * 1024))');
      return { observed: `stdout ${r.stdout.length} chars, truncated=${r.stdoutTruncated}`, pass: r.stdoutTruncated && r.stdout.length === 64 * 1024 };
    },
  },
  {
    name: "output: invalid UTF-8",
    expected: "returned with U+FFFD, no crash",
    async run({ alice }) {
      const r = await alice.run("process.stdout.write(Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80, 0x41]))");
      return { observed: JSON.stringify(r.stdout), pass: r.stdout.endsWith("A") && r.stdout.includes("\uFFFD") };
    },
  },
  {
    name: "output: fake JSON-RPC frames on stdout",
    expected: "returned as text inside the result; the client sees one normal response",
    async run({ alice }) {
      const fake = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pwned"}]}}';
      const r = await alice.run(`console.log(${JSON.stringify(fake)}); process.stdout.write("\\n" + ${JSON.stringify(fake)} + "\\n")`);
      return { observed: `stdout holds ${r.stdout.split("pwned").length - 1} fake frames as text`, pass: r.stdout.includes(fake) && r.exitCode === 0 };
    },
  },
  // ---- network
  {
    name: "DNS lookup",
    expected: "fails",
    async run({ alice }) {
      const r = await alice.run('import dns from "node:dns/promises"; console.log(await dns.lookup("example.com").then(() => "resolved", (e) => "error " + e.code))');
      return { observed: r.stdout.trim(), pass: /^error /.test(r.stdout.trim()) };
    },
  },
  connectAttack("1.1.1.1", 443, "TCP to a public address"),
  connectAttack("169.254.169.254", 80, "cloud metadata (169.254.169.254)"),
  probeAttack("socket-raw-inet", "raw socket (AF_INET, SOCK_RAW)"),
  probeAttack("socket-packet", "packet socket (AF_PACKET)"),
  probeAttack("socket-vsock", "vsock to the hypervisor (AF_VSOCK)"),
  // ---- kernel interfaces
  readAttack("/proc/kcore", "kernel memory"),
  readAttack("/proc/keys", "keyring contents"),
  readAttack("/sys/firmware", "firmware tables"),
  writeAttack("/proc/sys/kernel/hostname"),
  writeAttack("/proc/sysrq-trigger"),
  writeAttack("/sys/fs/cgroup/pids.max"),
  // ---- syscalls
  probeAttack("mount"),
  probeAttack("unshare"),
  probeAttack("setns"),
  probeAttack("keyctl"),
  probeAttack("bpf"),
  probeAttack("userfaultfd"),
  probeAttack("io_uring_setup"),
  probeAttack("ptrace"),
  probeAttack("perf_event_open"),
  probeAttack("clone-newns", "clone with CLONE_NEWNS"),
  // ---- privilege and host secrets
  {
    name: "setuid/setgid binaries present",
    expected: "none in the image",
    async run({ alice }) {
      const r = await alice.run(`
        import fs from "node:fs"; import path from "node:path";
        const found: string[] = [];
        const walk = (d: string) => { let es: fs.Dirent[] = []; try { es = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
          for (const e of es) { const p = path.join(d, e.name); if (e.isDirectory()) walk(p); else if (e.isFile()) { try { if (fs.statSync(p).mode & 0o6000) found.push(p); } catch {} } } };
        for (const d of fs.readdirSync("/")) if (!["proc", "sys", "dev", "workspace", "skills"].includes(d)) walk("/" + d);
        console.log(JSON.stringify(found));`);
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "[]" };
    },
  },
  {
    name: "Docker socket or DOCKER_HOST reachable",
    expected: "neither",
    async run({ alice }) {
      const r = await alice.run('import fs from "node:fs"; console.log(["/var/run/docker.sock", "/run/docker.sock", "/var/run/containerd/containerd.sock"].filter((p) => fs.existsSync(p)).join(",") || "none", process.env.DOCKER_HOST ?? "unset")');
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "none unset" };
    },
  },
  {
    name: "canary secret from the server's environment",
    expected: "not visible in env, /proc/*/environ or files",
    async run({ alice, lab }) {
      const r = await alice.run(`
        import fs from "node:fs";
        const c = ${JSON.stringify(lab.canary)}; const hits: string[] = [];
        if (JSON.stringify(process.env).includes(c)) hits.push("env");
        for (const p of fs.readdirSync("/proc").filter((x) => /^\\d+$/.test(x))) { try { if (fs.readFileSync("/proc/" + p + "/environ", "latin1").includes(c)) hits.push(p); } catch {} }
        for (const f of ["/proc/1/cmdline", "/etc/hostname", "/etc/hosts"]) { try { if (fs.readFileSync(f, "latin1").includes(c)) hits.push(f); } catch {} }
        console.log(hits.length ? hits.join(",") : "not found");`);
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "not found" };
    },
  },
  // ---- the bridge's tokens
  {
    name: "callback token replayed after its run",
    expected: "401, logged",
    async run({ alice }) {
      await alice.run('import fs from "node:fs"; fs.writeFileSync("/workspace/old-token", process.env.CODEBOX_BRIDGE_TOKEN ?? "")');
      const r = await alice.run(bridgeCall('"Bearer " + (await import("node:fs")).readFileSync("/workspace/old-token", "utf8")'));
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "401 expired" };
    },
  },
  {
    name: "callback token of another user's live run",
    expected: "refused: 403 (same server) or 401 (each user's own server process), logged",
    async run({ alice, bob, lab }) {
      const tokenFile = join(lab.workspaceOf(lab.users.alice), "live-token");
      const a = alice.run('import fs from "node:fs"; fs.writeFileSync("/workspace/live-token", process.env.CODEBOX_BRIDGE_TOKEN ?? ""); await new Promise((r) => setTimeout(r, 8000));');
      const deadline = Date.now() + 15_000;
      while (!existsSync(tokenFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const stolen = readFileSync(tokenFile, "utf8");
      const b = await bob.run(bridgeCall(JSON.stringify(`Bearer ${stolen}`)));
      await a;
      // Here alice and bob each have their own stdio server, so bob's server has never seen the
      // token (401 forged); on one multi-user server it is recognised as another run's (403).
      return { observed: b.stdout.trim(), pass: b.stdout.trim() === "403 other-run" || b.stdout.trim() === "401 forged" };
    },
  },
  {
    name: "forged callback token",
    expected: "401",
    async run({ alice }) {
      const r = await alice.run(bridgeCall('"Bearer " + "f".repeat(43)'));
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "401 forged" };
    },
  },
  // ---- host-side file safety
  {
    name: "symlinks planted in /workspace and /skills to host files, then host-side operations",
    expected: "host files never read, written, chowned or deleted through the links",
    async run({ alice, lab }) {
      const targets = ["/etc/passwd", "/etc/hostname"];
      const before = targets.map(fingerprint);
      const r = await alice.run(`
        import fs from "node:fs";
        for (const [p, t] of [["/workspace/passwd", "/etc/passwd"], ["/skills/hostname", "/etc/hostname"], ["/workspace/root", "/"], ["/skills/link-dir", "/etc"]]) { try { fs.rmSync(p, { force: true }); fs.symlinkSync(t, p); } catch (e) { console.log("symlink", e.code); } }
        console.log("planted");`);
      // Host-side operations on the user's directories: a new server start (creates/chowns dirs),
      // a run (ensure + quota + bridge), the soft-quota accounting walk, and doctor.
      const again = await alice.run('import fs from "node:fs"; console.log(fs.readlinkSync("/workspace/passwd"))');
      const { usage } = await import("../../src/stores/volumes.js");
      await usage(lab.workspaceOf(lab.users.alice));
      const s2 = await lab.session(lab.users.alice);
      await s2.run("console.log(1)");
      await s2.close();
      const after = targets.map(fingerprint);
      const unchanged = before.every((b, i) => b === after[i]);
      const stillLinks = lstatSync(join(lab.workspaceOf(lab.users.alice), "passwd")).isSymbolicLink();
      return { observed: `${r.stdout.trim()}; link still a link=${stillLinks}; ${again.stdout.trim()}; host files unchanged=${unchanged}`, pass: unchanged && stillLinks };
    },
  },
  {
    name: "hardlink to a host file planted in /workspace",
    expected: "cannot be made (host files are not visible); host file unchanged",
    async run({ alice }) {
      const before = fingerprint("/etc/passwd");
      const r = await alice.run('import fs from "node:fs"; for (const t of ["/etc/passwd", "/usr/local/bin/node", "/opt/codebox/runner.mjs"]) { try { fs.linkSync(t, "/workspace/hl-" + t.split("/").pop()); console.log("linked", t) } catch (e) { console.log(t, e.code) } }');
      const unchanged = fingerprint("/etc/passwd") === before;
      // Links to files inside the container (not host files) may succeed or not; none reaches the host.
      return { observed: `${r.stdout.trim().replace(/\n/g, "; ")}; /etc/passwd unchanged=${unchanged}`, pass: unchanged && !r.stdout.includes("linked /etc/passwd") };
    },
  },
  {
    name: "a directory swapped for a symlink during a run",
    expected: "the next run refuses to mount through it or runs unharmed; host unchanged",
    async run({ alice, lab }) {
      const before = fingerprint("/etc/passwd");
      const r = await alice.run('import fs from "node:fs"; fs.mkdirSync("/workspace/sub", { recursive: true }); fs.rmSync("/workspace/sub", { recursive: true }); fs.symlinkSync("/etc", "/workspace/sub"); console.log("swapped")');
      await alice.run('console.log("next")');
      return { observed: `${r.stdout.trim()}; /etc/passwd unchanged=${fingerprint("/etc/passwd") === before}; sub is link=${lstatSync(join(lab.workspaceOf(lab.users.alice), "sub")).isSymbolicLink()}`, pass: fingerprint("/etc/passwd") === before };
    },
  },
  {
    name: "path traversal in user-supplied names (user id, server name)",
    expected: "refused at start-up with the key named",
    async run({ lab }) {
      const { execFileSync } = await import("node:child_process");
      const results: string[] = [];
      for (const [env, value] of [["CODEBOX_USER_ID", "../../etc"], ["CODEBOX_USER_ID", "a/../../b"], ["CODEBOX_USER_ID", ".."]] as const) {
        try {
          execFileSync(process.execPath, [join(repoRoot, "dist", "cli.js"), "doctor"], { env: { ...lab.envFor("x"), [env]: value }, stdio: "pipe" });
          results.push(`${value}: accepted`);
        } catch (e) {
          const err = String((e as { stderr?: Buffer }).stderr ?? "");
          results.push(`${value}: ${/"userId"/.test(err) ? "refused" : "failed otherwise"}`);
        }
      }
      const cfg = join(lab.dataDir, "..", "bad-server.json");
      writeFileSync(cfg, JSON.stringify({ mcpServers: { "../../etc": { command: "true" } } }));
      try {
        execFileSync(process.execPath, [join(repoRoot, "dist", "cli.js"), "doctor", "--config", cfg], { env: lab.envFor("x"), stdio: "pipe" });
        results.push("server name: accepted");
      } catch (e) {
        results.push(`server name: ${/mcpServers/.test(String((e as { stderr?: Buffer }).stderr ?? "")) ? "refused" : "failed otherwise"}`);
      }
      return { observed: results.join("; "), pass: results.every((r) => r.endsWith("refused")) };
    },
  },
  {
    name: "write to the generated /servers code",
    expected: "EROFS (gVisor reports a read-only mount as EACCES)",
    async run({ alice, lab }) {
      const r = await alice.run('import fs from "node:fs"; try { fs.writeFileSync("/servers/client.ts", "export {}"); console.log("written") } catch (e) { console.log("error " + e.code) }');
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "error EROFS" || (lab.runtime === "runsc" && r.stdout.trim() === "error EACCES") };
    },
  },
  {
    name: "read another user's files",
    expected: "not visible",
    async run({ alice, bob }) {
      await bob.run('import fs from "node:fs"; fs.writeFileSync("/workspace/bob-secret.txt", "bob only")');
      const r = await alice.run('import fs from "node:fs"; import path from "node:path"; const hits: string[] = []; const walk = (d: string) => { let es: fs.Dirent[] = []; try { es = fs.readdirSync(d, { withFileTypes: true }) } catch { return } for (const e of es) { const p = path.join(d, e.name); if (e.name === "bob-secret.txt") hits.push(p); if (e.isDirectory() && !p.startsWith("/proc") && !p.startsWith("/sys")) walk(p) } }; walk("/"); console.log(hits.length ? hits.join(",") : "not found")');
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "not found" };
    },
  },
  // ---- lifecycle and load
  {
    name: "server killed with SIGKILL mid-run, then restarted",
    expected: "no container left",
    async run({ lab }) {
      const carol = await lab.session(lab.users.carol);
      const pending = carol.run("await new Promise((r) => setTimeout(r, 60_000))").catch(() => undefined);
      const deadline = Date.now() + 20_000;
      while ((await ourContainers({ label: LABEL.user, value: lab.users.carol })).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const during = (await ourContainers({ label: LABEL.user, value: lab.users.carol })).length;
      process.kill(carol.pid!, "SIGKILL");
      await pending;
      await new Promise((r) => setTimeout(r, 500));
      const orphaned = (await ourContainers({ label: LABEL.user, value: lab.users.carol })).length;
      const restarted = await lab.session(lab.users.carol);
      const left = await waitForNoContainers({ label: LABEL.user, value: lab.users.carol }, 20_000);
      await restarted.close();
      return { observed: `containers during run ${during}, after SIGKILL ${orphaned}, after restart ${left.length}`, pass: during === 1 && left.length === 0 };
    },
  },
  {
    name: "more concurrent runs than the limit (2 running + 2 queued)",
    expected: "the rest refused clearly (busy, retry); all others finish; engine responsive",
    async run({ alice }) {
      const calls = [...Array(8)].map(() => alice.call("execute_code", { code: "await new Promise((r) => setTimeout(r, 1500)); console.log('done')" }));
      const t = Date.now();
      await docker.ping();
      const pingMs = Date.now() - t;
      const results = await Promise.all(calls);
      const busy = results.filter((r) => r.isError && JSON.stringify(r.content).includes("CODEBOX_BUSY")).length;
      const done = results.filter((r) => !r.isError && (r.structuredContent as { stdout?: string }).stdout === "done\n").length;
      return { observed: `${done} finished, ${busy} refused busy, engine ping ${pingMs} ms`, pass: busy >= 1 && done + busy === 8 && done >= 4 && pingMs < 5_000 };
    },
  },
];

function bridgeCall(authExpr: string): string {
  return `
    import { request } from "node:http";
    const auth = ${authExpr};
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ socketPath: "/run/codebox/mcp.sock", path: "/internal/mcp-call", method: "POST", headers: { "content-type": "application/json", authorization: auth } }, (r) => {
        let b = ""; r.on("data", (c) => (b += c)); r.on("end", () => resolve({ status: r.statusCode ?? 0, body: b }));
      });
      req.on("error", reject); req.end(JSON.stringify({ server: "rows", tool: "echo", arguments: { message: "x" } }));
    });
    console.log(res.status, JSON.parse(res.body).reason ?? "ok");`;
}

export const ATTACK_COUNT = ATTACKS.length;

export function defineRedTeam(runtime: Runtime): void {
  describe(`red team (${runtime})`, () => {
    let lab: Lab;
    const ctx = {} as Ctx;
    const rows: Row[] = [];

    beforeAll(async () => {
      if (runtime === "runsc") {
        const info = (await docker.info()) as { Runtimes?: Record<string, unknown> };
        expect(Object.keys(info.Runtimes ?? {}), "runsc must be registered with the engine: run scripts/setup.sh").toContain("runsc");
      }
      lab = makeLab(runtime);
      ctx.lab = lab;
      ctx.alice = await lab.session(lab.users.alice);
      ctx.bob = await lab.session(lab.users.bob);
      await ctx.alice.run("console.log('ready')");
      installProbe(lab, lab.users.alice, SANDBOX_UID);
    });

    afterAll(async () => {
      await ctx.alice?.close();
      await ctx.bob?.close();
      const table = renderTable(runtime, rows);
      mkdirSync(join(repoRoot, "test-results"), { recursive: true });
      writeFileSync(join(repoRoot, "test-results", `red-team-${runtime}.md`), table);
      process.stderr.write(`\n${table}`);
      for (const user of Object.values(lab?.users ?? {})) expect(await waitForNoContainers({ label: LABEL.user, value: user })).toEqual([]);
      if (lab) removeDir(join(lab.dataDir, ".."));
    });

    it("has at least 30 attacks", () => {
      expect(ATTACKS.length).toBeGreaterThanOrEqual(30);
    });

    it("sandbox_info reports what the suite measures from inside", async () => {
      const info = (await ctx.alice.call("sandbox_info", {})).structuredContent as Record<string, any>;
      const measured = JSON.parse(
        (
          await ctx.alice.run(`
            import fs from "node:fs"; import os from "node:os"; import dns from "node:dns/promises";
            const st = fs.readFileSync("/proc/self/status", "utf8");
            const f = (k: string) => st.split("\\n").find((l) => l.startsWith(k + ":"))?.split(":")[1]?.trim() ?? null;
            let rootWritable = true; try { fs.writeFileSync("/etc/probe", "x") } catch { rootWritable = false }
            const dnsWorks = await dns.lookup("example.com").then(() => true, () => false);
            console.log(JSON.stringify({ uid: process.getuid(), capEff: f("CapEff"), seccomp: Number(f("Seccomp")), rootWritable, interfaces: Object.keys(os.networkInterfaces()), dnsWorks, docker: fs.existsSync("/var/run/docker.sock") }));`)
        ).stdout,
      ) as Record<string, unknown>;
      expect(info.runtime).toBe(runtime);
      expect(info.uid).toBe(measured.uid);
      expect(info.capEff).toBe(measured.capEff);
      expect(info.seccompMode).toBe(measured.seccomp);
      expect(info.readOnlyRoot).toBe(!measured.rootWritable);
      expect(info.network.interfaces).toEqual(measured.interfaces);
      expect(info.network.dns === "resolved").toBe(measured.dnsWorks);
      expect(info.dockerSocket).toBe(measured.docker);
      expect(info.writable).toEqual({ workspace: true, skills: true, tmp: true, servers: false });
    });

    for (const attack of ATTACKS) {
      it(attack.name, async () => {
        let row: Row;
        try {
          const { observed, pass } = await attack.run(ctx);
          row = { attack: attack.name, expected: attack.expected, observed, pass };
        } catch (err) {
          row = { attack: attack.name, expected: attack.expected, observed: `test error: ${String(err).slice(0, 300)}`, pass: false };
        }
        rows.push(row);
        expect(row.pass, `${row.attack}: expected ${row.expected}, observed ${row.observed}`).toBe(true);
      });
    }
  });
}
