import { execFileSync } from "node:child_process";
import { chownSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
// @ts-expect-error plain JS module without types
import { BLOCKED } from "../../seccomp/build-profile.mjs";
import { docker, removeDir, tempDir, testApp } from "../helpers.js";

// Every syscall the profile blocks, called inside a real sandbox: each must fail with EPERM.
// A control container without the profile (same image, no capabilities) shows which of them the
// filter is what stops (the kernel would have answered otherwise).
const blocked = Object.keys(BLOCKED as Record<string, string>).sort();
const dir = tempDir("seccomp");

function buildGenericProbe(): string {
  const entries = blocked.map((n) => `#ifdef SYS_${n}\n  {"${n}", SYS_${n}},\n#else\n  {"${n}", -1},\n#endif`).join("\n");
  const src = `#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static const struct { const char *name; long nr; } table[] = {
${entries}
};
int main(void) {
  for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (table[i].nr < 0) { printf("%s absent\\n", table[i].name); continue; }
    errno = 0;
    long r = syscall(table[i].nr, 0, 0, 0, 0, 0, 0);
    printf("%s %ld %s\\n", table[i].name, r, r < 0 ? strerrorname_np(errno) : "-");
  }
  return 0;
}
`;
  writeFileSync(join(dir, "all-blocked.c"), src);
  const out = join(dir, "all-blocked");
  execFileSync("cc", ["-static", "-O2", "-o", out, join(dir, "all-blocked.c")]);
  return out;
}

function parse(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.trim().split("\n")) {
    const [name, result, err] = line.split(" ");
    if (name) m.set(name, result === "absent" ? "absent" : result === "-1" ? (err ?? "?") : `ok(${result})`);
  }
  return m;
}

let probe: string;
beforeAll(() => {
  probe = buildGenericProbe();
});
afterAll(() => removeDir(dir));

describe.each(["runc", "runsc"] as const)("the seccomp profile under %s", (runtime) => {
  let app: App;
  beforeAll(async () => {
    app = testApp({ "sandbox.ociRuntime": runtime });
    const dirs = await app.dirs.ensure("probe");
    copyFileSync(probe, join(dirs.workspace, "all-blocked"));
    chownSync(join(dirs.workspace, "all-blocked"), app.backend.sandboxUid(), app.backend.sandboxUid());
    execFileSync("chmod", ["755", join(dirs.workspace, "all-blocked")]);
  });
  afterAll(async () => {
    await app.close();
    removeDir(app.config.dataDir);
  });

  it(`blocks each of the ${blocked.length} listed syscalls with EPERM`, async () => {
    const r = await app.runs.execute({ userId: "probe", language: "javascript", code: 'import { execFileSync } from "node:child_process"; process.stdout.write(execFileSync("/workspace/all-blocked", { encoding: "utf8" }))' });
    const results = parse(r.stdout);
    expect(results.size).toBe(blocked.length);
    const notBlocked = [...results].filter(([, v]) => v !== "EPERM" && v !== "absent");
    expect(notBlocked, `not blocked: ${JSON.stringify(notBlocked)}`).toEqual([]);
    // Names this architecture does not have at all (e.g. 32-bit-only calls) cannot be made.
    const absent = [...results].filter(([, v]) => v === "absent").map(([k]) => k);
    expect(absent.length).toBeLessThan(blocked.length / 4);
  });

  it("runs the supported workloads under the profile", async () => {
    const r = await app.runs.execute({
      userId: "probe",
      language: "typescript",
      code: `
        import fs from "node:fs/promises";
        import { createServer, request } from "node:http";
        import { spawnSync } from "node:child_process";
        import { Worker } from "node:worker_threads";
        import { gzipSync, gunzipSync } from "node:zlib";
        import { pbkdf2Sync, randomBytes, createHash, generateKeyPairSync } from "node:crypto";
        import os from "node:os";
        const ok: string[] = [];
        await fs.writeFile("/workspace/w.txt", "data"); await fs.rename("/workspace/w.txt", "/workspace/w2.txt"); await fs.rm("/workspace/w2.txt"); ok.push("fs");
        await fs.writeFile("/tmp/t", "x"); ok.push("tmp");
        pbkdf2Sync("p", randomBytes(16), 1000, 32, "sha256"); createHash("sha512").update("x").digest(); generateKeyPairSync("ed25519"); ok.push("crypto");
        if (gunzipSync(gzipSync(Buffer.from("z".repeat(1000)))).length === 1000) ok.push("zlib");
        const w = await new Promise((res, rej) => { const wk = new Worker("const { parentPort } = require('node:worker_threads'); parentPort.postMessage(21 * 2)", { eval: true }); wk.on("message", res); wk.on("error", rej); });
        if (w === 42) ok.push("worker_threads");
        if (spawnSync("/usr/local/bin/node", ["-e", "process.exit(3)"]).status === 3) ok.push("child_process");
        const server = createServer((_, res) => res.end("pong")).listen(0, "127.0.0.1");
        await new Promise((r) => server.once("listening", r));
        const port = (server.address() as { port: number }).port;
        const body = await new Promise<string>((resolve) => request({ host: "127.0.0.1", port }, (res) => { let b = ""; res.on("data", (c) => (b += c)); res.on("end", () => resolve(b)); }).end());
        server.close(); if (body === "pong") ok.push("loopback http");
        const wasm = await WebAssembly.instantiate(new Uint8Array([0,97,115,109,1,0,0,0,1,7,1,96,2,127,127,1,127,3,2,1,0,7,7,1,3,97,100,100,0,0,10,9,1,7,0,32,0,32,1,106,11]));
        if ((wasm.instance.exports.add as (a: number, b: number) => number)(2, 3) === 5) ok.push("webassembly");
        const sab = new Int32Array(new SharedArrayBuffer(4)); Atomics.wait(sab, 0, 0, 5); ok.push("atomics");
        if (new Intl.NumberFormat("en-US").format(1234.5) === "1,234.5") ok.push("intl");
        if (os.cpus().length > 0 && process.memoryUsage().rss > 0) ok.push("os");
        await new Promise((r) => setTimeout(r, 10)); ok.push("timers");
        console.log(ok.join(","));`,
    });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split(",")).toEqual(["fs", "tmp", "crypto", "zlib", "worker_threads", "child_process", "loopback http", "webassembly", "atomics", "intl", "os", "timers"]);
  });

  // What Bun itself needs at run time (its own event loop, JIT, workers, spawn, Bun.serve).
  it("runs Bun's workloads under the profile", async () => {
    const r = await app.runs.execute({
      userId: "probe",
      language: "typescript",
      runtime: "bun",
      code: `
        import fs from "node:fs/promises";
        import { gzipSync, gunzipSync } from "node:zlib";
        import { createHash, randomBytes } from "node:crypto";
        const ok: string[] = [];
        await fs.writeFile("/workspace/b.txt", "data"); await Bun.write("/tmp/b", "x"); if ((await Bun.file("/workspace/b.txt").text()) === "data") ok.push("fs"); await fs.rm("/workspace/b.txt");
        createHash("sha256").update(randomBytes(32)).digest("hex"); new Bun.CryptoHasher("sha512").update("x").digest(); ok.push("crypto");
        if (gunzipSync(gzipSync(Buffer.from("z".repeat(1000)))).length === 1000 && Bun.gunzipSync(Bun.gzipSync(new Uint8Array(10))).length === 10) ok.push("zlib");
        const w = await new Promise((res, rej) => { const wk = new Worker(URL.createObjectURL(new Blob(["postMessage(21 * 2)"], { type: "application/javascript" }))); wk.onmessage = (e) => { res(e.data); wk.terminate(); }; wk.onerror = rej; });
        if (w === 42) ok.push("workers");
        const child = Bun.spawnSync([process.execPath, "-e", "process.exit(3)"]); if (child.exitCode === 3) ok.push("spawn");
        const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("pong") });
        if ((await (await fetch(\`http://127.0.0.1:\${server.port}/\`)).text()) === "pong") ok.push("loopback http");
        server.stop(true);
        let total = 0; for (let i = 0; i < 2e6; i++) total += i % 7; if (total > 0) ok.push("jit");
        await Bun.sleep(10); ok.push("timers");
        console.log(ok.join(","));`,
    });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split(",")).toEqual(["fs", "crypto", "zlib", "workers", "spawn", "loopback http", "jit", "timers"]);
  });

  // What CPython needs: threads, subprocesses, asyncio, sockets on loopback, sqlite, hashing, compression.
  it("runs Python's workloads under the profile", async () => {
    const r = await app.runs.execute({
      userId: "probe",
      language: "python",
      code: [
        "import asyncio, concurrent.futures, hashlib, json, multiprocessing, os, socket, sqlite3, subprocess, sys, threading, zlib, ssl, decimal, datetime",
        "ok = []",
        "open('/workspace/p.txt', 'w').write('data'); os.rename('/workspace/p.txt', '/workspace/p2.txt'); os.remove('/workspace/p2.txt'); open('/tmp/p', 'w').write('x'); ok.append('fs')",
        "hashlib.pbkdf2_hmac('sha256', b'p', os.urandom(16), 1000); hashlib.sha3_256(b'x').digest(); ok.append('hashlib')",
        "assert zlib.decompress(zlib.compress(b'z' * 1000)) == b'z' * 1000; ok.append('zlib')",
        "with concurrent.futures.ThreadPoolExecutor(4) as ex: assert sum(ex.map(lambda x: x * 2, range(10))) == 90",
        "ok.append('threads')",
        "assert subprocess.run([sys.executable, '-c', 'import sys; sys.exit(3)']).returncode == 3; ok.append('subprocess')",
        // Process works; Pool/Queue/Lock need POSIX semaphores in /dev/shm, which the sandbox does not have (docs/SECURITY.md).
        "p = multiprocessing.get_context('fork').Process(target=os._exit, args=(4,)); p.start(); p.join(); assert p.exitcode == 4",
        "ok.append('multiprocessing')",
        "srv = socket.create_server(('127.0.0.1', 0)); port = srv.getsockname()[1]",
        "def serve():",
        "    c, _ = srv.accept(); c.sendall(c.recv(4)); c.close()",
        "t = threading.Thread(target=serve); t.start()",
        "cl = socket.create_connection(('127.0.0.1', port)); cl.sendall(b'ping'); assert cl.recv(4) == b'ping'; cl.close(); t.join(); srv.close(); ok.append('loopback tcp')",
        "async def main():",
        "    await asyncio.sleep(0.01)",
        "    return await asyncio.gather(*(asyncio.sleep(0, i) for i in range(3)))",
        "assert asyncio.run(main()) == [0, 1, 2]; ok.append('asyncio')",
        "db = sqlite3.connect(':memory:'); db.execute('create table t (x)'); db.execute('insert into t values (1)'); assert db.execute('select sum(x) from t').fetchone()[0] == 1; ok.append('sqlite')",
        "assert json.loads(json.dumps({'a': [1, 2]}))['a'][1] == 2 and decimal.Decimal('1.1') + 1 == decimal.Decimal('2.1') and datetime.datetime.now().year > 2000; ok.append('stdlib')",
        "print(','.join(ok))",
      ].join("\n"),
    });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split(",")).toEqual(["fs", "hashlib", "zlib", "threads", "subprocess", "multiprocessing", "loopback tcp", "asyncio", "sqlite", "stdlib"]);
  });
});

describe("attribution (control container without the profile, runc)", () => {
  it("shows the filter, not missing privileges, is what stops most of the listed calls", async () => {
    const app = testApp();
    try {
      const image = await app.backend.ensureImage("node");
      mkdirSync(join(dir, "ctl"), { recursive: true });
      copyFileSync(probe, join(dir, "ctl", "all-blocked"));
      const c = await docker.createContainer({
        Image: image,
        Entrypoint: ["/probe/all-blocked"],
        Cmd: [],
        User: "10001:10001",
        Labels: { "dev.codebox-mcp.test": "seccomp-control" },
        HostConfig: { NetworkMode: "none", CapDrop: ["ALL"], SecurityOpt: ["no-new-privileges:true", "seccomp=unconfined"], Binds: [`${join(dir, "ctl")}:/probe:ro`] },
      });
      try {
        await c.start();
        await c.wait();
        const logs = (await c.logs({ stdout: true, stderr: false })).toString("utf8").replace(/[\x00-\x08]/g, "");
        const control = parse(logs.split("\n").map((l) => l.replace(/^.*?([a-z_0-9]+ (-?\d+|absent).*)$/, "$1")).join("\n"));
        const differs = [...control].filter(([, v]) => v !== "EPERM" && v !== "absent").map(([k]) => k);
        process.stderr.write(`seccomp attribution: ${differs.length} of ${blocked.length} calls answer differently without the filter\n`);
        expect(differs.length).toBeGreaterThan(blocked.length / 2);
      } finally {
        await c.remove({ force: true });
      }
    } finally {
      await app.close();
      removeDir(app.config.dataDir);
    }
  });
});
