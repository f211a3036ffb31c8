import { defineConfig } from "vitest/config";

// The cluster test (test/cluster/): several hosts with their own engines and a Swarm, on this
// machine. It runs alone, after the other suites (`npm test`), so neither disturbs the other's
// timing on a 2-core machine. Needs root.
export default defineConfig({
  test: {
    include: ["test/cluster/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
    testTimeout: 600_000,
    hookTimeout: 900_000,
    maxWorkers: 1,
    minWorkers: 1,
    reporters: ["default", ["json", { outputFile: "test-results/vitest-cluster.json" }]],
  },
});
