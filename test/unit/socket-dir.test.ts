// When the data dir is too deep for a unix socket path, the run's socket goes under /tmp: into a
// fresh folder of ours, never a predictable name someone could have planted beforehand.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Bridge } from "../../src/bridge/bridge.js";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/shared/logger.js";

const base = mkdtempSync(join(tmpdir(), "codebox-sockdir-"));
const planted = join(tmpdir(), `codebox-run-${process.getuid?.() ?? 0}`);
const plantedBefore = existsSync(planted) || (() => { try { lstatSync(planted); return true; } catch { return false; } })();
afterAll(() => {
  rmSync(base, { recursive: true, force: true });
  if (!plantedBefore) rmSync(planted, { force: true });
});

describe("the socket folder of a deep data dir", () => {
  it("is a fresh 0711 folder under /tmp, not a planted predictable one, and goes with the bridge", async () => {
    const deep = join(base, "d".repeat(60), "e".repeat(60));
    mkdirSync(deep, { recursive: true });
    if (!plantedBefore) symlinkSync(base, planted);
    const bridge = new Bridge(loadConfig({ env: {}, flags: { dataDir: deep } }), createLogger({ level: "silent" }));
    const slot = await bridge.openSlot("alice");
    const socketDir = slot.mounts.find((m) => m.target === "/run/codebox")!.source;
    const parent = dirname(socketDir);
    expect(parent.startsWith(join(tmpdir(), "codebox-run-"))).toBe(true);
    expect(parent).not.toBe(planted);
    expect(lstatSync(parent).isDirectory()).toBe(true);
    expect(statSync(parent).mode & 0o777).toBe(0o711);
    await slot.close();
    await bridge.close();
    expect(existsSync(parent)).toBe(false);
  });
});
