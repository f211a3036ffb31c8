import { execFileSync } from "node:child_process";
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { InputError, NotFoundError, UnsafePathError } from "../../src/shared/errors.js";
import { isFileBeneath, listBeneath, readFileBeneath, relativeSegments, writeFileBeneath } from "../../src/stores/safe-fs.js";
import { SkillStore, validateSkillName } from "../../src/stores/skills.js";
import { UserDirectories, safeJoin } from "../../src/stores/user-dirs.js";
import { UserFiles } from "../../src/stores/user-files.js";

// Everything below the root is hostile: sandboxed code can plant links, FIFOs and devices there.
// Each test gets a fresh root and, beside it (outside the root), a canary the code must never reach.

const base = mkdtempSync(join(tmpdir(), "codebox-safe-fs-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
let root: string;
let outside: string;
let canary: string;
const CANARY = "host secret";

beforeEach(() => {
  const t = join(base, `t${n++}`);
  root = join(t, "root");
  outside = join(t, "outside");
  canary = join(outside, "canary.txt");
  mkdirSync(root, { recursive: true });
  mkdirSync(outside, { recursive: true });
  writeFileSync(canary, CANARY);
});

const unsafe = { name: "UnsafePathError", code: "CODEBOX_UNSAFE_PATH" };
const canaryIntact = () => {
  expect(readFileSync(canary, "utf8")).toBe(CANARY);
  expect(readdirSync(outside)).toEqual(["canary.txt"]);
};

function canMknod(): boolean {
  const probe = join(base, "mknod-probe");
  try {
    execFileSync("mknod", [probe, "c", "1", "3"], { stdio: "ignore" });
    rmSync(probe);
    return true;
  } catch {
    return false;
  }
}

describe("relativeSegments: which user-supplied paths are acceptable", () => {
  it("splits a relative path into its segments, ignoring repeated and trailing slashes", () => {
    expect(relativeSegments("a/b/c.txt")).toEqual(["a", "b", "c.txt"]);
    expect(relativeSegments("a//b/")).toEqual(["a", "b"]);
    expect(relativeSegments("..hidden/x..y")).toEqual(["..hidden", "x..y"]);
  });

  it.each([
    ["an empty path", ""],
    ["an absolute path", "/etc/passwd"],
    ["the root itself", "/"],
    ["only slashes", "//"],
    ["a leading ..", "../outside"],
    ["a .. in the middle", "a/../../b"],
    ["a trailing ..", "a/.."],
    ["a . segment", "./a"],
    ["a NUL byte", "a\0b"],
    ["a segment over 255 characters", "x".repeat(256)],
    ["a path over 4096 characters", "a/".repeat(2049)],
  ])("refuses %s", (_what, path) => {
    expect(() => relativeSegments(path)).toThrow(UnsafePathError);
    expect(() => relativeSegments(path)).toThrow(expect.objectContaining(unsafe));
  });

  it("refuses every path that has a '.' or '..' segment anywhere, and keeps every other segment verbatim", () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/).filter((s) => s !== "." && s !== "..");
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 5 }), fc.constantFrom(".", ".."), fc.array(segment, { maxLength: 5 }), (before, dot, after) => {
        expect(() => relativeSegments([...before, dot, ...after].join("/"))).toThrow(UnsafePathError);
        if (before.length > 0) expect(relativeSegments(before.join("/"))).toEqual(before);
      }),
      { numRuns: 200 },
    );
  });
});

describe("readFileBeneath", () => {
  it("reads a regular file in a subdirectory", async () => {
    mkdirSync(join(root, "a", "b"), { recursive: true });
    writeFileSync(join(root, "a", "b", "f.txt"), "hello");
    expect((await readFileBeneath(root, "a/b/f.txt", 100)).toString()).toBe("hello");
  });

  it("refuses a symlink as the final component instead of reading what it points at", async () => {
    symlinkSync(canary, join(root, "link.txt"));
    await expect(readFileBeneath(root, "link.txt", 1024)).rejects.toMatchObject(unsafe);
  });

  it("refuses a symlinked directory anywhere on the way", async () => {
    mkdirSync(join(root, "a"));
    symlinkSync(outside, join(root, "a", "via"));
    await expect(readFileBeneath(root, "a/via/canary.txt", 1024)).rejects.toMatchObject(unsafe);
    symlinkSync(outside, join(root, "top"));
    await expect(readFileBeneath(root, "top/canary.txt", 1024)).rejects.toMatchObject(unsafe);
  });

  it("refuses a relative symlink that climbs out with ..", async () => {
    symlinkSync("../outside", join(root, "up"));
    await expect(readFileBeneath(root, "up/canary.txt", 1024)).rejects.toMatchObject(unsafe);
  });

  it("refuses when the root itself has been swapped for a symlink", async () => {
    const linkedRoot = join(root, "..", "root-link");
    symlinkSync(outside, linkedRoot);
    await expect(readFileBeneath(linkedRoot, "canary.txt", 1024)).rejects.toMatchObject(unsafe);
  });

  it("refuses .. and absolute paths that name the canary", async () => {
    await expect(readFileBeneath(root, "../outside/canary.txt", 1024)).rejects.toMatchObject(unsafe);
    await expect(readFileBeneath(root, canary, 1024)).rejects.toMatchObject(unsafe);
  });

  it("refuses a FIFO at once instead of blocking on it", async () => {
    execFileSync("mkfifo", [join(root, "pipe")]);
    await expect(readFileBeneath(root, "pipe", 1024)).rejects.toThrow(/not a regular file/);
  });

  it.skipIf(!canMknod())("refuses a device node (here one like /dev/zero, which would never end)", async () => {
    execFileSync("mknod", [join(root, "zero"), "c", "1", "5"]);
    await expect(readFileBeneath(root, "zero", 1024)).rejects.toMatchObject(unsafe);
    await expect(readFileBeneath(root, "zero", 1024)).rejects.toThrow(/not a regular file/);
  });

  it("refuses a directory", async () => {
    mkdirSync(join(root, "d"));
    await expect(readFileBeneath(root, "d", 1024)).rejects.toMatchObject(unsafe);
  });

  it("reads a file of exactly maxBytes and refuses one byte more", async () => {
    writeFileSync(join(root, "ok"), Buffer.alloc(64, 1));
    writeFileSync(join(root, "big"), Buffer.alloc(65, 1));
    expect((await readFileBeneath(root, "ok", 64)).length).toBe(64);
    await expect(readFileBeneath(root, "big", 64)).rejects.toThrow(/65 bytes; the most that can be read at once is 64/);
  });

  it("reports a missing file as ENOENT, not as an unsafe path", async () => {
    await expect(readFileBeneath(root, "nope.txt", 1024)).rejects.toMatchObject({ code: "ENOENT" });
    await expect(readFileBeneath(root, "no/such/dir.txt", 1024)).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("writeFileBeneath", () => {
  it("creates missing parent directories inside the root and leaves no temporary file", async () => {
    await writeFileBeneath(root, "deep/er/file.txt", "data");
    expect(readFileSync(join(root, "deep", "er", "file.txt"), "utf8")).toBe("data");
    expect(lstatSync(join(root, "deep")).isDirectory()).toBe(true);
    expect(readdirSync(join(root, "deep", "er"))).toEqual(["file.txt"]);
  });

  it("replaces an existing file whole", async () => {
    writeFileSync(join(root, "f"), "a much longer old content");
    await writeFileBeneath(root, "f", "new");
    expect(readFileSync(join(root, "f"), "utf8")).toBe("new");
  });

  it("replaces a symlink at the target with a regular file, leaving what it pointed at untouched", async () => {
    symlinkSync(canary, join(root, "f.txt"));
    await writeFileBeneath(root, "f.txt", "mine");
    expect(lstatSync(join(root, "f.txt")).isFile()).toBe(true);
    expect(readFileSync(join(root, "f.txt"), "utf8")).toBe("mine");
    canaryIntact();
  });

  it("does not write through a hardlink to a file outside", async () => {
    linkSync(canary, join(root, "hard.txt"));
    await writeFileBeneath(root, "hard.txt", "mine");
    expect(readFileSync(join(root, "hard.txt"), "utf8")).toBe("mine");
    canaryIntact();
  });

  it("refuses to create anything through a symlinked parent directory", async () => {
    symlinkSync(outside, join(root, "out"));
    await expect(writeFileBeneath(root, "out/new.txt", "x")).rejects.toMatchObject(unsafe);
    await expect(writeFileBeneath(root, "out/sub/new.txt", "x")).rejects.toMatchObject(unsafe);
    await expect(writeFileBeneath(root, "out/canary.txt", "overwritten")).rejects.toMatchObject(unsafe);
    canaryIntact();
  });

  it("refuses .. and absolute paths and creates nothing outside", async () => {
    await expect(writeFileBeneath(root, "../outside/canary.txt", "x")).rejects.toMatchObject(unsafe);
    await expect(writeFileBeneath(root, "a/../../outside/new", "x")).rejects.toMatchObject(unsafe);
    await expect(writeFileBeneath(root, canary, "x")).rejects.toMatchObject(unsafe);
    canaryIntact();
    expect(readdirSync(root)).toEqual([]);
  });

  it("refuses when a file sits where a parent directory should be", async () => {
    writeFileSync(join(root, "file"), "x");
    await expect(writeFileBeneath(root, "file/child", "y")).rejects.toMatchObject(unsafe);
  });

  it("gives the file the requested mode", async () => {
    await writeFileBeneath(root, "m", "x", { mode: 0o600 });
    expect(statSync(join(root, "m")).mode & 0o777).toBe(0o600);
  });
});

describe("isFileBeneath (lstat semantics)", () => {
  it("is true only for a regular file reached without links", async () => {
    mkdirSync(join(root, "d"));
    writeFileSync(join(root, "d", "f"), "x");
    symlinkSync(join(root, "d", "f"), join(root, "link-to-file"));
    symlinkSync(join(root, "d"), join(root, "link-to-dir"));
    symlinkSync(canary, join(root, "link-out"));
    execFileSync("mkfifo", [join(root, "pipe")]);
    expect(await isFileBeneath(root, "d/f")).toBe(true);
    expect(await isFileBeneath(root, "d")).toBe(false);
    expect(await isFileBeneath(root, "link-to-file")).toBe(false);
    expect(await isFileBeneath(root, "link-to-dir/f")).toBe(false);
    expect(await isFileBeneath(root, "link-out")).toBe(false);
    expect(await isFileBeneath(root, "pipe")).toBe(false);
    expect(await isFileBeneath(root, "missing")).toBe(false);
    expect(await isFileBeneath(root, "d/f/below-a-file")).toBe(false);
  });

  it("throws for a path that is not acceptable at all", async () => {
    await expect(isFileBeneath(root, "../outside/canary.txt")).rejects.toMatchObject(unsafe);
  });
});

describe("listBeneath", () => {
  it("lists depth-first in name order, reports links as links and never enters them", async () => {
    mkdirSync(join(root, "b"));
    writeFileSync(join(root, "b", "inner.txt"), "12345");
    writeFileSync(join(root, "a.txt"), "abc");
    symlinkSync(outside, join(root, "c-link"));
    execFileSync("mkfifo", [join(root, "d-pipe")]);
    const ctime = (p: string) => lstatSync(join(root, p)).ctimeMs;
    expect(await listBeneath(root, 100)).toEqual([
      { path: "a.txt", kind: "file", size: 3, ctimeMs: ctime("a.txt") },
      { path: "b", kind: "dir", size: 0, ctimeMs: 0 },
      { path: "c-link", kind: "link", size: 0, ctimeMs: 0 },
      { path: "d-pipe", kind: "other", size: 0, ctimeMs: 0 },
      { path: "b/inner.txt", kind: "file", size: 5, ctimeMs: ctime("b/inner.txt") },
    ]);
  });

  it("stops at the limit and leaves out what skip() says", async () => {
    for (const f of ["1", "2", "3", "4"]) writeFileSync(join(root, f), f);
    expect((await listBeneath(root, 2)).map((e) => e.path)).toEqual(["1", "2"]);
    expect((await listBeneath(root, 10, (rel) => rel === "2")).map((e) => e.path)).toEqual(["1", "3", "4"]);
  });
});

describe("user directories and files", () => {
  it("refuses hostile user ids before touching the disk", async () => {
    const dirs = new UserDirectories(root, 10001);
    for (const id of ["../x", "a/b", "..", ".hidden", ""]) {
      await expect(dirs.ensure(id)).rejects.toMatchObject(unsafe);
    }
    expect(readdirSync(root)).toEqual([]);
    canaryIntact();
  });

  it("keeps safeJoin inside the root whatever the parts", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("..", ".", "a", "b", "/", "../..", "x/../..", "/etc"), { minLength: 1, maxLength: 6 }), (parts) => {
        let joined: string;
        try {
          joined = safeJoin("/data/users", ...parts);
        } catch (err) {
          expect(err).toBeInstanceOf(UnsafePathError);
          return;
        }
        expect(joined === "/data/users" || joined.startsWith("/data/users/")).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses to create a user's directories through a symlinked users/ directory", async () => {
    symlinkSync(outside, join(root, "users"));
    await expect(new UserDirectories(root, 10001).ensure("alice")).rejects.toMatchObject(unsafe);
    canaryIntact();
  });

  it.skipIf(process.getuid?.() !== 0)("hands workspace and skills (not the user root) to the sandbox uid when running as root, and is idempotent", async () => {
    const dirs = new UserDirectories(root, 10001);
    const d = await dirs.ensure("alice");
    expect(await dirs.ensure("alice")).toEqual(d);
    expect(statSync(d.workspace).uid).toBe(10001);
    expect(statSync(d.skills).gid).toBe(10001);
    expect(statSync(d.root).uid).toBe(0);
  });

  const files = () => new UserFiles(new UserDirectories(root, 10001), new SkillStore(join(root, "..", "no-starters")), { maxReadBytes: 16, maxWriteBytes: 1024 });

  it("writes, lists and reads back a workspace file by its workspace-relative path", async () => {
    const f = files();
    await f.writeWorkspace("alice", "notes/today.md", Buffer.from("hi"));
    expect((await f.readWorkspace("alice", "notes/today.md")).toString()).toBe("hi");
    expect(await f.listWorkspace("alice")).toEqual([
      { path: "notes", kind: "dir", size: 0, ctimeMs: 0 },
      { path: "notes/today.md", kind: "file", size: 2, ctimeMs: lstatSync(join(root, "users", "alice", "workspace", "notes", "today.md")).ctimeMs },
    ]);
    expect(existsSync(join(root, "users", "alice", "workspace", "notes", "today.md"))).toBe(true);
  });

  it("keeps one user's paths from reaching another user or the host", async () => {
    const f = files();
    await f.writeWorkspace("bob", "secret.txt", Buffer.from("bob's"));
    await expect(f.readWorkspace("alice", "../../bob/workspace/secret.txt")).rejects.toMatchObject(unsafe);
    await expect(f.readWorkspace("../bob", "secret.txt")).rejects.toMatchObject(unsafe);
    await expect(f.writeWorkspace("alice", "/etc/x", Buffer.from("x"))).rejects.toMatchObject(unsafe);
    await expect(f.listWorkspace("a/b")).rejects.toMatchObject(unsafe);
  });

  it("refuses a workspace file over maxReadBytes and a link the sandbox planted", async () => {
    const f = files();
    await f.writeWorkspace("alice", "big", Buffer.alloc(17));
    await expect(f.readWorkspace("alice", "big")).rejects.toThrow(/17 bytes/);
    symlinkSync(canary, join(root, "users", "alice", "workspace", "planted"));
    await expect(f.readWorkspace("alice", "planted")).rejects.toMatchObject(unsafe);
    await f.writeWorkspace("alice", "planted", Buffer.from("x"));
    canaryIntact();
  });
});

describe("skills", () => {
  let starters: string;
  let skillsDir: string;
  let store: SkillStore;
  beforeEach(() => {
    starters = join(root, "..", "starters");
    mkdirSync(join(starters, "csv"), { recursive: true });
    writeFileSync(join(starters, "csv", "SKILL.md"), '---\nname: csv\ndescription: "Parses CSV"\n---\n');
    writeFileSync(join(starters, "csv", "index.ts"), "export const x = 1;");
    skillsDir = join(root, "skills");
    mkdirSync(skillsDir);
    store = new SkillStore(starters);
  });

  it.each(["../x", "a/b", "Upper", "-lead", "trail-", "", "a_b", "x".repeat(65), "."])("refuses the skill name %j", (name) => {
    expect(() => validateSkillName(name)).toThrow(InputError);
  });

  it.each(["a", "parse-csv", "x1", "a".repeat(64)])("accepts the skill name %j", (name) => {
    expect(() => validateSkillName(name)).not.toThrow();
  });

  it("reads a skill code wrote, and lists it beside the read-only starters", async () => {
    mkdirSync(join(skillsDir, "sum-up"));
    writeFileSync(join(skillsDir, "sum-up", "SKILL.md"), '---\nname: sum-up\ndescription: "Adds things"\n---\n');
    writeFileSync(join(skillsDir, "sum-up", "index.ts"), "export const sum = 1;");
    const skill = await store.get(skillsDir, "sum-up");
    expect(skill).toMatchObject({ code: "export const sum = 1;", language: "typescript", description: "Adds things", readOnly: false, import: "/skills/sum-up/index.ts" });
    expect((await store.list(skillsDir)).map((s) => [s.name, s.readOnly])).toEqual([
      ["csv", true],
      ["sum-up", false],
    ]);
  });

  it("reports a missing skill as not found", async () => {
    await expect(store.get(skillsDir, "ghost")).rejects.toThrow(NotFoundError);
  });

  it("never reads a skill file the sandbox replaced with a symlink", async () => {
    mkdirSync(join(skillsDir, "evil"));
    symlinkSync(canary, join(skillsDir, "evil", "SKILL.md"));
    writeFileSync(join(skillsDir, "evil", "index.ts"), "x");
    await expect(store.get(skillsDir, "evil")).rejects.toMatchObject(unsafe);
    const listed = (await store.list(skillsDir)).find((s) => s.name === "evil");
    expect(listed?.description).toBe("(no SKILL.md)");
  });

  it("treats a symlinked skill directory as no skill: not listed, not read", async () => {
    mkdirSync(join(outside, "stolen"));
    writeFileSync(join(outside, "stolen", "SKILL.md"), '---\nname: stolen\ndescription: "host"\n---\n');
    writeFileSync(join(outside, "stolen", "index.ts"), CANARY);
    symlinkSync(join(outside, "stolen"), join(skillsDir, "stolen"));
    expect((await store.list(skillsDir)).map((s) => s.name)).toEqual(["csv"]);
    await expect(store.get(skillsDir, "stolen")).rejects.toMatchObject(unsafe);
    expect(readFileSync(join(outside, "stolen", "index.ts"), "utf8")).toBe(CANARY);
  });

});
