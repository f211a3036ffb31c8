import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import type { Language, RuntimeName } from "../../src/shared/languages.js";
import { closeAndCheck, testApp } from "../helpers.js";

// Egress through the policy proxy, in real containers: the operator allows one loopback test
// server; a run reaches it with each language's ordinary client (fetch, urllib) through the proxy,
// and every other destination is refused and audited. Sandboxes still have no network of their own.
let upstream: Server;
let port: number;
let otherPort: number;
let other: Server;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => res.end(`hello ${req.method} ${req.url} ${body}`));
  });
  other = createServer((_req, res) => res.end("must never be reached"));
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
  port = (upstream.address() as AddressInfo).port;
  otherPort = (other.address() as AddressInfo).port;
});

afterAll(async () => {
  upstream.close();
  other.close();
});

const auditOf = (app: App) =>
  readFileSync(join(app.config.dataDir, "audit.log"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.kind === "egress");

describe.each(["runc", "runsc"] as const)("egress under %s", (oci) => {
  let app: App;
  const run = (code: string, language: Language, runtime?: RuntimeName, allowHosts?: string[]) =>
    app.runs.execute({ userId: `egress-${oci}`, code, language, runtime, allowHosts });

  beforeAll(() => {
    app = testApp({ "sandbox.ociRuntime": oci, egress: { allow: [`127.0.0.1:${port}`] }, "sandbox.pool": { size: 0 } });
  });
  afterAll(async () => closeAndCheck(app));

  it("reaches the allowed server with fetch (Node, Bun) and urllib (Python), through the proxy", async () => {
    const url = `http://127.0.0.1:${port}/hello?x=1`;
    const js = `const r = await fetch("${url}", { method: "POST", body: "hi" }); console.log(r.status, await r.text());`;
    const node = await run(js, "typescript");
    expect(node.stdout).toBe("200 hello POST /hello?x=1 hi\n");
    const bun = await run(js, "typescript", "bun");
    expect(bun.stdout).toBe("200 hello POST /hello?x=1 hi\n");
    const py = await run(`import urllib.request\nprint(urllib.request.urlopen("${url}", data=b"hi").read().decode())`, "python");
    expect(py.stdout).toBe("hello POST /hello?x=1 hi\n");
    expect(py.notes.join("\n")).toMatch(new RegExp(`egress: reached 127\\.0\\.0\\.1:${port} \\(1 connection`));
    expect(py.egress?.reached).toMatchObject([{ host: "127.0.0.1", port, connections: 1 }]);
  });

  it("refuses and audits every other destination; no direct connection or DNS works at all", async () => {
    const tries = [`http://127.0.0.1:${otherPort}/`, "http://example.com/", "https://example.com/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", `http://localhost:${port}/`];
    const code = `
      import net from "node:net"; import dns from "node:dns/promises";
      for (const u of ${JSON.stringify(tries)}) {
        try { const r = await fetch(u); console.log(u, r.status); } catch (e) { console.log(u, "error"); }
      }
      const direct = await new Promise((res) => { const s = net.connect(${port}, "127.0.0.1"); s.on("connect", () => res("connected")); s.on("error", (e) => res(e.code)); });
      console.log("direct", direct);
      console.log("dns", await dns.lookup("example.com").then(() => "resolved", (e) => e.code));
    `;
    const r = await run(code, "typescript");
    const lines = r.stdout.trim().split("\n");
    for (const u of tries) expect(lines.find((l) => l.startsWith(`${u} `))).toMatch(/ (403|error)$/);
    expect(lines).toContain("direct ECONNREFUSED");
    expect(lines.find((l) => l.startsWith("dns "))).not.toBe("dns resolved");
    const refused = auditOf(app).filter((e) => e.allowed === false);
    for (const host of ["127.0.0.1", "example.com", "169.254.169.254", "10.0.0.1", "localhost"]) expect(refused.map((e) => e.host)).toContain(host);
    expect(refused.find((e) => e.host === "127.0.0.1")).toMatchObject({ port: otherPort });
    expect(r.notes.some((n) => n.startsWith("egress refused example.com:"))).toBe(true);
  });

  it("gives a run that asks for no destinations no network at all, and refuses a run that asks for more than allowed", async () => {
    const r = await run(`console.log(process.env.HTTP_PROXY ?? "unset"); try { await fetch("http://127.0.0.1:${port}/"); console.log("reached"); } catch { console.log("failed"); }`, "typescript", undefined, []);
    expect(r.stdout).toBe("unset\nfailed\n");
    await expect(run("console.log(1)", "typescript", undefined, ["example.com"])).rejects.toThrow(/allowHosts asks for example\.com, which this server does not allow/);
  });
});
