// Bundles the sandbox runner (and its TypeScript stripper) into self-contained files, so the
// sandbox image needs nothing but Node itself: no node_modules, no package manager.
import { build } from "esbuild";
import { chmod } from "node:fs/promises";

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  legalComments: "none",
  logLevel: "warning",
};
await build({ ...common, entryPoints: ["sandbox-image/runner.mjs"], outfile: "dist/sandbox-image/runner.mjs" });
await build({ ...common, entryPoints: ["sandbox-image/hooks.mjs"], outfile: "dist/sandbox-image/hooks.mjs" });
await chmod("dist/cli.js", 0o755).catch(() => {});
