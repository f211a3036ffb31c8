// Names for generated code: every upstream tool or server name becomes a valid, unique identifier
// or file name in both languages. Upstream names are untrusted text: identifiers are rebuilt from a
// safe alphabet, never copied.

const RESERVED = new Set(
  ("break case catch class const continue debugger default delete do else enum export extends false finally for function if import in " +
    "instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package " +
    "private protected public await async arguments eval undefined constructor prototype")
    .split(" "),
);

export function toIdentifier(name: string): string {
  const words = name.split(/[^A-Za-z0-9]+/).filter(Boolean);
  let id = words
    .map((w, i) => (i === 0 ? w.charAt(0).toLowerCase() + w.slice(1) : w.charAt(0).toUpperCase() + w.slice(1)))
    .join("")
    .slice(0, 80);
  if (!id) id = "tool";
  if (/^[0-9]/.test(id)) id = `_${id}`;
  if (RESERVED.has(id)) id = `${id}_`;
  return id;
}

export function toFileStem(name: string): string {
  const stem = name.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^[-_.]+/, "").slice(0, 80);
  return stem || "tool";
}

const PY_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except finally for from global if import in is " +
    "lambda nonlocal not or pass raise return try while with yield match case type _").split(" "),
);

/** A Python identifier in snake_case: `getSum` → `get_sum`, `list-rows` → `list_rows`. */
export function toPythonIdentifier(name: string): string {
  let id = name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean)
    .join("_")
    .slice(0, 80);
  if (!id) id = "tool";
  if (/^[0-9]/.test(id)) id = `_${id}`;
  if (PY_KEYWORDS.has(id)) id = `${id}_`;
  return id;
}

/**
 * A server's directory under /servers: a valid Python package name too (`my-server` →
 * `my_server`), so TypeScript and Python import the same folder.
 */
export function toServerDir(name: string): string {
  let dir = toFileStem(name).replace(/-/g, "_");
  if (/^[0-9]/.test(dir)) dir = `_${dir}`;
  if (PY_KEYWORDS.has(dir)) dir = `${dir}_`;
  return dir;
}

/** A PascalCase name for types: always a valid identifier in both languages (`_3d` → `T3d`). */
export function pascal(id: string): string {
  const s = id.replace(/^_+/, "");
  const p = s.charAt(0).toUpperCase() + s.slice(1);
  return p === "" || /^[0-9]/.test(p) ? `T${p}` : p;
}

/** Makes names unique with a numeric suffix, in order (first come keeps the plain name). */
export function uniquify(names: string[], compare: (s: string) => string = (s) => s, reserved: string[] = []): string[] {
  const seen = new Set<string>(reserved.map(compare));
  // Where to continue counting for each name: 10,000 tools of one name stay linear, not quadratic.
  const next = new Map<string, number>();
  return names.map((n) => {
    let candidate = n;
    let i = next.get(compare(n)) ?? 2;
    while (seen.has(compare(candidate))) candidate = `${n}_${i++}`;
    next.set(compare(n), i);
    seen.add(compare(candidate));
    return candidate;
  });
}

