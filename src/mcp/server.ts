import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Bridge } from "../bridge/bridge.js";
import type { Packages } from "../runs/packages.js";
import type { RunService } from "../runs/run-service.js";
import type { PythonPackages, RuntimeName } from "../shared/languages.js";
import type { UserFiles } from "../stores/user-files.js";
import type { Logger } from "../shared/logger.js";
import { SERVER_CAPABILITIES, SERVER_INSTRUCTIONS, serverInfo } from "./identity.js";
import { registerSandboxResources } from "./resources/sandbox-report.js";
import { registerExecuteCodeTool } from "./tools/execute-code.js";
import { registerFileTools } from "./tools/files.js";
import { registerPackagesTool } from "./tools/packages.js";
import { registerSearchToolsTool } from "./tools/search-tools.js";

export interface McpServerDeps {
  runs: RunService;
  bridge: Bridge;
  files: UserFiles;
  logger: Logger;
  /** The user a request runs as: from the authenticated request (HTTP) or the local user (stdio). */
  userIdFor: (authInfo: unknown) => string;
  /** The OCI runtime sandboxes run under (runc, runsc), in the codebox://sandbox report. */
  ociRuntime: string;
  /** The language runtimes execute_code offers. */
  runtimes: readonly RuntimeName[];
  /** What the Python image holds (the data stack by default). */
  pythonPackages?: PythonPackages | undefined;
  /** The operator allows some users network destinations (execute_code then takes allowHosts). */
  egress?: boolean | undefined;
  /** Package installs (the packages tool), when offered. */
  packages?: Packages | undefined;
}

/** One MCP server per client connection; all share the run service (and so the engine and limits). */
export function createMcpServer(deps: McpServerDeps): McpServer {
  const server = new McpServer(serverInfo(), { capabilities: structuredClone(SERVER_CAPABILITIES), instructions: SERVER_INSTRUCTIONS });
  registerExecuteCodeTool(server, {
    runs: deps.runs,
    logger: deps.logger,
    userIdFor: deps.userIdFor,
    nodeVersion: process.versions.node,
    upstreams: deps.bridge.upstreamNames,
    hasUpstreams: deps.bridge.hasUpstreams,
    runtimes: deps.runtimes,
    pythonPackages: deps.pythonPackages ?? "data",
    egress: deps.egress ?? false,
    packages: deps.packages !== undefined,
  });
  // Without any upstream server, there is nothing to search: the tool would only cost tokens.
  if (deps.bridge.hasUpstreams) registerSearchToolsTool(server, { bridge: deps.bridge, logger: deps.logger, userIdFor: deps.userIdFor, runtimes: deps.runtimes });
  registerFileTools(server, { files: deps.files, logger: deps.logger, userIdFor: deps.userIdFor });
  if (deps.packages) registerPackagesTool(server, { packages: deps.packages, logger: deps.logger, userIdFor: deps.userIdFor });
  registerSandboxResources(server, { runs: deps.runs, userIdFor: deps.userIdFor, ociRuntime: deps.ociRuntime, runtimes: deps.runtimes });
  return server;
}
