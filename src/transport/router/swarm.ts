// The cells of a Docker Swarm: nodes labelled `<nodeLabel>=true` are the desired cells (a cell's id
// is a prefix and the node's host name), the running tasks of the cells' global service say where
// each listens. Read-only calls to a manager's API (DOCKER_HOST or the local socket); nothing here
// is a list kept by hand (docs/SCALING.md section 4).
import Docker from "dockerode";
import type { CellDirectory, DesiredCell } from "./cells.js";

export interface SwarmDirectoryOptions {
  service: string;
  nodeLabel: string;
  cellIdPrefix: string;
  /** Docker API endpoint of a manager, e.g. unix:///var/run/docker.sock; default: DOCKER_HOST or the local socket. */
  dockerHost?: string;
}

function client(dockerHost: string | undefined): Docker {
  if (!dockerHost) return new Docker();
  const u = new URL(dockerHost);
  if (u.protocol === "unix:") return new Docker({ socketPath: u.pathname });
  return new Docker({ host: u.hostname, port: Number(u.port || 2375), protocol: u.protocol === "https:" ? "https" : "http" });
}

/** The address of a task on its first overlay network, if it has one (CIDR suffix dropped). */
function taskAddress(task: { NetworksAttachments?: Array<{ Network?: { Spec?: { Name?: string } }; Addresses?: string[] }> }): string | undefined {
  for (const n of task.NetworksAttachments ?? []) {
    if (n.Network?.Spec?.Name === "ingress") continue;
    const a = n.Addresses?.[0];
    if (a) return a.split("/")[0];
  }
  return undefined;
}

export class SwarmDirectory implements CellDirectory {
  readonly name = "swarm";
  private readonly docker: Docker;

  constructor(private readonly o: SwarmDirectoryOptions) {
    this.docker = client(o.dockerHost);
  }

  async list(): Promise<DesiredCell[]> {
    const [nodes, tasks] = await Promise.all([
      this.docker.listNodes({ filters: JSON.stringify({ "node.label": [`${this.o.nodeLabel}=true`] }) }),
      this.docker.listTasks({ filters: JSON.stringify({ service: [this.o.service], "desired-state": ["running"] }) }),
    ]);
    const running = new Map<string, (typeof tasks)[number]>();
    for (const t of tasks) if (t.NodeID && t.Status?.State === "running") running.set(t.NodeID, t);
    return nodes.map((n) => {
      const task = n.ID ? running.get(n.ID) : undefined;
      // Host networking (no overlay attachment): the task listens on its node's address.
      const address = task ? (taskAddress(task as Parameters<typeof taskAddress>[0]) ?? n.Status?.Addr) : undefined;
      return { id: `${this.o.cellIdPrefix}${n.Description?.Hostname ?? n.ID}`, ...(address ? { address } : {}) };
    });
  }
}
