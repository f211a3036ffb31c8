// What routers and cells say to each other (docs/SCALING.md): headers on forwarded MCP requests,
// the cell's answer for a user it does not serve, and its internal listener's documents.

/** "host:port" for a cell's address, IPv6 in brackets (for URLs and Host headers). */
export function hostPort(address: string, port: number): string {
  return `${address.includes(":") && !address.startsWith("[") ? `[${address}]` : address}:${port}`;
}

/** The router's proof that a request comes through a router (the shared cluster token). */
export const CLUSTER_TOKEN_HEADER = "codebox-cluster-token";
/** Sent by a router (with the token) when the user is new and the cell is their home. */
export const PLACEMENT_HEADER = "codebox-placement";
/** The status a cell answers for a user it does not serve (HTTP "Misdirected Request"). */
export const MISDIRECTED = 421;

export type CellMode = "active" | "draining";

export interface MisdirectedBody {
  jsonrpc: "2.0";
  id: null;
  error: { code: -32000; message: string; data: { placement: "unknown" | "moved" | "draining"; movedTo?: string; cell: string } };
}

/** GET /internal/cell */
export interface CellInfo {
  id: string;
  mode: CellMode;
  /** Changes whenever a placement record or the mode changes. */
  version: string;
  users: number;
  ready: boolean;
}

/**
 * A cell's record of a user: "owned" (served here), "moving" (owned, leaving: requests refused
 * with CODEBOX_USER_MOVING until the move ends), "incoming" (arriving, not served yet), "moved"
 * (a tombstone naming where they went).
 */
export type PlacementRecord =
  | { state: "owned"; since: number }
  | { state: "moving"; to: string; moveId: string; since: number }
  | { state: "incoming"; from: string; moveId: string; since: number }
  | { state: "moved"; to: string; since: number };

/** What a move reports (POST /internal/move on the source cell). */
export interface MoveReport {
  user: string;
  from: string;
  to: string;
  moveId: string;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** SHA-256 of the tree's manifest, computed by the source and again by the target. */
  digest: string;
  /** Time the user's requests waited for runs in flight, and the copy. */
  drainMs: number;
  copyMs: number;
  totalMs: number;
}

/** GET /internal/placement */
export interface PlacementReport {
  cell: string;
  mode: CellMode;
  version: string;
  users: Record<string, PlacementRecord>;
}

export interface JsonRpcIds {
  batch: boolean;
  requests: Array<{ id: string | number; method: string }>;
}

/** The requests (messages with an id and a method) in a POST body; undefined when it is not JSON-RPC. */
export function collectJsonRpc(body: Buffer): JsonRpcIds | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
  return jsonRpcIds(parsed);
}

/** The same, of a body already parsed. */
export function jsonRpcIds(parsed: unknown): JsonRpcIds {
  const batch = Array.isArray(parsed);
  const messages = batch ? (parsed as unknown[]) : [parsed];
  const requests: JsonRpcIds["requests"] = [];
  for (const m of messages) {
    if (typeof m !== "object" || m === null) continue;
    const { id, method } = m as { id?: unknown; method?: unknown };
    if ((typeof id === "string" || typeof id === "number") && typeof method === "string") requests.push({ id, method });
  }
  return { batch, requests };
}

/**
 * The answer to requests that cannot be served now (the user's cell is unavailable, or the user is
 * being moved): a tool call gets a tool result with isError (hosts show it to the model, which can
 * retry); anything else a JSON-RPC error carrying the code. Undefined when there is no request to
 * answer (notifications only).
 */
export function unavailableBody(ids: JsonRpcIds, message: string, retryAfterMs: number, code: "CODEBOX_CELL_UNAVAILABLE" | "CODEBOX_USER_MOVING" = "CODEBOX_CELL_UNAVAILABLE"): unknown {
  if (ids.requests.length === 0) return undefined;
  const answers = ids.requests.map(({ id, method }) =>
    method === "tools/call"
      ? { jsonrpc: "2.0", id, result: { content: [{ type: "text", text: `${message} [${code}]` }], isError: true } }
      : { jsonrpc: "2.0", id, error: { code: -32000, message: `${message} [${code}]`, data: { code, retryAfterMs } } },
  );
  return ids.batch ? answers : answers[0];
}
