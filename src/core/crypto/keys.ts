/**
 * Where client-side encryption keys come from: encryption_key_file, or the environment variable
 * named by encryption_key_env. Keys are loaded only when an object needs one (a `list` of an
 * encrypted archive needs none), once per process. A key never appears in a message: only its id
 * (a fingerprint, src/io/encryption.ts) does.
 */
import { CloudbarmanError } from '../errors.ts';
import { KEY_BYTES, masterKey, type Keyring, type MasterKey } from '../../io/encryption.ts';
import { unwrapFailureOf, type KeyUnwrapFailure, type KeyUnwrapper } from './key-unwrap.ts';

/** What the config says about client-side encryption. */
export interface EncryptionConfig {
  /** Encrypt what is written (client_encryption = aes-256-gcm). Reading never depends on it. */
  encrypt: boolean;
  keyFile?: string;
  /** The environment variable that holds the key when no key file is set. */
  keyEnv: string;
  /**
   * encryption_kms_key_id: the key file or variable holds KMS ciphertext blobs of the master keys
   * (envelope encryption), which the KMS key unwraps once per process.
   */
  kmsKeyId?: string;
  /**
   * The option that names kmsKeyId, for messages: encryption_kms_key_id (AWS KMS, the default),
   * encryption_azure_key_id or encryption_gcp_kms_key_name.
   */
  kmsOption?: string;
  /**
   * encryption_allow_plaintext: with encrypt on, objects under encrypted names (isEncryptedKey) that
   * were stored unencrypted are still read. Off, they are refused as tampered.
   */
  allowPlaintext?: boolean;
}

/** How the key sources are read; the CLI passes the real environment and file system. */
export interface KeySources {
  env: Readonly<Record<string, string | undefined>>;
  readFile(path: string): Promise<Buffer>;
  /** The file's permission bits (st_mode & 0o777). */
  fileMode(path: string): Promise<number>;
  /** Opens the key-management service that unwraps blobs; required when kmsKeyId is set. */
  unwrapper?: () => Promise<KeyUnwrapper>;
}

/** The loaded keys: every key that may open objects; writeKey encrypts new ones. */
export interface LoadedKeys extends Keyring {
  writeKey: MasterKey | undefined;
}

/** The keys of the config, loaded on first use and cached. */
export class EncryptionKeys {
  readonly config: EncryptionConfig;
  readonly #sources: KeySources;
  #loading: Promise<LoadedKeys> | undefined;

  constructor(config: EncryptionConfig, sources: KeySources) {
    this.config = config;
    this.#sources = sources;
  }

  /** Loads (once) the configured keys; throws a bad-input CloudbarmanError for an unreadable or malformed key. */
  load(): Promise<LoadedKeys> {
    if (this.#loading === undefined) {
      const loading = loadKeys(this.config, this.#sources);
      // A failed load is not kept: a long-lived receive-wal must recover from a brief KMS outage.
      loading.catch(() => { if (this.#loading === loading) this.#loading = undefined; });
      this.#loading = loading;
    }
    return this.#loading;
  }

  /** Where the key is set, for hints: "encryption_key_file /etc/x.key" or "the environment variable X". */
  where(): string {
    return this.config.keyFile !== undefined
      ? `encryption_key_file (${this.config.keyFile})`
      : `encryption_key_file, or the environment variable ${this.config.keyEnv} (encryption_key_env)`;
  }
}

async function loadKeys(config: EncryptionConfig, sources: KeySources): Promise<LoadedKeys> {
  if (config.kmsKeyId !== undefined) return loadWrappedKeys(config, config.kmsKeyId, sources);
  let keys: MasterKey[] = [];
  if (config.keyFile !== undefined) {
    keys = await keysFromFile(config.keyFile, sources);
  } else {
    const text = sources.env[config.keyEnv];
    if (text !== undefined && text.trim() !== '') {
      const bytes = parseKeyText(text.trim());
      if (bytes === undefined) {
        throw new CloudbarmanError('bad-input', `the environment variable ${config.keyEnv} does not hold an encryption key`, {
          hint: `it must be ${KEY_BYTES} bytes as 64 hex digits or as base64 (e.g. openssl rand -hex 32)`,
        });
      }
      keys = [masterKey(bytes)];
    }
  }
  if (config.encrypt && keys.length === 0) {
    throw new CloudbarmanError('bad-input', 'client_encryption is aes-256-gcm but no encryption key is set', {
      hint: `set encryption_key_file, or the environment variable ${config.keyEnv}, to a key of ${KEY_BYTES} bytes (e.g. openssl rand -hex 32)`,
    });
  }
  return { keys, writeKey: config.encrypt ? keys[0] : undefined };
}

async function keysFromFile(path: string, sources: KeySources): Promise<MasterKey[]> {
  const content = await readKeyFile(path, sources);
  if (content.length === KEY_BYTES) return [masterKey(content)];
  const keys: MasterKey[] = [];
  const lines = content.toString('utf8').split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const bytes = parseKeyText(line);
    if (bytes === undefined) {
      throw new CloudbarmanError('bad-input', `the encryption key file ${path}, line ${i + 1}, does not hold a key`, {
        hint: `each line holds one key of ${KEY_BYTES} bytes as 64 hex digits or base64; or the file is exactly ${KEY_BYTES} raw bytes`,
      });
    }
    keys.push(masterKey(bytes));
  }
  if (keys.length === 0) {
    throw new CloudbarmanError('bad-input', `the encryption key file ${path} holds no key`, { hint: 'generate one with: openssl rand -hex 32 > FILE' });
  }
  return keys;
}

/** Reads a key file after checking that not every user may read or write it. */
async function readKeyFile(path: string, sources: KeySources): Promise<Buffer> {
  let mode: number;
  let content: Buffer;
  try {
    mode = await sources.fileMode(path);
    content = await sources.readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    throw new CloudbarmanError('bad-input', `cannot read the encryption key file ${path}: ${code ?? (err instanceof Error ? err.message : String(err))}`, {
      hint: 'check encryption_key_file and that this OS user may read it',
      cause: err,
    });
  }
  if ((mode & 0o007) !== 0) {
    throw new CloudbarmanError('bad-input', `the encryption key file ${path} may be read or written by every user on this host (mode ${(mode & 0o777).toString(8)})`, {
      hint: `chmod 600 ${path} (or 640 with the postgres group)`,
    });
  }
  return content;
}

/** A key written as 64 hex digits or base64 of 32 bytes; undefined otherwise. */
export function parseKeyText(text: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(text)) {
    const bytes = Buffer.from(text.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
    if (bytes.length === KEY_BYTES) return bytes;
  }
  return undefined;
}

// ---------------------------------------------------------------- envelope encryption (KMS)

/** KMS ciphertext blobs are 1 to 6144 bytes (the Decrypt API's limit). */
const MAX_BLOB_BYTES = 6144;

/** One wrapped master key and where it was read, for messages ("encryption_key_file /x, line 2"). */
interface WrappedKey {
  blob: Buffer;
  source: string;
}

/**
 * encryption_kms_key_id is set: the key file holds one raw KMS ciphertext blob, or lines of base64
 * blobs (the first encrypts); the variable one base64 blob. Each is unwrapped once, by the
 * configured KMS key, and the plaintext (32 bytes, or one key as hex/base64 text) is the master key.
 */
async function loadWrappedKeys(config: EncryptionConfig, kmsKeyId: string, sources: KeySources): Promise<LoadedKeys> {
  const option = config.kmsOption ?? 'encryption_kms_key_id';
  const wrapped: WrappedKey[] = [];
  if (config.keyFile !== undefined) {
    wrapped.push(...blobsFromFile(config.keyFile, await readKeyFile(config.keyFile, sources), option));
  } else {
    const text = sources.env[config.keyEnv];
    if (text !== undefined && text.trim() !== '') {
      const blob = parseBlobText(text.trim());
      if (blob === undefined) {
        throw new CloudbarmanError('bad-input', `the environment variable ${config.keyEnv} does not hold a KMS ciphertext blob`, {
          hint: `with ${option} set, it holds the base64 ciphertext of the master key (1 to ${MAX_BLOB_BYTES} bytes)`,
        });
      }
      wrapped.push({ blob, source: `the environment variable ${config.keyEnv}` });
    }
  }
  if (wrapped.length === 0) {
    if (config.encrypt) {
      throw new CloudbarmanError('bad-input', 'client_encryption is aes-256-gcm but no encryption key is set', {
        hint: `set encryption_key_file, or the environment variable ${config.keyEnv}, to the KMS ciphertext blob of a ${KEY_BYTES}-byte key (docs/encryption.md)`,
      });
    }
    return { keys: [], writeKey: undefined };
  }
  if (sources.unwrapper === undefined) {
    throw new CloudbarmanError('bad-input', `${option} is set (${kmsKeyId}) but this build cannot reach a key-management service`);
  }
  let unwrapper: KeyUnwrapper;
  try {
    unwrapper = await sources.unwrapper();
  } catch (err) {
    // A malformed endpoint or key id, or credentials that fail to load before any call.
    const reason = unwrapFailureOf(err);
    const detail = err instanceof Error ? err.message : String(err);
    throw new CloudbarmanError(reason === 'unreachable' ? 'unreachable' : 'bad-input', `cannot open the key-management service for ${option} ${kmsKeyId}: ${detail}`, {
      hint: reason === undefined || option !== 'encryption_kms_key_id' ? `check ${option} and the service's endpoint and credentials (docs/encryption.md)` : UNWRAP_HINTS[reason],
      cause: err,
    });
  }
  const keys: MasterKey[] = [];
  try {
    for (const { blob, source } of wrapped) keys.push(await unwrapOne(unwrapper, blob, source));
  } finally {
    unwrapper.close();
  }
  return { keys, writeKey: config.encrypt ? keys[0] : undefined };
}

function blobsFromFile(path: string, content: Buffer, option: string): WrappedKey[] {
  const text = content.toString('utf8');
  const lines = text.split(/\r?\n/);
  const isText = !text.includes('\uFFFD') && lines.every((raw) => {
    const line = raw.trim();
    return line === '' || line.startsWith('#') || /^[A-Za-z0-9+/_-]+={0,2}$/.test(line);
  });
  if (!isText) {
    // Raw binary, as `aws kms generate-data-key ... --output text | base64 -d` writes it.
    if (content.length === 0 || content.length > MAX_BLOB_BYTES) {
      throw new CloudbarmanError('bad-input', `the encryption key file ${path} does not hold a KMS ciphertext blob (${content.length} bytes)`, {
        hint: `with ${option} set, it holds one raw ciphertext (1 to ${MAX_BLOB_BYTES} bytes) or lines of base64 ciphertexts`,
      });
    }
    return [{ blob: content, source: `encryption_key_file ${path}` }];
  }
  const wrapped: WrappedKey[] = [];
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const blob = parseBlobText(line);
    if (blob === undefined) {
      throw new CloudbarmanError('bad-input', `the encryption key file ${path}, line ${i + 1}, does not hold a KMS ciphertext blob`, {
        hint: `each line holds one base64 ciphertext (1 to ${MAX_BLOB_BYTES} bytes)`,
      });
    }
    wrapped.push({ blob, source: `encryption_key_file ${path}, line ${i + 1}` });
  }
  if (wrapped.length === 0) {
    throw new CloudbarmanError('bad-input', `the encryption key file ${path} holds no KMS ciphertext blob`, {
      hint: option === 'encryption_kms_key_id'
        ? 'make one with: aws kms generate-data-key --key-id KEY --key-spec AES_256 --query CiphertextBlob --output text | base64 -d > FILE'
        : `docs/encryption.md shows how to make one for ${option}`,
    });
  }
  return wrapped;
}

/** Base64 (standard or URL-safe) of 1 to 6144 bytes; undefined otherwise. */
function parseBlobText(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
  return bytes.length >= 1 && bytes.length <= MAX_BLOB_BYTES ? bytes : undefined;
}

const UNWRAP_HINTS: Readonly<Record<KeyUnwrapFailure, string>> = {
  'access-denied': 'allow kms:Decrypt on this key to the credentials cloudbarman runs with (IAM and key policy), and check those credentials and the region (aws_region, or the one in the key ARN)',
  'wrong-key': 'the blob was made under another KMS key: set encryption_kms_key_id to that key, or re-encrypt the blob under this one (aws kms re-encrypt)',
  'invalid-ciphertext': 'the blob is damaged or not KMS output; write it again from the CiphertextBlob (raw binary, or base64 text)',
  disabled: 'enable the KMS key (or cancel its deletion), then run again',
  'not-found': 'check encryption_kms_key_id, and that aws_region (or the region in the key ARN) and the account are the key\'s',
  unreachable: 'check the network path to KMS, encryption_kms_endpoint_url and aws_region; safe to retry',
  failed: 'check encryption_kms_key_id, aws_region and the credentials',
};

const UNWRAP_WORDS: Readonly<Record<KeyUnwrapFailure, string>> = {
  'access-denied': 'access was denied',
  'wrong-key': 'the blob belongs to another key',
  'invalid-ciphertext': 'the blob is not a valid ciphertext of this key',
  disabled: 'the key is disabled or not usable',
  'not-found': 'the key was not found',
  unreachable: 'the key-management service could not be reached',
  failed: 'the request failed',
};

async function unwrapOne(unwrapper: KeyUnwrapper, blob: Buffer, source: string): Promise<MasterKey> {
  let plain: Buffer;
  try {
    plain = await unwrapper.unwrap(blob);
  } catch (err) {
    const reason = unwrapFailureOf(err) ?? 'failed';
    const detail = err instanceof Error ? err.message : String(err);
    throw new CloudbarmanError(
      reason === 'unreachable' ? 'unreachable' : 'bad-input',
      `cannot unwrap the master key from ${source} with ${unwrapper.describe}: ${UNWRAP_WORDS[reason]} (${detail})`,
      { hint: unwrapper.hints?.[reason] ?? UNWRAP_HINTS[reason] },
    );
  }
  try {
    // 32 raw bytes (generate-data-key), or one existing key as text (kms encrypt --plaintext fileb://old.key).
    const bytes = plain.length === KEY_BYTES ? plain : parseKeyText(plain.toString('latin1').trim());
    if (bytes === undefined) {
      throw new CloudbarmanError('bad-input', `the master key unwrapped from ${source} with ${unwrapper.describe} is ${plain.length} bytes, not a key of ${KEY_BYTES} bytes`, {
        hint: 'wrap a 32-byte key, or a key file of one hex or base64 key (docs/encryption.md)',
      });
    }
    const key = masterKey(bytes);
    if (bytes !== plain) bytes.fill(0);
    return key;
  } finally {
    plain.fill(0);
  }
}
