import { crc32, deflateSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ImageInfo, MAX_IMAGE_SIDE, sniffImage } from "../../src/shared/images.js";

// Every byte given to sniffImage came from sandboxed code: it must tell real images from damaged
// or made-up ones by their structure alone, report the size the header states, refuse sizes a
// client could not decode safely, and never throw whatever it is given. The images below are
// built byte by byte so that each test knows exactly what the right answer is.

// ---------------------------------------------------------------------------------------------
// Builders

function pngChunk(type: string, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A grayscale PNG of `width`×`height` with `extra` chunks after IHDR; `pixels: false` leaves IDAT empty (sniffImage never decodes it). */
function png(width: number, height: number, extra: Buffer[] = [], pixels = true): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grayscale
  const rows = pixels && (width + 1) * height <= 1 << 20 ? Buffer.alloc((width + 1) * height, 0x7f) : Buffer.alloc(0);
  for (let y = 0; y < height && rows.length > 0; y++) rows[y * (width + 1)] = 0; // filter type None
  return Buffer.concat([PNG_SIGNATURE, pngChunk("IHDR", ihdr), ...extra, pngChunk("IDAT", deflateSync(rows)), pngChunk("IEND")]);
}

/** Offset of the first byte of the IDAT chunk's data. */
function idatDataOffset(b: Buffer): number {
  return b.indexOf("IDAT", 8, "latin1") + 4;
}

function jpegSegment(marker: number, payload: Uint8Array): Buffer {
  const out = Buffer.alloc(4 + payload.length);
  out[0] = 0xff;
  out[1] = marker;
  out.writeUInt16BE(payload.length + 2, 2);
  Buffer.from(payload).copy(out, 4);
  return out;
}

const SOI = Buffer.from([0xff, 0xd8]);
const EOI = Buffer.from([0xff, 0xd9]);
const APP0 = jpegSegment(0xe0, Buffer.from([0x4a, 0x46, 0x49, 0x46, 0x00, 1, 1, 0, 0, 1, 0, 1, 0, 0])); // "JFIF\0", v1.1, 1:1
const DQT = jpegSegment(0xdb, Buffer.alloc(65, 1));

function sof(marker: number, width: number, height: number): Buffer {
  const p = Buffer.alloc(15);
  p[0] = 8; // precision
  p.writeUInt16BE(height, 1);
  p.writeUInt16BE(width, 3);
  p[5] = 3; // components: id, sampling, table
  p.set([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1], 6);
  return jpegSegment(marker, p);
}

/** SOI, APP0, DQT, what `before` adds, a frame header, a scan with a few bytes of data, EOI. */
function jpeg(width: number, height: number, options: { marker?: number; before?: Buffer[]; eoi?: boolean; after?: Buffer } = {}): Buffer {
  const sos = jpegSegment(0xda, Buffer.from([1, 1, 0, 0, 0x3f, 0]));
  return Buffer.concat([
    SOI,
    APP0,
    DQT,
    ...(options.before ?? []),
    sof(options.marker ?? 0xc0, width, height),
    sos,
    Buffer.from([0x12, 0x34, 0x56, 0x78]),
    ...(options.eoi === false ? [] : [EOI]),
    options.after ?? Buffer.alloc(0),
  ]);
}

function gif(width: number, height: number, options: { version?: "87a" | "89a"; trailer?: boolean } = {}): Buffer {
  const screen = Buffer.alloc(7);
  screen.writeUInt16LE(width, 0);
  screen.writeUInt16LE(height, 2);
  const descriptor = Buffer.alloc(10);
  descriptor[0] = 0x2c;
  descriptor.writeUInt16LE(width, 5);
  descriptor.writeUInt16LE(height, 7);
  const data = Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00]); // LZW minimum code size, one sub-block, terminator
  return Buffer.concat([Buffer.from(`GIF${options.version ?? "89a"}`, "latin1"), screen, descriptor, data, ...(options.trailer === false ? [] : [Buffer.from([0x3b])])]);
}

/** A RIFF/WEBP container around one chunk; `sizeDelta` makes the RIFF size lie. */
function riffWebp(type: string, data: Buffer, sizeDelta = 0): Buffer {
  const header = Buffer.alloc(8);
  header.write(type, 0, "latin1");
  header.writeUInt32LE(data.length, 4);
  const pad = data.length % 2 === 1 ? Buffer.alloc(1) : Buffer.alloc(0);
  const body = Buffer.concat([Buffer.from("WEBP", "latin1"), header, data, pad]);
  const riff = Buffer.alloc(8);
  riff.write("RIFF", 0, "latin1");
  riff.writeUInt32LE(body.length + sizeDelta, 4);
  return Buffer.concat([riff, body]);
}

function webpVp8x(width: number, height: number, sizeDelta = 0): Buffer {
  const d = Buffer.alloc(10);
  d[0] = 0x10; // alpha flag
  d.writeUIntLE(width - 1, 4, 3);
  d.writeUIntLE(height - 1, 7, 3);
  return riffWebp("VP8X", d, sizeDelta);
}

function webpVp8l(width: number, height: number): Buffer {
  const d = Buffer.alloc(10);
  d[0] = 0x2f; // signature
  d.writeUInt32LE(((width - 1) | ((height - 1) << 14) | (1 << 28)) >>> 0, 1); // alpha used, version 0
  return riffWebp("VP8L", d);
}

function webpVp8(width: number, height: number, scale = 0): Buffer {
  const d = Buffer.alloc(10);
  d.set([0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a], 0); // frame tag, start code
  d.writeUInt16LE(width | (scale << 14), 6);
  d.writeUInt16LE(height | (scale << 14), 8);
  return riffWebp("VP8 ", d);
}

const DAMAGED_PNG = { error: "a PNG that is cut short or damaged (its chunks or their checksums do not hold)" };
const notAnImage = (b: Buffer) => ({ error: `not a PNG, JPEG, GIF, WebP or SVG image (it starts with ${JSON.stringify(b.toString("latin1", 0, 8))})` });
const over = (w: number, h: number) => ({ error: `${w}×${h} pixels is over ${MAX_IMAGE_SIDE} a side` });

// ---------------------------------------------------------------------------------------------

describe("sniffImage: anything that is no image", () => {
  it("refuses empty data", () => {
    expect(sniffImage(new Uint8Array(0))).toEqual({ error: "the data is empty" });
  });

  it("refuses text and random bytes, quoting how they start", () => {
    const text = Buffer.from("hello, world\n");
    expect(sniffImage(text)).toEqual(notAnImage(text));
    // The quoted start stays on one line whatever control bytes the data has.
    const random = Buffer.from([0x00, 0x01, 0xfe, 0x22, 0x5c, 0x0d, 0x80, 0x0a, 0x99]);
    expect(sniffImage(random)).toEqual({ error: 'not a PNG, JPEG, GIF, WebP or SVG image (it starts with "\\u0000\\u0001þ\\"\\\\\\r\u0080\\n")' });
  });

  it("does not take a bare signature for an image", () => {
    // Each of these is only the magic number, too short to hold the header that follows it.
    const pngSig = PNG_SIGNATURE.subarray(0, 8);
    expect(sniffImage(pngSig)).toEqual(notAnImage(pngSig));
    const gifSig = Buffer.from("GIF89a\x01\x00", "latin1");
    expect(sniffImage(gifSig)).toEqual(notAnImage(gifSig));
    const webpShort = webpVp8x(1, 1).subarray(0, 29);
    expect(sniffImage(webpShort)).toEqual(notAnImage(webpShort));
  });

  it("never throws, and whatever it accepts is a known format of a sane size", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        expectSane(sniffImage(bytes));
      }),
      { numRuns: 500 },
    );
  });

  it("never throws on arbitrary bytes after each format's magic number (so every parser runs on garbage)", () => {
    const magic = [
      PNG_SIGNATURE,
      Buffer.concat([PNG_SIGNATURE, Buffer.from([0, 0, 0, 13]), Buffer.from("IHDR")]),
      Buffer.from([0xff, 0xd8, 0xff]),
      Buffer.from("GIF87a"),
      Buffer.from("GIF89a"),
      webpVp8x(3, 3).subarray(0, 16),
      webpVp8l(3, 3).subarray(0, 16),
      webpVp8(3, 3).subarray(0, 16),
      Buffer.from("<svg "),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...magic), fc.uint8Array({ maxLength: 200 }), fc.boolean(), (head, tail, fixRiff) => {
        const b = Buffer.concat([head, tail]);
        // A matching RIFF size lets the WebP parser itself run on the garbage.
        if (fixRiff && head.toString("latin1", 0, 4) === "RIFF" && b.length >= 8) b.writeUInt32LE(b.length - 8, 4);
        expectSane(sniffImage(b));
      }),
      { numRuns: 500 },
    );
  });
});

function expectSane(r: ImageInfo | { error: string }): void {
  if ("error" in r) {
    expect(typeof r.error).toBe("string");
    expect(r.error.length).toBeGreaterThan(0);
    return;
  }
  expect(["image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"]).toContain(r.mime);
  if (r.mime === "image/svg+xml") {
    expect(r).toStrictEqual({ mime: "image/svg+xml" });
    return;
  }
  for (const side of [r.width, r.height]) {
    expect(Number.isInteger(side)).toBe(true);
    expect(side).toBeGreaterThanOrEqual(1);
    expect(side).toBeLessThanOrEqual(MAX_IMAGE_SIDE);
  }
}

describe("sniffImage: PNG", () => {
  it("reads the size from a whole PNG", () => {
    expect(sniffImage(png(3, 2))).toStrictEqual({ mime: "image/png", width: 3, height: 2 });
    expect(sniffImage(png(1, 1))).toStrictEqual({ mime: "image/png", width: 1, height: 1 });
    expect(sniffImage(png(640, 480))).toStrictEqual({ mime: "image/png", width: 640, height: 480 });
  });

  it("walks past ancillary chunks between IHDR and IDAT", () => {
    const text = pngChunk("tEXt", Buffer.from("Comment\0made by a test", "latin1"));
    const gamma = pngChunk("gAMA", Buffer.from([0, 0, 0xb1, 0x8f]));
    expect(sniffImage(png(5, 7, [text, gamma]))).toStrictEqual({ mime: "image/png", width: 5, height: 7 });
  });

  it("reads a PNG held in a view into a larger buffer (offset and length honoured)", () => {
    const image = png(9, 4);
    const backing = Buffer.alloc(image.length + 50, 0xee);
    image.copy(backing, 17);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 17, image.length);
    expect(sniffImage(view)).toStrictEqual({ mime: "image/png", width: 9, height: 4 });
    // The same view one byte longer carries trailing garbage, so it is no longer a whole PNG.
    expect(sniffImage(new Uint8Array(backing.buffer, backing.byteOffset + 17, image.length + 1))).toEqual(DAMAGED_PNG);
  });

  it("refuses a PNG cut short anywhere after its header", () => {
    const whole = png(4, 4);
    const idat = idatDataOffset(whole);
    for (const cut of [24, 33, idat, idat + 3, whole.length - 12, whole.length - 4, whole.length - 1]) {
      expect(sniffImage(whole.subarray(0, cut)), `cut at ${cut} of ${whole.length}`).toEqual(DAMAGED_PNG);
    }
  });

  it("refuses a PNG with one flipped byte in its pixel data (the CRC no longer holds)", () => {
    const b = png(8, 8);
    b[idatDataOffset(b) + 2]! ^= 0x01;
    expect(sniffImage(b)).toEqual(DAMAGED_PNG);
  });

  it("refuses a PNG whose IHDR size was edited without fixing the CRC", () => {
    const b = png(8, 8);
    b.writeUInt32BE(9, 16);
    expect(sniffImage(b)).toEqual(DAMAGED_PNG);
  });

  it("refuses data after IEND, even a second valid chunk", () => {
    expect(sniffImage(Buffer.concat([png(2, 2), Buffer.from("garbage")]))).toEqual(DAMAGED_PNG);
    expect(sniffImage(Buffer.concat([png(2, 2), Buffer.from([0])]))).toEqual(DAMAGED_PNG);
    expect(sniffImage(Buffer.concat([png(2, 2), pngChunk("IEND")]))).toEqual(DAMAGED_PNG);
  });

  it("refuses a PNG with no IEND chunk", () => {
    const b = png(2, 2);
    expect(sniffImage(b.subarray(0, b.length - 12))).toEqual(DAMAGED_PNG);
  });

  it("refuses a chunk whose declared length runs past the end", () => {
    const b = png(2, 2);
    b.writeUInt32BE(0xffffffff, idatDataOffset(b) - 8);
    expect(sniffImage(b)).toEqual(DAMAGED_PNG);
  });

  it("refuses a PNG signature followed by anything but IHDR", () => {
    const b = Buffer.concat([PNG_SIGNATURE, pngChunk("tEXt", Buffer.from("Comment\0x", "latin1")), pngChunk("IEND")]);
    expect(sniffImage(b)).toEqual({ error: "a PNG signature without an IHDR header" });
  });

  it("refuses a side of zero", () => {
    expect(sniffImage(png(0, 5))).toEqual({ error: "a image/png image of 0×5 pixels" });
    expect(sniffImage(png(5, 0))).toEqual({ error: "a image/png image of 5×0 pixels" });
  });

  it(`accepts ${MAX_IMAGE_SIDE} pixels a side and refuses one more`, () => {
    expect(sniffImage(png(MAX_IMAGE_SIDE, 1))).toStrictEqual({ mime: "image/png", width: MAX_IMAGE_SIDE, height: 1 });
    expect(sniffImage(png(1, MAX_IMAGE_SIDE))).toStrictEqual({ mime: "image/png", width: 1, height: MAX_IMAGE_SIDE });
    expect(sniffImage(png(MAX_IMAGE_SIDE + 1, 1))).toEqual(over(MAX_IMAGE_SIDE + 1, 1));
    expect(sniffImage(png(1, MAX_IMAGE_SIDE + 1))).toEqual(over(1, MAX_IMAGE_SIDE + 1));
    // A decompression bomb's header: the pixels are never decoded, the size alone refuses it.
    expect(sniffImage(png(0xffffffff, 0xffffffff))).toEqual(over(0xffffffff, 0xffffffff));
  });

  it("on any prefix of a valid PNG, gives its size only for the whole file", () => {
    const whole = png(6, 5, [pngChunk("tEXt", Buffer.from("Comment\0prefix test", "latin1"))]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: whole.length }), (n) => {
        const r = sniffImage(whole.subarray(0, n));
        if (n === whole.length) expect(r).toStrictEqual({ mime: "image/png", width: 6, height: 5 });
        else expect(r).toHaveProperty("error");
      }),
      { numRuns: 300 },
    );
    // And every cut once, since the file is short.
    for (let n = 0; n < whole.length; n++) expect(sniffImage(whole.subarray(0, n))).toHaveProperty("error");
  });

  it("refuses a valid PNG with any one byte changed", () => {
    const whole = png(4, 3);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: whole.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, xor) => {
        const b = Buffer.from(whole);
        b[at]! ^= xor;
        expect(sniffImage(b)).toHaveProperty("error");
      }),
      { numRuns: 300 },
    );
  });
});

describe("sniffImage: JPEG", () => {
  it("reads the size from the baseline frame header (height comes first in it)", () => {
    expect(sniffImage(jpeg(640, 480))).toStrictEqual({ mime: "image/jpeg", width: 640, height: 480 });
    expect(sniffImage(jpeg(1, 2))).toStrictEqual({ mime: "image/jpeg", width: 1, height: 2 });
  });

  it("reads progressive, extended and lossless frame headers", () => {
    for (const marker of [0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]) {
      expect(sniffImage(jpeg(300, 200, { marker })), `SOF 0x${marker.toString(16)}`).toStrictEqual({ mime: "image/jpeg", width: 300, height: 200 });
    }
  });

  it("skips DHT, JPG and DAC segments, whose markers sit among the frame headers", () => {
    // Their payloads are laid out so that read as a frame header they would give 4660×22136.
    const decoy = Buffer.from([0x08, 0x56, 0x78, 0x12, 0x34, 0x03, 0, 0, 0, 0, 0, 0]);
    for (const marker of [0xc4, 0xc8, 0xcc]) {
      expect(sniffImage(jpeg(33, 44, { before: [jpegSegment(marker, decoy)] })), `marker 0x${marker.toString(16)}`).toStrictEqual({ mime: "image/jpeg", width: 33, height: 44 });
    }
  });

  it("steps over fill bytes (0xFF runs) before a marker", () => {
    const b = jpeg(12, 34);
    const sofAt = b.indexOf(Buffer.from([0xff, 0xc0]));
    const filled = Buffer.concat([b.subarray(0, sofAt), Buffer.from([0xff, 0xff, 0xff]), b.subarray(sofAt)]);
    expect(sniffImage(filled)).toStrictEqual({ mime: "image/jpeg", width: 12, height: 34 });
  });

  it("allows up to 62 bytes of padding after the end-of-image marker, not 63", () => {
    expect(sniffImage(jpeg(10, 10, { after: Buffer.alloc(62) }))).toStrictEqual({ mime: "image/jpeg", width: 10, height: 10 });
    expect(sniffImage(jpeg(10, 10, { after: Buffer.alloc(63) }))).toEqual({ error: "a JPEG that is cut short (no end-of-image marker)" });
  });

  it("refuses a JPEG without its end-of-image marker (cut short)", () => {
    expect(sniffImage(jpeg(10, 10, { eoi: false }))).toEqual({ error: "a JPEG that is cut short (no end-of-image marker)" });
    const whole = jpeg(10, 10);
    expect(sniffImage(whole.subarray(0, whole.length - 1))).toEqual({ error: "a JPEG that is cut short (no end-of-image marker)" });
  });

  it("refuses a JPEG with no frame header", () => {
    expect(sniffImage(Buffer.concat([SOI, APP0, DQT, EOI]))).toEqual({ error: "a JPEG without a frame header" });
    expect(sniffImage(Buffer.from([0xff, 0xd8, 0xff, 0xd9]))).toEqual({ error: "a JPEG without a frame header" });
  });

  it("refuses broken segments: a segment not starting with 0xFF, or a length under 2", () => {
    const notAMarker = Buffer.concat([SOI, APP0, Buffer.from([0x00, 0xc0]), sof(0xc0, 5, 5).subarray(2), EOI]);
    expect(sniffImage(notAMarker)).toEqual({ error: "a JPEG whose segments are broken" });
    const shortLength = Buffer.concat([SOI, Buffer.from([0xff, 0xe1, 0x00, 0x01]), Buffer.alloc(12), sof(0xc0, 5, 5), EOI]);
    expect(sniffImage(shortLength)).toEqual({ error: "a JPEG whose segments are broken" });
  });

  it("refuses a side of zero or over the limit", () => {
    expect(sniffImage(jpeg(0, 480))).toEqual({ error: "a image/jpeg image of 0×480 pixels" });
    expect(sniffImage(jpeg(640, 0))).toEqual({ error: "a image/jpeg image of 640×0 pixels" });
    expect(sniffImage(jpeg(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))).toStrictEqual({ mime: "image/jpeg", width: MAX_IMAGE_SIDE, height: MAX_IMAGE_SIDE });
    expect(sniffImage(jpeg(MAX_IMAGE_SIDE + 1, 10))).toEqual(over(MAX_IMAGE_SIDE + 1, 10));
    expect(sniffImage(jpeg(65535, 65535))).toEqual(over(65535, 65535));
  });
});

describe("sniffImage: GIF", () => {
  it("reads the logical screen size of GIF89a and GIF87a", () => {
    expect(sniffImage(gif(320, 200))).toStrictEqual({ mime: "image/gif", width: 320, height: 200 });
    expect(sniffImage(gif(7, 3, { version: "87a" }))).toStrictEqual({ mime: "image/gif", width: 7, height: 3 });
  });

  it("refuses a GIF without its trailer", () => {
    expect(sniffImage(gif(320, 200, { trailer: false }))).toEqual({ error: "a GIF that is cut short (no trailer)" });
    const whole = gif(320, 200);
    expect(sniffImage(whole.subarray(0, whole.length - 5))).toEqual({ error: "a GIF that is cut short (no trailer)" });
  });

  it("refuses other versions", () => {
    const b = gif(5, 5);
    b.write("88a", 3, "latin1");
    expect(sniffImage(b)).toEqual(notAnImage(b));
  });

  it("refuses a side of zero or over the limit", () => {
    expect(sniffImage(gif(0, 200))).toEqual({ error: "a image/gif image of 0×200 pixels" });
    expect(sniffImage(gif(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))).toStrictEqual({ mime: "image/gif", width: MAX_IMAGE_SIDE, height: MAX_IMAGE_SIDE });
    expect(sniffImage(gif(10, MAX_IMAGE_SIDE + 1))).toEqual(over(10, MAX_IMAGE_SIDE + 1));
  });
});

describe("sniffImage: WebP", () => {
  it("reads the canvas size of an extended (VP8X) file", () => {
    expect(webpVp8x(1, 1).length).toBe(30);
    expect(sniffImage(webpVp8x(1, 1))).toStrictEqual({ mime: "image/webp", width: 1, height: 1 });
    expect(sniffImage(webpVp8x(1920, 1080))).toStrictEqual({ mime: "image/webp", width: 1920, height: 1080 });
  });

  it("reads the size of a lossless (VP8L) file from its 14-bit fields", () => {
    expect(sniffImage(webpVp8l(100, 50))).toStrictEqual({ mime: "image/webp", width: 100, height: 50 });
    expect(sniffImage(webpVp8l(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))).toStrictEqual({ mime: "image/webp", width: MAX_IMAGE_SIDE, height: MAX_IMAGE_SIDE });
  });

  it("reads the size of a lossy (VP8) file, leaving out its scale bits", () => {
    expect(sniffImage(webpVp8(300, 200))).toStrictEqual({ mime: "image/webp", width: 300, height: 200 });
    expect(sniffImage(webpVp8(300, 200, 3))).toStrictEqual({ mime: "image/webp", width: 300, height: 200 });
    expect(sniffImage(webpVp8(0, 200))).toEqual({ error: "a image/webp image of 0×200 pixels" });
  });

  it("refuses a RIFF size that does not match the data's length", () => {
    for (const delta of [-2, -1, 1, 2, 1000]) {
      expect(sniffImage(webpVp8x(10, 10, delta)), `RIFF size off by ${delta}`).toEqual({ error: "a WebP whose RIFF size does not match its length" });
    }
    const whole = webpVp8l(10, 10);
    expect(sniffImage(Buffer.concat([whole, Buffer.alloc(2)]))).toEqual({ error: "a WebP whose RIFF size does not match its length" });
  });

  it("refuses a canvas over the limit", () => {
    expect(sniffImage(webpVp8x(MAX_IMAGE_SIDE + 1, 5))).toEqual(over(MAX_IMAGE_SIDE + 1, 5));
    expect(sniffImage(webpVp8x(1 << 24, 1 << 24))).toEqual(over(1 << 24, 1 << 24));
  });

  it("refuses a WebP whose first chunk is of no known kind", () => {
    expect(sniffImage(riffWebp("ALPH", Buffer.alloc(10)))).toEqual({ error: "a WebP file of an unknown kind" });
  });
});

describe("sniffImage: sizes across formats", () => {
  it("accepts exactly the sides from 1 to the limit, in every raster format", () => {
    const builders = {
      "image/png": (w: number, h: number) => png(w, h, [], false),
      "image/jpeg": (w: number, h: number) => jpeg(w, h),
      "image/gif": (w: number, h: number) => gif(w, h),
    } as const;
    fc.assert(
      fc.property(fc.constantFrom(...(Object.keys(builders) as Array<keyof typeof builders>)), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (mime, w, h) => {
        const r = sniffImage(builders[mime](w, h));
        const fits = w >= 1 && h >= 1 && w <= MAX_IMAGE_SIDE && h <= MAX_IMAGE_SIDE;
        if (fits) expect(r).toStrictEqual({ mime, width: w, height: h });
        else expect(r).toEqual(w === 0 || h === 0 ? { error: `a ${mime} image of ${w}×${h} pixels` } : over(w, h));
      }),
      { numRuns: 200 },
    );
  });
});

describe("sniffImage: SVG", () => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>';

  // The text is the sandbox's: a pattern that backtracks over it would stall the server. These
  // inputs took seconds to minutes with the old regular expression; now each is one pass.
  it.each([
    ["empty comments then junk", `${"<!---->".repeat(585)}x`],
    ["comments that never close", "<!-- -- ".repeat(500)],
    ["a doctype subset that never closes", `<!DOCTYPE svg [${"<!ENTITY a 'b'>".repeat(250)}`],
  ])("answers at once for %s", (_name, text) => {
    expect(sniffImage(Buffer.from(text))).toHaveProperty("error");
  }, 2_000);

  it("takes a self-closing root and a doctype with an internal subset", () => {
    expect(sniffImage(Buffer.from("<svg/>"))).toEqual({ mime: "image/svg+xml" });
    expect(sniffImage(Buffer.from('<!DOCTYPE svg [ <!ENTITY a "b"> ]>\n<svg xmlns="x"/>'))).toEqual({ mime: "image/svg+xml" });
  });

  it("does not take 10 bytes whose last height byte doubles as the trailer for a GIF", () => {
    expect(sniffImage(Buffer.from("GIF89a\x01\x00\x01\x3b", "latin1"))).toHaveProperty("error");
  });

  it.each([
    ["a bare <svg> element", svg],
    ["an XML declaration first", `<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n${svg}`],
    ["comments first", `<!-- made by hand -->\n<!-- two -->${svg}`],
    ["a doctype", `<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n${svg}`],
    ["declaration, comment, doctype and comment", `<?xml version="1.0"?><!-- a --><!DOCTYPE svg><!-- b -->\n${svg}`],
    ["a comment spanning lines with markup in it", `<!--\n <b>not svg</b>\n-->${svg}`],
    ["a byte-order mark and blank lines", `\uFEFF\n\n  \t${svg}`],
    ["upper case", "<SVG WIDTH='1'></SVG>"],
    ["a newline right after the name", '<svg\nxmlns="http://www.w3.org/2000/svg"></svg>'],
    ["no attributes", "<svg></svg>"],
  ])("recognises SVG with %s, and gives no size", (_what, text) => {
    expect(sniffImage(Buffer.from(text, "utf8"))).toStrictEqual({ mime: "image/svg+xml" });
  });

  it.each([
    ["another root element", "<html><svg></svg></html>"],
    ["an element whose name only starts with svg", "<svgx></svgx>"],
    ["an XML document of another kind", '<?xml version="1.0"?><html/>'],
    ["<svg> only inside a comment", "<!-- <svg></svg> -->"],
    ["an HTML doctype", "<!DOCTYPE html><svg></svg>"],
    ["text before the element", "image: <svg></svg>"],
    ["the word svg", "svg"],
  ])("does not take %s for SVG", (_what, text) => {
    const b = Buffer.from(text, "utf8");
    expect(sniffImage(b)).toEqual(notAnImage(b));
  });

  it("looks only at the first 4 KiB for the root element", () => {
    const comment = `<!--${"x".repeat(4096)}-->`;
    const b = Buffer.from(comment + svg, "utf8");
    expect(sniffImage(b)).toEqual(notAnImage(b));
    expect(sniffImage(Buffer.from(`<!--${"x".repeat(3000)}-->${svg}`, "utf8"))).toStrictEqual({ mime: "image/svg+xml" });
  });
});
