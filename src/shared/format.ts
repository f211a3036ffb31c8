// Sizes as people read them, in messages, descriptions and results.

/** "812 bytes", "64 KiB", "1.5 MiB", "8.0 MiB". */
export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
