/** Formats objects (columns from their keys) or arrays (first row = header) as a Markdown table. */
export function markdownTable(rows: Array<Record<string, unknown>> | unknown[][], options: { maxWidth?: number } = {}): string {
  const max = options.maxWidth ?? 60;
  let header: string[];
  let body: unknown[][];
  if (rows.length === 0) return "(no rows)";
  if (Array.isArray(rows[0])) {
    header = (rows[0] as unknown[]).map(String);
    body = (rows as unknown[][]).slice(1);
  } else {
    header = [...new Set((rows as Array<Record<string, unknown>>).flatMap((r) => Object.keys(r)))];
    body = (rows as Array<Record<string, unknown>>).map((r) => header.map((h) => r[h]));
  }
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    const one = s.replace(/\|/g, "\\|").replace(/\n/g, " ");
    return one.length > max ? `${one.slice(0, max - 1)}…` : one;
  };
  const lines = [`| ${header.map(cell).join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...body.map((r) => `| ${header.map((_, i) => cell(r[i])).join(" | ")} |`)];
  return lines.join("\n");
}
