// Rendezvous (highest random weight) hashing: a user's home is the cell with the highest score
// for that user. No ring state; adding a cell changes the home only of the users whose top score
// it has (about 1/N of them), removing one only of those it held (docs/SCALING.md section 3).
import { createHash } from "node:crypto";

export function score(cellId: string, userId: string): bigint {
  const h = createHash("sha256").update(cellId).update("\0").update(userId).digest();
  return h.readBigUInt64BE(0);
}

/** The cell with the highest score for this user (ties, which need a 64-bit collision, go to the smaller id). */
export function home(userId: string, cellIds: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const id of cellIds) {
    const s = score(id, userId);
    if (s > bestScore || (s === bestScore && best !== undefined && id < best)) {
      best = id;
      bestScore = s;
    }
  }
  return best;
}
