import { type ChildProcess, execFileSync } from "node:child_process";
import { copyFileSync, chmodSync, chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { cliPath, repoRoot, rowsServerPath, tempDir } from "../helpers.js";

export type Runtime = "runc" | "runsc";
/** The language runtime a suite attacks from: Node and Bun run the JavaScript attacks, Python its own. */
export type Flavor = "node" | "bun" | "python";

export interface RunOutcome {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
  oomKilled: boolean;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

/** One MCP client over stdio to a real codebox-mcp server process, as one user. */
export class UserSession {
  client!: Client;
  transport!: StdioClientTransport;

  constructor(
    readonly env: Record<string, string>,
    readonly args: string[],
    readonly flavor: Flavor = "node",
  ) {}

  async start(): Promise<this> {
    this.transport = new StdioClientTransport({ command: process.execPath, args: [cliPath, ...this.args], env: this.env, stderr: "pipe" });
    this.transport.stderr?.on("data", () => {});
    this.client = new Client({ name: "red-team", version: "1" });
    await this.client.connect(this.transport);
    return this;
  }

  get pid(): number | null {
    return this.transport.pid;
  }

  async call(name: string, args: Record<string, unknown>, timeoutMs = 180_000): Promise<CallToolResult> {
    return (await this.client.callTool({ name, arguments: args }, undefined, { timeout: timeoutMs })) as CallToolResult;
  }

  /** Runs code through execute_code; a tool error becomes an exception with its text. */
  async run(code: string, opts: { timeoutMs?: number; language?: string; allowHosts?: string[] } = {}): Promise<RunOutcome> {
    const target = this.flavor === "python" ? { language: "python" } : { language: opts.language ?? "typescript", runtime: this.flavor };
    const r = await this.call("execute_code", { code, ...target, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}), ...(opts.allowHosts ? { allowHosts: opts.allowHosts } : {}) });
    if (r.isError) throw new Error(r.content.map((c) => (c.type === "text" ? c.text : "")).join("\n"));
    return r.structuredContent as unknown as RunOutcome;
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => {});
  }
}

export interface Lab {
  runtime: Runtime;
  flavor: Flavor;
  dataDir: string;
  configFile: string;
  users: { alice: string; bob: string; carol: string };
  canary: string;
  quotaMiB: number;
  probe: string;
  session(user: string, extraEnv?: Record<string, string>): Promise<UserSession>;
  envFor(user: string): Record<string, string>;
  workspaceOf(user: string): string;
  children: ChildProcess[];
}

/** Builds the syscall probe (a static binary the attacks run inside the sandbox). */
export function buildProbe(dir: string): string {
  const out = join(dir, "syscall-probe");
  execFileSync("cc", ["-static", "-O2", "-o", out, join(repoRoot, "test", "fixtures", "probe", "syscall-probe.c")]);
  return out;
}

export function makeLab(runtime: Runtime, flavor: Flavor = "node"): Lab {
  const dir = tempDir(`redteam-${runtime}-${flavor}`);
  const dataDir = join(dir, "data");
  const suffix = `${runtime}-${flavor}-${process.pid}`;
  const users = { alice: `alice-${suffix}`, bob: `bob-${suffix}`, carol: `carol-${suffix}` };
  const canary = `canary-${Math.random().toString(36).slice(2)}`;
  const quotaMiB = 64;
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      sandbox: { runtime, profiles: { standard: { timeoutMs: 20_000 } } },
      limits: { maxConcurrentRuns: 2, maxRunsPerUser: 2, maxQueuedRuns: 2 },
      storage: { quota: "kernel", quotaMiB, quotaInodes: 4096 },
      mcpServers: { rows: { command: process.execPath, args: [rowsServerPath] } },
      // Egress on for every run: one allowed destination (nothing listens there), so the attacks
      // run with the proxy in place and must reach nothing beyond it.
      egress: { allow: ["127.0.0.1:9"] },
    }),
  );
  const envFor = (user: string): Record<string, string> => ({
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    CODEBOX_DATA_DIR: dataDir,
    CODEBOX_USER_ID: user,
    CODEBOX_LOG_LEVEL: "warn",
    // A secret in the server's own environment: it must never show inside a sandbox.
    CODEBOX_TEST_CANARY: canary,
  });
  const probe = buildProbe(dir);
  const lab: Lab = {
    runtime,
    flavor,
    dataDir,
    configFile,
    users,
    canary,
    quotaMiB,
    probe,
    envFor,
    children: [],
    workspaceOf: (user) => join(dataDir, "users", user, "workspace"),
    session: (user, extraEnv = {}) => new UserSession({ ...envFor(user), ...extraEnv }, ["--config", configFile], flavor).start(),
  };
  return lab;
}

/** Puts the probe binary into a user's workspace (host side, before the attack runs). */
export function installProbe(lab: Lab, user: string, uid: number): void {
  const ws = lab.workspaceOf(user);
  mkdirSync(ws, { recursive: true });
  const target = join(ws, "syscall-probe");
  copyFileSync(lab.probe, target);
  chmodSync(target, 0o755);
  chownSync(target, uid, uid);
}

export interface Row {
  attack: string;
  expected: string;
  observed: string;
  pass: boolean;
}

export function renderTable(runtime: Runtime, rows: Row[], flavor: Flavor = "node"): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const lines = [
    `| # | attack (${flavor} on ${runtime}) | expected | observed | pass |`,
    "| --- | --- | --- | --- | --- |",
    ...rows.map((r, i) => `| ${i + 1} | ${esc(r.attack)} | ${esc(r.expected)} | ${esc(r.observed)} | ${r.pass ? "yes" : "**NO**"} |`),
  ];
  return `${lines.join("\n")}\n`;
}
