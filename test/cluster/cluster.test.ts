// Issue 17's cluster test: separate hosts on one machine (network namespaces, each with its own
// Docker engine), a Docker Swarm across them, and `deploy/swarm/stack.yml` deployed on it: a
// router on the manager, a cell per labelled node. Real SDK clients talk to the router from the
// root namespace. Figures (capacity with 1, 2, 3 cells, failure detection, move times) are
// recorded in test-results/cluster-figures.json for docs/SCALING.md; nothing here asserts a time
// beyond "a clear error within seconds, no hang".
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { home } from "../../src/transport/router/hrw.js";
import { cliPath, repoRoot } from "../helpers.js";
import { cleanupStale, createLab, type Host, type Lab, leftovers, run } from "./hosts.js";
import { provideImages, waitFor } from "./support.js";

const PREFIX = "cbk";
const STACK = "cbk";
const TOKEN = randomBytes(24).toString("hex");
const figures: Record<string, unknown> = { machine: { cores: (await import("node:os")).availableParallelism(), kernel: (await import("node:os")).release() } };
const log = (line: string) => process.stderr.write(`[cluster] ${line}\n`);

interface User {
  id: string;
  key: string;
}
const mkUsers = (prefix: string, n: number): User[] => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${String(i).padStart(3, "0")}`, key: randomBytes(18).toString("base64url") }));
const USERS = mkUsers("u", 20);
/** Candidates for the capacity runs (users placed on 1, 2 or 3 given cells). */
const CAP = mkUsers("cap", 120);
const BULK: User = { id: "bulk", key: randomBytes(18).toString("base64url") };
const MANY: User = { id: "many", key: randomBytes(18).toString("base64url") };

let lab: Lab;
let routerUrl: string;
const cellId = (h: Host) => `cell-${h.hostname}`;
const cells = () => lab.hosts.map(cellId);

const textOf = (r: CallToolResult) => (r.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? "").join("\n");
const stdoutOf = (r: CallToolResult) => (r.structuredContent as { stdout?: string } | undefined)?.stdout ?? "";

/** One user's MCP client that reconnects when its session is gone (a move or a restart ends sessions). */
class UserClient {
  private client: Client | undefined;
  constructor(
    readonly user: User,
    private readonly url = routerUrl,
  ) {}

  private async connect(): Promise<Client> {
    const client = new Client({ name: "cluster-test", version: "1" });
    await client.connect(new StreamableHTTPClientTransport(new URL(this.url), { requestInit: { headers: { Authorization: `Bearer ${this.user.key}` } } }));
    this.client = client;
    return client;
  }

  /** Runs code; "ok", or what kept it from running (unavailable, moving), or a thrown error's text. */
  async run(code: string, timeoutMs = 60_000): Promise<{ kind: "ok" | "unavailable" | "moving" | "error"; stdout: string; text: string }> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const c = this.client ?? (await this.connect());
        const r = (await c.callTool({ name: "execute_code", arguments: { language: "javascript", code } }, undefined, { timeout: timeoutMs })) as CallToolResult;
        const text = textOf(r);
        if (text.includes("CODEBOX_CELL_UNAVAILABLE")) return { kind: "unavailable", stdout: "", text };
        if (text.includes("CODEBOX_USER_MOVING")) return { kind: "moving", stdout: "", text };
        return { kind: r.isError ? "error" : "ok", stdout: stdoutOf(r), text };
      } catch (err) {
        const text = (err as Error).message;
        await this.client?.close().catch(() => {});
        this.client = undefined;
        if (/CODEBOX_CELL_UNAVAILABLE/.test(text)) return { kind: "unavailable", stdout: "", text };
        if (/CODEBOX_USER_MOVING/.test(text)) return { kind: "moving", stdout: "", text };
        // A session the cell no longer has (restart, move): the client starts a new one.
        if (attempt === 0 && /Session (not found|closed)|404/.test(text)) continue;
        return { kind: "error", stdout: "", text };
      }
    }
    return { kind: "error", stdout: "", text: "unreachable" };
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => {});
    this.client = undefined;
  }
}

const append = (u: User, n: number) =>
  `import fs from "node:fs"; fs.appendFileSync("/workspace/${u.id}.log", "${n}\\n"); console.log(fs.readFileSync("/workspace/${u.id}.log", "utf8").trim().split("\\n").join(",")); console.log(fs.readdirSync("/workspace").join(","))`;

/** The host whose data directory holds the user. */
const hostOf = (u: User) => lab.hosts.filter((h) => existsSync(join(h.dataDir, "users", u.id)));

async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cliPath, "cell", ...args, "--router", routerUrl.replace(/\/mcp$/, "")], {
      env: { ...process.env, CODEBOX_CLUSTER_TOKEN: TOKEN, CODEBOX_DATA_DIR: join(lab.hosts[0]!.dataDir, "..", "cli"), CODEBOX_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    p.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    p.once("exit", (code) => resolve({ code, out, err }));
  });
}

interface Status {
  complete: boolean;
  cells: Array<{ id: string; up: boolean; users: number; mode: string; desired: boolean }>;
}
const status = async (): Promise<Status> => JSON.parse((await cli("status")).out) as Status;

async function cellContainer(h: Host): Promise<string | undefined> {
  const r = await lab.docker(h, ["ps", "-q", "--filter", `label=com.docker.swarm.service.name=${STACK}_cell`]);
  return r.stdout.trim().split("\n")[0] || undefined;
}

/** What the services say, for a failure's report. */
async function dump(): Promise<void> {
  const m = lab.manager!;
  log((await lab.docker(m, ["service", "ps", "--no-trunc", `${STACK}_router`, `${STACK}_cell`])).stdout);
  for (const svc of ["router", "cell"]) {
    const l = await lab.docker(m, ["service", "logs", "--tail", "60", `${STACK}_${svc}`]);
    log(`--- ${svc}\n${l.stdout}${l.stderr}`);
  }
  log(`status: ${JSON.stringify(await cli("status"))}`);
}

/** Closed loop: each user keeps `perUser` one-line runs going for `ms`; runs per second and latencies. */
async function closedLoop(users: User[], perUser: number, ms: number, url = routerUrl) {
  const latencies: number[] = [];
  let errors = 0;
  const samples: string[] = [];
  const end = Date.now() + ms;
  const clients = users.flatMap((u) => Array.from({ length: perUser }, () => new UserClient(u, url)));
  await Promise.all(clients.map((c) => c.run("1")));
  const start = Date.now();
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < end) {
        const t = Date.now();
        const r = await c.run("console.log(1)");
        if (r.kind === "ok" && r.stdout.trim() === "1") latencies.push(Date.now() - t);
        else {
          errors++;
          if (samples.length < 3) samples.push(`${r.kind}: ${r.text.slice(0, 300)}`);
        }
      }
    }),
  );
  const elapsed = (Date.now() - start) / 1000;
  await Promise.all(clients.map((c) => c.close()));
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return { users: users.length, concurrent: clients.length, seconds: Number(elapsed.toFixed(1)), runs: latencies.length, runsPerSecond: Number((latencies.length / elapsed).toFixed(2)), p50Ms: q(0.5), p95Ms: q(0.95), errors, ...(samples.length ? { samples } : {}) };
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("the cluster test needs root (network namespaces, engines): run it as root, as CI does");
  await cleanupStale(PREFIX, log);
  lab = await createLab({ prefix: PREFIX, count: 3, subnet: "10.213.9.0/24", swarm: true, log });
  const manager = lab.manager!;
  for (const h of lab.hosts) await lab.labelNode(h, "codebox.cell", "true");
  const t0 = Date.now();
  const images = await provideImages(lab, (_l, f) => f(), log);
  figures.imagesLoadMs = Date.now() - t0;
  figures.images = images;
  const config = {
    auth: { apiKeys: [...USERS, ...CAP, BULK, MANY].map((u) => ({ userId: u.id, key: u.key })) },
    cluster: { token: TOKEN },
    http: { allowedHosts: [manager.address], shutdownGraceMs: 10_000 },
    storage: { quota: "soft" },
    sandbox: { runtimes: ["node"], pool: { size: 1 } },
    limits: { maxConcurrentRuns: 8, maxRunsPerUser: 4, maxQueuedRuns: 64 },
    route: { discoveryIntervalMs: 1_000, probeIntervalMs: 500, probeTimeoutMs: 500, probeFailures: 2, retryAfterMs: 2_000 },
  };
  await lab.docker(manager, ["secret", "create", `${STACK}_config`, "-"], { input: JSON.stringify(config), check: true });
  // The stack reads its settings from the environment of `docker stack deploy`.
  const deployed = await run("docker", ["stack", "deploy", "--resolve-image", "never", "-c", join(repoRoot, "deploy", "swarm", "stack.yml"), STACK], {
    timeoutMs: 60_000,
    env: {
      ...process.env,
      DOCKER_HOST: manager.dockerHost,
      CODEBOX_IMAGE: images.server,
      CODEBOX_STACK: STACK,
      CODEBOX_CONFIG_SECRET: `${STACK}_config`,
      CODEBOX_DATA_ROOT: join(manager.dataDir, ".."),
      // Each node's own engine (in production: /var/run/docker.sock on every node).
      CODEBOX_DOCKER_SOCK: `${join(manager.runDir, "..")}/{{.Node.Hostname}}/docker.sock`,
    },
  });
  if (deployed.code !== 0) throw new Error(`docker stack deploy failed: ${deployed.stderr}`);
  routerUrl = `http://${manager.address}:8080/mcp`;
  await waitFor("the router and 3 cells up", 180_000, async () => {
    const s = await status();
    return s.complete && s.cells.filter((c) => c.up).length === 3 ? s : undefined;
  }).catch(async (err: unknown) => {
    await dump();
    throw err;
  });
  figures.deployMs = Date.now() - t0;
}, 600_000);

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") await dump().catch(() => {});
});

afterAll(async () => {
  mkdirSync(join(repoRoot, "test-results"), { recursive: true });
  writeFileSync(join(repoRoot, "test-results", "cluster-figures.json"), `${JSON.stringify(figures, null, 2)}\n`);
  log(`figures: ${JSON.stringify(figures)}`);
  await lab?.destroy();
  expect(await leftovers(PREFIX)).toEqual([]);
}, 300_000);

describe("a Swarm of three engines behind the router (deploy/swarm/stack.yml)", () => {
  it("20 users: each user's calls land on one cell, their rendezvous home, and see only their own files", async () => {
    const clients = USERS.map((u) => new UserClient(u));
    for (let round = 1; round <= 2; round++) {
      const results = await Promise.all(clients.map((c, i) => c.run(append(USERS[i]!, round))));
      for (const [i, r] of results.entries()) {
        expect(r.kind, r.text).toBe("ok");
        expect(r.stdout.trim().split("\n")).toEqual([round === 1 ? "1" : "1,2", `${USERS[i]!.id}.log`]);
      }
    }
    await Promise.all(clients.map((c) => c.close()));
    for (const u of USERS) {
      const at = hostOf(u);
      expect(at.map((h) => h.name), u.id).toHaveLength(1);
      expect(cellId(at[0]!)).toBe(home(u.id, cells()));
    }
    // The cells' audit logs: each user's runs were all on one cell.
    const seen = new Map<string, Set<string>>();
    for (const h of lab.hosts) {
      const text = existsSync(join(h.dataDir, "audit.log")) ? readFileSync(join(h.dataDir, "audit.log"), "utf8") : "";
      for (const line of text.split("\n").filter(Boolean)) {
        const rec = JSON.parse(line) as { kind?: string; userId?: string };
        if (rec.kind === "run" && rec.userId) seen.set(rec.userId, (seen.get(rec.userId) ?? new Set()).add(h.name));
      }
    }
    for (const u of USERS) expect([...(seen.get(u.id) ?? [])], u.id).toHaveLength(1);
    // A second real client: the MCP Inspector CLI, over Streamable HTTP through the router.
    const inspector = await run(join(repoRoot, "node_modules", ".bin", "mcp-inspector"), [
      "--cli", routerUrl, "--transport", "http", "--header", `Authorization: Bearer ${USERS[0]!.key}`,
      "--method", "tools/call", "--tool-name", "execute_code", "--tool-arg", "code=console.log(6 * 7)",
    ], { timeoutMs: 120_000 });
    const viaInspector = JSON.parse(inspector.stdout.slice(inspector.stdout.indexOf("{"))) as CallToolResult;
    expect(viaInspector.structuredContent, inspector.stdout + inspector.stderr).toMatchObject({ stdout: "42\n", exitCode: 0 });
    figures.spread = Object.fromEntries(cells().map((c) => [c, USERS.filter((u) => home(u.id, cells()) === c).length]));
    // Health checks pass on every cell container.
    await waitFor("healthy cells", 60_000, async () => {
      for (const h of lab.hosts) {
        const id = await cellContainer(h);
        if (!id) return undefined;
        const health = (await lab.docker(h, ["inspect", "--format", "{{.State.Health.Status}}", id])).stdout.trim();
        if (health !== "healthy") return undefined;
      }
      return true;
    });
  }, 300_000);

  it("capacity: runs per second through the router with 1, 2 and 3 cells, and straight to one cell (recorded)", async () => {
    const ids = cells();
    const pick = (k: number) => {
      const per = [7, 7, 6];
      const chosen: User[] = [];
      for (let c = 0; c < k; c++) chosen.push(...CAP.filter((u) => home(u.id, ids) === ids[c]).slice(0, k === 1 ? 20 : k === 2 ? 10 : per[c]));
      return chosen;
    };
    const capacity: Record<string, unknown> = {};
    for (const k of [1, 2, 3]) {
      const users = pick(k);
      expect(users).toHaveLength(20);
      capacity[`${k} cell${k > 1 ? "s" : ""}`] = await closedLoop(users, 1, 10_000);
    }
    // The same load as "1 cell", straight to that cell (its users are placed there now).
    capacity["1 cell, no router"] = await closedLoop(pick(1), 1, 10_000, `http://${lab.hosts[0]!.address}:9080/mcp`);
    figures.capacity = capacity;
    for (const v of Object.values(capacity)) expect((v as { runs: number }).runs).toBeGreaterThan(0);
  }, 300_000);

  it("a cell killed mid-run: its users get CODEBOX_CELL_UNAVAILABLE within seconds, the others keep working; Swarm restarts it and its users find their files", async () => {
    const counts = new Map(cells().map((c) => [c, USERS.filter((u) => home(u.id, cells()) === c).length]));
    const victim = lab.hosts.reduce((a, b) => ((counts.get(cellId(b)) ?? 0) > (counts.get(cellId(a)) ?? 0) ? b : a));
    const theirs = USERS.filter((u) => home(u.id, cells()) === cellId(victim));
    const others = USERS.filter((u) => !theirs.includes(u));
    const mine = new UserClient(theirs[0]!);
    const long = mine.run("await new Promise(r => setTimeout(r, 30000)); console.log('late')");
    await new Promise((r) => setTimeout(r, 1_500));
    const container = await cellContainer(victim);
    expect(container).toBeTruthy();
    const killedAt = Date.now();
    await lab.docker(victim, ["kill", container!], { check: true });
    const inFlight = await long;
    const inFlightMs = Date.now() - killedAt;
    expect(inFlight.kind, inFlight.text).toBe("unavailable");
    expect(inFlightMs).toBeLessThan(10_000);
    const probe = new UserClient(theirs[0]!);
    const t = Date.now();
    const next = await probe.run(append(theirs[0]!, 99));
    expect(next.kind).toBe("unavailable");
    const otherResults = await Promise.all(others.map((u) => new UserClient(u).run(append(u, 3))));
    for (const r of otherResults) expect(r.kind, r.text).toBe("ok");
    figures.cellKill = { cell: cellId(victim), users: theirs.length, inFlightAnsweredMs: inFlightMs, nextCallAnsweredMs: Date.now() - t };
    // Swarm starts a new task on the same node and data.
    const back = await waitFor("the killed cell's users served again", 120_000, async () => {
      const r = await probe.run(append(theirs[0]!, 3));
      return r.kind === "ok" ? r : undefined;
    });
    figures.cellKill = { ...(figures.cellKill as object), backAfterMs: Date.now() - killedAt };
    expect(back.stdout.split("\n")[0]).toBe("1,2,3");
    for (const u of theirs.slice(1)) {
      const r = await new UserClient(u).run(append(u, 3));
      expect(r.stdout.split("\n")[0], r.text).toBe("1,2,3");
    }
    await Promise.all([mine.close(), probe.close()]);
  }, 300_000);

  it("a host lost (its link cut, no reset): its users get CODEBOX_CELL_UNAVAILABLE within seconds, the others keep working; back with its files when the link returns", async () => {
    const victim = lab.hosts[2]!;
    const theirs = USERS.filter((u) => home(u.id, cells()) === cellId(victim));
    const others = USERS.filter((u) => !theirs.includes(u));
    expect(theirs.length).toBeGreaterThan(0);
    const c = new UserClient(theirs[0]!);
    const long = c.run("await new Promise(r => setTimeout(r, 30000)); console.log('late')");
    await new Promise((r) => setTimeout(r, 1_500));
    const cutAt = Date.now();
    await lab.cutLink(victim);
    try {
      const r = await long;
      const answeredMs = Date.now() - cutAt;
      expect(r.kind, r.text).toBe("unavailable");
      expect(answeredMs).toBeLessThan(10_000);
      const t = Date.now();
      const next = await new UserClient(theirs[0]!).run(append(theirs[0]!, 98));
      expect(next.kind).toBe("unavailable");
      const otherResults = await Promise.all(others.map((u) => new UserClient(u).run(append(u, 4))));
      for (const x of otherResults) expect(x.kind, x.text).toBe("ok");
      figures.hostLoss = { cell: cellId(victim), inFlightAnsweredMs: answeredMs, nextCallAnsweredMs: Date.now() - t };
    } finally {
      await lab.restoreLink(victim);
    }
    const back = await waitFor("the cut host's users served again", 120_000, async () => {
      const r = await new UserClient(theirs[0]!).run(append(theirs[0]!, 4));
      return r.kind === "ok" ? r : undefined;
    });
    expect(back.stdout.split("\n")[0]).toMatch(/^1,2,3,4$/);
    await c.close();
  }, 300_000);

  it("adding a fourth cell and rebalancing under load moves exactly the users whose home it is, with their files, and loses no run; draining a cell moves all its users", async () => {
    const before = new Map(USERS.map((u) => [u.id, home(u.id, cells())]));
    const h4 = await lab.addHost();
    await lab.swarmJoin(h4);
    await lab.loadImages([(figures.images as { server: string }).server, (figures.images as { sandbox: string }).sandbox], [h4], { from: lab.manager! });
    await lab.labelNode(h4, "codebox.cell", "true");
    await waitFor("4 cells up", 120_000, async () => {
      const s = await status();
      return s.complete && s.cells.filter((c) => c.up).length === 4 ? s : undefined;
    });
    // Every user the cells hold (the capacity runs made some too) whose home is now the new cell.
    const existing = [...USERS, ...CAP].filter((u) => hostOf(u).length > 0);
    const expected = existing.filter((u) => home(u.id, cells()) === cellId(h4)).map((u) => u.id);
    expect(USERS.filter((u) => expected.includes(u.id)).length).toBeGreaterThan(0);
    // Every user keeps appending while the rebalance runs; a call refused (moving) is retried.
    const counters = new Map(USERS.map((u) => [u.id, 10]));
    const acked = new Map<string, number[]>(USERS.map((u) => [u.id, []]));
    const refusals: string[] = [];
    let stop = false;
    const load = Promise.all(
      USERS.map(async (u) => {
        const c = new UserClient(u);
        while (!stop) {
          const n = counters.get(u.id)!;
          const r = await c.run(append(u, n));
          if (r.kind === "ok") {
            acked.get(u.id)!.push(n);
            counters.set(u.id, n + 1);
          } else {
            refusals.push(r.kind === "moving" ? "moving" : `${r.kind}: ${r.text.slice(0, 200)}`);
          }
          // Steady load, not a flood: each user calls about twice a second.
          await new Promise((res) => setTimeout(res, 500));
        }
        await c.close();
      }),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = Date.now();
    const rebalanced = await cli("rebalance");
    const rebalanceMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 1_000));
    stop = true;
    await load;
    expect(rebalanced.code, rebalanced.out + rebalanced.err).toBe(0);
    const { moves } = JSON.parse(rebalanced.out) as { moves: Array<{ user: string; to: string; ok: boolean; report: { bytes: number; totalMs: number; drainMs: number } }> };
    expect(moves.map((m) => m.user).sort()).toEqual([...expected].sort());
    for (const m of moves) expect(m).toMatchObject({ ok: true, to: cellId(h4) });
    figures.rebalance = {
      users: existing.length,
      moved: moves.length,
      expected: expected.length,
      totalMs: rebalanceMs,
      refusalsDuringMoves: refusals.length,
      acknowledgedDuringRebalance: [...acked.values()].reduce((n, l) => n + l.length, 0),
      perMove: moves.map((m) => ({ drainMs: m.report.drainMs, totalMs: m.report.totalMs, bytes: m.report.bytes })),
    };
    // Only "moving" refusals, which the callers retried.
    expect(refusals.filter((r) => r !== "moving")).toEqual([]);
    // Each user's log holds exactly what was acknowledged, in order: no run lost, none doubled.
    for (const u of USERS) {
      const at = hostOf(u);
      expect(at.map(cellId)).toEqual([expected.includes(u.id) ? cellId(h4) : before.get(u.id)]);
      const lines = readFileSync(join(at[0]!.dataDir, "users", u.id, "workspace", `${u.id}.log`), "utf8").trim().split("\n").map(Number);
      const tail = lines.filter((n) => n >= 10);
      expect(tail, u.id).toEqual(acked.get(u.id));
    }
    // No run was cancelled by a move (source cells' audit).
    for (const h of lab.hosts) {
      const text = existsSync(join(h.dataDir, "audit.log")) ? readFileSync(join(h.dataDir, "audit.log"), "utf8") : "";
      const cancelled = text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { kind?: string; canceled?: boolean; userId?: string }).filter((r) => r.kind === "run" && r.canceled && USERS.some((u) => u.id === r.userId));
      expect(cancelled, h.name).toEqual([]);
    }

    // Moves of bulk data, timed: 256 MiB of random bytes, then 10,000 small files.
    const target = cellId(lab.hosts[0]!) === home(BULK.id, cells()) ? cellId(lab.hosts[1]!) : cellId(lab.hosts[0]!);
    const wrote = await new UserClient(BULK).run(
      `import fs from "node:fs"; import crypto from "node:crypto"; const b = Buffer.alloc(8 << 20); const fd = fs.openSync("/workspace/random.bin", "w"); for (let i = 0; i < 32; i++) { crypto.randomFillSync(b); fs.writeSync(fd, b); } fs.closeSync(fd); console.log(fs.statSync("/workspace/random.bin").size)`,
    );
    expect(wrote.stdout.trim(), wrote.text).toBe(String(256 * 1024 * 1024));
    const many = await new UserClient(MANY).run(`import fs from "node:fs"; for (let d = 0; d < 100; d++) { fs.mkdirSync("/workspace/d" + d, { recursive: true }); for (let f = 0; f < 100; f++) fs.writeFileSync("/workspace/d" + d + "/f" + f + ".txt", "file " + d + "/" + f + "\\n"); } console.log("ok")`);
    expect(many.stdout.trim(), many.text).toBe("ok");
    const moveBulk = await cli("move", BULK.id, target);
    expect(moveBulk.code, moveBulk.out + moveBulk.err).toBe(0);
    const manyTarget = target === home(MANY.id, cells()) ? cellId(lab.hosts[2]!) : target;
    const moveMany = await cli("move", MANY.id, manyTarget);
    expect(moveMany.code, moveMany.out + moveMany.err).toBe(0);
    const rb = JSON.parse(moveBulk.out) as { report: { bytes: number; files: number; copyMs: number; totalMs: number } };
    const rm = JSON.parse(moveMany.out) as { report: { bytes: number; files: number; copyMs: number; totalMs: number } };
    figures.moves = {
      random256MiB: { ...rb.report, secondsPerGiB: Number(((rb.report.copyMs / 1000) * (1024 ** 3 / rb.report.bytes)).toFixed(1)) },
      smallFiles10000: rm.report,
    };
    expect(rm.report.files).toBe(10_000);
    const check = await new UserClient(BULK).run(`import fs from "node:fs"; console.log(fs.statSync("/workspace/random.bin").size)`);
    expect(check.stdout.trim()).toBe(String(256 * 1024 * 1024));

    // Drain the second cell: all its users move to their next home; then Swarm drains the node.
    const drainHost = lab.hosts[1]!;
    const onIt = (await status()).cells.find((c) => c.id === cellId(drainHost))!.users;
    const drained = await cli("drain", cellId(drainHost));
    expect(drained.code, drained.out + drained.err).toBe(0);
    const d = JSON.parse(drained.out) as { moves: unknown[]; left: string[] };
    expect(d.left).toEqual([]);
    expect(d.moves).toHaveLength(onIt);
    expect(existsSync(join(drainHost.dataDir, "users")) ? (await import("node:fs")).readdirSync(join(drainHost.dataDir, "users")) : []).toEqual([]);
    await lab.docker(lab.manager!, ["node", "update", "--availability", "drain", drainHost.hostname], { check: true });
    for (const u of USERS) {
      const r = await new UserClient(u).run(append(u, 1000));
      expect(r.kind, r.text).toBe("ok");
      expect(hostOf(u).map((h) => h.name)).not.toContain(drainHost.name);
    }
    figures.drain = { cell: cellId(drainHost), moved: onIt };
  }, 600_000);

  it("a rolling update of the router (stop-first, as the stack says) leaves users with their cells and files", async () => {
    const t0 = Date.now();
    await lab.docker(lab.manager!, ["service", "update", "--force", "--detach=false", `${STACK}_router`], { check: true, timeoutMs: 180_000 });
    // The drained cell's node is still labelled: the new router knows it should exist but cannot
    // read it, so it serves the users it knows and creates none (a new user could be that cell's).
    const seen = await waitFor("the new router serving", 120_000, async () => {
      const s = await status();
      return s.cells.filter((c) => c.up).length >= 3 ? s : undefined;
    });
    expect(seen.complete).toBe(false);
    const tasks = (await lab.docker(lab.manager!, ["service", "ps", "--format", "{{.DesiredState}} {{.CurrentState}}", `${STACK}_router`])).stdout.trim().split("\n");
    expect(tasks.filter((t) => t.startsWith("Running")).length).toBe(1);
    expect(tasks.filter((t) => t.startsWith("Shutdown")).length).toBeGreaterThanOrEqual(1);
    for (const u of USERS.slice(0, 5)) {
      const r = await new UserClient(u).run(append(u, 2000));
      expect(r.kind, r.text).toBe("ok");
      expect(r.stdout.split("\n")[0]!.endsWith(",1000,2000")).toBe(true);
    }
    figures.routerUpdateMs = Date.now() - t0;
    // Decommissioning the drained node (its label removed) makes the view complete again.
    await lab.docker(lab.manager!, ["node", "update", "--label-rm", "codebox.cell", lab.hosts[1]!.hostname], { check: true });
    await waitFor("a complete view without the decommissioned cell", 60_000, async () => ((await status()).complete ? true : undefined));
  }, 300_000);
});
