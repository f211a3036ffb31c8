import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { BoundedEventStore, EventBudget } from "../../src/transport/event-store.js";
import { SessionRegistry } from "../../src/transport/sessions.js";

function session(userId: string, lastSeen: number) {
  const s = {
    userId,
    lastSeen,
    closed: false,
    close: async () => {
      s.closed = true;
    },
  };
  return s;
}

describe("HTTP sessions", () => {
  it("closes a user's least recently used session past the per-user cap and says why", async () => {
    const reg = new SessionRegistry<ReturnType<typeof session>>({ maxPerUser: 2, maxTotal: 100 });
    const a1 = session("alice", 1);
    const a2 = session("alice", 5);
    reg.add("a1", a1);
    reg.add("a2", a2);
    reg.add("b1", session("bob", 0));
    await reg.makeRoom("alice");
    expect(a1.closed).toBe(true);
    expect(reg.get("a1")).toBeUndefined();
    expect(reg.whyClosed("a1")).toMatch(/more than 2 sessions.*maxSessionsPerUser/);
    expect(reg.get("a2")).toBe(a2);
    expect(reg.get("b1")).toBeDefined();
  });

  it("closes everyone's least recently used session past the total cap", async () => {
    const reg = new SessionRegistry<ReturnType<typeof session>>({ maxPerUser: 10, maxTotal: 3 });
    const old = session("carol", 1);
    reg.add("c", old);
    reg.add("a", session("alice", 10));
    reg.add("b", session("bob", 20));
    await reg.makeRoom("dave");
    expect(old.closed).toBe(true);
    expect(reg.size).toBe(2);
    expect(reg.whyClosed("c")).toMatch(/maxSessions/);
  });

  it("keeps a many-user flood of sessions at the caps", async () => {
    const reg = new SessionRegistry<ReturnType<typeof session>>({ maxPerUser: 4, maxTotal: 50 });
    for (let i = 0; i < 2_000; i++) {
      const user = `u${i % 7}`;
      await reg.makeRoom(user);
      reg.add(`s${i}`, session(user, i));
      expect(reg.size).toBeLessThanOrEqual(50);
      expect([...reg.values()].filter((s) => s.userId === user).length).toBeLessThanOrEqual(4);
    }
  });
});

describe("stored events for resumable streams", () => {
  const message = (n: number): JSONRPCMessage => ({ jsonrpc: "2.0", method: "notifications/message", params: { data: "x".repeat(n) } });

  it("is capped in bytes per session, oldest first, and replays what it kept", async () => {
    const store = new BoundedEventStore(10_000, 100_000);
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push(await store.storeEvent("s", message(10_000)));
    expect(store.storedBytes).toBeLessThanOrEqual(100_000);
    expect(await store.getStreamIdForEventId(ids[0]!)).toBeUndefined();
    const replayed: string[] = [];
    await store.replayEventsAfter(ids[95]!, { send: async (id) => void replayed.push(id) });
    expect(replayed).toEqual(ids.slice(96));
  });

  it("holds a big result read 100 times across sessions to the shared budget", async () => {
    // The finding was a 32 MiB resource read 100 times; 1 MiB against an 8 MiB budget is the same shape, faster.
    const budget = new EventBudget(8 * 1024 * 1024);
    const stores = Array.from({ length: 10 }, () => new BoundedEventStore(5_000, 6 * 1024 * 1024, budget));
    const big = message(1024 * 1024);
    for (let i = 0; i < 100; i++) await stores[i % 10]!.storeEvent("s", big);
    expect(budget.used).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(budget.used).toBeGreaterThan(0);
    expect(stores.reduce((n, s) => n + s.storedBytes, 0)).toBe(budget.used);
    for (const s of stores) s.release();
    expect(budget.used).toBe(0);
  });

  it("does not keep a single event larger than a session may hold", async () => {
    const store = new BoundedEventStore(5_000, 1024);
    const id = await store.storeEvent("s", message(4096));
    expect(store.storedBytes).toBe(0);
    expect(await store.getStreamIdForEventId(id)).toBeUndefined();
  });
});
