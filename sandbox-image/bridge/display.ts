// Shows images in the result of this run (copied to /servers/display.ts):
//
//   import { display } from "/servers/display.ts";
//   await display(pngBytes, { name: "chart" });
//
// The bytes go to the host over this run's bridge; the result carries them as an MCP image (or,
// past the server's inline size, as a link to a copy saved in /workspace). PNG, JPEG, GIF, WebP
// and SVG are taken; the host reads the format from the bytes. Standard library only.
import { bridgeRequest } from "./client.ts";
import { PROTOCOL } from "./protocol.ts";

export interface DisplayOptions {
  /** A label for the image in the result. */
  name?: string;
  /** The image's type; read from the bytes when omitted (a type that does not match them is refused). */
  mime?: string;
}

/**
 * Shows an image: bytes (Uint8Array, Buffer, ArrayBuffer) or SVG text. Resolves true when it was
 * shown; false when the host refused it (the result says why in a line of its own).
 */
export async function display(image: Uint8Array | ArrayBuffer | string, options: DisplayOptions = {}): Promise<boolean> {
  const body = typeof image === "string" ? Buffer.from(image, "utf8") : image instanceof ArrayBuffer ? new Uint8Array(image) : image;
  const headers: Record<string, string> = { "content-type": options.mime ?? (typeof image === "string" ? "image/svg+xml" : "application/octet-stream") };
  if (options.name) headers[PROTOCOL.nameHeader] = encodeURIComponent(options.name.slice(0, 200));
  try {
    const answer = await bridgeRequest(PROTOCOL.displayPath, body, headers);
    return answer.status === 200;
  } catch (err) {
    process.stderr.write(`display: the codebox bridge is unreachable (${(err as Error).message})\n`);
    return false;
  }
}
