// The host side as an attack surface: what one run, or one upstream server, can make the server
// itself do. Real containers, a real engine, real upstream MCP servers; the server runs in-process
// so its memory and its log bytes can be measured.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../src/app.js";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/shared/logger.js";
import { closeAndCheck, defaultTestRuntime, repoRoot, rowsServerPath, tempDir } from "../helpers.js";

const hostilePath = join(repoRoot, "test", "fixtures", "hostile-server.mjs");

/** A host directory no sandbox may touch, with files that must survive every attack. */
function hostCanary(): { dir: string; intact: () => boolean } {
  const dir = tempDir("host-canary");
  mkdirSync(join(dir, "deep"), { recursive: true });
  writeFileSync(join(dir, "keep.txt"), "host file");
  writeFileSync(join(dir, "deep", "keep2.txt"), "host file 2");
  return {
    dir,
    intact: () => existsSync(join(dir, "keep.txt")) && existsSync(join(dir, "deep", "keep2.txt")) && readFileSync(join(dir, "keep.txt"), "utf8") === "host file",
  };
}

function makeApp(oci: string = defaultTestRuntime, flags: Record<string, unknown> = {}) {
  let logBytes = 0;
  const logger = createLogger({ level: "debug", write: (l) => (logBytes += Buffer.byteLength(l)) });
  const config = loadConfig({
    env: {},
    flags: {
      dataDir: tempDir("host-side"),
      "sandbox.ociRuntime": oci,
      "sandbox.profiles": { light: {}, standard: { timeoutMs: 25_000 }, heavy: {} },
      "sandbox.pool": { size: 0, maxTotal: 0, idleMs: 1000 },
      mcpServers: {
        rows: { command: process.execPath, args: [rowsServerPath] },
        hostile: { command: process.execPath, args: [hostilePath] },
      },
      ...flags,
    },
  });
  const app = createApp(config, logger);
  return { app, logBytes: () => logBytes };
}

const ts = (app: App, code: string, userId = "alice") => app.runs.execute({ userId, code, language: "typescript" });
const py = (app: App, code: string, userId = "alice") => app.runs.execute({ userId, code, language: "python" });

describe("one upstream with a sloppy, hostile tool list", () => {
  let app: App;
  beforeAll(async () => {
    app = makeApp().app;
    await app.bridge.start();
  });
  afterAll(async () => closeAndCheck(app));

  it("costs only its own tools: the other server's code API and plain runs keep working", async () => {
    expect((await ts(app, "console.log(1)")).stdout).toBe("1\n");
    const r = await ts(app, `import { echo } from "/servers/rows/index.ts"; console.log(await echo({ message: "ok" }));`);
    expect(r.stdout).toBe("echo: ok\n");
  });

  it("gets valid, unique names that never shadow the client's helpers, in both languages", async () => {
    const r = await ts(
      app,
      `import * as h from "/servers/hostile/index.ts";
       const names = Object.keys(h).sort();
       console.log(names.join(","));
       for (const n of names) console.log(await (h as Record<string, (a: object) => Promise<string>>)[n]({ list: [] }));`,
    );
    expect(r.stderr).toBe("");
    const [names, ...answers] = r.stdout.trim().split("\n");
    expect(names!.split(",")).toHaveLength(5);
    expect(names!.split(",")).not.toContain("callTool");
    expect(names!.split(",")).not.toContain("unwrap");
    expect(answers.sort()).toEqual(["hostile:3d_render", "hostile:call-tool", "hostile:callTool", "hostile:call_tool", "hostile:unwrap"]);
    const p = await py(app, "import servers.hostile as h\nfor n in sorted(h.__all__):\n    print(getattr(h, n)({}))");
    expect(p.stderr).toBe("");
    expect(p.stdout.trim().split("\n").sort()).toEqual(answers.sort());
  });

  it("runs nothing from its descriptions when its modules load", async () => {
    await ts(app, `import "/servers/hostile/index.ts";`);
    await py(app, "import servers.hostile");
    const r = await ts(app, `import fs from "node:fs"; console.log(fs.existsSync("/workspace/pwned"));`);
    expect(r.stdout).toBe("false\n");
  });

  it("shows the name mapping in search_tools", async () => {
    const hits = await app.bridge.search("alice", "", { server: "hostile", detail: "name", limit: 50 });
    const byTool = Object.fromEntries(hits.map((h) => [h.tool, h.function]));
    expect(byTool["3d_render"]).toMatch(/^[A-Za-z_$][A-Za-z0-9_$]*$/);
    expect(new Set(Object.values(byTool)).size).toBe(5);
  });
});

describe("one run against its own bridge", () => {
  let app: App;
  let logBytes: () => number;
  beforeAll(async () => {
    ({ app, logBytes } = makeApp());
    await app.bridge.start();
  });
  afterAll(async () => closeAndCheck(app));

  it("grows the server's memory by less than 100 MB with 200 connections that each announce 4 MiB, while another user's run answers", async () => {
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    const attack = ts(
      app,
      `import net from "node:net";
       const size = 4 * 1024 * 1024, chunk = Buffer.alloc(64 * 1024, 120), conns: net.Socket[] = [];
       for (let i = 0; i < 200; i++) {
         const c = net.connect(process.env.CODEBOX_BRIDGE_SOCKET!);
         c.on("error", () => {});
         c.write("POST /internal/mcp-call HTTP/1.1\\r\\nhost: x\\r\\nauthorization: Bearer " + process.env.CODEBOX_BRIDGE_TOKEN + "\\r\\ncontent-type: application/json\\r\\ncontent-length: " + size + "\\r\\n\\r\\n");
         conns.push(c);
       }
       const end = Date.now() + 12_000;
       for (let sent = 0; sent < size - chunk.length && Date.now() < end; sent += chunk.length) {
         for (const c of conns) if (!c.destroyed && c.writableLength < 1 << 20) c.write(chunk);
         await new Promise((r) => setTimeout(r, 2));
       }
       console.log("done", conns.filter((c) => !c.destroyed).length);`,
    );
    await new Promise((r) => setTimeout(r, 2_000));
    const other = await ts(app, "console.log(1)", "bob");
    const r = await attack;
    clearInterval(sampler);
    expect(other.stdout).toBe("1\n");
    expect(r.stdout).toMatch(/^done \d+\n$/);
    expect(peak - before).toBeLessThan(100 * 1024 * 1024);
  });

  it("holds a display flood to its caps: memory, images in the result, notes; another user's run answers", async () => {
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    const attack = ts(
      app,
      `import { deflateSync, crc32 } from "node:zlib";
       import { display } from "/servers/display.ts";
       const chunk = (t: string, d: Buffer) => { const l = Buffer.alloc(4); l.writeUInt32BE(d.length); const td = Buffer.concat([Buffer.from(t), d]); const c = Buffer.alloc(4); c.writeUInt32BE(crc32(td)); return Buffer.concat([l, td, c]); };
       const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(2, 0); ihdr.writeUInt32BE(2, 4); ihdr.set([8, 0, 0, 0, 0], 8);
       const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.alloc(6))), chunk("IEND", Buffer.alloc(0))]);
       let shown = 0;
       for (let i = 0; i < 12; i++) if (await display(png, { name: "../../etc/passwd" })) shown++;
       const junk = Buffer.alloc(8 * 1024 * 1024, 7);
       const big = Buffer.alloc(9 * 1024 * 1024, 7);
       for (let round = 0; round < 40; round++) await Promise.all([display(junk), display(junk), display(junk), display(big)]);
       console.log("shown", shown);`,
    );
    await new Promise((r) => setTimeout(r, 2_000));
    const other = await ts(app, "console.log(1)", "bob");
    const r = await attack;
    clearInterval(sampler);
    expect(other.stdout).toBe("1\n");
    expect(r.stdout).toBe("shown 8\n");
    expect(r.shown).toHaveLength(8);
    expect(r.shown.every((s) => s.kind === "image" && s.label === ".._.._etc_passwd")).toBe(true);
    expect(r.notes).toHaveLength(11);
    expect(r.notes[0]).toBe("image 9 not shown: a run shows at most 8 images");
    expect(r.notes[10]).toMatch(/^\d+ more display notes left out$/);
    expect(peak - before).toBeLessThan(100 * 1024 * 1024);
  });

  it("writes less than 10 MB of host logs and audit for thousands of refused calls with megabyte names, and is ended with the reason", async () => {
    const audit = join(app.config.dataDir, "audit.log");
    const auditBefore = existsSync(audit) ? statSync(audit).size : 0;
    const logsBefore = logBytes();
    const run = ts(
      app,
      `import { callMCPTool } from "/servers/client.ts";
       const huge = "x".repeat(1024 * 1024);
       for (let i = 0; i < 3000; i++) await callMCPTool(huge, huge).catch(() => {});
       console.log("survived");`,
    );
    await expect(run).rejects.toMatchObject({ code: "CODEBOX_RUN_ENDED" });
    await expect(run).rejects.toThrow(/refused/);
    await new Promise((r) => setTimeout(r, 300));
    const auditGrowth = (existsSync(audit) ? statSync(audit).size : 0) - auditBefore;
    expect(logBytes() - logsBefore + auditGrowth).toBeLessThan(10 * 1024 * 1024);
    expect((await ts(app, "console.log(2)", "bob")).stdout).toBe("2\n");
  });
});

describe("the Python runner's own imports", () => {
  let app: App;
  beforeAll(() => {
    app = makeApp().app;
  });
  afterAll(async () => closeAndCheck(app));

  it("never run a module the code planted in /workspace (ast.py, asyncio.py)", async () => {
    const plant = "import os\nopen('/workspace/ran-planted', 'w').write('x')\n";
    await py(app, `open('/workspace/ast.py', 'w').write(${JSON.stringify(plant)})\nopen('/workspace/asyncio.py', 'w').write(${JSON.stringify(plant)})`);
    const r = await py(app, "print(1)\nasync def f():\n    return 2\nawait f()");
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("1\n");
    expect((await ts(app, `import fs from "node:fs"; console.log(fs.existsSync("/workspace/ran-planted"))`)).stdout).toBe("false\n");
  });
});


describe.each(["runc", "runsc"])("write_file while a live run swaps its folders for links (%s)", (oci) => {
  let app: App;
  beforeAll(() => {
    app = makeApp(oci).app;
  });
  afterAll(async () => closeAndCheck(app));

  // The host writes into /workspace (write_file, saved output, display) while the user's code
  // runs there: every write must stay beneath the workspace whatever the code swaps meanwhile.
  it("writes again and again into folders the run turns into links; the host canary survives", async () => {
    const canary = hostCanary();
    const attacker = ts(
      app,
      `import fs from "node:fs";
       const target = ${JSON.stringify(canary.dir)};
       fs.mkdirSync("/workspace/victim/a", { recursive: true });
       process.chdir("/workspace/victim/a");
       let swaps = 0;
       const end = Date.now() + 8_000;
       while (Date.now() < end) {
         for (const n of ["b", "c", "deep"]) {
           try { fs.renameSync(n, n + ".m" + swaps); } catch {}
           try { fs.symlinkSync(target, n); if (swaps++ === 0) console.log("swapping"); } catch {}
           try { fs.unlinkSync(n); } catch {}
           try { fs.mkdirSync(n + "/x", { recursive: true }); } catch {}
         }
         try { fs.renameSync("/workspace/victim/a", "/workspace/victim/a.m" + swaps); fs.symlinkSync(target, "/workspace/victim/a"); fs.unlinkSync("/workspace/victim/a"); fs.mkdirSync("/workspace/victim/a"); } catch {}
       }
       console.log("done");`,
    );
    const until = Date.now() + 7_000;
    let writes = 0;
    while (Date.now() < until) {
      for (const path of ["victim/a/b/keep.txt", "victim/a/deep/x/keep2.txt", "victim/a/c/x/new.txt", "victim/a/keep.txt"]) {
        await app.files.writeWorkspace("alice", path, Buffer.from("overwritten")).catch(() => undefined);
        writes++;
      }
    }
    const r = await attacker;
    expect(r.stdout, JSON.stringify({ stderr: r.stderr.slice(0, 500), exitCode: r.exitCode, timedOut: r.timedOut, writes })).toMatch(/^swapping\n(done\n)?$/);
    if (!r.stdout.includes("done")) expect(r.timedOut).toBe(true);
    expect(writes).toBeGreaterThan(20);
    expect(canary.intact()).toBe(true);
    expect(existsSync(join(canary.dir, "new.txt")) || existsSync(join(canary.dir, "x", "new.txt"))).toBe(false);
  });
});
