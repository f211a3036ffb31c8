import type { UserDirectories } from "./user-dirs.js";
import { type Entry, listBeneath, readFileBeneath, writeFileBeneath } from "./safe-fs.js";
import type { Skill, SkillStore, SkillSummary } from "./skills.js";

export interface UserFilesOptions {
  maxReadBytes: number;
  maxWriteBytes: number;
  /** Owner of files the host writes for the user (the sandbox uid when the server is root). */
  owner?: number | undefined;
}

/** A user's workspace and skills as the MCP tools and resources see them; every path is hostile input. */
export class UserFiles {
  constructor(
    private readonly dirs: UserDirectories,
    readonly skills: SkillStore,
    private readonly options: UserFilesOptions,
  ) {}

  get maxWriteBytes(): number {
    return this.options.maxWriteBytes;
  }

  private paths(userId: string) {
    return this.dirs.ensure(userId);
  }

  async listWorkspace(userId: string, limit = 1_000, skip?: (rel: string) => boolean): Promise<Entry[]> {
    return listBeneath((await this.paths(userId)).workspace, limit, skip);
  }

  async readWorkspace(userId: string, path: string): Promise<Buffer> {
    return readFileBeneath((await this.paths(userId)).workspace, path, this.options.maxReadBytes);
  }

  async writeWorkspace(userId: string, path: string, data: Buffer): Promise<void> {
    await writeFileBeneath((await this.paths(userId)).workspace, path, data, this.options.owner === undefined ? {} : { owner: this.options.owner });
  }

  async listSkills(userId: string): Promise<SkillSummary[]> {
    return this.skills.list((await this.paths(userId)).skills);
  }

  async getSkill(userId: string, name: string): Promise<Skill> {
    return this.skills.get((await this.paths(userId)).skills, name);
  }
}
