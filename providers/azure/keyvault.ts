/**
 * Envelope encryption through Azure Key Vault (docs/encryption.md): `unwrapKey` with RSA-OAEP-256
 * of the master key that `wrapKey` (or `az keyvault key encrypt`) wrapped with an RSA key. The CLI
 * imports this file lazily (src/cli/context.ts), only when encryption_azure_key_id is set. Errors
 * carry `unwrapFailure` (src/core/crypto/key-unwrap.ts) and name the service's error code only,
 * never key material, tokens or credentials.
 */
import { Agent as HttpsAgent } from 'node:https';
import type { TokenCredential } from '@azure/identity';
import { KeyUnwrapError, type KeyUnwrapFailure, type KeyUnwrapper } from '../../src/core/crypto/key-unwrap.ts';
import { BROKEN_CONNECTION_CODES, kindsOf, UNREACHABLE_CODES } from '../network-errors.ts';

/** One unwrap per process: a few attempts cover a passing hiccup. */
const MAX_ATTEMPTS = 3;
/** The only wrapping algorithm accepted: what the docs tell operators to wrap with. */
const ALGORITHM = 'RSA-OAEP-256';

export interface AzureKeyVaultUnwrapOptions {
  /** https://VAULT.vault.azure.net/keys/NAME[/VERSION] */
  keyId: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** Tests inject one; otherwise the one azure_credential names (providers/azure/index.ts). */
  credential?: TokenCredential;
  credentialName?: 'default' | 'azure-cli' | 'managed-identity';
  /** Tests: the CA of a local HTTPS server. */
  trustedCertificates?: string | Buffer;
  /** Tests: at most this many attempts (default 3). */
  maxAttempts?: number;
}


function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** The vault, key name and optional version of a key identifier; a clear error for anything else. */
export function parseKeyVaultKeyId(value: string): { vaultUrl: string; name: string; version?: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`encryption_azure_key_id ${JSON.stringify(value)} is not a URL: use https://VAULT.vault.azure.net/keys/NAME[/VERSION]`);
  }
  if (url.protocol !== 'https:') throw new Error(`encryption_azure_key_id ${url.origin} must be https: Key Vault is only reached over TLS`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new Error('encryption_azure_key_id must not carry a query string, a fragment or credentials');
  }
  const m = /^\/keys\/([0-9A-Za-z-]{1,127})(?:\/([0-9A-Za-z]{1,64}))?\/?$/.exec(url.pathname);
  if (m === null) throw new Error(`encryption_azure_key_id ${JSON.stringify(value)} is not a key identifier: use https://VAULT.vault.azure.net/keys/NAME[/VERSION]`);
  return { vaultUrl: url.origin, name: m[1] ?? '', ...(m[2] === undefined ? {} : { version: m[2] }) };
}

/** Key Vault error codes (and Node network codes) by what they mean to the operator. */
const FAILURE_BY_CODE: Readonly<Record<string, KeyUnwrapFailure>> = {
  Unauthorized: 'access-denied',
  Forbidden: 'access-denied',
  ForbiddenByPolicy: 'access-denied',
  ForbiddenByRbac: 'access-denied',
  AccessDenied: 'access-denied',
  CredentialUnavailableError: 'access-denied',
  AuthenticationRequiredError: 'access-denied',
  AuthenticationError: 'access-denied',
  KeyNotFound: 'not-found',
  VaultNotFound: 'not-found',
  NotFound: 'not-found',
  KeyDisabled: 'disabled',
  BadParameter: 'invalid-ciphertext',
  Throttled: 'unreachable',
  ServiceUnavailable: 'unreachable',
  REQUEST_SEND_ERROR: 'unreachable',
  TimeoutError: 'unreachable',
  AbortError: 'unreachable',
  ...kindsOf(UNREACHABLE_CODES, 'unreachable'),
  ...kindsOf(BROKEN_CONNECTION_CODES, 'unreachable'),
};

/** Classifies what the SDK threw; the message is the service's error code (or status), not its text. */
export function classifyKeyVaultError(err: unknown): KeyUnwrapError {
  if (err instanceof KeyUnwrapError) return err;
  const e = (err ?? {}) as { name?: unknown; code?: unknown; statusCode?: unknown; message?: unknown; details?: unknown; cause?: unknown };
  // The generated client deserializes the body as KeyVaultError (innerError); a raw body says innererror.
  const details = e.details as { error?: { code?: unknown; message?: unknown; innererror?: { code?: unknown }; innerError?: { code?: unknown } } } | undefined;
  const serviceCode = details?.error?.code;
  const innerCode = details?.error?.innerError?.code ?? details?.error?.innererror?.code;
  const serviceText = typeof details?.error?.message === 'string' ? details.error.message : '';
  // A disabled key answers 403 Forbidden; only the text (or the inner code) tells it from a denial.
  if (innerCode === 'KeyDisabled' || (serviceCode === 'Forbidden' && /disabled/i.test(serviceText))) return new KeyUnwrapError('disabled', 'Forbidden: the key is disabled');
  const causeCode = (e.cause as { code?: unknown } | undefined)?.code;
  for (const candidate of [innerCode, serviceCode, e.code, e.name, causeCode]) {
    if (typeof candidate === 'string' && FAILURE_BY_CODE[candidate] !== undefined) return new KeyUnwrapError(FAILURE_BY_CODE[candidate], candidate);
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  if (status === 429 || (status !== undefined && status >= 500)) return new KeyUnwrapError('unreachable', `HTTP ${status}`);
  if (status === 401 || status === 403) return new KeyUnwrapError('access-denied', `HTTP ${status}`);
  if (status === 404) return new KeyUnwrapError('not-found', 'HTTP 404');
  return new KeyUnwrapError('failed', status === undefined ? (typeof e.name === 'string' ? e.name : 'error') : `HTTP ${status}`);
}

/** Opens a Key Vault client that unwraps blobs with one key. */
export async function createAzureKeyVaultUnwrapper(options: AzureKeyVaultUnwrapOptions): Promise<KeyUnwrapper> {
  const { vaultUrl } = parseKeyVaultKeyId(options.keyId);
  const [{ CryptographyClient }, credential] = await Promise.all([
    import('@azure/keyvault-keys'),
    options.credential ?? (async () => (await import('./index.ts')).entraCredential(options.credentialName ?? 'default', process.env))(),
  ]);
  const agent = new HttpsAgent({
    keepAlive: true,
    timeout: options.connectTimeoutMs,
    ...(options.trustedCertificates === undefined ? {} : { ca: options.trustedCertificates }),
  });
  const attempts = Math.max(1, options.maxAttempts ?? MAX_ATTEMPTS);
  const client = new CryptographyClient(options.keyId, credential, {
    agent,
    retryOptions: { maxRetries: attempts - 1, retryDelayInMs: 200, maxRetryDelayInMs: 2_000 },
    userAgentOptions: { userAgentPrefix: 'cloudbarman' },
    // The challenge names https://vault.azure.net as the resource, which a loopback test server's
    // host cannot match; a real vault's host always does, so the check stays on for those.
    disableChallengeResourceVerification: isLoopback(new URL(vaultUrl).hostname),
  });
  return {
    describe: `Azure Key Vault key ${options.keyId}`,
    hints: {
      'access-denied': 'allow keys/unwrapKey on this key to the identity cloudbarman runs as (the Key Vault Crypto User role, or an access policy), and check azure_credential',
      'wrong-key': 'the blob was wrapped by another key: set encryption_azure_key_id to that key',
      'invalid-ciphertext': `the file does not hold a ${ALGORITHM} wrapKey result of this key: it is damaged, or was wrapped by another key or algorithm`,
      disabled: 'enable the key (az keyvault key set-attributes --enabled true), then run again',
      'not-found': 'check encryption_azure_key_id: the vault, the key name and the version',
      unreachable: 'check the network path to the vault; safe to retry',
      failed: 'check encryption_azure_key_id and azure_credential',
    },
    async unwrap(blob: Buffer): Promise<Buffer> {
      let plaintext: Uint8Array;
      try {
        const result = await client.unwrapKey(ALGORITHM, blob, {
          abortSignal: AbortSignal.timeout(options.requestTimeoutMs * attempts + 2_000 * attempts),
          requestOptions: { timeout: options.requestTimeoutMs },
        });
        plaintext = result.result;
      } catch (err) {
        throw classifyKeyVaultError(err);
      }
      const copy = Buffer.from(plaintext);
      plaintext.fill(0);
      return copy;
    },
    close: () => agent.destroy(),
  };
}
