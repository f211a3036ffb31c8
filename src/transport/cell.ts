// Cluster mode of `serve --http` (docs/SCALING.md): this server is one cell. It serves only the
// users it owns, takes a new user only when a router says so with the cluster token, and answers
// routers on an internal listener (its id, its placement records, its readiness).
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { App } from "../app.js";
import { ConfigError, errorMessage } from "../shared/errors.js";
import { hashKey, userIdOf } from "./auth.js";
import { CLUSTER_TOKEN_HEADER, type CellInfo, type CellMode, MISDIRECTED, type MisdirectedBody, PLACEMENT_HEADER } from "../protocol/cluster.js";
import { PlacementStore } from "../stores/placement.js";


type Req = IncomingMessage & { auth?: AuthInfo };

export class Cell {
  private internal: Server | undefined;
  private engineOk = { at: 0, ok: false, detail: "" };
  private closing = false;

  private constructor(
    private readonly app: App,
    readonly id: string,
    readonly store: PlacementStore,
    private readonly tokenHash: Buffer,
  ) {}

  /** The cell of this server, or undefined when cluster mode is off (no cluster.cellId). */
  static async open(app: App): Promise<Cell | undefined> {
    const c = app.config.cluster;
    if (!c.cellId) return undefined;
    if (!c.token) throw new ConfigError("cluster.cellId is set but cluster.token is not: give every router and cell the same token of at least 32 characters (CODEBOX_CLUSTER_TOKEN)");
    if (app.config.auth.apiKeys.length === 0 && !app.config.auth.oauth) {
      // A generated key differs per process: a user would be someone else on every cell.
      throw new ConfigError("a cell needs the cluster's credentials: set auth.apiKeys (CODEBOX_API_KEYS) or auth.oauth, the same on every router and cell");
    }
    const store = new PlacementStore(app.config.dataDir, c.cellId);
    await store.open();
    return new Cell(app, c.cellId, store, hashKey(c.token));
  }

  /** Whether a request carries the cluster token (came through a router). */
  fromRouter(req: IncomingMessage): boolean {
    const t = req.headers[CLUSTER_TOKEN_HEADER];
    return typeof t === "string" && timingSafeEqual(hashKey(t), this.tokenHash);
  }

  /**
   * Runs after authentication, before a session is touched: a user this cell does not own gets
   * 421 and what the cell knows (unknown, or moved to another cell), which the router acts on.
   */
  readonly gate = (req: Req, res: ServerResponse, next: (err?: unknown) => void): void => {
    const user = userIdOf(req.auth);
    const r = user ? this.store.get(user) : undefined;
    if (!user || r?.state === "owned") next();
    else if (r?.state === "moved") this.misdirected(res, "moved", `user moved to cell ${r.to}`, r.to);
    else if (req.headers[PLACEMENT_HEADER] !== "new" || !this.fromRouter(req)) this.misdirected(res, "unknown", "this cell holds no data for this user");
    else if (this.store.mode === "draining") this.misdirected(res, "draining", "this cell is draining and takes no new users");
    else {
      this.store.own(user).then(
        () => {
          this.app.logger.info("cluster: took a new user", { user, cell: this.id });
          next();
        },
        (err: unknown) => next(err),
      );
    }
  };

  private misdirected(res: ServerResponse, placement: "unknown" | "moved" | "draining", message: string, movedTo?: string): void {
    const body: MisdirectedBody = { jsonrpc: "2.0", id: null, error: { code: -32000, message: `${message} (cell ${this.id})`, data: { placement, cell: this.id, ...(movedTo ? { movedTo } : {}) } } };
    res.writeHead(MISDIRECTED, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private async engineReady(): Promise<{ ok: boolean; detail: string }> {
    if (Date.now() - this.engineOk.at < 1_000) return this.engineOk;
    try {
      await this.app.backend.engineInfo();
      this.engineOk = { at: Date.now(), ok: true, detail: "" };
    } catch (err) {
      this.engineOk = { at: Date.now(), ok: false, detail: errorMessage(err) };
    }
    return this.engineOk;
  }

  /** Marks the cell as going away: probes then answer "not ready" and routers stop sending users here. */
  stopping(): void {
    this.closing = true;
  }

  /** The internal listener: routers (and other cells, for moves) with the cluster token only. */
  async listenInternal(host: string, port: number): Promise<number> {
    this.internal = createServer((req, res) => {
      this.internalRequest(req, res).catch((err: unknown) => {
        this.app.logger.error("cluster: internal request failed", { err: errorMessage(err) });
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: "internal error" }));
      });
    });
    this.internal.requestTimeout = 30_000;
    const srv = this.internal;
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(port, host, () => resolve());
    });
    const bound = (srv.address() as AddressInfo).port;
    this.app.logger.info("cluster: cell internal listener", { cell: this.id, host, port: bound });
    return bound;
  }

  private async internalRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const json = (status: number, body: unknown) => void res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(body));
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    // Security: everything here is for routers and cells only.
    if (!m || !timingSafeEqual(hashKey(m[1]!), this.tokenHash)) return json(401, { error: "the cluster token is needed here (cluster.token)" });
    const url = new URL(req.url ?? "/", "http://cell");
    if (req.method === "GET" && url.pathname === "/internal/cell") {
      const engine = await this.engineReady();
      const ready = engine.ok && !this.closing;
      const info: CellInfo = { id: this.id, mode: this.store.mode, version: this.store.version, users: this.store.ownedCount(), ready };
      return json(ready ? 200 : 503, { ...info, ...(engine.ok ? {} : { engine: engine.detail }), ...(this.closing ? { closing: true } : {}) });
    }
    if (req.method === "GET" && url.pathname === "/internal/placement") return json(200, this.store.report());
    if (req.method === "POST" && url.pathname === "/internal/mode") {
      const mode = url.searchParams.get("mode");
      if (mode !== "active" && mode !== "draining") return json(400, { error: 'mode is "active" or "draining"' });
      await this.store.setMode(mode as CellMode);
      this.app.logger.info("cluster: cell mode", { cell: this.id, mode });
      return json(200, { id: this.id, mode });
    }
    return json(404, { error: `no ${req.method} ${url.pathname} here` });
  }

  async close(): Promise<void> {
    const srv = this.internal;
    if (!srv) return;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    srv.closeAllConnections();
  }
}
