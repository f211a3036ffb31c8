// What a run shows and returns besides its output: images its code displays (through the bridge's
// display endpoint) and files it wrote to the folder named in `outputs`. Every byte and name here
// came from the sandbox: the format is read from the bytes, sizes and counts are capped, file names
// are the host's own, and every file operation goes through the user's descriptor-relative store.
import type { DisplayReceiver } from "../bridge/callback-server.js";
import type { Config } from "../config/schema.js";
import { errorMessage } from "../shared/errors.js";
import { mimeOfExtension } from "../shared/mime.js";
import { IMAGE_EXTENSIONS, type ImageMime, RASTER_MIMES, sniffImage } from "../shared/images.js";
import { sizeText } from "../shared/format.js";

export type DisplayLimits = Config["display"];

/** Where images too big to return inline are saved, relative to /workspace. */
export const IMAGES_DIR = ".codebox/images";

/** One thing the result carries: an image inline, or a file in the workspace it links to. */
export type ShownItem =
  | { kind: "image"; mime: ImageMime; data: Buffer; label: string; width?: number | undefined; height?: number | undefined }
  | { kind: "file"; path: string; mime: string; bytes: number; label: string; width?: number | undefined; height?: number | undefined };

export interface WorkspaceFiles {
  writeWorkspace(userId: string, relativePath: string, data: Buffer): Promise<unknown>;
  listWorkspace(userId: string, limit: number, skip?: (rel: string) => boolean): Promise<Array<{ path: string; kind: string; size: number; ctimeMs: number }>>;
  readWorkspace(userId: string, relativePath: string): Promise<Buffer>;
}

/** Notes past this many are counted, not kept: a run cannot grow its result with refusals. */
const MAX_NOTES = 10;

/** A label the sandbox chose, made safe to print: one short line of ordinary characters. */
export function cleanLabel(name: string | undefined): string | undefined {
  if (!name) return undefined;
  // Cut by code point, never inside a surrogate pair.
  const clean = Array.from(name.replace(/[^\p{L}\p{N} ._()+-]/gu, "_")).slice(0, 80).join("").trim();
  return clean || undefined;
}

/** The result's lines and items of one run; the bridge's display endpoint feeds it. */
export class RunDisplays implements DisplayReceiver {
  readonly items: ShownItem[] = [];
  private readonly notes: string[] = [];
  private dropped = 0;
  private inlineBytes = 0;
  private seen = 0;

  constructor(
    private readonly limits: DisplayLimits,
    private readonly files: WorkspaceFiles | undefined,
    private readonly userId: string,
    private readonly runId: string,
  ) {}

  get maxBytes(): number {
    return this.limits.maxImageBytes;
  }

  /** What the result says about images that were not shown, one line each (then a count). */
  get lines(): string[] {
    return this.dropped > 0 ? [...this.notes, `${this.dropped} more display notes left out`] : [...this.notes];
  }

  /** Takes `bytes` of the result's inline budget for an image, if it has that much left. */
  reserveInline(bytes: number): boolean {
    if (bytes > this.limits.inlineMaxBytes || this.inlineBytes + bytes > this.limits.maxInlineTotalBytes) return false;
    this.inlineBytes += bytes;
    return true;
  }

  refused(message: string): void {
    this.seen++;
    this.note(`image ${this.seen} not shown: ${message}`);
  }

  private note(line: string): void {
    if (this.notes.length < MAX_NOTES) this.notes.push(line);
    else this.dropped++;
  }

  async receive(item: { data: Buffer; mime: string | undefined; name: string | undefined }) {
    const n = ++this.seen;
    const refuse = (status: number, why: string) => {
      this.note(`image ${n} not shown: ${why}`);
      return { status, body: { error: why } };
    };
    if (this.items.length >= this.limits.maxImages) return refuse(429, `a run shows at most ${this.limits.maxImages} images`);
    const info = sniffImage(item.data);
    if ("error" in info) return refuse(415, info.error.startsWith("not a") ? `${info.error}; display() takes PNG, JPEG, GIF, WebP or SVG data, a matplotlib figure or a PIL image` : info.error);
    const claimed = item.mime && item.mime !== "application/octet-stream" ? (item.mime === "image/jpg" ? "image/jpeg" : item.mime) : undefined;
    if (claimed && claimed !== info.mime) return refuse(415, `the data is ${info.mime} but was declared ${claimed.slice(0, 60)}`);
    const label = cleanLabel(item.name) ?? `image ${n}`;
    const bytes = item.data.length;
    const dims = info.width !== undefined ? `, ${info.width}×${info.height}` : "";
    const raster = RASTER_MIMES.includes(info.mime);
    if (raster && this.reserveInline(bytes)) {
      this.items.push({ kind: "image", mime: info.mime, data: item.data, label, width: info.width, height: info.height });
      return { status: 200, body: { ok: true as const, shown: `${label} (${info.mime}${dims}, ${sizeText(bytes)})` } };
    }
    // SVG, or over the inline caps: saved in the workspace under a name of the host's, and linked.
    if (!this.files) return refuse(413, `${sizeText(bytes)} is over the ${sizeText(this.limits.inlineMaxBytes)} shown inline, and this server keeps no files`);
    const path = `${IMAGES_DIR}/${this.runId}-${n}.${IMAGE_EXTENSIONS[info.mime]}`;
    try {
      await this.files.writeWorkspace(this.userId, path, item.data);
    } catch (err) {
      return refuse(507, `it could not be saved in /workspace (${errorMessage(err).slice(0, 200)})`);
    }
    this.items.push({ kind: "file", path, mime: info.mime, bytes, label, width: info.width, height: info.height });
    return { status: 200, body: { ok: true as const, shown: `${label} saved as /workspace/${path}` } };
  }
}

export function mimeOfPath(path: string): string {
  return mimeOfExtension(path) ?? "application/octet-stream";
}

/**
 * `outputs` as the caller gave it ("reports", "/workspace/reports/", ".") as a path relative to
 * /workspace, or an error saying what to pass. The store checks every segment again when it opens it.
 */
export function outputsFolder(given: string): string | { error: string } {
  let p = given.trim().replace(/\\/g, "/");
  if (p === "/workspace" || p.startsWith("/workspace/")) p = p.slice("/workspace".length);
  p = p.replace(/^\/+/, "").replace(/\/+$/, "");
  if (p === "" || p === ".") return "";
  const parts = p.split("/").filter((s) => s !== "" && s !== ".");
  if (parts.some((s) => s === ".." || s.includes("\0"))) return { error: `outputs must be a folder inside /workspace, e.g. "reports"; got ${JSON.stringify(given.slice(0, 100))}` };
  return parts.join("/");
}

/** Entries a listing visits at most while looking for the outputs folder's files. */
const OUTPUTS_LISTING_LIMIT = 5_000;

/**
 * The files in `folder` (relative to /workspace) created or changed since `since` (ctime, which
 * code cannot set back): each linked, and raster images small enough also shown inline.
 */
export async function returnOutputs(files: WorkspaceFiles, limits: DisplayLimits, userId: string, folder: string, since: number, displays: RunDisplays): Promise<{ items: ShownItem[]; lines: string[] }> {
  const inside = (rel: string) => folder === "" || rel === folder || rel.startsWith(`${folder}/`);
  const onTheWay = (rel: string) => folder.startsWith(`${rel}/`);
  // The host's own folder (.codebox: saved output and images) is never an output.
  const skip = (rel: string) => rel === ".codebox" || rel.startsWith(".codebox/") || !(inside(rel) || onTheWay(rel));
  let entries: Awaited<ReturnType<WorkspaceFiles["listWorkspace"]>>;
  try {
    entries = await files.listWorkspace(userId, OUTPUTS_LISTING_LIMIT, skip);
  } catch (err) {
    return { items: [], lines: [`outputs: /workspace/${folder} could not be listed (${errorMessage(err).slice(0, 200)})`] };
  }
  // The kernel stamps ctime from a clock that may lag a few ms behind the host's.
  const written = entries.filter((e) => e.kind === "file" && inside(e.path) && e.ctimeMs >= since - 20);
  const lines: string[] = [];
  if (written.length === 0) lines.push(`outputs: the run wrote no files in /workspace/${folder}`);
  if (written.length > limits.maxOutputs) lines.push(`outputs: ${written.length} files were written in /workspace/${folder}; the first ${limits.maxOutputs} are returned`);
  const items: ShownItem[] = [];
  for (const e of written.slice(0, limits.maxOutputs)) {
    let mime = mimeOfPath(e.path);
    let dims: { width?: number | undefined; height?: number | undefined } = {};
    const label = e.path.split("/").pop()!;
    let bytes = e.size;
    if (RASTER_MIMES.includes(mime as ImageMime) && e.size <= limits.inlineMaxBytes) {
      try {
        // The bytes decide (the file may have changed since it was listed): its size, its format, the budget.
        const data = await files.readWorkspace(userId, e.path);
        bytes = data.length;
        const info = sniffImage(data);
        if (!("error" in info) && RASTER_MIMES.includes(info.mime)) {
          mime = info.mime;
          dims = { width: info.width, height: info.height };
          if (displays.reserveInline(data.length)) items.push({ kind: "image", mime: info.mime, data, label, ...dims });
        }
      } catch {
        // changed or gone since the listing: linked only
      }
    }
    items.push({ kind: "file", path: e.path, mime, bytes, label, ...dims });
  }
  return { items, lines };
}
