// Resources read on demand rather than tools listed on every turn (the token budget in
// docs/ARCHITECTURE.md): codebox://help, the guide to the sandbox, and codebox://sandbox/<runtime>,
// the sandbox's isolation as measured from inside it.
import { ResourceTemplate, type McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { sandboxGuide } from "../../bridge/codegen/clients.js";
import type { RunService } from "../../runs/run-service.js";
import { probeProgram, type SandboxFacts } from "../../sandbox/probe.js";
import { InputError, SandboxError } from "../../shared/errors.js";
import { RUNTIME_INFO, type RuntimeName } from "../../shared/languages.js";

export const HELP_URI = "codebox://help";

export interface SandboxReportDeps {
  runs: RunService;
  userIdFor: (authInfo: unknown) => string;
  ociRuntime: string;
  runtimes: readonly RuntimeName[];
}

/** What the report holds: the OCI runtime the host chose, then what the probe measured inside. */
export type SandboxReport = { ociRuntime: string } & SandboxFacts;

/** Starts a sandbox of `runtime`, runs the probe in it and returns what it measured. */
export async function sandboxReport(deps: SandboxReportDeps, userId: string, runtime: RuntimeName, signal?: AbortSignal): Promise<SandboxReport> {
  const r = await deps.runs.execute({ userId, ...probeProgram(runtime), runtime, ...(signal ? { signal } : {}) });
  if (r.exitCode !== 0) throw new SandboxError(`the probe failed in the sandbox (exit ${r.exitCode}): ${r.stderr.slice(0, 500)}`);
  return { ociRuntime: deps.ociRuntime, ...(JSON.parse(r.stdout) as SandboxFacts) };
}

export function registerSandboxResources(server: McpServer, deps: SandboxReportDeps): void {
  server.registerResource("help", HELP_URI, { title: "How to use the sandbox", description: "Files, skills, MCP tools from code, output, images, network", mimeType: "text/markdown" }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: "text/markdown", text: sandboxGuide() }],
  }));

  server.registerResource(
    "sandbox",
    new ResourceTemplate("codebox://sandbox/{runtime}", {
      list: async () => ({
        resources: deps.runtimes.map((r) => ({ uri: `codebox://sandbox/${r}`, name: `sandbox-${r}`, title: `${RUNTIME_INFO[r].title} sandbox isolation`, mimeType: "application/json" })),
      }),
    }),
    {
      title: "Sandbox isolation, measured from inside",
      description: "Reading one starts a sandbox of that runtime and reports uid, capabilities, seccomp, read-only root, writable paths, network reachability and limits.",
      mimeType: "application/json",
    },
    async (uri, variables, extra) => {
      const runtime = String(variables.runtime) as RuntimeName;
      if (!deps.runtimes.includes(runtime)) throw new InputError(`no runtime "${String(variables.runtime).slice(0, 40)}" here; read one of: ${deps.runtimes.map((r) => `codebox://sandbox/${r}`).join(", ")}`);
      const report = await sandboxReport(deps, deps.userIdFor(extra.authInfo), runtime, extra.signal);
      return { contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(report, null, 2) }] };
    },
  );
}
