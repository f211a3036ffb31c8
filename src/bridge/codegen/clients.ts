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
export const RESERVED_TOP_LEVEL = ["client", "protocol", "_protocol", "display", "_display_mpl", "index", "__init__", "__pycache__", "readme"];

/** /servers/protocol.ts: the constants client.ts imports. */
export function tsProtocolModule(): string {
  return `${TS_HEADER}// The bridge protocol's constants (from codebox-mcp's src/protocol/bridge.ts).\nexport const PROTOCOL = ${JSON.stringify(CLIENT_PROTOCOL, null, 2)} as const;\n`;
}

/** /servers/_protocol.py: the constants client.py imports (JSON is a valid Python literal here: strings only). */
export function pyProtocolModule(): string {
  return `${PY_HEADER}# The bridge protocol's constants (from codebox-mcp's src/protocol/bridge.ts).\nPROTOCOL = ${JSON.stringify(CLIENT_PROTOCOL, null, 4)}\n`;
}

/** The sandbox-side sources shipped with the package, copied to /servers as they are. */
const SHIPPED = ["client.ts", "client.py", "display.ts", "display.py", "_display_mpl.py", "README.md"] as const;

let shipped: Map<string, string> | undefined;

/** The shipped sources, read once. */
function shippedSources(): Map<string, string> {
  shipped ??= new Map(SHIPPED.map((name) => [name, readFileSync(packagePath("sandbox-image", "bridge", name), "utf8")]));
  return shipped;
}

/** The guide to the sandbox (/servers/README.md): also the codebox://help resource. */
export function sandboxGuide(): string {
  return shippedSources().get("README.md")!;
}

export function clientFiles(): GeneratedFile[] {
  const sources = shippedSources();
  return [
    ...SHIPPED.map((path) => ({ path, content: sources.get(path)! })),
    { path: "protocol.ts", content: tsProtocolModule() },
    { path: "_protocol.py", content: pyProtocolModule() },
    { path: "__init__.py", content: `${PY_HEADER}"""Upstream MCP servers' tools: \`from servers.<server> import <tool>\` (see index.json)."""\n` },
  ];
}
