import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, removeDir, serverProcessEnv, tempDir } from "../helpers.js";

// Packages through a real MCP client over stdio: two real npm packages from the registry this
// machine's npm is configured with, used from a TypeScript run on Node and on Bun; a Python
// package from a PEP 503 index this test builds and serves on loopback (no Python index is
// reachable here), used from a Python run. A failed install leaves the packages usable; an
// install past the user's quota fails and says so.
const dir = tempDir("e2e-packages");
const USER = `e2e-pkg-${process.pid}`;
let index: Server;
let indexUrl: string;
let client: Client;

/** A wheel of one pure-Python module, made with the host's Python (zipfile), and its sha256. */
function buildWheel(): { name: string; bytes: Buffer } {
  const name = "codebox_greet-1.0.0-py3-none-any.whl";
  const out = join(dir, name);
  execFileSync("python3", [
    "-c",
    `import zipfile, sys
files = {
  "codebox_greet.py": "def hello():\\n    return 'hi from the local index'\\n",
  "codebox_greet-1.0.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: codebox-greet\\nVersion: 1.0.0\\n",
  "codebox_greet-1.0.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for n, body in files.items():
        z.writestr(n, body)
    z.writestr("codebox_greet-1.0.0.dist-info/RECORD", "".join(f"{n},,\\n" for n in files) + "codebox_greet-1.0.0.dist-info/RECORD,,\\n")
`,
    out,
  ]);
  return { name, bytes: readFileSync(out) };
}

beforeAll(async () => {
  const wheel = buildWheel();
  const sha = createHash("sha256").update(wheel.bytes).digest("hex");
  index = createServer((req, res) => {
    // pip reads only pages served as HTML.
    if (req.url?.startsWith("/simple")) res.setHeader("content-type", "text/html");
    if (req.url === "/simple/" || req.url === "/simple") res.end('<html><body><a href="/simple/codebox-greet/">codebox-greet</a></body></html>');
    else if (req.url === "/simple/codebox-greet/") res.end(`<html><body><a href="/files/${wheel.name}#sha256=${sha}">${wheel.name}</a></body></html>`);
    else if (req.url === `/files/${wheel.name}`) res.end(wheel.bytes);
    else res.writeHead(404).end("not found");
  });
  await new Promise<void>((r) => index.listen(0, "127.0.0.1", r));
  indexUrl = `http://127.0.0.1:${(index.address() as AddressInfo).port}/simple/`;
  const config = join(dir, "config.json");
  writeFileSync(config, JSON.stringify({ packages: { pipIndexUrl: indexUrl }, sandbox: { profiles: { standard: { timeoutMs: 60_000 } } } }));
  client = new Client({ name: "packages-e2e", version: "1" });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [cliPath, "--config", config], env: serverProcessEnv({ CODEBOX_DATA_DIR: join(dir, "data"), CODEBOX_USER_ID: USER }), stderr: "ignore" }));
}, 60_000);

afterAll(async () => {
  await client?.close();
  index?.close();
  removeDir(dir);
});

const packages = (args: Record<string, unknown>) => client.callTool({ name: "packages", arguments: args }, undefined, { timeout: 400_000 }) as Promise<CallToolResult>;
const run = (args: Record<string, unknown>) => client.callTool({ name: "execute_code", arguments: args }, undefined, { timeout: 120_000 }) as Promise<CallToolResult>;
const text = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
const USE_NPM = `import _ from "lodash"; import { z } from "zod"; console.log(_.chunk([1, 2, 3, 4], 2).length, z.object({ a: z.string() }).parse({ a: "ok" }).a);`;

describe("packages over stdio", () => {
  it("installs two npm packages from the configured registry; Node and Bun runs import them", { timeout: 600_000 }, async () => {
    const r = await packages({ action: "install", manager: "npm", packages: ["lodash@^4", "zod@^3"] });
    expect(r.isError, text(r)).toBeFalsy();
    expect(text(r)).toMatch(/^Installed lodash@4\.\d+\.\d+, zod@3\.\d+\.\d+\./);
    const node = await run({ code: USE_NPM });
    expect(node.structuredContent).toMatchObject({ exitCode: 0, stdout: "2 ok\n" });
    const bun = await run({ code: USE_NPM, runtime: "bun" });
    expect(bun.structuredContent).toMatchObject({ exitCode: 0, stdout: "2 ok\n" });
  });

  it("installs a Python package from the local index; a Python run imports it", { timeout: 600_000 }, async () => {
    const r = await packages({ action: "install", manager: "pip", packages: ["codebox-greet==1.0.0"] });
    expect(r.isError, text(r)).toBeFalsy();
    expect(text(r)).toContain("Installed codebox-greet@1.0.0");
    const py = await run({ language: "python", code: "import codebox_greet\nprint(codebox_greet.hello())" });
    expect(py.structuredContent).toMatchObject({ exitCode: 0, stdout: "hi from the local index\n" });
  });

  it("refuses what is not a registry package, reports a package that does not exist, and leaves the installed ones usable", { timeout: 600_000 }, async () => {
    const bad = await packages({ action: "install", manager: "npm", packages: ["https://evil.example/x.tgz"] });
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/not a registry package/);
    const missing = await packages({ action: "install", manager: "npm", packages: ["codebox-no-such-package-7f3a9c"] });
    expect(missing.isError).toBe(true);
    expect(text(missing)).toMatch(/codebox-no-such-package-7f3a9c does not exist on the registry.*unchanged/s);
    const missingPy = await packages({ action: "install", manager: "pip", packages: ["codebox-nothing-here"] });
    expect(missingPy.isError).toBe(true);
    expect(text(missingPy)).toMatch(/codebox-nothing-here.*unchanged/s);
    expect((await run({ code: USE_NPM })).structuredContent).toMatchObject({ stdout: "2 ok\n" });
    const list = await packages({ action: "list" });
    expect(text(list)).toMatch(/^npm: lodash@4\.\d+\.\d+, zod@3\.\d+\.\d+\npip: codebox-greet@1\.0\.0$/);
  });

  it("removes a package: later runs no longer find it", { timeout: 600_000 }, async () => {
    const r = await packages({ action: "remove", manager: "npm", packages: ["lodash"] });
    expect(r.isError, text(r)).toBeFalsy();
    const after = await run({ code: 'try { await import("lodash"); console.log("found"); } catch { console.log("gone"); }' });
    expect(after.structuredContent).toMatchObject({ stdout: "gone\n" });
    expect(text(await packages({ action: "list" }))).toMatch(/^npm: zod@3/);
  });
});

describe("packages and the quota", () => {
  it("fails an install that does not fit the user's quota, saying so, and keeps what was installed", { timeout: 600_000 }, async () => {
    const small = new Client({ name: "packages-quota", version: "1" });
    const config = join(dir, "quota.json");
    writeFileSync(config, JSON.stringify({ storage: { quotaMiB: 16, quotaInodes: 2048 }, sandbox: { profiles: { standard: { timeoutMs: 60_000 } } } }));
    await small.connect(new StdioClientTransport({ command: process.execPath, args: [cliPath, "--config", config], env: serverProcessEnv({ CODEBOX_DATA_DIR: join(dir, "quota-data"), CODEBOX_USER_ID: `${USER}-q` }), stderr: "ignore" }));
    try {
      const call = (args: Record<string, unknown>) => small.callTool({ name: "packages", arguments: args }, undefined, { timeout: 400_000 }) as Promise<CallToolResult>;
      const ok = await call({ action: "install", manager: "npm", packages: ["zod@^3"] });
      expect(ok.isError, text(ok)).toBeFalsy();
      // TypeScript unpacks to over 20 MB: more than the 16 MiB the user has.
      const big = await call({ action: "install", manager: "npm", packages: ["typescript@5"] });
      expect(big.isError).toBe(true);
      expect(text(big)).toMatch(/storage quota.*unchanged/s);
      const r = (await small.callTool({ name: "execute_code", arguments: { code: 'import { z } from "zod"; console.log(z.number().parse(7))' } }, undefined, { timeout: 120_000 })) as CallToolResult;
      expect(r.structuredContent).toMatchObject({ exitCode: 0, stdout: "7\n" });
    } finally {
      await small.close();
    }
  });
});
