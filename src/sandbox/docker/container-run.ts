// One run in an attached container: hand the runner its payload, watch the deadline and the
// client's cancellation, wait for the completion line or the engine's exit report, and say what
// happened. Removing the container is the caller's job (docker-backend.ts).
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import { completionPrefix, encodePayload } from "../../protocol/runner.js";
import { CompletionTrailer } from "../../protocol/completion-trailer.js";
import { EngineUnavailableError, SandboxError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { RunInput, SandboxOutcome } from "../backend.js";
import { CappedOutput, languageOutOfMemory } from "../output.js";
import type { AttachedContainer } from "./attached-container.js";
import { engineStatus } from "./engine.js";

/** How long after exit we keep reading output still in flight on the attach stream. */
const DRAIN_GRACE_MS = 2_000;
/** Last resort past the run's deadline: an engine that stops answering must not hang the call. */
const ENGINE_SILENCE_MS = 15_000;

export type KillReason = "timeout" | "cancel";

/** Kills the container once, on the deadline or on the client's abort, and remembers why. */
class RunDeadline {
  reason: KillReason | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly onAbort = () => this.kill("cancel");

  constructor(
    private readonly container: Docker.Container,
    timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
    private readonly log: Logger,
  ) {
    this.timer = setTimeout(() => this.kill("timeout"), timeoutMs);
    signal?.addEventListener("abort", this.onAbort, { once: true });
    if (signal?.aborted) this.kill("cancel");
  }

  kill(why: KillReason): void {
    if (this.reason) return;
    this.reason = why;
    this.container.kill({ signal: "SIGKILL" }).catch((err: unknown) => {
      const status = engineStatus(err);
      if (status !== 404 && status !== 409) this.log.warn("kill failed", { err });
    });
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener("abort", this.onAbort);
  }
}

/** The two output streams of a run: capped, spilled past the cap, trailer removed. */
function runStreams(c: AttachedContainer, input: RunInput, maxOutputBytes: number, prefix: string) {
  const spill = input.spill;
  const stream = (name: "stdout" | "stderr", path: string | undefined) =>
    new CappedOutput(maxOutputBytes, spill && path ? { path, maxBytes: spill.maxBytes } : undefined, input.onOutput && ((chunk) => input.onOutput!(name, chunk)));
  const stdout = stream("stdout", spill?.stdoutPath);
  const stderr = stream("stderr", spill?.stderrPath);
  const outTrailer = new CompletionTrailer(prefix, stdout);
  const errTrailer = new CompletionTrailer(prefix, stderr);
  c.stdout.attach(outTrailer);
  c.stderr.attach(errTrailer);
  // Complete when both streams have delivered the line: everything printed before it has arrived.
  const runnerDone = Promise.all([outTrailer.done, errTrailer.done]).then(([, code]) => code);
  return { stdout, stderr, trailers: [outTrailer, errTrailer] as const, runnerDone };
}

/** Whichever comes first: the runner's completion line, or the engine's exit report (kills, OOM, a runner that died). */
async function firstExit(c: AttachedContainer, runnerDone: Promise<number>, timeoutMs: number): Promise<{ by: "engine" | "runner"; code: number }> {
  let giveUp: NodeJS.Timeout | undefined;
  const engineSilent = new Promise<never>((_, reject) => {
    giveUp = setTimeout(() => reject(new EngineUnavailableError("no answer about the sandbox well past its deadline")), timeoutMs + ENGINE_SILENCE_MS);
  });
  try {
    return await Promise.race([c.exited.then((e) => ({ by: "engine" as const, code: e.StatusCode })), runnerDone.then((code) => ({ by: "runner" as const, code })), engineSilent]);
  } finally {
    clearTimeout(giveUp);
  }
}

/**
 * OOMKilled from the engine when the container is still there to inspect; AutoRemove may have
 * taken it already, and then exit 137 we did not cause means the kernel's OOM killer: the runner
 * is PID 1 in its namespace, so nothing inside the container can SIGKILL it.
 */
async function engineOomKilled(container: Docker.Container, status: number, killedByUs: boolean): Promise<boolean> {
  // Only a SIGKILL (137) can be the OOM killer: skip the engine round trip otherwise.
  if (killedByUs || status !== 137) return false;
  try {
    const info = await container.inspect();
    if (info.State.OOMKilled) return true;
  } catch {
    // removed already
  }
  return true;
}

export interface AttachedRun extends SandboxOutcome {
  /** Why we killed it, if we did. */
  killed: KillReason | undefined;
}

/** Runs `input` in `c` and reports what happened. Throws only when the run could not happen. */
export async function runAttached(c: AttachedContainer, input: RunInput, maxOutputBytes: number, log: Logger): Promise<AttachedRun> {
  if (c.dead) throw new SandboxError("The sandbox container exited before it got its code. Retry; run `codebox-mcp doctor` if it repeats.");
  const prefix = completionPrefix(randomBytes(16).toString("hex"));
  const { stdout, stderr, trailers, runnerDone } = runStreams(c, input, maxOutputBytes, prefix);
  const startedAt = Date.now();
  const deadline = new RunDeadline(c.container, input.timeoutMs, input.signal, log);
  let exit: { by: "engine" | "runner"; code: number };
  try {
    c.stream.write(encodePayload({ code: input.code, language: input.language, ...(input.plain ? { plain: true } : {}), env: input.env, completion: prefix }));
    // Off the hot path: the name says which run this container serves now.
    if (input.warm) void c.container.rename({ name: `codebox-run-${input.runId}` }).catch(() => {});
    exit = await firstExit(c, runnerDone, input.timeoutMs);
  } finally {
    deadline.dispose();
  }
  const durationMs = Date.now() - startedAt;
  if (exit.by === "engine") {
    await Promise.race([c.streamDone, new Promise((r) => setTimeout(r, DRAIN_GRACE_MS))]);
    for (const t of trailers) t.flushHeld();
  } else {
    // The runner is exiting: stop timing it, let the engine finish in the background.
    await new Promise((r) => setImmediate(r));
  }
  c.stream.destroy();

  const killedByUs = deadline.reason !== undefined;
  const stderrEnd = stderr.truncated ? stderr.tail() : stderr.text().slice(-4096);
  const oomKilled = (await engineOomKilled(c.container, exit.code, killedByUs)) || (!killedByUs && languageOutOfMemory(exit.code, stderrEnd));
  const [stdoutSpill, stderrSpill] = await Promise.all([stdout.finishSpill(), stderr.finishSpill()]);
  return {
    containerId: c.id,
    exitCode: killedByUs ? null : exit.code,
    stdout: stdout.text(),
    stderr: stderr.text(),
    stdoutBytes: stdout.totalBytes,
    stderrBytes: stderr.totalBytes,
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
    ...(stdout.truncated ? { stdoutTail: stdout.tail() } : {}),
    ...(stderr.truncated ? { stderrTail: stderr.tail() } : {}),
    ...(stdoutSpill ? { stdoutSpill } : {}),
    ...(stderrSpill ? { stderrSpill } : {}),
    timedOut: deadline.reason === "timeout",
    oomKilled,
    durationMs,
    killed: deadline.reason,
  };
}
