// Cluster mode of `serve --http` (docs/SCALING.md): this server is one cell. It serves only the
// users it owns, takes a new user only when a router says so with the cluster token, and answers
// routers on an internal listener (its id, its placement records, its readiness).
import { randomUUID, timingSafeEqual } from "node:crypto";
import { Readable } from "node:stream";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { App } from "../app.js";
import { ConfigError, errorMessage } from "../shared/errors.js";
import { hashKey, userIdOf } from "./auth.js";
import { CLUSTER_TOKEN_HEADER, type CellInfo, type CellMode, jsonRpcIds, MISDIRECTED, type MisdirectedBody, type MoveReport, PLACEMENT_HEADER, unavailableBody } from "../protocol/cluster.js";
import { PlacementStore } from "../stores/placement.js";
import { packTree, type TreeSummary, unpackTree } from "../stores/tree-transfer.js";

type Req = IncomingMessage & { auth?: AuthInfo; body?: unknown };

/** What a user's clients are told to wait while the user is being moved. */
const MOVING_RETRY_MS = 5_000;

export class Cell {
  private internal: Server | undefined;
  private engineOk = { at: 0, ok: false, detail: "" };
  private closing = false;
  /** MCP POSTs of each user past the gate and not answered yet (a move waits for them). */
  private readonly active = new Map<string, number>();
  private readonly idleWaiters = new Map<string, Array<() => void>>();
  private closeSessions: (user: string) => Promise<void> = async () => {};
  private moving = false;

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
    const cell = new Cell(app, c.cellId, store, hashKey(c.token));
    await cell.recover();
    return cell;
  }

  /**
   * After a crash: a move that had not reached its switch gives the user back to this cell (the
   * target's incoming copy is dropped by a router, CellTable.reconcile); a user who had moved away
   * leaves no copy here.
   */
  private async recover(): Promise<void> {
    for (const [user, r] of Object.entries(this.store.report().users)) {
      if (r.state === "moving") {
        await this.store.abortMove(user);
        this.app.logger.warn("cluster: a move was cut short before its switch; the user stays here", { user, to: r.to });
      } else if (r.state === "moved") {
        await this.app.dirs.remove(user).catch((err: unknown) => this.app.logger.warn("cluster: could not remove the copy of a user who moved away", { user, err: errorMessage(err) }));
      } else if (r.state === "incoming") {
        // An arrival cut short by this cell's restart: a router decides with the source's record
        // (commit only after the source's tombstone, drop when the source kept the user).
        this.app.logger.info("cluster: an arrival waits for its source's word", { user, from: r.from });
      }
    }
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
    if (!user) next();
    else if (r?.state === "owned") this.admit(user, req, res, next);
    else if (r?.state === "moving") this.answerMoving(req, res, r.to);
    else if (r?.state === "moved") this.misdirected(res, "moved", `user moved to cell ${r.to}`, r.to);
    // Arriving: the data is here or on its way, so "unknown" would be a lie a router could act on.
    else if (r?.state === "incoming") this.answerMoving(req, res, this.id);
    else if (req.headers[PLACEMENT_HEADER] !== "new" || !this.fromRouter(req)) this.misdirected(res, "unknown", "this cell holds no data for this user");
    else if (this.store.mode === "draining") this.misdirected(res, "draining", "this cell is draining and takes no new users");
    else {
      this.store.own(user).then(
        () => {
          this.app.logger.info("cluster: took a new user", { user, cell: this.id });
          this.admit(user, req, res, next);
        },
        (err: unknown) => next(err),
      );
    }
  };

  /** Counts the user's POSTs in flight (a GET stream stays open for the session: not counted). */
  private admit(user: string, req: Req, res: ServerResponse, next: () => void): void {
    if (req.method === "POST") {
      this.active.set(user, (this.active.get(user) ?? 0) + 1);
      res.once("close", () => {
        const n = (this.active.get(user) ?? 1) - 1;
        if (n > 0) return void this.active.set(user, n);
        this.active.delete(user);
        for (const w of this.idleWaiters.get(user) ?? []) w();
        this.idleWaiters.delete(user);
      });
    }
    next();
  }

  private answerMoving(req: Req, res: ServerResponse, to: string): void {
    const message = `Your workspace is being moved to another host (cell ${to}); your files are kept. Retry in ${MOVING_RETRY_MS / 1000} s.`;
    const body = req.method === "POST" ? unavailableBody(jsonRpcIds(req.body), message, MOVING_RETRY_MS, "CODEBOX_USER_MOVING") : undefined;
    const headers = { "content-type": "application/json", "retry-after": String(MOVING_RETRY_MS / 1000) };
    if (body !== undefined) return void res.writeHead(200, headers).end(JSON.stringify(body));
    res.writeHead(503, headers).end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: `${message} [CODEBOX_USER_MOVING]`, data: { code: "CODEBOX_USER_MOVING", retryAfterMs: MOVING_RETRY_MS } } }));
  }

  /** How the cell ends a user's MCP sessions (set by the HTTP transport). */
  onCloseSessions(fn: (user: string) => Promise<void>): void {
    this.closeSessions = fn;
  }

  private waitIdle(user: string, timeoutMs: number): Promise<boolean> {
    if (!this.active.get(user)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      const list = this.idleWaiters.get(user) ?? [];
      list.push(() => {
        clearTimeout(t);
        resolve(true);
      });
      this.idleWaiters.set(user, list);
    });
  }

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
        this.app.logger.error("cluster: internal request failed", { path: req.url, err: errorMessage(err) });
        // Only routers and cells get here: they are told why.
        if (!res.headersSent) res.writeHead((err as { status?: number }).status ?? 500, { "content-type": "application/json" }).end(JSON.stringify({ error: errorMessage(err) }));
      });
    });
    // Moves stream for as long as the data takes.
    this.internal.requestTimeout = 0;
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
    const user = url.searchParams.get("user") ?? "";
    const moveId = url.searchParams.get("move") ?? "";
    if (req.method === "POST" && url.pathname === "/internal/move") {
      const to = url.searchParams.get("to") ?? "";
      const target = url.searchParams.get("target") ?? "";
      if (!user || !to || !target) return json(400, { error: "move needs user, to (the target cell's id) and target (its internal address host:port)" });
      return json(200, await this.moveOut(user, to, target));
    }
    if (req.method === "PUT" && url.pathname === "/internal/import") {
      const from = url.searchParams.get("from") ?? "";
      if (!user || !moveId || !from) return json(400, { error: "import needs user, move and from" });
      return json(200, await this.moveIn(user, from, moveId, req));
    }
    if (req.method === "POST" && url.pathname === "/internal/commit") {
      await this.store.commitIncoming(user, moveId);
      this.app.logger.info("cluster: a user arrived", { user, cell: this.id, moveId });
      return json(200, { user, cell: this.id, state: "owned" });
    }
    if (req.method === "POST" && url.pathname === "/internal/abort") {
      const r = this.store.get(user);
      if (r?.state === "incoming" && r.moveId === moveId) {
        await this.app.dirs.remove(user).catch(() => {});
        await this.store.dropIncoming(user, moveId);
      }
      return json(200, { user, cell: this.id, dropped: true });
    }
    if (req.method === "POST" && url.pathname === "/internal/mode") {
      const mode = url.searchParams.get("mode");
      if (mode !== "active" && mode !== "draining") return json(400, { error: 'mode is "active" or "draining"' });
      await this.store.setMode(mode as CellMode);
      this.app.logger.info("cluster: cell mode", { cell: this.id, mode });
      return json(200, { id: this.id, mode });
    }
    return json(404, { error: `no ${req.method} ${url.pathname} here` });
  }

  /**
   * Moves a user out (docs/SCALING.md section 7), driven by this cell, the source: stop taking
   * their requests, wait for those in flight (runs are waited for, never cancelled), drop their
   * warm containers and sessions, stream their tree to the target, which verifies it against the
   * manifest; then the switch (the target owns them, this cell keeps a tombstone), and only then
   * the old copy is removed. A failure before the switch gives the user back to this cell.
   */
  private async moveOut(user: string, to: string, target: string): Promise<MoveReport> {
    if (this.moving) throw Object.assign(new Error("this cell is already moving a user; one at a time"), { status: 409 });
    if (to === this.id) throw new Error("the target is this cell");
    const r = this.store.get(user);
    if (r?.state !== "owned") throw new Error(`user ${user} is not held by cell ${this.id} (${r?.state ?? "unknown"})`);
    this.moving = true;
    const moveId = randomUUID();
    const t0 = Date.now();
    const log = this.app.logger;
    const call = (path: string, init: RequestInit = {}) =>
      fetch(`http://${target}${path}`, { ...init, headers: { authorization: `Bearer ${this.app.config.cluster.token}`, ...(init.headers ?? {}) } });
    let copied: TreeSummary | undefined;
    let packed: { destroy(): void } | undefined;
    let t1 = t0;
    try {
      await this.store.beginMove(user, to, moveId);
      log.info("cluster: moving a user", { user, from: this.id, to, moveId });
      const longest = Math.max(...Object.values(this.app.config.sandbox.profiles).map((p) => p.timeoutMs), this.app.config.packages.installTimeoutMs);
      if (!(await this.waitIdle(user, longest + 30_000))) throw new Error("the user's requests did not finish in time");
      await this.app.runs.dropWarm(user);
      await this.closeSessions(user);
      t1 = Date.now();
      const dirs = await this.app.dirs.ensure(user);
      const { stream, done } = packTree(dirs.root, { maxEntries: this.maxTreeEntries() });
      packed = stream;
      const q = new URLSearchParams({ user, move: moveId, from: this.id });
      const res = await call(`/internal/import?${q}`, { method: "PUT", body: Readable.toWeb(stream) as ReadableStream, duplex: "half" } as RequestInit);
      const text = await res.text();
      if (!res.ok) throw new Error(`the target refused the data: HTTP ${res.status} ${text.slice(0, 300)}`);
      const arrived = JSON.parse(text) as TreeSummary;
      copied = await done;
      if (arrived.digest !== copied.digest) {
        await call(`/internal/abort?${q}`, { method: "POST" }).catch(() => {});
        throw new Error(`the tree differs after the copy (source ${copied.digest}, target ${arrived.digest})`);
      }
    } catch (err) {
      packed?.destroy();
      await this.store.abortMove(user).catch(() => {});
      this.app.runs.keepWarm(user);
      this.moving = false;
      log.warn("cluster: the move failed; the user stays here", { user, to, moveId, err: errorMessage(err) });
      throw err;
    }
    const q = new URLSearchParams({ user, move: moveId, from: this.id });
    try {
      // The switch, the commit point: the tombstone. From here the user belongs to the target; if
      // anything below fails (or this cell dies), a router finishes it (CellTable.reconcile).
      await this.store.finishMove(user, to);
      const committed = await call(`/internal/commit?${q}`, { method: "POST" }).catch((err: unknown) => ({ ok: false, status: 0, text: async () => errorMessage(err) }));
      if (!committed.ok) log.warn("cluster: the target has the data but did not confirm; a router will finish the move", { user, to, moveId, status: committed.status, detail: (await committed.text()).slice(0, 300) });
      await this.app.dirs.remove(user);
      this.app.runs.keepWarm(user);
    } finally {
      this.moving = false;
    }
    const report: MoveReport = { user, from: this.id, to, moveId, files: copied.files, dirs: copied.dirs, symlinks: copied.symlinks, bytes: copied.bytes, digest: copied.digest, drainMs: t1 - t0, copyMs: Date.now() - t1, totalMs: Date.now() - t0 };
    log.info("cluster: moved a user", { ...report });
    return report;
  }

  /** The most entries a moved tree may have: twice the inode quota (a tree the quota allowed, with room). */
  private maxTreeEntries(): number {
    return Math.max(2 * this.app.config.storage.quotaInodes, 10_000);
  }

  /** The target's side of a move: the tree arrives into the user's (fresh) folder and is verified. */
  private async moveIn(user: string, from: string, moveId: string, body: IncomingMessage): Promise<TreeSummary> {
    await this.store.beginIncoming(user, from, moveId);
    try {
      // Leftovers of an earlier stay or an aborted arrival go first.
      await this.app.dirs.remove(user);
      const dirs = await this.app.dirs.ensure(user);
      return await unpackTree(body, dirs.root, { maxBytes: Math.max(this.app.config.storage.quotaMiB * 1024 * 1024 * 2, 1024 * 1024 * 1024), maxEntries: this.maxTreeEntries() });
    } catch (err) {
      await this.app.dirs.remove(user).catch(() => {});
      await this.store.dropIncoming(user, moveId);
      throw err;
    }
  }

  async close(): Promise<void> {
    const srv = this.internal;
    if (!srv) return;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    srv.closeAllConnections();
  }
}
