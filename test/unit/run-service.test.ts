import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { RunService, outcomeOf, poolKey } from "../../src/runs/run-service.js";
import type { PrepareRequest, PreparedSandbox, RunInput, SandboxOutcome } from "../../src/sandbox/backend.js";
import { BusyError, CanceledError, InputError } from "../../src/shared/errors.js";
import { createLogger } from "../../src/shared/logger.js";
import { Metrics } from "../../src/shared/metrics.js";
import type { AuditRecord, RunAuditRecord } from "../../src/stores/audit.js";
import { UserDirectories } from "../../src/stores/user-dirs.js";
import { backendWith } from "./fakes.js";

const base = mkdtempSync(join(tmpdir(), "codebox-run-service-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const settle = () => new Promise<void>((r) => setImmediate(r));

function outcome(over: Partial<SandboxOutcome> = {}): SandboxOutcome {
  return {
    containerId: "ctr-1",
    exitCode: 0,
    stdout: "hello\n",
    stderr: "",
    stdoutBytes: 6,
    stderrBytes: 0,
    stdoutTruncated: false,
    stderrTruncated: false,
    timedOut: false,
    oomKilled: false,
    durationMs: 42,
    ...over,
  };
}

/** A backend that prepares instantly and runs whatever the test scripts. */
function fakeBackend() {
  const prepared: PrepareRequest[] = [];
  const runs: Array<{ sandbox: PreparedSandbox; input: RunInput }> = [];
  const discarded: string[] = [];
  let script: (input: RunInput) => Promise<SandboxOutcome> = async () => outcome();
  const methods = {
    prepare: vi.fn(async (spec: PrepareRequest): Promise<PreparedSandbox> => {
      prepared.push(spec);
      return { id: spec.id, createdAt: Date.now(), dead: false };
    }),
    run: vi.fn(async (sandbox: PreparedSandbox, input: RunInput) => {
      runs.push({ sandbox, input });
      return script(input);
    }),
    discard: vi.fn(async (p: PreparedSandbox) => {
      discarded.push(p.id);
    }),
    sandboxUid: () => 10001,
    activeContainers: () => 0,
    close: async () => {},
  };
  const backend = Object.assign(backendWith(methods, "not used by RunService"), methods);
  return {
    backend,
    prepared,
    runs,
    discarded,
    onRun(fn: (input: RunInput) => Promise<SandboxOutcome>) {
      script = fn;
    },
  };
}

const services: RunService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

function setup(flags: Record<string, unknown> = {}) {
  const dataDir = mkdtempSync(join(base, "data-"));
  const config = loadConfig({
    env: {},
    flags: { dataDir, "sandbox.pool": { size: 0, maxTotal: 0, idleMs: 1000 }, ...flags },
  });
  const fake = fakeBackend();
  const audit: AuditRecord[] = [];
  const metrics = { run: vi.fn() };
  const service = new RunService({
    config,
    backend: fake.backend,
    dirs: new UserDirectories(dataDir, 10001, undefined),
    logger: createLogger({ level: "silent" }),
    audit: { write: (r) => audit.push(r), close: async () => {} },
    metrics: metrics as unknown as Metrics,
  });
  services.push(service);
  return { service, fake, audit, metrics, dataDir, config };
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe("RunService: what it refuses before taking a slot", () => {
  it("refuses code over maxCodeBytes, counted in UTF-8 bytes, before preparing anything", async () => {
    const { service, fake } = setup({ "sandbox.maxCodeBytes": 10 });
    await expect(service.execute({ userId: "alice", code: "é".repeat(6), language: "javascript" })).rejects.toThrow(InputError);
    await expect(service.execute({ userId: "alice", code: "é".repeat(6), language: "javascript" })).rejects.toThrow(/12 bytes; the limit is 10 bytes/);
    expect(fake.backend.prepare).not.toHaveBeenCalled();
    await expect(service.execute({ userId: "alice", code: "é".repeat(5), language: "javascript" })).resolves.toMatchObject({ exitCode: 0 });
  });

  it("refuses a timeoutMs above the profile's limit, and takes one at the limit", async () => {
    const { service, fake } = setup();
    await expect(service.execute({ userId: "alice", code: "1", language: "typescript", timeoutMs: 30_001 })).rejects.toThrow(InputError);
    await expect(service.execute({ userId: "alice", code: "1", language: "typescript", timeoutMs: 20_000, profile: "light" })).rejects.toThrow(/limit of 10000 ms \(profile "light"\)/);
    expect(fake.backend.prepare).not.toHaveBeenCalled();
    await service.execute({ userId: "alice", code: "1", language: "typescript", timeoutMs: 30_000 });
    expect(fake.runs[0]!.input.timeoutMs).toBe(30_000);
  });

  it("refuses a language the chosen runtime does not run, and a runtime the server turned off", async () => {
    const { service, fake } = setup({ "sandbox.runtimes": ["node", "python"] });
    await expect(service.execute({ userId: "alice", code: "print(1)", language: "python", runtime: "bun" })).rejects.toThrow(InputError);
    await expect(service.execute({ userId: "alice", code: "1", language: "typescript", runtime: "bun" })).rejects.toThrow(/turned off/);
    expect(fake.backend.prepare).not.toHaveBeenCalled();
  });

  it("refuses new runs with BusyError once it stops accepting, preparing nothing", async () => {
    const { service, fake } = setup();
    service.stopAccepting();
    const err = await service.execute({ userId: "alice", code: "1", language: "javascript" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect(err).toMatchObject({ code: "CODEBOX_BUSY" });
    expect(fake.backend.prepare).not.toHaveBeenCalled();
  });

  it("refuses a hostile user id without creating directories or containers", async () => {
    const { service, fake } = setup();
    await expect(service.execute({ userId: "../alice", code: "1", language: "javascript" })).rejects.toMatchObject({ code: "CODEBOX_UNSAFE_PATH" });
    expect(fake.backend.prepare).not.toHaveBeenCalled();
    expect(service.inFlight).toEqual({ active: 0, queued: 0 });
  });
});

describe("RunService: a cold run", () => {
  it("prepares a container with the user's mounts and the profile, named after the run", async () => {
    const { service, fake, dataDir, config } = setup();
    const result = await service.execute({ userId: "alice", code: "console.log(1)", language: "typescript" });
    expect(fake.prepared).toHaveLength(1);
    expect(fake.prepared[0]).toMatchObject({
      id: result.runId,
      userId: "alice",
      runtime: "node",
      timeoutMs: 30_000,
      idleMs: 0,
      mounts: { workspace: join(dataDir, "users", "alice", "workspace"), skills: join(dataDir, "users", "alice", "skills") },
      profile: { name: "standard", ...config.sandbox.profiles.standard, maxCodeBytes: config.sandbox.maxCodeBytes },
    });
  });

  it("hands the backend the run id, code, language, default timeout, warm:false and an empty env", async () => {
    const { service, fake } = setup();
    const result = await service.execute({ userId: "alice", code: "console.log(1)", language: "javascript" });
    const { sandbox, input } = fake.runs[0]!;
    expect(sandbox.id).toBe(result.runId);
    expect(input).toMatchObject({ runId: result.runId, code: "console.log(1)", language: "javascript", plain: true, timeoutMs: 30_000, warm: false, env: {} });
    expect(input.spill).toBeUndefined();
    expect(result.warm).toBe(false);
  });

  it("hands Node TypeScript stripped on the host, marked plain only when it imports nothing but builtins", async () => {
    const { service, fake } = setup();
    await service.execute({ userId: "alice", code: 'import { readFileSync } from "node:fs";\nconst n: number = 1;\nconsole.log(n, readFileSync);', language: "typescript" });
    expect(fake.runs[0]!.input).toMatchObject({ language: "javascript", plain: true });
    expect(fake.runs[0]!.input.code).toContain("const n = 1;");
    expect(fake.runs[0]!.input.code.split("\n")).toHaveLength(3); // lines kept: error positions hold
    await service.execute({ userId: "alice", code: 'import { echo } from "/servers/rows/index.ts";\nawait echo({});', language: "typescript" });
    expect(fake.runs[1]!.input).toMatchObject({ language: "javascript", plain: false });
    await service.execute({ userId: "alice", code: "console.log(import.meta.url, await import('node:os'))", language: "javascript" });
    expect(fake.runs[2]!.input).toMatchObject({ plain: false });
    // What the host cannot strip goes as it is: the sandbox reports the error as it always did.
    await service.execute({ userId: "alice", code: "const a: number = ;", language: "typescript" });
    expect(fake.runs[3]!.input).toMatchObject({ code: "const a: number = ;", language: "typescript", plain: false });
    // Bun strips TypeScript itself.
    await service.execute({ userId: "alice", code: "const n: number = 1;", language: "typescript", runtime: "bun" });
    expect(fake.runs[4]!.input).toMatchObject({ code: "const n: number = 1;", language: "typescript" });
  });

  it("returns the outcome's fields with the run id, and never the host paths of spill files", async () => {
    const { service, fake } = setup();
    fake.onRun(async () => outcome({ exitCode: 3, stderr: "boom", stdoutSpill: "/host/spill.out", stderrSpill: "/host/spill.err", stdoutTruncated: true }));
    const result = await service.execute({ userId: "alice", code: "x", language: "javascript" });
    expect(result).toMatchObject({ exitCode: 3, stderr: "boom", stdout: "hello\n", durationMs: 42, containerId: "ctr-1", stdoutTruncated: true });
    expect(result.runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(result).not.toHaveProperty("stdoutSpill");
    expect(result).not.toHaveProperty("stderrSpill");
  });

  it("writes one audit record with the runtimes, the code's sha256 and the exit code", async () => {
    const { service, fake, audit, metrics } = setup();
    fake.onRun(async () => outcome({ exitCode: 2, durationMs: 7 }));
    const result = await service.execute({ userId: "alice", code: "process.exit(2)", language: "javascript" });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toEqual({
      kind: "run",
      userId: "alice",
      runId: result.runId,
      codeSha256: sha256("process.exit(2)"),
      language: "javascript",
      runtime: "node",
      ociRuntime: "runc",
      durationMs: 7,
      exitCode: 2,
      timedOut: false,
      oomKilled: false,
      canceled: false,
      upstreamCalls: 0,
      refusals: 0,
      warm: false,
    } satisfies RunAuditRecord);
    expect(metrics.run).toHaveBeenCalledExactlyOnceWith("nonzero_exit", 7);
  });

  it("runs Python on the python runtime and records it so", async () => {
    const { service, fake, audit } = setup({ "sandbox.ociRuntime": "runsc" });
    await service.execute({ userId: "bob", code: "print(1)", language: "python" });
    expect(fake.prepared[0]!.runtime).toBe("python");
    expect(audit[0]).toMatchObject({ runtime: "python", ociRuntime: "runsc", language: "python" });
  });

  it("counts each outcome by its kind: timeout over oom over exit code", async () => {
    const { service, fake, metrics } = setup();
    const cases: Array<[Partial<SandboxOutcome>, string]> = [
      [{ exitCode: 0 }, "ok"],
      [{ exitCode: 1 }, "nonzero_exit"],
      [{ exitCode: null, oomKilled: true }, "oom"],
      [{ exitCode: null, timedOut: true, oomKilled: true }, "timeout"],
    ];
    for (const [over] of cases) {
      fake.onRun(async () => outcome(over));
      await service.execute({ userId: "alice", code: "x", language: "javascript" });
    }
    expect(metrics.run.mock.calls.map((c) => c[0])).toEqual(cases.map((c) => c[1]));
  });

  it("with the pool off, prepares exactly one container per run and none in the background", async () => {
    const { service, fake } = setup();
    await service.execute({ userId: "alice", code: "1", language: "javascript" });
    await service.execute({ userId: "alice", code: "2", language: "javascript" });
    await settle();
    expect(fake.backend.prepare).toHaveBeenCalledTimes(2);
    expect(service.pool.total).toBe(0);
    expect(service.inFlight).toEqual({ active: 0, queued: 0 });
  });
});

describe("RunService: when the backend fails", () => {
  it("propagates the error, audits it, counts it, and gives the slot back", async () => {
    const { service, fake, audit, metrics } = setup({ "limits.maxConcurrentRuns": 1, "limits.maxQueuedRuns": 0 });
    fake.onRun(async () => {
      throw new Error("container vanished");
    });
    await expect(service.execute({ userId: "alice", code: "x", language: "javascript" })).rejects.toThrow("container vanished");
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ kind: "run", userId: "alice", exitCode: null, canceled: false, durationMs: 0, error: "container vanished", codeSha256: sha256("x") });
    expect(metrics.run).toHaveBeenCalledWith("error", 0);
    expect(service.inFlight).toEqual({ active: 0, queued: 0 });
    // With one slot and no queue, a leaked slot would make this BusyError.
    fake.onRun(async () => outcome());
    await expect(service.execute({ userId: "alice", code: "y", language: "javascript" })).resolves.toMatchObject({ exitCode: 0 });
  });

  it("propagates a failing prepare the same way", async () => {
    const { service, fake, audit, metrics } = setup({ "limits.maxConcurrentRuns": 1, "limits.maxQueuedRuns": 0 });
    fake.backend.prepare.mockRejectedValueOnce(new Error("no image"));
    await expect(service.execute({ userId: "alice", code: "x", language: "javascript" })).rejects.toThrow("no image");
    expect(audit[0]).toMatchObject({ error: "no image" });
    expect(metrics.run).toHaveBeenCalledWith("error", 0);
    await expect(service.execute({ userId: "alice", code: "x", language: "javascript" })).resolves.toMatchObject({ exitCode: 0 });
  });

  it("counts a run canceled by its client as canceled, not as an error", async () => {
    const { service, fake, audit, metrics } = setup();
    const ctl = new AbortController();
    fake.onRun(async () => {
      ctl.abort();
      throw new CanceledError();
    });
    await expect(service.execute({ userId: "alice", code: "x", language: "javascript", signal: ctl.signal })).rejects.toBeInstanceOf(CanceledError);
    expect(metrics.run).toHaveBeenCalledWith("canceled", 0);
    expect(audit[0]).toMatchObject({ canceled: true });
  });

  it("counts errors in real Prometheus metrics", async () => {
    const dataDir = mkdtempSync(join(base, "data-"));
    const config = loadConfig({ env: {}, flags: { dataDir, "sandbox.pool": { size: 0, maxTotal: 0, idleMs: 1000 } } });
    const fake = fakeBackend();
    const metrics = new Metrics({ queued: () => 0, running: () => 0, containers: () => 0 });
    const service = new RunService({ config, backend: fake.backend, dirs: new UserDirectories(dataDir, 10001, undefined), logger: createLogger({ level: "silent" }), metrics });
    services.push(service);
    await service.execute({ userId: "alice", code: "x", language: "javascript" });
    fake.onRun(async () => {
      throw new Error("boom");
    });
    await expect(service.execute({ userId: "alice", code: "x", language: "javascript" })).rejects.toThrow("boom");
    const values = (await metrics.registry.getSingleMetric("codebox_runs_total")!.get()).values;
    expect(values.map((v) => [v.labels.outcome, v.value]).sort()).toEqual([
      ["error", 1],
      ["ok", 1],
    ]);
  });
});

describe("RunService with a warm pool", () => {
  it("refills after a run and hands the warm container to the same user's next run", async () => {
    const { service, fake } = setup({ "sandbox.pool": { size: 1, maxTotal: 1, idleMs: 5_000 } });
    const first = await service.execute({ userId: "alice", code: "1", language: "javascript" });
    await vi.waitFor(() => expect(service.pool.total).toBe(1));
    const warm = fake.prepared.find((p) => p.id.startsWith("warm-"));
    expect(warm).toMatchObject({ userId: "alice", runtime: "node", idleMs: 5_000 });
    await service.execute({ userId: "alice", code: "2", language: "javascript" });
    const second = fake.runs[1]!;
    expect(second.input.warm).toBe(true);
    expect(second.sandbox.id).toBe(warm!.id);
    expect(second.input.runId).not.toBe(first.runId);
    // Bob never gets alice's container (it is keyed by user): his run is cold.
    await vi.waitFor(() => expect(service.pool.total).toBe(1));
    await service.execute({ userId: "bob", code: "3", language: "javascript" });
    expect(fake.runs[2]!.input.warm).toBe(false);
  });
});

describe("poolKey and outcomeOf", () => {
  it("keys warm containers by user, profile and runtime", () => {
    expect(poolKey("alice", "standard", "node")).toBe("alice|standard|node");
    expect(poolKey("alice", "standard", "bun")).not.toBe(poolKey("alice", "standard", "node"));
    expect(poolKey("alice", "light", "node")).not.toBe(poolKey("alice", "heavy", "node"));
  });

  it.each([
    [{ timedOut: false, oomKilled: false, exitCode: 0 }, "ok"],
    [{ timedOut: false, oomKilled: false, exitCode: 1 }, "nonzero_exit"],
    [{ timedOut: false, oomKilled: false, exitCode: null }, "nonzero_exit"],
    [{ timedOut: false, oomKilled: true, exitCode: 0 }, "oom"],
    [{ timedOut: true, oomKilled: false, exitCode: 0 }, "timeout"],
    [{ timedOut: true, oomKilled: true, exitCode: null }, "timeout"],
  ] as const)("classifies %o as %s", (r, expected) => {
    expect(outcomeOf(r)).toBe(expected);
  });

  it("lets a timeout win over everything and an OOM kill over any exit code", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.option(fc.integer({ min: -1, max: 255 }), { nil: null }), (oomKilled, exitCode) => {
        expect(outcomeOf({ timedOut: true, oomKilled, exitCode })).toBe("timeout");
        expect(outcomeOf({ timedOut: false, oomKilled: true, exitCode })).toBe("oom");
      }),
      { numRuns: 100 },
    );
  });
});
