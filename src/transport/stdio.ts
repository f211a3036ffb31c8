import type { App } from "../app.js";
import { defaultRuntime } from "../shared/languages.js";
import type { StdioFront } from "./stdio-front.js";

/**
 * Serves MCP over stdin/stdout. stdout carries only protocol frames; every log line goes to
 * stderr. Ends (removing every container it started) when the client closes stdin or on
 * SIGINT/SIGTERM.
 */
export async function serveStdio(app: App, front: StdioFront): Promise<void> {
  // Warm containers for the one local user first: the first call may come right after initialize.
  app.runs.prewarm(app.config.userId);
  void app.warmUp();
  const server = app.createServer();
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    app.logger.info(`shutting down (${why})`);
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    await app.close().catch(() => {});
    await server.close().catch(() => {});
    process.exit(0);
  };
  // The front reads stdin from launch: the client may have closed it before this line runs.
  void front.gone.then(() => stop("client closed stdin"));
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
  await server.connect(front.transport());
  app.logger.info("codebox-mcp serving MCP over stdio", { dataDir: app.config.dataDir, ociRuntime: app.config.sandbox.ociRuntime, image: app.backend.imageTag(defaultRuntime(app.config.sandbox.runtimes)) });
}
