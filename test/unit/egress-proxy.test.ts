// The egress proxy (src/egress/proxy.ts), spoken to as a sandbox would: raw CONNECT lines and
// absolute-form HTTP requests on its real unix socket. Behind it, a real HTTP server and a raw TCP
// echo server on 127.0.0.1, and a test resolver (a map of names to addresses) in place of DNS.
import { once } from "node:events";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer as createHttpServer, type IncomingHttpHeaders, request } from "node:http";
import { type AddressInfo, connect, createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EgressPolicy } from "../../src/egress/policy.js";
import { type EgressEvent, type EgressLimits, EgressProxy, parseAuthority, type Resolve } from "../../src/egress/proxy.js";
import { createLogger } from "../../src/shared/logger.js";

const base = mkdtempSync(join(process.env.CODEBOX_TEST_TMP ?? tmpdir(), "codebox-egress-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const DEFAULT_LIMITS: EgressLimits = {
  maxBytesPerRun: 1_000_000,
  maxConnectionsPerRun: 100,
  maxOpenConnections: 100,
  connectTimeoutMs: 2_000,
  idleTimeoutMs: 5_000,
};
const RUN = "run-1";
const NOT_ENABLED = "egress is not enabled for this run";
const LOOPBACK_ETC = "a loopback, private, link-local or reserved address";
const leadsTo = (why: string, addresses: string) => `it leads to ${why} (${addresses}), which only an address entry on the allowlist may reach`;

// ---------------------------------------------------------------------------------------------
// What stands behind the proxy: an HTTP server that answers with what it saw, and an echo server.

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
const seen: Seen[] = [];
const BIG = 5_000;
const upstream = createHttpServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
    if (req.url === "/big") {
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(Buffer.alloc(BIG, 120));
      return;
    }
    res.writeHead(201, { "content-type": "text/plain", "x-answer": "yes", "proxy-authenticate": "Basic realm=upstream", "keep-alive": "timeout=1" });
    res.end(`upstream saw ${req.method} ${req.url} ${body}`);
  });
});

interface EchoSide {
  socket: Socket;
  received: number;
  closed: boolean;
}
const echoSides: EchoSide[] = [];
/** Echoes every byte; closes its side after echoing a chunk that holds "BYE". */
const echo: NetServer = createNetServer((socket) => {
  const side: EchoSide = { socket, received: 0, closed: false };
  echoSides.push(side);
  socket.on("error", () => {});
  socket.on("close", () => {
    side.closed = true;
  });
  socket.on("data", (c: Buffer) => {
    side.received += c.length;
    socket.write(c);
    if (c.includes("BYE")) socket.end();
  });
});

let httpPort = 0;
let echoPort = 0;
/** A port on 127.0.0.1 where nothing listens. */
let closedPort = 0;

async function listenLocal(server: NetServer): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  httpPort = await listenLocal(upstream);
  echoPort = await listenLocal(echo);
  const spare = createNetServer();
  closedPort = await listenLocal(spare);
  await new Promise((r) => spare.close(r));
});
afterAll(async () => {
  upstream.closeAllConnections();
  await Promise.all([new Promise((r) => upstream.close(r)), new Promise((r) => echo.close(r))]);
});

// ---------------------------------------------------------------------------------------------
// The proxy under test, and a sandbox's side of it.

const NAMES = new Map<string, string[]>([
  ["allowed.test", ["127.0.0.1"]],
  ["evil.test", ["127.0.0.1"]],
  ["meta.test", ["169.254.169.254"]],
  ["private.test", ["10.0.0.1", "::1", "192.168.0.1", "172.16.0.1"]],
  ["empty.test", []],
  ["self.test", ["93.184.216.34"]],
]);

/** The test's DNS: NAMES, and every name under allowed.test leads to 127.0.0.1; others do not resolve. */
function testResolver(asked: string[]): Resolve {
  return async (host) => {
    asked.push(host);
    const found = NAMES.get(host) ?? (host.endsWith(".allowed.test") ? ["127.0.0.1"] : undefined);
    if (!found) throw new Error(`getaddrinfo ENOTFOUND ${host}`);
    return found;
  };
}

const proxies: EgressProxy[] = [];
const wires: Wire[] = [];
let count = 0;

afterEach(async () => {
  for (const w of wires.splice(0)) w.socket.destroy();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  for (const s of echoSides.splice(0)) s.socket.destroy();
  upstream.closeAllConnections();
  seen.length = 0;
});

interface Setup {
  proxy: EgressProxy;
  socketPath: string;
  events: EgressEvent[];
  /** Names the proxy asked the resolver for. */
  asked: string[];
}

/** A proxy on a fresh socket; bound to RUN with `allow` as the operator's list unless `allow` is undefined. */
async function setup(allow: string[] | undefined, opts: { limits?: Partial<EgressLimits>; resolve?: Resolve; hostAddresses?: Set<string> } = {}): Promise<Setup> {
  const events: EgressEvent[] = [];
  const asked: string[] = [];
  const socketPath = join(base, `p${++count}.sock`);
  const proxy = await EgressProxy.listen(socketPath, {
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    logger: createLogger({ level: "silent" }),
    onEvent: (e) => events.push(e),
    resolve: opts.resolve ?? testResolver(asked),
    hostAddresses: opts.hostAddresses ?? new Set(),
  });
  proxies.push(proxy);
  if (allow !== undefined) proxy.bind(RUN, EgressPolicy.forUser(allow));
  return { proxy, socketPath, events, asked };
}

/** A sandbox's raw connection to the proxy, with what came back so far. */
class Wire {
  readonly socket: Socket;
  private data = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();
  closed = false;
  error: NodeJS.ErrnoException | undefined;

  constructor(socketPath: string) {
    this.socket = connect(socketPath);
    wires.push(this);
    this.socket.on("data", (c: Buffer) => {
      this.data = Buffer.concat([this.data, c]);
      this.wake();
    });
    this.socket.on("error", (err) => {
      this.error = err;
    });
    this.socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves once `done` holds (checked on every arrival), rejects after `ms`. */
  until(done: () => boolean, what: string, ms = 3_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.data.toString("latin1"))}, closed: ${this.closed}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  /** The next `n` bytes (fewer if the connection closes first). */
  async take(n: number): Promise<string> {
    await this.until(() => this.data.length >= n || this.closed, `${n} bytes`);
    const out = this.data.subarray(0, n);
    this.data = this.data.subarray(n);
    return out.toString("latin1");
  }

  /** A response head: up to and with the empty line. */
  async head(): Promise<string> {
    await this.until(() => this.data.includes("\r\n\r\n") || this.closed, "a response head");
    const end = this.data.indexOf("\r\n\r\n");
    return this.take(end < 0 ? this.data.length : end + 4);
  }

  /** Everything until the proxy closes the connection. */
  async rest(ms = 3_000): Promise<string> {
    await this.until(() => this.closed, "the proxy to close the connection", ms);
    return this.take(this.data.length);
  }

  whenClosed(ms = 3_000): Promise<void> {
    return this.until(() => this.closed, "the connection to close", ms);
  }
}

const connectLine = (target: string) => `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`;

/** Asks for a tunnel and expects it; `early` goes in the same write as the CONNECT line. */
async function tunnel(s: Setup, target: string, early = ""): Promise<Wire> {
  const w = new Wire(s.socketPath);
  w.socket.write(connectLine(target) + early);
  expect(await w.head()).toBe("HTTP/1.1 200 Connection Established\r\n\r\n");
  return w;
}

/** Sends a CONNECT and returns the whole answer (the proxy closes the connection after a refusal). */
async function connectAnswer(s: Setup, target: string): Promise<string> {
  const w = new Wire(s.socketPath);
  w.socket.write(connectLine(target));
  return w.rest();
}

const connectRefusal = (status: number, host: string, port: number, reason: string) =>
  `HTTP/1.1 ${status} Refused by codebox egress\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncodebox egress: ${host}:${port}: ${reason}\n`;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One request through the proxy: `path` as the request target (absolute form for the proxy). */
function send(s: Setup, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: s.socketPath, path, method: opts.method ?? "GET", headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

async function expectRefused(a: Promise<Answer>, status: number, host: string, port: number, reason: string): Promise<void> {
  const answer = await a;
  expect(answer.status).toBe(status);
  expect(answer.headers["content-type"]).toBe("text/plain");
  expect(answer.text).toBe(`codebox egress: ${host}:${port}: ${reason}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const notListed = (policy: string) => `not on this run's allowlist (${policy})`;

// ---------------------------------------------------------------------------------------------

describe("parseAuthority", () => {
  it.each<[string, { host: string; port: number } | undefined]>([
    ["example.com:443", { host: "example.com", port: 443 }],
    ["Example.COM:80", { host: "example.com", port: 80 }],
    ["127.0.0.1:1", { host: "127.0.0.1", port: 1 }],
    ["[::1]:65535", { host: "::1", port: 65535 }],
    ["[::FFFF:127.0.0.1]:8080", { host: "::ffff:127.0.0.1", port: 8080 }],
    ["example.com", undefined],
    ["example.com:", undefined],
    ["example.com:0", undefined],
    ["example.com:65536", undefined],
    ["example.com:123456", undefined],
    ["example.com:-1", undefined],
    ["::1:443", undefined],
    ["[::1]", undefined],
    ["[::1%eth0]:80", undefined],
    ["[example.com]:80", undefined],
    ["a/b:80", undefined],
    ["a b:80", undefined],
    ["user@example.com:80", { host: "user@example.com", port: 80 }],
    ["", undefined],
  ])("%j -> %j", (text, parsed) => {
    expect(parseAuthority(text)).toEqual(parsed);
  });
});

describe("listening", () => {
  it("makes its socket reachable by the sandbox's user (0666)", async () => {
    const s = await setup(undefined);
    expect(statSync(s.socketPath).mode & 0o777).toBe(0o666);
  });
});

describe("an unbound proxy", () => {
  it("refuses a CONNECT with 403 and reports it", async () => {
    const s = await setup(undefined);
    expect(await connectAnswer(s, `127.0.0.1:${echoPort}`)).toBe(connectRefusal(403, "127.0.0.1", echoPort, NOT_ENABLED));
    expect(s.events).toEqual([{ kind: "egress", runId: "unbound", host: "127.0.0.1", port: echoPort, allowed: false, reason: NOT_ENABLED }]);
    expect(s.proxy.summary()).toEqual({ reached: [], refused: [{ host: "127.0.0.1", port: echoPort, reason: NOT_ENABLED }] });
    expect(echoSides).toHaveLength(0);
  });

  it("refuses an absolute-form request with 403, without asking the resolver", async () => {
    const s = await setup(undefined);
    await expectRefused(send(s, "http://allowed.test/x"), 403, "allowed.test", 80, NOT_ENABLED);
    expect(s.events).toEqual([{ kind: "egress", runId: "unbound", host: "allowed.test", port: 80, allowed: false, reason: NOT_ENABLED }]);
    expect(s.asked).toEqual([]);
    expect(seen).toHaveLength(0);
  });

  it("refuses everything when bound to an empty policy (allowHosts: [])", async () => {
    const s = await setup(undefined);
    s.proxy.bind(RUN, EgressPolicy.forUser([`127.0.0.1:${echoPort}`]).narrow([]));
    expect(await connectAnswer(s, `127.0.0.1:${echoPort}`)).toBe(connectRefusal(403, "127.0.0.1", echoPort, NOT_ENABLED));
    expect(s.events).toEqual([{ kind: "egress", runId: RUN, host: "127.0.0.1", port: echoPort, allowed: false, reason: NOT_ENABLED }]);
  });
});

describe("a CONNECT tunnel to a listed address", () => {
  it("carries bytes both ways and reports them once the tunnel closes", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    w.socket.write("hello");
    expect(await w.take(5)).toBe("hello");
    w.socket.write(Buffer.from("\x00\xffbinary", "latin1"));
    expect(await w.take(8)).toBe("\x00\xffbinary");
    expect(s.events).toEqual([]);
    // The echo server closes its side after "BYE": the proxy closes the tunnel and reports it.
    w.socket.write("BYE");
    expect(await w.rest()).toBe("BYE");
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.events[0]).toEqual({ kind: "egress", runId: RUN, host: "127.0.0.1", port: echoPort, allowed: true, address: "127.0.0.1", bytesUp: 16, bytesDown: 16 });
    expect(s.proxy.summary()).toEqual({ reached: [{ host: "127.0.0.1", port: echoPort, connections: 1, bytes: 32 }], refused: [] });
    expect(echoSides).toHaveLength(1);
    expect(echoSides[0]!.received).toBe(16);
  });

  it("passes on bytes sent in the same write as the CONNECT line", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `127.0.0.1:${echoPort}`, "early");
    expect(await w.take(5)).toBe("early");
    w.socket.write("BYE");
    expect(await w.rest()).toBe("BYE");
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.events[0]).toMatchObject({ allowed: true, bytesUp: 8, bytesDown: 8 });
  });

  it("counts bytes sent with the CONNECT line in the summary too", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `127.0.0.1:${echoPort}`, "early");
    expect(await w.take(5)).toBe("early");
    w.socket.write("BYE");
    await w.rest();
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.proxy.summary().reached).toEqual([{ host: "127.0.0.1", port: echoPort, connections: 1, bytes: 16 }]);
  });

  it("lets an IPv4-mapped spelling of a listed address through", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `[::ffff:127.0.0.1]:${echoPort}`);
    w.socket.write("BYE");
    expect(await w.rest()).toBe("BYE");
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.events[0]).toMatchObject({ host: "::ffff:127.0.0.1", port: echoPort, allowed: true, address: "::ffff:127.0.0.1", bytesUp: 3, bytesDown: 3 });
  });

  it("lets a listed name through when it leads to an address the operator listed for that port", async () => {
    const s = await setup([`allowed.test:${echoPort}`, `127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `ALLOWED.test:${echoPort}`);
    w.socket.write("BYE");
    expect(await w.rest()).toBe("BYE");
    expect(s.asked).toEqual(["allowed.test"]);
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.events[0]).toEqual({ kind: "egress", runId: RUN, host: "allowed.test", port: echoPort, allowed: true, address: "127.0.0.1", bytesUp: 3, bytesDown: 3 });
  });

  it("answers 502 when the listed destination does not accept the connection", async () => {
    const s = await setup([`127.0.0.1:${closedPort}`]);
    expect(await connectAnswer(s, `127.0.0.1:${closedPort}`)).toBe(
      `HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\ncodebox egress: could not connect to 127.0.0.1:${closedPort}\n`,
    );
    expect(s.events).toEqual([
      { kind: "egress", runId: RUN, host: "127.0.0.1", port: closedPort, allowed: false, reason: `could not connect (connect ECONNREFUSED 127.0.0.1:${closedPort})`, address: "127.0.0.1" },
    ]);
  });
});

describe("an absolute-form request to a listed address", () => {
  it("reaches the upstream with method, path, body and Host, without hop-by-hop headers", async () => {
    const s = await setup([`127.0.0.1:${httpPort}`]);
    const a = await send(s, `http://127.0.0.1:${httpPort}/path/x?q=1&r=%20`, {
      method: "POST",
      body: "payload",
      headers: {
        host: "evil.test",
        "content-type": "text/plain",
        "content-length": "7",
        "x-keep": "kept",
        "proxy-authorization": "Basic c2VjcmV0",
        "proxy-connection": "keep-alive",
        connection: "close, x-hop",
        "x-hop": "dropped",
        "keep-alive": "timeout=5",
        te: "trailers",
        upgrade: "websocket",
      },
    });
    expect(a.status).toBe(201);
    const body = "upstream saw POST /path/x?q=1&r=%20 payload";
    expect(a.text).toBe(body);
    expect(a.headers["x-answer"]).toBe("yes");
    expect(a.headers["proxy-authenticate"]).toBeUndefined();
    expect(a.headers["keep-alive"]).toBeUndefined();

    expect(seen).toHaveLength(1);
    const got = seen[0]!;
    expect(got.method).toBe("POST");
    expect(got.url).toBe("/path/x?q=1&r=%20");
    expect(got.body).toBe("payload");
    expect(got.headers.host).toBe(`127.0.0.1:${httpPort}`);
    expect(got.headers["x-keep"]).toBe("kept");
    expect(got.headers["content-type"]).toBe("text/plain");
    expect(got.headers["content-length"]).toBe("7");
    for (const h of ["proxy-authorization", "proxy-connection", "x-hop", "keep-alive", "te", "upgrade"]) expect(got.headers[h], h).toBeUndefined();

    expect(s.events).toEqual([{ kind: "egress", runId: RUN, host: "127.0.0.1", port: httpPort, allowed: true, address: "127.0.0.1", bytesUp: 7, bytesDown: body.length }]);
    expect(s.proxy.summary()).toEqual({ reached: [{ host: "127.0.0.1", port: httpPort, connections: 1, bytes: 7 + body.length }], refused: [] });
  });

  it("sends a listed name's request to the address it checked, with the name in Host", async () => {
    const s = await setup([`allowed.test:${httpPort}`, `127.0.0.1:${httpPort}`]);
    const a = await send(s, `http://allowed.test:${httpPort}`);
    expect(a.status).toBe(201);
    expect(a.text).toBe("upstream saw GET / ");
    expect(seen[0]!.headers.host).toBe(`allowed.test:${httpPort}`);
    expect(s.asked).toEqual(["allowed.test"]);
    expect(s.events).toEqual([{ kind: "egress", runId: RUN, host: "allowed.test", port: httpPort, allowed: true, address: "127.0.0.1", bytesUp: 0, bytesDown: 19 }]);
  });

  it("answers 502 when the listed destination does not answer", async () => {
    const s = await setup([`127.0.0.1:${closedPort}`]);
    const a = await send(s, `http://127.0.0.1:${closedPort}/`);
    expect(a.status).toBe(502);
    expect(a.text).toBe(`codebox egress: 127.0.0.1:${closedPort} did not answer\n`);
    expect(s.events).toEqual([
      { kind: "egress", runId: RUN, host: "127.0.0.1", port: closedPort, allowed: false, reason: `the request failed (connect ECONNREFUSED 127.0.0.1:${closedPort})`, address: "127.0.0.1" },
    ]);
  });
});

describe("refusals", () => {
  it("refuses, by CONNECT, what an address-only policy does not list", async () => {
    const listed = `127.0.0.1:${echoPort}`;
    const s = await setup([listed]);
    const cases: Array<[string, string, number]> = [
      [`127.0.0.1:${httpPort}`, "127.0.0.1", httpPort],
      [`evil.test:${echoPort}`, "evil.test", echoPort],
      [`[::1]:${echoPort}`, "::1", echoPort],
      [`127.0.0.2:${echoPort}`, "127.0.0.2", echoPort],
      ["10.0.0.1:80", "10.0.0.1", 80],
      ["169.254.169.254:80", "169.254.169.254", 80],
      [`[fe80::1]:${echoPort}`, "fe80::1", echoPort],
    ];
    for (const [target, host, port] of cases) {
      expect(await connectAnswer(s, target), target).toBe(connectRefusal(403, host, port, notListed(listed)));
    }
    expect(s.events).toEqual(cases.map(([, host, port]) => ({ kind: "egress", runId: RUN, host, port, allowed: false, reason: notListed(listed) })));
    // No lookup for a name that is not on the list, and nothing reached.
    expect(s.asked).toEqual([]);
    expect(echoSides).toHaveLength(0);
    expect(s.proxy.summary().reached).toEqual([]);
    expect(s.proxy.summary().refused).toHaveLength(cases.length);
  });

  it("refuses, by CONNECT, names that lead where only an address entry may go, and addresses where only names are listed", async () => {
    const list = [`allowed.test:${echoPort}`, "meta.test", "private.test:443", "empty.test:443", "gone.test:443"];
    const described = `allowed.test:${echoPort}, meta.test, private.test:443, empty.test:443, gone.test:443`;
    const s = await setup(list);
    expect(await connectAnswer(s, `allowed.test:${echoPort}`)).toBe(connectRefusal(403, "allowed.test", echoPort, leadsTo(LOOPBACK_ETC, "127.0.0.1")));
    expect(await connectAnswer(s, "meta.test:80")).toBe(connectRefusal(403, "meta.test", 80, leadsTo(LOOPBACK_ETC, "169.254.169.254")));
    expect(await connectAnswer(s, "private.test:443")).toBe(connectRefusal(403, "private.test", 443, leadsTo(LOOPBACK_ETC, "10.0.0.1, ::1, 192.168.0.1")));
    expect(await connectAnswer(s, "empty.test:443")).toBe(connectRefusal(502, "empty.test", 443, "the name has no addresses"));
    expect(await connectAnswer(s, "gone.test:443")).toBe(connectRefusal(502, "gone.test", 443, "the name does not resolve (getaddrinfo ENOTFOUND gone.test)"));
    expect(await connectAnswer(s, `[::ffff:127.0.0.1]:${echoPort}`)).toBe(connectRefusal(403, "::ffff:127.0.0.1", echoPort, notListed(described)));
    expect(await connectAnswer(s, `127.0.0.1:${echoPort}`)).toBe(connectRefusal(403, "127.0.0.1", echoPort, notListed(described)));
    expect(await connectAnswer(s, "169.254.169.254:80")).toBe(connectRefusal(403, "169.254.169.254", 80, notListed(described)));
    expect(s.asked).toEqual(["allowed.test", "meta.test", "private.test", "empty.test", "gone.test"]);
    expect(echoSides).toHaveLength(0);
    expect(s.proxy.summary()).toEqual({
      reached: [],
      refused: [
        { host: "allowed.test", port: echoPort, reason: leadsTo(LOOPBACK_ETC, "127.0.0.1") },
        { host: "meta.test", port: 80, reason: leadsTo(LOOPBACK_ETC, "169.254.169.254") },
        { host: "private.test", port: 443, reason: leadsTo(LOOPBACK_ETC, "10.0.0.1, ::1, 192.168.0.1") },
        { host: "empty.test", port: 443, reason: "the name has no addresses" },
        { host: "gone.test", port: 443, reason: "the name does not resolve (getaddrinfo ENOTFOUND gone.test)" },
        { host: "::ffff:127.0.0.1", port: echoPort, reason: notListed(described) },
        { host: "127.0.0.1", port: echoPort, reason: notListed(described) },
        { host: "169.254.169.254", port: 80, reason: notListed(described) },
      ],
    });
  });

  it("refuses a name that leads to one of this host's own addresses", async () => {
    const s = await setup(["self.test:443"], { hostAddresses: new Set(["93.184.216.34"]) });
    expect(await connectAnswer(s, "self.test:443")).toBe(connectRefusal(403, "self.test", 443, leadsTo("an address of this host", "93.184.216.34")));
  });

  it("answers 502 when the resolver takes longer than the connect timeout", async () => {
    const s = await setup(["slow.test:443"], { limits: { connectTimeoutMs: 150 }, resolve: () => new Promise(() => {}) });
    const started = Date.now();
    expect(await connectAnswer(s, "slow.test:443")).toBe(connectRefusal(502, "slow.test", 443, "the name does not resolve (timed out after 150 ms)"));
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it.each(["foo", "foo:99999", "foo:0", "[::1]", "[::1%lo]:80", "a/b:80"])("answers 400 to an unparsable CONNECT target %j, and reports nothing", async (target) => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = new Wire(s.socketPath);
    w.socket.write(`CONNECT ${target} HTTP/1.1\r\n\r\n`);
    expect(await w.rest()).toBe("HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nCONNECT needs host:port\n");
    expect(s.events).toEqual([]);
    expect(s.proxy.summary()).toEqual({ reached: [], refused: [] });
  });

  it("refuses absolute-form requests the policy does not allow", async () => {
    const listed = `127.0.0.1:${httpPort}`;
    const s = await setup([listed, "gone.test"]);
    const reason = notListed(`${listed}, gone.test`);
    await expectRefused(send(s, `http://127.0.0.1:${echoPort}/`), 403, "127.0.0.1", echoPort, reason);
    await expectRefused(send(s, `http://evil.test:${httpPort}/`), 403, "evil.test", httpPort, reason);
    await expectRefused(send(s, `http://[::1]:${httpPort}/`), 403, "::1", httpPort, reason);
    await expectRefused(send(s, "http://169.254.169.254/latest/meta-data/"), 403, "169.254.169.254", 80, reason);
    await expectRefused(send(s, "http://10.0.0.1/"), 403, "10.0.0.1", 80, reason);
    await expectRefused(send(s, "http://gone.test/"), 502, "gone.test", 80, "the name does not resolve (getaddrinfo ENOTFOUND gone.test)");
    expect(seen).toHaveLength(0);
    expect(s.asked).toEqual(["gone.test"]);
    expect(s.events.map((e) => [e.host, e.port, e.allowed])).toEqual([
      ["127.0.0.1", echoPort, false],
      ["evil.test", httpPort, false],
      ["::1", httpPort, false],
      ["169.254.169.254", 80, false],
      ["10.0.0.1", 80, false],
      ["gone.test", 80, false],
    ]);
  });

  it("refuses absolute-form requests to loopback when only a name is listed", async () => {
    const s = await setup([`allowed.test:${httpPort}`, "meta.test"]);
    const reason = notListed(`allowed.test:${httpPort}, meta.test`);
    await expectRefused(send(s, `http://allowed.test:${httpPort}/`), 403, "allowed.test", httpPort, leadsTo(LOOPBACK_ETC, "127.0.0.1"));
    await expectRefused(send(s, "http://meta.test/latest/meta-data/"), 403, "meta.test", 80, leadsTo(LOOPBACK_ETC, "169.254.169.254"));
    // The URL parser writes ::ffff:127.0.0.1 as ::ffff:7f00:1.
    await expectRefused(send(s, `http://[::ffff:127.0.0.1]:${httpPort}/`), 403, "::ffff:7f00:1", httpPort, reason);
    await expectRefused(send(s, `http://127.0.0.1:${httpPort}/`), 403, "127.0.0.1", httpPort, reason);
    await expectRefused(send(s, `http://2130706433:${httpPort}/`), 403, "127.0.0.1", httpPort, reason);
    expect(seen).toHaveLength(0);
    expect(s.asked).toEqual(["allowed.test", "meta.test"]);
  });

  it("lets an absolute-form request through to a listed address in its IPv4-mapped spelling", async () => {
    const s = await setup([`127.0.0.1:${httpPort}`]);
    const a = await send(s, `http://[::ffff:127.0.0.1]:${httpPort}/m`);
    expect(a.status).toBe(201);
    expect(seen[0]!.headers.host).toBe(`[::ffff:7f00:1]:${httpPort}`);
    expect(s.events).toEqual([{ kind: "egress", runId: RUN, host: "::ffff:7f00:1", port: httpPort, allowed: true, address: "::ffff:7f00:1", bytesUp: 0, bytesDown: a.text.length }]);
  });

  it("answers 400 to a request that is not in absolute form, and to an https:// one", async () => {
    const s = await setup([`127.0.0.1:${httpPort}`]);
    const origin = await send(s, "/x");
    expect(origin.status).toBe(400);
    expect(origin.text).toBe("codebox egress: send requests through this proxy in absolute form (http://host/path), or CONNECT for https\n");
    const tls = await send(s, `https://127.0.0.1:${httpPort}/x`);
    expect(tls.status).toBe(400);
    expect(tls.text).toBe("codebox egress: only http:// is forwarded as a request; https goes through CONNECT\n");
    const ftp = await send(s, `ftp://127.0.0.1:${httpPort}/x`);
    expect(ftp.status).toBe(400);
    expect(seen).toHaveLength(0);
    expect(s.events).toEqual([]);
  });
});

describe("limits", () => {
  it("answers 429 to the connection past maxConnectionsPerRun, counting refusals", async () => {
    const listed = [`127.0.0.1:${echoPort}`, `127.0.0.1:${httpPort}`];
    const s = await setup(listed, { limits: { maxConnectionsPerRun: 3 } });
    const reason = notListed(listed.join(", "));
    expect(await connectAnswer(s, "evil.test:443")).toBe(connectRefusal(403, "evil.test", 443, reason));
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    expect((await send(s, `http://127.0.0.1:${httpPort}/a`)).status).toBe(201);
    const full = "the run opened 3 connections, the most allowed";
    expect(await connectAnswer(s, `127.0.0.1:${echoPort}`)).toBe(connectRefusal(429, "127.0.0.1", echoPort, full));
    await expectRefused(send(s, `http://127.0.0.1:${httpPort}/b`), 429, "127.0.0.1", httpPort, full);
    expect(seen.map((r) => r.url)).toEqual(["/a"]);
    expect(echoSides).toHaveLength(1);
    // The open tunnel still works.
    w.socket.write("ok");
    expect(await w.take(2)).toBe("ok");
    expect(s.proxy.summary().refused).toEqual([
      { host: "evil.test", port: 443, reason },
      { host: "127.0.0.1", port: echoPort, reason: full },
      { host: "127.0.0.1", port: httpPort, reason: full },
    ]);
  });

  it("closes every connection of the run once its bytes pass maxBytesPerRun", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`], { limits: { maxBytesPerRun: 1_000 } });
    const other = await tunnel(s, `127.0.0.1:${echoPort}`);
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    w.socket.write("a".repeat(400));
    expect(await w.take(400)).toBe("a".repeat(400));
    // 800 bytes so far; 400 more up passes the cap of 1000: nothing more is forwarded.
    w.socket.write("b".repeat(400));
    await w.whenClosed();
    await other.whenClosed();
    expect(await w.take(1)).toBe("");
    const reason = "the run passed 1000 bytes of egress";
    expect(s.events[0]).toEqual({ kind: "egress", runId: RUN, host: "*", port: 0, allowed: false, reason });
    await expect.poll(() => s.events.filter((e) => e.allowed).length).toBe(2);
    expect(s.proxy.summary().refused).toEqual([{ host: "*", port: 0, reason }]);
    expect(echoSides.map((e) => e.received).sort()).toEqual([0, 400]);
    await expect.poll(() => echoSides.every((e) => e.closed)).toBe(true);
  });

  it("cuts an absolute-form answer that would pass maxBytesPerRun", async () => {
    const s = await setup([`127.0.0.1:${httpPort}`], { limits: { maxBytesPerRun: 1_000 } });
    await expect(send(s, `http://127.0.0.1:${httpPort}/big`)).rejects.toThrow();
    expect(seen.map((r) => r.url)).toEqual(["/big"]);
    expect(s.proxy.summary().refused).toEqual([{ host: "*", port: 0, reason: "the run passed 1000 bytes of egress" }]);
  });

  it("refuses new connections once the run passed maxBytesPerRun", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`], { limits: { maxBytesPerRun: 100 } });
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    w.socket.write("x".repeat(200));
    await w.whenClosed();
    const next = new Wire(s.socketPath);
    next.socket.write(connectLine(`127.0.0.1:${echoPort}`));
    expect(await next.head()).toMatch(/^HTTP\/1\.1 4\d\d /);
    expect(echoSides).toHaveLength(1);
  });

  it("closes a tunnel that stays quiet for idleTimeoutMs", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`], { limits: { idleTimeoutMs: 300 } });
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    w.socket.write("ping");
    expect(await w.take(4)).toBe("ping");
    const quietSince = Date.now();
    await w.whenClosed(2_000);
    const waited = Date.now() - quietSince;
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(waited).toBeLessThan(1_500);
    await expect.poll(() => echoSides[0]?.closed).toBe(true);
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.events[0]).toEqual({ kind: "egress", runId: RUN, host: "127.0.0.1", port: echoPort, allowed: true, address: "127.0.0.1", bytesUp: 4, bytesDown: 4 });
  });

  it("keeps a tunnel with traffic open past idleTimeoutMs", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`], { limits: { idleTimeoutMs: 400 } });
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    for (let i = 0; i < 6; i++) {
      w.socket.write(`${i}`);
      expect(await w.take(1)).toBe(`${i}`);
      await sleep(100);
    }
    expect(w.closed).toBe(false);
  });

  it("drops connections past maxOpenConnections", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`], { limits: { maxOpenConnections: 2 } });
    await tunnel(s, `127.0.0.1:${echoPort}`);
    await tunnel(s, `127.0.0.1:${echoPort}`);
    const third = new Wire(s.socketPath);
    third.socket.write(connectLine(`127.0.0.1:${echoPort}`));
    expect(await third.rest()).toBe("");
    expect(echoSides).toHaveLength(2);
  });

  it("closes the upstream connection soon after the sandbox closes its end", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    w.socket.write("hi");
    expect(await w.take(2)).toBe("hi");
    w.socket.destroy();
    await expect.poll(() => echoSides[0]?.closed, { timeout: 1_000 }).toBe(true);
    expect(s.events).toHaveLength(1);
  });
});

describe("summary", () => {
  it("keeps at most 20 distinct refused destinations", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    for (let i = 0; i < 30; i++) await connectAnswer(s, `n${i}.test:443`);
    expect(s.events).toHaveLength(30);
    const reason = notListed(`127.0.0.1:${echoPort}`);
    expect(s.proxy.summary()).toEqual({ reached: [], refused: Array.from({ length: 20 }, (_, i) => ({ host: `n${i}.test`, port: 443, reason })) });
  });

  it("keeps one refused entry per destination (the first reason)", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`], { limits: { maxConnectionsPerRun: 1 } });
    await connectAnswer(s, "evil.test:443");
    await connectAnswer(s, "evil.test:443");
    expect(s.events.map((e) => e.reason)).toEqual([notListed(`127.0.0.1:${echoPort}`), "the run opened 1 connections, the most allowed"]);
    expect(s.proxy.summary().refused).toEqual([{ host: "evil.test", port: 443, reason: notListed(`127.0.0.1:${echoPort}`) }]);
  });

  it("keeps at most 20 distinct reached destinations, with connections and bytes each", async () => {
    const s = await setup([`*.allowed.test:${echoPort}`, `127.0.0.1:${echoPort}`]);
    for (let i = 0; i < 25; i++) {
      const w = await tunnel(s, `h${i}.allowed.test:${echoPort}`);
      w.socket.write("x");
      expect(await w.take(1)).toBe("x");
    }
    const again = await tunnel(s, `h0.allowed.test:${echoPort}`);
    again.socket.write("yy");
    expect(await again.take(2)).toBe("yy");
    const reached = Array.from({ length: 20 }, (_, i) => ({ host: `h${i}.allowed.test`, port: echoPort, connections: 1, bytes: 2 }));
    reached[0] = { host: "h0.allowed.test", port: echoPort, connections: 2, bytes: 6 };
    expect(s.proxy.summary()).toEqual({ reached, refused: [] });
    expect(echoSides).toHaveLength(26);
  });

  it("cuts host names longer than 253 characters in events and the summary", async () => {
    const s = await setup(["allowed.test"]);
    const long = `${"a".repeat(60)}.${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.${"e".repeat(60)}.test`;
    expect(long.length).toBeGreaterThan(253);
    const answer = await connectAnswer(s, `${long}:443`);
    expect(answer).toBe(connectRefusal(403, long.slice(0, 100), 443, notListed("allowed.test")));
    expect(s.events).toEqual([{ kind: "egress", runId: RUN, host: long.slice(0, 253), port: 443, allowed: false, reason: notListed("allowed.test") }]);
    expect(s.proxy.summary().refused).toEqual([{ host: long.slice(0, 253), port: 443, reason: notListed("allowed.test") }]);

    const huge = "b".repeat(2_000);
    await connectAnswer(s, `${huge}:443`);
    expect(s.events[1]!.host).toBe("b".repeat(253));
  });
});

describe("close", () => {
  it("closes open tunnels and serves nothing more", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = await tunnel(s, `127.0.0.1:${echoPort}`);
    w.socket.write("hi");
    expect(await w.take(2)).toBe("hi");
    await s.proxy.close();
    await w.whenClosed(1_000);
    await expect.poll(() => echoSides[0]?.closed).toBe(true);
    await expect.poll(() => s.events.length).toBe(1);
    expect(s.events[0]).toMatchObject({ allowed: true, bytesUp: 2, bytesDown: 2 });

    const after = new Wire(s.socketPath);
    await after.whenClosed();
    expect(after.error?.code).toBe("ENOENT");
    expect(echoSides).toHaveLength(1);
  });

  it("closes an idle connection that was open before close()", async () => {
    const s = await setup([`127.0.0.1:${echoPort}`]);
    const w = new Wire(s.socketPath);
    await once(w.socket, "connect");
    await s.proxy.close();
    await w.whenClosed(1_000);
    expect(echoSides).toHaveLength(0);
  });
});
