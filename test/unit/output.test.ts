import { describe, expect, it } from "vitest";
import { CappedOutput, decodeCapped } from "../../src/sandbox/output.js";

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
