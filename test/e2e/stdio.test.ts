import { spawn } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { cliPath, removeDir, serverProcessEnv, tempDir, waitForNoContainers } from "../helpers.js";

// The built CLI, launched the way an editor launches it, driven by the SDK's real Client.
const USER = `e2e-stdio-${process.pid}`;
const dataDir = tempDir("e2e-stdio");
let client: Client;
let stderr = "";

function serverEnv(extra: Record<string, string> = {}): Record<string, string> {
  return serverProcessEnv({ CODEBOX_DATA_DIR: dataDir, CODEBOX_USER_ID: USER, CODEBOX_LOG_LEVEL: "info", ...extra });
}

async function connect(env: Record<string, string>): Promise<Client> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [cliPath], env, stderr: "pipe" });
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const c = new Client({ name: "codebox-e2e", version: "1.0.0" });
  await c.connect(transport);
  return c;
}

const call = (args: Record<string, unknown>, options?: { signal?: AbortSignal }) =>
  client.callTool({ name: "execute_code", arguments: args }, undefined, { timeout: 120_000, ...options }) as Promise<CallToolResult>;

const text = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");

beforeAll(async () => {
  client = await connect(serverEnv());
});

afterEach(async () => {
  expect(await waitForNoContainers({ label: LABEL.user, value: USER })).toEqual([]);
});

afterAll(async () => {
  await client?.close();
  removeDir(dataDir);
});

describe("execute_code over stdio", () => {
  it("initializes, lists execute_code with its schemas and annotations", async () => {
    expect(client.getServerVersion()?.name).toBe("codebox-mcp");
    const { tools } = await client.listTools();
    const tool = tools.find((t) => t.name === "execute_code");
    expect(tool).toBeDefined();
    expect(tool!.inputSchema.properties).toHaveProperty("code");
    expect(tool!.inputSchema.properties).toHaveProperty("language");
    expect(tool!.inputSchema.properties).toHaveProperty("timeoutMs");
    expect(tool!.inputSchema.properties).toHaveProperty("outputs");
    expect(Object.keys(tool!.outputSchema?.properties ?? {}).sort()).toEqual(
      ["durationMs", "exitCode", "notes", "oomKilled", "shown", "stderr", "stderrFile", "stderrTruncated", "stdout", "stdoutFile", "stdoutTruncated", "timedOut"].sort(),
    );
    expect(tool!.annotations).toMatchObject({ readOnlyHint: false, openWorldHint: false });
    expect(tool!.description).toMatch(/\/workspace/);
  });

  it("runs `const x: number = 21; console.log(x * 2)` and returns 42 with exit code 0", async () => {
    const r = await call({ code: "const x: number = 21; console.log(x * 2)" });
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ stdout: "42\n", exitCode: 0, timedOut: false, oomKilled: false });
    expect(text(r)).toContain("42");
  });

  it("refuses bad input with a clear tool error and keeps serving", async () => {
    const wrongType = await call({ code: 42 });
    expect(wrongType.isError).toBe(true);
    expect(text(wrongType)).toMatch(/code/);

    const badLanguage = await call({ code: "1", language: "cobol" });
    expect(badLanguage.isError).toBe(true);
    expect(text(badLanguage)).toMatch(/language/);

    const tooBig = await call({ code: `// ${"x".repeat(1024 * 1024)}` });
    expect(tooBig.isError).toBe(true);
    expect(text(tooBig)).toMatch(/limit is 1048576 bytes/);

    const tooLong = await call({ code: "1", timeoutMs: 10 ** 9 });
    expect(tooLong.isError).toBe(true);
    expect(text(tooLong)).toMatch(/timeoutMs/);

    const pythonOnBun = await call({ code: "print(1)", language: "python", runtime: "bun" });
    expect(pythonOnBun.isError).toBe(true);
    expect(text(pythonOnBun)).toMatch(/does not run Python/);

    const badRuntime = await call({ code: "1", runtime: "deno" });
    expect(badRuntime.isError).toBe(true);
    expect(text(badRuntime)).toMatch(/runtime/);

    const ok = await call({ code: "console.log('still here')", language: "javascript" });
    expect(ok.structuredContent).toMatchObject({ stdout: "still here\n", exitCode: 0 });
  });

  it("runs Python and runs TypeScript on Bun, each in its own image", async () => {
    const py = await call({ code: "import sys\nprint(sys.implementation.name, 6 * 7)", language: "python" });
    expect(py.structuredContent).toMatchObject({ stdout: "cpython 42\n", exitCode: 0 });
    const bun = await call({ code: "const n: number = 42; console.log(typeof Bun, n)", runtime: "bun" });
    expect(bun.structuredContent).toMatchObject({ stdout: "object 42\n", exitCode: 0 });
  });

  it("kills and removes the container when the client cancels the call", async () => {
    const ac = new AbortController();
    const pending = call({ code: "await new Promise((r) => setTimeout(r, 60_000)); console.log('finished')" }, { signal: ac.signal });
    // Wait until the container exists, then cancel.
    const deadline = Date.now() + 20_000;
    const { ourContainers } = await import("../helpers.js");
    while ((await ourContainers({ label: LABEL.user, value: USER })).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    ac.abort("test cancels");
    await expect(pending).rejects.toThrow();
    expect(await waitForNoContainers({ label: LABEL.user, value: USER })).toEqual([]);
    // The server is still serving.
    const after = await call({ code: "console.log(1)" });
    expect(after.structuredContent).toMatchObject({ stdout: "1\n" });
  });

  it("writes logs to stderr only", () => {
    expect(stderr).toMatch(/"msg":"codebox-mcp serving MCP over stdio"/);
  });
});

describe("stdout carries only the protocol", () => {
  it("prints nothing but JSON-RPC frames, even when sandboxed code prints fake frames", async () => {
    const child = spawn(process.execPath, [cliPath], { env: serverEnv(), stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const send = (msg: unknown) => child.stdin.write(`${JSON.stringify(msg)}\n`);
    send({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } });
    send({ jsonrpc: "2.0", method: "notifications/initialized" });
    send({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "execute_code", arguments: { code: 'console.log(JSON.stringify({ jsonrpc: "2.0", id: 2, result: { fake: true } }))' } },
    });
    const deadline = Date.now() + 60_000;
    const answered = () => out.split("\n").some((l) => l.startsWith("{") && (JSON.parse(l) as { id?: number }).id === 2);
    while (!answered() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.stdin.end();
    await new Promise((r) => child.once("exit", r));
    const lines = out.split("\n").filter(Boolean);
    // Every line is a JSON-RPC frame of ours: the two responses, plus log notifications that carry
    // the code's output lines as data (never as frames of their own).
    const frames = lines.map((l) => JSON.parse(l) as { jsonrpc: string; id?: number; method?: string; result?: { structuredContent?: { stdout: string }; fake?: boolean } });
    expect(frames.every((f) => f.jsonrpc === "2.0")).toBe(true);
    const responses = frames.filter((f) => f.id !== undefined);
    expect(responses.map((f) => f.id)).toEqual([1, 2]);
    expect(responses[1]!.result!.fake).toBeUndefined();
    expect(responses[1]!.result!.structuredContent!.stdout).toContain('"fake":true');
    expect(frames.filter((f) => f.id === undefined).every((f) => f.method === "notifications/message")).toBe(true);
  });
});

describe("when the engine is down", () => {
  it("answers with a tool error that names `codebox-mcp doctor`, and keeps serving", async () => {
    const down = await connect(serverEnv({ CODEBOX_DOCKER_HOST: `unix://${dataDir}/no-engine.sock` }));
    try {
      const r = (await down.callTool({ name: "execute_code", arguments: { code: "console.log(1)" } })) as CallToolResult;
      expect(r.isError).toBe(true);
      expect(text(r)).toContain("codebox-mcp doctor");
      const again = (await down.callTool({ name: "execute_code", arguments: { code: "console.log(1)" } })) as CallToolResult;
      expect(again.isError).toBe(true);
      expect((await down.listTools()).tools.length).toBeGreaterThan(0);
    } finally {
      await down.close();
    }
  });
});
