import type { BridgeSlot } from "../bridge/bridge.js";
import type { Logger } from "../shared/logger.js";
import type { PreparedSandbox, SandboxBackend } from "../sandbox/backend.js";
import { StartGate } from "./start-gate.js";
import type { EgressEndpoint } from "../egress/egress.js";

/** A container started ahead of time for one user and profile, with its bridge socket. */
export interface WarmEntry {
  key: string;
  prepared: PreparedSandbox;
  slot?: BridgeSlot | undefined;
  /** The egress proxy's end, for a user allowed some destination. */
  egress?: EgressEndpoint | undefined;
  /** The generated /servers tree it mounts; another current one makes it stale. */
  serversVersion: string;
  expiresAt: number;
}

export interface WarmPoolOptions {
  /** Warm containers kept per user and profile when calls come one at a time (0: no pool, every run starts cold). */
  size: number;
  /** What the pool grows to per user and profile while calls come faster than it refills (bursts, back-to-back calls). */
  maxSize: number;
  /** Warm containers across all users, those being started included. */
  maxTotal: number;
  /** An unused warm container is destroyed after this long. */
  idleMs: number;
  /** Containers being started at once (warm ones and cold runs' together); more wait their turn. */
  maxStarting: number;
}

/** A container being started for the pool; a run that found no ready one may claim it. */
interface Starting {
  key: string;
  claim?: ((entry: WarmEntry | undefined) => void) | undefined;
  promote: () => void;
}

/** How much one key has been asked for lately: the pool's size for it follows. */
interface Demand {
  target: number;
  lastMissAt: number;
}

/**
 * Single-use sandboxes started ahead of need. Keyed by user and profile because bind mounts are
 * fixed at creation: a warm container is made with one user's directories and only ever handed
 * to that user's next run (docs/ARCHITECTURE.md). Each is used once, then destroyed; the pool
 * refills in the background. Nothing crosses runs: no container, process or /tmp is reused.
 *
 * Sizing (docs/PERFORMANCE.md): a key starts at `size`; each call that finds no ready container
 * (a burst, back-to-back calls) grows it by one up to `maxSize`, and it shrinks back one step per
 * sweep once no call has missed for a while. A call that misses takes over the container already
 * being started for its key, moved to the front of the start queue, instead of starting another.
 */
export class WarmPool {
  private readonly entries = new Map<string, WarmEntry[]>();
  private readonly starting = new Set<Starting>();
  private readonly demand = new Map<string, Demand>();
  /** Keys asked for before: the first call of a key (often right after start-up) says nothing about its rate. */
  private readonly asked = new Map<string, number>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly shrinkAfterMs: number;
  readonly gate: StartGate;
  private closed = false;
  /** Key prefixes that get no warm containers (a user being moved away). */
  private readonly held = new Set<string>();

  constructor(
    private readonly options: WarmPoolOptions,
    private readonly backend: SandboxBackend,
    private readonly logger: Logger,
  ) {
    this.gate = new StartGate(options.maxStarting);
    this.shrinkAfterMs = Math.min(options.idleMs, 30_000);
    this.sweeper = setInterval(() => void this.sweep(), Math.min(10_000, Math.max(1_000, options.idleMs / 4)));
    this.sweeper.unref();
  }

  get enabled(): boolean {
    return this.options.size > 0;
  }

  get total(): number {
    let n = 0;
    for (const list of this.entries.values()) n += list.length;
    return n;
  }

  /** The number of warm containers the pool aims to hold for `key` now. */
  target(key: string): number {
    return this.demand.get(key)?.target ?? this.options.size;
  }

  /** A live, fresh warm container for `key` that is ready now, or undefined. */
  take(key: string, serversVersion: string): WarmEntry | undefined {
    const list = this.entries.get(key);
    while (list && list.length > 0) {
      const e = list.shift()!;
      if (this.usable(e, serversVersion)) return e;
      void this.destroy(e);
    }
    return undefined;
  }

  /**
   * A container for `key`: a ready one, else the one being started for it the longest (moved to
   * the front of the queue), else undefined (the caller starts one cold). A call that finds none
   * ready grows the key's pool.
   */
  async acquire(key: string, serversVersion: () => string): Promise<WarmEntry | undefined> {
    if (!this.enabled) return undefined;
    const first = !this.asked.has(key);
    this.asked.set(key, Date.now());
    const ready = this.take(key, serversVersion());
    if (ready) return ready;
    if (!first) this.missed(key);
    const job = [...this.starting].find((s) => s.key === key && !s.claim);
    if (!job) return undefined;
    const entry = await new Promise<WarmEntry | undefined>((resolve) => {
      job.claim = resolve;
      job.promote();
    });
    if (!entry) return undefined;
    if (this.usable(entry, serversVersion())) return entry;
    void this.destroy(entry);
    return undefined;
  }

  /** Starts warm containers for `key` in the background until the pool holds its target for it. */
  refill(key: string, create: () => Promise<WarmEntry>): void {
    if (!this.enabled || this.closed || this.isHeld(key)) return;
    let have = (this.entries.get(key)?.length ?? 0) + [...this.starting].filter((s) => s.key === key && !s.claim).length;
    let all = this.total + this.starting.size;
    for (; have < this.target(key) && all < this.options.maxTotal; have++, all++) this.startOne(key, create);
  }

  private startOne(key: string, create: () => Promise<WarmEntry>): void {
    const job: Starting = { key, promote: () => {} };
    const startedAt = Date.now();
    const ticket = this.gate.enqueue(create, "background");
    job.promote = ticket.promote;
    this.starting.add(job);
    const p: Promise<unknown> = ticket.promise
      .then(
        (entry) => {
          if (this.closed || this.isHeld(key)) {
            job.claim?.(undefined);
            return this.destroy(entry);
          }
          this.logger.debug("warm sandbox ready", { key, ms: Date.now() - startedAt, claimed: job.claim !== undefined });
          if (job.claim) return job.claim(entry);
          const list = this.entries.get(key) ?? [];
          list.push(entry);
          this.entries.set(key, list);
        },
        (err: unknown) => {
          this.logger.debug("could not start a warm sandbox", { key, err });
          job.claim?.(undefined);
        },
      )
      .finally(() => {
        this.starting.delete(job);
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
  }

  private usable(e: WarmEntry, serversVersion: string): boolean {
    return !e.prepared.dead && e.expiresAt > Date.now() && e.serversVersion === serversVersion;
  }

  private missed(key: string): void {
    const d = this.demand.get(key) ?? { target: this.options.size, lastMissAt: 0 };
    d.target = Math.min(Math.max(this.options.maxSize, this.options.size), d.target + 1);
    d.lastMissAt = Date.now();
    this.demand.set(key, d);
  }

  private async destroy(e: WarmEntry): Promise<void> {
    await Promise.allSettled([this.backend.discard(e.prepared), e.slot?.close(), e.egress?.close()]);
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const [key, d] of this.demand) {
      if (now - d.lastMissAt < this.shrinkAfterMs) continue;
      d.target--;
      if (d.target <= this.options.size) this.demand.delete(key);
    }
    for (const [key, at] of this.asked) if (now - at > this.options.idleMs && !this.demand.has(key)) this.asked.delete(key);
    for (const [key, list] of this.entries) {
      const live = list.filter((e) => !e.prepared.dead && e.expiresAt > now);
      // Shrinking: the oldest extras go first (the newest have the longest to live).
      const keep = live.slice(Math.max(0, live.length - this.target(key)));
      const drop = list.filter((e) => !keep.includes(e));
      if (keep.length > 0) this.entries.set(key, keep);
      else this.entries.delete(key);
      await Promise.all(drop.map((e) => this.destroy(e)));
    }
  }

  private isHeld(key: string): boolean {
    for (const p of this.held) if (key.startsWith(p)) return true;
    return false;
  }

  /**
   * Removes the warm containers of every key starting with `prefix` (those still starting too)
   * and pools none for them until `release(prefix)`: their mounts must go before a move.
   */
  async hold(prefix: string): Promise<void> {
    this.held.add(prefix);
    const drop: WarmEntry[] = [];
    for (const [key, list] of [...this.entries]) {
      if (!key.startsWith(prefix)) continue;
      drop.push(...list);
      this.entries.delete(key);
    }
    await Promise.all(drop.map((e) => this.destroy(e)));
    await Promise.allSettled([...this.inFlight]);
  }

  release(prefix: string): void {
    this.held.delete(prefix);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    // Containers still being created are destroyed as they arrive (closed is set).
    await Promise.allSettled([...this.inFlight]);
    const all = [...this.entries.values()].flat();
    this.entries.clear();
    await Promise.all(all.map((e) => this.destroy(e)));
  }
}
