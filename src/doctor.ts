import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import type { App } from "./app.js";
import { RUNTIME_INFO, type RuntimeName, defaultRuntime } from "./shared/languages.js";
import { errorMessage } from "./shared/errors.js";

export interface CheckResult {
  name: string;
  ok: boolean;
  /** Not a failure, but worth knowing (e.g. an image not built yet: built on first use). */
  warn?: boolean;
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
    const oci = config.sandbox.ociRuntime;
    add(
      info.ociRuntimes.includes(oci)
        ? { name: "oci runtime", ok: true, detail: `${oci} is registered (available: ${info.ociRuntimes.join(", ")})` }
        : {
            name: "oci runtime",
            ok: false,
            detail: `${oci} is not registered with the engine (available: ${info.ociRuntimes.join(", ")})`,
            fix: oci === "runsc" ? "run scripts/setup.sh as root (installs and registers gVisor), or set CODEBOX_OCI_RUNTIME=runc" : "set CODEBOX_OCI_RUNTIME=runc",
          },
    );
  } catch (err) {
    add({
      name: "engine",
      ok: false,
      detail: errorMessage(err).split(". ")[0] ?? "unreachable",
      fix: "start the Docker engine: on Debian as root run scripts/setup.sh (installs docker.io and starts dockerd); elsewhere start Docker Desktop or `sudo systemctl start docker`; set CODEBOX_DOCKER_HOST if it listens elsewhere",
    });
    add({ name: "oci runtime", ok: false, detail: "not checked: no engine", fix: "fix the engine first" });
  }

  try {
    backend.checkSeccomp();
    add({ name: "seccomp", ok: true, detail: `profile ${config.sandbox.seccompProfile ?? "seccomp/profile.json"} loads` });
  } catch (err) {
    add({ name: "seccomp", ok: false, detail: errorMessage(err), fix: "restore seccomp/profile.json (node seccomp/build-profile.mjs) or unset CODEBOX_SECCOMP_PROFILE" });
  }

  // One image per language runtime. The default runtime's image missing is a failure (every
  // first call would wait for a build); the others' are built the first time someone uses them.
  const present: RuntimeName[] = [];
  for (const runtime of config.sandbox.runtimes) {
    const name = `image ${runtime}`;
    const tag = backend.imageTag(runtime);
    if (!engineOk) {
      add({ name, ok: false, detail: "not checked: no engine", fix: "fix the engine first" });
      continue;
    }
    try {
      if (await backend.imageExists(runtime)) {
        present.push(runtime);
        add({ name, ok: true, detail: `${tag} present (${RUNTIME_INFO[runtime].title}; ${RUNTIME_INFO[runtime].languages.join(", ")})` });
      } else if (runtime === defaultRuntime(config.sandbox.runtimes)) {
        add({ name, ok: false, detail: `${tag} is missing`, fix: `run \`codebox-mcp image build ${runtime}\` (the server also builds it on first use)` });
      } else {
        add({ name, ok: true, warn: true, detail: `${tag} not built yet: built on the first ${runtime} run (about ${runtime === "bun" ? "20" : "10"} s)`, fix: `run \`codebox-mcp image build ${runtime}\` to build it now` });
      }
    } catch (err) {
      add({ name, ok: false, detail: errorMessage(err), fix: "check the engine" });
    }
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
    const disabled = new Map(app.bridge.codeApiDisabled(config.userId).map((d) => [d.server, d.reason]));
    for (const u of app.bridge.pool.status()) {
      const left = disabled.get(u.name);
      add(
        u.state !== "ready"
          ? { name: `upstream ${u.name}`, ok: false, detail: u.error ?? u.state, fix: `check mcpServers.${u.name} in the config (command, args, env, url); run its command by hand to see its error` }
          : left
            ? { name: `upstream ${u.name}`, ok: true, warn: true, detail: `connected, ${u.tools} tool(s), but left out of the code API: ${left}`, fix: "report the server's tool list to its authors; its tools stay callable with callMCPTool" }
            : { name: `upstream ${u.name}`, ok: true, detail: `connected, ${u.tools} tool(s)` },
      );
    }
  }

  if (results.every((r) => r.ok)) {
    for (const runtime of present) {
      const python = runtime === "python";
      try {
        const r = await app.runs.execute({ userId: config.userId, code: python ? "print(6 * 7)" : "console.log(6 * 7)", language: python ? "python" : "javascript", runtime, timeoutMs: 20_000 });
        const ok = r.exitCode === 0 && r.stdout.trim() === "42";
        add({ name: `sandbox run ${runtime}`, ok, detail: ok ? `a ${RUNTIME_INFO[runtime].title} sandbox ran code in ${r.durationMs} ms` : `unexpected result: exit ${r.exitCode}, ${r.stderr.slice(0, 200)}`, ...(ok ? {} : { fix: "see the server log (CODEBOX_LOG_LEVEL=debug)" }) });
      } catch (err) {
        add({ name: `sandbox run ${runtime}`, ok: false, detail: errorMessage(err), fix: "see the message above" });
      }
    }
  }
  return results;
}

export function formatDoctor(results: CheckResult[]): string {
  return results
    .map((r) => `${r.ok ? (r.warn ? "WARN" : "ok  ") : "FAIL"}  ${r.name.padEnd(Math.max(16, r.name.length))} ${r.detail}${r.fix ? `\n      fix: ${r.fix}` : ""}`)
    .join("\n");
}
