import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Runs alone, after these (vitest.cluster.config.ts).
    exclude: ["test/cluster/**", "**/node_modules/**"],
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Containers and a real engine: two files at a time suits a 2-core machine.
    maxWorkers: 2,
    minWorkers: 1,
    reporters: ["default", ["json", { outputFile: "test-results/vitest.json" }]],
  },
});
