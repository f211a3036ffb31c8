// The operator's commands through the router (`codebox-mcp cell …`, docs/SCALING.md section 7):
// move a user, drain or undrain a cell, rebalance after adding one. The router knows where users
// are and where cells listen; the source cell of each move drives it.
import type { IncomingMessage, ServerResponse } from "node:http";
import { hostPort, type MoveReport } from "../../protocol/cluster.js";
import type { Logger } from "../../shared/logger.js";
import type { CellTable } from "./cells.js";

export interface AdminContext {
  table: CellTable;
  token: string;
  internalPort: number;
  logger: Logger;
}

interface MoveOutcome {
  user: string;
  from: string;
  to: string;
  ok: boolean;
  report?: MoveReport;
  error?: string;
}


async function cellCall(ctx: AdminContext, cell: string, path: string): Promise<unknown> {
  const address = ctx.table.address(cell);
  if (!address || !ctx.table.isUp(cell)) throw new Error(`cell ${cell} is not up`);
  const res = await fetch(`http://${hostPort(address, ctx.internalPort)}${path}`, { method: "POST", headers: { authorization: `Bearer ${ctx.token}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`cell ${cell}: HTTP ${res.status} ${text.slice(0, 500)}`);
  return JSON.parse(text) as unknown;
}

export async function moveUser(ctx: AdminContext, user: string, to: string): Promise<MoveOutcome> {
  const from = ctx.table.cellOf(user);
  if (!from) return { user, from: "", to, ok: false, error: `no cell reports user ${user}` };
  if (from === to) return { user, from, to, ok: true };
  const target = ctx.table.address(to);
  if (!target || !ctx.table.isUp(to)) return { user, from, to, ok: false, error: `cell ${to} is not up` };
  try {
    const q = new URLSearchParams({ user, to, target: hostPort(target, ctx.internalPort) });
    const report = (await cellCall(ctx, from, `/internal/move?${q}`)) as MoveReport;
    ctx.table.moved(user, from, to);
    ctx.logger.info("router: moved a user", { user, from, to, bytes: report.bytes, ms: report.totalMs });
    return { user, from, to, ok: true, report };
  } catch (err) {
    return { user, from, to, ok: false, error: (err as Error).message };
  }
}

/**
 * Moves every user not on their home there: one move at a time per source cell (a cell drives
 * its moves one by one), the sources in parallel.
 */
async function rebalance(ctx: AdminContext, only?: (user: string) => boolean, except?: string): Promise<MoveOutcome[]> {
  await ctx.table.refresh();
  const bySource = new Map<string, Array<{ user: string; to: string }>>();
  for (const user of ctx.table.users()) {
    if (only && !only(user)) continue;
    const home = ctx.table.homeOf(user, except);
    const at = ctx.table.cellOf(user);
    if (!home || !at || home === at) continue;
    bySource.set(at, [...(bySource.get(at) ?? []), { user, to: home }]);
  }
  const out: MoveOutcome[] = [];
  await Promise.all(
    [...bySource.values()].map(async (list) => {
      for (const { user, to } of list) out.push(await moveUser(ctx, user, to));
    }),
  );
  return out.sort((a, b) => a.user.localeCompare(b.user));
}

export async function handleAdmin(ctx: AdminContext, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const url = new URL(req.url ?? "/", "http://router");
  const json = (status: number, body: unknown) => void res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body, null, 2)}\n`);
  const param = (name: string) => url.searchParams.get(name) ?? "";
  if (req.method === "GET" && path === "/admin/cells") return json(200, { complete: ctx.table.complete(), cells: ctx.table.status() });
  if (req.method !== "POST") return json(405, { error: "admin commands are POSTs (GET /admin/cells for the status)" });
  switch (path) {
    case "/admin/move": {
      if (!param("user") || !param("to")) return json(400, { error: "move needs ?user=<id>&to=<cell>" });
      await ctx.table.refresh();
      const r = await moveUser(ctx, param("user"), param("to"));
      return json(r.ok ? 200 : 409, r);
    }
    case "/admin/drain": {
      const cell = param("cell");
      if (!cell) return json(400, { error: "drain needs ?cell=<id>" });
      await cellCall(ctx, cell, "/internal/mode?mode=draining");
      const moves = await rebalance(ctx, (u) => ctx.table.cellOf(u) === cell, cell);
      const left = ctx.table.usersOf(cell);
      return json(moves.every((m) => m.ok) && left.length === 0 ? 200 : 409, { cell, mode: "draining", moves, left });
    }
    case "/admin/undrain": {
      const cell = param("cell");
      if (!cell) return json(400, { error: "undrain needs ?cell=<id>" });
      await cellCall(ctx, cell, "/internal/mode?mode=active");
      await ctx.table.refresh();
      return json(200, { cell, mode: "active" });
    }
    case "/admin/rebalance": {
      const moves = await rebalance(ctx);
      return json(moves.every((m) => m.ok) ? 200 : 409, { moves });
    }
    default:
      return json(404, { error: `no ${path}: admin commands are /admin/cells, /admin/move, /admin/drain, /admin/undrain, /admin/rebalance` });
  }
}
