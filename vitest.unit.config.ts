import { defineConfig } from "vitest/config";

// The base of the pyramid: no Docker engine, no containers, no global set-up. `npm run test:unit`.
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    globalSetup: ["test/unit-setup.ts"],
    pool: "threads",
    testTimeout: 30_000,
  },
});
