/**
 * Chooses and loads a provider. Each provider module is imported lazily, so that
 * wal-upload to S3 never loads the Azure or GCS SDKs. Only the CLI calls this.
 */
import type { ObjectStore } from './object-store.ts';
import { StoreError } from './object-store.ts';
import { PROVIDER_SCHEMES, type ProviderName, type StoreOptions } from './store-options.ts';

type Loader = () => Promise<{ createObjectStore(options: StoreOptions): Promise<ObjectStore> }>;

const LOADERS: Record<ProviderName, Loader | undefined> = {
  local: () => import('./local/index.ts'),
  aws: () => import('./aws/index.ts'),
  azure: () => import('./azure/index.ts'),
  gcp: () => import('./gcp/index.ts'),
};

/** Opens the object store of a provider for a destination URL. */
export async function openObjectStore(provider: ProviderName, options: StoreOptions): Promise<ObjectStore> {
  const scheme = PROVIDER_SCHEMES[provider];
  if (!options.destination.startsWith(scheme)) {
    throw new StoreError('invalid', `destination ${options.destination} does not match provider ${provider} (expected ${scheme}//...)`);
  }
  const load = LOADERS[provider];
  if (load === undefined) throw new StoreError('invalid', `provider ${provider} is not available in this build yet`);
  const mod = await load();
  return mod.createObjectStore(options);
}
