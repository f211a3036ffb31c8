import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/shared/logger.js";
import { UserDirectories } from "../../src/stores/user-dirs.js";
import { CodeboxTokenVerifier, legacyOauthUserId, mayAdoptLegacy, oauthUserId, tokenType, userIdOf } from "../../src/transport/auth.js";

const API_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

describe("user ids by identity source", () => {
  it("never map two different OAuth claims to one folder (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (a, b) => {
        fc.pre(a !== b);
        expect(oauthUserId(a)).not.toBe(oauthUserId(b));
      }),
      { numRuns: 2_000 },
    );
  });

  it("keep a claim that looks like a hashed id apart from the hashed id itself", () => {
    const victim = "alice@example.com";
    const hashed = oauthUserId(victim);
    expect(hashed).toMatch(/^oidch-[0-9a-f]{32}$/);
    const forged = hashed.slice("oidch-".length);
    expect(oauthUserId(`h-${forged}`)).not.toBe(hashed);
    expect(oauthUserId(hashed)).not.toBe(hashed);
    expect(oauthUserId(`u-${forged}`)).toBe(`oidc-u-${forged}`);
  });

  it("keep OAuth users and API-key users in separate namespaces: no valid API-key id starts with oidc", () => {
    expect(() => loadConfig({ env: {}, flags: { "auth.apiKeys": [{ userId: "oidc-bob", key: "k".repeat(20) }] } })).toThrow(/oidc/);
    expect(() => loadConfig({ env: {}, flags: { userId: "OIDCH-x" } })).toThrow(/oidc/);
    fc.assert(
      fc.property(fc.string({ maxLength: 70 }), (claim) => {
        const id = oauthUserId(claim);
        expect(id).toMatch(API_ID);
        expect(id).toMatch(/^oidch?-/);
      }),
      { numRuns: 1_000 },
    );
  });

  it("let an OAuth user adopt their old folder only when it is provably theirs", () => {
    const others = new Set(["local", "bob"]);
    expect(mayAdoptLegacy(legacyOauthUserId("alice@example.com"), others)).toBe(true);
    expect(mayAdoptLegacy(legacyOauthUserId("carol"), others)).toBe(true);
    expect(mayAdoptLegacy(legacyOauthUserId("bob"), others)).toBe(false);
    expect(mayAdoptLegacy(legacyOauthUserId(`u-${"a".repeat(32)}`), others)).toBe(false);
    expect(mayAdoptLegacy(legacyOauthUserId("oidc-x"), others)).toBe(false);
  });
});

describe("adopting a legacy folder", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "codebox-identity-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  const dirs = new UserDirectories(dataDir, process.getuid?.() ?? 0);

  it("moves the old folder once, never over an existing one, never a link", async () => {
    mkdirSync(join(dataDir, "users", "carol", "workspace"), { recursive: true });
    writeFileSync(join(dataDir, "users", "carol", "workspace", "notes.txt"), "mine");
    expect(await dirs.adoptLegacy("carol", "oidc-carol")).toBe(true);
    expect(existsSync(join(dataDir, "users", "oidc-carol", "workspace", "notes.txt"))).toBe(true);
    mkdirSync(join(dataDir, "users", "carol"), { recursive: true });
    expect(await dirs.adoptLegacy("carol", "oidc-carol")).toBe(false);
    symlinkSync("/etc", join(dataDir, "users", "dave"));
    expect(await dirs.adoptLegacy("dave", "oidc-dave")).toBe(false);
    expect(existsSync(join(dataDir, "users", "oidc-dave"))).toBe(false);
  });
});

describe("access tokens", () => {
  let jwks: Server;
  let url: string;
  let key: CryptoKey;
  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    key = pair.privateKey as CryptoKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    jwks = createServer((_req, res) => res.end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(jwks.address() as { port: number }).port}/jwks.json`;
  });
  afterAll(() => jwks.close());

  const token = (typ: string | undefined, sub = "alice") =>
    new SignJWT({ scope: "mcp" }).setProtectedHeader({ alg: "ES256", kid: "k1", ...(typ ? { typ } : {}) }).setIssuer("https://issuer.test").setAudience("codebox").setSubject(sub).setIssuedAt().setExpirationTime("5m").sign(key);
  const verifier = (acceptedTypes = ["at+jwt"]) =>
    new CodeboxTokenVerifier([], { issuer: "https://issuer.test", audience: "codebox", jwksUri: url, requiredScopes: [], userClaim: "sub", acceptedTypes }, createLogger({ level: "silent" }));

  it("accepts an access token (at+jwt, in either spelling) and names its user in the OAuth namespace", async () => {
    const info = await verifier().verifyAccessToken(await token("at+jwt"));
    expect(userIdOf(info)).toBe("oidc-alice");
    expect(userIdOf(await verifier().verifyAccessToken(await token("application/AT+JWT")))).toBe("oidc-alice");
  });

  it("refuses a token of another type (an ID token, a plain JWT) unless configured", async () => {
    await expect(verifier().verifyAccessToken(await token("JWT"))).rejects.toThrow(/type "jwt"/);
    await expect(verifier().verifyAccessToken(await token(undefined))).rejects.toThrow(/type "jwt"/);
    await expect(verifier(["at+jwt", "jwt"]).verifyAccessToken(await token("JWT"))).resolves.toBeDefined();
    expect(tokenType("application/at+JWT")).toBe("at+jwt");
  });
});
