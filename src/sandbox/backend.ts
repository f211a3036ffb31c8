// The sandbox backend interface: everything the rest of the server knows about running code.
// The Docker adapter lives beside it in docker/; nothing outside sandbox/docker imports dockerode.
import type { ResourceProfile } from "../config/schema.js";
import type { Language, RuntimeName } from "./runtimes.js";

export { LANGUAGES, type Language, type RuntimeName } from "./runtimes.js";

export interface ExtraMount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface RunRequest {
  runId: string;
  userId: string;
  language: Language;
  /** Which runtime's image and runner (node, bun, python). */
  runtime: RuntimeName;
  code: string;
  /** Wall-clock limit from container start; the container is killed when it passes. */
  timeoutMs: number;
  profile: ResourceProfile;
  /** Host directories bind-mounted into the sandbox. */
  mounts: { workspace: string; skills: string };
  /** More bind mounts (the generated /servers tree, the run's callback socket directory). */
  extraMounts?: ExtraMount[];
  /**
   * A network for the container. Absent (the default): NetworkMode none. Only the bridge's TCP
   * mode sets it, for engines that cannot share a unix socket with the host.
   */
  network?: { mode: string; extraHosts: string[] };
  /** Variables the runner sets for this run only (e.g. the bridge token); sent with the code, not at container creation. */
  env?: Record<string, string>;
  /** Aborting kills and removes the container (client cancellation, server shutdown). */
  signal?: AbortSignal;
  /** Where output past the cap is kept (host-only files), for the full-output resource. */
  spill?: { stdoutPath: string; stderrPath: string; maxBytes: number };
  /** Output as it arrives (progress and log notifications). */
  onOutput?: (stream: "stdout" | "stderr", chunk: Buffer) => void;
}

/** What happened, execa-style: a non-zero exit is data, not an exception. */
export interface RunResult {
  runId: string;
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
  timedOut: boolean;
  oomKilled: boolean;
  canceled: boolean;
  durationMs: number;
  /** The last few KiB of each stream, when it was cut. */
  stdoutTail?: string;
  stderrTail?: string;
  /** Host files holding the whole stream (up to the spill limit) when it passed the cap. */
  stdoutSpill?: string;
  stderrSpill?: string;
  /** Workspace-relative paths of the saved full output (set by the executor from the spills). */
  stdoutFile?: string;
  stderrFile?: string;
}

export interface EngineInfo {
  version: string;
  apiVersion: string;
  runtimes: string[];
  os: string;
}

/** What a container needs before its code is known (the warm pool creates it ahead of time). */
export type PrepareRequest = Pick<RunRequest, "runId" | "userId" | "runtime" | "profile" | "mounts" | "extraMounts" | "network" | "timeoutMs"> & {
  /** How long it may wait for its run (written into its expiry label). */
  idleMs?: number;
};

/** What a run hands to a prepared container. */
export type RunInput = Omit<RunRequest, "runtime" | "profile" | "mounts" | "extraMounts" | "network">;

/** A started container whose runner waits for its code. Used once, then destroyed. */
export interface PreparedSandbox {
  readonly id: string;
  readonly createdAt: number;
  /** True once the container has exited on its own (it must not be used). */
  readonly dead: boolean;
  warm: boolean;
}

export interface SandboxBackend {
  /** Runs one request in a fresh container that is destroyed before this resolves. */
  run(request: RunRequest): Promise<RunResult>;
  /** Creates and starts a container whose runner waits for its code. */
  prepare(spec: PrepareRequest): Promise<PreparedSandbox>;
  /** Gives a prepared container its code; destroys it afterwards. */
  runPrepared(prepared: PreparedSandbox, input: RunInput): Promise<RunResult>;
  /** Destroys a prepared container that will not be used. */
  discard(prepared: PreparedSandbox): Promise<void>;
  /** Throws EngineUnavailableError when the engine cannot be reached. */
  engineInfo(): Promise<EngineInfo>;
  /** Makes sure a runtime's sandbox image exists (building it if needed); returns its tag. */
  ensureImage(runtime?: RuntimeName): Promise<string>;
  imageExists(runtime?: RuntimeName): Promise<boolean>;
  /** Removes containers left behind by servers that died; returns how many. */
  reapOrphans(): Promise<number>;
  /** Kills and removes every container this server started. */
  close(): Promise<void>;
}
