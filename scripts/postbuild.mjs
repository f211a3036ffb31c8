// Bundles the Node sandbox runner (and its TypeScript stripper) into self-contained files, so the
// sandbox image needs nothing but Node itself: no node_modules, no package manager.
import { build } from "esbuild";
import { chmod, copyFile, mkdir, rm, writeFile } from "node:fs/promises";

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  legalComments: "none",
  logLevel: "warning",
};
// The Node runner is CommonJS with no dependencies: copied, not bundled (docs/ARCHITECTURE.md).
await mkdir("dist/sandbox-image/node", { recursive: true });
await rm("dist/sandbox-image/node/runner.mjs", { force: true });
await copyFile("sandbox-image/node/runner.cjs", "dist/sandbox-image/node/runner.cjs");
await build({ ...common, entryPoints: ["sandbox-image/node/hooks.mjs"], outfile: "dist/sandbox-image/node/hooks.mjs", external: ["./strip.mjs"] });
await build({ ...common, entryPoints: ["sandbox-image/node/strip.mjs"], outfile: "dist/sandbox-image/node/strip.mjs" });
// Egress (runs the host allows it): the loopback forwarder and undici's ProxyAgent for fetch.
await build({ ...common, format: "cjs", entryPoints: ["sandbox-image/node/egress.cjs"], outfile: "dist/sandbox-image/node/egress.cjs" });
// Bun strips types itself and Python needs nothing: their runners are copied as they are.
await mkdir("dist/sandbox-image/bun", { recursive: true });
await mkdir("dist/sandbox-image/python", { recursive: true });
await copyFile("sandbox-image/bun/runner.mjs", "dist/sandbox-image/bun/runner.mjs");
await copyFile("sandbox-image/python/runner.py", "dist/sandbox-image/python/runner.py");
await rm("dist/sandbox-image/runner.mjs", { force: true });
await rm("dist/sandbox-image/hooks.mjs", { force: true });
// The CLI as one bundle with lazily loaded chunks (dist/bundle/): a start from ~500 module files
// took twice as long as from a few (docs/PERFORMANCE.md, start-up). dist/cli.js becomes a one-line
// entry into it; the library entry (dist/app.js) stays as tsc wrote it.
await rm("dist/bundle", { recursive: true, force: true });
await build({
  ...common,
  entryPoints: { cli: "dist/cli.js" },
  splitting: true,
  outdir: "dist/bundle",
  chunkNames: "chunks/[name]-[hash]",
  // Optional native add-ons of the engine client's SSH transport: left to node_modules.
  external: ["ssh2", "cpu-features"],
  // Bundled CommonJS dependencies call require(); give them Node's.
  banner: { js: "import { createRequire as __codeboxCreateRequire } from 'node:module'; const require = __codeboxCreateRequire(import.meta.url);" },
});
await writeFile("dist/cli.js", '#!/usr/bin/env node\n// The CLI is bundled (scripts/postbuild.mjs): this file only enters it.\nimport "./bundle/cli.js";\n');
await chmod("dist/cli.js", 0o755).catch(() => {});
