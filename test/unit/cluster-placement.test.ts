// A cell's own placement records (docs/SCALING.md sections 3 and 4): cell.json holds the cell's id
// and mode, <dataDir>/placement/<user>.json one record per user, both written durably and read back
// after a restart. A data directory belongs to one cell id; a single server's existing users stay
// on the cell it becomes.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError, UnsafePathError } from "../../src/shared/errors.js";
import { PlacementStore } from "../../src/stores/placement.js";
import { tempDir } from "../helpers.js";

async function opened(dataDir: string, cellId = "cell-a") {
  const store = new PlacementStore(dataDir, cellId);
  const cell = await store.open();
  return { store, cell };
}

const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;

describe("PlacementStore", () => {
  it("on an empty data directory writes cell.json with its id, mode active, and holds no users", async () => {
    const dir = tempDir("placement");
    const before = Date.now();
    const { store, cell } = await opened(dir, "cell-a");
    expect(cell).toMatchObject({ id: "cell-a", mode: "active" });
    expect(cell.createdAt).toBeGreaterThanOrEqual(before);
    expect(cell.createdAt).toBeLessThanOrEqual(Date.now());
    expect(readJson(join(dir, "cell.json"))).toEqual({ id: "cell-a", mode: "active", createdAt: cell.createdAt });
    expect(existsSync(join(dir, "placement"))).toBe(true);
    expect(store.mode).toBe("active");
    expect(store.ownedCount()).toBe(0);
    expect(store.report()).toEqual({ cell: "cell-a", mode: "active", version: store.version, users: {} });
    // Durable writes leave no temporary files behind.
    expect(readdirSync(dir).sort()).toEqual(["cell.json", "placement"]);
  });

  it("keeps the cell's creation time across reopens (cell.json is written once)", async () => {
    const dir = tempDir("placement");
    const first = (await opened(dir)).cell;
    await new Promise((r) => setTimeout(r, 5));
    const second = (await opened(dir)).cell;
    expect(second).toEqual(first);
  });

  it("refuses a data directory that belongs to another cell, naming both ids, and changes nothing", async () => {
    const dir = tempDir("placement");
    const { store } = await opened(dir, "cell-a");
    await store.own("alice");
    const cellJson = readFileSync(join(dir, "cell.json"), "utf8");
    const other = new PlacementStore(dir, "cell-b");
    const err = await other.open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('belongs to cell "cell-a"');
    expect((err as Error).message).toContain('not "cell-b"');
    expect((err as Error).message).toContain("cluster.cellId");
    expect(readFileSync(join(dir, "cell.json"), "utf8")).toBe(cellJson);
    expect(other.get("alice")).toBeUndefined();
    // The rightful cell still opens and still owns its user.
    expect((await opened(dir, "cell-a")).store.get("alice")?.state).toBe("owned");
  });

  it("refuses an unreadable cell.json instead of starting as a new cell", async () => {
    const dir = tempDir("placement");
    writeFileSync(join(dir, "cell.json"), "{ truncated");
    const err = await new PlacementStore(dir, "cell-a").open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("cell.json is unreadable");
    expect(readFileSync(join(dir, "cell.json"), "utf8")).toBe("{ truncated");
  });

  it("makes a single server's existing user folders owned on first open, skipping unsafe names", async () => {
    const dir = tempDir("placement");
    for (const u of ["alice", "bob.smith", "oidc-x_1", ".hidden"]) mkdirSync(join(dir, "users", u, "workspace"), { recursive: true });
    const before = Date.now();
    const { store } = await opened(dir);
    expect(store.ownedCount()).toBe(3);
    for (const u of ["alice", "bob.smith", "oidc-x_1"]) {
      const r = store.get(u);
      expect(r?.state).toBe("owned");
      expect(r?.since).toBeGreaterThanOrEqual(before);
      expect(readJson(join(dir, "placement", `${u}.json`))).toEqual(r);
    }
    expect(store.get(".hidden")).toBeUndefined();
    expect(existsSync(join(dir, "placement", ".hidden.json"))).toBe(false);
    expect(Object.keys(store.report().users).sort()).toEqual(["alice", "bob.smith", "oidc-x_1"]);
  });

  it("does not adopt user folders that appear after the first open", async () => {
    const dir = tempDir("placement");
    mkdirSync(join(dir, "users", "alice"), { recursive: true });
    await opened(dir);
    mkdirSync(join(dir, "users", "mallory"), { recursive: true });
    const { store } = await opened(dir);
    expect(store.get("alice")?.state).toBe("owned");
    expect(store.get("mallory")).toBeUndefined();
    expect(store.ownedCount()).toBe(1);
  });

  it("finishes an adoption interrupted before cell.json was written, keeping records already written", async () => {
    const dir = tempDir("placement");
    mkdirSync(join(dir, "users", "alice"), { recursive: true });
    mkdirSync(join(dir, "users", "bob"), { recursive: true });
    mkdirSync(join(dir, "placement"), { recursive: true });
    // As if the process died after writing alice's record (with an older time) but before cell.json.
    writeFileSync(join(dir, "placement", "alice.json"), JSON.stringify({ state: "owned", since: 1234 }));
    const { store } = await opened(dir);
    expect(store.get("alice")).toEqual({ state: "owned", since: 1234 });
    expect(store.get("bob")?.state).toBe("owned");
    expect(existsSync(join(dir, "cell.json"))).toBe(true);
  });

  it("own() records a user durably; it is idempotent and the record survives a reopen", async () => {
    const dir = tempDir("placement");
    const { store } = await opened(dir);
    expect(store.get("alice")).toBeUndefined();
    await store.own("alice");
    const rec = store.get("alice");
    expect(rec?.state).toBe("owned");
    const v1 = store.version;
    await store.own("alice");
    expect(store.get("alice")).toEqual(rec);
    expect(store.version).toBe(v1);
    expect(store.ownedCount()).toBe(1);
    expect(readJson(join(dir, "placement", "alice.json"))).toEqual(rec);
    expect(readdirSync(join(dir, "placement"))).toEqual(["alice.json"]);

    const again = (await opened(dir)).store;
    expect(again.get("alice")).toEqual(rec);
    expect(again.ownedCount()).toBe(1);
    expect(again.report().users).toEqual({ alice: rec });
  });

  it("own() rejects unsafe user ids and writes nothing for them", async () => {
    const dir = tempDir("placement");
    const { store } = await opened(dir);
    for (const bad of ["../x", ".hidden", "a/b", "..", "", "x".repeat(65), "a\0b", "-dash"]) {
      await expect(store.own(bad), bad).rejects.toBeInstanceOf(UnsafePathError);
      expect(store.get(bad)).toBeUndefined();
    }
    expect(readdirSync(join(dir, "placement"))).toEqual([]);
    expect(existsSync(join(dir, "x.json"))).toBe(false);
    expect(store.ownedCount()).toBe(0);
  });

  it("own() accepts every safe id and reopening gives back exactly the users owned (property)", async () => {
    const dir = tempDir("placement");
    const { store } = await opened(dir);
    const ids = fc.sample(fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/), { minLength: 5, maxLength: 30 }), { numRuns: 1, seed: 42 })[0]!;
    for (const id of ids) await store.own(id);
    const again = (await opened(dir)).store;
    expect(Object.keys(again.report().users).sort()).toEqual([...ids].sort());
    expect(again.ownedCount()).toBe(ids.length);
  });

  it("own() refuses a user who moved away (a tombstone is never served again)", async () => {
    const dir = tempDir("placement");
    mkdirSync(join(dir, "placement"), { recursive: true });
    writeFileSync(join(dir, "cell.json"), JSON.stringify({ id: "cell-a", mode: "active", createdAt: 1 }));
    writeFileSync(join(dir, "placement", "alice.json"), JSON.stringify({ state: "moved", to: "cell-b", since: 5 }));
    const { store } = await opened(dir);
    expect(store.get("alice")).toEqual({ state: "moved", to: "cell-b", since: 5 });
    await expect(store.own("alice")).rejects.toThrow("moved to cell-b");
    expect(readJson(join(dir, "placement", "alice.json"))).toEqual({ state: "moved", to: "cell-b", since: 5 });
    expect(store.ownedCount()).toBe(0);
    expect(store.report().users).toEqual({ alice: { state: "moved", to: "cell-b", since: 5 } });
  });

  it("ignores unreadable or malformed record files and files that are not records", async () => {
    const dir = tempDir("placement");
    mkdirSync(join(dir, "placement"), { recursive: true });
    writeFileSync(join(dir, "cell.json"), JSON.stringify({ id: "cell-a", mode: "active", createdAt: 1 }));
    writeFileSync(join(dir, "placement", "ok.json"), JSON.stringify({ state: "owned", since: 2 }));
    writeFileSync(join(dir, "placement", "broken.json"), "{");
    writeFileSync(join(dir, "placement", "weird.json"), JSON.stringify({ state: "owned", since: "yesterday" }));
    writeFileSync(join(dir, "placement", "nowhere.json"), JSON.stringify({ state: "moved", since: 3 }));
    writeFileSync(join(dir, "placement", "note.txt"), JSON.stringify({ state: "owned", since: 2 }));
    const { store } = await opened(dir);
    expect(store.report().users).toEqual({ ok: { state: "owned", since: 2 } });
  });

  it("setMode() persists the mode in cell.json across reopens and changes the version; the same mode changes nothing", async () => {
    const dir = tempDir("placement");
    const { store, cell } = await opened(dir);
    const v0 = store.version;
    await store.setMode("draining");
    expect(store.mode).toBe("draining");
    expect(store.report().mode).toBe("draining");
    const v1 = store.version;
    expect(v1).not.toBe(v0);
    await store.setMode("draining");
    expect(store.version).toBe(v1);
    expect(readJson(join(dir, "cell.json"))).toEqual({ id: "cell-a", mode: "draining", createdAt: cell.createdAt });

    const again = await opened(dir);
    expect(again.cell.mode).toBe("draining");
    expect(again.store.mode).toBe("draining");
    await again.store.setMode("active");
    expect((await opened(dir)).store.mode).toBe("active");
  });

  it("setMode() before open() is refused", async () => {
    await expect(new PlacementStore(tempDir("placement"), "cell-a").setMode("draining")).rejects.toThrow("not opened");
  });

  it("changes its version on every change and only then; versions of two processes differ", async () => {
    const dir = tempDir("placement");
    const { store } = await opened(dir);
    const seen = new Set([store.version]);
    for (const u of ["a1", "a2", "a3"]) {
      await store.own(u);
      expect(seen.has(store.version)).toBe(false);
      seen.add(store.version);
      const v = store.version;
      await store.own(u);
      expect(store.version).toBe(v);
      expect(store.report().version).toBe(v);
    }
    await store.setMode("draining");
    expect(seen.has(store.version)).toBe(false);
    // A restarted cell must not reuse a version a router has already read (its records may differ).
    const other = (await opened(dir)).store;
    expect(seen.has(other.version)).toBe(false);
    expect(other.version).not.toBe(store.version);
  });

  describe("moves (docs/SCALING.md section 7)", () => {
    it("source side: owned → moving (still counted, not re-owned) → moved, each step durable", async () => {
      const dir = tempDir("placement");
      const { store } = await opened(dir);
      await store.own("alice");
      await expect(store.beginMove("bob", "cell-b", "m1")).rejects.toThrow("not held by this cell");
      await store.beginMove("alice", "cell-b", "m1");
      expect(store.get("alice")).toMatchObject({ state: "moving", to: "cell-b", moveId: "m1" });
      expect(store.ownedCount()).toBe(1);
      await expect(store.own("alice")).rejects.toThrow("moving");
      const v = store.version;
      await store.beginMove("alice", "cell-b", "m1");
      expect(store.version).toBe(v);
      expect((await opened(dir)).store.get("alice")).toMatchObject({ state: "moving", to: "cell-b", moveId: "m1" });
      await store.finishMove("alice", "cell-b");
      expect(store.get("alice")).toMatchObject({ state: "moved", to: "cell-b" });
      expect(store.ownedCount()).toBe(0);
      expect(store.version).not.toBe(v);
      await expect(store.beginMove("alice", "cell-c", "m2")).rejects.toThrow("not held by this cell");
      expect((await opened(dir)).store.get("alice")).toMatchObject({ state: "moved", to: "cell-b" });
    });

    it("source side: an aborted move serves the user here again; abortMove of a user not moving changes nothing", async () => {
      const dir = tempDir("placement");
      const { store } = await opened(dir);
      await store.own("alice");
      await store.beginMove("alice", "cell-b", "m1");
      await store.abortMove("alice");
      expect(store.get("alice")?.state).toBe("owned");
      expect((await opened(dir)).store.get("alice")?.state).toBe("owned");
      const v = store.version;
      await store.abortMove("alice");
      await store.abortMove("nobody");
      expect(store.version).toBe(v);
      expect(store.get("nobody")).toBeUndefined();
    });

    it("target side: incoming is not served until committed with its move id; a wrong id is refused", async () => {
      const dir = tempDir("placement");
      const { store } = await opened(dir, "cell-b");
      await store.beginIncoming("alice", "cell-a", "m1");
      expect(store.get("alice")).toMatchObject({ state: "incoming", from: "cell-a", moveId: "m1" });
      expect(store.ownedCount()).toBe(0);
      await expect(store.own("alice")).rejects.toThrow("incoming");
      expect((await opened(dir, "cell-b")).store.get("alice")).toMatchObject({ state: "incoming", from: "cell-a", moveId: "m1" });
      await expect(store.commitIncoming("alice", "m0")).rejects.toThrow("no incoming move m0");
      await store.commitIncoming("alice", "m1");
      expect(store.get("alice")?.state).toBe("owned");
      const v = store.version;
      await store.commitIncoming("alice", "m1");
      expect(store.version).toBe(v);
      await expect(store.beginIncoming("alice", "cell-c", "m2")).rejects.toThrow("already held");
      expect((await opened(dir, "cell-b")).store.get("alice")?.state).toBe("owned");
    });

    it("target side: a failed arrival is forgotten (record and file), only for its own move id", async () => {
      const dir = tempDir("placement");
      const { store } = await opened(dir, "cell-b");
      await store.beginIncoming("alice", "cell-a", "m1");
      const v = store.version;
      await store.dropIncoming("alice", "other");
      expect(store.get("alice")?.state).toBe("incoming");
      expect(store.version).toBe(v);
      await store.dropIncoming("alice", "m1");
      expect(store.get("alice")).toBeUndefined();
      expect(store.version).not.toBe(v);
      expect(existsSync(join(dir, "placement", "alice.json"))).toBe(false);
      expect((await opened(dir, "cell-b")).store.get("alice")).toBeUndefined();
      // A user coming back to a cell they left (a tombstone here) may arrive again.
      await store.own("bob");
      await store.beginMove("bob", "cell-c", "m2");
      await store.finishMove("bob", "cell-c");
      await store.beginIncoming("bob", "cell-c", "m3");
      await store.commitIncoming("bob", "m3");
      expect(store.get("bob")?.state).toBe("owned");
    });

    it("rejects unsafe user ids in every move step", async () => {
      const dir = tempDir("placement");
      const { store } = await opened(dir);
      await expect(store.beginIncoming("../x", "cell-a", "m1")).rejects.toBeInstanceOf(UnsafePathError);
      await expect(store.finishMove(".hidden", "cell-b")).rejects.toBeInstanceOf(UnsafePathError);
      expect(readdirSync(join(dir, "placement"))).toEqual([]);
    });
  });
});
