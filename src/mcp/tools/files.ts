import { ResourceTemplate, type McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { InputError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { mimeOfExtension } from "../../shared/mime.js";
import type { UserFiles } from "../../stores/user-files.js";
import { toolError } from "../result.js";
import { sizeText } from "../../shared/format.js";

export interface FileToolDeps {
  files: UserFiles;
  logger: Logger;
  userIdFor: (authInfo: unknown) => string;
}

const text = (t: string) => ({ content: [{ type: "text" as const, text: t }] });

/** Whether bytes are text a client can show as such (valid UTF-8, no NUL). */
export function isText(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

export function mimeOf(path: string, bytes: Buffer): string {
  return mimeOfExtension(path) ?? (isText(bytes) ? "text/plain" : "application/octet-stream");
}

export function workspaceUri(path: string): string {
  return `workspace://${path.split("/").map(encodeURIComponent).join("/")}`;
}

export function registerFileTools(server: McpServer, deps: FileToolDeps): void {
  const { files } = deps;
  const guard =
    <A,>(fn: (args: A, userId: string) => Promise<ReturnType<typeof text> & { structuredContent?: Record<string, unknown> }>) =>
    async (args: A, extra: { authInfo?: unknown }) => {
      try {
        return await fn(args, deps.userIdFor(extra.authInfo));
      } catch (err) {
        return toolError(err, deps.logger);
      }
    };

  server.registerTool(
    "write_file",
    {
      title: "Write a file into the workspace",
      description: `Save a file in /workspace for code to read, e.g. data to analyze (at most ${sizeText(files.maxWriteBytes)}).`,
      inputSchema: {
        path: z.string().describe('Relative to /workspace, e.g. "data/in.csv"'),
        content: z.string(),
        encoding: z.enum(["utf8", "base64"]).default("utf8"),
      },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    guard(async (args: { path: string; content: string; encoding: "utf8" | "base64" }, userId) => {
      const data = Buffer.from(args.content, args.encoding);
      if (data.length > files.maxWriteBytes) throw new InputError(`the file is ${data.length} bytes; the limit is ${files.maxWriteBytes}`);
      await files.writeWorkspace(userId, args.path, data);
      server.sendResourceListChanged();
      return { ...text(`Wrote ${data.length} bytes to /workspace/${args.path}`), structuredContent: { path: `/workspace/${args.path}`, bytes: data.length, uri: workspaceUri(args.path) } };
    }),
  );

  // Skills and workspace files as MCP resources.
  server.registerResource(
    "skill",
    new ResourceTemplate("skill://{name}", {
      list: async (extra) => {
        const skills = await files.listSkills(deps.userIdFor(extra.authInfo));
        return { resources: skills.map((s) => ({ uri: `skill://${s.name}`, name: s.name, description: s.description, mimeType: "text/markdown" })) };
      },
    }),
    { title: "Skills", description: "Reusable code modules importable from /skills/<name>/index.ts", mimeType: "text/markdown" },
    async (uri, variables, extra) => {
      const s = await files.getSkill(deps.userIdFor(extra.authInfo), String(variables.name));
      return { contents: [{ uri: uri.href, mimeType: "text/markdown", text: `${s.skillMd}\n\n\`\`\`ts\n${s.code}\n\`\`\`\n` }] };
    },
  );

  server.registerResource(
    "workspace",
    new ResourceTemplate("workspace://{+path}", {
      list: async (extra) => {
        const entries = await files.listWorkspace(deps.userIdFor(extra.authInfo));
        return { resources: entries.filter((e) => e.kind === "file").map((e) => ({ uri: workspaceUri(e.path), name: e.path, size: e.size })) };
      },
    }),
    { title: "Workspace files", description: "Files in your /workspace" },
    async (uri, variables, extra) => {
      const path = String(variables.path).split("/").map(decodeURIComponent).join("/");
      const bytes = await files.readWorkspace(deps.userIdFor(extra.authInfo), path);
      const mimeType = mimeOf(path, bytes);
      return { contents: [isText(bytes) ? { uri: uri.href, mimeType, text: bytes.toString("utf8") } : { uri: uri.href, mimeType, blob: bytes.toString("base64") }] };
    },
  );
}
