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
});
