import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { InstalledPackage, Packages } from "../../runs/packages.js";
import { InputError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { toolError } from "../result.js";

const listText = (l: InstalledPackage[]) => l.map((p) => `${p.name}@${p.version}`).join(", ") || "none";

/** packages: install, remove and list the user's npm and pip packages (runs import them). */
export function registerPackagesTool(server: McpServer, deps: { packages: Packages; logger: Logger; userIdFor: (authInfo: unknown) => string }): void {
  server.registerTool(
    "packages",
    {
      title: "Install packages for code",
      description: "Install, remove or list the npm (TypeScript/JavaScript) and pip (Python) packages your code imports; they stay for later runs.",
      inputSchema: {
        action: z.enum(["install", "remove", "list"]),
        manager: z.enum(["npm", "pip"]).optional(),
        packages: z.array(z.string().max(200)).max(20).optional().describe('e.g. "zod@^3", "pandas>=2"'),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    async (args, extra) => {
      try {
        const userId = deps.userIdFor(extra.authInfo);
        if (args.action === "list") {
          const all = await deps.packages.list(userId);
          return { content: [{ type: "text", text: `npm: ${listText(all.npm)}\npip: ${listText(all.pip)}` }] };
        }
        if (!args.manager) throw new InputError(`say which manager: "npm" for TypeScript/JavaScript, "pip" for Python`);
        const names = args.packages ?? [];
        const r = args.action === "install" ? await deps.packages.install(userId, args.manager, names, extra.signal) : await deps.packages.remove(userId, args.manager, names, extra.signal);
        const done = args.action === "install" ? `Installed ${listText(r.installed)}` : `Removed ${names.join(", ")}`;
        return { content: [{ type: "text", text: `${done}. ${args.manager} packages now: ${listText(r.all)}.` }] };
      } catch (err) {
        return toolError(err, deps.logger);
      }
    },
  );
}
