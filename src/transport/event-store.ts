import { randomUUID } from "node:crypto";
import type { EventStore } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

/**
 * Keeps the last events of each stream so a client that lost its connection can resume with
 * Last-Event-ID (resumable Streamable HTTP streams). Bounded per stream and in total.
 */
export class BoundedEventStore implements EventStore {
  private readonly events = new Map<string, { streamId: string; message: JSONRPCMessage }>();

  constructor(private readonly maxEvents = 5_000) {}

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const id = `${streamId}_${Date.now()}_${randomUUID().slice(0, 8)}`;
    this.events.set(id, { streamId, message });
    while (this.events.size > this.maxEvents) this.events.delete(this.events.keys().next().value!);
    return id;
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
