/**
 * Chooses and loads a snapshotter. Each is imported lazily, so that a WAL upload never loads the
 * EC2, Azure Compute or Compute Engine SDKs. Only the CLI calls this.
 */
import type { ProviderName } from './store-options.ts';
import { SnapshotError, type Snapshotter, type SnapshotterOptions } from './snapshotter.ts';

type Loader = () => Promise<{ createSnapshotter(options: SnapshotterOptions): Promise<Snapshotter> }>;

const LOADERS: Record<ProviderName, Loader> = {
  local: () => import('./local/snapshotter.ts'),
  aws: () => import('./aws/snapshotter.ts'),
  azure: () => import('./azure/snapshotter.ts'),
  gcp: () => import('./gcp/snapshotter.ts'),
};

/** Opens the snapshotter of a provider. */
export async function openSnapshotter(provider: ProviderName, options: SnapshotterOptions): Promise<Snapshotter> {
  const load = LOADERS[provider];
  if (load === undefined) throw new SnapshotError('invalid', `snapshot_provider ${String(provider)} is not one of aws, azure, gcp, local`);
  return (await load()).createSnapshotter(options);
}
