// The Docker adapter of the sandbox port: hardened single-use containers on a Docker engine.
import type { Duplex } from "node:stream";
import type Docker from "dockerode";
import type { Config } from "../../config/schema.js";
import { CanceledError, RuntimeMissingError, SandboxError, errorMessage } from "../../shared/errors.js";
import type { RuntimeName } from "../../shared/languages.js";
import type { Logger } from "../../shared/logger.js";
import { packagePath } from "../../shared/paths.js";
import type { EngineInfo, PreparedSandbox, PrepareRequest, RunInput, SandboxBackend, SandboxOutcome, UserNetwork } from "../backend.js";
import { RUNTIME_SPECS } from "../runtimes.js";
import { AttachedContainer } from "./attached-container.js";
import { runAttached } from "./container-run.js";
import { createDockerClient, engineStatus, toEngineError, toSandboxError } from "./engine.js";
import { containerSpec } from "./host-config.js";
import { DockerImages } from "./images.js";
import { LABEL, containerLabels, currentInstance, type ServerInstance } from "./labels.js";
import { DockerNetworks } from "./networks.js";
import { reapOrphans } from "./reaper.js";
import { sandboxUid } from "./sandbox-uid.js";
import { loadSeccompProfile } from "./seccomp.js";

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
  private readonly sandbox: Config["sandbox"];
  private readonly logger: Logger;
  private readonly images: DockerImages;
  private readonly networks: DockerNetworks;
  private seccompJson: string | undefined;
  private ociRuntimeChecked = false;
  /** Containers of ours that are alive, by id: the only handles run() and discard() accept. */
  private readonly live = new Map<string, AttachedContainer | undefined>();
  private readonly pendingRemovals = new Set<Promise<void>>();

  constructor(options: DockerBackendOptions) {
    this.sandbox = options.config.sandbox;
    this.logger = options.logger;
    this.docker = options.docker ?? createDockerClient(options.config.docker);
    // A cell is known by its id, which survives restarts on a new host name (docs/SCALING.md):
    // its next process then recognises and removes what the previous one left.
    this.instance = options.instance ?? currentInstance(options.config.cluster.cellId ? `cell:${options.config.cluster.cellId}` : undefined);
    this.images = new DockerImages(this.docker, this.sandbox, this.logger);
    this.networks = new DockerNetworks(this.docker, this.instance, this.logger);
  }

  async userNetwork(userId: string): Promise<UserNetwork> {
    try {
      return await this.networks.forUser(userId);
    } catch (err) {
      throw toSandboxError(err, "create");
    }
  }

  activeContainers(): number {
    return this.live.size;
  }

  sandboxUid(): number {
    return sandboxUid(this.sandbox.uid);
  }

  imageTag(runtime: RuntimeName): string {
    return this.images.tag(runtime);
  }

  imageExists(runtime: RuntimeName): Promise<boolean> {
    return this.images.exists(runtime);
  }

  ensureImage(runtime: RuntimeName): Promise<string> {
    return this.images.ensure(runtime);
  }

  buildImage(runtime: RuntimeName, offline: boolean | undefined): Promise<{ tag: string; method: string }> {
    return this.images.build(runtime, offline);
  }

  /** The seccomp profile as JSON text for the configured OCI runtime, read and checked once. */
  private seccomp(): string {
    this.seccompJson ??= loadSeccompProfile(this.sandbox.seccompProfile ?? packagePath("seccomp", "profile.json"), this.sandbox.ociRuntime);
    return this.seccompJson;
  }

  checkSeccomp(): void {
    this.seccomp();
  }

  async engineInfo(): Promise<EngineInfo> {
    try {
      const [version, info] = await Promise.all([this.docker.version(), this.docker.info() as Promise<{ Runtimes?: Record<string, unknown>; OperatingSystem?: string }>]);
      return { version: version.Version, apiVersion: version.ApiVersion, ociRuntimes: Object.keys(info.Runtimes ?? {}), os: info.OperatingSystem ?? "unknown" };
    } catch (err) {
      throw toEngineError(err);
    }
  }

  private async checkOciRuntime(): Promise<void> {
    const wanted = this.sandbox.ociRuntime;
    if (this.ociRuntimeChecked || wanted === "runc") return;
    const info = await this.engineInfo();
    if (!info.ociRuntimes.includes(wanted)) throw new RuntimeMissingError(wanted, info.ociRuntimes);
    this.ociRuntimeChecked = true;
  }

  /**
   * Creates and starts a container for `spec` whose runner boots and waits for its code. Used
   * directly by cold runs, and ahead of time by the warm pool. Every hardening setting is the
   * same either way: it is the same spec.
   */
  async prepare(spec: PrepareRequest): Promise<PreparedSandbox> {
    try {
      await this.images.ensure(spec.runtime);
      await this.checkOciRuntime();
      return await this.createAndStart(spec);
    } catch (err) {
      throw toSandboxError(err, "create");
    }
  }

  private async createAndStart(spec: PrepareRequest): Promise<AttachedContainer> {
    const s = this.sandbox;
    const lifetimeMs = (spec.idleMs ?? 0) + spec.timeoutMs;
    const container = await this.docker.createContainer({
      // Idle warm containers are named codebox-warm-*, renamed codebox-run-<run> when handed a run.
      name: `${spec.idleMs ? "codebox-warm" : "codebox-run"}-${spec.id}`,
      ...containerSpec({
        image: this.images.tag(spec.runtime),
        runtimeSpec: RUNTIME_SPECS[spec.runtime],
        // A warm container's runner may boot fuller (RuntimeSpec.warmEnv, docs/PERFORMANCE.md).
        warmEnv: spec.idleMs ? (RUNTIME_SPECS[spec.runtime].warmEnv?.({ ociRuntime: s.ociRuntime, memoryMiB: spec.profile.memoryMiB, pythonPackages: s.pythonPackages, pythonPreload: s.pythonPreload }) ?? []) : [],
        uid: this.sandboxUid(),
        labels: containerLabels(this.instance, spec.id, spec.userId, Date.now() + lifetimeMs + EXPIRY_MARGIN_MS),
        profile: spec.profile,
        ociRuntime: s.ociRuntime,
        seccompJson: this.seccomp(),
        workspaceDir: spec.mounts.workspace,
        skillsDir: spec.mounts.skills,
        depsDir: spec.mounts.deps,
        nofile: s.nofile,
        fsizeBytes: s.fsizeMiB * 1024 * 1024,
        extraMounts: spec.extraMounts,
        network: spec.network,
      }),
    });
    this.live.set(container.id, undefined);
    try {
      const stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as Duplex;
      const attached = new AttachedContainer(container, stream, (st, out, err) => this.docker.modem.demuxStream(st, out, err));
      await container.start();
      this.live.set(container.id, attached);
      return attached;
    } catch (err) {
      await this.remove(container.id, this.logger);
      throw err;
    }
  }

  /** The container behind a handle this backend gave out; anything else is refused. */
  private attached(prepared: PreparedSandbox): AttachedContainer {
    const c = this.live.get(prepared.id);
    if (!c) throw new SandboxError("This sandbox is not (or no longer) one of this server's prepared containers; start a new run.");
    return c;
  }

  /** Hands the code to a prepared container, waits for it, and destroys the container. */
  async run(prepared: PreparedSandbox, input: RunInput): Promise<SandboxOutcome> {
    const c = this.attached(prepared);
    const log = this.logger.child({ runId: input.runId, containerId: c.id.slice(0, 12) });
    let exited = false;
    try {
      const { killed, ...outcome } = await runAttached(c, input, this.sandbox.maxOutputBytes, log);
      exited = true;
      log.info("run finished", { exitCode: outcome.exitCode, durationMs: outcome.durationMs, timedOut: outcome.timedOut, oomKilled: outcome.oomKilled, canceled: killed === "cancel", warm: input.warm });
      if (killed === "cancel") throw new CanceledError();
      return outcome;
    } catch (err) {
      throw toSandboxError(err, "run");
    } finally {
      // The process has exited (or been killed): removal need not delay the answer. It is
      // tracked in `live`, so close() still waits for it, and AutoRemove backs it up.
      const removal = this.remove(c.id, log);
      this.pendingRemovals.add(removal);
      void removal.finally(() => this.pendingRemovals.delete(removal));
      if (!exited) await removal;
    }
  }

  /** Destroys a prepared container that will not be used (pool shrink, shutdown). */
  async discard(prepared: PreparedSandbox): Promise<void> {
    this.live.get(prepared.id)?.stream.destroy();
    await this.remove(prepared.id, this.logger);
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
      const removed = await reapOrphans(this.docker, this.instance, this.logger);
      await this.networks.reapOrphans().catch((err: unknown) => this.logger.warn("could not reap old bridge networks", { err }));
      return removed;
    } catch (err) {
      throw toEngineError(err);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pendingRemovals]);
    await Promise.all([...this.live.keys()].map((id) => this.remove(id, this.logger)));
    // Anything of ours that slipped through (e.g. created while closing).
    try {
      const left = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL.instance}=${this.instance.id}`] } });
      await Promise.all(left.map((c) => this.remove(c.Id, this.logger)));
      await this.networks.close();
    } catch {
      // engine gone: the next start's reaper handles it
    }
  }
}
