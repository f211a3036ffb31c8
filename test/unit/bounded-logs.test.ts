import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { cappedFetch } from "../../src/bridge/capped-fetch.js";
import { LOG_BOUNDS, bounded, cut } from "../../src/shared/bounded.js";
import { createLogger } from "../../src/shared/logger.js";
import { FileAuditLog } from "../../src/stores/audit.js";

const dir = mkdtempSync(join(tmpdir(), "codebox-bounded-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture() {
  const lines: string[] = [];
  return { logger: createLogger({ level: "debug", write: (l) => lines.push(l) }), lines };
}

describe("bounded values", () => {
  it("cuts a long string and says how much was cut", () => {
    expect(cut("abcdef", 3)).toBe("abc…(+3 chars)");
    expect(cut("abc", 3)).toBe("abc");
  });

  it("keeps any value's JSON under a size that depends only on the bounds (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.string({ minLength: 0, maxLength: 5000 }), (value, big) => {
        const text = JSON.stringify(bounded({ value, big, nested: [[[[[big]]]]] }));
        expect(text.length).toBeLessThan(60_000);
      }),
      { numRuns: 300 },
    );
  });

  it("limits nesting, array length and object keys", () => {
    const deep = { a: { b: { c: { d: { e: "x" } } } } };
    expect(JSON.stringify(bounded(deep))).toContain("[…]");
    const arr = bounded(Array.from({ length: 100 }, (_, i) => i)) as unknown[];
    expect(arr).toHaveLength(LOG_BOUNDS.maxItems + 1);
    const obj = bounded(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]))) as Record<string, unknown>;
    expect(Object.keys(obj)).toHaveLength(LOG_BOUNDS.maxItems + 1);
  });

  it("keeps an error's name, message and code, cut", () => {
    const err = Object.assign(new Error("m".repeat(10_000)), { code: "EPIPE" });
    const out = bounded(err) as { name: string; message: string; code: string };
    expect(out.name).toBe("Error");
    expect(out.code).toBe("EPIPE");
    expect(out.message.length).toBeLessThan(LOG_BOUNDS.maxString + 30);
  });

  it("never throws on a hostile object (throwing getter)", () => {
    const hostile = Object.defineProperty({}, "x", {
      enumerable: true,
      get() {
        throw new Error("boom");
      },
    });
    expect(bounded({ hostile })).toEqual({ hostile: { x: "[?]" } });
  });
});

describe("the logger", () => {
  it("writes a megabyte tool name as a line of bounded size", () => {
    const { logger, lines } = capture();
    logger.warn("bridge call refused", { server: "s".repeat(1 << 20), tool: "t".repeat(1 << 20), runId: "r1" });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.length).toBeLessThan(2_000);
    const record = JSON.parse(lines[0]!) as Record<string, string>;
    expect(record.runId).toBe("r1");
    expect(record.server).toMatch(/^s{300}…\(\+1048276 chars\)$/);
  });

  it("cuts a huge message and bound fields too", () => {
    const { logger, lines } = capture();
    logger.child({ userId: "u".repeat(100_000) }).error("x".repeat(100_000));
    expect(lines[0]!.length).toBeLessThan(2_000);
  });

  it("logs an error field as name, message and code", () => {
    const { logger, lines } = capture();
    logger.error("failed", { err: Object.assign(new Error("nope"), { code: "ENOENT" }) });
    expect(JSON.parse(lines[0]!).err).toEqual({ name: "Error", message: "nope", code: "ENOENT" });
  });
});

describe("the audit log", () => {
  it("caps its files under a flood of hostile records and keeps the newest", async () => {
    const path = join(dir, "flood", "audit.log");
    const audit = new FileAuditLog({ path, maxBytes: 256 * 1024, maxFiles: 2, logger: createLogger({ level: "silent" }) });
    const huge = "x".repeat(1 << 20);
    for (let i = 0; i < 20_000; i++) {
      audit.write({ kind: "refusal", runId: `r${i}`, status: 403, reason: "server-not-allowed", server: huge, tool: huge });
      if (i % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    await audit.close();
    const files = readdirSync(join(dir, "flood")).sort();
    expect(files).toEqual(["audit.log", "audit.log.1", "audit.log.2"]);
    const total = files.reduce((n, f) => n + statSync(join(dir, "flood", f)).size, 0);
    expect(total).toBeLessThanOrEqual(3 * 256 * 1024);
    const last = readFileSync(path, "utf8").trim().split("\n").at(-1)!;
    const record = JSON.parse(last) as { runId: string; server: string };
    expect(record.server.length).toBeLessThan(600);
    expect(Number(record.runId.slice(1))).toBeGreaterThan(15_000);
  });

  it("continues an existing file's size count after a restart", async () => {
    const path = join(dir, "restart", "audit.log");
    const logger = createLogger({ level: "silent" });
    const first = new FileAuditLog({ path, maxBytes: 64 * 1024, maxFiles: 1, logger });
    for (let i = 0; i < 100; i++) first.write({ kind: "refusal", runId: `a${i}`, status: 401, reason: "forged" });
    await first.close();
    const before = statSync(path).size;
    expect(before).toBeGreaterThan(100 * 50);
    const second = new FileAuditLog({ path, maxBytes: 64 * 1024, maxFiles: 1, logger });
    second.write({ kind: "refusal", runId: "b", status: 401, reason: "forged" });
    await second.close();
    expect(second.activeBytes).toBe(statSync(path).size);
    expect(second.activeBytes - before).toBeLessThan(300);
  });
});

describe("HTTP upstream responses", () => {
  const fake = (body: BodyInit, headers: Record<string, string>) => async () => new Response(body, { headers });

  it("refuses a response that declares more than the cap", async () => {
    const f = cappedFetch(1024, fake("x".repeat(10), { "content-length": "5000" }));
    await expect(f("http://upstream.test/")).rejects.toThrow(/5000 bytes; the limit is 1024/);
  });

  it("cuts off a response body that grows past the cap", async () => {
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new Uint8Array(512).fill(97));
      },
    });
    const res = await cappedFetch(4096, fake(stream, { "content-type": "application/json" }))("http://upstream.test/");
    await expect(res.text()).rejects.toThrow(/passed 4096 bytes/);
  });

  it("counts an event stream per event, so a long session of small events is fine and one huge event is not", async () => {
    const small = `data: ${"y".repeat(100)}\n\n`;
    const many = await cappedFetch(1024, fake(small.repeat(200), { "content-type": "text/event-stream" }))("http://upstream.test/");
    expect((await many.text()).length).toBe(small.length * 200);
    const huge = await cappedFetch(1024, fake(`data: ${"z".repeat(5000)}\n\n`, { "content-type": "text/event-stream" }))("http://upstream.test/");
    await expect(huge.text()).rejects.toThrow(/passed 1024 bytes/);
  });
});
