// The codebox server as an image built offline, for Swarm tasks in the cluster tests
// (docs/SCALING.md sections 9 and 12). Dockerfile.server is FROM node:22-bookworm-slim, which
// cannot be pulled here; this image is assembled FROM scratch the way the sandbox images are
// (src/sandbox/docker/rootfs.ts): this machine's node binary and the libraries `ldd` lists, plus
// the package (package.json, dist/, production node_modules, sandbox-image/, seccomp/profile.json,
// skills/, Dockerfile.sandbox) under the repository's own path (see appDir). No shell, no package manager.
//
// The node binary is the one running this process, so the server in the image computes the same
// default sandbox image tag (defaultImageTag hashes process.version) as the host does: load the
// host's sandbox image next to it and the cell never tries to build one.
//
// The tag is content-addressed: a hash of dist/, package.json, package-lock.json, the other
// shipped files, the node binary and this recipe. An engine that already has the tag is not asked
// to build again.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, promises as fs, realpathSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type Docker from "dockerode";

const execFileP = promisify(execFile);

/** Bump when the image's layout changes in a way the hashed inputs do not show. */
const RECIPE = "1";
export const SERVER_REPOSITORY = "codebox-mcp-server";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** What goes into the package directory besides dist/ and node_modules/. */
const SHIPPED = ["package.json", "Dockerfile.sandbox", "seccomp/profile.json", "skills", "sandbox-image"];

export interface ServerImageOptions {
  /** Default: `codebox-mcp-server:offline-<hash>`. */
  tag?: string;
  /**
   * "bundle" (default): only the packages the CLI bundle (dist/bundle) still requires at run time
   * (its esbuild externals, e.g. ssh2 for dockerode's SSH transport, which docker-modem loads
   * eagerly) and their dependencies. "production": every dependency of package.json (as
   * `npm ls --omit=dev` lists them), for the library entry (dist/app.js) too.
   */
  nodeModules?: "bundle" | "production";
  /**
   * Where the package sits in the image. Default: this repository's own path (e.g. /work/main),
   * NOT /app: the server bind-mounts its starter skills into every sandbox straight from the
   * package (SkillStore.starterMounts: packagePath("skills")/<name>), and the engine resolves that
   * path on the node, so it must exist there with the same content. Under /app every run fails
   * with "bind source path does not exist: /app/skills/csv"; at the repository's path the node
   * has it. "/app" works once the server stops mounting from its package directory.
   */
  appDir?: string;
  /** Build even when the engine has the tag. */
  force?: boolean;
  log?: (line: string) => void;
}

export interface ServerImage {
  tag: string;
  /** Whether this call built it (false: the engine had it). */
  built: boolean;
  /** Image size in bytes, as the engine reports it. */
  size: number;
}

/** A DOCKER_HOST value for a dockerode client or a DOCKER_HOST string. */
export function dockerHostOf(docker: Docker | string): string {
  if (typeof docker === "string") return docker.startsWith("/") ? `unix://${docker}` : docker;
  const m = docker.modem as unknown as { socketPath?: string; host?: string; port?: number; protocol?: string };
  if (m.socketPath) return `unix://${m.socketPath}`;
  if (m.host) return `${m.protocol === "https" ? "https" : "tcp"}://${m.host}:${m.port ?? 2375}`;
  return "unix:///var/run/docker.sock";
}

function dockerEnv(dockerHost: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("DOCKER_")) env[k] = v;
  // The classic builder: the engine is 20.10 and the CLI may have no buildx plugin.
  return { ...env, DOCKER_HOST: dockerHost, DOCKER_BUILDKIT: "0" };
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const go = async (d: string) => {
    const entries = (await fs.readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const p = join(d, e.name);
      out.push(p);
      if (e.isDirectory()) await go(p);
    }
  };
  await go(dir);
  return out;
}

/** The content hash behind the default tag (cheap: dist/ is a few MB; node_modules is pinned by the lockfile). */
export async function serverImageHash(options: Pick<ServerImageOptions, "nodeModules" | "appDir"> = {}): Promise<string> {
  const hash = createHash("sha256");
  // This file is the recipe: a change to it is a new image.
  hash.update(await fs.readFile(fileURLToPath(import.meta.url)));
  hash.update(`recipe ${RECIPE}\0modules ${options.nodeModules ?? "bundle"}\0app ${options.appDir ?? repoRoot}\0`);
  const node = realpathSync(process.execPath);
  const st = statSync(node);
  hash.update(`node ${process.version} ${node} ${st.size} ${st.mtimeMs}\0`);
  for (const top of ["dist", "package-lock.json", ...SHIPPED]) {
    const abs = join(repoRoot, top);
    const files = (await fs.stat(abs)).isDirectory() ? await walk(abs) : [abs];
    for (const f of files) {
      const s = await fs.lstat(f);
      hash.update(`${relative(repoRoot, f)}\0${s.mode}\0`);
      if (s.isFile()) hash.update(await fs.readFile(f));
      else if (s.isSymbolicLink()) hash.update(await fs.readlink(f));
    }
  }
  return hash.digest("hex").slice(0, 12);
}

/** The package directories of the production dependency tree (absolute paths). */
async function productionPackages(): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileP("npm", ["ls", "--omit=dev", "--parseable", "--all"], { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 }));
  } catch (err) {
    // npm ls exits non-zero on an extraneous or invalid package but still lists the tree.
    stdout = (err as { stdout?: string }).stdout ?? "";
    if (!stdout.trim()) throw err;
  }
  const root = join(repoRoot, "node_modules");
  return stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${root}${sep}`));
}

const PACKAGE_NAME = /^(@[a-z0-9~-][a-z0-9._~-]*\/)?[a-z0-9~-][a-z0-9._~-]*/;

/**
 * The packages the CLI bundle requires at run time, with their dependencies (optional ones when
 * installed), resolved the way Node does (nested node_modules first, then upwards).
 */
async function bundlePackages(): Promise<string[]> {
  const names = new Set<string>();
  for (const f of await walk(join(repoRoot, "dist", "bundle"))) {
    if (!f.endsWith(".js")) continue;
    const text = await fs.readFile(f, "utf8");
    for (const m of text.matchAll(/require\("([^"./][^"]*)"\)/g)) {
      const spec = m[1]!;
      if (spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0]!)) continue;
      const name = PACKAGE_NAME.exec(spec)?.[0];
      if (name && (!name.startsWith("@") || name.includes("/"))) names.add(name);
    }
  }
  const found = new Set<string>();
  const resolveFrom = (fromDir: string, name: string): string | undefined => {
    for (let d = fromDir; d.length >= repoRoot.length; d = dirname(d)) {
      const candidate = join(d, "node_modules", name);
      if (existsSync(join(candidate, "package.json"))) return candidate;
      if (d === repoRoot) break;
    }
    return undefined;
  };
  const visit = async (dir: string) => {
    if (found.has(dir)) return;
    found.add(dir);
    const pkg = JSON.parse(await fs.readFile(join(dir, "package.json"), "utf8")) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      const at = resolveFrom(dir, dep);
      if (at) await visit(at);
      else if (!pkg.optionalDependencies?.[dep]) throw new Error(`${dep}, a dependency of ${dir}, is not installed`);
    }
  };
  for (const name of names) {
    const at = resolveFrom(repoRoot, name);
    // A name in a code template (ajv's standalone code) or an optional add-on may be absent: skip it.
    if (at) await visit(at);
  }
  return [...found].sort();
}

/**
 * Copies node_modules keeping only the listed packages: a path is kept when it is a listed
 * package, an ancestor of one (node_modules/@scope, a/node_modules), or inside one but not in
 * its nested node_modules (those hold packages of their own, kept only when listed).
 */
async function copyModules(packages: string[], to: string): Promise<number> {
  const listed = new Set(packages);
  const ancestors = new Set<string>();
  for (const p of packages) for (let d = dirname(p); d.length > repoRoot.length; d = dirname(d)) ancestors.add(d);
  const owner = (p: string): string | undefined => {
    for (let d = p; d.length > repoRoot.length; d = dirname(d)) if (listed.has(d)) return d;
    return undefined;
  };
  const keep = (p: string): boolean => {
    if (listed.has(p) || ancestors.has(p)) return true;
    const o = owner(p);
    return o !== undefined && relative(o, p).split(sep)[0] !== "node_modules";
  };
  let bytes = 0;
  const copy = async (from: string, dest: string) => {
    await fs.mkdir(dest, { recursive: true, mode: 0o755 });
    for (const e of await fs.readdir(from, { withFileTypes: true })) {
      const src = join(from, e.name);
      if (!keep(src)) continue;
      const dst = join(dest, e.name);
      if (e.isDirectory()) await copy(src, dst);
      else if (e.isSymbolicLink()) await fs.symlink(await fs.readlink(src), dst);
      else if (e.isFile()) {
        await fs.copyFile(src, dst);
        bytes += (await fs.stat(dst)).size;
      }
    }
  };
  await copy(join(repoRoot, "node_modules"), to);
  return bytes;
}

/** Shared libraries an ELF file loads, as ldd lists them (the loader included). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await execFileP("ldd", [binary]);
  const libs: string[] = [];
  for (const line of stdout.split("\n")) {
    if (/=> not found/.test(line)) throw new Error(`a library of ${binary} is missing: ${line.trim()}`);
    const m = /=>\s+(\/\S+)\s+\(/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

async function copyFileTo(root: string, from: string, target: string, mode?: number): Promise<void> {
  const to = join(root, target);
  await fs.mkdir(dirname(to), { recursive: true, mode: 0o755 });
  await fs.copyFile(realpathSync(from), to);
  if (mode !== undefined) await fs.chmod(to, mode);
}

async function copyTree(from: string, to: string): Promise<void> {
  await fs.cp(from, to, { recursive: true, verbatimSymlinks: true, filter: (src) => !src.includes(`${sep}__pycache__`) });
}

async function imageSize(dockerHost: string, tag: string): Promise<number | undefined> {
  try {
    const { stdout } = await execFileP("docker", ["image", "inspect", "--format", "{{.Size}}", tag], { env: dockerEnv(dockerHost) });
    return Number(stdout.trim());
  } catch {
    return undefined;
  }
}

/** Builds (or finds) the server image on the given engine; returns its tag and size. */
export async function buildServerImageInfo(docker: Docker | string, options: ServerImageOptions = {}): Promise<ServerImage> {
  const dockerHost = dockerHostOf(docker);
  const log = options.log ?? (() => {});
  const nodeModules = options.nodeModules ?? "bundle";
  const appDir = options.appDir ?? repoRoot;
  if (!appDir.startsWith("/") || appDir === "/") throw new Error(`appDir ${appDir}: give an absolute directory`);
  await fs.access(join(repoRoot, "dist", "cli.js")).catch(() => {
    throw new Error(`${repoRoot}/dist/cli.js is missing: run \`npm run build\` first`);
  });
  const tag = options.tag ?? `${SERVER_REPOSITORY}:offline-${await serverImageHash({ nodeModules, appDir })}`;
  if (!options.force) {
    const size = await imageSize(dockerHost, tag);
    if (size !== undefined) {
      log(`server image ${tag} is already on ${dockerHost}`);
      return { tag, built: false, size };
    }
  }
  const started = Date.now();
  const dir = await fs.mkdtemp(join(tmpdir(), "codebox-server-image-"));
  try {
    const root = join(dir, "rootfs");
    const app = join(root, appDir);
    for (const d of [join(root, "etc"), join(root, "tmp"), app, join(root, "usr/local/bin")]) await fs.mkdir(d, { recursive: true, mode: 0o755 });
    await fs.chmod(join(root, "tmp"), 0o1777);
    await fs.writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/tmp:/sbin/nologin\ncodebox:x:10001:10001:codebox:/tmp:/sbin/nologin\n");
    await fs.writeFile(join(root, "etc/group"), "root:x:0:\ncodebox:x:10001:\n");
    // Node and its libraries at the paths the binary expects.
    await copyFileTo(root, process.execPath, "/usr/local/bin/node", 0o755);
    for (const lib of await sharedLibraries(realpathSync(process.execPath))) await copyFileTo(root, lib, lib, 0o755);
    // The package.
    await copyTree(join(repoRoot, "dist"), join(app, "dist"));
    for (const f of SHIPPED) await copyTree(join(repoRoot, f), join(app, f));
    const packages = nodeModules === "production" ? await productionPackages() : await bundlePackages();
    const bytes = await copyModules(packages, join(app, "node_modules"));
    log(`node_modules (${nodeModules}): ${packages.length} packages, ${(bytes / 1048576).toFixed(1)} MiB`);
    const healthcheck = "fetch('http://127.0.0.1:'+(process.env.CODEBOX_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))";
    const dockerfile = [
      "# Generated by test/cluster/server-image.ts: the codebox server, assembled offline.",
      "FROM scratch",
      "COPY rootfs/ /",
      `WORKDIR ${appDir}`,
      "ENV NODE_ENV=production HOME=/tmp TMPDIR=/tmp PATH=/usr/local/bin",
      "EXPOSE 8080",
      `HEALTHCHECK --interval=10s --timeout=5s --start-period=10s CMD ${JSON.stringify(["/usr/local/bin/node", "-e", healthcheck])}`,
      `LABEL dev.codebox-mcp.image=server dev.codebox-mcp.node=${process.version}`,
      `ENTRYPOINT ${JSON.stringify(["/usr/local/bin/node", `${appDir}/dist/cli.js`])}`,
      'CMD ["serve", "--http", "--host", "0.0.0.0", "--port", "8080"]',
      "",
    ].join("\n");
    await fs.writeFile(join(dir, "Dockerfile"), dockerfile);
    try {
      await execFileP("docker", ["build", "-q", "--rm", "--force-rm", "-t", tag, dir], { env: dockerEnv(dockerHost), maxBuffer: 64 * 1024 * 1024 });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string };
      throw new Error(`docker build of ${tag} on ${dockerHost} failed: ${(e.stderr || e.stdout || String(err)).trim().slice(-2000)}`);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  const size = (await imageSize(dockerHost, tag)) ?? 0;
  log(`built ${tag} on ${dockerHost} in ${Date.now() - started} ms (${(size / 1e6).toFixed(1)} MB)`);
  return { tag, built: true, size };
}

/** Builds (or finds) the server image on the engine (a dockerode client or a DOCKER_HOST) and returns its tag. */
export async function buildServerImage(docker: Docker | string, tag?: string, options: Omit<ServerImageOptions, "tag"> = {}): Promise<string> {
  return (await buildServerImageInfo(docker, { ...options, ...(tag ? { tag } : {}) })).tag;
}
