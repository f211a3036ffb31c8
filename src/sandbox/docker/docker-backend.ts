import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Duplex } from "node:stream";
import type Docker from "dockerode";
import type { Config } from "../../config/schema.js";
import { CanceledError, CodeboxError, EngineUnavailableError, ImageBuildError, RuntimeMissingError, SandboxError, errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { packagePath } from "../../shared/paths.js";
import { Writable, type Duplex as DuplexStream } from "node:stream";
import type { EngineInfo, PreparedSandbox, PrepareRequest, RunInput, RunRequest, RunResult, SandboxBackend } from "../backend.js";
import { CappedOutput, languageOutOfMemory } from "../output.js";
import { RUNTIME_SPECS, type RuntimeName } from "../runtimes.js";
import { createDockerClient, engineStatus, toEngineError } from "./engine.js";
import { containerSpec } from "./host-config.js";
import { buildImage, defaultImageTag } from "./image-builder.js";
import { LABEL, containerLabels, currentInstance, type ServerInstance } from "./labels.js";
import { reapOrphans } from "./reaper.js";

interface SeccompProfile {
  syscalls: Array<{ names: string[]; action: string; errnoRet?: number }>;
}

/**
 * gVisor applies the OCI profile inside its own kernel (runsc --oci-seccomp) but ignores a
 * rule's errnoRet: clone3 would fail with EPERM instead of ENOSYS and glibc would not fall back
 * to clone, so no thread could start. Under gVisor clone3 is allowed: it reaches gVisor's
 * kernel, not the host's, and namespaces made there are gVisor's own.
 */
export function forRuntime(profile: SeccompProfile, runtime: "runc" | "runsc"): SeccompProfile {
  if (runtime !== "runsc") return profile;
  return {
    ...profile,
    syscalls: profile.syscalls.map((s) => (s.names.length === 1 && s.names[0] === "clone3" ? { names: ["clone3"], action: "SCMP_ACT_ALLOW" } : s)),
  };
}

/**
 * Output of a container before it has a run: a pooled container's runner prints nothing until
 * it gets its code, but anything it does print (a crash at boot) is kept, bounded, and handed on.
 */
class SwitchableSink extends Writable {
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
    } else if (this.earlyBytes < 64 * 1024) {
      this.early.push(Buffer.from(chunk));
      this.earlyBytes += chunk.length;
    }
    done();
  }
}

class DockerPrepared implements PreparedSandbox {
  readonly createdAt = Date.now();
  dead = false;
  warm = false;
  constructor(
    readonly container: Docker.Container,
    readonly stream: DuplexStream,
    readonly streamDone: Promise<void>,
    readonly exited: Promise<{ StatusCode: number }>,
    readonly stdout: SwitchableSink,
    readonly stderr: SwitchableSink,
    readonly userId: string,
  ) {
    // A container that dies while it waits (killed, OOM at boot), or whose connection to the
    // engine broke (engine restarted), must never be handed a run.
    exited.then(
      () => (this.dead = true),
      () => (this.dead = true),
    );
    void streamDone.then(() => (this.dead = true));
  }

  get id(): string {
    return this.container.id;
  }
}

/**
 * Passes stderr through, except the runner's completion line (NUL, "CODEBOX-DONE:<nonce>:<code>",
 * newline), which it removes and reports. Holds back only as many bytes as could start one.
 */
class CompletionTrailer extends Writable {
  private held = Buffer.alloc(0);
  private readonly marker: Buffer;
  code: number | undefined;
  private onDone: ((code: number) => void) | undefined;
  readonly done: Promise<number>;

  constructor(
    nonce: string,
    private readonly target: Writable,
  ) {
    super();
    this.marker = Buffer.from(`\u0000CODEBOX-DONE:${nonce}:`);
    this.done = new Promise((resolve) => (this.onDone = resolve));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = Buffer.alloc(0);
    if (this.code === undefined) {
      const at = buf.indexOf(this.marker);
      if (at >= 0) {
        const nl = buf.indexOf(10, at + this.marker.length);
        if (nl >= 0) {
          const code = Number(buf.subarray(at + this.marker.length, nl).toString("latin1"));
          this.code = Number.isInteger(code) ? code : 0;
          if (at > 0) this.target.write(buf.subarray(0, at));
          buf = buf.subarray(nl + 1);
          this.onDone?.(this.code);
        } else {
          if (at > 0) this.target.write(buf.subarray(0, at));
          this.held = Buffer.from(buf.subarray(at));
          return cb();
        }
      } else {
        // Keep a tail that could be the start of the marker.
        const keep = Math.min(buf.length, this.marker.length + 12);
        const start = buf.lastIndexOf(0, buf.length - 1);
        const hold = start >= 0 && start >= buf.length - keep ? buf.length - start : 0;
        if (buf.length - hold > 0) this.target.write(buf.subarray(0, buf.length - hold));
        this.held = Buffer.from(buf.subarray(buf.length - hold));
        return cb();
      }
    }
    if (buf.length) this.target.write(buf);
    cb();
  }

  /** Hands on anything held back (the stream ended without a complete trailer). */
  flushHeld(): void {
    if (this.held.length) this.target.write(this.held);
    this.held = Buffer.alloc(0);
  }
}

/** How long after exit we keep reading output still in flight on the attach stream. */
const DRAIN_GRACE_MS = 2_000;
/** Extra lifetime in a container's expiry label beyond its run timeout (create, start, drain). */
const EXPIRY_MARGIN_MS = 60_000;

export interface DockerBackendOptions {
  config: Config;
  logger: Logger;
  docker?: Docker;
  instance?: ServerInstance;
}

export class DockerSandboxBackend implements SandboxBackend {
  readonly docker: Docker;
  readonly instance: ServerInstance;
  private readonly config: Config;
  private readonly logger: Logger;
  private readonly imageTags: Record<RuntimeName, string>;
  private readonly imageReady = new Map<RuntimeName, Promise<string>>();
  private seccompJson: string | undefined;
  private readonly live = new Set<string>();
  private readonly pendingRemovals = new Set<Promise<void>>();

  /** Containers this server has alive right now. */
  get activeContainers(): number {
    return this.live.size;
  }
  private runtimeChecked = false;

  constructor(options: DockerBackendOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.docker = options.docker ?? createDockerClient(options.config.docker);
    this.instance = options.instance ?? currentInstance();
    const s = options.config.sandbox;
    this.imageTags = {
      node: s.image ?? defaultImageTag("node"),
      bun: s.images.bun ?? defaultImageTag("bun"),
      python: s.images.python ?? defaultImageTag("python"),
    };
  }

  /** Node's image (the default runtime). */
  get image(): string {
    return this.imageTags.node;
  }

  imageFor(runtime: RuntimeName): string {
    return this.imageTags[runtime];
  }

  private configuredImage(runtime: RuntimeName): string | undefined {
    const s = this.config.sandbox;
    return runtime === "node" ? s.image : s.images[runtime];
  }

  /** The seccomp profile as JSON text, parsed once to fail early on a broken file. */
  seccomp(): string {
    if (this.seccompJson === undefined) {
      const path = this.config.sandbox.seccompProfile ?? packagePath("seccomp", "profile.json");
      let text: string;
      try {
        text = readFileSync(path, "utf8");
        const parsed = JSON.parse(text) as { defaultAction?: unknown; syscalls?: unknown };
        if (typeof parsed.defaultAction !== "string" || !Array.isArray(parsed.syscalls)) throw new Error("missing defaultAction or syscalls");
      } catch (err) {
        throw new SandboxError(`The seccomp profile ${path} cannot be used: ${errorMessage(err)}. Fix the file or unset sandbox.seccompProfile.`, err);
      }
      this.seccompJson = JSON.stringify(forRuntime(JSON.parse(text) as SeccompProfile, this.config.sandbox.runtime));
    }
    return this.seccompJson;
  }

  async engineInfo(): Promise<EngineInfo> {
    try {
      const [version, info] = await Promise.all([this.docker.version(), this.docker.info() as Promise<{ Runtimes?: Record<string, unknown>; OperatingSystem?: string }>]);
      return {
        version: version.Version,
        apiVersion: version.ApiVersion,
        runtimes: Object.keys(info.Runtimes ?? {}),
        os: info.OperatingSystem ?? "unknown",
      };
    } catch (err) {
      throw toEngineError(err);
    }
  }

  async imageExists(runtime: RuntimeName = "node"): Promise<boolean> {
    try {
      await this.docker.getImage(this.imageTags[runtime]).inspect();
      return true;
    } catch (err) {
      if (engineStatus(err) === 404) return false;
      throw toEngineError(err);
    }
  }

  /** Builds a runtime's image once if it is missing; concurrent callers share one build. */
  ensureImage(runtime: RuntimeName = "node"): Promise<string> {
    let ready = this.imageReady.get(runtime);
    if (!ready) {
      const tag = this.imageTags[runtime];
      ready = (async () => {
        if (await this.imageExists(runtime)) return tag;
        if (this.configuredImage(runtime)) {
          throw new ImageBuildError(`the configured ${runtime} image ${tag} does not exist on the engine; build it or unset ${runtime === "node" ? "sandbox.image" : `sandbox.images.${runtime}`}`);
        }
        // warn, not info: the one line that explains why this first call takes a while.
        this.logger.warn(`sandbox image ${tag} not found; building it now (once, up to a minute)`);
        const { method } = await buildImage(this.docker, { runtime, tag, logger: this.logger });
        this.logger.info(`sandbox image ${tag} built (${method})`);
        return tag;
      })().catch((err: unknown) => {
        this.imageReady.delete(runtime); // let the next run try again (e.g. once the engine is back)
        throw toEngineError(err);
      });
      this.imageReady.set(runtime, ready);
    }
    return ready;
  }

  async buildImage(runtime: RuntimeName, offline: boolean | undefined): Promise<{ tag: string; method: string }> {
    try {
      return await buildImage(this.docker, { runtime, tag: this.imageTags[runtime], offline, logger: this.logger });
    } catch (err) {
      throw toEngineError(err);
    }
  }

  private async checkRuntime(): Promise<void> {
    if (this.runtimeChecked || this.config.sandbox.runtime === "runc") return;
    const info = await this.engineInfo();
    if (!info.runtimes.includes(this.config.sandbox.runtime)) throw new RuntimeMissingError(this.config.sandbox.runtime, info.runtimes);
    this.runtimeChecked = true;
  }

  uid(): number {
    if (this.config.sandbox.uid !== undefined) return this.config.sandbox.uid;
    const own = process.getuid?.() ?? 0;
    // Root never runs sandboxed code: use the image's unprivileged user instead.
    return own === 0 ? 10001 : own;
  }

  async run(request: RunRequest): Promise<RunResult> {
    if (request.signal?.aborted) throw new CanceledError();
    const prepared = await this.prepare(request);
    return this.runPrepared(prepared, request);
  }

  /**
   * Creates and starts a container for `spec` whose runner boots and waits for its code. Used
   * directly by cold runs, and ahead of time by the warm pool. Every hardening setting is the
   * same either way: it is the same spec.
   */
  async prepare(spec: PrepareRequest): Promise<PreparedSandbox> {
    try {
      await this.ensureImage(spec.runtime);
      await this.checkRuntime();
      return await this.createAndStart(spec);
    } catch (err) {
      if (err instanceof CodeboxError) throw err;
      const status = engineStatus(err);
      if (status !== undefined) throw new SandboxError(`The engine refused to create the sandbox: ${errorMessage(err)}. Run \`codebox-mcp doctor\`.`, err);
      throw toEngineError(err);
    }
  }

  private async createAndStart(spec: PrepareRequest): Promise<DockerPrepared> {
    const s = this.config.sandbox;
    const lifetimeMs = (spec.idleMs ?? 0) + spec.timeoutMs;
    const container = await this.docker.createContainer({
      // Idle warm containers are named codebox-warm-*, renamed codebox-run-<run> when handed a run.
      name: `${spec.idleMs ? "codebox-warm" : "codebox-run"}-${spec.runId}`,
      ...containerSpec({
        image: this.imageTags[spec.runtime],
        runtimeSpec: RUNTIME_SPECS[spec.runtime],
        uid: this.uid(),
        labels: containerLabels(this.instance, spec.runId, spec.userId, Date.now() + lifetimeMs + EXPIRY_MARGIN_MS),
        profile: spec.profile,
        runtime: s.runtime,
        seccompJson: this.seccomp(),
        workspaceDir: spec.mounts.workspace,
        skillsDir: spec.mounts.skills,
        nofile: s.nofile,
        fsizeBytes: s.fsizeMiB * 1024 * 1024,
        extraMounts: spec.extraMounts,
        network: spec.network,
      }),
    });
    this.live.add(container.id);
    try {
      const stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as Duplex;
      const streamDone = new Promise<void>((resolve) => {
        stream.once("end", resolve);
        stream.once("close", resolve);
        stream.once("error", () => resolve());
      });
      const stdout = new SwitchableSink();
      const stderr = new SwitchableSink();
      this.docker.modem.demuxStream(stream, stdout, stderr);
      // "next-exit": the default condition ("not-running") answers at once for a created container.
      const exited = container.wait({ condition: "next-exit" }) as Promise<{ StatusCode: number }>;
      const prepared = new DockerPrepared(container, stream, streamDone, exited, stdout, stderr, spec.userId);
      await container.start();
      return prepared;
    } catch (err) {
      await this.remove(container.id, this.logger);
      throw err;
    }
  }

  /** Hands the code to a prepared container, waits for it, and destroys the container. */
  async runPrepared(p: PreparedSandbox, request: RunInput): Promise<RunResult> {
    const prepared = p as DockerPrepared;
    const { container } = prepared;
    const containerId = container.id;
    const clog = this.logger.child({ runId: request.runId, containerId: containerId.slice(0, 12) });
    const s = this.config.sandbox;
    const spill = request.spill;
    const stdout = new CappedOutput(s.maxOutputBytes, spill && { path: spill.stdoutPath, maxBytes: spill.maxBytes }, request.onOutput && ((c) => request.onOutput!("stdout", c)));
    const stderr = new CappedOutput(s.maxOutputBytes, spill && { path: spill.stderrPath, maxBytes: spill.maxBytes }, request.onOutput && ((c) => request.onOutput!("stderr", c)));
    const nonce = randomBytes(16).toString("hex");
    const outTrailer = new CompletionTrailer(nonce, stdout);
    const errTrailer = new CompletionTrailer(nonce, stderr);
    prepared.stdout.attach(outTrailer);
    prepared.stderr.attach(errTrailer);
    // Complete when both streams have delivered the line: everything printed before it has arrived.
    const runnerDone = Promise.all([outTrailer.done, errTrailer.done]).then(([, code]) => code);
    let timedOut = false;
    let canceled = false;
    let killedByUs = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    let exitedCleanly = false;
    try {
      if (prepared.dead) throw new SandboxError("The sandbox container exited before it got its code. Retry; run `codebox-mcp doctor` if it repeats.");
      const kill = (why: "timeout" | "cancel") => {
        if (why === "timeout") timedOut = true;
        else canceled = true;
        killedByUs = true;
        container.kill({ signal: "SIGKILL" }).catch((err: unknown) => {
          if (engineStatus(err) !== 404 && engineStatus(err) !== 409) clog.warn("kill failed", { err });
        });
      };
      onAbort = () => kill("cancel");
      request.signal?.addEventListener("abort", onAbort, { once: true });
      const startedAt = Date.now();
      timer = setTimeout(() => kill("timeout"), request.timeoutMs);
      prepared.stream.write(`${JSON.stringify({ code: request.code, language: request.language, env: request.env ?? {}, done: nonce })}\n`);
      if (request.signal?.aborted) kill("cancel");
      // Off the hot path: the name says which run this container serves now.
      if (prepared.warm) void container.rename({ name: `codebox-run-${request.runId}` }).catch(() => {});

      // Whichever comes first: the runner's completion line, or the engine's exit report (kills,
      // OOM, a runner that died). Output before the completion line has all arrived with it.
      // Last resort: an engine that stops answering mid-run must not hang the call forever.
      let giveUp: NodeJS.Timeout | undefined;
      const engineSilent = new Promise<never>((_, reject) => {
        giveUp = setTimeout(() => reject(new EngineUnavailableError("no answer about the sandbox well past its deadline")), request.timeoutMs + 15_000);
      });
      const first = await Promise.race([
        prepared.exited.then((e) => ({ by: "engine" as const, code: e.StatusCode })),
        runnerDone.then((code) => ({ by: "runner" as const, code })),
        engineSilent,
      ]).finally(() => clearTimeout(giveUp));
      const StatusCode = first.code;
      exitedCleanly = true;
      const durationMs = Date.now() - startedAt;
      clearTimeout(timer);
      if (first.by === "engine") {
        await Promise.race([prepared.streamDone, new Promise((r) => setTimeout(r, DRAIN_GRACE_MS))]);
        outTrailer.flushHeld();
        errTrailer.flushHeld();
      } else {
        // The runner is exiting: stop timing it, let the engine finish in the background.
        await new Promise((r) => setImmediate(r));
      }
      prepared.stream.destroy();

      const oomKilled = (await this.wasOomKilled(container, StatusCode, killedByUs)) || (!killedByUs && languageOutOfMemory(StatusCode, stderr.truncated ? stderr.tail() : stderr.text().slice(-4096)));
      const result: RunResult = {
        runId: request.runId,
        containerId,
        exitCode: killedByUs ? null : StatusCode,
        stdout: stdout.text(),
        stderr: stderr.text(),
        stdoutBytes: stdout.totalBytes,
        stderrBytes: stderr.totalBytes,
        stdoutTruncated: stdout.truncated,
        stderrTruncated: stderr.truncated,
        timedOut,
        oomKilled,
        canceled,
        durationMs,
      };
      if (stdout.truncated) result.stdoutTail = stdout.tail();
      if (stderr.truncated) result.stderrTail = stderr.tail();
      const [outSpill, errSpill] = await Promise.all([stdout.finishSpill(), stderr.finishSpill()]);
      if (outSpill) result.stdoutSpill = outSpill;
      if (errSpill) result.stderrSpill = errSpill;
      clog.info("run finished", { exitCode: result.exitCode, durationMs, timedOut, oomKilled, canceled, warm: prepared.warm });
      if (canceled) throw new CanceledError();
      return result;
    } catch (err) {
      if (err instanceof CodeboxError) throw err;
      const status = engineStatus(err);
      if (status !== undefined) throw new SandboxError(`The engine refused to run the sandbox: ${errorMessage(err)}. Run \`codebox-mcp doctor\`.`, err);
      throw toEngineError(err);
    } finally {
      clearTimeout(timer);
      if (onAbort) request.signal?.removeEventListener("abort", onAbort);
      // The process has exited (or been killed): removal need not delay the answer. It is
      // tracked in `live`, so close() still waits for it, and AutoRemove backs it up.
      const removal = this.remove(containerId, clog);
      this.pendingRemovals.add(removal);
      void removal.finally(() => this.pendingRemovals.delete(removal));
      if (!exitedCleanly) await removal;
    }
  }

  /** Destroys a prepared container that will not be used (pool shrink, shutdown). */
  async discard(p: PreparedSandbox): Promise<void> {
    const prepared = p as DockerPrepared;
    prepared.stream.destroy();
    await this.remove(prepared.container.id, this.logger);
  }

  /**
   * OOMKilled from the engine when the container is still there to inspect; AutoRemove may have
   * taken it already, and then exit 137 we did not cause means the kernel's OOM killer: Node is
   * PID 1 in its namespace, so nothing inside the container can SIGKILL it.
   */
  private async wasOomKilled(container: Docker.Container, status: number, killedByUs: boolean): Promise<boolean> {
    // Only a SIGKILL (137) can be the OOM killer: skip the engine round trip otherwise.
    if (killedByUs || status !== 137) return false;
    try {
      const info = await container.inspect();
      if (info.State.OOMKilled) return true;
    } catch {
      // removed already
    }
    return status === 137;
  }

  private async remove(containerId: string, log: Logger): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true });
    } catch (err) {
      const status = engineStatus(err);
      // 404: AutoRemove got there first; 409: removal already in progress.
      if (status !== 404 && status !== 409) log.warn("could not remove sandbox container", { err: errorMessage(err) });
    }
    this.live.delete(containerId);
  }

  async reapOrphans(): Promise<number> {
    try {
      return await reapOrphans(this.docker, this.instance, this.logger);
    } catch (err) {
      throw toEngineError(err);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pendingRemovals]);
    await Promise.all([...this.live].map((id) => this.remove(id, this.logger)));
    // Anything of ours that slipped through (e.g. created while closing).
    try {
      const left = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL.instance}=${this.instance.id}`] } });
      await Promise.all(left.map((c) => this.remove(c.Id, this.logger)));
    } catch {
      // engine gone: the next start's reaper handles it
    }
  }
}
