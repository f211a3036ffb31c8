// What an image's bytes are, read from the bytes themselves (never from a name or a claim made by
// sandboxed code): the format and, for raster formats, the size in pixels. Pure; no decoding.

import * as zlib from "node:zlib";

export type ImageMime = "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/svg+xml";

/** Formats the models behind MCP clients accept as image input; SVG goes back as text. */
export const RASTER_MIMES: readonly ImageMime[] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

export const IMAGE_EXTENSIONS: Record<ImageMime, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/gif": "gif",
  "image/webp": "webp",
  "image/svg+xml": "svg",
};

export interface ImageInfo {
  mime: ImageMime;
  /** Pixels; undefined for SVG, or when the header does not say. */
  width?: number;
  height?: number;
}

/** The image format of `data` with its dimensions, or a reason it is not an image we can return. */
export function sniffImage(data: Uint8Array): ImageInfo | { error: string } {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length === 0) return { error: "the data is empty" };
  if (b.length >= 24 && b.subarray(0, 8).equals(PNG_SIGNATURE)) {
    if (b.toString("latin1", 12, 16) !== "IHDR") return { error: "a PNG signature without an IHDR header" };
    if (!wholePng(b)) return { error: "a PNG that is cut short or damaged (its chunks or their checksums do not hold)" };
    return checked({ mime: "image/png", width: b.readUInt32BE(16), height: b.readUInt32BE(20) });
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    // The end-of-image marker, allowing the padding some encoders leave after it.
    if (b.subarray(Math.max(0, b.length - 64)).lastIndexOf(Buffer.from([0xff, 0xd9])) === -1) return { error: "a JPEG that is cut short (no end-of-image marker)" };
    return jpeg(b);
  }
  // A GIF is at least its header, its screen descriptor and the trailer: 14 bytes.
  if (b.length >= 14 && (b.toString("latin1", 0, 6) === "GIF87a" || b.toString("latin1", 0, 6) === "GIF89a")) {
    if (b[b.length - 1] !== 0x3b) return { error: "a GIF that is cut short (no trailer)" };
    return checked({ mime: "image/gif", width: b.readUInt16LE(6), height: b.readUInt16LE(8) });
  }
  if (b.length >= 30 && b.toString("latin1", 0, 4) === "RIFF" && b.toString("latin1", 8, 12) === "WEBP") {
    if (b.readUInt32LE(4) + 8 !== b.length) return { error: "a WebP whose RIFF size does not match its length" };
    return webp(b);
  }
  if (looksLikeSvg(b)) return { mime: "image/svg+xml" };
  return { error: `not a PNG, JPEG, GIF, WebP or SVG image (it starts with ${JSON.stringify(b.toString("latin1", 0, 8))})` };
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** zlib's own when this Node has it (20.15+), else the table above. */
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

function crc32(b: Buffer): number {
  if (nativeCrc32) return nativeCrc32(b);
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Every chunk fits, carries its checksum, and the last is IEND: the file is whole. */
function wholePng(b: Buffer): boolean {
  let i = 8;
  while (i + 12 <= b.length) {
    const length = b.readUInt32BE(i);
    const end = i + 12 + length;
    if (end > b.length) return false;
    if (crc32(b.subarray(i + 4, i + 8 + length)) !== b.readUInt32BE(i + 8 + length)) return false;
    if (b.toString("latin1", i + 4, i + 8) === "IEND") return end === b.length;
    i = end;
  }
  return false;
}

/** Beyond this many pixels a side, a client would be asked to decode a bomb. */
export const MAX_IMAGE_SIDE = 16_384;

function checked(info: ImageInfo & { width: number; height: number }): ImageInfo | { error: string } {
  if (info.width === 0 || info.height === 0) return { error: `a ${info.mime} image of ${info.width}×${info.height} pixels` };
  if (info.width > MAX_IMAGE_SIDE || info.height > MAX_IMAGE_SIDE) return { error: `${info.width}×${info.height} pixels is over ${MAX_IMAGE_SIDE} a side` };
  return info;
}

/** JPEG: the first start-of-frame segment holds the size. */
function jpeg(b: Buffer): ImageInfo | { error: string } {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return { error: "a JPEG whose segments are broken" };
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++;
      continue;
    }
    const length = b.readUInt16BE(i + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return checked({ mime: "image/jpeg", height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) });
    }
    if (length < 2) return { error: "a JPEG whose segments are broken" };
    i += 2 + length;
  }
  return { error: "a JPEG without a frame header" };
}

function webp(b: Buffer): ImageInfo | { error: string } {
  const chunk = b.toString("latin1", 12, 16);
  if (chunk === "VP8X") return checked({ mime: "image/webp", width: 1 + b.readUIntLE(24, 3), height: 1 + b.readUIntLE(27, 3) });
  if (chunk === "VP8L") {
    const bits = b.readUInt32LE(21);
    return checked({ mime: "image/webp", width: 1 + (bits & 0x3fff), height: 1 + ((bits >> 14) & 0x3fff) });
  }
  if (chunk === "VP8 ") return checked({ mime: "image/webp", width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff });
  return { error: "a WebP file of an unknown kind" };
}

/**
 * SVG: UTF-8 text whose first element, after an XML declaration, comments and a doctype, is <svg.
 * A scan that only moves forward (linear time: the text is the sandbox's, and a backtracking
 * pattern over it would stall the server's event loop).
 */
function looksLikeSvg(b: Buffer): boolean {
  const s = b.toString("utf8", 0, Math.min(b.length, 4096)).replace(/^\uFEFF/, "");
  let i = 0;
  const skipSpace = () => {
    while (i < s.length && (s[i] === " " || s[i] === "\n" || s[i] === "\r" || s[i] === "\t")) i++;
  };
  skipSpace();
  if (s.startsWith("<?xml", i)) {
    const end = s.indexOf("?>", i);
    if (end === -1) return false;
    i = end + 2;
  }
  for (;;) {
    skipSpace();
    if (s.startsWith("<!--", i)) {
      const end = s.indexOf("-->", i + 4);
      if (end === -1) return false;
      i = end + 3;
    } else if (/^<!DOCTYPE\s+svg[\s>[]/i.test(s.slice(i, i + 40))) {
      // An internal subset ([ … ]) may hold ">" characters: the doctype ends at the ">" after it.
      const gt = s.indexOf(">", i);
      const open = s.indexOf("[", i);
      const close = open !== -1 && open < gt ? s.indexOf("]", open) : -1;
      const end = open !== -1 && open < gt ? (close === -1 ? -1 : s.indexOf(">", close)) : gt;
      if (end === -1) return false;
      i = end + 1;
    } else break;
  }
  return /^<svg[\s/>]/i.test(s.slice(i, i + 5));
}
