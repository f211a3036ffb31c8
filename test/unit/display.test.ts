import { crc32, deflateSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { shownContent } from "../../src/mcp/tools/execute-code.js";
import { type DisplayLimits, IMAGES_DIR, RunDisplays, type ShownItem, type WorkspaceFiles, cleanLabel, mimeOfPath, outputsFolder, returnOutputs } from "../../src/runs/display.js";

// Images shown by sandboxed code and files it leaves in its outputs folder come back in the
// result. Every byte, name and MIME type here is the sandbox's: counts and sizes are capped, the
// format is read from the bytes, saved files get names of the host's, and what is refused leaves
// a bounded trail of notes. The workspace is an in-memory fake that walks like the real store.

// ---------------------------------------------------------------------------------------------
// Images

function pngChunk(type: string, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/** A whole grayscale PNG of `width`×`height`, padded with a tEXt chunk to exactly `bytes` when given. */
function png(width: number, height: number, bytes?: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  const rows = Buffer.alloc((width + 1) * height);
  const head = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk("IHDR", ihdr)]);
  const tail = Buffer.concat([pngChunk("IDAT", deflateSync(rows)), pngChunk("IEND")]);
  if (bytes === undefined) return Buffer.concat([head, tail]);
  const filler = bytes - head.length - tail.length - 12 - 8;
  if (filler < 0) throw new Error(`a ${width}×${height} PNG cannot be as small as ${bytes} bytes`);
  const out = Buffer.concat([head, pngChunk("tEXt", Buffer.from(`Comment\0${"x".repeat(filler)}`, "latin1")), tail]);
  expect(out.length).toBe(bytes);
  return out;
}

function jpeg(width: number, height: number): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x0b, 8, height >> 8, height & 0xff, width >> 8, width & 0xff, 1, 1, 0x11, 0]);
  const app0 = Buffer.from([0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, sof, Buffer.from([0xff, 0xda, 0x00, 0x08, 1, 1, 0, 0, 0x3f, 0, 0x55, 0xff, 0xd9])]);
}

const SVG = Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>\n', "utf8");

// ---------------------------------------------------------------------------------------------
// The workspace

type Entry = Awaited<ReturnType<WorkspaceFiles["listWorkspace"]>>[number];

/** The user's /workspace in memory; it lists depth-first in name order and honours `skip` like the real store. */
class FakeWorkspace implements WorkspaceFiles {
  readonly files = new Map<string, { data: Buffer; ctimeMs: number }>();
  /** Each call, in order: "write <user> <path>", "list <user> <limit>", "read <user> <path>". */
  readonly calls: string[] = [];
  /** Paths the caller's skip() turned away (a skipped folder's contents are never visited). */
  readonly skipped: string[] = [];
  writeError: Error | undefined;
  listError: Error | undefined;
  readonly unreadable = new Set<string>();
  clock = 1_000;

  put(path: string, data: Buffer | string, ctimeMs = this.clock): this {
    this.files.set(path, { data: Buffer.from(data), ctimeMs });
    return this;
  }

  async writeWorkspace(userId: string, relativePath: string, data: Buffer): Promise<void> {
    this.calls.push(`write ${userId} ${relativePath}`);
    if (this.writeError) throw this.writeError;
    this.put(relativePath, data);
  }

  async listWorkspace(userId: string, limit: number, skip: (rel: string) => boolean = () => false): Promise<Entry[]> {
    this.calls.push(`list ${userId} ${limit}`);
    if (this.listError) throw this.listError;
    const out: Entry[] = [];
    const walk = (dir: string) => {
      const names = new Set<string>();
      for (const p of this.files.keys()) if (dir === "" || p.startsWith(`${dir}/`)) names.add(p.slice(dir === "" ? 0 : dir.length + 1).split("/")[0]!);
      const subdirs: string[] = [];
      for (const name of [...names].sort((a, b) => a.localeCompare(b))) {
        if (out.length >= limit) break;
        const rel = dir === "" ? name : `${dir}/${name}`;
        if (skip(rel)) {
          this.skipped.push(rel);
          continue;
        }
        const file = this.files.get(rel);
        if (file) out.push({ path: rel, kind: "file", size: file.data.length, ctimeMs: file.ctimeMs });
        else {
          out.push({ path: rel, kind: "dir", size: 0, ctimeMs: 0 });
          subdirs.push(rel);
        }
      }
      for (const d of subdirs) walk(d);
    };
    walk("");
    return out;
  }

  async readWorkspace(userId: string, relativePath: string): Promise<Buffer> {
    this.calls.push(`read ${userId} ${relativePath}`);
    const f = this.files.get(relativePath);
    if (!f || this.unreadable.has(relativePath)) throw new Error(`ENOENT: no such file, open '${relativePath}'`);
    return f.data;
  }
}

const limits = (over: Partial<DisplayLimits> = {}): DisplayLimits => ({
  maxImages: 8,
  maxImageBytes: 16 * 1024 * 1024,
  inlineMaxBytes: 1024,
  maxInlineTotalBytes: 4096,
  maxOutputs: 20,
  ...over,
});

function displays(over: Partial<DisplayLimits> = {}, files: WorkspaceFiles = new FakeWorkspace()) {
  return new RunDisplays(limits(over), files, "u1", "run7");
}

const show = (d: RunDisplays, data: Buffer, mime?: string, name?: string) => d.receive({ data, mime, name });

// ---------------------------------------------------------------------------------------------

describe("cleanLabel: a name the sandbox chose, made printable", () => {
  it("gives nothing for nothing", () => {
    expect(cleanLabel(undefined)).toBeUndefined();
    expect(cleanLabel("")).toBeUndefined();
    expect(cleanLabel("   ")).toBeUndefined();
  });

  it("keeps letters and digits of any script, spaces and . _ ( ) + -", () => {
    expect(cleanLabel("Sales (2024) + forecast_v2-final.png")).toBe("Sales (2024) + forecast_v2-final.png");
    expect(cleanLabel("Graphique é 東京 ٣ Ωmega")).toBe("Graphique é 東京 ٣ Ωmega");
  });

  it("replaces everything else, one underscore per character, and trims the ends", () => {
    expect(cleanLabel("../../etc/passwd")).toBe(".._.._etc_passwd");
    expect(cleanLabel("  line1\nline2\r\t<b>&\u0000\u202e  ")).toBe("line1_line2___b____");
    expect(cleanLabel("[image: x] = workspace://y")).toBe("_image_ x_ _ workspace___y");
    expect(cleanLabel("chart 📈")).toBe("chart _");
  });

  it("cuts at 80 characters, then trims what the cut leaves at the end", () => {
    expect(cleanLabel("a".repeat(100))).toBe("a".repeat(80));
    expect(cleanLabel(`${"a".repeat(79)}  tail`)).toBe("a".repeat(79));
  });

  it("only ever gives allowed characters, at most 80, no blank ends, and is stable", () => {
    // Any BMP code unit, lone low surrogates included; no high surrogates, which could pair up into
    // a character outside the BMP (see the known bug below).
    const bmp = fc.string({ unit: fc.integer({ min: 0, max: 0xffff - 0x400 }).map((c) => String.fromCharCode(c < 0xd800 ? c : c + 0x400)), maxLength: 200 });
    const mixed = fc.string({ unit: fc.constantFrom("a", "é", "7", " ", ".", "/", "\n", "\u0000", "-", "(", "東", "<"), maxLength: 120 });
    fc.assert(
      fc.property(fc.oneof(bmp, mixed, fc.string({ unit: "grapheme-ascii", maxLength: 200 })), (name) => {
        const label = cleanLabel(name);
        if (label === undefined) return;
        expect(label).toMatch(/^[\p{L}\p{N} ._()+-]+$/u);
        expect(label.length).toBeLessThanOrEqual(80);
        expect(label).toBe(label.trim());
        expect(cleanLabel(label)).toBe(label);
      }),
      { numRuns: 500 },
    );
  });

  // Known bug: the cut at 80 counts UTF-16 code units, so a letter outside the BMP (here U+20000,
  // a CJK ideograph) straddling it leaves half a surrogate pair, which is no allowed character.
  // When cleanLabel cuts by code point this test fails; then make it a plain `it`.
  it("does not cut a character outside the BMP in half", () => {
    const label = cleanLabel(`${"a".repeat(79)}\u{20000}`)!;
    expect(label).toMatch(/^[\p{L}\p{N} ._()+-]+$/u);
  });
});

describe("RunDisplays: inline or saved", () => {
  it("returns a small raster image inline, labelled, without touching the workspace", async () => {
    const files = new FakeWorkspace();
    const d = displays({}, files);
    const image = png(3, 2, 200);
    expect(await show(d, image, "image/png", "chart.png")).toEqual({ status: 200, body: { ok: true, shown: "chart.png (image/png, 3×2, 200 bytes)" } });
    expect(d.items).toStrictEqual([{ kind: "image", mime: "image/png", data: image, label: "chart.png", width: 3, height: 2 }]);
    expect(d.lines).toEqual([]);
    expect(files.calls).toEqual([]);
  });

  it("names an unnamed image by its number in the run", async () => {
    const d = displays();
    await show(d, png(1, 1), undefined, "   ");
    await show(d, png(1, 1));
    expect(d.items.map((i) => i.label)).toEqual(["image 1", "image 2"]);
  });

  it("keeps an image of exactly inlineMaxBytes inline and saves one a byte larger", async () => {
    const files = new FakeWorkspace();
    const d = displays({ inlineMaxBytes: 1024 }, files);
    const atCap = png(2, 2, 1024);
    const overCap = png(2, 2, 1025);
    expect(await show(d, atCap, "image/png", "a")).toEqual({ status: 200, body: { ok: true, shown: "a (image/png, 2×2, 1 KiB)" } });
    expect(await show(d, overCap, "image/png", "b")).toEqual({ status: 200, body: { ok: true, shown: "b saved as /workspace/.codebox/images/run7-2.png" } });
    expect(d.items).toStrictEqual([
      { kind: "image", mime: "image/png", data: atCap, label: "a", width: 2, height: 2 },
      { kind: "file", path: ".codebox/images/run7-2.png", mime: "image/png", bytes: 1025, label: "b", width: 2, height: 2 },
    ]);
    expect(files.calls).toEqual(["write u1 .codebox/images/run7-2.png"]);
    expect(files.files.get(".codebox/images/run7-2.png")?.data.equals(overCap)).toBe(true);
  });

  it("shares maxInlineTotalBytes across the run's images: past it, even small ones are saved", async () => {
    const files = new FakeWorkspace();
    const d = displays({ inlineMaxBytes: 1000, maxInlineTotalBytes: 2500 }, files);
    const kilo = png(2, 2, 1000);
    const half = png(2, 2, 500);
    const small = png(2, 2, 100);
    for (const data of [kilo, kilo, kilo, half, small]) expect((await show(d, data)).status).toBe(200);
    // 1000 + 1000 inline; the third 1000 would make 3000 > 2500; 500 fits exactly (2500); nothing more does.
    expect(d.items.map((i) => (i.kind === "image" ? `inline ${i.data.length}` : `saved ${i.path} ${i.bytes}`))).toEqual([
      "inline 1000",
      "inline 1000",
      "saved .codebox/images/run7-3.png 1000",
      "inline 500",
      "saved .codebox/images/run7-5.png 100",
    ]);
    expect(d.reserveInline(0)).toBe(true);
    expect(d.reserveInline(1)).toBe(false);
  });

  it("reserveInline holds both caps and only takes what it grants", () => {
    const d = displays({ inlineMaxBytes: 100, maxInlineTotalBytes: 250 });
    expect(d.reserveInline(101)).toBe(false);
    expect(d.reserveInline(100)).toBe(true);
    expect(d.reserveInline(100)).toBe(true);
    expect(d.reserveInline(51)).toBe(false);
    expect(d.reserveInline(50)).toBe(true);
    expect(d.reserveInline(1)).toBe(false);
  });

  it("saves everything when nothing may be inline", async () => {
    const d = displays({ inlineMaxBytes: 0 });
    await show(d, png(1, 1));
    expect(d.items).toMatchObject([{ kind: "file", path: ".codebox/images/run7-1.png" }]);
  });

  it("always saves SVG, however small, and leaves the inline budget alone", async () => {
    const files = new FakeWorkspace();
    const d = displays({ inlineMaxBytes: 1_000_000, maxInlineTotalBytes: 1_000_000 }, files);
    expect(await show(d, SVG, "image/svg+xml", "diagram")).toEqual({ status: 200, body: { ok: true, shown: "diagram saved as /workspace/.codebox/images/run7-1.svg" } });
    expect(d.items).toStrictEqual([{ kind: "file", path: ".codebox/images/run7-1.svg", mime: "image/svg+xml", bytes: SVG.length, label: "diagram", width: undefined, height: undefined }]);
    expect(files.files.get(".codebox/images/run7-1.svg")?.data.toString("utf8")).toBe(SVG.toString("utf8"));
    expect(d.reserveInline(1_000_000)).toBe(true);
  });

  it("saves JPEGs with a .jpg name", async () => {
    const d = displays({ inlineMaxBytes: 0 });
    await show(d, jpeg(640, 480), "image/jpeg");
    expect(d.items).toStrictEqual([{ kind: "file", path: ".codebox/images/run7-1.jpg", mime: "image/jpeg", bytes: jpeg(640, 480).length, label: "image 1", width: 640, height: 480 }]);
  });

  it("names saved files after the run and the image's number only, whatever the name given", async () => {
    const hostile = fc.constantFrom("../../etc/passwd", "/etc/shadow", "a/b/c.png", "x\0y", "..", "%2e%2e%2f", "run7-1.png", "C:\\evil", ".codebox/images/other.png");
    await fc.assert(
      fc.asyncProperty(fc.oneof(hostile, fc.string({ unit: "binary", maxLength: 60 })), fc.boolean(), async (name, asSvg) => {
        const files = new FakeWorkspace();
        const d = displays({ inlineMaxBytes: 0 }, files);
        await show(d, png(1, 1), undefined, "first");
        const answer = await show(d, asSvg ? SVG : png(1, 1), undefined, name);
        const path = `${IMAGES_DIR}/run7-2.${asSvg ? "svg" : "png"}`;
        expect(answer).toEqual({ status: 200, body: { ok: true, shown: `${cleanLabel(name) ?? "image 2"} saved as /workspace/${path}` } });
        expect([...files.files.keys()]).toEqual([`${IMAGES_DIR}/run7-1.png`, path]);
        expect(d.items[1]).toMatchObject({ kind: "file", path, label: cleanLabel(name) ?? "image 2" });
      }),
      { numRuns: 150 },
    );
  });
});

describe("RunDisplays: what it refuses", () => {
  it("refuses the image after maxImages with 429 and a note; refused images do not count", async () => {
    const d = displays({ maxImages: 2, inlineMaxBytes: 100 });
    expect((await show(d, Buffer.from("not an image"))).status).toBe(415);
    expect((await show(d, png(1, 1))).status).toBe(200);
    expect((await show(d, png(1, 1, 200))).status).toBe(200); // saved, and counted
    expect(await show(d, png(1, 1))).toEqual({ status: 429, body: { error: "a run shows at most 2 images" } });
    expect(d.items.map((i) => i.kind)).toEqual(["image", "file"]);
    expect(d.lines).toEqual([
      'image 1 not shown: not a PNG, JPEG, GIF, WebP or SVG image (it starts with "not an i"); display() takes PNG, JPEG, GIF, WebP or SVG data, a matplotlib figure or a PIL image',
      "image 4 not shown: a run shows at most 2 images",
    ]);
  });

  it("refuses every image when maxImages is 0", async () => {
    const d = displays({ maxImages: 0 });
    expect(await show(d, png(1, 1))).toEqual({ status: 429, body: { error: "a run shows at most 0 images" } });
    expect(d.items).toEqual([]);
  });

  it("refuses damaged image data with the sniffer's reason, without the display() hint", async () => {
    const d = displays();
    const cut = png(4, 4).subarray(0, 40);
    expect(await show(d, cut, "image/png")).toEqual({ status: 415, body: { error: "a PNG that is cut short or damaged (its chunks or their checksums do not hold)" } });
  });

  it("refuses data declared as another image type (415), whichever is right", async () => {
    const d = displays();
    expect(await show(d, png(2, 2), "image/jpeg")).toEqual({ status: 415, body: { error: "the data is image/png but was declared image/jpeg" } });
    expect(await show(d, jpeg(2, 2), "image/png")).toEqual({ status: 415, body: { error: "the data is image/jpeg but was declared image/png" } });
    expect(await show(d, png(2, 2), "text/html")).toEqual({ status: 415, body: { error: "the data is image/png but was declared text/html" } });
    expect(await show(d, png(2, 2), `image/${"x".repeat(200)}`)).toEqual({ status: 415, body: { error: `the data is image/png but was declared image/${"x".repeat(54)}` } });
    expect(d.items).toEqual([]);
    expect(d.lines).toHaveLength(4);
    expect(d.lines[0]).toBe("image 1 not shown: the data is image/png but was declared image/jpeg");
  });

  it("accepts a missing, empty or octet-stream type, and image/jpg for JPEG", async () => {
    const d = displays();
    for (const mime of [undefined, "", "application/octet-stream"]) expect((await show(d, png(2, 2), mime)).status).toBe(200);
    expect((await show(d, jpeg(2, 2), "image/jpg")).status).toBe(200);
    expect(d.items.map((i) => i.mime)).toEqual(["image/png", "image/png", "image/png", "image/jpeg"]);
    // image/jpg means JPEG, so it is still a lie about PNG data.
    expect(await show(d, png(2, 2), "image/jpg")).toEqual({ status: 415, body: { error: "the data is image/png but was declared image/jpeg" } });
  });

  it("answers 507 with a note when the image cannot be saved, and keeps nothing", async () => {
    const files = new FakeWorkspace();
    files.writeError = new Error("ENOSPC: no space left on device");
    const d = displays({ inlineMaxBytes: 0 }, files);
    expect(await show(d, png(1, 1), "image/png", "big")).toEqual({ status: 507, body: { error: "it could not be saved in /workspace (ENOSPC: no space left on device)" } });
    expect(d.items).toEqual([]);
    expect(d.lines).toEqual(["image 1 not shown: it could not be saved in /workspace (ENOSPC: no space left on device)"]);
    expect(files.calls).toEqual(["write u1 .codebox/images/run7-1.png"]);
  });

  it("cuts a long write error to 200 characters", async () => {
    const files = new FakeWorkspace();
    files.writeError = new Error("e".repeat(500));
    const d = displays({ inlineMaxBytes: 0 }, files);
    expect(await show(d, SVG)).toEqual({ status: 507, body: { error: `it could not be saved in /workspace (${"e".repeat(200)})` } });
  });

  it("answers 413 for what it would have to save when this server keeps no files", async () => {
    const keepsNoFiles = (over: Partial<DisplayLimits>) => new RunDisplays(limits(over), undefined, "u1", "run7");
    const d = keepsNoFiles({ inlineMaxBytes: 1024 });
    expect(await show(d, png(2, 2, 2048))).toEqual({ status: 413, body: { error: "2 KiB is over the 1 KiB shown inline, and this server keeps no files" } });
    expect(await show(d, SVG)).toEqual({ status: 413, body: { error: `${SVG.length} bytes is over the 1 KiB shown inline, and this server keeps no files` } });
    const mib = keepsNoFiles({ inlineMaxBytes: 1024 * 1024, maxInlineTotalBytes: 0 });
    expect(await show(mib, png(2, 2, 1536))).toEqual({ status: 413, body: { error: "2 KiB is over the 1.0 MiB shown inline, and this server keeps no files" } });
    expect((await show(keepsNoFiles({}), png(2, 2))).status).toBe(200);
  });

  it("keeps 10 notes and counts the rest in one line", async () => {
    const d = displays();
    for (let i = 0; i < 13; i++) await show(d, png(1, 1), "image/gif");
    const lines = d.lines;
    expect(lines).toHaveLength(11);
    expect(lines.slice(0, 10)).toEqual(Array.from({ length: 10 }, (_, i) => `image ${i + 1} not shown: the data is image/png but was declared image/gif`));
    expect(lines[10]).toBe("3 more display notes left out");
  });

  it("gives exactly 10 notes, and no count line, for 10 refusals", async () => {
    const d = displays();
    for (let i = 0; i < 10; i++) await show(d, Buffer.from([0]));
    expect(d.lines).toHaveLength(10);
    expect(d.lines.at(-1)).toMatch(/^image 10 not shown: not a PNG/);
  });

  it("numbers refusals the bridge made before receive() (a body over maxBytes) with the rest", async () => {
    const files = new FakeWorkspace();
    const d = displays({ inlineMaxBytes: 0, maxImageBytes: 4096 }, files);
    expect(d.maxBytes).toBe(4096);
    d.refused("an image over 4096 bytes was not shown");
    await show(d, png(1, 1));
    expect(d.lines).toEqual(["image 1 not shown: an image over 4096 bytes was not shown"]);
    expect(d.items).toMatchObject([{ kind: "file", path: ".codebox/images/run7-2.png", label: "image 2" }]);
  });

  it("counts bridge refusals past 10 notes too", () => {
    const d = displays();
    for (let i = 0; i < 25; i++) d.refused("too big");
    expect(d.lines).toHaveLength(11);
    expect(d.lines[9]).toBe("image 10 not shown: too big");
    expect(d.lines[10]).toBe("15 more display notes left out");
  });

  it("hands out copies of its notes", async () => {
    const d = displays();
    d.refused("x");
    d.lines.push("injected");
    expect(d.lines).toEqual(["image 1 not shown: x"]);
  });
});

describe("outputsFolder", () => {
  it.each([
    ["reports", "reports"],
    ["/workspace/reports/", "reports"],
    ["/workspace/reports", "reports"],
    ["  reports/  ", "reports"],
    ["./reports", "reports"],
    ["/reports", "reports"],
    ["a//b/./c/", "a/b/c"],
    ["a\\b\\c", "a/b/c"],
    ["/workspace/a/b", "a/b"],
    ["...", "..."],
    ["..hidden/x..y", "..hidden/x..y"],
    // Only /workspace itself is the root; a folder whose name starts like it is inside it.
    ["/workspacex", "workspacex"],
    ["workspace/x", "workspace/x"],
  ])("takes %j as %j", (given, folder) => {
    expect(outputsFolder(given)).toBe(folder);
  });

  it.each(["", ".", "./", "/", "/workspace", "/workspace/", " /workspace/. ", "//"])("takes %j as the whole workspace", (given) => {
    expect(outputsFolder(given)).toBe("");
  });

  it.each(["..", "../x", "a/../b", "a/..", "/workspace/..", "/workspace/../etc", "..\\x", "a\\..\\..\\b", "a\0b", " .. "])("refuses %j", (given) => {
    expect(outputsFolder(given)).toEqual({ error: `outputs must be a folder inside /workspace, e.g. "reports"; got ${JSON.stringify(given.slice(0, 100))}` });
  });

  it("quotes at most 100 characters of what it refuses", () => {
    const given = `../${"y".repeat(300)}`;
    expect(outputsFolder(given)).toEqual({ error: `outputs must be a folder inside /workspace, e.g. "reports"; got "../${"y".repeat(97)}"` });
  });

  it("gives only clean relative paths: no empty, '.' or '..' segment, no NUL or backslash, no slash at either end", () => {
    const piece = fc.constantFrom("a", "b", ".", "..", "", "/", "\\", " ", "\0", "/workspace", "x.y", "..z");
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }).map((ps) => ps.join("")), (given) => {
        const folder = outputsFolder(given);
        if (typeof folder !== "string") {
          expect(folder.error).toMatch(/^outputs must be a folder inside \/workspace/);
          return;
        }
        if (folder === "") return;
        for (const s of folder.split("/")) {
          expect(s).not.toBe("");
          expect(s).not.toBe(".");
          expect(s).not.toBe("..");
          expect(s).not.toContain("\0");
        }
        expect(folder).not.toContain("\\");
      }),
      { numRuns: 500 },
    );
  });
});

describe("mimeOfPath", () => {
  it("names common types by extension, whatever its case, and octet-stream otherwise", () => {
    expect(mimeOfPath("reports/chart.PNG")).toBe("image/png");
    expect(mimeOfPath("a.jpeg")).toBe("image/jpeg");
    expect(mimeOfPath("a.svg")).toBe("image/svg+xml");
    expect(mimeOfPath("data/out.csv")).toBe("text/csv");
    expect(mimeOfPath("README")).toBe("application/octet-stream");
    expect(mimeOfPath("archive.tar.xz")).toBe("application/octet-stream");
    expect(mimeOfPath("png")).toBe("application/octet-stream");
    expect(mimeOfPath("dir.png/file")).toBe("application/octet-stream");
  });
});

describe("returnOutputs", () => {
  const since = 1_000;

  function workspace(): FakeWorkspace {
    return new FakeWorkspace()
      .put("reports/a.csv", "x,y\n1,2\n", 1_005)
      .put("reports/old.csv", "stale", 500)
      .put("reports/sub/deep.txt", "deep", 2_000)
      .put("reports2/trap.csv", "outside, by prefix only", 2_000)
      .put("other/x.csv", "outside", 2_000)
      .put("top.txt", "outside", 2_000);
  }

  it("links the files written in the folder since the run began, in listing order", async () => {
    const files = workspace();
    const r = await returnOutputs(files, limits(), "u1", "reports", since, displays());
    expect(r).toStrictEqual({
      items: [
        { kind: "file", path: "reports/a.csv", mime: "text/csv", bytes: 8, label: "a.csv" },
        { kind: "file", path: "reports/sub/deep.txt", mime: "text/plain", bytes: 4, label: "deep.txt" },
      ],
      lines: [],
    });
    expect(files.calls).toEqual(["list u1 5000"]);
  });

  it("never enters folders that neither hold nor lead to the outputs folder", async () => {
    const files = workspace().put("a/b/c/out.txt", "x", 2_000).put("a/z.txt", "x", 2_000).put("a/bb/y.txt", "x", 2_000);
    const r = await returnOutputs(files, limits(), "u1", "a/b", since, displays());
    expect(r.items.map((i) => (i.kind === "file" ? i.path : ""))).toEqual(["a/b/c/out.txt"]);
    expect(files.skipped.sort()).toEqual(["a/bb", "a/z.txt", "other", "reports", "reports2", "top.txt"]);
  });

  it("allows 20 ms of clock skew before the run's start, not more", async () => {
    const files = new FakeWorkspace().put("out/skewed.txt", "a", since - 20).put("out/before.txt", "b", since - 21);
    const r = await returnOutputs(files, limits(), "u1", "out", since, displays());
    expect(r.items).toStrictEqual([{ kind: "file", path: "out/skewed.txt", mime: "text/plain", bytes: 1, label: "skewed.txt" }]);
  });

  it("never returns the host's own .codebox folder, even for the whole workspace", async () => {
    const files = workspace().put(".codebox/images/run1-1.png", png(1, 1), 2_000).put(".codebox/output/run1.stdout", "x", 2_000);
    const r = await returnOutputs(files, limits(), "u1", "", since, displays());
    expect(r.items.map((i) => (i.kind === "file" ? i.path : `inline ${i.label}`))).toEqual(["top.txt", "other/x.csv", "reports/a.csv", "reports/sub/deep.txt", "reports2/trap.csv"]);
    expect(files.skipped).toEqual([".codebox"]);
    expect(r.lines).toEqual([]);
  });

  it("says when the run wrote nothing there (folders alone do not count)", async () => {
    const files = workspace().put("empty/sub/old.txt", "x", 10);
    expect(await returnOutputs(files, limits(), "u1", "empty", since, displays())).toStrictEqual({ items: [], lines: ["outputs: the run wrote no files in /workspace/empty"] });
    expect(await returnOutputs(new FakeWorkspace(), limits(), "u1", "", since, displays())).toStrictEqual({ items: [], lines: ["outputs: the run wrote no files in /workspace/"] });
    expect(await returnOutputs(workspace(), limits(), "u1", ".codebox", since, displays())).toStrictEqual({ items: [], lines: ["outputs: the run wrote no files in /workspace/.codebox"] });
  });

  it("returns the first maxOutputs files and says how many there were", async () => {
    const files = new FakeWorkspace();
    for (let i = 1; i <= 5; i++) files.put(`out/f${i}.txt`, "x", 2_000);
    const r = await returnOutputs(files, limits({ maxOutputs: 3 }), "u1", "out", since, displays());
    expect(r.items.map((i) => i.label)).toEqual(["f1.txt", "f2.txt", "f3.txt"]);
    expect(r.lines).toEqual(["outputs: 5 files were written in /workspace/out; the first 3 are returned"]);
    const none = await returnOutputs(files, limits({ maxOutputs: 0 }), "u1", "out", since, displays());
    expect(none).toStrictEqual({ items: [], lines: ["outputs: 5 files were written in /workspace/out; the first 0 are returned"] });
  });

  it("shows small raster images inline as well as linking them, with their size in pixels", async () => {
    const image = png(4, 3, 300);
    const files = new FakeWorkspace().put("out/chart.png", image, 2_000).put("out/pic.jpg", jpeg(20, 10), 2_000).put("out/vector.svg", SVG, 2_000);
    const r = await returnOutputs(files, limits(), "u1", "out", since, displays());
    expect(r.items).toStrictEqual([
      { kind: "image", mime: "image/png", data: image, label: "chart.png", width: 4, height: 3 },
      { kind: "file", path: "out/chart.png", mime: "image/png", bytes: 300, label: "chart.png", width: 4, height: 3 },
      { kind: "image", mime: "image/jpeg", data: jpeg(20, 10), label: "pic.jpg", width: 20, height: 10 },
      { kind: "file", path: "out/pic.jpg", mime: "image/jpeg", bytes: jpeg(20, 10).length, label: "pic.jpg", width: 20, height: 10 },
      { kind: "file", path: "out/vector.svg", mime: "image/svg+xml", bytes: SVG.length, label: "vector.svg" },
    ]);
    expect(files.calls).toEqual(["list u1 5000", "read u1 out/chart.png", "read u1 out/pic.jpg"]);
  });

  it("takes the format from the bytes when the extension lies", async () => {
    const files = new FakeWorkspace().put("out/really-a-jpeg.png", jpeg(5, 6), 2_000);
    const r = await returnOutputs(files, limits(), "u1", "out", since, displays());
    expect(r.items).toMatchObject([
      { kind: "image", mime: "image/jpeg", width: 5, height: 6 },
      { kind: "file", path: "out/really-a-jpeg.png", mime: "image/jpeg", width: 5, height: 6 },
    ]);
  });

  it("only links an image file that is not a whole image, or that cannot be read", async () => {
    const files = new FakeWorkspace().put("out/broken.png", png(4, 4).subarray(0, 50), 2_000).put("out/gone.png", png(2, 2), 2_000);
    files.unreadable.add("out/gone.png");
    const r = await returnOutputs(files, limits(), "u1", "out", since, displays());
    expect(r.items).toStrictEqual([
      { kind: "file", path: "out/broken.png", mime: "image/png", bytes: 50, label: "broken.png" },
      { kind: "file", path: "out/gone.png", mime: "image/png", bytes: png(2, 2).length, label: "gone.png" },
    ]);
  });

  it("spends inline budget only on what it shows: a file named .png that is not one costs nothing", async () => {
    const files = new FakeWorkspace().put("out/a-fake.png", "A".repeat(990), 2_000).put("out/b-real.png", png(2, 2), 2_000);
    const r = await returnOutputs(files, limits({ inlineMaxBytes: 1000, maxInlineTotalBytes: 1000 }), "u1", "out", since, displays({ inlineMaxBytes: 1000, maxInlineTotalBytes: 1000 }));
    expect(r.items.map((i) => `${i.kind} ${i.label}`)).toEqual(["file a-fake.png", "image b-real.png", "file b-real.png"]);
  });

  it("goes by the bytes it read, not the size listed: a file grown since is never inline past the cap", async () => {
    const big = png(40, 40, 5_080);
    const files = new (class extends FakeWorkspace {
      override async readWorkspace(userId: string, path: string): Promise<Buffer> {
        await super.readWorkspace(userId, path);
        return big;
      }
    })().put("out/grows.png", png(1, 1).subarray(0, 10), 2_000);
    const r = await returnOutputs(files, limits({ inlineMaxBytes: 1000 }), "u1", "out", since, displays({ inlineMaxBytes: 1000 }));
    expect(r.items).toMatchObject([{ kind: "file", path: "out/grows.png", bytes: big.length }]);
    expect(r.items).toHaveLength(1);
  });

  it("shares the inline budget with the images the run displayed", async () => {
    const d = displays({ inlineMaxBytes: 1000, maxInlineTotalBytes: 1500 });
    await show(d, png(2, 2, 1000));
    const files = new FakeWorkspace().put("out/a.png", png(2, 2, 600), 2_000).put("out/b.png", png(2, 2, 500), 2_000).put("out/c.png", png(2, 2, 1001), 2_000);
    const r = await returnOutputs(files, limits({ inlineMaxBytes: 1000, maxInlineTotalBytes: 1500 }), "u1", "out", since, d);
    // 1000 shown; a (600) would pass 1500; b (500) fits exactly; c is over the per-image cap.
    expect(r.items.map((i) => (i.kind === "image" ? `inline ${i.label}` : `link ${i.label}`))).toEqual(["link a.png", "inline b.png", "link b.png", "link c.png"]);
    expect(files.calls).toEqual(["list u1 5000", "read u1 out/a.png", "read u1 out/b.png"]);
  });

  it("reports a folder that cannot be listed, and returns nothing", async () => {
    const files = workspace();
    files.listError = new Error(`EACCES: ${"p".repeat(300)}`);
    const r = await returnOutputs(files, limits(), "u1", "reports", since, displays());
    expect(r).toStrictEqual({ items: [], lines: [`outputs: /workspace/reports could not be listed (EACCES: ${"p".repeat(192)})`] });
  });
});

describe("shownContent: the result's content blocks", () => {
  const image = png(3, 2, 200);
  const items: ShownItem[] = [
    { kind: "image", mime: "image/png", data: image, label: "chart", width: 3, height: 2 },
    { kind: "file", path: ".codebox/images/run7-2.svg", mime: "image/svg+xml", bytes: 2048, label: "diagram" },
    { kind: "file", path: "reports/my chart #1.png", mime: "image/png", bytes: 3 * 1024 * 1024, label: "my chart _1.png", width: 800, height: 600 },
  ];

  it("gives a line and an image block per inline image, a line and a link per file, and the notes last", () => {
    const r = shownContent({ shown: items, notes: ["image 4 not shown: x", "outputs: y"] });
    expect(r.content).toStrictEqual([
      { type: "text", text: "[image: chart (image/png, 3×2, 200 bytes)]" },
      { type: "image", data: image.toString("base64"), mimeType: "image/png" },
      { type: "text", text: "[file: /workspace/.codebox/images/run7-2.svg (image/svg+xml, 2 KiB) = workspace://.codebox/images/run7-2.svg]" },
      { type: "resource_link", uri: "workspace://.codebox/images/run7-2.svg", name: "run7-2.svg", title: "diagram", mimeType: "image/svg+xml", size: 2048 },
      { type: "text", text: "[file: /workspace/reports/my chart #1.png (image/png, 800×600, 3.0 MiB) = workspace://reports/my%20chart%20%231.png]" },
      { type: "resource_link", uri: "workspace://reports/my%20chart%20%231.png", name: "my chart #1.png", title: "my chart _1.png", mimeType: "image/png", size: 3 * 1024 * 1024 },
      { type: "text", text: "[image 4 not shown: x]\n[outputs: y]" },
    ]);
    expect(r.structured).toStrictEqual([
      { label: "chart", mimeType: "image/png", inline: true, bytes: 200, width: 3, height: 2 },
      { label: "diagram", mimeType: "image/svg+xml", inline: false, uri: "workspace://.codebox/images/run7-2.svg", bytes: 2048 },
      { label: "my chart _1.png", mimeType: "image/png", inline: false, uri: "workspace://reports/my%20chart%20%231.png", bytes: 3 * 1024 * 1024, width: 800, height: 600 },
    ]);
  });

  it("gives nothing for nothing, and only the notes block when only notes", () => {
    expect(shownContent({ shown: [], notes: [] })).toStrictEqual({ content: [], structured: [] });
    expect(shownContent({ shown: [], notes: ["a"] })).toStrictEqual({ content: [{ type: "text", text: "[a]" }], structured: [] });
  });

  it("puts together what a run displayed and what it returned, as the run service does", async () => {
    const files = new FakeWorkspace().put("out/table.csv", "a,b\n", 2_000);
    const d = new RunDisplays(limits({ inlineMaxBytes: 500, maxImages: 2 }), files, "u1", "run9");
    const small = png(1, 1);
    await show(d, small, "image/png", "small");
    await show(d, png(2, 2, 600), "image/png", "large");
    await show(d, png(1, 1), "image/png", "third");
    const returned = await returnOutputs(files, limits(), "u1", "out", 1_000, d);
    const r = shownContent({ shown: [...d.items, ...returned.items], notes: [...d.lines, ...returned.lines] });
    expect(r.content.map((c) => (c.type === "text" ? c.text : c.type === "image" ? `<image ${c.mimeType}>` : `<link ${c.uri}>`))).toEqual([
      `[image: small (image/png, 1×1, ${small.length} bytes)]`,
      "<image image/png>",
      "[file: /workspace/.codebox/images/run9-2.png (image/png, 2×2, 600 bytes) = workspace://.codebox/images/run9-2.png]",
      "<link workspace://.codebox/images/run9-2.png>",
      "[file: /workspace/out/table.csv (text/csv, 4 bytes) = workspace://out/table.csv]",
      "<link workspace://out/table.csv>",
      "[image 3 not shown: a run shows at most 2 images]",
    ]);
  });
});
