import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { JS_RUNTIMES, type Language, type PythonPackages, type RuntimeName, languagesOf } from "../../shared/languages.js";
import type { RunResult, RunService } from "../../runs/run-service.js";
import type { Logger } from "../../shared/logger.js";
import { toolError } from "../result.js";
import { workspaceUri } from "./files.js";
import { sizeText } from "../../shared/format.js";

/** The input schema for the runtimes this server offers (languages and runtimes it does not run are not offered). */
export function executeCodeInput(enabled: readonly RuntimeName[], egress = false, maxTimeoutMs?: number) {
  const languages = languagesOf(enabled) as [Language, ...Language[]];
  const jsRuntimes = JS_RUNTIMES.filter((r) => enabled.includes(r));
  const timeout = z.number().int().min(1);
  return {
    code: z.string().min(1, "code is empty: pass the program to run"),
    language: z.enum(languages).default(languages[0]),
    ...(jsRuntimes.length > 0 ? { runtime: z.enum(jsRuntimes as [JsRuntime, ...JsRuntime[]]).optional() } : {}),
    timeoutMs: (maxTimeoutMs ? timeout.max(maxTimeoutMs) : timeout).optional(),
    outputs: z.string().max(1024).optional().describe("A /workspace folder: files the code writes there come back as links, small images inline."),
    ...(egress
      ? {
          allowHosts: z
            .array(z.string().max(300))
            .max(100)
            .optional()
            .describe('Hosts this run may reach, e.g. "api.example.com", "*.example.com:8443"; [] for none, omit for all the server allows.'),
        }
      : {}),
  };
}

type JsRuntime = (typeof JS_RUNTIMES)[number];

/** The result's fields, without prose (the model reads the text content; programs read these) or bounds (.int() adds two). */
export const executeCodeOutput = {
  exitCode: z.number().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  durationMs: z.number(),
  timedOut: z.boolean(),
  oomKilled: z.boolean(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  stdoutFile: z.string().optional(),
  stderrFile: z.string().optional(),
  shown: z
    .array(
      z.object({
        label: z.string(),
        mimeType: z.string(),
        inline: z.boolean(),
        uri: z.string().optional(),
        bytes: z.number(),
        width: z.number().optional(),
        height: z.number().optional(),
      }),
    )
    .optional(),
  notes: z.array(z.string()).optional(),
};

export interface ExecuteCodeDeps {
  runs: RunService;
  logger: Logger;
  /** The user the call runs as (stdio: the configured local user). */
  userIdFor: (authInfo: unknown) => string;
  nodeVersion: string;
  /** Names of the upstream MCP servers every user may call. */
  upstreams: string[];
  /** Some user may call an upstream server (shared, or only their own: then the names are not listed). */
  hasUpstreams?: boolean | undefined;
  /** The language runtimes this server offers. */
  runtimes: readonly RuntimeName[];
  pythonPackages?: PythonPackages | undefined;
  egress?: boolean | undefined;
  /** The packages tool is offered. */
  packages?: boolean | undefined;
}

/** Upstream names for the description, bounded whatever the configuration: the rest are counted. */
export function someNames(names: readonly string[], maxChars = 120): string {
  const shown: string[] = [];
  let used = 0;
  for (const n of names) {
    if (shown.length > 0 && used + n.length + 2 > maxChars) break;
    shown.push(n);
    used += n.length + 2;
  }
  const rest = names.length - shown.length;
  return `${shown.join(", ")}${rest > 0 ? ` and ${rest} more` : ""}`;
}

export interface DescribeOptions {
  limits: { memoryMiB: number; cpus: number; timeoutMs: number; maxOutputBytes: number };
  nodeVersion: string;
  upstreams?: readonly string[];
  /** Upstream servers exist even when `upstreams` names none (a user's own servers). */
  hasUpstreams?: boolean;
  runtimes?: readonly RuntimeName[];
  pythonPackages?: PythonPackages;
  egress?: boolean;
  packages?: boolean;
}

/**
 * The tool's description: what a model needs on every turn and no more (the token budget in
 * docs/ARCHITECTURE.md). The rest is in /servers/README.md and the codebox://help resource.
 */
export function describeExecuteCode(o: DescribeOptions): string {
  const l = o.limits;
  const runtimes = o.runtimes ?? ["node"];
  const upstreams = o.upstreams ?? [];
  const node = runtimes.includes("node");
  const bun = runtimes.includes("bun");
  const js = node || bun;
  const py = runtimes.includes("python");
  const jsOn = node && bun ? `Node ${o.nodeVersion.split(".")[0]}, or runtime "bun"` : node ? `Node ${o.nodeVersion.split(".")[0]}` : "Bun";
  const languages = [
    js ? `TypeScript/JavaScript (ES module, top-level await; ${jsOn})` : "",
    py ? `Python 3${o.pythonPackages === "stdlib" ? "" : " with numpy, pandas, matplotlib, scipy, openpyxl, Pillow"}` : "",
  ].filter(Boolean);
  const imports = [js ? '`import { f } from "/servers/<server>/index.ts"`' : "", py ? "`from servers.<server> import f`" : ""].filter(Boolean).join(", ");
  const skillFiles = [js ? "index.ts" : "", py ? "__init__.py" : ""].filter(Boolean).join(" or ");
  return [
    `Run code in a fresh sandbox and get back what it printed. ${languages.join(" or ")}.`,
    `- Only files outlive a call: /workspace is the working folder. Keep reusable code in /skills/<name>/ (${skillFiles}, plus SKILL.md saying what it does) and import it later.`,
    ...(upstreams.length > 0 || o.hasUpstreams
      ? [`- Tools of ${upstreams.length > 0 ? `the MCP servers ${someNames(upstreams)}` : "your MCP servers"} are functions here: find them with search_tools, then ${imports}.`]
      : []),
    `- Print only what you need (a summary, the rows that matter), never whole datasets: filter in code. ${py ? "display(x)" : "display()"} shows an image${js ? " (JS: /servers/display.ts)" : ""}.`,
    `- ${o.egress ? "Network: only the hosts in allowHosts, over HTTP(S) through a proxy." : "No network."}${o.packages ? " Add npm/pip packages with the packages tool." : ""} Limits: ${l.memoryMiB} MiB, ${l.cpus} CPU, ${l.timeoutMs / 1000} s, ${sizeText(l.maxOutputBytes)} of output.`,
    "- More: print /servers/README.md.",
  ].join("\n");
}

export function formatRunText(r: RunResult): string {
  const status = r.timedOut
    ? `timed out after ${r.durationMs} ms (killed)`
    : r.oomKilled
      ? r.exitCode === 137
        ? `killed: out of memory after ${r.durationMs} ms`
        : `out of memory (exit code ${r.exitCode}) after ${r.durationMs} ms`
      : `exit code ${r.exitCode} in ${r.durationMs} ms`;
  const parts = [`[${status}]`];
  if (r.stdout) parts.push(r.stdout.endsWith("\n") ? r.stdout.slice(0, -1) : r.stdout);
  if (r.stdoutTruncated) {
    parts.push(`[stdout cut: the first ${r.stdout.length} of ${r.stdoutBytes} bytes are above${r.stdoutFile ? `; all of it is in /workspace/${r.stdoutFile}` : ""}]`);
    if (r.stdoutTail) parts.push(`[stdout, last part]\n${r.stdoutTail}`);
  }
  if (r.stderr) parts.push(`[stderr]\n${r.stderr.endsWith("\n") ? r.stderr.slice(0, -1) : r.stderr}`);
  if (r.stderrTruncated) {
    parts.push(`[stderr cut: ${r.stderrBytes} bytes in all${r.stderrFile ? `; all of it is in /workspace/${r.stderrFile}` : ""}]`);
    if (r.stderrTail) parts.push(`[stderr, last part]\n${r.stderrTail}`);
  }
  if (!r.stdout && !r.stderr) parts.push("(no output: print the results you want to see)");
  return parts.join("\n");
}

export function registerExecuteCodeTool(server: McpServer, deps: ExecuteCodeDeps): void {
  server.registerTool(
    "execute_code",
    {
      title: "Execute code in a sandbox",
      description: describeExecuteCode({
        limits: deps.runs.limits(),
        nodeVersion: deps.nodeVersion,
        upstreams: deps.upstreams,
        hasUpstreams: deps.hasUpstreams ?? deps.upstreams.length > 0,
        runtimes: deps.runtimes,
        pythonPackages: deps.pythonPackages ?? "data",
        egress: deps.egress ?? false,
        packages: deps.packages ?? false,
      }),
      inputSchema: executeCodeInput(deps.runtimes, deps.egress ?? false, deps.runs.limits().timeoutMs),
      outputSchema: executeCodeOutput,
      annotations: {
        // The code can write and delete files in the user's /workspace and /skills.
        readOnlyHint: false,
        destructiveHint: true,
        idempotentHint: false,
        // No network from the sandbox; with upstream servers configured, the code reaches them.
        openWorldHint: deps.hasUpstreams ?? deps.upstreams.length > 0,
      },
    },
    async (args, extra) => {
      const feedback = startFeedback(server, extra, args.timeoutMs ?? deps.runs.limits().timeoutMs);
      try {
        const result = await deps.runs.execute({
          userId: deps.userIdFor(extra.authInfo),
          code: args.code,
          language: args.language,
          runtime: "runtime" in args ? (args.runtime as RuntimeName | undefined) : undefined,
          timeoutMs: args.timeoutMs,
          signal: extra.signal,
          onOutput: feedback.onOutput,
          outputs: args.outputs,
          allowHosts: "allowHosts" in args ? (args.allowHosts as string[] | undefined) : undefined,
        });
        const shown = shownContent(result);
        const links = (
          [
            ["stdout", result.stdoutFile],
            ["stderr", result.stderrFile],
          ] as const
        )
          .filter((l): l is readonly ["stdout" | "stderr", string] => !!l[1])
          .map(([stream, path]) => ({
            type: "resource_link" as const,
            uri: workspaceUri(path),
            name: path.split("/").pop()!,
            title: `Full ${stream} of the run`,
            mimeType: "text/plain",
            size: stream === "stdout" ? Math.min(result.stdoutBytes, SPILL_SIZE_UNKNOWN) : Math.min(result.stderrBytes, SPILL_SIZE_UNKNOWN),
          }));
        return {
          content: [{ type: "text", text: formatRunText(result) }, ...links, ...shown.content],
          structuredContent: {
            ...(result.stdoutFile ? { stdoutFile: workspaceUri(result.stdoutFile) } : {}),
            ...(result.stderrFile ? { stderrFile: workspaceUri(result.stderrFile) } : {}),
            exitCode: result.exitCode,
            stdout: result.stdout,
            stderr: result.stderr,
            durationMs: result.durationMs,
            timedOut: result.timedOut,
            oomKilled: result.oomKilled,
            stdoutTruncated: result.stdoutTruncated,
            stderrTruncated: result.stderrTruncated,
            ...(shown.structured.length > 0 ? { shown: shown.structured } : {}),
            ...(result.notes.length > 0 ? { notes: result.notes } : {}),
          },
        };
      } catch (err) {
        return toolError(err, deps.logger);
      } finally {
        feedback.stop();
      }
    },
  );
}

/**
 * What the code showed and returned, as content blocks: a line naming each item, then the image
 * (MCP image content) or a resource_link to the saved file; lines for what was refused last.
 */
export function shownContent(r: Pick<RunResult, "shown" | "notes">) {
  const content: Array<{ type: "text"; text: string } | { type: "image"; data: string; mimeType: string } | { type: "resource_link"; uri: string; name: string; mimeType: string; size: number; title?: string }> = [];
  const structured: Array<{ label: string; mimeType: string; inline: boolean; uri?: string; bytes: number; width?: number; height?: number }> = [];
  for (const item of r.shown) {
    const dims = item.width !== undefined && item.height !== undefined ? { width: item.width, height: item.height } : {};
    const px = item.width !== undefined ? `, ${item.width}×${item.height}` : "";
    if (item.kind === "image") {
      content.push({ type: "text", text: `[image: ${item.label} (${item.mime}${px}, ${sizeText(item.data.length)})]` });
      content.push({ type: "image", data: item.data.toString("base64"), mimeType: item.mime });
      structured.push({ label: item.label, mimeType: item.mime, inline: true, bytes: item.data.length, ...dims });
    } else {
      const uri = workspaceUri(item.path);
      content.push({ type: "text", text: `[file: /workspace/${item.path} (${item.mime}${px}, ${sizeText(item.bytes)}) = ${uri}]` });
      content.push({ type: "resource_link", uri, name: item.path.split("/").pop()!, title: item.label, mimeType: item.mime, size: item.bytes });
      structured.push({ label: item.label, mimeType: item.mime, inline: false, uri, bytes: item.bytes, ...dims });
    }
  }
  if (r.notes.length > 0) content.push({ type: "text", text: r.notes.map((n) => `[${n}]`).join("\n") });
  return { content, structured };
}

const SPILL_SIZE_UNKNOWN = Number.MAX_SAFE_INTEGER;
const PROGRESS_EVERY_MS = 2_000;
const LOG_LINES_PER_SECOND = 20;
const LOG_LINES_PER_RUN = 2_000;

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * Keeps a client with a short timeout informed during a long run: notifications/progress every
 * 2 s when it sent a progress token, and the code's stdout/stderr lines as logging messages
 * (rate-limited; clients choose the level with logging/setLevel).
 */
function startFeedback(server: McpServer, extra: Extra, timeoutMs: number) {
  const token = extra._meta?.progressToken;
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  if (token !== undefined) {
    const tick = () => {
      const seconds = Math.round((Date.now() - started) / 1000);
      void extra
        .sendNotification({ method: "notifications/progress", params: { progressToken: token, progress: seconds, total: Math.ceil(timeoutMs / 1000), message: `running for ${seconds} s` } })
        .catch(() => {});
    };
    tick();
    timer = setInterval(tick, PROGRESS_EVERY_MS);
  }
  let sentLines = 0;
  let windowStart = Date.now();
  let inWindow = 0;
  let dropped = 0;
  const partial = { stdout: "", stderr: "" };
  const onOutput = (stream: "stdout" | "stderr", chunk: Buffer) => {
    if (sentLines >= LOG_LINES_PER_RUN) return;
    const text = partial[stream] + chunk.toString("utf8");
    const lines = text.split("\n");
    partial[stream] = (lines.pop() ?? "").slice(-2_000);
    for (const line of lines) {
      const now = Date.now();
      if (now - windowStart >= 1000) {
        windowStart = now;
        inWindow = 0;
      }
      if (inWindow >= LOG_LINES_PER_SECOND || sentLines >= LOG_LINES_PER_RUN) {
        dropped++;
        continue;
      }
      inWindow++;
      sentLines++;
      void server.server
        .sendLoggingMessage({ level: stream === "stderr" ? "warning" : "info", logger: stream, data: line.slice(0, 2_000) }, extra.sessionId)
        .catch(() => {});
    }
  };
  return {
    onOutput,
    stop: () => {
      clearInterval(timer);
      if (dropped > 0) void server.server.sendLoggingMessage({ level: "debug", logger: "codebox", data: `${dropped} output lines not streamed (rate limit)` }, extra.sessionId).catch(() => {});
    },
  };
}
