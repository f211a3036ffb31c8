import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { createApp, type App } from "../src/app.js";
import { loadConfig } from "../src/config/load.js";
import type { Config } from "../src/config/schema.js";
import { LABEL } from "../src/sandbox/docker/labels.js";
import { createLogger, type Logger } from "../src/shared/logger.js";

export const repoRoot = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const cliPath = join(repoRoot, "dist", "cli.js");

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `codebox-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function testLogger(): Logger {
  return createLogger({ level: process.env.CODEBOX_TEST_LOG === "1" ? "debug" : "silent" });
}

/** A config for tests: a fresh data dir, plus any overrides (dotted keys, as flags). */
export function testConfig(flags: Record<string, unknown> = {}): Config {
  return loadConfig({ env: {}, flags: { dataDir: tempDir("data"), logLevel: "silent", ...flags } });
}

export function testApp(flags: Record<string, unknown> = {}): App {
  const config = testConfig(flags);
  return createApp(config, testLogger());
}

export const docker = new Docker({ socketPath: "/var/run/docker.sock" });

/** Containers carrying our labels, optionally only those with `label=value`. */
export async function ourContainers(filter?: { label: string; value: string }): Promise<Docker.ContainerInfo[]> {
  const labels = [`${LABEL.managed}=true`];
  if (filter) labels.push(`${filter.label}=${filter.value}`);
  return docker.listContainers({ all: true, filters: { label: labels } });
}

/** Polls until no labelled container matches (AutoRemove and force-remove are asynchronous). */
export async function waitForNoContainers(filter?: { label: string; value: string }, timeoutMs = 10_000): Promise<Docker.ContainerInfo[]> {
  const deadline = Date.now() + timeoutMs;
  let left = await ourContainers(filter);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    left = await ourContainers(filter);
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
