/**
 * The object-store conformance suite against the Docker emulators of localstack/docker-compose.yml:
 * LocalStack S3, Azurite (the container) and fake-gcs-server. Run by scripts/test-localstack.sh,
 * which starts them and sets CLOUDBARMAN_TEST_*_ENDPOINT; a store whose variable is unset is
 * reported as skipped with the reason, never silently left out.
 */
import { describe, it } from 'node:test';
import { describeObjectStoreContract } from '../test/contract/object-store-contract.ts';
import { EXTERNAL_STORE_ENV, TEST_BUCKET } from '../test/helpers/stores.ts';
import type { StoreOptions } from '../providers/store-options.ts';

/** The well-known Azurite development account (public; not a secret). */
const AZURITE_ACCOUNT = 'devstoreaccount1';
const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

function options(destination: string, endpointUrl: string): StoreOptions {
  return {
    destination,
    endpointUrl,
    multipart: { partSizeBytes: 5 * 1024 * 1024, concurrency: 4 },
    connectTimeoutMs: 5_000,
    requestTimeoutMs: 60_000,
  };
}

/** Registers the suite when the emulator's variable is set, or one skipped test that says why not. */
function suite(name: string, variable: string, open: (endpoint: string) => Promise<import('../providers/object-store.ts').ObjectStore>, skips: Record<string, string> = {}): void {
  const endpoint = process.env[variable];
  if (!endpoint) {
    describe(`ObjectStore contract: ${name}`, () => {
      it('runs against the emulator', { skip: `${variable} is not set: run npm run test:localstack` }, () => undefined);
    });
    return;
  }
  describeObjectStoreContract(name, async () => {
    const store = await open(endpoint);
    return { store, cleanup: () => store.close() };
  }, skips);
}

suite('aws on LocalStack', EXTERNAL_STORE_ENV.s3, async (endpoint) => {
  process.env['AWS_ACCESS_KEY_ID'] = 'test';
  process.env['AWS_SECRET_ACCESS_KEY'] = 'test';
  const { createObjectStore } = await import('../providers/aws/index.ts');
  return createObjectStore(options(`s3://${TEST_BUCKET}/contract`, endpoint));
});

suite('azure on the Azurite container', EXTERNAL_STORE_ENV.azure, async (endpoint) => {
  const { createObjectStore } = await import('../providers/azure/index.ts');
  process.env['AZURE_STORAGE_KEY'] = AZURITE_KEY;
  return createObjectStore({ ...options(`azure://${TEST_BUCKET}/contract`, endpoint), azure: { account: AZURITE_ACCOUNT, credential: 'default' } });
});

suite('gcp on fake-gcs-server', EXTERNAL_STORE_ENV.gcs, async (endpoint) => {
  const { createObjectStore } = await import('../providers/gcp/index.ts');
  return createObjectStore({ ...options(`gs://${TEST_BUCKET}/contract`, endpoint), gcp: {} });
});
