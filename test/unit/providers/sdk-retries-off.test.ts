// The retry decorator is the only retry layer: each provider builds its SDK client with the SDK's
// own retries off, so that one attempt of the policy is one request on the wire. (faults.test.ts
// counts the requests through the fault proxy; this checks the settings without a server.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createS3Client } from '../../../providers/aws/index.ts';
import { createContainerClient } from '../../../providers/azure/index.ts';
import { createStorageClient } from '../../../providers/gcp/index.ts';
import type { StoreOptions } from '../../../providers/store-options.ts';

const options: StoreOptions = {
  destination: 's3://bucket/prefix',
  endpointUrl: 'http://127.0.0.1:9',
  multipart: { partSizeBytes: 5 << 20, concurrency: 2 },
  connectTimeoutMs: 1_000,
  requestTimeoutMs: 1_000,
};

test('S3: maxAttempts 1', async () => {
  const client = createS3Client(options);
  try {
    assert.equal(await client.config.maxAttempts(), 1);
  } finally {
    client.destroy();
  }
});

test('Azure: the pipeline makes one try', async () => {
  // The well-known Azurite development key: public, not a secret.
  const env = { AZURE_STORAGE_KEY: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==' };
  const { client, dispose } = await createContainerClient({ ...options, destination: 'azure://container/prefix', azure: { account: 'devstoreaccount1', credential: 'default' } }, 'container', env);
  try {
    // The pipeline is protected in the SDK's typings; its options are what every request runs under.
    const pipeline = (client as unknown as { pipeline: { options: { retryOptions?: { maxTries?: number } } } }).pipeline;
    assert.equal(pipeline.options.retryOptions?.maxTries, 1);
  } finally {
    dispose();
  }
});

test('GCS: autoRetry off, and nothing is retryable to the SDK', () => {
  const storage = createStorageClient({ ...options, destination: 'gs://bucket/prefix' });
  assert.equal(storage.retryOptions.autoRetry, false);
  assert.equal(storage.retryOptions.retryableErrorFn?.(Object.assign(new Error('503'), { code: 503 }) as never), false);
});
