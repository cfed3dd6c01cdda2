/**
 * Where client-side encryption keys come from: encryption_key_file, or the environment variable
 * named by encryption_key_env. Keys are loaded only when an object needs one (a `list` of an
 * encrypted archive needs none), once per process. A key never appears in a message: only its id
 * (a fingerprint, src/io/encryption.ts) does.
 */
import { CloudbarmanError } from '../errors.ts';
import { KEY_BYTES, masterKey, type Keyring, type MasterKey } from '../../io/encryption.ts';

/** What the config says about client-side encryption. */
export interface EncryptionConfig {
  /** Encrypt what is written (client_encryption = aes-256-gcm). Reading never depends on it. */
  encrypt: boolean;
  keyFile?: string;
  /** The environment variable that holds the key when no key file is set. */
  keyEnv: string;
}

/** How the key sources are read; the CLI passes the real environment and file system. */
export interface KeySources {
  env: Readonly<Record<string, string | undefined>>;
  readFile(path: string): Promise<Buffer>;
  /** The file's permission bits (st_mode & 0o777). */
  fileMode(path: string): Promise<number>;
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
    this.#loading ??= loadKeys(this.config, this.#sources);
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

/** A key written as 64 hex digits or base64 of 32 bytes; undefined otherwise. */
export function parseKeyText(text: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(text)) {
    const bytes = Buffer.from(text.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
    if (bytes.length === KEY_BYTES) return bytes;
  }
  return undefined;
}
