/**
 * A strict, in-process test server for the part of the Cloud KMS REST API v1 that key unwrapping
 * uses: cryptoKeys.encrypt and cryptoKeys.decrypt on symmetric ENCRYPT_DECRYPT keys. No Cloud KMS
 * emulator exists, so providers/gcp/kms.ts is tested against this, through the real
 * @google-cloud/kms client (REST transport, `fallback: true`) over HTTP on 127.0.0.1.
 *
 * Implemented, following https://cloud.google.com/kms/docs/reference/rest/v1:
 * - POST /v1/{name=projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}}:encrypt with
 *   {plaintext, additionalAuthenticatedData?, plaintextCrc32c?, additionalAuthenticatedDataCrc32c?}:
 *   encrypts with the primary version and answers {name (the version), ciphertext,
 *   ciphertextCrc32c, verifiedPlaintextCrc32c, verifiedAdditionalAuthenticatedDataCrc32c, protectionLevel}.
 * - POST ...:decrypt with {ciphertext, additionalAuthenticatedData?, ciphertextCrc32c?,
 *   additionalAuthenticatedDataCrc32c?}: finds the version in the ciphertext and answers
 *   {plaintext, plaintextCrc32c, usedPrimary, protectionLevel}.
 * - Real AES-256-GCM per key version; the key's full name is authenticated, so a ciphertext of
 *   another key, or a damaged one, is 400 INVALID_ARGUMENT, as the service answers.
 * - Key versions: rotate() adds a version and makes it primary; old ciphertexts still decrypt.
 *   A disabled or destroyed version is 400 FAILED_PRECONDITION.
 * - CRC32C fields checked both ways (a mismatch is 400 INVALID_ARGUMENT).
 * - Authorization: Bearer <token> on every request (401 UNAUTHENTICATED); deny() makes every call
 *   403 PERMISSION_DENIED; an unknown key is 404 NOT_FOUND; failNext(n) answers 503 UNAVAILABLE n
 *   times; corruptPlaintextCrc() answers a wrong plaintextCrc32c.
 * - Errors in Google's JSON shape {error: {code, message, status}}.
 * - Strictness: other methods and paths 404; a body that is not a JSON object, an unknown field, a
 *   missing or non-base64 ciphertext, more than 64 KiB of plaintext are 400 INVALID_ARGUMENT.
 *
 * Not implemented: asymmetric and MAC keys, rawEncrypt/rawDecrypt, key management (create, list,
 * IAM), import jobs, EKM, the 8 KiB ciphertext overhead limits other than the 64 KiB plaintext one.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { crc32cUpdate } from '../../../src/pg/base-backup.ts';
import { listenOnLoopback } from '../loopback-server.ts';
import { Authenticator } from '../gcs/auth.ts';

const MAGIC = Buffer.from('TKMS1');
const KEY_PATH = /^\/v1\/(projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/:]+):(encrypt|decrypt)$/;
const MAX_PLAINTEXT = 64 * 1024;

interface KeyVersion {
  id: number;
  secret: Buffer;
  state: 'ENABLED' | 'DISABLED' | 'DESTROYED';
}

interface CryptoKey {
  versions: KeyVersion[];
  primary: number;
}

export interface GcpKmsServerHandle {
  /** http://127.0.0.1:PORT, for encryption_kms_endpoint_url. */
  endpoint: string;
  /** The bearer token the server accepts (besides self-signed JWTs of trusted service-account keys). */
  token: string;
  /** Trusts a service-account key (test/servers/gcs/service-account.ts): its self-signed JWTs are accepted. */
  trustServiceAccountKey(email: string, keyId: string, publicKeyPem: string): void;
  /** Creates a key (one ENABLED version, primary) and returns its name. */
  addKey(name: string): string;
  /** Adds a version to the key and makes it primary. */
  rotate(name: string): void;
  setVersionState(name: string, version: number, state: KeyVersion['state']): void;
  /** Every call answers 403 PERMISSION_DENIED while on. */
  deny(on: boolean): void;
  /** The next n calls answer 503 UNAVAILABLE. */
  failNext(n: number): void;
  /** Decrypt answers carry a wrong plaintextCrc32c while on. */
  corruptPlaintextCrc(on: boolean): void;
  /** Encrypts as the service would (for tests to make a key file). */
  encrypt(name: string, plaintext: Buffer): Buffer;
  /** Requests served, by method. */
  readonly calls: { encrypt: number; decrypt: number; refused: number };
  stop(): Promise<void>;
}

function crc32c(data: Uint8Array): string {
  return String((crc32cUpdate(0xffffffff, data) ^ 0xffffffff) >>> 0);
}

class ApiError extends Error {
  readonly code: number;
  readonly status: string;
  constructor(code: number, status: string, message: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function base64Field(body: Record<string, unknown>, field: string, required: boolean): Buffer | undefined {
  const value = body[field];
  if (value === undefined) {
    if (required) throw new ApiError(400, 'INVALID_ARGUMENT', `${field} is required`);
    return undefined;
  }
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new ApiError(400, 'INVALID_ARGUMENT', `Invalid value at '${field}' (TYPE_BYTES), Base64 decoding failed`);
  }
  return Buffer.from(value, 'base64');
}

/** An int64 wrapper in its JSON form: a decimal string (or number). */
function checkCrc(body: Record<string, unknown>, field: string, data: Buffer | undefined, dataField: string): void {
  const value = body[field];
  if (value === undefined) return;
  if ((typeof value !== 'string' && typeof value !== 'number') || !/^\d+$/.test(String(value))) {
    throw new ApiError(400, 'INVALID_ARGUMENT', `Invalid value at '${field}' (TYPE_INT64)`);
  }
  if (String(value) !== crc32c(data ?? Buffer.alloc(0))) {
    throw new ApiError(400, 'INVALID_ARGUMENT', `The checksum in field ${field} did not match the data in field ${dataField}.`);
  }
}

function onlyFields(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(body)) {
    if (!allowed.includes(field)) throw new ApiError(400, 'INVALID_ARGUMENT', `Invalid JSON payload received. Unknown name "${field}": Cannot find field.`);
  }
}

export async function startGcpKmsServer(): Promise<GcpKmsServerHandle> {
  const token = `ya29.test-${randomBytes(12).toString('hex')}`;
  const keys = new Map<string, CryptoKey>();
  let denied = false;
  let failures = 0;
  let badCrc = false;
  const calls = { encrypt: 0, decrypt: 0, refused: 0 };
  const authenticator = new Authenticator(token);

  const keyOf = (name: string): CryptoKey => {
    const key = keys.get(name);
    if (key === undefined) throw new ApiError(404, 'NOT_FOUND', `${name} not found.`);
    return key;
  };
  const seal = (name: string, key: CryptoKey, plaintext: Buffer, aad: Buffer): Buffer => {
    const version = key.versions.find((v) => v.id === key.primary);
    if (version === undefined || version.state !== 'ENABLED') throw new ApiError(400, 'FAILED_PRECONDITION', `The primary version of ${name} is not enabled.`);
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', version.secret, nonce);
    cipher.setAAD(Buffer.concat([Buffer.from(name), Buffer.from([0]), aad]));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const id = Buffer.alloc(4);
    id.writeUInt32BE(version.id);
    return Buffer.concat([MAGIC, id, nonce, ct, cipher.getAuthTag()]);
  };
  const open = (name: string, key: CryptoKey, ciphertext: Buffer, aad: Buffer): { plaintext: Buffer; version: KeyVersion } => {
    const invalid = new ApiError(400, 'INVALID_ARGUMENT', 'Decryption failed: the ciphertext is invalid.');
    if (ciphertext.length < MAGIC.length + 4 + 12 + 16 || !ciphertext.subarray(0, MAGIC.length).equals(MAGIC)) throw invalid;
    const version = key.versions.find((v) => v.id === ciphertext.readUInt32BE(MAGIC.length));
    if (version === undefined) throw invalid;
    if (version.state !== 'ENABLED') {
      throw new ApiError(400, 'FAILED_PRECONDITION', `${name}/cryptoKeyVersions/${version.id} is not enabled, current state is: ${version.state}.`);
    }
    const at = MAGIC.length + 4;
    try {
      const decipher = createDecipheriv('aes-256-gcm', version.secret, ciphertext.subarray(at, at + 12));
      decipher.setAAD(Buffer.concat([Buffer.from(name), Buffer.from([0]), aad]));
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      return { plaintext: Buffer.concat([decipher.update(ciphertext.subarray(at + 12, ciphertext.length - 16)), decipher.final()]), version };
    } catch {
      throw invalid;
    }
  };

  const handle = (req: IncomingMessage, raw: Buffer): { status: number; body: unknown } => {
    try {
      authenticator.check(req.headers.authorization);
    } catch {
      throw new ApiError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token.');
    }
    if (denied) throw new ApiError(403, 'PERMISSION_DENIED', "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource (or it may not exist).");
    if (failures > 0) {
      failures -= 1;
      throw new ApiError(503, 'UNAVAILABLE', 'The service is currently unavailable.');
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    for (const param of url.searchParams.keys()) {
      if (param !== '$alt') throw new ApiError(400, 'INVALID_ARGUMENT', `Unknown query parameter ${param}`);
    }
    const m = KEY_PATH.exec(url.pathname);
    if (req.method !== 'POST' || m === null) throw new ApiError(404, 'NOT_FOUND', `No route for ${req.method ?? '?'} ${url.pathname}`);
    const name = m[1] ?? '';
    const method = m[2] as 'encrypt' | 'decrypt';
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new ApiError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received: not an object.');
    const fields = body as Record<string, unknown>;
    // The client sends the resource name in the body too.
    if (fields['name'] !== undefined && fields['name'] !== name) throw new ApiError(400, 'INVALID_ARGUMENT', 'name in the body differs from the URL');
    const key = keyOf(name);
    if (method === 'encrypt') {
      onlyFields(fields, ['name', 'plaintext', 'additionalAuthenticatedData', 'plaintextCrc32c', 'additionalAuthenticatedDataCrc32c']);
      const plaintext = base64Field(fields, 'plaintext', true) ?? Buffer.alloc(0);
      if (plaintext.length > MAX_PLAINTEXT) throw new ApiError(400, 'INVALID_ARGUMENT', 'The plaintext is larger than 64 KiB.');
      const aad = base64Field(fields, 'additionalAuthenticatedData', false) ?? Buffer.alloc(0);
      checkCrc(fields, 'plaintextCrc32c', plaintext, 'plaintext');
      checkCrc(fields, 'additionalAuthenticatedDataCrc32c', aad, 'additional_authenticated_data');
      const ciphertext = seal(name, key, plaintext, aad);
      calls.encrypt += 1;
      return {
        status: 200,
        body: {
          name: `${name}/cryptoKeyVersions/${key.primary}`,
          ciphertext: ciphertext.toString('base64'),
          ciphertextCrc32c: crc32c(ciphertext),
          verifiedPlaintextCrc32c: fields['plaintextCrc32c'] !== undefined,
          verifiedAdditionalAuthenticatedDataCrc32c: fields['additionalAuthenticatedDataCrc32c'] !== undefined,
          protectionLevel: 'SOFTWARE',
        },
      };
    }
    onlyFields(fields, ['name', 'ciphertext', 'additionalAuthenticatedData', 'ciphertextCrc32c', 'additionalAuthenticatedDataCrc32c']);
    const ciphertext = base64Field(fields, 'ciphertext', true) ?? Buffer.alloc(0);
    const aad = base64Field(fields, 'additionalAuthenticatedData', false) ?? Buffer.alloc(0);
    checkCrc(fields, 'ciphertextCrc32c', ciphertext, 'ciphertext');
    checkCrc(fields, 'additionalAuthenticatedDataCrc32c', aad, 'additional_authenticated_data');
    const { plaintext, version } = open(name, key, ciphertext, aad);
    calls.decrypt += 1;
    const crc = badCrc ? String((Number(crc32c(plaintext)) + 1) % 2 ** 32) : crc32c(plaintext);
    return { status: 200, body: { plaintext: plaintext.toString('base64'), plaintextCrc32c: crc, usedPrimary: version.id === key.primary, protectionLevel: 'SOFTWARE' } };
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let status: number;
      let body: unknown;
      try {
        ({ status, body } = handle(req, Buffer.concat(chunks)));
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError(500, 'INTERNAL', 'internal error');
        calls.refused += 1;
        status = e.code;
        body = { error: { code: e.code, message: e.message, status: e.status } };
      }
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  const listener = await listenOnLoopback(server, 'Cloud KMS test server');

  return {
    endpoint: `http://127.0.0.1:${listener.port}`,
    token,
    calls,
    trustServiceAccountKey: (email, keyId, pem) => authenticator.trust(email, keyId, pem),
    addKey(name) {
      if (!/^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/.test(name)) throw new Error(`not a key name: ${name}`);
      keys.set(name, { versions: [{ id: 1, secret: randomBytes(32), state: 'ENABLED' }], primary: 1 });
      return name;
    },
    rotate(name) {
      const key = keyOf(name);
      const id = key.versions.length + 1;
      key.versions.push({ id, secret: randomBytes(32), state: 'ENABLED' });
      key.primary = id;
    },
    setVersionState(name, version, state) {
      const v = keyOf(name).versions.find((x) => x.id === version);
      if (v === undefined) throw new Error(`no version ${version} of ${name}`);
      v.state = state;
    },
    deny(on) { denied = on; },
    failNext(n) { failures = n; },
    corruptPlaintextCrc(on) { badCrc = on; },
    encrypt(name, plaintext) { return seal(name, keyOf(name), plaintext, Buffer.alloc(0)); },
    stop: () => listener.stop(),
  };
}
