import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { RunService } from "../../runs/run-service.js";
import { probeProgram, type SandboxFacts } from "../../sandbox/probe.js";
import { type RuntimeName, defaultRuntime } from "../../shared/languages.js";
import { SandboxError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { toolError } from "../result.js";

const facts = z.object({
  ociRuntime: z.string().describe("The OCI runtime the sandbox runs under: runc, or runsc (gVisor)."),
  uid: z.number(),
  gid: z.number(),
  capEff: z.string().nullable(),
  capPrm: z.string().nullable(),
  capBnd: z.string().nullable(),
  noNewPrivs: z.boolean().nullable(),
  seccompMode: z.number().nullable(),
  readOnlyRoot: z.boolean(),
  writable: z.object({ workspace: z.boolean(), skills: z.boolean(), tmp: z.boolean(), servers: z.boolean() }),
  network: z.object({ interfaces: z.array(z.string()), tcpToInternet: z.string(), cloudMetadata: z.string(), dns: z.string() }),
  limits: z.object({
    memoryBytes: z.union([z.number(), z.literal("max")]).nullable(),
    cpus: z.number().nullable(),
    pids: z.union([z.number(), z.literal("max")]).nullable(),
    openFiles: z.union([z.number(), z.literal("unlimited")]).nullable(),
    fileSizeBytes: z.union([z.number(), z.literal("unlimited")]).nullable(),
    tmpBytes: z.number().nullable(),
  }),
  dockerSocket: z.boolean(),
  environment: z.array(z.string()),
  kernel: z.string(),
  interpreter: z.object({ name: z.string(), version: z.string() }),
});

export function registerSandboxInfoTool(server: McpServer, deps: { runs: RunService; logger: Logger; userIdFor: (authInfo: unknown) => string; ociRuntime: string; runtimes: readonly RuntimeName[] }): void {
  const choices = deps.runtimes as [RuntimeName, ...RuntimeName[]];
  server.registerTool(
    "sandbox_info",
    {
      title: "Inspect the sandbox",
      description:
        "Starts a sandbox and reports its isolation as measured from inside it: uid, capabilities, seccomp mode, no-new-privileges, " +
        "read-only root, which paths are writable, network reachability (internet, cloud metadata, DNS), memory/CPU/process/file limits, OCI runtime (runc or gVisor). " +
        `Each language runtime has its own image: pass runtime (${choices.join(", ")}) to inspect that one. Use it to check a deployment; it changes nothing.`,
      inputSchema: { runtime: z.enum(choices).optional().describe(`Which language runtime's sandbox to inspect (default ${defaultRuntime(choices)}).`) },
      outputSchema: facts.shape,
      annotations: { title: "Inspect the sandbox", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async (args, extra) => {
      try {
        const runtime = args.runtime ?? defaultRuntime(choices);
        const r = await deps.runs.execute({ userId: deps.userIdFor(extra.authInfo), ...probeProgram(runtime), runtime, signal: extra.signal });
        if (r.exitCode !== 0) throw new SandboxError(`the probe failed in the sandbox (exit ${r.exitCode}): ${r.stderr.slice(0, 500)}`);
        const measured = JSON.parse(r.stdout) as SandboxFacts;
        const out = { ociRuntime: deps.ociRuntime, ...measured };
        const l = measured.limits;
        const text = [
          `OCI runtime ${deps.ociRuntime} (kernel ${measured.kernel}), ${measured.interpreter.name} ${measured.interpreter.version}`,
          `uid ${measured.uid}, gid ${measured.gid}; CapEff ${measured.capEff}; NoNewPrivs ${measured.noNewPrivs}; seccomp mode ${measured.seccompMode} (2 = filtering)`,
          `root read-only: ${measured.readOnlyRoot}; writable: ${Object.entries(measured.writable).filter(([, v]) => v).map(([k]) => k).join(", ")}`,
          `network: interfaces ${measured.network.interfaces.join(", ")}; internet TCP ${measured.network.tcpToInternet}; cloud metadata ${measured.network.cloudMetadata}; DNS ${measured.network.dns}`,
          `limits: memory ${l.memoryBytes}, cpus ${l.cpus}, pids ${l.pids}, open files ${l.openFiles}, file size ${l.fileSizeBytes}, /tmp ${l.tmpBytes} bytes`,
          `docker socket visible: ${measured.dockerSocket}; environment: ${measured.environment.join(", ")}`,
        ].join("\n");
        return { content: [{ type: "text", text }], structuredContent: out };
      } catch (err) {
        return toolError(err, deps.logger);
      }
    },
  );
}
