#!/usr/bin/env node
// npm run bench: latency, throughput, bridge round trips, token efficiency and memory of the
// built server on the local engine, each beside baselines measured in the same run. Writes
// docs/PERFORMANCE.md and bench-results/bench.json. Not part of CI (timings on shared machines
// are noisy; the ratios are what to read).
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { TOOL_LIST_BUDGET, bytes, realUpstreams, resultText, tokens } from "./tokens.mjs";

const execFileP = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;
const cli = join(root, "dist", "cli.js");
const rowsServer = join(root, "test", "fixtures", "rows-server.mjs");
const N = Number(process.env.BENCH_RUNS ?? 50);
const N_LANG = Number(process.env.BENCH_LANG_RUNS ?? 20);
const THROUGHPUT_SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const THINK_MS = 800;
const N_PATTERN = Number(process.env.BENCH_PATTERN_RUNS ?? 30);
const STARTUPS = Number(process.env.BENCH_STARTUPS ?? 10);
/** tools/list before issue 16 (main at 7d3a1fd, the four servers configured), counted the same way. */
const TOKENS_BEFORE = { tokens: 3779, bytes: 15343, tools: 9 };
const log = (m) => process.stderr.write(`bench: ${m}\n`);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};
const stats = (xs) => ({ n: xs.length, p50: round(pct(xs, 50)), p95: round(pct(xs, 95)), p99: round(pct(xs, 99)) });
const round = (x) => Math.round(x * 10) / 10;
/** a ÷ b to two decimals, for the ratio columns. */
const ratio = (a, b) => Math.round((a / b) * 100) / 100;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid) {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    return round(kb / 1024);
  } catch {
    return NaN;
  }
}

/** Shipped pool defaults unless told otherwise; limits raised so a burst of 8 from one client is not queued by them. */
async function startServer(dataDir, runtime, pool = {}, sandbox = {}) {
  const config = join(dataDir, `config-${runtime}-${JSON.stringify([pool, sandbox]).replace(/\W/g, "")}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      sandbox: { ociRuntime: runtime, runtimes: ["node", "bun", "python"], pool: { idleMs: 600_000, ...pool }, ...sandbox },
      limits: { maxConcurrentRuns: 16, maxRunsPerUser: 16, maxQueuedRuns: 256 },
      mcpServers: { rows: { command: process.execPath, args: [rowsServer] } },
    }),
  );
  const spawnedAt = performance.now();
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, "--config", config],
    env: { PATH: process.env.PATH, HOME: process.env.HOME ?? "/root", CODEBOX_DATA_DIR: join(dataDir, "data"), CODEBOX_LOG_LEVEL: "warn" },
    stderr: "pipe",
  });
  transport.stderr?.on("data", () => {});
  const client = new Client({ name: "bench", version: "1" });
  await client.connect(transport);
  const initializedMs = performance.now() - spawnedAt;
  return { client, pid: transport.pid, spawnedAt, initializedMs, close: () => client.close() };
}

/** The trivial program each language runtime runs for the latency figures. */
const HELLO = {
  node: { code: "console.log(1)", language: "javascript" },
  bun: { code: "console.log(1)", language: "javascript", runtime: "bun" },
  python: { code: "print(1)", language: "python" },
};

async function timedRun(client, code = "console.log(1)", target = HELLO.node) {
  const t = performance.now();
  const r = await client.callTool({ name: "execute_code", arguments: { ...target, code } }, undefined, { timeout: 120_000 });
  const ms = performance.now() - t;
  const ok = !r.isError && r.structuredContent?.exitCode === 0;
  return { ms, ok, r };
}

/** Run records the server audited since `from` (a byte offset of the audit log): how many were warm. */
function auditedRuns(dataDir, from) {
  const file = join(dataDir, "data", "audit.log");
  let text = "";
  try {
    text = readFileSync(file).subarray(from).toString("utf8");
  } catch {
    return { runs: 0, warm: 0 };
  }
  const runs = text.split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.kind === "run");
  return { runs: runs.length, warm: runs.filter((r) => r.warm).length };
}

function auditSize(dataDir) {
  try {
    return readFileSync(join(dataDir, "data", "audit.log")).length;
  } catch {
    return 0;
  }
}

/**
 * How agents call, on one server: (a) one call at a time with think time, (b) back to back,
 * (c) bursts of 3 and of 8 parallel calls (wall time per burst, think time between bursts).
 * Each reports p50/p95 and the share of runs that found a warm container (from the audit log).
 */
async function callPatterns(client, dataDir, label, target) {
  const out = {};
  await timedRun(client, target.code, target); // first call: image, bridge and user dirs ready
  await sleep(THINK_MS * 3);
  const measure = async (kind, fn) => {
    const from = auditSize(dataDir);
    const xs = [];
    let errors = 0;
    await fn(xs, () => errors++);
    const a = auditedRuns(dataDir, from);
    out[kind] = { ...stats(xs), errors, warmShare: a.runs ? round(a.warm / a.runs) : NaN };
    log(`${label} ${kind}: p50 ${out[kind].p50} ms, p95 ${out[kind].p95}, warm ${out[kind].warmShare}`);
    await sleep(THINK_MS * 3);
  };
  await measure("think", async (xs, err) => {
    for (let i = 0; i < N_PATTERN; i++) {
      const { ms, ok } = await timedRun(client, target.code, target);
      if (ok) xs.push(ms);
      else err();
      await sleep(THINK_MS);
    }
  });
  await measure("backToBack", async (xs, err) => {
    for (let i = 0; i < 20; i++) {
      const { ms, ok } = await timedRun(client, target.code, target);
      if (ok) xs.push(ms);
      else err();
    }
  });
  for (const size of [3, 8]) {
    await measure(`burst${size}`, async (xs, err) => {
      for (let b = 0; b < (size === 3 ? 10 : 6); b++) {
        const t = performance.now();
        const rs = await Promise.all(Array.from({ length: size }, () => timedRun(client, target.code, target)));
        xs.push(performance.now() - t);
        for (const r of rs) if (!r.ok) err();
        await sleep(THINK_MS);
      }
    });
  }
  return out;
}

async function latency(client, label, target = HELLO.node, n = N) {
  const xs = [];
  let errors = 0;
  await timedRun(client, target.code, target); // first call: image, bridge and user dirs ready
  await sleep(THINK_MS * 2);
  for (let i = 0; i < n; i++) {
    const { ms, ok } = await timedRun(client, target.code, target);
    if (ok) xs.push(ms);
    else errors++;
    await sleep(THINK_MS); // an agent's think time between calls
  }
  log(`${label}: p50 ${round(pct(xs, 50))} ms`);
  return { ...stats(xs), errors };
}

async function throughput(client, pid, concurrency) {
  const deadline = Date.now() + THROUGHPUT_SECONDS * 1000;
  let done = 0;
  let errors = 0;
  let maxRss = rssMb(pid);
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssMb(pid))), 200);
  const worker = async () => {
    while (Date.now() < deadline) {
      try {
        const { ok } = await timedRun(client);
        if (ok) done++;
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  const t = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(sampler);
  const seconds = (performance.now() - t) / 1000;
  log(`throughput c=${concurrency}: ${round(done / seconds)} runs/s, ${errors} errors`);
  return { concurrency, runsPerSecond: round(done / seconds), runs: done, errors, maxServerRssMb: maxRss };
}

/** Spawn → `initialize` answered, and spawn → first execute_code result, over stdio (a client launching the server). */
async function startup(dataDir, runtime) {
  const init = [];
  const first = [];
  for (let i = 0; i < STARTUPS; i++) {
    const s = await startServer(dataDir, runtime);
    init.push(s.initializedMs);
    const { ok } = await timedRun(s.client);
    if (ok) first.push(performance.now() - s.spawnedAt);
    await s.close();
    await sleep(1500);
  }
  log(`${runtime} start-up: initialize p50 ${round(pct(init, 50))} ms, first result p50 ${round(pct(first, 50))} ms`);
  return { initialize: stats(init), firstResult: stats(first) };
}

async function hostNode() {
  const xs = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await execFileP(process.execPath, ["-e", "0"]);
    xs.push(performance.now() - t);
  }
  return stats(xs);
}

/** Each language runtime's own start-up, as its image's entrypoint would run it. */
const BARE = {
  node: ["/usr/local/bin/node", "-e", "0"],
  bun: ["/usr/local/bin/bun", "-e", "0"],
  python: ["/usr/bin/python3", "-c", "pass"],
};

async function dockerRun(image, runtime, dataDir, argv = BARE.node, n = 20) {
  // The same seccomp profile our containers get (under runsc the engine's default one cannot start
  // Node's threads: gVisor ignores its clone3 errnoRet).
  const { loadSeccompProfile } = await import(join(root, "dist", "sandbox", "docker", "seccomp.js"));
  const profile = join(dataDir, `seccomp-${runtime}.json`);
  writeFileSync(profile, loadSeccompProfile(join(root, "seccomp", "profile.json"), runtime));
  const xs = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await execFileP("docker", ["run", "--rm", "--network", "none", "--runtime", runtime, "--security-opt", `seccomp=${profile}`, "--entrypoint", argv[0], image, ...argv.slice(1)]);
    xs.push(performance.now() - t);
  }
  return stats(xs);
}

async function bridgeRoundTrip(client) {
  const code = `
    import { echo } from "/servers/rows/index.ts";
    await echo({ message: "warm-up" });
    const xs = [];
    for (let i = 0; i < 200; i++) { const t = performance.now(); await echo({ message: "x" }); xs.push(performance.now() - t); }
    xs.sort((a, b) => a - b);
    console.log(JSON.stringify({ p50: xs[99], p95: xs[189] }));`;
  const r = await client.callTool({ name: "execute_code", arguments: { code } }, undefined, { timeout: 120_000 });
  const inSandbox = JSON.parse(r.structuredContent.stdout);
  const direct = new Client({ name: "direct", version: "1" });
  await direct.connect(new StdioClientTransport({ command: process.execPath, args: [rowsServer], stderr: "pipe" }));
  await direct.callTool({ name: "echo", arguments: { message: "warm-up" } });
  const xs = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await direct.callTool({ name: "echo", arguments: { message: "x" } });
    xs.push(performance.now() - t);
  }
  await direct.close();
  return { sandbox: { p50: round(inSandbox.p50), p95: round(inSandbox.p95) }, direct: { p50: round(pct(xs, 50)), p95: round(pct(xs, 95)) } };
}

async function tokenEfficiency(client) {
  const viaCode = await client.callTool({
    name: "execute_code",
    arguments: {
      code: `import { listRows } from "/servers/rows/index.ts"; const { rows } = await listRows({}); console.log(JSON.stringify(rows.filter((r) => r.region === "north").sort((a, b) => b.amount - a.amount).slice(0, 5)));`,
    },
  });
  const direct = new Client({ name: "direct", version: "1" });
  await direct.connect(new StdioClientTransport({ command: process.execPath, args: [rowsServer], stderr: "pipe" }));
  const d = await direct.callTool({ name: "list_rows", arguments: {} });
  await direct.close();
  const bytesDirect = Buffer.byteLength(JSON.stringify(d));
  const bytesViaCode = Buffer.byteLength(JSON.stringify(viaCode));
  return { bytesDirect, bytesViaCode, ratio: round(bytesDirect / bytesViaCode) };
}

/** Tokens and bytes of a value, for the token tables. */
const cost = (value) => ({ tokens: tokens(value), bytes: bytes(value) });

/** A stdio client of `command`, listing its tools (every page). */
async function listToolsOf(command, args = [], env = {}) {
  const c = new Client({ name: "bench-tokens", version: "1" });
  await c.connect(new StdioClientTransport({ command, args, env: { PATH: process.env.PATH, HOME: process.env.HOME ?? "/root", ...env }, stderr: "ignore" }));
  try {
    const all = [];
    let cursor;
    do {
      const page = await c.listTools(cursor ? { cursor } : {});
      all.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
    return all;
  } finally {
    await c.close();
  }
}

/**
 * The fixed cost (tools/list) of our server beside the direct definitions of the same upstream
 * servers, and what typical results cost: all in tokens (bench/tokens.mjs) and bytes.
 */
async function tokenBudget(dataDir) {
  const scratch = join(dataDir, "tokens");
  mkdirSync(scratch, { recursive: true });
  const { four, all } = realUpstreams(root, scratch);
  const direct = {};
  for (const [name, spec] of Object.entries(all)) {
    const list = await listToolsOf(spec.command, spec.args, spec.env);
    direct[name] = { tools: list.length, ...cost(list) };
  }
  const sum = (names) => names.reduce((a, n) => ({ tools: a.tools + direct[n].tools, tokens: a.tokens + direct[n].tokens, bytes: a.bytes + direct[n].bytes }), { tools: 0, tokens: 0, bytes: 0 });
  const ours = {};
  let results;
  for (const [label, servers] of [["none", {}], ["four", four], ["all", all]]) {
    const config = join(scratch, `config-${label}.json`);
    writeFileSync(config, JSON.stringify({ mcpServers: servers, sandbox: { pool: { size: 0 } } }));
    const client = new Client({ name: "bench-tokens", version: "1" });
    await client.connect(
      new StdioClientTransport({ command: process.execPath, args: [cli, "--config", config], env: { PATH: process.env.PATH, HOME: process.env.HOME ?? "/root", CODEBOX_DATA_DIR: join(dataDir, "data"), CODEBOX_LOG_LEVEL: "warn" }, stderr: "ignore" }),
    );
    try {
      const { tools } = await client.listTools();
      ours[label] = { tools: tools.length, names: tools.map((t) => t.name), ...cost(tools), perTool: Object.fromEntries(tools.map((t) => [t.name, tokens(t)])) };
      if (label === "four") {
        const call = async (name, args) => {
          const r = await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 });
          return { text: cost(resultText(r)), whole: cost(r) };
        };
        results = {
          smallRun: await call("execute_code", { code: "console.log(1)" }),
          error: await call("execute_code", { code: 'const x = JSON.parse("{oops"); console.log(x)' }),
          truncated: await call("execute_code", { code: 'for (let i = 0; i < 20000; i++) console.log(i, "a line of output that goes on a while")' }),
          searchName: await call("search_tools", { query: "create entities", server: "memory", detail: "name", limit: 1 }),
          searchSummary: await call("search_tools", { query: "create entities", server: "memory", detail: "summary", limit: 1 }),
          searchFull: await call("search_tools", { query: "create entities", server: "memory", detail: "full", limit: 1 }),
        };
      }
    } finally {
      await client.close();
    }
  }
  return { tokenizer: "o200k_base (gpt-tokenizer)", budget: TOOL_LIST_BUDGET, direct, directFour: sum(Object.keys(four)), directAll: sum(Object.keys(all)), ours, results };
}

async function hostPython() {
  const xs = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await execFileP("/usr/bin/python3", ["-c", "pass"]);
    xs.push(performance.now() - t);
  }
  return stats(xs);
}

/**
 * The floor under callMCPTool: a bare Node HTTP server on a unix socket and a keep-alive client in
 * a container of our Node image with the standard profile's CPU quota. No token, no upstream: the
 * cost of the hop alone.
 */
async function bridgeFloor(image, runtime, dataDir) {
  const { createServer } = await import("node:http");
  const dir = mkdtempSync(join(dataDir, "floor-"));
  execFileSync("chmod", ["0777", dir]);
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => res.end(JSON.stringify({ content: [{ type: "text", text: "x" }] })));
  });
  await new Promise((r) => server.listen(join(dir, "s.sock"), r));
  execFileSync("chmod", ["0666", join(dir, "s.sock")]);
  const code = `const http = require("node:http"); const agent = new http.Agent({ keepAlive: true });
    const call = () => new Promise((res, rej) => { const req = http.request({ socketPath: "/floor/s.sock", path: "/", method: "POST", agent, headers: { "content-type": "application/json" } }, (r) => { r.resume(); r.on("end", res); }); req.on("error", rej); req.end('{"server":"rows","tool":"echo","arguments":{"message":"x"}}'); });
    (async () => { await call(); const xs = []; for (let i = 0; i < 200; i++) { const t = performance.now(); await call(); xs.push(performance.now() - t); } xs.sort((a, b) => a - b); console.log(JSON.stringify({ p50: xs[99], p95: xs[189] })); })();`;
  try {
    // Our seccomp profile, as dockerRun uses: under runsc the engine's default one cannot start Node's threads.
    const profile = join(dataDir, `seccomp-${runtime}.json`);
    const { stdout } = await execFileP("docker", ["run", "--rm", "--network", "none", "--runtime", runtime, "--security-opt", `seccomp=${profile}`, "--cpus", "0.5", "--user", "65534:65534", "-v", `${dir}:/floor`, "--entrypoint", "/usr/local/bin/node", image, "-e", code]);
    const r = JSON.parse(stdout);
    return { p50: round(r.p50), p95: round(r.p95) };
  } finally {
    server.close();
  }
}

/** Every figure of one OCI runtime: baselines, call patterns per language, cold, throughput, bridge, start-up. */
async function benchRuntime(runtime, images, dataDir) {
  log(`runtime ${runtime}`);
  const out = { runtime, languages: {} };
  for (const lang of Object.keys(HELLO)) {
    out.languages[lang] = { dockerRunRm: await dockerRun(images[lang], runtime, dataDir, BARE[lang], 20) };
    log(`${runtime} ${lang}: docker run --rm p50 ${out.languages[lang].dockerRunRm.p50} ms`);
  }
  const cold = await startServer(dataDir, runtime, { size: 0 });
  for (const lang of Object.keys(HELLO)) out.languages[lang].cold = await latency(cold.client, `${runtime} ${lang} cold`, HELLO[lang], N_LANG);
  await cold.close();
  for (const lang of Object.keys(HELLO)) {
    // A fresh server per language: each starts from the pool's resting size.
    const s = await startServer(dataDir, runtime);
    out.languages[lang].patterns = await callPatterns(s.client, dataDir, `${runtime} ${lang}`, HELLO[lang]);
    await s.close();
  }
  const warm = await startServer(dataDir, runtime);
  await sleep(3000);
  out.idleServerRssMb = rssMb(warm.pid);
  out.throughput = [];
  for (const c of [1, 4, 8]) out.throughput.push(await throughput(warm.client, warm.pid, c));
  out.bridge = await bridgeRoundTrip(warm.client);
  out.bridge.floor = await bridgeFloor(images.node, runtime, dataDir).catch((err) => ({ p50: NaN, p95: NaN, error: String(err.message).slice(0, 300) }));
  log(`${runtime} callMCPTool p50 ${out.bridge.sandbox.p50} ms, direct ${out.bridge.direct.p50}, bare HTTP hop ${out.bridge.floor.p50}`);
  out.tokenEfficiency = await tokenEfficiency(warm.client);
  await warm.close();
  out.startup = await startup(dataDir, runtime);
  return out;
}

const PANDAS_IMPORT = { language: "python", code: "import time\nt = time.perf_counter()\nimport pandas\nprint(round((time.perf_counter() - t) * 1000, 1))" };

/**
 * The Python images side by side (runc): the data stack's size, cold start, warm `print(1)` and
 * `import pandas` (inside the code, and the whole call) beside the stdlib-only image.
 */
async function benchPythonImages(dataDir) {
  const out = {};
  for (const variant of ["stdlib", "data"]) {
    log(`python image: ${variant}`);
    execFileSync(process.execPath, [cli, "image", "build", "python"], { stdio: "ignore", env: { ...process.env, CODEBOX_DATA_DIR: join(dataDir, "data"), CODEBOX_PYTHON_PACKAGES: variant } });
    const { defaultImageTag } = await import(join(root, "dist", "sandbox", "docker", "image-builder.js"));
    const tag = defaultImageTag("python", variant);
    const bytes = Number(execFileSync("docker", ["image", "inspect", "--format", "{{.Size}}", tag], { encoding: "utf8" }).trim());
    const m = { tag, sizeMb: round(bytes / 1024 / 1024), dockerRunRm: await dockerRun(tag, "runc", dataDir, BARE.python, 20) };
    const cold = await startServer(dataDir, "runc", { size: 0 }, { pythonPackages: variant });
    m.cold = await latency(cold.client, `python ${variant} cold`, HELLO.python, N_LANG);
    await cold.close();
    const warm = await startServer(dataDir, "runc", {}, { pythonPackages: variant });
    m.warm = await latency(warm.client, `python ${variant} warm`, HELLO.python, N_LANG);
    if (variant === "data") {
      const inCode = [];
      const calls = [];
      for (let i = 0; i < 10; i++) {
        const { ms, ok, r } = await timedRun(warm.client, PANDAS_IMPORT.code, PANDAS_IMPORT);
        if (ok) {
          calls.push(ms);
          inCode.push(Number(r.structuredContent.stdout));
        }
        await sleep(THINK_MS);
      }
      m.importPandas = { inCode: stats(inCode), call: stats(calls) };
      log(`python data: import pandas p50 ${m.importPandas.inCode.p50} ms in the code, ${m.importPandas.call.p50} ms the call`);
    }
    await warm.close();
    out[variant] = m;
  }
  return out;
}

function renderPythonImages(p) {
  if (!p) return [];
  if (p.error) return ["## Python images", "", `The bench failed here: ${p.error}`, ""];
  const lines = ["## Python images (runc)", ""];
  if (p.measuredAt) lines.push(`Measured on ${p.measuredAt}.`, "");
  lines.push(
    "The data image (`sandbox.pythonPackages` \"data\", the default: numpy, pandas, matplotlib, scipy, openpyxl, Pillow) beside the standard-library image (\"stdlib\"). `print(1)` through execute_code, cold (pool off) and warm (800 ms think time); `import pandas` timed inside the code and as the whole call, warm.",
    "",
    "| image | size MB | `docker run --rm` p50 | cold `print(1)` p50 / p95 | warm `print(1)` p50 / p95 | `import pandas` in the code p50 / p95 | call with `import pandas` p50 / p95 |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const [variant, m] of Object.entries(p).filter(([k]) => k !== "measuredAt")) {
    const ip = m.importPandas;
    lines.push(`| ${variant} | ${m.sizeMb} | ${m.dockerRunRm.p50} | ${m.cold.p50} / ${m.cold.p95} | ${m.warm.p50} / ${m.warm.p95} | ${ip ? `${ip.inCode.p50} / ${ip.inCode.p95}` : "— (not installed)"} | ${ip ? `${ip.call.p50} / ${ip.call.p95}` : "—"} |`);
  }
  if (p.data && p.stdlib) {
    lines.push("", `Ratios, data ÷ stdlib: size ${ratio(p.data.sizeMb, p.stdlib.sizeMb)}, cold ${ratio(p.data.cold.p50, p.stdlib.cold.p50)}, warm ${ratio(p.data.warm.p50, p.stdlib.warm.p50)}.`);
  }
  lines.push("");
  return lines;
}

function renderTokens(t) {
  if (!t) return [];
  if (t.error) return ["## Token budget", "", `The token bench failed: ${t.error}`, ""];
  const lines = ["## Token budget", ""];
  const pctSaved = (ours, direct) => `${Math.round((1 - ours / direct) * 1000) / 10} %`;
  lines.push(
    `What the model pays before any code runs: the \`tools\` of \`tools/list\` as compact JSON, counted with ${t.tokenizer}${t.measuredAt ? ` (measured ${t.measuredAt})` : ""}. ` +
      "Direct: the same upstream servers' own tool lists, as a client connected to each would load them. Budget: " +
      `${t.budget} tokens in any configuration, held by test/unit/token-budget.test.ts and test/e2e/agent.test.ts.`,
    "",
  );
  lines.push("| configuration | upstream tools | direct definitions tokens (bytes) | our tools/list tokens (bytes) | our tools | saving |", "| --- | --- | --- | --- | --- | --- |");
  const o = t.ours;
  lines.push(`| no upstream servers | 0 | - | ${o.none.tokens} (${o.none.bytes}) | ${o.none.names.join(", ")} | - |`);
  lines.push(`| the four servers of issue 16 (everything, memory, filesystem, sequential-thinking) | ${t.directFour.tools} | ${t.directFour.tokens} (${t.directFour.bytes}) | ${o.four.tokens} (${o.four.bytes}) | ${o.four.tools} | ${pctSaved(o.four.tokens, t.directFour.tokens)} |`);
  lines.push(`| those plus github, playwright, notion | ${t.directAll.tools} | ${t.directAll.tokens} (${t.directAll.bytes}) | ${o.all.tokens} (${o.all.bytes}) | ${o.all.tools} | ${pctSaved(o.all.tokens, t.directAll.tokens)} |`);
  lines.push("");
  lines.push(`Per server, direct: ${Object.entries(t.direct).map(([n, d]) => `${n} ${d.tools} tools ${d.tokens} tokens`).join("; ")}. Ours per tool (four servers): ${Object.entries(o.four.perTool).map(([n, k]) => `${n} ${k}`).join(", ")}.`, "");
  if (t.before) lines.push(`Before issue 16 (same four servers, same tokenizer): ${t.before.tokens} tokens (${t.before.bytes} bytes) for ${t.before.tools} tools.`, "");
  const r = t.results;
  if (r) {
    lines.push("| result | text the model reads, tokens (bytes) | whole result with structuredContent, tokens (bytes) |", "| --- | --- | --- |");
    const row = (name, x) => lines.push(`| ${name} | ${x.text.tokens} (${x.text.bytes}) | ${x.whole.tokens} (${x.whole.bytes}) |`);
    row("small run (`console.log(1)`)", r.smallRun);
    row("an error (JSON.parse throws)", r.error);
    row("a truncated run (20,000 lines printed)", r.truncated);
    row('search_tools hit, detail "name"', r.searchName);
    row('search_tools hit, detail "summary"', r.searchSummary);
    row('search_tools hit, detail "full"', r.searchFull);
    lines.push("");
  }
  return lines;
}

function render(result) {
  const lines = [];
  const mark = (ok) => (ok ? "met" : "**missed**");
  const node0 = result.hostNode.p50;
  lines.push("# Performance", "");
  lines.push(`Measured by \`npm run bench\` on ${result.date}: ${result.cores} cores, Node ${result.node}, Docker ${result.docker}. Each figure sits beside its baseline from the same run; read the ratios, not the milliseconds (shared machines are noisy).`, "");
  lines.push(
    `Method: \`execute_code\` of a one-line print (\`console.log(1)\` / \`print(1)\`) end-to-end through the SDK Client over stdio, on the shipped pool settings (\`sandbox.pool.size\` 1, \`maxSize\` 4; run limits raised to 16 so a burst of 8 is not queued by them). ` +
      `Call patterns: **think**: ${N_PATTERN} calls ${THINK_MS} ms apart (an agent's think time); **back to back**: 20 calls, each sent when the last answered; **burst 3 / burst 8**: 10 / 6 bursts of that many parallel calls, ${THINK_MS} ms apart, timed per burst (wall time). ` +
      `"warm" is the share of runs that got a container started ahead of time (ready, or taken over while starting), from the audit log. Cold: \`sandbox.pool.size\` 0, ${N_LANG} calls. Baselines: host \`node -e 0\` p50 ${node0} ms, host \`python3 -c pass\` p50 ${result.hostPython.p50} ms, and \`docker run --rm\` of the same image running the bare interpreter with our seccomp profile.`,
    "",
  );
  for (const r of result.runtimes) {
    if (r.error) {
      lines.push(`## ${r.runtime}`, "", `The bench failed on this runtime: ${r.error}`, "");
      continue;
    }
    const nodeDr = r.languages.node.dockerRunRm.p50;
    lines.push(`## ${r.runtime}`, "");
    // A section kept from an earlier full run (a run of one runtime with BENCH_RUNTIMES merges into it).
    if (r.measuredAt) lines.push(`These figures are from the full run of ${r.measuredAt} (host \`node -e 0\` p50 ${r.hostNodeThen?.p50} ms then); their ratios use that run's baselines.`, "");
    lines.push("| language | `docker run --rm` p50 | cold p50 / p95 | think p50 / p95 (warm) | back to back p50 / p95 (warm) | burst 3 wall p50 / p95 (warm) | burst 8 wall p50 / p95 (warm) |");
    lines.push("| --- | --- | --- | --- | --- | --- | --- |");
    for (const [lang, m] of Object.entries(r.languages)) {
      const p = m.patterns;
      const cell = (x) => `${x.p50} / ${x.p95} (${x.warmShare})${x.errors ? `, ${x.errors} errors` : ""}`;
      lines.push(`| ${lang} | ${m.dockerRunRm.p50} | ${m.cold.p50} / ${m.cold.p95}${m.cold.errors ? `, ${m.cold.errors} errors` : ""} | ${cell(p.think)} | ${cell(p.backToBack)} | ${cell(p.burst3)} | ${cell(p.burst8)} |`);
    }
    lines.push("");
    lines.push("| concurrency | runs/s | errors | server RSS max MB |", "| --- | --- | --- | --- |");
    for (const t of r.throughput) lines.push(`| ${t.concurrency} | ${t.runsPerSecond} | ${t.errors} | ${t.maxServerRssMb} |`);
    lines.push("");
    const n = r.languages.node;
    const t4 = r.throughput.find((t) => t.concurrency === 4);
    const rows = [];
    if (r.runtime === "runc") {
      rows.push(["warm p50 with 800 ms think time ≤ 0.25 × host `node -e 0`", `${n.patterns.think.p50} ms vs ${node0} ms`, ratio(n.patterns.think.p50, node0), n.patterns.think.p50 <= 0.25 * node0]);
      rows.push(["back-to-back p50 ≤ 0.5 × `docker run --rm`", `${n.patterns.backToBack.p50} ms vs ${nodeDr} ms`, ratio(n.patterns.backToBack.p50, nodeDr), n.patterns.backToBack.p50 <= 0.5 * nodeDr]);
      rows.push(["burst of 3, wall time ≤ 1.0 × one `docker run --rm`", `${n.patterns.burst3.p50} ms vs ${nodeDr} ms`, ratio(n.patterns.burst3.p50, nodeDr), n.patterns.burst3.p50 <= nodeDr]);
      rows.push(["Node cold p50 ≤ 0.5 × `docker run --rm`", `${n.cold.p50} ms vs ${nodeDr} ms`, ratio(n.cold.p50, nodeDr), n.cold.p50 <= 0.5 * nodeDr]);
      rows.push(["throughput at 4 ≥ 2 × (1 / `docker run --rm`)", `${t4.runsPerSecond} runs/s vs ${round(2000 / nodeDr)}`, ratio(t4.runsPerSecond, 2000 / nodeDr), t4.runsPerSecond >= 2000 / nodeDr]);
      rows.push(["callMCPTool p50 ≤ 1.5 × direct SDK client call", `${r.bridge.sandbox.p50} ms vs ${r.bridge.direct.p50} ms (p95 ${r.bridge.sandbox.p95} vs ${r.bridge.direct.p95}; a bare HTTP hop from a container: ${r.bridge.floor.p50} ms)`, ratio(r.bridge.sandbox.p50, r.bridge.direct.p50), r.bridge.sandbox.p50 <= 1.5 * r.bridge.direct.p50]);
      rows.push(["spawn → `initialize` answered (stdio) ≤ 2 × host `node -e 0`", `${r.startup.initialize.p50} ms vs ${node0} ms`, ratio(r.startup.initialize.p50, node0), r.startup.initialize.p50 <= 2 * node0]);
      rows.push(["spawn → first `execute_code` result ≤ 1.0 × one `docker run --rm`", `${r.startup.firstResult.p50} ms vs ${nodeDr} ms`, ratio(r.startup.firstResult.p50, nodeDr), r.startup.firstResult.p50 <= nodeDr]);
      rows.push(["idle server RSS ≤ 100 MB", `${r.idleServerRssMb} MB`, "", r.idleServerRssMb <= 100]);
    } else {
      rows.push(["runsc warm p50 with 800 ms think time ≤ 0.5 × `docker run --rm` under runsc", `${n.patterns.think.p50} ms vs ${nodeDr} ms`, ratio(n.patterns.think.p50, nodeDr), n.patterns.think.p50 <= 0.5 * nodeDr]);
      rows.push(["(same figures as runc, for reference) back to back ÷ `docker run --rm`", `${n.patterns.backToBack.p50} ms vs ${nodeDr} ms`, ratio(n.patterns.backToBack.p50, nodeDr), undefined]);
      rows.push(["burst of 3 ÷ one `docker run --rm`", `${n.patterns.burst3.p50} ms vs ${nodeDr} ms`, ratio(n.patterns.burst3.p50, nodeDr), undefined]);
      rows.push(["Node cold ÷ `docker run --rm`", `${n.cold.p50} ms vs ${nodeDr} ms`, ratio(n.cold.p50, nodeDr), undefined]);
      rows.push(["callMCPTool ÷ direct", `${r.bridge.sandbox.p50} ms vs ${r.bridge.direct.p50} ms (bare HTTP hop ${r.bridge.floor.p50} ms)`, ratio(r.bridge.sandbox.p50, r.bridge.direct.p50), undefined]);
      rows.push(["idle server RSS ≤ 100 MB", `${r.idleServerRssMb} MB`, "", r.idleServerRssMb <= 100]);
    }
    lines.push("| target | figure | ratio | |", "| --- | --- | --- | --- |");
    for (const [name, fig, rat, ok] of rows) lines.push(`| ${name} | ${fig} | ${rat} | ${ok === undefined ? "" : mark(ok)} |`);
    lines.push("");
    lines.push(`Start-up over stdio (${STARTUPS} launches): spawn → \`initialize\` answered p50 ${r.startup.initialize.p50} / p95 ${r.startup.initialize.p95} ms; spawn → first \`execute_code\` result p50 ${r.startup.firstResult.p50} / p95 ${r.startup.firstResult.p95} ms.`, "");
    lines.push(`Token efficiency (10,000 rows filtered to 5 in the sandbox): ${r.tokenEfficiency.bytesViaCode} bytes reach the client instead of ${r.tokenEfficiency.bytesDirect} from a direct tool call: ${r.tokenEfficiency.ratio} × fewer.`, "");
  }
  lines.push(...renderTokens(result.tokens));
  lines.push(...renderPythonImages(result.pythonImages));
  lines.push(result.notes ?? "");
  return `${lines.join("\n")}\n`;
}

if (process.argv.includes("--render")) {
  // Re-render docs/PERFORMANCE.md from the last results (e.g. after editing bench/NOTES.md).
  const result = JSON.parse(readFileSync(join(root, "bench-results", "bench.json"), "utf8"));
  result.notes = readFileSync(join(root, "bench", "NOTES.md"), "utf8");
  writeFileSync(join(root, "docs", "PERFORMANCE.md"), render(result));
  process.exit(0);
}

const dataDir = mkdtempSync(join(tmpdir(), "codebox-bench-"));
try {
  if (process.env.BENCH_ONLY === "tokens") {
    // Only the token figures, merged into the last full results.
    const file = join(root, "bench-results", "bench.json");
    const result = JSON.parse(readFileSync(file, "utf8"));
    result.tokens = { ...(await tokenBudget(dataDir)), measuredAt: new Date().toISOString(), before: result.tokens?.before ?? TOKENS_BEFORE };
    result.notes = readFileSync(join(root, "bench", "NOTES.md"), "utf8");
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(join(root, "docs", "PERFORMANCE.md"), render(result));
    log("merged the token figures into bench-results/bench.json and docs/PERFORMANCE.md");
  } else if (process.env.BENCH_ONLY === "python-images") {
    // Only the Python images, merged into the last full results.
    const file = join(root, "bench-results", "bench.json");
    const result = JSON.parse(readFileSync(file, "utf8"));
    result.pythonImages = { ...(await benchPythonImages(dataDir)), measuredAt: new Date().toISOString() };
    result.notes = readFileSync(join(root, "bench", "NOTES.md"), "utf8");
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(join(root, "docs", "PERFORMANCE.md"), render(result));
    log("merged the Python images into bench-results/bench.json and docs/PERFORMANCE.md");
  } else {
    execFileSync(process.execPath, [cli, "image", "build", "all"], { stdio: "ignore", env: { ...process.env, CODEBOX_DATA_DIR: join(dataDir, "data") } });
    const { defaultImageTag } = await import(join(root, "dist", "sandbox", "docker", "image-builder.js"));
    const images = { node: defaultImageTag("node"), bun: defaultImageTag("bun"), python: defaultImageTag("python") };
    const runtimes = (process.env.BENCH_RUNTIMES ?? "runc,runsc").split(",");
    const info = JSON.parse(execFileSync("docker", ["info", "--format", "{{json .}}"], { encoding: "utf8" }));
    const result = { date: new Date().toISOString(), cores: cpus().length, node: process.version, docker: info.ServerVersion, images, hostNode: await hostNode(), hostPython: await hostPython(), runtimes: [] };
    log(`host node -e 0: p50 ${result.hostNode.p50} ms; host python3 -c pass: p50 ${result.hostPython.p50} ms`);
    for (const rt of runtimes) {
      if (rt === "runsc" && !Object.keys(info.Runtimes ?? {}).includes("runsc")) {
        log("runsc not registered: skipped (run scripts/setup.sh)");
        continue;
      }
      try {
        result.runtimes.push(await benchRuntime(rt, images, dataDir));
      } catch (err) {
        // One runtime's failure must not lose the others' figures.
        log(`${rt} failed: ${err.stack ?? err}`);
        result.runtimes.push({ runtime: rt, error: String(err.message ?? err).slice(0, 500) });
      }
    }
    try {
      result.tokens = { ...(await tokenBudget(dataDir)), before: TOKENS_BEFORE };
    } catch (err) {
      log(`tokens failed: ${err.stack ?? err}`);
      result.tokens = { error: String(err.message ?? err).slice(0, 500) };
    }
    if (runtimes.includes("runc")) {
      try {
        result.pythonImages = await benchPythonImages(dataDir);
      } catch (err) {
        log(`python images failed: ${err.stack ?? err}`);
        result.pythonImages = { error: String(err.message ?? err).slice(0, 500) };
      }
    }
    const notesFile = join(root, "bench", "NOTES.md");
    try {
      result.notes = readFileSync(notesFile, "utf8");
    } catch {
      result.notes = "";
    }
    mkdirSync(join(root, "bench-results"), { recursive: true });
    writeFileSync(join(root, "bench-results", "bench.json"), `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(join(root, "docs", "PERFORMANCE.md"), render(result));
    log("wrote docs/PERFORMANCE.md and bench-results/bench.json");
  }
} finally {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const m = line.split(" ")[4];
    if (m?.startsWith(dataDir)) execFileSync("umount", ["-l", m]);
  }
  rmSync(dataDir, { recursive: true, force: true });
}
