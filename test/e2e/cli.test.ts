import { execFile, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { LABEL } from "../../src/sandbox/docker/labels.js";
import { cliPath, removeDir, repoRoot, serverProcessEnv, tempDir, waitForNoContainers } from "../helpers.js";

const execFileP = promisify(execFile);
const USER = `e2e-cli-${process.pid}`;
const dataDir = tempDir("e2e-cli");
const baseEnv = serverProcessEnv({ CODEBOX_DATA_DIR: dataDir, CODEBOX_USER_ID: USER });

interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}
async function exec(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<Exec> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { env: opts.env ?? baseEnv, cwd: opts.cwd ?? repoRoot, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

afterEach(async () => {
  expect(await waitForNoContainers({ label: LABEL.user, value: USER })).toEqual([]);
});
afterAll(() => removeDir(dataDir));

describe("the README's server line", () => {
  it("starts a server that the SDK Client initializes and runs code on", async () => {
    const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
    const line = /<!-- server-line -->\s*```(?:bash|sh)?\n([^\n]+)\n```/.exec(readme)?.[1];
    expect(line, "README.md must mark its server line with <!-- server-line -->").toBeTruthy();
    const transport = new StdioClientTransport({ command: "bash", args: ["-c", line!], cwd: repoRoot, env: baseEnv, stderr: "pipe" });
    const client = new Client({ name: "readme-line", version: "1" });
    await client.connect(transport);
    try {
      const r = (await client.callTool({ name: "execute_code", arguments: { code: "const x: number = 21; console.log(x * 2)" } })) as CallToolResult;
      expect(r.structuredContent).toMatchObject({ stdout: "42\n", exitCode: 0 });
    } finally {
      await client.close();
    }
  });
});

describe("the MCP Inspector CLI", () => {
  /** `tools/call execute_code` through the Inspector CLI; the inspector exits 0 even when a call fails: the JSON is what counts. */
  const callExecuteCode = async (...toolArgs: string[]) => {
    const r = await exec(join(repoRoot, "node_modules", ".bin", "mcp-inspector"), [
      "--cli",
      "-e", `CODEBOX_DATA_DIR=${dataDir}`,
      "-e", `CODEBOX_USER_ID=${USER}`,
      process.execPath, cliPath,
      "--method", "tools/call",
      "--tool-name", "execute_code",
      ...toolArgs.flatMap((a) => ["--tool-arg", a]),
    ]);
    return JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as CallToolResult;
  };

  it("calls execute_code and gets the result as JSON", async () => {
    const json = await callExecuteCode("code=const x: number = 21; console.log(x * 2)");
    expect(json.isError).toBeFalsy();
    expect(json.structuredContent).toMatchObject({ stdout: "42\n", exitCode: 0, timedOut: false });
  });

  it("calls execute_code with Python", async () => {
    const json = await callExecuteCode("code=print(sum(range(7)))", "language=python");
    expect(json.structuredContent).toMatchObject({ stdout: "21\n", exitCode: 0 });
  });

  it("lists the tools", async () => {
    const r = await exec(join(repoRoot, "node_modules", ".bin", "mcp-inspector"), ["--cli", "-e", `CODEBOX_DATA_DIR=${dataDir}`, process.execPath, cliPath, "--method", "tools/list"]);
    const json = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as { tools: Array<{ name: string }> };
    expect(json.tools.map((t) => t.name)).toContain("execute_code");
  });

  it("reads the guide and the sandbox report, the resources that replaced listed tools", async () => {
    const inspector = join(repoRoot, "node_modules", ".bin", "mcp-inspector");
    const read = async (uri: string) => {
      const r = await exec(inspector, ["--cli", "-e", `CODEBOX_DATA_DIR=${dataDir}`, process.execPath, cliPath, "--method", "resources/read", "--uri", uri]);
      return JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as { contents: Array<{ mimeType: string; text: string }> };
    };
    const help = await read("codebox://help");
    expect(help.contents[0]).toMatchObject({ mimeType: "text/markdown" });
    expect(help.contents[0]!.text).toContain("/skills/<name>/");
    const report = JSON.parse((await read("codebox://sandbox/node")).contents[0]!.text) as { ociRuntime: string; readOnlyRoot: boolean; uid: number; network: { dns: string } };
    expect(report).toMatchObject({ readOnlyRoot: true });
    expect(report.uid).not.toBe(0);
    expect(report.network.dns).not.toBe("resolved");
  });
});

describe("codebox-mcp doctor", () => {
  it("exits 0 with every check passing when the engine runs", async () => {
    const r = await exec(process.execPath, [cliPath, "doctor"]);
    expect(r.stdout).toContain("all checks passed");
    expect(r.code).toBe(0);
    // Each language runtime's image, and a run in each.
    for (const runtime of ["node", "bun", "python"]) {
      expect(r.stdout).toMatch(new RegExp(`ok\\s+image ${runtime}\\s+codebox-mcp-sandbox`));
      expect(r.stdout).toMatch(new RegExp(`ok\\s+sandbox run ${runtime}\\s`));
    }
  });

  it("exits non-zero and names the fix when the engine is stopped", async () => {
    const r = await exec(process.execPath, [cliPath, "doctor"], { env: { ...baseEnv, CODEBOX_DOCKER_HOST: `unix://${dataDir}/stopped.sock` } });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/FAIL\s+engine/);
    expect(r.stdout).toMatch(/fix: start the Docker engine/);
  });
});

describe("codebox-mcp doctor with upstream servers", () => {
  it("reports an upstream that cannot start, with the fix, and exits non-zero", async () => {
    const config = join(dataDir, "doctor-config.json");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(config, JSON.stringify({ mcpServers: { ghost: { command: "/nonexistent/mcp-server" } } }));
    const r = await exec(process.execPath, [cliPath, "doctor", "--config", config]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/FAIL\s+upstream ghost/);
    expect(r.stdout).toContain("check mcpServers.ghost");
  });
});

describe("codebox-mcp run", () => {
  it("prints the output and exits with the code's exit code", async () => {
    const ok = await exec(process.execPath, [cliPath, "run", "-e", "const n: number = 6; console.log(n * 7)"]);
    expect(ok).toMatchObject({ code: 0, stdout: "42\n" });
    const failing = await exec(process.execPath, [cliPath, "run", "--lang", "js", "-e", "console.error('bad'); process.exit(4)"]);
    expect(failing.code).toBe(4);
    expect(failing.stderr).toContain("bad");
  });

  it("runs Python (--lang py, or a .py file) and Bun (--bun)", async () => {
    const py = await exec(process.execPath, [cliPath, "run", "--lang", "py", "-e", "import sys\nprint('py')\nsys.exit(3)"]);
    expect(py).toMatchObject({ code: 3, stdout: "py\n" });
    const file = join(dataDir, "script.py");
    (await import("node:fs")).writeFileSync(file, "print(2 ** 10)\n");
    expect(await exec(process.execPath, [cliPath, "run", file])).toMatchObject({ code: 0, stdout: "1024\n" });
    const bun = await exec(process.execPath, [cliPath, "run", "--bun", "-e", "console.log(process.versions.bun ? 'bun' : 'node')"]);
    expect(bun).toMatchObject({ code: 0, stdout: "bun\n" });
  });

  it("explains usage errors", async () => {
    const r = await exec(process.execPath, [cliPath, "run"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/run takes a file or -e/);
  });
});

describe("when the engine goes away and comes back", () => {
  it("reports the outage as a tool error, then works again without a restart", async () => {
    // A pass-through proxy to the real engine socket: closing it is, for the server, the engine stopping.
    const sock = join(dataDir, "engine-proxy.sock");
    const conns = new Set<net.Socket>();
    const makeProxy = () =>
      net.createServer((c) => {
        const up = net.connect("/var/run/docker.sock");
        conns.add(c).add(up);
        c.pipe(up).pipe(c);
        const close = () => {
          c.destroy();
          up.destroy();
        };
        c.on("error", close).on("close", close);
        up.on("error", close).on("close", close);
      });
    let proxy = makeProxy();
    await new Promise<void>((r) => proxy.listen(sock, r));
    const transport = new StdioClientTransport({ command: process.execPath, args: [cliPath], env: { ...baseEnv, CODEBOX_DOCKER_HOST: `unix://${sock}` }, stderr: "pipe" });
    const client = new Client({ name: "engine-outage", version: "1" });
    await client.connect(transport);
    const run = () => client.callTool({ name: "execute_code", arguments: { code: "console.log('up')" } }) as Promise<CallToolResult>;
    try {
      expect((await run()).structuredContent).toMatchObject({ stdout: "up\n" });
      // close() waits for open connections (warm containers keep attach and wait streams): cut them first.
      const closed = new Promise<void>((r) => proxy.close(() => r()));
      for (const c of conns) c.destroy();
      await closed;
      const down = await run();
      expect(down.isError).toBe(true);
      expect(down.content[0]).toMatchObject({ type: "text" });
      expect((down.content[0] as { text: string }).text).toContain("codebox-mcp doctor");
      proxy = makeProxy();
      await new Promise<void>((r) => proxy.listen(sock, r));
      expect((await run()).structuredContent).toMatchObject({ stdout: "up\n" });
    } finally {
      await client.close();
      proxy.close();
      for (const c of conns) c.destroy();
    }
  });
});

describe("the npm package", () => {
  it("packs into a tarball that `npx <tarball> --version` runs", async () => {
    const dir = tempDir("pack");
    try {
      const packed = await exec("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], { env: { ...process.env } as Record<string, string> });
      expect(packed.code, packed.stderr).toBe(0);
      const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
      expect(tarball).toMatch(/^codebox-mcp-\d+\.\d+\.\d+\.tgz$/);
      const version = (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
      const r = await exec("npx", ["--yes", `./${tarball}`, "--version"], { cwd: dir, env: { ...process.env, npm_config_yes: "true" } as Record<string, string>, timeoutMs: 300_000 });
      expect(r.stdout.trim(), r.stderr).toBe(version);
    } finally {
      removeDir(dir);
    }
  }, 320_000);
});

describe("stdio server lifecycle", () => {
  it.each([0, 500])("exits cleanly when the client closes stdin %i ms after the launch", async (afterMs) => {
    const child = spawn(process.execPath, [cliPath], { env: baseEnv, stdio: ["pipe", "pipe", "pipe"] });
    await new Promise((r) => setTimeout(r, afterMs));
    child.stdin.end();
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    expect(code).toBe(0);
  }, 60_000);
});
