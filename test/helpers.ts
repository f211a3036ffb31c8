import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, inflateSync } from "node:zlib";
import Docker from "dockerode";
import { createApp, type App } from "../src/app.js";
import { loadConfig } from "../src/config/load.js";
import type { Config } from "../src/config/schema.js";
import { LABEL } from "../src/sandbox/docker/labels.js";
import { createLogger, type Logger } from "../src/shared/logger.js";

export const repoRoot = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const cliPath = join(repoRoot, "dist", "cli.js");

/** Every test's temporary directories live under one root per run, removed by the global teardown. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(process.env.CODEBOX_TEST_TMP ?? tmpdir(), `codebox-${prefix}-`));
}

/** Mount points at or under `dir` (users' quota volumes), deepest first. */
export function mountsUnder(dir: string): string[] {
  const text = readFileSync("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .map((l) => l.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p): p is string => !!p && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Removes a test's directory, unmounting any quota volume in it first (rm must never walk into a mount). */
export function removeDir(dir: string): void {
  for (const m of mountsUnder(dir)) {
    try {
      execFileSync("umount", [m]);
    } catch {
      execFileSync("umount", ["-l", m]);
    }
  }
  if (mountsUnder(dir).length > 0) throw new Error(`could not unmount everything under ${dir}`);
  rmSync(dir, { recursive: true, force: true });
}

export function testLogger(): Logger {
  return createLogger({ level: process.env.CODEBOX_TEST_LOG === "1" ? "debug" : "silent" });
}

/** A config for tests: a fresh data dir, plus any overrides (dotted keys, as flags). */
/**
 * The runtime tests use where they do not choose one: runc, or CODEBOX_TEST_RUNTIME=runsc to run
 * the whole suite under gVisor (the isolation tests run under both either way).
 */
export const defaultTestRuntime = process.env.CODEBOX_TEST_RUNTIME === "runsc" ? "runsc" : "runc";

export function testConfig(flags: Record<string, unknown> = {}): Config {
  return loadConfig({ env: {}, flags: { dataDir: tempDir("data"), logLevel: "silent", "sandbox.ociRuntime": defaultTestRuntime, ...flags } });
}

/** Environment for a server process started by a test. */
export function serverProcessEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", CODEBOX_OCI_RUNTIME: defaultTestRuntime, ...extra };
}

export function testApp(flags: Record<string, unknown> = {}): App {
  const config = testConfig(flags);
  return createApp(config, testLogger());
}

export const docker = new Docker({ socketPath: "/var/run/docker.sock" });

/** True for a warm-pool container that has not been handed a run (its run label is its slot id). */
export const isIdleWarm = (c: Docker.ContainerInfo) => (c.Names ?? []).some((n) => n.startsWith("/codebox-warm-"));

/**
 * Containers carrying our labels, optionally only those with `label=value`. Idle warm-pool
 * containers are left out unless asked for: they exist by design between runs, and the app's
 * close() (checked after each file) and the global teardown (after all) prove they go too.
 */
export async function ourContainers(filter?: { label: string; value: string }, includeWarm = false): Promise<Docker.ContainerInfo[]> {
  const labels = [`${LABEL.managed}=true`];
  if (filter) labels.push(`${filter.label}=${filter.value}`);
  const listed = await docker.listContainers({ all: true, filters: { label: labels } });
  const all = (await Promise.all(listed.map(async (c) => ((await isGhost(c)) ? undefined : c)))).filter((c): c is Docker.ContainerInfo => c !== undefined);
  return includeWarm ? all : all.filter((c) => !isIdleWarm(c));
}

/**
 * An entry dockerd still lists as "Removal In Progress" although the container is gone (its
 * inspect answers 404). Seen with gVisor under heavy load: a dockerd bookkeeping ghost that only
 * an engine restart clears, not a container the tests left behind.
 */
async function isGhost(c: Docker.ContainerInfo): Promise<boolean> {
  if (c.State !== "removing") return false;
  return docker
    .getContainer(c.Id)
    .inspect()
    .then(
      () => false,
      (err: { statusCode?: number }) => err.statusCode === 404,
    );
}

/** Polls until no labelled container matches (AutoRemove and force-remove are asynchronous). */
export async function waitForNoContainers(filter?: { label: string; value: string }, timeoutMs = 10_000, includeWarm = false): Promise<Docker.ContainerInfo[]> {
  const deadline = Date.now() + timeoutMs;
  let left = await ourContainers(filter, includeWarm);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    left = await ourContainers(filter, includeWarm);
  }
  return left;
}

export const rowsServerPath = join(repoRoot, "test", "fixtures", "rows-server.mjs");
export const everythingServerPath = join(repoRoot, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js");

/** A logger that keeps its lines, for asserting on what was logged. */
export function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { logger, lines };
}

/** After a test: no container of this app's remains, idle warm-pool containers aside. */
export async function expectNoRunContainers(app: App): Promise<void> {
  const left = await waitForNoContainers({ label: LABEL.instance, value: app.backend.instance.id });
  if (left.length) throw new Error(`containers left after the test: ${left.map((c) => c.Names.join(",")).join("; ")}`);
}

/** Closes an app and proves every container of its own is gone (warm ones included), then removes its data. */
export async function closeAndCheck(app: App): Promise<void> {
  await app.close();
  const left = await waitForNoContainers({ label: LABEL.instance, value: app.backend.instance.id }, 10_000, true);
  if (left.length) throw new Error(`containers left after close(): ${left.map((c) => c.Names.join(",")).join("; ")}`);
  removeDir(app.config.dataDir);
}

/**
 * Starts the built CLI as the multi-user HTTP service (`serve --http --config`) and resolves with
 * its process and base URL once it logs where it listens. Everything it writes to stderr is kept
 * (`stderr()`), for failure messages.
 */
export async function startHttpServer(configFile: string, dataDir: string): Promise<{ server: ChildProcess; baseUrl: string; stderr: () => string }> {
  let text = "";
  const server = spawn(process.execPath, [cliPath, "serve", "--http", "--config", configFile], { env: serverProcessEnv({ CODEBOX_DATA_DIR: dataDir }), stdio: ["ignore", "ignore", "pipe"] });
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${text}`)), 30_000);
    server.stderr!.on("data", (d: Buffer) => {
      text += d.toString();
      const m = /"url":"(http:\/\/[^"]+)\/mcp"/.exec(text);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
  });
  return { server, baseUrl, stderr: () => text };
}

/**
 * Decodes a PNG far enough to prove it is one: the chunks, their CRCs, and the image data, which
 * must inflate to exactly the rows its header promises (8-bit colour types only).
 */
export function decodePng(png: Buffer): { width: number; height: number; channels: number } {
  if (!png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error("not a PNG signature");
  let i = 8;
  let header: { width: number; height: number; depth: number; colour: number } | undefined;
  const idat: Buffer[] = [];
  for (;;) {
    const length = png.readUInt32BE(i);
    const type = png.toString("latin1", i + 4, i + 8);
    const data = png.subarray(i + 8, i + 8 + length);
    if (crc32(png.subarray(i + 4, i + 8 + length)) !== png.readUInt32BE(i + 8 + length)) throw new Error(`bad CRC in ${type}`);
    if (type === "IHDR") header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8]!, colour: data[9]! };
    if (type === "IDAT") idat.push(data);
    i += 12 + length;
    if (type === "IEND") break;
  }
  if (header?.depth !== 8) throw new Error("not an 8-bit PNG");
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[header.colour]!;
  const raw = inflateSync(Buffer.concat(idat));
  if (raw.length !== header.height * (1 + header.width * channels)) throw new Error(`image data is ${raw.length} bytes, not ${header.height} rows of ${header.width}×${channels}`);
  return { width: header.width, height: header.height, channels };
}
