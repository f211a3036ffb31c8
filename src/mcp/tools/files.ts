import { ResourceTemplate, type McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { InputError, NotFoundError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { mimeOfExtension } from "../../shared/mime.js";
import type { UserFiles } from "../../stores/user-files.js";
import { toolError } from "../result.js";

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
    "save_skill",
    {
      title: "Save a skill",
      description:
        "Save reusable code as a skill: /skills/<name>/index.ts (TypeScript) or /skills/<name>/__init__.py (Python), plus a SKILL.md with its description. " +
        'Later runs import it with `import { fn } from "/skills/<name>/index.ts"`, or in Python `from skills.<name> import fn` ("-" in the name becomes "_"). Saving an existing name replaces it.',
      inputSchema: {
        name: z.string().describe('1-64 characters of a-z, 0-9 and "-", e.g. "parse-invoices"'),
        description: z.string().describe("What it does and when to use it (at most 1024 characters)"),
        code: z.string().describe("The module's source: export (TypeScript) or define (Python) the functions to reuse"),
        language: z.enum(["typescript", "python"]).default("typescript").describe('"typescript" (default) or "python"'),
      },
      annotations: { title: "Save a skill", readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    guard(async (args: { name: string; description: string; code: string; language: "typescript" | "python" }, userId) => {
      if (Buffer.byteLength(args.code) > files.maxWriteBytes) throw new InputError(`code is over ${files.maxWriteBytes} bytes`);
      const s = await files.saveSkill(userId, args);
      server.sendResourceListChanged();
      const how = args.language === "python" ? `import ${s.import} as ${s.name.replace(/-/g, "_")}` : `import * as ${s.name.replace(/-./g, (m) => m[1]!.toUpperCase())} from "${s.import}";`;
      return { ...text(`Saved skill "${s.name}". Import it with: ${how}`), structuredContent: { ...s } };
    }),
  );

  server.registerTool(
    "list_skills",
    {
      title: "List skills",
      description: "List the skills code can import: your own (read-write) and the built-in ones (read-only), with their descriptions.",
      inputSchema: {},
      annotations: { title: "List skills", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    guard(async (_args: Record<string, never>, userId) => {
      const skills = await files.listSkills(userId);
      const lines = skills.map((s) => `${s.name}${s.readOnly ? " (built-in)" : ""}: ${s.description}\n  ${s.languages.includes("typescript") ? `import from "/skills/${s.name}/index.ts"` : ""}${s.languages.length > 1 ? "; " : ""}${s.pythonImport ? `Python: from ${s.pythonImport} import ...` : ""}`);
      return { ...text(skills.length ? lines.join("\n") : "No skills yet: save one with save_skill."), structuredContent: { skills } };
    }),
  );

  server.registerTool(
    "get_skill",
    {
      title: "Get a skill",
      description: "Read a skill's SKILL.md and its code.",
      inputSchema: { name: z.string() },
      annotations: { title: "Get a skill", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    guard(async (args: { name: string }, userId) => {
      const s = await files.getSkill(userId, args.name);
      return { ...text(`${s.skillMd}\n\n--- ${s.import} ---\n${s.code}`), structuredContent: { name: s.name, description: s.description, readOnly: s.readOnly, import: s.import, language: s.language, code: s.code } };
    }),
  );

  server.registerTool(
    "delete_skill",
    {
      title: "Delete a skill",
      description: "Delete one of your skills (built-in ones cannot be deleted).",
      inputSchema: { name: z.string() },
      annotations: { title: "Delete a skill", readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    guard(async (args: { name: string }, userId) => {
      const removed = await files.deleteSkill(userId, args.name);
      if (!removed) throw new NotFoundError(`No skill named "${args.name}". list_skills shows the ones there are.`);
      server.sendResourceListChanged();
      return { ...text(`Deleted skill "${args.name}".`), structuredContent: { deleted: args.name } };
    }),
  );

  server.registerTool(
    "write_file",
    {
      title: "Write a file into the workspace",
      description: `Put a file into /workspace (kept between runs), e.g. data for code to read. Path relative to /workspace; parent folders are created. At most ${files.maxWriteBytes} bytes.`,
      inputSchema: {
        path: z.string().describe('Relative path, e.g. "data/input.csv"'),
        content: z.string(),
        encoding: z.enum(["utf8", "base64"]).default("utf8"),
      },
      annotations: { title: "Write a file into the workspace", readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
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
