import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// The unit tests' global set-up: no engine, only one temporary root for every test's temporary
// directories (helpers.tempDir puts them under it), removed at the end whatever the tests did.
let root: string | undefined;

export function setup(): void {
  root = mkdtempSync(join(tmpdir(), "codebox-unit-"));
  process.env.CODEBOX_TEST_TMP = root;
}

export function teardown(): void {
  if (root) rmSync(root, { recursive: true, force: true });
}
