// What routers and cells say to each other (docs/SCALING.md): headers on forwarded MCP requests,
// the cell's answer for a user it does not serve, and its internal listener's documents.

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

export type PlacementRecord = { state: "owned"; since: number } | { state: "moved"; to: string; since: number };

/** GET /internal/placement */
export interface PlacementReport {
  cell: string;
  mode: CellMode;
  version: string;
  users: Record<string, PlacementRecord>;
}
