#!/usr/bin/env node
// Copies the red-team tables of the last `npm test` (test-results/red-team-*.md) into
// docs/SECURITY.md, between "## Red-team suite" and "## Verified by tests". Run it after a full
// test run whose tables you want to publish.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const SUITES = [
  ["runc", "Node on runc"],
  ["runsc", "Node on runsc (gVisor)"],
  ["runc-bun", "Bun on runc"],
  ["runsc-bun", "Bun on runsc (gVisor)"],
  ["runc-python", "Python on runc"],
  ["runsc-python", "Python on runsc (gVisor)"],
];
const doc = join(root, "docs", "SECURITY.md");
const text = readFileSync(doc, "utf8");
const start = text.indexOf("## Red-team suite");
const end = text.indexOf("## Verified by tests");
if (start < 0 || end < 0) throw new Error("docs/SECURITY.md lacks the red-team section markers");
const intro = text.slice(start, end).split("\n### ")[0].trimEnd();
const parts = [intro, ""];
for (const [file, title] of SUITES) {
  const path = join(root, "test-results", `red-team-${file}.md`);
  if (!existsSync(path)) throw new Error(`${path} is missing: run the whole suite first (npm test)`);
  const table = readFileSync(path, "utf8").trim();
  const rows = table.split("\n").slice(2);
  const passed = rows.filter((r) => r.trimEnd().endsWith("| yes |")).length;
  parts.push(`### ${title}`, "", `${passed} of ${rows.length} attacks contained.`, "", table, "");
}
writeFileSync(doc, `${text.slice(0, start) + parts.join("\n")}\n${text.slice(end)}`);
process.stderr.write("docs/SECURITY.md: red-team tables updated\n");
