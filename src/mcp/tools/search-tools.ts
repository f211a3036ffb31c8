import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { Bridge } from "../../bridge/bridge.js";
import type { RuntimeName } from "../../shared/languages.js";
import type { Logger } from "../../shared/logger.js";
import { toolError } from "../result.js";

export const searchToolsInput = {
  query: z.string().max(500).describe('Words from tool names or descriptions, e.g. "create issue"; "" lists all.'),
  server: z.string().max(64).optional(),
  detail: z.enum(["name", "summary", "full"]).default("summary"),
  limit: z.number().int().min(1).max(200).default(20),
};

const hit = z.object({
  server: z.string(),
  tool: z.string(),
  import: z.string(),
  function: z.string(),
  python: z.string(),
  description: z.string().optional(),
  inputSchema: z.unknown().optional(),
  outputSchema: z.unknown().optional(),
});

const serverState = z.object({ name: z.string(), state: z.string(), tools: z.number(), codeApi: z.boolean(), reason: z.string().optional() });

export const searchToolsOutput = { tools: z.array(hit), servers: z.array(serverState) };

export function registerSearchToolsTool(server: McpServer, deps: { bridge: Bridge; logger: Logger; userIdFor: (authInfo: unknown) => string; runtimes: readonly RuntimeName[] }): void {
  const js = deps.runtimes.includes("node") || deps.runtimes.includes("bun");
  const py = deps.runtimes.includes("python");
  server.registerTool(
    "search_tools",
    {
      title: "Search upstream MCP tools",
      description: 'Find the upstream MCP tools that code in execute_code can call. Each hit gives its import line. Ask detail "full" (JSON Schemas) only for the tools you will call.',
      inputSchema: searchToolsInput,
      outputSchema: searchToolsOutput,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async (args, extra) => {
      try {
        const userId = deps.userIdFor(extra.authInfo);
        const tools = (await deps.bridge.search(userId, args.query, { server: args.server, detail: args.detail, limit: args.limit })).map(({ score: _score, ...h }) => h);
        const disabled = new Map(deps.bridge.codeApiDisabled(userId).map((d) => [d.server, d.reason]));
        const servers = deps.bridge.status(userId).map(({ name, state, tools: n }) => ({ name, state, tools: n, codeApi: !disabled.has(name), ...(disabled.has(name) ? { reason: disabled.get(name) } : {}) }));
        const how = (t: (typeof tools)[number]) => [js ? `import { ${t.function} } from "${t.import}"` : "", py ? `${js ? "(Python: " : ""}${t.python}${js ? ")" : ""}` : ""].filter(Boolean).join(" ");
        const lines = tools.map((t) => `${t.server}.${t.tool} → ${how(t)}${t.description ? `\n  ${t.description}` : ""}${args.detail === "full" ? `\n  input: ${JSON.stringify(t.inputSchema)}${t.outputSchema ? `\n  output: ${JSON.stringify(t.outputSchema)}` : ""}` : ""}`);
        const down = servers.filter((s) => s.state !== "ready").map((s) => `${s.name} (${s.state})`);
        const text = [
          tools.length ? `${tools.length} tool(s):\n${lines.join("\n")}` : servers.length ? "No tool matches; try fewer or other words, or an empty query to list all." : "No upstream MCP servers are configured (add them under mcpServers in the config).",
          down.length ? `Not available right now: ${down.join(", ")}.` : "",
          disabled.size ? `Left out of the code API: ${[...disabled].map(([name, reason]) => `${name}: ${reason}`).join("; ")}.` : "",
        ].filter(Boolean).join("\n\n");
        return { content: [{ type: "text", text }], structuredContent: { tools, servers } };
      } catch (err) {
        return toolError(err, deps.logger);
      }
    },
  );
}
