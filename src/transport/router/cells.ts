// The router's view of the cells: which should exist (from the orchestrator), which answer (its
// own probes), and where each user is (a cache of what the cells report about their users). A
// user's place is a record kept by the cells, never derived from liveness: a user whose cell is
// down is "unavailable", never re-created elsewhere (docs/SCALING.md section 3).
import type { CellInfo, PlacementReport as CellReport } from "../../protocol/cluster.js";
import type { Logger } from "../../shared/logger.js";
import { home } from "./hrw.js";

/** A cell as the orchestrator declares it. */
export interface DesiredCell {
  id: string;
  /** Where it listens (host name or address), when it has a running task or pod. */
  address?: string;
}

/** The orchestrator's side: which cells should exist, and where they run. */
export interface CellDirectory {
  readonly name: string;
  list(): Promise<DesiredCell[]>;
}


/** How the table talks to cells (HTTP in production; in memory in unit tests). */
export interface CellClient {
  /**
   * Liveness: whether a connection to the cell can be made at all. The kernel answers that even
   * when the cell's process is busy, so a slow cell is never taken for a lost one.
   */
  reachable?(address: string, signal: AbortSignal): Promise<void>;
  info(address: string, signal: AbortSignal): Promise<CellInfo>;
  /** Finishes a move a crash interrupted, on its target: take the user (commit) or drop the copy (abort). */
  finishMove?(address: string, action: "commit" | "abort", user: string, moveId: string): Promise<void>;
  placement(address: string, signal: AbortSignal): Promise<CellReport>;
}

export class CellUnreachable extends Error {
  constructor(
    message: string,
    /** The connection was refused or reset: the process is gone, no need to wait for a second probe. */
    readonly definite: boolean,
  ) {
    super(message);
  }
}

interface CellState {
  id: string;
  address: string | undefined;
  desired: boolean;
  up: boolean;
  failures: number;
  /** Readiness answers (GET /internal/cell) that did not come in time, in a row. */
  slow: number;
  mode: "active" | "draining" | undefined;
  /** The version of the last placement report read (undefined: none yet). */
  version: string | undefined;
  owned: Set<string>;
  /** The records of its last report (reconciling interrupted moves needs both sides'). */
  records: CellReport["users"];
  lastSeen: number;
  /** The probe in progress, if any (callers that need a fresh view wait for it). */
  probing: Promise<void> | undefined;
}

export type Location =
  | { kind: "forward"; cell: string; address: string; create: boolean }
  | { kind: "unavailable"; cell?: string; reason: string };

export interface CellTableOptions {
  directory: CellDirectory;
  client: CellClient;
  logger: Logger;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  /** How long the readiness answer may take when liveness is checked by connecting (default 5 s). */
  readyTimeoutMs?: number;
  probeFailures: number;
  discoveryIntervalMs: number;
}

export class CellTable {
  private readonly cells = new Map<string, CellState>();
  private readonly userCell = new Map<string, string>();
  private readonly downListeners = new Set<(cell: string) => void>();
  private timers: NodeJS.Timeout[] = [];
  private discovered = false;
  private readonly finishing = new Set<string>();

  constructor(private readonly o: CellTableOptions) {}

  /** Calls `fn` when a cell is marked down (the router then ends what it forwards there). */
  onDown(fn: (cell: string) => void): () => void {
    this.downListeners.add(fn);
    return () => this.downListeners.delete(fn);
  }

  async start(): Promise<void> {
    await this.discover();
    await Promise.all([...this.cells.values()].map((c) => this.probe(c)));
    this.timers.push(setInterval(() => void this.discover(), this.o.discoveryIntervalMs));
    this.timers.push(setInterval(() => void this.probeAll(), this.o.probeIntervalMs));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Asks the orchestrator for the desired cells. Its failure changes nothing: the last view stays. */
  async discover(): Promise<void> {
    let list: DesiredCell[];
    try {
      list = await this.o.directory.list();
    } catch (err) {
      this.o.logger.warn("router: the orchestrator did not answer; keeping the last view of the cells", { directory: this.o.directory.name, err: (err as Error).message });
      return;
    }
    const seen = new Set<string>();
    for (const d of list) {
      seen.add(d.id);
      let c = this.cells.get(d.id);
      if (!c) {
        c = { id: d.id, address: d.address, desired: true, up: false, failures: 0, slow: 0, mode: undefined, version: undefined, owned: new Set(), records: {}, lastSeen: 0, probing: undefined };
        this.cells.set(d.id, c);
        this.o.logger.info("router: a cell appeared", { cell: d.id, address: d.address });
        if (this.discovered) void this.probe(c);
      } else {
        if (d.address && d.address !== c.address) {
          this.o.logger.info(c.address ? "router: a cell moved to a new address" : "router: a cell has an address", { cell: d.id, from: c.address, to: d.address });
          c.address = d.address;
          void this.probe(c);
        } else if (!d.address && c.address) {
          // Its task or pod is gone: nothing listens there any more.
          c.address = undefined;
          this.failed(c, "its task or pod is gone", true, true);
        }
        c.desired = true;
      }
    }
    for (const c of this.cells.values()) {
      if (seen.has(c.id) || !c.desired) continue;
      // A cell the orchestrator no longer declares keeps its users until it reports them gone:
      // it is only no longer a home for new ones.
      c.desired = false;
      this.o.logger.warn("router: a cell left the orchestrator's set", { cell: c.id, users: c.owned.size });
      if (c.owned.size === 0 && !c.up) this.cells.delete(c.id);
    }
    this.discovered = true;
  }

  private async probeAll(): Promise<void> {
    await Promise.all([...this.cells.values()].map((c) => this.probe(c)));
  }

  /** Probes one cell now (also called when a forward to it failed); joins a probe in progress. */
  probe(c: CellState | string): Promise<void> {
    const cell = typeof c === "string" ? this.cells.get(c) : c;
    if (!cell) return Promise.resolve();
    cell.probing ??= this.probeOnce(cell).finally(() => (cell.probing = undefined));
    return cell.probing;
  }

  private async probeOnce(cell: CellState): Promise<void> {
    if (!cell.address) return this.failed(cell, "no running task or pod", true, true);
    const address = cell.address;
    if (this.o.client.reachable) {
      try {
        await this.o.client.reachable(address, AbortSignal.timeout(this.o.probeTimeoutMs));
      } catch (err) {
        return this.failed(cell, (err as Error).message, err instanceof CellUnreachable && err.definite, true);
      }
    }
    try {
      const info = await this.o.client.info(address, AbortSignal.timeout(this.o.client.reachable ? (this.o.readyTimeoutMs ?? 5_000) : this.o.probeTimeoutMs));
      if (info.id !== cell.id) {
        // Security: an address that answers as another cell is never trusted with this cell's users.
        return this.failed(cell, `the address answers as cell "${info.id}"`, true, true);
      }
      // Not ready (shutting down, engine gone): no new requests, but what runs there may finish.
      if (!info.ready) return this.failed(cell, "not ready", true, false);
      cell.mode = info.mode;
      const changed = info.version !== cell.version;
      if (changed) await this.readPlacement(cell, address);
      cell.failures = 0;
      cell.slow = 0;
      cell.lastSeen = Date.now();
      const cameUp = !cell.up;
      if (cameUp) {
        cell.up = true;
        this.o.logger.info("router: cell up", { cell: cell.id, address, users: cell.owned.size, mode: cell.mode });
      }
      if (changed || cameUp) this.reconcile();
    } catch (err) {
      const definite = err instanceof CellUnreachable && err.definite;
      if (this.o.client.reachable && !definite && !cell.up) return this.failed(cell, (err as Error).message, false, false);
      if (this.o.client.reachable && !definite) {
        // Reachable but slow to answer (a loaded cell): it keeps its requests; only a cell that
        // stays unresponsive this long gets no new ones.
        if (++cell.slow >= this.o.probeFailures * 3) this.failed(cell, `no readiness answer in ${(this.o.readyTimeoutMs ?? 5_000)} ms, ${cell.slow} times in a row`, true, false);
        return;
      }
      this.failed(cell, (err as Error).message, definite, true);
    }
  }

  private async readPlacement(cell: CellState, address: string): Promise<void> {
    const report = await this.o.client.placement(address, AbortSignal.timeout(Math.max(this.o.probeTimeoutMs, 5_000)));
    if (report.cell !== cell.id) throw new CellUnreachable(`the address reports the placement of cell "${report.cell}"`, true);
    const owned = new Set<string>();
    for (const [user, r] of Object.entries(report.users)) {
      // A user leaving (moving) is still served by their source, which answers "moving" meanwhile.
      if (r.state === "owned" || r.state === "moving") owned.add(user);
      else if (r.state === "moved") {
        // A tombstone points to where the user went: until that cell reports them, they are
        // "there" (unavailable if it is down), never new.
        const cur = this.userCell.get(user);
        if (!cur || cur === cell.id) this.userCell.set(user, r.to);
      } else if (this.userCell.get(user) === cell.id) this.userCell.delete(user);
    }
    for (const user of cell.owned) if (!owned.has(user) && this.userCell.get(user) === cell.id) this.userCell.delete(user);
    for (const user of owned) {
      const other = this.userCell.get(user);
      if (other && other !== cell.id && this.cells.get(other)?.owned.has(user)) {
        this.o.logger.warn("router: two cells report the same user; following the newer report", { user, cells: [other, cell.id] });
        this.cells.get(other)?.owned.delete(user);
      }
      this.userCell.set(user, cell.id);
    }
    cell.owned = owned;
    cell.records = report.users;
    cell.mode = report.mode;
    cell.version = report.version;
    if (!cell.desired && owned.size === 0) this.cells.delete(cell.id);
  }

  /**
   * A failed probe or forward. `abort`: the cell is unreachable, so what is forwarded there is
   * ended at once; otherwise (it answered "not ready") it only gets no new requests.
   */
  /**
   * Moves a crash interrupted (docs/SCALING.md section 7): an "incoming" user on a target is
   * committed there once the source's tombstone points to it (the switch happened), and dropped
   * once the source holds the user again, since after the arrival began (the move was undone).
   * A source still "moving" is a move in progress: nothing to do.
   */
  private reconcile(): void {
    const finish = this.o.client.finishMove?.bind(this.o.client);
    if (!finish) return;
    for (const target of this.cells.values()) {
      for (const [user, r] of Object.entries(target.records)) {
        if (r.state !== "incoming" || !target.up || !target.address) continue;
        const source = this.cells.get(r.from)?.records[user];
        let action: "commit" | "abort" | undefined;
        if (source?.state === "moved" && source.to === target.id) action = "commit";
        else if (source?.state === "owned" && source.since > r.since) action = "abort";
        if (!action) continue;
        const key = `${target.id}|${user}|${r.moveId}|${action}`;
        if (this.finishing.has(key)) continue;
        this.finishing.add(key);
        this.o.logger.warn("router: finishing a move a crash interrupted", { user, from: r.from, to: target.id, action });
        const address = target.address;
        void finish(address, action, user, r.moveId)
          .then(() => {
            target.version = target.version === undefined ? undefined : `${target.version}?`;
            return this.probe(target);
          })
          .catch((err: unknown) => this.o.logger.warn("router: could not finish an interrupted move", { user, to: target.id, action, err: (err as Error).message }))
          .finally(() => this.finishing.delete(key));
      }
    }
  }

  private failed(cell: CellState, why: string, definite: boolean, abort: boolean): void {
    cell.failures++;
    if (cell.up && (definite || cell.failures >= this.o.probeFailures)) {
      cell.up = false;
      this.o.logger.warn("router: cell down", { cell: cell.id, address: cell.address, why });
      if (abort) for (const fn of this.downListeners) fn(cell.id);
    }
  }

  /** A forward to this cell failed to connect: mark it down now if the failure was definite. */
  reportFailure(cellId: string, why: string, definite: boolean): void {
    const cell = this.cells.get(cellId);
    if (!cell) return;
    if (definite) this.failed(cell, why, true, true);
    else void this.probe(cell);
  }

  /** Every desired cell has reported its users at least once (a user unknown to all is new). */
  complete(): boolean {
    for (const c of this.cells.values()) if (c.desired && c.version === undefined) return false;
    return this.discovered;
  }

  /** Where to send this user's request. */
  locate(user: string): Location {
    const at = this.userCell.get(user);
    if (at) {
      const c = this.cells.get(at);
      if (c?.up && c.address) return { kind: "forward", cell: c.id, address: c.address, create: false };
      return { kind: "unavailable", cell: at, reason: `cell ${at} is down` };
    }
    if (!this.complete()) {
      const missing = [...this.cells.values()].filter((c) => c.desired && c.version === undefined).map((c) => c.id);
      return { kind: "unavailable", reason: this.discovered ? `not every cell has reported its users yet (${missing.join(", ")})` : "the router has not read the cells from the orchestrator yet" };
    }
    // Any record of the user anywhere (arriving somewhere, a tombstone) means they are not new:
    // their data exists, so creating them would fork it.
    for (const c of this.cells.values()) {
      const r = c.records[user];
      if (r) return { kind: "unavailable", cell: c.id, reason: r.state === "incoming" ? `your workspace is arriving on cell ${c.id}` : `cell ${c.id} has a record of you (${r.state})` };
    }
    const candidates = [...this.cells.values()].filter((c) => c.desired && c.mode !== "draining").map((c) => c.id);
    const h = home(user, candidates);
    if (!h) return { kind: "unavailable", reason: "no cell takes new users (none declared, or all draining)" };
    const c = this.cells.get(h)!;
    if (!c.up || !c.address) return { kind: "unavailable", cell: h, reason: `cell ${h} is down` };
    return { kind: "forward", cell: h, address: c.address, create: true };
  }

  /** A cell said the user is not there: forget the route and reread that cell's report. */
  misdirected(user: string, cellId: string, movedTo: string | undefined): void {
    if (this.userCell.get(user) === cellId) this.userCell.delete(user);
    this.cells.get(cellId)?.owned.delete(user);
    if (movedTo && this.cells.has(movedTo)) this.userCell.set(user, movedTo);
    const c = this.cells.get(cellId);
    if (c) {
      // The cell's own word, newer than its last report: a tombstone, or no record at all.
      if (movedTo) c.records = { ...c.records, [user]: { state: "moved", to: movedTo, since: Date.now() } };
      else {
        const { [user]: _gone, ...rest } = c.records;
        c.records = rest;
      }
      c.version = c.version === undefined ? undefined : `${c.version}?`;
      void this.probe(c);
    }
  }

  /** A new user was created on a cell (the cell confirmed by serving them). */
  created(user: string, cellId: string): void {
    this.userCell.set(user, cellId);
    this.cells.get(cellId)?.owned.add(user);
  }

  /** The cell holding a user, as last reported. */
  cellOf(user: string): string | undefined {
    return this.userCell.get(user);
  }

  usersOf(cellId: string): string[] {
    return [...(this.cells.get(cellId)?.owned ?? [])].sort();
  }

  address(cellId: string): string | undefined {
    return this.cells.get(cellId)?.address;
  }

  isUp(cellId: string): boolean {
    return this.cells.get(cellId)?.up === true;
  }

  /** Every user the cells reported. */
  users(): string[] {
    return [...this.userCell.keys()].sort();
  }

  /** Where a user belongs by rendezvous hashing over the desired cells that take users. */
  homeOf(user: string, except?: string): string | undefined {
    return home(
      user,
      [...this.cells.values()].filter((c) => c.desired && c.mode !== "draining" && c.id !== except).map((c) => c.id),
    );
  }

  /** Rereads every cell now (before an operation that needs a current view). */
  async refresh(): Promise<void> {
    await this.discover();
    // A probe already running may have started before the change that matters: wait, then probe anew.
    await Promise.all([...this.cells.values()].map((c) => c.probing));
    for (const c of this.cells.values()) c.version = c.version === undefined ? undefined : `${c.version}?`;
    await this.probeAll();
  }

  /** A user moved (reported by the source after the switch). */
  moved(user: string, from: string, to: string): void {
    this.cells.get(from)?.owned.delete(user);
    this.cells.get(to)?.owned.add(user);
    this.userCell.set(user, to);
  }

  status(): Array<{ id: string; address: string | undefined; desired: boolean; up: boolean; mode: string | undefined; users: number }> {
    return [...this.cells.values()].map((c) => ({ id: c.id, address: c.address, desired: c.desired, up: c.up, mode: c.mode, users: c.owned.size })).sort((a, b) => a.id.localeCompare(b.id));
  }
}
