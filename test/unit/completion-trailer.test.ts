
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CompletionTrailer, partialMarkerAt } from "../../src/protocol/completion-trailer.js";
import { COMPLETION_TAG, completionPrefix, encodePayload, type RunnerPayload } from "../../src/protocol/runner.js";
import { collector } from "./fakes.js";

const NONCE = "0123456789abcdef0123456789abcdef";
const PREFIX = completionPrefix(NONCE);
const MARKER = Buffer.from(PREFIX, "latin1");


function trailerWithSink(prefix = PREFIX) {
  const out = collector();
  return { trailer: new CompletionTrailer(prefix, out.sink), out };
}

/** Writes every chunk and waits until the trailer has processed them all (it stays open). */
async function feed(trailer: CompletionTrailer, chunks: Array<Buffer | string>): Promise<void> {
  for (const c of chunks) trailer.write(typeof c === "string" ? Buffer.from(c, "latin1") : c);
  await new Promise<void>((resolve, reject) => trailer.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
}

/** Splits `buf` at the given (unsorted, possibly repeated) offsets. */
function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.min(c, buf.length)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    parts.push(buf.subarray(from, p));
    from = p;
  }
  parts.push(buf.subarray(from));
  return parts;
}

const line = (code: number | string) => Buffer.from(`${PREFIX}${code}\n`, "latin1");
const text = (s: string) => Buffer.from(s, "latin1");

/** Arbitrary output that holds no complete marker (random bytes essentially never do; this makes sure). */
const output = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)).filter((b) => b.indexOf(MARKER) < 0);

describe("completion trailer", () => {
  it("passes output through byte-identical when no trailer arrives, whatever the chunking", async () => {
    await fc.assert(
      fc.asyncProperty(output, fc.array(fc.nat({ max: 300 }), { maxLength: 20 }), async (bytes, cuts) => {
        const { trailer, out } = trailerWithSink();
        await feed(trailer, splitAt(bytes, cuts));
        trailer.flushHeld();
        expect(out.bytes().equals(bytes)).toBe(true);
        expect(trailer.code).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it("passes output without a NUL on at once, holding nothing back", async () => {
    const { trailer, out } = trailerWithSink();
    const body = text("hello\nworld: 0\nCODEBOX-DONE:0\n");
    await feed(trailer, [body]);
    expect(out.bytes().equals(body)).toBe(true);
  });

  it.each([
    ["at the start", "", "after\n"],
    ["in the middle", "before\n", "after\n"],
    ["at the end", "before\n", ""],
    ["as the only output", "", ""],
  ])("removes the completion line %s and reports its code", async (_where, before, after) => {
    const { trailer, out } = trailerWithSink();
    await feed(trailer, [Buffer.concat([text(before), line(7), text(after)])]);
    expect(out.bytes().toString("latin1")).toBe(before + after);
    expect(trailer.code).toBe(7);
    await expect(trailer.done).resolves.toBe(7);
  });

  it("finds the completion line split into two chunks at every byte boundary", async () => {
    const whole = Buffer.concat([text("out\n"), line(42), text("tail")]);
    for (let cut = 0; cut <= whole.length; cut++) {
      const { trailer, out } = trailerWithSink();
      await feed(trailer, [whole.subarray(0, cut), whole.subarray(cut)]);
      expect(out.bytes().toString("latin1"), `cut at ${cut}`).toBe("out\ntail");
      expect(trailer.code, `cut at ${cut}`).toBe(42);
    }
  });

  it("finds the completion line written one byte at a time", async () => {
    const whole = Buffer.concat([text("a\u0000b"), line(3), text("z")]);
    const { trailer, out } = trailerWithSink();
    await feed(
      trailer,
      [...whole].map((b) => Buffer.from([b])),
    );
    expect(out.bytes().toString("latin1")).toBe("a\u0000bz");
    expect(trailer.code).toBe(3);
  });

  it("property: any chunking of before + line + after yields before + after and the code", async () => {
    await fc.assert(
      fc.asyncProperty(
        output,
        fc.integer({ min: -2147483648, max: 2147483647 }),
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
        fc.array(fc.nat({ max: 600 }), { maxLength: 30 }),
        async (before, code, after, cuts) => {
          const { trailer, out } = trailerWithSink();
          await feed(trailer, splitAt(Buffer.concat([before, line(code), after]), cuts));
          trailer.flushHeld();
          expect(out.bytes().equals(Buffer.concat([before, after]))).toBe(true);
          expect(trailer.code).toBe(code);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("passes NUL bytes of ordinary output on as soon as they cannot start the marker", async () => {
    const { trailer, out } = trailerWithSink();
    await feed(trailer, ["x\u0000y\u0000\u0000z"]);
    expect(out.bytes().toString("latin1")).toBe("x\u0000y\u0000\u0000z");
  });

  it("holds back a partial marker at the end of a chunk, then hands it on when more output shows it was not one", async () => {
    const { trailer, out } = trailerWithSink();
    const partial = PREFIX.slice(0, 10);
    await feed(trailer, [`data${partial}`]);
    expect(out.bytes().toString("latin1")).toBe("data");
    await feed(trailer, ["!more"]);
    expect(out.bytes().toString("latin1")).toBe(`data${partial}!more`);
    expect(trailer.code).toBeUndefined();
  });

  it("flushHeld hands on a held partial marker when the stream ends", async () => {
    const { trailer, out } = trailerWithSink();
    const partial = PREFIX.slice(0, PREFIX.length - 1);
    await feed(trailer, [`end${partial}`]);
    expect(out.bytes().toString("latin1")).toBe("end");
    trailer.flushHeld();
    expect(out.bytes().toString("latin1")).toBe(`end${partial}`);
    trailer.flushHeld(); // nothing is handed on twice
    expect(out.bytes().toString("latin1")).toBe(`end${partial}`);
  });

  it("flushHeld hands on a marker whose code never got its newline", async () => {
    const { trailer, out } = trailerWithSink();
    await feed(trailer, [`x${PREFIX}12`]);
    expect(out.bytes().toString("latin1")).toBe("x");
    trailer.flushHeld();
    expect(out.bytes().toString("latin1")).toBe(`x${PREFIX}12`);
    expect(trailer.code).toBeUndefined();
  });

  it.each([
    ["a non-numeric code", "abc\n"],
    ["an empty code", "\n"],
    ["a code with a carriage return", "0\r\n"],
    ["a code with a plus sign", "+1\n"],
    ["eleven digits", "12345678901\n"],
    ["no newline within 12 bytes", "123456789012345\n"],
    ["a code followed by a space", "0 \n"],
  ])("treats a marker with %s as output and loses nothing", async (_what, rest) => {
    const { trailer, out } = trailerWithSink();
    const body = `pre${PREFIX}${rest}post`;
    await feed(trailer, [body]);
    trailer.flushHeld();
    expect(out.bytes().toString("latin1")).toBe(body);
    expect(trailer.code).toBeUndefined();
  });

  it("still finds the real completion line after a fake one", async () => {
    const { trailer, out } = trailerWithSink();
    await feed(trailer, [`${PREFIX}nope\nmiddle`, line(5), "end"]);
    expect(out.bytes().toString("latin1")).toBe(`${PREFIX}nope\nmiddleend`);
    expect(trailer.code).toBe(5);
  });

  it("passes on a completion line carrying another run's nonce as output", async () => {
    const { trailer, out } = trailerWithSink();
    const foreign = `${completionPrefix("fedcba9876543210fedcba9876543210")}0\n`;
    await feed(trailer, [`a${foreign}b`]);
    trailer.flushHeld();
    expect(out.bytes().toString("latin1")).toBe(`a${foreign}b`);
    expect(trailer.code).toBeUndefined();
  });

  it.each([-1, -2147483648, 0, 255, 2147483647])("reports exit code %i", async (code) => {
    const { trailer } = trailerWithSink();
    await feed(trailer, [line(code)]);
    expect(trailer.code).toBe(code);
    await expect(trailer.done).resolves.toBe(code);
  });

  it("counts only the first completion line: everything after it is output", async () => {
    const { trailer, out } = trailerWithSink();
    await feed(trailer, [line(1), "after", line(2)]);
    await feed(trailer, [line(3)]);
    expect(trailer.code).toBe(1);
    await expect(trailer.done).resolves.toBe(1);
    expect(out.bytes().equals(Buffer.concat([text("after"), line(2), line(3)]))).toBe(true);
  });

  it("does not resolve done without a completion line", async () => {
    const { trailer } = trailerWithSink();
    await feed(trailer, [`${PREFIX}x\n`, PREFIX.slice(0, 20)]);
    const settled = await Promise.race([trailer.done.then(() => "resolved"), new Promise((r) => setTimeout(() => r("pending"), 20))]);
    expect(settled).toBe("pending");
  });

  describe("against hostile output", () => {
    it("hands on megabytes that follow a marker without a newline as they arrive, holding only a few bytes", async () => {
      const { trailer, out } = trailerWithSink();
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      const chunks = [MARKER, ...Array.from({ length: 80 }, () => chunk)]; // marker + 5 MiB
      const total = chunks.reduce((n, c) => n + c.length, 0);
      await feed(trailer, chunks);
      expect(out.length()).toBeGreaterThanOrEqual(total - 100);
      trailer.flushHeld();
      expect(out.length()).toBe(total);
      expect(trailer.code).toBeUndefined();
    });

    it("keeps held bytes bounded when every chunk ends in a marker and a partial code", async () => {
      const { trailer, out } = trailerWithSink();
      let total = 0;
      for (let i = 0; i < 500; i++) {
        const c = text(`${"y".repeat(100)}${PREFIX}1234567890`); // 10 digits, no newline yet
        total += c.length;
        trailer.write(c);
        // Held: at most the marker and 11 code bytes, never the run's whole output.
        expect(total - out.length()).toBeLessThanOrEqual(MARKER.length + 11);
      }
      await feed(trailer, []);
      trailer.flushHeld();
      expect(out.length()).toBe(total);
    });

    it("passes on twenty thousand fake markers unchanged", async () => {
      const { trailer, out } = trailerWithSink();
      const body = text(`${PREFIX}z`.repeat(20_000));
      await feed(trailer, [body]);
      trailer.flushHeld();
      expect(out.bytes().equals(body)).toBe(true);
      expect(trailer.code).toBeUndefined();
    });
  });
});

describe("partialMarkerAt", () => {
  it("is the length of the longest end of the buffer that begins the marker", () => {
    expect(partialMarkerAt(text(`abc${PREFIX.slice(0, 5)}`), MARKER)).toBe(5);
    expect(partialMarkerAt(text("abc\u0000"), MARKER)).toBe(1);
    expect(partialMarkerAt(text("abc"), MARKER)).toBe(0);
    expect(partialMarkerAt(Buffer.alloc(0), MARKER)).toBe(0);
  });

  it("never counts the whole marker (that is a match, not a partial one)", () => {
    expect(partialMarkerAt(MARKER, MARKER)).toBe(0);
  });

  it("property: the suffix it reports begins the marker and no longer suffix does", () => {
    const bytes = fc.array(fc.constantFrom(...MARKER.subarray(0, 8), 0x78), { maxLength: 40 }).map((a) => Buffer.from(a));
    const withTail = fc.tuple(bytes, fc.nat({ max: MARKER.length - 1 })).map(([b, k]) => Buffer.concat([b, MARKER.subarray(0, k)]));
    fc.assert(
      fc.property(withTail, (buf) => {
        const k = partialMarkerAt(buf, MARKER);
        expect(k).toBeLessThan(MARKER.length);
        expect(buf.subarray(buf.length - k).equals(MARKER.subarray(0, k))).toBe(true);
        for (let j = k + 1; j <= Math.min(buf.length, MARKER.length - 1); j++) {
          expect(buf.subarray(buf.length - j).equals(MARKER.subarray(0, j))).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("completion prefix", () => {
  it("is the tag, the nonce and a colon, and begins with NUL", () => {
    expect(PREFIX).toBe(`${COMPLETION_TAG}${NONCE}:`);
    expect(PREFIX.charCodeAt(0)).toBe(0);
  });

  it.each([16, 64])("accepts a nonce of %i lowercase hex digits", (n) => {
    expect(completionPrefix("a".repeat(n))).toBe(`${COMPLETION_TAG}${"a".repeat(n)}:`);
  });

  it.each([
    ["too short", "0123456789abcde"],
    ["too long", "a".repeat(65)],
    ["empty", ""],
    ["uppercase", "0123456789ABCDEF"],
    ["not hex", "0123456789abcdeg"],
    ["holding a colon", "0123456789abcdef:0"],
    ["holding a newline", "0123456789abcdef\n"],
    ["holding a NUL", "0123456789abcdef\u0000"],
  ])("rejects a nonce that is %s", (_what, nonce) => {
    expect(() => completionPrefix(nonce)).toThrow(/nonce/);
  });
});

describe("runner payload", () => {
  const payload = (code: string, env: Record<string, string> = {}): RunnerPayload => ({ code, language: "python", env, completion: PREFIX });

  /**
   * One line: its only newline byte (in UTF-8, as it goes down stdin) is the last one, it holds
   * no CR, and the runners' reading of it (bytes up to the first newline, decoded as UTF-8) parses back to `p`.
   */
  function expectOneLine(encoded: string, p: RunnerPayload) {
    const bytes = Buffer.from(encoded, "utf8");
    expect(bytes.indexOf(10)).toBe(bytes.length - 1);
    expect(bytes.includes(13)).toBe(false);
    expect(JSON.parse(bytes.subarray(0, bytes.indexOf(10)).toString("utf8"))).toEqual(p);
  }

  it("is one line even when the code holds \\n, \\r, U+2028 and U+2029, and parses back to the payload", () => {
    const p = payload('print("a")\nprint("b")\r\nx = "\u2028\u2029"\r', { CODEBOX_TOKEN: "t\nk" });
    const encoded = encodePayload(p);
    expectOneLine(encoded, p);
  });

  it("property: any code and env is one line that round-trips", () => {
    const nasty = fc.constantFrom("\n", "\r", "\u2028", "\u2029", "\u0085", "\u0000", "\ud800", '"', "\\");
    const code = fc.array(fc.oneof(nasty, fc.string({ unit: "binary", maxLength: 10 })), { maxLength: 20 }).map((a) => a.join(""));
    fc.assert(
      fc.property(code, fc.dictionary(fc.string({ maxLength: 8 }), code, { maxKeys: 3 }), (c, env) => {
        const p = payload(c, env);
        const encoded = encodePayload(p);
        expectOneLine(encoded, p);
      }),
      { numRuns: 300 },
    );
  });
});
