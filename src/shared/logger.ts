// Structured logs, one JSON object per line, always on stderr: in stdio mode stdout carries
// the MCP protocol and nothing else.
import { LOG_BOUNDS, bounded, cut } from "./bounded.js";

/** The longest message kept; fields are cut by LOG_BOUNDS. */
const MAX_MESSAGE = 1_000;

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go; stderr unless a test captures them. */
  write?: (line: string) => void;
  /** Plain "level: msg" lines instead of JSON (for CLI commands a person reads). */
  pretty?: boolean;
}

export function createLogger(options: LoggerOptions, bound: LogFields = {}): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const threshold = ORDER[options.level];
  const emit = (level: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (ORDER[level] < threshold) return;
    // Security: every value is cut to a bounded size: names, messages and paths may be an attacker's.
    const text = cut(msg, MAX_MESSAGE);
    if (options.pretty) {
      write(`codebox-mcp ${level}: ${text}\n`);
      return;
    }
    const record = { time: new Date().toISOString(), level, msg: text, ...(bounded({ ...bound, ...fields }, { ...LOG_BOUNDS, maxItems: 40 }) as LogFields) };
    write(`${JSON.stringify(record)}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(options, { ...bound, ...fields }),
  };
}

