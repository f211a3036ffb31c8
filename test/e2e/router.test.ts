import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type CallToolResult, LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigSchema } from "../../src/config/schema.js";
import type { CellDirectory } from "../../src/transport/router/cells.js";
import { home } from "../../src/transport/router/hrw.js";
import { type RouterHandle, serveRouter } from "../../src/transport/router/router.js";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { cliPath, ourContainers, removeDir, serverProcessEnv, tempDir, testLogger, waitForNoContainers } from "../helpers.js";

// Cells and the router on one machine, quickly: two real cells (the built CLI, `serve --http` in
// cluster mode, on their own loopback addresses and data directories, sharing this machine's
// engine) and the router in this process. The orchestrator is an in-memory CellDirectory here;
// test/cluster/ runs the same against a real Swarm of separate engines.

const dir = tempDir("e2e-router");
const TOKEN = "cluster-token-0123456789abcdef0123456789";
const PORT = 20_000 + (process.pid % 20_000);
const INTERNAL = PORT + 1;
/**
 * Eight users spread so every test has someone to move: at least two on each of the first two
 * cells, and at least two whose home becomes the third cell when it is added.
 */
function pickUsers(): Array<{ id: string; key: string }> {
  const ids2 = ["cell-a", "cell-b"];
  const ids3 = [...ids2, "cell-c"];
  const out: Array<{ id: string; key: string }> = [];
  const count = (f: (id: string) => boolean) => out.filter((u) => f(u.id)).length;
  for (let i = 0; out.length < 8; i++) {
    const id = `ru${i}-${process.pid}`;
    const onA = home(id, ids2) === "cell-a";
    const toC = home(id, ids3) === "cell-c";
    const need = (toC && count((x) => home(x, ids3) === "cell-c") < 2) || (!toC && (onA ? count((x) => home(x, ids2) === "cell-a" && home(x, ids3) !== "cell-c") < 3 : count((x) => home(x, ids2) === "cell-b" && home(x, ids3) !== "cell-c") < 3));
    if (need) out.push({ id, key: `router-user-key-${i}-0123456789abcdef` });
  }
  return out;
}
const USERS = pickUsers();
/** A user of the streaming test only (the others' files are counted line by line). */
const STREAMER = { id: `rs-${process.pid}`, key: "router-streamer-key-0123456789abcdef" };
const KEYS = [...USERS, STREAMER].map((u) => ({ userId: u.id, key: u.key }));
const CELLS = [
  { id: "cell-a", address: "127.0.0.2" },
  { id: "cell-b", address: "127.0.0.3" },
];
const CELL_C = { id: "cell-c", address: "127.0.0.4" };
const ALL_CELLS = [...CELLS, CELL_C];
const procs = new Map<string, ChildProcess>();
let router: RouterHandle;
const cellsDeclared = CELLS.map((c) => ({ ...c }));
const directory: CellDirectory = { name: "test", list: async () => cellsDeclared };

function startCell(cell: { id: string; address: string }): Promise<void> {
  const configFile = join(dir, `${cell.id}.json`);
  writeFileSync(
    configFile,
    JSON.stringify({
      http: { host: cell.address, port: PORT, shutdownGraceMs: 2_000 },
      cluster: { cellId: cell.id, token: TOKEN, internalPort: INTERNAL },
      auth: { apiKeys: KEYS },
      sandbox: { runtimes: ["node"], profiles: { standard: { timeoutMs: 60_000 } } },
    }),
  );
  let text = "";
  const p = spawn(process.execPath, [cliPath, "serve", "--http", "--config", configFile], { env: serverProcessEnv({ CODEBOX_DATA_DIR: join(dir, cell.id) }), stdio: ["ignore", "ignore", "pipe"] });
  procs.set(cell.id, p);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`cell ${cell.id} did not start: ${text}`)), 30_000);
    p.stderr!.on("data", (d: Buffer) => {
      text += d.toString();
      if (text.includes("cell internal listener")) {
        clearTimeout(t);
        resolve();
      }
    });
    p.once("exit", (code) => reject(new Error(`cell ${cell.id} exited ${code}: ${text}`)));
  });
}

async function connect(user: { key: string }): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(router.url), { requestInit: { headers: { Authorization: `Bearer ${user.key}` } } });
  const client = new Client({ name: "router-e2e", version: "1" });
  await client.connect(transport);
  return client;
}

const text = (r: CallToolResult) => (r.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? "").join("\n");
/** What the run printed (a tool error has no structured result: its text then). */
const out = (r: CallToolResult) => (r.structuredContent as { stdout?: string } | undefined)?.stdout ?? text(r);

async function appendAndRead(client: Client, user: string, n: number): Promise<CallToolResult> {
  return (await client.callTool({
    name: "execute_code",
    arguments: { language: "javascript", code: `import fs from "node:fs"; fs.appendFileSync("/workspace/${user}.log", "${n}\\n"); console.log(fs.readFileSync("/workspace/${user}.log","utf8").trim().split("\\n").join(",")); console.log(fs.readdirSync("/workspace").join(","))` },
  })) as CallToolResult;
}

const cellOf = (user: string) => ALL_CELLS.find((c) => existsSync(join(dir, c.id, "users", user)))?.id;

beforeAll(async () => {
  await Promise.all(CELLS.map(startCell));
  const config = ConfigSchema.parse({
    dataDir: join(dir, "router"),
    route: { host: "127.0.0.1", port: 0, cellPort: PORT, cellInternalPort: INTERNAL, probeIntervalMs: 300, probeTimeoutMs: 300, discoveryIntervalMs: 500, retryAfterMs: 2_000 },
    cluster: { token: TOKEN },
    auth: { apiKeys: KEYS },
  });
  router = await serveRouter(config, testLogger(), { directory });
}, 60_000);

afterAll(async () => {
  await router?.close();
  for (const p of procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  await Promise.all([...procs.values()].map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once("exit", r)) : undefined)));
  await waitForNoContainers(undefined, 20_000);
  removeDir(dir);
}, 60_000);

describe("router in front of two cells", () => {
  it("places each user on their rendezvous home and they see only their own files", async () => {
    const clients = await Promise.all(USERS.map(connect));
    for (let round = 1; round <= 2; round++) {
      const results = await Promise.all(USERS.map((u, i) => appendAndRead(clients[i]!, u.id, round)));
      for (const [i, r] of results.entries()) {
        expect(r.isError, text(r)).toBeFalsy();
        const [counts, listing] = out(r).trim().split("\n");
        expect(counts).toBe(round === 1 ? "1" : "1,2");
        expect(listing).toBe(`${USERS[i]!.id}.log`);
      }
    }
    for (const u of USERS) {
      expect(cellOf(u.id)).toBe(home(u.id, CELLS.map((c) => c.id)));
      // One cell only: the other has no folder for them.
      expect(CELLS.filter((c) => existsSync(join(dir, c.id, "users", u.id))).length).toBe(1);
    }
    expect(new Set(USERS.map((u) => cellOf(u.id))).size).toBe(2);
    await Promise.all(clients.map((c) => c.close()));
  }, 120_000);

  it("a request straight to a cell for a user it does not hold gets 421, and a client cannot claim a new user there", async () => {
    const u = USERS.find((x) => cellOf(x.id) === "cell-a")!;
    for (const extra of [{}, { "codebox-placement": "new" }, { "codebox-placement": "new", "codebox-cluster-token": "wrong-token-0123456789abcdef0123456789" }]) {
      const res = await fetch(`http://127.0.0.3:${PORT}/mcp`, {
        method: "POST",
        headers: { authorization: `Bearer ${u.key}`, "content-type": "application/json", accept: "application/json, text/event-stream", ...extra },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "1" } } }),
      });
      expect(res.status).toBe(421);
      expect(((await res.json()) as { error: { data: { placement: string } } }).error.data.placement).toBe("unknown");
    }
    expect(existsSync(join(dir, "cell-b", "users", u.id))).toBe(false);
    // The internal listener wants the cluster token.
    expect((await fetch(`http://127.0.0.3:${INTERNAL}/internal/placement`)).status).toBe(401);
    const report = (await (await fetch(`http://127.0.0.3:${INTERNAL}/internal/placement`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { cell: string; users: Record<string, { state: string }> };
    expect(report.cell).toBe("cell-b");
    expect(Object.keys(report.users).sort()).toEqual(USERS.filter((x) => cellOf(x.id) === "cell-b").map((x) => x.id).sort());
  });

  it("streaming passes through unchanged: progress notifications, output lines as log messages, cancellation, and resumption with Last-Event-ID", async () => {
    const u = STREAMER;
    const client = await connect(u);
    await client.setLoggingLevel("info");
    const logs: string[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      logs.push(String(n.params.data));
    });
    const tokens: string[] = [];
    const progress: number[] = [];
    const r = (await client.callTool(
      { name: "execute_code", arguments: { language: "javascript", code: "for (let i = 0; i < 3; i++) { console.log('line ' + i); await new Promise((r) => setTimeout(r, 1500)); } console.log('done')" } },
      undefined,
      { timeout: 60_000, onprogress: (p) => progress.push(p.progress), resumptionToken: undefined, onresumptiontoken: (t: string) => tokens.push(t) },
    )) as CallToolResult;
    expect(out(r)).toContain("done");
    // Progress every 2 s of a ~4.5 s run, and the lines as they were printed.
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(logs.filter((l) => l.startsWith("line ")).length).toBeGreaterThanOrEqual(2);
    expect(tokens.length).toBeGreaterThanOrEqual(2);
    // Resumption: the same session's stream, replayed after the first event id, through the router.
    const sessionId = (client.transport as StreamableHTTPClientTransport).sessionId!;
    const ac = new AbortController();
    const replay = await fetch(router.url, { headers: { authorization: `Bearer ${u.key}`, accept: "text/event-stream", "mcp-session-id": sessionId, "last-event-id": tokens[0]!, "mcp-protocol-version": "2025-06-18" }, signal: ac.signal });
    expect(replay.status).toBe(200);
    const reader = replay.body!.getReader();
    let replayed = "";
    const until = Date.now() + 5_000;
    while (!replayed.includes(tokens[tokens.length - 1]!) && Date.now() < until) {
      const { value, done } = await Promise.race([reader.read(), new Promise<{ value: undefined; done: true }>((res) => setTimeout(() => res({ value: undefined, done: true }), 1_000))]);
      if (done && !value) break;
      replayed += new TextDecoder().decode(value);
    }
    ac.abort();
    expect(replayed).toContain(`id: ${tokens[tokens.length - 1]}`);
    expect(replayed).not.toContain(`id: ${tokens[0]}\n`);
    // Cancellation: notifications/cancelled goes through; the cell kills and removes the container.
    const cancel = new AbortController();
    const pending = client.callTool({ name: "execute_code", arguments: { language: "javascript", code: "await new Promise((r) => setTimeout(r, 60000)); console.log('finished')" } }, undefined, { signal: cancel.signal, timeout: 90_000 });
    const deadline = Date.now() + 20_000;
    while ((await ourContainers({ label: LABEL.user, value: u.id })).length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    cancel.abort("test cancels");
    await expect(pending).rejects.toThrow();
    expect(await waitForNoContainers({ label: LABEL.user, value: u.id }, 20_000)).toEqual([]);
    const after = await appendAndRead(client, u.id, 7);
    expect(out(after).split("\n")[0]).toBe("7");
    await client.close();
  }, 120_000);

  it("a cell killed mid-run: its users get CODEBOX_CELL_UNAVAILABLE within seconds, the others keep working, and after a restart they find their files", async () => {
    const onB = USERS.filter((u) => cellOf(u.id) === "cell-b");
    const onA = USERS.filter((u) => cellOf(u.id) === "cell-a");
    const bClients = await Promise.all(onB.map(connect));
    const aClients = await Promise.all(onA.map(connect));
    // A run in flight on cell-b when it dies.
    const started = Date.now();
    const long = bClients[0]!.callTool({ name: "execute_code", arguments: { language: "javascript", code: "await new Promise(r => setTimeout(r, 20000)); console.log('late')" } }) as Promise<CallToolResult>;
    await new Promise((r) => setTimeout(r, 1_500));
    procs.get("cell-b")!.kill("SIGKILL");
    const r = await long;
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(r.isError).toBe(true);
    expect(text(r)).toContain("CODEBOX_CELL_UNAVAILABLE");
    // Further calls of cell-b's users fail fast with the same clear error; cell-a's users see nothing.
    const t0 = Date.now();
    const [bAfter, aAfter] = await Promise.all([Promise.all(onB.map((u, i) => appendAndRead(bClients[i]!, u.id, 9))), Promise.all(onA.map((u, i) => appendAndRead(aClients[i]!, u.id, 3)))]);
    expect(Date.now() - t0).toBeLessThan(30_000);
    for (const x of bAfter) expect(text(x)).toContain("CODEBOX_CELL_UNAVAILABLE");
    for (const x of aAfter) expect(out(x).split("\n")[0]).toBe("1,2,3");
    // A new session for a cell-b user is refused in the protocol too (not a hang).
    await expect(connect(onB[0]!)).rejects.toThrow(/unavailable/);
    await Promise.all([...bClients, ...aClients].map((c) => c.close().catch(() => {})));

    await startCell(CELLS[1]!);
    let back: CallToolResult | undefined;
    for (let i = 0; i < 40 && !back; i++) {
      try {
        const c = await connect(onB[0]!);
        back = await appendAndRead(c, onB[0]!.id, 3);
        await c.close();
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    expect(back && out(back).split("\n")[0]).toBe("1,2,3");
    const again = await Promise.all(onB.slice(1).map(async (u) => {
      const c = await connect(u);
      const res = await appendAndRead(c, u.id, 3);
      await c.close();
      return out(res).split("\n")[0];
    }));
    for (const x of again) expect(x).toBe("1,2,3");
  }, 180_000);

  it("the router reports its cells; unknown paths and bad credentials get clear answers", async () => {
    const ready = await fetch(router.url.replace("/mcp", "/readyz"), { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { cells: Array<{ id: string; up: boolean; users: number }> };
    expect(body.cells.map((c) => [c.id, c.up])).toEqual([
      ["cell-a", true],
      ["cell-b", true],
    ]);
    expect(body.cells.reduce((n, c) => n + c.users, 0)).toBe(USERS.length + 1);
    expect((await fetch(router.url.replace("/mcp", "/readyz"))).status).toBe(401);
    const bad = await fetch(router.url, { method: "POST", headers: { authorization: "Bearer nope-nope-nope-nope", "content-type": "application/json" }, body: "{}" });
    expect(bad.status).toBe(401);
    expect(bad.headers.get("www-authenticate")).toContain("invalid_token");
    expect(readFileSync(join(dir, "cell-a", "cell.json"), "utf8")).toContain('"cell-a"');
  });

  it("adding a third cell and rebalancing moves exactly the users whose home it now is, files intact, a run in flight finishes first; draining moves them all away", async () => {
    const cli = (...args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, [cliPath, "cell", ...args, "--router", router.url.replace("/mcp", "")], { env: serverProcessEnv({ CODEBOX_CLUSTER_TOKEN: TOKEN, CODEBOX_DATA_DIR: join(dir, "cli") }), stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        p.stdout!.on("data", (d: Buffer) => (out += d.toString()));
        p.stderr!.on("data", (d: Buffer) => (err += d.toString()));
        p.once("exit", (code) => resolve({ code, out, err }));
      });
    const before = new Map([...USERS, STREAMER].map((u) => [u.id, cellOf(u.id)!]));
    const expected = [...USERS, STREAMER].filter((u) => home(u.id, ALL_CELLS.map((c) => c.id)) === CELL_C.id).map((u) => u.id);
    expect(USERS.filter((u) => expected.includes(u.id)).length, "the fixed user ids must give cell-c at least one user").toBeGreaterThan(0);
    await startCell(CELL_C);
    cellsDeclared.push({ ...CELL_C });
    await router.table.discover();
    for (let i = 0; i < 50 && !(router.table.complete() && router.table.isUp(CELL_C.id)); i++) await new Promise((r) => setTimeout(r, 100));
    // A run in flight for a user who is about to move: the move waits for it, nothing is lost.
    const mover = USERS.find((u) => expected.includes(u.id))!;
    const moverClient = await connect(mover);
    const inFlight = moverClient.callTool({ name: "execute_code", arguments: { language: "javascript", code: `import fs from "node:fs"; await new Promise(r => setTimeout(r, 3000)); fs.appendFileSync("/workspace/${mover.id}.log", "4\\n"); console.log("wrote")` } }) as Promise<CallToolResult>;
    await new Promise((r) => setTimeout(r, 800));
    const rebalanced = await cli("rebalance");
    expect(rebalanced.code, rebalanced.out + rebalanced.err).toBe(0);
    const { moves } = JSON.parse(rebalanced.out) as { moves: Array<{ user: string; to: string; ok: boolean; report: { digest: string; bytes: number; drainMs: number } }> };
    expect(moves.map((m) => m.user).sort()).toEqual([...expected].sort());
    for (const m of moves) {
      expect(m.ok).toBe(true);
      expect(m.to).toBe(CELL_C.id);
      expect(m.report.digest).toMatch(/^[0-9a-f]{64}$/);
    }
    const finishedEarly = await Promise.race([inFlight.then((x) => JSON.stringify(x).slice(0, 400)), new Promise((r) => setTimeout(() => r("pending"), 10))]);
    expect(moves.find((m) => m.user === mover.id)!.report.drainMs, `${JSON.stringify(moves)} ${finishedEarly}`).toBeGreaterThan(1_000);
    const finished = await inFlight;
    expect(out(finished).trim()).toBe("wrote");
    // Everyone is where rendezvous hashing says; nobody else moved; every file is intact.
    for (const u of USERS) {
      expect(cellOf(u.id)).toBe(expected.includes(u.id) ? CELL_C.id : before.get(u.id));
      const c = await connect(u);
      const r = await appendAndRead(c, u.id, 5);
      await c.close();
      expect(out(r).split("\n")[0]).toBe(u.id === mover.id ? "1,2,3,4,5" : "1,2,3,5");
    }
    await moverClient.close().catch(() => {});
    // The old copies are gone; the old cells keep tombstones pointing to cell-c.
    for (const id of expected) {
      const from = before.get(id)!;
      expect(existsSync(join(dir, from, "users", id))).toBe(false);
      expect(JSON.parse(readFileSync(join(dir, from, "placement", `${id}.json`), "utf8"))).toMatchObject({ state: "moved", to: CELL_C.id });
    }
    // Drain cell-c: all its users go to their home among the others.
    const drained = await cli("drain", CELL_C.id);
    expect(drained.code, drained.out + drained.err).toBe(0);
    expect((JSON.parse(drained.out) as { left: string[] }).left).toEqual([]);
    for (const u of [...USERS, STREAMER]) expect(cellOf(u.id)).toBe(home(u.id, CELLS.map((c) => c.id)));
    const status = JSON.parse((await cli("status")).out) as { cells: Array<{ id: string; users: number; mode: string }> };
    expect(status.cells.find((c) => c.id === CELL_C.id)).toMatchObject({ users: 0, mode: "draining" });
    for (const u of expected.filter((id) => USERS.some((x) => x.id === id))) {
      const c = await connect(USERS.find((x) => x.id === u)!);
      const r = await appendAndRead(c, u, 6);
      await c.close();
      expect(out(r).split("\n")[0]).toMatch(/^1,2,3,(4,)?5,6$/);
    }
  }, 180_000);

  it("a move cut short by a crash is finished or undone, never forked: source killed mid-copy keeps the user; target killed mid-copy drops its partial copy", async () => {
    const admin = (path: string) => fetch(router.url.replace("/mcp", path), { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    const u = STREAMER;
    const at = () => ALL_CELLS.filter((c) => existsSync(join(dir, c.id, "users", u.id))).map((c) => c.id);
    const c1 = await connect(u);
    const wrote = await c1.callTool({ name: "execute_code", arguments: { language: "javascript", code: `import fs from "node:fs"; import crypto from "node:crypto"; const b = Buffer.alloc(8 << 20); const h = crypto.createHash("sha256"); const fd = fs.openSync("/workspace/big.bin", "w"); for (let i = 0; i < 24; i++) { crypto.randomFillSync(b); h.update(b); fs.writeSync(fd, b); } fs.closeSync(fd); console.log(h.digest("hex"))` } }, undefined, { timeout: 120_000 });
    const digest = out(wrote as CallToolResult).trim();
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    await c1.close();
    const [source] = at();
    const target = CELLS.map((c) => c.id).find((id) => id !== source)!;
    const restart = async (id: string) => {
      const p = procs.get(id)!;
      p.kill("SIGKILL");
      await new Promise((r) => p.once("exit", r));
      await startCell(ALL_CELLS.find((c) => c.id === id)!);
    };
    const served = async () => {
      for (let i = 0; i < 60; i++) {
        try {
          const c = await connect(u);
          const r = (await c.callTool({ name: "execute_code", arguments: { language: "javascript", code: `import fs from "node:fs"; import crypto from "node:crypto"; const h = crypto.createHash("sha256"); const b = Buffer.alloc(8 << 20); const fd = fs.openSync("/workspace/big.bin", "r"); for (let n; (n = fs.readSync(fd, b)) > 0; ) h.update(b.subarray(0, n)); console.log(h.digest("hex"))` } }, undefined, { timeout: 60_000 })) as CallToolResult;
          await c.close();
          if (!r.isError) return out(r).trim();
        } catch {
          // not yet
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      return "never served";
    };
    for (const victim of [source, target]) {
      const moving = admin(`/admin/move?user=${u.id}&to=${target}`);
      // Mid-copy: the target has an incoming record, the source a moving one.
      for (let i = 0; i < 100 && !existsSync(join(dir, target!, "placement", `${u.id}.json`)); i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 150));
      await restart(victim!);
      const res = await moving;
      expect(res.status, `${victim} killed`).not.toBe(200);
      // The source holds the user again; the target's partial copy is dropped by the router.
      expect(await served()).toBe(digest);
      for (let i = 0; i < 50 && existsSync(join(dir, target!, "users", u.id)); i++) await new Promise((r) => setTimeout(r, 200));
      expect(at(), `${victim} killed`).toEqual([source]);
      expect(existsSync(join(dir, target!, "placement", `${u.id}.json`))).toBe(false);
    }
    // And a move that is let finish still works afterwards.
    const done = await admin(`/admin/move?user=${u.id}&to=${target}`);
    expect(done.status).toBe(200);
    expect(at()).toEqual([target]);
    expect(await served()).toBe(digest);
  }, 240_000);
});
