import { lstatSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { UserDirectories, assertSafeSegment, safeJoin } from "../../src/stores/user-dirs.js";
import { tempDir } from "../helpers.js";

describe("safe names and paths", () => {
  it.each(["..", ".", "../x", "a/b", "/abs", "", ".hidden", "a\0b", "x".repeat(65), "a..b", "é"])("refuses %j as a path segment", (name) => {
    expect(() => assertSafeSegment("user id", name)).toThrow(/Invalid user id/);
  });
  it.each(["alice", "user-1", "a.b_c", "X9"])("accepts %j", (name) => {
    expect(() => assertSafeSegment("user id", name)).not.toThrow();
  });
  it("keeps joined paths inside the root", () => {
    expect(safeJoin("/data", "users", "a")).toBe("/data/users/a");
    expect(() => safeJoin("/data", "users", "../../etc")).toThrow(/escapes/);
    expect(() => safeJoin("/data", "/etc/passwd")).toThrow(/escapes/);
  });
});

describe("user directories", () => {
  it("creates workspace and skills as real directories", async () => {
    const root = tempDir("dirs");
    const dirs = await new UserDirectories(root, 10001).ensure("alice");
    expect(lstatSync(dirs.workspace).isDirectory()).toBe(true);
    expect(lstatSync(dirs.skills).isDirectory()).toBe(true);
    expect(lstatSync(dirs.root).mode & 0o777).toBe(0o700);
  });

  it("refuses a symlink planted where a directory should be", async () => {
    const root = tempDir("dirs");
    mkdirSync(join(root, "users", "bob"), { recursive: true });
    symlinkSync("/etc", join(root, "users", "bob", "skills"));
    await expect(new UserDirectories(root, 10001).ensure("bob")).rejects.toThrow(/not a real directory/);
  });

  it("refuses a file planted where a directory should be", async () => {
    const root = tempDir("dirs");
    mkdirSync(join(root, "users", "eve"), { recursive: true });
    writeFileSync(join(root, "users", "eve", "workspace"), "x");
    await expect(new UserDirectories(root, 10001).ensure("eve")).rejects.toThrow(/not a real directory/);
  });
});
