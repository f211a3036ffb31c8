import { describe, expect, it } from "vitest";
import { formatRunText } from "../../src/mcp/tools/execute-code.js";
import type { RunResult } from "../../src/sandbox/backend.js";

const base: RunResult = {
  runId: "r", containerId: "c", exitCode: 0, stdout: "", stderr: "", stdoutBytes: 0, stderrBytes: 0,
  stdoutTruncated: false, stderrTruncated: false, timedOut: false, oomKilled: false, canceled: false, durationMs: 12,
};

describe("the text a model reads", () => {
  it("shows the status line and the output", () => {
    expect(formatRunText({ ...base, stdout: "42\n" })).toBe("[exit code 0 in 12 ms]\n42");
  });
  it("says when it timed out, ran out of memory, or was cut", () => {
    expect(formatRunText({ ...base, exitCode: null, timedOut: true })).toMatch(/timed out after 12 ms/);
    expect(formatRunText({ ...base, exitCode: 137, oomKilled: true })).toMatch(/out of memory/);
    expect(formatRunText({ ...base, stdout: "abc", stdoutBytes: 10, stdoutTruncated: true })).toMatch(/stdout cut: the first 3 of 10 bytes/);
  });
  it("labels stderr and nudges when nothing was printed", () => {
    expect(formatRunText({ ...base, exitCode: 1, stderr: "Error: x\n" })).toBe("[exit code 1 in 12 ms]\n[stderr]\nError: x");
    expect(formatRunText(base)).toMatch(/no output/);
  });
});
