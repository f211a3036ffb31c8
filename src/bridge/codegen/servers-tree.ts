// The whole generated /servers tree for a set of upstreams.
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { SANDBOX_SERVERS_DIR } from "../../protocol/bridge.js";
import { RESERVED_TOP_LEVEL, clientFiles } from "./clients.js";
import { toFileStem, toIdentifier, toPythonIdentifier, toServerDir, uniquify } from "./names.js";
import { pyServerIndex, pyToolModule } from "./python.js";
import { tsServerIndex, tsToolModule } from "./typescript.js";
import type { GeneratedFile, ToolEntry } from "./types.js";

export type { GeneratedFile, ToolEntry } from "./types.js";

/**
 * The bridge clients and their protocol modules, index.json (for discovery from code), and per
 * server an index.ts and __init__.py plus one .ts and one .py file per tool.
 */
export function generateServersTree(servers: Map<string, Tool[]>): { files: GeneratedFile[]; entries: ToolEntry[] } {
  const names = [...servers.keys()].sort();
  const dirs = uniquify(names.map(toServerDir), (s) => s.toLowerCase(), RESERVED_TOP_LEVEL);
  const files: GeneratedFile[] = clientFiles();
  const entries: ToolEntry[] = [];
  names.forEach((server, i) => {
    const serverDir = dirs[i]!;
    const tools = [...(servers.get(server) ?? [])];
    const ids = uniquify(tools.map((t) => toIdentifier(t.name)));
    const stems = uniquify(tools.map((t) => toFileStem(t.name)), (s) => s.toLowerCase(), ["index"]);
    const pyNames = uniquify(tools.map((t) => toPythonIdentifier(t.name)), (s) => s.toLowerCase(), ["index", "__init__", "client"]);
    const serverEntries = tools.map((tool, j) => ({ server, serverDir, tool, identifier: ids[j]!, file: `${stems[j]!}.ts`, pyName: pyNames[j]! }));
    for (const e of serverEntries) {
      files.push({ path: `${serverDir}/${e.file}`, content: tsToolModule(e) });
      files.push({ path: `${serverDir}/${e.pyName}.py`, content: pyToolModule(e) });
    }
    files.push({ path: `${serverDir}/index.ts`, content: tsServerIndex(server, serverEntries) });
    files.push({ path: `${serverDir}/__init__.py`, content: pyServerIndex(server, serverEntries) });
    entries.push(...serverEntries);
  });
  const root = SANDBOX_SERVERS_DIR;
  const listing = names.map((server, i) => ({
    server,
    path: `${root}/${dirs[i]}/index.ts`,
    python: `servers.${dirs[i]}`,
    tools: entries
      .filter((e) => e.server === server)
      .map((e) => ({ name: e.tool.name, function: e.identifier, file: `${root}/${e.serverDir}/${e.file}`, python: { module: `servers.${e.serverDir}.${e.pyName}`, function: e.pyName, file: `${root}/${e.serverDir}/${e.pyName}.py` }, description: e.tool.description ?? "" })),
  }));
  files.push({ path: "index.json", content: `${JSON.stringify(listing, null, 2)}\n` });
  return { files, entries };
}
