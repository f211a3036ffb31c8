// The bridge from this sandbox to the host (copied to /servers/client.ts): a POST to the bridge
// endpoint over this run's unix socket, authenticated by this run's token. Calls run on the
// upstream MCP server from the host; the upstream's credentials never enter the sandbox.
// Runs under Node (types stripped) and Bun; standard library only.
import { Agent, type ClientRequest, request } from "node:http";
import { PROTOCOL } from "./protocol.ts";

export interface ContentBlock {
  type: string;
  text?: string;
  [key: string]: unknown;
}

export interface CallToolResult {
  content: ContentBlock[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** Thrown when a tool reports an error (isError) or the bridge refuses the call. */
export class MCPToolError extends Error {
  constructor(message: string, readonly result?: CallToolResult, readonly status?: number) {
    super(message);
    this.name = "MCPToolError";
  }
}

// Connections are kept open between calls (the bridge keeps an idle one 5 s): a call costs one
// request, not a connect. As many at once as the bridge lets one run have calls in flight; an idle
// connection never keeps the code's process alive.
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/** Calls `tool` on the upstream `server` and returns the raw MCP result. */
export async function callMCPTool(server: string, tool: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  const body = JSON.stringify({ server, tool, arguments: args });
  let answer: { status: number; text: string };
  try {
    answer = await bridgeRequest(PROTOCOL.callPath, body, { "content-type": "application/json" });
  } catch (err) {
    throw new MCPToolError(`${server}.${tool}: the codebox bridge is unreachable (${(err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.text);
  } catch {
    parsed = { error: answer.text };
  }
  if (answer.status === 200) return parsed as CallToolResult;
  throw new MCPToolError(`${server}.${tool}: ${(parsed as { error?: string }).error ?? `HTTP ${answer.status}`}`, undefined, answer.status);
}

class StaleConnection extends Error {}

/** One POST to the run's bridge, with its token; retried once when a kept connection had gone stale. */
export async function bridgeRequest(path: string, body: string | Uint8Array, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  try {
    return await post(path, body, headers);
  } catch (err) {
    // A kept connection the bridge closed just as this request went out: it never arrived.
    if (err instanceof StaleConnection) return post(path, body, headers);
    throw err;
  }
}

function post(path: string, body: string | Uint8Array, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const token = process.env[PROTOCOL.tokenEnv];
  // Unix socket by default; a URL in the bridge's TCP mode (engines that cannot share a socket).
  const urlText = process.env[PROTOCOL.urlEnv];
  const url = urlText ? new URL(urlText) : undefined;
  const where = url ? { host: url.hostname, port: Number(url.port) } : { socketPath: process.env[PROTOCOL.socketEnv] || PROTOCOL.defaultSocket };
  return new Promise((resolve, reject) => {
    const req: ClientRequest = request(
      {
        ...where,
        agent,
        path,
        method: "POST",
        headers: { ...headers, "content-length": typeof body === "string" ? Buffer.byteLength(body) : body.byteLength, authorization: `Bearer ${token ?? ""}` },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE")) reject(new StaleConnection(err.message));
      else reject(err);
    });
    req.end(body);
  });
}

/**
 * What a tool's result means to code: its structuredContent when it has one; otherwise its text
 * (the text blocks joined) when every block is text; otherwise the content blocks themselves.
 * A result with isError throws MCPToolError.
 */
export function unwrap(result: CallToolResult): unknown {
  const texts = (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text ?? "");
  if (result.isError) throw new MCPToolError(texts.join("\n") || "the tool reported an error", result);
  if (result.structuredContent !== undefined) return result.structuredContent;
  if (texts.length === (result.content ?? []).length) return texts.join("\n");
  return result.content;
}

/** callMCPTool, then unwrap. */
export async function callTool(server: string, tool: string, args: Record<string, unknown> = {}): Promise<unknown> {
  return unwrap(await callMCPTool(server, tool, args));
}
