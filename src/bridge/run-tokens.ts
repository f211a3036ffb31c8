import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { RefusalReason } from "../protocol/bridge.js";

export interface RunGrant {
  runId: string;
  userId: string;
  /** Upstream servers this run may call. */
  servers: ReadonlySet<string>;
  /** Epoch ms after which no call is accepted, whatever happens to the container. */
  deadline: number;
}

export type TokenCheck =
  | { ok: true; grant: RunGrant }
  | { ok: false; status: 401 | 403; reason: Extract<RefusalReason, "missing" | "malformed" | "forged" | "expired" | "other-run" | "past-deadline"> };

const hash = (token: string) => createHash("sha256").update(token, "utf8").digest();
const REVOKED_MEMORY = 10_000;

/**
 * Per-run bearer tokens: 256 random bits, bound to one run, its user and the servers it may
 * call. Only hashes are kept; comparison is constant-time; a token dies with its run.
 */
export class RunTokens {
  private readonly live = new Map<string, { tokenHash: Buffer; grant: RunGrant }>();
  /** Hashes of recently revoked tokens, so reuse after a run is logged as such. */
  private readonly revoked = new Map<string, string>();

  issue(grant: RunGrant): string {
    // A run has one token: issuing again retires the previous one as revoked.
    this.revoke(grant.runId);
    const token = randomBytes(32).toString("base64url");
    this.live.set(grant.runId, { tokenHash: hash(token), grant: { ...grant } });
    return token;
  }

  /** Checks `presented` (an Authorization header value) for the run that owns the socket it came on. */
  verify(runId: string, authorization: string | undefined, now = Date.now()): TokenCheck {
    if (!authorization) return { ok: false, status: 401, reason: "missing" };
    const m = /^Bearer ([A-Za-z0-9_-]{16,128})$/.exec(authorization);
    if (!m) return { ok: false, status: 401, reason: "malformed" };
    const presented = hash(m[1]!);
    const entry = this.live.get(runId);
    // Security: constant-time comparison against this run's token only.
    if (entry && timingSafeEqual(entry.tokenHash, presented)) {
      if (now > entry.grant.deadline) return { ok: false, status: 401, reason: "past-deadline" };
      return { ok: true, grant: entry.grant };
    }
    const key = presented.toString("hex");
    if (this.revoked.has(key)) return { ok: false, status: 401, reason: "expired" };
    for (const other of this.live.values()) {
      if (timingSafeEqual(other.tokenHash, presented)) return { ok: false, status: 403, reason: "other-run" };
    }
    return { ok: false, status: 401, reason: "forged" };
  }

  revoke(runId: string): void {
    const entry = this.live.get(runId);
    if (!entry) return;
    this.live.delete(runId);
    this.revoked.set(entry.tokenHash.toString("hex"), runId);
    if (this.revoked.size > REVOKED_MEMORY) this.revoked.delete(this.revoked.keys().next().value!);
  }
}
