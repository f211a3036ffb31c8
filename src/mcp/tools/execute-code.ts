import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { BUN_VERSION, JS_RUNTIMES, type Language, type PythonPackages, type RuntimeName, languagesOf } from "../../shared/languages.js";
import type { RunResult, RunService } from "../../runs/run-service.js";
import type { Logger } from "../../shared/logger.js";
import { toolError } from "../result.js";
import { workspaceUri } from "./files.js";

/** The input schema for the runtimes this server offers (languages and runtimes it does not run are not offered). */
export function executeCodeInput(enabled: readonly RuntimeName[], egress = false) {
  const languages = languagesOf(enabled) as [Language, ...Language[]];
  const jsRuntimes = JS_RUNTIMES.filter((r) => enabled.includes(r));
  const langText: Record<Language, string> = {
    typescript: '"typescript" (types are stripped, not checked)',
    javascript: '"javascript"',
    python: '"python" (CPython 3)',
  };
  return {
    code: z.string().min(1, "code is empty: pass the program to run").describe(`The program. ${languages.includes("python") ? "TypeScript/JavaScript run as an ES module; Python runs as __main__." : "Run as an ES module."}`),
    language: z
      .enum(languages)
      .default(languages[0])
      .describe(`${languages.map((l) => langText[l]).join(", ")}. Default "${languages[0]}".`),
    ...(jsRuntimes.length > 0
      ? {
          runtime: z
            .enum(jsRuntimes as [JsRuntime, ...JsRuntime[]])
            .optional()
            .describe(`For TypeScript/JavaScript: ${jsRuntimes.map((r) => `"${r}"`).join(" or ")}${jsRuntimes.includes("node") ? ' (default "node")' : ""}. Omit it for Python.`),
        }
      : {}),
    timeoutMs: z.number().int().positive().optional().describe("Wall-clock limit in ms; defaults to and is capped by the server's limit."),
    outputs: z
      .string()
      .max(1024)
      .optional()
      .describe('A folder in /workspace (e.g. "reports"): files the code writes there come back in the result (links; small images shown).'),
    ...(egress
      ? {
          allowHosts: z
            .array(z.string().max(300))
            .max(100)
            .optional()
            .describe('Network destinations this run needs ("api.example.com", "*.example.com:8443"), within what the server allows; omit for all of those, [] for none. HTTP(S) goes through a proxy (fetch, requests, pip, npm use it).'),
        }
      : {}),
  };
}

type JsRuntime = (typeof JS_RUNTIMES)[number];

export const executeCodeOutput = {
  stdoutFile: z.string().optional().describe("When stdout was cut: a workspace:// resource holding all of it."),
  stderrFile: z.string().optional().describe("When stderr was cut: a workspace:// resource holding all of it."),
  exitCode: z.number().int().nullable().describe("The process's exit code; null when it was killed (timeout)."),
  stdout: z.string(),
  stderr: z.string(),
  durationMs: z.number().int(),
  timedOut: z.boolean(),
  oomKilled: z.boolean().describe("It ran out of memory: killed at the memory limit, or its runtime gave up (V8's heap limit, an uncaught Python MemoryError)."),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  shown: z
    .array(
      z.object({
        label: z.string(),
        mimeType: z.string(),
        inline: z.boolean().describe("In this result as image content; otherwise saved and linked (uri)."),
        uri: z.string().optional(),
        bytes: z.number().int(),
        width: z.number().int().optional(),
        height: z.number().int().optional(),
      }),
    )
    .optional()
    .describe("Images the code showed and files it returned (outputs)."),
  notes: z.array(z.string()).optional().describe("What was not shown or returned, and why."),
};

export interface ExecuteCodeDeps {
  runs: RunService;
  logger: Logger;
  /** The user the call runs as (stdio: the configured local user). */
  userIdFor: (authInfo: unknown) => string;
  nodeVersion: string;
  /** Names of the configured upstream MCP servers. */
  upstreams: string[];
  /** The language runtimes this server offers. */
  runtimes: readonly RuntimeName[];
  pythonPackages?: PythonPackages | undefined;
  egress?: boolean | undefined;
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

export function describeExecuteCode(runs: RunService, nodeVersion: string, upstreams: string[] = [], runtimes: readonly RuntimeName[] = ["node"], pythonPackages: PythonPackages = "data", egress = false): string {
  const l = runs.limits();
  const js = runtimes.includes("node") || runtimes.includes("bun");
  const py = runtimes.includes("python");
  const engines = [
    runtimes.includes("node") ? `TypeScript/JavaScript on Node.js ${nodeVersion}${runtimes.includes("bun") ? " (default)" : ""}` : undefined,
    runtimes.includes("bun") ? `TypeScript/JavaScript on Bun ${BUN_VERSION} (runtime: "bun")` : undefined,
    py ? 'Python 3 on CPython (language: "python")' : undefined,
  ].filter(Boolean);
  const bridge = upstreams.length
    ? [
        `- Call tools of these MCP servers from code: ${upstreams.join(", ")}. ` +
          (js ? `TypeScript/JavaScript: \`import { toolName } from "/servers/<server>/index.ts"\`, one typed function per tool (\`/servers/<server>/<tool>.ts\` has its types and docs). ` : "") +
          (py ? "Python: `from servers.<server> import tool_name` (snake_case; `/servers/<server>/<tool>.py` has its type hints), or `from servers.client import call_mcp_tool`. " : "") +
          "Find tools with the search_tools tool, or from code by reading /servers/index.json. Filter big results in code and print only what matters.",
      ]
    : [];
  return [
    `Run code in a fresh, isolated sandbox (Linux container) and get back what it printed. Languages: ${engines.join("; ")}.`,
    "",
    "How it works:",
    "- Each call starts from nothing: no variables or processes survive between calls. Files do: /workspace is your working directory and keeps its files between calls; /skills holds reusable modules you can import.",
    ...(js
      ? ['- TypeScript/JavaScript is an ES module: top-level await works; import built-ins (`import { readFile } from "node:fs/promises"`) and your own .ts/.js files (`import { f } from "/workspace/util.ts"`). TypeScript types are stripped, not checked. No npm packages are installed.']
      : []),
    ...(py ? [`- Python runs as __main__ in /workspace: import your own modules from /workspace, skills with \`from skills.<name> import ...\`; top-level await works. ${pythonPackages === "data" ? "numpy, pandas, matplotlib, scipy, openpyxl and Pillow are installed; nothing else (no pip)." : "Standard library only (no pip packages)."}`] : []),
    egress
      ? "- Network: none, except HTTP(S) to the destinations this server allows you, through a proxy (HTTP_PROXY is set; fetch, requests, pip and npm use it); other connections and DNS fail."
      : "- No network: DNS, HTTP and sockets to the outside all fail.",
    `- Show images: ${[py ? "Python `display(obj)` (figures, PIL images, PNG/SVG bytes; DataFrames print as tables) or `plt.show()`" : "", js ? '`import { display } from "/servers/display.ts"; await display(pngBytes)`' : ""].filter(Boolean).join("; ")}. Return files: pass outputs (a /workspace folder) and what the code writes there comes back as links.`,
    ...bridge,
    `- Limits: ${l.memoryMiB} MiB memory, ${l.cpus} CPU, ${l.timeoutMs / 1000} s (pass timeoutMs for less), ${kib(l.maxOutputBytes)} of stdout and of stderr returned (the rest is cut and flagged), ${kib(l.maxCodeBytes)} of code.`,
    `- Print what you need (${[js ? "console.log" : "", py ? "print" : ""].filter(Boolean).join(", ")}): a summary, the rows that matter, not whole datasets. Only what the code prints comes back.`,
    "- The result has exitCode, stdout, stderr, durationMs and flags timedOut, oomKilled, stdoutTruncated, stderrTruncated. A non-zero exit or thrown error is reported, not hidden: read stderr.",
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
      description: describeExecuteCode(deps.runs, deps.nodeVersion, deps.upstreams, deps.runtimes, deps.pythonPackages, deps.egress ?? false),
      inputSchema: executeCodeInput(deps.runtimes, deps.egress ?? false),
      outputSchema: executeCodeOutput,
      annotations: {
        title: "Execute code in a sandbox",
        // The code can write and delete files in the user's /workspace and /skills.
        readOnlyHint: false,
        destructiveHint: true,
        idempotentHint: false,
        // No network from the sandbox; with upstream servers configured, the code reaches them.
        openWorldHint: deps.upstreams.length > 0,
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

function bytesText(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${Math.round(n / 1024)} KiB` : `${n} bytes`;
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
      content.push({ type: "text", text: `[image: ${item.label} (${item.mime}${px}, ${bytesText(item.data.length)})]` });
      content.push({ type: "image", data: item.data.toString("base64"), mimeType: item.mime });
      structured.push({ label: item.label, mimeType: item.mime, inline: true, bytes: item.data.length, ...dims });
    } else {
      const uri = workspaceUri(item.path);
      content.push({ type: "text", text: `[file: /workspace/${item.path} (${item.mime}${px}, ${bytesText(item.bytes)}) = ${uri}]` });
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
