/**
 * Container starts at once. On a small host every start competes for the same cores (the engine,
 * containerd, the OCI runtime and the runner's boot), so starting many at once makes each slower.
 * Runs never wait here: a start a run needs now begins at once and counts against the limit; the
 * pool's background starts wait for a free place, and one a run has claimed goes to the front.
 */
export class StartGate {
  private running = 0;
  private readonly queue: Array<{ start: () => void; urgent: boolean }> = [];

  constructor(private readonly limit: number) {}

  get active(): number {
    return this.running;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** `now`: a run waits for it (starts at once); `background`: the pool's (waits its turn). */
  enqueue<T>(fn: () => Promise<T>, priority: "now" | "background"): { promise: Promise<T>; promote: () => void } {
    let item: { start: () => void; urgent: boolean } | undefined;
    const promise = new Promise<T>((resolve, reject) => {
      const start = () => {
        this.running++;
        Promise.resolve()
          .then(fn)
          .then(resolve, reject)
          .finally(() => {
            this.running--;
            this.next();
          });
      };
      if (priority === "now" || this.running < this.limit) start();
      else {
        item = { start, urgent: false };
        this.queue.push(item);
      }
    });
    const promote = () => {
      if (!item || item.urgent) return;
      const i = this.queue.indexOf(item);
      if (i === -1) return;
      // A run is waiting for it: it starts now, like a run's own start would.
      this.queue.splice(i, 1);
      item.urgent = true;
      item.start();
    };
    return { promise, promote };
  }

  private next(): void {
    while (this.running < this.limit && this.queue.length > 0) this.queue.shift()!.start();
  }
}
