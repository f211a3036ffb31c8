import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, decodePng, removeDir, repoRoot, serverProcessEnv, startHttpServer, tempDir } from "../helpers.js";

// Real data work, as an agent does it, through real MCP clients over stdio and HTTP: a CSV of
// 100,000 rows uploaded with write_file, grouped with pandas, plotted with matplotlib; the
// aggregate comes back as text and the chart as MCP image content whose PNG decodes to the size
// the code asked for. Then a PNG made by TypeScript code, an image over the inline cap (saved and
// linked), invalid image data, and files returned from an outputs folder, byte for byte.
const dataDir = tempDir("e2e-data");
const USER = `e2e-data-${process.pid}`;
const KEY = "data-key-0123456789abcdef";
let stdio: Client;
let http: Client;
let httpServer: ChildProcess;

const REGIONS = ["north", "south", "east", "west", "central"];

/** 100,000 rows of sales with a known aggregate (units per region). */
function salesCsv(): { csv: string; units: Record<string, number> } {
  const units: Record<string, number> = {};
  const lines = ["region,product,units,price"];
  for (let i = 0; i < 100_000; i++) {
    const region = REGIONS[i % REGIONS.length]!;
    const u = (i * 7919) % 13;
    units[region] = (units[region] ?? 0) + u;
    lines.push(`${region},p${i % 17},${u},${((i % 50) + 0.5).toFixed(2)}`);
  }
  return { csv: `${lines.join("\n")}\n`, units };
}

const PANDAS_TASK = `
import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv("sales.csv")
print("rows", len(df))
agg = df.groupby("region")["units"].sum().sort_index()
for region, units in agg.items():
    print(f"{region}={units}")
fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
agg.plot.bar(ax=ax, title="units by region")
plt.show()
`;

/** A PNG of 64×32 built with node:zlib only, shown with display() from /servers/display.ts. */
const TS_PNG = `
import { deflateSync, crc32 } from "node:zlib";
import { createHash } from "node:crypto";
import { display } from "/servers/display.ts";
const w = 64, h = 32;
const raw = Buffer.alloc(h * (1 + w * 3));
for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set([x * 4, y * 8, 128], y * (1 + w * 3) + 1 + x * 3);
const chunk = (type: string, data: Buffer) => {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
};
const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr.set([8, 2, 0, 0, 0], 8);
const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
console.log("sha256", createHash("sha256").update(png).digest("hex"));
console.log("shown", await display(png, { name: "gradient" }));
`;

const call = (client: Client, args: Record<string, unknown>) => client.callTool({ name: "execute_code", arguments: args }, undefined, { timeout: 180_000 }) as Promise<CallToolResult>;
const textOf = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
const images = (r: CallToolResult) => r.content.filter((c): c is { type: "image"; data: string; mimeType: string } => c.type === "image");
const links = (r: CallToolResult) => r.content.filter((c): c is { type: "resource_link"; uri: string; name: string; mimeType?: string; size?: number } => c.type === "resource_link");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function readResource(client: Client, uri: string): Promise<Buffer> {
  const { contents } = await client.readResource({ uri });
  const c = contents[0] as { blob?: string; text?: string };
  return c.blob !== undefined ? Buffer.from(c.blob, "base64") : Buffer.from(c.text ?? "", "utf8");
}

beforeAll(async () => {
  const configFile = join(dataDir, "config.json");
  writeFileSync(configFile, JSON.stringify({ http: { port: 0 }, auth: { apiKeys: [{ userId: `${USER}-http`, key: KEY }] }, sandbox: { profiles: { standard: { timeoutMs: 120_000 } } } }));
  const transport = new StdioClientTransport({ command: process.execPath, args: [cliPath, "--config", configFile], env: serverProcessEnv({ CODEBOX_DATA_DIR: join(dataDir, "stdio"), CODEBOX_USER_ID: USER }), stderr: "ignore" });
  stdio = new Client({ name: "data-e2e", version: "1" });
  await stdio.connect(transport);
  const started = await startHttpServer(configFile, join(dataDir, "http"));
  httpServer = started.server;
  http = new Client({ name: "data-e2e-http", version: "1" });
  await http.connect(new StreamableHTTPClientTransport(new URL(`${started.baseUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${KEY}` } } }));
}, 120_000);

afterAll(async () => {
  await stdio?.close();
  await http?.close();
  httpServer?.kill("SIGTERM");
  await new Promise((r) => httpServer?.once("exit", r));
  removeDir(dataDir);
});

describe.each([
  ["stdio", () => stdio],
  ["HTTP", () => http],
])("data work over %s", (_transport, client) => {
  it("uploads 100,000 rows, aggregates them with pandas and gets the chart back as a PNG image", async () => {
    const { csv, units } = salesCsv();
    const put = (await client().callTool({ name: "write_file", arguments: { path: "sales.csv", content: csv } })) as CallToolResult;
    expect(put.isError).toBeFalsy();
    const r = await call(client(), { language: "python", code: PANDAS_TASK });
    const text = textOf(r);
    expect(r.structuredContent).toMatchObject({ exitCode: 0 });
    expect(text).toContain("rows 100000");
    for (const region of REGIONS) expect(text).toContain(`${region}=${units[region]}`);
    const [chart] = images(r);
    expect(chart?.mimeType).toBe("image/png");
    const png = decodePng(Buffer.from(chart!.data, "base64"));
    expect([png.width, png.height]).toEqual([640, 480]);
    expect(text).toMatch(/\[image: units by region \(image\/png, 640×480, \d+ KiB\)\]/);
  });

  it("returns a PNG made by TypeScript code as image content, byte for byte", async () => {
    const r = await call(client(), { language: "typescript", code: TS_PNG });
    const text = textOf(r);
    expect(text).toContain("shown true");
    const [img] = images(r);
    const bytes = Buffer.from(img!.data, "base64");
    expect(text).toContain(`sha256 ${sha256(bytes)}`);
    const png = decodePng(bytes);
    expect([png.width, png.height]).toEqual([64, 32]);
  });

  it("saves an image over the inline cap and links it; refuses invalid data with a line, and the run goes on", async () => {
    const code = `
import hashlib, io, os
from PIL import Image
noise = Image.frombytes("RGB", (800, 800), os.urandom(800 * 800 * 3))
buf = io.BytesIO(); noise.save(buf, format="PNG"); data = buf.getvalue()
print("size", len(data), "sha256", hashlib.sha256(data).hexdigest())
print("big", display(data, name="noise"))
print("bad", display(b"not an image at all"))
print("cut", display(data[:1000], name="cut"))
print("still running")
`;
    const r = await call(client(), { language: "python", code });
    const text = textOf(r);
    expect(text).toContain("still running");
    expect(text).toContain("big True");
    expect(text).toContain("bad False");
    expect(images(r)).toHaveLength(0);
    const [link] = links(r);
    expect(link?.mimeType).toBe("image/png");
    expect(link?.uri).toMatch(/^workspace:\/\/\.codebox\/images\/.+-1\.png$/);
    const saved = await readResource(client(), link!.uri);
    expect(text).toContain(`sha256 ${sha256(saved)}`);
    expect(decodePng(saved).width).toBe(800);
    expect(text).toContain("cut False");
    expect(text).toMatch(/image 2 not shown: not a PNG, JPEG, GIF, WebP or SVG image/);
    expect(text).toMatch(/image 3 not shown: a PNG that is cut short or damaged/);
    expect(r.structuredContent).toMatchObject({ exitCode: 0 });
  });

  it("returns the files a run writes to its outputs folder, byte for byte", async () => {
    const code = `
import hashlib, os
from openpyxl import Workbook
os.makedirs("reports", exist_ok=True)
wb = Workbook(); ws = wb.active; ws.append(["region", "units"]); ws.append(["north", 42]); wb.save("reports/q3.xlsx")
print("sha256", hashlib.sha256(open("reports/q3.xlsx", "rb").read()).hexdigest())
`;
    const r = await call(client(), { language: "python", code, outputs: "reports" });
    const text = textOf(r);
    const [link] = links(r);
    expect(link?.uri).toBe("workspace://reports/q3.xlsx");
    expect(link?.mimeType).toBe("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    expect(text).toContain("[file: /workspace/reports/q3.xlsx");
    const bytes = await readResource(client(), link!.uri);
    expect(text).toContain(`sha256 ${sha256(bytes)}`);
    // A second run that writes nothing there returns nothing, and says so.
    const again = await call(client(), { language: "python", code: "print(1)", outputs: "/workspace/reports/" });
    expect(links(again)).toHaveLength(0);
    expect(textOf(again)).toContain("outputs: the run wrote no files in /workspace/reports");
  });
});

describe("the MCP Inspector CLI", () => {
  it("shows a chart as image content", async () => {
    const { stdout } = await promisify(execFile)(
      join(repoRoot, "node_modules", ".bin", "mcp-inspector"),
      ["--cli", "-e", `CODEBOX_DATA_DIR=${join(dataDir, "inspector")}`, process.execPath, cliPath, "--method", "tools/call", "--tool-name", "execute_code", "--tool-arg", "language=python", "--tool-arg", "code=import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"],
      { env: serverProcessEnv({}), timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
    );
    const json = JSON.parse(stdout.slice(stdout.indexOf("{"))) as CallToolResult;
    const [img] = images(json);
    expect(img?.mimeType).toBe("image/png");
    expect(decodePng(Buffer.from(img!.data, "base64"))).toMatchObject({ width: 640, height: 480 });
  });
});
