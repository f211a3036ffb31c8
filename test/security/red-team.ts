import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { docker, ourContainers, removeDir, repoRoot, waitForNoContainers } from "../helpers.js";
import { type Flavor, type Lab, type Row, type Runtime, type UserSession, installProbe, makeLab, renderTable } from "./harness.js";

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
  /** Attacks on the server itself (no code involved) run once, in the Node suite. */
  serverOnly?: boolean;
  run(ctx: Ctx): Promise<{ observed: string; pass: boolean }>;
}

/** Python source written indented inside a template literal, with the indentation removed. */
function py(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = strings.reduce((acc, s, i) => acc + s + (i < values.length ? String(values[i]) : ""), "");
  const lines = text.replace(/^\n/, "").split("\n");
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length));
  return lines.map((l) => l.slice(indent)).join("\n");
}

/** The attack's code for the suite's language: JavaScript/TypeScript (Node, Bun) or Python. */
function pick(ctx: Ctx, variants: { js: string; py: string }): string {
  return ctx.lab.flavor === "python" ? variants.py : variants.js;
}

/** Code that prints one line. */
function say(ctx: Ctx, text: string): string {
  return pick(ctx, { js: `console.log(${JSON.stringify(text)})`, py: `print(${JSON.stringify(text)})` });
}

/** The errno name of an OSError, in Python attacks. */
const PY_ERRNO = "import errno\ndef ecode(e):\n    return errno.errorcode.get(e.errno, str(e.errno))\n";

const probeAttack = (syscall: string, label = syscall): Attack => ({
  name: `syscall ${label}`,
  expected: "EPERM from the seccomp filter",
  async run(ctx) {
    const r = await ctx.alice.run(
      pick(ctx, {
        js: `import { execFileSync } from "node:child_process"; console.log(execFileSync("/workspace/syscall-probe", [${JSON.stringify(syscall)}], { encoding: "utf8" }).trim())`,
        py: `import subprocess\nprint(subprocess.run(["/workspace/syscall-probe", ${JSON.stringify(syscall)}], capture_output=True, text=True).stdout.strip())`,
      }),
    );
    const observed = r.stdout.trim() || r.stderr.trim();
    return { observed, pass: new RegExp(`^${syscall} -1 EPERM$`).test(observed) };
  },
});

const readAttack = (path: string, what: string): Attack => ({
  name: `read ${path}`,
  expected: `no ${what}: error or empty`,
  async run(ctx) {
    const r = await ctx.alice.run(pick(ctx, { py: PY_ERRNO + py`
      import os
      p = ${JSON.stringify(path)}
      try:
          if os.path.isdir(p):
              out = "dir entries: %d" % len(os.listdir(p))
          else:
              fd = os.open(p, os.O_RDONLY)
              out = "read bytes: %d" % len(os.read(fd, 4096))
      except OSError as e:
          out = "error " + ecode(e)
      print(out)`, js: `
      import fs from "node:fs";
      let out: string;
      try {
        const st = fs.statSync(${JSON.stringify(path)});
        if (st.isDirectory()) out = "dir entries: " + fs.readdirSync(${JSON.stringify(path)}).length;
        else { const fd = fs.openSync(${JSON.stringify(path)}, "r"); const b = Buffer.alloc(4096); const n = fs.readSync(fd, b, 0, 4096, 0); out = "read bytes: " + n; }
      } catch (e) { out = "error " + e.code; }
      console.log(out);` }));
    const observed = r.stdout.trim();
    return { observed, pass: /^error |^read bytes: 0$|^dir entries: 0$/.test(observed) };
  },
});

const writeAttack = (path: string): Attack => ({
  name: `write ${path}`,
  expected: "refused (EROFS, EACCES, EPERM or ENOENT)",
  async run(ctx) {
    const r = await ctx.alice.run(
      pick(ctx, {
        js: `import fs from "node:fs"; try { fs.writeFileSync(${JSON.stringify(path)}, "1"); console.log("written") } catch (e) { console.log("error " + e.code) }`,
        py: PY_ERRNO + py`
          try:
              with open(${JSON.stringify(path)}, "w") as f:
                  f.write("1")
              print("written")
          except OSError as e:
              print("error " + ecode(e))`,
      }),
    );
    const observed = r.stdout.trim();
    return { observed, pass: /^error (EROFS|EACCES|EPERM|ENOENT)$/.test(observed) };
  },
});

const connectAttack = (host: string, port: number, label: string): Attack => ({
  name: label,
  expected: "no connection",
  async run(ctx) {
    const r = await ctx.alice.run(pick(ctx, { py: PY_ERRNO + py`
      import socket
      try:
          socket.create_connection((${JSON.stringify(host)}, ${port}), timeout=3).close()
          print("connected")
      except socket.timeout:
          print("timeout")
      except OSError as e:
          print("error " + ecode(e))`, js: `
      import net from "node:net";
      const res = await new Promise((resolve) => {
        const s = net.connect({ host: ${JSON.stringify(host)}, port: ${port}, timeout: 3000 });
        s.on("connect", () => resolve("connected")); s.on("timeout", () => resolve("timeout")); s.on("error", (e: any) => resolve("error " + e.code));
      });
      console.log(res);` }));
    const observed = r.stdout.trim();
    return { observed, pass: observed !== "connected" && observed.length > 0 };
  },
});

/** CONNECT through the run's egress proxy (the loopback forwarder, or its socket) to each target; the status line's code per target. */
const proxyAttack = (name: string, targets: string[], opts: { allowHosts?: string[]; via: "forwarder" | "socket" }): Attack => ({
  name,
  expected: "refused by the proxy (403) or no proxy at all; nothing reached",
  async run(ctx) {
    const r = await ctx.alice.run(
      pick(ctx, {
        js: `
      import net from "node:net";
      const out: string[] = [];
      for (const t of ${JSON.stringify(targets)}) {
        out.push(t + "=" + await new Promise((resolve) => {
          const s = ${opts.via === "forwarder" ? 'net.connect(3128, "127.0.0.1")' : 'net.connect("/run/codebox-egress/proxy.sock")'};
          let buf = "";
          s.setTimeout(5000, () => { resolve("timeout"); s.destroy(); });
          s.on("connect", () => s.write("CONNECT " + t + " HTTP/1.1\\r\\nhost: " + t + "\\r\\n\\r\\n"));
          s.on("data", (d) => { buf += d; if (buf.includes("\\r\\n")) { resolve(buf.split(" ")[1]); s.destroy(); } });
          s.on("error", (e: any) => resolve(e.code));
        }));
      }
      console.log(out.join(" "), process.env.HTTP_PROXY ?? "no-proxy-env");`,
        py: PY_ERRNO + py`
      import os, socket
      out = []
      for t in ${JSON.stringify(targets)}:
          try:
              s = ${opts.via === "forwarder" ? 'socket.create_connection(("127.0.0.1", 3128), timeout=5)' : "socket.socket(socket.AF_UNIX)"}
              ${opts.via === "forwarder" ? "" : 's.settimeout(5); s.connect("/run/codebox-egress/proxy.sock")'}
              s.sendall(("CONNECT " + t + " HTTP/1.1\\r\\nhost: " + t + "\\r\\n\\r\\n").encode())
              out.append(t + "=" + s.recv(200).decode(errors="replace").split(" ")[1])
              s.close()
          except OSError as e:
              out.append(t + "=" + ecode(e))
      print(" ".join(out), os.environ.get("HTTP_PROXY", "no-proxy-env"))`,
      }),
      opts.allowHosts ? { allowHosts: opts.allowHosts } : {},
    );
    const observed = r.stdout.trim() || `no output; stderr: ${r.stderr.trim().slice(-300)}`;
    const answers = new Map(observed.split(" ").map((tok) => [tok.slice(0, tok.lastIndexOf("=")), tok.slice(tok.lastIndexOf("=") + 1)]));
    const codes = targets.map((t) => answers.get(t));
    return { observed, pass: codes.every((c) => c !== undefined && c !== "200") };
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
    async run(ctx) {
      const { alice, lab } = ctx;
      const r = await alice.run(
        pick(ctx, {
          js: `
        import { spawn } from "node:child_process";
        let ok = 0, failed = 0;
        for (let i = 0; i < 150; i++) {
          try { const c = spawn(process.execPath, ["-e", "setInterval(()=>{},1000)"], { detached: true, stdio: "ignore" }); c.on("error", () => failed++); ok++; } catch { failed++; }
          await new Promise((r) => setImmediate(r));
        }
        await new Promise((r) => setTimeout(r, 2000));
        console.log(JSON.stringify({ ok, failed }));`,
          py: py`
            import json, subprocess, sys, time
            ok = failed = 0
            children = []
            for i in range(150):
                try:
                    children.append(subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    ok += 1
                except OSError:
                    failed += 1
            time.sleep(2)
            print(json.dumps({"ok": ok, "failed": failed}))`,
        }),
        { timeoutMs: 15_000 },
      );
      const after = await alice.run(say(ctx, "alive"));
      let facts = { failed: -1 };
      try {
        facts = JSON.parse(r.stdout) as { failed: number };
      } catch {
        // killed before it printed
      }
      const sandboxStopped = lab.runtime === "runsc" && r.exitCode !== 0;
      return { observed: `${r.stdout.trim() || (r.timedOut ? "timed out" : `exit ${r.exitCode}`)}; oomKilled=${r.oomKilled}; next run: ${after.stdout.trim()}`, pass: after.stdout === "alive\n" && (facts.failed > 0 || r.timedOut || r.oomKilled || sandboxStopped) };
    },
  },
  {
    name: "memory bomb (heap objects)",
    expected: "oomKilled",
    async run(ctx) {
      const r = await ctx.alice.run(pick(ctx, { js: "const keep: number[][] = []; while (true) keep.push(new Array(1e6).fill(1));", py: "keep = []\nwhile True:\n    keep.append([1] * 1000000)" }));
      return { observed: `oomKilled=${r.oomKilled} exit=${r.exitCode}`, pass: r.oomKilled };
    },
  },
  {
    name: "memory bomb (native buffers)",
    expected: "oomKilled",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: "const bufs: Buffer[] = []; for (let i = 0; i < 64; i++) bufs.push(Buffer.alloc(64 * 1024 * 1024, 1)); console.log(bufs.length)",
          py: "bufs = [bytearray(b'\\x01') * (64 * 1024 * 1024) for _ in range(64)]\nprint(len(bufs))",
        }),
      );
      return { observed: `oomKilled=${r.oomKilled} exit=${r.exitCode} stdout=${r.stdout.trim()}`, pass: r.oomKilled };
    },
  },
  {
    name: "/tmp fill",
    expected: "ENOSPC at the tmpfs size (64 MiB)",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: `
        import fs from "node:fs";
        let written = 0; const chunk = Buffer.alloc(1 << 20, 1);
        try { const fd = fs.openSync("/tmp/fill", "w"); for (;;) { fs.writeSync(fd, chunk); written += chunk.length; if (written > 1 << 30) break; } } catch (e) { console.log(e.code, Math.round(written / 1048576)); }`,
          py: PY_ERRNO + py`
            written = 0
            chunk = b"\\x01" * (1 << 20)
            try:
                with open("/tmp/fill", "wb", buffering=0) as f:
                    while written <= 1 << 30:
                        written += f.write(chunk)
            except OSError as e:
                print(ecode(e), round(written / 1048576))`,
        }),
      );
      const [code, mib] = r.stdout.trim().split(" ");
      return { observed: r.stdout.trim() || `exit ${r.exitCode} oom=${r.oomKilled}`, pass: (code === "ENOSPC" && Number(mib) <= 64) || r.oomKilled };
    },
  },
  {
    name: "/dev/shm fill",
    expected: "no /dev/shm to fill",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; try { fs.writeFileSync("/dev/shm/x", Buffer.alloc(1 << 20)); console.log("written") } catch (e) { console.log("error " + e.code) }',
          py: PY_ERRNO + py`
            try:
                with open("/dev/shm/x", "wb") as f:
                    f.write(bytes(1 << 20))
                print("written")
            except OSError as e:
                print("error " + ecode(e))`,
        }),
      );
      return { observed: r.stdout.trim(), pass: /^error /.test(r.stdout.trim()) };
    },
  },
  {
    name: "workspace fill (bytes)",
    expected: "ENOSPC at the quota; host disk use ≤ quota; saved files intact",
    async run(ctx) {
      const { alice, lab } = ctx;
      await alice.run(pick(ctx, { js: 'import fs from "node:fs"; fs.writeFileSync("/workspace/precious.txt", "keep me " + "x".repeat(1000))', py: 'open("/workspace/precious.txt", "w").write("keep me " + "x" * 1000)' }));
      const precious = join(lab.workspaceOf(lab.users.alice), "precious.txt");
      const before = sha(precious);
      const freeBefore = statfsSync(lab.dataDir).bavail * statfsSync(lab.dataDir).bsize;
      const r = await alice.run(
        pick(ctx, {
          js: `
        import fs from "node:fs";
        let written = 0, n = 0; const chunk = Buffer.alloc(1 << 20, 7); let err = "none";
        try { for (;;) { fs.writeFileSync("/workspace/fill-" + n++, Buffer.alloc(0)); const fd = fs.openSync("/workspace/fill-" + (n - 1), "w"); for (let i = 0; i < 32; i++) { fs.writeSync(fd, chunk); written += chunk.length; } fs.closeSync(fd); } } catch (e) { err = e.code; }
        console.log(err, Math.round(written / 1048576));
        for (let i = 0; i < n; i++) fs.rmSync("/workspace/fill-" + i, { force: true });`,
          py: PY_ERRNO + py`
            import os
            written = n = 0
            chunk = b"\\x07" * (1 << 20)
            err = "none"
            try:
                while True:
                    n += 1
                    with open("/workspace/fill-%d" % (n - 1), "wb", buffering=0) as f:
                        for i in range(32):
                            written += f.write(chunk)
            except OSError as e:
                err = ecode(e)
            print(err, round(written / 1048576))
            for i in range(n):
                try:
                    os.unlink("/workspace/fill-%d" % i)
                except OSError:
                    pass`,
        }),
        { timeoutMs: 20_000 },
      );
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
    async run(ctx) {
      const { alice, lab } = ctx;
      const precious = join(lab.workspaceOf(lab.users.alice), "precious.txt");
      const before = existsSync(precious) ? sha(precious) : "";
      const r = await alice.run(
        pick(ctx, {
          js: `
        import fs from "node:fs";
        fs.mkdirSync("/workspace/inodes", { recursive: true });
        let n = 0, err = "none";
        try { for (; n < 100000; n++) fs.writeFileSync("/workspace/inodes/f" + n, ""); } catch (e) { err = e.code; }
        console.log(err, n);
        fs.rmSync("/workspace/inodes", { recursive: true, force: true });`,
          py: PY_ERRNO + py`
            import os, shutil
            os.makedirs("/workspace/inodes", exist_ok=True)
            n, err = 0, "none"
            try:
                while n < 100000:
                    open("/workspace/inodes/f%d" % n, "w").close()
                    n += 1
            except OSError as e:
                err = ecode(e)
            print(err, n)
            shutil.rmtree("/workspace/inodes", ignore_errors=True)`,
        }),
        { timeoutMs: 20_000 },
      );
      const [code, n] = r.stdout.trim().split(" ");
      const intact = !before || sha(precious) === before;
      return { observed: `${code} after ${n} files; precious intact=${intact}`, pass: (code === "ENOSPC" || code === "EDQUOT") && Number(n) <= 4096 && intact };
    },
  },
  {
    name: "sparse file (100 GiB)",
    expected: "refused: EFBIG (fsize ulimit) or ENOSPC",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; try { fs.truncateSync(fs.openSync("/workspace/sparse", "w") && "/workspace/sparse", 100 * 2 ** 30); console.log("created", fs.statSync("/workspace/sparse").size) } catch (e) { console.log("error " + e.code) } finally { fs.rmSync("/workspace/sparse", { force: true }) }',
          py: PY_ERRNO + py`
            import os
            try:
                fd = os.open("/workspace/sparse", os.O_WRONLY | os.O_CREAT)
                os.ftruncate(fd, 100 * 2 ** 30)
                print("created", os.fstat(fd).st_size)
            except OSError as e:
                print("error " + ecode(e))
            finally:
                if os.path.exists("/workspace/sparse"):
                    os.unlink("/workspace/sparse")`,
        }),
      );
      const o = r.stdout.trim() || `killed (exit ${r.exitCode})`;
      return { observed: o, pass: /^error (EFBIG|ENOSPC|EINVAL)$/.test(o) || r.exitCode === 153 /* SIGXFSZ */ };
    },
  },
  {
    name: "CPU spin with a SIGTERM handler",
    expected: "killed at the deadline (SIGKILL), timedOut",
    async run(ctx) {
      const started = Date.now();
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'process.on("SIGTERM", () => {}); process.on("SIGINT", () => {}); while (true) {}',
          py: "import signal\nsignal.signal(signal.SIGTERM, lambda *a: None)\nsignal.signal(signal.SIGINT, lambda *a: None)\nwhile True:\n    pass",
        }),
        { timeoutMs: 3_000 },
      );
      const took = Date.now() - started;
      return { observed: `timedOut=${r.timedOut} durationMs=${r.durationMs} call took ${took} ms`, pass: r.timedOut && r.durationMs < 3_000 + 2_000 };
    },
  },
  {
    name: "detached child still running at the deadline",
    expected: "container and child gone after the run",
    async run(ctx) {
      const { alice, lab } = ctx;
      const r = await alice.run(
        pick(ctx, {
          js: 'import { spawn } from "node:child_process"; const c = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { detached: true, stdio: "ignore" }); c.unref(); console.log("child", c.pid); while (true) {}',
          py: 'import subprocess, sys\nc = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"], start_new_session=True)\nprint("child", c.pid, flush=True)\nwhile True:\n    pass',
        }),
        { timeoutMs: 3_000 },
      );
      const left = await waitForNoContainers({ label: LABEL.user, value: lab.users.alice }, 10_000);
      return { observed: `timedOut=${r.timedOut}; containers left: ${left.length}`, pass: r.timedOut && left.length === 0 };
    },
  },
  {
    name: "output flood (1 GB)",
    expected: "cut at the cap, flagged; the server keeps serving",
    async run(ctx) {
      const r = await ctx.alice.run(pick(ctx, { js: 'const chunk = "x".repeat(1 << 20); for (let i = 0; i < 1024; i++) process.stdout.write(chunk);', py: 'import sys\nchunk = "x" * (1 << 20)\nfor i in range(1024):\n    sys.stdout.write(chunk)' }), { timeoutMs: 20_000 });
      const after = await ctx.alice.run(say(ctx, "alive"));
      return { observed: `stdout ${r.stdout.length} chars, truncated=${r.stdoutTruncated}, timedOut=${r.timedOut}; next run: ${after.stdout.trim()}`, pass: r.stdoutTruncated && r.stdout.length <= 64 * 1024 && after.stdout === "alive\n" };
    },
  },
  {
    name: "output: one 50 MB line without a newline",
    expected: "cut at the cap, flagged",
    async run(ctx) {
      const r = await ctx.alice.run(pick(ctx, { js: 'process.stdout.write("y".repeat(50 * 1024 * 1024))', py: 'import sys\nsys.stdout.write("y" * (50 * 1024 * 1024))' }));
      return { observed: `stdout ${r.stdout.length} chars, truncated=${r.stdoutTruncated}`, pass: r.stdoutTruncated && r.stdout.length === 64 * 1024 };
    },
  },
  {
    name: "output: invalid UTF-8",
    expected: "returned with U+FFFD, no crash",
    async run(ctx) {
      const r = await ctx.alice.run(pick(ctx, { js: "process.stdout.write(Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80, 0x41]))", py: "import sys\nsys.stdout.buffer.write(bytes([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80, 0x41]))" }));
      return { observed: JSON.stringify(r.stdout), pass: r.stdout.endsWith("A") && r.stdout.includes("\uFFFD") };
    },
  },
  {
    name: "output: fake JSON-RPC frames on stdout",
    expected: "returned as text inside the result; the client sees one normal response",
    async run(ctx) {
      const fake = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pwned"}]}}';
      const r = await ctx.alice.run(pick(ctx, { js: `console.log(${JSON.stringify(fake)}); process.stdout.write("\\n" + ${JSON.stringify(fake)} + "\\n")`, py: `import sys\nprint(${JSON.stringify(fake)})\nsys.stdout.write("\\n" + ${JSON.stringify(fake)} + "\\n")` }));
      return { observed: `stdout holds ${r.stdout.split("pwned").length - 1} fake frames as text`, pass: r.stdout.includes(fake) && r.exitCode === 0 };
    },
  },
  // ---- network
  {
    name: "DNS lookup",
    expected: "fails",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import dns from "node:dns/promises"; console.log(await dns.lookup("example.com").then(() => "resolved", (e) => "error " + e.code))',
          py: 'import socket\ntry:\n    socket.getaddrinfo("example.com", 80)\n    print("resolved")\nexcept OSError as e:\n    print("error", e.errno)',
        }),
      );
      return { observed: r.stdout.trim(), pass: /^error /.test(r.stdout.trim()) };
    },
  },
  connectAttack("1.1.1.1", 443, "TCP to a public address"),
  connectAttack("169.254.169.254", 80, "cloud metadata (169.254.169.254)"),
  proxyAttack("egress proxy: the metadata address, a private address, another loopback port, a name and IPv6 loopback, through an allowed run's proxy", ["169.254.169.254:80", "10.0.0.1:80", "127.0.0.1:22", "example.com:443", "[::1]:9", "[::ffff:169.254.169.254]:80"], { via: "forwarder" }),
  proxyAttack("egress proxy: its socket, from a run that asked for no destinations", ["127.0.0.1:9", "169.254.169.254:80"], { via: "socket", allowHosts: [] }),
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
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: `
        import fs from "node:fs"; import path from "node:path";
        const found: string[] = [];
        const walk = (d: string) => { let es: fs.Dirent[] = []; try { es = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
          for (const e of es) { const p = path.join(d, e.name); if (e.isDirectory()) walk(p); else if (e.isFile()) { try { if (fs.statSync(p).mode & 0o6000) found.push(p); } catch {} } } };
        for (const d of fs.readdirSync("/")) if (!["proc", "sys", "dev", "workspace", "skills"].includes(d)) walk("/" + d);
        console.log(JSON.stringify(found));`,
          py: py`
            import json, os, stat
            found = []
            for d in os.listdir("/"):
                if d in ("proc", "sys", "dev", "workspace", "skills"):
                    continue
                for root, dirs, files in os.walk("/" + d):
                    for f in files:
                        p = os.path.join(root, f)
                        try:
                            st = os.lstat(p)
                        except OSError:
                            continue
                        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o6000:
                            found.append(p)
            print(json.dumps(found))`,
        }),
      );
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "[]" };
    },
  },
  {
    name: "Docker socket or DOCKER_HOST reachable",
    expected: "neither",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; console.log(["/var/run/docker.sock", "/run/docker.sock", "/var/run/containerd/containerd.sock"].filter((p) => fs.existsSync(p)).join(",") || "none", process.env.DOCKER_HOST ?? "unset")',
          py: 'import os\nprint(",".join(p for p in ["/var/run/docker.sock", "/run/docker.sock", "/var/run/containerd/containerd.sock"] if os.path.exists(p)) or "none", os.environ.get("DOCKER_HOST", "unset"))',
        }),
      );
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "none unset" };
    },
  },
  {
    name: "canary secret from the server's environment",
    expected: "not visible in env, /proc/*/environ or files",
    async run(ctx) {
      const c = JSON.stringify(ctx.lab.canary);
      const r = await ctx.alice.run(
        pick(ctx, {
          js: `
        import fs from "node:fs";
        const c = ${c}; const hits: string[] = [];
        if (JSON.stringify(process.env).includes(c)) hits.push("env");
        for (const p of fs.readdirSync("/proc").filter((x) => /^\\d+$/.test(x))) { try { if (fs.readFileSync("/proc/" + p + "/environ", "latin1").includes(c)) hits.push(p); } catch {} }
        for (const f of ["/proc/1/cmdline", "/etc/hostname", "/etc/hosts"]) { try { if (fs.readFileSync(f, "latin1").includes(c)) hits.push(f); } catch {} }
        console.log(hits.length ? hits.join(",") : "not found");`,
          py: py`
            import json, os
            c = ${c}
            hits = []
            if c in json.dumps(dict(os.environ)):
                hits.append("env")
            for p in [x for x in os.listdir("/proc") if x.isdigit()] + ["1/cmdline", "../etc/hostname", "../etc/hosts"]:
                path = "/proc/" + p + ("" if "/" in p else "/environ")
                try:
                    with open(path, "rb") as f:
                        if c in f.read().decode("latin1"):
                            hits.append(path)
                except OSError:
                    pass
            print(",".join(hits) if hits else "not found")`,
        }),
      );
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "not found" };
    },
  },
  // ---- the bridge's tokens
  {
    name: "callback token replayed after its run",
    expected: "401, logged",
    async run(ctx) {
      await ctx.alice.run(pick(ctx, { js: 'import fs from "node:fs"; fs.writeFileSync("/workspace/old-token", process.env.CODEBOX_BRIDGE_TOKEN ?? "")', py: 'import os\nopen("/workspace/old-token", "w").write(os.environ.get("CODEBOX_BRIDGE_TOKEN", ""))' }));
      const r = await ctx.alice.run(bridgeCall(ctx, { js: '"Bearer " + (await import("node:fs")).readFileSync("/workspace/old-token", "utf8")', py: '"Bearer " + open("/workspace/old-token").read()' }));
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "401 expired" };
    },
  },
  {
    name: "callback token of another user's live run",
    expected: "refused: 403 (same server) or 401 (each user's own server process), logged",
    async run(ctx) {
      const { alice, bob, lab } = ctx;
      const tokenFile = join(lab.workspaceOf(lab.users.alice), "live-token");
      const a = alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; fs.writeFileSync("/workspace/live-token", process.env.CODEBOX_BRIDGE_TOKEN ?? ""); await new Promise((r) => setTimeout(r, 8000));',
          py: 'import os, time\nopen("/workspace/live-token", "w").write(os.environ.get("CODEBOX_BRIDGE_TOKEN", ""))\ntime.sleep(8)',
        }),
      );
      const deadline = Date.now() + 15_000;
      while ((!existsSync(tokenFile) || readFileSync(tokenFile, "utf8") === "") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const stolen = readFileSync(tokenFile, "utf8");
      const b = await bob.run(bridgeCall(ctx, { js: JSON.stringify(`Bearer ${stolen}`), py: JSON.stringify(`Bearer ${stolen}`) }));
      await a;
      // Here alice and bob each have their own stdio server, so bob's server has never seen the
      // token (401 forged); on one multi-user server it is recognised as another run's (403).
      return { observed: b.stdout.trim(), pass: b.stdout.trim() === "403 other-run" || b.stdout.trim() === "401 forged" };
    },
  },
  {
    name: "forged callback token",
    expected: "401",
    async run(ctx) {
      const r = await ctx.alice.run(bridgeCall(ctx, { js: '"Bearer " + "f".repeat(43)', py: '"Bearer " + "f" * 43' }));
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "401 forged" };
    },
  },
  // ---- host-side file safety
  {
    name: "symlinks planted in /workspace and /skills to host files, then host-side operations",
    expected: "host files never read, written, chowned or deleted through the links",
    async run(ctx) {
      const { alice, lab } = ctx;
      const targets = ["/etc/passwd", "/etc/hostname"];
      const before = targets.map(fingerprint);
      const r = await alice.run(
        pick(ctx, {
          js: `
        import fs from "node:fs";
        for (const [p, t] of [["/workspace/passwd", "/etc/passwd"], ["/skills/hostname", "/etc/hostname"], ["/workspace/root", "/"], ["/skills/link-dir", "/etc"]]) { try { fs.rmSync(p, { force: true }); fs.symlinkSync(t, p); } catch (e) { console.log("symlink", e.code); } }
        console.log("planted");`,
          py: PY_ERRNO + py`
            import os
            for p, t in [("/workspace/passwd", "/etc/passwd"), ("/skills/hostname", "/etc/hostname"), ("/workspace/root", "/"), ("/skills/link-dir", "/etc")]:
                try:
                    if os.path.lexists(p):
                        os.unlink(p)
                    os.symlink(t, p)
                except OSError as e:
                    print("symlink", ecode(e))
            print("planted")`,
        }),
      );
      // Host-side operations on the user's directories: a new server start (creates/chowns dirs),
      // a run (ensure + quota + bridge), the soft-quota accounting walk, and doctor.
      const again = await alice.run(pick(ctx, { js: 'import fs from "node:fs"; console.log(fs.readlinkSync("/workspace/passwd"))', py: 'import os\nprint(os.readlink("/workspace/passwd"))' }));
      const { usageBeneath } = await import("../../src/stores/safe-tree.js");
      await usageBeneath(lab.workspaceOf(lab.users.alice));
      const s2 = await lab.session(lab.users.alice);
      await s2.run(say(ctx, "1"));
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
    async run(ctx) {
      const before = fingerprint("/etc/passwd");
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; for (const t of ["/etc/passwd", process.execPath, process.argv[1]]) { try { fs.linkSync(t, "/workspace/hl-" + t.split("/").pop()); console.log("linked", t) } catch (e) { console.log(t, e.code) } }',
          py: PY_ERRNO + py`
            import os, sys
            for t in ["/etc/passwd", os.path.realpath(sys.executable), "/opt/codebox/runner.py"]:
                try:
                    os.link(t, "/workspace/hl-" + t.split("/")[-1])
                    print("linked", t)
                except OSError as e:
                    print(t, ecode(e))`,
        }),
      );
      const unchanged = fingerprint("/etc/passwd") === before;
      // Links to files inside the container (not host files) may succeed or not; none reaches the host.
      return { observed: `${r.stdout.trim().replace(/\n/g, "; ")}; /etc/passwd unchanged=${unchanged}`, pass: unchanged && !r.stdout.includes("linked /etc/passwd") };
    },
  },
  {
    name: "a directory swapped for a symlink during a run",
    expected: "the next run refuses to mount through it or runs unharmed; host unchanged",
    async run(ctx) {
      const { alice, lab } = ctx;
      const before = fingerprint("/etc/passwd");
      const r = await alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; fs.mkdirSync("/workspace/sub", { recursive: true }); fs.rmSync("/workspace/sub", { recursive: true }); fs.symlinkSync("/etc", "/workspace/sub"); console.log("swapped")',
          py: 'import os, shutil\nos.makedirs("/workspace/sub", exist_ok=True)\nshutil.rmtree("/workspace/sub")\nos.symlink("/etc", "/workspace/sub")\nprint("swapped")',
        }),
      );
      await alice.run(say(ctx, "next"));
      return { observed: `${r.stdout.trim()}; /etc/passwd unchanged=${fingerprint("/etc/passwd") === before}; sub is link=${lstatSync(join(lab.workspaceOf(lab.users.alice), "sub")).isSymbolicLink()}`, pass: fingerprint("/etc/passwd") === before };
    },
  },
  {
    name: "path traversal in user-supplied names (user id, server name)",
    expected: "refused at start-up with the key named",
    serverOnly: true,
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
    expected: "refused: EROFS (gVisor, and Bun's writeFile, report EACCES)",
    async run(ctx) {
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; try { fs.writeFileSync("/servers/client.ts", "export {}"); console.log("written") } catch (e) { console.log("error " + e.code) }',
          py: `${PY_ERRNO}try:\n    open("/servers/client.py", "w").write("x = 1")\n    print("written")\nexcept OSError as e:\n    print("error " + ecode(e))`,
        }),
      );
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "error EROFS" || ((ctx.lab.runtime === "runsc" || ctx.lab.flavor === "bun") && r.stdout.trim() === "error EACCES") };
    },
  },
  {
    name: "read another user's files",
    expected: "not visible",
    async run(ctx) {
      await ctx.bob.run(pick(ctx, { js: 'import fs from "node:fs"; fs.writeFileSync("/workspace/bob-secret.txt", "bob only")', py: 'open("/workspace/bob-secret.txt", "w").write("bob only")' }));
      const r = await ctx.alice.run(
        pick(ctx, {
          js: 'import fs from "node:fs"; import path from "node:path"; const hits: string[] = []; const walk = (d: string) => { let es: fs.Dirent[] = []; try { es = fs.readdirSync(d, { withFileTypes: true }) } catch { return } for (const e of es) { const p = path.join(d, e.name); if (e.name === "bob-secret.txt") hits.push(p); if (e.isDirectory() && !p.startsWith("/proc") && !p.startsWith("/sys")) walk(p) } }; walk("/"); console.log(hits.length ? hits.join(",") : "not found")',
          py: py`
            import os
            hits = []
            for root, dirs, files in os.walk("/"):
                dirs[:] = [d for d in dirs if not (root == "/" and d in ("proc", "sys"))]
                hits += [os.path.join(root, f) for f in files + dirs if f == "bob-secret.txt"]
            print(",".join(hits) if hits else "not found")`,
        }),
      );
      return { observed: r.stdout.trim(), pass: r.stdout.trim() === "not found" };
    },
  },
  // ---- lifecycle and load
  {
    name: "server killed with SIGKILL mid-run, then restarted",
    expected: "no container left",
    async run(ctx) {
      const { lab } = ctx;
      const carol = await lab.session(lab.users.carol);
      const pending = carol.run(pick(ctx, { js: "await new Promise((r) => setTimeout(r, 60_000))", py: "import time\ntime.sleep(60)" })).catch(() => undefined);
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
    async run(ctx) {
      const code = pick(ctx, { js: "await new Promise((r) => setTimeout(r, 1500)); console.log('done')", py: "import time\ntime.sleep(1.5)\nprint('done')" });
      const target = ctx.lab.flavor === "python" ? { language: "python" } : { runtime: ctx.lab.flavor };
      const calls = [...Array(8)].map(() => ctx.alice.call("execute_code", { code, ...target }));
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

function bridgeCall(ctx: Ctx, auth: { js: string; py: string }): string {
  return pick(ctx, {
    js: `
    import { request } from "node:http";
    const auth = ${auth.js};
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ socketPath: "/run/codebox/mcp.sock", path: "/internal/mcp-call", method: "POST", headers: { "content-type": "application/json", authorization: auth } }, (r) => {
        let b = ""; r.on("data", (c) => (b += c)); r.on("end", () => resolve({ status: r.statusCode ?? 0, body: b }));
      });
      req.on("error", reject); req.end(JSON.stringify({ server: "rows", tool: "echo", arguments: { message: "x" } }));
    });
    console.log(res.status, JSON.parse(res.body).reason ?? "ok");`,
    py: py`
      import http.client, json, socket
      class Conn(http.client.HTTPConnection):
          def connect(self):
              self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
              self.sock.connect("/run/codebox/mcp.sock")
      conn = Conn("localhost")
      conn.request("POST", "/internal/mcp-call", body=json.dumps({"server": "rows", "tool": "echo", "arguments": {"message": "x"}}), headers={"content-type": "application/json", "authorization": ${auth.py}})
      res = conn.getresponse()
      print(res.status, json.loads(res.read()).get("reason", "ok"))`,
  });
}

export const ATTACK_COUNT = ATTACKS.length;

/** What the codebox://sandbox cross-check measures from inside, in the suite's language. */
function measureFromInside(ctx: Ctx): string {
  return pick(ctx, {
    js: `
      import fs from "node:fs"; import os from "node:os"; import dns from "node:dns/promises";
      const st = fs.readFileSync("/proc/self/status", "utf8");
      const f = (k: string) => st.split("\\n").find((l) => l.startsWith(k + ":"))?.split(":")[1]?.trim() ?? null;
      let rootWritable = true; try { fs.writeFileSync("/etc/probe", "x") } catch { rootWritable = false }
      const dnsWorks = await dns.lookup("example.com").then(() => true, () => false);
      console.log(JSON.stringify({ uid: process.getuid(), capEff: f("CapEff"), seccomp: Number(f("Seccomp")), rootWritable, interfaces: Object.keys(os.networkInterfaces()), dnsWorks, docker: fs.existsSync("/var/run/docker.sock") }));`,
    py: py`
      import json, os, socket
      st = open("/proc/self/status").read().split("\\n")
      def f(k):
          return next((l.split(":", 1)[1].strip() for l in st if l.startswith(k + ":")), None)
      try:
          open("/etc/probe", "w").write("x")
          root_writable = True
      except OSError:
          root_writable = False
      try:
          socket.getaddrinfo("example.com", 80)
          dns_works = True
      except OSError:
          dns_works = False
      # interfaces with an IPv4 address (SIOCGIFADDR) or an IPv6 one, as Node lists them
      import fcntl, struct
      v6 = set(l.split()[-1] for l in (open("/proc/net/if_inet6").read().splitlines() if os.path.exists("/proc/net/if_inet6") else []))
      s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
      interfaces = []
      for _, name in socket.if_nameindex():
          try:
              fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
              interfaces.append(name)
          except OSError:
              if name in v6:
                  interfaces.append(name)
      print(json.dumps({"uid": os.getuid(), "capEff": f("CapEff"), "seccomp": int(f("Seccomp")), "rootWritable": root_writable, "interfaces": interfaces, "dnsWorks": dns_works, "docker": os.path.exists("/var/run/docker.sock")}))`,
  });
}

/**
 * The red-team suite against one language runtime's image (Node, Bun or Python) under one OCI
 * runtime (runc or gVisor). Node and Bun run the same JavaScript attacks; Python has its own
 * code for each, with the same pass conditions.
 */
export function defineRedTeam(runtime: Runtime, flavor: Flavor = "node"): void {
  const attacks = ATTACKS.filter((a) => flavor === "node" || !a.serverOnly);
  describe(`red team (${flavor} on ${runtime})`, () => {
    let lab: Lab;
    const ctx = {} as Ctx;
    const rows: Row[] = [];

    beforeAll(async () => {
      if (runtime === "runsc") {
        const info = (await docker.info()) as { Runtimes?: Record<string, unknown> };
        expect(Object.keys(info.Runtimes ?? {}), "runsc must be registered with the engine: run scripts/setup.sh").toContain("runsc");
      }
      lab = makeLab(runtime, flavor);
      ctx.lab = lab;
      ctx.alice = await lab.session(lab.users.alice);
      ctx.bob = await lab.session(lab.users.bob);
      const ready = await ctx.alice.run(say(ctx, "ready"));
      expect(ready.stdout, `a ${flavor} sandbox must run before the attacks: ${ready.stderr}`).toBe("ready\n");
      installProbe(lab, lab.users.alice, SANDBOX_UID);
    });

    afterAll(async () => {
      await ctx.alice?.close();
      await ctx.bob?.close();
      const name = flavor === "node" ? runtime : `${runtime}-${flavor}`;
      const table = renderTable(runtime, rows, flavor);
      mkdirSync(join(repoRoot, "test-results"), { recursive: true });
      writeFileSync(join(repoRoot, "test-results", `red-team-${name}.md`), table);
      process.stderr.write(`\n${table}`);
      // 30 s: removing a gVisor container can take that long on a loaded 2-core machine.
      for (const user of Object.values(lab?.users ?? {})) expect(await waitForNoContainers({ label: LABEL.user, value: user }, 30_000)).toEqual([]);
      if (lab) removeDir(join(lab.dataDir, ".."));
    });

    it("has at least 30 attacks", () => {
      expect(attacks.length).toBeGreaterThanOrEqual(30);
    });

    it("the codebox://sandbox report says what the suite measures from inside", async () => {
      const read = await ctx.alice.client.readResource({ uri: `codebox://sandbox/${flavor}` }, { timeout: 180_000 });
      const info = JSON.parse((read.contents[0] as { text: string }).text) as Record<string, any>;
      const measured = JSON.parse((await ctx.alice.run(measureFromInside(ctx))).stdout) as Record<string, unknown>;
      expect(info.ociRuntime).toBe(runtime);
      expect(info.interpreter.name).toBe(flavor);
      expect(info.uid).toBe(measured.uid);
      expect(info.capEff).toBe(measured.capEff);
      expect(info.seccompMode).toBe(measured.seccomp);
      expect(info.readOnlyRoot).toBe(!measured.rootWritable);
      expect(info.network.interfaces).toEqual(measured.interfaces);
      expect(info.network.dns === "resolved").toBe(measured.dnsWorks);
      expect(info.dockerSocket).toBe(measured.docker);
      expect(info.writable).toEqual({ workspace: true, skills: true, tmp: true, servers: false });
    });

    for (const attack of attacks) {
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
