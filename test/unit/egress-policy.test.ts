// The egress allowlist (src/egress/policy.ts): parsing the operator's and the model's entries,
// one spelling per address, wildcard and port matching, narrowing a policy (never widening it),
// and the addresses no name may lead to. Pure; the proxy that enforces it has its own file.
import { isIP } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AllowEntry, EgressPolicy, forbiddenAddress, normaliseAddress, parseAllowEntry } from "../../src/egress/policy.js";
import { InputError } from "../../src/shared/errors.js";

const notAName = (raw: string) => `egress entry "${raw.slice(0, 100)}" is not a host name, "*.domain", or an address, optionally with ":port"`;
const badPort = (raw: string) => `egress entry "${raw.slice(0, 100)}": the port must be 1-65535`;

/** The error `f` throws (failing the test when it throws none). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  expect.unreachable("expected a throw");
}

function expectInputError(f: () => unknown, message: string): void {
  const err = thrown(f);
  expect(err).toBeInstanceOf(InputError);
  expect((err as InputError).code).toBe("CODEBOX_INPUT_INVALID");
  expect((err as InputError).message).toBe(message);
}

describe("parseAllowEntry", () => {
  it.each<[string, AllowEntry]>([
    ["api.example.com", { host: "api.example.com", port: undefined, address: false }],
    ["  API.Example.COM  ", { host: "api.example.com", port: undefined, address: false }],
    ["api.example.com.", { host: "api.example.com", port: undefined, address: false }],
    ["api.example.com:8443", { host: "api.example.com", port: 8443, address: false }],
    ["api.example.com.:443", { host: "api.example.com", port: 443, address: false }],
    ["localhost", { host: "localhost", port: undefined, address: false }],
    ["_dmarc.example.com", { host: "_dmarc.example.com", port: undefined, address: false }],
    ["xn--bcher-kva.example", { host: "xn--bcher-kva.example", port: undefined, address: false }],
    ["*.example.com", { host: "*.example.com", port: undefined, address: false }],
    ["*.Example.com.:443", { host: "*.example.com", port: 443, address: false }],
    ["*.co.uk", { host: "*.co.uk", port: undefined, address: false }],
    ["93.184.216.34", { host: "93.184.216.34", port: undefined, address: true }],
    ["127.0.0.1:8080", { host: "127.0.0.1", port: 8080, address: true }],
    ["10.0.0.1:1", { host: "10.0.0.1", port: 1, address: true }],
    ["10.0.0.1:65535", { host: "10.0.0.1", port: 65535, address: true }],
    ["10.0.0.1:0080", { host: "10.0.0.1", port: 80, address: true }],
    ["::1", { host: "0:0:0:0:0:0:0:1", port: undefined, address: true }],
    ["[::1]", { host: "0:0:0:0:0:0:0:1", port: undefined, address: true }],
    ["[::1]:8080", { host: "0:0:0:0:0:0:0:1", port: 8080, address: true }],
    ["[2606:2800:220:1::1]:443", { host: "2606:2800:220:1:0:0:0:1", port: 443, address: true }],
    ["2001:DB8::A", { host: "2001:db8:0:0:0:0:0:a", port: undefined, address: true }],
    ["[::ffff:127.0.0.1]:80", { host: "127.0.0.1", port: 80, address: true }],
    // A bare IPv6 address takes no port: its last group is a group, not a port.
    ["::1:80", { host: "0:0:0:0:0:0:1:80", port: undefined, address: true }],
    // Node's isIP rejects leading zeros, so these are not addresses; all-digit labels are valid DNS labels.
    ["127.000.000.001", { host: "127.000.000.001", port: undefined, address: false }],
    ["2130706433", { host: "2130706433", port: undefined, address: false }],
  ])("parses %j", (raw, entry) => {
    expect(parseAllowEntry(raw)).toEqual(entry);
  });

  it("takes a 63-character label and a 253-character name, and no longer", () => {
    const label63 = "a".repeat(63);
    expect(parseAllowEntry(`${label63}.com`).host).toBe(`${label63}.com`);
    const name253 = `${"a".repeat(61)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}`;
    expect(name253).toHaveLength(253);
    expect(parseAllowEntry(name253).host).toBe(name253);
    expect(parseAllowEntry(`*.${name253}`).host).toBe(`*.${name253}`);
    const label64 = `${"a".repeat(64)}.com`;
    expectInputError(() => parseAllowEntry(label64), notAName(label64));
    const name254 = `a${name253}`;
    expectInputError(() => parseAllowEntry(name254), notAName(name254));
  });

  it.each([
    "",
    "   ",
    "*",
    "*.",
    "*.com",
    "*.com.",
    "**.example.com",
    "*.*.example.com",
    "a.*.example.com",
    "*example.com",
    ".example.com",
    "example..com",
    "-a.example.com",
    "a-.example.com",
    "exa mple.com",
    "exa_mple.com",
    "user@example.com",
    "http://example.com",
    "example.com/path",
    "example.com:",
    "example.com:http",
    "example.com:-1",
    "example.com:80:90",
    "[::1]:80:90",
    "[::1]x",
    "1.2.3.4/24",
    "::1/128",
    "fe80::1%",
    "ex\u00e4mple.com",
  ])("refuses %j as not a host name, wildcard or address", (raw) => {
    expectInputError(() => parseAllowEntry(raw), notAName(raw));
  });

  it.each(["example.com:0", "example.com:65536", "example.com:99999999999999999999", "10.0.0.1:0", "[::1]:0", "[::1]:70000", "*.example.com:100000"])("refuses %j for its port", (raw) => {
    expectInputError(() => parseAllowEntry(raw), badPort(raw));
  });

  it("quotes at most 100 characters of the entry in its message", () => {
    const raw = "x".repeat(300);
    expectInputError(() => parseAllowEntry(raw), notAName(raw));
    expect(notAName(raw)).toContain(`"${"x".repeat(100)}"`);
    expect(notAName(raw)).not.toContain("x".repeat(101));
  });

  it("refuses an IPv6 address whose zone id holds colons with an InputError", () => {
    expect(isIP("1:2:3:4:5::6%a:b:c:d:e")).toBe(6);
    expect(() => parseAllowEntry("1:2:3:4:5::6%a:b:c:d:e")).toThrow(InputError);
  });

  it("never throws anything but InputError, on any string (property)", () => {
    const check = (raw: string) => {
      try {
        parseAllowEntry(raw);
      } catch (err) {
        expect(err).toBeInstanceOf(InputError);
      }
    };
    // Zone ids ("%") are left out of the address-shaped alphabet: see the known bug above.
    const shaped = fc.array(fc.constantFrom(..."0123456789abcdefABCDEF:.[]*-_ xyz"), { maxLength: 45 }).map((cs) => cs.join(""));
    fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: "binary" }), shaped), check), { numRuns: 2000 });
  });

  it("gives an entry that reads back the same from the policy's own description (property)", () => {
    const label = fc.constantFrom("a", "b", "api", "example", "com", "x-1");
    const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join("."));
    const host = fc.oneof(
      name,
      name.map((n) => `*.${n}`),
      fc.constantFrom("127.0.0.1", "10.0.0.1", "::1", "[::1]", "::ffff:10.0.0.1", "2001:db8::1", "FE80::A"),
    );
    const raw = fc.tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined })).map(([h, p]) => {
      if (p === undefined) return h;
      return isIP(h) === 6 ? `[${h}]:${p}` : `${h}:${p}`;
    });
    let parsed = 0;
    fc.assert(
      fc.property(raw, (r) => {
        let entry: AllowEntry;
        try {
          entry = parseAllowEntry(r);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
          return;
        }
        parsed++;
        const again = parseAllowEntry(EgressPolicy.forUser([r]).describe());
        expect(again).toEqual(entry);
      }),
      { numRuns: 500 },
    );
    expect(parsed).toBeGreaterThan(250);
  });
});

describe("normaliseAddress", () => {
  it.each<[string, string | undefined]>([
    ["127.0.0.1", "127.0.0.1"],
    ["93.184.216.34", "93.184.216.34"],
    ["[127.0.0.1]", "127.0.0.1"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["::FFFF:127.0.0.1", "127.0.0.1"],
    ["::ffff:7f00:1", "127.0.0.1"],
    ["::ffff:a9fe:a9fe", "169.254.169.254"],
    ["[::ffff:10.0.0.1]", "10.0.0.1"],
    ["::1", "0:0:0:0:0:0:0:1"],
    ["[::1]", "0:0:0:0:0:0:0:1"],
    ["0:0:0:0:0:0:0:1", "0:0:0:0:0:0:0:1"],
    ["0000:0000:0000:0000:0000:0000:0000:0001", "0:0:0:0:0:0:0:1"],
    ["::", "0:0:0:0:0:0:0:0"],
    ["2001:DB8::A", "2001:db8:0:0:0:0:0:a"],
    ["2001:db8:0:0:0:0:0:a", "2001:db8:0:0:0:0:0:a"],
    ["fe80::1", "fe80:0:0:0:0:0:0:1"],
    ["1::", "1:0:0:0:0:0:0:0"],
    ["::1.2.3.4", "0:0:0:0:0:0:102:304"],
    ["64:ff9b::10.0.0.1", "64:ff9b:0:0:0:0:a00:1"],
    ["2606:2800:220:1::1", "2606:2800:220:1:0:0:0:1"],
    // Not addresses to Node's isIP: leading zeros, the 32-bit integer, short forms, names.
    ["127.000.000.001", undefined],
    ["0177.0.0.1", undefined],
    ["2130706433", undefined],
    ["127.1", undefined],
    ["256.0.0.1", undefined],
    ["localhost", undefined],
    ["", undefined],
    ["[]", undefined],
    ["[::1", undefined],
    ["::1]", undefined],
    [":::1", undefined],
  ])("%j -> %j", (text, canonical) => {
    expect(normaliseAddress(text)).toBe(canonical);
  });

  it("confirms that Node's isIP refuses leading-zero IPv4, so 127.000.000.001 is no address here", () => {
    expect(isIP("127.000.000.001")).toBe(0);
    expect(isIP("127.0.0.01")).toBe(0);
  });

  it("gives every spelling of one IPv6 address the same canonical form (property)", () => {
    const group = fc.integer({ min: 0, max: 0xffff });
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), fc.boolean(), (groups, upper) => {
        // Keep away from ::ffff:0:0/96, which is folded to IPv4.
        fc.pre(!(groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff));
        const full = groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
        const short = groups.map((g) => g.toString(16)).join(":");
        const canonical = short;
        for (const spelling of [full, short, `[${short}]`, upper ? full.toUpperCase() : full]) {
          expect(normaliseAddress(spelling)).toBe(canonical);
        }
        // The longest run of zero groups, compressed.
        let best = [-1, 0];
        for (let i = 0; i < 8; ) {
          let j = i;
          while (j < 8 && groups[j] === 0) j++;
          if (j - i > best[1]!) best = [i, j - i];
          i = j === i ? i + 1 : j;
        }
        if (best[1]! >= 2) {
          const [at, n] = best as [number, number];
          const compressed = `${groups.slice(0, at).map((g) => g.toString(16)).join(":")}::${groups.slice(at + n).map((g) => g.toString(16)).join(":")}`;
          expect(normaliseAddress(compressed)).toBe(canonical);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("folds every spelling of an IPv4-mapped IPv6 address to IPv4", () => {
    expect(normaliseAddress("0:0:0:0:0:ffff:7f00:1")).toBe("127.0.0.1");
  });
});

describe("EgressPolicy.allows", () => {
  const policy = EgressPolicy.forUser(["*.example.com", "api.other.org:8443", "Exact.Test"], ["127.0.0.1:8080", "[::1]", "10.0.0.1:443"]);

  it("describes its entries", () => {
    expect(policy.describe()).toBe("*.example.com, api.other.org:8443, exact.test, 127.0.0.1:8080, [0:0:0:0:0:0:0:1], 10.0.0.1:443");
    expect(policy.empty).toBe(false);
    expect(policy.entries).toHaveLength(6);
  });

  it.each<[string, number, boolean]>([
    // Wildcards: any depth below the domain, never the domain itself nor a name that merely ends alike.
    ["a.example.com", 443, true],
    ["a.b.example.com", 80, true],
    ["A.EXAMPLE.COM", 443, true],
    ["a.example.com.", 443, true],
    ["example.com", 443, false],
    ["badexample.com", 443, false],
    ["a.badexample.com", 443, false],
    ["example.com.evil.org", 443, false],
    ["a.example.com.evil.org", 443, false],
    [".example.com", 443, false],
    // No port in the entry: 80 and 443 only.
    ["a.example.com", 8443, false],
    ["a.example.com", 22, false],
    ["exact.test", 80, true],
    ["exact.test", 443, true],
    ["EXACT.test.", 443, true],
    ["a.exact.test", 443, false],
    ["exact.test", 8080, false],
    // A port in the entry: that port only.
    ["api.other.org", 8443, true],
    ["api.other.org", 443, false],
    ["api.other.org", 80, false],
    // Addresses match address entries, in any spelling.
    ["127.0.0.1", 8080, true],
    ["::ffff:127.0.0.1", 8080, true],
    ["[::ffff:7f00:1]", 8080, true],
    ["127.0.0.1", 80, false],
    ["::1", 443, true],
    ["[::1]", 80, true],
    ["0:0:0:0:0:0:0:1", 443, true],
    ["::1", 8080, false],
    ["10.0.0.1", 443, true],
    ["10.0.0.1", 80, false],
    ["10.0.0.2", 443, false],
    // A name never matches an address entry, nor an address a name entry.
    ["localhost", 8080, false],
    ["127.000.000.001", 8080, false],
  ])("%s:%i -> %s", (host, port, allowed) => {
    expect(policy.allows(host, port)).toBe(allowed);
  });

  it("matches an address only with an address entry and a name only with a name entry", () => {
    const names = EgressPolicy.forUser(["1.2.3.4.nip.io", "*.in-addr.arpa"]);
    expect(names.allows("1.2.3.4.nip.io", 443)).toBe(true);
    expect(names.allows("1.2.3.4", 443)).toBe(false);
    expect(names.allows("4.3.2.1.in-addr.arpa", 443)).toBe(true);
    const addresses = EgressPolicy.forUser(["1.2.3.4"]);
    expect(addresses.allows("1.2.3.4", 443)).toBe(true);
    expect(addresses.allows("1.2.3.4.nip.io", 443)).toBe(false);
  });

  it("lists an address only for an address entry on that port", () => {
    expect(policy.listsAddress("127.0.0.1", 8080)).toBe(true);
    expect(policy.listsAddress("::ffff:127.0.0.1", 8080)).toBe(true);
    expect(policy.listsAddress("127.0.0.1", 443)).toBe(false);
    expect(policy.listsAddress("::1", 80)).toBe(true);
    expect(policy.listsAddress("::1", 8080)).toBe(false);
    expect(policy.listsAddress("10.0.0.1", 443)).toBe(true);
    expect(policy.listsAddress("exact.test", 443)).toBe(false);
    expect(policy.listsAddress("not an address", 443)).toBe(false);
  });

  it("allows nothing when empty", () => {
    for (const p of [EgressPolicy.none(), EgressPolicy.forUser([])]) {
      expect(p.empty).toBe(true);
      expect(p.describe()).toBe("nothing");
      expect(p.allows("a.example.com", 443)).toBe(false);
      expect(p.allows("127.0.0.1", 80)).toBe(false);
      expect(p.listsAddress("127.0.0.1", 80)).toBe(false);
    }
  });

  it("refuses the whole list when one of the operator's entries is bad", () => {
    expectInputError(() => EgressPolicy.forUser(["ok.example.com"], ["*.com"]), notAName("*.com"));
  });
});

describe("EgressPolicy.narrow", () => {
  const operator = EgressPolicy.forUser(["*.example.com", "api.other.org:8443", "exact.test", "127.0.0.1:8080", "[::1]", "10.0.0.0"]);
  const refusal = (asked: string) =>
    `allowHosts asks for ${asked}, which this server does not allow. Allowed: *.example.com, api.other.org:8443, exact.test, 127.0.0.1:8080, [0:0:0:0:0:0:0:1], 10.0.0.0. Ask for a subset, or omit allowHosts.`;

  it("keeps the whole policy when nothing is asked", () => {
    expect(operator.narrow(undefined)).toBe(operator);
  });

  it("gives an empty policy for an empty request", () => {
    const none = operator.narrow([]);
    expect(none.empty).toBe(true);
    expect(none.allows("a.example.com", 443)).toBe(false);
    expect(none.allows("127.0.0.1", 8080)).toBe(false);
  });

  it.each<[string[], string]>([
    [["a.example.com"], "a.example.com"],
    [["a.b.example.com:443"], "a.b.example.com:443"],
    [["*.b.example.com"], "*.b.example.com"],
    [["*.example.com:80"], "*.example.com:80"],
    [["*.example.com"], "*.example.com"],
    [["api.other.org:8443"], "api.other.org:8443"],
    [["EXACT.test.", "exact.test:443"], "exact.test, exact.test:443"],
    [["127.0.0.1:8080"], "127.0.0.1:8080"],
    [["[::ffff:127.0.0.1]:8080"], "127.0.0.1:8080"],
    [["::1"], "[0:0:0:0:0:0:0:1]"],
    [["[0:0:0:0:0:0:0:1]:443"], "[0:0:0:0:0:0:0:1]:443"],
    [["10.0.0.0:80", "a.example.com:443"], "10.0.0.0:80, a.example.com:443"],
  ])("accepts the subset %j", (asked, described) => {
    const narrowed = operator.narrow(asked);
    expect(narrowed).not.toBe(operator);
    expect(narrowed.describe()).toBe(described);
  });

  it("allows only what was asked for", () => {
    const narrowed = operator.narrow(["a.example.com:443", "127.0.0.1:8080"]);
    expect(narrowed.allows("a.example.com", 443)).toBe(true);
    expect(narrowed.allows("a.example.com", 80)).toBe(false);
    expect(narrowed.allows("b.example.com", 443)).toBe(false);
    expect(narrowed.allows("exact.test", 443)).toBe(false);
    expect(narrowed.allows("127.0.0.1", 8080)).toBe(true);
    expect(narrowed.allows("::1", 443)).toBe(false);
    expect(operator.allows("b.example.com", 443)).toBe(true);
  });

  it.each<[string, string]>([
    // Another wildcard, the wildcard's own domain, or a look-alike.
    ["*.co.uk", "*.co.uk"],
    ["example.com", "example.com"],
    ["*.badexample.com", "*.badexample.com"],
    ["badexample.com", "badexample.com"],
    // Another port than the entry's.
    ["a.example.com:8080", "a.example.com:8080"],
    ["api.other.org", "api.other.org"],
    ["api.other.org:443", "api.other.org:443"],
    ["exact.test:22", "exact.test:22"],
    ["127.0.0.1", "127.0.0.1"],
    ["127.0.0.1:8081", "127.0.0.1:8081"],
    ["[::1]:8080", "[0:0:0:0:0:0:0:1]:8080"],
    // Another host.
    ["other.test", "other.test"],
    ["a.exact.test", "a.exact.test"],
    ["127.0.0.2:8080", "127.0.0.2:8080"],
    ["10.0.0.1", "10.0.0.1"],
    // A name where the operator listed an address, and an address where it listed a name.
    ["localhost:8080", "localhost:8080"],
    ["10.0.0.0.nip.io", "10.0.0.0.nip.io"],
  ])("refuses %j, which is not within the operator's list", (raw, shown) => {
    expectInputError(() => operator.narrow([raw]), refusal(shown));
  });

  it("names every asked entry beyond the list, and refuses the request as a whole", () => {
    expectInputError(() => operator.narrow(["a.example.com", "*.co.uk", "other.test:81"]), refusal("*.co.uk, other.test:81"));
  });

  it("refuses a wider wildcard than the operator's", () => {
    const deep = EgressPolicy.forUser(["*.b.example.com"]);
    expect(deep.narrow(["*.c.b.example.com"]).describe()).toBe("*.c.b.example.com");
    expectInputError(
      () => deep.narrow(["*.example.com"]),
      "allowHosts asks for *.example.com, which this server does not allow. Allowed: *.b.example.com. Ask for a subset, or omit allowHosts.",
    );
    expectInputError(
      () => deep.narrow(["b.example.com"]),
      "allowHosts asks for b.example.com, which this server does not allow. Allowed: *.b.example.com. Ask for a subset, or omit allowHosts.",
    );
  });

  it("refuses an address where the operator listed only a name", () => {
    const names = EgressPolicy.forUser(["localhost:8080"]);
    expectInputError(
      () => names.narrow(["127.0.0.1:8080"]),
      "allowHosts asks for 127.0.0.1:8080, which this server does not allow. Allowed: localhost:8080. Ask for a subset, or omit allowHosts.",
    );
  });

  it("refuses everything from a server that allows nothing", () => {
    expectInputError(
      () => EgressPolicy.none().narrow(["a.example.com"]),
      "allowHosts asks for a.example.com, which this server does not allow. Allowed: nothing. Ask for a subset, or omit allowHosts.",
    );
    expect(EgressPolicy.none().narrow([]).empty).toBe(true);
  });

  it("refuses an entry that does not parse with the parser's message", () => {
    expectInputError(() => operator.narrow(["a.example.com", "bad host"]), notAName("bad host"));
  });

  it("never yields a policy that allows what the original does not (property)", () => {
    const label = fc.constantFrom("a", "b", "ex", "com");
    const name = fc.array(label, { minLength: 1, maxLength: 3 }).map((ls) => ls.join("."));
    const addr = fc.constantFrom("127.0.0.1", "10.0.0.1", "::1", "::ffff:10.0.0.1", "0:0:0:0:0:0:0:1");
    const port = fc.option(fc.constantFrom(80, 443, 8080), { nil: undefined });
    const entry = fc
      .tuple(fc.oneof(name, name.map((n) => `*.${n}`), addr), port)
      .map(([h, p]) => (p === undefined ? h : isIP(h) === 6 ? `[${h}]:${p}` : `${h}:${p}`));
    const probe = fc.tuple(fc.oneof(name, addr, name.map((n) => `${n}.`)), fc.constantFrom(80, 443, 8080, 22));
    let narrowed = 0;
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 4 }), fc.array(entry, { maxLength: 3 }), fc.array(probe, { minLength: 1, maxLength: 20 }), (own, asked, probes) => {
        let original: EgressPolicy;
        try {
          original = EgressPolicy.forUser(own);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
          return;
        }
        // Ask for some of the operator's own entries as well, so many requests are subsets.
        let smaller: EgressPolicy;
        try {
          smaller = original.narrow([...own.slice(0, 2), ...asked]);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
          return;
        }
        narrowed++;
        for (const [h, p] of probes) {
          if (smaller.allows(h, p)) expect(original.allows(h, p)).toBe(true);
          const a = normaliseAddress(h);
          if (a && smaller.listsAddress(a, p)) expect(original.listsAddress(a, p)).toBe(true);
        }
        // Narrowing to its own list keeps a policy as it is.
        expect(original.narrow(own).describe()).toBe(original.describe());
      }),
      { numRuns: 1000 },
    );
    expect(narrowed).toBeGreaterThan(100);
  });
});

describe("forbiddenAddress", () => {
  const FORBIDDEN = "a loopback, private, link-local or reserved address";
  const COMPAT = "an IPv4-compatible IPv6 address";

  it.each<[string, string | undefined]>([
    // Public addresses may be reached.
    ["93.184.216.34", undefined],
    ["8.8.8.8", undefined],
    ["1.1.1.1", undefined],
    ["2606:2800:220:1::1", undefined],
    ["[2606:2800:220:1::1]", undefined],
    ["2a00:1450:4001:80b::200e", undefined],
    ["::ffff:93.184.216.34", undefined],
    ["100.63.255.255", undefined],
    ["100.128.0.0", undefined],
    ["172.15.255.255", undefined],
    ["172.32.0.0", undefined],
    ["169.253.255.255", undefined],
    ["11.0.0.0", undefined],
    ["223.255.255.255", undefined],
    // IPv4: unspecified, private, CGNAT, loopback, link-local (the metadata service), IETF, benchmarking, multicast, reserved, broadcast.
    ["0.0.0.0", FORBIDDEN],
    ["0.1.2.3", FORBIDDEN],
    ["10.0.0.1", FORBIDDEN],
    ["10.255.255.255", FORBIDDEN],
    ["100.64.0.1", FORBIDDEN],
    ["100.127.255.255", FORBIDDEN],
    ["127.0.0.1", FORBIDDEN],
    ["127.255.255.254", FORBIDDEN],
    ["169.254.169.254", FORBIDDEN],
    ["169.254.0.1", FORBIDDEN],
    ["172.16.0.1", FORBIDDEN],
    ["172.31.255.255", FORBIDDEN],
    ["192.0.0.8", FORBIDDEN],
    ["192.168.1.1", FORBIDDEN],
    ["198.18.0.1", FORBIDDEN],
    ["198.19.255.255", FORBIDDEN],
    ["224.0.0.1", FORBIDDEN],
    ["239.255.255.250", FORBIDDEN],
    ["240.0.0.1", FORBIDDEN],
    ["255.255.255.255", FORBIDDEN],
    // The same as IPv4-mapped IPv6.
    ["::ffff:127.0.0.1", FORBIDDEN],
    ["::ffff:7f00:1", FORBIDDEN],
    ["[::ffff:a9fe:a9fe]", FORBIDDEN],
    ["::ffff:10.0.0.1", FORBIDDEN],
    ["0:0:0:0:0:ffff:7f00:1", FORBIDDEN],
    ["0:0:0:0:0:ffff:a9fe:a9fe", FORBIDDEN],
    // IPv6: unspecified and loopback (both of the ::/96 shape), ULA, link-local, multicast, NAT64, 6to4, Teredo.
    ["::", FORBIDDEN],
    ["::1", FORBIDDEN],
    ["[::1]", FORBIDDEN],
    ["0:0:0:0:0:0:0:1", FORBIDDEN],
    ["fc00::1", FORBIDDEN],
    ["fd12:3456:789a::1", FORBIDDEN],
    ["fe80::1", FORBIDDEN],
    ["fe80::1%eth0", "not an address"],
    ["febf:ffff::1", FORBIDDEN],
    ["ff02::1", FORBIDDEN],
    ["64:ff9b::7f00:1", FORBIDDEN],
    ["64:ff9b::a9fe:a9fe", FORBIDDEN],
    ["64:ff9b:1::1", FORBIDDEN],
    ["2002:7f00:1::1", FORBIDDEN],
    ["2001:0:4136:e378::1", FORBIDDEN],
    // IPv4-compatible IPv6 (::a.b.c.d) would reach the embedded address.
    ["::127.0.0.1", COMPAT],
    ["::7f00:1", COMPAT],
    ["::169.254.169.254", COMPAT],
    ["::8.8.8.8", COMPAT],
    // Not addresses at all.
    ["localhost", "not an address"],
    ["127.000.000.001", "not an address"],
    ["", "not an address"],
  ])("%j -> %j", (address, reason) => {
    expect(forbiddenAddress(address)).toBe(reason);
  });

  it("refuses the host's own addresses, in any spelling that normalises to them", () => {
    const own = new Set(["93.184.216.34", "2606:2800:220:1:0:0:0:1"]);
    expect(forbiddenAddress("93.184.216.34", own)).toBe("an address of this host");
    expect(forbiddenAddress("::ffff:93.184.216.34", own)).toBe("an address of this host");
    expect(forbiddenAddress("::ffff:5db8:d822", own)).toBe("an address of this host");
    expect(forbiddenAddress("2606:2800:220:1::1", own)).toBe("an address of this host");
    expect(forbiddenAddress("[2606:2800:0220:0001:0000:0000:0000:0001]", own)).toBe("an address of this host");
    expect(forbiddenAddress("93.184.216.35", own)).toBeUndefined();
    expect(forbiddenAddress("93.184.216.34")).toBeUndefined();
  });

  it("refuses the host's own IPv4 address spelt 0:0:0:0:0:ffff:x:y", () => {
    expect(forbiddenAddress("0:0:0:0:0:ffff:5db8:d822", new Set(["93.184.216.34"]))).toBe("an address of this host");
  });
});
