// A user's tree from one cell to another (docs/SCALING.md section 7): packed as a tar stream of
// the tree's entries ("t/<path>") followed by a manifest (every entry's type, size, SHA-256 or
// link target); unpacked through directory handles only (the tree was written by sandboxed code:
// a link is created as a link and never followed, no name leaves the root), and verified against
// the manifest before anyone may use it. The manifest's own SHA-256 names the tree: equal digests
// before and after mean equal trees.
import { createHash } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import { Readable as NodeReadable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract, pack } from "tar-stream";
import { UnsafePathError } from "../shared/errors.js";
import { O_DIR, relativeSegments, viaFd } from "./fd-paths.js";
import { openDirBeneath } from "./safe-fs.js";

const MANIFEST = "manifest.json";
const TREE = "t/";
/** Deepest nesting packed; deeper entries are left out and counted. */
const MAX_DEPTH = 256;

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
export function packTree(root: string): { stream: NodeReadable; done: Promise<TreeSummary> } {
  const p = pack();
  const entries: ManifestEntry[] = [];
  let skipped = 0;
  const add = (header: Parameters<typeof p.entry>[0], body?: Buffer | string) =>
    new Promise<void>((resolve, reject) => {
      p.entry(header, body ?? "", (err) => (err ? reject(err) : resolve()));
    });
  const walk = async (dir: fs.FileHandle, rel: string, depth: number): Promise<void> => {
    const names = (await fs.readdir(`/proc/self/fd/${dir.fd}`)).sort();
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const at = viaFd(dir.fd, name);
      const st = await fs.lstat(at).catch(() => undefined);
      if (!st) continue;
      const base = { path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: Math.floor(st.mtimeMs) };
      if (st.isSymbolicLink()) {
        const link = await fs.readlink(at);
        entries.push({ ...base, type: "symlink", link });
        await add({ name: TREE + path, type: "symlink", linkname: link, mode: base.mode, uid: st.uid, gid: st.gid, mtime: st.mtime });
      } else if (st.isDirectory() && depth < MAX_DEPTH) {
        entries.push({ ...base, type: "dir" });
        await add({ name: `${TREE}${path}/`, type: "directory", mode: base.mode, uid: st.uid, gid: st.gid, mtime: st.mtime });
        // Security: opened with O_NOFOLLOW relative to its parent's handle: a swapped-in link fails here.
        const child = await fs.open(at, O_DIR);
        try {
          await walk(child, path, depth + 1);
        } finally {
          await child.close();
        }
      } else if (st.isFile()) {
        const h = await fs.open(at, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          const size = (await h.stat()).size;
          const hash = createHash("sha256");
          let sink!: ReturnType<typeof p.entry>;
          const finished = new Promise<void>((resolve, reject) => {
            sink = p.entry({ name: TREE + path, type: "file", size, mode: base.mode, uid: st.uid, gid: st.gid, mtime: st.mtime }, (err) => (err ? reject(err) : resolve()));
          });
          // Exactly `size` bytes: a file that grew meanwhile is cut, one that shrank fails the entry.
          let left = size;
          for await (const c of h.createReadStream({ autoClose: false, start: 0, highWaterMark: 1024 * 1024 })) {
            if (left <= 0) break;
            const chunk = (c as Buffer).subarray(0, left);
            left -= chunk.length;
            hash.update(chunk);
            if (!sink.write(chunk)) await new Promise<void>((r) => sink.once("drain", () => r()));
          }
          sink.end(undefined);
          await finished;
          entries.push({ ...base, type: "file", size, sha256: hash.digest("hex") });
        } finally {
          await h.close();
        }
      } else skipped++;
    }
  };
  const done = (async () => {
    try {
      const top = await fs.open(root, O_DIR);
      try {
        await walk(top, "", 0);
      } finally {
        await top.close();
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
export async function unpackTree(source: NodeReadable, root: string, options: { maxBytes: number }): Promise<TreeSummary> {
  const ex = extract();
  const written = new Map<string, ManifestEntry>();
  let manifest: { entries: ManifestEntry[]; skipped: number } | undefined;
  let total = 0;
  const work = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      if (h.name === MANIFEST) {
        const chunks: Buffer[] = [];
        for await (const c of entry) chunks.push(c as Buffer);
        manifest = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof manifest;
        continue;
      }
      if (!h.name.startsWith(TREE)) throw new UnsafePathError(`unexpected entry "${h.name.slice(0, 80)}" in a moved tree`);
      const segments = relativeSegments(h.name.slice(TREE.length));
      const path = segments.join("/");
      if (written.has(path)) throw new UnsafePathError(`entry "${path}" appears twice`);
      // Security: permissions only, never setuid/setgid/sticky bits.
      const mode = (h.mode ?? 0o600) & 0o777;
      const dir = await openDirBeneath(root, segments.slice(0, -1));
      const name = segments[segments.length - 1]!;
      const at = viaFd(dir.fd, name);
      try {
        const meta = { path, mode, uid: h.uid ?? 0, gid: h.gid ?? 0, mtimeMs: h.mtime ? h.mtime.getTime() : 0 };
        if (h.type === "directory") {
          await fs.mkdir(at, { mode }).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== "EEXIST") throw err;
          });
          // An existing name must be a real directory (opening it refuses links).
          const d = await fs.open(at, O_DIR);
          await d.chmod(mode);
          await d.chown(meta.uid, meta.gid);
          await d.close();
          written.set(path, { ...meta, type: "dir" });
          entry.resume();
        } else if (h.type === "symlink") {
          await fs.symlink(h.linkname ?? "", at);
          await fs.lchown(at, meta.uid, meta.gid);
          written.set(path, { ...meta, type: "symlink", link: h.linkname ?? "" });
          entry.resume();
        } else if (h.type === "file") {
          total += h.size ?? 0;
          if (total > options.maxBytes) throw new Error(`the moved tree is larger than ${options.maxBytes} bytes`);
          const out = await fs.open(at, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
          const hash = createHash("sha256");
          let size = 0;
          try {
            for await (const c of entry) {
              hash.update(c as Buffer);
              size += (c as Buffer).length;
              await out.write(c as Buffer);
            }
            await out.chown(meta.uid, meta.gid);
            await out.chmod(mode);
            await out.sync();
          } finally {
            await out.close();
          }
          written.set(path, { ...meta, type: "file", size, sha256: hash.digest("hex") });
        } else {
          entry.resume();
        }
        if (h.type === "file" || h.type === "directory") await fs.utimes(at, new Date(meta.mtimeMs), new Date(meta.mtimeMs)).catch(() => {});
      } finally {
        await dir.close();
      }
    }
  })();
  await Promise.all([pipeline(source, ex).catch((err: unknown) => {
    ex.destroy(err as Error);
    throw err;
  }), work]);
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
