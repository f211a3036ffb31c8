import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { completionPrefix, encodePayload } from "../../src/protocol/runner.js";
import { loadSeccompProfile } from "../../src/sandbox/docker/seccomp.js";
import type { Language, RuntimeName } from "../../src/shared/languages.js";
import { closeAndCheck, expectNoRunContainers, repoRoot, testApp } from "../helpers.js";

// Python and Bun in real containers: the runner contract (output, exit codes, errors, imports,
// files) as each language's users expect it. Hardening is the same spec for every runtime (unit
// test) and is attacked per runtime by the red-team suite.
describe.each(["runc", "runsc"] as const)("language runtimes under %s", (oci) => {
  let app: App;
  const run = (code: string, language: Language, runtime?: RuntimeName, opts: { timeoutMs?: number; userId?: string } = {}) =>
    app.runs.execute({ userId: opts.userId ?? "rt-user", code, language, runtime, timeoutMs: opts.timeoutMs });
  const py = (code: string, opts?: { timeoutMs?: number; userId?: string }) => run(code, "python", undefined, opts);
  const bun = (code: string, language: Language = "typescript") => run(code, language, "bun");

  beforeAll(() => {
    app = testApp({ "sandbox.ociRuntime": oci });
  });
  afterEach(async () => {
    await expectNoRunContainers(app);
  });
  afterAll(async () => {
    await closeAndCheck(app);
  });

  describe("Python", () => {
    it("runs as __main__ in /workspace on CPython 3.11+ and returns what it printed", async () => {
      const r = await py("import os, sys\nprint(__name__, os.getcwd(), sys.version_info >= (3, 11), __file__)");
      expect(r).toMatchObject({ exitCode: 0, stdout: "__main__ /workspace True /workspace/__codebox_main__.py\n", stderr: "", timedOut: false, oomKilled: false });
    });

    it("passes sys.exit codes through, and reports an exception with the code's own lines", async () => {
      expect((await py("import sys\nsys.exit(3)")).exitCode).toBe(3);
      expect((await py("raise SystemExit('bye')")).stderr).toBe("bye\n");
      const r = await py("def f(x):\n    return 1 / x\n\nf(0)");
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain('File "/workspace/__codebox_main__.py", line 2, in f');
      expect(r.stderr).toContain("return 1 / x");
      expect(r.stderr).toContain("ZeroDivisionError: division by zero");
      expect(r.stderr).not.toContain("/opt/codebox");
    });

    it("reports a syntax error with its line", async () => {
      const r = await py("x = 1\ny = (");
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/line 2[\s\S]*SyntaxError/);
    });

    it("allows top-level await, gives input() an EOF, and prints output from threads and atexit before it ends", async () => {
      const r = await py(
        [
          "import asyncio, atexit, threading, time",
          "await asyncio.sleep(0.01)",
          "print('awaited')",
          "try:",
          "    input()",
          "except EOFError:",
          "    print('eof')",
          "atexit.register(lambda: print('atexit'))",
          "threading.Thread(target=lambda: (time.sleep(0.3), print('thread'))).start()",
        ].join("\n"),
      );
      expect(r.stdout).toBe("awaited\neof\nthread\natexit\n");
      expect(r.exitCode).toBe(0);
    });

    it("imports the code's own modules from /workspace without writing bytecode there", async () => {
      await py("open('/workspace/helper_mod.py', 'w').write('def twice(x):\\n    return 2 * x\\n')");
      const r = await py("from helper_mod import twice\nprint(twice(21))");
      expect(r.stdout).toBe("42\n");
      const ws = (await app.dirs.ensure("rt-user")).workspace;
      expect(existsSync(join(ws, "__pycache__"))).toBe(false);
    });

    it(oci === "runc" ? "preloads the data stack in a warm container, but not when the workspace holds a module named like an installed one" : "does not preload the data stack under runsc (it would slow the runs that come meanwhile)", async () => {
      const userId = `preload-${oci}`;
      const loaded = "import sys\nprint(all(m in sys.modules for m in ('numpy', 'pandas', 'matplotlib.pyplot')))";
      const settle = () => new Promise((r) => setTimeout(r, oci === "runsc" ? 10_000 : 5_000));
      await py("print(1)", { userId });
      await settle();
      const warm = await py(loaded, { userId });
      expect(warm.warm).toBe(true);
      expect(warm.stdout).toBe(oci === "runc" ? "True\n" : "False\n");
      if (oci === "runsc") return;
      // The user's own numpy.py: a preload would have put the installed numpy in its place.
      await py("open('/workspace/numpy.py', 'w').write('VALUE = 42\\n')", { userId });
      await settle();
      const shadowed = await py(`${loaded}\nimport numpy\nprint(numpy.VALUE)`, { userId });
      expect(shadowed.warm).toBe(true);
      expect(shadowed.stdout).toBe("False\n42\n");
    });

    it("keeps what the code wrote to files it never closed, though the container is removed at the completion line", async () => {
      // Two million objects make Python's own shutdown slow: without the runner's flush the
      // container was removed before shutdown flushed the files (0 bytes, most runs under runsc).
      const r = await py(
        [
          "import logging, pathlib",
          "f = open('/workspace/unclosed.txt', 'w'); f.write('x' * 5000)",
          "b = pathlib.Path('/workspace/unclosed.bin').open('wb'); b.write(bytes(3000))",
          "logging.basicConfig(filename='/workspace/unclosed.log', level=logging.INFO); logging.info('kept')",
          "junk = [dict() for _ in range(2_000_000)]",
          "print('written')",
        ].join("\n"),
      );
      expect(r.stdout).toBe("written\n");
      const ws = (await app.dirs.ensure("rt-user")).workspace;
      const { readFileSync } = await import("node:fs");
      expect(readFileSync(join(ws, "unclosed.txt"), "utf8")).toBe("x".repeat(5000));
      expect(readFileSync(join(ws, "unclosed.bin")).length).toBe(3000);
      expect(readFileSync(join(ws, "unclosed.log"), "utf8")).toBe("INFO:root:kept\n");
    });

    it("has the data stack on a read-only root under the process limit: BLAS, pandas, scipy, openpyxl, Pillow and a chart shown", async () => {
      const r = await py(
        [
          "import numpy as np, pandas as pd, matplotlib, scipy, scipy.linalg, openpyxl, PIL, os, threading",
          "a = np.random.default_rng(1).random((400, 400))",
          "print('blas', np.allclose(a @ np.linalg.inv(a), np.eye(400), atol=1e-6), 'lu', scipy.linalg.lu(a)[0].shape)",
          "print('blas threads', os.environ['OPENBLAS_NUM_THREADS'])",
          "df = pd.DataFrame({'k': [1, 2, 1], 'v': [1.0, 2.0, 3.0]})",
          "print(df.groupby('k').v.sum().to_dict())",
          "import matplotlib.pyplot as plt",
          "plt.figure(figsize=(2, 1), dpi=50); plt.plot([1, 3, 2]); plt.show()",
          "print('backend', matplotlib.get_backend(), 'root writable', os.access('/usr', os.W_OK))",
          "from openpyxl import Workbook; from PIL import Image",
          "wb = Workbook(); wb.active.append([1, 2]); wb.save('/tmp/x.xlsx'); Image.new('RGB', (3, 2)).save('/tmp/x.png')",
          "print('files', os.path.getsize('/tmp/x.xlsx') > 0, Image.open('/tmp/x.png').size)",
        ].join("\n"),
      );
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(
        ["blas True lu (400, 400)", "blas threads 1", "{1: 4.0, 2: 2.0}", "backend module://servers._display_mpl root writable False", "files True (3, 2)", ""].join("\n"),
      );
      expect(r.exitCode).toBe(0);
      expect(r.shown).toHaveLength(1);
      expect(r.shown[0]).toMatchObject({ kind: "image", mime: "image/png", width: 100, height: 50 });
    });

    it("imports the starter skills and a Python skill a run saved, whose name has a hyphen", async () => {
      const saved = await py(
        [
          "import os",
          "os.makedirs('/skills/word-count', exist_ok=True)",
          "open('/skills/word-count/SKILL.md', 'w').write('---\\nname: word-count\\ndescription: \"Counts words.\"\\n---\\n')",
          "open('/skills/word-count/__init__.py', 'w').write('def count(text):\\n    return len(text.split())\\n')",
        ].join("\n"),
      );
      expect(saved.stderr).toBe("");
      const r = await py(
        [
          "from skills.csv import parse_csv, to_csv",
          "from skills.table import markdown_table",
          "from skills.word_count import count",
          "rows = parse_csv('a,b\\n1,\"x, y\"')",
          "print(rows[1][1], '|', to_csv(rows).splitlines()[1])",
          "print(markdown_table([{'id': 1}]).splitlines()[0])",
          "print(count('one two three'))",
        ].join("\n"),
      );
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe('x, y | 1,"x, y"\n| id |\n3\n');
      const skills = await app.files.listSkills("rt-user");
      expect(skills.find((s) => s.name === "word-count")).toMatchObject({ languages: ["python"], pythonImport: "skills.word_count" });
      expect(skills.find((s) => s.name === "csv")?.languages).toEqual(["typescript", "python"]);
    });

    it("kills an endless loop at the timeout", async () => {
      const r = await py("while True:\n    pass", { timeoutMs: 2_000 });
      expect(r.timedOut).toBe(true);
      expect(r.exitCode).toBeNull();
    });

    it("reports a large allocation as oomKilled", async () => {
      const r = await py("b = bytearray(b'x') * (1 << 30)\nprint(len(b))");
      expect(r.oomKilled).toBe(true);
    });
  });

  describe("Bun", () => {
    it("runs TypeScript natively, with relative imports against /workspace", async () => {
      writeFileSync(join((await app.dirs.ensure("rt-user")).workspace, "util.ts"), "export const twice = (n: number): number => n * 2;\n");
      const r = await bun('import { twice } from "./util.ts"; const n: number = 21; console.log(twice(n), typeof Bun, import.meta.url)');
      expect(r).toMatchObject({ exitCode: 0, stdout: "42 object file:///workspace/__codebox_main__.ts\n", stderr: "" });
    });

    it("runs JavaScript, imports the starter skills, and passes exit codes through", async () => {
      const r = await bun('import { parseCsv } from "/skills/csv/index.ts"; console.log(parseCsv("a,b\\n1,2")[1][1]); process.exitCode = 5', "javascript");
      expect(r.stdout).toBe("2\n");
      expect(r.exitCode).toBe(5);
    });

    it("reports thrown errors and syntax errors with their location, without the runner's frames", async () => {
      const thrown = await bun('throw new Error("boom")');
      expect(thrown.exitCode).toBe(1);
      expect(thrown.stderr).toContain("Error: boom");
      expect(thrown.stderr).not.toContain("/opt/codebox");
      const syntax = await bun("const a = 1;\nconst b = ;");
      expect(syntax.exitCode).toBe(1);
      expect(syntax.stderr).toMatch(/SyntaxError[\s\S]*__codebox_main__\.ts:2:/);
    });

    it("kills an endless loop at the timeout", async () => {
      const r = await run("while (true) {}", "javascript", "bun", { timeoutMs: 2_000 });
      expect(r.timedOut).toBe(true);
    });
  });

  // The host returns a result as soon as both streams carry this line (~130 ms before the engine
  // reports the exit); a runner that forgets it still works, only slower, so it is checked here.
  it.each([
    ["node", "typescript", "console.log('out'); console.error('err'); process.exitCode = 3"],
    ["bun", "typescript", "console.log('out'); console.error('err'); process.exitCode = 3"],
    ["python", "python", "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"],
  ] as const)("the %s runner ends stdout and stderr with the completion line", async (runtime, language, code) => {
    const image = await app.backend.ensureImage(runtime);
    const prefix = completionPrefix("0123456789abcdef0123456789abcdef");
    const payload = encodePayload({ code, language, env: {}, completion: prefix });
    // Our seccomp profile: under gVisor the engine's default one cannot start Node's or Bun's threads.
    const profile = join(app.config.dataDir, `seccomp-${oci}.json`);
    writeFileSync(profile, loadSeccompProfile(join(repoRoot, "seccomp", "profile.json"), oci));
    const r = spawnSync("docker", ["run", "-i", "--rm", "--network", "none", "--runtime", oci, "--security-opt", `seccomp=${profile}`, image], { input: payload, encoding: "latin1", timeout: 60_000 });
    expect(r.stdout).toBe(`out\n${prefix}3\n`);
    expect(r.stderr).toBe(`err\n${prefix}3\n`);
    expect(r.status).toBe(3);
  });

  it("refuses a runtime that does not run the language, and keeps serving", async () => {
    await expect(run("print(1)", "python", "bun")).rejects.toThrow(/does not run Python/);
    expect((await py("print('still here')")).stdout).toBe("still here\n");
  });

  it("writes no file of its own into the workspace (the main module lives in memory)", () => {
    const ws = join(app.config.dataDir, "users", "rt-user", "workspace");
    expect(readdirSync(ws).filter((n) => n.startsWith("__codebox_main__"))).toEqual([]);
  });
});
