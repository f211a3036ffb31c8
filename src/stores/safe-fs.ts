import { randomUUID } from "node:crypto";
import { constants, type Dirent, promises as fs } from "node:fs";
import { UnsafePathError } from "../shared/errors.js";
import { O_DIR, relativeSegments, unsafe, viaFd } from "./fd-paths.js";

export { relativeSegments } from "./fd-paths.js";

// Host-side file operations inside a user's directories, which sandboxed code controls and may
// change at any moment (symlinks, hardlinks, swaps mid-operation). Every path is walked one
// component at a time with O_NOFOLLOW, each step relative to the directory handle of the previous
// one (through /proc/self/fd, Node's stand-in for openat), so no step can be redirected outside.


/** Opens `root` itself (must be a real directory) and walks `segments` below it; returns the last directory's handle. */
export async function openDirBeneath(root: string, segments: string[], options: { create?: boolean; mode?: number; owner?: number | undefined } = {}): Promise<fs.FileHandle> {
  let dir = await fs.open(root, O_DIR).catch((err) => unsafe(err, root));
  try {
    for (const seg of segments) {
      let created = false;
      if (options.create) {
        created = await fs.mkdir(viaFd(dir.fd, seg), { mode: options.mode ?? 0o755 }).then(
          () => true,
          (err: NodeJS.ErrnoException) => {
            if (err.code !== "EEXIST") throw err;
            return false;
          },
        );
      }
      const next = await fs.open(viaFd(dir.fd, seg), O_DIR).catch((err) => unsafe(err, seg));
      // A directory we made for the user belongs to the sandbox uid, so code can manage it (chowned through the handle).
      if (created && options.owner !== undefined) await next.chown(options.owner, options.owner);
      await dir.close();
      dir = next;
    }
    return dir;
  } catch (err) {
    await dir.close().catch(() => {});
    throw err;
  }
}

/**
 * Whether `rel` below `root` is a regular file, without following any link: a missing path, a
 * link anywhere on the way, or anything but a regular file is "no".
 */
export async function isFileBeneath(root: string, rel: string): Promise<boolean> {
  const parts = relativeSegments(rel);
  let dir: fs.FileHandle;
  try {
    dir = await openDirBeneath(root, parts.slice(0, -1));
  } catch (err) {
    if (err instanceof UnsafePathError || (err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
  try {
    return (await fs.lstat(viaFd(dir.fd, parts[parts.length - 1]!))).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") return false;
    throw err;
  } finally {
    await dir.close();
  }
}

/** Reads a regular file at `rel` below `root` without following any link; refuses more than maxBytes. */
export async function readFileBeneath(root: string, rel: string, maxBytes: number): Promise<Buffer> {
  const parts = relativeSegments(rel);
  const dir = await openDirBeneath(root, parts.slice(0, -1));
  try {
    const file = await fs.open(viaFd(dir.fd, parts[parts.length - 1]!), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((err) => unsafe(err, rel));
    try {
      const st = await file.stat();
      // Security: a FIFO or device would block or read something that is not the user's file.
      if (!st.isFile()) throw new UnsafePathError(`${rel} is not a regular file.`);
      if (st.size > maxBytes) throw new UnsafePathError(`${rel} is ${st.size} bytes; the most that can be read at once is ${maxBytes}.`);
      // Security: a live run can grow the file after the stat: read in chunks and stop past
      // maxBytes, never "to the end" of whatever the file has become.
      const chunks: Buffer[] = [];
      let got = 0;
      for (;;) {
        const chunk = Buffer.alloc(64 * 1024);
        const { bytesRead } = await file.read(chunk, 0, chunk.length, got);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got > maxBytes) throw new UnsafePathError(`${rel} grew past ${maxBytes} bytes while it was read; the most that can be read at once is ${maxBytes}.`);
        chunks.push(chunk.subarray(0, bytesRead));
      }
      return Buffer.concat(chunks, got);
    } finally {
      await file.close();
    }
  } finally {
    await dir.close();
  }
}

export interface Entry {
  path: string;
  kind: "file" | "dir" | "link" | "other";
  size: number;
  /** Files: when the file was last created or changed (the kernel's clock; code cannot set it). */
  ctimeMs: number;
}

/** Lists up to `limit` entries below `root` (depth-first), reporting links as links and never entering them. */
export async function listBeneath(root: string, limit: number, skip: (rel: string) => boolean = () => false): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (segments: string[]) => {
    if (out.length >= limit) return;
    let dir: fs.FileHandle;
    try {
      dir = await openDirBeneath(root, segments);
    } catch {
      return;
    }
    let entries: Dirent[];
    try {
      entries = await fs.readdir(`/proc/self/fd/${dir.fd}`, { withFileTypes: true });
    } finally {
      // readdir is done with the handle once it returns.
    }
    const subdirs: string[] = [];
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (out.length >= limit) break;
      const rel = [...segments, e.name].join("/");
      if (skip(rel)) continue;
      let size = 0;
      let ctimeMs = 0;
      if (e.isFile()) ({ size, ctimeMs } = await fs.lstat(viaFd(dir.fd, e.name)).catch(() => ({ size: 0, ctimeMs: 0 })));
      out.push({ path: rel, kind: e.isFile() ? "file" : e.isDirectory() ? "dir" : e.isSymbolicLink() ? "link" : "other", size, ctimeMs });
      if (e.isDirectory()) subdirs.push(e.name);
    }
    await dir.close();
    for (const s of subdirs) await walk([...segments, s]);
  };
  await walk([]);
  return out;
}

/**
 * Writes `data` to `rel` below `root`: parent directories created as needed (never through a
 * link), the file written under a temporary name in the same directory handle, then renamed over
 * the target (atomic; a link at the target is replaced, never followed).
 */
export async function writeFileBeneath(root: string, rel: string, data: Buffer | string, options: { mode?: number; owner?: number } = {}): Promise<void> {
  const parts = relativeSegments(rel);
  const dir = await openDirBeneath(root, parts.slice(0, -1), { create: true, mode: 0o755, owner: options.owner });
  try {
    const tmp = `.codebox-tmp-${randomUUID()}`;
    const h = await fs.open(viaFd(dir.fd, tmp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, options.mode ?? 0o644);
    try {
      await h.writeFile(data);
      if (options.owner !== undefined) await h.chown(options.owner, options.owner);
      await h.sync();
    } finally {
      await h.close();
    }
    await fs.rename(viaFd(dir.fd, tmp), viaFd(dir.fd, parts[parts.length - 1]!)).catch(async (err: unknown) => {
      await fs.unlink(viaFd(dir.fd, tmp)).catch(() => {});
      throw err;
    });
  } finally {
    await dir.close();
  }
}
