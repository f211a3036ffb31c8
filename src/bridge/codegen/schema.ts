// Reading an upstream's JSON Schema defensively: a schema may be any JSON at all ("items": "x",
// "properties": [1], "required": {}), and generation must cost at most the odd part, never throw.
import type { Schema } from "./types.js";

/** A schema object, or true/false/undefined; anything else (a string, a number, an array, null) reads as "any". */
export function asSchema(value: unknown): Schema {
  if (value === true || value === false || value === undefined) return value;
  if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  return undefined;
}

/** The properties of an object schema, when they are an object. */
export function propertiesOf(s: Record<string, unknown>): Array<[string, Schema]> {
  const props = s.properties;
  if (typeof props !== "object" || props === null || Array.isArray(props)) return [];
  return Object.entries(props as Record<string, unknown>).map(([k, v]) => [k, asSchema(v)]);
}

/** The required property names, when `required` is an array (its non-strings ignored). */
export function requiredOf(s: Record<string, unknown>): Set<string> {
  return new Set(Array.isArray(s.required) ? s.required.filter((r): r is string => typeof r === "string") : []);
}

/** A schema's `type` as a list of distinct strings (a single string, an array of them; anything else: none). */
export function typesOf(s: Record<string, unknown>): string[] | undefined {
  if (typeof s.type === "string") return [s.type];
  if (Array.isArray(s.type)) {
    // Distinct and few: a type list is expanded once per entry, so ["object" × 30] must not multiply work.
    const types = [...new Set(s.type.filter((t): t is string => typeof t === "string"))].slice(0, 8);
    return types.length > 0 ? types : undefined;
  }
  return undefined;
}

/**
 * Schema nodes one tool's types may visit. Real tools use a few hundred; past this the rest reads
 * as "any", so a small hostile schema cannot make generation (which runs on the server's event
 * loop) take seconds.
 */
export const SCHEMA_NODE_BUDGET = 4_000;

export interface Budget {
  left: number;
  /** Type names given out so far (Python TypedDicts). */
  names: Set<string>;
}

export function newBudget(nodes = SCHEMA_NODE_BUDGET): Budget {
  return { left: nodes, names: new Set() };
}

/** A string-valued keyword (description, title), or undefined. */
export function textOf(s: Schema, key: string): string | undefined {
  return typeof s === "object" && typeof s[key] === "string" ? (s[key] as string) : undefined;
}
