import { Writable } from "node:stream";

/**
 * Keeps the first `capBytes` bytes written to it and counts the rest. The sandbox may print
 * anything (gigabytes, no newlines, invalid UTF-8); memory use stays bounded by the cap.
 */
export class CappedOutput extends Writable {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  totalBytes = 0;

  constructor(private readonly capBytes: number) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.totalBytes += chunk.length;
    const room = this.capBytes - this.kept;
    if (room > 0) {
      const piece = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.chunks.push(Buffer.from(piece));
      this.kept += piece.length;
    }
    done();
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
