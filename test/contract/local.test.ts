/** The object-store conformance suite against the local-directory provider, in a fresh temp directory. */
import { pathToFileURL } from 'node:url';
import { createObjectStore } from '../../providers/local/index.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { describeObjectStoreContract } from './object-store-contract.ts';

describeObjectStoreContract('local', async () => {
  const dir = await makeTempDir('cloudbarman-contract-local');
  const store = await createObjectStore({
    destination: pathToFileURL(dir).href,
    multipart: { partSizeBytes: 5 * 1024 * 1024, concurrency: 4 },
    connectTimeoutMs: 2_000,
    requestTimeoutMs: 30_000,
  });
  return {
    store,
    async cleanup() {
      await store.close();
      await removeTempDir(dir);
    },
  };
});
