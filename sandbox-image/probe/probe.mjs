// Run inside a sandbox for the codebox://sandbox/<runtime> resource (Node or Bun): measures the isolation from the
// inside, the way an attacker would see it, and prints one JSON object (SandboxFacts).
/* global Bun */
import fs from "node:fs";
import os from "node:os";
import net from "node:net";
import dns from "node:dns/promises";

const read = (p) => { try { return fs.readFileSync(p, "utf8"); } catch { return null; } };
const status = read("/proc/self/status") ?? "";
const field = (k) => status.match(new RegExp(`^${k}:\\s*(\\S+)`, "m"))?.[1] ?? null;
const limit = (name) => {
  const line = (read("/proc/self/limits") ?? "").split("\n").find((l) => l.startsWith(name));
  const soft = line?.slice(26).trim().split(/\s+/)[0];
  return soft === undefined ? null : soft === "unlimited" ? "unlimited" : Number(soft);
};
const writable = (p) => { const f = `${p}/.codebox-probe-${process.pid}`; try { fs.writeFileSync(f, "x"); fs.unlinkSync(f); return true; } catch { return false; } };
const num = (t) => { const v = t?.trim(); return v && /^\d+$/.test(v) ? Number(v) : v === "max" ? "max" : null; };

const memV1 = num(read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
const memV2 = num(read("/sys/fs/cgroup/memory.max"));
const pids = num(read("/sys/fs/cgroup/pids/pids.max")) ?? num(read("/sys/fs/cgroup/pids.max"));
const quota = num(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
const period = num(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
const cpuMax = read("/sys/fs/cgroup/cpu.max")?.trim().split(" ");
const cpus = typeof quota === "number" && quota > 0 && typeof period === "number" ? quota / period
  : cpuMax && cpuMax[0] !== "max" ? Number(cpuMax[0]) / Number(cpuMax[1]) : null;
let tmpBytes = null;
try { const s = fs.statfsSync("/tmp"); tmpBytes = s.blocks * s.bsize; } catch {}

const tcp = await new Promise((resolve) => {
  const s = net.connect({ host: "1.1.1.1", port: 443, timeout: 1500 });
  s.on("connect", () => { s.destroy(); resolve("connected"); });
  s.on("timeout", () => { s.destroy(); resolve("timeout"); });
  s.on("error", (e) => resolve(e.code ?? "error"));
});
const metadata = await new Promise((resolve) => {
  const s = net.connect({ host: "169.254.169.254", port: 80, timeout: 1500 });
  s.on("connect", () => { s.destroy(); resolve("connected"); });
  s.on("timeout", () => { s.destroy(); resolve("timeout"); });
  s.on("error", (e) => resolve(e.code ?? "error"));
});
const lookup = await dns.lookup("example.com").then(() => "resolved", (e) => e.code ?? "error");

console.log(JSON.stringify({
  uid: process.getuid(),
  gid: process.getgid(),
  capEff: field("CapEff"),
  capPrm: field("CapPrm"),
  capBnd: field("CapBnd"),
  noNewPrivs: field("NoNewPrivs") === null ? null : field("NoNewPrivs") === "1",
  seccompMode: field("Seccomp") === null ? null : Number(field("Seccomp")),
  readOnlyRoot: !writable("/opt") && !writable("/"),
  writable: { workspace: writable("/workspace"), skills: writable("/skills"), tmp: writable("/tmp"), servers: writable("/servers") },
  network: {
    interfaces: Object.keys(os.networkInterfaces()),
    tcpToInternet: tcp,
    cloudMetadata: metadata,
    dns: lookup,
  },
  limits: {
    memoryBytes: memV1 ?? memV2,
    cpus,
    pids,
    openFiles: limit("Max open files"),
    fileSizeBytes: limit("Max file size"),
    tmpBytes,
  },
  dockerSocket: ["/var/run/docker.sock", "/run/docker.sock"].some((p) => fs.existsSync(p)),
  environment: Object.keys(process.env).sort(),
  kernel: os.release(),
  interpreter: typeof Bun !== "undefined" ? { name: "bun", version: Bun.version } : { name: "node", version: process.version },
}));
