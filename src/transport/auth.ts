import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { InvalidTokenError, InsufficientScopeError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { OAuthTokenVerifier } from "@modelcontextprotocol/sdk/server/auth/provider.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from "jose";
import type { Config } from "../config/schema.js";
import type { Logger } from "../shared/logger.js";

export const hashKey = (key: string): Buffer => createHash("sha256").update(key, "utf8").digest();

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
      const { payload } = await jwtVerify(token, this.jwks!, { issuer: o.issuer, audience: o.audience });
      const scopes = typeof payload.scope === "string" ? payload.scope.split(" ").filter(Boolean) : Array.isArray(payload.scp) ? (payload.scp as string[]) : [];
      const missing = o.requiredScopes.filter((s) => !scopes.includes(s));
      if (missing.length) throw new InsufficientScopeError(`missing scope(s): ${missing.join(", ")}`);
      const user = payload[o.userClaim];
      if (typeof user !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/.test(user)) throw new InvalidTokenError(`the token's "${o.userClaim}" claim is not a usable user id`);
      // User ids become directory names: map the claim to a safe, stable id.
      const userId = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(user) && !user.includes("..") ? user : `u-${createHash("sha256").update(user).digest("hex").slice(0, 32)}`;
      if (typeof payload.exp !== "number") throw new InvalidTokenError("the token has no expiry (exp)");
      return { token, clientId: typeof payload.client_id === "string" ? payload.client_id : "oauth", scopes, expiresAt: payload.exp, extra: { userId } };
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
