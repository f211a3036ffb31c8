// Test doubles shared by the unit tests (no engine).
import { Writable } from "node:stream";
import type { SandboxBackend } from "../../src/sandbox/backend.js";

/** A Writable that keeps every chunk it is given. */
export function collector() {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks), length: () => chunks.reduce((n, c) => n + c.length, 0) };
}

/**
 * A SandboxBackend whose every method throws `unusedMessage`, except those given: a test passes
 * only what the code under test may call, so any other call fails the test.
 */
export function backendWith(methods: Partial<SandboxBackend>, unusedMessage: string): SandboxBackend {
  const unused = () => {
    throw new Error(unusedMessage);
  };
  return {
    prepare: unused,
    run: unused,
    discard: unused,
    engineInfo: unused,
    imageTag: unused,
    imageExists: unused,
    ensureImage: unused,
    buildImage: unused,
    checkSeccomp: unused,
    sandboxUid: unused,
    activeContainers: unused,
    reapOrphans: unused,
    close: unused,
    ...methods,
  };
}
