import { createWriteStream, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import { type Bounds, bounded } from "../shared/bounded.js";
import type { Logger } from "../shared/logger.js";

export interface RunAuditRecord {
  kind: "run";
  userId: string;
  runId: string;
  codeSha256: string;
  language: string;
  /** The language runtime (node, bun, python). */
  runtime: string;
  /** The OCI runtime (runc, runsc). */
  ociRuntime: string;
  durationMs: number;
  exitCode: number | null;
  timedOut: boolean;
  oomKilled: boolean;
  canceled: boolean;
  upstreamCalls: number;
  refusals: number;
  /** The run got a container started ahead of time (ready, or taken over while it started). */
  warm?: boolean;
  error?: string;
}

export type AuditRecord =
  | RunAuditRecord
  | { kind: "call"; runId: string; userId: string; server: string; tool: string; ok: boolean; durationMs: number; responseBytes: number; error?: string }
  | { kind: "refusal"; runId: string; status: number; reason: string; server?: string; tool?: string }
  | { kind: "egress"; runId: string; host: string; port: number; allowed: boolean; reason?: string; address?: string; bytesUp?: number; bytesDown?: number };

export interface AuditLog {
  write(record: AuditRecord): void;
  close(): Promise<void>;
}

export interface FileAuditOptions {
  path: string;
  /** The active file is rotated when it would grow past this. */
  maxBytes: number;
  /** Rotated files kept (audit.log.1 … audit.log.N); older ones are deleted. */
  maxFiles: number;
  logger: Logger;
}

/** Strings in audit records are cut like log fields, a little longer. */
const AUDIT_BOUNDS: Bounds = { maxString: 512, maxItems: 40, maxDepth: 4 };
/** Bytes waiting for the disk past which records are dropped (and counted) rather than queued. */
const MAX_PENDING_BYTES = 1024 * 1024;

/**
 * One JSON line per run and per callback (call or refusal), appended to a file that rotates at a
 * size cap. Never blocks a run and never grows without bound: every string is cut, the files are
 * capped (maxBytes × (maxFiles + 1) at most), and when the disk falls behind, records are dropped
 * and the drop is logged.
 */
export class FileAuditLog implements AuditLog {
  private stream: WriteStream | undefined;
  private bytes = 0;
  private dropped = 0;

  constructor(private readonly o: FileAuditOptions) {}

  write(record: AuditRecord): void {
    try {
      const line = `${JSON.stringify({ time: new Date().toISOString(), ...(bounded(record, AUDIT_BOUNDS) as object) })}\n`;
      const size = Buffer.byteLength(line);
      const stream = this.stream ?? this.open();
      if (stream.writableLength > MAX_PENDING_BYTES) {
        if (this.dropped++ % 1000 === 0) this.o.logger.warn("audit log is behind; dropping records", { path: this.o.path, dropped: this.dropped });
        return;
      }
      if (this.bytes > 0 && this.bytes + size > this.o.maxBytes) this.rotate();
      (this.stream ?? this.open()).write(line);
      this.bytes += size;
    } catch (err) {
      this.o.logger.error("audit log unavailable", { path: this.o.path, err });
    }
  }

  /** Bytes in the active file (what rotation counts). */
  get activeBytes(): number {
    return this.bytes;
  }

  private open(): WriteStream {
    mkdirSync(dirname(this.o.path), { recursive: true, mode: 0o700 });
    try {
      this.bytes = statSync(this.o.path).size;
    } catch {
      this.bytes = 0;
    }
    // The descriptor is opened now, not asynchronously by the stream: rotation can rename the file
    // at once, and what the old stream still has to write lands in the renamed file.
    const stream = createWriteStream(this.o.path, { fd: openSync(this.o.path, "a", 0o600) });
    stream.on("error", (err) => this.o.logger.error("audit log write failed", { path: this.o.path, err }));
    this.stream = stream;
    return stream;
  }

  /** audit.log → audit.log.1 → … → audit.log.<maxFiles>; the oldest is deleted. */
  private rotate(): void {
    this.stream?.end();
    this.stream = undefined;
    const { path, maxFiles } = this.o;
    rmSync(`${path}.${maxFiles}`, { force: true });
    for (let i = maxFiles - 1; i >= 1; i--) {
      if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    }
    if (maxFiles > 0) renameSync(path, `${path}.1`);
    else rmSync(path, { force: true });
    this.bytes = 0;
  }

  close(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    return s ? new Promise((resolve) => s.end(() => resolve())) : Promise.resolve();
  }
}

export const noAudit: AuditLog = { write: () => {}, close: async () => {} };
