// One registry of domain errors. Each has a stable string `code` and a message that says what
// to do about it; the MCP layer maps them to tool errors in one place (mcp/result.ts).

export type ErrorCode =
  | "CODEBOX_CONFIG_INVALID"
  | "CODEBOX_INPUT_INVALID"
  | "CODEBOX_ENGINE_UNAVAILABLE"
  | "CODEBOX_IMAGE_BUILD_FAILED"
  | "CODEBOX_RUNTIME_MISSING"
  | "CODEBOX_SANDBOX_FAILED"
  | "CODEBOX_CANCELED"
  | "CODEBOX_RUN_ENDED"
  | "CODEBOX_UNSAFE_PATH"
  | "CODEBOX_UPSTREAM_UNAVAILABLE"
  | "CODEBOX_BUSY"
  | "CODEBOX_QUOTA_EXCEEDED"
  | "CODEBOX_NOT_FOUND"
  | "CODEBOX_CELL_UNAVAILABLE"
  | "CODEBOX_USER_MOVING";

export class CodeboxError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class ConfigError extends CodeboxError {
  constructor(message: string) {
    super("CODEBOX_CONFIG_INVALID", message);
  }
}

export class InputError extends CodeboxError {
  constructor(message: string) {
    super("CODEBOX_INPUT_INVALID", message);
  }
}

export class EngineUnavailableError extends CodeboxError {
  constructor(detail: string, cause?: unknown) {
    super(
      "CODEBOX_ENGINE_UNAVAILABLE",
      `The Docker engine is not reachable (${detail}). Start it (on Debian as root: scripts/setup.sh, ` +
        "or `dockerd &`), then run `codebox-mcp doctor` to check every part of the set-up.",
      { cause },
    );
  }
}

export class ImageBuildError extends CodeboxError {
  constructor(detail: string, cause?: unknown) {
    super(
      "CODEBOX_IMAGE_BUILD_FAILED",
      `Building the sandbox image failed: ${detail}. Run \`codebox-mcp image build --offline\` to see the full log, ` +
        "and `codebox-mcp doctor` to check the engine.",
      { cause },
    );
  }
}

export class RuntimeMissingError extends CodeboxError {
  constructor(runtime: string, available: string[]) {
    super(
      "CODEBOX_RUNTIME_MISSING",
      `The container runtime "${runtime}" is not registered with the Docker engine (it has: ${available.join(", ") || "none"}). ` +
        'Install and register it (scripts/setup.sh does this for runsc), or set "sandbox.ociRuntime" (CODEBOX_OCI_RUNTIME) to "runc".',
    );
  }
}

export class SandboxError extends CodeboxError {
  constructor(message: string, cause?: unknown) {
    super("CODEBOX_SANDBOX_FAILED", message, { cause });
  }
}

export class CanceledError extends CodeboxError {
  constructor() {
    super("CODEBOX_CANCELED", "The run was canceled by the client; its container was removed.");
  }
}

/** The server ended a run that misbehaved (e.g. on its bridge); the reason says what it did. */
export class RunEndedError extends CodeboxError {
  constructor(reason: string) {
    super("CODEBOX_RUN_ENDED", `The run was ended: ${reason}. Fix the code's tool calls (search_tools lists the servers and tools it may use) and run it again.`);
  }
}

export class UnsafePathError extends CodeboxError {
  constructor(message: string) {
    super("CODEBOX_UNSAFE_PATH", message);
  }
}

export class UpstreamUnavailableError extends CodeboxError {
  constructor(server: string, detail: string) {
    super("CODEBOX_UPSTREAM_UNAVAILABLE", `The upstream MCP server "${server}" is unavailable: ${detail}. codebox-mcp reconnects on its own; retry in a few seconds, and see \`codebox-mcp doctor\` if it persists.`);
  }
}

export class BusyError extends CodeboxError {
  constructor(detail: string) {
    super("CODEBOX_BUSY", `The server is busy (${detail}). Retry in a few seconds.`);
  }
}

export class NotFoundError extends CodeboxError {
  constructor(message: string) {
    super("CODEBOX_NOT_FOUND", message);
  }
}

export class QuotaExceededError extends CodeboxError {
  constructor(usedBytes: number, usedInodes: number, quotaBytes: number, quotaInodes: number) {
    super(
      "CODEBOX_QUOTA_EXCEEDED",
      `This user's files use ${mib(usedBytes)} in ${usedInodes} files and directories; the quota is ${mib(quotaBytes)} and ${quotaInodes} entries. ` +
        "Delete files from /workspace or /skills (runs that delete are allowed once usage is back under the quota), or ask the operator for a larger storage.quotaMiB.",
    );
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
