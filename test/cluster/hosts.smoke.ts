// Smoke test of the cluster harness (root; `npx -y tsx test/cluster/hosts.smoke.ts`: tsx is no
// devDependency, npx fetches it; vitest tests can import hosts.ts and server-image.ts as they are):
// a lab of N hosts (default 2) in a Swarm, the offline server image and the Node sandbox image
// loaded into every engine, the cell as a global Swarm service with host networking, and an MCP
// client in the root namespace running `console.log(1+1)` on every cell. Then the lab is
// destroyed and checked for leftovers. The machine's main engine is only read (`docker save`,
// `docker image inspect`); images missing there are built in the lab's manager engine instead.
//
//   --count N        hosts (default 2)
//   --logs DIR       keep each dockerd's log and each cell's log there
//   --keep           leave the lab running (destroy it later with cleanupStale("cbc"))
import { randomBytes } from "node:crypto";
import { promises as fs, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type Host, type Lab, MAIN_DOCKER_HOST, createLab, dockerAt, leftovers, run } from "./hosts.js";
import { imageSize, provideImages, waitFor } from "./support.js";

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const value = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const COUNT = Number(value("--count") ?? 2);
const LOGS = value("--logs");
const PREFIX = "cbc";
const SERVICE = "cbc_cell";
const PORT = 8080;

const t0 = Date.now();
const timings: Array<[string, number]> = [];
const log = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`);
async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await f();
  } finally {
    timings.push([label, Date.now() - start]);
    log(`${label}: ${Date.now() - start} ms`);
  }
}
function check(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function cellContainer(lab: Lab, h: Host): Promise<string | undefined> {
  const r = await lab.docker(h, ["ps", "-q", "--filter", `label=com.docker.swarm.service.name=${SERVICE}`]);
  return r.stdout.trim().split("\n")[0] || undefined;
}

async function dumpCells(lab: Lab): Promise<void> {
  console.log((await lab.docker(lab.manager!, ["service", "ps", "--no-trunc", SERVICE])).stdout);
  for (const h of lab.hosts) {
    const ids = (await lab.docker(h, ["ps", "-aq", "--filter", `label=com.docker.swarm.service.name=${SERVICE}`])).stdout.trim().split("\n").filter(Boolean);
    for (const id of ids) {
      const l = await lab.docker(h, ["logs", "--tail", "40", id]);
      console.log(`--- ${h.name} ${id}\n${l.stdout}${l.stderr}`);
    }
  }
}

async function callCell(h: Host, key: string): Promise<{ stdout: string; ms: number }> {
  const client = new Client({ name: "cbc-smoke", version: "0" });
  const transport = new StreamableHTTPClientTransport(new URL(`http://${h.address}:${PORT}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${key}` } } });
  await client.connect(transport);
  try {
    const start = Date.now();
    const r = await client.callTool({ name: "execute_code", arguments: { language: "javascript", code: "console.log(1+1)" } });
    const sc = r.structuredContent as { stdout?: string; exitCode?: number } | undefined;
    if (r.isError || sc?.exitCode !== 0) throw new Error(`execute_code on ${h.name} failed: ${JSON.stringify(r.content).slice(0, 1500)}`);
    return { stdout: sc.stdout ?? "", ms: Date.now() - start };
  } finally {
    await client.close();
  }
}

/** What the machine holds that a lab could leave behind (compared before and after). */
async function machineSnapshot(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) if (line) out.add(`mount ${line.split(" ")[4]}`);
  for (const l of JSON.parse((await run("ip", ["-j", "link", "show"])).stdout) as Array<{ ifname: string }>) out.add(`link ${l.ifname}`);
  for (const n of JSON.parse((await run("ip", ["-j", "netns", "list"])).stdout.trim() || "[]") as Array<{ name: string }>) out.add(`netns ${n.name}`);
  for (const c of readdirSync("/sys/fs/cgroup")) {
    try {
      for (const d of readdirSync(join("/sys/fs/cgroup", c), { withFileTypes: true })) if (d.isDirectory()) out.add(`cgroup ${c}/${d.name}`);
    } catch {
      // not a hierarchy
    }
  }
  for (const r of (await run("iptables", ["-S"])).stdout.split("\n")) if (r) out.add(`iptables ${r}`);
  for (const d of ["/run", "/var/lib", "/srv", "/run/containerd/s", "/tmp"]) for (const e of readdirSync(d)) out.add(`file ${d}/${e}`);
  for (const pid of readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      if (/^(dockerd|containerd|containerd-shim|runc|node)/.test(comm)) out.add(`process ${pid} ${comm}`);
    } catch {
      // gone
    }
  }
  return out;
}

async function main(): Promise<void> {
  const before = await machineSnapshot();
  const containerdSocketsBefore = readdirSync("/run/containerd/s").length;
  const mainContainersBefore = (await dockerAt(MAIN_DOCKER_HOST, ["ps", "-aq"])).stdout;
  const lab = await timed(`createLab(${COUNT}) + Swarm`, () => createLab({ prefix: PREFIX, count: COUNT, swarm: true, log, ...(LOGS ? { keepLogsIn: LOGS } : {}) }));
  let failed: unknown;
  try {
    const nodes = (await lab.docker(lab.manager!, ["node", "ls", "--format", "{{.Hostname}}"], { check: true })).stdout.trim().split("\n").sort();
    check(JSON.stringify(nodes) === JSON.stringify(lab.hosts.map((h) => h.hostname).sort()), `Swarm nodes ${nodes} are the hosts' hostnames`);
    for (const h of lab.hosts) await lab.labelNode(h, "codebox.cell", "true");

    const images = await provideImages(lab, timed, log);
    for (const [name, tag] of Object.entries(images)) log(`${name} image ${tag}: ${(await imageSize(lab, lab.hosts[0]!, tag) / 1e6).toFixed(1)} MB`);

    // The cell's data directory: as the server runs as root in its container, it hands the users'
    // directories to the sandbox uid itself (stores/user-dirs.ts); the directory only has to exist.
    const key = randomBytes(18).toString("base64url");
    const config = {
      sandbox: { runtimes: ["node"] },
      storage: { quota: "soft" },
      http: { allowedHosts: lab.hosts.map((h) => h.address) },
    };
    await lab.docker(lab.manager!, ["config", "create", "cbc-cell-config", "-"], { input: JSON.stringify(config), check: true });
    const srv = join("/srv", PREFIX, "{{.Node.Hostname}}");
    await timed("service create + every cell answering /healthz", async () => {
      await lab.docker(
        lab.manager!,
        [
          "service", "create", "--detach", "--no-resolve-image",
          "--name", SERVICE,
          "--mode", "global",
          "--network", "host",
          "--constraint", "node.labels.codebox.cell==true",
          "--mount", `type=bind,source=/run/${PREFIX}/{{.Node.Hostname}}/docker.sock,target=/var/run/docker.sock`,
          "--mount", `type=bind,source=${srv},target=${srv}`,
          "--env", `CODEBOX_DATA_DIR=${srv}`,
          "--env", "CODEBOX_DOCKER_HOST=unix:///var/run/docker.sock",
          "--env", `CODEBOX_API_KEYS=alice=${key}`,
          "--env", "CODEBOX_LOG_LEVEL=info",
          "--config", "source=cbc-cell-config,target=/etc/codebox/config.json",
          "--stop-grace-period", "10s",
          images.server,
          "serve", "--http", "--host", "0.0.0.0", "--port", String(PORT), "--config", "/etc/codebox/config.json",
        ],
        { check: true },
      );
      try {
        await Promise.all(
          lab.hosts.map((h) =>
            waitFor(`the cell on ${h.name}`, 120_000, async () => {
              const r = await fetch(`http://${h.address}:${PORT}/healthz`, { signal: AbortSignal.timeout(1000) });
              return r.ok ? true : undefined;
            }),
          ),
        );
      } catch (err) {
        await dumpCells(lab);
        throw err;
      }
    });

    // Templates in mount sources and env: each cell has its own node's socket and directory.
    for (const h of lab.hosts) {
      const id = await cellContainer(lab, h);
      check(id, `a cell container runs on ${h.name}`);
      const mounts = JSON.parse((await lab.docker(h, ["inspect", "--format", "{{json .Mounts}}", id], { check: true })).stdout) as Array<{ Source: string; Destination: string }>;
      const env = JSON.parse((await lab.docker(h, ["inspect", "--format", "{{json .Config.Env}}", id], { check: true })).stdout) as string[];
      log(`${h.name}: cell ${id.slice(0, 12)} mounts ${mounts.map((m) => `${m.Source}:${m.Destination}`).join(", ")}; ${env.find((e) => e.startsWith("CODEBOX_DATA_DIR="))}`);
      check(mounts.some((m) => m.Source === h.dataDir && m.Destination === h.dataDir), `${h.name}: data dir ${h.dataDir} at the same path`);
      check(mounts.some((m) => m.Source === `${h.runDir}/docker.sock`), `${h.name}: its own engine's socket`);
    }

    // MCP from the root namespace to every cell.
    for (const h of lab.hosts) {
      const first = await timed(`execute_code on ${h.name} (first call)`, () => callCell(h, key));
      check(first.stdout.trim() === "2", `${h.name} printed "2" (got ${JSON.stringify(first.stdout)})`);
      const second = await callCell(h, key);
      check(second.stdout.trim() === "2", `${h.name} printed "2" again`);
      log(`${h.name}: "2" (first call ${first.ms} ms, second ${second.ms} ms)`);
      const ws = statSync(join(h.dataDir, "users", "alice", "workspace"));
      log(`${h.name}: ${h.dataDir}/users/alice/workspace owned by ${ws.uid}:${ws.gid}`);
      const sandboxes = (await lab.docker(h, ["ps", "-a", "--filter", "label=dev.codebox-mcp.managed=true", "--format", '{{.Image}} {{.Label "dev.codebox-mcp.host"}}'])).stdout.trim();
      log(`${h.name}: sandbox containers on its engine: ${sandboxes.split("\n").filter(Boolean).length} (${[...new Set(sandboxes.split("\n"))].join("; ")})`);
    }

    // A lost host: its link cut, connections time out (no reset); back when restored.
    const lost = lab.hosts[lab.hosts.length - 1]!;
    await lab.cutLink(lost);
    const cutAt = Date.now();
    const outcome = await fetch(`http://${lost.address}:${PORT}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => `answered ${r.status}`,
      (e: Error) => `${e.name}${(e as { cause?: { code?: string } }).cause?.code ? ` ${(e as { cause?: { code?: string } }).cause?.code}` : ""}`,
    );
    log(`${lost.name} cut: /healthz -> ${outcome} after ${Date.now() - cutAt} ms`);
    check(outcome === "TimeoutError", `a cut host times out rather than refusing (got ${outcome})`);
    await lab.restoreLink(lost);
    await waitFor(`${lost.name} back`, 10_000, async () => ((await fetch(`http://${lost.address}:${PORT}/healthz`, { signal: AbortSignal.timeout(1000) })).ok ? true : undefined));
    const again = await callCell(lost, key);
    check(again.stdout.trim() === "2", `${lost.name} runs code after its link is restored`);
    log(`${lost.name}: link restored, "2" again`);

    if (LOGS) {
      await fs.mkdir(LOGS, { recursive: true });
      for (const h of lab.hosts) {
        const id = await cellContainer(lab, h);
        if (id) {
          const l = await lab.docker(h, ["logs", id]);
          await fs.writeFile(join(LOGS, `${h.name}.cell.log`), l.stdout + l.stderr);
        }
      }
    }
  } catch (err) {
    failed = err;
  } finally {
    if (flag("--keep")) {
      log(`--keep: the lab stays up (${lab.hosts.map((h) => `${h.name} ${h.address} ${h.dockerHost}`).join("; ")})`);
    } else {
      await timed("destroy", () => lab.destroy());
      const left = await leftovers(PREFIX);
      const sockets = readdirSync("/run/containerd/s").length;
      const mainContainers = (await dockerAt(MAIN_DOCKER_HOST, ["ps", "-aq"])).stdout;
      log(`after destroy: leftovers ${JSON.stringify(left)}; /run/containerd/s entries ${containerdSocketsBefore} -> ${sockets}; main engine containers unchanged: ${mainContainers === mainContainersBefore}`);
      const after = await machineSnapshot();
      const added = [...after].filter((x) => !before.has(x) && !/^process \d+ node$/.test(x));
      // Other work on the machine (tests on the main engine) may add things too: anything here is
      // reported; only what names the lab fails the smoke.
      log(`machine snapshot: ${before.size} entries before, ${after.size} after; new since the start: ${added.length ? added.join("; ") : "none"}`);
      if (!failed) check(!added.some((x) => x.includes(PREFIX)), "nothing of the lab in the machine snapshot");
      if (!failed) {
        check(left.length === 0, "destroy leaves nothing");
        check(sockets <= containerdSocketsBefore, "no shim sockets left in /run/containerd/s");
      }
    }
  }
  console.log("\ntimings:");
  for (const [label, ms] of timings) console.log(`  ${label}: ${(ms / 1000).toFixed(1)} s`);
  if (failed) throw failed;
  console.log("\nOK");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
