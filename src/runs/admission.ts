import { BusyError } from "../shared/errors.js";

interface Waiter {
  userId: string;
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal | undefined;
  onAbort?: () => void;
}

export interface RunLimiterOptions {
  /** Runs in flight at once, all users together. */
  maxConcurrent: number;
  /** Runs in flight at once for one user: one user's flood cannot take every slot. */
  maxPerUser: number;
  /** Runs waiting for a slot; past this, callers get BusyError at once. */
  maxQueued: number;
}

/**
 * Admission control: a global and a per-user cap on runs in flight, with a bounded FIFO queue.
 * A queued run whose user is at their cap lets later runs of other users go first.
 */
export class RunLimiter {
  private active = 0;
  private readonly perUser = new Map<string, number>();
  private readonly queue: Waiter[] = [];

  constructor(private readonly options: RunLimiterOptions) {}

  get stats(): { active: number; queued: number } {
    return { active: this.active, queued: this.queue.length };
  }

  private canRun(userId: string): boolean {
    return this.active < this.options.maxConcurrent && (this.perUser.get(userId) ?? 0) < this.options.maxPerUser;
  }

  private take(userId: string): () => void {
    this.active++;
    this.perUser.set(userId, (this.perUser.get(userId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      const n = (this.perUser.get(userId) ?? 1) - 1;
      if (n === 0) this.perUser.delete(userId);
      else this.perUser.set(userId, n);
      this.drain();
    };
  }

  private drain(): void {
    for (let i = 0; i < this.queue.length && this.active < this.options.maxConcurrent; ) {
      const w = this.queue[i]!;
      if (this.canRun(w.userId)) {
        this.queue.splice(i, 1);
        if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
        w.resolve(this.take(w.userId));
      } else i++;
    }
  }

  /** Resolves with a release function once the run may start. */
  acquire(userId: string, signal?: AbortSignal): Promise<() => void> {
    // Whoever waits in the queue is blocked by a cap; a run that fits goes now, unless an earlier
    // run of the same user is still waiting (per-user order is kept).
    if (this.canRun(userId) && !this.queue.some((w) => w.userId === userId)) return Promise.resolve(this.take(userId));
    // A client that has gone already takes no queue place (an abort that happened fires no event).
    if (signal?.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error("canceled while queued"));
    if (this.queue.length >= this.options.maxQueued) {
      return Promise.reject(new BusyError(`${this.active} runs in progress and ${this.queue.length} waiting, the most this server queues`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { userId, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          reject(signal.reason instanceof Error ? signal.reason : new Error("canceled while queued"));
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
    });
  }
}
