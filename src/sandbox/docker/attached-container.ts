// A started sandbox container with its attach stream open: the runner inside waits on stdin for
// its payload. Created ahead of time by the warm pool or just before a cold run.
import type { Duplex } from "node:stream";
import { Writable } from "node:stream";
import type Docker from "dockerode";
import type { PreparedSandbox } from "../backend.js";

/** Bytes of early output (a runner that crashed at boot) kept for the run that takes the container. */
const EARLY_OUTPUT_BYTES = 64 * 1024;

/**
 * Output of a container before it has a run: a pooled container's runner prints nothing until
 * it gets its code, but anything it does print (a crash at boot) is kept, bounded, and handed on.
 */
export class SwitchableSink extends Writable {
  private target: Writable | undefined;
  private early: Buffer[] = [];
  private earlyBytes = 0;

  attach(target: Writable): void {
    this.target = target;
    for (const b of this.early) target.write(b);
    this.early = [];
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.target) {
      this.target.write(chunk);
    } else if (this.earlyBytes < EARLY_OUTPUT_BYTES) {
      const piece = chunk.subarray(0, EARLY_OUTPUT_BYTES - this.earlyBytes);
      this.early.push(Buffer.from(piece));
      this.earlyBytes += piece.length;
    }
    done();
  }
}

export class AttachedContainer implements PreparedSandbox {
  readonly createdAt = Date.now();
  private exitedOrCut = false;
  readonly stdout = new SwitchableSink();
  readonly stderr = new SwitchableSink();
  /** Resolves when the attach stream ends (the container exited, or the engine connection broke). */
  readonly streamDone: Promise<void>;
  /** The engine's exit report. */
  readonly exited: Promise<{ StatusCode: number }>;

  constructor(
    readonly container: Docker.Container,
    readonly stream: Duplex,
    demux: (stream: Duplex, stdout: Writable, stderr: Writable) => void,
  ) {
    this.streamDone = new Promise<void>((resolve) => {
      stream.once("end", resolve);
      stream.once("close", resolve);
      stream.once("error", () => resolve());
    });
    demux(stream, this.stdout, this.stderr);
    // "next-exit": the default condition ("not-running") answers at once for a created container.
    this.exited = container.wait({ condition: "next-exit" }) as Promise<{ StatusCode: number }>;
    // A container that dies while it waits (killed, OOM at boot), or whose connection to the
    // engine broke (engine restarted), must never be handed a run.
    const markDead = () => {
      this.exitedOrCut = true;
    };
    this.exited.then(markDead, markDead);
    void this.streamDone.then(markDead);
  }

  get id(): string {
    return this.container.id;
  }

  get dead(): boolean {
    return this.exitedOrCut;
  }
}
