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

const execFileP = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;
const cli = join(root, "dist", "cli.js");
const rowsServer = join(root, "test", "fixtures", "rows-server.mjs");
const N = Number(process.env.BENCH_RUNS ?? 50);
const N_LANG = Number(process.env.BENCH_LANG_RUNS ?? 20);
const THROUGHPUT_SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const THINK_MS = 800;
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

async function startServer(dataDir, runtime, poolSize) {
  const config = join(dataDir, `config-${runtime}-${poolSize}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      sandbox: { ociRuntime: runtime, pool: { size: poolSize, maxTotal: 16, idleMs: 600_000 } },
      limits: { maxConcurrentRuns: 16, maxRunsPerUser: 16, maxQueuedRuns: 256 },
      mcpServers: { rows: { command: process.execPath, args: [rowsServer] } },
    }),
  );
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, "--config", config],
    env: { PATH: process.env.PATH, HOME: process.env.HOME ?? "/root", CODEBOX_DATA_DIR: join(dataDir, "data"), CODEBOX_LOG_LEVEL: "warn" },
    stderr: "pipe",
  });
  transport.stderr?.on("data", () => {});
  const client = new Client({ name: "bench", version: "1" });
  await client.connect(transport);
  return { client, pid: transport.pid, close: () => client.close() };
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

async function latency(client, label, target = HELLO.node, n = N) {
  const xs = [];
  let errors = 0;
  await timedRun(client, target.code, target); // first call: image, bridge and user dirs ready
  await sleep(THINK_MS * 2);
  for (let i = 0; i < n; i++) {
    const { ms, ok } = await timedRun(client, target.code, target);
    if (ok) xs.push(ms);
    else errors++;
    await sleep(THINK_MS); // an agent's think time between calls; the pool refills meanwhile
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
 * Cold and warm latency of each language runtime (Node, Bun, Python) on one OCI runtime, beside
 * `docker run --rm` of the same image running the bare interpreter.
 */
async function benchLanguages(runtime, images, dataDir) {
  const n = N_LANG;
  const out = {};
  for (const lang of Object.keys(HELLO)) {
    out[lang] = { image: images[lang], dockerRunRm: await dockerRun(images[lang], runtime, dataDir, BARE[lang], Math.min(n, 20)) };
    log(`${runtime} ${lang}: docker run --rm p50 ${out[lang].dockerRunRm.p50} ms`);
  }
  const cold = await startServer(dataDir, runtime, 0);
  for (const lang of Object.keys(HELLO)) out[lang].cold = await latency(cold.client, `${runtime} ${lang} cold`, HELLO[lang], n);
  await cold.close();
  const warm = await startServer(dataDir, runtime, 2);
  for (const lang of Object.keys(HELLO)) out[lang].warm = await latency(warm.client, `${runtime} ${lang} warm`, HELLO[lang], n);
  await warm.close();
  return out;
}

async function benchRuntime(runtime, image, dataDir) {
  log(`runtime ${runtime}`);
  const out = { runtime };
  out.dockerRunRm = await dockerRun(image, runtime, dataDir);
  log(`docker run --rm: p50 ${out.dockerRunRm.p50} ms`);
  const cold = await startServer(dataDir, runtime, 0);
  out.cold = await latency(cold.client, `${runtime} cold`);
  await cold.close();
  const warm = await startServer(dataDir, runtime, 2);
  await sleep(3000);
  out.idleServerRssMb = rssMb(warm.pid);
  out.warm = await latency(warm.client, `${runtime} warm`);
  out.throughput = [];
  for (const c of [1, 4, 8]) out.throughput.push(await throughput(warm.client, warm.pid, c));
  out.bridge = await bridgeRoundTrip(warm.client);
  out.tokenEfficiency = await tokenEfficiency(warm.client);
  await warm.close();
  return out;
}

function render(result) {
  const lines = [];
  const mark = (ok) => (ok ? "met" : "**missed**");
  lines.push("# Performance", "");
  lines.push(`Measured by \`npm run bench\` on ${result.date}: ${result.cores} cores, Node ${result.node}, Docker ${result.docker}. Each figure sits beside its baseline from the same run; read the ratios, not the milliseconds (shared machines are noisy).`, "");
  lines.push(`Method: \`execute_code\` of \`console.log(1)\` end-to-end through the SDK Client over stdio, ${N} runs each, ${THINK_MS} ms between calls (an agent's think time; the warm pool refills meanwhile). Cold: \`sandbox.pool.size\` 0. Warm: size 2. Throughput: that many clients calling back to back for ${THROUGHPUT_SECONDS} s on the warm server.`, "");
  for (const r of result.runtimes) {
    const node = result.hostNode.p50;
    const dr = r.dockerRunRm.p50;
    lines.push(`## ${r.runtime}`, "");
    lines.push("| measure | p50 ms | p95 ms | p99 ms | errors |", "| --- | --- | --- | --- | --- |");
    lines.push(`| host \`node -e 0\` (baseline) | ${result.hostNode.p50} | ${result.hostNode.p95} | ${result.hostNode.p99} | |`);
    lines.push(`| \`docker run --rm\` our image \`node -e 0\` (baseline) | ${dr} | ${r.dockerRunRm.p95} | ${r.dockerRunRm.p99} | |`);
    lines.push(`| execute_code, cold | ${r.cold.p50} | ${r.cold.p95} | ${r.cold.p99} | ${r.cold.errors} |`);
    lines.push(`| execute_code, warm | ${r.warm.p50} | ${r.warm.p95} | ${r.warm.p99} | ${r.warm.errors} |`, "");
    lines.push("| concurrency | runs/s | errors | server RSS max MB |", "| --- | --- | --- | --- |");
    for (const t of r.throughput) lines.push(`| ${t.concurrency} | ${t.runsPerSecond} | ${t.errors} | ${t.maxServerRssMb} |`);
    lines.push("");
    const t4 = r.throughput.find((t) => t.concurrency === 4);
    lines.push("| target | figure | ratio | |", "| --- | --- | --- | --- |");
    lines.push(`| warm p50 ≤ 0.3 × host \`node -e 0\` | ${r.warm.p50} ms vs ${node} ms | ${ratio(r.warm.p50, node)} | ${mark(r.warm.p50 <= 0.3 * node)} |`);
    lines.push(`| cold p50 ≤ 0.8 × \`docker run --rm\` | ${r.cold.p50} ms vs ${dr} ms | ${ratio(r.cold.p50, dr)} | ${mark(r.cold.p50 <= 0.8 * dr)} |`);
    lines.push(`| throughput at 4 ≥ 3 × (1 / \`docker run --rm\`) | ${t4.runsPerSecond} runs/s vs ${round(3000 / dr)} | ${ratio(t4.runsPerSecond, 3000 / dr)} | ${mark(t4.runsPerSecond >= 3000 / dr)} |`);
    lines.push(`| callMCPTool p50 ≤ 1.5 × direct client call | ${r.bridge.sandbox.p50} ms vs ${r.bridge.direct.p50} ms (p95 ${r.bridge.sandbox.p95} vs ${r.bridge.direct.p95}) | ${ratio(r.bridge.sandbox.p50, r.bridge.direct.p50)} | ${mark(r.bridge.sandbox.p50 <= 1.5 * r.bridge.direct.p50)} |`);
    lines.push(`| idle server RSS ≤ 100 MB | ${r.idleServerRssMb} MB | | ${mark(r.idleServerRssMb <= 100)} |`, "");
    lines.push(`Token efficiency (10,000 rows filtered to 5 in the sandbox): ${r.tokenEfficiency.bytesViaCode} bytes reach the client instead of ${r.tokenEfficiency.bytesDirect} from a direct tool call: ${r.tokenEfficiency.ratio} × fewer.`, "");
  }
  if (result.languages) {
    lines.push("## Per language runtime", "");
    lines.push(
      `execute_code of a one-line print (\`console.log(1)\` / \`print(1)\`), ${result.languages.runs} runs each, cold (pool 0) and warm (pool 2), ` +
        "beside `docker run --rm` of the same image running the bare interpreter (`node -e 0`, `bun -e 0`, `python3 -c pass`) with our seccomp profile, " +
        `and the host's own interpreter where it has one (host \`node -e 0\` p50 ${result.hostNode.p50} ms, host \`python3 -c pass\` p50 ${result.hostPython.p50} ms).`,
      "",
    );
    lines.push("| OCI runtime | language runtime | cold p50 / p95 ms | warm p50 / p95 ms | `docker run --rm` p50 ms | cold ÷ docker run | warm ÷ docker run | warm ÷ host interpreter |");
    lines.push("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (const [oci, langs] of Object.entries(result.languages.byRuntime)) {
      for (const [lang, m] of Object.entries(langs)) {
        const host = lang === "node" ? result.hostNode.p50 : lang === "python" ? result.hostPython.p50 : undefined;
        const r2 = ratio;
        lines.push(`| ${oci} | ${lang} | ${m.cold.p50} / ${m.cold.p95}${m.cold.errors ? ` (${m.cold.errors} errors)` : ""} | ${m.warm.p50} / ${m.warm.p95}${m.warm.errors ? ` (${m.warm.errors} errors)` : ""} | ${m.dockerRunRm.p50} | ${r2(m.cold.p50, m.dockerRunRm.p50)} | ${r2(m.warm.p50, m.dockerRunRm.p50)} | ${host ? r2(m.warm.p50, host) : "n/a (no host Bun)"} |`);
      }
    }
    lines.push("");
  }
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
  execFileSync(process.execPath, [cli, "image", "build", "all"], { stdio: "ignore", env: { ...process.env, CODEBOX_DATA_DIR: join(dataDir, "data") } });
  const { defaultImageTag } = await import(join(root, "dist", "sandbox", "docker", "image-builder.js"));
  const image = defaultImageTag("node");
  const images = { node: image, bun: defaultImageTag("bun"), python: defaultImageTag("python") };
  const runtimes = (process.env.BENCH_RUNTIMES ?? "runc,runsc").split(",");
  const info = JSON.parse(execFileSync("docker", ["info", "--format", "{{json .}}"], { encoding: "utf8" }));
  const result = { date: new Date().toISOString(), cores: cpus().length, node: process.version, docker: info.ServerVersion, image, images, hostNode: await hostNode(), hostPython: await hostPython(), runtimes: [], languages: { runs: N_LANG, byRuntime: {} } };
  log(`host node -e 0: p50 ${result.hostNode.p50} ms; host python3 -c pass: p50 ${result.hostPython.p50} ms`);
  const only = process.env.BENCH_ONLY; // "languages": just the per-language figures
  for (const rt of runtimes) {
    if (rt === "runsc" && !Object.keys(info.Runtimes ?? {}).includes("runsc")) {
      log("runsc not registered: skipped (run scripts/setup.sh)");
      continue;
    }
    if (only !== "languages") result.runtimes.push(await benchRuntime(rt, image, dataDir));
    result.languages.byRuntime[rt] = await benchLanguages(rt, images, dataDir);
  }
  if (only === "languages") {
    // Keep the last full run's other figures.
    const previous = JSON.parse(readFileSync(join(root, "bench-results", "bench.json"), "utf8"));
    result.runtimes = previous.runtimes;
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
} finally {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const m = line.split(" ")[4];
    if (m?.startsWith(dataDir)) execFileSync("umount", ["-l", m]);
  }
  rmSync(dataDir, { recursive: true, force: true });
}
