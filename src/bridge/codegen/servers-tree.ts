// The whole generated /servers tree for a set of upstreams.
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { SANDBOX_SERVERS_DIR } from "../../protocol/bridge.js";
import { RESERVED_TOP_LEVEL, clientFiles } from "./clients.js";
import { toFileStem, toIdentifier, toPythonIdentifier, toServerDir, uniquify } from "./names.js";
import { pyServerIndex, pyToolModule } from "./python.js";
import { tsServerIndex, tsToolModule } from "./typescript.js";
import type { GeneratedFile, ToolEntry } from "./types.js";

export type { GeneratedFile, ToolEntry } from "./types.js";

/** Names the generated TypeScript modules import from client.ts: no tool function may take them. */
const TS_CLIENT_NAMES = ["callTool", "callMCPTool", "unwrap", "MCPToolError", "ContentBlock", "CallToolResult"];
/** The same for Python (compared lower-case, like the module files they become). */
const PY_CLIENT_NAMES = ["call_tool", "call_mcp_tool", "unwrap", "annotations", "index", "__init__", "client"];

/** A server whose code API could not be generated: its tools are left out, the rest are not. */
export interface DisabledServer {
  server: string;
  reason: string;
}

/** One server's files and entries; throws only on a bug, which then costs only this server. */
function serverFiles(server: string, serverDir: string, tools: Tool[]): { files: GeneratedFile[]; entries: ToolEntry[] } {
  const ids = uniquify(tools.map((t) => toIdentifier(t.name)), (s) => s, TS_CLIENT_NAMES);
  const stems = uniquify(tools.map((t) => toFileStem(t.name)), (s) => s.toLowerCase(), ["index"]);
  const pyNames = uniquify(tools.map((t) => toPythonIdentifier(t.name)), (s) => s.toLowerCase(), PY_CLIENT_NAMES);
  const entries = tools.map((tool, j) => ({ server, serverDir, tool, identifier: ids[j]!, file: `${stems[j]!}.ts`, pyName: pyNames[j]! }));
  const files: GeneratedFile[] = [];
  for (const e of entries) {
    files.push({ path: `${serverDir}/${e.file}`, content: tsToolModule(e) });
    files.push({ path: `${serverDir}/${e.pyName}.py`, content: pyToolModule(e) });
  }
  files.push({ path: `${serverDir}/index.ts`, content: tsServerIndex(server, entries) });
  files.push({ path: `${serverDir}/__init__.py`, content: pyServerIndex(server, entries) });
  return { files, entries };
}

/**
 * The bridge clients and their protocol modules, index.json (for discovery from code), and per
 * server an index.ts and __init__.py plus one .ts and one .py file per tool.
 */
export function generateServersTree(servers: Map<string, Tool[]>): { files: GeneratedFile[]; entries: ToolEntry[]; disabled: DisabledServer[] } {
  const all = [...servers.keys()].sort();
  const dirs = uniquify(all.map(toServerDir), (s) => s.toLowerCase(), RESERVED_TOP_LEVEL);
  const files: GeneratedFile[] = clientFiles();
  const entries: ToolEntry[] = [];
  const disabled: DisabledServer[] = [];
  const names: string[] = [];
  const nameDirs: string[] = [];
  all.forEach((server, i) => {
    try {
      const out = serverFiles(server, dirs[i]!, [...(servers.get(server) ?? [])]);
      files.push(...out.files);
      entries.push(...out.entries);
      names.push(server);
      nameDirs.push(dirs[i]!);
    } catch (err) {
      // Security: one upstream's tool list must not take the code API of every other one down.
      disabled.push({ server, reason: `its tools could not be turned into code (${err instanceof Error ? err.message : String(err)}); call them with callMCPTool("${server}", tool, args)` });
    }
  });
  const root = SANDBOX_SERVERS_DIR;
  const listing = names.map((server, i) => ({
    server,
    path: `${root}/${nameDirs[i]}/index.ts`,
    python: `servers.${nameDirs[i]}`,
    tools: entries
      .filter((e) => e.server === server)
      .map((e) => ({ name: e.tool.name, function: e.identifier, file: `${root}/${e.serverDir}/${e.file}`, python: { module: `servers.${e.serverDir}.${e.pyName}`, function: e.pyName, file: `${root}/${e.serverDir}/${e.pyName}.py` }, description: e.tool.description ?? "" })),
  }));
  files.push({ path: "index.json", content: `${JSON.stringify(listing, null, 2)}\n` });
  return { files, entries, disabled };
}
