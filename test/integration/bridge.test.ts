import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../src/app.js";
import { loadConfig } from "../../src/config/load.js";
import { capturingLogger, closeAndCheck, defaultTestRuntime, docker, expectNoRunContainers, removeDir, rowsServerPath, tempDir, } from "../helpers.js";

// The bridge with a real upstream MCP server (test/fixtures/rows-server.mjs over stdio) and
// real containers: sandboxed code calls upstream tools through /servers and the callback socket.
const CANARY = `canary-${Math.random().toString(36).slice(2)}`;
const eventsFile = join(tempDir("events"), "events.log");
let app: App;
let lines: Array<Record<string, unknown>>;

function makeApp(flags: Record<string, unknown> = {}): { app: App; lines: Array<Record<string, unknown>> } {
  const captured = capturingLogger();
  const config = loadConfig({
    env: {},
    flags: {
      dataDir: tempDir("bridge"),
      "sandbox.ociRuntime": defaultTestRuntime,
      "sandbox.profiles": { light: {}, standard: { timeoutMs: 20_000 }, heavy: {} },
      mcpServers: { rows: { command: process.execPath, args: [rowsServerPath], env: { ROWS_SECRET: CANARY, ROWS_EVENTS_FILE: eventsFile } } },
      "bridge.maxCallsPerRun": 20,
      "bridge.maxResponseBytes": 4 * 1024 * 1024,
      ...flags,
    },
  });
  return { app: createApp(config, captured.logger), lines: captured.lines };
}

const run = (code: string, opts: { userId?: string; timeoutMs?: number } = {}, target: App = app) =>
  target.runs.execute({ userId: opts.userId ?? "alice", code, language: "typescript", timeoutMs: opts.timeoutMs });

beforeAll(async () => {
  ({ app, lines } = makeApp());
  await app.bridge.start();
});

afterEach(async () => {
  // Acceptance: after every test, no container with the project's labels remains (idle warm ones aside).
  await expectNoRunContainers(app);
});

afterAll(async () => {
  await closeAndCheck(app);
});

describe("calling upstream tools from sandboxed code", () => {
  it("imports the generated module and gets structured and text results", async () => {
    const r = await run(`
      import { listRows, echo } from "/servers/rows/index.ts";
      const { rows } = await listRows({ count: 100 });
      console.log(rows.length, rows[0].name, await echo({ message: "hi" }));`);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("100 customer-00001 echo: hi\n");
  });

  it("throws MCPToolError for a tool that reports an error", async () => {
    const r = await run(`
      import { fail } from "/servers/rows/index.ts";
      try { await fail(); } catch (e) { console.log(e.name, e.message); }`);
    expect(r.stdout).toBe("MCPToolError this tool always fails\n");
  });

  it("offers callMCPTool for the raw result and /servers/index.json for discovery", async () => {
    const r = await run(`
      import { callMCPTool } from "/servers/client.ts";
      import fs from "node:fs";
      const index = JSON.parse(fs.readFileSync("/servers/index.json", "utf8"));
      const raw = await callMCPTool("rows", "echo", { message: "raw" });
      console.log(index.map((s) => s.server).join(","), index[0].tools.some((t) => t.function === "listRows"), JSON.stringify(raw.content));`);
    expect(r.stdout).toBe('rows true [{"type":"text","text":"echo: raw"}]\n');
  });

  it("mounts /servers read-only", async () => {
    const r = await run(`import fs from "node:fs"; try { fs.writeFileSync("/servers/client.ts", "hacked"); console.log("wrote") } catch (e) { console.log(e.code) }`);
    // gVisor reports a write to a read-only mount as EACCES.
    expect(r.stdout).toBe(defaultTestRuntime === "runsc" ? "EACCES\n" : "EROFS\n");
  });

  it("refuses a server the run may not call", async () => {
    const r = await run(`
      import { callMCPTool } from "/servers/client.ts";
      try { await callMCPTool("nope", "x", {}); } catch (e) { console.log(e.status, e.message); }`);
    expect(r.stdout).toMatch(/^403 nope\.x: no upstream server "nope"/);
  });

  it("limits the calls per run", async () => {
    const r = await run(`
      import { echo } from "/servers/rows/index.ts";
      let ok = 0, refused = "";
      for (let i = 0; i < 25; i++) { try { await echo({ message: String(i) }); ok++; } catch (e) { refused = e.status + " " + e.message; break; } }
      console.log(ok, refused);`);
    expect(r.stdout).toMatch(/^20 429 rows\.echo: this run has made 20 tool calls/);
  });

  it("refuses a response bigger than the limit with advice", async () => {
    const r = await run(`
      import { listRows } from "/servers/rows/index.ts";
      try { await listRows({ count: 100000 }); } catch (e) { console.log(e.status, e.message); }`);
    expect(r.stdout).toMatch(/^413 .*limit is 4194304.*Ask the tool for less/);
  });

  it("gives Python the same refusals as MCPToolError with the status", async () => {
    const r = await app.runs.execute({
      userId: "alice",
      language: "python",
      code: [
        "from servers.client import MCPToolError",
        "from servers.rows import echo, list_rows",
        "try:",
        "    list_rows(count=100000)",
        "except MCPToolError as e:",
        "    print(e.status, str(e)[:40])",
        "ok = 0",
        "try:",
        "    for i in range(25):",
        "        echo(message=str(i))",
        "        ok += 1",
        "except MCPToolError as e:",
        "    print(ok, e.status)",
      ].join("\n"),
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^413 rows\.list_rows: .*\n19 429\n$/);
  });
});

describe("run tokens", () => {
  const post = (auth: string | null) => `
    import { request } from "node:http";
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const body = JSON.stringify({ server: "rows", tool: "echo", arguments: { message: "x" } });
      const headers: Record<string, string> = { "content-type": "application/json" };
      ${auth === null ? "" : `headers.authorization = ${auth};`}
      const req = request({ socketPath: "/run/codebox/mcp.sock", path: "/internal/mcp-call", method: "POST", headers }, (r) => {
        let b = ""; r.on("data", (c) => (b += c)); r.on("end", () => resolve({ status: r.statusCode ?? 0, body: b }));
      });
      req.on("error", reject); req.end(body);
    });
    console.log(res.status, JSON.parse(res.body).reason ?? "ok");`;

  it("accepts the run's own token", async () => {
    expect((await run(post('"Bearer " + process.env.CODEBOX_BRIDGE_TOKEN'))).stdout).toBe("200 ok\n");
  });

  it("refuses a call without a token, and logs it", async () => {
    expect((await run(post(null))).stdout).toBe("401 missing\n");
    expect(lines.some((l) => l.msg === "bridge call refused" && l.reason === "missing")).toBe(true);
  });

  it("refuses a forged token", async () => {
    expect((await run(post('"Bearer " + "A".repeat(43)'))).stdout).toBe("401 forged\n");
    expect(lines.some((l) => l.msg === "bridge call refused" && l.reason === "forged")).toBe(true);
  });

  it("refuses a token reused after its run ended", async () => {
    await run('import fs from "node:fs"; fs.writeFileSync("/workspace/old-token", process.env.CODEBOX_BRIDGE_TOKEN ?? "")');
    const r = await run(`import fs from "node:fs"; (globalThis as any).oldToken = "Bearer " + fs.readFileSync("/workspace/old-token", "utf8");\n${post("(globalThis as any).oldToken")}`);
    expect(r.stdout).toBe("401 expired\n");
    expect(lines.some((l) => l.msg === "bridge call refused" && l.reason === "expired")).toBe(true);
  });

  it("refuses the token of another run that is still running", async () => {
    // Run A (user alice) publishes its token and waits; run B (user bob) tries it on its own socket.
    const dataDir = app.config.dataDir;
    const a = run('import fs from "node:fs"; fs.writeFileSync("/workspace/live-token", process.env.CODEBOX_BRIDGE_TOKEN ?? ""); await new Promise((r) => setTimeout(r, 6000));');
    const tokenFile = join(dataDir, "users", "alice", "workspace", "live-token");
    const deadline = Date.now() + 15_000;
    while (!existsSync(tokenFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const stolen = readFileSync(tokenFile, "utf8");
    const b = await run(post(JSON.stringify(`Bearer ${stolen}`)), { userId: "bob" });
    await a;
    expect(b.stdout).toBe("403 other-run\n");
    expect(lines.some((l) => l.msg === "bridge call refused" && l.reason === "other-run")).toBe(true);
  });
});

describe("secrets", () => {
  it("keeps an upstream's env secret out of the sandbox: env, /proc/*/environ, files", async () => {
    const r = await run(`
      import fs from "node:fs";
      import path from "node:path";
      import { secretPresent } from "/servers/rows/index.ts";
      const canary = ${JSON.stringify(CANARY)};
      const hits: string[] = [];
      if (JSON.stringify(process.env).includes(canary)) hits.push("process.env");
      for (const pid of fs.readdirSync("/proc").filter((p) => /^\\d+$/.test(p))) {
        try { if (fs.readFileSync("/proc/" + pid + "/environ", "latin1").includes(canary)) hits.push("/proc/" + pid + "/environ"); } catch {}
      }
      let scanned = 0;
      const walk = (dir: string) => {
        let entries: fs.Dirent[] = [];
        try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
        for (const e of entries) {
          const p = path.join(dir, e.name);
          if (e.isDirectory()) walk(p);
          else if (e.isFile()) { try { const st = fs.statSync(p); if (st.size < 50_000_000 && fs.readFileSync(p, "latin1").includes(canary)) hits.push(p); scanned++; } catch {} }
        }
      };
      for (const root of ["/servers", "/run", "/workspace", "/skills", "/tmp", "/etc", "/opt", "/usr", "/lib", "/lib64", "/home", "/root"]) walk(root);
      console.log(JSON.stringify({ hits, scanned, upstreamHasIt: await secretPresent() }));`);
    const facts = JSON.parse(r.stdout) as { hits: string[]; scanned: number; upstreamHasIt: string };
    expect(facts.hits).toEqual([]);
    expect(facts.scanned).toBeGreaterThan(3);
    // The upstream itself did get it: the test would prove nothing otherwise.
    expect(facts.upstreamHasIt).toBe("true");
  });
});

describe("upstream lifecycle", () => {
  it("cancels a call still in flight when its run ends; it has no effect afterwards", async () => {
    const tag = `t${Date.now()}`;
    const r = await run(`import { slow } from "/servers/rows/index.ts"; await slow({ ms: 8000, tag: ${JSON.stringify(tag)} }); console.log("returned");`, { timeoutMs: 5_000 });
    expect(r.timedOut).toBe(true);
    const deadline = Date.now() + 10_000;
    const events = () => (existsSync(eventsFile) ? readFileSync(eventsFile, "utf8") : "");
    while (!events().includes(`cancelled ${tag}`) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect(events()).toContain(`started ${tag}`);
    expect(events()).toContain(`cancelled ${tag}`);
    expect(events()).not.toContain(`finished ${tag}`);
  });

  it("follows tools/list_changed: a tool added upstream is importable in the next run", async () => {
    const r = await run('import { addTool } from "/servers/rows/index.ts"; console.log(await addTool())');
    const name = r.stdout.trim();
    expect(name).toMatch(/^extra_\d+$/);
    const id = name.replace("_", "");
    const deadline = Date.now() + 10_000;
    while (!app.bridge.servers.entries.some((e) => e.tool.name === name) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    const again = await run(`import { ${id.charAt(0) + id.slice(1)} } from "/servers/rows/index.ts"; console.log(await ${id}())`);
    expect(again.stdout).toBe(`${name}\n`);
  });

  it("after the upstream is killed, the next call fails clearly and a later one succeeds", async () => {
    const conn = app.bridge.pool.get("rows")!;
    const pid = conn.pid!;
    expect(pid).toBeGreaterThan(0);
    // The run calls once, then waits while the test kills the upstream, then calls again at once.
    const ws = join(app.config.dataDir, "users", "alice", "workspace");
    const { rmSync, writeFileSync: write } = await import("node:fs");
    rmSync(join(ws, "go"), { force: true });
    rmSync(join(ws, "ready"), { force: true });
    const pending = run(`
      import fs from "node:fs";
      import { echo } from "/servers/rows/index.ts";
      console.log(await echo({ message: "before" }));
      fs.writeFileSync("/workspace/ready", "1");
      while (!fs.existsSync("/workspace/go")) await new Promise((r) => setTimeout(r, 20));
      try { console.log(await echo({ message: "a" })) } catch (e) { console.log("error:", e.message) }`);
    const readyBy = Date.now() + 20_000;
    while (!existsSync(join(ws, "ready")) && Date.now() < readyBy) await new Promise((res) => setTimeout(res, 50));
    process.kill(pid, "SIGKILL");
    await new Promise((res) => setTimeout(res, 150));
    write(join(ws, "go"), "1");
    const next = await pending;
    expect(next.stdout).toMatch(/^echo: before\nerror: rows\.echo: .*(unavailable|went away|closed)/i);
    const deadline = Date.now() + 20_000;
    while (conn.state !== "ready" && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
    const later = await run('import { echo } from "/servers/rows/index.ts"; console.log(await echo({ message: "back" }))');
    expect(later.stdout).toBe("echo: back\n");
    expect(conn.pid).not.toBe(pid);
  });

  it("reports an upstream that cannot start without failing the server", async () => {
    const broken = makeApp({ mcpServers: { ghost: { command: "/nonexistent/mcp-server", args: [] } } });
    try {
      await broken.app.bridge.start();
      expect(broken.app.bridge.pool.status()).toEqual([expect.objectContaining({ name: "ghost", state: "down" })]);
      const r = await run(`import { callMCPTool } from "/servers/client.ts"; try { await callMCPTool("ghost", "x") } catch (e) { console.log(e.message) }`, {}, broken.app);
      expect(r.stdout).toMatch(/ghost\.x: .*"ghost" is unavailable/);
      expect(broken.lines.some((l) => String(l.msg).includes('could not connect to upstream MCP server "ghost"'))).toBe(true);
    } finally {
      await broken.app.close();
    }
  });
});

describe("search_tools, through a real MCP client", () => {
  it("returns the right tools at each detail level", async () => {
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const server = app.createServer();
    await server.connect(serverSide);
    const client = new Client({ name: "search-test", version: "1" });
    await client.connect(clientSide);
    try {
      const search = async (args: Record<string, unknown>) => ((await client.callTool({ name: "search_tools", arguments: args })) as CallToolResult).structuredContent as { tools: Array<Record<string, unknown>> };
      const byName = await search({ query: "rows", detail: "name" });
      expect(byName.tools[0]).toEqual({ server: "rows", tool: "list_rows", import: "/servers/rows/index.ts", function: "listRows", python: "from servers.rows import list_rows" });
      const summary = await search({ query: "echo message", detail: "summary" });
      expect(summary.tools[0]).toMatchObject({ tool: "echo", description: "Echo a message back." });
      expect(summary.tools[0]).not.toHaveProperty("inputSchema");
      const full = await search({ query: "customer rows", detail: "full" });
      expect(full.tools[0]).toMatchObject({ tool: "list_rows", inputSchema: { type: "object", properties: { count: expect.any(Object) } }, outputSchema: expect.any(Object) });
      const none = await search({ query: "zebra quantum" });
      expect(none.tools).toEqual([]);
      const filtered = await search({ query: "", server: "nope" });
      expect(filtered.tools).toEqual([]);
    } finally {
      await client.close();
    }
  });
});

describe("under gVisor", () => {
  it("calls upstream tools with NetworkMode none under runsc (setup.sh installs it)", async () => {
    const info = await docker.info() as { Runtimes?: Record<string, unknown> };
    expect(Object.keys(info.Runtimes ?? {}), "runsc must be registered: run scripts/setup.sh").toContain("runsc");
    const g = makeApp({ "sandbox.ociRuntime": "runsc" });
    try {
      const r = await run('import { echo } from "/servers/rows/index.ts"; import net from "node:net"; console.log(await echo({ message: "gvisor" }), Object.keys((await import("node:os")).networkInterfaces()).join(","))', {}, g.app);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("echo: gvisor lo\n");
    } finally {
      await g.app.close();
      removeDir(g.app.config.dataDir);
    }
  });
});

describe("TCP mode (for engines that cannot share a unix socket)", () => {
  it("reaches the callback over TCP with the run token, and refuses it without", async () => {
    // TCP mode is for Docker Desktop's runc; runsc is registered with --network=none and has no network to use.
    const t = makeApp({ "bridge.transport": "tcp", "bridge.tcpNetwork": "bridge", "bridge.tcpBindHost": "0.0.0.0", "sandbox.ociRuntime": "runc" });
    try {
      const r = await run(
        `import { echo } from "/servers/rows/index.ts";
         import { request } from "node:http";
         const url = new URL(process.env.CODEBOX_BRIDGE_URL!);
         const status = await new Promise((resolve) => request({ host: url.hostname, port: url.port, path: "/internal/mcp-call", method: "POST" }, (res) => { res.resume(); resolve(res.statusCode); }).on("error", (e) => resolve(e.message)).end("{}"));
         console.log(await echo({ message: "tcp" }), status, "CODEBOX_BRIDGE_SOCKET" in process.env);`,
        {},
        t.app,
      );
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("echo: tcp 401 false\n");
      // The Python client takes the same URL.
      const py = await t.app.runs.execute({ userId: "alice", language: "python", code: "import os\nfrom servers.rows import echo\nprint(echo(message='tcp-py'), 'CODEBOX_BRIDGE_URL' in os.environ)" });
      expect(py.stderr).toBe("");
      expect(py.stdout).toBe("echo: tcp-py True\n");
    } finally {
      await t.app.close();
      removeDir(t.app.config.dataDir);
    }
  });

  it("by default gives each user an internal network: the bridge answers, the internet, the metadata address and the other user's sandbox do not", async () => {
    const t = makeApp({ "bridge.transport": "tcp", "sandbox.ociRuntime": "runc" });
    const probe = (extra = "") => `
      import net from "node:net";
      import { echo } from "/servers/rows/index.ts";
      const reach = (host: string, port: number) => new Promise((resolve) => {
        const s = net.connect({ host, port, timeout: 1500 });
        s.on("connect", () => { s.destroy(); resolve("connected"); });
        s.on("timeout", () => { s.destroy(); resolve("timeout"); });
        s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code));
      });
      ${extra}
      console.log(JSON.stringify({ echo: await echo({ message: "in" }), internet: await reach("1.1.1.1", 443), metadata: await reach("169.254.169.254", 80) }));`;
    try {
      // Bob's sandbox listens; Alice's tries to reach it.
      const bob = run(probe(`net.createServer((c) => c.end("bob")).listen(7777); await new Promise((r) => setTimeout(r, 8000));`), { userId: "bob" }, t.app);
      let bobAddr: string | undefined;
      for (let i = 0; i < 50 && !bobAddr; i++) {
        await new Promise((r) => setTimeout(r, 200));
        const [c] = await docker.listContainers({ filters: { label: ["dev.codebox-mcp.user=bob", `dev.codebox-mcp.instance=${t.app.backend.instance.id}`] } });
        bobAddr = Object.values(c?.NetworkSettings?.Networks ?? {})[0]?.IPAddress || undefined;
      }
      expect(bobAddr).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      const a = await run(probe(`console.log("bob:", await reach(${JSON.stringify(bobAddr)}, 7777));`), { userId: "alice" }, t.app);
      expect(a.stderr).toBe("");
      const lines = a.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^bob: /);
      expect(lines[0]).not.toBe("bob: connected");
      const seen = JSON.parse(lines.at(-1)!) as Record<string, string>;
      expect(seen.echo).toBe("echo: in");
      expect(seen.internet).not.toBe("connected");
      expect(seen.metadata).not.toBe("connected");
      const b = await bob;
      expect(JSON.parse(b.stdout.trim()).echo).toBe("echo: in");
    } finally {
      await t.app.close();
      removeDir(t.app.config.dataDir);
    }
    // The server's networks go with it.
    expect((await docker.listNetworks()).filter((n) => n.Labels?.["dev.codebox-mcp.instance"] === t.app.backend.instance.id)).toEqual([]);
  });
});

describe("the audit log", () => {
  it("has one JSON line per run and per callback, refusals included", async () => {
    const r = await run('import { echo } from "/servers/rows/index.ts"; await echo({ message: "audited" }); console.log("ok")');
    expect(r.stdout).toBe("ok\n");
    await new Promise((res) => setTimeout(res, 200));
    const records = readFileSync(join(app.config.dataDir, "audit.log"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const runRecord = records.findLast((x) => x.kind === "run" && x.upstreamCalls === 1 && x.exitCode === 0);
    expect(runRecord).toMatchObject({ userId: "alice", language: "typescript", runtime: "node", ociRuntime: defaultTestRuntime, timedOut: false, oomKilled: false });
    expect(runRecord!.codeSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(typeof runRecord!.time).toBe("string");
    const call = records.find((x) => x.kind === "call" && x.runId === runRecord!.runId);
    expect(call).toMatchObject({ server: "rows", tool: "echo", ok: true, userId: "alice" });
    // The token tests above were refused: each refusal is on record with its reason.
    const reasons = new Set(records.filter((x) => x.kind === "refusal").map((x) => x.reason));
    for (const reason of ["missing", "forged", "expired", "other-run"]) expect(reasons.has(reason), reason).toBe(true);
    expect(records.some((x) => x.kind === "run" && x.timedOut === true)).toBe(true);
  });
});
