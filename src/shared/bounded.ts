// Bounds for text that reaches the host's logs and audit records. Server and tool names, error
// messages and paths can come from sandboxed code, a tenant or an upstream server: a megabyte
// "tool name" must cost a log line its usual size, not a megabyte.

export interface Bounds {
  /** Characters kept of one string value. */
  maxString: number;
  /** Items kept of one array, keys of one object. */
  maxItems: number;
  /** Nesting kept; deeper values become "[…]". */
  maxDepth: number;
}

export const LOG_BOUNDS: Bounds = { maxString: 300, maxItems: 20, maxDepth: 4 };

/** `text` cut to `max` characters, saying how much was cut. */
export function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…(+${text.length - max} chars)`;
}

/**
 * A copy of `value` with every string cut, arrays and objects shortened and nesting limited.
 * Errors keep their name, message and code. Never throws (a getter that throws reads as "[?]").
 */
export function bounded(value: unknown, bounds: Bounds = LOG_BOUNDS, depth = 0): unknown {
  if (typeof value === "string") return cut(value, bounds.maxString);
  if (value === null || typeof value !== "object") return typeof value === "bigint" ? String(value) : value;
  if (depth >= bounds.maxDepth) return "[…]";
  if (value instanceof Error) {
    const code = (value as Error & { code?: unknown }).code;
    return { name: cut(value.name, 100), message: cut(value.message, bounds.maxString), ...(code === undefined ? {} : { code: bounded(code, bounds, depth + 1) }) };
  }
  if (Array.isArray(value)) {
    const items = value.slice(0, bounds.maxItems).map((v) => bounded(v, bounds, depth + 1));
    if (value.length > bounds.maxItems) items.push(`…(+${value.length - bounds.maxItems} items)`);
    return items;
  }
  const out: Record<string, unknown> = {};
  let n = 0;
  try {
    for (const key of Object.keys(value)) {
      if (n++ >= bounds.maxItems) {
        out["…"] = `+${Object.keys(value).length - bounds.maxItems} keys`;
        break;
      }
      let v: unknown;
      try {
        v = (value as Record<string, unknown>)[key];
      } catch {
        v = "[?]";
      }
      out[cut(key, 100)] = bounded(v, bounds, depth + 1);
    }
  } catch {
    return "[?]";
  }
  return out;
}
