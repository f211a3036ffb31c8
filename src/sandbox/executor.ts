import { randomUUID } from "node:crypto";
import type { Bridge } from "../bridge/bridge.js";
import type { Config, ProfileName } from "../config/schema.js";
import { InputError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { UserDirectories } from "../stores/user-dirs.js";
import type { Language, RunResult, SandboxBackend } from "./backend.js";

export interface ExecuteRequest {
  userId: string;
  code: string;
  language: Language;
  timeoutMs?: number | undefined;
  profile?: ProfileName | undefined;
  signal?: AbortSignal | undefined;
}

/** Turns a validated tool call into a sandbox run: limits, the user's directories, logging. */
export class CodeExecutor {
  constructor(
    private readonly config: Config,
    private readonly backend: SandboxBackend,
    private readonly dirs: UserDirectories,
    private readonly logger: Logger,
    private readonly bridge?: Bridge,
  ) {}

  limits(profileName?: ProfileName) {
    const name = profileName ?? this.config.sandbox.profile;
    return { name, ...this.config.sandbox.profiles[name], maxCodeBytes: this.config.sandbox.maxCodeBytes, maxOutputBytes: this.config.sandbox.maxOutputBytes };
  }

  async execute(req: ExecuteRequest): Promise<RunResult> {
    const limits = this.limits(req.profile);
    const bytes = Buffer.byteLength(req.code, "utf8");
    if (bytes > limits.maxCodeBytes) {
      throw new InputError(`code is ${bytes} bytes; the limit is ${limits.maxCodeBytes} bytes. Send less code, or keep data in /workspace files and read them from the code.`);
    }
    if (req.timeoutMs !== undefined && req.timeoutMs > limits.timeoutMs) {
      throw new InputError(`timeoutMs ${req.timeoutMs} is above this server's limit of ${limits.timeoutMs} ms (profile "${limits.name}"). Omit timeoutMs or pass at most ${limits.timeoutMs}.`);
    }
    const runId = randomUUID();
    const timeoutMs = req.timeoutMs ?? limits.timeoutMs;
    const mounts = await this.dirs.ensure(req.userId);
    this.logger.debug("run requested", { runId, userId: req.userId, language: req.language, codeBytes: bytes });
    const bridge = await this.bridge?.openRun({ runId, userId: req.userId, timeoutMs });
    try {
      return await this.backend.run({
        runId,
        userId: req.userId,
        language: req.language,
        code: req.code,
        timeoutMs,
        profile: limits,
        mounts: { workspace: mounts.workspace, skills: mounts.skills },
        extraMounts: bridge?.mounts ?? [],
        env: bridge?.env ?? {},
        ...(bridge?.network ? { network: bridge.network } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } finally {
      // Security: the token dies and the socket disappears the moment the run ends.
      await bridge?.close();
    }
  }
}
