import { Bridge } from "./bridge/bridge.js";
import type { Config } from "./config/schema.js";
import { createMcpServer } from "./mcp/server.js";
import { RunService } from "./runs/run-service.js";
import type { SandboxBackend } from "./sandbox/backend.js";
import { DockerSandboxBackend } from "./sandbox/docker/docker-backend.js";
import { defaultRuntime } from "./shared/languages.js";
import { errorMessage } from "./shared/errors.js";
import type { Logger } from "./shared/logger.js";
import { join } from "node:path";
import { Metrics } from "./shared/metrics.js";
import { type AuditLog, FileAuditLog, noAudit } from "./stores/audit.js";
import { Egress } from "./egress/egress.js";
import { Packages } from "./runs/packages.js";
import { UserDirectories } from "./stores/user-dirs.js";
import { SkillStore } from "./stores/skills.js";
import { UserFiles } from "./stores/user-files.js";
import { UserVolumes } from "./stores/volumes.js";

export interface App {
  config: Config;
  logger: Logger;
  /** The sandbox port; the Docker adapter is chosen here and nowhere else. */
  backend: SandboxBackend;
  runs: RunService;
  bridge: Bridge;
  volumes: UserVolumes;
  dirs: UserDirectories;
  audit: AuditLog;
  metrics: Metrics;
  files: UserFiles;
  /** Package installs (the packages tool), unless turned off. */
  packages: Packages | undefined;
  /**
   * A new MCP server bound to this app's parts (one per client connection). Without a resolver,
   * every call runs as the configured local user (stdio).
   */
  createServer(userIdFor?: (authInfo: unknown) => string): ReturnType<typeof createMcpServer>;
  /** Background start-up work: remove orphans, make sure the image exists. Never throws. */
  warmUp(): Promise<void>;
  close(): Promise<void>;
}

/** The composition root: every part is built here from config, nowhere else. */
export function createApp(config: Config, logger: Logger, options: { multiUser?: boolean } = {}): App {
  const backend = new DockerSandboxBackend({ config, logger });
  const volumes = new UserVolumes({ dataDir: config.dataDir, mode: config.storage.quota, quotaMiB: config.storage.quotaMiB, quotaInodes: config.storage.quotaInodes, logger });
  const dirs = new UserDirectories(config.dataDir, backend.sandboxUid(), config.storage.quota === "off" ? undefined : volumes);
  const audit: AuditLog = config.audit.enabled ? new FileAuditLog({ path: config.audit.path ?? join(config.dataDir, "audit.log"), maxBytes: config.audit.maxBytes, maxFiles: config.audit.maxFiles, logger }) : noAudit;
  let runsRef: RunService | undefined;
  const metrics = new Metrics({
    queued: () => runsRef?.inFlight.queued ?? 0,
    running: () => runsRef?.inFlight.active ?? 0,
    containers: () => backend.activeContainers(),
  });
  const bridge = new Bridge(config, logger, (e) => {
    audit.write(e);
    if (e.kind === "call") metrics.bridgeCall(e.ok);
    else metrics.bridgeRefusal(e.reason);
  }, { multiUser: options.multiUser ?? false });
  // Egress only for users the operator allowed some destination (config egress); every decision audited.
  const egress = new Egress(config, logger, (e) => audit.write(e));
  const skills = new SkillStore(undefined, join(config.dataDir, "starter-skills"));
  const files = new UserFiles(dirs, skills, {
    maxReadBytes: config.storage.maxReadBytes,
    maxWriteBytes: config.storage.maxWriteBytes,
    owner: (process.getuid?.() ?? 0) === 0 ? backend.sandboxUid() : undefined,
  });
  const runs = new RunService({ config, backend, dirs, logger, bridge, egress, audit, metrics, skills, files });
  runsRef = runs;
  const packages = config.packages.enabled ? new Packages({ config, backend, dirs, egress, logger }) : undefined;
  let closed = false;
  return {
    config,
    logger,
    backend,
    runs,
    bridge,
    volumes,
    dirs,
    audit,
    metrics,
    files,
    packages,
    createServer: (userIdFor = () => config.userId) => createMcpServer({ runs, bridge, files, logger, userIdFor, ociRuntime: config.sandbox.ociRuntime, runtimes: config.sandbox.runtimes, pythonPackages: config.sandbox.pythonPackages, egress: config.egress.allow.length > 0 || Object.keys(config.egress.users).length > 0, packages }),
    async warmUp() {
      // In the background; a failure here (the data dir gone, say) is logged, and the next run that
      // needs the bridge starts it again through its own call.
      bridge.start().catch((err: unknown) => logger.warn(`could not prepare the upstream servers' code API: ${errorMessage(err)}`));
      try {
        const removed = await backend.reapOrphans();
        if (removed > 0) logger.info(`removed ${removed} sandbox container(s) left by a server that exited`);
        // The default runtime's image now; the others' when first used.
        await backend.ensureImage(defaultRuntime(config.sandbox.runtimes));
      } catch (err) {
        logger.warn(`start-up check failed; tool calls will report it until fixed: ${errorMessage(err)}`);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await runs.close();
      await backend.close();
      await bridge.close();
      egress.close();
      await audit.close();
    },
  };
}
