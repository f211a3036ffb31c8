import Docker from "dockerode";
import { CodeboxError, EngineUnavailableError, SandboxError, errorMessage } from "../../shared/errors.js";

export interface EngineOptions {
  /** unix:///path/docker.sock, /path/docker.sock, tcp://host:port or http://host:port; default: the local socket. */
  host?: string | undefined;
}

export function createDockerClient(options: EngineOptions): Docker {
  const host = options.host;
  if (!host) return new Docker({ socketPath: "/var/run/docker.sock" });
  if (host.startsWith("unix://")) return new Docker({ socketPath: host.slice("unix://".length) });
  if (host.startsWith("/")) return new Docker({ socketPath: host });
  const url = new URL(host.replace(/^tcp:/, "http:"));
  return new Docker({
    protocol: url.protocol === "https:" ? "https" : "http",
    host: url.hostname,
    port: Number(url.port || (url.protocol === "https:" ? 2376 : 2375)),
  });
}

const UNREACHABLE = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND"]);

/** True when the error means "no engine answered", as opposed to "the engine said no". */
export function isEngineUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNREACHABLE.has(code);
}

export function toEngineError(err: unknown): unknown {
  if (isEngineUnreachable(err)) {
    const e = err as { code: string; address?: string };
    return new EngineUnavailableError(`${e.code}${e.address ? ` at ${e.address}` : ""}`, err);
  }
  return err;
}

/** The HTTP status of an engine error (404 no such container, 409 conflict, ...), if any. */
export function engineStatus(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/**
 * One mapping for every engine failure during a sandbox's life: our own errors pass through, an
 * engine that answered "no" becomes a SandboxError naming what it refused, no answer at all
 * becomes EngineUnavailableError.
 */
export function toSandboxError(err: unknown, refused: "create" | "run"): unknown {
  if (err instanceof CodeboxError) return err;
  if (engineStatus(err) !== undefined) return new SandboxError(`The engine refused to ${refused} the sandbox: ${errorMessage(err)}. Run \`codebox-mcp doctor\`.`, err);
  return toEngineError(err);
}
