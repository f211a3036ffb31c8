// What the cluster smoke and the cluster test share: the images every lab host needs, and waiting.
import { join } from "node:path";
import { type Host, type Lab, MAIN_DOCKER_HOST, dockerAt, run } from "./hosts.js";
import { buildServerImageInfo, repoRoot } from "./server-image.js";

/** The Node sandbox image's tag the server computes (the same node binary runs it in the image). */
export async function sandboxNodeTag(): Promise<string> {
  const mod = (await import(join(repoRoot, "dist", "sandbox", "docker", "image-builder.js"))) as { defaultImageTag(runtime: string): string };
  return mod.defaultImageTag("node");
}

export async function onMain(tag: string): Promise<boolean> {
  return (await dockerAt(MAIN_DOCKER_HOST, ["image", "inspect", "--format", "{{.Id}}", tag])).code === 0;
}


/** Images onto every host: saved from the main engine when it has them, otherwise built in the manager. */
export async function provideImages(lab: Lab, timed: <T>(label: string, f: () => Promise<T>) => Promise<T> = (_l, f) => f(), log: (line: string) => void = () => {}): Promise<{ server: string; sandbox: string }> {
  const manager = lab.manager!;
  const sandbox = await sandboxNodeTag();
  const fromMain: string[] = [];
  const fromManager: string[] = [];

  let server: string;
  const hash = (await import("./server-image.js")).serverImageHash;
  const wanted = `codebox-mcp-server:offline-${await hash()}`;
  if (await onMain(wanted)) {
    server = wanted;
    fromMain.push(server);
  } else {
    server = (await timed("build server image (in the manager's engine)", () => buildServerImageInfo(manager.dockerHost, { log }))).tag;
    fromManager.push(server);
  }
  if (await onMain(sandbox)) fromMain.push(sandbox);
  else {
    await timed("build sandbox node image (in the manager's engine)", async () => {
      await run(process.execPath, [join(repoRoot, "dist", "cli.js"), "image", "build", "node", "--offline"], {
        env: { ...process.env, DOCKER_HOST: manager.dockerHost, CODEBOX_LOG_LEVEL: "warn" },
        check: true,
        timeoutMs: 300_000,
      });
    });
    fromManager.push(sandbox);
  }
  if (fromMain.length > 0) await timed(`load ${fromMain.join(" + ")} from the main engine into ${lab.hosts.length} engines`, () => lab.loadImages(fromMain));
  if (fromManager.length > 0) await timed(`load ${fromManager.join(" + ")} from ${manager.name} into the others`, () => lab.loadImages(fromManager, lab.hosts, { from: manager }));
  return { server, sandbox };
}

export async function waitFor<T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}


export async function imageSize(lab: Lab, h: Host, tag: string): Promise<number> {
  return Number((await lab.docker(h, ["image", "inspect", "--format", "{{.Size}}", tag], { check: true })).stdout.trim());
}
