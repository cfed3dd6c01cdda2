/**
 * The contract between key loading (keys.ts) and a key-management service that unwraps the master
 * key (envelope encryption, docs/encryption.md). The core calls it without importing any SDK: the
 * CLI (src/cli/context.ts) injects an implementation it loads lazily (providers/aws/kms.ts).
 */

/** Why an unwrap failed, as the service said; decides the exit code and the hint. */
export type KeyUnwrapFailure =
  | 'access-denied' // the caller may not decrypt with the key (IAM/key policy), or has no valid credentials
  | 'wrong-key' // the blob was made under another KMS key than the configured one
  | 'invalid-ciphertext' // the blob is damaged, or not a ciphertext of this service
  | 'disabled' // the key is disabled or pending deletion / import
  | 'not-found' // no such key (a typo, or another region or account)
  | 'unreachable' // the service could not be reached, timed out, or failed on its side
  | 'failed'; // anything else

export const KEY_UNWRAP_FAILURES: ReadonlySet<string> = new Set<KeyUnwrapFailure>([
  'access-denied',
  'wrong-key',
  'invalid-ciphertext',
  'disabled',
  'not-found',
  'unreachable',
  'failed',
]);

/**
 * Turns a wrapped master key into the plaintext key. Rejects with an Error that carries
 * `unwrapFailure: KeyUnwrapFailure`; its message names the service's error code only, never key
 * material or credentials.
 */
export interface KeyUnwrapper {
  /** For messages: "AWS KMS key arn:aws:kms:...". */
  readonly describe: string;
  unwrap(blob: Buffer): Promise<Buffer>;
  /** Service-specific hints by failure; the AWS KMS ones are the default. */
  readonly hints?: Partial<Record<KeyUnwrapFailure, string>>;
  /** Releases sockets. */
  close(): void;
}

/** An unwrap failure in the contract's shape; each service's implementation throws these. */
export class KeyUnwrapError extends Error {
  override readonly name = 'KeyUnwrapError';
  readonly unwrapFailure: KeyUnwrapFailure;
  constructor(unwrapFailure: KeyUnwrapFailure, message: string) {
    super(message);
    this.unwrapFailure = unwrapFailure;
  }
}

/** The failure an unwrapper rejected with, if it is one of the contract's. */
export function unwrapFailureOf(err: unknown): KeyUnwrapFailure | undefined {
  const reason = (err as { unwrapFailure?: unknown } | null | undefined)?.unwrapFailure;
  return typeof reason === 'string' && KEY_UNWRAP_FAILURES.has(reason) ? (reason as KeyUnwrapFailure) : undefined;
}
