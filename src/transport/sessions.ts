// The MCP sessions of the HTTP service: each belongs to one user, and both one user's and all
// users' sessions are capped. Past a cap the oldest session (least recently used) is closed, and
// its client is told why the next time it uses it.

/** What the registry needs of a session. */
export interface SessionLike {
  userId: string;
  lastSeen: number;
  close(): Promise<void>;
}

export interface SessionLimits {
  maxPerUser: number;
  maxTotal: number;
}

/** How many closed sessions are remembered, to tell their clients why. */
const REMEMBERED = 1_000;

export class SessionRegistry<S extends SessionLike> {
  private readonly sessions = new Map<string, S>();
  private readonly evicted = new Map<string, string>();

  constructor(private readonly limits: SessionLimits) {}

  get size(): number {
    return this.sessions.size;
  }

  get(id: string): S | undefined {
    return this.sessions.get(id);
  }

  /** Why a session id is unknown, when this registry closed it. */
  whyClosed(id: string): string | undefined {
    return this.evicted.get(id);
  }

  /** Makes room for one more session of `userId`: closes that user's oldest, or everyone's oldest. */
  async makeRoom(userId: string): Promise<void> {
    const own = [...this.sessions].filter(([, s]) => s.userId === userId);
    if (own.length >= this.limits.maxPerUser) {
      await this.evict(oldest(own), `this user opened more than ${this.limits.maxPerUser} sessions (http.maxSessionsPerUser); the oldest was closed`);
    }
    if (this.sessions.size >= this.limits.maxTotal) {
      await this.evict(oldest([...this.sessions]), `the server holds at most ${this.limits.maxTotal} sessions (http.maxSessions); the least recently used was closed`);
    }
  }

  add(id: string, session: S): void {
    this.sessions.set(id, session);
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  values(): IterableIterator<S> {
    return this.sessions.values();
  }

  entries(): IterableIterator<[string, S]> {
    return this.sessions.entries();
  }

  clear(): void {
    this.sessions.clear();
  }

  private async evict(id: string | undefined, why: string): Promise<void> {
    if (id === undefined) return;
    const s = this.sessions.get(id);
    this.sessions.delete(id);
    this.evicted.set(id, why);
    if (this.evicted.size > REMEMBERED) this.evicted.delete(this.evicted.keys().next().value!);
    await s?.close().catch(() => {});
  }
}

function oldest<S extends SessionLike>(list: Array<[string, S]>): string | undefined {
  let best: [string, S] | undefined;
  for (const e of list) if (!best || e[1].lastSeen < best[1].lastSeen) best = e;
  return best?.[0];
}
