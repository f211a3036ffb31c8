// The bridge protocol: how code in a sandbox calls upstream MCP tools through the host. One
// definition, used by the host (bridge/) and by the sandbox clients (sandbox-image/bridge/), which
// receive it as a module generated from these constants (bridge/codegen/clients.ts).

/** The endpoint for upstream tool calls. */
export const BRIDGE_CALL_PATH = "/internal/mcp-call";

/**
 * The endpoint that shows an image in the run's result: the body is the image's bytes, the
 * content-type its claimed type (checked against the bytes), DISPLAY_NAME_HEADER an optional
 * label (percent-encoded). The helpers /servers/display.ts and /servers/display.py post here.
 */
export const BRIDGE_DISPLAY_PATH = "/internal/display";
export const DISPLAY_NAME_HEADER = "x-codebox-name";

/** Where the run's socket directory is mounted in the sandbox, and the socket's name in it. */
export const SANDBOX_SOCKET_DIR = "/run/codebox";
export const SOCKET_NAME = "mcp.sock";
export const SANDBOX_SOCKET_PATH = `${SANDBOX_SOCKET_DIR}/${SOCKET_NAME}`;

/** Where the generated code API (/servers/<server>/<tool>.ts|.py) is mounted, read-only. */
export const SANDBOX_SERVERS_DIR = "/servers";

/** Variables the runner sets for the code: how the client finds the bridge and proves its run. */
export const BRIDGE_ENV = {
  /** The run's bearer token. */
  token: "CODEBOX_BRIDGE_TOKEN",
  /** Unix mode: the socket path in the sandbox. */
  socket: "CODEBOX_BRIDGE_SOCKET",
  /** TCP mode: http://host:port of the run's callback listener. */
  url: "CODEBOX_BRIDGE_URL",
} as const;

/** The request body of one call. */
export interface BridgeCallRequest {
  server: string;
  tool: string;
  arguments?: Record<string, unknown>;
}

/** Why the bridge refused a call (the `reason` field of a refusal's JSON body). */
export const REFUSAL_REASONS = [
  "missing",
  "malformed",
  "forged",
  "expired",
  "other-run",
  "past-deadline",
  "run-ended",
  "server-not-allowed",
  "call-limit",
  "too-many-in-flight",
  "not-found",
  "bad-request",
  "too-large",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** The JSON body of every non-200 answer. */
export interface BridgeErrorBody {
  error: string;
  reason?: RefusalReason;
}

/** The constants a sandbox client needs, as one plain object (written into the generated protocol modules). */
export const CLIENT_PROTOCOL = {
  callPath: BRIDGE_CALL_PATH,
  displayPath: BRIDGE_DISPLAY_PATH,
  nameHeader: DISPLAY_NAME_HEADER,
  defaultSocket: SANDBOX_SOCKET_PATH,
  tokenEnv: BRIDGE_ENV.token,
  socketEnv: BRIDGE_ENV.socket,
  urlEnv: BRIDGE_ENV.url,
} as const;
