// Two tenants on one multi-user HTTP server (the built CLI, `serve --http`, real SDK clients):
// each tries to reach what is the other's — sessions, quota, upstream state — or to crowd them out.
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rowsServerPath, startHttpServer, tempDir, waitForNoContainers } from "../helpers.js";

const dir = tempDir("http-tenants");
const ALICE = `alice-t${process.pid}`;
const BOB = `bob-t${process.pid}`;
const ALICE_KEY = "alice-tenant-key-0123456789";
const BOB_KEY = "bob-tenant-key-01234567890";
let server: ChildProcess;
let baseUrl: string;
const clients: Client[] = [];

async function connect(key: string): Promise<Client> {
  const c = new Client({ name: "tenant", version: "1" });
  await c.connect(new StreamableHTTPClientTransport(new URL(`${baseUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }));
  clients.push(c);
  return c;
}

const exec = async (c: Client, code: string, extra: Record<string, unknown> = {}) => (await c.callTool({ name: "execute_code", arguments: { code, ...extra } }, undefined, { timeout: 120_000 })) as CallToolResult;
const stdout = (r: CallToolResult) => (r.structuredContent as { stdout?: string } | undefined)?.stdout ?? "";
const text = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");

function post(path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers }, (res) => {
      let b = "";
      res.on("data", (c) => (b += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

beforeAll(async () => {
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      http: { port: 0, shutdownGraceMs: 4_000, maxSessionsPerUser: 3 },
      auth: { apiKeys: [{ userId: ALICE, key: ALICE_KEY }, { userId: BOB, key: BOB_KEY }] },
      storage: { quota: "soft", quotaMiB: 8 },
      mcpServers: { rows: { command: process.execPath, args: [rowsServerPath], perUser: true } },
      sandbox: { pool: { size: 0, maxTotal: 0, idleMs: 1000 } },
    }),
  );
  ({ server, baseUrl } = await startHttpServer(configFile, join(dir, "data")));
});

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  expect(await waitForNoContainers(undefined, 30_000)).toEqual([]);
});

describe("two tenants on one HTTP server", () => {
  it("one tenant's session id is unknown to the other, and a flood of sessions closes only the flooder's own", async () => {
    const alice = await connect(ALICE_KEY);
    const aliceSession = (alice.transport as StreamableHTTPClientTransport).sessionId!;
    const init = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: {} });
    const stolen = await post("/mcp", { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${BOB_KEY}`, "mcp-session-id": aliceSession }, init);
    expect(stolen.status).toBe(404);
    const bobs: Client[] = [];
    for (let i = 0; i < 5; i++) bobs.push(await connect(BOB_KEY));
    // Bob's first sessions were closed (his cap is 3); Alice's still works.
    expect((await alice.listTools()).tools.length).toBeGreaterThan(0);
    const first = (bobs[0]!.transport as StreamableHTTPClientTransport).sessionId!;
    const reused = await post("/mcp", { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${BOB_KEY}`, "mcp-session-id": first }, init);
    expect(reused.status).toBe(404);
    expect(reused.body).toMatch(/Session closed: .*maxSessionsPerUser/);
    expect((await bobs[4]!.listTools()).tools.length).toBeGreaterThan(0);
  });

  it("a stateful upstream marked perUser is never shared: each tenant's code reaches its own instance", async () => {
    const pidOf = async (key: string) => stdout(await exec(await connect(key), `import { pid } from "/servers/rows/index.ts"; console.log(await pid({}));`)).trim();
    const [alicePid, bobPid] = [await pidOf(ALICE_KEY), await pidOf(BOB_KEY)];
    expect(alicePid).toMatch(/^\d+$/);
    expect(bobPid).toMatch(/^\d+$/);
    expect(alicePid).not.toBe(bobPid);
    expect(await pidOf(ALICE_KEY)).toBe(alicePid);
  });

  it("one tenant over quota cannot start runs; the other's runs go on", async () => {
    const alice = await connect(ALICE_KEY);
    const bob = await connect(BOB_KEY);
    await exec(alice, `import fs from "node:fs"; fs.writeFileSync("/workspace/big.bin", Buffer.alloc(10 * 1024 * 1024, 1)); console.log("filled");`);
    const refused = await exec(alice, "console.log(1)");
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/quota/i);
    expect(stdout(await exec(bob, "console.log(2)"))).toBe("2\n");
  });
});
