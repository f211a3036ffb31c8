// A stateful upstream marked perUser: each user gets their own instance, so its state is never a
// channel between tenants. Real upstream processes (test/fixtures/rows-server.mjs over stdio) and
// the real callback endpoint on a unix socket; no container.
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Bridge } from "../../src/bridge/bridge.js";
import { loadConfig } from "../../src/config/load.js";
import { BRIDGE_CALL_PATH, BRIDGE_ENV } from "../../src/protocol/bridge.js";
import { createLogger } from "../../src/shared/logger.js";
import { mkdtempSync, rmSync } from "node:fs";

const rowsServer = new URL("../fixtures/rows-server.mjs", import.meta.url).pathname;
const dataDir = mkdtempSync("/tmp/cb-pu-");
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function makeBridge(perUser: boolean): Bridge {
  const config = loadConfig({ env: {}, flags: { dataDir, mcpServers: { rows: { command: process.execPath, args: [rowsServer], perUser } } } });
  return new Bridge(config, createLogger({ level: "silent" }));
}

/** The upstream's process id as one user's run sees it, through that run's own callback socket. */
async function upstreamPid(bridge: Bridge, userId: string): Promise<string> {
  const slot = await bridge.openSlot(userId);
  try {
    const env = slot.bind({ runId: `run-${userId}-${Math.random()}`, timeoutMs: 30_000 });
    const socket = join(slot.mounts.find((m) => m.target === "/run/codebox")!.source, "mcp.sock");
    const body = JSON.stringify({ server: "rows", tool: "pid", arguments: {} });
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({ socketPath: socket, path: BRIDGE_CALL_PATH, method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${env[BRIDGE_ENV.token]}` } }, (res) => {
        let b = "";
        res.on("data", (c) => (b += c));
        res.on("end", () => resolve(b));
      });
      req.on("error", reject);
      req.end(body);
    });
    return (JSON.parse(text) as { content: Array<{ text: string }> }).content[0]!.text;
  } finally {
    await slot.close();
  }
}

describe("upstream servers marked perUser", () => {
  it("give each user their own instance, and the same user the same one", { timeout: 60_000 }, async () => {
    const bridge = makeBridge(true);
    try {
      const [a1, b1] = [await upstreamPid(bridge, "alice"), await upstreamPid(bridge, "bob")];
      expect(a1).not.toBe(b1);
      expect(await upstreamPid(bridge, "alice")).toBe(a1);
      expect(bridge.upstreamNames).toEqual(["rows"]);
    } finally {
      await bridge.close();
    }
  });

  it("are shared by everyone when not marked (one process for all)", { timeout: 60_000 }, async () => {
    const bridge = makeBridge(false);
    try {
      expect(await upstreamPid(bridge, "alice")).toBe(await upstreamPid(bridge, "bob"));
    } finally {
      await bridge.close();
    }
  });
});
