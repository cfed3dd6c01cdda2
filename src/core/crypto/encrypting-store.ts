/**
 * Client-side encryption as a store decorator (docs/encryption.md). It sits outside the retry
 * layer, so the core above it sees the same bytes it wrote (compressed, never encrypted), and
 * the providers below see only ciphertext:
 *
 *   core -> compress -> [this: encrypt] -> retries -> provider      put
 *   core <- decompress <- [this: decrypt] <- retries <- provider    get
 *
 * What it encrypts (when client_encryption is on): everything of a backup but its catalog entry
 * (backup.json) and annotations, and every WAL object. Locks, catalog entries and annotations stay
 * plaintext, so that list, retention and leases work without the key. What it decrypts: any object
 * whose metadata says cb_encryption, whatever the config, with whichever configured key its
 * metadata names; a plaintext object is passed through, so an archive may mix both (encryption
 * turned on later).
 *
 * An encrypted object's metadata records cb_encryption, cb_key_id, cb_enc_chunk and cb_enc_header,
 * so a wrong or missing key is reported before any byte is read, and the core's view of its size
 * (head, get) is the plaintext size: manifest sizes and the checksums in metadata stay those of
 * the compressed bytes.
 */
import { readFile, stat } from 'node:fs/promises';
import { pipeline, type Readable } from 'node:stream';
import type { GetOptions, GetResult, ListPage, ObjectInfo, ObjectStore, PutBody, PutOptions, StoreCapabilities } from '../../../providers/object-store.ts';
import {
  DEFAULT_CHUNK_SIZE,
  DecryptError,
  DecryptStream,
  ENCRYPTION_ALGORITHM,
  EncryptStream,
  encryptBuffer,
  encryptedSize,
  HEADER_BYTES,
  plainSize,
  type Keyring,
} from '../../io/encryption.ts';
import { CloudbarmanError } from '../errors.ts';
import { EncryptionKeys } from './keys.ts';
import type { KeyUnwrapper } from './key-unwrap.ts';

/** Metadata names on encrypted objects. */
export const ENCRYPTION_META = {
  algorithm: 'cb_encryption', // aes-256-gcm
  keyId: 'cb_key_id', // the master key's id (hex)
  chunk: 'cb_enc_chunk', // plaintext bytes per chunk
  header: 'cb_enc_header', // header bytes
} as const;

/** True for the keys that are encrypted when client_encryption is on. */
export function isEncryptedKey(key: string): boolean {
  // Timeline history files stay plaintext (timeline numbers, switch LSNs and reasons, no data):
  // retention plans WAL by timeline and must work on a host that has no key.
  if (/^[^/]+\/wals\/[0-9A-F]{8}\.history(\.[a-z0-9]+)?$/.test(key)) return false;
  if (/^[^/]+\/wals\//.test(key)) return true;
  const m = /^[^/]+\/base\/[^/]+\/(.+)$/.exec(key);
  if (m === null) return false;
  const name = m[1] ?? '';
  return name !== 'backup.json' && !name.startsWith('annotations/');
}

/** The encryption facts an object's metadata records, or undefined for a plaintext object. */
export function encryptionOf(info: Pick<ObjectInfo, 'metadata'>): { keyId: string; chunkSize: number; headerBytes: number } | undefined {
  const meta = info.metadata;
  if (meta?.[ENCRYPTION_META.algorithm] === undefined) return undefined;
  return {
    keyId: meta[ENCRYPTION_META.keyId] ?? '',
    chunkSize: Number(meta[ENCRYPTION_META.chunk] ?? DEFAULT_CHUNK_SIZE),
    headerBytes: Number(meta[ENCRYPTION_META.header] ?? HEADER_BYTES),
  };
}

/** How an encrypting store seals new objects; read through clientEncryptionOf. */
const CLIENT_ENCRYPTION = Symbol('cloudbarman client encryption');

interface DescribesEncryption {
  [CLIENT_ENCRYPTION](): Promise<{ algorithm: 'aes-256-gcm'; keyId: string } | undefined>;
}

/**
 * What new objects written through store are encrypted with (algorithm and key id), or undefined
 * when it does not encrypt. Loads the key: a missing key is the bad-input error here.
 */
export async function clientEncryptionOf(store: ObjectStore): Promise<{ algorithm: 'aes-256-gcm'; keyId: string } | undefined> {
  return CLIENT_ENCRYPTION in store ? (store as unknown as DescribesEncryption)[CLIENT_ENCRYPTION]() : undefined;
}

/** Wraps store so that what isEncryptedKey names is encrypted on put, and encrypted objects are decrypted on get. */
export function withClientEncryption(store: ObjectStore, keys: EncryptionKeys): ObjectStore {
  return new EncryptingStore(store, keys);
}

/** Bodies from this size up are sealed into pooled buffers. */
const POOLED_MIN = 1024 * 1024;
/** At most this many pooled buffers are kept (about the parts in flight). */
const POOL_MAX = 8;

class EncryptingStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #keys: EncryptionKeys;
  /** Buffers of finished puts, reused for the next large body. */
  readonly #pool: Buffer[] = [];

  constructor(inner: ObjectStore, keys: EncryptionKeys) {
    this.#inner = inner;
    this.#keys = keys;
  }

  async [CLIENT_ENCRYPTION](): Promise<{ algorithm: 'aes-256-gcm'; keyId: string } | undefined> {
    if (!this.#keys.config.encrypt) return undefined;
    const { writeKey } = await this.#keys.load();
    return writeKey === undefined ? undefined : { algorithm: ENCRYPTION_ALGORITHM, keyId: writeKey.id };
  }

  get capabilities(): StoreCapabilities {
    return this.#inner.capabilities;
  }

  get url(): string {
    return this.#inner.url;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<void> {
    if (!this.#keys.config.encrypt || !isEncryptedKey(key)) {
      await this.#inner.put(key, body, options);
      return;
    }
    const { writeKey } = await this.#keys.load();
    if (writeKey === undefined) throw new Error('internal: encryption is on without a write key');
    const { contentSha256: _plainSha, ...rest } = options;
    const metadata = {
      ...options.metadata,
      [ENCRYPTION_META.algorithm]: ENCRYPTION_ALGORITHM,
      [ENCRYPTION_META.keyId]: writeKey.id,
      [ENCRYPTION_META.chunk]: String(DEFAULT_CHUNK_SIZE),
      [ENCRYPTION_META.header]: String(HEADER_BYTES),
    };
    if (body instanceof Uint8Array) {
      // Encrypted once: a retry below sends these same bytes, so its already-exists check still recognises them.
      // Large bodies (backup parts) are sealed into reused memory, so that a backup's memory stays flat.
      const size = encryptedSize(body.length);
      const pooled = size >= POOLED_MIN;
      const at = pooled ? this.#pool.findIndex((b) => b.length >= size) : -1;
      const spare = at >= 0 ? this.#pool.splice(at, 1)[0] : undefined;
      const sealed = encryptBuffer(body, writeKey, spare === undefined ? { name: key } : { into: spare, name: key });
      await this.#inner.put(key, sealed, { ...rest, metadata, contentLength: sealed.length });
      // Only after a put that succeeded: a failed (aborted) one might still have a request reading the bytes.
      if (pooled) {
        this.#pool.push(spare ?? sealed);
        if (this.#pool.length > POOL_MAX) this.#pool.sort((a, b) => b.length - a.length).pop();
      }
      return;
    }
    // A stream is encrypted afresh (new data key) on every call: a source that gave different bytes
    // on a retry must never be sealed twice under the same key and nonces.
    const sealedBody = (): Readable => {
      const encrypt = new EncryptStream(writeKey, { name: key });
      pipeline(body(), encrypt, () => undefined);
      return encrypt;
    };
    await this.#inner.put(key, sealedBody, {
      ...rest,
      metadata,
      ...(options.contentLength === undefined ? {} : { contentLength: encryptedSize(options.contentLength) }),
    });
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    const got = await this.#inner.get(key, options);
    const enc = encryptionOf(got.info);
    if (enc === undefined) {
      if (this.#refusesPlaintext(key)) {
        got.body.destroy();
        throw this.#plaintextRefused(key);
      }
      return got;
    }
    if (options.range !== undefined) {
      got.body.destroy();
      throw new Error(`internal: a ranged read of the encrypted object ${key}`);
    }
    let keyring;
    try {
      keyring = await this.#checkKey(key, enc.keyId);
    } catch (err) {
      got.body.destroy();
      throw err;
    }
    const decrypt = new DecryptStream(keyring, { keyId: enc.keyId, chunkSize: enc.chunkSize, name: key }, (e) => this.#failure(key, e));
    pipeline(got.body, decrypt, () => undefined);
    return { info: this.#plainInfo(got.info), body: decrypt };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const info = await this.#inner.head(key);
    return info === undefined ? undefined : this.#plainInfo(info);
  }

  async list(prefix: string, options?: { pageToken?: string; pageSize?: number }): Promise<ListPage> {
    const page = await this.#inner.list(prefix, options);
    return { ...page, items: page.items.map((item) => (item.metadata === undefined ? item : this.#plainInfo(item))) };
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.#inner.delete(keys);
  }

  checkAccess(): Promise<void> {
    return this.#inner.checkAccess();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /**
   * With client_encryption on, an object under a name that is always encrypted must be: a plaintext
   * one there was put by someone without the key (or before encryption was turned on, which
   * encryption_allow_plaintext accepts).
   */
  #refusesPlaintext(key: string): boolean {
    const { encrypt, allowPlaintext } = this.#keys.config;
    return encrypt && allowPlaintext !== true && isEncryptedKey(key);
  }

  #plaintextRefused(key: string): CloudbarmanError {
    return new CloudbarmanError('integrity', `${this.#inner.url} ${key} is not encrypted, but client_encryption is on`, {
      hint: 'it was stored without the key: by another writer, or before client_encryption was turned on (then set encryption_allow_plaintext = on while that archive is still needed)',
    });
  }

  /** The object as the core sees it: the size of the bytes inside the encryption. */
  #plainInfo(info: ObjectInfo): ObjectInfo {
    const enc = encryptionOf(info);
    if (enc === undefined) return info;
    const size = plainSize(info.size, enc.chunkSize, enc.headerBytes);
    return size === undefined ? info : { ...info, size };
  }

  /** The keyring when it holds the object's key; a bad-input error naming the expected key otherwise. */
  async #checkKey(key: string, keyId: string): Promise<Keyring> {
    const loaded = await this.#keys.load();
    if (loaded.keys.some((k) => k.id === keyId)) return loaded;
    const where = `${this.#inner.url} ${key}`;
    if (loaded.keys.length === 0) {
      throw new CloudbarmanError('bad-input', `${where} is encrypted with key ${keyId}, and no encryption key is configured`, {
        hint: `set ${this.#keys.where()} to the key whose id is ${keyId}`,
      });
    }
    throw new CloudbarmanError('bad-input', `${where} is encrypted with key ${keyId}, which is not the configured key (${loaded.keys.map((k) => k.id).join(', ')})`, {
      hint: `set ${this.#keys.where()} to the key whose id is ${keyId} (an older key may stay in the key file, one per line)`,
    });
  }

  /** A decryption failure as the operator's error: a key problem is exit 3, anything else is damage (exit 4). */
  #failure(key: string, err: DecryptError): CloudbarmanError {
    const where = `${this.#inner.url} ${key}`;
    if (err.reason === 'unknown-key') {
      return new CloudbarmanError('bad-input', `${where} is encrypted with key ${err.keyId ?? '?'}, which is not configured`, {
        hint: `set ${this.#keys.where()} to the key whose id is ${err.keyId ?? '?'}`,
        cause: err,
      });
    }
    if (err.reason === 'unsupported') {
      return new CloudbarmanError('integrity', `${where} cannot be decrypted: ${err.message}`, { hint: 'upgrade cloudbarman to read this archive', cause: err });
    }
    return new CloudbarmanError('integrity', `${where} is corrupt: ${err.message}`, {
      hint: 'the encrypted object was damaged, truncated or altered in the store; restore another backup, and check the store',
      cause: err,
    });
  }
}

/** The keys a server's config names, read from env and the file system on first use. */
export function encryptionKeysFor(
  cfg: {
    clientEncryption: 'none' | 'aes-256-gcm';
    encryptionKeyFile?: string;
    encryptionKeyEnv: string;
    encryptionKmsKeyId?: string;
    encryptionAzureKeyId?: string;
    encryptionGcpKmsKeyName?: string;
    encryptionAllowPlaintext?: boolean;
  },
  env: Readonly<Record<string, string | undefined>>,
  unwrapper?: () => Promise<KeyUnwrapper>,
): EncryptionKeys {
  const wrapping = wrappingKeyOf(cfg);
  return new EncryptionKeys(
    {
      encrypt: cfg.clientEncryption === 'aes-256-gcm',
      keyEnv: cfg.encryptionKeyEnv,
      allowPlaintext: cfg.encryptionAllowPlaintext === true,
      ...(cfg.encryptionKeyFile === undefined ? {} : { keyFile: cfg.encryptionKeyFile }),
      ...(wrapping === undefined ? {} : { kmsKeyId: wrapping.keyId, kmsOption: wrapping.option }),
    },
    {
      env,
      readFile: (path) => readFile(path),
      fileMode: async (path) => (await stat(path)).mode & 0o777,
      ...(unwrapper === undefined ? {} : { unwrapper }),
    },
  );
}

/** The key that wraps the master key, and the option naming it (the config allows at most one). */
export function wrappingKeyOf(cfg: {
  encryptionKmsKeyId?: string;
  encryptionAzureKeyId?: string;
  encryptionGcpKmsKeyName?: string;
}): { service: 'aws' | 'azure' | 'gcp'; keyId: string; option: string } | undefined {
  if (cfg.encryptionKmsKeyId !== undefined) return { service: 'aws', keyId: cfg.encryptionKmsKeyId, option: 'encryption_kms_key_id' };
  if (cfg.encryptionAzureKeyId !== undefined) return { service: 'azure', keyId: cfg.encryptionAzureKeyId, option: 'encryption_azure_key_id' };
  if (cfg.encryptionGcpKmsKeyName !== undefined) return { service: 'gcp', keyId: cfg.encryptionGcpKmsKeyName, option: 'encryption_gcp_kms_key_name' };
  return undefined;
}
