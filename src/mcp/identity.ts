// What this server says about itself in `initialize`, in one light module: the MCP server built
// on the SDK (server.ts) and the stdio front that answers `initialize` before the SDK has loaded
// (transport/stdio-front.ts) both use it, and a test holds the two answers equal.
import { packageVersion } from "../shared/paths.js";

export const SERVER_INSTRUCTIONS =
  "codebox-mcp runs code (TypeScript, JavaScript, Python) in fresh, hardened, single-use sandboxes. Use execute_code to compute, transform data, " +
  "or work with files in /workspace (kept between calls). Print only what you need to see.";

export function serverInfo(): { name: string; title: string; version: string } {
  return { name: "codebox-mcp", title: "codebox-mcp", version: packageVersion() };
}

/** The capabilities the server has once its tools and resources are registered. */
export const SERVER_CAPABILITIES = { tools: { listChanged: true }, logging: {}, resources: { listChanged: true } } as const;

/**
 * The SDK's protocol versions (LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS), copied so the
 * front need not load the SDK; test/unit/stdio-front.test.ts fails when an SDK upgrade changes them.
 */
export const LATEST_PROTOCOL_VERSION = "2025-11-25";
export const SUPPORTED_PROTOCOL_VERSIONS: readonly string[] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2024-10-07"];

/** The `initialize` result, negotiated as the SDK does: the client's version if supported, else the latest. */
export function initializeResult(requestedVersion: string): Record<string, unknown> {
  return {
    protocolVersion: SUPPORTED_PROTOCOL_VERSIONS.includes(requestedVersion) ? requestedVersion : LATEST_PROTOCOL_VERSION,
    capabilities: SERVER_CAPABILITIES,
    serverInfo: serverInfo(),
    instructions: SERVER_INSTRUCTIONS,
  };
}
