import { createHash, randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { dirname, join } from "node:path";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../shared/logger.js";
import { type DisabledServer, generateServersTree, type ToolEntry } from "./codegen/servers-tree.js";

const KEEP_OLD_TREES_MS = 2 * 60 * 60 * 1000;

/**
 * The generated /servers trees on the host. Each version lives in its own directory named by its
 * content hash, written completely before it is used, then mounted read-only; a run keeps the
 * version it started with even if the tools change meanwhile. Built only from upstream tool lists,
 * never from users' files.
 */
export class ServersDirectory {
  private current: { path: string; entries: ToolEntry[]; disabled: DisabledServer[] } | undefined;
  private writing: Promise<string> = Promise.resolve("");

  constructor(
    private readonly root: string,
    private readonly logger: Logger,
  ) {}

  get entries(): ToolEntry[] {
    return this.current?.entries ?? [];
  }

  /** Path of the newest complete tree, if one was written. */
  get currentPath(): string | undefined {
    return this.current?.path;
  }

  /** Servers left out of the newest tree, with the reason. */
  get disabled(): DisabledServer[] {
    return this.current?.disabled ?? [];
  }

  /** Path of the newest complete tree (generating an empty one the first time). */
  async path(tools: () => Map<string, Tool[]>): Promise<string> {
    if (this.current) return this.current.path;
    return this.update(tools());
  }

  /** Regenerates from the given tool lists; serialised so two updates never interleave. */
  update(tools: Map<string, Tool[]>): Promise<string> {
    this.writing = this.writing.catch(() => "").then(() => this.write(tools));
    return this.writing;
  }

  private async write(tools: Map<string, Tool[]>): Promise<string> {
    const { files, entries, disabled } = generateServersTree(tools);
    for (const d of disabled) this.logger.error("upstream server left out of the /servers code API", { server: d.server.slice(0, 100), reason: d.reason.slice(0, 300) });
    const hash = createHash("sha256");
    for (const f of files) hash.update(f.path).update("\0").update(f.content).update("\0");
    const target = join(this.root, `servers-${hash.digest("hex").slice(0, 16)}`);
    await fs.mkdir(this.root, { recursive: true, mode: 0o755 });
    const exists = await fs.stat(target).then(() => true, () => false);
    if (!exists) {
      const tmp = join(this.root, `.tmp-${randomUUID()}`);
      for (const f of files) {
        const p = join(tmp, f.path);
        await fs.mkdir(dirname(p), { recursive: true, mode: 0o755 });
        await fs.writeFile(p, f.content, { mode: 0o644 });
      }
      await fs.chmod(tmp, 0o755);
      await fs.rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
        await fs.rm(tmp, { recursive: true, force: true });
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
      });
      this.logger.info("generated the /servers code API", { path: target, tools: entries.length });
    }
    this.current = { path: target, entries, disabled };
    await this.pruneOld(target);
    return target;
  }

  private async pruneOld(keep: string): Promise<void> {
    const now = Date.now();
    for (const name of await fs.readdir(this.root).catch(() => [] as string[])) {
      const p = join(this.root, name);
      if (p === keep) continue;
      const st = await fs.lstat(p).catch(() => undefined);
      if (st?.isDirectory() && now - st.mtimeMs > KEEP_OLD_TREES_MS) await fs.rm(p, { recursive: true, force: true });
    }
  }
}
