import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Config } from "../config/schema.js";
import type { Logger } from "../shared/logger.js";
import { RunEndedError } from "../shared/errors.js";
import { SocketDirs } from "../shared/socket-dirs.js";
import { BRIDGE_ENV, SANDBOX_SERVERS_DIR, SANDBOX_SOCKET_DIR, SANDBOX_SOCKET_PATH, SOCKET_NAME } from "../protocol/bridge.js";
import { type CallbackEvent, type CallbackStats, type DisplayReceiver, RunCallbackServer } from "./callback-server.js";
import { RunTokens } from "./run-tokens.js";
import { type SearchDetail, type SearchHit, searchTools } from "./search.js";
import type { DisabledServer } from "./codegen/servers-tree.js";
import { ServersDirectory } from "./servers-dir.js";
import { UserUpstreamPools } from "./user-upstreams.js";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { type UpstreamConnection, UpstreamPool, type UpstreamState } from "./upstream-pool.js";

/** Slack between issuing a token and the container's clock starting (create + start). */
const START_MARGIN_MS = 15_000;
/** sockaddr_un.sun_path holds 108 bytes; stay well under it. */

/** A host directory the sandbox must see (the same shape as the sandbox port's ExtraMount). */
export interface BridgeMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** The bridge end of one container: its mounts, and its run's token once bound. */
export interface BridgeSlot {
  userId: string;
  /** The /servers tree it mounts (compare with Bridge.serversVersion). */
  serversVersion: string;
  mounts: BridgeMount[];
  network?: { mode: string; extraHosts: string[] };
  /** Issues the run's token; returns the variables the runner sets for the code. */
  bind(run: { runId: string; timeoutMs: number; display?: DisplayReceiver | undefined }): Record<string, string>;
  /** Calls made and refused so far through this slot. */
  stats(): CallbackStats;
  /** Aborted, with a RunEndedError, when the run misbehaves on its bridge: the run must end. */
  ended: AbortSignal;
  close(): Promise<void>;
}

/**
 * The MCP bridge: upstream connections, the generated /servers code API, per-run tokens and
 * per-run callback sockets. Sandboxed code calls upstream tools only through it.
 */
export class Bridge {
  /** Upstreams every user may call (config mcpServers). */
  readonly pool: UpstreamPool;
  readonly tokens = new RunTokens();
  /** The shared /servers tree (users without servers of their own). */
  readonly servers: ServersDirectory;
  private readonly userPools: UserUpstreamPools;
  /** Servers without a "perUser" of their own: per user when many users share this server (HTTP). */
  private readonly perUserByDefault: boolean;
  private started: Promise<void> | undefined;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly onEvent?: (e: CallbackEvent) => void,
    options: { multiUser?: boolean } = {},
  ) {
    // Security: a stateful upstream shared by every user is a channel between tenants. Whether a
    // server keeps state cannot be known from its config, so a multi-user server (HTTP) gives each
    // user an instance of their own unless the operator marks it "perUser": false.
    this.perUserByDefault = options.multiUser ?? false;
    this.socketDirs = new SocketDirs(join(config.dataDir, "run"), SOCKET_NAME, "codebox-run-");
    this.pool = this.makePool(Object.fromEntries(Object.entries(config.mcpServers).filter(([, s]) => !this.isPerUser(s))));
    // A user's own upstreams (per-user servers, config userMcpServers.<user>), connected on first
    // use; a user's server with the same name as a shared one takes its place for that user.
    this.userPools = new UserUpstreamPools({
      specsFor: (userId) => ({ ...Object.fromEntries(Object.entries(config.mcpServers).filter(([, s]) => this.isPerUser(s))), ...config.userMcpServers[userId] }),
      makePool: (specs) => this.makePool(specs),
      toolsFor: (userId) => this.toolsFor(userId),
      generatedRoot: join(config.dataDir, "generated"),
      idleMs: config.bridge.userUpstreamIdleMs,
      logger,
    });
    this.servers = new ServersDirectory(join(config.dataDir, "generated", "shared"), logger);
    this.pool.on("toolsChanged", () => {
      if (!this.started) return;
      void this.servers.update(this.pool.tools()).catch((err: unknown) => logger.error("regenerating /servers failed", { err }));
      for (const [userId, u] of this.userPools.entries()) void u.servers.update(this.toolsFor(userId)).catch(() => {});
    });
  }

  private makePool(specs: Config["mcpServers"]): UpstreamPool {
    return new UpstreamPool(specs, {
      connectTimeoutMs: this.config.bridge.connectTimeoutMs,
      maxMessageBytes: Math.max(64 * 1024 * 1024, 2 * this.config.bridge.maxResponseBytes),
      logger: this.logger,
    });
  }

  /** Connects the shared upstreams (failures are logged and retried, never fatal) and writes /servers. */
  start(): Promise<void> {
    this.started ??= (async () => {
      await this.pool.start();
      await this.servers.update(this.pool.tools());
    })().catch((err: unknown) => {
      // The next caller tries again (e.g. once the data dir is writable).
      this.started = undefined;
      throw err;
    });
    return this.started;
  }

  private isPerUser(spec: { perUser?: boolean | undefined }): boolean {
    return spec.perUser ?? this.perUserByDefault;
  }

  private toolsFor(userId: string): Map<string, Tool[]> {
    const tools = new Map(this.pool.tools());
    const own = this.userPools.get(userId)?.pool;
    if (own) for (const [name, list] of own.tools()) tools.set(name, list);
    return tools;
  }

  /**
   * The /servers tree a new container of this user would mount now. A warm container that mounts
   * another one is stale: compared by path, it cannot be marked fresh before its tree is written.
   */
  serversVersion(userId: string): string {
    return (this.userPools.get(userId)?.servers ?? this.servers).currentPath ?? "";
  }

  /** Every configured upstream that all users may call: the shared ones and the per-user ones. */
  get upstreamNames(): string[] {
    const perUser = Object.entries(this.config.mcpServers).filter(([, s]) => this.isPerUser(s) && !s.disabled).map(([n]) => n);
    return [...new Set([...this.pool.names, ...perUser])].sort();
  }

  /** Whether any user may have an upstream server (shared, per user, or a user's own). */
  get hasUpstreams(): boolean {
    return Object.values(this.config.mcpServers).some((s) => !s.disabled) || Object.values(this.config.userMcpServers).some((own) => Object.values(own).some((s) => !s.disabled));
  }

  /** Server names a user may call. */
  async serverNames(userId: string): Promise<string[]> {
    await this.start();
    const own = await this.userPools.open(userId);
    return [...new Set([...this.pool.names, ...(own?.pool.names ?? [])])].sort();
  }

  private resolver(own: UpstreamPool | undefined): { get(name: string): UpstreamConnection | undefined } {
    return { get: (name) => own?.get(name) ?? this.pool.get(name) };
  }

  status(userId: string): Array<{ name: string; state: UpstreamState; tools: number; error?: string | undefined }> {
    const own = this.userPools.get(userId)?.pool;
    const ownNames = new Set(own?.names ?? []);
    return [...this.pool.status().filter((s) => !ownNames.has(s.name)), ...(own?.status() ?? [])];
  }

  private readonly socketDirs: SocketDirs;

  private runDir(): string {
    return this.socketDirs.next();
  }

  /**
   * The bridge end of one container, opened before its run is known (a warm container gets its
   * socket at creation and its token at hand-over). Until bind() no token exists: every call is refused.
   */
  async openSlot(userId: string, tcpNetwork?: { name: string; gateway: string }): Promise<BridgeSlot> {
    await this.start();
    const own = await this.userPools.open(userId, true);
    let released = false;
    const releaseOwn = () => {
      if (own && !released) this.userPools.release(own);
      released = true;
    };
    const servers = new Set([...this.pool.names, ...(own?.pool.names ?? [])]);
    let runId: string | undefined;
    const ended = new AbortController();
    const deps = {
      tokens: this.tokens,
      upstreams: this.resolver(own?.pool),
      limits: this.config.bridge,
      logger: this.logger,
      onEvent: this.onEvent,
      onMisbehaving: (reason: string) => ended.abort(new RunEndedError(reason)),
    };
    const slotId = `slot-${randomBytes(8).toString("hex")}`;
    const tcp = this.config.bridge.transport === "tcp";
    // TCP mode on a user's internal network: listen on, and point the sandbox at, the host's address there.
    const bindHost = tcpNetwork?.gateway ?? this.config.bridge.tcpBindHost;
    let callback: RunCallbackServer;
    try {
      callback = tcp ? await RunCallbackServer.startTcp(slotId, bindHost, deps) : await RunCallbackServer.startUnix(slotId, this.runDir(), deps);
    } catch (err) {
      releaseOwn();
      throw err;
    }
    const close = async () => {
      if (runId) this.tokens.revoke(runId);
      releaseOwn();
      await callback.close();
    };
    try {
      const serversPath = own ? await own.servers.path(() => this.toolsFor(userId)) : await this.servers.path(() => this.pool.tools());
      const serversMount = { source: serversPath, target: SANDBOX_SERVERS_DIR, readOnly: true };
      const tcpHost = tcpNetwork?.gateway ?? this.config.bridge.tcpHost;
      const networkMode = tcpNetwork?.name ?? this.config.bridge.tcpNetwork;
      return {
        userId,
        serversVersion: serversPath,
        mounts: tcp ? [serversMount] : [serversMount, { source: callback.dir!, target: SANDBOX_SOCKET_DIR, readOnly: true }],
        ...(tcp ? { network: { mode: networkMode, extraHosts: tcpHost === "host.docker.internal" ? ["host.docker.internal:host-gateway"] : [] } } : {}),
        bind: (run): Record<string, string> => {
          if (runId) throw new Error("a bridge slot serves one run only");
          runId = run.runId;
          callback.bind(run.runId, run.display);
          const token = this.tokens.issue({ runId: run.runId, userId, servers, deadline: Date.now() + run.timeoutMs + START_MARGIN_MS });
          const env: Record<string, string> = tcp
            ? { [BRIDGE_ENV.url]: `http://${tcpHost}:${callback.port}`, [BRIDGE_ENV.token]: token }
            : { [BRIDGE_ENV.socket]: SANDBOX_SOCKET_PATH, [BRIDGE_ENV.token]: token };
          return env;
        },
        stats: () => callback.stats(),
        ended: ended.signal,
        close,
      };
    } catch (err) {
      await close();
      throw err;
    }
  }

  async search(userId: string, query: string, options: { server?: string | undefined; detail: SearchDetail; limit: number }): Promise<SearchHit[]> {
    await this.start();
    const own = await this.userPools.open(userId);
    return searchTools((own?.servers ?? this.servers).entries, query, options);
  }

  /** Servers this user may call whose tools could not be generated as code (callable raw only), with the reason. */
  codeApiDisabled(userId: string): DisabledServer[] {
    return (this.userPools.get(userId)?.servers ?? this.servers).disabled;
  }

  async close(): Promise<void> {
    await this.pool.close();
    await this.userPools.close();
    this.socketDirs.close();
  }
}
