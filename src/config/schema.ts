import { z } from "zod";
import { PYTHON_PACKAGES, RUNTIMES } from "../shared/languages.js";

/** OCI runtimes a sandbox can run under. ("Runtime" alone means node, bun or python.) */
export const OCI_RUNTIMES = ["runc", "runsc"] as const;
export type OciRuntime = (typeof OCI_RUNTIMES)[number];

// The one schema for every setting. docs/CONFIG.md documents each key; keep them in step
// (a unit test checks that every key below appears there).

export const PROFILE_NAMES = ["light", "standard", "heavy"] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

export const ResourceProfileSchema = z
  .object({
    memoryMiB: z.number().int().min(32).max(65536),
    cpus: z.number().min(0.05).max(64),
    timeoutMs: z.number().int().min(100).max(3_600_000),
    pidsLimit: z.number().int().min(8).max(4096),
    tmpfsMiB: z.number().int().min(1).max(4096),
  })
  .strict();
export type ResourceProfile = z.infer<typeof ResourceProfileSchema>;

export const DEFAULT_PROFILES: Record<ProfileName, ResourceProfile> = {
  light: { memoryMiB: 64, cpus: 0.25, timeoutMs: 10_000, pidsLimit: 64, tmpfsMiB: 64 },
  standard: { memoryMiB: 256, cpus: 0.5, timeoutMs: 30_000, pidsLimit: 64, tmpfsMiB: 64 },
  heavy: { memoryMiB: 512, cpus: 1, timeoutMs: 120_000, pidsLimit: 64, tmpfsMiB: 64 },
};

const profileOverride = (name: ProfileName) => ResourceProfileSchema.partial().prefault({}).transform((p) => ({ ...DEFAULT_PROFILES[name], ...p }));

/** Server names become directory names and identifiers in /servers: keep them simple. */
export const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

// The same shapes editors use in their `mcpServers` config, so a block can be pasted as-is.
// Unknown keys (an editor's own, like "autoApprove") are ignored rather than refused.
export const StdioServerSchema = z.object({
  type: z.literal("stdio").optional(),
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  env: z.record(z.string(), z.string()).default({}),
  cwd: z.string().optional(),
  disabled: z.boolean().optional(),
  /** One instance per user, so users never share its state. Default: true when serving HTTP (many users), false over stdio. */
  perUser: z.boolean().optional(),
});
export const HttpServerSchema = z.object({
  type: z.enum(["http", "streamable-http", "streamableHttp"]).optional(),
  url: z.url(),
  headers: z.record(z.string(), z.string()).default({}),
  disabled: z.boolean().optional(),
  /** One connection per user (the upstream sees each user on their own session). Default: true when serving HTTP, false over stdio. */
  perUser: z.boolean().optional(),
});
export const UpstreamServerSchema = z.union([StdioServerSchema, HttpServerSchema]);
export type UpstreamServerSpec = z.infer<typeof UpstreamServerSchema>;

export const ConfigSchema = z
  .object({
    dataDir: z.string().min(1),
    logLevel: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
    userId: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be 1-64 characters of letters, digits, '_', '.', '-'")
      .refine((id) => !/^oidc/i.test(id), 'must not start with "oidc": that prefix is the namespace of OAuth users')
      .default("local"),
    docker: z
      .object({
        host: z.string().optional(),
      })
      .strict()
      .default({}),
    sandbox: z
      .object({
        image: z.string().min(1).optional(),
        /** Images for the other language runtimes (sandbox.image is Node's). */
        images: z
          .object({
            bun: z.string().min(1).optional(),
            python: z.string().min(1).optional(),
          })
          .strict()
          .prefault({}),
        /** Language runtimes execute_code offers; each has its own image, built on first use. */
        runtimes: z
          .array(z.enum(RUNTIMES))
          .min(1, "list at least one runtime: node, bun, python")
          .default([...RUNTIMES])
          .transform((l) => [...new Set(l)]),
        /** The Python image: "data" (numpy, pandas, matplotlib, scipy, openpyxl, Pillow) or "stdlib" (smaller, starts faster). */
        pythonPackages: z.enum(PYTHON_PACKAGES).default("data"),
        /** Modules a warm Python container of the data image imports while it waits for its code (profiles of 256 MiB or more). */
        pythonPreload: z
          .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, "must be a module name such as pandas or matplotlib.pyplot"))
          .max(20)
          .default(["numpy", "pandas", "matplotlib.pyplot"]),
        /** The OCI runtime the engine starts sandboxes with: runc, or runsc (gVisor). */
        ociRuntime: z.enum(OCI_RUNTIMES).default("runc"),
        profile: z.enum(PROFILE_NAMES).default("standard"),
        profiles: z
          .object({
            light: profileOverride("light"),
            standard: profileOverride("standard"),
            heavy: profileOverride("heavy"),
          })
          .strict()
          .prefault({}),
        uid: z.number().int().min(1).max(2 ** 31 - 2).optional(),
        maxCodeBytes: z.number().int().min(1).max(16 * 1024 * 1024).default(1024 * 1024),
        maxOutputBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(64 * 1024),
        nofile: z.number().int().min(16).max(65536).default(256),
        fsizeMiB: z.number().int().min(1).max(1024 * 1024).default(256),
        seccompProfile: z.string().min(1).optional(),
        pool: z
          .object({
            /** Default 1; 2 under runsc, whose containers take longer to start and boot than a call's think time. */
            size: z.number().int().min(0).max(64).optional(),
            /** The pool grows to this many per user and profile while calls come faster than it refills. */
            maxSize: z.number().int().min(0).max(64).default(4),
            maxTotal: z.number().int().min(0).max(1024).default(8),
            /** Containers started at once; 0: the host's CPU count (at least 2). */
            maxStarting: z.number().int().min(0).max(256).default(0),
            idleMs: z.number().int().min(1_000).max(24 * 3_600_000).default(120_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({})
      .transform((s) => ({ ...s, pool: { ...s.pool, size: s.pool.size ?? (s.ociRuntime === "runsc" ? 2 : 1) } })),
    limits: z
      .object({
        maxConcurrentRuns: z.number().int().min(1).max(1024).default(8),
        maxRunsPerUser: z.number().int().min(1).max(1024).default(4),
        maxQueuedRuns: z.number().int().min(0).max(100_000).default(32),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        quota: z.enum(["auto", "kernel", "soft", "off"]).default("auto"),
        quotaMiB: z.number().int().min(8).max(16 * 1024 * 1024).default(1024),
        quotaInodes: z.number().int().min(1024).max(1 << 30).default(65_536),
        maxReadBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(32 * 1024 * 1024),
        maxWriteBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(8 * 1024 * 1024),
        spillMaxBytes: z.number().int().min(0).max(1024 * 1024 * 1024).default(32 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    /**
     * Where runs may connect, through the egress proxy (docs/SECURITY.md). Empty: no run has any
     * network. Entries: "api.example.com", "*.example.com", "example.com:8443", "10.0.0.5:9000".
     */
    egress: z
      .object({
        /** Destinations every user's runs may reach. */
        allow: z.array(z.string().min(1).max(300)).max(1000).default([]),
        /** More destinations for one user's runs, by user id. */
        users: z.record(z.string(), z.array(z.string().min(1).max(300)).max(1000)).default({}),
        maxBytesPerRun: z.number().int().min(1024).max(64 * 1024 * 1024 * 1024).default(256 * 1024 * 1024),
        maxConnectionsPerRun: z.number().int().min(1).max(100_000).default(256),
        maxOpenConnections: z.number().int().min(1).max(1024).default(16),
        connectTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
        idleTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      })
      .strict()
      .prefault({}),
    /** Package installs (the packages tool): where from, and how long they may take. */
    packages: z
      .object({
        /** Offer the packages tool. */
        enabled: z.boolean().default(true),
        /** npm registry URL; default: the server machine's npm configuration (npm config get registry). */
        npmRegistry: z.url().optional(),
        /** CA bundle for it; default: npm's cafile. */
        npmCafile: z.string().min(1).optional(),
        /** pip index URL (PEP 503 simple); default: the server machine's pip configuration (index-url). */
        pipIndexUrl: z.url().optional(),
        /** CA bundle for it; default: pip's cert. */
        pipCert: z.string().min(1).optional(),
        installTimeoutMs: z.number().int().min(5_000).max(3_600_000).default(300_000),
        /** Run npm packages' install scripts (inside the installer's sandbox). Off: most packages need none. */
        npmInstallScripts: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /** Images a run shows (display(), plt.show()) and files it returns (outputs). */
    display: z
      .object({
        /** Images shown per run, inline and saved together; past it, refused with a line in the result. */
        maxImages: z.number().int().min(0).max(100).default(8),
        /** The largest image a run may show (bytes); a larger one is refused unread. */
        maxImageBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(8 * 1024 * 1024),
        /** Images up to this size come back as image content; larger ones are saved in /workspace and linked. */
        inlineMaxBytes: z.number().int().min(0).max(64 * 1024 * 1024).default(1024 * 1024),
        /** Inline images of one result together; past it, the next ones are saved and linked. */
        maxInlineTotalBytes: z.number().int().min(0).max(256 * 1024 * 1024).default(4 * 1024 * 1024),
        /** Files one result returns from the run's outputs folder. */
        maxOutputs: z.number().int().min(0).max(1000).default(20),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        path: z.string().min(1).optional(),
        enabled: z.boolean().default(true),
        /** The active file rotates when it would grow past this. */
        maxBytes: z.number().int().min(64 * 1024).max(64 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
        /** Rotated files kept beside it (audit.log.1 …). */
        maxFiles: z.number().int().min(0).max(100).default(3),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        host: z.string().default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8080),
        /** Host header names accepted besides localhost, 127.0.0.1, [::1] and the bind address. */
        allowedHosts: z.array(z.string()).default([]),
        /** Origins accepted from browsers; requests with any other Origin get 403. */
        allowedOrigins: z.array(z.string()).default([]),
        maxBodyBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(4 * 1024 * 1024),
        /** The URL clients use to reach /mcp (for OAuth metadata); default http://<host>:<port>/mcp. */
        publicUrl: z.url().optional(),
        sessionIdleMs: z.number().int().min(1000).default(30 * 60 * 1000),
        /** Bearer token for /readyz and /metrics when the listener is not loopback-only (API keys and access tokens work too). */
        metricsToken: z.string().min(16).optional(),
        /** MCP sessions one user may hold; the oldest is closed past it. */
        maxSessionsPerUser: z.number().int().min(1).max(10_000).default(16),
        /** MCP sessions of all users together; the least recently used is closed past it. */
        maxSessions: z.number().int().min(1).max(100_000).default(256),
        /** Bytes of resumable events kept per session, and across all sessions. */
        eventBytesPerSession: z.number().int().min(0).max(1024 * 1024 * 1024).default(2 * 1024 * 1024),
        eventBytesTotal: z.number().int().min(0).max(16 * 1024 * 1024 * 1024).default(128 * 1024 * 1024),
        shutdownGraceMs: z.number().int().min(0).max(3_600_000).default(30_000),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        apiKeys: z
          .array(
            z
              .object({
                userId: z
                  .string()
                  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be 1-64 letters, digits, '_', '.', '-'")
                  .refine((id) => !/^oidc/i.test(id), 'must not start with "oidc": that prefix is the namespace of OAuth users'),
                key: z.string().min(16, "API keys must be at least 16 characters").optional(),
                keyHash: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be "sha256:" and 64 hex digits').optional(),
              })
              .strict()
              .refine((k) => (k.key === undefined) !== (k.keyHash === undefined), "give exactly one of key or keyHash"),
          )
          .default([]),
        oauth: z
          .object({
            issuer: z.string().min(1),
            audience: z.string().min(1),
            jwksUri: z.url(),
            requiredScopes: z.array(z.string()).default([]),
            userClaim: z.string().default("sub"),
            /** JOSE "typ" values accepted as access tokens (RFC 9068: at+jwt). Add "jwt" for issuers that label access tokens plainly. */
            acceptedTypes: z.array(z.string().min(1)).min(1).default(["at+jwt"]),
          })
          .strict()
          .optional(),
      })
      .strict()
      .prefault({}),
    /** Cluster mode (docs/SCALING.md): this server is one cell of many behind `codebox-mcp route`. */
    cluster: z
      .object({
        /** This cell's id; stored in <dataDir>/cell.json at first start, which then must match. Setting it turns cluster mode on. */
        cellId: z
          .string()
          .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "cell ids are 1-63 lower-case letters, digits or '-' (a DNS label)")
          .optional(),
        /** The secret routers and cells share (at least 32 characters): routers present it to cells' internal port and with new users. */
        token: z.string().min(32, "the cluster token must be at least 32 characters").optional(),
        /** The cells' internal listener (placement, readiness, moves), on http.host. */
        internalPort: z.number().int().min(0).max(65535).default(9081),
      })
      .strict()
      .prefault({}),
    /** The router (`codebox-mcp route`). */
    route: z
      .object({
        host: z.string().default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8080),
        /** Where the set of cells comes from: a Docker Swarm manager's API, or the Kubernetes API. */
        discovery: z.enum(["swarm", "kubernetes"]).default("swarm"),
        swarm: z
          .object({
            /** The cells' service (a global service), e.g. "codebox_cell". */
            service: z.string().min(1).default("codebox_cell"),
            /** Nodes carrying this label (value "true") are the desired cells. */
            nodeLabel: z.string().min(1).default("codebox.cell"),
            /** A node's cell id is this prefix and its hostname. */
            cellIdPrefix: z.string().default("cell-"),
          })
          .strict()
          .prefault({}),
        /** The cells' MCP port and internal port (not 8080: a router and a cell may share a node's network). */
        cellPort: z.number().int().min(1).max(65535).default(9080),
        cellInternalPort: z.number().int().min(1).max(65535).default(9081),
        /** How often the orchestrator is asked for the cells, and each cell probed. */
        discoveryIntervalMs: z.number().int().min(100).max(600_000).default(5_000),
        probeIntervalMs: z.number().int().min(100).max(60_000).default(1_000),
        /** A cell that takes no connection in this time fails a probe (liveness). */
        probeTimeoutMs: z.number().int().min(50).max(60_000).default(500),
        /** Its readiness answer may take this long (a loaded cell is slow, not gone). */
        readyTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
        /** Consecutive failed probes after which a cell is down (a refused connection counts at once). */
        probeFailures: z.number().int().min(1).max(100).default(2),
        connectTimeoutMs: z.number().int().min(50).max(60_000).default(1_000),
        /** What clients are told to wait before retrying a user whose cell is unavailable. */
        retryAfterMs: z.number().int().min(0).max(600_000).default(5_000),
        /** Requests one user may have open through this router (SSE streams included). */
        maxStreamsPerUser: z.number().int().min(1).max(10_000).default(64),
        maxConnections: z.number().int().min(1).max(1_000_000).default(4_096),
      })
      .strict()
      .prefault({}),
    /** Upstream servers only some users may call (in addition to the shared mcpServers). */
    userMcpServers: z.record(z.string(), z.record(z.string().regex(SERVER_NAME), UpstreamServerSchema)).default({}),
    mcpServers: z
      .record(z.string().regex(SERVER_NAME, "server names are 1-64 letters, digits, '_' or '-'"), UpstreamServerSchema)
      .default({}),
    bridge: z
      .object({
        transport: z.enum(["unix", "tcp"]).default("unix"),
        tcpHost: z.string().default("host.docker.internal"),
        tcpBindHost: z.string().default("127.0.0.1"),
        /** TCP mode: "internal" (a per-user network with no route out), or a Docker network name (e.g. "bridge", with tcpHost). */
        tcpNetwork: z.string().default("internal"),
        /** Tool calls per run, refused ones included. */
        maxCallsPerRun: z.number().int().min(1).max(100_000).default(500),
        /** Connections a run may hold open to its bridge at once. */
        maxConnectionsPerRun: z.number().int().min(1).max(1024).default(8),
        /** Tool calls of one run waiting for an answer at once. */
        maxInFlightPerRun: z.number().int().min(1).max(256).default(4),
        /** Refused calls after which the run is ended as misbehaving. */
        maxRefusalsPerRun: z.number().int().min(1).max(100_000).default(50),
        /** Time one request to the bridge may take to arrive whole. */
        requestTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
        maxResponseBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
        maxRequestBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
        callTimeoutMs: z.number().int().min(100).max(3_600_000).default(60_000),
        connectTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
        /** A user's own upstream instances (per-user servers) are closed after this long without an open run or warm container. */
        userUpstreamIdleMs: z.number().int().min(1_000).max(86_400_000).default(15 * 60 * 1000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type SandboxConfig = Config["sandbox"];
