// Egress for a run the host allowed it (bundled with undici into dist/sandbox-image/node/egress.cjs):
// a forwarder on the container's loopback to the host's egress proxy (a unix socket; the sandbox
// has no network), and fetch pointed at it. Node's own fetch ignores HTTP_PROXY; undici's
// ProxyAgent, set as the global dispatcher (a symbol Node's built-in fetch shares), makes it use
// the proxy. Loaded only by runs with egress.
"use strict";
const net = require("node:net");
const { ProxyAgent, setGlobalDispatcher } = require("undici");

/** Starts the forwarder on 127.0.0.1:port and routes fetch through it; resolves once it listens. */
exports.start = (socketPath, port) =>
  new Promise((resolve, reject) => {
    const server = net.createServer((client) => {
      const upstream = net.connect(socketPath);
      // The forwarder never keeps the code's process alive: the client's own socket does while it is in use.
      client.unref();
      upstream.unref();
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    server.unref();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      setGlobalDispatcher(new ProxyAgent(`http://127.0.0.1:${port}`));
      resolve();
    });
  });
