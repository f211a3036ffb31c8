import type { Tool } from "@modelcontextprotocol/sdk/types.js";

/** A JSON Schema as an upstream sent it: any shape at all. */
export type Schema = Record<string, unknown> | boolean | undefined;

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

