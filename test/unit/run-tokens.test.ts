// Per-run bearer tokens of the bridge: who may call upstream servers, from which run's socket,
// until when. Every refusal has one status and one reason the bridge logs.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type RunGrant, RunTokens } from "../../src/bridge/run-tokens.js";

const NOW = 1_700_000_000_000;
const grant = (runId: string, over: Partial<RunGrant> = {}): RunGrant => ({
  runId,
  userId: `user-of-${runId}`,
  servers: new Set(["github", "linear"]),
  deadline: NOW + 60_000,
  ...over,
});
const bearer = (token: string) => `Bearer ${token}`;

describe("run tokens", () => {
  it("verifies a run's own token and returns its grant", () => {
    const tokens = new RunTokens();
    const t = tokens.issue(grant("run-1"));
    const check = tokens.verify("run-1", bearer(t), NOW);
    expect(check.ok).toBe(true);
    if (!check.ok) return;
    expect(check.grant.runId).toBe("run-1");
    expect(check.grant.userId).toBe("user-of-run-1");
    expect([...check.grant.servers].sort()).toEqual(["github", "linear"]);
    expect(check.grant.deadline).toBe(NOW + 60_000);
  });

  it("keeps the grant as issued: the caller changing its object later grants nothing more", () => {
    const tokens = new RunTokens();
    const g = grant("run-1");
    const t = tokens.issue(g);
    g.deadline = NOW + 10 * 60_000;
    g.userId = "someone-else";
    expect(tokens.verify("run-1", bearer(t), NOW + 120_000)).toEqual({ ok: false, status: 401, reason: "past-deadline" });
    const check = tokens.verify("run-1", bearer(t), NOW);
    expect(check.ok && check.grant.userId).toBe("user-of-run-1");
  });

  it.each([
    ["no header", undefined],
    ["an empty header", ""],
  ])("refuses %s as 401 missing", (_what, header) => {
    const tokens = new RunTokens();
    tokens.issue(grant("run-1"));
    expect(tokens.verify("run-1", header, NOW)).toEqual({ ok: false, status: 401, reason: "missing" });
  });

  it("refuses a header that is not a well-formed bearer token as 401 malformed, even when the token inside is right", () => {
    const tokens = new RunTokens();
    const t = tokens.issue(grant("run-1"));
    const malformed = [
      t, // no scheme
      `bearer ${t}`,
      `Basic ${t}`,
      `Bearer  ${t}`,
      `Bearer ${t} `,
      ` Bearer ${t}`,
      `Bearer ${t}\n`,
      `Bearer ${t}=`,
      `Bearer ${t.slice(0, 20)}+${t.slice(21)}`,
      `Bearer ${t.slice(0, 20)}/${t.slice(21)}`,
      "Bearer abcdefghijklmno", // 15 characters
      `Bearer ${"a".repeat(129)}`,
      "Bearer",
      "Bearer ",
    ];
    for (const header of malformed) {
      expect(tokens.verify("run-1", header, NOW), JSON.stringify(header)).toEqual({ ok: false, status: 401, reason: "malformed" });
    }
  });

  it("property: a header outside `Bearer <16-128 base64url characters>` is malformed", () => {
    const tokens = new RunTokens();
    tokens.issue(grant("run-1"));
    const wellFormed = /^Bearer [A-Za-z0-9_-]{16,128}$/;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 140 }),
          fc.string({ maxLength: 140 }).map((s) => `Bearer ${s}`),
        ),
        (header) => {
          fc.pre(header !== "" && !wellFormed.test(header));
          expect(tokens.verify("run-1", header, NOW)).toEqual({ ok: false, status: 401, reason: "malformed" });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("accepts the shortest and longest well-formed tokens as well-formed (then forged, not malformed)", () => {
    const tokens = new RunTokens();
    tokens.issue(grant("run-1"));
    for (const t of ["a".repeat(16), "_-".repeat(64)]) {
      expect(tokens.verify("run-1", bearer(t), NOW)).toEqual({ ok: false, status: 401, reason: "forged" });
    }
  });

  it("refuses a well-formed token nobody issued as 401 forged", () => {
    const tokens = new RunTokens();
    const t = tokens.issue(grant("run-1"));
    const flipped = (t[0] === "A" ? "B" : "A") + t.slice(1);
    expect(tokens.verify("run-1", bearer(flipped), NOW)).toEqual({ ok: false, status: 401, reason: "forged" });
    expect(tokens.verify("run-1", bearer(`${t}x`), NOW)).toEqual({ ok: false, status: 401, reason: "forged" });
  });

  it("refuses another live run's token on this run's socket as 403 other-run", () => {
    const tokens = new RunTokens();
    tokens.issue(grant("run-1"));
    const other = tokens.issue(grant("run-2"));
    expect(tokens.verify("run-1", bearer(other), NOW)).toEqual({ ok: false, status: 403, reason: "other-run" });
    expect(tokens.verify("no-such-run", bearer(other), NOW)).toEqual({ ok: false, status: 403, reason: "other-run" });
    // and the token still works where it belongs
    expect(tokens.verify("run-2", bearer(other), NOW).ok).toBe(true);
  });

  it("refuses a token after its run is revoked as 401 expired, on any socket", () => {
    const tokens = new RunTokens();
    const t = tokens.issue(grant("run-1"));
    tokens.issue(grant("run-2"));
    tokens.revoke("run-1");
    expect(tokens.verify("run-1", bearer(t), NOW)).toEqual({ ok: false, status: 401, reason: "expired" });
    expect(tokens.verify("run-2", bearer(t), NOW)).toEqual({ ok: false, status: 401, reason: "expired" });
  });

  it("revoking one run leaves the others' tokens valid; revoking an unknown or revoked run is harmless", () => {
    const tokens = new RunTokens();
    tokens.issue(grant("run-1"));
    const t2 = tokens.issue(grant("run-2"));
    tokens.revoke("run-1");
    tokens.revoke("run-1");
    tokens.revoke("never-issued");
    expect(tokens.verify("run-2", bearer(t2), NOW).ok).toBe(true);
  });

  it("refuses a run's own token after its deadline as 401 past-deadline, and accepts it up to the deadline", () => {
    const tokens = new RunTokens();
    const t = tokens.issue(grant("run-1", { deadline: NOW }));
    expect(tokens.verify("run-1", bearer(t), NOW).ok).toBe(true);
    expect(tokens.verify("run-1", bearer(t), NOW + 1)).toEqual({ ok: false, status: 401, reason: "past-deadline" });
  });

  it("a token issued again for the same run replaces the old one", () => {
    const tokens = new RunTokens();
    const first = tokens.issue(grant("run-1"));
    const second = tokens.issue(grant("run-1"));
    expect(tokens.verify("run-1", bearer(first), NOW).ok).toBe(false);
    expect(tokens.verify("run-1", bearer(second), NOW).ok).toBe(true);
  });

  it("issues unique base64url tokens of at least 256 bits", () => {
    const tokens = new RunTokens();
    const issued = Array.from({ length: 2000 }, (_, i) => tokens.issue(grant(`run-${i}`)));
    expect(issued.filter((t) => !/^[A-Za-z0-9_-]{43,}$/.test(t))).toEqual([]);
    expect(issued.filter((t) => Buffer.from(t, "base64url").length < 32)).toEqual([]);
    expect(new Set(issued).size).toBe(2000);
  });

  it("remembers a bounded number of revoked tokens: the oldest is forgotten (forged), the newest still expired", () => {
    const tokens = new RunTokens();
    const issued: string[] = [];
    const runs = 10_001;
    for (let i = 0; i < runs; i++) {
      issued.push(tokens.issue(grant(`run-${i}`)));
      tokens.revoke(`run-${i}`);
    }
    expect(tokens.verify("run-0", bearer(issued[0]!), NOW)).toEqual({ ok: false, status: 401, reason: "forged" });
    expect(tokens.verify("run-1", bearer(issued[1]!), NOW)).toEqual({ ok: false, status: 401, reason: "expired" });
    expect(tokens.verify(`run-${runs - 1}`, bearer(issued[runs - 1]!), NOW)).toEqual({ ok: false, status: 401, reason: "expired" });
  });
});
