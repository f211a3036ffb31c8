import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfigReport } from "../../src/config/load.js";
import { ConfigError } from "../../src/shared/errors.js";

// Until 0.2, "sandbox.runtime" / CODEBOX_RUNTIME named the OCI runtime (runc, runsc). They still
// work, with a warning naming the new key "sandbox.ociRuntime" / CODEBOX_OCI_RUNTIME.

const dir = mkdtempSync(join(tmpdir(), "codebox-config-aliases-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function configFile(content: unknown): string {
  const path = join(dir, `config-${files++}.json`);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

const load = (sources: { env?: Record<string, string>; configFile?: string; flags?: Record<string, unknown> }) =>
  loadConfigReport({ env: sources.env ?? {}, configFile: sources.configFile, flags: { dataDir: dir, ...sources.flags }, homeDir: dir });

describe("deprecated names for the OCI runtime", () => {
  it("gives no warning for a config that uses only current names", () => {
    const file = configFile({ sandbox: { ociRuntime: "runsc", runtimes: ["node"] } });
    const report = load({ env: { CODEBOX_OCI_RUNTIME: "runsc", CODEBOX_RUNTIMES: "node,python" }, configFile: file, flags: { "sandbox.ociRuntime": "runsc" } });
    expect(report.warnings).toEqual([]);
    expect(report.config.sandbox.ociRuntime).toBe("runsc");
  });

  it("takes sandbox.runtime from a config file as sandbox.ociRuntime, warning with the file's path and the new key", () => {
    const file = configFile({ sandbox: { runtime: "runsc" } });
    const { config, warnings } = load({ configFile: file });
    expect(config.sandbox.ociRuntime).toBe("runsc");
    expect(config.sandbox).not.toHaveProperty("runtime");
    expect(warnings).toEqual([`config file ${file}: "sandbox.runtime" is deprecated; use "sandbox.ociRuntime" (env CODEBOX_OCI_RUNTIME) instead`]);
  });

  it("takes sandbox.runtime from the command line, warning about the flag", () => {
    const { config, warnings } = load({ flags: { "sandbox.runtime": "runsc" } });
    expect(config.sandbox.ociRuntime).toBe("runsc");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^command line: "sandbox\.runtime" is deprecated; use "sandbox\.ociRuntime"/);
  });

  it("takes CODEBOX_RUNTIME as CODEBOX_OCI_RUNTIME, warning with the new variable's name", () => {
    const { config, warnings } = load({ env: { CODEBOX_RUNTIME: "runsc" } });
    expect(config.sandbox.ociRuntime).toBe("runsc");
    expect(warnings).toEqual(["environment: CODEBOX_RUNTIME is deprecated; use CODEBOX_OCI_RUNTIME instead"]);
  });

  it("ignores an empty CODEBOX_RUNTIME, like any empty variable", () => {
    const { config, warnings } = load({ env: { CODEBOX_RUNTIME: "" } });
    expect(config.sandbox.ociRuntime).toBe("runc");
    expect(warnings).toEqual([]);
  });

  it.each([
    ["a config file", { configFile: { sandbox: { runtime: "runsc", ociRuntime: "runc" } } }],
    ["a config file (new key first)", { configFile: { sandbox: { ociRuntime: "runc", runtime: "runsc" } } }],
    ["the environment", { env: { CODEBOX_RUNTIME: "runsc", CODEBOX_OCI_RUNTIME: "runc" } }],
    ["the command line", { flags: { "sandbox.runtime": "runsc", "sandbox.ociRuntime": "runc" } }],
  ] as const)("lets the new name win when both are set in %s, still warning about the old one", (_where, layer) => {
    const file = "configFile" in layer ? configFile(layer.configFile) : undefined;
    const { config, warnings } = load({ configFile: file, env: "env" in layer ? { ...layer.env } : {}, flags: "flags" in layer ? { ...layer.flags } : {} });
    expect(config.sandbox.ociRuntime).toBe("runc");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/deprecated/);
  });

  it("keeps layer precedence: an old name in a later layer beats a new name in an earlier one", () => {
    const file = configFile({ sandbox: { ociRuntime: "runc" } });
    expect(load({ configFile: file, env: { CODEBOX_RUNTIME: "runsc" } }).config.sandbox.ociRuntime).toBe("runsc");
    expect(load({ env: { CODEBOX_OCI_RUNTIME: "runsc" }, flags: { "sandbox.runtime": "runc" } }).config.sandbox.ociRuntime).toBe("runc");
    // ...and a new name in a later layer beats an old one in an earlier layer.
    const old = configFile({ sandbox: { runtime: "runsc" } });
    expect(load({ configFile: old, env: { CODEBOX_OCI_RUNTIME: "runc" } }).config.sandbox.ociRuntime).toBe("runc");
  });

  it("warns once per layer that uses the old name", () => {
    const file = configFile({ sandbox: { runtime: "runsc" } });
    const { warnings } = load({ configFile: file, env: { CODEBOX_RUNTIME: "runsc" }, flags: { "sandbox.runtime": "runsc" } });
    expect(warnings.map((w) => w.split(":")[0])).toEqual([`config file ${file}`, "environment", "command line"]);
  });

  it("does not confuse the old sandbox.runtime with the current sandbox.runtimes list", () => {
    const { config, warnings } = load({ flags: { "sandbox.runtimes": ["python"] } });
    expect(warnings).toEqual([]);
    expect(config.sandbox.runtimes).toEqual(["python"]);
    expect(config.sandbox.ociRuntime).toBe("runc");
  });

  it("reports an invalid value given under the old variable as an invalid OCI runtime", () => {
    const attempt = () => load({ env: { CODEBOX_RUNTIME: "kata" } });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/"sandbox\.ociRuntime"/);
    expect(() => load({ flags: { "sandbox.runtime": "kata" } })).toThrow(/"sandbox\.ociRuntime"/);
    expect(() => load({ configFile: configFile({ sandbox: { runtime: "node" } }) })).toThrow(ConfigError);
  });
});
