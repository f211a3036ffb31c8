// Which requests a cell's event stream has answered, so the router can answer the rest itself
// when the stream breaks.
import type { JsonRpcIds } from "../../protocol/cluster.js";

/**
 * Follows a server-sent event stream as it passes and notes which requests got their response,
 * so the router can write the missing ones if the stream breaks.
 */
export class SseResponseTracker {
  private readonly pending = new Map<string, { id: string | number; method: string }>();
  private buffer = "";
  /** How much of `buffer` has been searched for an event's end. */
  private scanned = 0;
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
    // Events end with a blank line (LF, CRLF or CR line ends). Only the new text (and the three
    // characters before it, for a separator split across chunks) is searched: linear in the event.
    const separator = /\r\n\r\n|\n\n|\r\r/g;
    separator.lastIndex = Math.max(0, this.scanned - 3);
    let start = 0;
    for (let m = separator.exec(this.buffer); m; m = separator.exec(this.buffer)) {
      this.event(this.buffer.slice(start, m.index));
      start = m.index + m[0].length;
    }
    if (start > 0) this.buffer = this.buffer.slice(start);
    // A runaway event without an end cannot grow the buffer without bound.
    if (this.buffer.length > 32 * 1024 * 1024) this.buffer = this.buffer.slice(-1024);
    this.scanned = this.buffer.length;
  }

  private event(ev: string): void {
    const data = ev
      .split(/\r\n|\n|\r/)
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).replace(/^ /, ""))
      .join("\n");
    if (!data) return;
    try {
      const msg = JSON.parse(data) as { id?: unknown; result?: unknown; error?: unknown };
      if (msg.id !== undefined && (msg.result !== undefined || msg.error !== undefined)) this.pending.delete(JSON.stringify(msg.id));
    } catch {
      // not JSON: not a response
    }
  }

  /** SSE events answering every request that has no response yet ("" when none is missing). */
  missingEvents(): string {
    if (this.pending.size === 0) return "";
    const missing: JsonRpcIds = { batch: false, requests: [...this.pending.values()] };
    this.pending.clear();
    const out: string[] = [];
    for (const r of missing.requests) out.push(`event: message\ndata: ${JSON.stringify(this.build({ batch: false, requests: [r] }))}\n\n`);
    // A blank line first ends an event the cell's stream broke off in the middle of: it dispatches
    // as a broken event (which clients skip), and ours stay whole.
    return `\n\n${out.join("")}`;
  }
}

export { collectJsonRpc, unavailableBody } from "../../protocol/cluster.js";
