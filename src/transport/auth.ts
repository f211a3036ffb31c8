import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { InvalidTokenError, InsufficientScopeError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { OAuthTokenVerifier } from "@modelcontextprotocol/sdk/server/auth/provider.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from "jose";
import type { Config } from "../config/schema.js";
import type { Logger } from "../shared/logger.js";

export const hashKey = (key: string): Buffer => createHash("sha256").update(key, "utf8").digest();

/**
 * User ids are folder names, so every identity source gets its own namespace, collision-free by
 * construction: API keys and the local user use the ids the operator configured (which may not
 * start with "oidc", the config refuses them); an OAuth claim becomes "oidc-<claim>" when it is a
 * short safe name, otherwise "oidch-<hash>". The two OAuth forms differ at their fifth character
 * ("-" or "h"), so no claim can take another claim's folder, hashed or not.
 */
export const OAUTH_ID_PREFIX = "oidc-";
export const OAUTH_HASHED_PREFIX = "oidch-";

const SAFE_CLAIM = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,58}$/;
const claimHash = (claim: string) => createHash("sha256").update(claim).digest("hex").slice(0, 32);

/** The user id (folder) of an OAuth identity. */
export function oauthUserId(claim: string): string {
  return SAFE_CLAIM.test(claim) && !claim.includes("..") ? `${OAUTH_ID_PREFIX}${claim}` : `${OAUTH_HASHED_PREFIX}${claimHash(claim)}`;
}

/**
 * The folder the same claim had before namespaces (0.1): the claim itself when it was a safe id,
 * else "u-<hash>". Only the hashed form is unforgeable, so only it may be adopted without further
 * checks (see UserDirectories.adoptLegacy).
 */
export function legacyOauthUserId(claim: string): { id: string; hashed: boolean } {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(claim) && !claim.includes("..") ? { id: claim, hashed: false } : { id: `u-${claimHash(claim)}`, hashed: true };
}

/**
 * Whether an OAuth user may take over the folder of their pre-namespace id: a hashed one always
 * (nobody else can produce that hash); a plain one only when it is nobody else's: not an API-key
 * user or the local user, not someone's hashed id, not already in the OAuth namespace.
 */
export function mayAdoptLegacy(legacy: { id: string; hashed: boolean }, otherIds: ReadonlySet<string>): boolean {
  if (legacy.hashed) return true;
  return !otherIds.has(legacy.id) && !/^u-[0-9a-f]{32}$/.test(legacy.id) && !/^oidc/i.test(legacy.id);
}

/** The JOSE "typ" of a token, normalised (RFC 7515: "application/" may be left out; case-insensitive). */
export function tokenType(typ: unknown): string {
  return typeof typ === "string" ? typ.toLowerCase().replace(/^application\//, "") : "jwt";
}

export interface ApiKeyEntry {
  userId: string;
  hash: Buffer;
}

/** The user id a request was authenticated as (set by the verifier, read by every tool). */
export function userIdOf(authInfo: AuthInfo | undefined): string | undefined {
  const id = authInfo?.extra?.userId;
  return typeof id === "string" ? id : undefined;
}

/**
 * Verifies bearer tokens: API keys from the config (kept only as SHA-256 hashes, compared in
 * constant time) and, when configured, OAuth 2.1 access tokens (JWTs checked against the
 * issuer's JWKS: signature, issuer, audience, expiry, scopes).
 */
export class CodeboxTokenVerifier implements OAuthTokenVerifier {
  private readonly keys: ApiKeyEntry[];
  private readonly jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  constructor(
    keys: ApiKeyEntry[],
    private readonly oauth: Config["auth"]["oauth"],
    private readonly logger: Logger,
  ) {
    this.keys = keys;
    this.jwks = oauth ? createRemoteJWKSet(new URL(oauth.jwksUri)) : undefined;
  }

  async verifyAccessToken(token: string): Promise<AuthInfo> {
    const presented = hashKey(token);
    let match: ApiKeyEntry | undefined;
    // Security: compare against every key, in constant time, without stopping early.
    for (const k of this.keys) if (timingSafeEqual(k.hash, presented) && !match) match = k;
    // API keys do not expire; each request is verified anew, so "valid for the next hour" is true.
    if (match) return { token, clientId: `apikey:${match.userId}`, scopes: [], expiresAt: Math.floor(Date.now() / 1000) + 3600, extra: { userId: match.userId } };
    if (this.oauth && this.jwks && token.split(".").length === 3) return this.verifyJwt(token);
    throw new InvalidTokenError("Invalid API key or access token");
  }

  private async verifyJwt(token: string): Promise<AuthInfo> {
    const o = this.oauth!;
    try {
      const { payload, protectedHeader } = await jwtVerify(token, this.jwks!, { issuer: o.issuer, audience: o.audience });
      // Security: an access token, not another JWT of the same issuer (an ID token, a logout token).
      const typ = tokenType(protectedHeader.typ);
      if (!o.acceptedTypes.map(tokenType).includes(typ)) throw new InvalidTokenError(`the token's type "${typ}" is not an access token type this server accepts (auth.oauth.acceptedTypes)`);
      const scopes = typeof payload.scope === "string" ? payload.scope.split(" ").filter(Boolean) : Array.isArray(payload.scp) ? (payload.scp as string[]) : [];
      const missing = o.requiredScopes.filter((s) => !scopes.includes(s));
      if (missing.length) throw new InsufficientScopeError(`missing scope(s): ${missing.join(", ")}`);
      const user = payload[o.userClaim];
      if (typeof user !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/.test(user)) throw new InvalidTokenError(`the token's "${o.userClaim}" claim is not a usable user id`);
      // User ids become directory names: a namespace of their own, collision-free (oauthUserId).
      const userId = oauthUserId(user);
      if (typeof payload.exp !== "number") throw new InvalidTokenError("the token has no expiry (exp)");
      return { token, clientId: typeof payload.client_id === "string" ? payload.client_id : "oauth", scopes, expiresAt: payload.exp, extra: { userId, legacyUserId: legacyOauthUserId(user) } };
    } catch (err) {
      if (err instanceof InvalidTokenError || err instanceof InsufficientScopeError) throw err;
      const reason = err instanceof joseErrors.JWTExpired ? "token expired" : err instanceof joseErrors.JWTClaimValidationFailed ? `claim "${err.claim}" invalid` : "token invalid";
      this.logger.info("access token refused", { reason });
      throw new InvalidTokenError(reason);
    }
  }
}

export interface ResolvedKeys {
  keys: ApiKeyEntry[];
  /** A key generated because none was configured (printed once at start-up). */
  generated?: { userId: string; key: string };
}

/** API keys from config; with no credentials configured at all, one random key for the local user. */
export function resolveApiKeys(config: Config): ResolvedKeys {
  const keys: ApiKeyEntry[] = config.auth.apiKeys.map((k) => ({
    userId: k.userId,
    hash: k.key !== undefined ? hashKey(k.key) : Buffer.from(k.keyHash!.slice("sha256:".length), "hex"),
  }));
  if (keys.length > 0 || config.auth.oauth) return { keys };
  const key = randomBytes(24).toString("base64url");
  return { keys: [{ userId: config.userId, hash: hashKey(key) }], generated: { userId: config.userId, key } };
}
