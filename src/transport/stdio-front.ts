// The stdio front: owns stdin/stdout from the moment the process starts, answers `initialize`
// (and `ping`) at once, and keeps every other message until the SDK's server is ready; then it is
// that server's transport. An editor that launches the server gets its `initialize` answer in
// about the time Node takes to start, instead of after the SDK, the engine client and the rest
// have loaded (docs/PERFORMANCE.md, start-up). Only type imports from the SDK: nothing heavy loads here.
import { StringDecoder } from "node:string_decoder";
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

/** Bounds on what the front keeps; a client that passes them gets an error answer, not a bigger heap. */
export interface FrontLimits {
  /** Longest line (one JSON-RPC message) read; a longer one is dropped and its request answered with an error. */
  maxLineBytes: number;
  /** Messages kept while the server loads; past this, requests are answered "still starting, retry". */
  maxHeld: number;
  /** Bytes of those messages. */
  maxHeldBytes: number;
}

export const DEFAULT_FRONT_LIMITS: FrontLimits = { maxLineBytes: 64 * 1024 * 1024, maxHeld: 1000, maxHeldBytes: 64 * 1024 * 1024 };

/** The request id at the start of a line that is not kept whole (ids come early in what clients send). */
function leadingId(head: string): string | number | undefined {
  const m = /"id"\s*:\s*(-?\d{1,15}|"(?:[^"\\]|\\.){0,200}")/.exec(head);
  if (!m) return undefined;
  try {
    return JSON.parse(m[1] as string) as string | number;
  } catch {
    return undefined;
  }
}

export class StdioFront {
  /** The current line's chunks (never scanned twice for a newline) and their length. */
  private chunks: string[] = [];
  private pendingBytes = 0;
  /** Over the line limit: the head kept for its id, the rest skipped up to the next newline. */
  private overflowHead: string | undefined;
  private readonly held: Message[] = [];
  private heldBytes = 0;
  /** A character split across two reads is joined, not turned into two replacement characters. */
  private readonly decoder = new StringDecoder("utf8");
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
    private limits: FrontLimits = DEFAULT_FRONT_LIMITS,
  ) {
    input.on("data", this.onData);
    input.on("end", this.onEnd);
    input.on("close", () => this.markGone());
    input.on("error", (err: Error) => this.attached?.onerror?.(err));
  }

  /** Sets the bounds once the configuration is known (the front starts before it is loaded). */
  setLimits(limits: Partial<FrontLimits>): void {
    this.limits = { ...this.limits, ...limits };
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
    this.heldBytes = 0;
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

  private readonly onData = (data: Buffer | string) => {
    let chunk = typeof data === "string" ? data : this.decoder.write(data);
    for (let nl = chunk.indexOf("\n"); nl !== -1; nl = chunk.indexOf("\n")) {
      this.take(chunk.slice(0, nl));
      chunk = chunk.slice(nl + 1);
      const line = this.overflowHead === undefined ? this.chunks.join("") : undefined;
      const head = this.overflowHead;
      this.chunks = [];
      this.pendingBytes = 0;
      this.overflowHead = undefined;
      if (line === undefined) this.refuseLong(head!);
      else this.parse(line.replace(/\r$/, ""));
    }
    this.take(chunk);
  };

  /** Adds part of the current line, switching to skipping once it is over the limit. */
  private take(part: string): void {
    if (part === "") return;
    if (this.overflowHead !== undefined) return;
    this.pendingBytes += part.length;
    this.chunks.push(part);
    if (this.pendingBytes > this.limits.maxLineBytes) {
      this.overflowHead = this.chunks.join("").slice(0, 4096);
      this.chunks = [];
    }
  }

  private refuseLong(head: string): void {
    const why = `message over ${this.limits.maxLineBytes} bytes: dropped (send smaller code or files; the write_file limit is in docs/CONFIG.md)`;
    this.attached?.onerror?.(new Error(why));
    const id = leadingId(head);
    if (id !== undefined) void this.write({ jsonrpc: "2.0", id, error: { code: -32600, message: why } } as JSONRPCMessage);
    else process.stderr.write(`codebox-mcp: ${why}\n`);
  }

  private parse(line: string): void {
    if (line.trim() === "") return;
    let m: Message;
    try {
      m = JSON.parse(line) as Message;
    } catch (err) {
      this.attached?.onerror?.(err as Error);
      return;
    }
    this.receive(m, line.length);
  }

  private readonly onEnd = () => {
    this.ended = true;
    this.markGone();
    if (this.attached?.live) this.attached.onclose?.();
  };

  private receive(m: Message, size: number): void {
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
    if (this.held.length >= this.limits.maxHeld || this.heldBytes + size > this.limits.maxHeldBytes) {
      // The server is still loading and the client keeps sending: refuse rather than grow.
      if (m.method !== undefined && m.id !== undefined) {
        void this.write({ jsonrpc: "2.0", id: m.id, error: { code: -32000, message: "codebox-mcp is still starting and holds too many messages: retry in a moment" } } as JSONRPCMessage);
      }
      return;
    }
    this.heldBytes += size;
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
