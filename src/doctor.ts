import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import type { App } from "./app.js";
import { errorMessage } from "./shared/errors.js";

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

/** Every check the server depends on; each failure carries the command or setting that fixes it. */
export async function runDoctor(app: App): Promise<CheckResult[]> {
  const { backend, config } = app;
  const results: CheckResult[] = [];
  const add = (r: CheckResult) => results.push(r);

  let engineOk = false;
  try {
    const info = await backend.engineInfo();
    engineOk = true;
    add({ name: "engine", ok: true, detail: `Docker ${info.version} (API ${info.apiVersion}) on ${info.os}` });
    const runtime = config.sandbox.runtime;
    add(
      info.runtimes.includes(runtime)
        ? { name: "runtime", ok: true, detail: `${runtime} is registered (available: ${info.runtimes.join(", ")})` }
        : {
            name: "runtime",
            ok: false,
            detail: `${runtime} is not registered with the engine (available: ${info.runtimes.join(", ")})`,
            fix: runtime === "runsc" ? "run scripts/setup.sh as root (installs and registers gVisor), or set CODEBOX_RUNTIME=runc" : "set CODEBOX_RUNTIME=runc",
          },
    );
  } catch (err) {
    add({
      name: "engine",
      ok: false,
      detail: errorMessage(err).split(". ")[0] ?? "unreachable",
      fix: "start the Docker engine: on Debian as root run scripts/setup.sh (installs docker.io and starts dockerd); elsewhere start Docker Desktop or `sudo systemctl start docker`; set CODEBOX_DOCKER_HOST if it listens elsewhere",
    });
    add({ name: "runtime", ok: false, detail: "not checked: no engine", fix: "fix the engine first" });
  }

  try {
    backend.seccomp();
    add({ name: "seccomp", ok: true, detail: `profile ${config.sandbox.seccompProfile ?? "seccomp/profile.json"} loads` });
  } catch (err) {
    add({ name: "seccomp", ok: false, detail: errorMessage(err), fix: "restore seccomp/profile.json (node seccomp/build-profile.mjs) or unset CODEBOX_SECCOMP_PROFILE" });
  }

  if (engineOk) {
    try {
      const exists = await backend.imageExists();
      add(
        exists
          ? { name: "image", ok: true, detail: `${backend.image} present` }
          : { name: "image", ok: false, detail: `${backend.image} is missing`, fix: "run `codebox-mcp image build` (the server also builds it on first use)" },
      );
    } catch (err) {
      add({ name: "image", ok: false, detail: errorMessage(err), fix: "check the engine" });
    }
  } else {
    add({ name: "image", ok: false, detail: "not checked: no engine", fix: "fix the engine first" });
  }

  try {
    await fs.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    const probe = join(config.dataDir, `.doctor-${randomUUID()}`);
    await fs.writeFile(probe, "ok", { flag: "wx" });
    await fs.rm(probe);
    add({ name: "data dir", ok: true, detail: `${config.dataDir} is writable` });
  } catch (err) {
    add({ name: "data dir", ok: false, detail: `${config.dataDir}: ${errorMessage(err)}`, fix: "set CODEBOX_DATA_DIR (or --data-dir) to a directory this user can write" });
  }

  // Upstream MCP servers: each must start and list its tools.
  if (app.bridge.pool.names.length > 0) {
    await app.bridge.start();
    for (const u of app.bridge.pool.status()) {
      add(
        u.state === "ready"
          ? { name: `upstream ${u.name}`, ok: true, detail: `connected, ${u.tools} tool(s)` }
          : { name: `upstream ${u.name}`, ok: false, detail: u.error ?? u.state, fix: `check mcpServers.${u.name} in the config (command, args, env, url); run its command by hand to see its error` },
      );
    }
  }

  if (results.every((r) => r.ok)) {
    try {
      const r = await app.executor.execute({ userId: config.userId, code: "console.log(6 * 7)", language: "javascript", timeoutMs: 20_000 });
      const ok = r.exitCode === 0 && r.stdout.trim() === "42";
      add({ name: "sandbox run", ok, detail: ok ? `a sandbox ran code in ${r.durationMs} ms` : `unexpected result: exit ${r.exitCode}, ${r.stderr.slice(0, 200)}`, ...(ok ? {} : { fix: "see the server log (CODEBOX_LOG_LEVEL=debug)" }) });
    } catch (err) {
      add({ name: "sandbox run", ok: false, detail: errorMessage(err), fix: "see the message above" });
    }
  }
  return results;
}

export function formatDoctor(results: CheckResult[]): string {
  return results
    .map((r) => `${r.ok ? "ok  " : "FAIL"}  ${r.name.padEnd(Math.max(11, r.name.length))} ${r.detail}${r.fix ? `\n      fix: ${r.fix}` : ""}`)
    .join("\n");
}
