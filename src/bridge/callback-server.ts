import { chmod, mkdir, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { BRIDGE_CALL_PATH, BRIDGE_DISPLAY_PATH, type BridgeErrorBody, DISPLAY_NAME_HEADER, type RefusalReason, SOCKET_NAME } from "../protocol/bridge.js";
import type { RunTokens } from "./run-tokens.js";
import type { UpstreamConnection } from "./upstream-pool.js";

export interface CallbackLimits {
  /** Calls and refusals together, per run. */
  maxCallsPerRun: number;
  maxResponseBytes: number;
  maxRequestBytes: number;
  callTimeoutMs: number;
  /** Open connections to one run's endpoint; more are dropped by the kernel-facing listener. */
  maxConnectionsPerRun: number;
  /** Upstream calls of one run waiting for their answer at once. */
  maxInFlightPerRun: number;
  /** Refused calls after which the run is ended as misbehaving. */
  maxRefusalsPerRun: number;
  /** Time a request may take to arrive whole (headers and body). */
  requestTimeoutMs: number;
}

/**
 * Receives what the run's code shows (POST BRIDGE_DISPLAY_PATH): bytes and claims from the
 * sandbox, already authenticated and bounded in size; it decides what the result carries.
 */
export interface DisplayReceiver {
  /** The largest body read; a longer one is refused (413) without being read. */
  readonly maxBytes: number;
  receive(item: { data: Buffer; mime: string | undefined; name: string | undefined }): Promise<{ status: number; body: { ok?: true; shown?: string; error?: string } }>;
  /** A display refused before it reached receive() (its body was too large). */
  refused(message: string): void;
}

/** Refusals logged and audited one by one; past this only counted (and summed up when the run ends). */
const REFUSALS_LOGGED = 20;

export interface CallbackDeps {
  tokens: RunTokens;
  /** The upstream connections this run may use, by server name. */
  upstreams: { get(name: string): UpstreamConnection | undefined };
  limits: CallbackLimits;
  logger: Logger;
  /** Receives one record per call and per refusal (the audit log, metrics). */
  onEvent?: (event: CallbackEvent) => void;
  /** Called once when the run misbehaves past its limits; the run is then ended with this reason. */
  onMisbehaving?: (reason: string) => void;
}

export type CallbackEvent =
  | { kind: "call"; runId: string; userId: string; server: string; tool: string; ok: boolean; durationMs: number; responseBytes: number; error?: string }
  | { kind: "refusal"; runId: string; status: number; reason: RefusalReason; server?: string; tool?: string };

/** Calls made and refused through one callback endpoint. */
export interface CallbackStats {
  calls: number;
  refusals: number;
}

/**
 * The callback endpoint of one run: `POST BRIDGE_CALL_PATH` on a unix socket that only this
 * run's container can reach (it is bind-mounted into it alone). Separate from any client-facing
 * listener. Every byte that arrives here came from sandboxed code.
 */
export class RunCallbackServer {
  private readonly server: Server;
  private readonly inflight = new Set<AbortController>();
  private ended = false;
  private calls = 0;
  private refusals = 0;
  private misbehaved: string | undefined;
  /** The run this endpoint serves; a pooled container's endpoint gets it at hand-over (bind). */
  private runId: string;
  /** TCP mode: the port the callback listens on. */
  private listenPort = 0;
  /** Where the bound run's display posts go (none before bind, or for a run without one). */
  private display: DisplayReceiver | undefined;
  /** Display bodies are read one at a time: a run holds at most one image's bytes in the host's memory. */
  private displayTurn: Promise<void> = Promise.resolve();

  private constructor(
    /** Names the endpoint in logs until a run is bound. */
    slotId: string,
    /** Unix mode: the directory holding the socket; TCP mode: undefined. */
    readonly dir: string | undefined,
    private readonly deps: CallbackDeps,
  ) {
    this.runId = slotId;
    // Security: every byte here is the sandbox's: headers, body and connections are all bounded.
    this.server = createServer({ maxHeaderSize: 8 * 1024, requestTimeout: deps.limits.requestTimeoutMs, headersTimeout: Math.min(10_000, deps.limits.requestTimeoutMs), connectionsCheckingInterval: Math.min(1_000, deps.limits.requestTimeoutMs) }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.deps.logger.error("callback handler failed", { runId: this.runId, err: errorMessage(err) });
        if (!res.headersSent) send(res, 500, { error: "internal error in the bridge" });
      });
    });
    this.server.keepAliveTimeout = 5_000;
    this.server.maxConnections = deps.limits.maxConnectionsPerRun;
  }

  /** TCP mode: the port the callback listens on (0 in unix mode). */
  get port(): number {
    return this.listenPort;
  }

  /** The run this endpoint serves from now on (once: a slot serves one run). */
  bind(runId: string, display?: DisplayReceiver): void {
    this.runId = runId;
    this.display = display;
  }

  stats(): CallbackStats {
    return { calls: this.calls, refusals: this.refusals };
  }

  /** Unix mode: creates the run's socket directory (0755, socket 0666: only this run's container mounts it). */
  static async startUnix(runId: string, dir: string, deps: CallbackDeps): Promise<RunCallbackServer> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await chmod(dir, 0o755);
    const s = new RunCallbackServer(runId, dir, deps);
    const socketPath = join(dir, SOCKET_NAME);
    await new Promise<void>((resolve, reject) => {
      s.server.once("error", reject);
      s.server.listen(socketPath, () => resolve());
    });
    await chmod(socketPath, 0o666);
    return s;
  }

  /** TCP mode: an ephemeral port on `host`; the token is then the only thing between it and the network. */
  static async startTcp(runId: string, host: string, deps: CallbackDeps): Promise<RunCallbackServer> {
    const s = new RunCallbackServer(runId, undefined, deps);
    await new Promise<void>((resolve, reject) => {
      s.server.once("error", reject);
      s.server.listen({ host, port: 0 }, () => resolve());
    });
    const addr = s.server.address();
    s.listenPort = typeof addr === "object" && addr ? addr.port : 0;
    return s;
  }

  /**
   * Every refusal is counted against the run's call limit; the first few are logged and audited
   * one by one, and a run that keeps being refused is ended.
   */
  private refuse(res: ServerResponse, status: number, reason: RefusalReason, message: string, call?: { server?: string; tool?: string }): void {
    this.refusals++;
    if (this.refusals <= REFUSALS_LOGGED) {
      this.deps.logger.warn("bridge call refused", { runId: this.runId, status, reason, ...call });
      this.deps.onEvent?.({ kind: "refusal", runId: this.runId, status, reason, ...call });
    }
    send(res, status, { error: message, reason });
    if (this.refusals > this.deps.limits.maxRefusalsPerRun) this.misbehave(`it made ${this.refusals} bridge calls that were refused (the last: ${reason})`);
  }

  /** Ends this run's bridge at once and reports why (the run service then ends the run). */
  private misbehave(reason: string): void {
    if (this.misbehaved) return;
    this.misbehaved = reason;
    this.deps.logger.warn("ending a run that misbehaves on its bridge", { runId: this.runId, reason });
    this.stopServing();
    this.deps.onMisbehaving?.(reason);
  }

  private stopServing(): void {
    this.ended = true;
    for (const ac of this.inflight) ac.abort(new Error("the run ended"));
    this.server.closeAllConnections();
    this.server.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "POST" || (req.url !== BRIDGE_CALL_PATH && req.url !== BRIDGE_DISPLAY_PATH)) {
      req.resume();
      this.refuse(res, 404, "not-found", `only POST ${BRIDGE_CALL_PATH} and ${BRIDGE_DISPLAY_PATH} are served here`);
      return;
    }
    // Security: authenticate before reading the body.
    const check = this.deps.tokens.verify(this.runId, req.headers.authorization);
    if (!check.ok) {
      req.resume();
      this.refuse(res, check.status, check.reason, check.status === 403 ? "this token belongs to another run" : "missing, invalid or expired run token");
      return;
    }
    const grant = check.grant;
    if (this.ended) {
      req.resume();
      this.refuse(res, 401, "run-ended", "the run has ended");
      return;
    }
    if (req.url === BRIDGE_DISPLAY_PATH) {
      await this.handleDisplay(req, res);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, this.deps.limits.maxRequestBytes)).toString("utf8"));
    } catch (err) {
      if ((err as { status?: number }).status === 413) {
        // Security: the rest of an oversized body is never read; the connection ends after the answer.
        res.setHeader("connection", "close");
        this.refuse(res, 413, "too-large", `the request body is over ${this.deps.limits.maxRequestBytes} bytes; pass less data in the arguments`);
        return;
      }
      this.refuse(res, 400, "bad-request", `bad request: ${errorMessage(err)}`);
      return;
    }
    const { server, tool, arguments: args } = (body ?? {}) as { server?: unknown; tool?: unknown; arguments?: unknown };
    if (typeof server !== "string" || typeof tool !== "string" || (args !== undefined && (typeof args !== "object" || args === null || Array.isArray(args)))) {
      this.refuse(res, 400, "bad-request", 'expected {"server": string, "tool": string, "arguments": object}');
      return;
    }
    if (!grant.servers.has(server)) {
      this.refuse(res, 403, "server-not-allowed", `no upstream server "${server}" is available to this run (available: ${[...grant.servers].join(", ") || "none"})`, { server, tool });
      return;
    }
    if (this.calls + this.refusals >= this.deps.limits.maxCallsPerRun) {
      this.refuse(res, 429, "call-limit", `this run has made ${this.calls} tool calls and ${this.refusals} refused ones, the limit per run`, { server, tool });
      return;
    }
    if (this.inflight.size >= this.deps.limits.maxInFlightPerRun) {
      this.refuse(res, 429, "too-many-in-flight", `this run has ${this.inflight.size} tool calls waiting for their answer, the most at once; await some before starting more`, { server, tool });
      return;
    }
    this.calls++;
    const remaining = grant.deadline - Date.now();
    const timeoutMs = Math.max(1, Math.min(this.deps.limits.callTimeoutMs, remaining));
    const ac = new AbortController();
    this.inflight.add(ac);
    // The response's close, not the request's: a request emits "close" once its body is read.
    res.on("close", () => {
      if (!res.writableEnded) ac.abort(new Error("the sandbox hung up"));
    });
    const started = Date.now();
    const event = { kind: "call" as const, runId: grant.runId, userId: grant.userId, server, tool };
    try {
      const upstream = this.deps.upstreams.get(server);
      if (!upstream) throw new Error(`upstream "${server}" is not configured`);
      const result: CallToolResult = await upstream.callTool(tool, (args ?? {}) as Record<string, unknown>, { signal: ac.signal, timeoutMs });
      // Security: a call that outlived its run has no effect: its result goes nowhere.
      if (this.ended || ac.signal.aborted) return;
      const payload = Buffer.from(JSON.stringify(result), "utf8");
      if (payload.length > this.deps.limits.maxResponseBytes) {
        this.deps.onEvent?.({ ...event, ok: false, durationMs: Date.now() - started, responseBytes: payload.length, error: "response-too-large" });
        send(res, 413, { error: `the result of ${server}.${tool} is ${payload.length} bytes; the limit is ${this.deps.limits.maxResponseBytes}. Ask the tool for less (filters, pages).`, reason: "too-large" });
        return;
      }
      this.deps.onEvent?.({ ...event, ok: true, durationMs: Date.now() - started, responseBytes: payload.length });
      res.writeHead(200, { "content-type": "application/json", "content-length": payload.length });
      res.end(payload);
    } catch (err) {
      if (this.ended) return;
      const message = errorMessage(err);
      this.deps.onEvent?.({ ...event, ok: false, durationMs: Date.now() - started, responseBytes: 0, error: message });
      send(res, 502, { error: `${server}.${tool} failed: ${message}` });
    } finally {
      this.inflight.delete(ac);
    }
  }

  /**
   * An image the code shows: counted as a call (the per-run call and in-flight limits hold), read
   * up to the receiver's limit, then handed to it. A display the receiver refuses is answered
   * with its reason but is not a refusal of the bridge: the run goes on.
   */
  private async handleDisplay(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const display = this.display;
    if (!display) {
      req.resume();
      this.refuse(res, 404, "not-found", "this run cannot show images");
      return;
    }
    if (this.calls + this.refusals >= this.deps.limits.maxCallsPerRun) {
      req.resume();
      this.refuse(res, 429, "call-limit", `this run has made ${this.calls} bridge calls and ${this.refusals} refused ones, the limit per run`);
      return;
    }
    if (this.inflight.size >= this.deps.limits.maxInFlightPerRun) {
      req.resume();
      this.refuse(res, 429, "too-many-in-flight", `this run has ${this.inflight.size} bridge calls waiting for their answer, the most at once`);
      return;
    }
    this.calls++;
    const ac = new AbortController();
    this.inflight.add(ac);
    let done!: () => void;
    const previous = this.displayTurn;
    this.displayTurn = new Promise<void>((resolve) => {
      done = resolve;
    });
    try {
      await previous;
      if (this.ended) return;
      let data: Buffer;
      try {
        data = await readBody(req, display.maxBytes);
      } catch (err) {
        if ((err as { status?: number }).status !== 413) throw err;
        res.setHeader("connection", "close");
        const message = `an image over ${display.maxBytes} bytes was not shown: make it smaller (a lower dpi or size), or save it in /workspace and name the folder in outputs`;
        display.refused(message);
        send(res, 413, { error: message, reason: "too-large" });
        return;
      }
      if (this.ended) return;
      const mime = typeof req.headers["content-type"] === "string" ? req.headers["content-type"].split(";")[0]!.trim().toLowerCase() : undefined;
      const rawName = req.headers[DISPLAY_NAME_HEADER];
      let name: string | undefined;
      try {
        name = typeof rawName === "string" ? decodeURIComponent(rawName) : undefined;
      } catch {
        name = undefined;
      }
      const answer = await display.receive({ data, mime, name });
      if (this.ended) return;
      const text = JSON.stringify(answer.body);
      res.writeHead(answer.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    } finally {
      this.inflight.delete(ac);
      done();
    }
  }

  /** Ends the run's bridge: in-flight calls are cancelled upstream, the socket is removed. */
  async close(): Promise<void> {
    if (this.refusals > REFUSALS_LOGGED) this.deps.logger.warn("more bridge calls were refused than were logged", { runId: this.runId, refusals: this.refusals, logged: REFUSALS_LOGGED });
    this.ended = true;
    for (const ac of this.inflight) ac.abort(new Error("the run ended"));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

function send(res: ServerResponse, status: number, body: BridgeErrorBody): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The body, up to `limit` bytes; past it, reading stops and the promise rejects with status 413. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => Object.assign(new Error(`request body over ${limit} bytes`), { status: 413 });
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        // Security: stop buffering at once; the handler answers 413 and closes the connection.
        req.off("data", onData);
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
