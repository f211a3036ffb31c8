// The router's calls to a cell's internal listener (transport/cell.ts), with the cluster token.
import { connect } from "node:net";
import { type CellInfo, type PlacementReport as CellReport, hostPort } from "../../protocol/cluster.js";
import { type CellClient, CellUnreachable } from "./cells.js";

/** Errors that mean nobody listens there (the process or host is gone), as opposed to a slow answer. */
export function isDefiniteNetworkError(err: unknown): boolean {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "EPIPE" || code === "UND_ERR_SOCKET") return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export class HttpCellClient implements CellClient {
  constructor(
    private readonly token: string,
    private readonly internalPort: number,
  ) {}

  private async get<T>(address: string, path: string, signal: AbortSignal, acceptNotReady: boolean): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`http://${hostPort(address, this.internalPort)}${path}`, { headers: { authorization: `Bearer ${this.token}` }, signal });
    } catch (err) {
      throw new CellUnreachable(`${path}: ${(err as Error).message}`, isDefiniteNetworkError(err));
    }
    const text = await res.text();
    if (!res.ok && !(acceptNotReady && res.status === 503)) throw new CellUnreachable(`${path} answered HTTP ${res.status}: ${text.slice(0, 200)}`, res.status === 401);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CellUnreachable(`${path} answered something that is not JSON`, true);
    }
  }

  reachable(address: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: address, port: this.internalPort });
      const fail = (err: Error) => {
        socket.destroy();
        reject(new CellUnreachable(`connect: ${err.message}`, isDefiniteNetworkError(err)));
      };
      const onAbort = () => fail(new Error(`no connection within the probe timeout`));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      socket.once("connect", () => {
        signal.removeEventListener("abort", onAbort);
        socket.destroy();
        resolve();
      });
      socket.once("error", (err) => {
        signal.removeEventListener("abort", onAbort);
        fail(err);
      });
    });
  }

  async finishMove(address: string, action: "commit" | "abort", user: string, moveId: string): Promise<void> {
    const res = await fetch(`http://${hostPort(address, this.internalPort)}/internal/${action}?${new URLSearchParams({ user, move: moveId })}`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(30_000),
    });
    if (!res.ok) throw new Error(`/internal/${action} answered HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  }

  info(address: string, signal: AbortSignal): Promise<CellInfo> {
    return this.get<CellInfo>(address, "/internal/cell", signal, true);
  }

  placement(address: string, signal: AbortSignal): Promise<CellReport> {
    return this.get<CellReport>(address, "/internal/placement", signal, false);
  }
}
