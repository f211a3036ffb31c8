import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { toPythonIdentifier, toServerDir } from "../../src/bridge/codegen/names.js";
import { pyComment } from "../../src/bridge/codegen/python.js";
import { generateServersTree } from "../../src/bridge/codegen/servers-tree.js";
import { languagesOf, runtimeFor } from "../../src/shared/languages.js";
import { InputError } from "../../src/shared/errors.js";
import { removeDir, tempDir } from "../helpers.js";

describe("choosing a language runtime", () => {
  const all = ["node", "bun", "python"] as const;
  it("runs Python on python, TypeScript/JavaScript on node unless bun is asked for", () => {
    expect(runtimeFor("python", undefined, all)).toBe("python");
    expect(runtimeFor("python", "python", all)).toBe("python");
    expect(runtimeFor("typescript", undefined, all)).toBe("node");
    expect(runtimeFor("javascript", "bun", all)).toBe("bun");
  });

  it("refuses combinations that make no sense, saying what works", () => {
    expect(() => runtimeFor("python", "bun", all)).toThrow(InputError);
    expect(() => runtimeFor("python", "bun", all)).toThrow(/Omit runtime/);
    expect(() => runtimeFor("typescript", "python", all)).toThrow(/"node" or "bun"/);
  });

  it("refuses a runtime the server has turned off, and offers only the languages it runs", () => {
    expect(() => runtimeFor("typescript", "bun", ["node", "python"])).toThrow(/turned off.*node, python/);
    expect(languagesOf(["python"])).toEqual(["python"]);
    expect(languagesOf(["bun"])).toEqual(["typescript", "javascript"]);
    expect(languagesOf(all)).toEqual(["typescript", "javascript", "python"]);
  });
});

describe("Python names for upstream servers and tools", () => {
  it("makes snake_case identifiers that are never keywords", () => {
    expect(toPythonIdentifier("getSum")).toBe("get_sum");
    expect(toPythonIdentifier("get-sum")).toBe("get_sum");
    expect(toPythonIdentifier("HTTPRequest")).toBe("http_request");
    expect(toPythonIdentifier("import")).toBe("import_");
    expect(toPythonIdentifier("3d")).toBe("_3d");
    expect(toPythonIdentifier("!!!")).toBe("tool");
    expect(toServerDir("my-server")).toBe("my_server");
    expect(toServerDir("class")).toBe("class_");
  });

  it("keeps upstream text in comments that a line break cannot end", () => {
    const c = pyComment('ok\r\nimport os\u2028os.system("x")\u0000');
    expect(c.split("\n").filter(Boolean).every((l) => l.startsWith("#"))).toBe(true);
  });
});

describe("the generated Python tree", () => {
  const hostile: Tool[] = [
    {
      name: "getSum",
      description: 'Adds.\n"""\nimport os; os.system("touch /tmp/pwned")\r\n"""',
      inputSchema: { type: "object", properties: { a: { type: "number", description: "x\n__import__('os')" }, "b-c": { type: "string", enum: ['"""', "\\"] } }, required: ["a"] },
      outputSchema: { type: "object", properties: { result: { type: "number" } } },
    },
    { name: "list", title: "'''", inputSchema: { type: "object" } },
    { name: "get_sum", inputSchema: { type: "object", properties: { n: { anyOf: [{ type: "integer" }, { type: "null" }] } } } },
  ];

  it("compiles and imports with CPython, with no code from the upstream's text run", () => {
    const dir = tempDir("pygen");
    try {
      const { files } = generateServersTree(new Map([["my-server", hostile], ["client", []]]));
      for (const f of files) {
        const p = join(dir, "servers", f.path);
        mkdirSync(dirname(p), { recursive: true });
        writeFileSync(p, f.content);
      }
      const out = execFileSync(
        "python3",
        [
          "-I",
          "-c",
          [
            "import sys, os, typing; sys.path.insert(0, sys.argv[1])",
            "import servers.my_server as m",
            "from servers.my_server.get_sum import GetSumInput",
            "print(sorted(n for n in m.__all__), sorted(GetSumInput.__required_keys__), sorted(GetSumInput.__optional_keys__))",
            "print(os.path.exists('/tmp/pwned'), 'import os' in m.get_sum.__doc__)",
          ].join("\n"),
          dir,
        ],
        { encoding: "utf8" },
      );
      expect(out).toBe("['get_sum', 'get_sum_2', 'list'] ['a'] ['b-c']\nFalse True\n");
      // A server named like the client module gets another folder.
      expect(files.some((f) => f.path === "client_2/__init__.py")).toBe(true);
    } finally {
      removeDir(dir);
    }
  });
});
