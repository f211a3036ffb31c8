import { afterEach, describe, expect, it, vi } from "vitest";
import type { BridgeSlot } from "../../src/bridge/bridge.js";
import { StartGate } from "../../src/runs/start-gate.js";
import { type WarmEntry, type WarmPoolOptions, WarmPool } from "../../src/runs/warm-pool.js";
import type { PreparedSandbox, } from "../../src/sandbox/backend.js";
import { createLogger } from "../../src/shared/logger.js";
import { backendWith } from "./fakes.js";

const settle = () => new Promise<void>((r) => setImmediate(r));

/** A backend whose only used method, discard(), records what it was given. */
function fakeBackend() {
  const discarded: string[] = [];
  const discard = vi.fn(async (p: PreparedSandbox) => {
    discarded.push(p.id);
  });
  const backend = Object.assign(backendWith({ discard }, "the pool should only call discard()"), { discard });
  return { backend, discarded };
}

function fakeSlot() {
  return { close: vi.fn(async () => {}) } as unknown as BridgeSlot & { close: ReturnType<typeof vi.fn> };
}

let ids = 0;
function entry(key: string, over: { dead?: boolean; serversVersion?: string; expiresAt?: number; slot?: BridgeSlot } = {}): WarmEntry {
  return {
    key,
    prepared: { id: `c${ids++}`, createdAt: Date.now(), dead: over.dead ?? false },
    slot: over.slot,
    serversVersion: over.serversVersion ?? "v0",
    expiresAt: over.expiresAt ?? Date.now() + 60_000,
  };
}

/** A create() that hands out these entries in order, one per call. */
function from(...list: WarmEntry[]) {
  return vi.fn(async () => {
    const e = list.shift();
    if (!e) throw new Error("no more entries in this test");
    return e;
  });
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const pools: WarmPool[] = [];
function makePool(options: Partial<WarmPoolOptions> = {}, logLines?: string[]) {
  const { backend, discarded } = fakeBackend();
  const logger = createLogger({ level: logLines ? "debug" : "silent", write: (l) => logLines?.push(l) });
  const pool = new WarmPool({ size: 2, maxSize: options.size ?? 2, maxTotal: 8, idleMs: 60_000, maxStarting: 8, ...options }, backend, logger);
  pools.push(pool);
  return { pool, backend, discarded };
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

describe("WarmPool", () => {
  it("with size 0 is disabled: it never creates and never hands anything out", async () => {
    const { pool } = makePool({ size: 0, maxTotal: 0 });
    const create = vi.fn(async () => entry("k"));
    pool.refill("k", create);
    await settle();
    expect(pool.enabled).toBe(false);
    expect(create).not.toHaveBeenCalled();
    expect(pool.take("k", "v0")).toBeUndefined();
  });

  it("starts one container per refill and never holds more than `size` for a key", async () => {
    const { pool } = makePool({ size: 2 });
    const create = vi.fn(async () => entry("k"));
    for (let i = 0; i < 5; i++) pool.refill("k", create);
    await settle();
    expect(create).toHaveBeenCalledTimes(2);
    expect(pool.total).toBe(2);
    pool.refill("k", create);
    await settle();
    expect(create).toHaveBeenCalledTimes(2);
  });

  it("counts containers still being created against size and maxTotal, across keys", async () => {
    const { pool } = makePool({ size: 2, maxTotal: 3 });
    const pending = [deferred<WarmEntry>(), deferred<WarmEntry>(), deferred<WarmEntry>(), deferred<WarmEntry>()];
    let i = 0;
    const create = vi.fn(() => pending[i++]!.promise);
    pool.refill("a", create);
    pool.refill("a", create);
    pool.refill("b", create);
    pool.refill("b", create); // would be the fourth: over maxTotal
    pool.refill("c", create);
    await settle();
    expect(create).toHaveBeenCalledTimes(3);
    pending[0]!.resolve(entry("a"));
    pending[1]!.resolve(entry("a"));
    pending[2]!.resolve(entry("b"));
    await settle();
    expect(pool.total).toBe(3);
    pool.refill("b", create);
    await settle();
    expect(create).toHaveBeenCalledTimes(3);
  });

  it("hands out a live, fresh container of the same key and /servers version, once", async () => {
    const { pool, backend } = makePool({ size: 1 });
    const e = entry("alice|standard|node", { serversVersion: "v3" });
    pool.refill(e.key, from(e));
    await settle();
    expect(pool.take("bob|standard|node", "v3")).toBeUndefined();
    expect(pool.take(e.key, "v3")).toBe(e);
    expect(pool.take(e.key, "v3")).toBeUndefined();
    await settle();
    expect(backend.discard).not.toHaveBeenCalled();
  });

  it("discards dead, expired and stale-/servers containers, returning the first good one", async () => {
    const { pool, discarded } = makePool({ size: 4 });
    const dead = entry("k", { dead: true, serversVersion: "v2" });
    const expired = entry("k", { expiresAt: Date.now() - 1, serversVersion: "v2" });
    const stale = entry("k", { serversVersion: "v1" });
    const good = entry("k", { serversVersion: "v2" });
    pool.refill("k", from(dead, expired, stale, good));
    await settle();
    expect(pool.take("k", "v2")).toBe(good);
    await settle();
    expect(discarded.sort()).toEqual([dead.prepared.id, expired.prepared.id, stale.prepared.id].sort());
    expect(pool.total).toBe(0);
  });

  it("closes the bridge slot of every container it discards", async () => {
    const { pool } = makePool({ size: 1 });
    const slot = fakeSlot();
    pool.refill("k", from(entry("k", { dead: true, slot })));
    await settle();
    expect(pool.take("k", "v0")).toBeUndefined();
    await settle();
    expect(slot.close).toHaveBeenCalledTimes(1);
  });

  it("logs a failed create and keeps working: the next refill starts another", async () => {
    const lines: string[] = [];
    const { pool } = makePool({ size: 1 }, lines);
    pool.refill("k", async () => {
      throw new Error("engine hiccup");
    });
    await settle();
    expect(pool.total).toBe(0);
    const log = lines.map((l) => JSON.parse(l) as { msg: string; key: string; err: { message: string } });
    expect(log).toContainEqual(expect.objectContaining({ msg: "could not start a warm sandbox", key: "k", err: expect.objectContaining({ message: "engine hiccup" }) }));
    const good = entry("k");
    pool.refill("k", async () => good);
    await settle();
    expect(pool.take("k", "v0")).toBe(good);
  });

  it("on close discards every container, and those whose create finishes afterwards", async () => {
    const { pool, discarded } = makePool({ size: 1 });
    const ready = entry("a", { slot: fakeSlot() });
    const late = deferred<WarmEntry>();
    const lateEntry = entry("b", { slot: fakeSlot() });
    pool.refill("a", from(ready));
    pool.refill("b", () => late.promise);
    await settle();
    const closing = pool.close();
    late.resolve(lateEntry);
    await closing;
    expect(discarded.sort()).toEqual([ready.prepared.id, lateEntry.prepared.id].sort());
    expect(ready.slot!.close).toHaveBeenCalled();
    expect(lateEntry.slot!.close).toHaveBeenCalled();
    expect(pool.total).toBe(0);
    expect(pool.take("a", "v0")).toBeUndefined();
  });

  it("starts nothing once closed", async () => {
    const { pool } = makePool();
    await pool.close();
    const create = vi.fn(async () => entry("k"));
    pool.refill("k", create);
    await settle();
    expect(create).not.toHaveBeenCalled();
  });

  it("sweeps idle containers that expired or died while nobody asked for them", async () => {
    vi.useFakeTimers();
    const { pool, discarded } = makePool({ size: 3, idleMs: 4_000 });
    const soon = entry("k", { expiresAt: Date.now() + 500 });
    const died = { ...entry("k"), prepared: { id: "died", createdAt: 0, dead: false } };
    const keeps = entry("k", { expiresAt: Date.now() + 60_000 });
    pool.refill("k", from(soon, died, keeps));
    await vi.advanceTimersByTimeAsync(0);
    expect(pool.total).toBe(3);
    (died.prepared as { dead: boolean }).dead = true;
    await vi.advanceTimersByTimeAsync(1_000); // one sweep interval: max(1s, idleMs / 4)
    expect(discarded.sort()).toEqual([soon.prepared.id, "died"].sort());
    expect(pool.total).toBe(1);
    expect(pool.take("k", "v0")).toBe(keeps);
  });
});

describe("WarmPool under bursts", () => {
  it("hands a run that finds none ready the container already being started for its key, not another key's", async () => {
    const { pool } = makePool({ size: 1, maxSize: 1 });
    const alice = deferred<WarmEntry>();
    const bob = deferred<WarmEntry>();
    pool.refill("alice", () => alice.promise);
    pool.refill("bob", () => bob.promise);
    await settle();
    const got = pool.acquire("alice", () => "v0");
    const aliceEntry = entry("alice");
    bob.resolve(entry("bob"));
    await settle();
    alice.resolve(aliceEntry);
    expect(await got).toBe(aliceEntry);
    // Claimed: it never also lands in the pool for a second run.
    expect(pool.take("alice", "v0")).toBeUndefined();
    expect(pool.take("bob", "v0")?.key).toBe("bob");
  });

  it("gives a claimed container that turned out stale (tools changed meanwhile) to nobody", async () => {
    const { pool, discarded } = makePool({ size: 1, maxSize: 1 });
    const e = entry("k", { serversVersion: "old" });
    pool.refill("k", from(e));
    expect(await pool.acquire("k", () => "new")).toBeUndefined();
    await settle();
    expect(discarded).toEqual([e.prepared.id]);
  });

  it("returns undefined when nothing is ready or starting, and a failed start to its claimer", async () => {
    const { pool } = makePool({ size: 1, maxSize: 1 });
    expect(await pool.acquire("k", () => "v0")).toBeUndefined();
    pool.refill("k", async () => {
      throw new Error("engine hiccup");
    });
    expect(await pool.acquire("k", () => "v0")).toBeUndefined();
  });

  it("grows a key's target by one per call that missed, up to maxSize, and shrinks it back once calls stop missing", async () => {
    vi.useFakeTimers();
    const { pool } = makePool({ size: 1, maxSize: 3, idleMs: 4_000 });
    expect(pool.target("k")).toBe(1);
    for (let i = 0; i < 5; i++) await pool.acquire("k", () => "v0");
    expect(pool.target("k")).toBe(3);
    expect(pool.target("other")).toBe(1);
    pool.refill("k", vi.fn(async () => entry("k")));
    await vi.advanceTimersByTimeAsync(0);
    expect(pool.total).toBe(3);
    // Quiet for longer than the shrink delay (min(idleMs, 30 s)): one step per sweep, extras destroyed.
    await vi.advanceTimersByTimeAsync(4_000);
    expect(pool.target("k")).toBe(2);
    expect(pool.total).toBe(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pool.target("k")).toBe(1);
    expect(pool.total).toBe(1);
  });

  it("never holds more than maxTotal across keys however much they grow", async () => {
    const { pool } = makePool({ size: 1, maxSize: 8, maxTotal: 5 });
    for (const k of ["a", "b"]) for (let i = 0; i < 8; i++) await pool.acquire(k, () => "v0");
    pool.refill("a", vi.fn(async () => entry("a")));
    pool.refill("b", vi.fn(async () => entry("b")));
    await settle();
    expect(pool.total).toBe(5);
  });
});

describe("StartGate", () => {
  it("starts background work up to its limit, runs `now` work at once, and a promoted item before the rest", async () => {
    const gate = new StartGate(1);
    const order: string[] = [];
    const hold = deferred<void>();
    const job = (name: string, wait?: Promise<void>) => async () => {
      order.push(`start ${name}`);
      await wait;
      return name;
    };
    const a = gate.enqueue(job("a", hold.promise), "background");
    const b = gate.enqueue(job("b"), "background");
    const c = gate.enqueue(job("c"), "background");
    await settle();
    expect(order).toEqual(["start a"]);
    expect(gate.waiting).toBe(2);
    const now = gate.enqueue(job("now"), "now");
    await settle();
    expect(order).toEqual(["start a", "start now"]);
    c.promote();
    await settle();
    expect(order).toEqual(["start a", "start now", "start c"]);
    hold.resolve();
    expect(await Promise.all([a.promise, b.promise, c.promise, now.promise])).toEqual(["a", "b", "c", "now"]);
    expect(order.at(-1)).toBe("start b");
    expect(gate.active).toBe(0);
  });

  it("passes a failure to its caller and frees its place", async () => {
    const gate = new StartGate(1);
    await expect(gate.enqueue(async () => Promise.reject(new Error("no")), "background").promise).rejects.toThrow("no");
    await expect(gate.enqueue(() => { throw new Error("sync"); }, "background").promise).rejects.toThrow("sync");
    expect(await gate.enqueue(async () => 1, "background").promise).toBe(1);
  });
});

describe("WarmPool sizing at start-up", () => {
  it("does not grow a key for its first call (a prewarm still starting is not a burst)", async () => {
    const { pool } = makePool({ size: 1, maxSize: 4 });
    const starting = deferred<WarmEntry>();
    pool.refill("k", () => starting.promise);
    await settle();
    const got = pool.acquire("k", () => "v0");
    starting.resolve(entry("k"));
    expect(await got).toBeDefined();
    expect(pool.target("k")).toBe(1);
    // The second call that finds nothing ready is a sign of a rate the pool does not keep up with.
    await pool.acquire("k", () => "v0");
    expect(pool.target("k")).toBe(2);
  });
});
