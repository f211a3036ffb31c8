import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { cliPath, everythingServerPath, removeDir, repoRoot, rowsServerPath, serverProcessEnv, tempDir, waitForNoContainers } from "../helpers.js";

// The built server over stdio, with real upstream MCP servers from its config file: the
// registry's @modelcontextprotocol/server-everything and the project's rows fixture.
const USER = `e2e-bridge-${process.pid}`;
const dir = tempDir("e2e-bridge");
const configFile = join(dir, "config.json");
let client: Client;
let httpUpstream: ChildProcess;
const HTTP_PORT = 20_000 + (process.pid % 20_000);

const call = async (name: string, args: Record<string, unknown>) =>
  (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;

beforeAll(async () => {
  // server-everything again, this time as a Streamable HTTP upstream on loopback.
  httpUpstream = spawn(process.execPath, [everythingServerPath, "streamableHttp"], { env: { ...process.env, PORT: String(HTTP_PORT) }, stdio: ["ignore", "ignore", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("the HTTP upstream did not start")), 30_000);
    httpUpstream.stderr!.on("data", (d: Buffer) => {
      if (d.toString().includes("listening")) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  writeFileSync(
    configFile,
    JSON.stringify({
      mcpServers: {
        everything: { command: process.execPath, args: [everythingServerPath, "stdio"] },
        rows: { command: process.execPath, args: [rowsServerPath], autoApprove: [] },
        remote: { type: "http", url: `http://127.0.0.1:${HTTP_PORT}/mcp`, headers: { "X-Test": "1" } },
      },
    }),
  );
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cliPath, "--config", configFile],
    env: serverProcessEnv({ CODEBOX_DATA_DIR: join(dir, "data"), CODEBOX_USER_ID: USER }),
    stderr: "pipe",
  });
  client = new Client({ name: "e2e-bridge", version: "1" });
  await client.connect(transport);
});

afterEach(async () => {
  expect(await waitForNoContainers({ label: LABEL.user, value: USER })).toEqual([]);
});

afterAll(async () => {
  await client?.close();
  httpUpstream?.kill();
  removeDir(dir);
});

describe("code calls upstream MCP tools", () => {
  it("imports server-everything's generated module, calls two tools, and the printed results come back", async () => {
    const r = await call("execute_code", {
      code: `
        import { echo, getSum } from "/servers/everything/index.ts";
        const sum = await getSum({ a: 2, b: 3 });
        console.log(sum, await echo({ message: "hi" }));`,
    });
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ exitCode: 0, stderr: "" });
    expect((r.structuredContent as { stdout: string }).stdout).toMatch(/^The sum of 2 and 3 is 5\.? Echo: hi\n$/);
  });

  it("calls a Streamable HTTP upstream the same way", async () => {
    const r = await call("execute_code", { code: 'import { getSum } from "/servers/remote/index.ts"; console.log(await getSum({ a: 40, b: 2 }))' });
    expect((r.structuredContent as { stdout: string }).stdout).toMatch(/^The sum of 40 and 2 is 42\.?\n$/);
  });

  it("describes the bridge in execute_code and marks it open-world", async () => {
    const { tools } = await client.listTools();
    const exec = tools.find((t) => t.name === "execute_code")!;
    expect(exec.description).toContain("/servers/<server>/index.ts");
    expect(exec.description).toContain("search_tools");
    expect(exec.annotations?.openWorldHint).toBe(true);
    expect(tools.map((t) => t.name)).toContain("search_tools");
  });

  it("search_tools finds server-everything's tools", async () => {
    const r = await call("search_tools", { query: "sum numbers", detail: "summary" });
    const hits = (r.structuredContent as { tools: Array<{ server: string; tool: string; function: string }> }).tools;
    expect(hits[0]).toMatchObject({ server: "everything", tool: "get-sum", function: "getSum" });
  });

  it("filters 10,000 rows in the sandbox: the client gets a fraction of the bytes of a direct call", async () => {
    const viaCode = await call("execute_code", {
      code: `
        import { listRows } from "/servers/rows/index.ts";
        const { rows } = await listRows({});
        const top = rows.filter((r) => r.region === "north").sort((a, b) => b.amount - a.amount).slice(0, 5);
        console.log(JSON.stringify({ scanned: rows.length, top }));`,
    });
    const printed = JSON.parse((viaCode.structuredContent as { stdout: string }).stdout) as { scanned: number; top: unknown[] };
    expect(printed.scanned).toBe(10_000);
    expect(printed.top).toHaveLength(5);

    // The same data fetched the usual way: a client calling the upstream tool directly.
    const direct = new Client({ name: "direct", version: "1" });
    await direct.connect(new StdioClientTransport({ command: process.execPath, args: [rowsServerPath], stderr: "pipe" }));
    const directResult = await direct.callTool({ name: "list_rows", arguments: {} });
    await direct.close();

    const bytesViaCode = Buffer.byteLength(JSON.stringify(viaCode));
    const bytesDirect = Buffer.byteLength(JSON.stringify(directResult));
    const measurement = { rows: 10_000, printedRows: 5, bytesDirect, bytesViaCode, ratio: Number((bytesDirect / bytesViaCode).toFixed(1)) };
    mkdirSync(join(repoRoot, "test-results"), { recursive: true });
    writeFileSync(join(repoRoot, "test-results", "token-efficiency.json"), `${JSON.stringify(measurement, null, 2)}\n`);
    process.stderr.write(`token efficiency: ${JSON.stringify(measurement)}\n`);
    expect(bytesViaCode * 50).toBeLessThan(bytesDirect);
  });
});

const stdoutOf = (r: CallToolResult) => (r.structuredContent as { stdout: string }).stdout;

describe("the bridge from Python", () => {
  it("imports server-everything's generated Python module, calls two tools, and the printed results come back", async () => {
    const r = await call("execute_code", {
      language: "python",
      code: ["from servers.everything import echo, get_sum", "total = get_sum(a=2, b=3)", 'print(total, echo({"message": "hi"}))'].join("\n"),
    });
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ exitCode: 0, stderr: "" });
    expect(stdoutOf(r)).toMatch(/^The sum of 2 and 3 is 5\.? Echo: hi\n$/);
  });

  it("calls a Streamable HTTP upstream the same way", async () => {
    const r = await call("execute_code", { language: "python", code: "from servers.remote import get_sum\nprint(get_sum({'a': 40}, b=2))" });
    expect(stdoutOf(r)).toMatch(/^The sum of 40 and 2 is 42\.?\n$/);
  });

  it("filters 10,000 rows in the sandbox: the client gets a fraction of the bytes of a direct call", async () => {
    const r = await call("execute_code", {
      language: "python",
      code: [
        "import json",
        "from servers.rows import list_rows",
        'rows = list_rows()["rows"]',
        'top = sorted((r for r in rows if r["region"] == "north"), key=lambda r: -r["amount"])[:5]',
        'print(json.dumps({"scanned": len(rows), "top": top}))',
      ].join("\n"),
    });
    const printed = JSON.parse(stdoutOf(r)) as { scanned: number; top: Array<{ region: string }> };
    expect(printed.scanned).toBe(10_000);
    expect(printed.top).toHaveLength(5);
    expect(printed.top.every((row) => row.region === "north")).toBe(true);
    const direct = new Client({ name: "direct", version: "1" });
    await direct.connect(new StdioClientTransport({ command: process.execPath, args: [rowsServerPath], stderr: "pipe" }));
    const directResult = await direct.callTool({ name: "list_rows", arguments: {} });
    await direct.close();
    expect(Buffer.byteLength(JSON.stringify(r)) * 50).toBeLessThan(Buffer.byteLength(JSON.stringify(directResult)));
  });

  it("has call_mcp_tool for raw results, raises MCPToolError for tool errors, and ships type hints", async () => {
    const r = await call("execute_code", {
      language: "python",
      code: [
        "import typing",
        "from servers.client import MCPToolError, call_mcp_tool",
        "from servers.everything.get_sum import GetSumInput, get_sum",
        'raw = call_mcp_tool("rows", "echo", {"message": "raw"})',
        'print(raw["content"][0]["text"])',
        "try:",
        "    from servers.rows import fail",
        "    fail()",
        "except MCPToolError as err:",
        '    print("tool error:", err)',
        'print(sorted(GetSumInput.__required_keys__), typing.get_type_hints(get_sum)["return"])',
        "import json",
        'print([t["python"]["module"] for t in json.load(open("/servers/index.json"))[0]["tools"]][:1])',
      ].join("\n"),
    });
    expect(r.structuredContent).toMatchObject({ exitCode: 0, stderr: "" });
    const lines = stdoutOf(r).trim().split("\n");
    expect(lines[0]).toContain("raw");
    expect(lines[1]).toBe("tool error: this tool always fails");
    expect(lines[2]).toMatch(/^\['a', 'b'\] /);
    expect(lines[3]).toMatch(/^\['servers\.everything\./);
  });

  it("search_tools and execute_code say how to call tools from Python", async () => {
    const { tools } = await client.listTools();
    const exec = tools.find((t) => t.name === "execute_code")!;
    expect(exec.description).toContain("from servers.<server> import f");
    expect(JSON.stringify(exec.inputSchema)).toContain('"python"');
    const hits = (await call("search_tools", { query: "sum", detail: "name" })).structuredContent as { tools: Array<{ server: string; python: string }> };
    expect(hits.tools.find((h) => h.server === "everything")?.python).toBe("from servers.everything import get_sum");
  });
});

describe("the bridge under Bun", () => {
  it("runs TypeScript natively and calls server-everything through the same generated modules", async () => {
    const r = await call("execute_code", {
      runtime: "bun",
      code: `
        import { echo, getSum } from "/servers/everything/index.ts";
        const sum: string = await getSum({ a: 2, b: 3 });
        console.log(sum, await echo({ message: "hi" }), typeof Bun);`,
    });
    expect(r.structuredContent).toMatchObject({ exitCode: 0, stderr: "" });
    expect(stdoutOf(r)).toMatch(/^The sum of 2 and 3 is 5\.? Echo: hi object\n$/);
  });

  it("calls a Streamable HTTP upstream and filters 10,000 rows", async () => {
    const remote = await call("execute_code", { runtime: "bun", code: 'import { getSum } from "/servers/remote/index.ts"; console.log(await getSum({ a: 40, b: 2 }))' });
    expect(stdoutOf(remote)).toMatch(/^The sum of 40 and 2 is 42\.?\n$/);
    const rows = await call("execute_code", {
      runtime: "bun",
      code: `
        import { listRows } from "/servers/rows/index.ts";
        const { rows } = await listRows({});
        console.log(rows.length, rows.filter((r) => r.region === "north").length > 0);`,
    });
    expect(stdoutOf(rows)).toBe("10000 true\n");
  });
});
