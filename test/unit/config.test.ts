import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ENV_KEYS, defaultDataDir, loadConfig } from "../../src/config/load.js";
import { ConfigSchema } from "../../src/config/schema.js";
import { repoRoot, tempDir } from "../helpers.js";

describe("config", () => {
  it("has documented defaults", () => {
    const c = loadConfig({ env: {}, homeDir: "/home/ada" });
    expect(c.dataDir).toBe("/home/ada/.local/share/codebox-mcp");
    expect(c.sandbox.ociRuntime).toBe("runc");
    expect(c.sandbox.profile).toBe("standard");
    expect(c.sandbox.profiles.light).toEqual({ memoryMiB: 64, cpus: 0.25, timeoutMs: 10_000, pidsLimit: 64, tmpfsMiB: 64 });
    expect(c.sandbox.profiles.standard).toEqual({ memoryMiB: 256, cpus: 0.5, timeoutMs: 30_000, pidsLimit: 64, tmpfsMiB: 64 });
    expect(c.sandbox.profiles.heavy).toEqual({ memoryMiB: 512, cpus: 1, timeoutMs: 120_000, pidsLimit: 64, tmpfsMiB: 64 });
    expect(c.sandbox.maxCodeBytes).toBe(1024 * 1024);
    expect(c.sandbox.maxOutputBytes).toBe(64 * 1024);
  });

  it("keeps one warm container per key under runc and two under runsc, unless told otherwise", () => {
    expect(loadConfig({ env: {}, homeDir: "/h" }).sandbox.pool).toMatchObject({ size: 1, maxSize: 4, maxTotal: 8, maxStarting: 0 });
    expect(loadConfig({ env: {}, homeDir: "/h", flags: { "sandbox.ociRuntime": "runsc" } }).sandbox.pool.size).toBe(2);
    expect(loadConfig({ env: {}, homeDir: "/h", flags: { "sandbox.ociRuntime": "runsc", "sandbox.pool.size": 1 } }).sandbox.pool.size).toBe(1);
    expect(loadConfig({ env: {}, homeDir: "/h", flags: { "sandbox.pool.size": 0 } }).sandbox.pool.size).toBe(0);
  });

  it("uses XDG_DATA_HOME when set", () => {
    expect(defaultDataDir({ XDG_DATA_HOME: "/x/data" }, "/home/ada")).toBe("/x/data/codebox-mcp");
  });

  it("merges defaults < config file < env < flags", () => {
    const dir = tempDir("cfg");
    const file = join(dir, "c.json");
    writeFileSync(file, JSON.stringify({ sandbox: { ociRuntime: "runsc", profile: "light", profiles: { heavy: { memoryMiB: 1024 } } }, logLevel: "debug" }));
    const fromFile = loadConfig({ env: {}, configFile: file });
    expect(fromFile.sandbox.ociRuntime).toBe("runsc");
    expect(fromFile.sandbox.profiles.heavy).toMatchObject({ memoryMiB: 1024, cpus: 1 });
    const withEnv = loadConfig({ env: { CODEBOX_PROFILE: "heavy", CODEBOX_MAX_OUTPUT_BYTES: "2048" }, configFile: file });
    expect(withEnv.sandbox.profile).toBe("heavy");
    expect(withEnv.sandbox.maxOutputBytes).toBe(2048);
    expect(withEnv.sandbox.ociRuntime).toBe("runsc");
    const withFlags = loadConfig({ env: { CODEBOX_PROFILE: "heavy" }, configFile: file, flags: { "sandbox.profile": "standard", dataDir: "/d" } });
    expect(withFlags.sandbox.profile).toBe("standard");
    expect(withFlags.dataDir).toBe("/d");
  });

  it("fails with one message naming the key (and its env variable) for an invalid value", () => {
    expect(() => loadConfig({ env: { CODEBOX_OCI_RUNTIME: "kata" } })).toThrow(/"sandbox\.ociRuntime".*CODEBOX_OCI_RUNTIME/);
    expect(() => loadConfig({ env: { CODEBOX_MAX_CODE_BYTES: "lots" } })).toThrow(/"sandbox\.maxCodeBytes"/);
    expect(() => loadConfig({ env: {}, flags: { "sandbox.profiles": { light: { memoryMiB: 1 } } } })).toThrow(/"sandbox\.profiles\.light\.memoryMiB"/);
    expect(() => loadConfig({ env: {}, flags: { "sandbox.bogus": 1 } })).toThrow(/sandbox/);
    expect(() => loadConfig({ env: { CODEBOX_USER_ID: "../etc" } })).toThrow(/"userId"/);
  });

  it("reports an unreadable or malformed config file", () => {
    const dir = tempDir("cfg");
    expect(() => loadConfig({ env: {}, configFile: join(dir, "missing.json") })).toThrow(/Cannot read the config file/);
    writeFileSync(join(dir, "bad.json"), "{ nope");
    expect(() => loadConfig({ env: {}, configFile: join(dir, "bad.json") })).toThrow(/not valid JSON/);
  });

  it("documents every key and env variable in docs/CONFIG.md", () => {
    const doc = readFileSync(join(repoRoot, "docs", "CONFIG.md"), "utf8");
    const keys: string[] = [];
    const walk = (shape: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(shape)) {
        keys.push(prefix + k);
        const inner = (v as { def?: { innerType?: { shape?: Record<string, unknown> }; in?: { def?: { innerType?: { shape?: Record<string, unknown> } } } }; shape?: Record<string, unknown> });
        const nested = inner.shape ?? inner.def?.innerType?.shape;
        if (nested && k !== "profiles") walk(nested, `${prefix}${k}.`);
      }
    };
    walk(ConfigSchema.shape as unknown as Record<string, unknown>, "");
    for (const key of keys) expect(doc, `docs/CONFIG.md should mention ${key}`).toContain(`\`${key}\``);
    for (const { env } of ENV_KEYS) expect(doc, `docs/CONFIG.md should mention ${env}`).toContain(env);
  });
});
