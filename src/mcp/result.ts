import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { CodeboxError, errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

/**
 * The one place domain errors become MCP results: a tool error (isError: true) whose text says
 * what went wrong and what to do. The server keeps serving.
 */
export function toolError(err: unknown, logger: Logger): CallToolResult {
  if (err instanceof CodeboxError) {
    logger.warn("tool call failed", { code: err.code, msg: err.message });
    return { isError: true, content: [{ type: "text", text: `${err.message} [${err.code}]` }] };
  }
  logger.error("unexpected error in a tool call", { err: errorMessage(err), stack: err instanceof Error ? err.stack : undefined });
  return {
    isError: true,
    content: [{ type: "text", text: `Internal error: ${errorMessage(err)}. The server is still running; run \`codebox-mcp doctor\` if this repeats.` }],
  };
}
