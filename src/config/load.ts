import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../shared/errors.js";
import { ConfigSchema, type Config } from "./schema.js";

type Plain = Record<string, unknown>;

/** Environment variables and the config key each one sets. docs/CONFIG.md lists the same. */
export const ENV_KEYS: ReadonlyArray<{ env: string; key: string; type: "string" | "int" | "apiKeys" | "list" }> = [
  { env: "CODEBOX_DATA_DIR", key: "dataDir", type: "string" },
  { env: "CODEBOX_LOG_LEVEL", key: "logLevel", type: "string" },
  { env: "CODEBOX_USER_ID", key: "userId", type: "string" },
  { env: "CODEBOX_DOCKER_HOST", key: "docker.host", type: "string" },
  { env: "CODEBOX_IMAGE", key: "sandbox.image", type: "string" },
  { env: "CODEBOX_IMAGE_BUN", key: "sandbox.images.bun", type: "string" },
  { env: "CODEBOX_IMAGE_PYTHON", key: "sandbox.images.python", type: "string" },
  { env: "CODEBOX_RUNTIMES", key: "sandbox.runtimes", type: "list" },
  { env: "CODEBOX_OCI_RUNTIME", key: "sandbox.ociRuntime", type: "string" },
  { env: "CODEBOX_PYTHON_PACKAGES", key: "sandbox.pythonPackages", type: "string" },
  { env: "CODEBOX_PROFILE", key: "sandbox.profile", type: "string" },
  { env: "CODEBOX_SANDBOX_UID", key: "sandbox.uid", type: "int" },
  { env: "CODEBOX_MAX_CODE_BYTES", key: "sandbox.maxCodeBytes", type: "int" },
  { env: "CODEBOX_MAX_OUTPUT_BYTES", key: "sandbox.maxOutputBytes", type: "int" },
  { env: "CODEBOX_SECCOMP_PROFILE", key: "sandbox.seccompProfile", type: "string" },
  { env: "CODEBOX_HTTP_HOST", key: "http.host", type: "string" },
  { env: "CODEBOX_HTTP_PORT", key: "http.port", type: "int" },
  { env: "CODEBOX_PUBLIC_URL", key: "http.publicUrl", type: "string" },
  { env: "CODEBOX_METRICS_TOKEN", key: "http.metricsToken", type: "string" },
  { env: "CODEBOX_API_KEYS", key: "auth.apiKeys", type: "apiKeys" },
  { env: "CODEBOX_CLUSTER_CELL_ID", key: "cluster.cellId", type: "string" },
  { env: "CODEBOX_CLUSTER_TOKEN", key: "cluster.token", type: "string" },
  { env: "CODEBOX_ROUTE_HOST", key: "route.host", type: "string" },
  { env: "CODEBOX_ROUTE_PORT", key: "route.port", type: "int" },
  { env: "CODEBOX_ROUTE_DISCOVERY", key: "route.discovery", type: "string" },
  { env: "CODEBOX_ROUTE_SWARM_SERVICE", key: "route.swarm.service", type: "string" },
  { env: "CODEBOX_OAUTH_ISSUER", key: "auth.oauth.issuer", type: "string" },
  { env: "CODEBOX_OAUTH_AUDIENCE", key: "auth.oauth.audience", type: "string" },
  { env: "CODEBOX_OAUTH_JWKS_URI", key: "auth.oauth.jwksUri", type: "string" },
];

/**
 * Old names still accepted, each with a warning: until 0.2 "sandbox.runtime" meant the OCI runtime
 * (runc/runsc) while execute_code's `runtime` meant node/bun/python. Now "runtime" means only the
 * language runtime. An old name loses to the new one when both are set in the same layer.
 */
export const DEPRECATED_KEYS: ReadonlyArray<{ env: string; key: string; useEnv: string; useKey: string }> = [
  { env: "CODEBOX_RUNTIME", key: "sandbox.runtime", useEnv: "CODEBOX_OCI_RUNTIME", useKey: "sandbox.ociRuntime" },
];

export interface ConfigSources {
  env: Record<string, string | undefined>;
  /** Path given with --config (JSON). */
  configFile?: string | undefined;
  /** Values from command-line flags, as dotted keys (e.g. "sandbox.ociRuntime"). */
  flags?: Record<string, unknown>;
  homeDir?: string;
}

export function defaultDataDir(env: Record<string, string | undefined>, home: string): string {
  const base = env.XDG_DATA_HOME?.startsWith("/") ? env.XDG_DATA_HOME : join(home, ".local", "share");
  return join(base, "codebox-mcp");
}

function setPath(target: Plain, dotted: string, value: unknown): void {
  const parts = dotted.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Plain;
  }
  node[parts[parts.length - 1]!] = value;
}

function isPlain(v: unknown): v is Plain {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function deepMerge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const prev = out[k];
    out[k] = isPlain(prev) && isPlain(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function readConfigFile(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`Cannot read the config file ${path}: ${(err as Error).message}. Check the --config path.`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`The config file ${path} is not valid JSON: ${(err as Error).message}.`);
  }
  if (!isPlain(parsed)) throw new ConfigError(`The config file ${path} must hold a JSON object.`);
  return parsed;
}

/** CODEBOX_API_KEYS: "alice=<key>,bob=sha256:<hex>" (user id, then the key or its hash). */
export function parseApiKeys(raw: string): Array<{ userId: string; key?: string; keyHash?: string }> {
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((pair) => {
      const i = pair.indexOf("=");
      const userId = i < 0 ? "" : pair.slice(0, i);
      const value = i < 0 ? pair : pair.slice(i + 1);
      return value.startsWith("sha256:") ? { userId, keyHash: value } : { userId, key: value };
    });
}

function getPath(source: Plain, dotted: string): unknown {
  let node: unknown = source;
  for (const part of dotted.split(".")) node = isPlain(node) ? node[part] : undefined;
  return node;
}

function deletePath(source: Plain, dotted: string): void {
  const parts = dotted.split(".");
  const parent = getPath(source, parts.slice(0, -1).join("."));
  if (isPlain(parent)) delete parent[parts[parts.length - 1]!];
}

/** One layer with its deprecated keys moved to their new names (returns a new object), and what to warn. */
function renameDeprecated(layer: Plain, where: string, warnings: string[]): Plain {
  let out = layer;
  for (const d of DEPRECATED_KEYS) {
    const old = getPath(out, d.key);
    if (old === undefined) continue;
    out = structuredClone(out);
    deletePath(out, d.key);
    if (getPath(out, d.useKey) === undefined) setPath(out, d.useKey, old);
    warnings.push(`${where}: "${d.key}" is deprecated; use "${d.useKey}" (env ${d.useEnv}) instead`);
  }
  return out;
}

export interface LoadedConfig {
  config: Config;
  /** Deprecated names that were used (for the log; the config already holds their values). */
  warnings: string[];
}

/** loadConfigReport, without the warnings. */
export function loadConfig(sources: ConfigSources): Config {
  return loadConfigReport(sources).config;
}

/** Merges defaults < config file < environment < flags, then validates once. */
export function loadConfigReport(sources: ConfigSources): LoadedConfig {
  const warnings: string[] = [];
  const home = sources.homeDir ?? homedir();
  let merged: Plain = { dataDir: defaultDataDir(sources.env, home) };
  const docker = sources.env.DOCKER_HOST;
  if (docker) merged = deepMerge(merged, { docker: { host: docker } });
  if (sources.configFile) merged = deepMerge(merged, renameDeprecated(readConfigFile(sources.configFile), `config file ${sources.configFile}`, warnings));

  const fromEnv: Plain = {};
  for (const { env, key, type } of ENV_KEYS) {
    const raw = sources.env[env];
    if (raw === undefined || raw === "") continue;
    setPath(fromEnv, key, type === "int" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : type === "apiKeys" ? parseApiKeys(raw) : type === "list" ? raw.split(",").map((v) => v.trim()).filter(Boolean) : raw);
  }
  for (const d of DEPRECATED_KEYS) {
    const raw = sources.env[d.env];
    if (raw === undefined || raw === "") continue;
    warnings.push(`environment: ${d.env} is deprecated; use ${d.useEnv} instead`);
    if (sources.env[d.useEnv] === undefined || sources.env[d.useEnv] === "") setPath(fromEnv, d.useKey, raw);
  }
  merged = deepMerge(merged, fromEnv);

  const fromFlags: Plain = {};
  for (const [key, value] of Object.entries(sources.flags ?? {})) if (value !== undefined) setPath(fromFlags, key, value);
  merged = deepMerge(merged, renameDeprecated(fromFlags, "command line", warnings));

  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = issue.path.join(".") || "(root)";
      const env = ENV_KEYS.find((e) => e.key === key);
      return `"${key}": ${issue.message}${env ? ` (env ${env.env})` : ""}`;
    });
    throw new ConfigError(`Invalid configuration: ${lines.join("; ")}. See docs/CONFIG.md for every key and its default.`);
  }
  return { config: result.data, warnings };
}
