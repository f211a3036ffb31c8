// Removing a user's tree while a live run changes it: the host's delete must never reach outside
// (the run may hold a directory handle inside the tree and swap folders for links at any moment).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, describe, expect, it } from "vitest";
import { removeTree, usageBeneath } from "../../src/stores/safe-tree.js";

const base = mkdtempSync(join(tmpdir(), "codebox-remove-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** A host directory the attacker aims at, with files that must survive. */
function canary(name: string): string {
  const dir = join(base, name);
  mkdirSync(join(dir, "deep"), { recursive: true });
  writeFileSync(join(dir, "keep.txt"), "host file");
  writeFileSync(join(dir, "deep", "keep2.txt"), "host file 2");
  return dir;
}

function canaryIntact(dir: string): void {
  expect(readFileSync(join(dir, "keep.txt"), "utf8")).toBe("host file");
  expect(readFileSync(join(dir, "deep", "keep2.txt"), "utf8")).toBe("host file 2");
}

/** A thread that keeps swapping `root/<name>/...` folders for links to `target` until stopped. */
function swapper(root: string, target: string): { stop: () => Promise<number> } {
  const worker = new Worker(
    `
    const { parentPort, workerData } = require("node:worker_threads");
    const fs = require("node:fs");
    const path = require("node:path");
    const { root, target } = workerData;
    let swaps = 0, running = true;
    parentPort.on("message", () => { running = false; });
    const tick = () => {
      for (let i = 0; i < 5 && running; i++) {
        for (const name of ["a", "a/b", "a/b/c", "x"]) {
          const p = path.join(root, name);
          // Move the folder away (it need not be empty) and put a link to the target in its place.
          try { fs.renameSync(p, p + ".moved" + swaps); } catch {}
          try { fs.symlinkSync(target, p); swaps++; } catch {}
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
          try { fs.unlinkSync(p); } catch {}
          try { fs.mkdirSync(p, { recursive: true }); fs.writeFileSync(path.join(p, "f"), "x"); } catch {}
        }
      }
      // Bounded, like a run's lifetime: then the remover can finish.
      if (running && swaps < 200) setImmediate(tick); else if (running) parentPort.once("message", () => parentPort.postMessage(swaps)); else parentPort.postMessage(swaps);
    };
    tick();
    `,
    { eval: true, workerData: { root, target } },
  );
  return {
    stop: () =>
      new Promise((resolve) => {
        worker.once("message", (n: number) => {
          void worker.terminate();
          resolve(n);
        });
        worker.postMessage("stop");
      }),
  };
}

describe("removing a tree a live run keeps changing", () => {
  it("never deletes outside while folders are swapped for links to a host directory, mid-walk", { timeout: 90_000 }, async () => {
    const target = canary("canary-remove");
    const root = join(base, "trash-1");
    let swaps = 0;
    for (let round = 0; round < 5; round++) {
      mkdirSync(join(root, "victim", "a", "b", "c"), { recursive: true });
      for (let i = 0; i < 50; i++) writeFileSync(join(root, "victim", "a", `f${i}`), "x");
      const s = swapper(join(root, "victim"), target);
      await removeTree(root, "victim").catch(() => false);
      swaps += await s.stop();
      canaryIntact(target);
    }
    expect(swaps).toBeGreaterThan(0);
    canaryIntact(target);
  });

  it("removes a link as a link, and a whole ordinary tree", async () => {
    const target = canary("canary-link");
    const root = join(base, "trash-2");
    mkdirSync(join(root, "t", "d1", "d2"), { recursive: true });
    writeFileSync(join(root, "t", "d1", "d2", "f"), "x");
    symlinkSync(target, join(root, "t", "d1", "link"));
    expect(await removeTree(root, "t")).toBe(true);
    expect(existsSync(join(root, "t"))).toBe(false);
    canaryIntact(target);
  });

  it("refuses a multi-segment name and a root that is a link", async () => {
    const root = join(base, "trash-3");
    mkdirSync(root, { recursive: true });
    await expect(removeTree(root, "a/b")).rejects.toThrow(/single name/);
    symlinkSync(root, join(base, "root-link"));
    await expect(removeTree(join(base, "root-link"), "a")).rejects.toThrow(/symlink/);
  });

});

describe("the quota usage walk", () => {
  it("counts a tree and never follows a link out of it", async () => {
    const target = canary("canary-usage");
    writeFileSync(join(target, "big"), Buffer.alloc(1024 * 1024));
    const root = join(base, "usage");
    mkdirSync(join(root, "d"), { recursive: true });
    writeFileSync(join(root, "d", "f"), Buffer.alloc(8192, 1));
    symlinkSync(target, join(root, "link"));
    const u = await usageBeneath(root);
    expect(u.inodes).toBe(3);
    expect(u.bytes).toBeLessThan(512 * 1024);
    expect(u.bytes).toBeGreaterThanOrEqual(8192);
  });

  it("does not walk into a folder swapped for a link while it counts", { timeout: 90_000 }, async () => {
    const target = canary("canary-usage-race");
    // Much larger than what the swapping itself leaves behind (moved folders, a block each).
    writeFileSync(join(target, "big"), Buffer.alloc(64 * 1024 * 1024, 1));
    const root = join(base, "usage-race");
    for (let round = 0; round < 6; round++) {
      mkdirSync(join(root, "a", "b", "c"), { recursive: true });
      const s = swapper(root, target);
      const u = await usageBeneath(root);
      await s.stop();
      expect(u.bytes).toBeLessThan(64 * 1024 * 1024);
    }
  });
});

describe("reading a file a live run keeps growing", () => {
  it("stops past the read limit instead of reading whatever the file has become", async () => {
    const { readFileBeneath } = await import("../../src/stores/safe-fs.js");
    const root = join(base, "grow");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "f"), "small");
    expect((await readFileBeneath(root, "f", 1024 * 1024)).toString()).toBe("small");
    // A writer thread grows the file while the host reads it.
    const worker = new Worker(
      `const fs = require("node:fs"); const { workerData, parentPort } = require("node:worker_threads");
       const fd = fs.openSync(workerData, "a"); const chunk = Buffer.alloc(256 * 1024, 120); let running = true;
       parentPort.on("message", () => { running = false; });
       const tick = () => { for (let i = 0; i < 8 && running; i++) fs.writeSync(fd, chunk); if (running) setImmediate(tick); else { fs.closeSync(fd); parentPort.postMessage("done"); } };
       parentPort.postMessage("started"); tick();`,
      { eval: true, workerData: join(root, "f") },
    );
    await new Promise((r) => worker.once("message", r));
    let refused = 0;
    for (let i = 0; i < 20; i++) {
      const got = await readFileBeneath(root, "f", 4 * 1024 * 1024).then(
        (b) => b.length,
        () => -1,
      );
      if (got === -1) refused++;
      else expect(got).toBeLessThanOrEqual(4 * 1024 * 1024);
    }
    worker.postMessage("stop");
    await new Promise((r) => worker.once("message", r));
    await worker.terminate();
    expect(refused).toBeGreaterThan(0);
  });
});
