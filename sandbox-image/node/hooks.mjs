// Module hooks for the sandbox: TypeScript files are stripped of their types (sucrase, pure JS,
// no native binary) on their way into Node's ESM loader. Runs on Node's hooks thread. The
// stripper (strip.mjs) is loaded on the first .ts file: the host strips the main module itself.
import { readFile, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const mainModules = new Map();

export async function initialize({ port }) {
  port.on("message", (msg) => {
    mainModules.set(msg.url, msg);
    port.postMessage("ready");
  });
  port.unref();
}

const TS_FILE = /\.(ts|mts)$/;

let stripper;

async function stripTypes(source, url) {
  stripper ??= import("./strip.mjs");
  const { transform } = await stripper;
  try {
    return transform(source, {
      transforms: ["typescript"],
      disableESTransforms: true,
      keepUnusedImports: false,
      filePath: fileURLToPath(url),
    }).code;
  } catch (err) {
    // sucrase's message already names the file; drop its stack, it is about sucrase, not the user.
    const e = new SyntaxError(err.message);
    e.stack = `SyntaxError: ${err.message}`;
    throw e;
  }
}

async function exists(url) {
  try {
    return (await stat(fileURLToPath(url))).isFile();
  } catch {
    return false;
  }
}

export async function resolve(specifier, context, nextResolve) {
  if (mainModules.has(specifier)) return { url: specifier, format: "module", shortCircuit: true };
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    // TypeScript habit: `import "./util"` meaning ./util.ts. Try that before giving up.
    const relative = specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("/");
    if (err?.code === "ERR_MODULE_NOT_FOUND" && relative && !/\.[cm]?[jt]s$/.test(specifier) && context.parentURL) {
      for (const ext of [".ts", ".js", "/index.ts", "/index.js"]) {
        const candidate = new URL(specifier + ext, context.parentURL).href;
        if (await exists(candidate)) return { url: candidate, shortCircuit: true, format: "module" };
      }
    }
    throw err;
  }
}

export async function load(url, context, nextLoad) {
  const main = mainModules.get(url);
  if (main) {
    const source = main.language === "javascript" ? main.source : await stripTypes(main.source, url);
    return { format: "module", source, shortCircuit: true };
  }
  if (url.startsWith("file:") && TS_FILE.test(url)) {
    const raw = await readFile(fileURLToPath(url), "utf8");
    return { format: "module", source: await stripTypes(raw, url), shortCircuit: true };
  }
  return nextLoad(url, context);
}
