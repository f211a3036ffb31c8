// The sandbox images of one server: their tags (configured, or derived from the runner files),
// whether they exist, and building a missing one once however many runs ask for it.
import type Docker from "dockerode";
import type { Config } from "../../config/schema.js";
import { ImageBuildError } from "../../shared/errors.js";
import type { RuntimeName } from "../../shared/languages.js";
import type { Logger } from "../../shared/logger.js";
import { engineStatus, toEngineError } from "./engine.js";
import { buildImage, defaultImageTag } from "./image-builder.js";

export class DockerImages {
  private readonly tags: Record<RuntimeName, string>;
  private readonly ready = new Map<RuntimeName, Promise<string>>();

  constructor(
    private readonly docker: Docker,
    private readonly sandbox: Config["sandbox"],
    private readonly logger: Logger,
  ) {
    this.tags = {
      node: sandbox.image ?? defaultImageTag("node"),
      bun: sandbox.images.bun ?? defaultImageTag("bun"),
      python: sandbox.images.python ?? defaultImageTag("python", sandbox.pythonPackages),
    };
  }

  tag(runtime: RuntimeName): string {
    return this.tags[runtime];
  }

  /** The image the operator named in config (then it is never built here), if any. */
  private configured(runtime: RuntimeName): string | undefined {
    return runtime === "node" ? this.sandbox.image : this.sandbox.images[runtime];
  }

  async exists(runtime: RuntimeName): Promise<boolean> {
    try {
      await this.docker.getImage(this.tags[runtime]).inspect();
      return true;
    } catch (err) {
      if (engineStatus(err) === 404) return false;
      throw toEngineError(err);
    }
  }

  /** Builds a runtime's image once if it is missing; concurrent callers share one build. */
  ensure(runtime: RuntimeName): Promise<string> {
    let ready = this.ready.get(runtime);
    if (!ready) {
      ready = this.buildIfMissing(runtime).catch((err: unknown) => {
        this.ready.delete(runtime); // let the next run try again (e.g. once the engine is back)
        throw toEngineError(err);
      });
      this.ready.set(runtime, ready);
    }
    return ready;
  }

  private async buildIfMissing(runtime: RuntimeName): Promise<string> {
    const tag = this.tags[runtime];
    if (await this.exists(runtime)) return tag;
    if (this.configured(runtime)) {
      throw new ImageBuildError(`the configured ${runtime} image ${tag} does not exist on the engine; build it or unset ${runtime === "node" ? "sandbox.image" : `sandbox.images.${runtime}`}`);
    }
    // warn, not info: the one line that explains why this first call takes a while.
    this.logger.warn(`sandbox image ${tag} not found; building it now (once, up to a minute)`);
    const { method } = await buildImage(this.docker, { runtime, tag, logger: this.logger, pythonPackages: this.sandbox.pythonPackages });
    this.logger.info(`sandbox image ${tag} built (${method})`);
    return tag;
  }

  /** Builds (or rebuilds) a runtime's image now: `codebox-mcp image build`. */
  async build(runtime: RuntimeName, offline: boolean | undefined): Promise<{ tag: string; method: string }> {
    try {
      return await buildImage(this.docker, { runtime, tag: this.tags[runtime], offline, logger: this.logger, pythonPackages: this.sandbox.pythonPackages });
    } catch (err) {
      throw toEngineError(err);
    }
  }
}
