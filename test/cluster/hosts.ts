// "Several hosts on one machine" for the cluster tests (docs/SCALING.md section 12,
// shared/DESIGN.md): each host is a network namespace with a veth pair to a bridge in the root
// namespace and its own Docker engine. Root only; the machine's main engine is never touched
// (images are read from it with `docker save`, nothing else).
//
// Per host NAME (e.g. cbc1), with prefix P (e.g. cbc):
//   netns NAME; veth NAMEh (root side, a port of the bridge Pbr) <-> eth0 (in the namespace)
//   /run/P/NAME/        docker.sock, docker.pid, exec/ (the engine's exec root), daemon.json, dockerd.log
//   /var/lib/P/NAME/    the engine's data root
//   /srv/P/NAME/        Host.dataDir: the cell's data, bind-mounted at the same path
//   cgroup /P-NAME      the engine's --cgroup-parent (every container it starts, to find them all)
// The engine runs in the namespace's network (nsenter --net; `ip netns exec` remounts /sys and
// dockerd then fails) and in a UTS namespace of its own (hostname NAME: Swarm nodes need distinct
// hostnames) and a mount namespace of its own (slave of the root one: it sees every host path,
// and its own mounts (overlay layers, container namespaces) die with it instead of piling up in
// the root namespace).
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, promises as fs, readFileSync, readdirSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";

export interface Host {
  /** e.g. "cbc1": the netns, the UTS hostname, the Swarm node's hostname. */
  name: string;
  netns: string;
  /** IPv4 address on the lab bridge (inside the namespace). */
  address: string;
  /** "unix:///run/cbc/cbc1/docker.sock" */
  dockerHost: string;
  /** The engine's UTS hostname == the Swarm node's hostname == name. */
  hostname: string;
  /** A short directory for the cell's data (exists, root-owned, 0755). */
  dataDir: string;
  /** The engine's data root and run directory (socket, pidfile, exec root, log). */
  dataRoot: string;
  runDir: string;
  /** dockerd's log. */
  logFile: string;
  /** The root-namespace end of the veth pair (what cutLink sets down). */
  vethRoot: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface DockerOptions {
  /** Bytes written to the command's stdin. */
  input?: string | Buffer;
  timeoutMs?: number;
  /** Throw when the exit code is not 0 (default false). */
  check?: boolean;
}

export interface LoadOptions {
  /** Where the images come from: the main engine (default) or one of the lab's hosts. */
  from?: Host;
  /** Load even when a host already has every tag. */
  force?: boolean;
}

export interface Lab {
  prefix: string;
  hosts: Host[];
  /** The bridge's address in the root namespace (the router's side). */
  bridgeAddress: string;
  bridge: string;
  subnet: string;
  /** The Swarm manager, once swarmInit ran. */
  manager: Host | undefined;
  /** Creates and starts one more host (not joined to the Swarm: call swarmJoin). */
  addHost(): Promise<Host>;
  swarmInit(manager: Host): Promise<void>;
  swarmJoin(h: Host): Promise<void>;
  /** `docker node update --label-add key=value` on the manager. */
  labelNode(h: Host, key: string, value: string): Promise<void>;
  /** `docker save` once from the source engine, `docker load` into each host in parallel (hosts that lack a tag). */
  loadImages(tags: string[], hosts?: Host[], options?: LoadOptions): Promise<void>;
  /** The root side of the host's veth down: the host is lost, no TCP reset reaches anyone. */
  cutLink(h: Host): Promise<void>;
  restoreLink(h: Host): Promise<void>;
  /** The docker CLI against the host's engine. */
  docker(h: Host, args: string[], options?: DockerOptions): Promise<ExecResult>;
  /** A command in the host's network namespace (nsenter --net). */
  exec(h: Host, argv: string[], options?: DockerOptions): Promise<ExecResult>;
  /** Stops everything and removes every trace; idempotent. */
  destroy(): Promise<void>;
}

export interface LabOptions {
  /** Names: `${prefix}${n}`; 1-6 lower-case letters or digits, starting with a letter. Default "cbc". */
  prefix?: string;
  count: number;
  /** A /24, default 10.213.7.0/24: the bridge takes .1, host n takes .(10+n). */
  subnet?: string;
  /** Form a Swarm: init on the first host, join the others (default false). */
  swarm?: boolean;
  /** Copy each dockerd log here on destroy (the lab's own copy is removed). */
  keepLogsIn?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

const MARKER = ".codebox-lab";
const STOP_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// Processes

export function run(cmd: string, args: string[], options: DockerOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: options.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs) timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      const r = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code: code ?? (signal ? 128 : 1) };
      if (options.check && r.code !== 0) reject(new Error(`${cmd} ${args.join(" ")} exited ${r.code}${signal ? ` (${signal})` : ""}: ${r.stderr.trim() || r.stdout.trim()}`));
      else resolve(r);
    });
    child.stdin.on("error", () => {});
    child.stdin.end(options.input ?? "");
  });
}

const must = (cmd: string, args: string[], options: DockerOptions = {}) => run(cmd, args, { ...options, check: true });

function dockerEnv(dockerHost: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("DOCKER_")) env[k] = v;
  env.DOCKER_HOST = dockerHost;
  return env;
}

export const MAIN_DOCKER_HOST = "unix:///var/run/docker.sock";

/** The docker CLI against any engine. */
export function dockerAt(dockerHost: string, args: string[], options: DockerOptions = {}): Promise<ExecResult> {
  return run("docker", args, { ...options, env: dockerEnv(dockerHost) });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = left.filter(alive);
  }
  return left;
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

function pingEngine(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Names and addresses

function checkPrefix(prefix: string): void {
  // Interface names are at most 15 bytes: `${prefix}${n}h` and `${prefix}br` must fit.
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) throw new Error(`lab prefix "${prefix}": 1-6 lower-case letters or digits, starting with a letter`);
}

function paths(prefix: string) {
  return { run: `/run/${prefix}`, lib: `/var/lib/${prefix}`, srv: `/srv/${prefix}` };
}

function parseSubnet(subnet: string): { base: number[]; cidr: string } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.0\/24$/.exec(subnet);
  if (!m) throw new Error(`subnet ${subnet}: give a /24 such as 10.213.7.0/24`);
  const base = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (base.some((b) => b > 255)) throw new Error(`subnet ${subnet} is not an IPv4 /24`);
  return { base, cidr: subnet };
}

function ipToInt(ip: string): number {
  return ip.split(".").reduce((a, b) => a * 256 + Number(b), 0);
}

function overlaps(a: string, b: string): boolean {
  const range = (c: string): [number, number] => {
    const [ip, bits = "32"] = c.split("/");
    const n = Number(bits);
    const size = 2 ** (32 - n);
    const start = Math.floor(ipToInt(ip!) / size) * size;
    return [start, start + size - 1];
  };
  const [a0, a1] = range(a);
  const [b0, b1] = range(b);
  return a0 <= b1 && b0 <= a1;
}

/** Refuses a subnet that overlaps a route or an address of the root namespace (other than our bridge's). */
async function checkSubnetFree(subnet: string, bridge: string): Promise<void> {
  const routes = JSON.parse((await must("ip", ["-j", "-4", "route", "show", "table", "all"])).stdout || "[]") as Array<{ dst?: string; dev?: string; type?: string }>;
  for (const r of routes) {
    if (!r.dst || r.dst === "default" || r.dev === bridge || r.dev === "lo" || r.type === "broadcast") continue;
    if (/^(127\.|0\.0\.0\.0|255\.)/.test(r.dst)) continue;
    if (overlaps(subnet, r.dst)) throw new Error(`subnet ${subnet} overlaps the route ${r.dst} on ${r.dev}: pick another (LabOptions.subnet)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Discovery of a prefix's traces (used by destroy, cleanupStale and leftovers)

async function listNetns(prefix: string): Promise<string[]> {
  const r = await run("ip", ["-j", "netns", "list"]);
  const list = JSON.parse(r.stdout.trim() || "[]") as Array<{ name: string }>;
  const re = new RegExp(`^${prefix}\\d+$`);
  return list.map((n) => n.name).filter((n) => re.test(n));
}

async function listLinks(prefix: string): Promise<string[]> {
  const r = await run("ip", ["-j", "link", "show"]);
  const list = JSON.parse(r.stdout.trim() || "[]") as Array<{ ifname: string }>;
  const re = new RegExp(`^${prefix}(\\d+h|br)$`);
  return list.map((l) => l.ifname.split("@")[0]!).filter((n) => re.test(n));
}

function cgroupRoots(): string[] {
  try {
    return readdirSync("/sys/fs/cgroup").map((c) => join("/sys/fs/cgroup", c));
  } catch {
    return [];
  }
}

/** The cgroup directories of the engines' --cgroup-parent (/P-NAME), per controller hierarchy. */
function labCgroups(prefix: string): string[] {
  const re = new RegExp(`^${prefix}-${prefix}\\d+$`);
  const out: string[] = [];
  for (const root of cgroupRoots()) {
    try {
      for (const name of readdirSync(root)) if (re.test(name)) out.push(join(root, name));
    } catch {
      // not a directory, or not readable
    }
  }
  return out;
}

/** Sub-cgroups of `dir`, deepest first, `dir` last. */
function cgroupTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: string[] = [];
    try {
      entries = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name));
    } catch {
      return;
    }
    for (const e of entries) walk(e);
    out.push(d);
  };
  walk(dir);
  return out;
}

function cgroupPids(dir: string): number[] {
  const pids: number[] = [];
  for (const d of cgroupTree(dir)) {
    try {
      for (const line of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n")) if (line.trim()) pids.push(Number(line));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Processes that belong to the lab: in its namespaces, its cgroups, or naming its directories. */
async function labPids(prefix: string): Promise<number[]> {
  const pids = new Set<number>();
  for (const ns of await listNetns(prefix)) {
    const r = await run("ip", ["netns", "pids", ns]);
    for (const line of r.stdout.split("\n")) if (line.trim()) pids.add(Number(line));
  }
  for (const cg of labCgroups(prefix)) for (const pid of cgroupPids(cg)) pids.add(pid);
  const p = paths(prefix);
  const needles = [`${p.run}/`, `${p.lib}/`];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ");
    } catch {
      continue;
    }
    // dockerd (its pidfile and exec root), its containerd and the shims (containerd's address).
    if (/(^|\/)(dockerd|containerd|containerd-shim[\w-]*|docker-proxy) /.test(cmdline) && needles.some((n) => cmdline.includes(n))) pids.add(pid);
  }
  pids.delete(process.pid);
  return [...pids].filter((pid) => pid > 1);
}

function mountTargets(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((t): t is string => !!t);
}

function labMounts(prefix: string): string[] {
  const p = paths(prefix);
  const roots = [p.run, p.lib, p.srv];
  const nsRe = new RegExp(`^/(var/)?run/netns/${prefix}\\d+$`);
  return mountTargets()
    .filter((t) => roots.some((r) => t === r || t.startsWith(`${r}/`)) || nsRe.test(t))
    .sort((a, b) => b.length - a.length);
}

async function iptablesRules(prefix: string): Promise<string[]> {
  const r = await run("iptables", ["-S", "FORWARD"]).catch(() => ({ stdout: "", stderr: "", code: 1 }));
  return r.stdout.split("\n").filter((l) => l.includes(`--comment ${prefix}-lab`) || l.includes(`--comment "${prefix}-lab"`));
}

/** What is left of a lab with this prefix on the machine (empty when nothing is). */
export async function leftovers(prefix = "cbc"): Promise<string[]> {
  checkPrefix(prefix);
  const out: string[] = [];
  for (const pid of await labPids(prefix)) {
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").slice(0, 120);
    } catch {
      continue;
    }
    out.push(`process ${pid}: ${cmd}`);
  }
  for (const m of labMounts(prefix)) out.push(`mount ${m}`);
  for (const ns of await listNetns(prefix)) out.push(`netns ${ns}`);
  for (const l of await listLinks(prefix)) out.push(`link ${l}`);
  for (const d of Object.values(paths(prefix))) if (existsSync(d)) out.push(`dir ${d}`);
  for (const cg of labCgroups(prefix)) out.push(`cgroup ${cg}`);
  for (const rule of await iptablesRules(prefix)) out.push(`iptables ${rule}`);
  return out;
}

/**
 * Removes every trace of a lab with this prefix: its processes (SIGTERM to the engines, then
 * SIGKILL to whatever remains), mounts, namespaces, interfaces, cgroups, firewall rule and
 * directories. For a crashed earlier run, and as the second half of destroy(). Directories are
 * removed only when they carry the lab's marker file (a /srv/cbc of someone else's is left alone).
 */
export async function cleanupStale(prefix = "cbc", log: (line: string) => void = () => {}): Promise<void> {
  checkPrefix(prefix);
  const p = paths(prefix);
  // 1. Engines first, gently: dockerd stops its containers and its containerd.
  const engines: number[] = [];
  if (existsSync(p.run)) {
    for (const name of readdirSync(p.run)) {
      const pidfile = join(p.run, name, "docker.pid");
      try {
        const pid = Number(readFileSync(pidfile, "utf8").trim());
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (cmdline.includes("dockerd") && cmdline.includes(pidfile)) engines.push(pid);
      } catch {
        // no pidfile, or no such process
      }
    }
  }
  if (engines.length > 0) {
    log(`stopping dockerd ${engines.join(", ")}`);
    signal(engines, "SIGTERM");
    const stuck = await waitGone(engines, STOP_TIMEOUT_MS);
    signal(stuck, "SIGKILL");
    await waitGone(stuck, 5000);
  }
  // 2. Whatever is left of the lab's processes (containerd, shims, containers).
  for (let round = 0; round < 5; round++) {
    const pids = await labPids(prefix);
    if (pids.length === 0) break;
    log(`killing ${pids.length} leftover processes`);
    signal(pids, round === 0 ? "SIGTERM" : "SIGKILL");
    await waitGone(pids, round === 0 ? 3000 : 5000);
  }
  // 3. Cgroups (children first).
  for (const cg of labCgroups(prefix)) {
    for (const d of cgroupTree(cg)) await fs.rmdir(d).catch(() => {});
  }
  // 4. Mounts under the lab's directories (a mount namespace of the engine's own keeps most of
  // them out of the root namespace; anything that leaked is lazily unmounted).
  for (const m of labMounts(prefix)) {
    if (/\/run\/netns\//.test(m)) continue; // ip netns del unmounts those
    log(`unmounting ${m}`);
    await run("umount", [m]).then((r) => (r.code === 0 ? r : run("umount", ["-l", m])));
  }
  // 5. Interfaces (deleting a veth deletes its peer), namespaces, firewall rule.
  for (const l of await listLinks(prefix)) await run("ip", ["link", "del", l]);
  for (const ns of await listNetns(prefix)) await run("ip", ["netns", "del", ns]);
  for (const rule of await iptablesRules(prefix)) {
    const args = rule.replace(/^-A /, "-D ").match(/"[^"]*"|\S+/g)!.map((a) => a.replace(/^"|"$/g, ""));
    await run("iptables", args);
  }
  // 6. Directories, only if they are ours.
  for (const d of Object.values(p)) {
    if (!existsSync(d)) continue;
    if (!existsSync(join(d, MARKER))) {
      log(`leaving ${d}: it has no ${MARKER} marker, so it is not a lab's`);
      continue;
    }
    if (labMounts(prefix).some((m) => m === d || m.startsWith(`${d}/`))) throw new Error(`${d} still has mounts under it; not removing it`);
    await fs.rm(d, { recursive: true, force: true, maxRetries: 3 });
  }
}

// ---------------------------------------------------------------------------------------------
// The lab

export async function createLab(options: LabOptions): Promise<Lab> {
  if (process.getuid?.() !== 0) throw new Error("the cluster lab needs root (network namespaces, dockerd)");
  const prefix = options.prefix ?? "cbc";
  checkPrefix(prefix);
  const { base, cidr } = parseSubnet(options.subnet ?? "10.213.7.0/24");
  const log = options.log ?? (() => {});
  const bridge = `${prefix}br`;
  const bridgeAddress = `${base.join(".")}.1`;
  const p = paths(prefix);
  const runtimes = mainRuntimes();

  await cleanupStale(prefix, log);
  await checkSubnetFree(cidr, bridge);
  for (const d of Object.values(p)) {
    // Never adopt a directory that is not a lab's (cleanupStale left it alone for that reason).
    if (existsSync(d) && !existsSync(join(d, MARKER))) throw new Error(`${d} exists and is not a lab's (no ${MARKER}): pick another prefix or remove it`);
    await fs.mkdir(d, { recursive: true, mode: 0o755 });
    await fs.writeFile(join(d, MARKER), `codebox cluster lab ${prefix}\n`);
  }

  // The bridge: no STP, no forwarding delay (a port that comes back forwards at once).
  await must("ip", ["link", "add", "name", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"]);
  await must("ip", ["addr", "add", `${bridgeAddress}/24`, "dev", bridge]);
  await must("ip", ["link", "set", bridge, "up"]);
  // The main engine sets FORWARD's policy to DROP and br_netfilter passes bridged frames through
  // it: without this rule host-to-host traffic on the bridge (Swarm joins) is dropped.
  await run("iptables", ["-I", "FORWARD", "1", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", `${prefix}-lab`, "-j", "ACCEPT"]);

  const hosts: Host[] = [];
  const engines = new Map<string, ChildProcess>();
  let next = 1;
  let manager: Host | undefined;
  let destroyed = false;

  const docker = (h: Host, args: string[], o: DockerOptions = {}) => dockerAt(h.dockerHost, args, o);

  async function startHost(n: number): Promise<Host> {
    const name = `${prefix}${n}`;
    if (10 + n > 254) throw new Error("at most 244 hosts in a /24");
    const address = `${base.join(".")}.${10 + n}`;
    const runDir = join(p.run, name);
    const h: Host = {
      name,
      netns: name,
      address,
      dockerHost: `unix://${runDir}/docker.sock`,
      hostname: name,
      dataDir: join(p.srv, name),
      dataRoot: join(p.lib, name),
      runDir,
      logFile: join(runDir, "dockerd.log"),
      vethRoot: `${name}h`,
    };
    for (const d of [h.runDir, h.dataRoot, h.dataDir]) await fs.mkdir(d, { recursive: true, mode: 0o755 });

    // Network: namespace, veth to the bridge, address, loopback.
    const peer = `${name}n`;
    await must("ip", ["netns", "add", name]);
    await must("ip", ["link", "add", h.vethRoot, "type", "veth", "peer", "name", peer]);
    await must("ip", ["link", "set", peer, "netns", name]);
    await must("ip", ["link", "set", h.vethRoot, "master", bridge, "up"]);
    await must("ip", ["-n", name, "link", "set", peer, "name", "eth0"]);
    await must("ip", ["-n", name, "addr", "add", `${address}/24`, "dev", "eth0"]);
    await must("ip", ["-n", name, "link", "set", "eth0", "up"]);
    await must("ip", ["-n", name, "link", "set", "lo", "up"]);

    // The engine. Its own config file: the machine's /etc/docker/daemon.json may set hosts or a
    // data root that would clash with the flags; only the OCI runtimes are carried over.
    const config = join(runDir, "daemon.json");
    await fs.writeFile(config, `${JSON.stringify(runtimes ? { runtimes } : {}, null, 2)}\n`);
    const args = [
      `--net=/var/run/netns/${name}`,
      "--",
      "unshare",
      "--uts",
      "--mount",
      "--propagation",
      "slave",
      "--",
      "/bin/sh",
      "-c",
      'hostname "$0" && exec "$@"',
      name,
      "dockerd",
      "--config-file",
      config,
      "--data-root",
      h.dataRoot,
      "--exec-root",
      join(runDir, "exec"),
      "--pidfile",
      join(runDir, "docker.pid"),
      "-H",
      h.dockerHost,
      "--iptables=false",
      "--ip6tables=false",
      "--ip-forward=false",
      "--ip-masq=false",
      "--bridge=none",
      "--userland-proxy=false",
      "--cgroup-parent",
      `/${prefix}-${name}`,
      "--swarm-default-advertise-addr",
      address,
      "--shutdown-timeout",
      "5",
    ];
    const out = openSync(h.logFile, "a");
    const child = spawn("nsenter", args, { stdio: ["ignore", out, out], detached: true });
    closeSync(out);
    child.unref();
    engines.set(name, child);
    let exited: string | undefined;
    child.on("exit", (code, sig) => {
      exited = `exited ${code ?? sig}`;
    });
    const socket = join(runDir, "docker.sock");
    const deadline = Date.now() + 60_000;
    while (!(await pingEngine(socket))) {
      if (exited || Date.now() > deadline) {
        const tail = (await fs.readFile(h.logFile, "utf8").catch(() => "")).split("\n").slice(-15).join("\n");
        throw new Error(`dockerd of ${name} ${exited ?? "did not answer /_ping in 60 s"}; its log (${h.logFile}) ends:\n${tail}`);
      }
      await sleep(200);
    }
    const info = await docker(h, ["info", "--format", "{{.Name}}"], { check: true });
    if (info.stdout.trim() !== name) throw new Error(`the engine of ${name} reports the hostname "${info.stdout.trim()}"`);
    log(`${name}: ${address}, engine up`);
    return h;
  }

  async function nodeStatus(): Promise<Map<string, { status: string; id: string }>> {
    const r = await docker(manager!, ["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ID}}"], { check: true });
    const m = new Map<string, { status: string; id: string }>();
    for (const line of r.stdout.trim().split("\n")) {
      const [hostname, status, id] = line.split(" ");
      if (hostname && status && id) {
        if (m.has(hostname)) throw new Error(`two Swarm nodes share the hostname ${hostname}: ${r.stdout}`);
        m.set(hostname, { status, id });
      }
    }
    return m;
  }

  const lab: Lab = {
    prefix,
    hosts,
    bridgeAddress,
    bridge,
    subnet: cidr,
    get manager() {
      return manager;
    },

    async addHost() {
      if (destroyed) throw new Error("the lab is destroyed");
      const h = await startHost(next++);
      hosts.push(h);
      hosts.sort((a, b) => Number(a.name.slice(prefix.length)) - Number(b.name.slice(prefix.length)));
      return h;
    },

    async swarmInit(m) {
      await docker(m, ["swarm", "init", "--advertise-addr", m.address, "--listen-addr", `${m.address}:2377`, "--data-path-addr", m.address], { check: true, timeoutMs: 60_000 });
      manager = m;
      log(`${m.name}: Swarm manager`);
    },

    async swarmJoin(h) {
      if (!manager) throw new Error("swarmInit first");
      if (h === manager) return;
      const token = (await docker(manager, ["swarm", "join-token", "-q", "worker"], { check: true })).stdout.trim();
      await docker(h, ["swarm", "join", "--token", token, "--advertise-addr", h.address, "--listen-addr", `${h.address}:2377`, "--data-path-addr", h.address, `${manager.address}:2377`], { check: true, timeoutMs: 60_000 });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const nodes = await nodeStatus();
        if (nodes.get(h.hostname)?.status === "Ready") break;
        if (Date.now() > deadline) throw new Error(`${h.name} joined but is not Ready on the manager: ${JSON.stringify([...nodes])}`);
        await sleep(250);
      }
      log(`${h.name}: joined the Swarm`);
    },

    async labelNode(h, key, value) {
      if (!manager) throw new Error("swarmInit first");
      await docker(manager, ["node", "update", "--label-add", `${key}=${value}`, h.hostname], { check: true });
    },

    async loadImages(tags, targets = hosts, o = {}) {
      const source = o.from?.dockerHost ?? MAIN_DOCKER_HOST;
      for (const tag of tags) {
        const r = await dockerAt(source, ["image", "inspect", "--format", "{{.Id}}", tag]);
        if (r.code !== 0) throw new Error(`image ${tag} is not on ${source}`);
      }
      const need: Host[] = [];
      for (const h of targets) {
        if (h === o.from) continue;
        if (o.force) {
          need.push(h);
          continue;
        }
        const r = await docker(h, ["image", "inspect", "--format", "{{.Id}}", ...tags]);
        if (r.code !== 0) need.push(h);
      }
      if (need.length === 0) return;
      await saveLoad(source, tags, need.map((h) => h.dockerHost));
      log(`loaded ${tags.join(", ")} into ${need.map((h) => h.name).join(", ")}`);
    },

    async cutLink(h) {
      await must("ip", ["link", "set", h.vethRoot, "down"]);
    },

    async restoreLink(h) {
      await must("ip", ["link", "set", h.vethRoot, "up"]);
    },

    docker,

    exec(h, argv, o = {}) {
      return run("nsenter", [`--net=/var/run/netns/${h.netns}`, "--", ...argv], o);
    },

    async destroy() {
      destroyed = true;
      // Leave the Swarm (workers, then the manager), with every link up so nothing waits on a peer.
      for (const h of hosts) await run("ip", ["link", "set", h.vethRoot, "up"]);
      const order = [...hosts.filter((h) => h !== manager), ...(manager ? [manager] : [])];
      await Promise.all(
        order.filter((h) => h !== manager).map((h) => (existsSync(join(h.runDir, "docker.sock")) ? docker(h, ["swarm", "leave", "--force"], { timeoutMs: 15_000 }) : undefined)),
      );
      if (manager && existsSync(join(manager.runDir, "docker.sock"))) await docker(manager, ["swarm", "leave", "--force"], { timeoutMs: 15_000 });
      if (options.keepLogsIn) {
        await fs.mkdir(options.keepLogsIn, { recursive: true });
        for (const h of hosts) await fs.copyFile(h.logFile, join(options.keepLogsIn, `${h.name}.dockerd.log`)).catch(() => {});
      }
      await cleanupStale(prefix, log);
      for (const child of engines.values()) child.removeAllListeners();
      engines.clear();
      manager = undefined;
    },
  };

  try {
    await Promise.all(Array.from({ length: options.count }, () => lab.addHost()));
    if (options.swarm && hosts.length > 0) {
      await lab.swarmInit(hosts[0]!);
      for (const h of hosts.slice(1)) await lab.swarmJoin(h);
    }
  } catch (err) {
    await lab.destroy().catch(() => {});
    throw err;
  }
  return lab;
}

/** The OCI runtimes the machine's engine is configured with (runsc, if registered). */
function mainRuntimes(): Record<string, unknown> | undefined {
  try {
    const cfg = JSON.parse(readFileSync("/etc/docker/daemon.json", "utf8")) as { runtimes?: Record<string, unknown> };
    return cfg.runtimes && Object.keys(cfg.runtimes).length > 0 ? cfg.runtimes : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `docker save` once from `source`, streamed into `docker load` on every target at once (the
 * slowest reader sets the pace).
 */
export async function saveLoad(source: string, tags: string[], targets: string[]): Promise<void> {
  const save = spawn("docker", ["save", ...tags], { env: dockerEnv(source), stdio: ["ignore", "pipe", "pipe"] });
  const loads = targets.map((t) => spawn("docker", ["load", "-q"], { env: dockerEnv(t), stdio: ["pipe", "pipe", "pipe"] }));
  const errText = (c: ChildProcess) => {
    const chunks: Buffer[] = [];
    c.stderr!.on("data", (d: Buffer) => chunks.push(d));
    return () => Buffer.concat(chunks).toString().trim();
  };
  const saveErr = errText(save);
  const loadErrs = loads.map(errText);
  for (const l of loads) {
    l.stdout!.resume();
    l.stdin!.on("error", () => {});
  }
  const done = (c: ChildProcess) => new Promise<number>((resolve) => c.on("close", (code) => resolve(code ?? 1)));
  const saveDone = done(save);
  const loadDone = loads.map(done);
  // Backpressure: pause the save while any live load has a full buffer; a load that dies is dropped.
  const live = new Set(loads);
  const full = new Set<ChildProcess>();
  const maybeResume = () => {
    if (full.size === 0) save.stdout.resume();
  };
  for (const l of loads) {
    l.on("close", () => {
      live.delete(l);
      full.delete(l);
      maybeResume();
    });
  }
  save.stdout.on("data", (chunk: Buffer) => {
    for (const l of live) {
      if (!l.stdin!.write(chunk) && !full.has(l)) {
        full.add(l);
        l.stdin!.once("drain", () => {
          full.delete(l);
          maybeResume();
        });
      }
    }
    if (full.size > 0) save.stdout.pause();
  });
  save.stdout.on("end", () => {
    for (const l of live) l.stdin!.end();
  });
  const [saveCode, ...loadCodes] = await Promise.all([saveDone, ...loadDone]);
  if (saveCode !== 0) throw new Error(`docker save ${tags.join(" ")} from ${source} exited ${saveCode}: ${saveErr()}`);
  loadCodes.forEach((code, i) => {
    if (code !== 0) throw new Error(`docker load into ${targets[i]} exited ${code}: ${loadErrs[i]!()}`);
  });
}
