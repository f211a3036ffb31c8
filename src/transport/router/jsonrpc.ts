// Just enough JSON-RPC for the router to answer in the protocol when a cell cannot: the ids and
// methods of the requests in a POST body, and which of them a cell's event stream has answered.

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
 * The answer to requests whose cell is unavailable: a tool call gets a tool result with isError
 * (hosts show it to the model, which can retry); anything else a JSON-RPC error carrying
 * CODEBOX_CELL_UNAVAILABLE. Undefined when there is no request to answer (notifications only).
 */
export function unavailableBody(ids: JsonRpcIds, message: string, retryAfterMs: number): unknown {
  if (ids.requests.length === 0) return undefined;
  const answers = ids.requests.map(({ id, method }) =>
    method === "tools/call"
      ? { jsonrpc: "2.0", id, result: { content: [{ type: "text", text: `${message} [CODEBOX_CELL_UNAVAILABLE]` }], isError: true } }
      : { jsonrpc: "2.0", id, error: { code: -32000, message: `${message} [CODEBOX_CELL_UNAVAILABLE]`, data: { code: "CODEBOX_CELL_UNAVAILABLE", retryAfterMs } } },
  );
  return ids.batch ? answers : answers[0];
}

/**
 * Follows a server-sent event stream as it passes and notes which requests got their response,
 * so the router can write the missing ones if the stream breaks.
 */
export class SseResponseTracker {
  private readonly pending = new Map<string, { id: string | number; method: string }>();
  private buffer = "";
  private readonly decoder = new TextDecoder();

  constructor(
    ids: JsonRpcIds,
    private readonly build: (missing: JsonRpcIds) => unknown,
  ) {
    for (const r of ids.requests) this.pending.set(JSON.stringify(r.id), r);
  }

  observe(chunk: Buffer): void {
    if (this.pending.size === 0) return;
    this.buffer += this.decoder.decode(chunk, { stream: true });
    // Events end with a blank line (LF, CRLF or CR line ends).
    const events = this.buffer.split(/\r\n\r\n|\n\n|\r\r/);
    this.buffer = events.pop() ?? "";
    for (const ev of events) {
      const data = ev
        .split(/\r\n|\n|\r/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      try {
        const msg = JSON.parse(data) as { id?: unknown; result?: unknown; error?: unknown };
        if (msg.id !== undefined && (msg.result !== undefined || msg.error !== undefined)) this.pending.delete(JSON.stringify(msg.id));
      } catch {
        // not JSON: not a response
      }
    }
    // A runaway event without an end cannot grow the buffer without bound.
    if (this.buffer.length > 32 * 1024 * 1024) this.buffer = this.buffer.slice(-1024);
  }

  /** SSE events answering every request that has no response yet ("" when none is missing). */
  missingEvents(): string {
    if (this.pending.size === 0) return "";
    const missing: JsonRpcIds = { batch: false, requests: [...this.pending.values()] };
    this.pending.clear();
    const out: string[] = [];
    for (const r of missing.requests) out.push(`event: message\ndata: ${JSON.stringify(this.build({ batch: false, requests: [r] }))}\n\n`);
    return out.join("");
  }
}
