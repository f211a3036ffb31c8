import type { BridgeSlot } from "../bridge/bridge.js";
import type { Logger } from "../shared/logger.js";
import type { PreparedSandbox, SandboxBackend } from "../sandbox/backend.js";

/** A container started ahead of time for one user and profile, with its bridge socket. */
export interface WarmEntry {
  key: string;
  prepared: PreparedSandbox;
  slot?: BridgeSlot | undefined;
  /** The generated /servers tree it mounts; another current one makes it stale. */
  serversVersion: string;
  expiresAt: number;
}

export interface WarmPoolOptions {
  /** Warm containers kept per user and profile (0: no pool, every run starts cold). */
  size: number;
  /** Warm containers across all users. */
  maxTotal: number;
  /** An unused warm container is destroyed after this long. */
  idleMs: number;
}

/**
 * Single-use sandboxes started ahead of need. Keyed by user and profile because bind mounts are
 * fixed at creation: a warm container is made with one user's directories and only ever handed
 * to that user's next run (docs/ARCHITECTURE.md). Each is used once, then destroyed; the pool
 * refills in the background. Nothing crosses runs: no container, process or /tmp is reused.
 */
export class WarmPool {
  private readonly entries = new Map<string, WarmEntry[]>();
  private readonly creating = new Map<string, number>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly options: WarmPoolOptions,
    private readonly backend: SandboxBackend,
    private readonly logger: Logger,
  ) {
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

  /** A live, fresh warm container for `key`, or undefined (the caller starts one cold). */
  take(key: string, serversVersion: string): WarmEntry | undefined {
    const list = this.entries.get(key);
    while (list && list.length > 0) {
      const e = list.shift()!;
      if (!e.prepared.dead && e.expiresAt > Date.now() && e.serversVersion === serversVersion) return e;
      void this.destroy(e);
    }
    return undefined;
  }

  /** Starts warm containers for `key` in the background until the pool holds `size` of them. */
  refill(key: string, create: () => Promise<WarmEntry>): void {
    if (!this.enabled || this.closed) return;
    const have = (this.entries.get(key)?.length ?? 0) + (this.creating.get(key) ?? 0);
    const inFlight = [...this.creating.values()].reduce((a, b) => a + b, 0);
    if (have >= this.options.size || this.total + inFlight >= this.options.maxTotal) return;
    this.creating.set(key, (this.creating.get(key) ?? 0) + 1);
    const p: Promise<unknown> = create()
      .then((entry) => {
        if (this.closed) return this.destroy(entry);
        const list = this.entries.get(key) ?? [];
        list.push(entry);
        this.entries.set(key, list);
      })
      .catch((err: unknown) => this.logger.debug("could not start a warm sandbox", { key, err }))
      .finally(() => {
        this.creating.set(key, (this.creating.get(key) ?? 1) - 1);
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
  }

  private async destroy(e: WarmEntry): Promise<void> {
    await Promise.allSettled([this.backend.discard(e.prepared), e.slot?.close()]);
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const [key, list] of this.entries) {
      const keep = list.filter((e) => !e.prepared.dead && e.expiresAt > now);
      const drop = list.filter((e) => !keep.includes(e));
      this.entries.set(key, keep);
      await Promise.all(drop.map((e) => this.destroy(e)));
    }
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
