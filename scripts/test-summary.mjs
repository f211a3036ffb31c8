// Prints vitest's totals as one plain line ("tests: N passed, N failed, N skipped") for CI logs:
// the main suites and the cluster test (each has its own report).
import { existsSync, readFileSync } from "node:fs";
const files = ["vitest.json", "vitest-cluster.json"].map((f) => new URL(`../test-results/${f}`, import.meta.url)).filter((u) => existsSync(u));
let passed = 0;
let failed = 0;
let skipped = 0;
for (const f of files) {
  const r = JSON.parse(readFileSync(f, "utf8"));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped (${files.length} report${files.length === 1 ? "" : "s"})`);
process.exit(failed > 0 || passed === 0 || files.length < 2 ? 1 : 0);
