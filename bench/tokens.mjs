// Token figures, counted one way for the bench (npm run bench) and the budget tests alike: the
// compact JSON a client receives, in OpenAI's o200k_base encoding (gpt-tokenizer; see
// docs/ARCHITECTURE.md, "The token budget", for why this tokenizer). Claude's tokenizer is not
// public: the budget keeps a margin for it.
import { join } from "node:path";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";

/** The most `tools/list` may cost, in any configuration (issue 16). */
export const TOOL_LIST_BUDGET = 2000;

/** Tokens of a string, or of a value's compact JSON. Text that looks like a special token counts as text. */
export function tokens(value) {
  return countTokens(typeof value === "string" ? value : JSON.stringify(value), { disallowedSpecial: new Set() });
}

/** Bytes of a string, or of a value's compact JSON. */
export function bytes(value) {
  return Buffer.byteLength(typeof value === "string" ? value : JSON.stringify(value));
}

/**
 * Real MCP servers from the npm registry (devDependencies), as `mcpServers` entries. The first
 * four are the set issue 16 measured (37 tools); with the other three the set has over 100 tools.
 * None needs a network or a token to list its tools.
 */
export function realUpstreams(root, scratchDir) {
  const bin = (name) => join(root, "node_modules", ".bin", name);
  const four = {
    everything: { command: bin("mcp-server-everything"), args: ["stdio"] },
    memory: { command: bin("mcp-server-memory"), env: { MEMORY_FILE_PATH: join(scratchDir, "memory.jsonl") } },
    filesystem: { command: bin("mcp-server-filesystem"), args: [scratchDir] },
    "sequential-thinking": { command: bin("mcp-server-sequential-thinking"), env: { DISABLE_THOUGHT_LOGGING: "true" } },
  };
  const more = {
    github: { command: bin("mcp-server-github") },
    playwright: { command: bin("playwright-mcp"), args: ["--headless", "--isolated"] },
    notion: { command: bin("notion-mcp-server") },
  };
  return { four, all: { ...four, ...more } };
}

/** Text a model reads from a tool result: its text blocks (images and links are not text). */
export function resultText(result) {
  return (result.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");
}
