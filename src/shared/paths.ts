import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

// This file sits at src/shared/ (tests) or dist/shared/ (built); the package root is two up.
const packageRoot = fileURLToPath(new URL("../../", import.meta.url));

export function packagePath(...parts: string[]): string {
  return [packageRoot.replace(/\/$/, ""), ...parts].join("/");
}

let cachedVersion: string | undefined;
export function packageVersion(): string {
  cachedVersion ??= (JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as { version: string }).version;
  return cachedVersion;
}
