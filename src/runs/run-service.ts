// The run lifecycle, the one place that knows the sandbox, the bridge and the stores together:
// admit → prepare (or take a warm container) → hand over → collect → release.
import { createHash, randomUUID } from "node:crypto";
import { availableParallelism } from "node:os";
import type { Bridge, BridgeSlot } from "../bridge/bridge.js";
import type { Egress, EgressEndpoint } from "../egress/egress.js";
import { EgressPolicy } from "../egress/policy.js";
import type { EgressSummary } from "../egress/proxy.js";
import type { Config, ProfileName } from "../config/schema.js";
import type { PreparedSandbox, SandboxBackend, SandboxOutcome } from "../sandbox/backend.js";
import { BusyError, InputError, errorMessage } from "../shared/errors.js";
import { type Language, type RuntimeName, defaultRuntime, runtimeFor } from "../shared/languages.js";
import type { Logger } from "../shared/logger.js";
import type { Metrics, RunOutcome } from "../shared/metrics.js";
import { type AuditLog, type RunAuditRecord, noAudit } from "../stores/audit.js";
import type { SkillStore } from "../stores/skills.js";
import type { UserDirectories } from "../stores/user-dirs.js";
import { RunLimiter } from "./admission.js";
import { RunDisplays, type ShownItem, type WorkspaceFiles, outputsFolder, returnOutputs } from "./display.js";
import { FullOutput } from "./full-output.js";
import { loadNodeMainTools, prepareNodeMain } from "./node-main.js";
import { type WarmEntry, WarmPool } from "./warm-pool.js";
import { sizeText } from "../shared/format.js";

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
  /** A folder in /workspace whose files written by this run the result returns. */
  outputs?: string | undefined;
  /** Destinations this run may reach, within what the operator allows the user; undefined: all of those. */
  allowHosts?: string[] | undefined;
}

/** What a run did, as the tools report it. */
export interface RunResult extends Omit<SandboxOutcome, "stdoutSpill" | "stderrSpill"> {
  runId: string;
  /** It ran in a container started ahead of time (the pool's), not one started for it. */
  warm: boolean;
  /** Workspace-relative paths of the saved full output, when a stream passed the cap. */
  stdoutFile?: string | undefined;
  stderrFile?: string | undefined;
  /** Images the code showed and files it returned (outputs), in order. */
  shown: ShownItem[];
  /** Lines about what was not shown or returned, and why. */
  notes: string[];
  /** What the run reached through the egress proxy and what it was refused (runs allowed egress). */
  egress?: EgressSummary | undefined;
}

export interface RunServiceDeps {
  config: Config;
  backend: SandboxBackend;
  dirs: UserDirectories;
  logger: Logger;
  bridge?: Bridge | undefined;
  egress?: Egress | undefined;
  audit?: AuditLog | undefined;
  metrics?: Metrics | undefined;
  /** Starter skills to mount read-only at /skills/<name>. */
  skills?: SkillStore | undefined;
  /** Where a run's full output and big images go (a resource_link to them), and where outputs are read. */
  files?: WorkspaceFiles | undefined;
}

/** Warm containers are per user, profile and runtime: mounts and image are fixed at creation. */
export function poolKey(userId: string, profile: ProfileName, runtime: RuntimeName): string {
  return `${userPoolPrefix(userId)}${profile}|${runtime}`;
}

/** What every pool key of a user starts with. */
export const userPoolPrefix = (userId: string) => `${userId}|`;

export function outcomeOf(r: Pick<SandboxOutcome, "timedOut" | "oomKilled" | "exitCode">): RunOutcome {
  return r.timedOut ? "timeout" : r.oomKilled ? "oom" : r.exitCode === 0 ? "ok" : "nonzero_exit";
}

export class RunService {
  readonly admission: RunLimiter;
  readonly pool: WarmPool;
  private readonly config: Config;
  private readonly audit: AuditLog;
  private readonly output: FullOutput;
  private accepting = true;

  constructor(private readonly deps: RunServiceDeps) {
    this.config = deps.config;
    this.audit = deps.audit ?? noAudit;
    const l = deps.config.limits;
    this.admission = new RunLimiter({ maxConcurrent: l.maxConcurrentRuns, maxPerUser: l.maxRunsPerUser, maxQueued: l.maxQueuedRuns });
    const p = deps.config.sandbox.pool;
    this.pool = new WarmPool({ ...p, maxStarting: p.maxStarting || Math.max(2, availableParallelism()) }, deps.backend, deps.logger);
    this.output = new FullOutput(deps.config.dataDir, deps.config.storage.spillMaxBytes, deps.files, deps.logger);
  }

  /** Refuses new runs from now on (graceful shutdown); runs already admitted continue. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Runs admitted and not yet finished, and runs waiting for a slot. */
  get inFlight(): { active: number; queued: number } {
    return this.admission.stats;
  }

  /**
   * Starts warm containers for a user ahead of their first run (stdio: the local user), in the
   * default runtime (Node when it is offered, else the first one offered).
   */
  prewarm(userId: string, runtime: RuntimeName = defaultRuntime(this.config.sandbox.runtimes)): void {
    if (!this.accepting || !this.config.sandbox.runtimes.includes(runtime)) return;
    this.refill(userId, this.config.sandbox.profile, runtime);
    if (runtime === "node") void loadNodeMainTools()?.catch(() => {});
  }

  private refill(userId: string, profile: ProfileName, runtime: RuntimeName): void {
    const { idleMs } = this.config.sandbox.pool;
    this.pool.refill(poolKey(userId, profile, runtime), () => this.prepareEntry(userId, profile, runtime, `warm-${randomUUID()}`, this.config.sandbox.profiles[profile].timeoutMs, idleMs));
  }

  /** Removes the user's warm containers and keeps none until `keepWarm` (a move takes their data away). */
  dropWarm(userId: string): Promise<void> {
    return this.pool.hold(userPoolPrefix(userId));
  }

  keepWarm(userId: string): void {
    this.pool.release(userPoolPrefix(userId));
  }

  async close(): Promise<void> {
    this.accepting = false;
    await this.pool.close();
  }

  /** The limits of a profile (the configured one by default). */
  limits(profileName?: ProfileName) {
    const name = profileName ?? this.config.sandbox.profile;
    return { name, ...this.config.sandbox.profiles[name], maxCodeBytes: this.config.sandbox.maxCodeBytes, maxOutputBytes: this.config.sandbox.maxOutputBytes };
  }

  /** A started container for `userId` with their mounts and its own bridge socket, waiting for code. */
  private async prepareEntry(userId: string, profileName: ProfileName, runtime: RuntimeName, id: string, timeoutMs: number, idleMs: number): Promise<WarmEntry> {
    const mounts = await this.deps.dirs.ensure(userId);
    // The bridge's TCP mode runs each user's sandboxes on a network of their own with no route out.
    const b = this.config.bridge;
    const network = this.deps.bridge && b.transport === "tcp" && b.tcpNetwork === "internal" ? await this.deps.backend.userNetwork(userId) : undefined;
    const slot = await this.deps.bridge?.openSlot(userId, network);
    let egress: EgressEndpoint | undefined;
    try {
      egress = await this.deps.egress?.open(userId);
      const prepared = await this.deps.backend.prepare({
        id,
        userId,
        runtime,
        profile: this.limits(profileName),
        timeoutMs,
        idleMs,
        mounts: { workspace: mounts.workspace, skills: mounts.skills, deps: mounts.deps },
        extraMounts: [...(slot?.mounts ?? []), ...(egress ? [egress.mount] : []), ...((await this.deps.skills?.starterMounts()) ?? [])],
        network: slot?.network,
      });
      return { key: poolKey(userId, profileName, runtime), prepared, slot, egress, serversVersion: slot?.serversVersion ?? "", expiresAt: Date.now() + (idleMs || timeoutMs) };
    } catch (err) {
      await Promise.allSettled([slot?.close(), egress?.close()]);
      throw err;
    }
  }

  /** Checks a request against the profile's limits before it takes a slot. */
  private validate(req: ExecuteRequest) {
    const limits = this.limits(req.profile);
    const bytes = Buffer.byteLength(req.code, "utf8");
    if (bytes > limits.maxCodeBytes) {
      throw new InputError(`code is ${bytes} bytes; the limit is ${limits.maxCodeBytes} bytes. Send less code, or keep data in /workspace files and read them from the code.`);
    }
    if (req.timeoutMs !== undefined && req.timeoutMs > limits.timeoutMs) {
      throw new InputError(`timeoutMs ${req.timeoutMs} is above this server's limit of ${limits.timeoutMs} ms (profile "${limits.name}"). Omit timeoutMs or pass at most ${limits.timeoutMs}.`);
    }
    const runtime = runtimeFor(req.language, req.runtime, this.config.sandbox.runtimes);
    const outputs = req.outputs === undefined ? undefined : outputsFolder(req.outputs);
    if (typeof outputs === "object") throw new InputError(outputs.error);
    if (outputs !== undefined && !this.deps.files) throw new InputError("this server keeps no workspace files: omit outputs");
    // What the run may reach: the operator's list for the user, narrowed to what the run asked for.
    const operator = this.deps.egress?.policyFor(req.userId) ?? EgressPolicy.none();
    if (req.allowHosts !== undefined && req.allowHosts.length > 0 && operator.empty) {
      throw new InputError("this server allows your runs no network destinations: omit allowHosts (an operator lists them in the egress config)");
    }
    const egressPolicy = operator.narrow(req.allowHosts);
    if (!this.accepting) throw new BusyError("it is shutting down and takes no new runs");
    return { limits, runtime, bytes, outputs, egressPolicy, timeoutMs: req.timeoutMs ?? limits.timeoutMs };
  }

  /**
   * A warm container of this user, profile and runtime if one is ready or being started; otherwise
   * one started now.
   */
  private async sandboxFor(req: ExecuteRequest, profile: ProfileName, runtime: RuntimeName, runId: string, timeoutMs: number): Promise<{ prepared: PreparedSandbox; slot: BridgeSlot | undefined; egress: EgressEndpoint | undefined; warm: boolean }> {
    const key = poolKey(req.userId, profile, runtime);
    const warm = await this.pool.acquire(key, () => this.deps.bridge?.serversVersion(req.userId) ?? "");
    // Calls coming faster than the pool refills (it has grown): start the next now. Otherwise the
    // refill waits for this run to end, so the start does not compete with it for the cores.
    if (this.accepting && this.pool.target(key) > this.config.sandbox.pool.size) this.refill(req.userId, profile, runtime);
    if (warm) return { prepared: warm.prepared, slot: warm.slot, egress: warm.egress, warm: true };
    const entry = await this.pool.gate.enqueue(() => this.prepareEntry(req.userId, profile, runtime, runId, timeoutMs, 0), "now").promise;
    return { prepared: entry.prepared, slot: entry.slot, egress: entry.egress, warm: false };
  }

  async execute(req: ExecuteRequest): Promise<RunResult> {
    const { limits, runtime, bytes, outputs, egressPolicy, timeoutMs } = this.validate(req);
    const release = await this.admission.acquire(req.userId, req.signal);
    const runId = randomUUID();
    const record: Omit<RunAuditRecord, "durationMs" | "exitCode" | "timedOut" | "oomKilled" | "canceled" | "upstreamCalls" | "refusals"> = {
      kind: "run",
      userId: req.userId,
      runId,
      codeSha256: createHash("sha256").update(req.code).digest("hex"),
      language: req.language,
      runtime,
      ociRuntime: this.config.sandbox.ociRuntime,
    };
    let slot: BridgeSlot | undefined;
    let egress: EgressEndpoint | undefined;
    try {
      const mounts = await this.deps.dirs.ensure(req.userId);
      await this.deps.dirs.volumes?.check([mounts.workspace, mounts.skills]);
      this.deps.logger.debug("run requested", { runId, userId: req.userId, language: req.language, runtime, codeBytes: bytes });
      const sandbox = await this.sandboxFor(req, limits.name, runtime, runId, timeoutMs);
      slot = sandbox.slot;
      egress = sandbox.egress;
      const displays = new RunDisplays(this.config.display, this.deps.files, req.userId, runId);
      let env: Record<string, string>;
      try {
        env = { ...(slot?.bind({ runId, timeoutMs, display: displays }) ?? {}), ...(egress?.bind(runId, egressPolicy) ?? {}) };
      } catch (err) {
        await this.deps.backend.discard(sandbox.prepared);
        throw err;
      }
      // Node: TypeScript stripped here (the stripper is loaded once), and plain code marked as such.
      const main = runtime === "node" ? await prepareNodeMain(req.code, req.language) : { code: req.code, language: req.language, plain: false };
      // The run ends when its client cancels, or when its bridge finds it misbehaving.
      const signals = [req.signal, slot?.ended].filter((s): s is AbortSignal => s !== undefined);
      const started = Date.now();
      const outcome = await this.deps.backend.run(sandbox.prepared, {
        runId,
        language: main.language,
        code: main.code,
        plain: main.plain,
        timeoutMs,
        warm: sandbox.warm,
        env,
        signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0],
        onOutput: req.onOutput,
        spill: this.output.spillFor(runId),
      });
      const { stdoutSpill: _o, stderrSpill: _e, ...rest } = outcome;
      const returned = outputs !== undefined && this.deps.files ? await returnOutputs(this.deps.files, this.config.display, req.userId, outputs, started, displays) : { items: [], lines: [] };
      const shown = [...displays.items, ...returned.items];
      const reached = egress && !egressPolicy.empty ? egress.summary() : undefined;
      const result: RunResult = { runId, warm: sandbox.warm, ...rest, ...(await this.output.keep(req.userId, runId, outcome)), shown, notes: [...displays.lines, ...returned.lines, ...egressLines(reached)], ...(reached ? { egress: reached } : {}) };
      const stats = slot?.stats() ?? { calls: 0, refusals: 0 };
      this.deps.metrics?.run(outcomeOf(result), result.durationMs);
      this.audit.write({ ...record, durationMs: result.durationMs, exitCode: result.exitCode, timedOut: result.timedOut, oomKilled: result.oomKilled, canceled: false, upstreamCalls: stats.calls, refusals: stats.refusals, warm: sandbox.warm });
      return result;
    } catch (caught) {
      // A run its bridge ended says why, not "canceled by the client".
      const err = slot?.ended.aborted && !req.signal?.aborted ? slot.ended.reason : caught;
      const stats = slot?.stats() ?? { calls: 0, refusals: 0 };
      const canceled = req.signal?.aborted ?? false;
      this.deps.metrics?.run(canceled ? "canceled" : "error", 0);
      this.audit.write({ ...record, durationMs: 0, exitCode: null, timedOut: false, oomKilled: false, canceled, upstreamCalls: stats.calls, refusals: stats.refusals, error: errorMessage(err) });
      throw err;
    } finally {
      // Security: the token dies and the sockets disappear the moment the run ends.
      await Promise.allSettled([slot?.close(), egress?.close()]);
      release();
      if (this.accepting) this.refill(req.userId, limits.name, runtime);
      await this.output.discard(runId);
    }
  }
}

/** The result's lines about egress: where the run went, and what it was refused. */
function egressLines(s: EgressSummary | undefined): string[] {
  if (!s) return [];
  const lines: string[] = [];
  if (s.reached.length > 0) lines.push(`egress: reached ${s.reached.map((r) => `${r.host}:${r.port} (${r.connections} connection${r.connections === 1 ? "" : "s"}, ${sizeText(r.bytes)})`).join(", ")}`);
  for (const r of s.refused) lines.push(`egress refused ${r.host}:${r.port}: ${r.reason}`);
  return lines;
}
