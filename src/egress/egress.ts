// The egress side of a container: for a user whose operator allowlist is not empty, a proxy on a
// socket in a folder of its own, mounted into that one container; bound to a run with the run's
// (possibly narrowed) policy. A user with an empty allowlist gets nothing: no mount, no socket.
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../config/schema.js";
import { EGRESS_SOCKET_ENV, EGRESS_SOCKET_NAME, SANDBOX_EGRESS_DIR, SANDBOX_EGRESS_SOCKET, egressClientEnv } from "../protocol/egress.js";
import type { Logger } from "../shared/logger.js";
import { SocketDirs } from "../shared/socket-dirs.js";
import { EgressPolicy } from "./policy.js";
import { type EgressEvent, EgressProxy, type EgressSummary, hostAddressesOfThisMachine } from "./proxy.js";

export interface EgressEndpoint {
  mount: { source: string; target: string; readOnly: boolean };
  /** Binds the run's policy; returns the variables the runner sets (none when the run has no egress). */
  bind(runId: string, policy: EgressPolicy): Record<string, string>;
  summary(): EgressSummary;
  close(): Promise<void>;
}

export class Egress {
  private readonly dirs: SocketDirs;
  private readonly hostAddresses = hostAddressesOfThisMachine();

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly onEvent?: (e: EgressEvent) => void,
  ) {
    // "e": e/<id>/proxy.sock is as long as the bridge's run/<id>/mcp.sock, so a data dir whose bridge
    // socket fits keeps this one beside it too (a /tmp root is left behind if the server is killed).
    this.dirs = new SocketDirs(join(config.dataDir, "e"), EGRESS_SOCKET_NAME, "codebox-egress-");
    // Fail at start-up, naming the bad entry, rather than at a user's first run.
    EgressPolicy.forUser(config.egress.allow);
    for (const list of Object.values(config.egress.users)) EgressPolicy.forUser([], list);
  }

  /** What the operator allows this user's runs (global entries and the user's own). */
  policyFor(userId: string): EgressPolicy {
    return EgressPolicy.forUser(this.config.egress.allow, this.config.egress.users[userId] ?? []);
  }

  /** The endpoint of one container of `userId`, or undefined when the user may reach nothing. */
  async open(userId: string): Promise<EgressEndpoint | undefined> {
    if (this.policyFor(userId).empty) return undefined;
    return this.openFor();
  }

  /** An endpoint whatever the user's list (the server's own sandboxes: package installs, bound to the registry). */
  async openFor(): Promise<EgressEndpoint> {
    const dir = this.dirs.next();
    await mkdir(dir, { recursive: true, mode: 0o755 });
    let proxy: EgressProxy;
    try {
      proxy = await EgressProxy.listen(join(dir, EGRESS_SOCKET_NAME), { limits: this.config.egress, logger: this.logger, onEvent: this.onEvent, hostAddresses: this.hostAddresses });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      mount: { source: dir, target: SANDBOX_EGRESS_DIR, readOnly: true },
      bind: (runId, policy) => {
        proxy.bind(runId, policy);
        return policy.empty ? {} : { [EGRESS_SOCKET_ENV]: SANDBOX_EGRESS_SOCKET, ...egressClientEnv() };
      },
      summary: () => proxy.summary(),
      close: async () => {
        await proxy.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  close(): void {
    this.dirs.close();
  }
}
