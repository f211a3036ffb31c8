// Which destinations a run may reach through the egress proxy. Pure: parsing the operator's
// allowlist, narrowing it to what a run asks for (never widening it), matching a host and port,
// and telling which addresses are never reached unless listed by address (loopback, private,
// link-local with the cloud metadata service, the host's own).
import { BlockList, isIP } from "node:net";
import { InputError } from "../shared/errors.js";

/** One allowlist entry: a host name (`api.example.com`), a wildcard (`*.example.com`), or an address; a port or the web's two. */
export interface AllowEntry {
  /** Lower-case name, "*.suffix", or a normalised IP address. */
  host: string;
  /** Undefined: 80 and 443. */
  port?: number | undefined;
  /** The entry names an address: it may be a private or loopback one (the operator said so). */
  address: boolean;
}

export const DEFAULT_PORTS = [80, 443] as const;

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A host name as the DNS knows it: lower case, no trailing dot, labels of letters, digits and hyphens. */
function validName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((l) => LABEL.test(l) || l === "_" || /^_[a-z0-9-]{1,62}$/.test(l));
}

/** An IP address in one canonical form (IPv4-mapped IPv6 as IPv4), or undefined. */
export function normaliseAddress(text: string): string | undefined {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  // A zone id (fe80::1%eth0) names an interface of the host: never an address to allow or reach.
  if (bare.includes("%")) return undefined;
  const kind = isIP(bare);
  if (kind === 4) return bare.split(".").map((o) => String(Number(o))).join(".");
  if (kind !== 6) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped) return mapped[1];
  const hexMapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(bare);
  if (hexMapped) {
    const hi = Number.parseInt(hexMapped[1]!, 16);
    const lo = Number.parseInt(hexMapped[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  const full = expandV6(bare);
  // Any spelling of an IPv4-mapped address is the IPv4 address it carries.
  const m = /^0:0:0:0:0:ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(full);
  if (m) {
    const hi = Number.parseInt(m[1]!, 16);
    const lo = Number.parseInt(m[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return full;
}

/** Full, lower-case IPv6 (eight groups), so one address has one spelling. */
function expandV6(a: string): string {
  let text = a.toLowerCase();
  // A dotted tail (::1.2.3.4) becomes two groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [o1, o2, o3, o4] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((o1 << 8) | o2).toString(16)}:${((o3 << 8) | o4).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? (text.split("::") as [string, string]) : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => Number.parseInt(g, 16).toString(16)).join(":");
}

/** Parses one allowlist entry as the operator or the model wrote it; throws InputError saying what is wrong. */
export function parseAllowEntry(raw: string): AllowEntry {
  const text = raw.trim().toLowerCase();
  let host = text;
  let port: number | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1]!;
    port = v6[2] === undefined ? undefined : Number(v6[2]);
  } else if (isIP(text) !== 6) {
    const m = /^(.*):(\d+)$/.exec(text);
    if (m) {
      host = m[1]!;
      port = Number(m[2]);
    }
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new InputError(`egress entry "${raw.slice(0, 100)}": the port must be 1-65535`);
  const address = normaliseAddress(host);
  if (address) return { host: address, port, address: true };
  const wildcard = host.startsWith("*.");
  const name = (wildcard ? host.slice(2) : host).replace(/\.$/, "");
  if (!validName(name) || (wildcard && !name.includes("."))) {
    throw new InputError(`egress entry "${raw.slice(0, 100)}" is not a host name, "*.domain", or an address, optionally with ":port"`);
  }
  return { host: wildcard ? `*.${name}` : name, port, address: false };
}

function entryText(e: AllowEntry): string {
  const host = e.address && e.host.includes(":") ? `[${e.host}]` : e.host;
  return e.port === undefined ? host : `${host}:${e.port}`;
}

function hostMatches(pattern: string, host: string): boolean {
  return pattern.startsWith("*.") ? host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1 : pattern === host;
}

function portMatches(entryPort: number | undefined, port: number): boolean {
  return entryPort === undefined ? (DEFAULT_PORTS as readonly number[]).includes(port) : entryPort === port;
}

/** Whether `inner` allows nothing that `outer` does not. */
function covers(outer: AllowEntry, inner: AllowEntry): boolean {
  if (outer.address !== inner.address) return false;
  const hostOk = outer.host === inner.host || (!inner.address && outer.host.startsWith("*.") && (inner.host.startsWith("*.") ? inner.host.endsWith(outer.host.slice(1)) : hostMatches(outer.host, inner.host)));
  if (!hostOk) return false;
  if (outer.port === undefined) return inner.port === undefined || (DEFAULT_PORTS as readonly number[]).includes(inner.port);
  return inner.port === outer.port;
}

/** The destinations one run may reach. */
export class EgressPolicy {
  private constructor(readonly entries: readonly AllowEntry[]) {}

  static none(): EgressPolicy {
    return new EgressPolicy([]);
  }

  /** The operator's entries for a user (global ones and the user's own). */
  static forUser(global: readonly string[], own: readonly string[] = []): EgressPolicy {
    return new EgressPolicy([...global, ...own].map(parseAllowEntry));
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** What the operator allows, as text (for messages). */
  describe(): string {
    return this.entries.map(entryText).join(", ") || "nothing";
  }

  /**
   * The policy for a run that asked for `requested`: each asked entry must be within an entry
   * of this policy (the model may ask for less, never more); undefined keeps this policy whole.
   */
  narrow(requested: readonly string[] | undefined): EgressPolicy {
    if (requested === undefined) return this;
    const asked = requested.map(parseAllowEntry);
    const beyond = asked.filter((a) => !this.entries.some((e) => covers(e, a)));
    if (beyond.length > 0) {
      throw new InputError(`allowHosts asks for ${beyond.map(entryText).join(", ")}, which this server does not allow. Allowed: ${this.describe()}. Ask for a subset, or omit allowHosts.`);
    }
    return new EgressPolicy(asked);
  }

  /** Whether a name (or address) and port is on the list; an address matches only an address entry. */
  allows(host: string, port: number): boolean {
    const address = normaliseAddress(host);
    const name = host.toLowerCase().replace(/\.$/, "");
    return this.entries.some((e) => portMatches(e.port, port) && (address ? e.address && e.host === address : !e.address && hostMatches(e.host, name)));
  }

  /** Whether the operator listed this address itself (and so it may be a private or loopback one). */
  listsAddress(address: string, port: number): boolean {
    const a = normaliseAddress(address);
    return a !== undefined && this.entries.some((e) => e.address && e.host === a && portMatches(e.port, port));
  }
}

/**
 * Addresses no name may lead to: loopback, private and shared ranges, link-local (169.254.169.254,
 * the cloud metadata service, is one), multicast, broadcast, unspecified, IPv6 unique-local and
 * link-local, and the translation prefixes that could wrap any of these.
 */
const FORBIDDEN = (() => {
  const b = new BlockList();
  for (const [net, bits] of [
    ["0.0.0.0", 8],
    ["10.0.0.0", 8],
    ["100.64.0.0", 10],
    ["127.0.0.0", 8],
    ["169.254.0.0", 16],
    ["172.16.0.0", 12],
    ["192.0.0.0", 24],
    ["192.168.0.0", 16],
    ["198.18.0.0", 15],
    ["224.0.0.0", 4],
    ["240.0.0.0", 4],
  ] as const) {
    b.addSubnet(net, bits, "ipv4");
  }
  for (const [net, bits] of [
    ["::", 128],
    ["::1", 128],
    ["fc00::", 7],
    ["fe80::", 10],
    ["ff00::", 8],
    ["64:ff9b::", 96],
    ["64:ff9b:1::", 48],
    ["2002::", 16],
    ["2001::", 32],
  ] as const) {
    b.addSubnet(net, bits, "ipv6");
  }
  return b;
})();

/** Why an address may not be reached through a name, or undefined when it may. */
export function forbiddenAddress(address: string, hostAddresses: ReadonlySet<string> = new Set()): string | undefined {
  const a = normaliseAddress(address);
  if (!a) return "not an address";
  if (hostAddresses.has(a)) return "an address of this host";
  const family = a.includes(":") ? "ipv6" : "ipv4";
  if (FORBIDDEN.check(a, family)) return "a loopback, private, link-local or reserved address";
  // IPv4-compatible IPv6 (::a.b.c.d, deprecated) would reach the embedded IPv4 address.
  if (family === "ipv6" && /^0:0:0:0:0:0:[0-9a-f]+:[0-9a-f]+$/.test(a)) return "an IPv4-compatible IPv6 address";
  return undefined;
}
