/** The local-directory provider's entry point, loaded lazily by providers/registry.ts. */
import type { ObjectStore } from '../object-store.ts';
import type { StoreOptions } from '../store-options.ts';
import { LocalObjectStore } from './object-store.ts';

/** Opens the store at options.destination (file:///absolute/path). */
export async function createObjectStore(options: StoreOptions): Promise<ObjectStore> {
  return new LocalObjectStore(options.destination);
}
