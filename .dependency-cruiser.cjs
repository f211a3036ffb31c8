// The import rules that encode the architecture (docs/ARCHITECTURE.md). Run by `npm run lint`
// (and so by `npm test`): a violation fails the build.
//
// Layers, top to bottom; a module may import only from its own layer or below:
//   cli.ts → transport/ → app.ts, doctor.ts → mcp/ → runs/ → bridge/ | egress/ | stores/ | sandbox/ → protocol/ | config/ → shared/
// bridge/, egress/, stores/ and sandbox/ are peers: none imports another.
const layer = (name, path, mayNotImport) => ({
  name: `layer-${name}`,
  comment: `${name} sits below ${mayNotImport}: it must not import it (dependencies point down)`,
  severity: "error",
  from: { path },
  to: { path: mayNotImport },
});

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "No import cycles, between modules or (through the layer rules below) between folders.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "dockerode-only-in-docker-adapter",
      comment: "Only the Docker adapter (src/sandbox/docker/) talks to the engine; everything else uses the SandboxBackend port.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(sandbox/docker/|transport/router/swarm\\.ts$)" },
      to: { path: "node_modules/(@types/)?dockerode/" },
    },
    {
      name: "sdk-server-only-in-transport-and-mcp",
      comment: "The SDK's server classes stay in transport/ and mcp/, so a move to SDK v2 stays contained.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(transport|mcp)/" },
      to: { path: "node_modules/@modelcontextprotocol/sdk/.*/server/" },
    },
    {
      name: "sdk-only-in-transport-mcp-bridge",
      comment: "The SDK (client, types) is used by transport/, mcp/ and bridge/ only.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(transport|mcp|bridge)/" },
      to: { path: "node_modules/@modelcontextprotocol/sdk/" },
    },
    layer("shared", "^src/shared/", "^src/(?!shared/)"),
    layer("protocol", "^src/protocol/", "^src/(?!shared/|protocol/)"),
    layer("config", "^src/config/", "^src/(?!shared/|config/)"),
    layer("sandbox", "^src/sandbox/", "^src/(?!shared/|protocol/|config/|sandbox/)"),
    layer("bridge", "^src/bridge/", "^src/(?!shared/|protocol/|config/|bridge/)"),
    layer("stores", "^src/stores/", "^src/(?!shared/|protocol/|config/|stores/)"),
    layer("egress", "^src/egress/", "^src/(?!shared/|protocol/|config/|egress/)"),
    layer("runs", "^src/runs/", "^src/(?!shared/|protocol/|config/|sandbox/|bridge/|egress/|stores/|runs/)"),
    layer("mcp", "^src/mcp/", "^src/(?!shared/|protocol/|config/|sandbox/(?!docker/)|bridge/|egress/|stores/|runs/|mcp/)"),
    layer("app", "^src/(app|doctor)\\.ts$", "^src/(transport/|cli\\.ts)"),
    layer("transport", "^src/transport/", "^src/cli\\.ts$"),
    {
      name: "router-holds-no-engine",
      comment: "The router (codebox-mcp route) authenticates and forwards: it loads no engine, runs, stores or tools (docs/SCALING.md section 2).",
      severity: "error",
      from: { path: "^src/transport/router/" },
      to: { path: "^src/((app|doctor)\\.ts$|runs/|sandbox/|stores/|mcp/|bridge/|egress/|transport/(http|cell|stdio|stdio-front)\\.ts$)" },
    },
    {
      name: "sandbox-image-is-not-host-code",
      comment: "Code that runs inside the sandbox is read from the package at run time, never imported by the host.",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^sandbox-image/" },
    },
    {
      name: "no-orphans",
      comment: "A module nothing imports is dead code (entry points excepted).",
      severity: "error",
      from: { orphan: true, path: "^src/", pathNot: "^src/cli\\.ts$" },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default", "types"], extensions: [".ts", ".js", ".mjs", ".cjs", ".d.ts"] },
  },
};
