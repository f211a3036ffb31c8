import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config } from "../config/schema.js";
import type { ExtraMount } from "../sandbox/backend.js";
import type { Logger } from "../shared/logger.js";
import { type CallbackEvent, RunCallbackServer } from "./callback-server.js";
import { RunTokens } from "./run-tokens.js";
import { type SearchDetail, type SearchHit, searchTools } from "./search.js";
import { ServersDirectory } from "./servers-dir.js";
import { UpstreamPool } from "./upstream-pool.js";

/** Where the sandbox finds its bridge. */
export const SANDBOX_SOCKET_DIR = "/run/codebox";
export const SANDBOX_SOCKET = `${SANDBOX_SOCKET_DIR}/mcp.sock`;
/** Slack between issuing a token and the container's clock starting (create + start). */
const START_MARGIN_MS = 15_000;
/** sockaddr_un.sun_path holds 108 bytes; stay well under it. */
const MAX_SOCKET_PATH = 100;

export interface RunBridge {
  mounts: ExtraMount[];
  env: Record<string, string>;
  network?: { mode: string; extraHosts: string[] };
  /** Calls made and refused so far in this run. */
  stats(): { calls: number; refusals: number };
  close(): Promise<void>;
}

/**
 * The MCP bridge: upstream connections, the generated /servers code API, per-run tokens and
 * per-run callback sockets. Sandboxed code calls upstream tools only through it.
 */
export class Bridge {
  readonly pool: UpstreamPool;
  readonly tokens = new RunTokens();
  readonly servers: ServersDirectory;
  private started: Promise<void> | undefined;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly onEvent?: (e: CallbackEvent) => void,
  ) {
    this.pool = new UpstreamPool(config.mcpServers, {
      connectTimeoutMs: config.bridge.connectTimeoutMs,
      maxMessageBytes: Math.max(64 * 1024 * 1024, 2 * config.bridge.maxResponseBytes),
      logger,
    });
    this.servers = new ServersDirectory(join(config.dataDir, "generated"), logger);
    this.pool.on("toolsChanged", () => {
      if (this.started) void this.servers.update(this.pool.tools()).catch((err: unknown) => logger.error("regenerating /servers failed", { err }));
    });
  }

  /** Connects the upstreams (failures are logged and retried, never fatal) and writes /servers. */
  start(): Promise<void> {
    this.started ??= (async () => {
      await this.pool.start();
      await this.servers.update(this.pool.tools());
    })();
    return this.started;
  }

  private runDir(): string {
    const id = randomBytes(8).toString("hex");
    const preferred = join(this.config.dataDir, "run", id);
    if (Buffer.byteLength(join(preferred, "mcp.sock")) <= MAX_SOCKET_PATH) return preferred;
    return join(tmpdir(), `codebox-run-${process.getuid?.() ?? 0}`, id);
  }

  /** Everything one run needs to reach the bridge; close() revokes the token and removes the socket. */
  async openRun(run: { runId: string; userId: string; timeoutMs: number }): Promise<RunBridge> {
    await this.start();
    const servers = new Set(this.pool.names);
    const token = this.tokens.issue({ runId: run.runId, userId: run.userId, servers, deadline: Date.now() + run.timeoutMs + START_MARGIN_MS });
    let refusals = 0;
    const deps = {
      tokens: this.tokens,
      upstreams: this.pool,
      limits: this.config.bridge,
      logger: this.logger,
      onEvent: (e: CallbackEvent) => {
        if (e.kind === "refusal") refusals++;
        this.onEvent?.(e);
      },
    };
    const stats = () => ({ calls: this.tokens.calls(run.runId), refusals });
    const tcp = this.config.bridge.transport === "tcp";
    let callback: RunCallbackServer;
    try {
      callback = tcp ? await RunCallbackServer.startTcp(run.runId, this.config.bridge.tcpBindHost, deps) : await RunCallbackServer.startUnix(run.runId, this.runDir(), deps);
    } catch (err) {
      this.tokens.revoke(run.runId);
      throw err;
    }
    const close = async () => {
      this.tokens.revoke(run.runId);
      await callback.close();
    };
    try {
      const serversPath = await this.servers.path(() => this.pool.tools());
      const servers = { source: serversPath, target: "/servers", readOnly: true };
      if (tcp) {
        const { tcpHost, tcpNetwork } = this.config.bridge;
        return {
          mounts: [servers],
          env: { CODEBOX_BRIDGE_URL: `http://${tcpHost}:${callback.port}`, CODEBOX_BRIDGE_TOKEN: token },
          network: { mode: tcpNetwork, extraHosts: tcpHost === "host.docker.internal" ? ["host.docker.internal:host-gateway"] : [] },
          close,
          stats,
        };
      }
      return {
        mounts: [servers, { source: callback.dir!, target: SANDBOX_SOCKET_DIR, readOnly: true }],
        env: { CODEBOX_BRIDGE_SOCKET: SANDBOX_SOCKET, CODEBOX_BRIDGE_TOKEN: token },
        close,
        stats,
      };
    } catch (err) {
      await close();
      throw err;
    }
  }

  search(query: string, options: { server?: string | undefined; detail: SearchDetail; limit: number }): SearchHit[] {
    return searchTools(this.servers.entries, query, options);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
