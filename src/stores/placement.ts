// A cell's own record of where its users are (docs/SCALING.md section 3): "owned" (this cell serves
// them) or "moved" to another cell (a tombstone, kept so a stale route is corrected, never served).
// The records live in the cell's data, so they survive restarts and travel with the disk; the
// router's table is only a cache of what cells report here.
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../shared/errors.js";
import { assertSafeSegment } from "./user-dirs.js";

import type { CellMode, PlacementRecord, PlacementReport } from "../protocol/cluster.js";

export interface CellFile {
  id: string;
  mode: CellMode;
  createdAt: number;
}

/** Writes a small file so that it is either the old or the new content after a crash. */
async function writeDurably(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const h = await fs.open(tmp, "wx", 0o600);
  try {
    await h.writeFile(data);
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, path);
  const dir = await fs.open(join(path, ".."), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function isSafeSegment(name: string): boolean {
  try {
    assertSafeSegment("user id", name);
    return true;
  } catch {
    return false;
  }
}

function parseRecord(text: string): PlacementRecord | undefined {
  try {
    const r = JSON.parse(text) as PlacementRecord;
    if (typeof r.since !== "number") return undefined;
    if (r.state === "owned") return { state: "owned", since: r.since };
    if (r.state === "moved" && typeof r.to === "string") return { state: "moved", to: r.to, since: r.since };
    if (r.state === "moving" && typeof r.to === "string" && typeof r.moveId === "string") return { state: "moving", to: r.to, moveId: r.moveId, since: r.since };
    if (r.state === "incoming" && typeof r.from === "string" && typeof r.moveId === "string") return { state: "incoming", from: r.from, moveId: r.moveId, since: r.since };
  } catch {
    // fall through: an unreadable record is reported and treated as absent
  }
  return undefined;
}

export class PlacementStore {
  private readonly dir: string;
  private readonly records = new Map<string, PlacementRecord>();
  private cell: CellFile | undefined;
  private epoch = randomBytes(4).toString("hex");
  private changes = 0;

  constructor(
    private readonly dataDir: string,
    private readonly cellId: string,
  ) {
    this.dir = join(dataDir, "placement");
  }

  /**
   * Loads cell.json and the records. A data directory that belongs to another cell is refused
   * (two ids on one disk would be two owners of its users). A data directory from before cluster
   * mode keeps its users: each existing user folder becomes "owned" on first start.
   */
  async open(): Promise<CellFile> {
    const cellPath = join(this.dataDir, "cell.json");
    let cell: CellFile | undefined;
    try {
      cell = JSON.parse(await fs.readFile(cellPath, "utf8")) as CellFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new ConfigError(`${cellPath} is unreadable (${(err as Error).message}): restore it from a backup, or remove it only if this data directory holds no users`);
    }
    if (cell && cell.id !== this.cellId) {
      throw new ConfigError(`this data directory belongs to cell "${cell.id}" (${cellPath}), not "${this.cellId}": start it with cluster.cellId "${cell.id}", or give this cell its own data directory`);
    }
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    if (!cell) {
      cell = { id: this.cellId, mode: "active", createdAt: Date.now() };
      // Users of a single server that becomes a cell stay here.
      for (const user of await fs.readdir(join(this.dataDir, "users")).catch(() => [] as string[])) {
        if (isSafeSegment(user) && !(await this.exists(user))) await this.write(user, { state: "owned", since: Date.now() });
      }
      await writeDurably(cellPath, JSON.stringify(cell));
    }
    this.cell = cell;
    for (const name of await fs.readdir(this.dir)) {
      if (!name.endsWith(".json")) continue;
      const r = parseRecord(await fs.readFile(join(this.dir, name), "utf8").catch(() => ""));
      if (r) this.records.set(name.slice(0, -".json".length), r);
    }
    return cell;
  }

  private async exists(user: string): Promise<boolean> {
    return fs.access(join(this.dir, `${user}.json`)).then(
      () => true,
      () => false,
    );
  }

  private async write(user: string, record: PlacementRecord): Promise<void> {
    assertSafeSegment("user id", user);
    await writeDurably(join(this.dir, `${user}.json`), JSON.stringify(record));
    this.records.set(user, record);
    this.changes++;
  }

  get(user: string): PlacementRecord | undefined {
    return this.records.get(user);
  }

  get mode(): CellMode {
    return this.cell?.mode ?? "active";
  }

  /** Takes a new user (the router decided this cell is their home). Idempotent. */
  async own(user: string): Promise<void> {
    const r = this.records.get(user);
    if (r?.state === "owned") return;
    if (r) throw new Error(`user ${user} is ${r.state === "moved" ? `moved to ${r.to}` : r.state} here`);
    await this.write(user, { state: "owned", since: Date.now() });
  }

  /** Source side: the user stops being served here until finishMove or abortMove. */
  async beginMove(user: string, to: string, moveId: string): Promise<void> {
    const r = this.records.get(user);
    if (r?.state === "moving" && r.moveId === moveId) return;
    if (r?.state !== "owned" && r?.state !== "moving") throw new Error(`user ${user} is not held by this cell (${r?.state ?? "unknown"})`);
    await this.write(user, { state: "moving", to, moveId, since: Date.now() });
  }

  /** Source side: the move failed before the switch; the user is served here again. */
  async abortMove(user: string): Promise<void> {
    if (this.records.get(user)?.state === "moving") await this.write(user, { state: "owned", since: Date.now() });
  }

  /** Source side, the switch: a tombstone names where the user went. */
  async finishMove(user: string, to: string): Promise<void> {
    await this.write(user, { state: "moved", to, since: Date.now() });
  }

  /** Target side: the user's data is arriving; they are not served here yet. */
  async beginIncoming(user: string, from: string, moveId: string): Promise<void> {
    const r = this.records.get(user);
    if (r?.state === "owned" || r?.state === "moving") throw new Error(`user ${user} is already held by this cell`);
    await this.write(user, { state: "incoming", from, moveId, since: Date.now() });
  }

  /** Target side: verified; the user is served here. */
  async commitIncoming(user: string, moveId: string): Promise<void> {
    const r = this.records.get(user);
    if (r?.state === "owned") return;
    if (r?.state !== "incoming" || r.moveId !== moveId) throw new Error(`no incoming move ${moveId} for user ${user}`);
    await this.write(user, { state: "owned", since: Date.now() });
  }

  /** Target side: the arrival failed; forget it (the caller removes the data). */
  async dropIncoming(user: string, moveId: string): Promise<void> {
    const r = this.records.get(user);
    if (r?.state !== "incoming" || r.moveId !== moveId) return;
    await fs.rm(join(this.dir, `${user}.json`), { force: true });
    this.records.delete(user);
    this.changes++;
  }

  async setMode(mode: CellMode): Promise<void> {
    if (!this.cell) throw new Error("placement store not opened");
    if (this.cell.mode === mode) return;
    this.cell = { ...this.cell, mode };
    await writeDurably(join(this.dataDir, "cell.json"), JSON.stringify(this.cell));
    this.changes++;
  }

  get version(): string {
    return `${this.epoch}.${this.changes}`;
  }

  report(): PlacementReport {
    return { cell: this.cellId, mode: this.mode, version: this.version, users: Object.fromEntries(this.records) };
  }

  ownedCount(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.state === "owned" || r.state === "moving") n++;
    return n;
  }
}
