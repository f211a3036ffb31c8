import type { ChildProcess } from "node:child_process";
import { createServer, request, type Server } from "node:http";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { ourContainers, removeDir, rowsServerPath, startHttpServer, tempDir, waitForNoContainers } from "../helpers.js";

// The multi-user service: the built CLI with `serve --http`, real SDK clients over Streamable
// HTTP, API keys for two users, OAuth JWTs from a local JWKS, and a real upstream for one user.

/** TypeScript that saves a skill the way a model does now: files in /skills/<name>/. */
const SAVE_TS_SKILL = (name: string, description: string, code: string) =>
  `import fs from "node:fs"; fs.mkdirSync("/skills/${name}", { recursive: true }); fs.writeFileSync("/skills/${name}/SKILL.md", ${JSON.stringify(`---\nname: ${name}\ndescription: ${JSON.stringify(description)}\n---\n`)}); fs.writeFileSync("/skills/${name}/index.ts", ${JSON.stringify(code)}); console.log("saved")`;

const dir = tempDir("e2e-http");
const suffix = process.pid;
const ALICE = `alice-${suffix}`;
const BOB = `bob-${suffix}`;
const ALICE_KEY = "alice-key-0123456789abcdef";
const BOB_KEY = "bob-key-0123456789abcdef00";
const ISSUER = "https://issuer.codebox.test";
const AUDIENCE = "codebox-e2e";
let jwks: Server;
let jwksUrl: string;
let privateKey: CryptoKey;
let server: ChildProcess;
let baseUrl: string;

async function startServer(): Promise<void> {
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      http: { port: 0, shutdownGraceMs: 4_000 },
      auth: { apiKeys: [{ userId: ALICE, key: ALICE_KEY }, { userId: BOB, keyHash: `sha256:${(await import("node:crypto")).createHash("sha256").update(BOB_KEY).digest("hex")}` }], oauth: { issuer: ISSUER, audience: AUDIENCE, jwksUri: jwksUrl } },
      userMcpServers: { [ALICE]: { rows: { command: process.execPath, args: [rowsServerPath] } } },
      sandbox: { profiles: { standard: { timeoutMs: 60_000 } } },
    }),
  );
  ({ server, baseUrl } = await startHttpServer(configFile, join(dir, "data")));
}

async function connect(bearer: string): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(`${baseUrl}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${bearer}` } } });
  const client = new Client({ name: "http-e2e", version: "1" });
  await client.connect(transport);
  return client;
}

async function raw(path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: init.method ?? "GET", headers: init.headers }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(init.body);
  });
}

const initBody = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } });
const mcpHeaders = (extra: Record<string, string> = {}) => ({ "content-type": "application/json", accept: "application/json, text/event-stream", ...extra });
const exec = async (c: Client, code: string, extra: Record<string, unknown> = {}) => (await c.callTool({ name: "execute_code", arguments: { code, ...extra } }, undefined, { timeout: 120_000 })) as CallToolResult;
const out = (r: CallToolResult) => (r.structuredContent as { stdout: string }).stdout;
const textOf = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");

async function jwt(claims: Record<string, unknown>, opts: { audience?: string; expiresIn?: string | number } = {}): Promise<string> {
  let b = new SignJWT({ scope: "mcp", ...claims }).setProtectedHeader({ alg: "ES256", kid: "k1", typ: "at+jwt" }).setIssuer(ISSUER).setAudience(opts.audience ?? AUDIENCE).setIssuedAt(Math.floor(Date.now() / 1000) - 120);
  b = b.setExpirationTime(opts.expiresIn ?? "5m");
  return b.sign(privateKey);
}

let alice: Client;
let bob: Client;

beforeAll(async () => {
  const pair = await generateKeyPair("ES256", { extractable: true });
  privateKey = pair.privateKey as CryptoKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  jwks = createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/jwks.json`;
  await startServer();
  alice = await connect(ALICE_KEY);
  bob = await connect(BOB_KEY);
});

afterAll(async () => {
  await alice?.close().catch(() => {});
  await bob?.close().catch(() => {});
  if (server && server.exitCode === null) server.kill("SIGKILL");
  jwks?.close();
  for (const u of [ALICE, BOB, "jwt-user"]) expect(await waitForNoContainers({ label: LABEL.user, value: u })).toEqual([]);
  removeDir(dir);
});

describe("authentication", () => {
  it("answers 401 with WWW-Authenticate to no key, a wrong key, an expired JWT and a JWT for another audience", async () => {
    const cases: Array<[string, Record<string, string>]> = [
      ["no key", {}],
      ["wrong key", { authorization: "Bearer not-a-valid-key-at-all-000" }],
      ["expired JWT", { authorization: `Bearer ${await jwt({ sub: "jwt-user" }, { expiresIn: Math.floor(Date.now() / 1000) - 60 })}` }],
      ["other audience", { authorization: `Bearer ${await jwt({ sub: "jwt-user" }, { audience: "someone-else" })}` }],
    ];
    for (const [name, headers] of cases) {
      const r = await raw("/mcp", { method: "POST", headers: mcpHeaders(headers), body: initBody });
      expect(r.status, name).toBe(401);
      expect(String(r.headers["www-authenticate"]), name).toMatch(/^Bearer /);
      expect(String(r.headers["www-authenticate"]), name).toContain("resource_metadata=");
    }
  });

  it("accepts a valid JWT and serves the protected-resource metadata", async () => {
    const c = await connect(await jwt({ sub: "jwt-user" }));
    expect((await c.listTools()).tools.map((t) => t.name)).toContain("execute_code");
    await c.close();
    const meta = await raw("/.well-known/oauth-protected-resource");
    expect(JSON.parse(meta.body)).toMatchObject({ authorization_servers: [ISSUER] });
  });

  it("answers 403 to a foreign Host header and a foreign Origin", async () => {
    const host = await raw("/mcp", { method: "POST", headers: mcpHeaders({ host: "evil.example", authorization: `Bearer ${ALICE_KEY}` }), body: initBody });
    expect(host.status).toBe(403);
    const origin = await raw("/mcp", { method: "POST", headers: mcpHeaders({ origin: "http://evil.example", authorization: `Bearer ${ALICE_KEY}` }), body: initBody });
    expect(origin.status).toBe(403);
  });

  it("serves health and readiness without credentials", async () => {
    expect((await raw("/healthz")).status).toBe(200);
    const ready = await raw("/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ ready: true });
  });

  it("refuses an oversized request body with 413", async () => {
    const r = await raw("/mcp", { method: "POST", headers: mcpHeaders({ authorization: `Bearer ${ALICE_KEY}` }), body: JSON.stringify({ pad: "x".repeat(5 * 1024 * 1024) }) });
    expect(r.status).toBe(413);
  });
});

describe("per-user isolation", () => {
  it("keeps each user's files, skills and upstreams theirs: through code, resources and tools", async () => {
    expect(out(await exec(alice, 'import fs from "node:fs"; fs.writeFileSync("/workspace/alice.txt", "alice secret"); console.log("ok")'))).toBe("ok\n");
    expect(out(await exec(bob, 'import fs from "node:fs"; fs.writeFileSync("/workspace/bob.txt", "bob secret"); console.log("ok")'))).toBe("ok\n");
    // Code: bob's sandbox has no trace of alice's file.
    const seen = out(await exec(bob, 'import fs from "node:fs"; console.log(fs.readdirSync("/workspace").filter((f) => !f.startsWith(".")).join(","), fs.existsSync("/workspace/alice.txt"))'));
    expect(seen).toBe("bob.txt false\n");
    // Resources: bob's list and reads are his own.
    const bobResources = (await bob.listResources()).resources.map((r) => r.uri);
    expect(bobResources).toContain("workspace://bob.txt");
    expect(bobResources).not.toContain("workspace://alice.txt");
    await expect(bob.readResource({ uri: "workspace://alice.txt" })).rejects.toThrow();
    await expect(bob.readResource({ uri: "workspace://../alice/workspace/alice.txt" })).rejects.toThrow();
    expect((await alice.readResource({ uri: "workspace://alice.txt" })).contents[0]).toMatchObject({ text: "alice secret" });
    // Skills: alice's skill, saved from her code, is invisible and unimportable for bob.
    expect(out(await exec(alice, SAVE_TS_SKILL("alice-only", "Alice's helper", "export const who = () => 'alice';")))).toBe("saved\n");
    expect((await alice.listResources()).resources.map((r) => r.uri)).toContain("skill://alice-only");
    expect((await bob.listResources()).resources.map((r) => r.uri)).not.toContain("skill://alice-only");
    await expect(bob.readResource({ uri: "skill://alice-only" })).rejects.toThrow();
    expect(out(await exec(bob, 'import fs from "node:fs"; console.log(fs.existsSync("/skills/alice-only"))'))).toBe("false\n");
    // Upstreams: alice has "rows"; bob neither finds nor calls it.
    const aliceSearch = (await alice.callTool({ name: "search_tools", arguments: { query: "rows" } })) as CallToolResult;
    expect(JSON.stringify(aliceSearch.structuredContent)).toContain("list_rows");
    const bobSearch = (await bob.callTool({ name: "search_tools", arguments: { query: "rows" } })) as CallToolResult;
    expect(JSON.stringify(bobSearch.structuredContent)).not.toContain("list_rows");
    expect(out(await exec(alice, 'import { echo } from "/servers/rows/index.ts"; console.log(await echo({ message: "mine" }))'))).toBe("echo: mine\n");
    const bobCall = await exec(bob, 'import { callMCPTool } from "/servers/client.ts"; import fs from "node:fs"; try { await callMCPTool("rows", "echo", { message: "x" }) } catch (e) { console.log(e.status, fs.existsSync("/servers/rows")) }');
    expect(out(bobCall)).toBe("403 false\n");
  });

  it("does not let one user use another user's session id", async () => {
    const init = await raw("/mcp", { method: "POST", headers: mcpHeaders({ authorization: `Bearer ${ALICE_KEY}` }), body: initBody });
    const sessionId = String(init.headers["mcp-session-id"]);
    expect(sessionId).toMatch(/[0-9a-f-]{36}/);
    const hijack = await raw("/mcp", {
      method: "POST",
      headers: mcpHeaders({ authorization: `Bearer ${BOB_KEY}`, "mcp-session-id": sessionId, "mcp-protocol-version": "2025-06-18" }),
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(hijack.status).toBe(404);
  });
});

describe("skills", () => {
  it("a run saves a skill, a later run imports it; resources show it; a run deletes it", async () => {
    expect(out(await exec(alice, SAVE_TS_SKILL("double-it", "Doubles a number", "export function double(n: number): number { return n * 2; }")))).toBe("saved\n");
    expect(out(await exec(alice, 'import { double } from "/skills/double-it/index.ts"; console.log(double(21))'))).toBe("42\n");
    const listed = (await alice.listResources()).resources.filter((r) => r.uri.startsWith("skill://"));
    expect(listed).toEqual(expect.arrayContaining([expect.objectContaining({ uri: "skill://double-it", description: "Doubles a number" }), expect.objectContaining({ uri: "skill://csv" })]));
    const read = (await alice.readResource({ uri: "skill://double-it" })).contents[0] as { mimeType: string; text: string };
    expect(read.mimeType).toBe("text/markdown");
    expect(read.text).toContain("n * 2");
    expect(out(await exec(alice, 'import fs from "node:fs"; fs.rmSync("/skills/double-it", { recursive: true }); console.log("deleted")'))).toBe("deleted\n");
    expect((await alice.listResources()).resources.map((r) => r.uri)).not.toContain("skill://double-it");
    expect(out(await exec(alice, 'try { await import("/skills/double-it/index.ts"); console.log("still there") } catch { console.log("gone") }'))).toBe("gone\n");
  });

  it("a Python skill a run saved is importable by its user's Python code only", async () => {
    const save = "import os\nos.makedirs('/skills/py-double', exist_ok=True)\nopen('/skills/py-double/SKILL.md', 'w').write('---\\nname: py-double\\ndescription: Doubles\\n---\\n')\nopen('/skills/py-double/__init__.py', 'w').write('def double(n):\\n    return n * 2\\n')\nprint('saved')";
    expect(out(await exec(alice, save, { language: "python" }))).toBe("saved\n");
    expect(out(await exec(alice, "from skills.py_double import double\nprint(double(21))", { language: "python" }))).toBe("42\n");
    expect(out(await exec(bob, "try:\n    import skills.py_double\n    print('visible')\nexcept ImportError:\n    print('not visible')", { language: "python" }))).toBe("not visible\n");
  });

  it("the built-in skills are read-only to code", async () => {
    const r = await exec(alice, 'import fs from "node:fs"; for (const f of ["/skills/csv/index.ts", "/skills/csv/new.ts"]) { try { fs.writeFileSync(f, "x"); console.log("wrote", f) } catch (e) { console.log(e.code) } }');
    expect(out(r)).toMatch(/^(EROFS|EACCES)\n(EROFS|EACCES)\n$/);
  });
});

describe("workspace", () => {
  it("write_file puts a file the next run reads; traversal is refused", async () => {
    const w = (await alice.callTool({ name: "write_file", arguments: { path: "data/in.csv", content: "a,b\n1,2" } })) as CallToolResult;
    expect(w.isError).toBeFalsy();
    expect(out(await exec(alice, 'import { parseCsvRecords } from "/skills/csv/index.ts"; import fs from "node:fs"; console.log(JSON.stringify(parseCsvRecords(fs.readFileSync("data/in.csv", "utf8"))))'))).toBe('[{"a":"1","b":"2"}]\n');
    for (const path of ["../x", "/etc/passwd", "a/../../b", "./."]) {
      const r = (await alice.callTool({ name: "write_file", arguments: { path, content: "x" } })) as CallToolResult;
      expect(r.isError, path).toBe(true);
    }
  });

  it("returns a resource_link to the full output of a run that prints 5 MB; reading it returns all 5 MB", async () => {
    const r = await exec(alice, 'const line = "0123456789".repeat(10) + "\\n"; let s = ""; for (let i = 0; i < 5 * 1024 * 1024 / 101; i++) s += line; process.stdout.write(s); console.log("THE END")');
    const link = r.content.find((c) => c.type === "resource_link") as { uri: string } | undefined;
    expect(link).toBeDefined();
    expect((r.structuredContent as { stdoutTruncated: boolean }).stdoutTruncated).toBe(true);
    expect(textOf(r)).toContain("THE END");
    const full = await alice.readResource({ uri: link!.uri });
    const text = (full.contents[0] as { text: string }).text;
    expect(text.length).toBeGreaterThan(5 * 1024 * 1024 - 200);
    expect(text.endsWith("THE END\n")).toBe(true);
  });
});

describe("progress", () => {
  it("sends progress notifications at least every 5 s during a 20 s run", async () => {
    const times: number[] = [];
    const started = Date.now();
    const r = (await alice.callTool({ name: "execute_code", arguments: { code: "await new Promise((r) => setTimeout(r, 20_000)); console.log('done')" } }, undefined, {
      timeout: 120_000,
      onprogress: () => times.push(Date.now()),
    })) as CallToolResult;
    expect(out(r)).toBe("done\n");
    const gaps = [times[0]! - started, ...times.slice(1).map((t, i) => t - times[i]!), Date.now() - times[times.length - 1]!];
    expect(times.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...gaps)).toBeLessThan(5_000);
  }, 60_000);
});

describe("metrics", () => {
  it("counts the runs performed", async () => {
    const read = async () => {
      const text = (await raw("/metrics")).body;
      const get = (outcome: string) => Number(new RegExp(`^codebox_runs_total\\{outcome="${outcome}"\\} (\\d+)`, "m").exec(text)?.[1] ?? 0);
      return { ok: get("ok"), nonzero: get("nonzero_exit"), timeout: get("timeout") };
    };
    const before = await read();
    await exec(bob, "console.log(1)");
    await exec(bob, "console.log(2)");
    await exec(bob, "process.exit(3)");
    await exec(bob, "while (true) {}", { timeoutMs: 1_000 });
    const after = await read();
    expect(after.ok - before.ok).toBe(2);
    expect(after.nonzero - before.nonzero).toBe(1);
    expect(after.timeout - before.timeout).toBe(1);
    const text = (await raw("/metrics")).body;
    for (const m of ["codebox_run_duration_seconds_bucket", "codebox_queue_length", "codebox_active_containers", "codebox_bridge_calls_total", "codebox_bridge_refusals_total"]) expect(text).toContain(m);
  });
});

describe("graceful shutdown", () => {
  it("on SIGTERM during a run: the run ends, no container remains, the process exits 0 within the grace period", async () => {
    const pending = exec(bob, "await new Promise((r) => setTimeout(r, 60_000)); console.log('finished')").catch((e: unknown) => e);
    const deadline = Date.now() + 20_000;
    while ((await ourContainers({ label: LABEL.user, value: BOB })).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    server.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => server.once("exit", r));
    const took = Date.now() - t0;
    expect(code).toBe(0);
    expect(took).toBeLessThan(4_000 + 10_000);
    await pending;
    expect(await waitForNoContainers({ label: LABEL.user, value: BOB }, 5_000)).toEqual([]);
  });
});

describe("fairness and live output", () => {
  it("one user's flood does not starve another's run", async () => {
    // bob's server was stopped by the shutdown test; start a fresh one for this check.
    await startServer();
    const a = await connect(ALICE_KEY);
    const b = await connect(BOB_KEY);
    try {
      const flood = [...Array(10)].map(() => exec(a, "await new Promise((r) => setTimeout(r, 3000)); console.log('a')"));
      await new Promise((r) => setTimeout(r, 500));
      const t = Date.now();
      const r = await exec(b, "console.log('b')");
      const took = Date.now() - t;
      expect(out(r)).toBe("b\n");
      // alice holds at most maxRunsPerUser (4) of the 8 slots: bob starts at once, not after her queue drains.
      expect(took).toBeLessThan(3_000 * 2);
      const results = await Promise.all(flood);
      expect(results.filter((x) => !x.isError).length).toBeGreaterThanOrEqual(4);
    } finally {
      await a.close();
      await b.close();
    }
  }, 120_000);

  it("streams the code's output lines as log messages", async () => {
    const c = await connect(BOB_KEY);
    const { LoggingMessageNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js");
    const lines: string[] = [];
    c.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      if (n.params.logger === "stdout") lines.push(String(n.params.data));
    });
    await c.setLoggingLevel("info");
    await exec(c, "for (let i = 0; i < 3; i++) { console.log('line ' + i); await new Promise((r) => setTimeout(r, 100)); }");
    await new Promise((r) => setTimeout(r, 200));
    expect(lines).toEqual(["line 0", "line 1", "line 2"]);
    await c.close();
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
  });
});
