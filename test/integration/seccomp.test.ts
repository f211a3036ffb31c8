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
    app = testApp({ "sandbox.runtime": runtime });
    const dirs = await app.dirs.ensure("probe");
    copyFileSync(probe, join(dirs.workspace, "all-blocked"));
    chownSync(join(dirs.workspace, "all-blocked"), app.backend.uid(), app.backend.uid());
    execFileSync("chmod", ["755", join(dirs.workspace, "all-blocked")]);
  });
  afterAll(async () => {
    await app.close();
    removeDir(app.config.dataDir);
  });

  it(`blocks each of the ${blocked.length} listed syscalls with EPERM`, async () => {
    const r = await app.executor.execute({ userId: "probe", language: "javascript", code: 'import { execFileSync } from "node:child_process"; process.stdout.write(execFileSync("/workspace/all-blocked", { encoding: "utf8" }))' });
    const results = parse(r.stdout);
    expect(results.size).toBe(blocked.length);
    const notBlocked = [...results].filter(([, v]) => v !== "EPERM" && v !== "absent");
    expect(notBlocked, `not blocked: ${JSON.stringify(notBlocked)}`).toEqual([]);
    // Names this architecture does not have at all (e.g. 32-bit-only calls) cannot be made.
    const absent = [...results].filter(([, v]) => v === "absent").map(([k]) => k);
    expect(absent.length).toBeLessThan(blocked.length / 4);
  });

  it("runs the supported workloads under the profile", async () => {
    const r = await app.executor.execute({
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
});

describe("attribution (control container without the profile, runc)", () => {
  it("shows the filter, not missing privileges, is what stops most of the listed calls", async () => {
    const app = testApp();
    try {
      const image = await app.backend.ensureImage();
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
