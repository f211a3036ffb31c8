// The runner protocol: how the host hands code to the runner inside a sandbox (PID 1) and how the
// runner says "finished, exit code N". One definition, used by the host (sandbox/docker) and by
// every runner (sandbox-image/<runtime>/): the runners never spell the completion marker
// themselves, they print the prefix the host sent them in the payload.
import type { Language } from "../shared/languages.js";

/** The one JSON line the host writes to the runner's stdin. */
export interface RunnerPayload {
  code: string;
  language: Language;
  /**
   * Node only: the code is JavaScript whose only imports are static imports of Node builtins, with
   * no import.meta and no import(); the runner may evaluate it without loading its module hooks.
   */
  plain?: boolean;
  /** Variables set for this run only (the bridge's socket and token). */
  env: Record<string, string>;
  /**
   * The completion prefix: the runner writes `${completion}${exitCode}\n` last on stdout and on
   * stderr. It holds a per-run nonce, so code that prints a marker of its own cannot end its run
   * at a time of its choosing without knowing the nonce (and then only cuts its own run short).
   */
  completion: string;
}

/** Fixed part of the completion line; the nonce follows it. NUL first: text output never holds it by accident. */
export const COMPLETION_TAG = "\u0000CODEBOX-DONE:";

/** The prefix for one run: tag, nonce, colon. The nonce is hex (no NUL, newline or colon). */
export function completionPrefix(nonce: string): string {
  if (!/^[0-9a-f]{16,64}$/.test(nonce)) throw new Error("the completion nonce must be 16-64 lowercase hex digits");
  return `${COMPLETION_TAG}${nonce}:`;
}

/** The payload line for stdin (JSON escapes every newline inside it, so it is one line). */
export function encodePayload(payload: RunnerPayload): string {
  return `${JSON.stringify(payload)}\n`;
}
