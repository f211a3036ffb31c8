import { hostname } from "node:os";
import { randomUUID } from "node:crypto";

// Every container we create carries these labels, so one that outlives its server can be found
// and removed (reaper.ts), and tests can prove none is left behind.
export const LABEL = {
  managed: "dev.codebox-mcp.managed",
  instance: "dev.codebox-mcp.instance",
  host: "dev.codebox-mcp.host",
  pid: "dev.codebox-mcp.pid",
  run: "dev.codebox-mcp.run",
  user: "dev.codebox-mcp.user",
  expires: "dev.codebox-mcp.expires-at",
} as const;

export interface ServerInstance {
  id: string;
  host: string;
  pid: number;
}

export function currentInstance(host = hostname()): ServerInstance {
  return { id: randomUUID(), host, pid: process.pid };
}

export function containerLabels(instance: ServerInstance, runId: string, userId: string, expiresAtMs: number): Record<string, string> {
  return {
    [LABEL.managed]: "true",
    [LABEL.instance]: instance.id,
    [LABEL.host]: instance.host,
    [LABEL.pid]: String(instance.pid),
    [LABEL.run]: runId,
    [LABEL.user]: userId,
    [LABEL.expires]: String(expiresAtMs),
  };
}
