/**
 * What every command needs before it does its work: the server's resolved config and an
 * object store with the retry policy wrapped around it. Chosen here, once, for all commands.
 */
import type { ObjectStore } from '../../providers/object-store.ts';
import { openObjectStore } from '../../providers/registry.ts';
import { withRetries } from '../../providers/retrying-store.ts';
import { loadServerConfig, toStoreOptions, type ServerConfig } from '../config/load.ts';
import { configFlagsFrom, type FlagRenames } from './config-flags.ts';
import { storeFailure } from '../core/store/store-failure.ts';
import type { Logger } from '../core/log.ts';

/** Resolves SERVER's config from -c/env/flags; renames: the command's own flag spellings (backup --compression). */
export async function loadConfig(server: string, opts: Record<string, unknown>, renames: FlagRenames = {}): Promise<ServerConfig> {
  const configPath = typeof opts['config'] === 'string' ? opts['config'] : undefined;
  return loadServerConfig(server, {
    ...(configPath === undefined ? {} : { configPath }),
    env: process.env,
    flags: configFlagsFrom(opts, renames),
    flagRenames: renames,
  });
}

/** Opens the server's store, wrapped in the one retry policy. */
export async function openStore(cfg: ServerConfig, log: Logger): Promise<ObjectStore> {
  let store: ObjectStore;
  try {
    store = await openObjectStore(cfg.provider, toStoreOptions(cfg));
  } catch (err) {
    throw storeFailure(err, 'opening the store', cfg.destination);
  }
  return withRetries(store, { timeoutMs: cfg.retryTimeoutMs, maxAttempts: 10, baseDelayMs: 200, maxDelayMs: 5_000 }, {
    onRetry: (op, attempt, error, delay) => log.debug(`${op}: attempt ${attempt} failed (${error.kind}: ${error.message}); retrying in ${delay} ms`),
  });
}
