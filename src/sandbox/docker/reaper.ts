import type Docker from "dockerode";
import type { Logger } from "../../shared/logger.js";
import { engineStatus } from "./engine.js";
import { LABEL, type ServerInstance } from "./labels.js";

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Decides whether a labelled container is an orphan. Several servers may share one engine
 * (two editors each start their own over stdio), so "not mine" is not enough: a container is an
 * orphan when the server that made it is gone (same host, its pid dead) or when it has outlived
 * the longest deadline it could have had.
 */
export function isOrphan(labels: Record<string, string>, self: ServerInstance, nowMs: number, alive: (pid: number) => boolean = processAlive): boolean {
  if (labels[LABEL.instance] === self.id) return false;
  const expires = Number(labels[LABEL.expires]);
  if (Number.isFinite(expires) && nowMs > expires) return true;
  const pid = Number(labels[LABEL.pid]);
  if (labels[LABEL.host] === self.host && Number.isInteger(pid) && pid > 0) return pid === self.pid ? true : !alive(pid);
  return false;
}

export async function reapOrphans(docker: Docker, self: ServerInstance, logger: Logger, nowMs = Date.now()): Promise<number> {
  const containers = await docker.listContainers({ all: true, filters: { label: [`${LABEL.managed}=true`] } });
  let removed = 0;
  for (const info of containers) {
    if (!isOrphan(info.Labels ?? {}, self, nowMs)) continue;
    try {
      await docker.getContainer(info.Id).remove({ force: true });
      removed++;
      logger.info("removed a sandbox container left by a server that is gone", { containerId: info.Id.slice(0, 12), run: info.Labels?.[LABEL.run] });
    } catch (err) {
      if (engineStatus(err) !== 404 && engineStatus(err) !== 409) logger.warn("could not remove an orphaned sandbox container", { containerId: info.Id.slice(0, 12), err });
    }
  }
  return removed;
}
