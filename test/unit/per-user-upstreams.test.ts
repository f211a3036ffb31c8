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

function makeBridge(perUser: boolean | undefined, options: { multiUser?: boolean; idleMs?: number } = {}): Bridge {
  const rows = { command: process.execPath, args: [rowsServer], ...(perUser === undefined ? {} : { perUser }) };
  const config = loadConfig({ env: {}, flags: { dataDir, mcpServers: { rows }, ...(options.idleMs ? { "bridge.userUpstreamIdleMs": options.idleMs } : {}) } });
  return new Bridge(config, createLogger({ level: "silent" }), undefined, { multiUser: options.multiUser ?? false });
}

function alive(pid: string): boolean {
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return cond();
}

/** Whether alice's and bob's runs reach the same upstream process on a new bridge. */
async function shared(perUser: boolean | undefined, options: { multiUser?: boolean } = {}): Promise<boolean> {
  const bridge = makeBridge(perUser, options);
  try {
    return (await upstreamPid(bridge, "alice")) === (await upstreamPid(bridge, "bob"));
  } finally {
    await bridge.close();
  }
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
    expect(await shared(false)).toBe(true);
  });
});

describe("the default on a multi-user server (HTTP)", () => {
  it("is one instance per user when the server says nothing", { timeout: 60_000 }, async () => {
    expect(await shared(undefined, { multiUser: true })).toBe(false);
  });

  it("is shared when the operator marks the server \"perUser\": false", { timeout: 60_000 }, async () => {
    expect(await shared(false, { multiUser: true })).toBe(true);
  });

  it("stays shared over stdio (one user) when the server says nothing", { timeout: 60_000 }, async () => {
    expect(await shared(undefined)).toBe(true);
  });
});

describe("a user's own instances", () => {
  it("are closed once idle, and started again on the user's next run", { timeout: 60_000 }, async () => {
    const bridge = makeBridge(true, { idleMs: 1_000 });
    try {
      const first = await upstreamPid(bridge, "alice");
      expect(alive(first)).toBe(true);
      expect(await waitFor(() => !alive(first), 10_000)).toBe(true);
      const second = await upstreamPid(bridge, "alice");
      expect(second).not.toBe(first);
      expect(alive(second)).toBe(true);
    } finally {
      await bridge.close();
    }
  });

  it("are never closed while a slot of that user is open (a warm or running container)", { timeout: 60_000 }, async () => {
    const bridge = makeBridge(true, { idleMs: 1_000 });
    const held = await bridge.openSlot("alice");
    try {
      const pid = await upstreamPid(bridge, "alice");
      await new Promise((r) => setTimeout(r, 3_000));
      expect(alive(pid)).toBe(true);
      expect(await upstreamPid(bridge, "alice")).toBe(pid);
      await held.close();
      expect(await waitFor(() => !alive(pid), 10_000)).toBe(true);
    } finally {
      await held.close();
      await bridge.close();
    }
  });
});
