// The bridge clients that run inside the sandbox (sandbox-image/bridge/client.ts and client.py),
// as /servers holds them: written by clientFiles() beside their generated protocol modules, run in
// a child `node` / `python3`, and pointed at a scripted stand-in for the run's callback endpoint.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { transform } from "sucrase";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RunCallbackServer } from "../../src/bridge/callback-server.js";
import { clientFiles } from "../../src/bridge/codegen/clients.js";
import { RunTokens } from "../../src/bridge/run-tokens.js";
import type { UpstreamConnection } from "../../src/bridge/upstream-pool.js";
import { BRIDGE_CALL_PATH, BRIDGE_ENV, CLIENT_PROTOCOL, SOCKET_NAME } from "../../src/protocol/bridge.js";
import { createLogger } from "../../src/shared/logger.js";
import { packagePath } from "../../src/shared/paths.js";

const tmp = mkdtempSync("/tmp/cb-");
const serversDir = join(tmp, "servers");
const socketPath = join(tmp, SOCKET_NAME);
const TOKEN = "tok_".padEnd(43, "x");

/** What the stand-in endpoint received. */
interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
type Reply = { status: number; json?: unknown; text?: string };

let received: Received[] = [];
/** Connections the stand-in accepted, and whether it drops each kept one once it falls idle. */
let connections = 0;
let dropIdle = false;
let reply: (r: Received) => Reply;
const ok = (json: unknown): Reply => ({ status: 200, json });

const fake: Server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const r: Received = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
    received.push(r);
    const { status, json, text } = reply(r);
    const payload = text ?? JSON.stringify(json);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
    res.end(payload);
    // As the bridge does at its keep-alive timeout, with no warning to the client.
    if (dropIdle) res.on("finish", () => setTimeout(() => req.socket.destroy(), 20));
  });
});
fake.on("connection", () => connections++);
const fakeTcp: Server = createServer((req, res) => fake.emit("request", req, res));
let tcpPort = 0;
/** The interpreter behind `python3` (a version manager's shim costs a shell per child otherwise). */
let python = "python3";

beforeAll(async () => {
  mkdirSync(serversDir);
  for (const f of clientFiles()) writeFileSync(join(serversDir, f.path), f.content);
  // What the sandbox's Node loader does to a .ts module (sandbox-image/node/hooks.mjs), made ahead of time.
  const strip = (source: string) => transform(source, { transforms: ["typescript"], disableESTransforms: true, keepUnusedImports: false }).code;
  const clientTs = readFileSync(join(serversDir, "client.ts"), "utf8");
  expect(clientTs).toContain('from "./protocol.ts"');
  writeFileSync(join(serversDir, "client.mjs"), strip(clientTs).replace('"./protocol.ts"', '"./protocol.mjs"'));
  writeFileSync(join(serversDir, "protocol.mjs"), strip(readFileSync(join(serversDir, "protocol.ts"), "utf8")));
  writeFileSync(join(tmp, "run.mjs"), TS_RUNNER);
  await new Promise<void>((resolve) => fake.listen(socketPath, resolve));
  await new Promise<void>((resolve) => fakeTcp.listen(0, "127.0.0.1", resolve));
  tcpPort = (fakeTcp.address() as AddressInfo).port;
  python = (await run("python3", ["-c", "import sys; sys.stdout.write(sys.executable)"], {})) || "python3";
});

afterAll(async () => {
  fake.closeAllConnections();
  fakeTcp.closeAllConnections();
  await new Promise((r) => fake.close(r));
  await new Promise((r) => fakeTcp.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  received = [];
  connections = 0;
  dropIdle = false;
  reply = () => ok({ content: [{ type: "text", text: "fine" }] });
});

/** One call a child makes; `args` undefined means the function is called without arguments. */
interface Call {
  /** "sleep": wait `args.ms` before the next call. */
  fn: "callTool" | "callMCPTool" | "sleep";
  server: string;
  tool: string;
  args?: Record<string, unknown>;
}
type Outcome = { ok: unknown } | { err: { isMCPToolError: boolean; message: string; status: number | null; result: unknown } };

const TS_RUNNER = `import { callMCPTool, callTool, MCPToolError } from "./servers/client.mjs";
const out = [];
for (const c of JSON.parse(process.argv[2])) {
  if (c.fn === "sleep") { await new Promise((r) => setTimeout(r, c.args.ms)); continue; }
  const fn = c.fn === "callTool" ? callTool : callMCPTool;
  try {
    out.push({ ok: await (c.args === undefined ? fn(c.server, c.tool) : fn(c.server, c.tool, c.args)) });
  } catch (e) {
    out.push({ err: { isMCPToolError: e instanceof MCPToolError, message: e.message, status: e.status ?? null, result: e.result ?? null } });
  }
}
process.stdout.write(JSON.stringify(out));
`;

const PY_RUNNER = `
import json, sys
sys.path.insert(0, ${JSON.stringify(tmp)})
from servers.client import call_mcp_tool, call_tool, unwrap, MCPToolError
out = []
for c in json.loads(sys.argv[1]):
    if c["fn"] == "sleep":
        import time
        time.sleep(c["args"]["ms"] / 1000)
        continue
    fn = call_tool if c["fn"] == "callTool" else call_mcp_tool
    try:
        out.append({"ok": fn(c["server"], c["tool"], c["args"]) if "args" in c else fn(c["server"], c["tool"])})
    except MCPToolError as e:
        out.append({"err": {"isMCPToolError": True, "message": str(e), "status": e.status, "result": e.result}})
sys.stdout.write(json.dumps(out))
`;

function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: tmp, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PYTHONDONTWRITEBYTECODE: "1", ...env }, timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The bridge variables of a unix-socket run, as the runner sets them. */
const unixEnv = (over: Record<string, string | undefined> = {}): Record<string, string> => {
  const env: Record<string, string | undefined> = { [BRIDGE_ENV.socket]: socketPath, [BRIDGE_ENV.token]: TOKEN, ...over };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
};

const LANGUAGES = [
  { language: "TypeScript (client.ts)", run: async (calls: Call[], env: Record<string, string>) => run(process.execPath, [join(tmp, "run.mjs"), JSON.stringify(calls)], env) },
  { language: "Python (client.py)", run: async (calls: Call[], env: Record<string, string>) => run(python, ["-c", PY_RUNNER, JSON.stringify(calls)], env) },
];

describe.each(LANGUAGES)("the bridge client in $language", ({ run: runChild }) => {
  const calls = async (list: Call[], env = unixEnv()): Promise<Outcome[]> => JSON.parse(await runChild(list, env)) as Outcome[];
  const one = async (c: Call, env = unixEnv()): Promise<Outcome> => (await calls([c], env))[0]!;

  it("POSTs {server, tool, arguments} as JSON to the call path with the run's bearer token", async () => {
    await one({ fn: "callMCPTool", server: "files", tool: "read", args: { path: "a.txt", n: [1, 2], deep: { ok: true } } });
    expect(received).toHaveLength(1);
    const r = received[0]!;
    expect(r.method).toBe("POST");
    expect(r.url).toBe(BRIDGE_CALL_PATH);
    expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(r.headers["content-type"]).toBe("application/json");
    expect(Number(r.headers["content-length"])).toBe(Buffer.byteLength(r.body));
    expect(JSON.parse(r.body)).toEqual({ server: "files", tool: "read", arguments: { path: "a.txt", n: [1, 2], deep: { ok: true } } });
  });

  it("keeps one connection for a run's calls one after another", async () => {
    const calls: Call[] = Array.from({ length: 5 }, (_, i) => ({ fn: "callMCPTool", server: "s", tool: `t${i}` }));
    const out = JSON.parse(await runChild(calls, unixEnv())) as Outcome[];
    expect(out).toHaveLength(5);
    expect(out.every((o) => "ok" in o)).toBe(true);
    expect(received.map((r) => JSON.parse(r.body).tool)).toEqual(["t0", "t1", "t2", "t3", "t4"]);
    expect(connections).toBe(1);
  });

  it("sends a call again, once, on a fresh connection when the bridge closed the kept one while idle", async () => {
    dropIdle = true;
    const calls: Call[] = [
      { fn: "callMCPTool", server: "s", tool: "first" },
      { fn: "sleep", server: "", tool: "", args: { ms: 200 } },
      { fn: "callMCPTool", server: "s", tool: "second" },
    ];
    const out = JSON.parse(await runChild(calls, unixEnv())) as Outcome[];
    expect(out).toEqual([{ ok: { content: [{ type: "text", text: "fine" }] } }, { ok: { content: [{ type: "text", text: "fine" }] } }]);
    // Each call arrived exactly once.
    expect(received.map((r) => JSON.parse(r.body).tool)).toEqual(["first", "second"]);
    expect(connections).toBe(2);
  });

  it("sends empty arguments when called without any", async () => {
    await one({ fn: "callTool", server: "files", tool: "list" });
    expect(JSON.parse(received[0]!.body)).toEqual({ server: "files", tool: "list", arguments: {} });
  });

  it("returns a 200 result raw from the raw call, isError and all", async () => {
    const result = { content: [{ type: "text", text: "no such file" }, { type: "image", data: "AAAA", mimeType: "image/png" }], structuredContent: { code: 2 }, isError: true };
    reply = () => ok(result);
    expect(await one({ fn: "callMCPTool", server: "files", tool: "read" })).toEqual({ ok: result });
  });

  it("unwraps a result: structuredContent first, else the joined text, else the blocks", async () => {
    const image = { type: "image", data: "AAAA", mimeType: "image/png" };
    const results: Record<string, unknown> = {
      structured: { content: [{ type: "text", text: "{\"a\":1}" }], structuredContent: { a: 1, b: ["x"] } },
      texts: { content: [{ type: "text", text: "line one" }, { type: "text", text: "line two" }] },
      mixed: { content: [{ type: "text", text: "caption" }, image] },
      empty: { content: [] },
    };
    reply = (r) => ok(results[(JSON.parse(r.body) as { tool: string }).tool]);
    const out = await calls(Object.keys(results).map((tool) => ({ fn: "callTool" as const, server: "s", tool })));
    expect(out).toEqual([
      { ok: { a: 1, b: ["x"] } },
      { ok: "line one\nline two" },
      { ok: [{ type: "text", text: "caption" }, image] },
      { ok: "" },
    ]);
  });

  it("throws MCPToolError with the tool's text when the result has isError", async () => {
    const result = { content: [{ type: "text", text: "permission denied" }, { type: "text", text: "see the docs" }], isError: true };
    reply = () => ok(result);
    const out = await one({ fn: "callTool", server: "files", tool: "write" });
    expect(out).toEqual({ err: { isMCPToolError: true, message: "permission denied\nsee the docs", status: null, result } });
  });

  it("says the tool reported an error when an isError result has no text", async () => {
    reply = () => ok({ content: [], isError: true });
    const out = await one({ fn: "callTool", server: "files", tool: "write" });
    expect(out).toMatchObject({ err: { isMCPToolError: true, message: "the tool reported an error" } });
  });

  it("turns a refusal into MCPToolError carrying the status and the bridge's sentence", async () => {
    reply = () => ({ status: 429, json: { error: "this run has made 2 tool calls, the limit per run", reason: "call-limit" } });
    for (const fn of ["callMCPTool", "callTool"] as const) {
      const out = await one({ fn, server: "files", tool: "read" });
      expect(out).toEqual({ err: { isMCPToolError: true, message: "files.read: this run has made 2 tool calls, the limit per run", status: 429, result: null } });
    }
  });

  it("keeps the body of a non-JSON error answer as its message", async () => {
    reply = () => ({ status: 502, text: "Bad Gateway from somewhere" });
    const out = await one({ fn: "callTool", server: "files", tool: "read" });
    expect(out).toMatchObject({ err: { isMCPToolError: true, message: "files.read: Bad Gateway from somewhere", status: 502 } });
  });

  it("reports an unreachable bridge as MCPToolError", async () => {
    const out = await one({ fn: "callTool", server: "files", tool: "read" }, unixEnv({ [BRIDGE_ENV.socket]: join(tmp, "nobody-home.sock") }));
    expect(out).toMatchObject({ err: { isMCPToolError: true, status: null } });
    expect((out as { err: { message: string } }).err.message).toMatch(/^files\.read: the codebox bridge is unreachable \(.+\)$/);
    expect(received).toHaveLength(0);
  });

  it("uses the bridge URL in TCP mode, in preference to the socket", async () => {
    const env = unixEnv({ [BRIDGE_ENV.url]: `http://127.0.0.1:${tcpPort}`, [BRIDGE_ENV.socket]: join(tmp, "nobody-home.sock") });
    reply = () => ok({ content: [{ type: "text", text: "over tcp" }] });
    expect(await one({ fn: "callTool", server: "files", tool: "read", args: { a: 1 } }, env)).toEqual({ ok: "over tcp" });
    expect(received).toHaveLength(1);
    expect(received[0]!.url).toBe(BRIDGE_CALL_PATH);
    expect(received[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(JSON.parse(received[0]!.body)).toEqual({ server: "files", tool: "read", arguments: { a: 1 } });
  });

  it("sends an empty bearer without a token and reports the bridge's 401", async () => {
    reply = () => ({ status: 401, json: { error: "missing, invalid or expired run token", reason: "malformed" } });
    const out = await one({ fn: "callTool", server: "files", tool: "read" }, unixEnv({ [BRIDGE_ENV.token]: undefined }));
    // "Bearer " on the wire; the HTTP parser trims the trailing space.
    expect(received[0]!.headers.authorization).toMatch(/^Bearer ?$/);
    expect(out).toEqual({ err: { isMCPToolError: true, message: "files.read: missing, invalid or expired run token", status: 401, result: null } });
  });

  it("talks to the real callback endpoint: a granted call goes through, another server is refused", async () => {
    const tokens = new RunTokens();
    const fakeUpstream = { callTool: async (tool: string, args: Record<string, unknown>) => ({ content: [{ type: "text", text: `${tool} ${JSON.stringify(args)}` }] }) };
    const endpoint = await RunCallbackServer.startUnix("slot-x", join(tmp, `run-${Math.random().toString(36).slice(2, 8)}`), {
      tokens,
      upstreams: { get: (name) => (name === "files" ? (fakeUpstream as unknown as UpstreamConnection) : undefined) },
      limits: { maxCallsPerRun: 10, maxResponseBytes: 65_536, maxRequestBytes: 65_536, callTimeoutMs: 5_000, maxConnectionsPerRun: 8, maxInFlightPerRun: 4, maxRefusalsPerRun: 50, requestTimeoutMs: 30_000 },
      logger: createLogger({ level: "silent" }),
    });
    try {
      endpoint.bind("run-x");
      const token = tokens.issue({ runId: "run-x", userId: "u", servers: new Set(["files"]), deadline: Date.now() + 60_000 });
      const env = { [BRIDGE_ENV.socket]: join(endpoint.dir!, SOCKET_NAME), [BRIDGE_ENV.token]: token };
      const out = await calls(
        [
          { fn: "callTool", server: "files", tool: "read", args: { path: "a" } },
          { fn: "callTool", server: "secrets", tool: "dump" },
        ],
        env,
      );
      expect(out[0]).toEqual({ ok: 'read {"path":"a"}' });
      expect(out[1]).toMatchObject({ err: { isMCPToolError: true, status: 403 } });
      expect((out[1] as { err: { message: string } }).err.message).toMatch(/^secrets\.dump: no upstream server "secrets"/);
      expect(endpoint.stats()).toEqual({ calls: 1, refusals: 1 });
    } finally {
      await endpoint.close();
    }
  });
});

describe("the files clientFiles() writes into /servers", () => {
  it("are the clients and display helpers as shipped, their protocol modules and the package marker", () => {
    const files = new Map(clientFiles().map((f) => [f.path, f.content]));
    expect([...files.keys()].sort()).toEqual(["README.md", "__init__.py", "_display_mpl.py", "_protocol.py", "client.py", "client.ts", "display.py", "display.ts", "protocol.ts"]);
    for (const shipped of ["client.ts", "client.py", "display.ts", "display.py", "_display_mpl.py", "README.md"]) {
      expect(files.get(shipped)).toBe(readFileSync(packagePath("sandbox-image", "bridge", shipped), "utf8"));
    }
  });

  it("protocol.ts exports PROTOCOL equal to CLIENT_PROTOCOL", async () => {
    const script = `import { PROTOCOL } from "./servers/protocol.mjs"; process.stdout.write(JSON.stringify(PROTOCOL));`;
    const out = await run(process.execPath, ["--input-type=module", "-e", script], {});
    expect(JSON.parse(out)).toEqual(CLIENT_PROTOCOL);
  });

  it("_protocol.py defines PROTOCOL equal to CLIENT_PROTOCOL", async () => {
    const script = `import json, sys\nsys.path.insert(0, ${JSON.stringify(tmp)})\nfrom servers._protocol import PROTOCOL\nsys.stdout.write(json.dumps(PROTOCOL))`;
    expect(JSON.parse(await run(python, ["-c", script], {}))).toEqual(CLIENT_PROTOCOL);
  });

  it("the Python files compile", async () => {
    const files = ["client.py", "_protocol.py", "__init__.py"].map((f) => join(serversDir, f));
    await expect(run(python, ["-m", "py_compile", ...files], {})).resolves.toBe("");
  });
});
