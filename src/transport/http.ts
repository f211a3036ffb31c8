import { randomUUID, timingSafeEqual } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { hostHeaderValidation } from "@modelcontextprotocol/sdk/server/middleware/hostHeaderValidation.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import express, { type NextFunction, type Request, type Response } from "express";
import type { App } from "../app.js";
import { errorMessage } from "../shared/errors.js";
import { defaultRuntime } from "../shared/languages.js";
import { Cell } from "./cell.js";
import { CodeboxTokenVerifier, hashKey, mayAdoptLegacy, resolveApiKeys, userIdOf } from "./auth.js";
import { BoundedEventStore, EventBudget } from "./event-store.js";
import { SessionRegistry } from "./sessions.js";

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  events: BoundedEventStore;
  userId: string;
  lastSeen: number;
  close(): Promise<void>;
}

export interface HttpServerHandle {
  url: string;
  port: number;
  /** Cluster mode: the cell's internal listener (routers and cells only). */
  internalPort?: number;
  /** Stops accepting, lets runs finish up to the grace period, then kills and removes everything. */
  shutdown(reason: string): Promise<void>;
}

function jsonRpcError(res: Response, status: number, message: string): void {
  res.status(status).json({ jsonrpc: "2.0", error: { code: -32000, message }, id: null });
}

/**
 * MCP over Streamable HTTP for many users. Every request to /mcp carries a bearer credential;
 * the user id it maps to is bound to the session and flows to every tool call. The listener
 * binds 127.0.0.1 unless configured otherwise, and validates Host and Origin against DNS
 * rebinding.
 */
export async function serveHttp(app: App): Promise<HttpServerHandle> {
  const { config, logger } = app;
  const h = config.http;
  const { keys, generated } = resolveApiKeys(config);
  if (generated) {
    // Like Jupyter's token: HTTP mode never serves unauthenticated.
    process.stderr.write(
      `codebox-mcp: no API keys configured; generated one for user "${generated.userId}" (valid until this process exits):\n` +
        `  Authorization: Bearer ${generated.key}\n`,
    );
  }
  const verifier = new CodeboxTokenVerifier(keys, config.auth.oauth, logger);
  // Cluster mode (docs/SCALING.md): this server is a cell behind routers.
  const cell = await Cell.open(app);
  const web = express();
  web.disable("x-powered-by");

  const localNames = ["localhost", "127.0.0.1", "[::1]"];
  const bindName = h.host.includes(":") ? `[${h.host}]` : h.host;
  const wildcard = h.host === "0.0.0.0" || h.host === "::";
  const allowedHosts = [...new Set([...localNames, ...(wildcard ? [] : [bindName]), ...h.allowedHosts])];
  // Security: DNS rebinding: a foreign Host header is refused before anything else.
  // A router checked Host and Origin against the public names before forwarding (cluster mode).
  const checkHost = hostHeaderValidation(allowedHosts);
  web.use((req: Request, res: Response, next: NextFunction) => (cell?.fromRouter(req) ? next() : checkHost(req, res, next)));
  web.use((req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    if (origin && cell?.fromRouter(req)) return next();
    if (origin && !h.allowedOrigins.includes(origin)) {
      let host: string | undefined;
      try {
        host = new URL(origin).host;
      } catch {
        host = undefined;
      }
      // Same-host origins (a page served by this server) pass; any other is refused.
      if (!host || host !== req.headers.host) return jsonRpcError(res, 403, `Origin ${origin} is not allowed (http.allowedOrigins)`);
    }
    next();
  });

  // Security: /readyz and /metrics say what runs here (engine errors, users' run counts): on a
  // listener that is not loopback-only they need a credential: http.metricsToken, or any API key
  // or access token this server accepts.
  const loopbackOnly = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(h.host);
  const metricsToken = h.metricsToken ? hashKey(h.metricsToken) : undefined;
  const operatorOnly = (req: Request, res: Response, next: NextFunction) => {
    if (loopbackOnly) return next();
    const m = /^Bearer (.+)$/.exec(req.header("authorization") ?? "");
    if (!m) return void res.status(401).json({ error: "a bearer credential is needed here (http.metricsToken, an API key or an access token)" });
    if (metricsToken && timingSafeEqual(hashKey(m[1]!), metricsToken)) return next();
    verifier.verifyAccessToken(m[1]!).then(
      () => next(),
      () => res.status(401).json({ error: "invalid credential" }),
    );
  };

  let draining = false;
  web.get("/healthz", (_req, res) => {
    res.status(draining ? 503 : 200).json({ status: draining ? "draining" : "ok" });
  });
  web.get("/readyz", operatorOnly, async (_req, res) => {
    try {
      await app.backend.engineInfo();
      const image = await app.backend.imageExists(defaultRuntime(app.config.sandbox.runtimes));
      if (draining || !image) res.status(503).json({ ready: false, engine: true, image, draining });
      else res.json({ ready: true, engine: true, image: true });
    } catch (err) {
      res.status(503).json({ ready: false, engine: false, error: errorMessage(err) });
    }
  });
  web.get("/metrics", operatorOnly, async (_req, res) => {
    res.setHeader("content-type", app.metrics.registry.contentType);
    res.end(await app.metrics.registry.metrics());
  });

  const publicUrl = new URL(h.publicUrl ?? `http://${h.host === "0.0.0.0" || h.host === "::" ? "localhost" : bindName}:${h.port}/mcp`);
  const metadataPath = "/.well-known/oauth-protected-resource";
  if (config.auth.oauth) {
    const doc = {
      resource: publicUrl.href,
      authorization_servers: [config.auth.oauth.issuer],
      scopes_supported: config.auth.oauth.requiredScopes,
      bearer_methods_supported: ["header"],
      resource_name: "codebox-mcp",
    };
    web.get([metadataPath, `${metadataPath}${publicUrl.pathname}`], (_req, res) => {
      res.json(doc);
    });
  }

  const sessions = new SessionRegistry<Session>({ maxPerUser: h.maxSessionsPerUser, maxTotal: h.maxSessions });
  // OAuth users had un-namespaced folders before 0.2: each takes its old folder over once, when that is provably theirs.
  const otherIds = new Set([config.userId, ...keys.map((k) => k.userId)]);
  const adopted = new Set<string>();
  const adoptLegacyFolder = async (userId: string, legacy: unknown) => {
    if (adopted.has(userId) || typeof legacy !== "object" || legacy === null) return;
    adopted.add(userId);
    const l = legacy as { id: string; hashed: boolean };
    if (!mayAdoptLegacy(l, otherIds)) return;
    if (await app.dirs.adoptLegacy(l.id, userId)) logger.info("moved an OAuth user's folder to its namespaced id", { from: l.id, to: userId });
  };
  // A user moved to another cell leaves no session here.
  cell?.onCloseSessions(async (user) => {
    for (const [id, s] of [...sessions.entries()]) {
      if (s.userId !== user) continue;
      sessions.delete(id);
      await s.transport.close().catch(() => {});
    }
  });
  const eventBudget = new EventBudget(h.eventBytesTotal);
  const auth = requireBearerAuth({
    verifier,
    requiredScopes: [],
    ...(config.auth.oauth ? { resourceMetadataUrl: new URL(metadataPath, publicUrl).href } : {}),
  });
  const body = express.json({ limit: h.maxBodyBytes });
  const userIdFor = (authInfo: unknown): string => {
    const id = userIdOf(authInfo as AuthInfo | undefined);
    // Security: no identity, no tool call. (requireBearerAuth runs first, so this never happens.)
    if (!id) throw new Error("unauthenticated request");
    return id;
  };

  const handle = async (req: Request, res: Response) => {
    const userId = userIdOf(req.auth)!;
    const sessionId = req.header("mcp-session-id");
    if (sessionId) {
      const session = sessions.get(sessionId);
      // Security: a session belongs to the user who opened it; another user's id is simply unknown.
      if (!session || session.userId !== userId) {
        const why = session ? undefined : sessions.whyClosed(sessionId);
        return jsonRpcError(res, 404, why ? `Session closed: ${why}. Start a new one with initialize.` : "Session not found: start a new one with initialize");
      }
      session.lastSeen = Date.now();
      await session.transport.handleRequest(req, res, req.body);
      return;
    }
    if (req.method !== "POST" || !isInitializeRequest(req.body)) return jsonRpcError(res, 400, "No session: send initialize first (without an Mcp-Session-Id header)");
    if (draining) return jsonRpcError(res, 503, "The server is shutting down");
    await sessions.makeRoom(userId);
    await adoptLegacyFolder(userId, req.auth?.extra?.legacyUserId);
    const server = app.createServer(userIdFor);
    const events = new BoundedEventStore(5_000, h.eventBytesPerSession, eventBudget);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: events,
      onsessioninitialized: (id) => {
        sessions.add(id, { transport, server, events, userId, lastSeen: Date.now(), close: () => transport.close() });
        logger.info("MCP session opened", { sessionId: id, userId });
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
    });
    transport.onclose = () => {
      events.release();
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  };

  const guarded = (fn: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response) => {
    fn(req, res).catch((err: unknown) => {
      logger.error("MCP HTTP request failed", { err: errorMessage(err) });
      if (!res.headersSent) jsonRpcError(res, 500, "Internal error");
    });
  };
  const placed = cell ? cell.gate : (_req: Request, _res: Response, next: NextFunction) => next();
  web.post("/mcp", auth, body, placed, guarded(handle));
  web.get("/mcp", auth, placed, guarded(handle));
  web.delete("/mcp", auth, placed, guarded(handle));
  web.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const status = (err as { status?: number }).status;
    if (status === 413) return jsonRpcError(res, 413, `Request body over ${h.maxBodyBytes} bytes (http.maxBodyBytes)`);
    if (status === 400) return jsonRpcError(res, 400, "Malformed JSON body");
    next(err);
  });

  const idleTimer = setInterval(() => {
    const cutoff = Date.now() - h.sessionIdleMs;
    for (const [id, s] of [...sessions.entries()]) {
      if (s.lastSeen < cutoff) {
        sessions.delete(id);
        void s.transport.close().catch(() => {});
      }
    }
  }, 60_000);
  idleTimer.unref();

  const listener: Server = await new Promise((resolve, reject) => {
    // Express 5 calls back with the listen error too (a port in use): fail with it, not later.
    const srv = web.listen(h.port, h.host, (err?: Error) => (err ? reject(new Error(`cannot listen on ${h.host}:${h.port}: ${err.message}`)) : resolve(srv)));
    srv.once("error", reject);
  });
  const port = (listener.address() as AddressInfo).port;
  // Routers keep connections to cells open and drop them after 30 s idle: the cell outlasts that.
  if (cell) listener.keepAliveTimeout = 65_000;
  const internalPort = cell ? await cell.listenInternal(h.host, config.cluster.internalPort) : undefined;
  const url = `http://${bindName}:${port}/mcp`;
  logger.info("codebox-mcp serving MCP over Streamable HTTP", { url, users: keys.length, oauth: !!config.auth.oauth });
  void app.warmUp();

  let shutdownPromise: Promise<void> | undefined;
  const shutdown = (reason: string) => {
    shutdownPromise ??= (async () => {
      draining = true;
      cell?.stopping();
      app.runs.stopAccepting();
      clearInterval(idleTimer);
      logger.info(`shutting down (${reason}): no new sessions or runs; waiting up to ${h.shutdownGraceMs} ms for runs in progress`);
      listener.close();
      const deadline = Date.now() + h.shutdownGraceMs;
      while (app.runs.inFlight.active + app.runs.inFlight.queued > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      // Past the grace period: kill and remove every container, close sessions and upstreams.
      await app.close();
      for (const s of sessions.values()) await s.transport.close().catch(() => {});
      sessions.clear();
      listener.closeAllConnections();
      await cell?.close();
    })();
    return shutdownPromise;
  };
  return { url, port, ...(internalPort !== undefined ? { internalPort } : {}), shutdown };
}
