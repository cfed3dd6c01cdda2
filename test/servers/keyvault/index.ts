/**
 * A strict, in-process test server for the part of the Azure Key Vault keys REST API that key
 * unwrapping uses. No Key Vault emulator exists, so providers/azure/keyvault.ts is tested against
 * this, through the real @azure/keyvault-keys CryptographyClient, over HTTPS on 127.0.0.1 (the SDK
 * sends bearer tokens over TLS only; the certificate is self-signed, see azure-compute/tls.ts).
 *
 * Implemented, following https://learn.microsoft.com/rest/api/keyvault/keys:
 * - GET /keys/{name}[/{version}] (Get Key): the public JWK (kty RSA, n, e, key_ops) and attributes.
 * - POST /keys/{name}/{version}/wrapkey and /unwrapkey (an empty version is the current one) with
 *   {alg, value (base64url)}: real RSA-OAEP-256 (and RSA-OAEP) with the key's private part, which
 *   never leaves the server; the answer is {kid, value}.
 * - api-version is required (400 otherwise).
 * - Challenge authentication: a request without Authorization answers 401 with
 *   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
 *   resource="https://vault.azure.net"`, as the service does; a bearer token other than the
 *   server's is 401 Unauthorized.
 * - Errors in the service's shape {error: {code, message, innererror?}}: 404 KeyNotFound, 403
 *   Forbidden (ForbiddenByRbac) while deny() is on, 403 Forbidden "... disabled key" for a disabled
 *   key, 400 BadParameter for a value that does not unwrap (another key's, or damaged), 503
 *   ServiceUnavailable for failNext(n).
 * - Strictness: other methods and paths 404/405; a body that is not a JSON object, an unknown field,
 *   a missing alg or value, a value that is not base64url, an unsupported alg are 400.
 *
 * Not implemented: key creation over the API (addKey makes them), EC and oct keys, encrypt/decrypt,
 * sign/verify, key rotation policies, soft delete, managed HSM, and Entra ID itself (the test
 * credential hands the server's token straight to the SDK).
 */
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { makeSelfSignedCertificate } from '../azure-compute/tls.ts';
import { listenOnLoopback } from '../loopback-server.ts';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const ALGORITHMS: Readonly<Record<string, string>> = { 'RSA-OAEP-256': 'sha256', 'RSA-OAEP': 'sha1' };

interface VaultKey {
  version: string;
  publicKey: KeyObject;
  privateKey: KeyObject;
  enabled: boolean;
}

export interface KeyVaultServerHandle {
  /** https://127.0.0.1:PORT, the vault URL. */
  vaultUrl: string;
  /** The CA to trust. */
  ca: string;
  /** The bearer token the server accepts. */
  token: string;
  /** A credential for the SDK that hands out the token (or another one). */
  credential(token?: string): { getToken(): Promise<{ token: string; expiresOnTimestamp: number }> };
  /** Creates an RSA key; returns its full identifier (with version). */
  addKey(name: string): string;
  setEnabled(name: string, enabled: boolean): void;
  deleteKey(name: string): void;
  deny(on: boolean): void;
  failNext(n: number): void;
  /** wrapKey as the service does it (for tests to make a key file). */
  wrap(name: string, key: Buffer, alg?: string): Buffer;
  readonly calls: { get: number; unwrap: number; challenges: number; refused: number };
  stop(): Promise<void>;
}

class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly inner: string | undefined;
  constructor(status: number, code: string, message: string, inner?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.inner = inner;
  }
}

const b64url = (b: Buffer): string => b.toString('base64url');

function fromB64url(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(value) || value === '') {
    throw new ApiError(400, 'BadParameter', `Property ${field} is not a base64url string.`);
  }
  return Buffer.from(value, 'base64url');
}

export async function startKeyVaultServer(): Promise<KeyVaultServerHandle> {
  const { certificate, privateKey } = makeSelfSignedCertificate();
  const token = `kv-test-${randomBytes(12).toString('hex')}`;
  const keys = new Map<string, VaultKey>();
  let denied = false;
  let failures = 0;
  const calls = { get: 0, unwrap: 0, challenges: 0, refused: 0 };
  let origin = '';

  const keyOf = (name: string, version: string): VaultKey => {
    const key = keys.get(name);
    if (key === undefined || (version !== '' && version !== key.version)) {
      throw new ApiError(404, 'KeyNotFound', `A key with (name/id) ${name}${version === '' ? '' : `/${version}`} was not found in this key vault.`);
    }
    return key;
  };
  const kid = (name: string, key: VaultKey): string => `${origin}/keys/${name}/${key.version}`;
  const bundle = (name: string, key: VaultKey): unknown => {
    const jwk = key.publicKey.export({ format: 'jwk' });
    return {
      key: { kid: kid(name, key), kty: 'RSA', key_ops: ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'], n: jwk.n, e: jwk.e },
      attributes: { enabled: key.enabled, created: 1_700_000_000, updated: 1_700_000_000, recoveryLevel: 'Recoverable+Purgeable', recoverableDays: 90 },
    };
  };
  const wrapWith = (key: VaultKey, alg: string, plain: Buffer): Buffer =>
    publicEncrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: ALGORITHMS[alg] ?? 'sha256' }, plain);

  const handle = (req: IncomingMessage, raw: Buffer): { status: number; body: unknown } => {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const auth = req.headers.authorization;
    if (auth === undefined) {
      calls.challenges += 1;
      throw new ApiError(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.');
    }
    if (auth !== `Bearer ${token}`) throw new ApiError(401, 'Unauthorized', 'AKV10022: Invalid audience or token.');
    if (url.searchParams.get('api-version') === null) throw new ApiError(400, 'BadParameter', 'The api-version query parameter is required.');
    if (denied) throw new ApiError(403, 'Forbidden', 'Caller is not authorized to perform action on resource.', 'ForbiddenByRbac');
    if (failures > 0) {
      failures -= 1;
      throw new ApiError(503, 'ServiceUnavailable', 'The service is temporarily unavailable.');
    }
    const get = /^\/keys\/([0-9A-Za-z-]+)(?:\/([0-9A-Za-z]*))?\/?$/.exec(url.pathname);
    if (get !== null) {
      if (req.method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', `${req.method ?? '?'} is not allowed here.`);
      const name = get[1] ?? '';
      calls.get += 1;
      return { status: 200, body: bundle(name, keyOf(name, get[2] ?? '')) };
    }
    const op = /^\/keys\/([0-9A-Za-z-]+)\/([0-9A-Za-z]*)\/(wrapkey|unwrapkey)$/.exec(url.pathname);
    if (op === null) throw new ApiError(404, 'NotFound', `No route for ${url.pathname}`);
    if (req.method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', `${req.method ?? '?'} is not allowed here.`);
    const name = op[1] ?? '';
    const key = keyOf(name, op[2] ?? '');
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new ApiError(400, 'BadParameter', 'The request body is not valid JSON.');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'BadParameter', 'The request body is not a JSON object.');
    const fields = body as Record<string, unknown>;
    for (const f of Object.keys(fields)) if (f !== 'alg' && f !== 'value') throw new ApiError(400, 'BadParameter', `Unknown property ${f}.`);
    const alg = fields['alg'];
    if (typeof alg !== 'string' || ALGORITHMS[alg] === undefined) throw new ApiError(400, 'BadParameter', `Invalid algorithm ${String(alg)}.`);
    const value = fromB64url(fields['value'], 'value');
    if (!key.enabled) throw new ApiError(403, 'Forbidden', `Operation ${op[3] === 'wrapkey' ? 'wrapKey' : 'unwrapKey'} is not allowed on a disabled key.`, 'KeyDisabled');
    if (op[3] === 'wrapkey') return { status: 200, body: { kid: kid(name, key), value: b64url(wrapWith(key, alg, value)) } };
    let plain: Buffer;
    try {
      plain = privateDecrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: ALGORITHMS[alg] }, value);
    } catch {
      throw new ApiError(400, 'BadParameter', 'The parameter is incorrect.');
    }
    calls.unwrap += 1;
    return { status: 200, body: { kid: kid(name, key), value: b64url(plain) } };
  };

  const server = createServer({ cert: certificate, key: privateKey }, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let status: number;
      let body: unknown;
      const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
      try {
        ({ status, body } = handle(req, Buffer.concat(chunks)));
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError(500, 'InternalServerError', 'internal error');
        calls.refused += 1;
        status = e.status;
        body = { error: { code: e.code, message: e.message, ...(e.inner === undefined ? {} : { innererror: { code: e.inner } }) } };
        if (status === 401) headers['www-authenticate'] = `Bearer authorization="https://login.microsoftonline.com/${TENANT}", resource="https://vault.azure.net"`;
      }
      const text = JSON.stringify(body);
      res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
      res.end(text);
    });
  });
  const listener = await listenOnLoopback(server, 'Key Vault test server');
  origin = `https://127.0.0.1:${listener.port}`;

  return {
    vaultUrl: origin,
    ca: certificate,
    token,
    calls,
    credential: (t = token) => ({ getToken: async () => ({ token: t, expiresOnTimestamp: Date.now() + 3_600_000 }) }),
    addKey(name) {
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const key: VaultKey = { version: randomBytes(16).toString('hex'), publicKey: pair.publicKey, privateKey: pair.privateKey, enabled: true };
      keys.set(name, key);
      return kid(name, key);
    },
    setEnabled(name, enabled) { keyOf(name, '').enabled = enabled; },
    deleteKey(name) { keys.delete(name); },
    deny(on) { denied = on; },
    failNext(n) { failures = n; },
    wrap(name, plain, alg = 'RSA-OAEP-256') { return wrapWith(keyOf(name, ''), alg, plain); },
    stop: () => listener.stop(),
  };
}
