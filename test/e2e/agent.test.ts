// An agent's session, scripted: the built server over stdio through the SDK Client, seven real
// upstream servers from the npm registry (over 100 tools) plus the rows fixture. The "agent" knows
// only its task and what the server tells it: the tool list, then each result's text. It reads
// the name of the discovery tool from execute_code's description, the import line from a
// search_tools hit, the result's shape from the hit's schema, and filters 10,000 rows in code.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TOOL_LIST_BUDGET, bytes, realUpstreams, resultText, tokens } from "../../bench/tokens.mjs";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { cliPath, removeDir, repoRoot, rowsServerPath, serverProcessEnv, tempDir, waitForNoContainers } from "../helpers.js";

const USER = `e2e-agent-${process.pid}`;
const dir = tempDir("e2e-agent");
let client: Client;
let tools: Tool[];

/** What the model sees of a result: its text. */
const see = async (name: string, args: Record<string, unknown>) => {
  const r = (await client.callTool({ name, arguments: args }, undefined, { timeout: 180_000 })) as CallToolResult;
  return { text: resultText(r), result: r };
};

beforeAll(async () => {
  const upstreams = realUpstreams(repoRoot, dir).all;
  writeFileSync(join(dir, "config.json"), JSON.stringify({ mcpServers: { ...upstreams, rows: { command: process.execPath, args: [rowsServerPath] } } }));
  client = new Client({ name: "e2e-agent", version: "1" });
  await client.connect(
    new StdioClientTransport({ command: process.execPath, args: [cliPath, "--config", join(dir, "config.json")], env: serverProcessEnv({ CODEBOX_DATA_DIR: join(dir, "data"), CODEBOX_USER_ID: USER }), stderr: "pipe" }),
  );
  tools = (await client.listTools()).tools;
});

afterEach(async () => {
  expect(await waitForNoContainers({ label: LABEL.user, value: USER })).toEqual([]);
});

afterAll(async () => {
  await client?.close();
  removeDir(dir);
});

describe("an agent with only our tool list", () => {
  it(`pays at most ${TOOL_LIST_BUDGET} tokens for the tool list with eight upstream servers of over 100 tools`, async () => {
    const { result } = await see("search_tools", { query: "", detail: "name", limit: 200 });
    const servers = (result.structuredContent as { servers: Array<{ name: string; state: string; tools: number }> }).servers;
    const upstreamTools = servers.reduce((n, s) => n + s.tools, 0);
    expect(servers.map((s) => `${s.name}:${s.state}`).sort()).toEqual(
      ["everything", "filesystem", "github", "memory", "notion", "playwright", "rows", "sequential-thinking"].map((n) => `${n}:ready`),
    );
    expect(upstreamTools).toBeGreaterThanOrEqual(100);
    const cost = tokens(tools);
    process.stderr.write(`agent e2e: tools/list ${cost} tokens, ${bytes(tools)} bytes, ${tools.length} tools, for ${upstreamTools} upstream tools\n`);
    expect(cost).toBeLessThanOrEqual(TOOL_LIST_BUDGET);
  });

  it("discovers list_rows with search_tools, learns its shape, calls it from code and prints 5 of 10,000 rows", async () => {
    // 1. The tool list says how to reach upstream tools: the name of the tool that finds them.
    const exec = tools.find((t) => t.name === "execute_code")!;
    const finder = /find them with (\w+)/.exec(exec.description ?? "")?.[1];
    expect(finder, exec.description).toBeDefined();
    expect(tools.map((t) => t.name)).toContain(finder);

    // 2. Search with the task's words; the hit's text carries the import line.
    const found = await see(finder!, { query: "customer rows" });
    const line = found.text.split("\n").find((l) => l.includes("rows.list_rows"));
    expect(line, found.text).toBeDefined();
    const importLine = /import \{ \w+ \} from "[^"]+"/.exec(line!)?.[0];
    const fn = /import \{ (\w+) \}/.exec(importLine ?? "")?.[1];
    expect(importLine, line).toBeDefined();

    // 3. Only for the tool it will call: the full schemas, to learn where the rows are.
    const full = await see(finder!, { query: "list_rows", server: "rows", detail: "full" });
    const output = JSON.parse(/output: (\{.*\})$/m.exec(full.text)?.[1] ?? "null") as { properties: Record<string, { type: string; items?: { properties: Record<string, unknown> } }> } | null;
    expect(output, full.text).not.toBeNull();
    const [listKey, list] = Object.entries(output!.properties).find(([, p]) => p.type === "array")!;
    expect(Object.keys(list.items!.properties)).toEqual(expect.arrayContaining(["region", "amount"]));

    // 4. Filter in code; print only the answer.
    const run = await see("execute_code", {
      code: `${importLine};
        const { ${listKey} } = await ${fn}({});
        const top = ${listKey}.filter((r) => r.region === "north").sort((a, b) => b.amount - a.amount).slice(0, 5);
        console.log(${listKey}.length, JSON.stringify(top.map((r) => [r.id, r.amount])));`,
    });
    expect(run.result.isError).toBeFalsy();
    // The answer, computed here from the fixture's own formula.
    const all = Array.from({ length: 10_000 }, (_, i) => ({ id: i + 1, region: ["north", "south", "east", "west"][i % 4], amount: (i * 7919) % 10_000 }));
    const expected = all.filter((r) => r.region === "north").sort((a, b) => b.amount - a.amount).slice(0, 5).map((r) => [r.id, r.amount]);
    expect((run.result.structuredContent as { stdout: string }).stdout).toBe(`10000 ${JSON.stringify(expected)}\n`);
    // What reached the model: a few hundred bytes, where the rows themselves are over 400 KB.
    const rowsBytes = bytes({ rows: all.map((r) => ({ ...r, name: `customer-${String(r.id).padStart(5, "0")}` })) });
    process.stderr.write(`agent e2e: the run's text is ${tokens(run.text)} tokens (${bytes(run.text)} bytes); the rows are ${tokens(JSON.stringify(all))}+ tokens (${rowsBytes} bytes)\n`);
    expect(bytes(run.text)).toBeLessThan(300);
    expect(rowsBytes).toBeGreaterThan(400_000);
  });

  it("reads the guide the description points to, from code", async () => {
    const guide = await see("execute_code", { code: 'import fs from "node:fs"; const g = fs.readFileSync("/servers/README.md", "utf8"); console.log(g.split("\\n")[0], g.includes("SKILL.md"))' });
    expect((guide.result.structuredContent as { stdout: string }).stdout).toBe("# The codebox sandbox true\n");
    const help = await client.readResource({ uri: "codebox://help" });
    expect((help.contents[0] as { text: string }).text).toContain("# The codebox sandbox");
  });
});
