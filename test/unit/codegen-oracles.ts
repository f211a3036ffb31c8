// What a valid generated name is, written independently of src/bridge/codegen/names.ts (the tests'
// oracle, not the code under test).

export const JS_IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
export const PY_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Reserved in strict-mode module code, plus TypeScript's strict-mode reserved words and the names strict code cannot bind. */
export const JS_RESERVED = new Set(
  ("break case catch class const continue debugger default delete do else enum export extends false finally for function if import in " +
    "instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package " +
    "private protected public await arguments eval").split(" "),
);
/** keyword.kwlist + keyword.softkwlist (3.11) + `type` (a soft keyword since 3.12). */
export const PY_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except finally for from global if import in is " +
    "lambda nonlocal not or pass raise return try while with yield _ case match type").split(" "),
);

/** The id can be bound by a function declaration in strict code (a second opinion beside the regex). */
export function bindableInStrictCode(id: string): boolean {
  try {
    new Function(`"use strict"; var ${id} = 1; function f(${id}) {} return ${id};`);
    return true;
  } catch {
    return false;
  }
}
