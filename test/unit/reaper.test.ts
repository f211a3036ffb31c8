import { describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { isOrphan } from "../../src/sandbox/docker/reaper.js";

const self = { id: "me", host: "h1", pid: 100 };
const labels = (o: Partial<Record<keyof typeof LABEL, string>>) => ({
  [LABEL.managed]: "true",
  [LABEL.instance]: o.instance ?? "other",
  [LABEL.host]: o.host ?? "h1",
  [LABEL.pid]: o.pid ?? "200",
  [LABEL.expires]: o.expires ?? String(10_000),
});

describe("orphan detection", () => {
  it("never reaps this server's own containers", () => {
    expect(isOrphan(labels({ instance: "me", expires: "1" }), self, 5_000, () => false)).toBe(false);
  });
  it("reaps a container whose server (same host) is dead", () => {
    expect(isOrphan(labels({}), self, 5_000, () => false)).toBe(true);
  });
  it("keeps a container whose server is alive, until it expires", () => {
    expect(isOrphan(labels({}), self, 5_000, () => true)).toBe(false);
    expect(isOrphan(labels({}), self, 20_000, () => true)).toBe(true);
  });
  it("keeps another host's live container until it expires", () => {
    expect(isOrphan(labels({ host: "h2" }), self, 5_000, () => false)).toBe(false);
    expect(isOrphan(labels({ host: "h2" }), self, 20_000, () => false)).toBe(true);
  });
  it("treats a reused pid of this very process as dead (a previous server in the same pid slot)", () => {
    expect(isOrphan(labels({ pid: "100" }), self, 5_000, () => true)).toBe(true);
  });
});
