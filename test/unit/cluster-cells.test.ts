// The router's table of cells (docs/SCALING.md sections 3, 4 and 6), with an in-memory orchestrator
// (CellDirectory) and in-memory cells (CellClient), then the HTTP CellClient against a real loopback
// server. What must hold: a user's place is what the cells report, never derived from liveness; a
// user whose cell is down is "unavailable" and never re-created elsewhere; a new user is created
// only on home(u) among the desired non-draining cells, and only once every desired cell reported.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { CellInfo, CellMode, PlacementRecord, PlacementReport } from "../../src/protocol/cluster.js";
import { createLogger } from "../../src/shared/logger.js";
import { HttpCellClient, isDefiniteNetworkError } from "../../src/transport/router/cell-client.js";
import { type CellClient, type CellDirectory, CellTable, CellUnreachable, type DesiredCell, type Location } from "../../src/transport/router/cells.js";
import { home } from "../../src/transport/router/hrw.js";

// --- in-memory orchestrator and cells ------------------------------------------------------------

class MemoryDirectory implements CellDirectory {
  readonly name = "memory";
  cells: DesiredCell[];
  failWith: Error | undefined;
  calls = 0;

  constructor(cells: DesiredCell[]) {
    this.cells = cells;
  }

  async list(): Promise<DesiredCell[]> {
    this.calls++;
    if (this.failWith) throw this.failWith;
    return this.cells.map((c) => ({ ...c }));
  }

  drop(id: string): void {
    this.cells = this.cells.filter((c) => c.id !== id);
  }
}

type Failure = "refused" | "slow" | "error" | "hang";

class MemoryCell {
  mode: CellMode = "active";
  ready = true;
  /** The id it gives in /internal/cell (another cell's, to test that it is not trusted). */
  answersAs: string | undefined;
  /** The cell id it gives in its placement report. */
  reportsAs: string | undefined;
  failure: Failure | undefined;
  users: Record<string, PlacementRecord> = {};
  epoch = Math.random().toString(36).slice(2, 8);
  changes = 0;

  constructor(readonly id: string) {}

  get version(): string {
    return `${this.epoch}.${this.changes}`;
  }

  own(...users: string[]): this {
    for (const u of users) this.users[u] = { state: "owned", since: 1 };
    this.changes++;
    return this;
  }

  moveOut(user: string, to: string): void {
    this.users[user] = { state: "moved", to, since: 2 };
    this.changes++;
  }

  forget(user: string): void {
    delete this.users[user];
    this.changes++;
  }

  setMode(mode: CellMode): void {
    this.mode = mode;
    this.changes++;
  }

  /** A restart: its records stay (they are on its disk), its version starts again. */
  restart(): void {
    this.epoch = Math.random().toString(36).slice(2, 8);
    this.changes = 0;
  }
}

class MemoryNetwork implements CellClient {
  readonly at = new Map<string, MemoryCell>();
  infoCalls: string[] = [];
  placementCalls: string[] = [];
  /** How long the answers from an address take (none: at once). */
  readonly delayMs = new Map<string, number>();

  add(cell: MemoryCell, address = `${cell.id}.cells`): MemoryCell {
    this.at.set(address, cell);
    return cell;
  }

  private async behave(address: string, signal: AbortSignal): Promise<MemoryCell> {
    const delay = this.delayMs.get(address);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const c = this.at.get(address);
    if (!c || c.failure === "refused") throw new CellUnreachable(`connect ECONNREFUSED ${address}`, true);
    if (c.failure === "slow") throw new CellUnreachable(`${address}: timed out`, false);
    if (c.failure === "error") throw new Error(`${address}: something odd`);
    if (c.failure === "hang") {
      await new Promise((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    }
    return c;
  }

  async info(address: string, signal: AbortSignal): Promise<CellInfo> {
    this.infoCalls.push(address);
    const c = await this.behave(address, signal);
    const users = Object.values(c.users).filter((r) => r.state === "owned").length;
    return { id: c.answersAs ?? c.id, mode: c.mode, version: c.version, users, ready: c.ready };
  }

  async placement(address: string, signal: AbortSignal): Promise<PlacementReport> {
    this.placementCalls.push(address);
    const c = await this.behave(address, signal);
    return { cell: c.reportsAs ?? c.id, mode: c.mode, version: c.version, users: structuredClone(c.users) };
  }
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

const tables: CellTable[] = [];
afterEach(() => {
  for (const t of tables.splice(0)) t.stop();
});

function cluster(ids: string[], options: { probeFailures?: number; probeTimeoutMs?: number; probeIntervalMs?: number; discoveryIntervalMs?: number } = {}) {
  const directory = new MemoryDirectory(ids.map((id) => ({ id, address: `${id}.cells` })));
  const net = new MemoryNetwork();
  const cells = new Map(ids.map((id) => [id, net.add(new MemoryCell(id))]));
  const lines: string[] = [];
  const table = new CellTable({
    directory,
    client: net,
    logger: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    probeIntervalMs: options.probeIntervalMs ?? 3_600_000,
    probeTimeoutMs: options.probeTimeoutMs ?? 50,
    probeFailures: options.probeFailures ?? 2,
    discoveryIntervalMs: options.discoveryIntervalMs ?? 3_600_000,
  });
  tables.push(table);
  const downs: string[] = [];
  table.onDown((c) => downs.push(c));
  return {
    directory,
    net,
    table,
    downs,
    cell: (id: string) => cells.get(id)!,
    logs: () => lines.map((l) => JSON.parse(l) as { level: string; msg: string; [k: string]: unknown }),
    /** One discovery, then one probe of every cell the table knows (after any probe discovery started). */
    refresh: async () => {
      await table.discover();
      await settle();
      for (const s of table.status()) await table.probe(s.id);
    },
    state: (id: string) => table.status().find((s) => s.id === id),
  };
}

const fwd = (cell: string, create = false): Location => ({ kind: "forward", cell, address: `${cell}.cells`, create });

/** A user id whose home among `cells` is `want` (and, when given, whose home among `alsoAmong` is `alsoWant`). */
function userWithHome(want: string, cells: string[], prefix = "user", alsoAmong?: string[], alsoWant?: string): string {
  for (let i = 0; i < 100_000; i++) {
    const u = `${prefix}-${i}`;
    if (home(u, cells) === want && (!alsoAmong || home(u, alsoAmong) === alsoWant)) return u;
  }
  throw new Error(`no user found with home ${want}`);
}

// --- the table -----------------------------------------------------------------------------------

describe("CellTable: routing known users", () => {
  it("sends a user to the cell that reports them, never with create", async () => {
    const c = cluster(["A", "B", "C"]);
    c.cell("A").own("alice");
    c.cell("B").own("bob", "beth");
    await c.refresh();
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    expect(c.table.locate("bob")).toEqual(fwd("B"));
    expect(c.table.locate("beth")).toEqual(fwd("B"));
    expect(c.table.status()).toEqual([
      { id: "A", address: "A.cells", desired: true, up: true, mode: "active", users: 1 },
      { id: "B", address: "B.cells", desired: true, up: true, mode: "active", users: 2 },
      { id: "C", address: "C.cells", desired: true, up: true, mode: "active", users: 0 },
    ]);
  });

  it("routes a user to their cell even when it is not their home (e.g. a single server's users)", async () => {
    const c = cluster(["A", "B"]);
    const u = userWithHome("B", ["A", "B"]);
    c.cell("A").own(u);
    await c.refresh();
    expect(c.table.locate(u)).toEqual(fwd("A"));
  });

  it("rereads a cell's placement only when its version changes", async () => {
    const c = cluster(["A"]);
    c.cell("A").own("alice");
    await c.refresh();
    expect(c.net.placementCalls).toEqual(["A.cells"]);
    await c.table.probe("A");
    await c.table.probe("A");
    expect(c.net.placementCalls).toHaveLength(1);
    c.cell("A").own("anna");
    await c.table.probe("A");
    expect(c.net.placementCalls).toHaveLength(2);
    expect(c.table.locate("anna")).toEqual(fwd("A"));
  });

  it("forgets a user their cell no longer reports, and follows a user who moved between two cells' reports", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice", "anna");
    await c.refresh();
    c.cell("A").moveOut("alice", "B");
    c.cell("B").own("alice");
    c.cell("A").forget("anna");
    await c.refresh();
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.state("A")?.users).toBe(0);
    // anna is in no report: she is new again, created on her home.
    expect(c.table.locate("anna")).toEqual(fwd(home("anna", ["A", "B"])!, true));
  });

  it("remembers a user created on a cell (created()) before the cell reports them", async () => {
    const c = cluster(["A", "B"]);
    await c.refresh();
    const u = userWithHome("B", ["A", "B"]);
    expect(c.table.locate(u)).toEqual(fwd("B", true));
    c.table.created(u, "B");
    expect(c.table.locate(u)).toEqual(fwd("B"));
    expect(c.state("B")?.users).toBe(1);
    // Even if B later goes down, the user is unavailable, not created on A.
    c.cell("B").failure = "refused";
    await c.table.probe("B");
    expect(c.table.locate(u)).toMatchObject({ kind: "unavailable", cell: "B" });
  });

  it("after a cell restart (new version) rereads its report and keeps routing its users", async () => {
    const c = cluster(["A"]);
    c.cell("A").own("alice");
    await c.refresh();
    c.cell("A").failure = "refused";
    await c.table.probe("A");
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", cell: "A" });
    c.cell("A").failure = undefined;
    c.cell("A").restart();
    await c.table.probe("A");
    expect(c.net.placementCalls).toHaveLength(2);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
  });
});

describe("CellTable: a user whose cell is down is unavailable, never re-created elsewhere", () => {
  it("answers unavailable for the users of a down cell while the table is complete and other cells are up", async () => {
    const c = cluster(["A", "B", "C"]);
    const u = userWithHome("B", ["A", "B", "C"]);
    c.cell("A").own(u, "alice");
    await c.refresh();
    expect(c.table.complete()).toBe(true);
    c.cell("A").failure = "refused";
    await c.refresh();
    expect(c.table.complete()).toBe(true);
    expect(c.state("A")?.up).toBe(false);
    for (const user of [u, "alice"]) {
      const loc = c.table.locate(user);
      expect(loc).toMatchObject({ kind: "unavailable", cell: "A" });
      expect((loc as { reason: string }).reason).toContain("A");
    }
    // Still so after the cell left the orchestrator's set while down: it keeps its users.
    c.directory.drop("A");
    await c.refresh();
    expect(c.state("A")).toMatchObject({ desired: false, up: false, users: 2 });
    expect(c.table.locate(u)).toMatchObject({ kind: "unavailable", cell: "A" });
  });

  it("holds for any cluster, placement, set of down and draining cells (property)", async () => {
    const scenario = fc
      .uniqueArray(fc.constantFrom<string>("c0", "c1", "c2", "c3", "c4"), { minLength: 1, maxLength: 5 })
      .chain((ids) =>
        fc.record({
          ids: fc.constant(ids),
          placed: fc.array(fc.tuple(fc.stringMatching(/^[a-z]{1,6}$/), fc.constantFrom(...ids)), { maxLength: 12 }),
          fresh: fc.uniqueArray(fc.stringMatching(/^n[a-z0-9]{1,6}$/), { maxLength: 12 }),
          down: fc.subarray(ids),
          draining: fc.subarray(ids),
        }),
      );
    await fc.assert(
      fc.asyncProperty(scenario, async ({ ids, placed, fresh, down, draining }) => {
        const c = cluster(ids);
        const where = new Map<string, string>();
        for (const [u, cell] of placed) if (!where.has(u)) where.set(u, cell);
        for (const [u, cell] of where) c.cell(cell).own(u);
        for (const id of draining) c.cell(id).setMode("draining");
        await c.refresh();
        for (const id of down) c.cell(id).failure = "refused";
        await c.refresh();
        expect(c.table.complete()).toBe(true);
        for (const [u, cell] of where) {
          const loc = c.table.locate(u);
          if (down.includes(cell)) expect(loc).toMatchObject({ kind: "unavailable", cell });
          else expect(loc).toEqual(fwd(cell));
        }
        const candidates = ids.filter((id) => !draining.includes(id));
        for (const u of fresh) {
          if (where.has(u)) continue;
          const loc = c.table.locate(u);
          const h = home(u, candidates);
          if (!h) expect(loc).toMatchObject({ kind: "unavailable" });
          else if (down.includes(h)) expect(loc).toMatchObject({ kind: "unavailable", cell: h });
          else expect(loc).toEqual(fwd(h, true));
        }
        c.table.stop();
      }),
      { numRuns: 150 },
    );
  });

  // BUG (see the report): a user whose only record is a tombstone ("moved to X") in a report is
  // treated as a user found in no report, i.e. new. If X is down (or its new report not read yet
  // by this router replica), the router creates the user on home(u): when home(u) is neither the
  // source nor X (`cell move --to X` of a user whose home is a third cell, e.g. a single server's
  // user kept on the cell it became), an empty workspace beside the real one on X.
  it("never creates a user elsewhere whose tombstone says they moved to a cell that is down", async () => {
    const c = cluster(["A", "B", "X"]);
    const u = userWithHome("B", ["A", "B", "X"]);
    c.cell("A").own(u);
    await c.refresh();
    expect(c.table.locate(u)).toEqual(fwd("A"));
    // `cell move u --to X`: X takes u, A keeps a tombstone; X goes down before this router reads it.
    c.cell("X").own(u);
    c.cell("X").failure = "refused";
    c.cell("A").moveOut(u, "X");
    await c.refresh();
    expect(c.table.complete()).toBe(true);
    const loc = c.table.locate(u);
    expect(loc.kind === "forward" && loc.create).toBe(false);
    expect(loc).toMatchObject({ kind: "unavailable" });
  });
});

describe("CellTable: creating new users", () => {
  it("creates nobody before the orchestrator was read, and nobody when it declares no cell or only draining ones", async () => {
    const c = cluster(["A"]);
    expect(c.table.complete()).toBe(false);
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", reason: expect.stringContaining("orchestrator") });
    await c.refresh();
    c.cell("A").setMode("draining");
    await c.refresh();
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", reason: expect.stringContaining("no cell takes new users") });
    const empty = cluster([]);
    await empty.refresh();
    expect(empty.table.complete()).toBe(true);
    expect(empty.table.locate("alice")).toMatchObject({ kind: "unavailable", reason: expect.stringContaining("no cell takes new users") });
  });

  it("creates a user only once every desired cell has reported, then only on home(u)", async () => {
    const c = cluster(["A", "B", "C"]);
    c.cell("A").own("alice");
    c.cell("C").failure = "refused";
    await c.refresh();
    expect(c.table.complete()).toBe(false);
    // Known users are served; unknown ones wait, even those whose home is an up cell.
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    const onA = userWithHome("A", ["A", "B", "C"]);
    const loc = c.table.locate(onA);
    expect(loc).toMatchObject({ kind: "unavailable" });
    expect((loc as { reason: string }).reason).toContain("C");
    expect((loc as { cell?: string }).cell).toBeUndefined();
    // C was never up: nobody was told it went down.
    expect(c.downs).toEqual([]);
    c.cell("C").failure = undefined;
    await c.refresh();
    expect(c.table.complete()).toBe(true);
    expect(c.table.locate(onA)).toEqual(fwd("A", true));
    for (const u of ["u1", "u2", "u3", "u4", "u5", "u6"]) expect(c.table.locate(u)).toEqual(fwd(home(u, ["A", "B", "C"])!, true));
  });

  it("stays incomplete while a desired cell answers but is not ready, and while it has no address", async () => {
    const c = cluster(["A", "B"]);
    c.cell("B").ready = false;
    await c.refresh();
    expect(c.table.complete()).toBe(false);
    expect(c.net.placementCalls).toEqual(["A.cells"]);
    c.directory.cells = [{ id: "A", address: "A.cells" }, { id: "B" }, { id: "N" }];
    await c.refresh();
    expect(c.table.complete()).toBe(false);
    expect(c.state("N")).toMatchObject({ desired: true, up: false, address: undefined });
    expect(c.table.locate("zed")).toMatchObject({ kind: "unavailable", reason: expect.stringContaining("N") });
  });

  it("keeps a down cell in the count (a complete table remembers last reports) and a down home gives unavailable", async () => {
    const c = cluster(["A", "B"]);
    await c.refresh();
    c.cell("B").failure = "refused";
    await c.refresh();
    expect(c.table.complete()).toBe(true);
    const onB = userWithHome("B", ["A", "B"]);
    const onA = userWithHome("A", ["A", "B"]);
    expect(c.table.locate(onB)).toMatchObject({ kind: "unavailable", cell: "B" });
    expect(c.table.locate(onA)).toEqual(fwd("A", true));
  });

  it("takes draining cells out of the homes but keeps routing their users there", async () => {
    const c = cluster(["A", "B"]);
    const u = userWithHome("B", ["A", "B"]);
    c.cell("B").own("bob");
    await c.refresh();
    expect(c.table.locate(u)).toEqual(fwd("B", true));
    c.cell("B").setMode("draining");
    await c.refresh();
    expect(c.state("B")?.mode).toBe("draining");
    expect(c.table.locate(u)).toEqual(fwd("A", true));
    expect(c.table.locate("bob")).toEqual(fwd("B"));
  });

  it("a new desired cell blocks creation until it reports, then becomes a home", async () => {
    const c = cluster(["A", "B"]);
    await c.refresh();
    const toN = userWithHome("N", ["A", "B", "N"]);
    c.net.add(new MemoryCell("N"));
    c.directory.cells.push({ id: "N", address: "N.cells" });
    c.net.at.get("N.cells")!.failure = "hang";
    await c.table.discover();
    expect(c.table.complete()).toBe(false);
    expect(c.table.locate(toN)).toMatchObject({ kind: "unavailable" });
    // The probe that discovery started times out (probeTimeoutMs 50).
    await new Promise((r) => setTimeout(r, 120));
    expect(c.state("N")?.up).toBe(false);
    c.net.at.get("N.cells")!.failure = undefined;
    await c.table.probe("N");
    expect(c.table.complete()).toBe(true);
    expect(c.table.locate(toN)).toEqual(fwd("N", true));
  });
});

describe("CellTable: probes and liveness", () => {
  it("marks a cell down at once on a definite failure (refused), and tells the listeners once", async () => {
    const c = cluster(["A", "B"], { probeFailures: 3 });
    c.cell("A").own("alice");
    await c.refresh();
    c.cell("A").failure = "refused";
    await c.table.probe("A");
    expect(c.state("A")?.up).toBe(false);
    expect(c.downs).toEqual(["A"]);
    await c.table.probe("A");
    expect(c.downs).toEqual(["A"]);
    expect(c.logs().some((l) => l.level === "warn" && l.msg === "router: cell down" && l.cell === "A")).toBe(true);
  });

  it("marks a cell down only after probeFailures failures that are not definite; a success resets the count", async () => {
    const c = cluster(["A"], { probeFailures: 3 });
    c.cell("A").own("alice");
    await c.refresh();
    for (const failure of ["slow", "error", "hang"] as const) {
      c.cell("A").failure = failure;
      await c.table.probe("A");
      await c.table.probe("A");
      expect({ failure, up: c.state("A")?.up, downs: c.downs.length }).toEqual({ failure, up: true, downs: 0 });
      c.cell("A").failure = undefined;
      await c.table.probe("A");
    }
    c.cell("A").failure = "hang";
    await c.table.probe("A");
    await c.table.probe("A");
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    await c.table.probe("A");
    expect(c.state("A")?.up).toBe(false);
    expect(c.downs).toEqual(["A"]);
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", cell: "A" });
  });

  it("marks a cell down at once when it says it is not ready (without ending what runs there), and up again when it is", async () => {
    const c = cluster(["A"], { probeFailures: 5 });
    c.cell("A").own("alice");
    await c.refresh();
    c.cell("A").ready = false;
    await c.table.probe("A");
    // A cell shutting down lets its runs finish: no new requests, but nothing in flight is aborted.
    expect(c.state("A")?.up).toBe(false);
    expect(c.downs).toEqual([]);
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", cell: "A" });
    c.cell("A").ready = true;
    await c.table.probe("A");
    expect(c.state("A")?.up).toBe(true);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
  });

  it("reportFailure(): a definite one marks the cell down now; another only triggers a probe", async () => {
    const c = cluster(["A", "B"], { probeFailures: 2 });
    c.cell("A").own("alice");
    await c.refresh();
    const before = c.net.infoCalls.length;
    c.table.reportFailure("A", "socket hang up", false);
    await settle();
    expect(c.net.infoCalls.length).toBe(before + 1);
    expect(c.state("A")?.up).toBe(true);
    c.table.reportFailure("A", "connect ECONNREFUSED", true);
    expect(c.state("A")?.up).toBe(false);
    expect(c.downs).toEqual(["A"]);
    c.table.reportFailure("nobody", "x", true);
    expect(c.downs).toEqual(["A"]);
  });

  it("a listener removed with the function onDown() returned is not called", async () => {
    const c = cluster(["A", "B"]);
    await c.refresh();
    const seen: string[] = [];
    const off = c.table.onDown((cell) => seen.push(cell));
    c.cell("A").failure = "refused";
    await c.table.probe("A");
    off();
    c.cell("B").failure = "refused";
    await c.table.probe("B");
    expect(seen).toEqual(["A"]);
    expect(c.downs).toEqual(["A", "B"]);
  });

  it("never trusts an address that answers as another cell, nor a report of another cell", async () => {
    const c = cluster(["A", "B"], { probeFailures: 5 });
    c.cell("A").own("alice");
    c.cell("B").own("bob");
    await c.refresh();
    // A's address now answers as B (a restarted task got another node's disk, an address reused).
    c.cell("A").answersAs = "B";
    await c.table.probe("A");
    expect(c.state("A")?.up).toBe(false);
    expect(c.downs).toEqual(["A"]);
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", cell: "A" });
    expect(c.table.locate("bob")).toEqual(fwd("B"));
    c.cell("A").answersAs = undefined;
    await c.table.probe("A");
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    // Its info is right but its placement report names another cell: down at once, report unused.
    c.cell("A").reportsAs = "B";
    c.cell("A").own("eve");
    await c.table.probe("A");
    expect(c.state("A")?.up).toBe(false);
    expect(c.downs).toEqual(["A", "A"]);
    expect(c.state("A")?.users).toBe(1);
    expect(c.state("B")?.users).toBe(1);
    const eve = c.table.locate("eve");
    expect(eve.kind === "forward" && !eve.create).toBe(false);
  });

  it("a cell never seen up is not trusted when it answers as another cell (it never reports)", async () => {
    const c = cluster(["A", "B"]);
    c.cell("B").answersAs = "A";
    c.cell("B").own("bob");
    await c.refresh();
    expect(c.state("B")?.up).toBe(false);
    expect(c.net.placementCalls).toEqual(["A.cells"]);
    expect(c.table.complete()).toBe(false);
    expect(c.table.locate("bob")).toMatchObject({ kind: "unavailable" });
  });

  it("follows a cell to its new address (probing the new one)", async () => {
    const c = cluster(["A"]);
    c.cell("A").own("alice");
    await c.refresh();
    const moved = c.cell("A");
    c.net.at.delete("A.cells");
    c.net.add(moved, "10.0.0.9");
    c.directory.cells = [{ id: "A", address: "10.0.0.9" }];
    await c.table.discover();
    await settle();
    expect(c.net.infoCalls.at(-1)).toBe("10.0.0.9");
    expect(c.table.locate("alice")).toEqual({ kind: "forward", cell: "A", address: "10.0.0.9", create: false });
  });

  it("start() discovers and probes every cell before it returns; its timers keep probing until stop()", async () => {
    const c = cluster(["A", "B"], { probeIntervalMs: 10, discoveryIntervalMs: 10 });
    c.cell("A").own("alice");
    await c.table.start();
    expect(c.table.complete()).toBe(true);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    const infos = c.net.infoCalls.length;
    const lists = c.directory.calls;
    expect(infos).toBe(2);
    expect(lists).toBe(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(c.net.infoCalls.length).toBeGreaterThan(infos);
    expect(c.directory.calls).toBeGreaterThan(lists);
    c.table.stop();
    await settle();
    const after = [c.net.infoCalls.length, c.directory.calls];
    await new Promise((r) => setTimeout(r, 60));
    expect([c.net.infoCalls.length, c.directory.calls]).toEqual(after);
  });
});

describe("CellTable: the orchestrator's view", () => {
  it("keeps the last view when the orchestrator does not answer, and says so", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    const status = c.table.status();
    c.directory.failWith = new Error("connect ENOENT /var/run/docker.sock");
    await c.refresh();
    expect(c.table.status()).toEqual(status);
    expect(c.table.complete()).toBe(true);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    const u = userWithHome("B", ["A", "B"]);
    expect(c.table.locate(u)).toEqual(fwd("B", true));
    const warn = c.logs().find((l) => l.msg.includes("orchestrator did not answer"));
    expect(warn).toMatchObject({ level: "warn", directory: "memory", err: "connect ENOENT /var/run/docker.sock" });
  });

  it("creates nobody when the orchestrator never answered", async () => {
    const c = cluster(["A"]);
    c.directory.failWith = new Error("down");
    await c.refresh();
    expect(c.table.status()).toEqual([]);
    expect(c.table.complete()).toBe(false);
    expect(c.table.locate("alice")).toMatchObject({ kind: "unavailable", reason: expect.stringContaining("orchestrator") });
  });

  it("a cell leaving the set keeps its users routable until it reports them gone, and is no longer a home", async () => {
    const c = cluster(["A", "B"]);
    const wasOnA = userWithHome("A", ["A", "B"], "new");
    c.cell("A").own("alice", "anna");
    await c.refresh();
    expect(c.table.locate(wasOnA)).toEqual(fwd("A", true));
    c.directory.drop("A");
    await c.refresh();
    expect(c.state("A")).toMatchObject({ desired: false, up: true, users: 2 });
    expect(c.table.complete()).toBe(true);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    expect(c.table.locate(wasOnA)).toEqual(fwd("B", true));
    // Its users move to B (cell drain), one report at a time.
    c.cell("A").moveOut("alice", "B");
    c.cell("B").own("alice");
    await c.refresh();
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.table.locate("anna")).toEqual(fwd("A"));
    c.cell("A").moveOut("anna", "B");
    c.cell("B").own("anna");
    await c.refresh();
    expect(c.table.locate("anna")).toEqual(fwd("B"));
    expect(c.state("A")).toBeUndefined();
  });

  it("forgets at once a cell that leaves the set down and holding nobody; a cell that comes back is desired again", async () => {
    const c = cluster(["A", "B"]);
    await c.refresh();
    c.cell("B").failure = "refused";
    await c.refresh();
    c.directory.drop("B");
    await c.refresh();
    expect(c.table.status().map((s) => s.id)).toEqual(["A"]);
    c.cell("B").failure = undefined;
    c.directory.cells.push({ id: "B", address: "B.cells" });
    await c.refresh();
    expect(c.state("B")).toMatchObject({ desired: true, up: true });
  });
});

describe("CellTable: corrections from cells", () => {
  it("misdirected() with movedTo sends the user to that cell without creating them", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    // A moved alice to B; this router has read neither new report yet.
    c.cell("A").moveOut("alice", "B");
    c.cell("B").own("alice");
    c.table.misdirected("alice", "A", "B");
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.state("A")?.users).toBe(0);
    await settle();
    await c.refresh();
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.state("B")?.users).toBe(1);
  });

  it("misdirected() makes the table read that cell's report again even though its version did not change", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    const reads = c.net.placementCalls.length;
    c.table.misdirected("alice", "A", undefined);
    await settle();
    expect(c.net.placementCalls.slice(reads)).toEqual(["A.cells"]);
    // The report (which still lists alice) is what counts, not the 421.
    expect(c.table.locate("alice")).toEqual(fwd("A"));
  });

  it("misdirected() without movedTo forgets the route", async () => {
    const c = cluster(["A", "B"]);
    const u = userWithHome("B", ["A", "B"]);
    c.cell("A").own(u);
    await c.refresh();
    c.cell("A").forget(u);
    c.table.misdirected(u, "A", undefined);
    expect(c.state("A")?.users).toBe(0);
    expect(c.table.locate(u)).toEqual(fwd("B", true));
  });

  it("misdirected() by a cell that does not hold the route changes nothing for the user", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    c.table.misdirected("alice", "B", undefined);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
  });

  it("two cells reporting the same user: the newer report wins, the older cell stops counting them, and it is logged", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    c.cell("B").own("alice");
    await c.table.probe("B");
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.state("A")?.users).toBe(0);
    expect(c.state("B")?.users).toBe(1);
    const warn = c.logs().find((l) => l.msg.includes("two cells report the same user"));
    expect(warn).toMatchObject({ level: "warn", user: "alice", cells: ["A", "B"] });
    // A's next report (a new version) is newer again.
    c.cell("A").own("other");
    await c.table.probe("A");
    expect(c.table.locate("alice")).toEqual(fwd("A"));
  });
});

describe("CellTable: moves and the operator's view", () => {
  it("routes a user being moved to the source (moving) until the switch, never to the target while incoming", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    c.cell("A").users.alice = { state: "moving", to: "B", moveId: "m1", since: 3 };
    c.cell("A").changes++;
    c.cell("B").users.alice = { state: "incoming", from: "A", moveId: "m1", since: 3 };
    c.cell("B").changes++;
    await c.refresh();
    expect(c.table.locate("alice")).toEqual(fwd("A"));
    expect(c.table.cellOf("alice")).toBe("A");
    expect(c.table.usersOf("A")).toEqual(["alice"]);
    expect(c.table.usersOf("B")).toEqual([]);
    // The switch: B owns, A keeps a tombstone.
    c.cell("B").own("alice");
    c.cell("A").moveOut("alice", "B");
    await c.refresh();
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.table.usersOf("A")).toEqual([]);
    expect(c.table.usersOf("B")).toEqual(["alice"]);
  });

  it("moved() reroutes at once, before either cell reports", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice", "anna");
    await c.refresh();
    c.table.moved("alice", "A", "B");
    expect(c.table.locate("alice")).toEqual(fwd("B"));
    expect(c.table.usersOf("A")).toEqual(["anna"]);
    expect(c.table.usersOf("B")).toEqual(["alice"]);
    expect(c.table.users()).toEqual(["alice", "anna"]);
  });

  it("homeOf() is HRW over the desired cells that take users, optionally without one", async () => {
    const c = cluster(["A", "B", "C", "D"]);
    c.cell("D").setMode("draining");
    await c.refresh();
    c.directory.drop("C");
    await c.refresh();
    for (const u of ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]) {
      expect(c.table.homeOf(u)).toBe(home(u, ["A", "B"]));
      expect(c.table.homeOf(u, "A")).toBe("B");
    }
    expect(c.table.homeOf("u1", "B")).toBe("A");
  });

  it("reports addresses and liveness of the cells it knows", async () => {
    const c = cluster(["A", "B"]);
    c.cell("B").failure = "refused";
    await c.refresh();
    expect([c.table.isUp("A"), c.table.isUp("B"), c.table.isUp("Z")]).toEqual([true, false, false]);
    expect([c.table.address("A"), c.table.address("Z")]).toEqual(["A.cells", undefined]);
  });

  it("refresh() rereads every cell's report even when no version changed", async () => {
    const c = cluster(["A", "B"]);
    c.cell("A").own("alice");
    await c.refresh();
    const before = c.net.placementCalls.length;
    await c.table.refresh();
    expect(c.net.placementCalls.slice(before).sort()).toEqual(["A.cells", "B.cells"]);
    expect(c.table.locate("alice")).toEqual(fwd("A"));
  });

  // BUG (see the report): refresh() promises a current view ("before an operation that needs a
  // current view": rebalance, drain, move), but a cell its own discover() finds for the first
  // time is being probed by discover's fire-and-forget probe, so probeAll() skips it (probing)
  // and refresh() returns before that cell answered (here: a new cell slower to answer than the
  // others): `cell rebalance` right after adding a cell then sees it as a home (mode unknown
  // counts as active) that is not up, and the moves to it fail.
  it("refresh() returns only once a cell it has just discovered has been read", async () => {
    const c = cluster(["A"]);
    await c.refresh();
    c.net.delayMs.set("A.cells", 2);
    c.net.delayMs.set("N.cells", 40);
    c.net.add(new MemoryCell("N")).own("nina");
    c.directory.cells.push({ id: "N", address: "N.cells" });
    await c.table.refresh();
    expect(c.table.isUp("N")).toBe(true);
    expect(c.table.complete()).toBe(true);
    expect(c.table.cellOf("nina")).toBe("N");
  });
});

// --- the HTTP client, against a real loopback server ----------------------------------------------

interface Loopback {
  server: Server;
  port: number;
  seen: Array<{ path: string | undefined; authorization: string | undefined }>;
  close(): Promise<void>;
}

async function loopback(host: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Loopback> {
  const seen: Loopback["seen"] = [];
  const server = createServer((req, res) => {
    seen.push({ path: req.url, authorization: req.headers.authorization });
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const servers: Loopback[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const TOKEN = "t".repeat(40);
const infoOf = (id: string, extra: Partial<CellInfo> = {}): CellInfo => ({ id, mode: "active", version: "e.1", users: 1, ready: true, ...extra });

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(typeof body === "string" ? body : JSON.stringify(body));
}

async function caught(p: Promise<unknown>): Promise<CellUnreachable> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CellUnreachable);
  return err as CellUnreachable;
}

describe("HttpCellClient", () => {
  it("reads /internal/cell and /internal/placement with the cluster token", async () => {
    const report: PlacementReport = { cell: "A", mode: "draining", version: "e.2", users: { alice: { state: "owned", since: 1 }, bob: { state: "moved", to: "B", since: 2 } } };
    const s = await loopback("127.0.0.1", (req, res) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(res, 401, { error: "no" });
      if (req.url === "/internal/cell") return send(res, 200, infoOf("A"));
      if (req.url === "/internal/placement") return send(res, 200, report);
      send(res, 404, {});
    });
    servers.push(s);
    const client = new HttpCellClient(TOKEN, s.port);
    expect(await client.info("127.0.0.1", AbortSignal.timeout(2000))).toEqual(infoOf("A"));
    expect(await client.placement("127.0.0.1", AbortSignal.timeout(2000))).toEqual(report);
    expect(s.seen).toEqual([
      { path: "/internal/cell", authorization: `Bearer ${TOKEN}` },
      { path: "/internal/placement", authorization: `Bearer ${TOKEN}` },
    ]);
  });

  it("brackets an IPv6 address", async () => {
    const s = await loopback("::1", (_req, res) => send(res, 200, infoOf("v6")));
    servers.push(s);
    expect((await new HttpCellClient(TOKEN, s.port).info("::1", AbortSignal.timeout(2000))).id).toBe("v6");
  });

  it("accepts a 503 from /internal/cell (a cell saying it is not ready) but not from /internal/placement", async () => {
    const s = await loopback("127.0.0.1", (req, res) => (req.url === "/internal/cell" ? send(res, 503, infoOf("A", { ready: false })) : send(res, 503, { error: "busy" })));
    servers.push(s);
    const client = new HttpCellClient(TOKEN, s.port);
    expect(await client.info("127.0.0.1", AbortSignal.timeout(2000))).toMatchObject({ id: "A", ready: false });
    const err = await caught(client.placement("127.0.0.1", AbortSignal.timeout(2000)));
    expect(err.definite).toBe(false);
    expect(err.message).toContain("HTTP 503");
  });

  it("a refused token (401) and an answer that is not JSON are definite failures; a 500 is not", async () => {
    const s = await loopback("127.0.0.1", (req, res) => {
      if (req.url === "/internal/cell") return send(res, 401, { error: "the cluster token is needed here" });
      send(res, 200, "<html>a proxy page</html>");
    });
    servers.push(s);
    const client = new HttpCellClient(TOKEN, s.port);
    const e401 = await caught(client.info("127.0.0.1", AbortSignal.timeout(2000)));
    expect(e401.definite).toBe(true);
    expect(e401.message).toContain("HTTP 401");
    const eHtml = await caught(client.placement("127.0.0.1", AbortSignal.timeout(2000)));
    expect(eHtml.definite).toBe(true);
    expect(eHtml.message).toContain("not JSON");
    const s500 = await loopback("127.0.0.1", (_req, res) => send(res, 500, { error: "internal" }));
    servers.push(s500);
    expect((await caught(new HttpCellClient(TOKEN, s500.port).info("127.0.0.1", AbortSignal.timeout(2000)))).definite).toBe(false);
  });

  it("a refused connection and a reset are definite; a timeout is not", async () => {
    const gone = await loopback("127.0.0.1", () => {});
    await gone.close();
    const refused = await caught(new HttpCellClient(TOKEN, gone.port).info("127.0.0.1", AbortSignal.timeout(2000)));
    expect(refused.definite).toBe(true);
    expect(refused.message).toContain("/internal/cell");

    const reset = await loopback("127.0.0.1", (req) => req.socket.resetAndDestroy());
    servers.push(reset);
    expect((await caught(new HttpCellClient(TOKEN, reset.port).info("127.0.0.1", AbortSignal.timeout(2000)))).definite).toBe(true);

    const hang = await loopback("127.0.0.1", () => {});
    servers.push(hang);
    const started = Date.now();
    const slow = await caught(new HttpCellClient(TOKEN, hang.port).info("127.0.0.1", AbortSignal.timeout(100)));
    expect(slow.definite).toBe(false);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("isDefiniteNetworkError looks through up to four causes for a connection-level code", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"]) expect(isDefiniteNetworkError(Object.assign(new Error("x"), { code }))).toBe(true);
    for (const code of ["ETIMEDOUT", "ENOTFOUND", "UND_ERR_HEADERS_TIMEOUT", undefined]) expect(isDefiniteNetworkError(Object.assign(new Error("x"), { code }))).toBe(false);
    const wrap = (e: unknown, n: number): unknown => (n === 0 ? e : wrap(new Error("fetch failed", { cause: e }), n - 1));
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(isDefiniteNetworkError(wrap(refused, 3))).toBe(true);
    expect(isDefiniteNetworkError(wrap(refused, 4))).toBe(false);
    expect(isDefiniteNetworkError(undefined)).toBe(false);
    expect(isDefiniteNetworkError(new DOMException("timed out", "TimeoutError"))).toBe(false);
  });

  it("drives a CellTable: a cell served over HTTP is up and routed to; when its process is gone it is down at once", async () => {
    const version = "e.1";
    const s = await loopback("127.0.0.1", (req, res) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(res, 401, {});
      if (req.url === "/internal/cell") return send(res, 200, infoOf("cell-1", { version }));
      send(res, 200, { cell: "cell-1", mode: "active", version, users: { alice: { state: "owned", since: 1 } } } satisfies PlacementReport);
    });
    const table = new CellTable({
      directory: new MemoryDirectory([{ id: "cell-1", address: "127.0.0.1" }]),
      client: new HttpCellClient(TOKEN, s.port),
      logger: createLogger({ level: "silent" }),
      probeIntervalMs: 3_600_000,
      probeTimeoutMs: 2000,
      probeFailures: 3,
      discoveryIntervalMs: 3_600_000,
    });
    tables.push(table);
    const downs: string[] = [];
    table.onDown((cell) => downs.push(cell));
    await table.start();
    expect(table.locate("alice")).toEqual({ kind: "forward", cell: "cell-1", address: "127.0.0.1", create: false });
    expect(table.locate("newcomer")).toEqual({ kind: "forward", cell: "cell-1", address: "127.0.0.1", create: true });
    await s.close();
    // A pooled keep-alive socket the client has not yet seen closed fails with "other side closed"
    // (not definite); probes are a second apart, by when the client has dropped it.
    await new Promise((r) => setTimeout(r, 50));
    await table.probe("cell-1");
    expect(downs).toEqual(["cell-1"]);
    expect(table.locate("alice")).toMatchObject({ kind: "unavailable", cell: "cell-1" });
    expect(table.locate("newcomer")).toMatchObject({ kind: "unavailable", cell: "cell-1" });
  });
});

describe("CellTable: moves a crash interrupted", () => {
  /** A network whose cells also take finishMove (commit or abort of an incoming user). */
  function withFinish(c: ReturnType<typeof cluster>) {
    const calls: string[] = [];
    (c.net as unknown as CellClient).finishMove = async (address, action, user, moveId) => {
      calls.push(`${address} ${action} ${user} ${moveId}`);
      const cell = c.net.at.get(address)!;
      const r = cell.users[user];
      if (r?.state !== "incoming" || r.moveId !== moveId) return;
      if (action === "commit") cell.users[user] = { state: "owned", since: Date.now() };
      else delete cell.users[user];
      cell.changes++;
    };
    return calls;
  }

  it("commits on the target once the source's tombstone points to it (the switch happened)", async () => {
    const c = cluster(["A", "B"]);
    const calls = withFinish(c);
    c.cell("A").users.u = { state: "moved", to: "B", since: 200 };
    c.cell("B").users.u = { state: "incoming", from: "A", moveId: "m1", since: 100 };
    await c.refresh();
    await settle();
    expect(calls).toEqual(["B.cells commit u m1"]);
    await c.table.probe("B");
    expect(c.table.locate("u")).toEqual(fwd("B"));
  });

  it("drops the copy on the target when the source holds the user again since the arrival began", async () => {
    const c = cluster(["A", "B"]);
    const calls = withFinish(c);
    c.cell("A").users.u = { state: "owned", since: 300 };
    c.cell("B").users.u = { state: "incoming", from: "A", moveId: "m2", since: 100 };
    await c.refresh();
    await settle();
    expect(calls).toEqual(["B.cells abort u m2"]);
    expect(c.cell("B").users.u).toBeUndefined();
    expect(c.table.locate("u")).toEqual(fwd("A"));
  });

  it("does nothing while the move is in progress (source moving), or with a source owned from before the arrival (a stale view)", async () => {
    const c = cluster(["A", "B"]);
    const calls = withFinish(c);
    c.cell("A").users.u = { state: "moving", to: "B", moveId: "m3", since: 90 };
    c.cell("B").users.u = { state: "incoming", from: "A", moveId: "m3", since: 100 };
    c.cell("A").users.v = { state: "owned", since: 50 };
    c.cell("B").users.v = { state: "incoming", from: "A", moveId: "m4", since: 100 };
    await c.refresh();
    await settle();
    expect(calls).toEqual([]);
    // Meanwhile the user is served by the source (which answers "moving").
    expect(c.table.locate("u")).toEqual(fwd("A"));
  });

  it("never finishes on a target that is down", async () => {
    const c = cluster(["A", "B"]);
    const calls = withFinish(c);
    c.cell("A").users.u = { state: "moved", to: "B", since: 200 };
    c.cell("B").users.u = { state: "incoming", from: "A", moveId: "m5", since: 100 };
    c.cell("B").failure = "refused";
    await c.refresh();
    await settle();
    expect(calls).toEqual([]);
    expect(c.table.locate("u")).toMatchObject({ kind: "unavailable", cell: "B" });
  });
});

describe("CellTable: a user with any record is never new", () => {
  it("a user only arriving somewhere (incoming), with no owner reported, is unavailable, not created on their home", async () => {
    const c = cluster(["A", "B", "C"]);
    const u = userWithHome("C", ["A", "B", "C"]);
    c.cell("B").users[u] = { state: "incoming", from: "A", moveId: "m9", since: 100 };
    await c.refresh();
    expect(c.table.locate(u)).toMatchObject({ kind: "unavailable", cell: "B" });
  });
});
