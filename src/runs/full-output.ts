// Output past the cap: the sandbox backend writes the whole stream (up to a limit) to a host-only
// spill file; after the run it is saved into the user's workspace for a resource_link, and the
// spill file is removed either way.
import { mkdirSync, promises as fs } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { SandboxOutcome } from "../sandbox/backend.js";

/** Where saved output goes in the workspace, relative to /workspace. */
export const OUTPUTS_DIR = ".codebox/outputs";

export interface WorkspaceWriter {
  writeWorkspace(userId: string, relativePath: string, data: Buffer): Promise<unknown>;
}

export interface SpillPaths {
  stdoutPath: string;
  stderrPath: string;
  maxBytes: number;
}

export class FullOutput {
  private readonly dir: string | undefined;

  constructor(
    dataDir: string,
    private readonly maxBytes: number,
    private readonly files: WorkspaceWriter | undefined,
    private readonly logger: Logger,
  ) {
    if (files && maxBytes > 0) {
      // Security: host-only; the sandbox never sees this directory.
      this.dir = join(dataDir, "spill");
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    }
  }

  /** The spill files of one run, or undefined when full output is not kept. */
  spillFor(runId: string): SpillPaths | undefined {
    if (!this.dir) return undefined;
    return { stdoutPath: join(this.dir, `${runId}.stdout`), stderrPath: join(this.dir, `${runId}.stderr`), maxBytes: this.maxBytes };
  }

  /** Saves each spilled stream into the workspace; returns the workspace-relative paths saved. */
  async keep(userId: string, runId: string, outcome: SandboxOutcome): Promise<{ stdoutFile?: string; stderrFile?: string }> {
    const saved: { stdoutFile?: string; stderrFile?: string } = {};
    for (const stream of ["stdout", "stderr"] as const) {
      const spilled = stream === "stdout" ? outcome.stdoutSpill : outcome.stderrSpill;
      if (!spilled || !this.files) continue;
      const rel = `${OUTPUTS_DIR}/${runId}-${stream}.txt`;
      try {
        await this.files.writeWorkspace(userId, rel, await fs.readFile(spilled));
        saved[stream === "stdout" ? "stdoutFile" : "stderrFile"] = rel;
      } catch (err) {
        this.logger.warn("could not save the full output into the workspace (quota?)", { runId, err: errorMessage(err) });
      }
    }
    return saved;
  }

  /** Removes a run's spill files (after keep(), or when the run failed). */
  async discard(runId: string): Promise<void> {
    const spill = this.spillFor(runId);
    if (spill) await Promise.all([fs.rm(spill.stdoutPath, { force: true }), fs.rm(spill.stderrPath, { force: true })]);
  }
}
