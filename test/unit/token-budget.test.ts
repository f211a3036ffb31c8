// The fixed cost of our tools: what `tools/list` costs a model on every turn, before any code runs.
// Counted by the tokenizer (bench/tokens.mjs) on the real server as createMcpServer builds it, read
// through a real SDK client, in the most expensive configuration there is: every runtime, egress,
// packages, and any number of upstream servers with names as long as the config allows. The e2e
// test (test/e2e/agent.test.ts) measures the same over stdio with real upstream servers.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TOOL_LIST_BUDGET, tokens } from "../../bench/tokens.mjs";
import { loadConfig } from "../../src/config/load.js";
import { SERVER_NAME } from "../../src/config/schema.js";
import { SERVER_INSTRUCTIONS } from "../../src/mcp/identity.js";
import { createMcpServer } from "../../src/mcp/server.js";
import type { RuntimeName } from "../../src/shared/languages.js";
import { createLogger } from "../../src/shared/logger.js";

const config = loadConfig({ env: {}, flags: { dataDir: "/nonexistent-token-test" } });

interface Options {
  upstreams?: string[];
  runtimes?: RuntimeName[];
  egress?: boolean;
  packages?: boolean;
  profile?: "light" | "standard" | "heavy";
  /** Only users' own servers (userMcpServers): some exist, none is named for all. */
  ownServers?: boolean;
}

/** tools/list of the real server in this configuration; the tools are registered, never called. */
async function toolList(o: Options = {}) {
  const p = config.sandbox.profiles[o.profile ?? "heavy"];
  const limits = { name: o.profile ?? "heavy", ...p, maxCodeBytes: config.sandbox.maxCodeBytes, maxOutputBytes: config.sandbox.maxOutputBytes };
  const upstreams = o.upstreams ?? [];
  const server = createMcpServer({
    runs: { limits: () => limits } as never,
    bridge: { upstreamNames: upstreams, hasUpstreams: upstreams.length > 0 || (o.ownServers ?? false) } as never,
    files: { maxWriteBytes: config.storage.maxWriteBytes } as never,
    logger: createLogger({ level: "silent" }),
    userIdFor: () => "local",
    ociRuntime: "runsc",
    runtimes: o.runtimes ?? ["node", "bun", "python"],
    egress: o.egress ?? false,
    packages: o.packages ? ({} as never) : undefined,
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(a);
  const client = new Client({ name: "budget", version: "1" });
  await client.connect(b);
  const { tools } = await client.listTools();
  await client.close();
  await server.close();
  return tools;
}

const serverName = fc.stringMatching(SERVER_NAME);

describe("the token budget of tools/list", () => {
  it(`stays within ${TOOL_LIST_BUDGET} tokens in the most expensive configuration, with any number of upstream servers`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(serverName, { maxLength: 400 }), fc.boolean(), fc.boolean(), async (upstreams, egress, packages) => {
        const tools = await toolList({ upstreams, egress, packages });
        expect(tokens(tools), JSON.stringify(upstreams.slice(0, 5))).toBeLessThanOrEqual(TOOL_LIST_BUDGET);
      }),
      { numRuns: 40 },
    );
  });

  it("costs most with everything on and long names, and that worst case is within budget", async () => {
    const longNames = Array.from({ length: 1000 }, (_, i) => `server-${String(i).padStart(4, "0")}-${"x".repeat(52)}`);
    const worst = await toolList({ upstreams: longNames, egress: true, packages: true });
    const bare = await toolList({ runtimes: ["node"] });
    process.stderr.write(`tools/list tokens: worst ${tokens(worst)} (${worst.length} tools), node only without upstreams ${tokens(bare)} (${bare.length} tools)\n`);
    expect(tokens(worst)).toBeLessThanOrEqual(TOOL_LIST_BUDGET);
    expect(worst.map((t) => t.name).sort()).toEqual(["execute_code", "packages", "search_tools", "write_file"]);
    expect(tokens(bare)).toBeLessThan(tokens(worst));
    // The description names a few servers and counts the rest: it does not grow with the config.
    const desc = worst.find((t) => t.name === "execute_code")!.description!;
    expect(desc).toMatch(/and 99\d more/);
    expect(desc.length).toBeLessThan(1600);
  });

  it("keeps the guidance a model needs: print summaries, filter in code, find tools with search_tools, where the rest is", async () => {
    const tools = await toolList({ upstreams: ["rows"] });
    const exec = tools.find((t) => t.name === "execute_code")!;
    expect(exec.description).toMatch(/Print only what you need/);
    expect(exec.description).toMatch(/filter in code/);
    expect(exec.description).toMatch(/find them with search_tools/);
    expect(exec.description).toContain("/servers/README.md");
    expect(exec.description).toContain("/skills/<name>/");
    expect(exec.description).toMatch(/No network/);
    expect(tools.find((t) => t.name === "search_tools")!.description).toMatch(/import line/);
  });

  it("offers search_tools only when an upstream server can exist, and no tool that code can do", async () => {
    expect((await toolList()).map((t) => t.name).sort()).toEqual(["execute_code", "write_file"]);
    expect((await toolList({ upstreams: ["a"] })).map((t) => t.name).sort()).toEqual(["execute_code", "search_tools", "write_file"]);
  });

  it("points to search_tools when the only upstream servers are users' own (unnamed)", async () => {
    const own = await toolList({ upstreams: [], ownServers: true });
    expect(own.map((t) => t.name)).toContain("search_tools");
    expect(own.find((t) => t.name === "execute_code")!.description).toMatch(/Tools of your MCP servers are functions here: find them with search_tools/);
  });

  it("says only what the configuration offers", async () => {
    const nodeOnly = (await toolList({ runtimes: ["node"] })).find((t) => t.name === "execute_code")!;
    expect(nodeOnly.description).not.toMatch(/Python|bun/);
    expect(JSON.stringify(nodeOnly.inputSchema)).not.toContain("python");
    const pyOnly = (await toolList({ runtimes: ["python"] })).find((t) => t.name === "execute_code")!;
    expect(pyOnly.description).not.toMatch(/TypeScript|index\.ts/);
    const withEgress = (await toolList({ egress: true })).find((t) => t.name === "execute_code")!;
    expect(withEgress.description).toMatch(/allowHosts/);
    expect(JSON.stringify(withEgress.inputSchema)).toContain("allowHosts");
  });

  it("keeps the initialize instructions short too", () => {
    expect(tokens(SERVER_INSTRUCTIONS)).toBeLessThanOrEqual(100);
  });
});
