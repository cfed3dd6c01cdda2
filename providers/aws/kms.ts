/**
 * Envelope encryption through AWS KMS (docs/encryption.md): Decrypt of the master key's
 * CiphertextBlob, with the configured KeyId so that a blob of another key is refused. The CLI
 * imports this file lazily (src/cli/context.ts), only when encryption_kms_key_id is set, so the
 * core never loads the SDK. Errors carry `unwrapFailure` (src/core/crypto/key-unwrap.ts) and name
 * the service's error code, never key material or credentials.
 */
import { DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import type { KMSClientConfig } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { KeyUnwrapError, type KeyUnwrapFailure, type KeyUnwrapper } from '../../src/core/crypto/key-unwrap.ts';
import { BROKEN_CONNECTION_CODES, kindsOf, UNREACHABLE_CODES } from '../network-errors.ts';

/** Region when neither the options, the key ARN nor the environment name one (as for S3). */
const DEFAULT_REGION = 'us-east-1';

/** One Decrypt call per process: a few attempts with the SDK's backoff cover a passing hiccup. */
const MAX_ATTEMPTS = 3;

const SILENT_LOGGER: NonNullable<KMSClientConfig['logger']> = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export interface KmsUnwrapOptions {
  /** Key id, key ARN, alias name (alias/x) or alias ARN. */
  keyId: string;
  /** encryption_kms_endpoint_url: VPC endpoints, test servers. */
  endpointUrl?: string;
  /** aws_region; otherwise the region of a key ARN, then AWS_REGION / AWS_DEFAULT_REGION. */
  region?: string;
  /** aws_profile. */
  profile?: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** Tests: at most this many attempts (default 3). */
  maxAttempts?: number;
  /** Tests: explicit settings (credentials) that replace the default chain. */
  overrides?: KMSClientConfig;
}

/** The region a key ARN names (arn:aws:kms:REGION:ACCOUNT:key/ID or :alias/NAME), if it is one. */
export function regionOfKeyArn(keyId: string): string | undefined {
  return /^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:(?:key|alias)\//.exec(keyId)?.[1];
}

/** The region to call: a key ARN's own (it can be used nowhere else), aws_region, the environment, us-east-1. */
export function resolveKmsRegion(options: Pick<KmsUnwrapOptions, 'keyId' | 'region'>, env: NodeJS.ProcessEnv = process.env): string {
  return regionOfKeyArn(options.keyId) ?? (options.region || env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || DEFAULT_REGION);
}

/** KMS error names (and Node network codes) by what they mean to the operator. */
const FAILURE_BY_NAME: Readonly<Record<string, KeyUnwrapFailure>> = {
  AccessDeniedException: 'access-denied',
  UnrecognizedClientException: 'access-denied',
  InvalidSignatureException: 'access-denied',
  IncompleteSignatureException: 'access-denied',
  MissingAuthenticationTokenException: 'access-denied',
  ExpiredTokenException: 'access-denied',
  CredentialsProviderError: 'access-denied',
  IncorrectKeyException: 'wrong-key',
  InvalidCiphertextException: 'invalid-ciphertext',
  DisabledException: 'disabled',
  KMSInvalidStateException: 'disabled',
  InvalidKeyUsageException: 'disabled',
  NotFoundException: 'not-found',
  InvalidArnException: 'not-found',
  KeyUnavailableException: 'unreachable',
  DependencyTimeoutException: 'unreachable',
  KMSInternalException: 'unreachable',
  ThrottlingException: 'unreachable',
  TimeoutError: 'unreachable',
  ...kindsOf(UNREACHABLE_CODES, 'unreachable'),
  ...kindsOf(BROKEN_CONNECTION_CODES, 'unreachable'),
};


/** Classifies what the SDK threw; the message is the error's name (or status), not the service's text. */
export function classifyKmsError(err: unknown): KeyUnwrapError {
  const e = (err ?? {}) as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: unknown }; cause?: unknown };
  const causeCode = (e.cause as { code?: unknown } | undefined)?.code;
  for (const candidate of [e.name, e.code, causeCode]) {
    if (typeof candidate === 'string' && FAILURE_BY_NAME[candidate] !== undefined) {
      return new KeyUnwrapError(FAILURE_BY_NAME[candidate], candidate);
    }
  }
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const name = typeof e.name === 'string' ? e.name : 'error';
  if (status !== undefined && status >= 500) return new KeyUnwrapError('unreachable', `${name}, HTTP ${status}`);
  if (status === 403) return new KeyUnwrapError('access-denied', `${name}, HTTP ${status}`);
  return new KeyUnwrapError('failed', status === undefined ? name : `${name}, HTTP ${status}`);
}

/** Opens a KMS client that unwraps blobs with one key. */
export function createKmsUnwrapper(options: KmsUnwrapOptions): KeyUnwrapper {
  const client = new KMSClient({
    region: resolveKmsRegion(options),
    ...(options.endpointUrl === undefined ? {} : { endpoint: options.endpointUrl }),
    ...(options.profile === undefined ? {} : { profile: options.profile }),
    maxAttempts: options.maxAttempts ?? MAX_ATTEMPTS,
    logger: SILENT_LOGGER,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: options.connectTimeoutMs,
      socketTimeout: options.requestTimeoutMs,
    }),
    ...options.overrides,
  });
  return {
    describe: `AWS KMS key ${options.keyId}`,
    async unwrap(blob: Buffer): Promise<Buffer> {
      let plaintext: Uint8Array | undefined;
      try {
        const out = await client.send(new DecryptCommand({ CiphertextBlob: blob, KeyId: options.keyId, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }));
        plaintext = out.Plaintext;
      } catch (err) {
        throw classifyKmsError(err);
      }
      if (plaintext === undefined) throw new KeyUnwrapError('failed', 'Decrypt answered without a Plaintext');
      const copy = Buffer.from(plaintext);
      plaintext.fill(0);
      return copy;
    },
    close: () => client.destroy(),
  };
}
