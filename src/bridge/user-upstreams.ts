import { join } from "node:path";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { Config } from "../config/schema.js";
import type { Logger } from "../shared/logger.js";
import { ServersDirectory } from "./servers-dir.js";
import type { UpstreamPool } from "./upstream-pool.js";

/** One user's own upstream instances (servers per user) and their generated /servers tree. */
export interface UserUpstreams {
  pool: UpstreamPool;
  servers: ServersDirectory;
  started: Promise<void>;
  /** Open bridge slots (warm or running containers) that may call these instances. */
  slots: number;
  idleSince: number;
}

export interface UserUpstreamOptions {
  /** The servers a user gets instances of their own of (none: the user has none). */
  specsFor(userId: string): Config["mcpServers"];
  makePool(specs: Config["mcpServers"]): UpstreamPool;
  /** The tools a user's code may call: the shared ones with the user's own in their place. */
  toolsFor(userId: string): Map<string, Tool[]>;
  /** Where users' /servers trees go (one folder per user beneath it). */
  generatedRoot: string;
  /** Instances with no open slot for this long are closed. */
  idleMs: number;
  logger: Logger;
}

/**
 * Each user's own upstream instances: connected on a user's first use, kept while a run or warm
 * container of theirs may call them, closed after `idleMs` without one (and started again on the
 * user's next run). Bounded by the users who use the server, not by their number over time.
 */
export class UserUpstreamPools {
  private readonly byUser = new Map<string, UserUpstreams>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly o: UserUpstreamOptions) {
    this.sweeper = setInterval(() => void this.closeIdle(), Math.min(60_000, Math.max(1_000, o.idleMs / 4)));
    this.sweeper.unref();
  }

  get(userId: string): UserUpstreams | undefined {
    return this.byUser.get(userId);
  }

  entries(): IterableIterator<[string, UserUpstreams]> {
    return this.byUser.entries();
  }

  /** The user's instances, started if needed. `hold`: count an open slot until release(). */
  async open(userId: string, hold = false): Promise<UserUpstreams | undefined> {
    const specs = this.o.specsFor(userId);
    if (Object.keys(specs).length === 0) return undefined;
    let u = this.byUser.get(userId);
    if (!u) {
      const pool = this.o.makePool(specs);
      const servers = new ServersDirectory(join(this.o.generatedRoot, `user-${userId}`), this.o.logger);
      const started = (async () => {
        await pool.start();
        await servers.update(this.o.toolsFor(userId));
      })();
      pool.on("toolsChanged", () => {
        void started.then(() => servers.update(this.o.toolsFor(userId))).catch(() => {});
      });
      u = { pool, servers, started, slots: 0, idleSince: Date.now() };
      this.byUser.set(userId, u);
    }
    if (hold) u.slots++;
    u.idleSince = Date.now();
    try {
      await u.started;
    } catch (err) {
      if (hold) this.release(u);
      throw err;
    }
    return u;
  }

  release(u: UserUpstreams): void {
    u.slots--;
    u.idleSince = Date.now();
  }

  private async closeIdle(): Promise<void> {
    const now = Date.now();
    for (const [userId, u] of this.byUser) {
      if (u.slots > 0 || now - u.idleSince < this.o.idleMs) continue;
      this.byUser.delete(userId);
      this.o.logger.info("closing a user's idle upstream servers", { user: userId });
      await u.pool.close().catch((err: unknown) => this.o.logger.warn("closing a user's upstream servers failed", { err }));
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.byUser.values()].map((u) => u.pool.close()));
  }
}
