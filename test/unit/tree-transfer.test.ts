// Moving a user's tree between cells (src/stores/tree-transfer.ts): a round trip keeps every byte
// and link, a receiver that goes away ends the packing (no hang, no uncaught error, no descriptor
// closed twice), and a hostile stream cannot write outside the root or through a link.
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { randomBytes } from "node:crypto";
import { pack } from "tar-stream";
import { afterEach, describe, expect, it } from "vitest";
import { packTree, unpackTree } from "../../src/stores/tree-transfer.js";

const dirs: string[] = [];
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), "codebox-tree-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A tar stream written by hand (what a hostile or broken sender could send). */
function tarOf(entries: Array<{ name: string; type?: "file" | "directory" | "symlink"; body?: string; linkname?: string; mode?: number }>, manifest?: unknown): Readable {
  const p = pack();
  for (const e of entries) p.entry({ name: e.name, type: e.type ?? "file", mode: e.mode ?? 0o644, ...(e.linkname ? { linkname: e.linkname } : {}) }, e.body ?? "");
  if (manifest !== undefined) p.entry({ name: "manifest.json" }, JSON.stringify(manifest));
  p.finalize();
  return Readable.from(p as AsyncIterable<Buffer>);
}

describe("tree transfer", () => {
  it("round trip: files, empty files, nested folders and links arrive identical, with the same digest", async () => {
    const src = temp();
    const dst = temp();
    mkdirSync(join(src, "a", "b"), { recursive: true });
    const big = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(src, "a", "big.bin"), big);
    writeFileSync(join(src, "empty"), "");
    for (let i = 0; i < 50; i++) writeFileSync(join(src, "a", "b", `f${i}.txt`), `file ${i}\n`);
    symlinkSync("/etc/passwd", join(src, "a", "link"));
    const { stream, done } = packTree(src);
    const got = await unpackTree(stream, dst, { maxBytes: 1e9 });
    const sent = await done;
    expect(got.digest).toBe(sent.digest);
    expect(got).toMatchObject({ files: 52, symlinks: 1, dirs: 2, bytes: big.length + 50 * 7 + 40 });
    expect(readFileSync(join(dst, "a", "big.bin")).equals(big)).toBe(true);
    expect(readlinkSync(join(dst, "a", "link"))).toBe("/etc/passwd");
    expect(lstatSync(join(dst, "a", "link")).isSymbolicLink()).toBe(true);
  });

  it("a receiver that goes away ends the packing with an error, in the middle of a large file or of many small ones", async () => {
    const src = temp();
    writeFileSync(join(src, "big"), Buffer.alloc(24 * 1024 * 1024));
    for (let i = 0; i < 300; i++) writeFileSync(join(src, `f${i}`), "x".repeat(50_000));
    for (const cut of [2 * 1024 * 1024, 30 * 1024 * 1024]) {
      const { stream, done } = packTree(src);
      let n = 0;
      stream.on("data", (c: Buffer) => {
        n += c.length;
        if (n > cut) stream.destroy();
      });
      stream.on("error", () => {});
      await expect(done).rejects.toThrow();
    }
    // The process still opens and reads files normally (no descriptor was closed twice).
    expect(readFileSync(join(src, "f1"), "utf8")).toHaveLength(50_000);
  });

  it("refuses names that leave the root, and never writes through a link it created", async () => {
    const outside = temp();
    for (const name of ["t/../escape", "t//etc/x", "t/a/../../x", "escape"]) {
      const dst = temp();
      await expect(unpackTree(tarOf([{ name, body: "x" }]), dst, { maxBytes: 1e6 })).rejects.toThrow();
      expect(existsSync(join(dst, "..", "escape"))).toBe(false);
    }
    const dst = temp();
    const evil = tarOf([
      { name: "t/a", type: "symlink", linkname: outside },
      { name: "t/a/planted", body: "pwned" },
    ]);
    await expect(unpackTree(evil, dst, { maxBytes: 1e6 })).rejects.toThrow();
    expect(existsSync(join(outside, "planted"))).toBe(false);
  });

  it("drops setuid, setgid and sticky bits, refuses duplicates, and rejects a stream whose manifest disagrees or is missing", async () => {
    const dst = temp();
    const entries = [{ name: "t/s", body: "#!/bin/sh\n", mode: 0o6755 }];
    const manifest = { entries: [{ path: "s", type: "file", mode: 0o755, uid: 0, gid: 0, mtimeMs: 0, size: 10, sha256: "0".repeat(64) }], skipped: 0 };
    await expect(unpackTree(tarOf(entries, manifest), dst, { maxBytes: 1e6 })).rejects.toThrow(/differs/);
    expect(lstatSync(join(dst, "s")).mode & 0o7000).toBe(0);
    await expect(unpackTree(tarOf([{ name: "t/x", body: "1" }]), temp(), { maxBytes: 1e6 })).rejects.toThrow(/no manifest/);
    await expect(unpackTree(tarOf([{ name: "t/x", body: "1" }, { name: "t/x", body: "2" }]), temp(), { maxBytes: 1e6 })).rejects.toThrow(/twice|EEXIST/);
    await expect(unpackTree(tarOf([{ name: "t/x", body: "12345" }]), temp(), { maxBytes: 3 })).rejects.toThrow(/larger than/);
  });
});

describe("tree transfer: odd trees", () => {
  it("skips fifos (never opens them) and stops a tree with more entries than allowed", async () => {
    const src = temp();
    writeFileSync(join(src, "a"), "1");
    execFileSync("mkfifo", [join(src, "pipe")]);
    const { stream, done } = packTree(src);
    const got = await unpackTree(stream, temp(), { maxBytes: 1e6 });
    expect((await done).skipped).toBe(1);
    expect(got.files).toBe(1);
    for (let i = 0; i < 30; i++) writeFileSync(join(src, `f${i}`), "x");
    const capped = packTree(src, { maxEntries: 10 });
    capped.stream.on("error", () => {});
    capped.stream.resume();
    await expect(capped.done).rejects.toThrow(/more than 10 entries/);
    const again = packTree(src);
    await expect(unpackTree(again.stream, temp(), { maxBytes: 1e6, maxEntries: 10 })).rejects.toThrow(/more than 10 entries/);
    await again.done.catch(() => {});
  });

  it("keeps only the current path's folders open while unpacking a wide tree", async () => {
    const src = temp();
    for (let d = 0; d < 400; d++) {
      mkdirSync(join(src, `d${d}`, "inner"), { recursive: true });
      writeFileSync(join(src, `d${d}`, "inner", "f"), String(d));
    }
    const before = readdirSync("/proc/self/fd").length;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, readdirSync("/proc/self/fd").length)), 1);
    const { stream, done } = packTree(src);
    const got = await unpackTree(stream, temp(), { maxBytes: 1e6 });
    clearInterval(timer);
    await done;
    expect(got.dirs).toBe(800);
    // 800 folders, never 800 descriptors at once.
    expect(peak - before).toBeLessThan(100);
  });
});
