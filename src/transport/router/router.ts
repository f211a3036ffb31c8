// `codebox-mcp route`: one address in front of many cells (docs/SCALING.md). It authenticates a
// request with the same verifier as a cell (so a refreshed token keeps its user), finds the user's
// cell and forwards the whole exchange as bytes: JSON responses, SSE streams, progress,
// cancellation and resumption pass unchanged. It holds no user data and no MCP state.
import { randomBytes } from "node:crypto";
import { Agent, type ClientRequest, createServer, type IncomingHttpHeaders, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "../../config/schema.js";
import type { Logger } from "../../shared/logger.js";
import { CodeboxTokenVerifier, hashKey, resolveApiKeys } from "../auth.js";
import { handleAdmin } from "./admin.js";
import { HttpCellClient } from "./cell-client.js";
import { type CellDirectory, CellTable } from "./cells.js";
import { CLUSTER_TOKEN_HEADER, collectJsonRpc, hostPort, type JsonRpcIds, MISDIRECTED, PLACEMENT_HEADER, unavailableBody } from "../../protocol/cluster.js";
import { SseResponseTracker } from "./jsonrpc.js";
import { SwarmDirectory } from "./swarm.js";


// Connection-scoped headers (RFC 9110 section 7.6.1) and ours, which a client may not set.
const DROP_REQUEST = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", CLUSTER_TOKEN_HEADER, PLACEMENT_HEADER]);
const DROP_RESPONSE = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]);

export interface RouterHandle {
  url: string;
  port: number;
  table: CellTable;
  close(): Promise<void>;
}

export interface RouterOptions {
  /** The orchestrator's view of the cells; default from route.discovery. */
  directory?: CellDirectory;
}

function directoryFor(config: Config): CellDirectory {
  const r = config.route;
  if (r.discovery === "swarm") return new SwarmDirectory({ ...r.swarm, ...(config.docker.host ? { dockerHost: config.docker.host } : {}) });
  throw new Error('route.discovery "kubernetes" is designed (docs/SCALING.md section 4) but not built yet: use "swarm"');
}

function hostAllowed(hostHeader: string | undefined, allowed: readonly string[]): boolean {
  if (!hostHeader) return false;
  let name: string;
  try {
    name = new URL(`http://${hostHeader}`).hostname;
  } catch {
    return false;
  }
  return allowed.includes(name);
}

export async function serveRouter(config: Config, logger: Logger, options: RouterOptions = {}): Promise<RouterHandle> {
  const r = config.route;
  const h = config.http;
  const token = config.cluster.token;
  if (!token) throw new Error("the router needs cluster.token (CODEBOX_CLUSTER_TOKEN), the same as the cells'");
  const { keys, generated } = resolveApiKeys(config);
  if (generated) throw new Error("the router needs the cluster's credentials: set auth.apiKeys (CODEBOX_API_KEYS) or auth.oauth, the same on every router and cell");
  const verifier = new CodeboxTokenVerifier(keys, config.auth.oauth, logger);
  const table = new CellTable({
    directory: options.directory ?? directoryFor(config),
    client: new HttpCellClient(token, r.cellInternalPort),
    logger,
    probeIntervalMs: r.probeIntervalMs,
    probeTimeoutMs: r.probeTimeoutMs,
    readyTimeoutMs: r.readyTimeoutMs,
    probeFailures: r.probeFailures,
    discoveryIntervalMs: r.discoveryIntervalMs,
  });
  // Idle connections are dropped well before a cell would close them (cells keep them 65 s), so a
  // request rarely meets a connection closing under it; when it does, it is sent again (below).
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, timeout: 30_000 });
  const bindName = r.host.includes(":") ? `[${r.host}]` : r.host;
  const wildcard = r.host === "0.0.0.0" || r.host === "::";
  const allowedHosts = [...new Set(["localhost", "127.0.0.1", "[::1]", ...(wildcard ? [] : [bindName]), ...h.allowedHosts])];
  const publicUrl = new URL(h.publicUrl ?? `http://${wildcard ? "localhost" : bindName}:${r.port}/mcp`);
  const metadataPath = "/.well-known/oauth-protected-resource";
  const resourceMetadata = config.auth.oauth
    ? { resource: publicUrl.href, authorization_servers: [config.auth.oauth.issuer], scopes_supported: config.auth.oauth.requiredScopes, bearer_methods_supported: ["header"], resource_name: "codebox-mcp" }
    : undefined;
  const operatorHashes = [hashKey(token), ...(h.metricsToken ? [hashKey(h.metricsToken)] : [])];
  const retryAfterS = Math.ceil(r.retryAfterMs / 1000);

  /** What is being forwarded to each cell, so it can be ended when the cell goes down. */
  const inFlight = new Map<string, Set<ClientRequest>>();
  table.onDown((cell) => {
    for (const req of inFlight.get(cell) ?? []) req.destroy(Object.assign(new Error(`cell ${cell} went down`), { code: "ECONNRESET", cellDown: true }));
  });
  const perUser = new Map<string, number>();
  let connections = 0;

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.headersSent) return void res.end();
    res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
  };
  const rpcError = (res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}) => json(res, status, { jsonrpc: "2.0", error: { code: -32000, message }, id: null }, headers);

  const unavailable = (res: ServerResponse, ids: JsonRpcIds | undefined, why: string) => {
    const message = `The host holding your workspace is unavailable (${why}); your files are kept there. Retry in ${retryAfterS} s.`;
    const headers = { "retry-after": String(retryAfterS) };
    const body = ids ? unavailableBody(ids, message, r.retryAfterMs) : undefined;
    // An answer in the protocol where there is a request to answer; else plain 503.
    if (body !== undefined) return json(res, 200, body, headers);
    json(res, 503, { jsonrpc: "2.0", error: { code: -32000, message: `${message} [CODEBOX_CELL_UNAVAILABLE]`, data: { code: "CODEBOX_CELL_UNAVAILABLE", retryAfterMs: r.retryAfterMs } }, id: null }, headers);
  };

  const readBody = (req: IncomingMessage): Promise<Buffer | undefined> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > h.maxBodyBytes) {
          req.destroy();
          resolve(undefined);
        } else chunks.push(c);
      });
      req.on("end", () => resolve(Buffer.concat(chunks)));
      req.on("error", reject);
    });

  /** One attempt at forwarding; resolves to a 421's body when the cell says the user is not there. */
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer | undefined, ids: JsonRpcIds | undefined, user: string, cell: string, address: string, create: boolean): Promise<{ misdirected?: { movedTo?: string }; resend?: boolean }> =>
    new Promise((resolve) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers as IncomingHttpHeaders)) if (v !== undefined && !DROP_REQUEST.has(k)) headers[k] = v;
      headers.host = hostPort(address, r.cellPort);
      headers[CLUSTER_TOKEN_HEADER] = token;
      if (create) headers[PLACEMENT_HEADER] = "new";
      if (body) headers["content-length"] = String(body.length);
      const up = request({ host: address, port: r.cellPort, method: req.method, path: req.url, headers, agent });
      const set = inFlight.get(cell) ?? new Set();
      inFlight.set(cell, set);
      set.add(up);
      let connected = false;
      const connectTimer = setTimeout(() => {
        if (!connected) up.destroy(Object.assign(new Error(`no connection to cell ${cell} within ${r.connectTimeoutMs} ms`), { code: "ETIMEDOUT" }));
      }, r.connectTimeoutMs);
      up.on("socket", (s) => {
        if (!s.connecting) connected = true;
        else s.once("connect", () => (connected = true));
      });
      let finished = false;
      const done = (v: { misdirected?: { movedTo?: string }; resend?: boolean } = {}) => {
        if (finished) return;
        finished = true;
        clearTimeout(connectTimer);
        set.delete(up);
        resolve(v);
      };
      // The client went away: end the exchange with the cell too (a cancelled stream, a closed tab).
      res.on("close", () => {
        if (!res.writableFinished) up.destroy();
        done();
      });
      up.on("error", (err) => {
        // Once the response has begun, its "close" handler below finishes the exchange.
        if (res.headersSent) return;
        const code = (err as NodeJS.ErrnoException).code;
        // A kept-alive connection the cell closed as the request went out: nothing reached the
        // cell, so the request goes again on a new connection (Node's documented pattern).
        if (up.reusedSocket && !(err as { cellDown?: boolean }).cellDown && (code === "ECONNRESET" || code === "EPIPE")) return done({ resend: true });
        // Only "nobody listens" is proof the cell is gone; anything else asks the probe to decide.
        table.reportFailure(cell, err.message, code === "ECONNREFUSED" || (err as { cellDown?: boolean }).cellDown === true);
        logger.info("router: forward failed", { cell, user, err: err.message });
        unavailable(res, ids, `cell ${cell}: ${connected ? "the connection broke" : "no connection"}`);
        done();
      });
      let tracker: SseResponseTracker | undefined;
      up.on("response", (cres) => {
        connected = true;
        clearTimeout(connectTimer);
        if (cres.statusCode === MISDIRECTED) {
          const chunks: Buffer[] = [];
          cres.on("data", (c: Buffer) => chunks.push(c));
          cres.on("end", () => {
            let movedTo: string | undefined;
            try {
              movedTo = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error?: { data?: { movedTo?: string } } }).error?.data?.movedTo;
            } catch {
              movedTo = undefined;
            }
            done({ misdirected: { ...(movedTo ? { movedTo } : {}) } });
          });
          cres.on("error", () => done({ misdirected: {} }));
          return;
        }
        if (create && cres.statusCode !== undefined && cres.statusCode < 400) table.created(user, cell);
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(cres.headers)) if (v !== undefined && !DROP_RESPONSE.has(k)) out[k] = v;
        res.writeHead(cres.statusCode ?? 502, out);
        res.flushHeaders();
        const sse = String(cres.headers["content-type"] ?? "").startsWith("text/event-stream");
        if (sse && ids && ids.requests.length > 0) {
          // If the stream breaks before every request got its response, the router writes the
          // missing responses itself: a caller never waits on a stream that will not end.
          tracker = new SseResponseTracker(ids, (missing) => {
            const message = `The host holding your workspace became unavailable during this request (cell ${cell}); your files are kept there. Retry in ${retryAfterS} s.`;
            return unavailableBody(missing, message, r.retryAfterMs);
          });
        }
        cres.on("data", (c: Buffer) => {
          tracker?.observe(c);
          res.write(c);
        });
        cres.on("end", () => {
          res.end();
          done();
        });
        cres.on("error", () => {});
        cres.on("close", () => {
          if (!cres.complete && !res.writableEnded) {
            if (tracker) {
              // Answer what the cell did not, then end the stream cleanly.
              res.write(tracker.missingEvents());
              res.end();
            } else res.destroy();
          }
          done();
        });
      });
      up.end(body);
    });

  const handleMcp = async (req: IncomingMessage, res: ServerResponse) => {
    // A client that leaves while the request is being verified or read is not forwarded at all.
    let gone = false;
    res.once("close", () => {
      gone = true;
    });
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    const wwwAuth = (error: string, description: string) =>
      `Bearer error="${error}", error_description="${description}"${resourceMetadata ? `, resource_metadata="${new URL(metadataPath, publicUrl).href}"` : ""}`;
    if (!m) return json(res, 401, { error: "invalid_token", error_description: "Missing Authorization header" }, { "www-authenticate": wwwAuth("invalid_token", "Missing Authorization header") });
    let user: string;
    try {
      const info = await verifier.verifyAccessToken(m[1]!);
      user = String(info.extra?.userId);
    } catch (err) {
      const e = err as { errorCode?: string; message: string };
      const status = e.errorCode === "insufficient_scope" ? 403 : 401;
      const code = e.errorCode ?? "invalid_token";
      return json(res, status, { error: code, error_description: e.message }, { "www-authenticate": wwwAuth(code, e.message.replace(/"/g, "'")) });
    }
    let body: Buffer | undefined;
    let ids: JsonRpcIds | undefined;
    if (req.method === "POST") {
      body = await readBody(req);
      if (!body) return rpcError(res, 413, `Request body over ${h.maxBodyBytes} bytes (http.maxBodyBytes)`);
      ids = collectJsonRpc(body);
    }
    const open = perUser.get(user) ?? 0;
    if (open >= r.maxStreamsPerUser) return rpcError(res, 429, `Too many open requests for this user (route.maxStreamsPerUser ${r.maxStreamsPerUser}); close some and retry`, { "retry-after": "1" });
    perUser.set(user, open + 1);
    try {
      let loc = table.locate(user);
      for (let attempt = 0; attempt < 3; attempt++) {
        if (gone) return;
        if (loc.kind === "unavailable") return unavailable(res, ids, loc.reason);
        const out = await forward(req, res, body, ids, user, loc.cell, loc.address, loc.create);
        if (out.resend) continue;
        if (!out.misdirected) return;
        table.misdirected(user, loc.cell, out.misdirected.movedTo);
        logger.info("router: a cell did not hold the user", { user, cell: loc.cell, movedTo: out.misdirected.movedTo });
        loc = table.locate(user);
      }
      unavailable(res, ids, "the cells disagree about where your data is; an operator has been told");
      logger.error("router: placement did not settle after a redirect", { user });
    } finally {
      const n = (perUser.get(user) ?? 1) - 1;
      if (n <= 0) perUser.delete(user);
      else perUser.set(user, n);
    }
  };

  const operator = (req: IncomingMessage): boolean => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    if (!m) return false;
    const presented = hashKey(m[1]!);
    let ok = false;
    for (const hash of operatorHashes) if (hash.equals(presented)) ok = true;
    return ok;
  };

  const server: Server = createServer((req, res) => {
    const url = req.url ?? "/";
    const path = url.split("?")[0]!;
    // Security: DNS rebinding: the router is the public face, so it checks Host and Origin (the cells trust the cluster token).
    if (!hostAllowed(req.headers.host, allowedHosts)) return rpcError(res, 403, `Invalid Host header: ${req.headers.host ?? "(none)"} (http.allowedHosts)`);
    const origin = req.headers.origin;
    if (origin && !h.allowedOrigins.includes(origin)) {
      let same = false;
      try {
        same = new URL(origin).host === req.headers.host;
      } catch {
        same = false;
      }
      if (!same) return rpcError(res, 403, `Origin ${origin} is not allowed (http.allowedOrigins)`);
    }
    if (path === "/healthz") return json(res, 200, { status: "ok" });
    if (path === "/readyz") {
      if (!operator(req)) return json(res, 401, { error: "a bearer credential is needed here (cluster.token or http.metricsToken)" });
      const cells = table.status();
      return json(res, table.complete() ? 200 : 503, { ready: table.complete(), cells });
    }
    if (path.startsWith("/admin/")) {
      // Security: the operator's commands need the cluster token itself (not the metrics token).
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
      if (!m || !hashKey(m[1]!).equals(operatorHashes[0]!)) return json(res, 401, { error: "admin commands need the cluster token (cluster.token)" });
      return void handleAdmin({ table, token, internalPort: r.cellInternalPort, logger }, req, res, path).catch((err: unknown) => json(res, 500, { error: (err as Error).message }));
    }
    if (resourceMetadata && (path === metadataPath || path === `${metadataPath}${publicUrl.pathname}`)) return json(res, 200, resourceMetadata);
    if (path !== "/mcp") return json(res, 404, { error: `no ${path} here: MCP is at /mcp` });
    if (connections >= r.maxConnections) return rpcError(res, 503, "The router is at its connection limit; retry shortly", { "retry-after": "1" });
    connections++;
    res.on("close", () => connections--);
    handleMcp(req, res).catch((err: unknown) => {
      logger.error("router: request failed", { err: (err as Error).message });
      if (!res.headersSent) rpcError(res, 500, "Internal error");
      else res.destroy();
    });
  });
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;

  await table.start();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(r.port, r.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${bindName}:${port}/mcp`;
  logger.info("codebox-mcp routing MCP to cells", { url, discovery: r.discovery, cells: table.status().length, id: randomBytes(4).toString("hex") });
  return {
    url,
    port,
    table,
    close: async () => {
      table.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      agent.destroy();
    },
  };
}
