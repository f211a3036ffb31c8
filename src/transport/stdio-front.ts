// The stdio front: owns stdin/stdout from the moment the process starts, answers `initialize`
// (and `ping`) at once, and keeps every other message until the SDK's server is ready; then it is
// that server's transport. An editor that launches the server gets its `initialize` answer in
// about the time Node takes to start, instead of after the SDK, the engine client and the rest
// have loaded (docs/PERFORMANCE.md, start-up). Only type imports from the SDK: nothing heavy loads here.
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { initializeResult } from "../mcp/identity.js";

type Message = JSONRPCMessage & { id?: string | number; method?: string; params?: Record<string, unknown> };

/** An `initialize` request the SDK would accept: the front answers only those, the SDK the rest. */
function wellFormedInitialize(m: Message): boolean {
  const p = m.params;
  const info = p?.clientInfo as { name?: unknown; version?: unknown } | undefined;
  return (
    m.method === "initialize" &&
    m.id !== undefined &&
    typeof p?.protocolVersion === "string" &&
    typeof p.capabilities === "object" &&
    p.capabilities !== null &&
    typeof info?.name === "string" &&
    typeof info.version === "string"
  );
}

export class StdioFront {
  private pending = "";
  private readonly held: Message[] = [];
  private attached: FrontTransport | undefined;
  private ended = false;
  private markGone!: () => void;
  /** Resolves when the client has closed stdin, before or after the server was attached. */
  readonly gone = new Promise<void>((resolve) => {
    this.markGone = resolve;
  });
  /** The `initialize` the front answered: replayed to the SDK's server, whose own answer is dropped. */
  private answered: Message | undefined;

  constructor(
    private readonly input: NodeJS.ReadableStream = process.stdin,
    private readonly output: NodeJS.WritableStream = process.stdout,
  ) {
    input.on("data", this.onData);
    input.on("end", this.onEnd);
    input.on("close", () => this.markGone());
    input.on("error", (err: Error) => this.attached?.onerror?.(err));
  }

  /** The transport to connect the SDK's server to (once). */
  transport(): Transport {
    if (this.attached) throw new Error("the stdio front serves one server");
    this.attached = new FrontTransport(this);
    return this.attached;
  }

  /** Called by the transport's start(): hands the server what arrived before it existed. */
  replay(): void {
    const t = this.attached!;
    if (this.answered) t.deliver(this.answered);
    for (const m of this.held.splice(0)) t.deliver(m);
    t.live = true;
    if (this.ended) t.onclose?.();
  }

  /** The SDK server's answer to the `initialize` the front already answered is not sent twice. */
  isDuplicateAnswer(m: Message): boolean {
    if (!this.answered || m.method !== undefined || m.id !== this.answered.id) return false;
    this.answered = undefined;
    return true;
  }

  write(m: JSONRPCMessage): Promise<void> {
    return new Promise((resolve) => {
      if (this.output.write(`${JSON.stringify(m)}\n`)) resolve();
      else this.output.once("drain", resolve);
    });
  }

  detach(): void {
    this.input.off("data", this.onData);
    this.input.off("end", this.onEnd);
  }

  private readonly onData = (chunk: Buffer | string) => {
    this.pending += chunk.toString();
    for (let nl = this.pending.indexOf("\n"); nl !== -1; nl = this.pending.indexOf("\n")) {
      const line = this.pending.slice(0, nl).replace(/\r$/, "");
      this.pending = this.pending.slice(nl + 1);
      if (line.trim() === "") continue;
      let m: Message;
      try {
        m = JSON.parse(line) as Message;
      } catch (err) {
        this.attached?.onerror?.(err as Error);
        continue;
      }
      this.receive(m);
    }
  };

  private readonly onEnd = () => {
    this.ended = true;
    this.markGone();
    if (this.attached?.live) this.attached.onclose?.();
  };

  private receive(m: Message): void {
    if (this.attached?.live) {
      this.attached.deliver(m);
      return;
    }
    if (!this.answered && this.held.length === 0 && wellFormedInitialize(m)) {
      this.answered = m;
      void this.write({ jsonrpc: "2.0", id: m.id!, result: initializeResult(m.params!.protocolVersion as string) } as JSONRPCMessage);
      return;
    }
    if (this.answered && m.method === "ping" && m.id !== undefined) {
      void this.write({ jsonrpc: "2.0", id: m.id, result: {} } as JSONRPCMessage);
      return;
    }
    this.held.push(m);
  }
}

class FrontTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** Everything held has been delivered: new messages go straight to the server. */
  live = false;

  constructor(private readonly front: StdioFront) {}

  async start(): Promise<void> {
    // After connect() has set the handlers: the server gets the held messages in their order.
    queueMicrotask(() => this.front.replay());
  }

  deliver(m: JSONRPCMessage): void {
    this.onmessage?.(m);
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.front.isDuplicateAnswer(message as Message)) return;
    await this.front.write(message);
  }

  async close(): Promise<void> {
    this.front.detach();
    this.onclose?.();
  }
}
