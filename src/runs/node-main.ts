// What the host does to a Node run's code before the runner sees it, so the runner's boot stays off
// the critical path (docs/PERFORMANCE.md): TypeScript is stripped here, where the stripper is loaded
// once for all runs, with the same sucrase options the sandbox's hooks use; and code whose only
// imports are Node's builtins is marked plain, so the runner evaluates it without its module hooks
// thread. Anything this cannot handle (a syntax error, very large code) goes to the sandbox as it
// is: the runner's own path then reports it exactly as before.
import { builtinModules } from "node:module";
import type { Language } from "../shared/languages.js";

/** Bigger code is left to the sandbox: stripping it here would hold the server's event loop. */
const MAX_HOST_STRIP_BYTES = 256 * 1024;
/** The main module's path in the sandbox (the Node runner's MAIN_URL), for sucrase's messages. */
const MAIN_PATH = "/workspace/__codebox_main__.ts";
const BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith("_")));

export interface NodeMain {
  code: string;
  language: Language;
  /** JavaScript importing only Node builtins (statically), without import.meta or import(). */
  plain: boolean;
}

let tools: Promise<{ strip: (code: string) => string; imports: (code: string) => ReturnType<typeof import("es-module-lexer").parse>[0] }> | undefined;

/** Loads the stripper and the import scanner (once; call early to keep it off the first run). */
export function loadNodeMainTools(): typeof tools {
  tools ??= (async () => {
    const [{ transform }, lexer] = await Promise.all([import("sucrase"), import("es-module-lexer")]);
    await lexer.init;
    return {
      strip: (code: string) => transform(code, { transforms: ["typescript"], disableESTransforms: true, keepUnusedImports: false, filePath: MAIN_PATH }).code,
      imports: (code: string) => lexer.parse(code)[0],
    };
  })();
  return tools;
}

function isBuiltin(specifier: string | null | undefined): boolean {
  if (!specifier) return false;
  return specifier.startsWith("node:") ? BUILTINS.has(specifier.slice(5)) : BUILTINS.has(specifier);
}

export async function prepareNodeMain(code: string, language: Language): Promise<NodeMain> {
  const asIs = { code, language, plain: false };
  if (language === "python" || Buffer.byteLength(code, "utf8") > MAX_HOST_STRIP_BYTES) return asIs;
  const t = await loadNodeMainTools()!;
  let js = code;
  if (language === "typescript") {
    try {
      js = t.strip(code);
    } catch {
      return asIs;
    }
  }
  let plain = false;
  try {
    plain = t.imports(js).every((i) => i.type === "static" && isBuiltin(i.specifier));
  } catch {
    // the lexer could not read it: the runner's loader will say why
  }
  return { code: js, language: "javascript", plain };
}
