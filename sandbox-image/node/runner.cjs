// codebox runner: PID 1 inside every sandbox container.
//
// Boots before any code is known (so a pre-started container is ready the moment code
// arrives), then reads exactly one JSON line from stdin: RunnerPayload (src/protocol/runner.ts).
// Everything the user's code prints goes straight to this process's stdout/stderr; the runner
// itself prints nothing on stdout, so the host can return stdout verbatim.
//
// Boot is kept lean (docs/PERFORMANCE.md): the module hooks (a thread of their own, and the
// TypeScript stripper when a .ts file is loaded) are registered at boot only in a container
// started ahead of its run (CODEBOX_RUNNER_WARM), otherwise only when the code needs them. Plain
// code (the host found only static imports of Node builtins) runs as a vm module without them.
// CommonJS, requiring nothing at the top: Node's ESM entry and eager imports cost ~20 ms of boot,
// twice that under a 0.5-CPU quota.
"use strict";

// The main module is virtual: it lives in memory, but its URL sits in /workspace so relative
// imports (`./data.ts`) resolve against the user's working directory.
const MAIN_URL = "file:///workspace/__codebox_main__.ts";
/** Started ahead of its run (the host says so): load the hooks now, while nobody waits. */
const WARM = process.env.CODEBOX_RUNNER_WARM === "1";
// The runner's business, not the code's: a warm and a cold run see the same environment.
delete process.env.CODEBOX_RUNNER_WARM;

let hooksPort;
function hooks() {
  if (!hooksPort) {
    const { MessageChannel } = require("node:worker_threads");
    const { pathToFileURL } = require("node:url");
    const { port1, port2 } = new MessageChannel();
    require("node:module").register("./hooks.mjs", pathToFileURL(__filename).href, { data: { port: port2 }, transferList: [port2] });
    hooksPort = port1;
  }
  return hooksPort;
}

function fail(message) {
  process.stderr.write(`codebox runner: ${message}\n`);
  process.exit(70); // EX_SOFTWARE: the runner itself failed, not the user's code
}

function readPayload() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const onData = (chunk) => {
      const nl = chunk.indexOf(10);
      if (nl === -1) {
        chunks.push(chunk);
        return;
      }
      chunks.push(chunk.subarray(0, nl));
      process.stdin.off("data", onData);
      process.stdin.off("end", onEnd);
      // Nothing else arrives on stdin; release it so it cannot keep the event loop alive.
      process.stdin.pause();
      process.stdin.destroy();
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch (err) {
        reject(err);
      }
    };
    const onEnd = () => reject(new Error("stdin closed before a payload arrived"));
    process.stdin.on("data", onData);
    process.stdin.on("end", onEnd);
  });
}

function handOver(payload) {
  const port = hooks();
  return new Promise((resolve) => {
    port.once("message", () => {
      port.close();
      resolve();
    });
    port.postMessage({ url: MAIN_URL, source: payload.code, language: payload.language });
  });
}

/**
 * Plain code as a vm module with the main module's URL (stack traces and import.meta-free code see
 * no difference). Returns undefined when V8 does not accept it as a module: the hooks path then
 * reports the error as Node always does.
 */
async function plainModule(code) {
  const vm = require("node:vm");
  // The runner's own use of vm modules is not the user's business: hide that one warning only.
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, ...rest) => {
    if (String(warning?.message ?? warning).startsWith("VM Modules")) return;
    return emitWarning.call(process, warning, ...rest);
  };
  let mod;
  try {
    mod = new vm.SourceTextModule(code, { identifier: MAIN_URL });
  } catch {
    return undefined;
  } finally {
    process.emitWarning = emitWarning;
  }
  await mod.link(async (specifier) => {
    const ns = await import(specifier);
    const names = Object.keys(ns);
    return new vm.SyntheticModule(names, function () {
      for (const n of names) this.setExport(n, ns[n]);
    }, { identifier: specifier });
  });
  return mod;
}

async function main() {
  let payload;
  if (WARM) hooks();
  try {
    payload = await readPayload();
  } catch (err) {
    fail(`could not read the code to run: ${err.message}`);
  }
  if (typeof payload?.code !== "string") fail("payload has no code");
  // Per-run variables (the bridge's socket and token) arrive with the code, so a container
  // started ahead of time gets them only when it is handed its run.
  for (const [k, v] of Object.entries(payload.env ?? {})) if (typeof v === "string") process.env[k] = v;
  // A run the host allowed egress: the loopback forwarder to its proxy, and fetch routed through it.
  if (process.env.CODEBOX_EGRESS_SOCKET) {
    try {
      await require("./egress.cjs").start(process.env.CODEBOX_EGRESS_SOCKET, 3128);
    } catch (err) {
      process.stderr.write(`codebox: egress is unavailable for this run (${err.message})\n`);
    }
  }

  // The host learns "finished, exit code N" from this line, written last on stdout and on stderr
  // (each pipe keeps its own order, not the order between them), long before the engine reports
  // the container's exit (~130 ms later). The host sends the line's prefix (with the run's nonce);
  // without the line (a kill, an OOM) the host waits for the engine. Forging it early only cuts the
  // code's own run short.
  if (typeof payload.completion === "string") {
    const trailer = (code) => `${payload.completion}${code}\n`;
    const { writeSync } = require("node:fs");
    process.on("exit", (code) => {
      try {
        writeSync(1, trailer(code ?? 0));
        writeSync(2, trailer(code ?? 0));
      } catch {
        // stderr gone: the engine's exit report still arrives
      }
    });
  }

  try {
    const plain = payload.plain === true ? await plainModule(payload.code) : undefined;
    if (plain) await plain.evaluate();
    else {
      await handOver(payload);
      await import(MAIN_URL);
    }
  } catch (err) {
    // Print like Node would for an uncaught error, and exit 1 as Node does; the runner's and
    // Node's internal frames say nothing to the user, so they are left out.
    const text = err?.stack ? String(err.stack) : String(err);
    const user = text.split("\n").filter((l) => !/^\s+at .*(node:internal|\/opt\/codebox\/)/.test(l));
    process.stderr.write(`${user.join("\n")}\n`);
    process.exitCode = 1;
  }
}

main();
