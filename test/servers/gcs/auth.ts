// Bearer-token checks and a fake OAuth 2.0 token endpoint, so tests can prove that credentials
// reach the wire. References: https://cloud.google.com/storage/docs/authentication,
// https://developers.google.com/identity/protocols/oauth2/service-account (JWT-bearer grant and
// self-signed JWTs), RFC 7523.
import { createPublicKey, createVerify, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { GcsError } from './errors.ts';

/** A service account whose key the server trusts: JWTs it signs are accepted. */
interface TrustedAccount {
  keyId: string;
  publicKey: KeyObject;
}

/** Scopes that grant access to Cloud Storage. */
const STORAGE_SCOPES = new Set([
  'https://www.googleapis.com/auth/devstorage.full_control',
  'https://www.googleapis.com/auth/devstorage.read_write',
  'https://www.googleapis.com/auth/devstorage.read_only',
  'https://www.googleapis.com/auth/cloud-platform',
  'https://www.googleapis.com/auth/cloud-platform.read-only',
]);

/** Google's token endpoint; gtoken signs assertions for it whatever the key file's token_uri says. */
const GOOGLE_TOKEN_URI = 'https://oauth2.googleapis.com/token';

/** Longest lifetime Google allows a JWT (one hour), and the clock skew it tolerates. */
const MAX_JWT_LIFETIME_S = 3600;
const CLOCK_SKEW_S = 60;

/** Who may call the server: nobody is checked unless a token is required. */
export class Authenticator {
  readonly #requiredToken: string | undefined;
  readonly #accounts = new Map<string, TrustedAccount>();
  readonly #issued = new Set<string>();
  #tokenUri = '';

  constructor(requiredToken: string | undefined) {
    this.#requiredToken = requiredToken;
  }

  /** Whether requests must carry a bearer token at all. */
  get enforcing(): boolean {
    return this.#requiredToken !== undefined;
  }

  /** The server's own token URI, once it listens; assertions may name it or Google's as audience. */
  setTokenUri(uri: string): void {
    this.#tokenUri = uri;
  }

  /** Trusts a service-account key: its self-signed JWTs and its JWT-bearer grants are accepted. */
  trust(email: string, keyId: string, publicKeyPem: string): void {
    this.#accounts.set(email, { keyId, publicKey: createPublicKey(publicKeyPem) });
  }

  /** Throws the service's 401 unless the Authorization header carries an acceptable bearer token:
   *  the required token, one this server's /token issued, or a self-signed JWT from a trusted key. */
  check(authorization: string | undefined): void {
    if (this.#requiredToken === undefined) return;
    if (authorization === undefined) {
      throw new GcsError(401, 'required', 'Anonymous caller does not have storage access to the Google Cloud Storage resource.', {
        location: { type: 'header', name: 'Authorization' },
        headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/"' },
      });
    }
    const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
    const token = match?.[1];
    if (token !== undefined) {
      if (token === this.#requiredToken || this.#issued.has(token)) return;
      if (this.#selfSignedJwtValid(token)) return;
    }
    throw new GcsError(401, 'authError', 'Invalid Credentials', {
      location: { type: 'header', name: 'Authorization' },
      headers: { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
    });
  }

  /** POST /token: the JWT-bearer grant (RFC 7523) a service-account key produces. Answers as
   *  Google's endpoint does: 200 {access_token, expires_in, token_type}, or 400 {error, error_description}. */
  token(contentType: string | undefined, body: Buffer): { status: number; json: Record<string, unknown> } {
    if (contentType === undefined || !/^application\/x-www-form-urlencoded\b/i.test(contentType)) {
      return { status: 400, json: { error: 'invalid_request', error_description: 'Content-Type must be application/x-www-form-urlencoded.' } };
    }
    const form = new URLSearchParams(body.toString('utf8'));
    const grantType = form.get('grant_type');
    if (grantType !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return { status: 400, json: { error: 'unsupported_grant_type', error_description: `Invalid grant_type: ${grantType ?? ''}` } };
    }
    const assertion = form.get('assertion');
    if (assertion === null) return { status: 400, json: { error: 'invalid_request', error_description: 'Missing required parameter: assertion' } };
    const verdict = this.#verifyJwt(assertion);
    if (typeof verdict === 'string') return { status: 400, json: { error: 'invalid_grant', error_description: verdict } };
    const aud = verdict.aud;
    if (aud !== this.#tokenUri && aud !== GOOGLE_TOKEN_URI) {
      return { status: 400, json: { error: 'invalid_grant', error_description: 'Invalid JWT: audience is not the token endpoint.' } };
    }
    if (!hasStorageScope(verdict.scope)) {
      return { status: 400, json: { error: 'invalid_scope', error_description: 'No storage scope in the assertion.' } };
    }
    const accessToken = this.#requiredToken ?? `ya29.test-${randomBytes(16).toString('base64url')}`;
    this.#issued.add(accessToken);
    return { status: 200, json: { access_token: accessToken, expires_in: 3599, token_type: 'Bearer' } };
  }

  /** A self-signed JWT used directly as the bearer token, as google-auth-library sends for a key
   *  outside the default universe: trusted issuer, valid signature and times, a storage scope or an audience. */
  #selfSignedJwtValid(token: string): boolean {
    const verdict = this.#verifyJwt(token);
    if (typeof verdict === 'string') return false;
    if (verdict.sub !== undefined && verdict.sub !== verdict.iss) return false;
    return hasStorageScope(verdict.scope) || typeof verdict.aud === 'string';
  }

  /** Checks an RS256 JWT against the trusted key of its issuer; returns its claims or why it failed. */
  #verifyJwt(token: string): JwtClaims | string {
    const parts = token.split('.');
    if (parts.length !== 3) return 'Invalid JWT: not three segments.';
    const [headerText, payloadText, signatureText] = parts as [string, string, string];
    let header: { alg?: unknown; kid?: unknown };
    let claims: JwtClaims;
    try {
      header = JSON.parse(Buffer.from(headerText, 'base64url').toString('utf8')) as { alg?: unknown; kid?: unknown };
      claims = JSON.parse(Buffer.from(payloadText, 'base64url').toString('utf8')) as JwtClaims;
    } catch (err) {
      return `Invalid JWT: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (header.alg !== 'RS256') return 'Invalid JWT: alg must be RS256.';
    const account = typeof claims.iss === 'string' ? this.#accounts.get(claims.iss) : undefined;
    if (account === undefined) return 'Invalid JWT: unknown issuer.';
    if (header.kid !== undefined && header.kid !== account.keyId) return 'Invalid JWT Signature.';
    const verifier = createVerify('RSA-SHA256');
    verifier.update(`${headerText}.${payloadText}`);
    if (!verifier.verify(account.publicKey, Buffer.from(signatureText, 'base64url'))) return 'Invalid JWT Signature.';
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number') return 'Invalid JWT: iat and exp are required.';
    if (claims.iat > now + CLOCK_SKEW_S || claims.exp <= now || claims.exp - claims.iat > MAX_JWT_LIFETIME_S) {
      return 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.';
    }
    return claims;
  }
}

/** The claims this server reads from a JWT. */
interface JwtClaims {
  iss?: unknown;
  sub?: unknown;
  aud?: unknown;
  scope?: unknown;
  iat?: unknown;
  exp?: unknown;
}

/** Whether a space-separated scope claim includes one that grants Cloud Storage access. */
function hasStorageScope(scope: unknown): boolean {
  return typeof scope === 'string' && scope.split(' ').some((s) => STORAGE_SCOPES.has(s));
}
