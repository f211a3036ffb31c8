import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { join } from "node:path";
import { InputError, NotFoundError } from "../shared/errors.js";
import { packagePath } from "../shared/paths.js";
import { isFileBeneath, listBeneath, readFileBeneath } from "./safe-fs.js";

// A skill is a folder /skills/<name>/ with SKILL.md (frontmatter: name, description) and its
// code: index.ts (TypeScript, `import ... from "/skills/<name>/index.ts"`) and/or __init__.py
// (Python, `from skills.<name_with_underscores> import ...`). The user's own skills live in their skills
// directory (read-write in the sandbox); starter skills ship with the package (read-only).

export const SKILL_NAME = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const MAX_DESCRIPTION = 1024;
const MAX_SKILL_FILE = 2 * 1024 * 1024;

export type SkillLanguage = "typescript" | "python";

/** The file holding a skill's code in each language. */
const SKILL_FILE: Record<SkillLanguage, string> = { typescript: "index.ts", python: "__init__.py" };

/** How code imports a skill, in each language. */
export function skillImport(name: string, language: SkillLanguage): string {
  return language === "python" ? `skills.${name.replace(/-/g, "_")}` : `/skills/${name}/index.ts`;
}

export interface SkillSummary {
  name: string;
  description: string;
  readOnly: boolean;
  /** The TypeScript import path when it has index.ts, else the Python module. */
  import: string;
  /** The languages it has code for. */
  languages: SkillLanguage[];
  /** `from skills.<name> import ...` when it has Python code. */
  pythonImport?: string;
}

export interface Skill extends SkillSummary {
  code: string;
  /** The language of `code` (TypeScript when it has both). */
  language: SkillLanguage;
  skillMd: string;
}

export function validateSkillName(name: string): void {
  if (typeof name !== "string" || !SKILL_NAME.test(name)) {
    throw new InputError(`Invalid skill name "${String(name).slice(0, 80)}": use 1-64 characters of a-z, 0-9 and "-", starting and ending with a letter or digit (e.g. "parse-csv").`);
  }
}

/** Frontmatter of SKILL.md; tolerant of what sandboxed code may have written there. */
export function parseSkillMd(text: string): { name?: string; description?: string } {
  const m = /^---\n([\s\S]*?)\n---/.exec(text.replace(/\r\n/g, "\n"));
  if (!m) return {};
  const out: { name?: string; description?: string } = {};
  for (const line of m[1]!.split("\n")) {
    const kv = /^(name|description):\s*(.*)$/.exec(line);
    if (!kv) continue;
    let value = kv[2]!.trim();
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        // keep as written
      }
    }
    out[kv[1] as "name" | "description"] = value.slice(0, MAX_DESCRIPTION);
  }
  return out;
}

export class SkillStore {
  constructor(
    /** The package's starter skills (read-only for everyone). */
    private readonly starterRoot = packagePath("skills"),
    /**
     * Where sandboxes mount the starter skills from: a copy under the data directory, because the
     * engine resolves mount sources on its own host, where the data directory is (a server in a
     * container has its package only inside it). Unset: mounted from the package itself.
     */
    private readonly mountRoot?: string,
  ) {}

  private mountable: Promise<string> | undefined;

  /** The copy of the starter skills the sandboxes mount: one per content, made once. */
  private starterSource(): Promise<string> {
    const mountRoot = this.mountRoot;
    if (!mountRoot) return Promise.resolve(this.starterRoot);
    this.mountable ??= (async () => {
      const hash = createHash("sha256");
      const files: string[] = [];
      const walk = async (rel: string): Promise<void> => {
        for (const e of await fs.readdir(join(this.starterRoot, rel), { withFileTypes: true })) {
          const r = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) await walk(r);
          else if (e.isFile()) files.push(r);
        }
      };
      await walk("");
      for (const f of files.sort()) hash.update(f).update("\0").update(await fs.readFile(join(this.starterRoot, f))).update("\0");
      const dest = join(mountRoot, hash.digest("hex").slice(0, 16));
      if (await fs.stat(dest).then(() => true, () => false)) return dest;
      await fs.mkdir(mountRoot, { recursive: true, mode: 0o755 });
      const tmp = `${dest}.${process.pid}.tmp`;
      await fs.rm(tmp, { recursive: true, force: true });
      await fs.cp(this.starterRoot, tmp, { recursive: true });
      await fs.rename(tmp, dest).catch(async (err: NodeJS.ErrnoException) => {
        // Another server on the same data directory made it first.
        await fs.rm(tmp, { recursive: true, force: true });
        if (err.code !== "EEXIST" && err.code !== "ENOTEMPTY") throw err;
      });
      return dest;
    })();
    this.mountable.catch(() => (this.mountable = undefined));
    return this.mountable;
  }

  private starters: Promise<string[]> | undefined;

  /** The package's starter skills; they ship with the package, so they are read once. */
  starterNames(): Promise<string[]> {
    this.starters ??= fs
      .readdir(this.starterRoot, { withFileTypes: true })
      .catch(() => [])
      .then((entries) => entries.filter((e) => e.isDirectory() && SKILL_NAME.test(e.name)).map((e) => e.name).sort());
    return this.starters;
  }

  /** Host directories of the starter skills, to mount read-only at /skills/<name>. */
  async starterMounts(): Promise<Array<{ source: string; target: string; readOnly: boolean }>> {
    const names = await this.starterNames();
    if (names.length === 0) return [];
    const root = await this.starterSource();
    return names.map((n) => ({ source: join(root, n), target: `/skills/${n}`, readOnly: true }));
  }

  async list(skillsDir: string): Promise<SkillSummary[]> {
    const starters = await this.starterNames();
    const out: SkillSummary[] = [];
    for (const name of starters) out.push(await this.summary(this.starterRoot, name, true));
    const entries = await listBeneath(skillsDir, 2_000, (rel) => rel.includes("/"));
    for (const e of entries) {
      if (e.kind !== "dir" || !SKILL_NAME.test(e.path) || starters.includes(e.path)) continue;
      out.push(await this.summary(skillsDir, e.path, false));
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  private async languages(root: string, name: string): Promise<SkillLanguage[]> {
    const out: SkillLanguage[] = [];
    for (const language of ["typescript", "python"] as const) if (await isFileBeneath(root, `${name}/${SKILL_FILE[language]}`)) out.push(language);
    return out;
  }

  private async summary(root: string, name: string, readOnly: boolean): Promise<SkillSummary> {
    let description = "";
    try {
      description = parseSkillMd((await readFileBeneath(root, `${name}/SKILL.md`, 64 * 1024)).toString("utf8")).description ?? "";
    } catch {
      description = "(no SKILL.md)";
    }
    const languages = await this.languages(root, name);
    return {
      name,
      description,
      readOnly,
      import: skillImport(name, languages[0] ?? "typescript"),
      languages,
      ...(languages.includes("python") ? { pythonImport: skillImport(name, "python") } : {}),
    };
  }

  async get(skillsDir: string, name: string): Promise<Skill> {
    validateSkillName(name);
    const starter = (await this.starterNames()).includes(name);
    const root = starter ? this.starterRoot : skillsDir;
    let skillMd: string;
    let code: string;
    let summary: SkillSummary;
    try {
      skillMd = (await readFileBeneath(root, `${name}/SKILL.md`, MAX_SKILL_FILE)).toString("utf8");
      summary = await this.summary(root, name, starter);
      const language = summary.languages[0];
      if (!language) throw Object.assign(new Error("no code"), { code: "ENOENT" });
      code = (await readFileBeneath(root, `${name}/${SKILL_FILE[language]}`, MAX_SKILL_FILE)).toString("utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new NotFoundError(`No skill named "${name}": the skills are the folders of /skills (resources skill://<name>).`);
      throw err;
    }
    return { ...summary, code, language: summary.languages[0]!, skillMd };
  }
}
