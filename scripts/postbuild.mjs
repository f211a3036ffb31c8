// Bundles the Node sandbox runner (and its TypeScript stripper) into self-contained files, so the
// sandbox image needs nothing but Node itself: no node_modules, no package manager.
import { build } from "esbuild";
import { chmod, copyFile, mkdir, rm } from "node:fs/promises";

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  legalComments: "none",
  logLevel: "warning",
};
await build({ ...common, entryPoints: ["sandbox-image/node/runner.mjs"], outfile: "dist/sandbox-image/node/runner.mjs" });
await build({ ...common, entryPoints: ["sandbox-image/node/hooks.mjs"], outfile: "dist/sandbox-image/node/hooks.mjs", external: ["./strip.mjs"] });
await build({ ...common, entryPoints: ["sandbox-image/node/strip.mjs"], outfile: "dist/sandbox-image/node/strip.mjs" });
// Bun strips types itself and Python needs nothing: their runners are copied as they are.
await mkdir("dist/sandbox-image/bun", { recursive: true });
await mkdir("dist/sandbox-image/python", { recursive: true });
await copyFile("sandbox-image/bun/runner.mjs", "dist/sandbox-image/bun/runner.mjs");
await copyFile("sandbox-image/python/runner.py", "dist/sandbox-image/python/runner.py");
await rm("dist/sandbox-image/runner.mjs", { force: true });
await rm("dist/sandbox-image/hooks.mjs", { force: true });
await chmod("dist/cli.js", 0o755).catch(() => {});
