/**
 * The object-store conformance suite against GcsObjectStore on the GCS test server (in-process, on
 * 127.0.0.1, through the real @google-cloud/storage client), plus what only GCS has: resumable
 * uploads, storage class and CMEK, key-file authentication, timeouts, missing buckets and URLs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { createObjectStore, createStorageClient } from '../../providers/gcp/index.ts';
import { isStoreError } from '../../providers/object-store.ts';
import type { ObjectStore, StoreErrorKind } from '../../providers/object-store.ts';
import type { StoreOptions } from '../../providers/store-options.ts';
import { freePort } from '../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { makeServiceAccountKeyFile, startGcsServer } from '../servers/gcs/index.ts';
import type { GcsServerHandle } from '../servers/gcs/index.ts';
import { describeObjectStoreContract } from './object-store-contract.ts';

// Credentials in the environment must not decide what these tests see; the client reads this one.
delete process.env['GOOGLE_APPLICATION_CREDENTIALS'];
delete process.env['STORAGE_EMULATOR_HOST'];

const BUCKET = 'contract';
const MiB = 1024 * 1024;

/** Store options for a test: 5 MiB parts, so that the 20 MiB body takes four resumable chunks. */
function options(endpoint: string, destination: string, extra: Partial<StoreOptions> = {}): StoreOptions {
  return {
    destination,
    endpointUrl: endpoint,
    multipart: { partSizeBytes: 5 * MiB, concurrency: 4 },
    connectTimeoutMs: 2_000,
    requestTimeoutMs: 30_000,
    ...extra,
  };
}

/** Asserts that a promise rejects with a StoreError of the given kind. */
async function assertStoreError(promise: Promise<unknown>, kind: StoreErrorKind): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isStoreError(err, kind), `expected StoreError '${kind}', got ${isStoreError(err) ? `'${err.kind}': ${err.message}` : String(err)}`);
    return true;
  });
}

/** One HTTP request as the client sent it, seen through Node's diagnostics channel. */
interface SentRequest {
  method: string;
  path: string;
  contentRange: string | undefined;
}

/** Records every HTTP request this process makes while fn runs: a raw view of what reached the wire. */
async function recordRequests(fn: () => Promise<void>): Promise<SentRequest[]> {
  const sent: SentRequest[] = [];
  const onCreated = (message: unknown): void => {
    const request = (message as { request: ClientRequest }).request;
    const range = request.getHeader('content-range');
    sent.push({ method: request.method, path: request.path, contentRange: range === undefined ? undefined : String(range) });
  };
  diagnostics.subscribe('http.client.request.created', onCreated);
  try {
    await fn();
  } finally {
    diagnostics.unsubscribe('http.client.request.created', onCreated);
  }
  return sent;
}

/** A stream of buf in chunks of the given size. */
function chunked(buf: Buffer, size: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
    })(),
  );
}

describeObjectStoreContract(
  'gcp on the GCS test server',
  async () => {
    const server = await startGcsServer({ buckets: [BUCKET] });
    const store = await createObjectStore(options(server.endpoint, `gs://${BUCKET}/some/prefix`));
    return {
      store,
      async cleanup() {
        await store.close();
        await server.stop();
      },
    };
  },
  // No skips: the test server passes every contract test.
  {},
);

describe('GCS provider specifics (GCS test server)', () => {
  let server: GcsServerHandle | undefined;
  const endpoint = (): string => {
    assert.ok(server, 'the GCS test server did not start');
    return server.endpoint;
  };
  const stores: ObjectStore[] = [];
  const open = async (destination: string, extra: Partial<StoreOptions> = {}): Promise<ObjectStore> => {
    const store = await createObjectStore(options(endpoint(), destination, extra));
    stores.push(store);
    return store;
  };

  before(async () => {
    server = await startGcsServer({ buckets: [BUCKET] });
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await server?.stop();
  });

  it('checkAccess and get on a closed port throw unreachable', { timeout: 15_000 }, async () => {
    // freePort released the port; nothing listens there, so the connection is refused.
    const store = await createObjectStore(options(`http://127.0.0.1:${await freePort()}`, `gs://${BUCKET}`));
    stores.push(store);
    await assertStoreError(store.checkAccess(), 'unreachable');
    await assertStoreError(store.get('any/key'), 'unreachable');
    await assertStoreError(store.put('any/key', Buffer.from('x')), 'unreachable');
  });

  it('a server that accepts but never answers is abandoned after requestTimeoutMs', { timeout: 15_000 }, async (t) => {
    // The SDK's own timeout never reaches node-fetch 3; this proves the provider's idle limit does.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.after(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });
    const address = silent.address();
    assert.ok(address !== null && typeof address === 'object');
    const store = await createObjectStore(options(`http://127.0.0.1:${address.port}`, `gs://${BUCKET}`, { requestTimeoutMs: 300 }));
    stores.push(store);
    // Without the limit these would wait for the test's timeout; the code names the idle limit as the cause.
    for (const call of [store.checkAccess(), store.put('k', Buffer.from('x')), store.get('k')]) {
      await assert.rejects(call, (err: unknown) => {
        assert.ok(isStoreError(err, 'transient'), String(err));
        assert.match(err.message, /ESOCKETTIMEDOUT/);
        return true;
      });
    }
  });

  it('a missing bucket is container-not-found', async () => {
    const store = await open('gs://no-such-bucket/prefix');
    await assertStoreError(store.checkAccess(), 'container-not-found');
    await assertStoreError(store.get('some/key'), 'container-not-found');
    await assertStoreError(store.head('some/key'), 'container-not-found');
    await assertStoreError(store.list('some/'), 'container-not-found');
    await assertStoreError(store.put('some/key', Buffer.from('x')), 'container-not-found');
  });

  it('a body of at most one part goes as one multipart request, a longer one as a resumable upload in chunks', async () => {
    const store = await open(`gs://${BUCKET}/upload-types`);
    const large = randomBytes(20 * MiB);
    const small = randomBytes(MiB);
    const largeRequests = await recordRequests(() => store.put('large', () => chunked(large, MiB), { contentLength: large.length }));
    const unknownRequests = await recordRequests(() => store.put('large-unknown', () => chunked(large, MiB)));
    const smallRequests = await recordRequests(() => store.put('small-unknown', () => chunked(small, 64 * 1024)));
    for (const requests of [largeRequests, unknownRequests]) {
      const uploads = requests.filter((r) => r.path.startsWith('/upload/'));
      assert.deepEqual(
        uploads.map((r) => [r.method, /uploadType=(\w+)/.exec(r.path)?.[1], r.contentRange]),
        [
          ['POST', 'resumable', undefined],
          ['PUT', 'resumable', 'bytes 0-5242879/*'],
          ['PUT', 'resumable', 'bytes 5242880-10485759/*'],
          ['PUT', 'resumable', 'bytes 10485760-15728639/*'],
          ['PUT', 'resumable', `bytes 15728640-20971519/${20 * MiB}`],
        ],
      );
    }
    assert.deepEqual(
      smallRequests.filter((r) => r.path.startsWith('/upload/')).map((r) => [r.method, /uploadType=(\w+)/.exec(r.path)?.[1]]),
      [['POST', 'multipart']],
    );
    for (const [key, bytes] of [['large', large], ['large-unknown', large], ['small-unknown', small]] as const) {
      const { info, body } = await store.get(key);
      assert.equal(info.size, bytes.length, key);
      assert.ok((await buffer(body)).equals(bytes), key);
    }
  });

  it('a failed resumable upload cancels its session and stores nothing', async () => {
    const store = await open(`gs://${BUCKET}/cancelled`);
    const part = randomBytes(MiB);
    const requests = await recordRequests(async () => {
      await assert.rejects(
        store.put('obj', () =>
          Readable.from(
            (async function* () {
              for (let i = 0; i < 12; i++) yield part;
              throw new Error('source failed after 12 MiB');
            })(),
          ),
        ),
        /source failed after 12 MiB/,
      );
    });
    const session = requests.find((r) => r.method === 'POST' && r.path.includes('uploadType=resumable'));
    assert.ok(session, 'a resumable session was started');
    const cancels = requests.filter((r) => r.method === 'DELETE' && r.path.includes('upload_id='));
    assert.equal(cancels.length, 1, 'the session was cancelled');
    assert.equal(await store.head('obj'), undefined);
  });

  it('storage class and CMEK key reach the stored object, for single and resumable uploads', async () => {
    const kmsKeyName = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
    const store = await open(`gs://${BUCKET}/cmek`, { gcp: { storageClass: 'NEARLINE', kmsKeyName } });
    await store.put('bytes', Buffer.from('x'));
    await store.put('stream', () => chunked(randomBytes(11 * MiB), MiB));
    // Read back through the real client, not the code under test.
    const client = createStorageClient(options(endpoint(), `gs://${BUCKET}`));
    for (const name of ['cmek/bytes', 'cmek/stream']) {
      const [metadata] = await client.bucket(BUCKET).file(name).getMetadata();
      assert.equal(metadata.storageClass, 'NEARLINE', name);
      assert.ok(String(metadata.kmsKeyName).startsWith(kmsKeyName), `${name}: ${String(metadata.kmsKeyName)}`);
      assert.equal(metadata.contentType, 'application/octet-stream', name);
    }
  });

  it('a key file authenticates against a server that requires credentials; no key file is access-denied', async (t) => {
    const secured = await startGcsServer({ buckets: [BUCKET], requireBearerToken: randomBytes(16).toString('hex') });
    const dir = await makeTempDir('cloudbarman-gcs-key');
    t.after(async () => {
      await secured.stop();
      await removeTempDir(dir);
    });
    const key = await makeServiceAccountKeyFile(dir, secured);
    const withKey = await createObjectStore(options(secured.endpoint, `gs://${BUCKET}/auth`, { gcp: { keyFile: key.path } }));
    const anonymous = await createObjectStore(options(secured.endpoint, `gs://${BUCKET}/auth`));
    stores.push(withKey, anonymous);
    await withKey.checkAccess();
    await withKey.put('small', Buffer.from('authenticated'));
    await withKey.put('large', () => chunked(randomBytes(6 * MiB), MiB));
    assert.equal((await buffer((await withKey.get('small')).body)).toString(), 'authenticated');
    await withKey.delete(['small', 'large']);
    await assertStoreError(anonymous.checkAccess(), 'access-denied');
    await assertStoreError(anonymous.put('x', Buffer.from('x')), 'access-denied');
    await assertStoreError(anonymous.get('small'), 'access-denied');
  });

  it('a key file that does not exist is invalid, and the message names no secret', async () => {
    const store = await open(`gs://${BUCKET}`, { gcp: { keyFile: '/nonexistent/cloudbarman-key.json' } });
    await assert.rejects(store.checkAccess(), (err: unknown) => {
      assert.ok(isStoreError(err, 'invalid'), String(err));
      return true;
    });
  });

  it('close ends the requests in flight and makes the store unusable', { timeout: 15_000 }, async () => {
    const store = await createObjectStore(options(endpoint(), `gs://${BUCKET}/closing`));
    await store.put('obj', randomBytes(4 * MiB));
    const { body } = await store.get('obj');
    const ended = new Promise<unknown>((resolve) => {
      body.once('error', resolve);
      body.once('close', () => resolve(undefined));
    });
    await store.close();
    await ended;
    assert.ok(body.destroyed, 'the body was ended');
    await assertStoreError(store.head('obj'), 'failed');
  });

  it('an aborted signal stops a put and a get', async () => {
    const store = await open(`gs://${BUCKET}/abort`);
    await assert.rejects(store.put('a', Buffer.from('x'), { signal: AbortSignal.abort() }));
    assert.equal(await store.head('a'), undefined);
    await store.put('b', randomBytes(2 * MiB));
    const controller = new AbortController();
    const { body } = await store.get('b', { signal: controller.signal });
    controller.abort();
    await assert.rejects(buffer(body));
  });

  it('ranges past the end read nothing, and an inverted range is invalid', async () => {
    const store = await open(`gs://${BUCKET}/ranges`);
    await store.put('obj', Buffer.from('0123456789'));
    const { info, body } = await store.get('obj', { range: { start: 10 } });
    assert.equal((await buffer(body)).length, 0);
    assert.equal(info.size, 10);
    assert.equal((await buffer((await store.get('obj', { range: { start: 4, end: 4 } })).body)).length, 0);
    assert.equal((await buffer((await store.get('obj', { range: { start: 8, end: 100 } })).body)).toString(), '89');
    await assertStoreError(store.get('obj', { range: { start: 5, end: 4 } }), 'invalid');
    await assertStoreError(store.get('missing', { range: { start: 4, end: 4 } }), 'not-found');
  });

  it('keys live under the destination prefix and the url names it', async () => {
    const nested = await open(`gs://${BUCKET}/outer/inner/`);
    const outer = await open(`gs://${BUCKET}/outer`);
    assert.equal(nested.url, `gs://${BUCKET}/outer/inner`);
    await nested.put('k', Buffer.from('x'));
    assert.deepEqual((await outer.list('inner/')).items.map((i) => i.key), ['inner/k']);
    assert.deepEqual((await nested.list('')).items.map((i) => i.key), ['k']);
  });

  it('a declared contentLength that does not match the stream is rejected and stores nothing', async () => {
    const store = await open(`gs://${BUCKET}/lengths`);
    await assertStoreError(store.put('short', () => Readable.from([Buffer.from('abc')]), { contentLength: 10 }), 'invalid');
    await assertStoreError(store.put('long', () => Readable.from([Buffer.from('abcdef')]), { contentLength: 2 }), 'invalid');
    // Above the part size the body goes as a resumable upload, which must see the same check.
    await assertStoreError(store.put('short-resumable', () => chunked(randomBytes(7 * MiB), MiB), { contentLength: 8 * MiB }), 'invalid');
    await assertStoreError(store.put('long-resumable', () => chunked(randomBytes(12 * MiB), MiB), { contentLength: 8 * MiB }), 'invalid');
    for (const key of ['short', 'long', 'short-resumable', 'long-resumable']) assert.equal(await store.head(key), undefined, key);
  });

  it('destinations that are not gs://bucket[/prefix] are invalid', async () => {
    // The full table is in test/unit/providers/gcp-url.test.ts; this checks the factory applies it.
    for (const destination of ['s3://bucket/x', 'gs://', 'gs://Upper/x', 'gs://bucket/a/../b']) {
      await assertStoreError(createObjectStore(options(endpoint(), destination)), 'invalid');
    }
  });
});
