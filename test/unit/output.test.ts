import { describe, expect, it } from "vitest";
import { CappedOutput, decodeCapped, languageOutOfMemory } from "../../src/sandbox/output.js";

describe("CappedOutput", () => {
  it("keeps everything under the cap", () => {
    const o = new CappedOutput(10);
    o.write(Buffer.from("hello"));
    expect(o.text()).toBe("hello");
    expect(o.truncated).toBe(false);
    expect(o.totalBytes).toBe(5);
  });

  it("keeps the first cap bytes and counts the rest", () => {
    const o = new CappedOutput(4);
    o.write(Buffer.from("abc"));
    o.write(Buffer.from("defgh"));
    o.write(Buffer.from("ij"));
    expect(o.text()).toBe("abcd");
    expect(o.truncated).toBe(true);
    expect(o.totalBytes).toBe(10);
  });

  it("drops a multi-byte character split by the cut, and only then", () => {
    const euro = Buffer.from("a€", "utf8"); // 61 e2 82 ac
    expect(decodeCapped(euro.subarray(0, 3), true)).toBe("a");
    expect(decodeCapped(euro.subarray(0, 2), true)).toBe("a");
    expect(decodeCapped(euro, true)).toBe("a€");
    expect(decodeCapped(Buffer.from([0x61, 0xff]), false)).toBe("a\uFFFD");
  });
});

describe("running out of memory inside the language runtime", () => {
  it("recognises V8's heap-limit abort and Python's uncaught MemoryError, nothing else", () => {
    expect(languageOutOfMemory(134, "\n<--- Last few GCs --->\nFATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n")).toBe(true);
    expect(languageOutOfMemory(1, "Traceback (most recent call last):\n  File \"/workspace/__codebox_main__.py\", line 1, in <module>\nMemoryError\n")).toBe(true);
    expect(languageOutOfMemory(1, "Traceback (most recent call last):\nMemoryError: cannot allocate\n")).toBe(true);
    expect(languageOutOfMemory(0, "MemoryError\n")).toBe(false);
    expect(languageOutOfMemory(1, "print('MemoryError')\nValueError: x\n")).toBe(false);
    expect(languageOutOfMemory(1, "Error: boom\n")).toBe(false);
  });
});
