import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RunLimiter } from "../../src/runs/admission.js";
import { BusyError } from "../../src/shared/errors.js";

const settle = () => new Promise<void>((r) => setImmediate(r));

/** Acquires and records, in order, which labelled requests have been admitted. */
function harness(options: { maxConcurrent: number; maxPerUser: number; maxQueued: number }) {
  const limiter = new RunLimiter(options);
  const admitted: string[] = [];
  const releases = new Map<string, () => void>();
  const acquire = (label: string, userId: string, signal?: AbortSignal) => {
    const p = limiter.acquire(userId, signal);
    p.then(
      (release) => {
        admitted.push(label);
        releases.set(label, release);
      },
      () => {},
    );
    return p;
  };
  const release = async (label: string) => {
    releases.get(label)!();
    await settle();
  };
  return { limiter, admitted, acquire, release };
}

describe("RunLimiter", () => {
  it("admits up to maxConcurrent runs at once and queues the rest", async () => {
    const h = harness({ maxConcurrent: 2, maxPerUser: 10, maxQueued: 10 });
    h.acquire("a", "alice");
    h.acquire("b", "bob");
    h.acquire("c", "carol");
    await settle();
    expect(h.admitted).toEqual(["a", "b"]);
    expect(h.limiter.stats).toEqual({ active: 2, queued: 1 });
    await h.release("a");
    expect(h.admitted).toEqual(["a", "b", "c"]);
    expect(h.limiter.stats).toEqual({ active: 2, queued: 0 });
  });

  it("holds one user to maxPerUser while others still get in", async () => {
    const h = harness({ maxConcurrent: 10, maxPerUser: 2, maxQueued: 10 });
    for (const l of ["a1", "a2", "a3"]) h.acquire(l, "alice");
    h.acquire("b1", "bob");
    await settle();
    expect(h.admitted).toEqual(["a1", "a2", "b1"]);
    expect(h.limiter.stats).toEqual({ active: 3, queued: 1 });
    await h.release("b1");
    expect(h.admitted).not.toContain("a3");
    await h.release("a1");
    expect(h.admitted).toContain("a3");
  });

  it("admits waiters in the order they arrived", async () => {
    const h = harness({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 10 });
    h.acquire("first", "u0");
    for (let i = 1; i <= 4; i++) h.acquire(`w${i}`, `u${i}`);
    await settle();
    for (const l of ["first", "w1", "w2", "w3"]) await h.release(l);
    expect(h.admitted).toEqual(["first", "w1", "w2", "w3", "w4"]);
  });

  it("keeps one user's queued runs in order", async () => {
    const h = harness({ maxConcurrent: 5, maxPerUser: 1, maxQueued: 10 });
    for (const l of ["a1", "a2", "a3"]) h.acquire(l, "alice");
    await settle();
    await h.release("a1");
    expect(h.admitted).toEqual(["a1", "a2"]);
    await h.release("a2");
    expect(h.admitted).toEqual(["a1", "a2", "a3"]);
  });

  it("lets another user's later run go first when the earlier waiter's user is at their cap", async () => {
    const h = harness({ maxConcurrent: 2, maxPerUser: 1, maxQueued: 10 });
    h.acquire("a1", "alice");
    h.acquire("b1", "bob");
    h.acquire("a2", "alice"); // blocked: alice at her cap (and the server is full)
    h.acquire("c1", "carol"); // blocked: the server is full
    await settle();
    expect(h.limiter.stats).toEqual({ active: 2, queued: 2 });
    await h.release("b1");
    expect(h.admitted).toEqual(["a1", "b1", "c1"]);
    expect(h.limiter.stats).toEqual({ active: 2, queued: 1 });
    await h.release("a1");
    expect(h.admitted).toEqual(["a1", "b1", "c1", "a2"]);
  });

  it("refuses at once with BusyError when the queue is full, changing nothing", async () => {
    const h = harness({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 1 });
    h.acquire("a", "alice");
    h.acquire("b", "bob");
    await settle();
    const err = await h.limiter.acquire("carol").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect(err).toMatchObject({ code: "CODEBOX_BUSY", message: expect.stringMatching(/1 runs in progress and 1 waiting/) });
    expect(h.limiter.stats).toEqual({ active: 1, queued: 1 });
  });

  it("with maxQueued 0 never queues: a run either starts or is refused", async () => {
    const l = new RunLimiter({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 0 });
    const release = await l.acquire("alice");
    await expect(l.acquire("bob")).rejects.toMatchObject({ code: "CODEBOX_BUSY" });
    release();
    await expect(l.acquire("bob")).resolves.toBeTypeOf("function");
  });

  it("rejects a queued run when its signal aborts, freeing its place in the queue", async () => {
    const h = harness({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 1 });
    h.acquire("a", "alice");
    const ctl = new AbortController();
    const queued = h.acquire("b", "bob", ctl.signal);
    await settle();
    expect(h.limiter.stats).toEqual({ active: 1, queued: 1 });
    const reason = new Error("client went away");
    ctl.abort(reason);
    await expect(queued).rejects.toBe(reason);
    expect(h.limiter.stats).toEqual({ active: 1, queued: 0 });
    h.acquire("c", "carol"); // fits in the freed queue place
    await settle();
    expect(h.limiter.stats).toEqual({ active: 1, queued: 1 });
    await h.release("a");
    expect(h.admitted).toEqual(["a", "c"]);
  });

  it("rejects with a generic error when aborted without an Error reason", async () => {
    const l = new RunLimiter({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 1 });
    await l.acquire("alice");
    const ctl = new AbortController();
    const queued = l.acquire("bob", ctl.signal);
    ctl.abort("just a string");
    await expect(queued).rejects.toThrow(/canceled while queued/);
  });

  it("ignores an abort that comes after the run was admitted", async () => {
    const l = new RunLimiter({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 1 });
    const ctl = new AbortController();
    const release = await l.acquire("alice", ctl.signal);
    ctl.abort();
    expect(l.stats).toEqual({ active: 1, queued: 0 });
    release();
    expect(l.stats).toEqual({ active: 0, queued: 0 });
  });

  it("treats a second call of the same release as a no-op", async () => {
    const h = harness({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 10 });
    h.acquire("a", "alice");
    h.acquire("b", "bob");
    h.acquire("c", "carol");
    await settle();
    await h.release("a");
    await h.release("a"); // must not free b's slot for c
    expect(h.admitted).toEqual(["a", "b"]);
    expect(h.limiter.stats).toEqual({ active: 1, queued: 1 });
  });

  // Was a bug: addEventListener("abort") does not fire for a past abort, so such a run held a
  // queue place and was later run although its client had gone.
  it("rejects at once a run whose signal was already aborted when it would have to queue", async () => {
    const l = new RunLimiter({ maxConcurrent: 1, maxPerUser: 1, maxQueued: 5 });
    await l.acquire("alice");
    const ctl = new AbortController();
    ctl.abort();
    const outcome = await Promise.race([l.acquire("bob", ctl.signal).then(() => "admitted", () => "rejected"), settle().then(() => "pending")]);
    expect(outcome).toBe("rejected");
    expect(l.stats.queued).toBe(0);
  });

  it("never exceeds its caps under any sequence of acquire, release and abort, and ends empty", async () => {
    type Op = { t: "acquire"; user: number; abortable: boolean } | { t: "release"; i: number } | { t: "abort"; i: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ t: fc.constant("acquire" as const), user: fc.nat(3), abortable: fc.boolean() }),
      fc.record({ t: fc.constant("release" as const), i: fc.nat(20) }),
      fc.record({ t: fc.constant("abort" as const), i: fc.nat(20) }),
    );
    const opts = fc.record({ maxConcurrent: fc.integer({ min: 1, max: 4 }), maxPerUser: fc.integer({ min: 1, max: 3 }), maxQueued: fc.integer({ min: 0, max: 5 }) });

    await fc.assert(
      fc.asyncProperty(opts, fc.array(op, { maxLength: 40 }), async (o, ops) => {
        const limiter = new RunLimiter(o);
        type Req = { seq: number; user: string; state: "queued" | "running" | "done" | "rejected"; release?: () => void; ctl?: AbortController };
        const reqs: Req[] = [];
        const running = () => reqs.filter((r) => r.state === "running");
        const admittedOrder: Req[] = [];
        const check = () => {
          const active = running();
          expect(limiter.stats.active).toBe(active.length);
          expect(active.length).toBeLessThanOrEqual(o.maxConcurrent);
          for (const u of ["u0", "u1", "u2", "u3"]) expect(active.filter((r) => r.user === u).length).toBeLessThanOrEqual(o.maxPerUser);
          expect(limiter.stats.queued).toBe(reqs.filter((r) => r.state === "queued").length);
          expect(limiter.stats.queued).toBeLessThanOrEqual(o.maxQueued);
        };
        for (const x of ops) {
          if (x.t === "acquire") {
            const r: Req = { seq: reqs.length, user: `u${x.user}`, state: "queued" };
            if (x.abortable) r.ctl = new AbortController();
            reqs.push(r);
            limiter.acquire(r.user, r.ctl?.signal).then(
              (release) => {
                r.state = "running";
                r.release = release;
                admittedOrder.push(r);
              },
              () => {
                r.state = "rejected";
              },
            );
          } else if (x.t === "release") {
            const active = running();
            const r = active[x.i % Math.max(1, active.length)];
            if (r) {
              r.state = "done";
              r.release!();
              if (x.i % 2 === 0) r.release!(); // a double release must change nothing
            }
          } else {
            const waiting = reqs.filter((r) => r.state === "queued" && r.ctl);
            waiting[x.i % Math.max(1, waiting.length)]?.ctl?.abort();
          }
          await settle();
          check();
        }
        // Drain: finish every running run until nothing is left waiting.
        for (let guard = 0; guard < 100 && (running().length > 0 || limiter.stats.queued > 0); guard++) {
          for (const r of running()) {
            r.state = "done";
            r.release!();
          }
          await settle();
          check();
        }
        expect(limiter.stats).toEqual({ active: 0, queued: 0 });
        expect(reqs.every((r) => r.state === "done" || r.state === "rejected")).toBe(true);
        // Each user's runs were admitted in the order they asked.
        for (const u of ["u0", "u1", "u2", "u3"]) {
          const seqs = admittedOrder.filter((r) => r.user === u).map((r) => r.seq);
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        }
      }),
      { numRuns: 150 },
    );
  });
});
