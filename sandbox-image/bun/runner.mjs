// codebox runner for Bun: PID 1 inside every Bun sandbox container.
//
// The same contract as the Node runner (sandbox-image/node/runner.mjs): boot before any code is
// known, read exactly one JSON line from stdin ({code, language, env, completion}: RunnerPayload in src/protocol/runner.ts), run the code as an
// ES module whose URL sits in /workspace, print nothing of its own on stdout, and end with the
// completion line on stdout and stderr. Bun strips TypeScript itself; the main module is served
// from memory by a loader plugin, so nothing is written into the user's workspace.
import { writeSync } from "node:fs";

const MAIN = { typescript: "/workspace/__codebox_main__.ts", javascript: "/workspace/__codebox_main__.js" };

function fail(message) {
  process.stderr.write(`codebox runner: ${message}\n`);
  process.exit(70); // EX_SOFTWARE: the runner itself failed, not the user's code
}

async function readPayload() {
  const chunks = [];
  const reader = Bun.stdin.stream().getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stdin closed before a payload arrived");
      const nl = value.indexOf(10);
      if (nl === -1) {
        chunks.push(value);
        continue;
      }
      chunks.push(value.subarray(0, nl));
      return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    }
  } finally {
    // Nothing else arrives on stdin; release it so it cannot keep the process alive.
    reader.releaseLock();
  }
}

let payload;
try {
  payload = await readPayload();
} catch (err) {
  fail(`could not read the code to run: ${err.message}`);
}
if (typeof payload?.code !== "string") fail("payload has no code");
const language = payload.language === "javascript" ? "javascript" : "typescript";
const mainPath = MAIN[language];
for (const [k, v] of Object.entries(payload.env ?? {})) if (typeof v === "string") process.env[k] = v;

// A run the host allowed egress: a forwarder on the loopback to the host's egress proxy (a unix
// socket; the sandbox has no network), and fetch sent through it.
if (process.env.CODEBOX_EGRESS_SOCKET) {
  const { Worker } = await import("node:worker_threads");
  const socketPath = process.env.CODEBOX_EGRESS_SOCKET;
  const proxy = "http://127.0.0.1:3128";
  // In a worker thread: code that blocks the main thread (spawnSync) still has its traffic forwarded.
  const forwarder = `
    const net = require("node:net");
    const { parentPort, workerData } = require("node:worker_threads");
    const server = net.createServer((client) => {
      const upstream = net.connect(workerData.socketPath);
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    server.once("error", (err) => parentPort.postMessage({ error: err.message }));
    server.listen(3128, "127.0.0.1", () => parentPort.postMessage({ listening: true }));`;
  try {
    await new Promise((resolve, reject) => {
      const worker = new Worker(forwarder, { eval: true, workerData: { socketPath } });
      worker.once("error", reject);
      worker.once("message", (m) => {
        if (!m.listening) return reject(new Error(m.error));
        worker.unref();
        resolve();
      });
    });
    const realFetch = globalThis.fetch;
    globalThis.fetch = Object.assign((input, init) => realFetch(input, { proxy, ...init }), realFetch);
  } catch (err) {
    process.stderr.write(`codebox: egress is unavailable for this run (${err.message})\n`);
  }
}

// The host's completion line: see the Node runner.
if (typeof payload.completion === "string") {
  const completion = payload.completion;
  const trailer = (code) => `${completion}${code}\n`;
  process.on("exit", (code) => {
    try {
      writeSync(1, trailer(code ?? 0));
      writeSync(2, trailer(code ?? 0));
    } catch {
      // a closed stream: the engine's exit report still arrives
    }
  });
}

const source = payload.code;
payload = undefined;
Bun.plugin({
  name: "codebox-main",
  setup(build) {
    const exact = new RegExp(`^${mainPath.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}$`);
    build.onResolve({ filter: exact }, () => ({ path: mainPath }));
    build.onLoad({ filter: exact }, () => ({ contents: source, loader: language === "javascript" ? "js" : "ts" }));
  },
});

try {
  await import(mainPath);
} catch (err) {
  // Print like an uncaught error, exit 1; the runner's own frames say nothing to the user.
  let text = err?.stack ? String(err.stack) : String(err);
  // A syntax error arrives as a BuildMessage carrying its position instead of a stack.
  if (err?.position && typeof err.position.line === "number") {
    text = `SyntaxError: ${err.message}\n    at ${err.position.file || mainPath}:${err.position.line}:${err.position.column}\n    ${err.position.lineText ?? ""}`;
  }
  const user = text.split("\n").filter((l) => !/^\s+at .*\/opt\/codebox\//.test(l));
  process.stderr.write(`${user.join("\n")}\n`);
  process.exitCode = 1;
}
