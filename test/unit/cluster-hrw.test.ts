// Rendezvous hashing (docs/SCALING.md section 3): home(u) is the cell with the highest
// sha256(cellId ‖ 0x00 ‖ userId)[0..8] (unsigned 64-bit). Adding or removing a cell moves only the
// users whose top choice it is; the answer depends on nothing but the set of cell ids.
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { home, score } from "../../src/transport/router/hrw.js";

/** The score exactly as the design defines it, computed independently of the implementation. */
function specScore(cellId: string, userId: string): bigint {
  const digest = createHash("sha256").update(Buffer.concat([Buffer.from(cellId, "utf8"), Buffer.from([0]), Buffer.from(userId, "utf8")])).digest();
  let n = 0n;
  for (let i = 0; i < 8; i++) n = (n << 8n) | BigInt(digest[i]!);
  return n;
}

/** The naive reference: sort by score (descending), then id (ascending) on a tie. */
function refHome(userId: string, cells: readonly string[]): string | undefined {
  const scored = cells.map((c) => ({ c, s: specScore(c, userId) }));
  scored.sort((a, b) => (a.s === b.s ? (a.c < b.c ? -1 : 1) : a.s > b.s ? -1 : 1));
  return scored[0]?.c;
}

const cellId = fc.stringMatching(/^[a-z][a-z0-9-]{0,14}$/);
const cellSet = (min: number, max: number) => fc.uniqueArray(cellId, { minLength: min, maxLength: max });
const userId = fc.string({ minLength: 1, maxLength: 40 });

describe("HRW score", () => {
  it("is the first 8 bytes of sha256(cellId, 0x00, userId), big-endian, unsigned", () => {
    const digest = createHash("sha256").update("cell-0\0alice").digest("hex");
    expect(score("cell-0", "alice")).toBe(BigInt(`0x${digest.slice(0, 16)}`));
    fc.assert(
      fc.property(fc.string(), fc.string(), (c, u) => {
        const s = score(c, u);
        expect(s).toBe(specScore(c, u));
        expect(s >= 0n && s < 1n << 64n).toBe(true);
      }),
    );
  });

  it("separates the cell id from the user id (the 0x00 byte): moving a character across the boundary changes the score", () => {
    expect(score("cell-1", "0user")).not.toBe(score("cell-10", "user"));
    expect(score("ab", "c")).not.toBe(score("a", "bc"));
  });
});

describe("HRW home", () => {
  it("is undefined with no cells and the only cell with one", () => {
    expect(home("alice", [])).toBeUndefined();
    expect(home("alice", ["cell-7"])).toBe("cell-7");
  });

  it("is the cell with the highest score (agrees with a naive reference)", () => {
    fc.assert(
      fc.property(userId, cellSet(1, 12), (u, cells) => {
        const h = home(u, cells);
        expect(h).toBe(refHome(u, cells));
        for (const c of cells) expect(score(c, u) <= score(h!, u)).toBe(true);
      }),
    );
  });

  it("is deterministic and independent of the order of the cells (and accepts any iterable)", () => {
    fc.assert(
      fc.property(
        userId,
        cellSet(1, 10).chain((cells) => fc.tuple(fc.constant(cells), fc.shuffledSubarray(cells, { minLength: cells.length, maxLength: cells.length }))),
        (u, [cells, shuffled]) => {
          const h = home(u, cells);
          expect(home(u, cells)).toBe(h);
          expect(home(u, shuffled)).toBe(h);
          expect(home(u, new Set([...cells].reverse()))).toBe(h);
          expect(home(u, [...cells, ...cells])).toBe(h);
        },
      ),
    );
  });

  it("adding a cell changes the home only of the users whose new home is the added cell", () => {
    fc.assert(
      fc.property(
        cellSet(2, 9).chain((cells) => fc.tuple(fc.constant(cells.slice(1)), fc.constant(cells[0]!))),
        fc.uniqueArray(userId, { minLength: 1, maxLength: 60 }),
        ([cells, added], users) => {
          for (const u of users) {
            const before = home(u, cells);
            const after = home(u, [...cells, added]);
            if (after !== before) expect(after).toBe(added);
            else expect(after).not.toBe(added);
          }
        },
      ),
    );
  });

  it("removing a cell moves only the users who were on it, to their second choice", () => {
    fc.assert(
      fc.property(
        cellSet(2, 9).chain((cells) => fc.tuple(fc.constant(cells), fc.constantFrom(...cells))),
        fc.uniqueArray(userId, { minLength: 1, maxLength: 60 }),
        ([cells, removed], users) => {
          const rest = cells.filter((c) => c !== removed);
          for (const u of users) {
            const before = home(u, cells);
            const after = home(u, rest);
            if (before !== removed) expect(after).toBe(before);
            else {
              expect(after).not.toBe(removed);
              const byScore = [...cells].sort((a, b) => (score(b, u) > score(a, u) ? 1 : -1));
              expect(after).toBe(byScore[1]);
            }
          }
        },
      ),
    );
  });

  it("spreads 3000 users over 3 cells evenly (each within 1000 ± 150) and a fourth cell takes about a quarter, all from the others", () => {
    const cells = ["cell-0", "cell-1", "cell-2"];
    const users = Array.from({ length: 3000 }, (_, i) => `user-${i}`);
    const counts = new Map<string, number>();
    for (const u of users) {
      const h = home(u, cells)!;
      counts.set(h, (counts.get(h) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(cells);
    for (const c of cells) {
      expect(counts.get(c)).toBeGreaterThan(850);
      expect(counts.get(c)).toBeLessThan(1150);
    }
    const moved = users.filter((u) => home(u, [...cells, "cell-3"]) !== home(u, cells));
    expect(moved.length).toBeGreaterThan(600);
    expect(moved.length).toBeLessThan(900);
    for (const u of moved) expect(home(u, [...cells, "cell-3"])).toBe("cell-3");
  });

  it("gives a different spread for different cell names (the cell id takes part in the hash)", () => {
    const users = Array.from({ length: 200 }, (_, i) => `u${i}`);
    const a = users.map((u) => ["a-0", "a-1", "a-2"].indexOf(home(u, ["a-0", "a-1", "a-2"])!));
    const b = users.map((u) => ["b-0", "b-1", "b-2"].indexOf(home(u, ["b-0", "b-1", "b-2"])!));
    expect(a).not.toEqual(b);
  });
});
