// /readyz and /metrics on a listener that is not loopback-only need a credential; /healthz does
// not. The engine is pointed at a socket that does not exist: nothing here touches Docker.
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, createApp } from "../../src/app.js";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/shared/logger.js";
import { type HttpServerHandle, serveHttp } from "../../src/transport/http.js";

const dataDir = mkdtempSync(join(process.env.CODEBOX_TEST_TMP ?? tmpdir(), "codebox-probes-"));
const METRICS_TOKEN = "metrics-token-0123456789";
const ALICE_KEY = "alice-probe-key-0123456789";
let app: App;
let handle: HttpServerHandle;

function get(path: string, bearer?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: handle.port, path, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  const config = loadConfig({
    env: {},
    flags: {
      dataDir,
      logLevel: "silent",
      "docker.host": `unix://${join(dataDir, "no-engine.sock")}`,
      "http.host": "0.0.0.0",
      "http.port": 0,
      "http.metricsToken": METRICS_TOKEN,
      "auth.apiKeys": [{ userId: "alice", key: ALICE_KEY }],
    },
  });
  app = createApp(config, createLogger({ level: "silent" }));
  handle = await serveHttp(app);
});

afterAll(async () => {
  try {
    await handle.shutdown("test over");
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe("probes on a listener that is not loopback-only", () => {
  it("serves /healthz without credentials (it says only ok or draining)", async () => {
    expect(await get("/healthz")).toBe(200);
  });

  it("refuses /metrics and /readyz without a credential or with a wrong one", async () => {
    expect(await get("/metrics")).toBe(401);
    expect(await get("/readyz")).toBe(401);
    expect(await get("/metrics", "wrong-token-0123456789")).toBe(401);
  });

  it("serves /metrics to the metrics token and to a user's API key", async () => {
    expect(await get("/metrics", METRICS_TOKEN)).toBe(200);
    expect(await get("/metrics", ALICE_KEY)).toBe(200);
    // /readyz answers (503: there is no engine here), past the credential check.
    expect(await get("/readyz", METRICS_TOKEN)).toBe(503);
  });
});
