/**
 * A strict, in-process test server for the part of the AWS KMS JSON 1.1 API that envelope
 * encryption uses (providers/aws/kms.ts) through `@aws-sdk/client-kms`. No KMS emulator installs on
 * these machines, so the unwrap path is tested against this, through the real SDK over HTTP on
 * 127.0.0.1. Keys live in memory; tests create them and change their state through the handle.
 *
 * Implemented, following https://docs.aws.amazon.com/kms/latest/APIReference/ (CommonParameters,
 * CommonErrors, API_Decrypt, API_Encrypt, API_GenerateDataKey):
 * - POST / only, `Content-Type: application/x-amz-json-1.1`, `X-Amz-Target: TrentService.<Action>`
 *   for Decrypt, Encrypt and GenerateDataKey (another target: 400 UnknownOperationException; a body
 *   that is not a JSON object: 400 SerializationException). Blobs travel as base64 strings.
 * - Signature Version 4, verified in full (canonical request, string to sign, signature) against the
 *   one access key the server knows, scoped to service `kms` and the server's region: 400
 *   MissingAuthenticationTokenException without an Authorization header, 400
 *   IncompleteSignatureException when it cannot be parsed, 400 UnrecognizedClientException for an
 *   unknown access key, 400 InvalidSignatureException for a wrong region, service or signature.
 * - Errors as the service answers them: status 400 (500 for KMSInternalException) and the body
 *   `{"__type": "<Code>", "message": "..."}`.
 * - Keys by key id, key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), alias name (alias/NAME) or alias
 *   ARN; an unknown key: NotFoundException. Key states: a disabled key answers DisabledException, a
 *   key the test marks denied answers AccessDeniedException (as IAM would for kms:Decrypt etc.).
 * - Ciphertext blobs bind the key: version byte, the key id, a 12-byte nonce, AES-256-GCM of the
 *   plaintext under the key's material with the key id and the encryption context as additional
 *   data. So a Decrypt whose KeyId names another key answers IncorrectKeyException, and a damaged
 *   blob (or another encryption context) InvalidCiphertextException. Decrypt without KeyId uses the
 *   key the blob names.
 * - Parameter checks: unknown members are refused (ValidationException; stricter than the service,
 *   which ignores them), CiphertextBlob 1..6144 bytes, Plaintext 1..4096, NumberOfBytes 1..1024,
 *   KeySpec AES_128/AES_256 (exactly one of NumberOfBytes and KeySpec), EncryptionAlgorithm
 *   SYMMETRIC_DEFAULT only (the keys are symmetric).
 * Not implemented: grants, Recipient (Nitro enclaves), DryRun, asymmetric keys, key rotation.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenOnLoopback } from '../loopback-server.ts';
import { canonicalRequest, sha256Hex, signature } from '../ec2/auth.ts';

export const KMS_TEST_ACCESS_KEY_ID = 'AKIAKMSTESTSERVER001';
export const KMS_TEST_SECRET_ACCESS_KEY = 'kms-test-server-secret-key-000000000000';
export const KMS_TEST_ACCOUNT = '111122223333';

/** A key the server holds; tests flip `enabled` and `denied`. */
export interface KmsTestKey {
  keyId: string;
  arn: string;
  enabled: boolean;
  /** Every call with this key answers AccessDeniedException (a missing kms:Decrypt permission). */
  denied: boolean;
}

export interface KmsServerOptions {
  region?: string;
}

export interface KmsServerHandle {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Creates a symmetric key; `alias` ("alias/x") also names it. */
  createKey(alias?: string): KmsTestKey;
  /** Encrypt on the server's side, as `aws kms encrypt` would: the raw CiphertextBlob. */
  encrypt(keyId: string, plaintext: Buffer): Buffer;
  /** Calls per action, for assertions (Decrypt once per process). */
  calls: Record<string, number>;
  stop(): Promise<void>;
}

class KmsError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const BLOB_VERSION = 1;
const MAX_BODY = 1024 * 1024;
const MAX_SKEW_MS = 15 * 60 * 1000;

interface KeyRecord extends KmsTestKey {
  material: Buffer;
}

/** Starts the server on 127.0.0.1; stop() ends it and every connection. */
export async function startKmsServer(opts: KmsServerOptions = {}): Promise<KmsServerHandle> {
  const region = opts.region ?? 'eu-west-1';
  const keys = new Map<string, KeyRecord>();
  const aliases = new Map<string, string>();
  const calls: Record<string, number> = {};

  function resolveKey(ref: unknown): KeyRecord {
    if (typeof ref !== 'string' || ref === '' || ref.length > 2048) throw new KmsError('ValidationException', '1 validation error detected: Value at \'keyId\' failed to satisfy constraint: Member must have length between 1 and 2048');
    let id = ref;
    const arn = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):(key|alias)\/(.+)$/.exec(ref);
    if (arn !== null) {
      if (arn[1] !== region || arn[2] !== KMS_TEST_ACCOUNT) throw new KmsError('NotFoundException', `Invalid arn ${region}`);
      id = arn[3] === 'alias' ? `alias/${arn[4] ?? ''}` : (arn[4] ?? '');
    } else if (ref.startsWith('arn:')) {
      throw new KmsError('InvalidArnException', 'Invalid arn');
    }
    if (id.startsWith('alias/')) {
      const target = aliases.get(id);
      if (target === undefined) throw new KmsError('NotFoundException', `Alias arn:aws:kms:${region}:${KMS_TEST_ACCOUNT}:${id} is not found.`);
      id = target;
    }
    const key = keys.get(id);
    if (key === undefined) throw new KmsError('NotFoundException', `Key 'arn:aws:kms:${region}:${KMS_TEST_ACCOUNT}:key/${id}' does not exist`);
    return key;
  }

  function usable(key: KeyRecord, action: string): void {
    if (key.denied) {
      throw new KmsError('AccessDeniedException', `User: arn:aws:iam::${KMS_TEST_ACCOUNT}:user/test is not authorized to perform: kms:${action} on resource: ${key.arn} because no identity-based policy allows the kms:${action} action`);
    }
    if (!key.enabled) throw new KmsError('DisabledException', `${key.arn} is disabled.`);
  }

  function context(value: unknown): Buffer {
    if (value === undefined) return Buffer.alloc(0);
    if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
      throw new KmsError('ValidationException', 'EncryptionContext must be a map of strings');
    }
    const entries = Object.entries(value as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return Buffer.from(JSON.stringify(entries));
  }

  function seal(key: KeyRecord, plaintext: Buffer, ctx: Buffer): Buffer {
    const idBytes = Buffer.from(key.keyId, 'ascii');
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.material, nonce);
    cipher.setAAD(Buffer.concat([idBytes, ctx]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.from([BLOB_VERSION, idBytes.length]), idBytes, nonce, body, cipher.getAuthTag()]);
  }

  /** The key id a blob names (undefined when it is not one of this server's blobs). */
  function blobKeyId(blob: Buffer): string | undefined {
    if (blob.length < 2 || blob[0] !== BLOB_VERSION) return undefined;
    const len = blob[1] ?? 0;
    if (blob.length < 2 + len + 12 + 16) return undefined;
    return blob.subarray(2, 2 + len).toString('ascii');
  }

  function open(key: KeyRecord, blob: Buffer, ctx: Buffer): Buffer {
    const len = blob[1] ?? 0;
    const nonce = blob.subarray(2 + len, 14 + len);
    const decipher = createDecipheriv('aes-256-gcm', key.material, nonce);
    decipher.setAAD(Buffer.concat([Buffer.from(key.keyId, 'ascii'), ctx]));
    decipher.setAuthTag(blob.subarray(blob.length - 16));
    try {
      return Buffer.concat([decipher.update(blob.subarray(14 + len, blob.length - 16)), decipher.final()]);
    } catch {
      throw new KmsError('InvalidCiphertextException', '');
    }
  }

  function b64(value: unknown, member: string, max: number): Buffer {
    if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new KmsError('SerializationException', `${member} is not a base64 blob`);
    const bytes = Buffer.from(value, 'base64');
    if (bytes.length < 1 || bytes.length > max) {
      throw new KmsError('ValidationException', `1 validation error detected: Value at '${member.charAt(0).toLowerCase()}${member.slice(1)}' failed to satisfy constraint: Member must have length between 1 and ${max}`);
    }
    return bytes;
  }

  function onlyMembers(body: Record<string, unknown>, allowed: readonly string[]): void {
    for (const name of Object.keys(body)) {
      if (!allowed.includes(name)) throw new KmsError('ValidationException', `unknown member ${name}`);
    }
    const alg = body['EncryptionAlgorithm'];
    if (alg !== undefined && alg !== 'SYMMETRIC_DEFAULT') throw new KmsError('InvalidKeyUsageException', `${String(alg)} is not supported by a symmetric key`);
  }

  const actions: Record<string, (body: Record<string, unknown>) => Record<string, unknown>> = {
    Decrypt(body) {
      onlyMembers(body, ['CiphertextBlob', 'EncryptionContext', 'GrantTokens', 'KeyId', 'EncryptionAlgorithm']);
      const blob = b64(body['CiphertextBlob'], 'CiphertextBlob', 6144);
      const ctx = context(body['EncryptionContext']);
      const named = blobKeyId(blob);
      if (body['KeyId'] !== undefined) {
        const key = resolveKey(body['KeyId']);
        usable(key, 'Decrypt');
        if (named === undefined) throw new KmsError('InvalidCiphertextException', '');
        if (named !== key.keyId) {
          throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.');
        }
        return { KeyId: key.arn, Plaintext: open(key, blob, ctx).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      const key = named === undefined ? undefined : keys.get(named);
      if (key === undefined) throw new KmsError('InvalidCiphertextException', '');
      usable(key, 'Decrypt');
      return { KeyId: key.arn, Plaintext: open(key, blob, ctx).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    },
    Encrypt(body) {
      onlyMembers(body, ['KeyId', 'Plaintext', 'EncryptionContext', 'GrantTokens', 'EncryptionAlgorithm']);
      const key = resolveKey(body['KeyId']);
      const plaintext = b64(body['Plaintext'], 'Plaintext', 4096);
      const ctx = context(body['EncryptionContext']);
      usable(key, 'Encrypt');
      return { KeyId: key.arn, CiphertextBlob: seal(key, plaintext, ctx).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    },
    GenerateDataKey(body) {
      onlyMembers(body, ['KeyId', 'NumberOfBytes', 'KeySpec', 'EncryptionContext', 'GrantTokens']);
      const key = resolveKey(body['KeyId']);
      const spec = body['KeySpec'];
      const count = body['NumberOfBytes'];
      if ((spec === undefined) === (count === undefined)) {
        throw new KmsError('ValidationException', 'Please specify either number of bytes or key spec.');
      }
      let n: number;
      if (spec !== undefined) {
        if (spec !== 'AES_256' && spec !== 'AES_128') throw new KmsError('ValidationException', `1 validation error detected: Value '${String(spec)}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]`);
        n = spec === 'AES_256' ? 32 : 16;
      } else {
        if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 1024) {
          throw new KmsError('ValidationException', '1 validation error detected: Value at \'numberOfBytes\' failed to satisfy constraint: Member must have value between 1 and 1024');
        }
        n = count;
      }
      const ctx = context(body['EncryptionContext']);
      usable(key, 'GenerateDataKey');
      const plaintext = randomBytes(n);
      return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), CiphertextBlob: seal(key, plaintext, ctx).toString('base64') };
    },
  };

  function verifySignature(req: IncomingMessage, body: Buffer): void {
    const header = req.headers.authorization;
    if (header === undefined || header === '') throw new KmsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    const match = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(header.trim());
    const credential = match?.[1]?.split('/');
    if (match === null || credential === undefined || credential.length !== 5 || credential[4] !== 'aws4_request') {
      throw new KmsError('IncompleteSignatureException', 'Authorization header requires \'Credential\', \'Signature\' and \'SignedHeaders\' parameters.');
    }
    const [keyId, date, reqRegion, service] = credential as [string, string, string, string, string];
    const signedHeaders = (match[2] ?? '').split(';');
    const requestDate = req.headers['x-amz-date'];
    if (typeof requestDate !== 'string' || !/^\d{8}T\d{6}Z$/.test(requestDate) || !signedHeaders.includes('host') || !signedHeaders.includes('x-amz-date')) {
      throw new KmsError('IncompleteSignatureException', 'The request must sign the host and x-amz-date headers.');
    }
    const time = Date.parse(`${requestDate.slice(0, 4)}-${requestDate.slice(4, 6)}-${requestDate.slice(6, 8)}T${requestDate.slice(9, 11)}:${requestDate.slice(11, 13)}:${requestDate.slice(13, 15)}Z`);
    if (!Number.isFinite(time) || Math.abs(time - Date.now()) > MAX_SKEW_MS) throw new KmsError('InvalidSignatureException', 'Signature expired');
    if (keyId !== KMS_TEST_ACCESS_KEY_ID) throw new KmsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (reqRegion !== region) throw new KmsError('InvalidSignatureException', `Credential should be scoped to a valid region, not '${reqRegion}'.`);
    if (service !== 'kms') throw new KmsError('InvalidSignatureException', `Credential should be scoped to correct service: 'kms'.`);
    if (date !== requestDate.slice(0, 8)) throw new KmsError('InvalidSignatureException', 'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP');
    const canonical = canonicalRequest(req.method ?? 'POST', req.url ?? '/', req.headers, signedHeaders, sha256Hex(body));
    const expected = Buffer.from(signature(KMS_TEST_SECRET_ACCESS_KEY, requestDate, credential.slice(1).join('/'), canonical), 'hex');
    const given = Buffer.from(match[3] ?? '', 'hex');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new KmsError('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) throw new KmsError('ValidationException', 'request too large');
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks);
    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') throw new KmsError('UnknownOperationException', '');
    const target = req.headers['x-amz-target'];
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
    if (contentType !== 'application/x-amz-json-1.1') throw new KmsError('UnknownOperationException', '');
    verifySignature(req, body);
    const action = typeof target === 'string' && target.startsWith('TrentService.') ? actions[target.slice('TrentService.'.length)] : undefined;
    if (action === undefined) throw new KmsError('UnknownOperationException', '');
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new KmsError('SerializationException', 'Start of structure or map found where not expected.');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new KmsError('SerializationException', 'Start of structure or map found where not expected.');
    const name = (target as string).slice('TrentService.'.length);
    calls[name] = (calls[name] ?? 0) + 1;
    send(res, 200, action(parsed as Record<string, unknown>));
  }

  function send(res: ServerResponse, status: number, doc: unknown): void {
    const text = JSON.stringify(doc);
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID() });
    res.end(text);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof KmsError) send(res, err.status, { __type: err.code, message: err.message });
      else send(res, 500, { __type: 'KMSInternalException', message: 'internal error' });
    });
  });
  const listener = await listenOnLoopback(server, 'kms test server');

  return {
    endpoint: `http://127.0.0.1:${listener.port}`,
    region,
    credentials: { accessKeyId: KMS_TEST_ACCESS_KEY_ID, secretAccessKey: KMS_TEST_SECRET_ACCESS_KEY },
    createKey(alias) {
      const keyId = randomUUID();
      const record: KeyRecord = { keyId, arn: `arn:aws:kms:${region}:${KMS_TEST_ACCOUNT}:key/${keyId}`, enabled: true, denied: false, material: randomBytes(32) };
      keys.set(keyId, record);
      if (alias !== undefined) aliases.set(alias, keyId);
      return record;
    },
    encrypt(keyId, plaintext) {
      return seal(resolveKey(keyId), plaintext, Buffer.alloc(0));
    },
    calls,
    stop: () => listener.stop(),
  };
}
