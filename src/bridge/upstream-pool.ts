import { EventEmitter } from "node:events";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { cappedFetch } from "./capped-fetch.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { ToolListChangedNotificationSchema, type CallToolResult, type Tool } from "@modelcontextprotocol/sdk/types.js";
import type { UpstreamServerSpec } from "../config/schema.js";
import { errorMessage, UpstreamUnavailableError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { packageVersion } from "../shared/paths.js";
import { withTimeout } from "../shared/timeout.js";

export type UpstreamState = "idle" | "connecting" | "ready" | "down";


export interface UpstreamOptions {
  connectTimeoutMs: number;
  /** Largest single message accepted from a stdio upstream; above it the SDK drops the connection. */
  maxMessageBytes: number;
  logger: Logger;
}

const BACKOFF_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/** One upstream MCP server: a client connection that lists its tools and comes back after a crash. */
export class UpstreamConnection {
  state: UpstreamState = "idle";
  tools: Tool[] = [];
  lastError: string | undefined;
  private client: Client | undefined;
  private transport: Transport | undefined;
  private connecting: Promise<void> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private readonly log: Logger;

  constructor(
    readonly name: string,
    private readonly spec: UpstreamServerSpec,
    private readonly options: UpstreamOptions,
    private readonly onToolsChanged: (server: string) => void,
  ) {
    this.log = options.logger.child({ upstream: name });
  }

  /** The upstream's process id (stdio servers), for tests and diagnostics. */
  get pid(): number | null {
    return this.transport instanceof StdioClientTransport ? this.transport.pid : null;
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new UpstreamUnavailableError(this.name, "the server is shutting down"));
    if (this.state === "ready") return Promise.resolve();
    this.connecting ??= this.doConnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private makeTransport(): Transport {
    if ("command" in this.spec) {
      // Security: the upstream's env (its secrets) goes to the upstream process only, never to a sandbox.
      const t = new StdioClientTransport({
        command: this.spec.command,
        args: this.spec.args,
        env: { ...getDefaultEnvironment(), ...this.spec.env },
        ...(this.spec.cwd ? { cwd: this.spec.cwd } : {}),
        stderr: "pipe",
        // A result over our response limit should be refused cleanly (413), not kill the connection.
        maxBufferSize: this.options.maxMessageBytes,
      });
      // The upstream's stderr is its log: ours, at debug level, never our stdout.
      t.stderr?.on("data", (d: Buffer) => this.log.debug("upstream stderr", { text: d.toString("utf8").slice(0, 2000) }));
      return t;
    }
    // Security: an HTTP upstream's answers are capped like a stdio upstream's messages.
    return new StreamableHTTPClientTransport(new URL(this.spec.url), { requestInit: { headers: this.spec.headers }, fetch: cappedFetch(this.options.maxMessageBytes) });
  }

  private async doConnect(): Promise<void> {
    this.state = "connecting";
    const client = new Client({ name: "codebox-mcp", version: packageVersion() }, { capabilities: {} });
    const transport = this.makeTransport();
    client.onclose = () => this.handleClose(client, "the connection closed (the server exited or hung up)");
    client.onerror = (err) => this.log.debug("upstream transport error", { err: errorMessage(err) });
    try {
      await withTimeout(client.connect(transport), this.options.connectTimeoutMs, "connecting");
      this.client = client;
      this.transport = transport;
      client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
        this.log.info("upstream tool list changed; refreshing");
        await this.refreshTools().catch((err: unknown) => this.log.warn("refreshing the tool list failed", { err: errorMessage(err) }));
      });
      await this.refreshTools();
      this.state = "ready";
      this.failures = 0;
      this.lastError = undefined;
      this.log.info("connected to upstream MCP server", { tools: this.tools.length });
    } catch (err) {
      this.state = "down";
      this.lastError = errorMessage(err);
      this.client = undefined;
      await client.close().catch(() => {});
      this.log.warn(`could not connect to upstream MCP server "${this.name}": ${this.lastError}`);
      this.scheduleReconnect();
      throw new UpstreamUnavailableError(this.name, `it failed to start or connect (${this.lastError})`);
    }
  }

  private async refreshTools(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const tools: Tool[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor && tools.length < 10_000);
    const changed = JSON.stringify(tools) !== JSON.stringify(this.tools);
    this.tools = tools;
    if (changed) this.onToolsChanged(this.name);
  }

  private handleClose(client: Client, why: string): void {
    if (this.client !== client) return; // an old connection
    this.client = undefined;
    this.transport = undefined;
    if (this.closed) return;
    this.state = "down";
    this.lastError = why;
    this.log.warn(`upstream MCP server "${this.name}" went away: ${why}; reconnecting`);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)]!;
    this.failures++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().catch(() => {});
    }, delay);
    this.reconnectTimer.unref();
  }

  async callTool(tool: string, args: Record<string, unknown>, options: { signal: AbortSignal; timeoutMs: number }): Promise<CallToolResult> {
    if (this.state !== "ready" || !this.client) {
      if (this.state === "idle") await this.connect();
      else throw new UpstreamUnavailableError(this.name, this.lastError ?? "not connected");
    }
    const client = this.client!;
    try {
      return (await client.callTool({ name: tool, arguments: args }, undefined, { signal: options.signal, timeout: options.timeoutMs })) as CallToolResult;
    } catch (err) {
      if (options.signal.aborted) throw err;
      if (this.client !== client || this.state !== "ready") throw new UpstreamUnavailableError(this.name, `it went away during the call (${errorMessage(err)})`);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    await client?.close().catch(() => {});
  }
}

/** All configured upstreams. Emits "toolsChanged" when any server's tool list changes. */
export class UpstreamPool extends EventEmitter {
  private readonly connections = new Map<string, UpstreamConnection>();

  constructor(specs: Record<string, UpstreamServerSpec>, options: UpstreamOptions) {
    super();
    for (const [name, spec] of Object.entries(specs)) {
      if (spec.disabled) continue;
      this.connections.set(name, new UpstreamConnection(name, spec, options, (server) => this.emit("toolsChanged", server)));
    }
  }

  get names(): string[] {
    return [...this.connections.keys()];
  }

  get(name: string): UpstreamConnection | undefined {
    return this.connections.get(name);
  }

  /** Connects every upstream; a failing one is reported and retried, never fatal. */
  async start(): Promise<void> {
    await Promise.allSettled([...this.connections.values()].map((c) => c.connect()));
  }

  /** Tools of every ready server. */
  tools(): Map<string, Tool[]> {
    const out = new Map<string, Tool[]>();
    for (const [name, c] of this.connections) out.set(name, c.tools);
    return out;
  }

  status(): Array<{ name: string; state: UpstreamState; tools: number; error?: string | undefined }> {
    return [...this.connections.values()].map((c) => ({ name: c.name, state: c.state, tools: c.tools.length, error: c.lastError }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.connections.values()].map((c) => c.close()));
  }
}
