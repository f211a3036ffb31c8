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
  { env: "CODEBOX_RUNTIME", key: "sandbox.runtime", type: "string" },
  { env: "CODEBOX_PROFILE", key: "sandbox.profile", type: "string" },
  { env: "CODEBOX_SANDBOX_UID", key: "sandbox.uid", type: "int" },
  { env: "CODEBOX_MAX_CODE_BYTES", key: "sandbox.maxCodeBytes", type: "int" },
  { env: "CODEBOX_MAX_OUTPUT_BYTES", key: "sandbox.maxOutputBytes", type: "int" },
  { env: "CODEBOX_SECCOMP_PROFILE", key: "sandbox.seccompProfile", type: "string" },
  { env: "CODEBOX_HTTP_HOST", key: "http.host", type: "string" },
  { env: "CODEBOX_HTTP_PORT", key: "http.port", type: "int" },
  { env: "CODEBOX_PUBLIC_URL", key: "http.publicUrl", type: "string" },
  { env: "CODEBOX_API_KEYS", key: "auth.apiKeys", type: "apiKeys" },
  { env: "CODEBOX_OAUTH_ISSUER", key: "auth.oauth.issuer", type: "string" },
  { env: "CODEBOX_OAUTH_AUDIENCE", key: "auth.oauth.audience", type: "string" },
  { env: "CODEBOX_OAUTH_JWKS_URI", key: "auth.oauth.jwksUri", type: "string" },
];

export interface ConfigSources {
  env: Record<string, string | undefined>;
  /** Path given with --config (JSON). */
  configFile?: string | undefined;
  /** Values from command-line flags, as dotted keys (e.g. "sandbox.runtime"). */
  flags?: Record<string, unknown>;
  homeDir?: string;
}

export function defaultDataDir(env: Record<string, string | undefined>, home: string): string {
  const base = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith("/") ? env.XDG_DATA_HOME : join(home, ".local", "share");
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

/** Merges defaults < config file < environment < flags, then validates once. */
export function loadConfig(sources: ConfigSources): Config {
  const home = sources.homeDir ?? homedir();
  let merged: Plain = { dataDir: defaultDataDir(sources.env, home) };
  const docker = sources.env.DOCKER_HOST;
  if (docker) merged = deepMerge(merged, { docker: { host: docker } });
  if (sources.configFile) merged = deepMerge(merged, readConfigFile(sources.configFile));

  const fromEnv: Plain = {};
  for (const { env, key, type } of ENV_KEYS) {
    const raw = sources.env[env];
    if (raw === undefined || raw === "") continue;
    setPath(fromEnv, key, type === "int" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : type === "apiKeys" ? parseApiKeys(raw) : type === "list" ? raw.split(",").map((v) => v.trim()).filter(Boolean) : raw);
  }
  merged = deepMerge(merged, fromEnv);

  const fromFlags: Plain = {};
  for (const [key, value] of Object.entries(sources.flags ?? {})) if (value !== undefined) setPath(fromFlags, key, value);
  merged = deepMerge(merged, fromFlags);

  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = issue.path.join(".") || "(root)";
      const env = ENV_KEYS.find((e) => e.key === key);
      return `"${key}": ${issue.message}${env ? ` (env ${env.env})` : ""}`;
    });
    throw new ConfigError(`Invalid configuration: ${lines.join("; ")}. See docs/CONFIG.md for every key and its default.`);
  }
  return result.data;
}
