/**
 * Envelope encryption through Google Cloud KMS (docs/encryption.md): `decrypt` of the master key's
 * ciphertext (what `gcloud kms encrypt` wrote) with the configured symmetric CryptoKey; Cloud KMS
 * picks the key version from the ciphertext. The request carries the ciphertext's CRC32C and the
 * answer's plaintext CRC32C is checked, as Google asks clients to do. The CLI imports this file
 * lazily (src/cli/context.ts), only when encryption_gcp_kms_key_name is set. Errors carry
 * `unwrapFailure` (src/core/crypto/key-unwrap.ts) and name the gRPC status only, never key
 * material or credentials.
 */
import { readFile } from 'node:fs/promises';
import { KeyManagementServiceClient } from '@google-cloud/kms';
import { KeyUnwrapError, type KeyUnwrapFailure, type KeyUnwrapper } from '../../src/core/crypto/key-unwrap.ts';
import { crc32cUpdate } from '../../src/pg/base-backup.ts';
import { BROKEN_CONNECTION_CODES, kindsOf, UNREACHABLE_CODES } from '../network-errors.ts';

/** One decrypt call per process: a few attempts cover a passing hiccup. */
const MAX_ATTEMPTS = 3;

const KEY_NAME = /^projects\/([^/]+)\/locations\/([^/]+)\/keyRings\/([^/]+)\/cryptoKeys\/([^/]+)$/;

export interface GcpKmsUnwrapOptions {
  /** projects/P/locations/L/keyRings/R/cryptoKeys/K (no version: decrypt finds it in the ciphertext). */
  keyName: string;
  /** encryption_kms_endpoint_url: private endpoints, test servers; scheme://host[:port]. */
  endpointUrl?: string;
  /** gcp_key_file; otherwise GOOGLE_APPLICATION_CREDENTIALS, then Application Default Credentials. */
  keyFile?: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** Tests: at most this many attempts (default 3). */
  maxAttempts?: number;
  /** Tests: client options that replace the defaults, e.g. an authClient. */
  overrides?: Record<string, unknown>;
}


/** The parts of a CryptoKey name; a clear error for anything else. */
export function parseGcpKmsKeyName(value: string): { project: string; location: string; keyRing: string; cryptoKey: string } {
  const m = KEY_NAME.exec(value);
  if (m === null) {
    throw new Error(`${JSON.stringify(value)} is not a Cloud KMS key name: projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY`);
  }
  return { project: m[1] ?? '', location: m[2] ?? '', keyRing: m[3] ?? '', cryptoKey: m[4] ?? '' };
}

/** gRPC status codes by what they mean to the operator. */
const FAILURE_BY_STATUS: Readonly<Record<number, [string, KeyUnwrapFailure]>> = {
  3: ['INVALID_ARGUMENT', 'invalid-ciphertext'],
  4: ['DEADLINE_EXCEEDED', 'unreachable'],
  5: ['NOT_FOUND', 'not-found'],
  7: ['PERMISSION_DENIED', 'access-denied'],
  8: ['RESOURCE_EXHAUSTED', 'unreachable'],
  9: ['FAILED_PRECONDITION', 'disabled'],
  13: ['INTERNAL', 'unreachable'],
  14: ['UNAVAILABLE', 'unreachable'],
  16: ['UNAUTHENTICATED', 'access-denied'],
};

const FAILURE_BY_CODE: Readonly<Record<string, KeyUnwrapFailure>> = {
  ...kindsOf(UNREACHABLE_CODES, 'unreachable'),
  ...kindsOf(BROKEN_CONNECTION_CODES, 'unreachable'),
};

/** Classifies what the client threw; the message is the status name (or error code), not the service's text. */
export function classifyGcpKmsError(err: unknown): KeyUnwrapError {
  if (err instanceof KeyUnwrapError) return err;
  const e = (err ?? {}) as { code?: unknown; message?: unknown; cause?: unknown };
  if (typeof e.code === 'number' && FAILURE_BY_STATUS[e.code] !== undefined) {
    const [name, failure] = FAILURE_BY_STATUS[e.code] ?? ['', 'failed'];
    return new KeyUnwrapError(failure, name);
  }
  const causeCode = (e.cause as { code?: unknown } | undefined)?.code;
  for (const candidate of [e.code, causeCode]) {
    if (typeof candidate === 'string' && FAILURE_BY_CODE[candidate] !== undefined) return new KeyUnwrapError(FAILURE_BY_CODE[candidate], candidate);
  }
  // google-auth-library: no credentials found, or a key file it cannot use.
  const message = typeof e.message === 'string' ? e.message : '';
  if (/Could not load the default credentials|invalid_grant|Could not refresh access token|Unable to detect a Project Id/i.test(message)) {
    return new KeyUnwrapError('access-denied', 'no usable Google credentials');
  }
  return new KeyUnwrapError('failed', typeof e.code === 'number' ? `status ${e.code}` : 'error');
}

/** Client options for encryption_kms_endpoint_url: https://host[:port], or http on a loopback address. */
export function kmsTransport(endpointUrl: string | undefined): { apiEndpoint?: string; port?: number; protocol?: string } {
  if (endpointUrl === undefined || endpointUrl === '') return {};
  let url: URL;
  try {
    url = new URL(endpointUrl);
  } catch {
    throw new Error(`encryption_kms_endpoint_url ${JSON.stringify(endpointUrl)} is not a URL`);
  }
  const protocol = url.protocol.slice(0, -1);
  const loopback = url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(url.hostname);
  if (protocol !== 'https' && !(protocol === 'http' && loopback)) {
    throw new Error(`encryption_kms_endpoint_url ${url.origin} must be https (plain http only on a loopback address)`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '' || url.password !== '') {
    throw new Error('encryption_kms_endpoint_url must be scheme://host[:port] with no path, query or credentials');
  }
  return { apiEndpoint: url.hostname, port: url.port === '' ? (protocol === 'http' ? 80 : 443) : Number(url.port), protocol };
}

/** The universe_domain a service-account key file names, if any (googleapis.com otherwise). */
async function universeOf(keyFile: string): Promise<string | undefined> {
  try {
    const parsed = JSON.parse(await readFile(keyFile, 'utf8')) as { universe_domain?: unknown };
    return typeof parsed.universe_domain === 'string' && parsed.universe_domain !== '' ? parsed.universe_domain : undefined;
  } catch {
    return undefined; // the client reports an unreadable key file itself
  }
}

/** CRC32C as Cloud KMS writes it: an int64 in its JSON form (a decimal string). */
function crc32c(data: Uint8Array): string {
  return String((crc32cUpdate(0xffffffff, data) ^ 0xffffffff) >>> 0);
}

/** Opens a Cloud KMS client (REST transport) that decrypts with one CryptoKey. */
export async function createGcpKmsUnwrapper(options: GcpKmsUnwrapOptions): Promise<KeyUnwrapper> {
  parseGcpKmsKeyName(options.keyName);
  const universeDomain = options.keyFile === undefined ? undefined : await universeOf(options.keyFile);
  const client = new KeyManagementServiceClient({
    ...kmsTransport(options.endpointUrl),
    fallback: true,
    ...(options.keyFile === undefined ? {} : { keyFilename: options.keyFile }),
    // A key of another universe (a sovereign cloud) is used there: the client refuses a mismatch.
    ...(universeDomain === undefined ? {} : { universeDomain }),
    ...options.overrides,
  });
  const attempts = Math.max(1, options.maxAttempts ?? MAX_ATTEMPTS);
  try {
    // Awaited here: a client whose credentials fail to load otherwise rejects inside a call nobody awaits.
    await client.initialize();
  } catch (err) {
    await client.close().catch(() => undefined);
    throw classifyGcpKmsError(err);
  }
  return {
    describe: `Google Cloud KMS key ${options.keyName}`,
    hints: {
      'access-denied': 'grant roles/cloudkms.cryptoKeyDecrypter on this key to the account cloudbarman runs as (gcp_key_file, GOOGLE_APPLICATION_CREDENTIALS or the instance\'s service account)',
      'wrong-key': 'the ciphertext was made with another key: set encryption_gcp_kms_key_name to that key',
      'invalid-ciphertext': 'the file does not hold a ciphertext of this key: it is damaged, or was made with another key (gcloud kms encrypt --key ... --ciphertext-file)',
      disabled: 'the key version that made the ciphertext is disabled or destroyed: enable it (gcloud kms keys versions enable), then run again',
      'not-found': 'check encryption_gcp_kms_key_name: project, location, key ring and key',
      unreachable: 'check the network path to cloudkms.googleapis.com and encryption_kms_endpoint_url; safe to retry',
      failed: 'check encryption_gcp_kms_key_name and the credentials',
    },
    async unwrap(blob: Buffer): Promise<Buffer> {
      let plaintext: Uint8Array | undefined;
      let plaintextCrc: unknown;
      for (let attempt = 1; ; attempt++) {
        try {
          const [response] = await client.decrypt(
            { name: options.keyName, ciphertext: blob, ciphertextCrc32c: { value: crc32c(blob) } },
            { timeout: options.requestTimeoutMs, maxRetries: 0 },
          );
          plaintext = typeof response.plaintext === 'string' ? Buffer.from(response.plaintext, 'base64') : (response.plaintext ?? undefined);
          plaintextCrc = response.plaintextCrc32c?.value;
          break;
        } catch (err) {
          const failure = classifyGcpKmsError(err);
          if (failure.unwrapFailure !== 'unreachable' || attempt >= attempts) throw failure;
          await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** (attempt - 1)));
        }
      }
      if (plaintext === undefined || plaintext.length === 0) throw new KeyUnwrapError('failed', 'decrypt answered without a plaintext');
      const copy = Buffer.from(plaintext);
      plaintext.fill(0);
      if (plaintextCrc === undefined || plaintextCrc === null || String(plaintextCrc) !== crc32c(copy)) {
        copy.fill(0);
        throw new KeyUnwrapError('unreachable', 'the plaintext arrived damaged (its CRC32C does not match)');
      }
      return copy;
    },
    close: () => { void client.close().catch(() => undefined); },
  };
}
