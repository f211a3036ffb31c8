import { createWriteStream, type WriteStream } from "node:fs";
import { Writable } from "node:stream";

const TAIL_BYTES = 4 * 1024;

export interface SpillOptions {
  /** Host file (in a host-only directory) that receives the whole stream once it passes the cap. */
  path: string;
  /** The most bytes written there; beyond it the stream is only counted. */
  maxBytes: number;
}

/**
 * Keeps the first `capBytes` bytes written to it, the last few KiB, and counts the rest. The
 * sandbox may print anything (gigabytes, no newlines, invalid UTF-8); memory use stays bounded.
 * With a spill file, everything up to its limit is also written to disk once the cap is passed.
 */
export class CappedOutput extends Writable {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private tailBuf = Buffer.alloc(0);
  private spill: WriteStream | undefined;
  spilledBytes = 0;
  totalBytes = 0;

  constructor(
    private readonly capBytes: number,
    private readonly spillOptions?: SpillOptions,
    private readonly onChunk?: (chunk: Buffer) => void,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.totalBytes += chunk.length;
    this.onChunk?.(chunk);
    const room = this.capBytes - this.kept;
    if (room > 0) {
      const piece = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.chunks.push(Buffer.from(piece));
      this.kept += piece.length;
    }
    this.tailBuf = Buffer.concat([this.tailBuf, chunk.length > TAIL_BYTES ? chunk.subarray(chunk.length - TAIL_BYTES) : chunk]);
    if (this.tailBuf.length > TAIL_BYTES) this.tailBuf = this.tailBuf.subarray(this.tailBuf.length - TAIL_BYTES);
    if (this.spillOptions && this.totalBytes > this.capBytes) {
      if (!this.spill) {
        this.spill = createWriteStream(this.spillOptions.path, { flags: "wx", mode: 0o600 });
        this.spill.on("error", () => {});
        // Everything before this chunk is the kept head.
        const head = Buffer.concat(this.chunks).subarray(0, this.totalBytes - chunk.length);
        this.writeSpill(head);
      }
      this.writeSpill(chunk);
    }
    done();
  }

  private writeSpill(b: Buffer): void {
    const room = this.spillOptions!.maxBytes - this.spilledBytes;
    if (room <= 0 || b.length === 0) return;
    const piece = b.length <= room ? b : b.subarray(0, room);
    this.spill!.write(piece);
    this.spilledBytes += piece.length;
  }

  /** Closes the spill file; returns its path when anything was spilled. */
  async finishSpill(): Promise<string | undefined> {
    const s = this.spill;
    if (!s) return undefined;
    await new Promise<void>((resolve) => s.end(() => resolve()));
    return this.spillOptions!.path;
  }

  /** The last few KiB (for a result whose middle was cut). */
  tail(): string {
    // The cut may fall inside a character: drop what decodes as U+FFFD at the very start.
    return decodeCapped(this.tailBuf, false).replace(/^\uFFFD+/, "");
  }

  get truncated(): boolean {
    return this.totalBytes > this.capBytes;
  }

  /** Decoded text; invalid UTF-8 becomes U+FFFD, and a character split by the cap is dropped. */
  text(): string {
    return decodeCapped(Buffer.concat(this.chunks), this.truncated);
  }
}

export function decodeCapped(bytes: Buffer, truncated: boolean): string {
  let end = bytes.length;
  if (truncated) {
    // Step back over an incomplete multi-byte sequence at the cut.
    let i = end - 1;
    let continuation = 0;
    while (i >= 0 && continuation < 3 && (bytes[i]! & 0xc0) === 0x80) {
      i--;
      continuation++;
    }
    if (i >= 0) {
      const lead = bytes[i]!;
      const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
      if (need > continuation + 1) end = i;
    }
  }
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(0, end));
}

/**
 * Whether a run that exited on its own ran out of memory inside its language runtime rather
 * than at the cgroup limit: V8 aborting at its heap limit ("JavaScript heap out of memory"; the
 * heap limit equals the memory limit, so which one a runaway heap meets first varies, notably
 * under gVisor), or Python ending on an uncaught MemoryError. `stderrEnd` is the end of stderr.
 */
export function languageOutOfMemory(exitCode: number, stderrEnd: string): boolean {
  if (exitCode === 0) return false;
  if (/FATAL ERROR: .*JavaScript heap out of memory/.test(stderrEnd)) return true;
  const last = stderrEnd.trimEnd().split("\n").pop() ?? "";
  return /^MemoryError(:|$)/.test(last);
}

