// The run's callback endpoint (src/bridge/callback-server.ts), spoken to over real HTTP on a real
// unix socket (and TCP), with real run tokens and a scripted stand-in for the upstream MCP servers.
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type CallbackDeps, type CallbackEvent, type CallbackLimits, RunCallbackServer } from "../../src/bridge/callback-server.js";
import { RunTokens } from "../../src/bridge/run-tokens.js";
import type { UpstreamConnection } from "../../src/bridge/upstream-pool.js";
import { BRIDGE_CALL_PATH, REFUSAL_REASONS, type RefusalReason, SOCKET_NAME } from "../../src/protocol/bridge.js";
import { createLogger } from "../../src/shared/logger.js";

const base = mkdtempSync("/tmp/cb-");
afterAll(() => rmSync(base, { recursive: true, force: true }));

let dirs = 0;
const open: RunCallbackServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

type CallOptions = { signal: AbortSignal; timeoutMs: number };
type Handler = (tool: string, args: Record<string, unknown>, options: CallOptions) => Promise<CallToolResult>;
interface UpstreamCall {
  server: string;
  tool: string;
  args: Record<string, unknown>;
  options: CallOptions;
}

const DEFAULT_LIMITS: CallbackLimits = {
  maxCallsPerRun: 100,
  maxResponseBytes: 64 * 1024,
  maxRequestBytes: 16 * 1024,
  callTimeoutMs: 30_000,
  maxConnectionsPerRun: 8,
  maxInFlightPerRun: 4,
  maxRefusalsPerRun: 50,
  requestTimeoutMs: 30_000,
};
const echo: Handler = async (tool, args) => ({ content: [{ type: "text", text: `${tool}:${JSON.stringify(args)}` }] });

interface Setup {
  server: RunCallbackServer;
  tokens: RunTokens;
  /** This run's token (undefined when the endpoint was left unbound). */
  token: string;
  runId: string;
  target: Target;
  events: CallbackEvent[];
  upstreamCalls: UpstreamCall[];
  /** Reasons the endpoint gave when it ended the run as misbehaving. */
  misbehaving: string[];
}

/** Starts an endpoint for run "run-a" of user "u1", granted the servers `granted`, whose upstreams are `upstreams`. */
async function setup(
  opts: {
    upstreams?: Record<string, Handler>;
    granted?: string[];
    limits?: Partial<CallbackLimits>;
    deadline?: number;
    tcp?: boolean;
    bind?: boolean;
  } = {},
): Promise<Setup> {
  const upstreams = opts.upstreams ?? { files: echo };
  const events: CallbackEvent[] = [];
  const upstreamCalls: UpstreamCall[] = [];
  const misbehaving: string[] = [];
  const tokens = new RunTokens();
  const deps: CallbackDeps = {
    tokens,
    upstreams: {
      get(name) {
        const handler = upstreams[name];
        if (!handler) return undefined;
        const fake = {
          name,
          callTool(tool: string, args: Record<string, unknown>, options: CallOptions) {
            upstreamCalls.push({ server: name, tool, args, options });
            return handler(tool, args, options);
          },
        };
        return fake as unknown as UpstreamConnection;
      },
    },
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    logger: createLogger({ level: "silent" }),
    onEvent: (e) => events.push(e),
    onMisbehaving: (reason) => misbehaving.push(reason),
  };
  const server = opts.tcp
    ? await RunCallbackServer.startTcp("slot-1", "127.0.0.1", deps)
    : await RunCallbackServer.startUnix("slot-1", join(base, `r${++dirs}`), deps);
  open.push(server);
  const runId = "run-a";
  let token = "";
  if (opts.bind !== false) {
    server.bind(runId);
    token = tokens.issue({ runId, userId: "u1", servers: new Set(opts.granted ?? Object.keys(upstreams)), deadline: opts.deadline ?? Date.now() + 60_000 });
  }
  const target: Target = opts.tcp ? { host: "127.0.0.1", port: server.port } : { socketPath: join(server.dir!, SOCKET_NAME) };
  return { server, tokens, token, runId, target, events, upstreamCalls, misbehaving };
}

type Target = { socketPath: string } | { host: string; port: number };
interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** One HTTP request to the endpoint; the body is sent as given (a string) or JSON-encoded. */
function send(target: Target, opts: { method?: string; path?: string; token?: string | null; authorization?: string; body?: unknown }): Promise<Answer> {
  const raw = opts.body === undefined ? "" : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(raw) };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  else if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path: opts.path ?? BRIDGE_CALL_PATH, method: opts.method ?? "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(raw);
  });
}

const call = (s: Setup, body: unknown = { server: "files", tool: "read", arguments: { path: "a.txt" } }, token: string | null = s.token) =>
  send(s.target, { token, body });

/** A refusal's body: a human sentence in `error` and, here, a known `reason`. */
function expectRefusal(a: Answer, status: number, reason: RefusalReason): void {
  expect(a.status).toBe(status);
  expect(a.headers["content-type"]).toBe("application/json");
  expect(typeof a.json.error).toBe("string");
  expect(a.json.error.length).toBeGreaterThan(10);
  expect(a.json.error).toMatch(/\s/);
  expect(REFUSAL_REASONS).toContain(a.json.reason);
  expect(a.json.reason).toBe(reason);
}

const refusalEvents = (s: Setup) => s.events.filter((e) => e.kind === "refusal");
const callEvents = (s: Setup) => s.events.filter((e) => e.kind === "call");
const deferred = <T>() => {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

describe("a granted call", () => {
  it("reaches the upstream and answers 200 with the upstream's result as JSON", async () => {
    const result: CallToolResult = { content: [{ type: "text", text: "hello" }], structuredContent: { n: 1, list: ["x"] } };
    const s = await setup({ upstreams: { files: async () => result } });
    const a = await call(s, { server: "files", tool: "read", arguments: { path: "a.txt", n: 2 } });
    expect(a.status).toBe(200);
    expect(a.headers["content-type"]).toBe("application/json");
    expect(Number(a.headers["content-length"])).toBe(Buffer.byteLength(a.text));
    expect(a.json).toEqual(result);
    expect(s.upstreamCalls).toHaveLength(1);
    expect(s.upstreamCalls[0]).toMatchObject({ server: "files", tool: "read", args: { path: "a.txt", n: 2 } });
    expect(s.server.stats()).toEqual({ calls: 1, refusals: 0 });
  });

  it("passes empty arguments to the upstream when the body has none", async () => {
    const s = await setup();
    const a = await call(s, { server: "files", tool: "list" });
    expect(a.status).toBe(200);
    expect(s.upstreamCalls[0]!.args).toEqual({});
    expect(a.json).toEqual({ content: [{ type: "text", text: "list:{}" }] });
  });

  it("gives the upstream the call timeout, shortened to what is left of the run's deadline", async () => {
    const roomy = await setup({ limits: { callTimeoutMs: 5_000 } });
    await call(roomy);
    expect(roomy.upstreamCalls[0]!.options.timeoutMs).toBe(5_000);

    const tight = await setup({ limits: { callTimeoutMs: 5_000 }, deadline: Date.now() + 1_000 });
    await call(tight);
    const t = tight.upstreamCalls[0]!.options.timeoutMs;
    expect(t).toBeGreaterThan(0);
    expect(t).toBeLessThanOrEqual(1_000);
  });

  it("keeps the upstream's signal live while the sandbox waits for a slow tool", async () => {
    let abortedDuringCall: boolean | undefined;
    const s = await setup({
      upstreams: {
        files: async (_tool, _args, { signal }) => {
          await new Promise((r) => setTimeout(r, 100));
          abortedDuringCall = signal.aborted;
          return { content: [{ type: "text", text: "slow" }] };
        },
      },
    });
    const a = await call(s);
    expect(a.status).toBe(200);
    expect(a.json.content[0].text).toBe("slow");
    expect(abortedDuringCall).toBe(false);
  });

  it("reports one call event per call, with the run, user, server, tool and the size of the answer", async () => {
    const s = await setup();
    const first = await call(s, { server: "files", tool: "read", arguments: { p: 1 } });
    await call(s, { server: "files", tool: "stat" });
    expect(callEvents(s)).toHaveLength(2);
    expect(callEvents(s)[0]).toMatchObject({ kind: "call", runId: "run-a", userId: "u1", server: "files", tool: "read", ok: true, responseBytes: Buffer.byteLength(first.text) });
    expect(callEvents(s)[1]).toMatchObject({ kind: "call", runId: "run-a", server: "files", tool: "stat", ok: true });
    for (const e of callEvents(s)) expect((e as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(0);
    expect(refusalEvents(s)).toHaveLength(0);
    expect(s.server.stats()).toEqual({ calls: 2, refusals: 0 });
  });
});

describe("requests that are not a call", () => {
  it.each([
    ["another path", { method: "POST", path: "/internal/other" }],
    ["the call path with a query", { method: "POST", path: `${BRIDGE_CALL_PATH}?x=1` }],
    ["GET on the call path", { method: "GET", path: BRIDGE_CALL_PATH }],
    ["PUT on the call path", { method: "PUT", path: BRIDGE_CALL_PATH }],
  ])("answers 404 not-found to %s, even with a valid token", async (_name, where) => {
    const s = await setup();
    const a = await send(s.target, { ...where, token: s.token, body: { server: "files", tool: "read" } });
    expectRefusal(a, 404, "not-found");
    expect(a.json.error).toContain(BRIDGE_CALL_PATH);
    expect(s.upstreamCalls).toHaveLength(0);
  });
});

describe("authentication", () => {
  it.each([
    ["no Authorization header", null, undefined, "missing"],
    ["a header that is not a bearer token", null, "Basic dXNlcjpwYXNz", "malformed"],
    ["a bearer token too short to be one", null, "Bearer abc", "malformed"],
    ["a well-formed token nobody issued", "A".repeat(43), undefined, "forged"],
  ] as const)("refuses %s with 401", async (_name, token, authorization, reason) => {
    const s = await setup();
    const a = await send(s.target, { token, ...(authorization ? { authorization } : {}), body: { server: "files", tool: "read" } });
    expectRefusal(a, 401, reason);
    expect(s.upstreamCalls).toHaveLength(0);
    expect(s.server.stats()).toEqual({ calls: 0, refusals: 1 });
    expect(refusalEvents(s)).toEqual([{ kind: "refusal", runId: "run-a", status: 401, reason }]);
  });

  it("refuses with 403 other-run the live token of another run", async () => {
    const s = await setup();
    const other = s.tokens.issue({ runId: "run-b", userId: "u1", servers: new Set(["files"]), deadline: Date.now() + 60_000 });
    const a = await call(s, undefined, other);
    expectRefusal(a, 403, "other-run");
    expect(a.json.error).toMatch(/another run/);
    expect(s.upstreamCalls).toHaveLength(0);
    expect(refusalEvents(s)).toEqual([{ kind: "refusal", runId: "run-a", status: 403, reason: "other-run" }]);
  });

  it("refuses this run's token once revoked (expired) and once past the run's deadline", async () => {
    const revoked = await setup();
    revoked.tokens.revoke(revoked.runId);
    expectRefusal(await call(revoked), 401, "expired");

    const late = await setup({ deadline: Date.now() - 1 });
    expectRefusal(await call(late), 401, "past-deadline");
    expect(revoked.upstreamCalls).toHaveLength(0);
    expect(late.upstreamCalls).toHaveLength(0);
  });

  it("authenticates before reading the body: a bad token with garbage gets 401, not 400", async () => {
    const s = await setup();
    const a = await send(s.target, { token: null, body: "{not json" });
    expectRefusal(a, 401, "missing");
  });
});

describe("what a run may do", () => {
  it("refuses with 403 server-not-allowed a server outside the run's grant, naming the ones it has", async () => {
    const s = await setup({ upstreams: { files: echo, secrets: echo }, granted: ["files"] });
    const a = await call(s, { server: "secrets", tool: "dump", arguments: {} });
    expectRefusal(a, 403, "server-not-allowed");
    expect(a.json.error).toContain('"secrets"');
    expect(a.json.error).toContain("files");
    expect(s.upstreamCalls).toHaveLength(0);
    expect(s.server.stats()).toEqual({ calls: 0, refusals: 1 });
    expect(refusalEvents(s)).toEqual([{ kind: "refusal", runId: "run-a", status: 403, reason: "server-not-allowed", server: "secrets", tool: "dump" }]);
  });

  it("says 'none' when the run was granted no server at all", async () => {
    const s = await setup({ granted: [] });
    const a = await call(s);
    expectRefusal(a, 403, "server-not-allowed");
    expect(a.json.error).toMatch(/none/);
  });

  it("answers 429 call-limit once the run has made maxCallsPerRun calls", async () => {
    const s = await setup({ limits: { maxCallsPerRun: 2 } });
    expect((await call(s)).status).toBe(200);
    expect((await call(s)).status).toBe(200);
    const third = await call(s);
    expectRefusal(third, 429, "call-limit");
    expect(third.json.error).toMatch(/2 tool calls/);
    expect(s.upstreamCalls).toHaveLength(2);
    expect(s.server.stats()).toEqual({ calls: 2, refusals: 1 });
    expect(refusalEvents(s)).toEqual([{ kind: "refusal", runId: "run-a", status: 429, reason: "call-limit", server: "files", tool: "read" }]);
  });

  it("counts a call that failed upstream against the limit", async () => {
    const s = await setup({
      limits: { maxCallsPerRun: 1 },
      upstreams: {
        files: async () => {
          throw new Error("boom");
        },
      },
    });
    expect((await call(s)).status).toBe(502);
    expectRefusal(await call(s), 429, "call-limit");
  });
});

describe("malformed requests", () => {
  it("never passes a body over maxRequestBytes to the upstream", async () => {
    const s = await setup({ limits: { maxRequestBytes: 1024 } });
    await call(s, { server: "files", tool: "write", arguments: { data: "x".repeat(4096) } }).catch(() => undefined);
    expect(s.upstreamCalls).toHaveLength(0);
    expect(s.server.stats().calls).toBe(0);
  });

  // Was a bug: readBody destroyed the socket on the first chunk over the limit, so the sandbox saw
  // "socket hang up" instead of the 413.
  it("answers 413 too-large to a body over maxRequestBytes", async () => {
    const s = await setup({ limits: { maxRequestBytes: 1024 } });
    const a = await call(s, { server: "files", tool: "write", arguments: { data: "x".repeat(4096) } });
    expectRefusal(a, 413, "too-large");
  });

  it("accepts a body of exactly maxRequestBytes", async () => {
    const body = { server: "files", tool: "write", arguments: { data: "" } };
    const pad = 1024 - Buffer.byteLength(JSON.stringify(body));
    body.arguments.data = "x".repeat(pad);
    expect(Buffer.byteLength(JSON.stringify(body))).toBe(1024);
    const s = await setup({ limits: { maxRequestBytes: 1024 } });
    expect((await call(s, body)).status).toBe(200);
  });

  it("answers 400 bad-request to a body that is not JSON", async () => {
    const s = await setup();
    const a = await send(s.target, { token: s.token, body: '{"server": "files", ' });
    expectRefusal(a, 400, "bad-request");
    expect(s.upstreamCalls).toHaveLength(0);
  });

  it.each([
    ["server is not a string", { server: 7, tool: "read" }],
    ["server is missing", { tool: "read" }],
    ["tool is not a string", { server: "files", tool: ["read"] }],
    ["arguments is an array", { server: "files", tool: "read", arguments: [1, 2] }],
    ["arguments is null", { server: "files", tool: "read", arguments: null }],
    ["arguments is a string", { server: "files", tool: "read", arguments: "path=a" }],
    ["the body is JSON null", null],
    ["the body is an array", [{ server: "files", tool: "read" }]],
  ])("answers 400 bad-request when %s", async (_name, body) => {
    const s = await setup();
    const a = await send(s.target, { token: s.token, body: JSON.stringify(body) });
    expectRefusal(a, 400, "bad-request");
    expect(a.json.error).toMatch(/expected/);
    expect(s.upstreamCalls).toHaveLength(0);
    expect(s.server.stats().calls).toBe(0);
  });
});

describe("upstream failures", () => {
  it("answers 502 with the upstream's message when the tool call throws", async () => {
    const s = await setup({
      upstreams: {
        files: async () => {
          throw new Error("disk on fire");
        },
      },
    });
    const a = await call(s);
    expect(a.status).toBe(502);
    expect(a.json.error).toBe("files.read failed: disk on fire");
    expect(s.server.stats()).toEqual({ calls: 1, refusals: 0 });
    expect(callEvents(s)).toEqual([expect.objectContaining({ kind: "call", runId: "run-a", server: "files", tool: "read", ok: false, responseBytes: 0, error: "disk on fire" })]);
  });

  it("answers 502 when a granted server has no upstream connection", async () => {
    const s = await setup({ upstreams: {}, granted: ["ghost"] });
    const a = await call(s, { server: "ghost", tool: "boo" });
    expect(a.status).toBe(502);
    expect(a.json.error).toMatch(/ghost.*not configured/);
  });

  it("answers 413 instead of an upstream result bigger than maxResponseBytes", async () => {
    const big: CallToolResult = { content: [{ type: "text", text: "y".repeat(5_000) }] };
    const size = Buffer.byteLength(JSON.stringify(big));
    const s = await setup({ limits: { maxResponseBytes: 4_096 }, upstreams: { files: async () => big } });
    const a = await call(s);
    expect(a.status).toBe(413);
    expect(a.json.error).toContain(String(size));
    expect(a.json.error).toContain("4096");
    expect(a.text).not.toContain("yyyy");
    expect(callEvents(s)).toEqual([expect.objectContaining({ ok: false, responseBytes: size, error: "response-too-large" })]);
  });
});

describe("the endpoint's life", () => {
  it("creates its directory 0755 and its socket 0666", async () => {
    const s = await setup();
    expect(statSync(s.server.dir!).mode & 0o777).toBe(0o755);
    const sock = statSync(join(s.server.dir!, SOCKET_NAME));
    expect(sock.isSocket()).toBe(true);
    expect(sock.mode & 0o777).toBe(0o666);
  });

  it("refuses every call before a run is bound to it", async () => {
    const s = await setup({ bind: false });
    const someRun = s.tokens.issue({ runId: "run-a", userId: "u1", servers: new Set(["files"]), deadline: Date.now() + 60_000 });
    expectRefusal(await call(s, undefined, someRun), 403, "other-run");
    expectRefusal(await call(s, undefined, "B".repeat(43)), 401, "forged");
    expectRefusal(await call(s, undefined, null), 401, "missing");
    expect(s.upstreamCalls).toHaveLength(0);
    expect(s.server.stats()).toEqual({ calls: 0, refusals: 3 });
    // Until bound, events name the slot, not a run.
    expect(refusalEvents(s).map((e) => e.runId)).toEqual(["slot-1", "slot-1", "slot-1"]);
  });

  it("serves the bound run's token once bound (a pooled container's hand-over)", async () => {
    const s = await setup({ bind: false });
    const token = s.tokens.issue({ runId: "run-late", userId: "u1", servers: new Set(["files"]), deadline: Date.now() + 60_000 });
    expectRefusal(await call(s, undefined, token), 403, "other-run");
    s.server.bind("run-late");
    const a = await call(s, undefined, token);
    expect(a.status).toBe(200);
    expect(callEvents(s)).toEqual([expect.objectContaining({ runId: "run-late", ok: true })]);
  });

  it("on close, removes the socket and its directory, and later connections fail", async () => {
    const s = await setup();
    const dir = s.server.dir!;
    expect(existsSync(join(dir, SOCKET_NAME))).toBe(true);
    await s.server.close();
    expect(existsSync(join(dir, SOCKET_NAME))).toBe(false);
    expect(existsSync(dir)).toBe(false);
    await expect(call(s)).rejects.toThrow(/ENOENT|ECONNREFUSED/);
  });

  it("on close, aborts the in-flight upstream call and sends its result nowhere", async () => {
    const started = deferred<AbortSignal>();
    const release = deferred<void>();
    const s = await setup({
      upstreams: {
        files: async (_tool, _args, { signal }) => {
          started.resolve(signal);
          await release.promise;
          return { content: [{ type: "text", text: "too late" }] };
        },
      },
    });
    const pending = call(s).then(
      (a) => ({ answered: a.status }),
      (err: Error) => ({ failed: err.message }),
    );
    const signal = await started.promise;
    expect(signal.aborted).toBe(false);
    await s.server.close();
    expect(signal.aborted).toBe(true);
    expect(String((signal.reason as Error).message)).toMatch(/run ended/);
    release.resolve();
    const outcome = await pending;
    expect(outcome).not.toHaveProperty("answered", 200);
    expect(outcome).toHaveProperty("failed");
    expect(callEvents(s).filter((e) => e.ok)).toHaveLength(0);
  });

  // Was a bug: the hang-up listener was on the request, whose "close" fires once its body is read,
  // so a sandbox that hung up left its upstream call running until the run ended.
  it("aborts the upstream call when the sandbox hangs up mid-call", async () => {
    const started = deferred<AbortSignal>();
    const s = await setup({
      upstreams: {
        files: (_tool, _args, { signal }) => {
          started.resolve(signal);
          return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
        },
      },
    });
    const target = s.target as { socketPath: string };
    const body = JSON.stringify({ server: "files", tool: "read" });
    const req = request({ ...target, path: BRIDGE_CALL_PATH, method: "POST", headers: { authorization: `Bearer ${s.token}`, "content-length": Buffer.byteLength(body) } });
    req.on("error", () => {});
    req.end(body);
    const signal = await started.promise;
    req.destroy();
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener("abort", () => resolve());
      setTimeout(resolve, 1_000);
    });
    expect(signal.aborted).toBe(true);
    expect(String((signal.reason as Error).message)).toMatch(/hung up/);
  });
});

describe("TCP mode", () => {
  it("listens on an ephemeral port of 127.0.0.1 and answers like the unix socket", async () => {
    const s = await setup({ tcp: true });
    expect(s.server.dir).toBeUndefined();
    expect(s.server.port).toBeGreaterThan(0);
    const ok = await call(s);
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ content: [{ type: "text", text: 'read:{"path":"a.txt"}' }] });
    expectRefusal(await call(s, undefined, "C".repeat(43)), 401, "forged");
    expectRefusal(await send(s.target, { method: "GET", token: s.token }), 404, "not-found");
    expect(s.server.stats()).toEqual({ calls: 1, refusals: 2 });
  });

  it("takes a different port for each endpoint and frees it on close", async () => {
    const a = await setup({ tcp: true });
    const b = await setup({ tcp: true });
    expect(a.server.port).not.toBe(b.server.port);
    await a.server.close();
    await expect(call(a)).rejects.toThrow(/ECONNREFUSED/);
    expect((await call(b)).status).toBe(200);
  });
});

describe("bounds on what one run can make the bridge hold", () => {
  it("counts refused calls against the run's call limit", async () => {
    const s = await setup({ granted: ["files"], limits: { maxCallsPerRun: 3 } });
    expectRefusal(await call(s, { server: "nope", tool: "x" }), 403, "server-not-allowed");
    expectRefusal(await call(s, { server: "nope", tool: "x" }), 403, "server-not-allowed");
    expect((await call(s)).status).toBe(200);
    expectRefusal(await call(s), 429, "call-limit");
  });

  it("refuses a call past the most in flight at once, and serves again once they finish", async () => {
    const gate = deferred<void>();
    const slow: Handler = async () => {
      await gate.promise;
      return { content: [] };
    };
    const s = await setup({ upstreams: { slow }, limits: { maxInFlightPerRun: 2 } });
    const first = [call(s, { server: "slow", tool: "t" }), call(s, { server: "slow", tool: "t" })];
    await new Promise((r) => setTimeout(r, 100));
    expectRefusal(await call(s, { server: "slow", tool: "t" }), 429, "too-many-in-flight");
    gate.resolve();
    expect((await Promise.all(first)).map((a) => a.status)).toEqual([200, 200]);
    expect((await call(s, { server: "slow", tool: "t" })).status).toBe(200);
  });

  it("ends a run that keeps being refused, once, with the reason, and logs only the first refusals", async () => {
    const s = await setup({ granted: ["files"], limits: { maxRefusalsPerRun: 30 } });
    for (let i = 0; i < 31; i++) expectRefusal(await call(s, { server: "nope", tool: "x".repeat(1000) }), 403, "server-not-allowed");
    expect(s.misbehaving).toHaveLength(1);
    expect(s.misbehaving[0]).toMatch(/31 bridge calls that were refused.*server-not-allowed/);
    expect(refusalEvents(s)).toHaveLength(20);
    await expect(call(s)).rejects.toThrow();
    expect(s.misbehaving).toHaveLength(1);
  });

  it("drops connections past the most per run", async () => {
    const s = await setup({ limits: { maxConnectionsPerRun: 3 } });
    const { connect } = await import("node:net");
    const target = s.target as { socketPath: string };
    const sockets = await Promise.all(
      Array.from({ length: 10 }, () => new Promise<import("node:net").Socket>((resolve) => {
        const c = connect(target.socketPath, () => resolve(c));
        c.on("error", () => resolve(c));
      })),
    );
    await new Promise((r) => setTimeout(r, 200));
    const open = sockets.filter((c) => !c.destroyed && c.readyState === "open");
    expect(open.length).toBeLessThanOrEqual(3);
    for (const c of sockets) c.destroy();
  });

  it("closes a connection whose request does not arrive whole in time (slow body)", async () => {
    const s = await setup({ limits: { requestTimeoutMs: 400 } });
    const { connect } = await import("node:net");
    const c = connect((s.target as { socketPath: string }).socketPath);
    const closed = new Promise<string>((resolve) => {
      let text = "";
      c.on("data", (d) => (text += d.toString()));
      c.on("close", () => resolve(text));
    });
    c.write(`POST ${BRIDGE_CALL_PATH} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${s.token}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"server":`);
    const started = Date.now();
    const answer = await closed;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(answer === "" || /408|400/.test(answer)).toBe(true);
  });

  it("holds far less than 100 MB for 200 connections that each announce 4 MiB and never finish", async () => {
    const s = await setup({ limits: { maxRequestBytes: 4 * 1024 * 1024, maxConnectionsPerRun: 8 } });
    const { connect } = await import("node:net");
    const path = (s.target as { socketPath: string }).socketPath;
    global.gc?.();
    const before = process.memoryUsage().rss;
    const chunk = Buffer.alloc(64 * 1024, 120);
    const sockets = Array.from({ length: 200 }, () => {
      const c = connect(path);
      c.on("error", () => {});
      c.write(`POST ${BRIDGE_CALL_PATH} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${s.token}\r\ncontent-type: application/json\r\ncontent-length: ${4 * 1024 * 1024}\r\n\r\n`);
      return c;
    });
    // All but the last byte, where the server still reads.
    for (let sent = 0; sent < 4 * 1024 * 1024 - chunk.length; sent += chunk.length) {
      for (const c of sockets) if (!c.destroyed) c.write(chunk);
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 300));
    const grown = process.memoryUsage().rss - before;
    for (const c of sockets) c.destroy();
    expect(grown).toBeLessThan(100 * 1024 * 1024);
  });
});
