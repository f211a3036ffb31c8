import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, promises as fs } from "node:fs";
import { join } from "node:path";
import type { BridgeSlot } from "../bridge/bridge.js";
import type { Bridge } from "../bridge/bridge.js";
import type { Config, ProfileName } from "../config/schema.js";
import { InputError, errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { Metrics, RunOutcome } from "../shared/metrics.js";
import { type AuditLog, noAudit } from "../stores/audit.js";
import type { SkillStore } from "../stores/skills.js";
import type { UserFiles } from "../stores/user-files.js";
import type { UserDirectories } from "../stores/user-dirs.js";
import type { Language, PreparedSandbox, RunResult, SandboxBackend } from "./backend.js";
import { type RuntimeName, defaultRuntime, runtimeFor } from "./runtimes.js";
import { type WarmEntry, WarmPool } from "./pool.js";
import { BusyError, RunLimiter } from "./limits.js";

export interface ExecuteRequest {
  userId: string;
  code: string;
  language: Language;
  /** node (default) or bun for TypeScript/JavaScript; Python always runs on python. */
  runtime?: RuntimeName | undefined;
  timeoutMs?: number | undefined;
  profile?: ProfileName | undefined;
  signal?: AbortSignal | undefined;
  onOutput?: ((stream: "stdout" | "stderr", chunk: Buffer) => void) | undefined;
}

export interface ExecutorDeps {
  config: Config;
  backend: SandboxBackend;
  dirs: UserDirectories;
  logger: Logger;
  bridge?: Bridge | undefined;
  audit?: AuditLog | undefined;
  metrics?: Metrics | undefined;
  /** Starter skills to mount read-only at /skills/<name>. */
  skills?: SkillStore | undefined;
  /** Where a run's full output goes when it passes the cap (a resource_link to it). */
  files?: UserFiles | undefined;
}

/** Warm containers are per user, profile and runtime: mounts and image are fixed at creation. */
function poolKey(userId: string, profile: ProfileName, runtime: RuntimeName): string {
  return `${userId}|${profile}|${runtime}`;
}

function outcomeOf(r: RunResult): RunOutcome {
  return r.timedOut ? "timeout" : r.oomKilled ? "oom" : r.canceled ? "canceled" : r.exitCode === 0 ? "ok" : "nonzero_exit";
}

/** Turns a validated tool call into a sandbox run: admission, limits, the user's directories, the bridge, the audit record. */
export class CodeExecutor {
  readonly limiter: RunLimiter;
  readonly pool: WarmPool;
  private readonly config: Config;
  private readonly audit: AuditLog;
  private accepting = true;

  constructor(private readonly deps: ExecutorDeps) {
    this.config = deps.config;
    this.audit = deps.audit ?? noAudit;
    const l = deps.config.limits;
    this.limiter = new RunLimiter({ maxConcurrent: l.maxConcurrentRuns, maxPerUser: l.maxRunsPerUser, maxQueued: l.maxQueuedRuns });
    this.pool = new WarmPool(deps.config.sandbox.pool, deps.backend, deps.logger);
  }

  /** Refuses new runs from now on (graceful shutdown); runs already admitted continue. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /**
   * Starts warm containers for a user ahead of their first run (stdio: the local user), in the
   * default runtime (Node when it is offered, else the first one offered).
   */
  prewarm(userId: string, runtime: RuntimeName = defaultRuntime(this.config.sandbox.runtimes)): void {
    if (!this.accepting || !this.config.sandbox.runtimes.includes(runtime)) return;
    const name = this.config.sandbox.profile;
    this.pool.refill(poolKey(userId, name, runtime), () => this.prepareEntry(userId, name, runtime, `warm-${randomUUID()}`, this.config.sandbox.profiles[name].timeoutMs, this.config.sandbox.pool.idleMs));
  }

  async close(): Promise<void> {
    this.accepting = false;
    await this.pool.close();
  }

  /** A started container for `userId` with their mounts and its own bridge socket, waiting for code. */
  private async prepareEntry(userId: string, profileName: ProfileName, runtime: RuntimeName, id: string, timeoutMs: number, idleMs: number): Promise<WarmEntry> {
    const generation = this.deps.bridge?.generation ?? 0;
    const mounts = await this.deps.dirs.ensure(userId);
    const slot = await this.deps.bridge?.openSlot(userId);
    try {
      const prepared = await this.deps.backend.prepare({
        runId: id,
        userId,
        runtime,
        profile: this.limits(profileName),
        timeoutMs,
        idleMs,
        mounts: { workspace: mounts.workspace, skills: mounts.skills },
        extraMounts: [...(slot?.mounts ?? []), ...((await this.deps.skills?.starterMounts()) ?? [])],
        ...(slot?.network ? { network: slot.network } : {}),
      });
      return { key: poolKey(userId, profileName, runtime), prepared, slot, generation, expiresAt: Date.now() + (idleMs || timeoutMs) };
    } catch (err) {
      await slot?.close();
      throw err;
    }
  }

  limits(profileName?: ProfileName) {
    const name = profileName ?? this.config.sandbox.profile;
    return { name, ...this.config.sandbox.profiles[name], maxCodeBytes: this.config.sandbox.maxCodeBytes, maxOutputBytes: this.config.sandbox.maxOutputBytes };
  }

  private spillDirReady = false;

  private spillPaths(runId: string) {
    const max = this.config.storage.spillMaxBytes;
    if (!this.deps.files || max === 0) return {};
    // Host-only: the sandbox never sees this directory.
    const dir = join(this.config.dataDir, "spill");
    if (!this.spillDirReady) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      this.spillDirReady = true;
    }
    return { spill: { stdoutPath: join(dir, `${runId}.stdout`), stderrPath: join(dir, `${runId}.stderr`), maxBytes: max } };
  }

  /** Output past the cap is saved whole into the user's workspace, for a resource_link. */
  private async keepFullOutput(userId: string, result: RunResult): Promise<void> {
    for (const stream of ["stdout", "stderr"] as const) {
      const spilled = stream === "stdout" ? result.stdoutSpill : result.stderrSpill;
      if (!spilled) continue;
      const rel = `.codebox/outputs/${result.runId}-${stream}.txt`;
      try {
        await this.deps.files!.writeWorkspace(userId, rel, await fs.readFile(spilled));
        if (stream === "stdout") result.stdoutFile = rel;
        else result.stderrFile = rel;
      } catch (err) {
        this.deps.logger.warn("could not save the full output into the workspace (quota?)", { runId: result.runId, err: errorMessage(err) });
      } finally {
        await fs.rm(spilled, { force: true });
      }
    }
    delete result.stdoutSpill;
    delete result.stderrSpill;
  }

  async execute(req: ExecuteRequest): Promise<RunResult> {
    const limits = this.limits(req.profile);
    const bytes = Buffer.byteLength(req.code, "utf8");
    if (bytes > limits.maxCodeBytes) {
      throw new InputError(`code is ${bytes} bytes; the limit is ${limits.maxCodeBytes} bytes. Send less code, or keep data in /workspace files and read them from the code.`);
    }
    if (req.timeoutMs !== undefined && req.timeoutMs > limits.timeoutMs) {
      throw new InputError(`timeoutMs ${req.timeoutMs} is above this server's limit of ${limits.timeoutMs} ms (profile "${limits.name}"). Omit timeoutMs or pass at most ${limits.timeoutMs}.`);
    }
    const runtime = runtimeFor(req.language, req.runtime, this.config.sandbox.runtimes);
    if (!this.accepting) throw new BusyError("it is shutting down and takes no new runs");
    const release = await this.limiter.acquire(req.userId, req.signal);
    const runId = randomUUID();
    const timeoutMs = req.timeoutMs ?? limits.timeoutMs;
    const record = {
      kind: "run" as const,
      userId: req.userId,
      runId,
      codeSha256: createHash("sha256").update(req.code).digest("hex"),
      language: req.language,
      runtime: this.config.sandbox.runtime,
      interpreter: runtime,
    };
    let bridge: BridgeSlot | undefined;
    const key = poolKey(req.userId, limits.name, runtime);
    try {
      const mounts = await this.deps.dirs.ensure(req.userId);
      await this.deps.dirs.volumes?.check([mounts.workspace, mounts.skills]);
      this.deps.logger.debug("run requested", { runId, userId: req.userId, language: req.language, runtime, codeBytes: bytes });
      // A warm container of this user and profile if there is one; otherwise start one now.
      const warm = this.pool.take(key, this.deps.bridge?.generation ?? 0);
      let prepared: PreparedSandbox;
      if (warm) {
        prepared = warm.prepared;
        prepared.warm = true;
        bridge = warm.slot;
      } else {
        const entry = await this.prepareEntry(req.userId, limits.name, runtime, runId, timeoutMs, 0);
        prepared = entry.prepared;
        bridge = entry.slot;
      }
      let env: Record<string, string>;
      try {
        env = bridge?.bind({ runId, timeoutMs }) ?? {};
      } catch (err) {
        await this.deps.backend.discard(prepared);
        throw err;
      }
      const result = await this.deps.backend.runPrepared(prepared, {
        runId,
        userId: req.userId,
        language: req.language,
        code: req.code,
        timeoutMs,
        env,
        ...(req.signal ? { signal: req.signal } : {}),
        ...(req.onOutput ? { onOutput: req.onOutput } : {}),
        ...this.spillPaths(runId),
      });
      await this.keepFullOutput(req.userId, result);
      const stats = bridge?.stats() ?? { calls: 0, refusals: 0 };
      this.deps.metrics?.run(outcomeOf(result), result.durationMs);
      this.audit.write({ ...record, durationMs: result.durationMs, exitCode: result.exitCode, timedOut: result.timedOut, oomKilled: result.oomKilled, canceled: result.canceled, upstreamCalls: stats.calls, refusals: stats.refusals });
      return result;
    } catch (err) {
      const stats = bridge?.stats() ?? { calls: 0, refusals: 0 };
      this.deps.metrics?.run(req.signal?.aborted ? "canceled" : "error", 0);
      this.audit.write({ ...record, durationMs: 0, exitCode: null, timedOut: false, oomKilled: false, canceled: req.signal?.aborted ?? false, upstreamCalls: stats.calls, refusals: stats.refusals, error: errorMessage(err) });
      throw err;
    } finally {
      // Security: the token dies and the socket disappears the moment the run ends.
      await bridge?.close();
      release();
      if (this.accepting) this.pool.refill(key, () => this.prepareEntry(req.userId, limits.name, runtime, `warm-${randomUUID()}`, limits.timeoutMs, this.config.sandbox.pool.idleMs));
      const spill = this.spillPaths(runId).spill;
      if (spill) await Promise.all([fs.rm(spill.stdoutPath, { force: true }), fs.rm(spill.stderrPath, { force: true })]);
    }
  }
}
