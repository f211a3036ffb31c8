import { afterEach, describe, expect, it, vi } from "vitest";
import type { BridgeSlot } from "../../src/bridge/bridge.js";
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
  const pool = new WarmPool({ size: 2, maxTotal: 8, idleMs: 60_000, ...options }, backend, logger);
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
    expect(create).toHaveBeenCalledTimes(3);
    pending[0]!.resolve(entry("a"));
    pending[1]!.resolve(entry("a"));
    pending[2]!.resolve(entry("b"));
    await settle();
    expect(pool.total).toBe(3);
    pool.refill("b", create);
    expect(create).toHaveBeenCalledTimes(3);
  });

  it("hands out a live, fresh container of the same key and /servers version, once", async () => {
    const { pool, backend } = makePool();
    const e = entry("alice|standard|node", { serversVersion: "v3" });
    pool.refill(e.key, async () => e);
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
    for (const e of [dead, expired, stale, good]) pool.refill("k", async () => e);
    await settle();
    expect(pool.take("k", "v2")).toBe(good);
    await settle();
    expect(discarded.sort()).toEqual([dead.prepared.id, expired.prepared.id, stale.prepared.id].sort());
    expect(pool.total).toBe(0);
  });

  it("closes the bridge slot of every container it discards", async () => {
    const { pool } = makePool();
    const slot = fakeSlot();
    pool.refill("k", async () => entry("k", { dead: true, slot }));
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
    const { pool, discarded } = makePool({ size: 2 });
    const ready = entry("a", { slot: fakeSlot() });
    const late = deferred<WarmEntry>();
    const lateEntry = entry("b", { slot: fakeSlot() });
    pool.refill("a", async () => ready);
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
    expect(create).not.toHaveBeenCalled();
  });

  it("sweeps idle containers that expired or died while nobody asked for them", async () => {
    vi.useFakeTimers();
    const { pool, discarded } = makePool({ size: 3, idleMs: 4_000 });
    const soon = entry("k", { expiresAt: Date.now() + 500 });
    const died = { ...entry("k"), prepared: { id: "died", createdAt: 0, dead: false } };
    const keeps = entry("k", { expiresAt: Date.now() + 60_000 });
    for (const e of [soon, died, keeps]) pool.refill("k", async () => e);
    await vi.advanceTimersByTimeAsync(0);
    expect(pool.total).toBe(3);
    (died.prepared as { dead: boolean }).dead = true;
    await vi.advanceTimersByTimeAsync(1_000); // one sweep interval: max(1s, idleMs / 4)
    expect(discarded.sort()).toEqual([soon.prepared.id, "died"].sort());
    expect(pool.total).toBe(1);
    expect(pool.take("k", "v0")).toBe(keeps);
  });
});
