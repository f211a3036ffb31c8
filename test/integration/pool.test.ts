import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { closeAndCheck, docker, ourContainers, testApp } from "../helpers.js";

// The warm pool: single-use containers started ahead of need, per user. Nothing crosses runs.
const apps: App[] = [];
afterAll(async () => {
  for (const app of apps) await closeAndCheck(app);
});

async function warmCount(app: App, userId: string): Promise<number> {
  return (await ourContainers({ label: LABEL.user, value: userId }, true)).filter((c) => c.Labels[LABEL.instance] === app.backend.instance.id && c.Names.some((n) => n.startsWith("/codebox-warm-"))).length;
}

async function waitWarm(app: App, userId: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while ((await warmCount(app, userId)) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

const probe = `
  import fs from "node:fs";
  const bootTime = fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ")[19];
  const tmpBefore = fs.readdirSync("/tmp");
  fs.writeFileSync("/tmp/marker-" + process.pid, "x");
  console.log(JSON.stringify({ pid: process.pid, bootTime, tmpBefore }));`;

describe.each(["runc", "runsc"] as const)("the warm pool under %s", (runtime) => {
  it("hands consecutive runs of one user different containers, processes and /tmp", async () => {
    const app = testApp({ "sandbox.ociRuntime": runtime, "sandbox.pool": { size: 1, maxTotal: 4, idleMs: 60_000 } });
    apps.push(app);
    app.runs.prewarm("alice");
    await waitWarm(app, "alice");
    const seen: Array<{ bootTime: string; tmpBefore: string[] }> = [];
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await app.runs.execute({ userId: "alice", code: probe, language: "typescript" });
      expect(r.exitCode).toBe(0);
      seen.push(JSON.parse(r.stdout));
      ids.push(r.containerId);
      await waitWarm(app, "alice");
    }
    expect(new Set(ids).size).toBe(3);
    // Nothing of an earlier run is visible to a later one.
    for (const s of seen) expect(s.tmpBefore.filter((f) => f.startsWith("marker-"))).toEqual([]);
    // Each used container is gone after its run (removed in the background, right after it answers).
    for (const id of ids) {
      const deadline = Date.now() + 10_000;
      let gone = false;
      while (!gone && Date.now() < deadline) {
        gone = await docker.getContainer(id).inspect().then(() => false, (err: { statusCode?: number }) => err.statusCode === 404);
        if (!gone) await new Promise((r) => setTimeout(r, 100));
      }
      expect(gone, id).toBe(true);
    }
  });

  it("never gives a warm container another user's mounts", async () => {
    const app = testApp({ "sandbox.ociRuntime": runtime, "sandbox.pool": { size: 1, maxTotal: 4, idleMs: 60_000 } });
    apps.push(app);
    await app.runs.execute({ userId: "alice", code: 'import fs from "node:fs"; fs.writeFileSync("/workspace/alice-only.txt", "a")', language: "typescript" });
    await app.runs.execute({ userId: "bob", code: "console.log(1)", language: "typescript" });
    await waitWarm(app, "alice");
    await waitWarm(app, "bob");
    const userRoot = (u: string) => join(app.config.dataDir, "users", u);
    for (const user of ["alice", "bob"]) {
      const other = user === "alice" ? "bob" : "alice";
      const containers = (await ourContainers({ label: LABEL.user, value: user }, true)).filter((c) => c.Labels[LABEL.instance] === app.backend.instance.id);
      expect(containers.length).toBeGreaterThan(0);
      for (const c of containers) {
        const info = await docker.getContainer(c.Id).inspect().catch(() => undefined);
        if (!info) continue; // a used container, removed meanwhile
        const sources = info.Mounts.map((m) => m.Source);
        expect(sources.some((s) => s.startsWith(userRoot(user)))).toBe(true);
        expect(sources.filter((s) => s.startsWith(userRoot(other)))).toEqual([]);
        // The pooled container keeps every hardening setting.
        expect(info.HostConfig).toMatchObject({ NetworkMode: "none", ReadonlyRootfs: true, CapDrop: ["ALL"] });
        expect(info.HostConfig.SecurityOpt?.some((o) => o.startsWith("seccomp="))).toBe(true);
      }
    }
    // And from inside: bob's next (warm) run does not see alice's file.
    const r = await app.runs.execute({ userId: "bob", code: 'import fs from "node:fs"; console.log(fs.existsSync("/workspace/alice-only.txt"))', language: "typescript" });
    expect(r.stdout).toBe("false\n");
  });

  it("under bursts of parallel calls from two users: each run gets a container of its own user, none used twice", async () => {
    const app = testApp({ "sandbox.ociRuntime": runtime, "sandbox.pool": { size: 1, maxSize: 4, maxTotal: 8, idleMs: 60_000 }, limits: { maxConcurrentRuns: 16, maxRunsPerUser: 8, maxQueuedRuns: 64 } });
    apps.push(app);
    for (const u of ["alice", "bob"]) {
      const ws = (await app.dirs.ensure(u)).workspace;
      (await import("node:fs")).writeFileSync(join(ws, "owner.txt"), u);
    }
    app.runs.prewarm("alice");
    app.runs.prewarm("bob");
    await waitWarm(app, "alice");
    await waitWarm(app, "bob");
    const who = 'import fs from "node:fs"; console.log(JSON.stringify({ owner: fs.readFileSync("/workspace/owner.txt", "utf8"), host: fs.readFileSync("/etc/hostname", "utf8").trim(), tmp: fs.readdirSync("/tmp") })); fs.writeFileSync("/tmp/used", "1")';
    const results: Array<{ user: string; containerId: string; warm: boolean; owner: string; tmp: string[] }> = [];
    // Three bursts of 3 + 3 parallel calls, then one of 8 + 8, back to back.
    for (const size of [3, 3, 3, 8]) {
      const burst = ["alice", "bob"].flatMap((user) => Array.from({ length: size }, () => user));
      const rs = await Promise.all(burst.map(async (user) => ({ user, r: await app.runs.execute({ userId: user, code: who, language: "javascript" }) })));
      for (const { user, r } of rs) {
        expect(r.exitCode, r.stderr).toBe(0);
        const seen = JSON.parse(r.stdout) as { owner: string; host: string; tmp: string[] };
        results.push({ user, containerId: r.containerId, warm: r.warm ?? false, owner: seen.owner, tmp: seen.tmp });
      }
    }
    expect(results).toHaveLength(2 * (3 + 3 + 3 + 8));
    // Every run saw its own user's workspace, a /tmp no run had written to, in a container never used before.
    for (const r of results) {
      expect(r.owner).toBe(r.user);
      expect(r.tmp).not.toContain("used");
    }
    expect(new Set(results.map((r) => r.containerId)).size).toBe(results.length);
    // The burst path was really taken: some runs got warm containers (ready or taken over while starting).
    expect(results.some((r) => r.warm)).toBe(true);
  }, 240_000);
});
