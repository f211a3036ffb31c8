// Per-user internal networks for the bridge's TCP mode: a container on one reaches the host's
// address on that network (where its run's callback listens) and nothing else: no route to the
// internet or the cloud metadata address, and no other user's containers (Docker isolates
// networks from each other). Created on a user's first TCP-mode run, removed when the server
// closes (or by the reaper when the server that made it is gone).
import { createHash } from "node:crypto";
import type Docker from "dockerode";
import type { Logger } from "../../shared/logger.js";
import type { UserNetwork } from "../backend.js";
import { engineStatus } from "./engine.js";
import { LABEL, type ServerInstance } from "./labels.js";
import { isOrphan } from "./reaper.js";

export class DockerNetworks {
  private readonly byUser = new Map<string, Promise<UserNetwork>>();

  constructor(
    private readonly docker: Docker,
    private readonly instance: ServerInstance,
    private readonly logger: Logger,
  ) {}

  /** The user's internal network, created once (concurrent callers share one creation). */
  forUser(userId: string): Promise<UserNetwork> {
    let net = this.byUser.get(userId);
    if (!net) {
      net = this.create(userId).catch((err: unknown) => {
        this.byUser.delete(userId);
        throw err;
      });
      this.byUser.set(userId, net);
    }
    return net;
  }

  private async create(userId: string): Promise<UserNetwork> {
    const name = `codebox-${this.instance.id.slice(0, 8)}-${createHash("sha256").update(userId).digest("hex").slice(0, 12)}`;
    const created = await this.docker.createNetwork({
      Name: name,
      Driver: "bridge",
      // Security: no route out of the network; only the host's address on it and its own members.
      Internal: true,
      CheckDuplicate: true,
      Labels: { [LABEL.managed]: "true", [LABEL.instance]: this.instance.id, [LABEL.host]: this.instance.host, [LABEL.pid]: String(this.instance.pid), [LABEL.user]: userId },
    });
    const info = (await created.inspect()) as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
    const gateway = info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
    if (!gateway) {
      await created.remove().catch(() => {});
      throw new Error(`the engine gave network ${name} no gateway address`);
    }
    this.logger.info("created a user's internal network for the bridge's TCP mode", { network: name, gateway });
    return { name, gateway };
  }

  /** Removes this server's networks (containers on them are gone by then). */
  async close(): Promise<void> {
    const nets = await Promise.allSettled([...this.byUser.values()]);
    this.byUser.clear();
    for (const n of nets) if (n.status === "fulfilled") await this.remove(n.value.name);
  }

  /** Removes networks left by servers that are gone; returns how many. */
  async reapOrphans(nowMs = Date.now()): Promise<number> {
    const nets = await this.docker.listNetworks({ filters: { label: [`${LABEL.managed}=true`] } });
    let removed = 0;
    for (const n of nets) {
      if (!isOrphan((n.Labels ?? {}) as Record<string, string>, this.instance, nowMs)) continue;
      if (await this.remove(n.Name)) removed++;
    }
    return removed;
  }

  private async remove(name: string): Promise<boolean> {
    try {
      await this.docker.getNetwork(name).remove();
      return true;
    } catch (err) {
      // 404: gone already; 403/409: still in use (a container being removed): the reaper retries later.
      if (engineStatus(err) !== 404) this.logger.warn("could not remove a bridge network", { network: name, err });
      return false;
    }
  }
}
