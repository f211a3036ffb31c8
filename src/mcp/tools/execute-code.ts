import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { LANGUAGES, type RunResult } from "../../sandbox/backend.js";
import type { CodeExecutor } from "../../sandbox/executor.js";
import type { Logger } from "../../shared/logger.js";
import { toolError } from "../result.js";

export const executeCodeInput = {
  code: z.string().min(1, "code is empty: pass the program to run").describe("The program: TypeScript or JavaScript, run as an ES module."),
  language: z.enum(LANGUAGES).default("typescript").describe('"typescript" (default; types are stripped, not checked) or "javascript".'),
  timeoutMs: z.number().int().positive().optional().describe("Wall-clock limit in ms; defaults to and is capped by the server's limit."),
};

export const executeCodeOutput = {
  exitCode: z.number().int().nullable().describe("The process's exit code; null when it was killed (timeout)."),
  stdout: z.string(),
  stderr: z.string(),
  durationMs: z.number().int(),
  timedOut: z.boolean(),
  oomKilled: z.boolean(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
};

export interface ExecuteCodeDeps {
  executor: CodeExecutor;
  logger: Logger;
  /** The user the call runs as (stdio: the configured local user). */
  userIdFor: (authInfo: unknown) => string;
  nodeVersion: string;
  /** Names of the configured upstream MCP servers. */
  upstreams: string[];
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

export function describeExecuteCode(executor: CodeExecutor, nodeVersion: string, upstreams: string[] = []): string {
  const l = executor.limits();
  const bridge = upstreams.length
    ? [
        `- Call tools of these MCP servers from code: ${upstreams.join(", ")}. Each is a module: \`import { toolName } from "/servers/<server>/index.ts"\`, one typed function per tool (\`/servers/<server>/<tool>.ts\` has its types and docs). Find tools with the search_tools tool, or from code by reading /servers/index.json. Filter big results in code and print only what matters.`,
      ]
    : [];
  return [
    `Run TypeScript or JavaScript in a fresh, isolated sandbox (Node.js ${nodeVersion}, Linux container) and get back what it printed.`,
    "",
    "How it works:",
    "- Each call starts from nothing: no variables or processes survive between calls. Files do: /workspace is your working directory and keeps its files between calls; /skills holds reusable modules you can import.",
    "- The code is an ES module: top-level await works; import Node built-ins (`import { readFile } from \"node:fs/promises\"`) and your own .ts/.js files (`import { f } from \"/workspace/util.ts\"`). TypeScript types are stripped, not checked. No npm packages are installed.",
    "- No network: DNS, HTTP and sockets to the outside all fail.",
    ...bridge,
    `- Limits: ${l.memoryMiB} MiB memory, ${l.cpus} CPU, ${l.timeoutMs / 1000} s (pass timeoutMs for less), ${kib(l.maxOutputBytes)} of stdout and of stderr returned (the rest is cut and flagged), ${kib(l.maxCodeBytes)} of code.`,
    "- Print what you need with console.log: a summary, the rows that matter, not whole datasets. Only what the code prints comes back.",
    "- The result has exitCode, stdout, stderr, durationMs and flags timedOut, oomKilled, stdoutTruncated, stderrTruncated. A non-zero exit or thrown error is reported, not hidden: read stderr.",
  ].join("\n");
}

export function formatRunText(r: RunResult): string {
  const status = r.timedOut
    ? `timed out after ${r.durationMs} ms (killed)`
    : r.oomKilled
      ? `killed: out of memory after ${r.durationMs} ms`
      : `exit code ${r.exitCode} in ${r.durationMs} ms`;
  const parts = [`[${status}]`];
  if (r.stdout) parts.push(r.stdout.endsWith("\n") ? r.stdout.slice(0, -1) : r.stdout);
  if (r.stdoutTruncated) parts.push(`[stdout cut: ${r.stdout.length} of ${r.stdoutBytes} bytes shown]`);
  if (r.stderr) parts.push(`[stderr]\n${r.stderr.endsWith("\n") ? r.stderr.slice(0, -1) : r.stderr}`);
  if (r.stderrTruncated) parts.push(`[stderr cut: ${r.stderrBytes} bytes in all]`);
  if (!r.stdout && !r.stderr) parts.push("(no output: print results with console.log)");
  return parts.join("\n");
}

export function registerExecuteCodeTool(server: McpServer, deps: ExecuteCodeDeps): void {
  server.registerTool(
    "execute_code",
    {
      title: "Execute code in a sandbox",
      description: describeExecuteCode(deps.executor, deps.nodeVersion, deps.upstreams),
      inputSchema: executeCodeInput,
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
      try {
        const result = await deps.executor.execute({
          userId: deps.userIdFor(extra.authInfo),
          code: args.code,
          language: args.language,
          timeoutMs: args.timeoutMs,
          signal: extra.signal,
        });
        return {
          content: [{ type: "text", text: formatRunText(result) }],
          structuredContent: {
            exitCode: result.exitCode,
            stdout: result.stdout,
            stderr: result.stderr,
            durationMs: result.durationMs,
            timedOut: result.timedOut,
            oomKilled: result.oomKilled,
            stdoutTruncated: result.stdoutTruncated,
            stderrTruncated: result.stderrTruncated,
          },
        };
      } catch (err) {
        return toolError(err, deps.logger);
      }
    },
  );
}
