import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import fc from "fast-check";
import { transform as sucrase } from "sucrase";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RESERVED_TOP_LEVEL, clientFiles, pyProtocolModule, tsProtocolModule } from "../../src/bridge/codegen/clients.js";
import { pascal, toFileStem, toIdentifier, toPythonIdentifier, toServerDir, uniquify } from "../../src/bridge/codegen/names.js";
import { pyComment, pyServerIndex, pyString, pyToolModule, schemaToPython } from "../../src/bridge/codegen/python.js";
import { type GeneratedFile, type ToolEntry, generateServersTree } from "../../src/bridge/codegen/servers-tree.js";
import type { Schema } from "../../src/bridge/codegen/types.js";
import { TS_HEADER, comment, schemaToType, tsServerIndex, tsToolModule } from "../../src/bridge/codegen/typescript.js";
import { JS_IDENT, JS_RESERVED, PY_IDENT, PY_KEYWORDS, bindableInStrictCode } from "./codegen-oracles.js";

// The /servers code API is generated from upstream tool lists: names, titles, descriptions and
// schemas are attacker-controlled text that ends up in TypeScript and Python source. These tests
// check that such text only ever lands in string literals and comments, that every generated name
// is valid and unique, and that the generated tree really parses, type-checks, compiles and imports.
//
// Nine tests below pinned bugs found while writing them (a "*\r/" comment escape that ran code,
// digit-led type names, unions of objects declared as interfaces, lost union grouping, TypedDict
// name collisions, a PEP 263 codec from a server name, a cast that did not type-check); each
// failed before its fix.

const repoRoot = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const hooksUrl = pathToFileURL(join(repoRoot, "sandbox-image", "node", "hooks.mjs")).href;

const base = mkdtempSync(join(tmpdir(), "codebox-codegen-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(name: string): string {
  const d = join(base, `${dirCount++}-${name}`);
  mkdirSync(d, { recursive: true });
  return d;
}

// ---------------------------------------------------------------------------------------------
// Helpers




/** Syntax diagnostics of a TypeScript module (what transpileModule reports; what the sandbox's loader would choke on). */
function tsSyntaxErrors(source: string, fileName = "mod.ts"): string[] {
  return parseDiagnostics(ts.createSourceFile(fileName, source, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS));
}

function parseTs(source: string): ts.SourceFile {
  return ts.createSourceFile("t.ts", source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
}

function parseDiagnostics(sf: ts.SourceFile): string[] {
  return ((sf as unknown as { parseDiagnostics: ts.Diagnostic[] }).parseDiagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
}

/** Runs a Python script (isolated, no bytecode written) and returns its stdout. */
function python(script: string, args: string[] = [], input?: string): string {
  return execFileSync("python3", ["-I", "-B", "-c", script, ...args], { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
}

/** Compiles Python source with CPython (bytes, so a coding cookie counts as it would in a file); "" when it compiles. */
function pythonSyntaxError(source: string): string {
  return python("import sys\ntry:\n    compile(sys.stdin.buffer.read(), 'mod.py', 'exec')\nexcept SyntaxError as e:\n    print(e)", [], source).trim();
}

function writeTree(root: string, files: GeneratedFile[]): void {
  for (const f of files) {
    const p = join(root, "servers", f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content);
  }
}

/** Imports TypeScript modules in a child Node through the sandbox's own loader hooks (sucrase strips the types). */
function loadWithSandboxHooks(dir: string, files: string[]): Record<string, string[]> {
  const loader = join(dir, "load.mjs");
  writeFileSync(
    loader,
    [
      'import { register } from "node:module";',
      'import { MessageChannel } from "node:worker_threads";',
      'import { pathToFileURL } from "node:url";',
      "const { port1, port2 } = new MessageChannel();",
      "register(process.argv[2], { data: { port: port2 }, transferList: [port2] });",
      "port1.unref();",
      "const out = {};",
      "for (const f of process.argv.slice(3)) out[f] = Object.keys(await import(pathToFileURL(f).href)).sort();",
      "process.stdout.write(JSON.stringify(out));",
    ].join("\n"),
  );
  const text = execFileSync(process.execPath, [loader, hooksUrl, ...files], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" }, stdio: ["ignore", "pipe", "pipe"] });
  return JSON.parse(text) as Record<string, string[]>;
}

function entry(tool: Partial<Tool> & { name: string }, over: Partial<ToolEntry> = {}): ToolEntry {
  const t = { inputSchema: { type: "object" }, ...tool } as Tool;
  return { server: "srv", serverDir: "srv", tool: t, identifier: toIdentifier(t.name), file: `${toFileStem(t.name)}.ts`, pyName: toPythonIdentifier(t.name), ...over };
}

// Text an upstream might send to break out of a comment or a string literal.
const HOSTILE_TEXT = [
  'a"b',
  "it's",
  "`tick` ${process.exit(1)}",
  "*/ process.exit(1) /*",
  "/* nested */",
  "new\nline",
  "cr\rlf\r\n",
  "sep\u2028para\u2029",
  "nel\u0085vt\u000bff\u000c",
  "nul\u0000esc\u001bdel\u007f",
  "back\\slash\\",
  '"""\nimport os; os.system("x")\n"""',
  "'''",
  "emoji 😀 ключ",
  "-->",
  "<!--",
  "",
];

// ---------------------------------------------------------------------------------------------

describe("names: TypeScript identifiers", () => {
  it("rebuilds identifiers from a safe alphabet, camelCasing words", () => {
    expect(toIdentifier("list-rows")).toBe("listRows");
    expect(toIdentifier("get_sum")).toBe("getSum");
    expect(toIdentifier("Get Sum")).toBe("getSum");
    expect(toIdentifier("search/code.v2")).toBe("searchCodeV2");
    expect(toIdentifier("3d")).toBe("_3d");
    expect(toIdentifier("")).toBe("tool");
    expect(toIdentifier("!!!")).toBe("tool");
    expect(toIdentifier("ключ")).toBe("tool");
    expect(toIdentifier("héllo wörld")).toMatch(JS_IDENT);
  });

  it("never returns a reserved word (constructor, await, class, ...)", () => {
    for (const w of ["constructor", "await", "Await", "class", "eval", "arguments", "let", "yield", "enum", "prototype", "undefined"]) {
      const id = toIdentifier(w);
      expect(id, w).toBe(`${w.charAt(0).toLowerCase()}${w.slice(1)}_`);
      expect(bindableInStrictCode(id), id).toBe(true);
    }
  });

  it("property: any string gives a valid, non-reserved identifier", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom(...JS_RESERVED, ...HOSTILE_TEXT)), (name) => {
        const id = toIdentifier(name);
        expect(id).toMatch(JS_IDENT);
        expect(JS_RESERVED.has(id)).toBe(false);
        expect(bindableInStrictCode(id)).toBe(true);
        expect(toIdentifier(name)).toBe(id);
      }),
      { numRuns: 300 },
    );
  });
});

describe("names: Python identifiers, file stems and server folders", () => {
  it("property: toPythonIdentifier gives a snake_case identifier that is never a keyword", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom(...PY_KEYWORDS, ...HOSTILE_TEXT, "__init__", "İstanbul", "\u212A")), (name) => {
        const id = toPythonIdentifier(name);
        expect(id).toMatch(PY_IDENT);
        expect(id).toBe(id.toLowerCase());
        expect(PY_KEYWORDS.has(id)).toBe(false);
      }),
      { numRuns: 300 },
    );
    for (const k of PY_KEYWORDS) expect(PY_KEYWORDS.has(toPythonIdentifier(k)), k).toBe(false);
  });

  it("toFileStem examples: no separators, no dots, no leading dash or underscore", () => {
    expect(toFileStem("../../etc/passwd")).toBe("etc-passwd");
    expect(toFileStem(".hidden")).toBe("hidden");
    expect(toFileStem("-rf")).toBe("rf");
    expect(toFileStem("__init__")).toBe("init__");
    expect(toFileStem("get_sum")).toBe("get_sum");
    expect(toFileStem("..")).toBe("tool");
    expect(toFileStem("")).toBe("tool");
    expect(toFileStem("x".repeat(200))).toHaveLength(80);
  });

  it("property: toFileStem has no '/', '..', leading dot or dash, and is at most 80 characters", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: "binary", maxLength: 300 }), fc.constantFrom("..", "../x", "/", ".", "-", "\\..\\", ...HOSTILE_TEXT)), (name) => {
        const stem = toFileStem(name);
        expect(stem).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]*$/);
        expect(stem.length).toBeLessThanOrEqual(80);
        expect(stem).not.toContain("/");
        expect(stem).not.toContain("\\");
        expect(stem).not.toContain("..");
      }),
      { numRuns: 300 },
    );
  });

  it("property: toServerDir is a valid Python package name, never a keyword", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom("../etc", "my-server", "3d", "None", "class", "import", "-", ...HOSTILE_TEXT)), (name) => {
        const dir = toServerDir(name);
        expect(dir).toMatch(PY_IDENT);
        expect(PY_KEYWORDS.has(dir)).toBe(false);
        expect(dir.length).toBeLessThanOrEqual(81);
      }),
      { numRuns: 300 },
    );
    expect(toServerDir("../etc")).toBe("etc");
    expect(toServerDir("3d")).toBe("_3d");
    expect(toServerDir("None")).toBe("None_");
  });

  it("pascal drops leading underscores and capitalises", () => {
    expect(pascal("getSum")).toBe("GetSum");
    expect(pascal("__init")).toBe("Init");
    expect(pascal("")).toBe("T");
    expect(pascal("_3d")).toBe("T3d");
  });
});

describe("names: uniquify", () => {
  it("suffixes repeats in order; the first comer keeps its plain name", () => {
    expect(uniquify(["a", "b", "a", "a", "b"])).toEqual(["a", "b", "a_2", "a_3", "b_2"]);
    // A plain name that an earlier suffix already took gets a suffix of its own.
    expect(uniquify(["a", "a", "a_2"])).toEqual(["a", "a_2", "a_2_2"]);
  });

  it("compares case-insensitively when asked, and never hands out a reserved name", () => {
    const lower = (s: string) => s.toLowerCase();
    expect(uniquify(["Foo", "foo", "FOO"], lower)).toEqual(["Foo", "foo_2", "FOO_3"]);
    expect(uniquify(["Index", "x", "index"], lower, ["index"])).toEqual(["Index_2", "x", "index_3"]);
    expect(uniquify(["client", "client"], lower, RESERVED_TOP_LEVEL)).toEqual(["client_2", "client_3"]);
  });

  it("property: results are unique under compare, avoid reserved names, and derive from the input", () => {
    const name = fc.constantFrom("a", "A", "a_2", "b", "B_2", "index", "Index", "client", "x_2_2");
    fc.assert(
      fc.property(fc.array(name, { maxLength: 20 }), fc.subarray(["index", "client", "a"]), fc.boolean(), (names, reserved, ci) => {
        const compare = ci ? (s: string) => s.toLowerCase() : (s: string) => s;
        const out = uniquify(names, compare, reserved);
        expect(out).toHaveLength(names.length);
        const keys = out.map(compare);
        expect(new Set(keys).size).toBe(keys.length);
        const reservedKeys = new Set(reserved.map(compare));
        for (const k of keys) expect(reservedKeys.has(k)).toBe(false);
        const taken = new Set(reservedKeys);
        names.forEach((n, i) => {
          // Plain when nothing before it (nor a reserved name) took it; otherwise n_<k>.
          if (!taken.has(compare(n))) expect(out[i]).toBe(n);
          else expect(out[i]).toMatch(new RegExp(`^${n}_\\d+$`));
          taken.add(compare(out[i]!));
        });
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe("TypeScript: comments", () => {
  it("returns nothing for no text, one line for short text, a block for long or multi-line text", () => {
    expect(comment(undefined)).toBe("");
    expect(comment("")).toBe("");
    expect(comment("Adds two numbers.")).toBe("/** Adds two numbers. */\n");
    expect(comment("one\ntwo", "  ")).toBe("  /**\n   * one\n   * two\n   */\n");
    expect(comment("x".repeat(101))).toBe(`/**\n * ${"x".repeat(101)}\n */\n`);
  });

  it('escapes "*/" so the comment cannot be closed early, keeping the text readable', () => {
    const c = comment("*/ process.exit(1) /*");
    expect(c).toBe("/** *\\/ process.exit(1) /* */\n");
    const sf = parseTs(`${c}export const z = 1;`);
    expect(parseDiagnostics(sf)).toEqual([]);
    expect(sf.statements).toHaveLength(1);
  });

  // "\r" is left out of the generated text here: see the BUG test below.
  const commentText = fc.oneof(
    fc.string({ unit: "binary" }),
    fc.array(fc.constantFrom("*", "/", "*/", "/*", "\n", " ", "a", "\u2028", "\u2029", "\\", "`", "${"), { maxLength: 30 }).map((a) => a.join("")),
  ).map((s) => s.replace(/\r/g, ""));

  it('property: the output contains exactly one "*/", at its end, and parses as a comment only', () => {
    fc.assert(
      fc.property(commentText, fc.constantFrom("", "  ", "    "), (text, indent) => {
        const c = comment(text, indent);
        if (c === "") return;
        expect(c.startsWith(`${indent}/**`)).toBe(true);
        expect(c.split("*/")).toHaveLength(2);
        expect(c.endsWith("*/\n")).toBe(true);
        const sf = parseTs(`${c}export const z = 1;`);
        expect(parseDiagnostics(sf)).toEqual([]);
        expect(sf.statements).toHaveLength(1);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps "*\\r/" inside the comment (line breaks are normalised before "*/" is escaped)', () => {
    for (const text of ["*\r/ process.exit(1) /*", "a *\r\r/ b", "x\n*\r/"]) {
      expect(comment(text).split("*/"), JSON.stringify(text)).toHaveLength(2);
    }
  });
});

describe("TypeScript: schemaToType", () => {
  it("maps const and enum to JSON literal types", () => {
    expect(schemaToType({ const: "a" })).toBe('"a"');
    expect(schemaToType({ const: 3 })).toBe("3");
    expect(schemaToType({ const: null })).toBe("null");
    expect(schemaToType({ const: { a: [1] } })).toBe('{"a":[1]}');
    expect(schemaToType({ enum: ["a", 1, null, true] })).toBe('"a" | 1 | null | true');
    expect(schemaToType({ enum: [] })).toBe("never");
  });

  it("maps anyOf and oneOf to unions, allOf to intersections, type arrays to unions", () => {
    expect(schemaToType({ anyOf: [{ type: "string" }, { type: "null" }] })).toBe("string | null");
    expect(schemaToType({ oneOf: [{ type: "integer" }, { type: "boolean" }] })).toBe("number | boolean");
    expect(schemaToType({ anyOf: [] })).toBe("unknown");
    expect(schemaToType({ allOf: [{ type: "object", properties: { a: { type: "string" } }, required: ["a"] }, { type: "object", properties: { b: { type: "number" } } }] })).toBe(
      "{\n  a: string;\n} & {\n  b?: number;\n}",
    );
    expect(schemaToType({ type: ["string", "null"] })).toBe("string | null");
    expect(schemaToType({ type: ["array", "null"], items: { type: "number" } })).toBe("number[] | null");
  });

  it("maps booleans, missing schemas and unknown types", () => {
    expect(schemaToType(true)).toBe("unknown");
    expect(schemaToType(undefined)).toBe("unknown");
    expect(schemaToType(false)).toBe("never");
    expect(schemaToType({})).toBe("unknown");
    expect(schemaToType({ type: "nonsense" })).toBe("unknown");
  });

  it("maps arrays, wrapping complex item types in Array<>", () => {
    expect(schemaToType({ type: "array", items: { type: "string" } })).toBe("string[]");
    expect(schemaToType({ type: "array" })).toBe("unknown[]");
    expect(schemaToType({ type: "array", items: { enum: ["a", "b"] } })).toBe('Array<"a" | "b">');
    expect(schemaToType({ type: "array", items: { type: "object", properties: { x: { type: "number" } } } })).toBe("Array<{\n  x?: number;\n}>");
  });

  it("maps objects: required vs optional, additionalProperties, empty objects", () => {
    expect(schemaToType({ type: "object", properties: { a: { type: "string" }, b: { type: "number", description: "The b." } }, required: ["a"] })).toBe(
      "{\n  a: string;\n  /** The b. */\n  b?: number;\n}",
    );
    expect(schemaToType({ type: "object", additionalProperties: { type: "number" } })).toBe("{\n  [key: string]: number;\n}");
    expect(schemaToType({ type: "object", additionalProperties: false })).toBe("Record<string, never>");
    expect(schemaToType({ type: "object" })).toBe("Record<string, unknown>");
    expect(schemaToType({ properties: { a: { type: "boolean" } } })).toBe("{\n  a?: boolean;\n}");
  });

  it("stops at depth 8 with unknown", () => {
    let deep: Schema = { type: "string" };
    for (let i = 0; i < 20; i++) deep = { type: "array", items: deep };
    const t = schemaToType(deep);
    expect(t).toBe(`${"Array<".repeat(8)}unknown[]${">".repeat(8)}`);
    let obj: Schema = { type: "string" };
    for (let i = 0; i < 20; i++) obj = { type: "object", properties: { k: obj } };
    const o = schemaToType(obj);
    expect(o.match(/k\?:/g)).toHaveLength(9);
    expect(o).toContain("k?: unknown;");
    expect(parseDiagnostics(parseTs(`type T = ${o};`))).toEqual([]);
  });

  it("quotes property names that are not identifiers, via JSON", () => {
    const t = schemaToType(JSON.parse('{"type":"object","properties":{"x-y":{},"1a":{},"":{},"a b":{},"ok_$1":{},"__proto__":{},"constructor":{}}}') as Schema);
    expect(t).toContain('"x-y"?: unknown;');
    expect(t).toContain('"1a"?: unknown;');
    expect(t).toContain('""?: unknown;');
    expect(t).toContain('"a b"?: unknown;');
    expect(t).toContain("ok_$1?: unknown;");
    expect(t).toContain("__proto__?: unknown;");
    expect(t).toContain("constructor?: unknown;");
  });

  it("keeps hostile property names, descriptions and const values inside string literals and comments", () => {
    const keys = HOSTILE_TEXT.filter(Boolean);
    const properties: Record<string, unknown> = {};
    keys.forEach((k, i) => {
      properties[k] = i % 2 ? { const: k, description: k } : { enum: [k, "x"], description: `${k} */ ${k}` };
    });
    const t = schemaToType({ type: "object", properties, required: keys.slice(0, 3) });
    const sf = parseTs(`type T = ${t};`);
    expect(parseDiagnostics(sf)).toEqual([]);
    expect(sf.statements).toHaveLength(1);
    const literal = (sf.statements[0] as ts.TypeAliasDeclaration).type as ts.TypeLiteralNode;
    expect(ts.isTypeLiteralNode(literal)).toBe(true);
    const seen: string[] = [];
    for (const m of literal.members) {
      const p = m as ts.PropertySignature;
      const name = p.name as ts.StringLiteral;
      expect(ts.isStringLiteral(name)).toBe(true);
      seen.push(name.text);
      // The value types are literal types whose text is exactly the upstream's text.
      const types = ts.isUnionTypeNode(p.type!) ? p.type.types : [p.type!];
      const first = types[0] as ts.LiteralTypeNode;
      expect(ts.isLiteralTypeNode(first) && ts.isStringLiteral(first.literal) && first.literal.text).toBe(name.text);
    }
    expect(seen).toEqual(keys);
    // No identifier outside strings and comments carries upstream text.
    const idents: string[] = [];
    const walk = (n: ts.Node): void => {
      if (ts.isIdentifier(n)) idents.push(n.text);
      ts.forEachChild(n, walk);
    };
    walk(sf);
    expect(idents).toEqual(["T"]);
  });
});

describe("TypeScript: tool modules and server index", () => {
  const hostileTool: Tool = {
    name: 'evil"name`${x}`*/\u2028',
    title: "*/ process.exit(2) /*",
    description: HOSTILE_TEXT.join("\n"),
    inputSchema: {
      type: "object",
      properties: Object.fromEntries(HOSTILE_TEXT.map((k) => [k, { type: "string", description: k, enum: [k] }])),
      required: [HOSTILE_TEXT[0]!],
    },
    outputSchema: { type: "object", properties: { "*/": { const: "*/${x}`" } } },
  };

  it("writes a module that parses, with upstream text only in literals and comments", () => {
    const src = tsToolModule(entry(hostileTool));
    expect(src.startsWith(TS_HEADER)).toBe(true);
    expect(tsSyntaxErrors(src)).toEqual([]);
    // The sandbox's loader (sucrase) reads it too.
    expect(() => sucrase(src, { transforms: ["typescript"], disableESTransforms: true })).not.toThrow();
    const sf = parseTs(src);
    const kinds = sf.statements.map((s) => ts.SyntaxKind[s.kind]);
    expect(kinds).toEqual(["ImportDeclaration", "TypeAliasDeclaration", "TypeAliasDeclaration", "FunctionDeclaration"]);
    // The call passes the server and tool names as the upstream spelled them.
    const call = src.match(/callTool\(("(?:[^"\\]|\\.)*"), ("(?:[^"\\]|\\.)*"),/)!;
    expect(JSON.parse(call[1]!)).toBe("srv");
    expect(JSON.parse(call[2]!)).toBe(hostileTool.name);
  });

  it("makes the input optional only when the schema requires nothing", () => {
    const optional = tsToolModule(entry({ name: "ping" }));
    expect(optional).toContain("export async function ping(input: PingInput = {} as PingInput): Promise<PingOutput>");
    expect(optional).toContain("export type PingOutput = string | ContentBlock[];");
    const required = tsToolModule(entry({ name: "add", inputSchema: { type: "object", properties: { a: { type: "number" } }, required: ["a"] } }));
    expect(required).toContain("export async function add(input: AddInput): Promise<AddOutput>");
    expect(required).toContain("export type AddInput = {\n  a: number;\n};");
  });

  it("index.ts re-exports every tool from its file", () => {
    const entries = [entry({ name: "a-b" }), entry({ name: "c" }, { identifier: "c_2", file: "c_2.ts" })];
    const idx = tsServerIndex("*/ hostile server /*", entries);
    expect(tsSyntaxErrors(idx)).toEqual([]);
    expect(idx).toContain('export { aB } from "./a-b.ts";');
    expect(idx).toContain('export { c_2 } from "./c_2.ts";');
  });

  it("declares a top-level anyOf/oneOf/allOf/enum of objects as a type alias that parses", () => {
    const a = { type: "object", properties: { a: { type: "string" } }, required: ["a"] };
    const b = { type: "object", properties: { b: { type: "number" } }, required: ["b"] };
    for (const inputSchema of [{ anyOf: [a, b] }, { oneOf: [a, b] }, { allOf: [a, b] }, { enum: [{ a: 1 }, { b: 2 }] }, { type: "object", anyOf: [a, b] }]) {
      expect(tsSyntaxErrors(tsToolModule(entry({ name: "pick", inputSchema } as Tool))), JSON.stringify(inputSchema)).toEqual([]);
    }
    expect(tsSyntaxErrors(tsToolModule(entry({ name: "pick", outputSchema: { anyOf: [a, b] } } as Tool)))).toEqual([]);
  });

  it("gives a tool name starting with a digit valid type names (`T3dInput`)", () => {
    const src = tsToolModule(entry({ name: "3d-render" }));
    expect(tsSyntaxErrors(src)).toEqual([]);
  });

  it("keeps the grouping of union members inside allOf (`(string | number) & 1`)", () => {
    const t = schemaToType({ allOf: [{ anyOf: [{ type: "string" }, { type: "number" }] }, { const: 1 }] });
    const alias = parseTs(`type T = ${t};`).statements[0] as ts.TypeAliasDeclaration;
    expect(ts.SyntaxKind[alias.type.kind]).toBe("IntersectionType");
  });
});

// ---------------------------------------------------------------------------------------------

describe("Python: comments and string literals", () => {
  it("turns every line-break variant into a new # line and drops other control characters", () => {
    for (const br of ["\r", "\n", "\r\n", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c"]) {
      expect(pyComment(`one${br}import os`), JSON.stringify(br)).toMatch(/^# one\n(#\n)?# import os\n$/);
    }
    expect(pyComment("a\u0000b\u001bc\u007fd\u001ce\tf")).toBe("# abcde\tf\n");
    expect(pyComment("x\ny", "    ")).toBe("    # x\n    # y\n");
    expect(pyComment(undefined)).toBe("");
    expect(pyComment("")).toBe("");
  });

  it("property: every output line is a comment, with no line-breaking or control characters left", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary" }), fc.array(fc.constantFrom(...HOSTILE_TEXT, "\r", "\u2028", "\u0085", "\u000b", "\u000c", "\u001c", "x"), { maxLength: 20 }).map((a) => a.join(""))), fc.constantFrom("", "    "), (text, indent) => {
        const c = pyComment(text, indent);
        if (c === "") return;
        expect(c.endsWith("\n")).toBe(true);
        for (const line of c.slice(0, -1).split("\n")) expect(line.startsWith(`${indent}#`), JSON.stringify(line)).toBe(true);
        expect(c).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u0085\u2028\u2029\r]/);
      }),
      { numRuns: 300 },
    );
  });

  it("pyString literals read back in CPython as the same strings", () => {
    const tricky = [
      ...HOSTILE_TEXT,
      "",
      "\u0000",
      '"',
      "\\",
      "\\n",
      "\\u0041",
      "\\N{BULLET}",
      "{x}",
      "\u2028\u2029\u0085\u000b\u000c\u001c\u001d\u001e",
      "tab\tend",
      "\ufeffbom",
      "😀👨‍👩‍👧",
      "\u{10FFFF}",
      "\u00ff\u0100",
      ...fc.sample(fc.string({ unit: "grapheme", maxLength: 40 }), { numRuns: 200, seed: 42 }),
      ...fc.sample(fc.string({ unit: "binary", maxLength: 40 }).filter((s) => s.isWellFormed()), { numRuns: 200, seed: 7 }),
    ];
    const dir = freshDir("pystring");
    const file = join(dir, "strings.py");
    writeFileSync(file, `S = [\n${tricky.map((s) => `    ${pyString(s)},`).join("\n")}\n]\n`);
    const out = python("import json, runpy, sys; print(json.dumps(runpy.run_path(sys.argv[1])['S'], ensure_ascii=True))", [file]);
    expect(JSON.parse(out)).toEqual(tricky);
  });
});

describe("Python: schemaToPython and modules", () => {
  it("maps literals, unions, arrays and dicts", () => {
    const defs: string[] = [];
    expect(schemaToPython({ const: 'a"b' }, "X", defs)).toBe('Literal["a\\"b"]');
    expect(schemaToPython({ const: { a: 1 } }, "X", defs)).toBe("Any");
    expect(schemaToPython({ enum: ["a", 1, null, false] }, "X", defs)).toBe('Literal["a", 1, None, False]');
    expect(schemaToPython({ enum: [[1]] }, "X", defs)).toBe("Any");
    expect(schemaToPython({ anyOf: [{ type: "number" }, { type: "number" }, { type: "null" }] }, "X", defs)).toBe("float | None");
    expect(schemaToPython({ type: ["integer", "null"] }, "X", defs)).toBe("int | None");
    expect(schemaToPython({ type: "array", items: { type: "string" } }, "X", defs)).toBe("list[str]");
    expect(schemaToPython({ type: "object", additionalProperties: { type: "boolean" } }, "X", defs)).toBe("dict[str, bool]");
    expect(schemaToPython({ type: "object" }, "X", defs)).toBe("dict[str, Any]");
    expect(schemaToPython(true, "X", defs)).toBe("Any");
    expect(schemaToPython(false, "X", defs)).toBe("NoReturn");
    expect(defs).toEqual([]);
  });

  it("makes TypedDicts (functional form) for objects, nested ones first, and stops at depth 8", () => {
    const defs: string[] = [];
    const t = schemaToPython({ type: "object", properties: { "a-b": { type: "object", properties: { c: { type: "string" } }, required: ["c"] }, d: { type: "integer", description: "D\nimport os" } }, required: ["a-b"] }, "FInput", defs);
    expect(t).toBe("FInput");
    expect(defs).toEqual([
      'FInputAB = TypedDict("FInputAB", {\n    "c": str,\n})\n',
      'FInput = TypedDict("FInput", {\n    "a-b": FInputAB,\n    # D\n    # import os\n    "d": NotRequired[int],\n})\n',
    ]);
    let deep: Schema = { type: "string" };
    for (let i = 0; i < 20; i++) deep = { type: "array", items: deep };
    expect(schemaToPython(deep, "D", [])).toBe(`${"list[".repeat(9)}Any${"]".repeat(9)}`);
  });

  it("server __init__.py imports every tool and lists it in __all__", () => {
    const init = pyServerIndex("my server\nimport os", [entry({ name: "a-b" }), entry({ name: "c" }, { pyName: "c_2" })]);
    expect(init).toContain("# Tools of the MCP server \"my server\n# import os\".\n");
    expect(init).toContain("from .a_b import a_b\nfrom .c_2 import c_2\n");
    expect(init).toContain('__all__ = ["a_b", "c_2"]');
  });

  it("gives a tool name starting with a digit a valid TypedDict name", () => {
    const src = pyToolModule(entry({ name: "3d", inputSchema: { type: "object", properties: { a: { type: "string" } } } }));
    expect(pythonSyntaxError(src)).toBe("");
  });

  it('keeps TypedDict names unique when properties map to one name ("a-b" and "aB")', () => {
    const src = pyToolModule(
      entry({ name: "x", inputSchema: { type: "object", properties: { "a-b": { type: "object", properties: { first: { type: "string" } } }, aB: { type: "object", properties: { second: { type: "number" } } } } } }),
    );
    const dir = freshDir("pyclash");
    mkdirSync(join(dir, "pkg", "srv"), { recursive: true });
    writeFileSync(join(dir, "pkg", "__init__.py"), "");
    writeFileSync(join(dir, "pkg", "client.py"), "ContentBlock = dict\ndef call_tool(*a): raise RuntimeError\n");
    writeFileSync(join(dir, "pkg", "srv", "__init__.py"), "");
    writeFileSync(join(dir, "pkg", "srv", "x.py"), src);
    const out = python("import sys, json, typing; sys.path.insert(0, sys.argv[1]); from pkg.srv.x import XInput; h = typing.get_type_hints(XInput); print(json.dumps({k: sorted(typing.get_type_hints(v).keys()) for k, v in h.items()}))", [dir]);
    expect(JSON.parse(out)).toEqual({ "a-b": ["first"], aB: ["second"] });
  });

  it("keeps upstream text off lines 1-2 of every .py file, so no server name can set a PEP 263 codec", () => {
    // Not reachable through the config today (SERVER_NAME allows only [A-Za-z0-9_-]), but
    // generateServersTree accepts any name and pyComment lets this through.
    const dir = freshDir("cookie");
    const canary = join(dir, "pwned");
    const name = `x -*- coding: utf-7 -*-\n+AAo-open(${JSON.stringify(canary)}, "w")+AAo-#`;
    const { files } = generateServersTree(new Map([[name, []]]));
    writeTree(dir, files);
    const dirName = files.find((f) => f.path.endsWith("/__init__.py"))!.path.split("/")[0]!;
    python("import sys, importlib; sys.path.insert(0, sys.argv[1]); importlib.import_module('servers.' + sys.argv[2])", [dir, dirName]);
    expect(existsSync(canary)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe("clients and protocol modules", () => {
  it("ships the clients, the protocol modules and the package __init__ at the top of /servers", () => {
    const files = clientFiles();
    expect(files.map((f) => f.path).sort()).toEqual(["README.md", "__init__.py", "_display_mpl.py", "_protocol.py", "client.py", "client.ts", "display.py", "display.ts", "protocol.ts"]);
    for (const f of files) expect(RESERVED_TOP_LEVEL).toContain(f.path.replace(/\.(ts|py|md)$/, "").toLowerCase());
    expect(tsSyntaxErrors(tsProtocolModule())).toEqual([]);
    // The protocol modules are plain data: JSON that both languages read as a literal.
    expect(tsProtocolModule()).toMatch(/^export const PROTOCOL = \{[\s\S]*\} as const;$/m);
    expect(pyProtocolModule()).toMatch(/^PROTOCOL = \{[\s\S]*\}$/m);
    // (_protocol.py and client.py are compiled and imported with the whole tree below.)
  });
});

describe("generateServersTree: names and layout", () => {
  const servers = new Map<string, Tool[]>([
    ["my-server", [{ name: "getSum", inputSchema: { type: "object" } }, { name: "get_sum", inputSchema: { type: "object" } }, { name: "get-sum", inputSchema: { type: "object" } }, { name: "index", inputSchema: { type: "object" } }, { name: "client", inputSchema: { type: "object" } }, { name: "__init__", inputSchema: { type: "object" } }, { name: "Index", inputSchema: { type: "object" } }]],
    ["my_server", [{ name: "ping", inputSchema: { type: "object" } }]],
    ["My Server", [{ name: "ping", inputSchema: { type: "object" } }]],
    ["../etc", [{ name: "../../passwd", inputSchema: { type: "object" } }]],
    ["client", [{ name: "ping", inputSchema: { type: "object" } }]],
    ["index", []],
    ["__init__", [{ name: "ping", inputSchema: { type: "object" } }]],
    ["protocol", [{ name: "ping", inputSchema: { type: "object" } }]],
    ["_protocol", []],
    ["__pycache__", []],
    ["3d", [{ name: "ping", inputSchema: { type: "object" } }]],
    ["class", [{ name: "import", inputSchema: { type: "object" } }]],
    ["", [{ name: "", inputSchema: { type: "object" } }, { name: "!!!", inputSchema: { type: "object" } }, { name: "tool", inputSchema: { type: "object" } }]],
  ]);
  const { files, entries } = generateServersTree(servers);
  const listing = JSON.parse(files.find((f) => f.path === "index.json")!.content) as {
    server: string;
    path: string;
    python: string;
    tools: { name: string; function: string; file: string; python: { module: string; function: string; file: string }; description: string }[];
  }[];
  const dirOf = new Map(listing.map((s) => [s.server, s.python.replace(/^servers\./, "")]));

  it("writes only relative paths with no '..' segment, unique even case-insensitively", () => {
    for (const { path } of files) {
      expect(path, path).not.toMatch(/^\//);
      expect(path.split("/"), path).not.toContain("..");
      expect(path.split("/"), path).not.toContain(".");
      expect(path.split("/"), path).not.toContain("");
      expect(path, path).not.toContain("\\");
      expect(path, path).toMatch(/^[A-Za-z0-9_/.-]+$/);
    }
    const lower = files.map((f) => f.path.toLowerCase());
    expect(new Set(lower).size).toBe(lower.length);
  });

  it("gives every server its own folder, a valid Python package, never one of the top-level names", () => {
    const dirs = [...dirOf.values()];
    expect(dirs).toHaveLength(servers.size);
    expect(new Set(dirs.map((d) => d.toLowerCase())).size).toBe(dirs.length);
    for (const d of dirs) {
      expect(RESERVED_TOP_LEVEL.map((r) => r.toLowerCase())).not.toContain(d.toLowerCase());
      expect(d).toMatch(PY_IDENT);
      expect(PY_KEYWORDS.has(d)).toBe(false);
    }
    // Sorted by server name, first come keeps the plain folder.
    expect(dirOf.get("My Server")).toBe("My_Server");
    expect(dirOf.get("my-server")).toBe("my_server_2");
    expect(dirOf.get("my_server")).toBe("my_server_3");
    expect(dirOf.get("../etc")).toBe("etc");
    expect(dirOf.get("3d")).toBe("_3d");
    expect(dirOf.get("class")).toBe("class_");
    for (const name of ["client", "index", "protocol", "_protocol"]) expect(dirOf.get(name)).toMatch(/^[a-z]+_\d+$/);
    // Leading underscores go, so these cannot reach the reserved names either.
    expect(dirOf.get("__init__")).toBe("init__");
    expect(dirOf.get("__pycache__")).toBe("pycache__");
  });

  it("index.json lists every server and tool with its TypeScript file, Python module and function", () => {
    expect(listing.map((s) => s.server)).toEqual([...servers.keys()].sort());
    const paths = new Set(files.map((f) => f.path));
    let count = 0;
    for (const s of listing) {
      expect(s.path).toBe(`/servers/${dirOf.get(s.server)}/index.ts`);
      expect(s.tools.map((t) => t.name)).toEqual(servers.get(s.server)!.map((t) => t.name));
      for (const t of s.tools) {
        count++;
        expect(t.file.startsWith("/servers/")).toBe(true);
        expect(paths.has(t.file.slice("/servers/".length)), t.file).toBe(true);
        expect(paths.has(t.python.file.slice("/servers/".length)), t.python.file).toBe(true);
        expect(t.python.module).toBe(t.python.file.slice(1).replace(/\.py$/, "").replace(/\//g, "."));
        expect(t.python.module.split(".").at(-1)).toBe(t.python.function);
        expect(t.function).toMatch(JS_IDENT);
        expect(t.python.function).toMatch(PY_IDENT);
      }
    }
    expect(count).toBe(entries.length);
  });

  it("exports each entry's identifier from its .ts file and function from its .py file", () => {
    const byPath = new Map(files.map((f) => [f.path, f.content]));
    for (const e of entries) {
      expect(byPath.get(`${e.serverDir}/${e.file}`)).toContain(`export async function ${e.identifier}(`);
      expect(byPath.get(`${e.serverDir}/${e.pyName}.py`)).toContain(`\ndef ${e.pyName}(`);
      expect(byPath.get(`${e.serverDir}/${e.pyName}.py`)).toContain(`__all__ = ["${e.pyName}"]`);
    }
  });

  it("keeps names unique within a server and off the per-server reserved names", () => {
    const mine = entries.filter((e) => e.server === "my-server");
    expect(mine.map((e) => e.identifier)).toEqual(["getSum", "getSum_2", "getSum_3", "index", "client", "init", "index_2"]);
    expect(mine.map((e) => e.file)).toEqual(["getSum.ts", "get_sum.ts", "get-sum.ts", "index_2.ts", "client.ts", "init__.ts", "Index_3.ts"]);
    expect(mine.map((e) => e.pyName)).toEqual(["get_sum", "get_sum_2", "get_sum_3", "index_2", "client_2", "init", "index_3"]);
    for (const server of servers.keys()) {
      const es = entries.filter((e) => e.server === server);
      for (const key of ["identifier", "file", "pyName"] as const) {
        const values = es.map((e) => e[key].toLowerCase());
        expect(new Set(values).size, `${server} ${key}`).toBe(values.length);
      }
      expect(es.map((e) => e.file.toLowerCase())).not.toContain("index.ts");
      expect(es.map((e) => e.pyName)).not.toContain("__init__");
    }
  });

  it("per-server index.ts and __init__.py re-export every tool", () => {
    for (const [server, dir] of dirOf) {
      const es = entries.filter((e) => e.server === server);
      const idx = files.find((f) => f.path === `${dir}/index.ts`)!.content;
      const init = files.find((f) => f.path === `${dir}/__init__.py`)!.content;
      for (const e of es) {
        expect(idx).toContain(`export { ${e.identifier} } from ${JSON.stringify(`./${e.file}`)};`);
        expect(init).toContain(`from .${e.pyName} import ${e.pyName}\n`);
      }
      expect(init).toContain(`__all__ = [${es.map((e) => JSON.stringify(e.pyName)).join(", ")}]`);
    }
  });

  it("is deterministic and does not depend on the map's order", () => {
    const reversed = new Map([...servers].reverse());
    expect(generateServersTree(reversed).files).toEqual(files);
    expect(generateServersTree(servers).files).toEqual(files);
  });

  it("with no upstreams, is the clients plus an empty index.json", () => {
    const empty = generateServersTree(new Map());
    expect(empty.entries).toEqual([]);
    expect(empty.files.map((f) => f.path)).toEqual([...clientFiles().map((f) => f.path), "index.json"]);
    expect(JSON.parse(empty.files.at(-1)!.content)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("generated tree: parses, type-checks, compiles and imports, running nothing from upstream text", () => {
  let root: string;
  let tsCanary: string;
  let pyCanary: string;
  let files: GeneratedFile[];
  let entries: ToolEntry[];
  // Not "constructor": TypeScript compares an optional non-function `constructor` property with
  // Object.prototype's, so no object literal could be passed (a TypeScript quirk, not a codegen bug).
  const hostileKeys = HOSTILE_TEXT.filter(Boolean).concat(["x-y", "1st", "__init__", ""]);

  beforeAll(() => {
    root = freshDir("tree");
    tsCanary = join(root, "ts-canary");
    pyCanary = join(root, "py-canary");
    const tsPayloads = [
      `*/ (await import("node:fs")).writeFileSync(${JSON.stringify(tsCanary)}, "pwned"); /*`,
      `\n*/\n(await import("node:fs")).writeFileSync(${JSON.stringify(tsCanary)}, "pwned");\n/*`,
      `\u2028*/ (await import("node:fs")).writeFileSync(${JSON.stringify(tsCanary)}, "pwned") /*\u2029`,
      `\`; \${(await import("node:fs")).writeFileSync(${JSON.stringify(tsCanary)}, "x")} \``,
    ];
    const pyLine = `open(${JSON.stringify(pyCanary)}, "w").write("pwned")`;
    const pyPayloads = [
      `"""\n${pyLine}\n"""`,
      `'''\n${pyLine}\n'''`,
      ...["\n", "\r", "\r\n", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c", "\u001c", "\u0000"].map((br) => `text${br}${pyLine}`),
      `trailing backslash \\\n${pyLine}`,
    ];
    const allPayloads = [...tsPayloads, ...pyPayloads].join("\n");
    const hostileProps = Object.fromEntries(hostileKeys.map((k, i) => [k, i % 2 ? { type: "string", const: k, description: allPayloads } : { type: "string", enum: [k, "*/"], description: k }]));
    const t = (tool: Partial<Tool> & { name: string }): Tool => ({ inputSchema: { type: "object" }, ...tool }) as Tool;
    const servers = new Map<string, Tool[]>([
      [
        "github",
        [
          t({
            name: "create_issue",
            title: tsPayloads[0],
            description: `Creates an issue.\n${allPayloads}`,
            inputSchema: {
              type: "object",
              properties: {
                owner: { type: "string", description: tsPayloads[0] },
                repo: { type: "string", description: pyPayloads[0] },
                title: { type: "string" },
                body: { type: ["string", "null"] },
                labels: { type: "array", items: { type: "string" } },
                milestone: { anyOf: [{ type: "integer" }, { type: "null" }] },
                state: { type: "string", enum: ["open", "closed"] },
                meta: { type: "object", additionalProperties: { type: "number" } },
              },
              required: ["owner", "repo", "title"],
            },
          }),
          t({
            name: "list-issues",
            description: tsPayloads[1],
            inputSchema: { type: "object", properties: { page: { type: "integer", minimum: 1 } } },
            outputSchema: {
              type: "object",
              properties: { items: { type: "array", items: { type: "object", properties: { number: { type: "integer" }, title: { type: "string" } }, required: ["number", "title"] } }, total: { type: "integer" } },
              required: ["items"],
            },
          }),
          t({ name: "search/code", title: pyPayloads[1], description: pyPayloads.join("\n"), inputSchema: { type: "object", properties: { q: { type: "string" }, filters: { type: "object", properties: { lang: { enum: ["ts", "py", null] }, deep: { type: "object", properties: { x: { type: "array", items: { type: "array", items: { type: "boolean" } } } } } } } }, required: ["q"] } }),
          t({ name: "hostile_keys", description: allPayloads, inputSchema: { type: "object", properties: hostileProps, required: hostileKeys.slice(0, 2) }, outputSchema: { type: "object", properties: hostileProps } }),
        ],
      ],
      ["my-server", [t({ name: "getSum" }), t({ name: "get_sum" }), t({ name: "get-sum" }), t({ name: "constructor" }), t({ name: "await" }), t({ name: "class" }), t({ name: "import" }), t({ name: "index" }), t({ name: "client" }), t({ name: "__init__" }), t({ name: "list" }), t({ name: "str" }), t({ name: "type" })]],
      ["my_server", [t({ name: "ping", description: tsPayloads[2] })]],
      ["My Server", [t({ name: "ping", description: pyPayloads[2] })]],
      ["../etc", [t({ name: "../passwd", title: tsPayloads[3], description: allPayloads })]],
      ["client", [t({ name: 'weird "name" `x` */ \u2028 \'', description: "x" })]],
      ["index", [t({ name: "ping" })]],
      ["__init__", [t({ name: "ping" })]],
      ["protocol", [t({ name: "ping" })]],
      ["3d", [t({ name: "render" })]],
      ["srv\nimport os */ /*", [t({ name: "", description: "" }), t({ name: "tool" })]],
      ["empty", []],
    ]);
    ({ files, entries } = generateServersTree(servers));
    writeTree(root, files);
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
  });

  it("every .ts file parses (TypeScript and the sandbox's sucrase)", () => {
    const tsFiles = files.filter((f) => f.path.endsWith(".ts"));
    expect(tsFiles.length).toBeGreaterThan(20);
    for (const f of tsFiles) {
      expect(tsSyntaxErrors(f.content, f.path), f.path).toEqual([]);
      expect(() => sucrase(f.content, { transforms: ["typescript"], disableESTransforms: true, filePath: f.path }), f.path).not.toThrow();
    }
  });

  /** Type-checks the whole written tree plus a consumer (main.ts), once. */
  let diagnostics: { code: number; text: string }[] | undefined;
  function typeCheck(): { code: number; text: string }[] {
    diagnostics ??= runTypeCheck();
    return diagnostics;
  }
  function runTypeCheck(): { code: number; text: string }[] {
    writeFileSync(
      join(root, "main.ts"),
      [
        'import { createIssue, listIssues, searchCode, hostileKeys } from "./servers/github/index.ts";',
        'import type { CreateIssueInput } from "./servers/github/create_issue.ts";',
        'import { MCPToolError } from "./servers/client.ts";',
        'export const ok: CreateIssueInput = { owner: "o", repo: "r", title: "t", state: "open", labels: ["x"], milestone: null, body: null, meta: { a: 1 } };',
        '// @ts-expect-error "repo" is required',
        'export const missing: CreateIssueInput = { owner: "o", title: "t" };',
        "// @ts-expect-error not one of the enum's values",
        'export const badState: CreateIssueInput = { owner: "o", repo: "r", title: "t", state: "merged" };',
        "export async function use(): Promise<number> {",
        "  const page = await listIssues();",
        "  const first: { number: number; title: string } | undefined = page.items[0];",
        '  await searchCode({ q: "x", filters: { lang: null, deep: { x: [[true]] } } });',
        "  // @ts-expect-error q is required",
        "  await searchCode({});",
        `  const h = await hostileKeys({ ${JSON.stringify(hostileKeys[0])}: ${JSON.stringify(hostileKeys[0])}, ${JSON.stringify(hostileKeys[1])}: ${JSON.stringify(hostileKeys[1])} });`,
        "  void h; void first; void createIssue; void MCPToolError;",
        "  return page.total ?? 0;",
        "}",
      ].join("\n"),
    );
    const rootNames = [join(root, "main.ts"), ...files.filter((f) => f.path.endsWith(".ts")).map((f) => join(root, "servers", f.path))];
    const program = ts.createProgram(rootNames, {
      noEmit: true,
      strict: true,
      allowImportingTsExtensions: true,
      verbatimModuleSyntax: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      lib: ["lib.es2023.d.ts"],
      types: ["node"],
      typeRoots: [join(repoRoot, "node_modules", "@types")],
      skipLibCheck: true,
    });
    const diags = ts.getPreEmitDiagnostics(program).map((d) => {
      const code = d.code;
      const where = d.file && d.start !== undefined ? `${d.file.fileName.slice(root.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : "";
      return { code, text: where + ts.flattenDiagnosticMessageText(d.messageText, "\n") };
    });
    return diags;
  }
  // TS2352 on `input as Record<string, unknown>` in a tool with required inputs: see the BUG test.
  const castBug = (d: { code: number; text: string }) => d.code === 2352 && d.text.includes("to type 'Record<string, unknown>'");

  it("the whole tree type-checks under strict NodeNext, and the types follow the schemas", () => {
    const diags = typeCheck().filter((d) => !castBug(d));
    expect(diags.map((d) => d.text)).toEqual([]);
  }, 30_000);

  it("type-checks a tool with a required input property (type alias, assignable to Record<string, unknown>)", () => {
    expect(typeCheck().filter(castBug).map((d) => d.text)).toEqual([]);
  }, 30_000);

  it("every .py file compiles and every server package imports in CPython, without connecting anywhere or running upstream text", () => {
    const script = `
import importlib, json, pathlib, socket, sys, typing
root = pathlib.Path(sys.argv[1])
connects = []
def no_connect(self, *a, **k):
    connects.append(repr(a))
    raise OSError("no network in this test")
socket.socket.connect = no_connect
errors = []
for p in sorted((root / "servers").rglob("*.py")):
    try:
        compile(p.read_bytes(), str(p), "exec")
    except SyntaxError as e:
        errors.append(f"{p}: {e}")
sys.path.insert(0, str(root))
listing = json.loads((root / "servers" / "index.json").read_text())
packages, docs = {}, {}
for s in listing:
    pkg = importlib.import_module(s["python"])
    packages[s["python"]] = list(pkg.__all__)
    for t in s["tools"]:
        m = importlib.import_module(t["python"]["module"])
        f = getattr(m, t["python"]["function"])
        assert callable(f) and getattr(pkg, t["python"]["function"]) is f
        docs[t["python"]["module"]] = f.__doc__
hk = importlib.import_module("servers.github.hostile_keys")
print(json.dumps({"errors": errors, "connects": connects, "packages": packages, "docs": docs,
  "keys": list(typing.get_type_hints(hk.HostileKeysInput).keys()),
  "required": sorted(hk.HostileKeysInput.__required_keys__)}, ensure_ascii=True))
`;
    const out = JSON.parse(python(script, [root])) as { errors: string[]; connects: string[]; packages: Record<string, string[]>; docs: Record<string, string>; keys: string[]; required: string[] };
    expect(out.errors).toEqual([]);
    expect(out.connects).toEqual([]);
    expect(existsSync(pyCanary)).toBe(false);
    // Every server package exports exactly its tools.
    const expected: Record<string, string[]> = {};
    for (const e of entries) {
      const key = `servers.${e.serverDir}`;
      expected[key] = [...(expected[key] ?? []), e.pyName];
    }
    for (const [pkg, names] of Object.entries(out.packages)) expect(names, pkg).toEqual(expected[pkg] ?? []);
    // The upstream's text is data: it arrives verbatim in the docstring.
    for (const e of entries) {
      const doc = out.docs[`servers.${e.serverDir}.${e.pyName}`]!;
      if (e.tool.description) expect(doc).toContain(e.tool.description);
      expect(doc).toContain(`MCP tool "${e.tool.name}" of server "${e.server}".`);
    }
    expect(out.keys).toEqual(hostileKeys);
    expect(out.required).toEqual(hostileKeys.slice(0, 2).sort());
  });

  it("loading every server's index.ts through the sandbox's loader exports the tools and runs nothing from upstream text", () => {
    const dirs = [...new Set(entries.map((e) => e.serverDir))];
    const loaded = loadWithSandboxHooks(root, dirs.map((d) => join(root, "servers", d, "index.ts")));
    for (const d of dirs) {
      const ids = entries.filter((e) => e.serverDir === d).map((e) => e.identifier).sort();
      expect(loaded[join(root, "servers", d, "index.ts")], d).toEqual(ids);
    }
    expect(existsSync(tsCanary)).toBe(false);
  });

  it('runs nothing from a description with "*\\r/" when the module is loaded', () => {
    const dir = freshDir("cr-injection");
    const canary = join(dir, "canary");
    const { files: f } = generateServersTree(new Map([["srv", [{ name: "t", description: `*\r/ (await import("node:fs")).writeFileSync(${JSON.stringify(canary)}, "pwned"); /*`, inputSchema: { type: "object" } } as Tool]]]));
    writeTree(dir, f);
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    // The module loads fine (the injected statement is valid code); the canary tells.
    expect(loadWithSandboxHooks(dir, [join(dir, "servers", "srv", "index.ts")])).toEqual({ [join(dir, "servers", "srv", "index.ts")]: ["t"] });
    expect(existsSync(canary)).toBe(false);
  });
});

describe("generation cost is bounded by the schema, not multiplied by it", () => {
  const nest = (k: number, levels: number) => {
    let s: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < levels; i++) s = { type: Array(k).fill("object"), properties: { a: s } };
    return s;
  };
  const size = (tools: Tool[]) => generateServersTree(new Map([["s", tools]])).files.reduce((n, f) => n + f.content.length, 0);

  it("keeps a tiny schema with repeated type lists to a small module (it was 30 MB of TypeScript)", () => {
    expect(size([{ name: "t", inputSchema: { type: "object", properties: { x: nest(30, 4) } } } as Tool])).toBeLessThan(200_000);
    expect(size([{ name: "t", inputSchema: { type: "object", properties: { x: nest(8, 5) } } } as Tool])).toBeLessThan(200_000);
  });

  it("reads the part of a schema past its node budget as any", () => {
    const wide = Object.fromEntries(Array.from({ length: 6_000 }, (_, i) => [`p${i}`, { type: "string" }]));
    const out = generateServersTree(new Map([["s", [{ name: "t", inputSchema: { type: "object", properties: wide } } as Tool]]]));
    const ts = out.files.find((f) => f.path === "s/t.ts")!.content;
    expect(ts).toContain("p0?: string;");
    expect(ts).toContain("p5999?: unknown");
  });

  it("names 10,000 tools of one name uniquely, counting on where it left off", () => {
    const tools = Array.from({ length: 10_000 }, () => ({ name: "x", inputSchema: { type: "object" } }) as Tool);
    const { entries } = generateServersTree(new Map([["s", tools]]));
    expect(new Set(entries.map((e) => e.identifier)).size).toBe(10_000);
    expect(entries.at(-1)!.identifier).toBe("x_10000");
  });

  it("keeps a union of objects inside allOf grouped", () => {
    const t = schemaToType({ allOf: [{ anyOf: [{ type: "object", properties: { a: { type: "string" } } }, { type: "object", properties: { b: { type: "string" } } }] }, { type: "object", properties: { c: { type: "number" } } }] });
    expect(t.replace(/\s+/g, " ")).toBe("({ a?: string; } | { b?: string; }) & { c?: number; }");
  });
});
