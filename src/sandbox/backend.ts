// The sandbox backend port: everything the rest of the server knows about running code in a
// container. The Docker adapter lives beside it in docker/; nothing outside sandbox/docker
// imports dockerode. A Kubernetes adapter would implement the same interface.
import type { ResourceProfile } from "../config/schema.js";
import type { Language, RuntimeName } from "../shared/languages.js";

export interface ExtraMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** What a container needs before its code is known (the warm pool creates it ahead of time). */
export interface PrepareRequest {
  /** Names the container (and its labels) until a run takes it. */
  id: string;
  userId: string;
  /** Which runtime's image and runner (node, bun, python). */
  runtime: RuntimeName;
  profile: ResourceProfile;
  /** Host directories bind-mounted into the sandbox. */
  mounts: { workspace: string; skills: string; deps?: string | undefined };
  /** More bind mounts (the generated /servers tree, the run's callback socket directory). */
  extraMounts?: ExtraMount[] | undefined;
  /**
   * A network for the container. Absent (the default): NetworkMode none. Only the bridge's TCP
   * mode sets it, for engines that cannot share a unix socket with the host.
   */
  network?: { mode: string; extraHosts: string[] } | undefined;
  /** The longest run it may serve; with idleMs, how long it may live (its expiry label). */
  timeoutMs: number;
  /** How long it may wait for its run (0 or absent: a run takes it at once). */
  idleMs?: number | undefined;
}

/** What a run hands to a prepared container. */
export interface RunInput {
  runId: string;
  language: Language;
  code: string;
  /** Node: JavaScript importing only builtins, which the runner may evaluate without its module hooks. */
  plain?: boolean | undefined;
  /** Wall-clock limit from hand-over; the container is killed when it passes. */
  timeoutMs: number;
  /** True when the container was started ahead of time (it is renamed for this run). */
  warm: boolean;
  /** Variables the runner sets for this run only (e.g. the bridge token); sent with the code. */
  env: Record<string, string>;
  /** Aborting kills and removes the container (client cancellation, server shutdown). */
  signal?: AbortSignal | undefined;
  /** Where output past the cap is kept (host-only files), for the full-output resource. */
  spill?: { stdoutPath: string; stderrPath: string; maxBytes: number } | undefined;
  /** Output as it arrives (progress and log notifications). */
  onOutput?: ((stream: "stdout" | "stderr", chunk: Buffer) => void) | undefined;
}

/** What happened in the container, execa-style: a non-zero exit is data, not an exception. */
export interface SandboxOutcome {
  containerId: string;
  /** Exit code of the code's process; null when it never exited on its own (killed). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Bytes the code wrote to each stream, including what was cut. */
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** The last few KiB of each stream, when it was cut. */
  stdoutTail?: string | undefined;
  stderrTail?: string | undefined;
  /** Host files holding the whole stream (up to the spill limit) when it passed the cap. */
  stdoutSpill?: string | undefined;
  stderrSpill?: string | undefined;
  timedOut: boolean;
  oomKilled: boolean;
  durationMs: number;
}

/** A user's own network (the bridge's TCP mode): its name and the host's address on it. */
export interface UserNetwork {
  name: string;
  gateway: string;
}

export interface EngineInfo {
  version: string;
  apiVersion: string;
  /** OCI runtimes registered with the engine (runc, runsc, ...). */
  ociRuntimes: string[];
  os: string;
}

/** A started container whose runner waits for its code. Used once, then destroyed. */
export interface PreparedSandbox {
  readonly id: string;
  readonly createdAt: number;
  /** True once the container has exited on its own (it must not be used). */
  readonly dead: boolean;
}

export interface SandboxBackend {
  /** Creates and starts a container whose runner waits for its code. */
  prepare(spec: PrepareRequest): Promise<PreparedSandbox>;
  /**
   * Gives a prepared container its code, waits for it, and destroys the container. Throws
   * CanceledError when input.signal aborted the run.
   */
  run(prepared: PreparedSandbox, input: RunInput): Promise<SandboxOutcome>;
  /** Destroys a prepared container that will not be used. */
  discard(prepared: PreparedSandbox): Promise<void>;
  /** Throws EngineUnavailableError when the engine cannot be reached. */
  engineInfo(): Promise<EngineInfo>;
  /** A runtime's image tag. */
  imageTag(runtime: RuntimeName): string;
  imageExists(runtime: RuntimeName): Promise<boolean>;
  /** Makes sure a runtime's image exists (building it once if needed); returns its tag. */
  ensureImage(runtime: RuntimeName): Promise<string>;
  /** Builds a runtime's image now (offline: never try a registry). */
  buildImage(runtime: RuntimeName, offline: boolean | undefined): Promise<{ tag: string; method: string }>;
  /** Throws when the seccomp profile cannot be used (doctor). */
  checkSeccomp(): void;
  /** The uid sandboxed code runs as (owner of what it writes into the user's directories). */
  sandboxUid(): number;
  /** The user's own network with no route out (the bridge's TCP mode), created on first use. */
  userNetwork(userId: string): Promise<UserNetwork>;
  /** Containers this server has alive right now (metrics). */
  activeContainers(): number;
  /** Removes containers left behind by servers that died; returns how many. */
  reapOrphans(): Promise<number>;
  /** Kills and removes every container this server started. */
  close(): Promise<void>;
}
