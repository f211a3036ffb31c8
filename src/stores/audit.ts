import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
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
  error?: string;
}

export type AuditRecord =
  | RunAuditRecord
  | { kind: "call"; runId: string; userId: string; server: string; tool: string; ok: boolean; durationMs: number; responseBytes: number; error?: string }
  | { kind: "refusal"; runId: string; status: number; reason: string; server?: string; tool?: string };

export interface AuditLog {
  write(record: AuditRecord): void;
  close(): Promise<void>;
}

/** One JSON line per run and per callback (call or refusal), appended to a file. */
export class FileAuditLog implements AuditLog {
  private stream: WriteStream | undefined;

  constructor(
    private readonly path: string,
    private readonly logger: Logger,
  ) {}

  write(record: AuditRecord): void {
    try {
      if (!this.stream) {
        mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
        this.stream = createWriteStream(this.path, { flags: "a", mode: 0o600 });
        this.stream.on("error", (err) => this.logger.error("audit log write failed", { path: this.path, err }));
      }
      this.stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
    } catch (err) {
      this.logger.error("audit log unavailable", { path: this.path, err });
    }
  }

  close(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    return s ? new Promise((resolve) => s.end(() => resolve())) : Promise.resolve();
  }
}

export const noAudit: AuditLog = { write: () => {}, close: async () => {} };
