import type { Tool } from "@modelcontextprotocol/sdk/types.js";

// Generates the code API the sandbox sees at /servers: one typed function per upstream tool.
// Everything that comes from an upstream (names, descriptions, schemas) is untrusted text that
// ends up in a TypeScript file: identifiers are rebuilt from a safe alphabet, strings go through
// JSON.stringify, and comments cannot be closed early.

const RESERVED = new Set(
  ("break case catch class const continue debugger default delete do else enum export extends false finally for function if import in " +
    "instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package " +
    "private protected public await async arguments eval undefined constructor prototype")
    .split(" "),
);

export function toIdentifier(name: string): string {
  const words = name.split(/[^A-Za-z0-9]+/).filter(Boolean);
  let id = words.map((w, i) => (i === 0 ? w.charAt(0).toLowerCase() + w.slice(1) : w.charAt(0).toUpperCase() + w.slice(1))).join("");
  if (!id) id = "tool";
  if (/^[0-9]/.test(id)) id = `_${id}`;
  if (RESERVED.has(id)) id = `${id}_`;
  return id;
}

export function toFileStem(name: string): string {
  const stem = name.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^[-_.]+/, "").slice(0, 80);
  return stem || "tool";
}

const PY_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except finally for from global if import in is " +
    "lambda nonlocal not or pass raise return try while with yield match case type _").split(" "),
);

/** A Python identifier in snake_case: `getSum` → `get_sum`, `list-rows` → `list_rows`. */
export function toPythonIdentifier(name: string): string {
  let id = name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean)
    .join("_")
    .slice(0, 80);
  if (!id) id = "tool";
  if (/^[0-9]/.test(id)) id = `_${id}`;
  if (PY_KEYWORDS.has(id)) id = `${id}_`;
  return id;
}

/**
 * A server's directory under /servers: a valid Python package name too (`my-server` →
 * `my_server`), so TypeScript and Python import the same folder.
 */
export function toServerDir(name: string): string {
  let dir = toFileStem(name).replace(/-/g, "_");
  if (/^[0-9]/.test(dir)) dir = `_${dir}`;
  if (PY_KEYWORDS.has(dir)) dir = `${dir}_`;
  return dir;
}

function pascal(id: string): string {
  const s = id.replace(/^_+/, "");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Makes names unique with a numeric suffix, in order (first come keeps the plain name). */
function uniquify(names: string[], compare: (s: string) => string = (s) => s, reserved: string[] = []): string[] {
  const seen = new Set<string>(reserved.map(compare));
  return names.map((n) => {
    let candidate = n;
    for (let i = 2; seen.has(compare(candidate)); i++) candidate = `${n}_${i}`;
    seen.add(compare(candidate));
    return candidate;
  });
}

export function comment(text: string | undefined, indent = ""): string {
  if (!text) return "";
  // Security: "*/" would end the comment and let an upstream write code into the module.
  const safe = text.replace(/\*\//g, "*\\/").replace(/\r/g, "").trim();
  if (!safe.includes("\n") && safe.length <= 100) return `${indent}/** ${safe} */\n`;
  return `${indent}/**\n${safe
    .split("\n")
    .map((l) => `${indent} * ${l}`.trimEnd())
    .join("\n")}\n${indent} */\n`;
}

type Schema = Record<string, unknown> | boolean | undefined;
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A TypeScript type for a JSON Schema: enough for a model (and an editor) to see the shape. */
export function schemaToType(schema: Schema, depth = 0, indent = ""): string {
  if (schema === true || schema === undefined) return "unknown";
  if (schema === false) return "never";
  if (depth > 8) return "unknown";
  const s = schema;
  if ("const" in s) return JSON.stringify(s.const) ?? "unknown";
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v) ?? "unknown").join(" | ") || "never";
  for (const key of ["anyOf", "oneOf"] as const) {
    const alts = s[key];
    if (Array.isArray(alts)) return alts.map((a) => schemaToType(a as Schema, depth + 1, indent)).join(" | ") || "unknown";
  }
  if (Array.isArray(s.allOf)) return s.allOf.map((a) => schemaToType(a as Schema, depth + 1, indent)).join(" & ") || "unknown";
  const type = s.type;
  if (Array.isArray(type)) return type.map((t) => schemaToType({ ...s, type: t }, depth + 1, indent)).join(" | ");
  switch (type) {
    case "string":
      return "string";
    case "number":
    case "integer":
      return "number";
    case "boolean":
      return "boolean";
    case "null":
      return "null";
    case "array": {
      const item = schemaToType(s.items as Schema, depth + 1, indent);
      return /^[A-Za-z0-9_."]+$/.test(item) ? `${item}[]` : `Array<${item}>`;
    }
    case "object":
      return objectType(s, depth, indent);
    default:
      return s.properties ? objectType(s, depth, indent) : "unknown";
  }
}

function objectType(s: Record<string, unknown>, depth: number, indent: string): string {
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  const inner = `${indent}  `;
  const lines: string[] = [];
  for (const [key, prop] of Object.entries(props)) {
    const desc = typeof prop === "object" && typeof prop.description === "string" ? prop.description : undefined;
    const name = IDENT.test(key) ? key : JSON.stringify(key);
    lines.push(`${comment(desc, inner)}${inner}${name}${required.has(key) ? "" : "?"}: ${schemaToType(prop, depth + 1, inner)};`);
  }
  const extra = s.additionalProperties;
  if (extra !== undefined && extra !== false && Object.keys(props).length === 0) {
    lines.push(`${inner}[key: string]: ${schemaToType(extra as Schema, depth + 1, inner)};`);
  }
  if (lines.length === 0) return extra === false ? "Record<string, never>" : "Record<string, unknown>";
  return `{\n${lines.join("\n")}\n${indent}}`;
}

export interface GeneratedFile {
  path: string;
  content: string;
}

export interface ToolEntry {
  server: string;
  serverDir: string;
  tool: Tool;
  identifier: string;
  file: string;
  /** The Python function (and module, /servers/<serverDir>/<pyName>.py). */
  pyName: string;
}

const HEADER = "// Generated by codebox-mcp from the upstream server's tool list. Read-only; regenerated when the list changes.\n";

export const CLIENT_TS = `${HEADER}
// The bridge from this sandbox to the host: POST /internal/mcp-call over this run's unix socket,
// authenticated by this run's token. Calls run on the upstream MCP server from the host; the
// upstream's credentials never enter the sandbox.
import { request } from "node:http";

export interface ContentBlock {
  type: string;
  text?: string;
  [key: string]: unknown;
}

export interface CallToolResult {
  content: ContentBlock[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** Thrown when a tool reports an error (isError) or the bridge refuses the call. */
export class MCPToolError extends Error {
  constructor(message: string, readonly result?: CallToolResult, readonly status?: number) {
    super(message);
    this.name = "MCPToolError";
  }
}

/** Calls \`tool\` on the upstream \`server\` and returns the raw MCP result. */
export function callMCPTool(server: string, tool: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  const token = process.env.CODEBOX_BRIDGE_TOKEN;
  // Unix socket by default; a URL in the bridge's TCP mode (engines that cannot share a socket).
  const url = process.env.CODEBOX_BRIDGE_URL ? new URL(process.env.CODEBOX_BRIDGE_URL) : undefined;
  const where = url ? { host: url.hostname, port: Number(url.port) } : { socketPath: process.env.CODEBOX_BRIDGE_SOCKET || "/run/codebox/mcp.sock" };
  const body = JSON.stringify({ server, tool, arguments: args });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        ...where,
        path: "/internal/mcp-call",
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: \`Bearer \${token ?? ""}\` },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = { error: text };
          }
          if (res.statusCode === 200) resolve(parsed as CallToolResult);
          else reject(new MCPToolError(\`\${server}.\${tool}: \${(parsed as { error?: string }).error ?? "HTTP " + res.statusCode}\`, undefined, res.statusCode));
        });
      },
    );
    req.on("error", (err) => reject(new MCPToolError(\`\${server}.\${tool}: the codebox bridge is unreachable (\${err.message})\`)));
    req.end(body);
  });
}

/**
 * What a tool's result means to code: its structuredContent when it has one; otherwise its text
 * (the text blocks joined) when every block is text; otherwise the content blocks themselves.
 * A result with isError throws MCPToolError.
 */
export function unwrap(result: CallToolResult): unknown {
  const texts = (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text ?? "");
  if (result.isError) throw new MCPToolError(texts.join("\\n") || "the tool reported an error", result);
  if (result.structuredContent !== undefined) return result.structuredContent;
  if (texts.length === (result.content ?? []).length) return texts.join("\\n");
  return result.content;
}

/** callMCPTool, then unwrap. */
export async function callTool(server: string, tool: string, args: Record<string, unknown> = {}): Promise<unknown> {
  return unwrap(await callMCPTool(server, tool, args));
}
`;

// ---- Python: the same API as /servers/<server>/<tool>.py, typed from the same JSON Schemas.

/** A `#` comment: a line break in upstream text cannot end it early and start code. */
export function pyComment(text: string | undefined, indent = ""): string {
  if (!text) return "";
  const clean = text.replace(/[\u0000-\u0008\u000b-\u001f\u007f\u0085\u2028\u2029]/g, (c) => (c === "\r" || c === "\u2028" || c === "\u2029" || c === "\u0085" || c === "\u000b" || c === "\u000c" ? "\n" : "")).trim();
  return `${clean
    .split("\n")
    .map((l) => `${indent}# ${l}`.trimEnd())
    .join("\n")}\n`;
}

/** A Python string literal for any text: JSON's escapes are Python's (\\n, \\", \\\\, \\uXXXX). */
export function pyString(text: string): string {
  return JSON.stringify(text);
}

function pyLiteral(v: unknown): string | undefined {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") return pyString(v);
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  return undefined;
}

/**
 * A Python type for a JSON Schema. Objects with properties become TypedDicts (functional form, so
 * any key works), appended to `defs` under names derived from `name`.
 */
export function schemaToPython(schema: Schema, name: string, defs: string[], depth = 0): string {
  if (schema === true || schema === undefined) return "Any";
  if (schema === false) return "NoReturn";
  if (depth > 8) return "Any";
  const s = schema;
  if ("const" in s) return pyLiteral(s.const) ? `Literal[${pyLiteral(s.const)}]` : "Any";
  if (Array.isArray(s.enum)) {
    const lits = s.enum.map(pyLiteral);
    return lits.length && lits.every((l) => l !== undefined) ? `Literal[${lits.join(", ")}]` : "Any";
  }
  for (const key of ["anyOf", "oneOf"] as const) {
    const alts = s[key];
    if (Array.isArray(alts) && alts.length) return [...new Set(alts.map((a, i) => schemaToPython(a as Schema, `${name}${i + 1}`, defs, depth + 1)))].join(" | ");
  }
  if (Array.isArray(s.allOf) && s.allOf.length === 1) return schemaToPython(s.allOf[0] as Schema, name, defs, depth + 1);
  const type = s.type;
  if (Array.isArray(type)) return [...new Set(type.map((t) => schemaToPython({ ...s, type: t }, name, defs, depth + 1)))].join(" | ");
  switch (type) {
    case "string":
      return "str";
    case "number":
      return "float";
    case "integer":
      return "int";
    case "boolean":
      return "bool";
    case "null":
      return "None";
    case "array":
      return `list[${schemaToPython(s.items as Schema, `${name}Item`, defs, depth + 1)}]`;
    case "object":
      return pyObject(s, name, defs, depth);
    default:
      return s.properties ? pyObject(s, name, defs, depth) : "Any";
  }
}

function pyObject(s: Record<string, unknown>, name: string, defs: string[], depth: number): string {
  const props = Object.entries((s.properties ?? {}) as Record<string, Schema>);
  if (props.length === 0) {
    const extra = s.additionalProperties;
    return `dict[str, ${extra && extra !== true ? schemaToPython(extra as Schema, `${name}Value`, defs, depth + 1) : "Any"}]`;
  }
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  const fields = props.map(([key, prop]) => {
    const pascalKey = key.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? "").toUpperCase()).replace(/^./, (c) => c.toUpperCase());
    const t = schemaToPython(prop, `${name}${pascalKey}`, defs, depth + 1);
    const desc = typeof prop === "object" && typeof prop.description === "string" ? prop.description : undefined;
    return `${pyComment(desc, "    ")}    ${pyString(key)}: ${required.has(key) ? t : `NotRequired[${t}]`},\n`;
  });
  defs.push(`${name} = TypedDict(${pyString(name)}, {\n${fields.join("")}})\n`);
  return name;
}

const PY_HEADER = "# Generated by codebox-mcp from the upstream server's tool list. Read-only; regenerated when the list changes.\n";

export const CLIENT_PY = `${PY_HEADER}"""The bridge from this sandbox to the host.

call_mcp_tool() POSTs to /internal/mcp-call over this run's unix socket, authenticated by this
run's token. Calls run on the upstream MCP server from the host; the upstream's credentials never
enter the sandbox. Standard library only.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from typing import Any

__all__ = ["MCPToolError", "call_mcp_tool", "call_tool", "unwrap"]

ContentBlock = dict[str, Any]
CallToolResult = dict[str, Any]


class MCPToolError(Exception):
    """Raised when a tool reports an error (isError) or the bridge refuses the call."""

    def __init__(self, message: str, result: CallToolResult | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.status = status


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _connection() -> http.client.HTTPConnection:
    # Unix socket by default; a URL in the bridge's TCP mode (engines that cannot share a socket).
    url = os.environ.get("CODEBOX_BRIDGE_URL")
    if url:
        parts = urllib.parse.urlsplit(url)
        return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 80)
    return _UnixHTTPConnection(os.environ.get("CODEBOX_BRIDGE_SOCKET") or "/run/codebox/mcp.sock")


def call_mcp_tool(server: str, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    """Calls \`tool\` on the upstream \`server\` and returns the raw MCP result (a dict)."""
    body = json.dumps({"server": server, "tool": tool, "arguments": arguments or {}}).encode("utf-8")
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "authorization": "Bearer " + os.environ.get("CODEBOX_BRIDGE_TOKEN", ""),
    }
    conn = _connection()
    try:
        conn.request("POST", "/internal/mcp-call", body=body, headers=headers)
        res = conn.getresponse()
        status, text = res.status, res.read().decode("utf-8", "replace")
    except OSError as err:
        raise MCPToolError(f"{server}.{tool}: the codebox bridge is unreachable ({err})") from None
    finally:
        conn.close()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = {"error": text}
    if status == 200:
        return parsed
    reason = parsed.get("error") if isinstance(parsed, dict) else None
    raise MCPToolError(f"{server}.{tool}: {reason or 'HTTP ' + str(status)}", None, status)


def unwrap(result: CallToolResult) -> Any:
    """What a tool's result means to code: its structuredContent when it has one; otherwise its
    text (the text blocks joined) when every block is text; otherwise the content blocks.
    A result with isError raises MCPToolError."""
    content = result.get("content") or []
    texts = [c.get("text", "") for c in content if c.get("type") == "text"]
    if result.get("isError"):
        raise MCPToolError("\\n".join(texts) or "the tool reported an error", result)
    if result.get("structuredContent") is not None:
        return result["structuredContent"]
    if len(texts) == len(content):
        return "\\n".join(texts)
    return content


def call_tool(server: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """call_mcp_tool, then unwrap."""
    return unwrap(call_mcp_tool(server, tool, arguments))
`;

function pyToolFile(entry: ToolEntry): string {
  const { tool, server, pyName } = entry;
  const base = pascal(toIdentifier(tool.name)) || "Tool";
  const defs: string[] = [];
  const input = schemaToPython(tool.inputSchema as Schema, `${base}Input`, defs);
  const output = tool.outputSchema ? schemaToPython(tool.outputSchema as Schema, `${base}Output`, defs) : "str | list[ContentBlock]";
  const doc = [tool.title && tool.title !== tool.name ? tool.title : undefined, tool.description, `MCP tool "${tool.name}" of server "${server}".`, tool.outputSchema ? "Returns the tool's structuredContent." : "Returns the tool's text (or its content blocks when they are not all text).", "Pass the arguments as a dict, as keywords, or both (keywords win)."]
    .filter(Boolean)
    .join("\n\n");
  const inputType = input === "dict[str, Any]" || input === "Any" ? "dict[str, Any]" : input;
  return `${PY_HEADER}from __future__ import annotations

from typing import Any, Literal, NoReturn, NotRequired, TypedDict

from ..client import ContentBlock, call_tool

__all__ = [${pyString(pyName)}]

${defs.join("\n")}
${pyComment(doc)}def ${pyName}(arguments: ${inputType} | None = None, /, **kwargs: Any) -> ${output}:
    return call_tool(${pyString(server)}, ${pyString(tool.name)}, {**(arguments or {}), **kwargs})


${pyName}.__doc__ = ${pyString(doc)}
`;
}

function toolFile(entry: ToolEntry): string {
  const { tool, server, identifier } = entry;
  const typeBase = pascal(identifier);
  const input = schemaToType(tool.inputSchema as Schema);
  const output = tool.outputSchema ? schemaToType(tool.outputSchema as Schema) : undefined;
  const doc = [tool.title && tool.title !== tool.name ? tool.title : undefined, tool.description, `MCP tool "${tool.name}" of server "${server}".`, output ? "Returns the tool's structuredContent." : "Returns the tool's text (or its content blocks when they are not all text)."]
    .filter(Boolean)
    .join("\n\n");
  const inputDecl = input.startsWith("{") ? `export interface ${typeBase}Input ${input}` : `export type ${typeBase}Input = ${input};`;
  const outputDecl = output ? (output.startsWith("{") ? `export interface ${typeBase}Output ${output}` : `export type ${typeBase}Output = ${output};`) : `export type ${typeBase}Output = string | ContentBlock[];`;
  const requiredInput = Array.isArray((tool.inputSchema as { required?: unknown }).required) && ((tool.inputSchema as { required: unknown[] }).required.length > 0);
  return `${HEADER}import { callTool, type ContentBlock } from "../client.ts";

${inputDecl}

${outputDecl}

${comment(doc)}export async function ${identifier}(input: ${typeBase}Input${requiredInput ? "" : " = {} as " + typeBase + "Input"}): Promise<${typeBase}Output> {
  return (await callTool(${JSON.stringify(server)}, ${JSON.stringify(tool.name)}, input as Record<string, unknown>)) as ${typeBase}Output;
}
`;
}

/**
 * The whole /servers tree for a set of upstreams: client.ts, index.json (for discovery from code),
 * and per server an index.ts plus one file per tool.
 */
export function generateServersTree(servers: Map<string, Tool[]>): { files: GeneratedFile[]; entries: ToolEntry[] } {
  const names = [...servers.keys()].sort();
  // client.ts/client.py and index.* sit beside the server folders: no server may take those names.
  const dirs = uniquify(names.map(toServerDir), (s) => s.toLowerCase(), ["client", "index", "__init__", "__pycache__"]);
  const files: GeneratedFile[] = [
    { path: "client.ts", content: CLIENT_TS },
    { path: "client.py", content: CLIENT_PY },
    { path: "__init__.py", content: `${PY_HEADER}"""Upstream MCP servers' tools: \`from servers.<server> import <tool>\` (see index.json)."""\n` },
  ];
  const entries: ToolEntry[] = [];
  names.forEach((server, i) => {
    const serverDir = dirs[i]!;
    const tools = [...(servers.get(server) ?? [])];
    const ids = uniquify(tools.map((t) => toIdentifier(t.name)));
    const stems = uniquify(tools.map((t) => toFileStem(t.name)), (s) => s.toLowerCase(), ["index"]);
    const pyNames = uniquify(tools.map((t) => toPythonIdentifier(t.name)), (s) => s.toLowerCase(), ["index", "__init__", "client"]);
    const serverEntries = tools.map((tool, j) => ({ server, serverDir, tool, identifier: ids[j]!, file: `${stems[j]!}.ts`, pyName: pyNames[j]! }));
    for (const e of serverEntries) {
      files.push({ path: `${serverDir}/${e.file}`, content: toolFile(e) });
      files.push({ path: `${serverDir}/${e.pyName}.py`, content: pyToolFile(e) });
    }
    const index = serverEntries.map((e) => `export { ${e.identifier} } from ${JSON.stringify(`./${e.file}`)};`).join("\n");
    files.push({ path: `${serverDir}/index.ts`, content: `${HEADER}${comment(`Tools of the MCP server "${server}".`)}${index}\n` });
    const pyIndex = serverEntries.map((e) => `from .${e.pyName} import ${e.pyName}`).join("\n");
    files.push({ path: `${serverDir}/__init__.py`, content: `${PY_HEADER}${pyComment(`Tools of the MCP server "${server}".`)}${pyIndex}\n\n__all__ = [${serverEntries.map((e) => pyString(e.pyName)).join(", ")}]\n` });
    entries.push(...serverEntries);
  });
  const listing = names.map((server, i) => ({
    server,
    path: `/servers/${dirs[i]}/index.ts`,
    python: `servers.${dirs[i]}`,
    tools: entries
      .filter((e) => e.server === server)
      .map((e) => ({ name: e.tool.name, function: e.identifier, file: `/servers/${e.serverDir}/${e.file}`, python: { module: `servers.${e.serverDir}.${e.pyName}`, function: e.pyName, file: `/servers/${e.serverDir}/${e.pyName}.py` }, description: e.tool.description ?? "" })),
  }));
  files.push({ path: "index.json", content: `${JSON.stringify(listing, null, 2)}\n` });
  return { files, entries };
}
