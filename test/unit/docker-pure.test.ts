// The parts of the Docker adapter that need no engine: the seccomp profile as the engine gets it,
// the uid sandboxed code runs as, how engine failures become domain errors, the early-output
// sink of a waiting container, and image bookkeeping against a hand-written fake engine.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Writable } from "node:stream";
import type Docker from "dockerode";
import { afterAll, describe, expect, it } from "vitest";
import type { Config } from "../../src/config/schema.js";
import { SwitchableSink } from "../../src/sandbox/docker/attached-container.js";
import { engineStatus, isEngineUnreachable, toEngineError, toSandboxError } from "../../src/sandbox/docker/engine.js";
import { DockerImages } from "../../src/sandbox/docker/images.js";
import { SANDBOX_IMAGE_UID, sandboxUid } from "../../src/sandbox/docker/sandbox-uid.js";
import { forOciRuntime, loadSeccompProfile, parseSeccompProfile, type SeccompProfile } from "../../src/sandbox/docker/seccomp.js";
import { type CodeboxError, EngineUnavailableError, ImageBuildError, InputError, SandboxError } from "../../src/shared/errors.js";
import { createLogger } from "../../src/shared/logger.js";
import { collector } from "./fakes.js";

const silentLogger = createLogger({ level: "silent" });
const PROFILE_PATH = join(import.meta.dirname, "..", "..", "seccomp", "profile.json");
const tmp = mkdtempSync(join(tmpdir(), "codebox-docker-pure-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs `fn` and returns what it threw (fails the test if it did not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

const errno = (code: string, address?: string) => Object.assign(new Error(`connect ${code}`), { code, ...(address ? { address } : {}) });
const engineSaid = (statusCode: number, message = `(HTTP code ${statusCode}) engine says no`) => Object.assign(new Error(message), { statusCode });

describe("seccomp profile for an OCI runtime", () => {
  const profile: SeccompProfile = {
    defaultAction: "SCMP_ACT_ERRNO",
    syscalls: [
      { names: ["read", "write"], action: "SCMP_ACT_ALLOW" },
      { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
      { names: ["clone3", "unshare"], action: "SCMP_ACT_ERRNO", errnoRet: 1 },
      { names: ["ptrace"], action: "SCMP_ACT_ERRNO", errnoRet: 1 },
    ],
  };

  it("under runsc turns the lone clone3 rule into an allow without errnoRet, and leaves every other rule as it is", () => {
    const out = forOciRuntime(profile, "runsc");
    expect(out.defaultAction).toBe("SCMP_ACT_ERRNO");
    expect(out.syscalls).toEqual([
      { names: ["read", "write"], action: "SCMP_ACT_ALLOW" },
      { names: ["clone3"], action: "SCMP_ACT_ALLOW" },
      { names: ["clone3", "unshare"], action: "SCMP_ACT_ERRNO", errnoRet: 1 },
      { names: ["ptrace"], action: "SCMP_ACT_ERRNO", errnoRet: 1 },
    ]);
  });

  it("under runsc does not change the profile it was given", () => {
    const before = structuredClone(profile);
    forOciRuntime(profile, "runsc");
    expect(profile).toEqual(before);
  });

  it("under runc returns the profile unchanged", () => {
    expect(forOciRuntime(profile, "runc")).toBe(profile);
    expect(profile.syscalls[1]).toEqual({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 });
  });

  it.each([
    ["text that is not JSON", "{ not json"],
    ["no defaultAction", JSON.stringify({ syscalls: [] })],
    ["a defaultAction that is not a string", JSON.stringify({ defaultAction: 1, syscalls: [] })],
    ["syscalls that are not an array", JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: {} })],
    ["no syscalls", JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO" })],
    ["JSON null", "null"],
    ["a JSON array", "[]"],
  ])("refuses %s with a SandboxError naming the file", (_what, text) => {
    const err = thrown(() => parseSeccompProfile(text, "/etc/codebox/odd-profile.json"));
    expect(err).toBeInstanceOf(SandboxError);
    expect((err as SandboxError).code).toBe("CODEBOX_SANDBOX_FAILED");
    expect((err as Error).message).toContain("/etc/codebox/odd-profile.json");
  });

  it("parses a usable profile as it is", () => {
    const text = JSON.stringify(profile);
    expect(parseSeccompProfile(text, "p.json")).toEqual(profile);
  });

  it("loads the shipped profile as JSON text, unchanged under runc", () => {
    const shipped = JSON.parse(readFileSync(PROFILE_PATH, "utf8")) as SeccompProfile;
    expect(JSON.parse(loadSeccompProfile(PROFILE_PATH, "runc"))).toEqual(shipped);
  });

  it("loads the shipped profile under runsc with clone3 allowed and nothing else changed", () => {
    const shipped = JSON.parse(readFileSync(PROFILE_PATH, "utf8")) as SeccompProfile;
    const loaded = JSON.parse(loadSeccompProfile(PROFILE_PATH, "runsc")) as SeccompProfile;
    const clone3 = (p: SeccompProfile) => p.syscalls.findIndex((s) => s.names.length === 1 && s.names[0] === "clone3");
    expect(clone3(shipped)).toBeGreaterThanOrEqual(0);
    expect(shipped.syscalls[clone3(shipped)]!.action).not.toBe("SCMP_ACT_ALLOW");
    expect(loaded.syscalls[clone3(shipped)]).toEqual({ names: ["clone3"], action: "SCMP_ACT_ALLOW" });
    expect(loaded.syscalls.filter((_, i) => i !== clone3(shipped))).toEqual(shipped.syscalls.filter((_, i) => i !== clone3(shipped)));
    expect(loaded.defaultAction).toBe(shipped.defaultAction);
  });

  it("refuses a missing file with a SandboxError naming the path", () => {
    const missing = join(tmp, "no-such-profile.json");
    const err = thrown(() => loadSeccompProfile(missing, "runc"));
    expect(err).toBeInstanceOf(SandboxError);
    expect((err as Error).message).toContain(missing);
  });

  it("refuses a file that is not a profile with a SandboxError naming the path", () => {
    const bad = join(tmp, "bad-profile.json");
    writeFileSync(bad, JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: "all" }));
    const err = thrown(() => loadSeccompProfile(bad, "runsc"));
    expect(err).toBeInstanceOf(SandboxError);
    expect((err as Error).message).toContain(bad);
  });
});

describe("sandbox uid", () => {
  it("is the configured uid whatever the server runs as", () => {
    expect(sandboxUid(1234, 0)).toBe(1234);
    expect(sandboxUid(1234, 1000)).toBe(1234);
  });

  it("is the image's unprivileged user (10001) when the server runs as root", () => {
    expect(SANDBOX_IMAGE_UID).toBe(10001);
    expect(sandboxUid(undefined, 0)).toBe(10001);
  });

  it("is the server's own uid when the server is not root", () => {
    expect(sandboxUid(undefined, 1000)).toBe(1000);
    expect(sandboxUid(undefined, 65534)).toBe(65534);
    expect(sandboxUid(undefined, 1)).toBe(1);
  });
});

describe("engine errors", () => {
  const unreachable = ["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND"];

  it.each(unreachable)("counts %s as an engine that did not answer", (code) => {
    expect(isEngineUnreachable(errno(code))).toBe(true);
  });

  it("does not count an engine's refusal or anything else as unreachable", () => {
    for (const err of [engineSaid(404), engineSaid(500), errno("EEXIST"), errno("econnrefused"), { code: 111 }, new Error("ECONNREFUSED"), null, undefined, "ECONNREFUSED", 0]) {
      expect(isEngineUnreachable(err), String(err)).toBe(false);
    }
  });

  it("maps an unreachable engine to EngineUnavailableError naming the code and address, with the original as cause", () => {
    const original = errno("ECONNREFUSED", "/var/run/docker.sock");
    const mapped = toEngineError(original);
    expect(mapped).toBeInstanceOf(EngineUnavailableError);
    expect((mapped as EngineUnavailableError).code).toBe("CODEBOX_ENGINE_UNAVAILABLE");
    expect((mapped as Error).message).toContain("ECONNREFUSED at /var/run/docker.sock");
    expect((mapped as Error).cause).toBe(original);
  });

  it("passes any other error through as the same object", () => {
    for (const err of [engineSaid(409), new Error("boom"), errno("EEXIST")]) expect(toEngineError(err)).toBe(err);
  });

  it("reads the engine's HTTP status only when it is a number", () => {
    expect(engineStatus(engineSaid(404))).toBe(404);
    expect(engineStatus({ statusCode: 409 })).toBe(409);
    expect(engineStatus({ statusCode: "404" })).toBeUndefined();
    expect(engineStatus(new Error("x"))).toBeUndefined();
    expect(engineStatus(null)).toBeUndefined();
    expect(engineStatus(undefined)).toBeUndefined();
  });

  it("toSandboxError passes the project's own errors through unchanged", () => {
    const own = new InputError("bad input");
    expect(toSandboxError(own, "create")).toBe(own);
    const unavailable = new EngineUnavailableError("ECONNREFUSED");
    expect(toSandboxError(unavailable, "run")).toBe(unavailable);
    // not wrapped a second time, even when it carries the engine's status
    const wrapped = Object.assign(new SandboxError("The engine refused to create the sandbox: conflict."), { statusCode: 409 });
    expect(toSandboxError(wrapped, "run")).toBe(wrapped);
  });

  it.each(["create", "run"] as const)("toSandboxError turns an engine's refusal to %s into a SandboxError saying so", (what) => {
    const original = engineSaid(500, "(HTTP code 500) server error - OCI runtime create failed");
    const mapped = toSandboxError(original, what);
    expect(mapped).toBeInstanceOf(SandboxError);
    expect((mapped as Error).message).toContain(`refused to ${what}`);
    expect((mapped as Error).message).toContain("OCI runtime create failed");
    expect((mapped as Error).cause).toBe(original);
  });

  it("toSandboxError turns an engine that did not answer into EngineUnavailableError", () => {
    expect(toSandboxError(errno("ENOENT", "/run/docker.sock"), "create")).toBeInstanceOf(EngineUnavailableError);
  });

  it("toSandboxError leaves an unknown error as it is", () => {
    const err = new TypeError("oops");
    expect(toSandboxError(err, "run")).toBe(err);
  });
});

describe("early output of a waiting container", () => {
  const flushed = (w: Writable) => new Promise<void>((resolve) => w.write(Buffer.alloc(0), () => resolve()));

  it("keeps what is written before a run attaches and hands it on in order", async () => {
    const early = new SwitchableSink();
    early.write("boot ");
    early.write(Buffer.from("failed: "));
    early.write("ENOMEM\n");
    await flushed(early);
    const out = collector();
    early.attach(out.sink);
    await flushed(out.sink);
    expect(out.bytes().toString()).toBe("boot failed: ENOMEM\n");
  });

  it("sends what is written after attach straight to the run's target, after the early bytes", async () => {
    const early = new SwitchableSink();
    early.write("early|");
    await flushed(early);
    const out = collector();
    early.attach(out.sink);
    early.write("late-1|");
    early.write("late-2");
    await flushed(early);
    expect(out.bytes().toString()).toBe("early|late-1|late-2");
  });

  it("hands on nothing twice when attached again", async () => {
    const early = new SwitchableSink();
    early.write("once");
    await flushed(early);
    const first = collector();
    early.attach(first.sink);
    const second = collector();
    early.attach(second.sink);
    early.write("!");
    await flushed(early);
    expect(first.bytes().toString()).toBe("once");
    expect(second.bytes().toString()).toBe("!");
  });

  it("keeps the first 64 KiB of early output and drops the rest", async () => {
    const early = new SwitchableSink();
    for (let i = 0; i < 256; i++) early.write(Buffer.alloc(1024, i % 2 === 0 ? 0x61 : 0x62)); // 256 KiB
    await flushed(early);
    const out = collector();
    early.attach(out.sink);
    const kept = out.bytes();
    expect(kept.length).toBe(64 * 1024);
    const expected = Buffer.concat(Array.from({ length: 64 }, (_, i) => Buffer.alloc(1024, i % 2 === 0 ? 0x61 : 0x62)));
    expect(kept.equals(expected)).toBe(true);
  });

  it("bounds early output by 64 KiB plus the one write that crossed the limit", async () => {
    const early = new SwitchableSink();
    const big = Buffer.alloc(256 * 1024, 0x7a);
    early.write(Buffer.alloc(64 * 1024 - 1, 0x61));
    early.write(big);
    for (let i = 0; i < 100; i++) early.write(big);
    await flushed(early);
    const out = collector();
    early.attach(out.sink);
    expect(out.bytes().length).toBeLessThanOrEqual(64 * 1024 + big.length);
  });
});

describe("sandbox images", () => {
  const sandbox = { image: "x:1", images: { bun: "b:1", python: "p:1" } } as unknown as Config["sandbox"];

  /** A fake engine: `present` tags inspect fine; `failWith` makes every inspect throw that. */
  function fakeDocker(options: { present?: string[]; failWith?: unknown } = {}) {
    const present = new Set(options.present ?? []);
    const inspected: string[] = [];
    const state = { failWith: options.failWith, present };
    const docker = {
      getImage(tag: string) {
        return {
          async inspect() {
            inspected.push(tag);
            await new Promise((r) => setImmediate(r));
            if (state.failWith) throw state.failWith;
            if (!state.present.has(tag)) throw Object.assign(new Error(`(HTTP code 404) no such image - ${tag}`), { statusCode: 404 });
            return { Id: `sha256:${tag}` };
          },
        };
      },
    };
    return { docker: docker as unknown as Docker, inspected, state };
  }

  it("uses the configured tags for every runtime", () => {
    const { docker } = fakeDocker();
    const images = new DockerImages(docker, sandbox, silentLogger);
    expect([images.tag("node"), images.tag("bun"), images.tag("python")]).toEqual(["x:1", "b:1", "p:1"]);
  });

  it("exists() inspects the runtime's own tag and is true when the engine has it", async () => {
    const { docker, inspected } = fakeDocker({ present: ["b:1"] });
    const images = new DockerImages(docker, sandbox, silentLogger);
    await expect(images.exists("bun")).resolves.toBe(true);
    expect(inspected).toEqual(["b:1"]);
  });

  it("exists() is false when the engine answers 404", async () => {
    const { docker } = fakeDocker({ present: ["b:1"] });
    const images = new DockerImages(docker, sandbox, silentLogger);
    await expect(images.exists("python")).resolves.toBe(false);
  });

  it("exists() reports an engine that did not answer as EngineUnavailableError", async () => {
    const { docker } = fakeDocker({ failWith: errno("ECONNREFUSED", "/var/run/docker.sock") });
    const images = new DockerImages(docker, sandbox, silentLogger);
    const err = await images.exists("node").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineUnavailableError);
    expect((err as CodeboxError).code).toBe("CODEBOX_ENGINE_UNAVAILABLE");
  });

  it("exists() passes on any other engine error as it is", async () => {
    const failure = engineSaid(500);
    const { docker } = fakeDocker({ failWith: failure });
    const images = new DockerImages(docker, sandbox, silentLogger);
    await expect(images.exists("node")).rejects.toBe(failure);
  });

  it.each([
    ["node", "x:1", "sandbox.image"],
    ["python", "p:1", "sandbox.images.python"],
  ] as const)("ensure() refuses to build a configured %s image that is missing, naming the tag and the setting", async (runtime, tag, setting) => {
    const { docker } = fakeDocker();
    const images = new DockerImages(docker, sandbox, silentLogger);
    const err = await images.ensure(runtime).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as CodeboxError).code).toBe("CODEBOX_IMAGE_BUILD_FAILED");
    expect((err as Error).message).toContain(tag);
    expect((err as Error).message).toContain(setting);
  });

  it("ensure() tries again after a failure: the next call inspects anew and succeeds once the image is there", async () => {
    const { docker, inspected, state } = fakeDocker();
    const images = new DockerImages(docker, sandbox, silentLogger);
    await expect(images.ensure("bun")).rejects.toBeInstanceOf(ImageBuildError);
    expect(inspected).toEqual(["b:1"]);
    await expect(images.ensure("bun")).rejects.toBeInstanceOf(ImageBuildError);
    expect(inspected).toEqual(["b:1", "b:1"]);
    state.present.add("b:1");
    await expect(images.ensure("bun")).resolves.toBe("b:1");
    expect(inspected).toHaveLength(3);
  });

  it("ensure() reports an engine that did not answer as EngineUnavailableError, and tries again later", async () => {
    const { docker, inspected, state } = fakeDocker({ present: ["x:1"], failWith: errno("ECONNREFUSED") });
    const images = new DockerImages(docker, sandbox, silentLogger);
    await expect(images.ensure("node")).rejects.toBeInstanceOf(EngineUnavailableError);
    state.failWith = undefined;
    await expect(images.ensure("node")).resolves.toBe("x:1");
    expect(inspected).toEqual(["x:1", "x:1"]);
  });

  it("concurrent ensure() calls for a present image share one inspect, and later calls none", async () => {
    const { docker, inspected } = fakeDocker({ present: ["p:1"] });
    const images = new DockerImages(docker, sandbox, silentLogger);
    const results = await Promise.all(Array.from({ length: 10 }, () => images.ensure("python")));
    expect(results).toEqual(Array(10).fill("p:1"));
    expect(inspected).toEqual(["p:1"]);
    await expect(images.ensure("python")).resolves.toBe("p:1");
    expect(inspected).toEqual(["p:1"]);
  });

  it("concurrent ensure() calls for a missing configured image share one inspect and one failure", async () => {
    const { docker, inspected } = fakeDocker();
    const images = new DockerImages(docker, sandbox, silentLogger);
    const settled = await Promise.allSettled(Array.from({ length: 5 }, () => images.ensure("node")));
    expect(settled.every((s) => s.status === "rejected" && s.reason instanceof ImageBuildError)).toBe(true);
    expect(inspected).toEqual(["x:1"]);
  });
});
