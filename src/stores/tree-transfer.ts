// A user's tree from one cell to another (docs/SCALING.md section 7): packed as a tar stream of
// the tree's entries ("t/<path>") followed by a manifest (every entry's type, size, SHA-256 or
// link target); unpacked through directory handles only (the tree was written by sandboxed code:
// a link is created as a link and never followed, no name leaves the root), and verified against
// the manifest before anyone may use it. The manifest's own SHA-256 names the tree: equal digests
// before and after mean equal trees.
import { createHash } from "node:crypto";
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, fsyncSync, futimesSync, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, readSync, type Stats, symlinkSync, writeSync } from "node:fs";
import { Readable as NodeReadable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract, pack } from "tar-stream";
import { UnsafePathError } from "../shared/errors.js";
import { O_DIR, relativeSegments, viaFd } from "./fd-paths.js";

const MANIFEST = "manifest.json";
const TREE = "t/";
/** Deepest nesting packed; deeper entries are left out and counted. */
const MAX_DEPTH = 256;
/** Files up to this size are read whole. */
const SMALL_FILE = 256 * 1024;

export interface ManifestEntry {
  path: string;
  type: "dir" | "file" | "symlink";
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size?: number;
  sha256?: string;
  link?: string;
}

export interface TreeSummary {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** SHA-256 of the canonical manifest: the tree's identity. */
  digest: string;
  /** Entries not copied (sockets, fifos, devices, too deep). */
  skipped: number;
}

function digestOf(entries: ManifestEntry[]): string {
  const canonical = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((e) => [e.path, e.type, e.mode & 0o777, e.size ?? 0, e.sha256 ?? "", e.link ?? ""]);
  return createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
}

function summarize(entries: ManifestEntry[], skipped: number): TreeSummary {
  let files = 0;
  let dirs = 0;
  let symlinks = 0;
  let bytes = 0;
  for (const e of entries) {
    if (e.type === "file") {
      files++;
      bytes += e.size ?? 0;
    } else if (e.type === "dir") dirs++;
    else symlinks++;
  }
  return { files, dirs, symlinks, bytes, digest: digestOf(entries), skipped };
}

/**
 * Packs the tree below `root` (which must be quiescent: the user's runs stopped). Resolves with
 * the stream at once; `done` resolves with the summary once everything is written.
 */
export function packTree(root: string, options: { maxEntries?: number } = {}): { stream: NodeReadable; done: Promise<TreeSummary> } {
  const maxEntries = options.maxEntries ?? 1_000_000;
  const p = pack();
  p.on("error", () => {});
  const entries: ManifestEntry[] = [];
  let skipped = 0;
  const add = (header: Parameters<typeof p.entry>[0], body?: Buffer | string) =>
    new Promise<void>((resolve, reject) => {
      p.entry(header, body ?? "", (err) => (err ? reject(err) : resolve()));
    });
  // The data is tar-buffered only this far ahead of the network.
  const backlog = () => (p as unknown as { _readableState?: { buffered?: number } })._readableState?.buffered ?? 0;
  let steps = 0;
  /** Synchronous file calls (dozens of times cheaper than the thread pool's here), with a pause every few dozen so the cell keeps serving. */
  const gone = () => {
    const x = p as unknown as { destroyed?: boolean; destroying?: boolean };
    return x.destroyed === true || x.destroying === true;
  };
  const pace = async () => {
    if (++steps % 32 === 0) await new Promise((r) => setImmediate(r));
    while (backlog() > 8 * 1024 * 1024 && !gone()) await new Promise((r) => setTimeout(r, 2));
    // The receiver went away (a failed move): stop reading the tree.
    if (gone()) throw new Error("the transfer was closed");
    if (steps > maxEntries) throw new Error(`the tree has more than ${maxEntries} entries`);
  };
  const walk = async (dirFd: number, rel: string, depth: number): Promise<void> => {
    const names = readdirSync(`/proc/self/fd/${dirFd}`).sort();
    for (const name of names) {
      await pace();
      const path = rel ? `${rel}/${name}` : name;
      const at = viaFd(dirFd, name);
      let st: Stats;
      try {
        st = lstatSync(at);
      } catch {
        continue;
      }
      const base = { path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: Math.floor(st.mtimeMs) };
      if (st.isSymbolicLink()) {
        const link = readlinkSync(at);
        entries.push({ ...base, type: "symlink", link });
        await add({ name: TREE + path, type: "symlink", linkname: link, mode: base.mode, uid: st.uid, gid: st.gid, mtime: st.mtime });
      } else if (st.isDirectory() && depth < MAX_DEPTH) {
        entries.push({ ...base, type: "dir" });
        await add({ name: `${TREE}${path}/`, type: "directory", mode: base.mode, uid: st.uid, gid: st.gid, mtime: st.mtime });
        // Security: opened with O_NOFOLLOW relative to its parent's handle: a swapped-in link fails here.
        const child = openSync(at, O_DIR);
        try {
          await walk(child, path, depth + 1);
        } finally {
          closeSync(child);
        }
      } else if (st.isFile()) {
        // Security: O_NONBLOCK, then a regular file or nothing: a fifo swapped in after the lstat
        // must not block the cell on open or read.
        const fd = openSync(at, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
        try {
          const fst = fstatSync(fd);
          if (!fst.isFile()) {
            skipped++;
            continue;
          }
          const size = fst.size;
          const header = { name: TREE + path, type: "file" as const, size, mode: base.mode, uid: st.uid, gid: st.gid, mtime: st.mtime };
          if (size <= SMALL_FILE) {
            // Small files in one read (most of a tree).
            const buf = Buffer.alloc(size);
            let got = 0;
            while (got < size) {
              const n = readSync(fd, buf, got, size - got, got);
              if (n === 0) break;
              got += n;
            }
            if (got < size) throw new Error(`${path} shrank while it was being copied`);
            await add(header, buf);
            entries.push({ ...base, type: "file", size, sha256: createHash("sha256").update(buf).digest("hex") });
            continue;
          }
          const hash = createHash("sha256");
          let sink!: ReturnType<typeof p.entry>;
          const finished = new Promise<void>((resolve, reject) => {
            sink = p.entry(header, (err) => (err ? reject(err) : resolve()));
          });
          // A receiver that fails destroys the pack; that surfaces through `finished` (awaited
          // below), never as an uncaught error or an unhandled rejection meanwhile.
          sink.on("error", () => {});
          finished.catch(() => {});
          // Exactly `size` bytes: a file that grew meanwhile is cut, one that shrank fails the entry.
          // Read here (not through a ReadStream, which closes the descriptor it was given when
          // abandoned, and the finally below would then close a number reused meanwhile).
          const buf = Buffer.allocUnsafe(1024 * 1024);
          for (let pos = 0; pos < size; ) {
            const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
            if (n === 0) throw new Error(`${path} shrank while it was being copied`);
            const chunk = Buffer.from(buf.subarray(0, n));
            pos += n;
            hash.update(chunk);
            if (!sink.write(chunk)) {
              await new Promise<void>((r) => {
                const done = () => {
                  sink.off("drain", done).off("close", done).off("error", done);
                  p.off("close", done);
                  r();
                };
                sink.on("drain", done).on("close", done).on("error", done);
                p.on("close", done);
              });
            } else await new Promise((r) => setImmediate(r));
            if (gone()) throw new Error("the transfer was closed");
          }
          sink.end(undefined);
          await finished;
          entries.push({ ...base, type: "file", size, sha256: hash.digest("hex") });
        } finally {
          closeSync(fd);
        }
      } else skipped++;
    }
  };
  const done = (async () => {
    try {
      const top = openSync(root, O_DIR);
      try {
        await walk(top, "", 0);
      } finally {
        closeSync(top);
      }
      await add({ name: MANIFEST, type: "file" }, JSON.stringify({ entries, skipped }));
      p.finalize();
      return summarize(entries, skipped);
    } catch (err) {
      p.destroy(err as Error);
      throw err;
    }
  })();
  // A caller that only awaits the stream still sees a failure through it.
  done.catch(() => {});
  return { stream: NodeReadable.from(p as AsyncIterable<Buffer>), done };
}

/**
 * Unpacks a packed tree into `root` (an existing real directory; existing directories in it are
 * reused, anything else must not exist yet), then checks every entry against the manifest. Throws
 * on any difference; the caller removes what was written.
 */
export async function unpackTree(source: NodeReadable, root: string, options: { maxBytes: number; maxEntries?: number }): Promise<TreeSummary> {
  const maxEntries = options.maxEntries ?? 1_000_000;
  const ex = extract();
  const written = new Map<string, ManifestEntry>();
  // Directory descriptors by path, opened once (each through the one above it, never following a
  // link). Synchronous calls, as in packTree, with a pause every few dozen entries.
  const dirs = new Map<string, number>();
  /** Synced and closed as the depth-first stream leaves them: only the current path's are open. */
  const leaveAllBut = (key: string) => {
    for (const [k, fd] of dirs) {
      if (k === "" || k === key || key.startsWith(`${k}/`)) continue;
      fsyncSync(fd);
      closeSync(fd);
      dirs.delete(k);
    }
  };
  const dirOf = async (segments: string[]): Promise<number> => {
    const key = segments.join("/");
    const open = dirs.get(key);
    if (open !== undefined) return open;
    // The root itself must be a real directory (O_NOFOLLOW); below it, each step through its parent.
    const fd = segments.length === 0 ? openSync(root, O_DIR) : openSync(viaFd(await dirOf(segments.slice(0, -1)), segments[segments.length - 1]!), O_DIR);
    dirs.set(key, fd);
    return fd;
  };
  let manifest: { entries: ManifestEntry[]; skipped: number } | undefined;
  let total = 0;
  let steps = 0;
  const work = (async () => {
    for await (const entry of ex) {
      if (++steps % 32 === 0) await new Promise((r) => setImmediate(r));
      const h = entry.header;
      if (steps > maxEntries + 1) throw new Error(`the moved tree has more than ${maxEntries} entries`);
      if (h.name === MANIFEST) {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const c of entry) {
          size += (c as Buffer).length;
          // About 1 KiB per entry at most (a path of 4 KiB is rare): a bound, not a guess.
          if (size > (maxEntries + 1) * 4096) throw new Error("the moved tree's manifest is too large");
          chunks.push(c as Buffer);
        }
        manifest = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof manifest;
        continue;
      }
      if (!h.name.startsWith(TREE)) throw new UnsafePathError(`unexpected entry "${h.name.slice(0, 80)}" in a moved tree`);
      const segments = relativeSegments(h.name.slice(TREE.length));
      const path = segments.join("/");
      if (written.has(path)) throw new UnsafePathError(`entry "${path}" appears twice`);
      // Security: permissions only, never setuid/setgid/sticky bits.
      const mode = (h.mode ?? 0o600) & 0o777;
      leaveAllBut(segments.slice(0, -1).join("/"));
      const dirFd = await dirOf(segments.slice(0, -1));
      const at = viaFd(dirFd, segments[segments.length - 1]!);
      const meta = { path, mode, uid: h.uid ?? 0, gid: h.gid ?? 0, mtimeMs: h.mtime ? h.mtime.getTime() : 0 };
      const mtime = new Date(meta.mtimeMs);
      if (h.type === "directory") {
        try {
          mkdirSync(at, { mode });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        }
        // An existing name must be a real directory (opening it refuses links).
        const d = openSync(at, O_DIR);
        try {
          fchmodSync(d, mode);
          fchownSync(d, meta.uid, meta.gid);
        } finally {
          closeSync(d);
        }
        written.set(path, { ...meta, type: "dir" });
        entry.resume();
      } else if (h.type === "symlink") {
        symlinkSync(h.linkname ?? "", at);
        lchownSync(at, meta.uid, meta.gid);
        written.set(path, { ...meta, type: "symlink", link: h.linkname ?? "" });
        entry.resume();
      } else if (h.type === "file") {
        total += h.size ?? 0;
        if (total > options.maxBytes) throw new Error(`the moved tree is larger than ${options.maxBytes} bytes`);
        const out = openSync(at, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
        const hash = createHash("sha256");
        let size = 0;
        try {
          for await (const c of entry) {
            const b = c as Buffer;
            hash.update(b);
            size += b.length;
            for (let off = 0; off < b.length; ) off += writeSync(out, b, off, b.length - off);
          }
          fchownSync(out, meta.uid, meta.gid);
          fchmodSync(out, mode);
          futimesSync(out, mtime, mtime);
          fsyncSync(out);
        } finally {
          closeSync(out);
        }
        written.set(path, { ...meta, type: "file", size, sha256: hash.digest("hex") });
      } else {
        entry.resume();
      }
    }
  })();
  try {
    await Promise.all([
      pipeline(source, ex).catch((err: unknown) => {
        ex.destroy(err as Error);
        throw err;
      }),
      work.catch((err: unknown) => {
        // The unpacking's own error is the one worth reporting (the stream then only says "closed").
        source.destroy();
        throw err;
      }),
    ]).catch(async (err: unknown) => {
      throw (await work.then(() => undefined, (e: unknown) => e)) ?? err;
    });
    // Durable before it counts: every file was synced as written, and now the directories (their entries).
    for (const fd of dirs.values()) fsyncSync(fd);
  } finally {
    for (const fd of dirs.values()) closeSync(fd);
  }
  if (!manifest) throw new Error("the moved tree has no manifest: the transfer was cut short");
  const expected = new Map(manifest.entries.map((e) => [e.path, e]));
  if (expected.size !== written.size) throw new Error(`the moved tree has ${written.size} entries, its manifest ${expected.size}`);
  for (const [path, e] of expected) {
    const w = written.get(path);
    if (!w || w.type !== e.type || (w.size ?? 0) !== (e.size ?? 0) || (w.sha256 ?? "") !== (e.sha256 ?? "") || (w.link ?? "") !== (e.link ?? "")) throw new Error(`"${path}" differs from the manifest after the move`);
  }
  const summary = summarize([...written.values()], manifest.skipped);
  if (summary.digest !== summarize(manifest.entries, manifest.skipped).digest) throw new Error("the moved tree's digest differs from its manifest's");
  return summary;
}
