// The TypeScript stripper for the sandbox's module hooks (hooks.mjs), bundled on its own so that
// the hooks thread loads it only when a .ts file is actually imported.
export { transform } from "sucrase";
