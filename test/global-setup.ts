import { existsSync } from "node:fs";
import { createApp } from "../src/app.js";
import { loadConfig } from "../src/config/load.js";
import { RUNTIMES } from "../src/shared/languages.js";
import { createLogger } from "../src/shared/logger.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cliPath, docker, mountsUnder, tempDir, waitForNoContainers } from "./helpers.js";

// Before any test: the built CLI exists and the sandbox image is built once (so tests running
// in parallel do not race to build it). After all tests: no container of ours is left.
export async function setup(): Promise<void> {
  // Workers inherit this: all temporary directories of the run go under it (removed at teardown).
  process.env.CODEBOX_TEST_TMP = mkdtempSync(join(tmpdir(), "codebox-tests-"));
  if (!existsSync(cliPath)) throw new Error("dist/cli.js is missing: run `npm run build` first (npm test does)");
  await docker.ping().catch((err: unknown) => {
    throw new Error(`The Docker engine is not reachable (${String(err)}). Run scripts/setup.sh as root first; the tests need a real engine.`);
  });
  const app = createApp(loadConfig({ env: {}, flags: { dataDir: tempDir("setup"), logLevel: "warn" } }), createLogger({ level: "warn" }));
  // Every runtime's image (Node, Bun, Python), built offline if missing.
  for (const runtime of RUNTIMES) await app.backend.ensureImage(runtime);
  await app.close();
}

export async function teardown(): Promise<void> {
  // Quota volumes of tests' data dirs: unmount what a test did not clean up (and say so).
  const leftMounts = mountsUnder(tmpdir()).filter((m) => m.includes("/codebox-"));
  const { execFileSync } = await import("node:child_process");
  for (const m of leftMounts) execFileSync("umount", ["-l", m]);
  const root = process.env.CODEBOX_TEST_TMP;
  if (root?.startsWith(tmpdir())) {
    for (const m of mountsUnder(root)) execFileSync("umount", ["-l", m]);
    rmSync(root, { recursive: true, force: true });
  }
  // Removal is asynchronous (AutoRemove, background removal after a run) and a gVisor container
  // can take many seconds to go on a loaded machine: wait for them, then anything left is a leak.
  const left = await waitForNoContainers(undefined, 30_000, true);
  if (left.length > 0) {
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    const describe = (c: (typeof left)[number]) => `${c.Id.slice(0, 12)} ${c.Names.join(",") || "(no name)"} ${c.State} run=${c.Labels["dev.codebox-mcp.run"] ?? "?"} user=${c.Labels["dev.codebox-mcp.user"] ?? "?"}`;
    throw new Error(`${left.length} sandbox container(s) were left behind by the tests: ${left.map(describe).join("; ")}`);
  }
}
