/**
 * What every command needs before it does its work: the server's resolved config and an
 * object store with the retry policy wrapped around it. Chosen here, once, for all commands.
 */
import type { ObjectStore } from '../../providers/object-store.ts';
import { loadServerConfig, toStoreOptions, type ServerConfig } from '../config/load.ts';
import { configFlagsFrom, type FlagRenames } from './config-flags.ts';
import { storeFailure } from '../core/store/store-failure.ts';
import type { Logger } from '../core/log.ts';
import type { KeyUnwrapper } from '../core/crypto/key-unwrap.ts';
import { stat } from 'node:fs/promises';

/** Where config warnings go: the running command's log (set by the CLI's run wrapper). */
let warn: (message: string) => void = () => undefined;
const warnedFiles = new Set<string>();

/** Routes this module's warnings to the command's log. */
export function setContextLogger(log: Logger): void {
  warn = (message) => log.warn(message);
}

/** Resolves SERVER's config from -c/env/flags; renames: the command's own flag spellings (backup --compression). */
export async function loadConfig(server: string, opts: Record<string, unknown>, renames: FlagRenames = {}): Promise<ServerConfig> {
  const configPath = typeof opts['config'] === 'string' ? opts['config'] : undefined;
  const cfg = await loadServerConfig(server, {
    ...(configPath === undefined ? {} : { configPath }),
    env: process.env,
    flags: configFlagsFrom(opts, renames),
    flagRenames: renames,
  });
  await warnAboutReadableSecrets(cfg);
  return cfg;
}

/**
 * A config file that holds a password and that every user may read gets a warning (once per
 * file): the fix is a mode of 640 with the postgres group, or ~/.pgpass for the password.
 */
async function warnAboutReadableSecrets(cfg: ServerConfig): Promise<void> {
  const file = cfg.configFile;
  if (file === undefined || warnedFiles.has(file)) return;
  const inFile = (['conninfo', 'streaming_conninfo'] as const).filter((name) => {
    const value = name === 'conninfo' ? cfg.conninfo : cfg.streamingConninfo;
    return cfg.origins[name] === 'file' && value !== undefined && /(^|\s|[?&])password\s*=/i.test(value);
  });
  if (inFile.length === 0) return;
  warnedFiles.add(file);
  try {
    const { mode } = await stat(file);
    if ((mode & 0o004) !== 0) {
      warn(`config file ${file} holds a password (${inFile.join(', ')}) and every user on this host may read it: chmod 640 it (owner and the postgres group), or move the password to ~/.pgpass`);
    }
  } catch {
    // It was just read; a file that vanished since has nothing left to warn about.
  }
}

/** Opens the server's store, wrapped in the one retry policy. */
export async function openStore(cfg: ServerConfig, log: Logger): Promise<ObjectStore> {
  // Loaded here, not up front (they load node:crypto and node:stream): a wal-upload that a spool
  // record confirms never opens a store.
  const [{ openObjectStore }, { withRetries }] = await Promise.all([import('../../providers/registry.ts'), import('../../providers/retrying-store.ts')]);
  let store: ObjectStore;
  try {
    store = await openObjectStore(cfg.provider, toStoreOptions(cfg));
  } catch (err) {
    throw storeFailure(err, 'opening the store', cfg.destination);
  }
  const retrying = withRetries(store, { timeoutMs: cfg.retryTimeoutMs, maxAttempts: 10, baseDelayMs: 200, maxDelayMs: 5_000 }, {
    onRetry: (op, attempt, error, delay) => log.debug(`${op}: attempt ${attempt} failed (${error.kind}: ${error.message}); retrying in ${delay} ms`),
  });
  // Client-side encryption (docs/encryption.md) wraps the retrying store; keys load on first use.
  const { withClientEncryption, encryptionKeysFor } = await import('../core/crypto/encrypting-store.ts');
  return withClientEncryption(retrying, encryptionKeysFor(cfg, process.env, kmsUnwrapperFor(cfg)));
}

/**
 * The key-management service that unwraps the master key (envelope encryption, docs/encryption.md),
 * its SDK loaded only when a key is first needed: AWS KMS (encryption_kms_key_id; region and
 * credentials as for S3), Azure Key Vault (encryption_azure_key_id; azure_credential) or Google
 * Cloud KMS (encryption_gcp_kms_key_name; gcp_key_file). The config allows at most one.
 */
function kmsUnwrapperFor(cfg: ServerConfig): (() => Promise<KeyUnwrapper>) | undefined {
  const timeouts = { connectTimeoutMs: cfg.connectTimeoutMs, requestTimeoutMs: cfg.requestTimeoutMs };
  if (cfg.encryptionKmsKeyId !== undefined) {
    const keyId = cfg.encryptionKmsKeyId;
    return async () => {
      const { createKmsUnwrapper } = await import('../../providers/aws/kms.ts');
      return createKmsUnwrapper({
        keyId,
        ...(cfg.encryptionKmsEndpointUrl === undefined ? {} : { endpointUrl: cfg.encryptionKmsEndpointUrl }),
        ...(cfg.awsRegion === undefined ? {} : { region: cfg.awsRegion }),
        ...(cfg.awsProfile === undefined ? {} : { profile: cfg.awsProfile }),
        ...timeouts,
      });
    };
  }
  if (cfg.encryptionAzureKeyId !== undefined) {
    const keyId = cfg.encryptionAzureKeyId;
    return async () => {
      const { createAzureKeyVaultUnwrapper } = await import('../../providers/azure/keyvault.ts');
      return createAzureKeyVaultUnwrapper({ keyId, credentialName: cfg.azureCredential, ...timeouts });
    };
  }
  if (cfg.encryptionGcpKmsKeyName !== undefined) {
    const keyName = cfg.encryptionGcpKmsKeyName;
    return async () => {
      const { createGcpKmsUnwrapper } = await import('../../providers/gcp/kms.ts');
      return createGcpKmsUnwrapper({
        keyName,
        ...(cfg.encryptionKmsEndpointUrl === undefined ? {} : { endpointUrl: cfg.encryptionKmsEndpointUrl }),
        ...(cfg.gcpKeyFile === undefined ? {} : { keyFile: cfg.gcpKeyFile }),
        ...timeouts,
      });
    };
  }
  return undefined;
}
