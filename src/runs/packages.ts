// Package installs: npm packages for TypeScript/JavaScript (Node and Bun) and pip packages for
// Python, into the user's dependency folder, which runs mount read-only at /deps. An install runs
// in a hardened sandbox of its own whose only way out is the egress proxy, allowed nothing but the
// registry the operator's npm or pip configuration names. It works in a staging folder; only a
// successful install replaces what the user had (an atomic swap of a link), so a failure leaves
// the previous packages in place.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Config } from "../config/schema.js";
import type { Egress } from "../egress/egress.js";
import { EgressPolicy } from "../egress/policy.js";
import type { SandboxBackend } from "../sandbox/backend.js";
import { InputError, errorMessage } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { O_DIR, viaFd } from "../stores/fd-paths.js";
import { readFileBeneath } from "../stores/safe-fs.js";
import { removeTree } from "../stores/safe-tree.js";
import type { UserDirectories } from "../stores/user-dirs.js";

const execFileP = promisify(execFile);

export type PackageManager = "npm" | "pip";

/** npm: a package name, optionally @version-or-range or @tag; never a URL, path, git spec or option. */
const NPM_SPEC = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]{0,213}(@[A-Za-z0-9^~<>=|.*+ x-]{1,100})?$/;
/** pip: a PEP 508 name with extras and version specifiers; never a URL, path or option. */
const PIP_SPEC = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}(\[[A-Za-z0-9._,-]{1,100}\])?\s*((===?|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]{1,50}\s*,?\s*){0,5}$/;

export function validateSpecs(manager: PackageManager, specs: readonly string[]): string[] {
  if (specs.length === 0) throw new InputError("name at least one package");
  if (specs.length > 20) throw new InputError("at most 20 packages at once");
  const re = manager === "npm" ? NPM_SPEC : PIP_SPEC;
  const bad = specs.filter((s) => !re.test(s.trim()) || s.trim().startsWith("-"));
  if (bad.length > 0) {
    const form = manager === "npm" ? '"lodash", "zod@^3", "@scope/name@1.2.3"' : '"requests", "pandas>=2,<3", "rich==13.7.1"';
    throw new InputError(`not a registry package: ${bad.map((b) => JSON.stringify(b.slice(0, 80))).join(", ")}. Use names with optional versions, e.g. ${form}; URLs, paths and options are not taken.`);
  }
  return specs.map((s) => s.trim());
}

/** The package's name in a spec ("zod@^3" → "zod", "@a/b@1" → "@a/b", "rich==13" → "rich"). */
export function specName(manager: PackageManager, spec: string): string {
  if (manager === "npm") return spec.startsWith("@") ? `@${spec.slice(1).split("@")[0]}` : spec.split("@")[0]!;
  return spec.split(/[\s[<>=!~]/)[0]!.toLowerCase().replace(/[-_.]+/g, "-");
}

export interface Registry {
  url: string;
  /** host:port for the installer's egress policy. */
  destination: string;
  /** A CA bundle the registry needs (the operator's npm cafile / pip cert), read on the host. */
  ca?: string | undefined;
}

/** A registry from a URL: its destination for the egress policy. */
export function registryOf(url: string, ca?: string): Registry {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`the package registry "${url.slice(0, 200)}" is not a URL`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new InputError(`the package registry ${url.slice(0, 200)} is not http(s)`);
  const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  const host = u.hostname.startsWith("[") ? u.hostname : u.hostname;
  return { url, destination: `${host}:${port}`, ca };
}

/** The operator's npm configuration on this machine: its registry and CA file. */
async function npmRegistry(config: Config): Promise<Registry> {
  if (config.packages.npmRegistry) return registryOf(config.packages.npmRegistry, config.packages.npmCafile ? await fs.readFile(config.packages.npmCafile, "utf8") : undefined);
  const get = async (key: string) => (await execFileP("npm", ["config", "get", key], { timeout: 20_000 })).stdout.trim();
  const url = await get("registry").catch(() => "");
  if (!url || url === "undefined") throw new InputError("no npm registry is configured on the server (npm config get registry); set packages.npmRegistry");
  const cafile = await get("cafile").catch(() => "");
  const ca = cafile && cafile !== "null" && cafile !== "undefined" ? await fs.readFile(cafile, "utf8").catch(() => undefined) : undefined;
  return registryOf(url, ca);
}

/** The operator's pip configuration on this machine: its index and certificate bundle. */
async function pipIndex(config: Config): Promise<Registry> {
  if (config.packages.pipIndexUrl) return registryOf(config.packages.pipIndexUrl, config.packages.pipCert ? await fs.readFile(config.packages.pipCert, "utf8") : undefined);
  let listed = "";
  try {
    listed = (await execFileP("python3", ["-m", "pip", "config", "list"], { timeout: 20_000 })).stdout;
  } catch {
    // no pip on the server
  }
  const value = (key: string) => new RegExp(`^(?:global|:env:|install)\\.${key}='([^']*)'`, "m").exec(listed)?.[1];
  const url = value("index-url");
  if (!url) throw new InputError("no pip index is configured on the server (pip config get global.index-url); set packages.pipIndexUrl");
  const cert = value("cert");
  return registryOf(url, cert ? await fs.readFile(cert, "utf8").catch(() => undefined) : undefined);
}

/** The folder the user's `node` or `python` link points to now (always one of ours), if any. */
async function current(depsDir: string, folder: string): Promise<string | undefined> {
  const target = await fs.readlink(join(depsDir, folder)).catch(() => undefined);
  return target && new RegExp(`^${folder}-[0-9a-f-]{36}$`).test(target) ? target : undefined;
}

export interface InstalledPackage {
  name: string;
  version: string;
}

export interface PackagesDeps {
  config: Config;
  backend: SandboxBackend;
  dirs: UserDirectories;
  egress: Egress;
  logger: Logger;
}

/** What went wrong, from the installer's output, as a sentence that says what to do. */
export function explainFailure(manager: PackageManager, output: string, refused: string[]): string {
  const said = lastErrorLine(output);
  return `${classify(manager, output, refused)}${said ? ` (${manager} said: ${said})` : ""}`;
}

/** The installer's last line that reads like an error, cut short. */
function lastErrorLine(output: string): string | undefined {
  const lines = output
    .split("\n")
    .map((l) => l.trim().replace(/^npm (error|ERR!) /, ""))
    .filter((l) => /error|not found|no matching|could not|refused|denied|ENOSPC|EDQUOT|E404|ETARGET/i.test(l));
  return lines.at(-1)?.slice(0, 300);
}

function classify(manager: PackageManager, output: string, refused: string[]): string {
  const quota = /ENOSPC|EDQUOT|No space left|Disk quota/i.test(output);
  if (quota) return "the packages do not fit in your storage quota; remove packages or files, then try again";
  if (manager === "npm") {
    const missing = /E404[\s\S]*?'([^']+)' is not in this registry|404 Not Found - GET \S+\/(@?[^\s/]+(?:%2f[^\s/]+)?)/i.exec(output);
    if (missing) return `${decodeURIComponent(missing[1] ?? missing[2] ?? "a package")} does not exist on the registry; check the name`;
    const target = /ETARGET[\s\S]*?No matching version found for (\S+)/i.exec(output);
    if (target) return `no version of ${target[1]} matches; ask for a version that exists`;
  } else {
    const missing = /No matching distribution found for (\S+)/.exec(output);
    if (missing) return `no distribution of ${missing[1]} on the index matches (the name, the version, or this Python ${"3"}); check them`;
  }
  if (refused.length > 0 || /ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|ECONNRESET|ProxyError|Max retries exceeded|Refused by codebox egress|Could not fetch URL/i.test(output)) {
    return "the package registry could not be reached; try again later, or ask the operator to check the registry configuration";
  }
  return "the install failed";
}

export class Packages {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: PackagesDeps) {}

  /** One install or removal per user at a time: each works from the result of the last. */
  private serial<T>(userId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(userId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.locks.set(userId, next);
    const forget = () => {
      if (this.locks.get(userId) === next) this.locks.delete(userId);
    };
    next.then(forget, forget);
    return next;
  }

  async list(userId: string): Promise<Record<PackageManager, InstalledPackage[]>> {
    const { deps } = await this.deps.dirs.ensure(userId);
    return { npm: await this.listNpm(deps), pip: await this.listPip(deps) };
  }

  private async listNpm(depsDir: string): Promise<InstalledPackage[]> {
    const dir = await current(depsDir, "node");
    if (!dir) return [];
    const lock = await readFileBeneath(depsDir, `${dir}/package-lock.json`, 32 * 1024 * 1024).catch(() => undefined);
    const manifest = await readFileBeneath(depsDir, `${dir}/package.json`, 1024 * 1024).catch(() => undefined);
    if (!manifest) return [];
    try {
      const direct = Object.keys((JSON.parse(manifest.toString("utf8")) as { dependencies?: Record<string, string> }).dependencies ?? {});
      const packages = lock ? ((JSON.parse(lock.toString("utf8")) as { packages?: Record<string, { version?: string }> }).packages ?? {}) : {};
      return direct.sort().map((name) => ({ name, version: String(packages[`node_modules/${name}`]?.version ?? "?") }));
    } catch {
      return [];
    }
  }

  private async listPip(depsDir: string): Promise<InstalledPackage[]> {
    const dir = await current(depsDir, "python");
    if (!dir) return [];
    const lock = await readFileBeneath(depsDir, `${dir}/.codebox-lock.txt`, 1024 * 1024).catch(() => undefined);
    if (!lock) return [];
    return lock
      .toString("utf8")
      .split("\n")
      .map((l) => /^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ name: m[1]!, version: m[2]! }));
  }

  install(userId: string, manager: PackageManager, specs: readonly string[], signal?: AbortSignal): Promise<{ installed: InstalledPackage[]; all: InstalledPackage[] }> {
    const wanted = validateSpecs(manager, specs);
    return this.serial(userId, () => this.change(userId, manager, { add: wanted, remove: [] }, signal));
  }

  remove(userId: string, manager: PackageManager, names: readonly string[], signal?: AbortSignal): Promise<{ installed: InstalledPackage[]; all: InstalledPackage[] }> {
    const gone = validateSpecs(manager, names).map((n) => specName(manager, n));
    return this.serial(userId, () => this.change(userId, manager, { add: [], remove: gone }, signal));
  }

  private async change(userId: string, manager: PackageManager, change: { add: string[]; remove: string[] }, signal?: AbortSignal) {
    const registry = manager === "npm" ? await npmRegistry(this.deps.config) : await pipIndex(this.deps.config);
    const dirs = await this.deps.dirs.ensure(userId);
    const before = manager === "npm" ? await this.listNpm(dirs.deps) : await this.listPip(dirs.deps);
    if (change.remove.length > 0) {
      const unknown = change.remove.filter((n) => !before.some((b) => specName(manager, b.name) === n));
      if (unknown.length > 0) throw new InputError(`not installed: ${unknown.join(", ")}. Installed: ${before.map((b) => b.name).join(", ") || "nothing"}`);
    }
    const folder = manager === "npm" ? "node" : "python";
    const stagingRoot = join(dirs.root, ".deps-staging");
    await fs.mkdir(stagingRoot, { recursive: true, mode: 0o700 });
    const id = randomUUID();
    const staging = join(stagingRoot, id);
    const sandboxUid = this.deps.backend.sandboxUid();
    const own = process.getuid?.() ?? 0;
    await fs.mkdir(join(staging, "skills"), { recursive: true, mode: 0o700 });
    await fs.mkdir(join(staging, "work", folder), { recursive: true, mode: 0o700 });
    try {
      // What the user has now is where the install starts: npm's manifest and lock, pip's direct list and pins.
      const now = await current(dirs.deps, folder);
      for (const name of manager === "npm" ? ["package.json", "package-lock.json"] : ["requirements.txt", ".codebox-lock.txt"]) {
        const body = now ? await readFileBeneath(dirs.deps, `${now}/${name}`, 32 * 1024 * 1024).catch(() => undefined) : undefined;
        if (body) await fs.writeFile(join(staging, "work", folder, name), body);
      }
      if (registry.ca) await fs.writeFile(join(staging, "work", ".ca.pem"), registry.ca);
      if (own === 0) for (const p of [staging, join(staging, "work"), join(staging, "work", folder), join(staging, "skills")]) await fs.chown(p, sandboxUid, sandboxUid);
      if (own === 0) for (const f of await fs.readdir(join(staging, "work", folder))) await fs.chown(join(staging, "work", folder, f), sandboxUid, sandboxUid);
      const outcome = await this.runInstaller(userId, manager, registry, change, join(staging, "work"), join(staging, "skills"), signal);
      if (outcome.exitCode !== 0) {
        throw new InputError(`${manager} ${change.add.length > 0 ? "install" : "uninstall"} failed: ${outcome.timedOut ? `it took longer than ${this.deps.config.packages.installTimeoutMs} ms` : explainFailure(manager, `${outcome.stdout}\n${outcome.stderr}\n${outcome.stdoutTail ?? ""}\n${outcome.stderrTail ?? ""}`, outcome.refused)}. Your installed packages are unchanged.`);
      }
      await this.swap(dirs.deps, folder, join(staging, "work"), id);
    } finally {
      await removeTree(stagingRoot, id).catch((err: unknown) => this.deps.logger.warn("could not remove a package staging folder", { userId, err: errorMessage(err) }));
    }
    const all = manager === "npm" ? await this.listNpm(dirs.deps) : await this.listPip(dirs.deps);
    const names = new Set(change.add.map((s) => specName(manager, s)));
    return { installed: all.filter((p) => names.has(specName(manager, p.name))), all };
  }

  /**
   * The staged folder becomes the user's: moved into the deps folder under a fresh name, then the
   * link the runs follow (deps/node → node-<id>) replaced in one rename; the old version removed.
   */
  private async swap(depsDir: string, folder: string, work: string, id: string): Promise<void> {
    const deps = await fs.open(depsDir, O_DIR);
    const staged = await fs.open(work, O_DIR);
    try {
      const versioned = `${folder}-${id}`;
      await fs.rename(viaFd(staged.fd, folder), viaFd(deps.fd, versioned));
      let previous: string | undefined;
      try {
        previous = await fs.readlink(viaFd(deps.fd, folder));
      } catch {
        previous = undefined;
      }
      const tmpLink = `.${folder}-link-${id}`;
      await fs.symlink(versioned, viaFd(deps.fd, tmpLink));
      await fs.rename(viaFd(deps.fd, tmpLink), viaFd(deps.fd, folder));
      if (previous && /^(node|python)-[0-9a-f-]{36}$/.test(previous)) await removeTree(depsDir, previous).catch(() => {});
    } finally {
      await staged.close();
      await deps.close();
    }
  }

  private async runInstaller(userId: string, manager: PackageManager, registry: Registry, change: { add: string[]; remove: string[] }, work: string, skills: string, signal?: AbortSignal) {
    const endpoint = await this.deps.egress.openFor();
    const runtime = manager === "npm" ? "node" : "python";
    const runId = `install-${randomUUID()}`;
    const profile = { name: "heavy" as const, ...this.deps.config.sandbox.profiles.heavy, maxCodeBytes: this.deps.config.sandbox.maxCodeBytes, maxOutputBytes: this.deps.config.sandbox.maxOutputBytes };
    const timeoutMs = this.deps.config.packages.installTimeoutMs;
    try {
      const prepared = await this.deps.backend.prepare({ id: runId, userId, runtime, profile, mounts: { workspace: work, skills }, extraMounts: [endpoint.mount], timeoutMs });
      const env = endpoint.bind(runId, EgressPolicy.forUser([registry.destination]));
      const code = manager === "npm" ? npmProgram(registry, change, this.deps.config.packages.npmInstallScripts) : pipProgram(registry, change);
      const outcome = await this.deps.backend.run(prepared, { runId, language: manager === "npm" ? "javascript" : "python", code, timeoutMs, warm: false, env, signal });
      return { ...outcome, refused: endpoint.summary().refused.map((r) => `${r.host}:${r.port}`) };
    } finally {
      await endpoint.close();
    }
  }
}

/** The installer's program for npm (Node, in the sandbox): npm with scripts off, into /workspace/node. */
export function npmProgram(registry: Registry, change: { add: string[]; remove: string[] }, installScripts = false): string {
  const args = [
    change.add.length > 0 ? "install" : "uninstall",
    "--prefix",
    "/workspace/node",
    ...(installScripts ? [] : ["--ignore-scripts"]),
    "--no-audit",
    "--no-fund",
    "--no-update-notifier",
    "--loglevel=error",
    "--registry",
    registry.url,
    "--cache",
    "/workspace/.npm-cache",
    ...(registry.ca ? ["--cafile", "/workspace/.ca.pem"] : []),
    "--",
    ...(change.add.length > 0 ? change.add : change.remove),
  ];
  return `import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
const r = spawnSync(process.execPath, ["/usr/local/lib/node_modules/npm/bin/npm-cli.js", ...${JSON.stringify(args)}], { stdio: "inherit", env: { ...process.env, HOME: "/tmp", npm_config_update_notifier: "false" } });
rmSync("/workspace/.npm-cache", { recursive: true, force: true });
process.exit(r.status ?? 1);
`;
}

/** The installer's program for pip (Python, in the sandbox): every direct requirement, pinned by the last lock, into /workspace/python. */
function pipProgram(registry: Registry, change: { add: string[]; remove: string[] }): string {
  return `import json, os, re, subprocess, sys
add, remove = json.loads(${JSON.stringify(JSON.stringify(change.add))}), set(json.loads(${JSON.stringify(JSON.stringify(change.remove))}))
norm = lambda s: re.split(r"[\\s\\[<>=!~]", s, 1)[0].lower().replace("_", "-").replace(".", "-")
req_path, lock_path = "/workspace/python/requirements.txt", "/workspace/python/.codebox-lock.txt"
old = [l.strip() for l in open(req_path)] if os.path.exists(req_path) else []
new_names = {norm(a) for a in add}
direct = [r for r in old if r and norm(r) not in new_names and norm(r) not in remove] + add
pins = [l.strip() for l in open(lock_path)] if os.path.exists(lock_path) else []
pins = [p for p in pins if p and norm(p) not in new_names and norm(p) not in remove]
target = "/workspace/python/site"
os.makedirs("/workspace/python", exist_ok=True)
with open("/workspace/python/constraints.txt", "w") as f:
    f.write("\\n".join(pins) + "\\n")
cmd = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--no-warn-script-location", "--target", target, "--index-url", ${JSON.stringify(registry.url)}, "-c", "/workspace/python/constraints.txt"]
${registry.ca ? 'cmd += ["--cert", "/workspace/.ca.pem"]' : ""}
code = subprocess.run(cmd + ["--", *direct]).returncode if direct else 0
if code != 0:
    sys.exit(code)
os.makedirs(target, exist_ok=True)
listed = subprocess.run([sys.executable, "-m", "pip", "list", "--disable-pip-version-check", "--path", target, "--format=freeze"], capture_output=True, text=True)
with open(lock_path, "w") as f:
    f.write(listed.stdout)
with open(req_path, "w") as f:
    f.write("\\n".join(direct) + "\\n")
os.remove("/workspace/python/constraints.txt")
`;
}
