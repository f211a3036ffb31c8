// The stdio front answers `initialize` before the SDK has loaded, then becomes the SDK server's
// transport. Its answer must be the one the SDK server itself gives, and nothing may be lost,
// reordered or answered twice across the hand-over. Real SDK server and client classes; the
// streams are in-memory.
import { PassThrough } from "node:stream";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { LATEST_PROTOCOL_VERSION as SDK_LATEST, SUPPORTED_PROTOCOL_VERSIONS as SDK_SUPPORTED } from "@modelcontextprotocol/sdk/types.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { initializeResult, LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from "../../src/mcp/identity.js";
import { createMcpServer } from "../../src/mcp/server.js";
import { createLogger } from "../../src/shared/logger.js";
import { DEFAULT_FRONT_LIMITS, type FrontLimits, StdioFront } from "../../src/transport/stdio-front.js";

const config = loadConfig({ env: {}, flags: { dataDir: "/nonexistent-front-test" } });

/** The real server as createMcpServer builds it; the tools are only registered, never called here. */
function realServer(): McpServer {
  const limits = { name: "standard", ...config.sandbox.profiles.standard, maxCodeBytes: config.sandbox.maxCodeBytes, maxOutputBytes: config.sandbox.maxOutputBytes };
  return createMcpServer({
    runs: { limits: () => limits } as never,
    bridge: { upstreamNames: [] } as never,
    files: {} as never,
    logger: createLogger({ level: "silent" }),
    userIdFor: () => "local",
    ociRuntime: "runc",
    runtimes: ["node", "bun", "python"],
  });
}

const init = (id: number, protocolVersion: string) => ({ jsonrpc: "2.0", id, method: "initialize", params: { protocolVersion, capabilities: {}, clientInfo: { name: "t", version: "1" } } });

function harness(limits?: Partial<FrontLimits>) {
  const input = new PassThrough();
  const output = new PassThrough();
  const lines: Array<Record<string, unknown>> = [];
  let buf = "";
  output.on("data", (c: Buffer) => {
    buf += c.toString();
    for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
      lines.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  const front = new StdioFront(input, output, { ...DEFAULT_FRONT_LIMITS, ...limits });
  const send = (m: unknown) => input.write(`${JSON.stringify(m)}\n`);
  const settle = () => new Promise((r) => setTimeout(r, 20));
  return { front, send, lines, settle, input };
}

describe("the stdio front", () => {
  it("holds the SDK's protocol versions (update src/mcp/identity.ts when an SDK upgrade changes them)", () => {
    expect(LATEST_PROTOCOL_VERSION).toBe(SDK_LATEST);
    expect(SUPPORTED_PROTOCOL_VERSIONS).toEqual(SDK_SUPPORTED);
  });

  it.each([...SDK_SUPPORTED, "1999-01-01"])("answers initialize (%s) exactly as the real server does", async (version) => {
    const [a, b] = InMemoryTransport.createLinkedPair();
    const server = realServer();
    await server.connect(b);
    const answer = new Promise<unknown>((resolve) => {
      a.onmessage = (m) => resolve(m);
    });
    await a.start();
    await a.send(init(1, version) as never);
    const sdk = (await answer) as { result: unknown };
    expect(initializeResult(version)).toEqual(sdk.result);
    await server.close();
  });

  it("answers initialize and ping at once, holds the rest, and hands all of it over in order, answering initialize once", async () => {
    const { front, send, lines, settle } = harness();
    send(init(1, SDK_LATEST));
    send({ jsonrpc: "2.0", method: "notifications/initialized" });
    send({ jsonrpc: "2.0", id: 2, method: "tools/list", params: {} });
    send({ jsonrpc: "2.0", id: 3, method: "ping" });
    send({ jsonrpc: "2.0", id: 4, method: "resources/list", params: {} });
    await settle();
    // Before the server exists: initialize and ping answered, the rest held.
    expect(lines.map((l) => l.id)).toEqual([1, 3]);
    expect(lines[0]).toEqual({ jsonrpc: "2.0", id: 1, result: initializeResult(SDK_LATEST) });
    const server = realServer();
    await server.connect(front.transport());
    await settle();
    send({ jsonrpc: "2.0", id: 5, method: "tools/list", params: {} });
    await settle();
    expect(lines.map((l) => l.id)).toEqual([1, 3, 2, 4, 5]);
    const tools = (lines[2] as { result: { tools: Array<{ name: string }> } }).result.tools.map((t) => t.name);
    expect(tools).toContain("execute_code");
    expect(lines.filter((l) => l.id === 1)).toHaveLength(1);
    await server.close();
  });

  it("tells that the client closed stdin, even when it did so before the server was attached", async () => {
    const { front, input } = harness();
    let gone = false;
    void front.gone.then(() => {
      gone = true;
    });
    input.end();
    await new Promise((r) => setTimeout(r, 20));
    expect(gone).toBe(true);
    // And the server attached later learns it too.
    const server = realServer();
    let closed = false;
    server.server.onclose = () => {
      closed = true;
    };
    await server.connect(front.transport());
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(true);
  });

  it("leaves a malformed initialize to the SDK server, which answers it with its own error", async () => {
    const { front, send, lines, settle } = harness();
    send({ jsonrpc: "2.0", id: 7, method: "initialize", params: { protocolVersion: 5 } });
    await settle();
    expect(lines).toEqual([]);
    const server = realServer();
    await server.connect(front.transport());
    await settle();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ id: 7, error: { code: expect.any(Number) } });
    await server.close();
  });

  it("works end to end with the SDK client: connect, list tools, after a late hand-over", async () => {
    const clientToFront = new PassThrough();
    const frontToClient = new PassThrough();
    const front = new StdioFront(clientToFront, frontToClient);
    // The client's transport: newline-delimited JSON over the two streams, as stdio is.
    const { StdioServerTransport } = await import("@modelcontextprotocol/sdk/server/stdio.js");
    const clientSide = new StdioServerTransport(frontToClient, clientToFront);
    const client = new Client({ name: "t", version: "1" });
    const connected = client.connect(clientSide);
    await connected; // answered by the front alone
    expect(client.getServerVersion()?.name).toBe("codebox-mcp");
    const listing = client.listTools();
    await new Promise((r) => setTimeout(r, 50));
    const server = realServer();
    await server.connect(front.transport());
    expect((await listing).tools.map((t) => t.name)).toContain("execute_code");
    await client.close();
    await server.close();
  });

  it("drops a line over the limit, answers its request with an error naming the limit, and reads the next line", async () => {
    const { front, lines, settle, input } = harness({ maxLineBytes: 10_000 });
    send0(input, init(1, SDK_LATEST));
    // A long message sent in many small writes, as a pipe delivers it.
    const long = JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/call", params: { name: "execute_code", arguments: { code: "x".repeat(50_000) } } });
    for (let i = 0; i < long.length; i += 4096) input.write(long.slice(i, i + 4096));
    input.write("\n");
    send0(input, { jsonrpc: "2.0", id: 10, method: "ping" });
    await settle();
    expect(lines.map((l) => l.id)).toEqual([1, 9, 10]);
    expect(lines[1]).toMatchObject({ id: 9, error: { code: -32600, message: expect.stringContaining("over 10000 bytes") } });
    front.detach();
  });

  it("holds a bounded number of messages while the server loads, refusing requests past it with an error to retry", async () => {
    const { front, lines, settle, input } = harness({ maxHeld: 3 });
    send0(input, init(1, SDK_LATEST));
    for (let id = 2; id <= 6; id++) send0(input, { jsonrpc: "2.0", id, method: "tools/list", params: {} });
    await settle();
    expect(lines.map((l) => l.id)).toEqual([1, 5, 6]);
    expect(lines[1]).toMatchObject({ error: { message: expect.stringContaining("retry") } });
    const server = realServer();
    await server.connect(front.transport());
    await settle();
    // The held ones are answered after the hand-over, and the bound no longer applies.
    for (let id = 7; id <= 12; id++) send0(input, { jsonrpc: "2.0", id, method: "ping" });
    await settle();
    expect(lines.map((l) => l.id)).toEqual([1, 5, 6, 2, 3, 4, 7, 8, 9, 10, 11, 12]);
    await server.close();
  });

  it("joins a character split across two reads", async () => {
    const { front, lines, settle, input } = harness();
    const bytes = Buffer.from(`${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: SDK_LATEST, capabilities: {}, clientInfo: { name: "é€😀", version: "1" } } })}\n`);
    const at = bytes.indexOf(Buffer.from("€")) + 1; // inside the three bytes of "€"
    input.write(bytes.subarray(0, at));
    await settle();
    input.write(bytes.subarray(at));
    await settle();
    expect(lines.map((l) => l.id)).toEqual([1]);
    const server = realServer();
    let seen = "";
    server.server.oninitialized = () => {
      seen = server.server.getClientVersion()?.name ?? "";
    };
    await server.connect(front.transport());
    send0(input, { jsonrpc: "2.0", method: "notifications/initialized" });
    await settle();
    expect(seen).toBe("é€😀");
    await server.close();
  });
});

function send0(input: PassThrough, m: unknown) {
  input.write(`${JSON.stringify(m)}\n`);
}
