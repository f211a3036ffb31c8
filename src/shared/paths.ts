import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The package root: the nearest folder above this module whose package.json is ours. This module
 * sits at src/shared/ (tests), dist/shared/ (the library) or in the CLI's bundle (dist/bundle/),
 * so the depth is not fixed.
 */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      if ((JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string }).name === "codebox-mcp") return dir;
    } catch {
      // no package.json here, or not JSON: go up
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("codebox-mcp: cannot find the package's own package.json above its modules");
    dir = up;
  }
}

const packageRoot = findPackageRoot();

export function packagePath(...parts: string[]): string {
  return [packageRoot.replace(/\/$/, ""), ...parts].join("/");
}

let cachedVersion: string | undefined;
export function packageVersion(): string {
  cachedVersion ??= (JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as { version: string }).version;
  return cachedVersion;
}
