import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import fc from "fast-check";
import { transform as sucrase } from "sucrase";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { type GeneratedFile, generateServersTree } from "../../src/bridge/codegen/servers-tree.js";
import { JS_IDENT, JS_RESERVED, PY_IDENT, PY_KEYWORDS, bindableInStrictCode } from "./codegen-oracles.js";

// Property-based tests of the /servers code API generator. Upstream tool lists are attacker-controlled
// JSON: names, titles, descriptions and schemas of any shape. Generation must never throw, must give
// every tool valid, distinct names in both languages, and must write files that parse, strip, compile
// and type-check; a hostile upstream must cost only its own tools.

const repoRoot = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const base = mkdtempSync(join(tmpdir(), "codebox-codegen-props-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** The real interpreter behind a possible pyenv shim, resolved once. */
const PYTHON = execFileSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();

// ---------------------------------------------------------------------------------------------
// Oracles


const TS_CLIENT_NAMES = new Set(["callTool", "callMCPTool", "unwrap", "MCPToolError", "ContentBlock", "CallToolResult"]);
const PY_CLIENT_NAMES = new Set(["call_tool", "call_mcp_tool", "unwrap", "annotations"]);


function parseDiagnostics(sf: ts.SourceFile): string[] {
  return ((sf as unknown as { parseDiagnostics?: ts.Diagnostic[] }).parseDiagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
}

function tsSyntaxErrors(source: string, fileName: string): string[] {
  return parseDiagnostics(ts.createSourceFile(fileName, source, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS));
}

/** Strips the types exactly as the sandbox's loader does (sandbox-image/node/hooks.mjs). */
function stripTypes(source: string, filePath: string): string {
  return sucrase(source, { transforms: ["typescript"], disableESTransforms: true, keepUnusedImports: false, filePath }).code;
}

function writeTree(root: string, files: GeneratedFile[]): void {
  for (const f of files) {
    const p = join(root, "servers", f.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.content);
  }
}

const show = (v: unknown, max = 600): string => {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
};

// ---------------------------------------------------------------------------------------------
// Arbitraries

// Fragments that try to end a comment or a string literal, set a codec, or confuse a line counter.
const HOSTILE_PIECES = [
  "*/", "/*", "*\r/", "*\u2028/", "**/", '"""', "'''", "`", "${", "}", "\u2028", "\u2029", "\r", "\n", "\r\n", "\u0085", "\u000b", "\u000c",
  "\u001c", "\u001e", "\u0000", "\u001b", "\u007f", "\\", "\\\n", "#", "# -*- coding: latin-1 -*-", "# coding=utf-7", "\ud800", "\udfff",
  "😀", "\ufeff", "\u200b", "</script>", "<!--", "-->", "'", '"', "\t", " ", "__proto__", "constructor", "import os", "process.exit(1)",
  "é", "ß", "İ", "\u212a", "ſ", "ﬀ", "٣", "ǅ", "@", "$", "_", "-", ".", "..", "/", "0",
];

const piece = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_PIECES) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 6 }) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/) },
);

/** Any text: full unicode, lone surrogates, control characters, hostile fragments, up to 4000 characters. */
const text = fc.oneof(
  { weight: 5, arbitrary: fc.array(piece, { maxLength: 6 }).map((a) => a.join("")) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.array(piece, { minLength: 1, maxLength: 4 }).map((a) => a.join("")), fc.integer({ min: 20, max: 1500 }))
      .map(([s, n]) => s.repeat(n).slice(0, 4000)),
  },
);

/** Names that clash with each other, with the client's names, or with keywords of either language. */
const CLASHING = [
  "callTool", "call_tool", "call-tool", "CallTool", "3d_render", "3d-render", "", " ", "  ", "callMCPTool", "call_mcp_tool", "unwrap",
  "MCPToolError", "ContentBlock", "CallToolResult", "annotations", "index", "Index", "__init__", "client", "protocol", "_protocol",
  "__pycache__", "constructor", "prototype", "await", "async", "class", "import", "type", "as", "from", "of", "get", "set", "declare",
  "namespace", "module", "global", "satisfies", "keyof", "readonly", "infer", "is", "asserts", "unique", "override", "accessor", "out",
  "abstract", "any", "never", "unknown", "object", "string", "symbol", "require", "exports", "let", "static", "yield", "enum", "None",
  "True", "match", "case", "_", "__", "lambda", "print", "list", "str", "dict", "Any", "Literal", "TypedDict", "NotRequired", "NoReturn",
  "input", "arguments", "kwargs", "eval", "undefined", "NaN", "Infinity", "globalThis", "tool", "tool_2", "tool-2", "Tool", "get sum",
  "getSum", "get_sum", "get-sum", "GET_SUM", "get--sum", "..", ".", "../etc/passwd", "a/b", "a\\b", "con", "NUL", "a".repeat(100),
  `${"a".repeat(80)}b`, `${"a".repeat(80)}c`, "_3d", "T3d",
];

const name = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...CLASHING) },
  { weight: 3, arbitrary: text },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9 _.-]{0,12}$/) },
);

const propKey = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom("a", "b", "a-b", "aB", "1st", "", " ", "__proto__", "constructor", "toString", "$", "__init__", "Any", "None", "x y", "*/", '"', "\u2028") },
  { weight: 2, arbitrary: fc.stringMatching(/^[a-z]{1,4}$/) },
  { weight: 1, arbitrary: text },
);

/** JSON values as JSON.parse gives them (-0 included; no NaN or Infinity). */
const json = (maxDepth: number) => fc.jsonValue({ maxDepth });
const junk = fc.oneof(
  fc.constantFrom<unknown>("x", null, 0, -0, 1.5, -1, 1e21, true, false, [], {}, [1, "a", null], { type: 1 }, "object", "string"),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  json(1),
);

/** `const` and `enum` values: hostile text (they become string literals), numbers, JSON. */
const literalValue = fc.oneof(
  { weight: 3, arbitrary: text },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, true, false, 0, -0, 1e21, -1, 5e-324) },
  { weight: 2, arbitrary: json(2) },
);

const TYPE_NAMES = ["object", "string", "number", "integer", "boolean", "null", "array", "Object", "any", "", "function", "__proto__"];

/** Schema-like values: real keywords with valid or garbage values, nested, mixed with plain garbage. */
const { schema, node } = fc.letrec<{ schema: unknown; node: Record<string, unknown> }>((tie) => ({
  schema: fc.oneof(
    { depthSize: "medium", maxDepth: 7 },
    { weight: 1, arbitrary: junk },
    { weight: 1, arbitrary: fc.boolean() },
    { weight: 6, arbitrary: tie("node") },
  ),
  node: fc
    .array(
      fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fc.constant("type"), fc.oneof(fc.constantFrom(...TYPE_NAMES), fc.array(fc.constantFrom(...TYPE_NAMES), { maxLength: 3 }), junk)) },
        {
          weight: 4,
          arbitrary: fc.tuple(
            fc.constant("properties"),
            fc.oneof({ weight: 4, arbitrary: fc.array(fc.tuple(propKey, tie("schema")), { maxLength: 4 }).map((e) => Object.fromEntries(e)) }, { weight: 1, arbitrary: junk }),
          ),
        },
        { weight: 2, arbitrary: fc.tuple(fc.constant("required"), fc.oneof(fc.array(fc.oneof(propKey, propKey, junk), { maxLength: 4 }), junk)) },
        { weight: 2, arbitrary: fc.tuple(fc.constant("items"), fc.oneof(tie("schema"), junk)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant("enum"), fc.oneof(fc.array(literalValue, { maxLength: 4 }), junk)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant("const"), literalValue) },
        { weight: 1, arbitrary: fc.tuple(fc.constantFrom("anyOf", "oneOf", "allOf"), fc.oneof(fc.array(tie("schema"), { maxLength: 3 }), junk)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant("additionalProperties"), fc.oneof(tie("schema"), junk)) },
        { weight: 2, arbitrary: fc.tuple(fc.constantFrom("description", "title"), fc.oneof(text, junk)) },
        { weight: 1, arbitrary: fc.tuple(fc.oneof(propKey, fc.constantFrom("$ref", "default", "format", "$defs")), junk) },
      ),
      { maxLength: 5 },
    )
    .map((e) => Object.fromEntries(e) as Record<string, unknown>),
}));

/** A chain of up to 12 nested keywords around any schema: reaches the depth cut-off (8) of both generators. */
const WRAPS: Record<string, (s: unknown, k: string) => unknown> = {
  property: (s, k) => ({ type: "object", properties: { [k]: s }, required: [k] }),
  items: (s) => ({ type: "array", items: s }),
  anyOf: (s) => ({ anyOf: [s, { type: "null" }] }),
  oneOf: (s, k) => ({ oneOf: [{ type: "string", description: k }, s] }),
  allOf: (s) => ({ allOf: [s, { type: "object", properties: { z: { type: "number" } } }] }),
  additionalProperties: (s) => ({ type: "object", additionalProperties: s }),
  // One copy of the inner schema per level: a type array multiplies it, once per listed type.
  objectOrNull: (s, k) => ({ type: ["object", "null"], properties: { [k]: s } }),
  arrayOrString: (s) => ({ type: ["string", "array"], items: s }),
};
const deepChain = fc
  .tuple(fc.array(fc.tuple(fc.constantFrom(...Object.keys(WRAPS)), propKey), { minLength: 1, maxLength: 12 }), schema)
  .map(([steps, leaf]) => steps.reduce<unknown>((inner, [w, k]) => WRAPS[w]!(inner, k), leaf));

/** What passes the MCP SDK's own check of a tool list: `type: "object"` at the root, the rest anything. */
const sdkShaped = schema.map((s) => (typeof s === "object" && s !== null && !Array.isArray(s) ? { ...s, type: "object" } : { type: "object" }));

/**
 * An input schema whose root really is an object schema (what MCP requires): `type: "object"`, no
 * root `const` or `enum`, and root `anyOf`/`oneOf`/`allOf` only of object schemas. Everything below
 * the root is still garbage. (A root such as `{ type: "object", const: 5 }` passes the SDK's check
 * but describes a number, and the module's `input as Record<string, unknown>` then fails tsc with
 * TS2352: a known gap of self-contradictory schemas, left out of this check; (a) and (b) keep them.)
 */
const objectRoot = (() => {
  const strip = (o: Record<string, unknown>): Record<string, unknown> => {
    const { const: _c, enum: _e, anyOf: _a, oneOf: _o, allOf: _l, ...rest } = o;
    return { ...rest, type: "object" };
  };
  return fc
    .tuple(
      node,
      fc.option(fc.tuple(fc.constantFrom("anyOf", "oneOf", "allOf"), fc.array(node.map(strip), { minLength: 1, maxLength: 3 })), { nil: undefined }),
      fc.option(deepChain, { nil: undefined }),
    )
    .map(([o, alts, chain]) => {
      const root = alts ? { ...strip(o), [alts[0]]: alts[1] } : strip(o);
      return chain === undefined ? root : { ...root, properties: { deep: chain } };
    });
})();

/** Any input or output schema: plain JSON, schema-like garbage, or SDK-shaped garbage. */
const anySchema = fc.oneof(
  { weight: 1, arbitrary: fc.jsonValue() },
  { weight: 3, arbitrary: schema },
  { weight: 3, arbitrary: sdkShaped },
  { weight: 2, arbitrary: deepChain.map((c) => ({ type: "object", properties: { deep: c } })) },
  { weight: 1, arbitrary: deepChain },
);

function toolArb(inputArb: fc.Arbitrary<unknown>, outputArb: fc.Arbitrary<unknown> = inputArb): fc.Arbitrary<Tool> {
  return fc
    .record(
      { name, title: text, description: text, inputSchema: inputArb, outputSchema: fc.option(outputArb, { nil: undefined }) },
      { requiredKeys: ["name", "inputSchema"] },
    )
    .map((t) => t as unknown as Tool);
}

function treeArb(inputArb: fc.Arbitrary<unknown>, servers: { min: number; max: number }, tools: { min: number; max: number }, outputArb = inputArb) {
  return fc
    .array(fc.tuple(name, fc.array(toolArb(inputArb, outputArb), { minLength: tools.min, maxLength: tools.max })), { minLength: servers.min, maxLength: servers.max })
    .map((list) => new Map(list));
}

/** The files every tree has, whatever the upstreams: checked once, not per tree. */
const STATIC_PATHS = new Set(["client.ts", "protocol.ts", "client.py", "_protocol.py", "__init__.py", "index.json"]);

// ---------------------------------------------------------------------------------------------

describe("property: generation never throws and leaves no upstream out", () => {
  it("for arbitrary JSON and schema-like garbage, names, titles and descriptions (2000 trees)", () => {
    fc.assert(
      fc.property(treeArb(anySchema, { min: 0, max: 3 }, { min: 0, max: 4 }), (servers) => {
        const { files, entries, disabled } = generateServersTree(servers);
        expect(disabled).toEqual([]);
        // Every tool of every upstream is in the code API, and index.json lists it.
        expect(entries.length).toBe([...servers.values()].reduce((n, t) => n + t.length, 0));
        const listing = JSON.parse(files.find((f) => f.path === "index.json")!.content) as { server: string; tools: unknown[] }[];
        expect(listing.map((s) => s.server).sort()).toEqual([...servers.keys()].sort());
        for (const s of listing) expect(s.tools.length).toBe(servers.get(s.server)!.length);
      }),
      { numRuns: 2000 },
    );
  }, 60_000);

  it("for a const or enum nested deeper than JSON.stringify can follow", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 20_000; i++) deep = [deep];
    const hostile = [
      { name: "a", inputSchema: { type: "object", const: deep } },
      { name: "b", inputSchema: { type: "object", properties: { a: { type: "array", items: { enum: [1, deep] } } } } },
    ] as unknown as Tool[];
    const { entries, disabled } = generateServersTree(new Map([["srv", hostile]]));
    expect(disabled).toEqual([]);
    expect(entries).toHaveLength(2);
  });

  it("for 300 tools of one name (all kept, all named apart)", () => {
    const tools = Array.from({ length: 300 }, () => ({ name: "x", inputSchema: { type: "object" } }) as Tool);
    const { entries, disabled } = generateServersTree(new Map([["srv", tools]]));
    expect(disabled).toEqual([]);
    expect(new Set(entries.map((e) => e.identifier)).size).toBe(300);
    expect(new Set(entries.map((e) => e.pyName)).size).toBe(300);
    expect(new Set(entries.map((e) => e.file)).size).toBe(300);
  });
});

describe("property: names are valid and distinct, paths stay inside the tree", () => {
  /** Every broken rule, as text (plain checks: a few hundred thousand expect() calls would be slow). */
  function nameProblems(servers: Map<string, Tool[]>): string[] {
    const problems: string[] = [];
    const check = (ok: boolean, what: string) => {
      if (!ok) problems.push(what);
    };
    const { files, entries } = generateServersTree(servers);
    for (const [server, tools] of servers) {
      const own = entries.filter((e) => e.server === server);
      check(own.length === tools.length && own.every((e, i) => e.tool === tools[i]), `server ${show(server)}: entries do not match its tools`);
      const ids = own.map((e) => e.identifier);
      const pys = own.map((e) => e.pyName);
      const tsFiles = own.map((e) => e.file.toLowerCase());
      check(new Set(ids).size === ids.length, `duplicate TS identifiers ${show(ids)}`);
      check(new Set(pys.map((p) => p.toLowerCase())).size === pys.length, `duplicate Python names ${show(pys)}`);
      check(new Set(tsFiles).size === tsFiles.length && !tsFiles.includes("index.ts"), `duplicate or reserved .ts files ${show(tsFiles)}`);
      for (const id of ids) {
        check(JS_IDENT.test(id) && !JS_RESERVED.has(id) && !TS_CLIENT_NAMES.has(id) && bindableInStrictCode(id), `bad TS identifier ${show(id)}`);
      }
      for (const py of pys) {
        const low = py.toLowerCase();
        check(PY_IDENT.test(py) && !PY_KEYWORDS.has(py) && !PY_CLIENT_NAMES.has(low) && !["__init__", "client", "index"].includes(low), `bad Python name ${show(py)}`);
      }
    }
    // Every path is relative, made of plain segments, and unique even on a case-insensitive disk.
    const paths = files.map((f) => f.path);
    for (const p of paths) {
      const segments = p.split("/");
      check(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(p) && !segments.some((s) => s === ".." || s === "." || s === ""), `bad path ${show(p)}`);
    }
    check(new Set(paths.map((p) => p.toLowerCase())).size === paths.length, `paths not unique case-insensitively ${show(paths)}`);
    // Server folders: valid Python packages, never a keyword or one of the top-level names.
    for (const d of new Set(entries.map((e) => e.serverDir))) {
      check(PY_IDENT.test(d) && !PY_KEYWORDS.has(d) && !["client", "protocol", "_protocol", "index", "__init__", "__pycache__"].includes(d.toLowerCase()), `bad server folder ${show(d)}`);
    }
    return problems;
  }

  it("for clashing inputs (the examples of the brief and the client's names)", () => {
    const clash = ["callTool", "call_tool", "call-tool", "CallTool", "3d_render", "3d-render", "", "  "];
    const t = (n: string): Tool => ({ name: n, inputSchema: { type: "object" } }) as Tool;
    expect(nameProblems(new Map([["srv", clash.map(t)]]))).toEqual([]);
    expect(nameProblems(new Map([["srv", [...clash, ...clash, ...CLASHING].map(t)], ["Srv", CLASHING.map(t)], ["client", clash.map(t)]]))).toEqual([]);
    const { entries } = generateServersTree(new Map([["srv", clash.map(t)]]));
    expect(entries.map((e) => e.identifier)).toEqual(["callTool_2", "callTool_3", "callTool_4", "callTool_5", "_3dRender", "_3dRender_2", "tool", "tool_2"]);
    expect(entries.map((e) => e.pyName)).toEqual(["call_tool_2", "call_tool_3", "call_tool_4", "call_tool_5", "_3d_render", "_3d_render_2", "tool", "tool_2"]);
  });

  it("for arbitrary servers and tool names (1000 trees)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(name, fc.array(name.map((n) => ({ name: n, inputSchema: { type: "object" } }) as Tool), { maxLength: 12 })), { maxLength: 4 }).map((l) => new Map(l)),
        (servers) => {
          expect(nameProblems(servers)).toEqual([]);
        },
      ),
      { numRuns: 1000 },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Everything compiles: many random trees in one batch, then one Python process, one Node process
// and one TypeScript program for all of them.

interface Tree {
  servers: Map<string, Tool[]>;
  files: GeneratedFile[];
  dir: string;
}

describe("property: every generated file parses, strips, compiles and type-checks", () => {
  const root = join(base, "batch");
  const trees: Tree[] = [];
  const stripped: { path: string; code: string }[] = [];
  const seed = Math.floor(Math.random() * 2 ** 31);
  const where = (t: Tree) => `seed ${seed}, tree ${t.dir}: ${show([...t.servers].map(([s, tools]) => [s, tools]), 4000)}`;

  /** The tool whose module a generated path is, for a failure message. */
  function toolOf(tree: Tree, path: string): string {
    const { entries } = generateServersTree(tree.servers);
    const e = entries.find((x) => path === `${x.serverDir}/${x.file}` || path === `${x.serverDir}/${x.pyName}.py`);
    return e ? `server ${show(e.server)}, tool ${show(e.tool, 3000)}` : `(no single tool) servers ${show([...tree.servers], 3000)}`;
  }

  it("(a) every .ts file of 150 random trees parses with TypeScript and strips with the sandbox's sucrase", () => {
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
    // The files shared by every tree, once.
    const statics = generateServersTree(new Map()).files;
    for (const f of statics.filter((x) => x.path.endsWith(".ts"))) {
      expect(tsSyntaxErrors(f.content, f.path), f.path).toEqual([]);
      stripped.push({ path: `static/${f.path}`, code: stripTypes(f.content, join(root, f.path)) });
    }
    fc.assert(
      fc.property(treeArb(anySchema, { min: 1, max: 3 }, { min: 1, max: 4 }), (servers) => {
        const { files, disabled } = generateServersTree(servers);
        expect(disabled).toEqual([]);
        const dir = `t${trees.length}`;
        const out: { path: string; code: string }[] = [];
        for (const f of files) {
          if (!f.path.endsWith(".ts") || STATIC_PATHS.has(f.path)) continue;
          expect(tsSyntaxErrors(f.content, f.path), `${f.path}\n${f.content}`).toEqual([]);
          let code = "";
          expect(() => {
            code = stripTypes(f.content, join(root, dir, "servers", f.path));
          }, `${f.path}\n${f.content}`).not.toThrow();
          out.push({ path: `${dir}/${f.path}`, code });
        }
        // Only trees that passed go to the batch (fast-check re-runs smaller ones when shrinking).
        trees.push({ servers, files, dir });
        stripped.push(...out);
      }),
      { numRuns: 150, seed },
    );
    expect(trees.length).toBe(150);
    for (const t of trees) writeTree(join(root, t.dir), t.files);
  }, 60_000);

  it("(a') what sucrase leaves is a module Node's own parser accepts", () => {
    expect(stripped.length).toBeGreaterThan(150);
    // vm.SourceTextModule parses (and links nothing): a syntax error is reported, nothing runs.
    const script = `
const vm = require("node:vm");
const files = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const failures = [];
for (const f of files) {
  try { new vm.SourceTextModule(f.code, { identifier: f.path }); }
  catch (e) { failures.push({ path: f.path, error: String(e && e.message) }); }
}
process.stdout.write(JSON.stringify(failures));`;
    const out = execFileSync(process.execPath, ["--experimental-vm-modules", "--no-warnings", "-e", script], {
      input: JSON.stringify(stripped),
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    const failures = JSON.parse(out) as { path: string; error: string }[];
    const detail = failures.slice(0, 5).map((f) => {
      const t = trees.find((x) => f.path.startsWith(`${x.dir}/`));
      return `${f.path}: ${f.error}\n${t ? toolOf(t, f.path.slice(t.dir.length + 1)) : ""}\n${show(stripped.find((s) => s.path === f.path)?.code, 3000)}\nseed ${seed}`;
    });
    expect(detail).toEqual([]);
  }, 30_000);

  it("(b) every .py file of those trees compiles in CPython, and every server package imports", () => {
    expect(trees.length).toBe(150);
    const script = `
import importlib, json, pathlib, socket, sys
root = pathlib.Path(sys.argv[1])
def no_connect(self, *a, **k):
    raise OSError("no network in this test")
socket.socket.connect = no_connect
errors, imports, count = [], [], 0
for p in sorted(root.rglob("*.py")):
    count += 1
    try:
        compile(p.read_bytes(), str(p), "exec")
    except (SyntaxError, ValueError) as e:
        errors.append({"path": str(p.relative_to(root)), "error": repr(e)})
for tree in sorted(root.iterdir()):
    if not (tree / "servers" / "index.json").is_file():
        continue
    for name in [m for m in sys.modules if m == "servers" or m.startswith("servers.")]:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    for s in json.loads((tree / "servers" / "index.json").read_text()):
        try:
            pkg = importlib.import_module(s["python"])
            missing = [t["python"]["function"] for t in s["tools"] if not callable(getattr(pkg, t["python"]["function"], None))]
            if missing:
                imports.append({"tree": tree.name, "package": s["python"], "error": "missing " + repr(missing)})
        except Exception as e:
            imports.append({"tree": tree.name, "package": s["python"], "error": repr(e)})
    sys.path.remove(str(tree))
print(json.dumps({"count": count, "errors": errors, "imports": imports}))
`;
    const out = JSON.parse(execFileSync(PYTHON, ["-I", "-B", "-c", script, root], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })) as {
      count: number;
      errors: { path: string; error: string }[];
      imports: { tree: string; package: string; error: string }[];
    };
    expect(out.count).toBe(trees.reduce((n, t) => n + t.files.filter((f) => f.path.endsWith(".py")).length, 0));
    const compileDetail = out.errors.slice(0, 5).map((e) => {
      const t = trees.find((x) => e.path.startsWith(`${x.dir}/`))!;
      return `${e.path}: ${e.error}\n${toolOf(t, e.path.slice(t.dir.length + "/servers/".length))}\nseed ${seed}`;
    });
    expect(compileDetail).toEqual([]);
    const importDetail = out.imports.slice(0, 5).map((e) => `${e.tree} ${e.package}: ${e.error}\n${where(trees.find((x) => x.dir === e.tree)!)}`);
    expect(importDetail).toEqual([]);
  }, 30_000);

  it("(c) 20 random trees whose input schemas have an object root type-check under strict NodeNext (tsc)", () => {
    // The same garbage below the root; the root of the input schema is an object schema (see
    // objectRoot). Output schemas stay garbage: the result is cast from `unknown`.
    const typed = join(base, "typed");
    mkdirSync(typed, { recursive: true });
    writeFileSync(join(typed, "package.json"), '{ "type": "module" }\n');
    const sample: Tree[] = [];
    fc.assert(
      fc.property(treeArb(objectRoot, { min: 1, max: 3 }, { min: 1, max: 4 }, anySchema), (servers) => {
        const { files, disabled } = generateServersTree(servers);
        expect(disabled).toEqual([]);
        sample.push({ servers, files, dir: `t${sample.length}` });
      }),
      { numRuns: 20, seed },
    );
    for (const t of sample) writeTree(join(typed, t.dir), t.files);
    const rootNames = sample.flatMap((t) => t.files.filter((f) => f.path.endsWith(".ts")).map((f) => join(typed, t.dir, "servers", f.path)));
    const program = ts.createProgram(rootNames, {
      noEmit: true,
      strict: true,
      allowImportingTsExtensions: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      lib: ["lib.es2022.d.ts"], // what Node has: no DOM (and a third of the check's time)
      types: ["node"],
      typeRoots: [join(repoRoot, "node_modules", "@types")],
      skipLibCheck: true,
    });
    const diags = ts.getPreEmitDiagnostics(program).map((d) => {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      if (!d.file || d.start === undefined) return `TS${d.code}: ${msg}`;
      const rel = d.file.fileName.slice(typed.length + 1);
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      const t = sample.find((x) => rel.startsWith(`${x.dir}/`));
      const lineText = d.file.text.split("\n")[line] ?? "";
      return `${rel}:${line + 1}: TS${d.code}: ${msg}\n  line: ${show(lineText, 400)}\n  ${t ? toolOf(t, rel.slice(t.dir.length + "/servers/".length)) : ""}\n  seed ${seed}`;
    });
    expect(diags.slice(0, 8)).toEqual([]);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------

describe("a hostile upstream costs only its own tools", () => {
  const everything: Tool[] = [
    {
      name: "get-sum",
      description: "Returns the sum of two numbers",
      inputSchema: { type: "object", properties: { a: { type: "number", description: "First number" }, b: { type: "number", description: "Second number" } }, required: ["a", "b"] },
    } as Tool,
  ];

  /** The hostile server's tools change nothing of the normal server's: its files, its entries, its index.json listing. */
  function expectUntouched(hostileName: string, hostile: Tool[]): void {
    const alone = generateServersTree(new Map([["everything", everything]]));
    const both = generateServersTree(new Map([["everything", everything], [hostileName, hostile]]));
    expect(both.disabled).toEqual([]);
    const withHostile = new Map(both.files.map((f) => [f.path, f.content]));
    for (const f of alone.files) {
      if (f.path === "index.json") continue;
      expect(withHostile.get(f.path), f.path).toBe(f.content);
    }
    const aloneDirs = new Set(alone.files.map((f) => f.path.split("/")[0]));
    const hostileDir = both.entries.find((e) => e.server === hostileName)?.serverDir;
    for (const f of both.files) if (!aloneDirs.has(f.path.split("/")[0])) expect(f.path.split("/")[0], f.path).toBe(hostileDir);
    const pick = (e: { server: string; serverDir: string; identifier: string; file: string; pyName: string }) => [e.serverDir, e.identifier, e.file, e.pyName];
    expect(both.entries.filter((e) => e.server === "everything").map(pick)).toEqual(alone.entries.map(pick));
    const listing = (files: GeneratedFile[]) => (JSON.parse(files.find((f) => f.path === "index.json")!.content) as { server: string }[]).find((s) => s.server === "everything");
    expect(listing(both.files)).toEqual(listing(alone.files));
  }

  it("a server whose tools have garbage schemas and clashing names", () => {
    const hostile = [
      { name: "get-sum", inputSchema: { type: "object", properties: { a: "x", b: [1, 2], "*/": { type: ["string", 7], items: "x" } }, required: {} } },
      { name: "getSum", inputSchema: { type: "object", properties: [1], required: "a", anyOf: "x", allOf: [null, 1, "x"] }, outputSchema: { type: "object", const: { "*/": '"""' } } },
      { name: "get_sum", inputSchema: "x", outputSchema: [] },
      { name: "callTool", inputSchema: null, title: "*/ process.exit(1) /*", description: '"""\nimport os\n"""' },
      { name: "../everything/get-sum", inputSchema: { type: "object", enum: [], oneOf: [] } },
      { name: "everything", inputSchema: { type: "array", items: { type: "array", items: { type: "array", items: { properties: { x: false } } } } } },
      { name: "index", inputSchema: { type: "object", additionalProperties: "x" } },
      { name: "__init__", inputSchema: true },
      { name: "", inputSchema: { type: "object", properties: { "": { description: "\u2028*/\r#" } }, required: ["", 1, null] } },
      { name: "\u0000\ud800*/", inputSchema: { type: "object" } },
    ] as unknown as Tool[];
    expectUntouched("hostile", hostile);
    expectUntouched("aaa-hostile", hostile); // sorts before "everything"
    expectUntouched("zzz", hostile);
  });

  it("property: any hostile tool list (250 lists)", () => {
    const hostileTools = fc.array(toolArb(anySchema), { minLength: 1, maxLength: 8 }).chain((tools) =>
      fc.subarray(everything.map((t) => t.name).concat("get_sum", "getSum", "GetSum", "callTool", "index"), { minLength: 0 }).map((names) => [
        ...tools,
        ...names.map((n) => ({ name: n, inputSchema: { type: "object", properties: { a: "x" } } }) as unknown as Tool),
      ]),
    );
    fc.assert(
      fc.property(fc.constantFrom("hostile", "aaa", "evil-server", "zzz", "Everything2"), hostileTools, expectUntouched),
      { numRuns: 250 },
    );
  }, 60_000);
});
