import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { ToolEntry } from "./codegen/types.js";

export type SearchDetail = "name" | "summary" | "full";

export interface SearchHit {
  server: string;
  tool: string;
  /** How to call it from code. */
  import: string;
  function: string;
  /** The same from Python: `from servers.<server> import <function>`. */
  python: string;
  description?: string;
  inputSchema?: Tool["inputSchema"];
  outputSchema?: Tool["outputSchema"];
  score: number;
}

const words = (s: string) => s.toLowerCase().split(/[^a-z0-9]+/).filter((w) => w.length > 0);

/** Ranks tools by how well their name and description match the query words. */
export function searchTools(entries: ToolEntry[], query: string, options: { server?: string | undefined; detail: SearchDetail; limit: number }): SearchHit[] {
  const q = words(query);
  const hits: SearchHit[] = [];
  for (const e of entries) {
    if (options.server && e.server !== options.server) continue;
    const nameWords = words(`${e.tool.name} ${e.tool.title ?? ""}`);
    const descWords = words(e.tool.description ?? "");
    let score = 0;
    if (q.length === 0) score = 1;
    for (const w of q) {
      if (nameWords.includes(w)) score += 5;
      else if (nameWords.some((n) => n.startsWith(w) || w.startsWith(n))) score += 3;
      if (descWords.includes(w)) score += 2;
      else if (descWords.some((d) => d.startsWith(w))) score += 1;
      if (e.server.toLowerCase() === w) score += 1;
    }
    if (score === 0) continue;
    const hit: SearchHit = { server: e.server, tool: e.tool.name, import: `/servers/${e.serverDir}/index.ts`, function: e.identifier, python: `from servers.${e.serverDir} import ${e.pyName}`, score };
    if (options.detail !== "name") hit.description = options.detail === "summary" ? firstSentence(e.tool.description ?? "") : (e.tool.description ?? "");
    if (options.detail === "full") {
      hit.inputSchema = e.tool.inputSchema;
      if (e.tool.outputSchema) hit.outputSchema = e.tool.outputSchema;
    }
    hits.push(hit);
  }
  return hits.sort((a, b) => b.score - a.score || a.server.localeCompare(b.server) || a.tool.localeCompare(b.tool)).slice(0, options.limit);
}

function firstSentence(text: string): string {
  const line = text.split("\n")[0] ?? "";
  const m = /^(.{1,200}?[.!?])(\s|$)/.exec(line);
  return m ? m[1]! : line.slice(0, 200);
}
