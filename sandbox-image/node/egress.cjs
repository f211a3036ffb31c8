// Egress for a run the host allowed it (bundled with undici into dist/sandbox-image/node/egress.cjs):
// a forwarder on the container's loopback to the host's egress proxy (a unix socket; the sandbox
// has no network), and fetch pointed at it. The forwarder runs in a worker thread, so code that
// blocks the main thread (execSync("npm install"), spawnSync) still has its traffic forwarded.
// Node's own fetch ignores HTTP_PROXY; undici's ProxyAgent, set as the global dispatcher (a symbol
// Node's built-in fetch shares), makes it use the proxy. Loaded only by runs with egress.
"use strict";
const { Worker } = require("node:worker_threads");
const { ProxyAgent, setGlobalDispatcher } = require("undici");

const FORWARDER = `
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
server.listen(workerData.port, "127.0.0.1", () => parentPort.postMessage({ listening: true }));
`;

/** Starts the forwarder on 127.0.0.1:port and routes fetch through it; resolves once it listens. */
exports.start = (socketPath, port) =>
  new Promise((resolve, reject) => {
    const worker = new Worker(FORWARDER, { eval: true, workerData: { socketPath, port } });
    worker.once("error", reject);
    worker.once("message", (m) => {
      if (!m.listening) return reject(new Error(m.error));
      // The forwarder never keeps the code's process alive: the code's own requests do while they run.
      worker.unref();
      setGlobalDispatcher(new ProxyAgent(`http://127.0.0.1:${port}`));
      resolve();
    });
  });
