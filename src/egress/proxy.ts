// The egress proxy of one container: an HTTP proxy on a unix socket that only that container
// mounts. Sandboxes have no network; this is their one way out, and it goes only where the run's
// policy allows: CONNECT tunnels (TLS passes through untouched) and plain-HTTP requests in
// absolute form. The proxy resolves names itself, connects to the address it checked (no second
// lookup for the sandbox to race), refuses loopback, private, link-local and the host's own
// addresses unless the operator listed that address, and caps connections and bytes per run.
// Every byte that arrives here came from sandboxed code.
import { promises as dns } from "node:dns";
import { chmod } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import { connect, isIP, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import type { Duplex } from "node:stream";
import { errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { EgressPolicy, forbiddenAddress, normaliseAddress } from "./policy.js";
import { withTimeout } from "../shared/timeout.js";

export interface EgressLimits {
  /** Bytes through all of a run's connections, both ways; past it every connection is closed. */
  maxBytesPerRun: number;
  /** Connections a run may open in all (refusals count too). */
  maxConnectionsPerRun: number;
  /** Connections open at once to the proxy's socket. */
  maxOpenConnections: number;
  connectTimeoutMs: number;
  /** A tunnel or request with no traffic for this long is closed. */
  idleTimeoutMs: number;
}

export type EgressEvent = { kind: "egress"; runId: string; host: string; port: number; allowed: boolean; reason?: string; address?: string; bytesUp?: number; bytesDown?: number };

/** Names to addresses; the default asks the host's resolver for every address. */
export type Resolve = (host: string) => Promise<string[]>;

const defaultResolve: Resolve = async (host) => (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export interface EgressDeps {
  limits: EgressLimits;
  logger: Logger;
  onEvent?: ((e: EgressEvent) => void) | undefined;
  resolve?: Resolve | undefined;
  /** Addresses of this host (refused like loopback); default: every interface's. */
  hostAddresses?: ReadonlySet<string> | undefined;
}

/** What a run reached and what it was refused, for its result. */
export interface EgressSummary {
  reached: Array<{ host: string; port: number; connections: number; bytes: number }>;
  refused: Array<{ host: string; port: number; reason: string }>;
}

/** Distinct destinations kept in a run's summary; the rest are counted in the audit log only. */
const SUMMARY_MAX = 20;
/** Host names as the sandbox sent them are cut to this for logs, audit and results. */
const HOST_MAX = 253;

export function hostAddressesOfThisMachine(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) out.add(normaliseAddress(i.address) ?? i.address);
  return out;
}

/** "host:port" or "[v6]:port" from a CONNECT line; undefined when it is not one. */
export function parseAuthority(text: string): { host: string; port: number } | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:\s/[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.toLowerCase(), port };
}

/** Headers that belong to one hop (RFC 9110 §7.6.1) or to the proxy, never forwarded. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"]);

function forwardable(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = new Set(
    String(headers.connection ?? "")
      .split(",")
      .map((s) => s.trim().toLowerCase()),
  );
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && !named.has(k)) out[k] = v;
  return out;
}

export class EgressProxy {
  private readonly server: Server;
  private policy = EgressPolicy.none();
  private runId = "unbound";
  private connections = 0;
  private bytes = 0;
  private ended = false;
  private readonly open = new Set<Duplex>();
  private readonly reached = new Map<string, { host: string; port: number; connections: number; bytes: number }>();
  private readonly refused = new Map<string, { host: string; port: number; reason: string }>();
  private readonly resolve: Resolve;
  private readonly hostAddresses: ReadonlySet<string>;

  private constructor(private readonly deps: EgressDeps) {
    this.resolve = deps.resolve ?? defaultResolve;
    this.hostAddresses = deps.hostAddresses ?? hostAddressesOfThisMachine();
    // Security: bounded headers, and a slow client cannot hold a request open forever.
    this.server = createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 0 }, (req, res) => {
      this.forward(req, res).catch((err: unknown) => {
        deps.logger.warn("egress request failed", { runId: this.runId, err: errorMessage(err) });
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
    });
    this.server.on("connect", (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.tunnel(req, socket, head).catch((err: unknown) => {
        deps.logger.warn("egress tunnel failed", { runId: this.runId, err: errorMessage(err) });
        socket.destroy();
      });
    });
    this.server.on("clientError", (_err, socket) => socket.destroy());
    this.server.maxConnections = deps.limits.maxOpenConnections;
  }

  /** Listens on `socketPath` (0666: only the one container that mounts its folder reaches it). */
  static async listen(socketPath: string, deps: EgressDeps): Promise<EgressProxy> {
    const p = new EgressProxy(deps);
    await new Promise<void>((resolve, reject) => {
      p.server.once("error", reject);
      p.server.listen(socketPath, () => resolve());
    });
    await chmod(socketPath, 0o666);
    return p;
  }

  /** The run this container serves and where it may go; until then everything is refused. */
  bind(runId: string, policy: EgressPolicy): void {
    this.runId = runId;
    this.policy = policy;
  }

  summary(): EgressSummary {
    return { reached: [...this.reached.values()], refused: [...this.refused.values()] };
  }

  private note(host: string, port: number, allowed: boolean, extra: { reason?: string; address?: string; bytesUp?: number; bytesDown?: number } = {}): void {
    const h = host.slice(0, HOST_MAX);
    this.deps.onEvent?.({ kind: "egress", runId: this.runId, host: h, port, allowed, ...extra });
    const key = `${h}:${port}`;
    if (!allowed && !this.refused.has(key) && this.refused.size < SUMMARY_MAX) this.refused.set(key, { host: h, port, reason: extra.reason ?? "refused" });
  }

  private count(host: string, port: number, bytes: number, newConnection: boolean): void {
    const key = `${host.slice(0, HOST_MAX)}:${port}`;
    let r = this.reached.get(key);
    if (!r && this.reached.size < SUMMARY_MAX) {
      r = { host: host.slice(0, HOST_MAX), port, connections: 0, bytes: 0 };
      this.reached.set(key, r);
    }
    if (r) {
      r.bytes += bytes;
      if (newConnection) r.connections++;
    }
  }

  /**
   * Whether the run may reach host:port, and the address to connect to. Checks the list first
   * (no lookup for a name that is not on it), then every address the name resolves to.
   */
  private async decide(host: string, port: number): Promise<{ address: string } | { reason: string; status: number }> {
    if (this.ended || this.policy.empty) return { status: 403, reason: "egress is not enabled for this run" };
    if (this.connections >= this.deps.limits.maxConnectionsPerRun) return { status: 429, reason: `the run opened ${this.connections} connections, the most allowed` };
    this.connections++;
    if (!this.policy.allows(host, port)) return { status: 403, reason: `not on this run's allowlist (${this.policy.describe()})` };
    let addresses: string[];
    if (isIP(host.replace(/^\[|\]$/g, ""))) addresses = [host.replace(/^\[|\]$/g, "")];
    else {
      try {
        addresses = await withTimeout(this.resolve(host), this.deps.limits.connectTimeoutMs);
      } catch (err) {
        return { status: 502, reason: `the name does not resolve (${errorMessage(err).slice(0, 100)})` };
      }
    }
    for (const a of addresses) {
      if (this.policy.listsAddress(a, port) || !forbiddenAddress(a, this.hostAddresses)) return { address: a };
    }
    if (addresses.length === 0) return { status: 502, reason: "the name has no addresses" };
    const why = forbiddenAddress(addresses[0]!, this.hostAddresses);
    return { status: 403, reason: `it leads to ${why} (${addresses.slice(0, 3).join(", ")}), which only an address entry on the allowlist may reach` };
  }

  private track(s: Duplex): void {
    if (this.open.has(s)) return;
    this.open.add(s);
    s.once("close", () => this.open.delete(s));
  }

  /** Adds to the run's byte count; past the cap every connection of the run is closed. */
  private addBytes(n: number): boolean {
    this.bytes += n;
    if (this.bytes <= this.deps.limits.maxBytesPerRun) return true;
    if (!this.ended) {
      // The run's egress is over: no new connection either.
      this.ended = true;
      this.deps.logger.warn("egress byte cap reached: closing the run's connections", { runId: this.runId, bytes: this.bytes });
      this.note("*", 0, false, { reason: `the run passed ${this.deps.limits.maxBytesPerRun} bytes of egress` });
      for (const s of this.open) s.destroy();
    }
    return false;
  }

  private async tunnel(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    this.track(client);
    const target = parseAuthority(req.url ?? "");
    if (!target) {
      client.end("HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nCONNECT needs host:port\n");
      return;
    }
    const verdict = await this.decide(target.host, target.port);
    if ("reason" in verdict) {
      this.note(target.host, target.port, false, { reason: verdict.reason });
      client.end(`HTTP/1.1 ${verdict.status} Refused by codebox egress\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncodebox egress: ${target.host.slice(0, 100)}:${target.port}: ${verdict.reason}\n`);
      return;
    }
    const upstream = await this.open_(verdict.address, target.port).catch((err: unknown) => {
      this.note(target.host, target.port, false, { reason: `could not connect (${errorMessage(err).slice(0, 100)})`, address: verdict.address });
      client.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncodebox egress: could not connect to ${target.host.slice(0, 100)}:${target.port}\n`);
      return undefined;
    });
    if (!upstream) return;
    this.track(upstream);
    this.count(target.host, target.port, 0, true);
    let up = 0;
    let down = 0;
    const idle = this.deps.limits.idleTimeoutMs;
    client.setTimeout(idle, () => client.destroy());
    upstream.setTimeout(idle, () => upstream.destroy());
    // Each side's end is passed on (what is queued still arrives); a side that fails or closes
    // outright takes the other with it.
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => {
      if (!client.writableEnded) client.end();
    });
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) {
      this.count(target.host, target.port, head.length, false);
      if (this.addBytes(head.length)) {
        up += head.length;
        upstream.write(head);
      }
    }
    client.on("data", (c: Buffer) => {
      if (!this.addBytes(c.length)) return;
      up += c.length;
      this.count(target.host, target.port, c.length, false);
      if (!upstream.write(c)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (c: Buffer) => {
      if (!this.addBytes(c.length)) return;
      down += c.length;
      this.count(target.host, target.port, c.length, false);
      if (!client.write(c)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    upstream.once("close", () => this.note(target.host, target.port, true, { address: verdict.address, bytesUp: up, bytesDown: down }));
  }

  private open_(address: string, port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: address, port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error("timed out"));
      }, this.deps.limits.connectTimeoutMs);
      s.once("connect", () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once("error", (err) => {
        clearTimeout(t);
        reject(err);
      });
    });
  }

  /** A plain-HTTP request in absolute form (`GET http://host/path`): checked, then sent on to the address checked. */
  private async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.track(req.socket);
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      res.writeHead(400, { "content-type": "text/plain" }).end("codebox egress: send requests through this proxy in absolute form (http://host/path), or CONNECT for https\n");
      return;
    }
    if (url.protocol !== "http:") {
      res.writeHead(400, { "content-type": "text/plain" }).end("codebox egress: only http:// is forwarded as a request; https goes through CONNECT\n");
      return;
    }
    const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    const port = url.port ? Number(url.port) : 80;
    const verdict = await this.decide(host, port);
    if ("reason" in verdict) {
      this.note(host, port, false, { reason: verdict.reason });
      res.writeHead(verdict.status, { "content-type": "text/plain", connection: "close" }).end(`codebox egress: ${host.slice(0, 100)}:${port}: ${verdict.reason}\n`);
      return;
    }
    this.count(host, port, 0, true);
    let up = 0;
    let down = 0;
    const headers = forwardable(req.headers);
    headers.host = url.host;
    const out = request({ host: verdict.address, port, method: req.method, path: `${url.pathname}${url.search}`, headers, setHost: false, agent: false, timeout: this.deps.limits.idleTimeoutMs });
    out.on("socket", (s) => this.track(s));
    out.on("timeout", () => out.destroy(new Error("idle")));
    const failed = (err: Error) => {
      this.note(host, port, false, { reason: `the request failed (${errorMessage(err).slice(0, 100)})`, address: verdict.address });
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end(`codebox egress: ${host.slice(0, 100)}:${port} did not answer\n`);
      else res.destroy();
    };
    out.on("error", failed);
    out.on("response", (answer) => {
      res.writeHead(answer.statusCode ?? 502, forwardable(answer.headers));
      answer.on("data", (c: Buffer) => {
        down += c.length;
        this.count(host, port, c.length, false);
        if (this.addBytes(c.length) && !res.write(c)) answer.pause();
      });
      res.on("drain", () => answer.resume());
      answer.on("end", () => {
        res.end();
        this.note(host, port, true, { address: verdict.address, bytesUp: up, bytesDown: down });
      });
      answer.on("error", () => res.destroy());
    });
    req.on("data", (c: Buffer) => {
      up += c.length;
      this.count(host, port, c.length, false);
      if (this.addBytes(c.length) && !out.write(c)) req.pause();
    });
    out.on("drain", () => req.resume());
    req.on("end", () => out.end());
  }

  /** Closes every connection of the run and the socket. */
  async close(): Promise<void> {
    this.ended = true;
    for (const s of this.open) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
