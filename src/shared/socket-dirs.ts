// Folders for per-container unix sockets (the bridge's, the egress proxy's): one per container,
// under the data dir when the socket path fits the kernel's limit, otherwise under a fresh folder
// of ours in /tmp.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** sun_path holds 108 bytes; leave room. */
export const MAX_SOCKET_PATH = 100;

export class SocketDirs {
  /** A data dir too deep for a socket path: sockets go into a folder of ours under /tmp. */
  private shortRoot: string | undefined;

  constructor(
    private readonly preferredRoot: string,
    /** The name of the socket that goes into each folder (its length counts). */
    private readonly socketName: string,
    /** The /tmp folder's prefix, e.g. "codebox-run-". */
    private readonly tmpPrefix: string,
  ) {}

  /** A new folder path for one container's socket (not created here). */
  next(): string {
    const id = randomBytes(8).toString("hex");
    const preferred = join(this.preferredRoot, id);
    if (Buffer.byteLength(join(preferred, this.socketName)) <= MAX_SOCKET_PATH) return preferred;
    // Security: a fresh folder with an unpredictable name (mkdtemp, 0700 then 0711), never one a
    // name someone else could have planted beforehand in a world-writable /tmp.
    if (!this.shortRoot) {
      this.shortRoot = mkdtempSync(join(tmpdir(), this.tmpPrefix));
      chmodSync(this.shortRoot, 0o711);
    }
    return join(this.shortRoot, id);
  }

  /** Removes the /tmp folder, if one was made. */
  close(): void {
    if (this.shortRoot) rmSync(this.shortRoot, { recursive: true, force: true });
  }
}
