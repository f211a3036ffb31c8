// The host's reader of the runner's completion line (see runner.ts): passes a stream through
// unchanged except for that one line, which it removes and reports. Every byte here was written
// by sandboxed code, which may also know the nonce: memory stays bounded whatever arrives.
import { Writable } from "node:stream";

/** The longest exit code a trailer may carry ("-2147483648"); a longer "code" is not a trailer. */
const MAX_CODE_CHARS = 11;
const EXIT_CODE = /^-?[0-9]{1,10}$/;

/** Length of the longest suffix of `buf` that is a proper prefix of `marker` (a trailer that may continue in the next chunk). */
export function partialMarkerAt(buf: Buffer, marker: Buffer): number {
  const first = marker[0]!;
  for (let k = Math.min(buf.length, marker.length - 1); k > 0; k--) {
    const start = buf.length - k;
    if (buf[start] === first && buf.subarray(start).equals(marker.subarray(0, k))) return k;
  }
  return 0;
}

export class CompletionTrailer extends Writable {
  private held: Buffer = Buffer.alloc(0);
  private readonly marker: Buffer;
  private resolveDone: ((code: number) => void) | undefined;
  /** The exit code the runner reported, once its line has arrived. */
  code: number | undefined;
  /** Resolves with the exit code when the completion line has arrived. */
  readonly done: Promise<number>;

  constructor(
    /** The completion prefix sent to the runner in its payload (tag + nonce + ":"). */
    prefix: string,
    private readonly target: Writable,
  ) {
    super();
    this.marker = Buffer.from(prefix, "latin1");
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.consume(this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk);
    cb();
  }

  private consume(input: Buffer): void {
    let buf = input;
    this.held = Buffer.alloc(0);
    while (this.code === undefined && buf.length > 0) {
      const at = buf.indexOf(this.marker);
      if (at < 0) {
        // Hold back only what could be the start of the marker.
        const keep = partialMarkerAt(buf, this.marker);
        this.pass(buf.subarray(0, buf.length - keep));
        this.held = Buffer.from(buf.subarray(buf.length - keep));
        return;
      }
      this.pass(buf.subarray(0, at));
      const afterMarker = at + this.marker.length;
      const window = buf.subarray(afterMarker, afterMarker + MAX_CODE_CHARS + 1);
      const nl = window.indexOf(10);
      if (nl < 0 && window.length <= MAX_CODE_CHARS) {
        // The code may still arrive: hold the marker and what follows (bounded by MAX_CODE_CHARS).
        this.held = Buffer.from(buf.subarray(at));
        return;
      }
      const text = nl < 0 ? "" : window.subarray(0, nl).toString("latin1");
      if (nl >= 0 && EXIT_CODE.test(text)) {
        this.code = Number(text);
        buf = buf.subarray(afterMarker + nl + 1);
        this.resolveDone?.(this.code);
        break;
      }
      // Not a trailer after all (no newline in reach, or no number): it is output.
      this.pass(buf.subarray(at, afterMarker));
      buf = buf.subarray(afterMarker);
    }
    this.pass(buf);
  }

  private pass(bytes: Buffer): void {
    if (bytes.length > 0) this.target.write(bytes);
  }

  /** Hands on anything held back (the stream ended without a complete trailer). */
  flushHeld(): void {
    this.pass(this.held);
    this.held = Buffer.alloc(0);
  }
}
