import { randomUUID } from "node:crypto";
import type { EventStore } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

/** Bytes of stored events across every session's store: one tenant's replays cannot pin the host's memory. */
export class EventBudget {
  used = 0;
  constructor(readonly maxBytes: number) {}
}

/**
 * Keeps the last events of each stream so a client that lost its connection can resume with
 * Last-Event-ID (resumable Streamable HTTP streams). Bounded by count and by bytes, per session
 * and (through a shared EventBudget) in total; the oldest events go first.
 */
export class BoundedEventStore implements EventStore {
  private readonly events = new Map<string, { streamId: string; message: JSONRPCMessage; bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly maxEvents = 5_000,
    private readonly maxBytes = 4 * 1024 * 1024,
    private readonly budget: EventBudget = new EventBudget(Number.POSITIVE_INFINITY),
  ) {}

  /** Bytes this store holds now. */
  get storedBytes(): number {
    return this.bytes;
  }

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const id = `${streamId}_${Date.now()}_${randomUUID().slice(0, 8)}`;
    const bytes = Buffer.byteLength(JSON.stringify(message));
    // A single event larger than this store may hold is not kept for replay (it was still sent).
    if (bytes > this.maxBytes) return id;
    this.events.set(id, { streamId, message, bytes });
    this.bytes += bytes;
    this.budget.used += bytes;
    while (this.events.size > 0 && (this.events.size > this.maxEvents || this.bytes > this.maxBytes || this.budget.used > this.budget.maxBytes)) this.evictOldest();
    return id;
  }

  private evictOldest(): void {
    const first = this.events.entries().next().value;
    if (!first) return;
    this.events.delete(first[0]);
    this.bytes -= first[1].bytes;
    this.budget.used -= first[1].bytes;
  }

  /** Gives this store's bytes back to the shared budget (the session closed). */
  release(): void {
    this.budget.used -= this.bytes;
    this.bytes = 0;
    this.events.clear();
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(lastEventId: string, { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
    const start = this.events.get(lastEventId);
    if (!start) return "";
    let after = false;
    for (const [id, e] of this.events) {
      if (id === lastEventId) {
        after = true;
        continue;
      }
      if (after && e.streamId === start.streamId) await send(id, e.message);
    }
    return start.streamId;
  }
}
