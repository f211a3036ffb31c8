// The resources that replaced listed tools, read through a real SDK client (in-memory): the guide,
// and the sandbox report, whose runtime comes from the client and is checked before any run starts.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { describe, expect, it } from "vitest";
import { sandboxGuide } from "../../src/bridge/codegen/clients.js";
import { loadConfig } from "../../src/config/load.js";
import { createMcpServer } from "../../src/mcp/server.js";
import { createLogger } from "../../src/shared/logger.js";

const config = loadConfig({ env: {}, flags: { dataDir: "/nonexistent-resources-test" } });

async function connect() {
  const runs: Array<Record<string, unknown>> = [];
  const limits = { name: "standard", ...config.sandbox.profiles.standard, maxCodeBytes: config.sandbox.maxCodeBytes, maxOutputBytes: config.sandbox.maxOutputBytes };
  const server = createMcpServer({
    runs: {
      limits: () => limits,
      execute: async (req: Record<string, unknown>) => {
        runs.push(req);
        return { exitCode: 0, stdout: JSON.stringify({ uid: 10001, interpreter: { name: "node", version: "20" } }), stderr: "" };
      },
    } as never,
    bridge: { upstreamNames: [], hasUpstreams: false } as never,
    files: { maxWriteBytes: 1024, listSkills: async () => [], listWorkspace: async () => [] } as never,
    logger: createLogger({ level: "silent" }),
    userIdFor: () => "local",
    ociRuntime: "runc",
    runtimes: ["node", "python"],
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(a);
  const client = new Client({ name: "resources", version: "1" });
  await client.connect(b);
  return { client, runs };
}

describe("codebox:// resources", () => {
  it("serves the guide as it ships in /servers/README.md", async () => {
    const { client } = await connect();
    const r = await client.readResource({ uri: "codebox://help" });
    expect(r.contents[0]).toMatchObject({ mimeType: "text/markdown", text: sandboxGuide() });
  });

  it("lists one sandbox report per offered runtime and runs the probe of the one read", async () => {
    const { client, runs } = await connect();
    const listed = (await client.listResources()).resources.map((r) => r.uri);
    expect(listed).toEqual(expect.arrayContaining(["codebox://help", "codebox://sandbox/node", "codebox://sandbox/python"]));
    expect(listed).not.toContain("codebox://sandbox/bun");
    const r = await client.readResource({ uri: "codebox://sandbox/node" });
    expect(JSON.parse((r.contents[0] as { text: string }).text)).toMatchObject({ ociRuntime: "runc", uid: 10001 });
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ userId: "local", runtime: "node", language: "javascript" });
  });

  it.each([
    ["a runtime this server does not offer", "bun"],
    ["an unknown runtime", "ruby"],
    ["an encoded path", "..%2F..%2Fetc"],
    ["10,000 characters", "x".repeat(10_000)],
    ["a NUL byte", "node%00"],
  ])("refuses %s without starting a run", async (_label, runtime) => {
    const { client, runs } = await connect();
    await expect(client.readResource({ uri: `codebox://sandbox/${runtime}` })).rejects.toThrow(/codebox:\/\/sandbox\/node|not found|Resource/i);
    expect(runs).toEqual([]);
  });
});
