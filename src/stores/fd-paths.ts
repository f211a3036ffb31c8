// The pieces every descriptor-relative file operation on a user's tree is built from.
import { constants } from "node:fs";
import { UnsafePathError } from "../shared/errors.js";

export const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const MAX_SEGMENT = 255;
const MAX_PATH = 4096;

/** Splits a user-supplied relative path into checked segments. */
export function relativeSegments(path: string): string[] {
  // Security: no absolute paths, no "..", no ".", no empty segments, no NUL, bounded length.
  if (typeof path !== "string" || path.length === 0 || path.length > MAX_PATH) throw new UnsafePathError(`Invalid path "${String(path).slice(0, 80)}": give a relative path of 1-${MAX_PATH} characters.`);
  if (path.includes("\0")) throw new UnsafePathError("Invalid path: it contains a NUL byte.");
  if (path.startsWith("/")) throw new UnsafePathError(`Invalid path "${path}": use a path relative to /workspace (no leading "/").`);
  const parts = path.split("/").filter((p) => p !== "");
  for (const p of parts) {
    if (p === "." || p === ".." || p.length > MAX_SEGMENT) throw new UnsafePathError(`Invalid path "${path}": "." and ".." segments are not allowed.`);
  }
  if (parts.length === 0) throw new UnsafePathError(`Invalid path "${path}".`);
  return parts;
}

/** A name inside the directory open as `fd`, resolved by the kernel relative to that handle (openat). */
export const viaFd = (fd: number, name: string) => `/proc/self/fd/${fd}/${name}`;

export function unsafe(err: unknown, what: string): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ELOOP" || code === "ENOTDIR") throw new UnsafePathError(`${what} is a symlink or not a directory; refusing to follow it.`);
  throw err;
}
