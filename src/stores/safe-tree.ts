// Whole-tree operations on user-writable trees (delete, count), through directory handles only:
// a live run may hold a folder open and swap folders for links at any moment while the host walks.
import { promises as fs } from "node:fs";
import { UnsafePathError } from "../shared/errors.js";
import { O_DIR, relativeSegments, unsafe, viaFd } from "./fd-paths.js";

/** Deepest directory nesting removeTree and usageBeneath descend into. */
const MAX_DEPTH = 256;
/** Times removeTree re-reads a directory that a live run keeps filling before it leaves it. */
const REMOVE_ROUNDS = 3;

const isCode = (err: unknown, ...codes: string[]) => codes.includes((err as NodeJS.ErrnoException).code ?? "");

/**
 * Removes the entry `name` of the directory open as `parent`, recursively, through handles only:
 * each directory is opened with O_NOFOLLOW before it is read, and every unlink/rmdir names one
 * entry of a held directory. A directory swapped for a link mid-way is unlinked as a link, never
 * followed. Returns false when a live run kept refilling it (what is left stays where it is).
 */
async function removeAt(parent: fs.FileHandle, name: string, depth: number): Promise<boolean> {
  const path = viaFd(parent.fd, name);
  const st = await fs.lstat(path).catch((err) => (isCode(err, "ENOENT") ? undefined : Promise.reject(err)));
  if (!st) return true;
  if (!st.isDirectory() || depth >= MAX_DEPTH) {
    await fs.unlink(path).catch((err) => (isCode(err, "ENOENT") ? undefined : isCode(err, "EISDIR", "EPERM") ? removeAt(parent, name, depth + 1) : Promise.reject(err)));
    return true;
  }
  let dir: fs.FileHandle;
  try {
    dir = await fs.open(path, O_DIR);
  } catch (err) {
    if (isCode(err, "ENOENT")) return true;
    // Security: it turned into a link (or a file) after the lstat: remove that, follow nothing.
    if (isCode(err, "ELOOP", "ENOTDIR")) return removeAt(parent, name, MAX_DEPTH);
    throw err;
  }
  let complete = true;
  try {
    for (let round = 0; round < REMOVE_ROUNDS; round++) {
      const names = await fs.readdir(`/proc/self/fd/${dir.fd}`);
      if (names.length === 0) break;
      for (const n of names) complete = (await removeAt(dir, n, depth + 1)) && complete;
    }
  } finally {
    await dir.close();
  }
  try {
    await fs.rmdir(path);
  } catch (err) {
    if (isCode(err, "ENOENT")) return complete;
    if (isCode(err, "ENOTDIR")) return removeAt(parent, name, MAX_DEPTH);
    if (isCode(err, "ENOTEMPTY", "EEXIST")) return false;
    throw err;
  }
  return complete;
}

/** Removes `name` below the real directory `root` (see removeAt); false when a live run kept refilling it. */
export async function removeTree(root: string, name: string): Promise<boolean> {
  if (relativeSegments(name).length !== 1) throw new UnsafePathError(`"${name}" is not a single name.`);
  const dir = await fs.open(root, O_DIR).catch((err) => unsafe(err, root));
  try {
    return await removeAt(dir, name, 0);
  } finally {
    await dir.close();
  }
}

/** Bytes allocated and entries below the real directory `root`, never following a link: handles only. */
export async function usageBeneath(root: string): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  const seen = new Set<string>();
  const walk = async (dir: fs.FileHandle, depth: number): Promise<void> => {
    const names = await fs.readdir(`/proc/self/fd/${dir.fd}`).catch(() => [] as string[]);
    for (const n of names) {
      const st = await fs.lstat(viaFd(dir.fd, n)).catch(() => undefined);
      if (!st) continue;
      inodes++;
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) continue; // a hardlink counts once
      seen.add(key);
      bytes += st.blocks * 512;
      if (!st.isDirectory() || depth >= MAX_DEPTH) continue;
      const sub = await fs.open(viaFd(dir.fd, n), O_DIR).catch(() => undefined);
      if (!sub) continue; // swapped for a link meanwhile: not followed
      try {
        await walk(sub, depth + 1);
      } finally {
        await sub.close();
      }
    }
  };
  const top = await fs.open(root, O_DIR).catch(() => undefined);
  if (!top) return { bytes, inodes };
  try {
    await walk(top, 0);
  } finally {
    await top.close();
  }
  return { bytes, inodes };
}
