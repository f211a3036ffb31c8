#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CodeboxError, errorMessage } from "./shared/errors.js";
import { createLogger, type LogLevel } from "./shared/logger.js";
import { packageVersion } from "./shared/paths.js";
import { type Language, RUNTIMES, type RuntimeName } from "./shared/languages.js";
import { StdioFront } from "./transport/stdio-front.js";

// The server's modules (SDK, engine client, HTTP stack) load only for the commands that use
// them: --help and --version answer at once.
const loadApp = () => import("./app.js");

const HELP = `codebox-mcp ${packageVersion()}: an MCP server that runs TypeScript, JavaScript and Python in fresh, hardened Docker containers

Usage:
  codebox-mcp [serve]                  serve MCP over stdio (what an editor's MCP config launches)
  codebox-mcp serve --http [--host <addr>] [--port <n>]
                                       serve MCP over Streamable HTTP for many users (API keys / OAuth)
  codebox-mcp route [--host <addr>] [--port <n>]
                                       one address in front of many cells (cluster mode, docs/SCALING.md)
  codebox-mcp cell status|rebalance --router <url>
  codebox-mcp cell move <user> <cell> | drain <cell> | undrain <cell> --router <url>
                                       operate the cells through a router (needs cluster.token)
  codebox-mcp run <file> [--lang ts|js|py] [--bun] [--timeout <ms>]
  codebox-mcp run -e <code> [--lang ts|js|py] [--bun] [--timeout <ms>]
                                       run once in a sandbox, print its output, exit with its exit code
                                       (--bun: TypeScript/JavaScript on Bun instead of Node)
  codebox-mcp doctor                   check the engine, OCI runtime, images, seccomp profile and data dir
  codebox-mcp image build [node|bun|python|all] [--offline]
                                       build the sandbox images (--offline: from this machine's files, no registry)

Options:
  --config <file>       JSON config file (see docs/CONFIG.md)
  --data-dir <dir>      where users' workspaces and skills live (env CODEBOX_DATA_DIR)
  --oci-runtime <name>  runc (default) or runsc (gVisor); --runtime is its deprecated old name
  --profile <name>      light | standard (default) | heavy
  --image <tag>         use this sandbox image instead of the built-in one
  --log-level <level>   debug | info | warn | error | silent (logs go to stderr)
  -h, --help            this text
  -v, --version         the version
`;

const OPTIONS = {
  config: { type: "string" },
  "data-dir": { type: "string" },
  "oci-runtime": { type: "string" },
  runtime: { type: "string" },
  profile: { type: "string" },
  image: { type: "string" },
  "log-level": { type: "string" },
  eval: { type: "string", short: "e" },
  lang: { type: "string" },
  bun: { type: "boolean" },
  timeout: { type: "string" },
  offline: { type: "boolean" },
  http: { type: "boolean" },
  host: { type: "string" },
  port: { type: "string" },
  router: { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
} as const;

class UsageError extends Error {}

function parseInteger(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} takes a whole number of milliseconds, got "${value}"`);
  return Number(value);
}

function languageFor(lang: string | undefined, file: string | undefined): Language {
  const l = lang ?? (file && /\.(m?js|cjs)$/.test(file) ? "js" : file && /\.py$/.test(file) ? "py" : "ts");
  if (l === "ts" || l === "typescript") return "typescript";
  if (l === "js" || l === "javascript") return "javascript";
  if (l === "py" || l === "python") return "python";
  throw new UsageError(`--lang takes ts, js or py, got "${l}"`);
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const [command = "serve", ...rest] = positionals;
  // Services (serve, route) log JSON lines; the one-shot commands log for a person.
  const interactive = command !== "serve" && command !== "route";
  // An editor waits for `initialize` before anything else: answer it before the rest loads.
  const front = command === "serve" && !values.http ? new StdioFront() : undefined;
  const routing = command === "route";
  const { loadConfigReport } = await import("./config/load.js");
  const { config, warnings } = loadConfigReport({
    env: process.env,
    configFile: values.config,
    flags: {
      dataDir: values["data-dir"],
      "sandbox.ociRuntime": values["oci-runtime"],
      "sandbox.runtime": values.runtime,
      "sandbox.profile": values.profile,
      "sandbox.image": values.image,
      [routing ? "route.host" : "http.host"]: values.host,
      [routing ? "route.port" : "http.port"]: values.port === undefined ? undefined : /^\d+$/.test(values.port) ? Number(values.port) : values.port,
      // One-shot commands have no next run to keep a warm container for.
      ...(command === "serve" ? {} : { "sandbox.pool.size": 0 }),
      // A person reads the CLI commands' stderr: only what needs attention, unless asked.
      logLevel: values["log-level"] ?? (interactive && !process.env.CODEBOX_LOG_LEVEL ? (command === "run" ? "warn" : "info") : undefined),
    },
  });
  // The longest message a client may need to send: a write_file at the limit (base64) or code at its
  // limit with every character escaped, and room for the rest of the request.
  front?.setLimits({ maxLineBytes: Math.max(64 * 1024 * 1024, Math.ceil((config.storage.maxWriteBytes * 4) / 3), config.sandbox.maxCodeBytes * 6) + 1024 * 1024 });
  const logger = createLogger({ level: config.logLevel as LogLevel, pretty: interactive });
  for (const w of warnings) logger.warn(w);

  switch (command) {
    case "serve": {
      if (rest.length > 0) throw new UsageError(`serve takes no arguments, got "${rest.join(" ")}"`);
      const { createApp } = await loadApp();
      // Over HTTP many users share this server: upstreams default to one instance per user.
      const app = createApp(config, logger, { multiUser: values.http === true });
      if (front) {
        const { serveStdio } = await import("./transport/stdio.js");
        await serveStdio(app, front);
        return -1; // keep running
      }
      const { serveHttp } = await import("./transport/http.js");
      const server = await serveHttp(app);
      const stop = (signal: string) => {
        const force = setTimeout(() => process.exit(1), config.http.shutdownGraceMs + 15_000);
        force.unref();
        void server.shutdown(signal).then(() => process.exit(0));
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
      return -1;
    }
    case "route": {
      if (rest.length > 0) throw new UsageError(`route takes no arguments, got "${rest.join(" ")}"`);
      // The router loads no engine code: it authenticates and forwards.
      const { serveRouter } = await import("./transport/router/router.js");
      const router = await serveRouter(config, logger).catch((err: unknown) => {
        throw new CodeboxError("CODEBOX_CONFIG_INVALID", errorMessage(err));
      });
      const stop = () => void router.close().then(() => process.exit(0));
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      return -1;
    }
    case "cell": {
      const [sub, a, b] = rest;
      const router = values.router ?? process.env.CODEBOX_ROUTER_URL;
      if (!router) throw new UsageError("cell commands need --router <url> (or CODEBOX_ROUTER_URL): the router's address, e.g. http://10.0.0.5:8080");
      if (!config.cluster.token) throw new UsageError("cell commands need the cluster token: set cluster.token (CODEBOX_CLUSTER_TOKEN)");
      const paths: Record<string, [string, string, number]> = {
        status: ["GET", "/admin/cells", 0],
        rebalance: ["POST", "/admin/rebalance", 0],
        move: ["POST", `/admin/move?${new URLSearchParams({ user: a ?? "", to: b ?? "" })}`, 2],
        drain: ["POST", `/admin/drain?${new URLSearchParams({ cell: a ?? "" })}`, 1],
        undrain: ["POST", `/admin/undrain?${new URLSearchParams({ cell: a ?? "" })}`, 1],
      };
      const spec = sub ? paths[sub] : undefined;
      if (!spec || rest.length !== spec[2] + 1) throw new UsageError("cell takes: status | rebalance | move <user> <cell> | drain <cell> | undrain <cell>");
      let res: Response;
      try {
        res = await fetch(new URL(spec[1], router), { method: spec[0], headers: { authorization: `Bearer ${config.cluster.token}` } });
      } catch (err) {
        const cause = (err as { cause?: unknown }).cause;
        throw new CodeboxError("CODEBOX_CELL_UNAVAILABLE", `cannot reach the router at ${router}: ${errorMessage(err)}${cause ? ` (${errorMessage(cause)})` : ""}`);
      }
      process.stdout.write(await res.text());
      return res.ok ? 0 : 1;
    }
    case "run": {
      const file = rest[0];
      if ((file === undefined) === (values.eval === undefined)) throw new UsageError("run takes a file or -e <code> (one of the two)");
      let code: string;
      if (values.eval !== undefined) code = values.eval;
      else {
        try {
          code = readFileSync(file!, "utf8");
        } catch (err) {
          throw new UsageError(`cannot read ${file}: ${errorMessage(err)}`);
        }
      }
      const { createApp } = await loadApp();
      const app = createApp(config, logger);
      try {
        const ac = new AbortController();
        process.once("SIGINT", () => ac.abort());
        const r = await app.runs.execute({ userId: config.userId, code, language: languageFor(values.lang, file), runtime: values.bun ? "bun" : undefined, timeoutMs: parseInteger("timeout", values.timeout), signal: ac.signal });
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
        if (r.stdoutTruncated || r.stderrTruncated) logger.warn(`output cut at ${config.sandbox.maxOutputBytes} bytes per stream (stdout ${r.stdoutBytes} bytes, stderr ${r.stderrBytes} bytes in all)`);
        if (r.timedOut) logger.error(`timed out after ${r.durationMs} ms; the sandbox was killed`);
        if (r.oomKilled) logger.error(r.exitCode === 137 ? "killed: out of memory" : "out of memory");
        // A terminal shows no images: each one shown is saved in the workspace, and its path printed.
        const workspace = (await app.dirs.ensure(config.userId)).workspace;
        for (const [i, item] of r.shown.entries()) {
          let path = item.kind === "file" ? item.path : `.codebox/images/${r.runId}-cli-${i + 1}.${item.mime.split("/")[1]!.replace("svg+xml", "svg")}`;
          if (item.kind === "image") await app.files.writeWorkspace(config.userId, path, item.data).catch(() => (path = ""));
          process.stderr.write(`[${item.label}: ${path ? `${workspace}/${path}` : "could not be saved"}]\n`);
        }
        for (const note of r.notes) process.stderr.write(`[${note}]\n`);
        return r.exitCode ?? (r.timedOut ? 124 : 137);
      } finally {
        await app.close();
      }
    }
    case "doctor": {
      const { createApp } = await loadApp();
      const { formatDoctor, runDoctor } = await import("./doctor.js");
      const app = createApp(config, logger);
      try {
        const results = await runDoctor(app);
        process.stdout.write(`${formatDoctor(results)}\n`);
        const failed = results.filter((r) => !r.ok).length;
        process.stdout.write(failed === 0 ? "all checks passed\n" : `${failed} check(s) failed\n`);
        return failed === 0 ? 0 : 1;
      } finally {
        await app.close();
      }
    }
    case "image": {
      if (rest[0] !== "build" || rest.length > 2) throw new UsageError('image takes one subcommand: "image build [node|bun|python|all] [--offline]"');
      const which = rest[1] ?? "all";
      const runtimes: RuntimeName[] = which === "all" ? config.sandbox.runtimes : RUNTIMES.includes(which as RuntimeName) ? [which as RuntimeName] : [];
      if (runtimes.length === 0) throw new UsageError(`image build takes node, bun, python or all, got "${which}"`);
      const { createApp } = await loadApp();
      const app = createApp(config, logger);
      try {
        await app.backend.engineInfo();
        for (const runtime of runtimes) {
          const { tag, method } = await app.backend.buildImage(runtime, values.offline ? true : undefined);
          process.stdout.write(`built ${tag} (${runtime}, ${method})\n`);
        }
        return 0;
      } finally {
        await app.close();
      }
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(`codebox-mcp: ${err.message}\nRun \`codebox-mcp --help\` for usage.\n`);
    else if (err instanceof CodeboxError) process.stderr.write(`codebox-mcp: ${err.message}\n`);
    else process.stderr.write(`codebox-mcp: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
