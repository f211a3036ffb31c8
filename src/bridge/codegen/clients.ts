// The files of /servers that are the same for every upstream: the bridge clients (real source
// files in sandbox-image/bridge/, copied as they are) and the protocol modules they import,
// generated from the one definition in src/protocol/bridge.ts.
import { readFileSync } from "node:fs";
import { CLIENT_PROTOCOL } from "../../protocol/bridge.js";
import { packagePath } from "../../shared/paths.js";
import { PY_HEADER } from "./python.js";
import { TS_HEADER } from "./typescript.js";
import type { GeneratedFile } from "./types.js";

/** Names at the top of /servers that no server folder may take. */
export const RESERVED_TOP_LEVEL = ["client", "protocol", "_protocol", "index", "__init__", "__pycache__"];

/** /servers/protocol.ts: the constants client.ts imports. */
export function tsProtocolModule(): string {
  return `${TS_HEADER}// The bridge protocol's constants (from codebox-mcp's src/protocol/bridge.ts).\nexport const PROTOCOL = ${JSON.stringify(CLIENT_PROTOCOL, null, 2)} as const;\n`;
}

/** /servers/_protocol.py: the constants client.py imports (JSON is a valid Python literal here: strings only). */
export function pyProtocolModule(): string {
  return `${PY_HEADER}# The bridge protocol's constants (from codebox-mcp's src/protocol/bridge.ts).\nPROTOCOL = ${JSON.stringify(CLIENT_PROTOCOL, null, 4)}\n`;
}

let clients: { ts: string; py: string } | undefined;

/** The client sources shipped with the package, read once. */
function clientSources(): { ts: string; py: string } {
  clients ??= {
    ts: readFileSync(packagePath("sandbox-image", "bridge", "client.ts"), "utf8"),
    py: readFileSync(packagePath("sandbox-image", "bridge", "client.py"), "utf8"),
  };
  return clients;
}

export function clientFiles(): GeneratedFile[] {
  const { ts, py } = clientSources();
  return [
    { path: "client.ts", content: ts },
    { path: "protocol.ts", content: tsProtocolModule() },
    { path: "client.py", content: py },
    { path: "_protocol.py", content: pyProtocolModule() },
    { path: "__init__.py", content: `${PY_HEADER}"""Upstream MCP servers' tools: \`from servers.<server> import <tool>\` (see index.json)."""\n` },
  ];
}
