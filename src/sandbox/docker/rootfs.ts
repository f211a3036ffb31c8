// Offline image assembly: a FROM-scratch root filesystem made of this machine's own files (Node's
// binary, Debian's CPython packages) or a pinned npm package (Bun), plus the runner and the
// libraries each binary links. No registry, no shell, no package manager in the result.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs, readFileSync, realpathSync } from "node:fs";
import { arch, homedir, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGunzip } from "node:zlib";
import { extract } from "tar-stream";
import { ImageBuildError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { BUN_VERSION, type PythonPackages, type RuntimeName } from "../../shared/languages.js";
import { RUNTIME_SPECS } from "../runtimes.js";
import { SANDBOX_IMAGE_UID } from "./sandbox-uid.js";

const execFileP = promisify(execFile);


/**
 * Bun's npm packages at BUN_VERSION, by the registry's sha512 integrity. A tarball that does not
 * match is refused: the binary runs agents' code, so it is pinned like a lockfile would pin it.
 */
export const BUN_PACKAGES: Record<string, { name: string; integrity: string }> = {
  "x64": { name: "@oven/bun-linux-x64", integrity: "sha512-IWX9BELoGHAUtMonkeSaNaZwXzRk+oDw6Mk+HBFXd3KHYIBNBsIGRupMZPcgNoDbJpLu6gAJjIoIVPZtt1aJ1g==" },
  // CPUs without AVX2 need the baseline build (the default one dies with SIGILL).
  "x64-baseline": { name: "@oven/bun-linux-x64-baseline", integrity: "sha512-s8yMwYcFnnrA178gji0gZbkE2WVDej/Ti1x770oPfihxyRxSMNhGhiAQNXV53aDeraZxksdvKV/RAdQBCd0qPA==" },
  "arm64": { name: "@oven/bun-linux-aarch64", integrity: "sha512-4BXmsSKnjOrlGWqZV4x/oWa7AVoR+B6lCXddMzOAXBIm3t50eslg9wb66gmtW1AamEQ1l1CDvmmruysEhqOWMg==" },
};

/** Which Bun build this machine needs. */
export function bunVariant(): string {
  if (arch() === "arm64") return "arm64";
  if (arch() !== "x64") throw new ImageBuildError(`Bun has no Linux build for ${arch()}; turn the bun runtime off (sandbox.runtimes)`);
  let cpuinfo = "";
  try {
    cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    // not Linux: take the build that runs everywhere
  }
  return /^flags\s*:.*\bavx2\b/m.test(cpuinfo) ? "x64" : "x64-baseline";
}

/** A staging directory: rootfs/ plus the Dockerfile that copies it into an empty image. */
export class Staging {
  readonly root: string;
  private constructor(readonly dir: string) {
    this.root = join(dir, "rootfs");
  }

  static async create(): Promise<Staging> {
    const dir = await fs.mkdtemp(join(tmpdir(), "codebox-image-"));
    const s = new Staging(dir);
    for (const d of ["etc", "opt/codebox", "usr/local/bin", "workspace", "skills", "servers", "run/codebox", "run/codebox-egress", "deps"]) await fs.mkdir(join(s.root, d), { recursive: true, mode: 0o755 });
    await fs.mkdir(join(s.root, "tmp"), { mode: 0o1777 });
    await fs.chmod(join(s.root, "tmp"), 0o1777);
    await fs.writeFile(join(s.root, "etc/passwd"), `root:x:0:0:root:/nonexistent:/sbin/nologin\nsandbox:x:${SANDBOX_IMAGE_UID}:${SANDBOX_IMAGE_UID}:sandbox:/tmp:/sbin/nologin\n`);
    await fs.writeFile(join(s.root, "etc/group"), `root:x:0:\nsandbox:x:${SANDBOX_IMAGE_UID}:\n`);
    return s;
  }

  /** Copies a host file (symlinks followed) to `target`, an absolute path inside the image. */
  async copy(from: string, target: string, mode?: number): Promise<void> {
    const to = join(this.root, target);
    await fs.mkdir(dirname(to), { recursive: true, mode: 0o755 });
    await fs.copyFile(realpathSync(from), to);
    const st = await fs.stat(to);
    await fs.chmod(to, mode ?? (st.mode & 0o111 ? 0o755 : 0o644));
  }

  async write(target: string, body: Buffer | string, mode = 0o644): Promise<void> {
    const to = join(this.root, target);
    await fs.mkdir(dirname(to), { recursive: true, mode: 0o755 });
    await fs.writeFile(to, body, { mode });
  }

  async symlink(target: string, linkTo: string): Promise<void> {
    const at = join(this.root, target);
    await fs.mkdir(dirname(at), { recursive: true, mode: 0o755 });
    await fs.rm(at, { force: true });
    await fs.symlink(linkTo, at);
  }

  /** Copies a host directory tree (links kept as links) to `target` inside the image. */
  async copyTree(from: string, target: string): Promise<void> {
    for (const e of await fs.readdir(from, { withFileTypes: true })) {
      const src = join(from, e.name);
      const dst = `${target}/${e.name}`;
      if (e.isDirectory()) await this.copyTree(src, dst);
      else if (e.isSymbolicLink()) await this.symlink(dst, await fs.readlink(src));
      else if (e.isFile()) await this.copy(src, dst);
    }
  }

  /** Copies `binaries` and every library they link (the loader included) into the image. */
  async copyWithLibraries(binaries: Array<{ from: string; to: string }>, linked: string[] = binaries.map((b) => b.from)): Promise<void> {
    for (const b of binaries) await this.copy(b.from, b.to, 0o755);
    for (const lib of await sharedLibraries(linked)) await this.copy(lib, lib, 0o755);
  }

  async dockerfile(runtime: RuntimeName, env: readonly string[] = []): Promise<void> {
    const spec = RUNTIME_SPECS[runtime];
    const lines = [
      "FROM scratch",
      "COPY rootfs/ /",
      `USER ${SANDBOX_IMAGE_UID}:${SANDBOX_IMAGE_UID}`,
      "WORKDIR /workspace",
      `ENV HOME=/tmp TMPDIR=/tmp PATH=${spec.path}${env.map((e) => ` ${e}`).join("")}`,
      `CMD ${JSON.stringify(spec.command(256))}`,
      "",
    ];
    await fs.writeFile(join(this.dir, "Dockerfile"), lines.join("\n"));
  }

  async remove(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  /** Every path under the staging directory, parents first, for the build context. */
  async entries(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string) => {
      const names = (await fs.readdir(dir)).sort();
      for (const name of names) {
        const p = join(dir, name);
        out.push(relative(this.dir, p));
        const st = await fs.lstat(p);
        if (st.isDirectory()) await walk(p);
      }
    };
    await walk(this.dir);
    return out;
  }
}

/** Shared libraries the given ELF files load, as `ldd` lists them (the loader included). */
export async function sharedLibraries(binaries: string[]): Promise<string[]> {
  const libs = new Set<string>();
  // ldd takes many files at once; in chunks to stay far from the argument-length limit.
  for (let i = 0; i < binaries.length; i += 100) {
    const chunk = binaries.slice(i, i + 100);
    let stdout: string;
    try {
      ({ stdout } = await execFileP("ldd", chunk, { maxBuffer: 16 * 1024 * 1024 }));
    } catch (err) {
      const out = `${(err as { stdout?: string }).stdout ?? ""}`;
      const text = `${out}${(err as { stderr?: string }).stderr ?? ""}`;
      // ldd exits 1 when any file is static; the others' lists are still in stdout.
      if (!/not a dynamic executable|statically linked/.test(text)) throw new ImageBuildError(`cannot list the shared libraries of ${chunk[0]} with ldd (install libc-bin)`, err);
      stdout = out;
    }
    for (const line of stdout.split("\n")) {
      if (/=> not found/.test(line)) throw new ImageBuildError(`a library is missing on this machine: ${line.trim()}`);
      const m = /=>\s+(\/\S+)\s+\(/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
      if (m?.[1]) libs.add(m[1]);
    }
  }
  return [...libs].sort();
}

/** Node: this machine's own binary (the version the server itself runs on). */
export async function stageNode(s: Staging): Promise<void> {
  await s.copyWithLibraries([{ from: process.execPath, to: "/usr/local/bin/node" }]);
  // npm, for package installs (they run in a sandbox of their own, reaching only the registry).
  const npm = hostNpmRoot();
  if (npm) await s.copyTree(npm, NPM_ROOT_IN_IMAGE);
  await s.symlink("/node_modules", "/deps/node/node_modules");
}

/** Where npm lives in the Node image (its CLI: `node ${NPM_ROOT_IN_IMAGE}/bin/npm-cli.js`). */
export const NPM_ROOT_IN_IMAGE = "/usr/local/lib/node_modules/npm";

/** This machine's npm, next to the Node that runs the server, if it has one. */
export function hostNpmRoot(): string | undefined {
  for (const candidate of [join(dirname(process.execPath), "..", "lib", "node_modules", "npm"), "/usr/lib/node_modules/npm", "/usr/local/lib/node_modules/npm", "/usr/share/nodejs/npm"]) {
    try {
      readFileSync(join(candidate, "bin", "npm-cli.js"));
      return realpathSync(candidate);
    } catch {
      // not there
    }
  }
  return undefined;
}

/** Bun: the binary from its pinned npm package, fetched with this machine's npm configuration. */
export async function stageBun(s: Staging, logger: Logger): Promise<void> {
  const binary = await fetchBun(s.dir, logger);
  await s.copyWithLibraries([{ from: binary, to: "/usr/local/bin/bun" }]);
  await fs.rm(binary, { force: true });
  // The user's installed npm packages (mounted at /deps) resolve from anywhere.
  await s.symlink("/node_modules", "/deps/node/node_modules");
}

/** Where fetched runtime packages are kept between image builds (checked again on every use). */
function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME?.startsWith("/") ? process.env.XDG_CACHE_HOME : join(homedir(), ".cache");
  return join(base, "codebox-mcp");
}

async function integrityOf(file: string): Promise<string> {
  return `sha512-${createHash("sha512").update(await fs.readFile(file)).digest("base64")}`;
}

async function fetchBun(dir: string, logger: Logger): Promise<string> {
  const pkg = BUN_PACKAGES[bunVariant()]!;
  const spec = `${pkg.name}@${BUN_VERSION}`;
  const cached = join(cacheDir(), `${pkg.name.replace(/[@/]/g, "_")}-${BUN_VERSION}.tgz`);
  let tarball: string;
  if ((await integrityOf(cached).catch(() => "")) === pkg.integrity) {
    tarball = cached;
  } else {
    logger.info(`fetching Bun ${BUN_VERSION} (${pkg.name}) from the npm registry`);
    let filename: string;
    try {
      // npm, not a bare HTTPS request: it honours the user's registry, proxy and CA settings.
      const { stdout } = await execFileP("npm", ["pack", spec, "--pack-destination", dir, "--json", "--loglevel=error"], { maxBuffer: 16 * 1024 * 1024, timeout: 300_000 });
      filename = (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename;
    } catch (err) {
      throw new ImageBuildError(`could not fetch ${spec} with \`npm pack\` (${(err as Error).message.split("\n")[0]}); check that npm reaches its registry, or turn the bun runtime off (sandbox.runtimes)`, err);
    }
    tarball = join(dir, filename);
    const digest = await integrityOf(tarball);
    if (digest !== pkg.integrity) throw new ImageBuildError(`${spec} does not match its pinned integrity (got ${digest}); refusing to use it`);
    // Kept for the next build (an upgrade of codebox-mcp rebuilds the image); best effort.
    await fs
      .mkdir(dirname(cached), { recursive: true, mode: 0o700 })
      .then(() => fs.copyFile(tarball, `${cached}.tmp`))
      .then(() => fs.rename(`${cached}.tmp`, cached))
      .catch((err: unknown) => logger.debug("could not cache the Bun package", { err }));
  }
  const out = join(dir, "bun.bin");
  const ex = extract();
  let found = false;
  ex.on("entry", (header, stream, next) => {
    if (header.name === "package/bin/bun") {
      found = true;
      pipeline(stream, createWriteStream(out, { mode: 0o755 })).then(() => next(), next);
    } else {
      stream.on("end", () => next());
      stream.resume();
    }
  });
  await pipeline(createReadStream(tarball), createGunzip(), ex);
  if (tarball !== cached) await fs.rm(tarball, { force: true });
  if (!found) throw new ImageBuildError(`${spec} has no package/bin/bun`);
  return out;
}

/** Debian's CPython: the newest python3.X (≥ 3.11) whose packages are installed here. */
export async function debianPython(): Promise<{ version: string; packages: string[] }> {
  let listed = "";
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query format fields, not a template
    ({ stdout: listed } = await execFileP("dpkg-query", ["-W", "-f", "${Package} ${Status}\\n", "python3.*-minimal"]));
  } catch {
    // no dpkg, or no such package: reported below
  }
  const versions = listed
    .split("\n")
    .filter((l) => l.endsWith("install ok installed"))
    .map((l) => /^python3\.(\d+)-minimal /.exec(l)?.[1])
    .filter((v): v is string => v !== undefined && Number(v) >= 11)
    .sort((a, b) => Number(b) - Number(a));
  const minor = versions[0];
  if (!minor) {
    throw new ImageBuildError("the offline Python image is made from Debian's CPython packages, and none (3.11 or newer) is installed: run `apt-get install python3-minimal libpython3-stdlib` (scripts/setup.sh does), or build on an engine that reaches a registry");
  }
  const version = `3.${minor}`;
  return { version, packages: [`python${version}-minimal`, `libpython${version}-minimal`, `libpython${version}-stdlib`] };
}

/** Parts of the stdlib packages a sandbox has no use for (docs, GUI, pip bootstrap). */
const PYTHON_SKIP = /^\/usr\/share\/(doc|man|lintian|binfmts|pixmaps|applications)\/|^\/usr\/lib\/binfmt\.d\/|\/(idlelib|ensurepip|turtledemo|tkinter)\//;

export async function stagePython(s: Staging): Promise<void> {
  const { version, packages } = await debianPython();
  const { stdout } = await execFileP("dpkg", ["-L", ...packages], { maxBuffer: 64 * 1024 * 1024 });
  const elves: string[] = [];
  for (const path of [...new Set(stdout.split("\n"))].filter((p) => p.startsWith("/usr/") || p.startsWith("/etc/python"))) {
    if (PYTHON_SKIP.test(path)) continue;
    const st = await fs.lstat(path).catch(() => undefined);
    if (!st || st.isDirectory()) continue;
    if (st.isSymbolicLink()) {
      // e.g. sitecustomize.py -> /etc/python3.11/sitecustomize.py: kept when its target is shipped too.
      const target = await fs.readlink(path);
      await s.symlink(path, target);
      continue;
    }
    await s.copy(path, path);
    if (path === `/usr/bin/python${version}` || /\.so(\.|$)/.test(path)) elves.push(path);
  }
  for (const lib of await sharedLibraries(elves)) await s.copy(lib, lib, 0o755);
  await s.symlink("/usr/bin/python3", `python${version}`);
  await s.symlink("/usr/bin/python", `python${version}`);
  // Bytecode for the whole stdlib, checked by hash rather than mtime (image files carry no
  // trustworthy mtimes), so each run starts without compiling what it imports.
  const libDir = join(s.root, "usr", "lib", `python${version}`);
  try {
    await execFileP(`/usr/bin/python${version}`, ["-I", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", "-s", s.root, "-p", "/", libDir], { maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    // Only some files failing (e.g. lib2to3 test data) still leaves a working image.
    if (!(await fs.stat(join(libDir, "__pycache__")).catch(() => undefined))) throw new ImageBuildError(`could not precompile the Python stdlib: ${(err as Error).message}`, err);
  }
}

/**
 * The Python data stack, from Debian's packages (the same CPython as the image): what `import
 * numpy, pandas, matplotlib, scipy, openpyxl, PIL` needs. scripts/setup.sh installs them.
 */
export const PYTHON_DATA_PACKAGES = ["python3-numpy", "python3-pandas", "python3-matplotlib", "python3-scipy", "python3-openpyxl", "python3-pil", "python3-pip"] as const;

/**
 * Packages of the closure whose files are copied. Shared libraries are not listed: `ldd` finds
 * what the extension modules link (the BLAS the host selected included). Build-only dependencies
 * Debian declares (compilers' headers, pythran, Tk) are not followed.
 */
const DATA_FILES_FROM = /^(python3-|python-matplotlib-data$|fonts-dejavu-core$|tzdata$)/;
const DATA_DEPENDS_SKIP = /(-dev$|-doc$|^python3(\.\d+)?(-minimal)?$|^libpython|^python3-all|pythran|beniget|gast|^python3-tk$|imagetk|sympy|mpmath|^python3-ply$|^python3-(fs|appdirs|lxml|lz4|ufolib2|brotli|unicodedata2)$)/;
/** Parts of those packages no run needs: the packages' own test suites and command-line tools. */
const DATA_SKIP = /\/tests?\/|^\/usr\/bin\/|^\/usr\/share\/(doc|man|lintian|javascript)\//;

async function dpkgField(pkg: string, field: string): Promise<string> {
  const { stdout } = await execFileP("dpkg-query", ["-W", "-f", `\${${field}}`, pkg]).catch(() => ({ stdout: "" }));
  return stdout;
}

async function installed(pkg: string): Promise<boolean> {
  return (await dpkgField(pkg, "Status")).endsWith("install ok installed");
}

/** The installed packages the data stack's packages depend on, transitively (first installed alternative). */
export async function pythonDataClosure(): Promise<string[]> {
  const missing: string[] = [];
  for (const p of PYTHON_DATA_PACKAGES) if (!(await installed(p))) missing.push(p);
  if (missing.length > 0) {
    throw new ImageBuildError(`the Python data image is made from Debian's packages, and ${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not installed: run \`apt-get install --no-install-recommends ${PYTHON_DATA_PACKAGES.join(" ")}\` (scripts/setup.sh does), or set sandbox.pythonPackages to "stdlib"`);
  }
  const seen = new Set<string>();
  const todo: string[] = [...PYTHON_DATA_PACKAGES];
  while (todo.length > 0) {
    const pkg = todo.pop()!;
    if (seen.has(pkg) || DATA_DEPENDS_SKIP.test(pkg)) continue;
    seen.add(pkg);
    const depends = `${await dpkgField(pkg, "Depends")},${await dpkgField(pkg, "Pre-Depends")}`;
    for (const clause of depends.split(",")) {
      for (const alt of clause.split("|")) {
        const name = alt.trim().replace(/[\s:(].*$/, "");
        if (name && (await installed(name))) {
          todo.push(name);
          break;
        }
      }
    }
  }
  return [...seen].filter((p) => DATA_FILES_FROM.test(p)).sort();
}

/** The data stack on top of stagePython: the packages' files, the libraries they link, their bytecode. */
export async function stagePythonData(s: Staging): Promise<void> {
  const { version } = await debianPython();
  const packages = await pythonDataClosure();
  const { stdout } = await execFileP("dpkg", ["-L", ...packages], { maxBuffer: 256 * 1024 * 1024 });
  const elves: string[] = [];
  for (const path of [...new Set(stdout.split("\n"))].filter((p) => p.startsWith("/usr/") || p === "/etc/matplotlibrc")) {
    if (DATA_SKIP.test(path) || PYTHON_SKIP.test(path)) continue;
    const st = await fs.lstat(path).catch(() => undefined);
    if (!st || st.isDirectory()) continue;
    if (st.isSymbolicLink()) {
      await s.symlink(path, await fs.readlink(path));
      continue;
    }
    await s.copy(path, path);
    if (/\.so(\.|$)/.test(path)) elves.push(path);
  }
  for (const lib of await sharedLibraries(elves)) await s.copy(lib, lib, 0o755);
  await bakeFontCache(s, version);
  const site = join(s.root, "usr", "lib", "python3", "dist-packages");
  try {
    await execFileP(`/usr/bin/python${version}`, ["-I", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", "-s", s.root, "-p", "/", site], { maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    if (!(await fs.stat(join(site, "numpy", "__pycache__")).catch(() => undefined))) throw new ImageBuildError(`could not precompile the Python data stack: ${(err as Error).message}`, err);
  }
}

/** Where the image keeps matplotlib's font list; the runner copies it into the run's MPLCONFIGDIR. */
export const FONT_CACHE_DIR = "/opt/codebox/matplotlib";

/**
 * matplotlib scans every font on its first import in a fresh config dir (a few hundred ms per run,
 * and every run is fresh): the list is made once here, with this machine's matplotlib (the same
 * package the image holds) keeping only fonts the image has.
 */
async function bakeFontCache(s: Staging, version: string): Promise<void> {
  const dir = await fs.mkdtemp(join(tmpdir(), "codebox-mpl-"));
  try {
    await execFileP(`/usr/bin/python${version}`, ["-I", "-c", "import matplotlib.font_manager"], { env: { PATH: "/usr/bin:/bin", MPLCONFIGDIR: dir, HOME: dir }, timeout: 120_000 });
    const name = (await fs.readdir(dir)).find((f) => /^fontlist-v\d+\.json$/.test(f));
    if (!name) throw new ImageBuildError("matplotlib wrote no font list");
    const list = JSON.parse(await fs.readFile(join(dir, name), "utf8")) as { ttflist?: Array<{ fname: string }>; afmlist?: Array<{ fname: string }> };
    const inImage = async (f: { fname: string }) => !f.fname.startsWith("/") || (await fs.stat(join(s.root, f.fname)).then(() => true, () => false));
    for (const key of ["ttflist", "afmlist"] as const) {
      const kept = [];
      for (const f of list[key] ?? []) if (await inImage(f)) kept.push(f);
      list[key] = kept;
    }
    await s.write(`${FONT_CACHE_DIR}/${name}`, JSON.stringify(list));
  } catch (err) {
    throw err instanceof ImageBuildError ? err : new ImageBuildError(`could not make matplotlib's font list: ${(err as Error).message}`, err);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export async function stageRuntime(runtime: RuntimeName, s: Staging, logger: Logger, pythonPackages: PythonPackages = "stdlib"): Promise<void> {
  if (runtime === "node") await stageNode(s);
  else if (runtime === "bun") await stageBun(s, logger);
  else {
    await stagePython(s);
    if (pythonPackages === "data") await stagePythonData(s);
  }
}
