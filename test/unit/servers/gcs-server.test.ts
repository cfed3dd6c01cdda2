/**
 * The GCS test server (test/servers/gcs/) against the real @google-cloud/storage client over HTTP,
 * and against raw requests for what the client never sends (gaps, bad tokens, bad ranges, ...).
 * Each server is in-process on 127.0.0.1 and stopped by the hook or test that started it.
 */
import assert from 'node:assert/strict';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { Storage } from '@google-cloud/storage';
import type { Bucket, GetFilesOptions, GetFilesResponse } from '@google-cloud/storage';
import { makeTempDir, removeTempDir } from '../../helpers/tmp.ts';
import { crc32c, crc32cBase64 } from '../../servers/gcs/crc32c.ts';
import { makeServiceAccountKeyFile, startGcsServer } from '../../servers/gcs/index.ts';
import type { GcsServerHandle } from '../../servers/gcs/index.ts';

// Ambient credentials or an emulator variable must not change what the client does here.
delete process.env['GOOGLE_APPLICATION_CREDENTIALS'];
delete process.env['STORAGE_EMULATOR_HOST'];

const KiB = 1024;
const MiB = 1024 * KiB;
/** Per-test limit: every test here finishes in well under a second on a quiet machine. */
const TEST_TIMEOUT = { timeout: 30_000 };
/** Per-request limit for raw HTTP. */
const REQUEST_TIMEOUT_MS = 10_000;

/** A client for `server`, with retries off so that an error reaches the test on the first answer. */
function client(server: GcsServerHandle, extra: ConstructorParameters<typeof Storage>[0] = {}): Storage {
  return new Storage({ apiEndpoint: server.endpoint, projectId: 'test', retryOptions: { autoRetry: false }, ...extra });
}

/** A raw response, body read. */
interface RawResponse {
  status: number;
  headers: Headers;
  body: Buffer;
  json(): { error?: { code: number; message: string; errors: { domain: string; reason: string; message: string }[] } } & Record<string, unknown>;
}

/** One raw HTTP request, with a timeout; redirects are not followed (308 is the resumable protocol's). */
async function raw(method: string, url: string, init: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
  const res = await fetch(url, {
    method,
    headers: init.headers,
    body: init.body,
    redirect: 'manual',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    headers: res.headers,
    body,
    json: () => JSON.parse(body.toString('utf8')) as ReturnType<RawResponse['json']>,
  };
}

/** Asserts the JSON API error shape and its status and reason. */
function assertApiError(res: RawResponse, status: number, reason: string): void {
  assert.equal(res.status, status, res.body.toString());
  const { error } = res.json();
  assert.ok(error !== undefined, 'an error body');
  assert.equal(error.code, status);
  assert.equal(typeof error.message, 'string');
  assert.equal(error.errors[0]?.domain, 'global');
  assert.equal(error.errors[0]?.reason, reason);
}

/** Asserts that a client call fails with the given HTTP status in `code`. */
async function assertCode(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal((err as { code?: unknown }).code, code, String(err));
    return true;
  });
}

/** Opens a resumable session with raw HTTP; returns the session URI. */
async function openSession(server: GcsServerHandle, bucket: string, name: string, query = '', metadata: object = {}): Promise<string> {
  const res = await raw('POST', `${server.endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${encodeURIComponent(name)}${query}`, {
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(metadata),
  });
  assert.equal(res.status, 200, res.body.toString());
  const location = res.headers.get('location');
  assert.ok(location !== null);
  return location;
}

/** Uploads a whole body as one media request. */
async function mediaPut(server: GcsServerHandle, bucket: string, name: string, body: Buffer, query = ''): Promise<RawResponse> {
  return await raw('POST', `${server.endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${encodeURIComponent(name)}${query}`, {
    headers: { 'Content-Type': 'application/octet-stream' },
    body,
  });
}

describe('crc32c', () => {
  it('matches the RFC 3720 check value and continues a running checksum', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.from('56789'), crc32c(Buffer.from('1234'))), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    // 32 zero bytes: the iSCSI test vector from RFC 3720 appendix B.4.
    assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa);
    assert.equal(crc32cBase64(Buffer.from('123456789')), Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString('base64'));
  });
});

describe('GCS test server through @google-cloud/storage', TEST_TIMEOUT, () => {
  let server: GcsServerHandle;
  let bucket: Bucket;
  before(async () => {
    server = await startGcsServer({ buckets: ['sdk'] });
    bucket = client(server).bucket('sdk');
  });
  after(async () => {
    await server.stop();
  });

  it('reports buckets that exist and buckets that do not', async () => {
    assert.deepEqual(await bucket.exists(), [true]);
    assert.deepEqual(await client(server).bucket('missing-bucket').exists(), [false]);
    const [metadata] = await bucket.getMetadata();
    assert.equal(metadata.name, 'sdk');
  });

  it('creates, lists, tests permissions on and deletes buckets', async () => {
    const storage = client(server);
    const [created] = await storage.createBucket('made-by-client');
    assert.equal(created.name, 'made-by-client');
    await assertCode(storage.createBucket('made-by-client'), 409);
    const [buckets] = await storage.getBuckets();
    assert.deepEqual(buckets.map((b) => b.name), ['made-by-client', 'sdk']);
    const [granted] = await created.iam.testPermissions(['storage.objects.get', 'storage.objects.create']);
    assert.deepEqual(granted, { 'storage.objects.get': true, 'storage.objects.create': true });
    await created.file('x').save('x', { resumable: false });
    await assertCode(created.delete(), 409);
    await created.file('x').delete();
    await created.delete();
    assert.deepEqual(await created.exists(), [false]);
  });

  it('saves small objects (resumable single request and multipart) with the service metadata', async () => {
    const body = Buffer.from('hello, world');
    await bucket.file('small/resumable.txt').save(body);
    await bucket.file('small/multipart.bin').save(body, { resumable: false, metadata: { contentType: 'application/x-test', metadata: { k: 'v' } } });
    for (const name of ['small/resumable.txt', 'small/multipart.bin']) {
      const [metadata] = await bucket.file(name).getMetadata();
      assert.equal(metadata.size, String(body.length));
      assert.equal(metadata.md5Hash, createHash('md5').update(body).digest('base64'));
      assert.equal(metadata.crc32c, crc32cBase64(body));
      assert.match(String(metadata.generation), /^\d+$/);
      assert.equal(metadata.metageneration, '1');
      assert.equal(metadata.storageClass, 'STANDARD');
      assert.ok(!Number.isNaN(Date.parse(String(metadata.timeCreated))));
      const [downloaded] = await bucket.file(name).download();
      assert.deepEqual(downloaded, body);
    }
    const [multipart] = await bucket.file('small/multipart.bin').getMetadata();
    assert.equal(multipart.contentType, 'application/x-test');
    assert.deepEqual(multipart.metadata, { k: 'v' });
  });

  it('stores and returns storageClass and kmsKeyName given at insert', async () => {
    const kmsKeyName = 'projects/p/locations/global/keyRings/r/cryptoKeys/k';
    await bucket.file('cmek/one', { kmsKeyName }).save('x', { resumable: false, metadata: { storageClass: 'NEARLINE' } });
    await bucket.file('cmek/two', { kmsKeyName }).save('y', { metadata: { storageClass: 'COLDLINE' } });
    const [one] = await bucket.file('cmek/one').getMetadata();
    const [two] = await bucket.file('cmek/two').getMetadata();
    assert.equal(one.storageClass, 'NEARLINE');
    assert.equal(two.storageClass, 'COLDLINE');
    // The service names the key version it used.
    assert.equal(one.kmsKeyName, `${kmsKeyName}/cryptoKeyVersions/1`);
    assert.equal(two.kmsKeyName, `${kmsKeyName}/cryptoKeyVersions/1`);
    await assertCode(bucket.file('cmek/bad').save('z', { resumable: false, metadata: { storageClass: 'FROZEN' } }), 400);
  });

  it('takes a multi-MiB resumable upload in 256 KiB-multiple chunks', async () => {
    const body = randomBytes(3 * MiB + 123);
    const file = bucket.file('big/chunked.bin');
    const progress: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = file.createWriteStream({ resumable: true, chunkSize: 4 * 256 * KiB });
      stream.on('progress', (event: { bytesWritten: number }) => progress.push(event.bytesWritten));
      stream.once('error', reject).once('finish', () => resolve());
      stream.end(body);
    });
    const [metadata] = await file.getMetadata();
    assert.equal(metadata.size, String(body.length));
    assert.equal(metadata.crc32c, crc32cBase64(body));
    const [downloaded] = await file.download();
    assert.ok(downloaded.equals(body));
    assert.ok(progress.length >= 4, `four chunks or more, saw progress ${progress.join(',')}`);
  });

  it('uploads a body that ends exactly on a chunk boundary', async () => {
    const body = randomBytes(2 * 256 * KiB);
    const file = bucket.file('big/aligned.bin');
    await new Promise<void>((resolve, reject) => {
      const stream = file.createWriteStream({ resumable: true, chunkSize: 256 * KiB });
      stream.once('error', reject).once('finish', () => resolve());
      stream.end(body);
    });
    const [downloaded] = await file.download();
    assert.ok(downloaded.equals(body));
  });

  it('serves byte ranges: start-end, start only, tail, and validates whole downloads', async () => {
    const body = Buffer.from('0123456789abcdefghij');
    const file = bucket.file('ranges/r.txt');
    await file.save(body, { resumable: false });
    assert.equal((await buffer(file.createReadStream({ start: 2, end: 5 }))).toString(), '2345');
    assert.equal((await buffer(file.createReadStream({ start: 15 }))).toString(), 'fghij');
    assert.equal((await buffer(file.createReadStream({ end: -3 }))).toString(), 'hij');
    assert.equal((await file.download({ start: 0, end: 0 }))[0].toString(), '0');
    // Validation on: the client checks the body against x-goog-hash.
    assert.deepEqual(await buffer(file.createReadStream({ validation: 'crc32c' })), body);
    assert.deepEqual(await buffer(file.createReadStream({ validation: 'md5' })), body);
  });

  it('serves gzip-encoded objects so that the client can inflate and validate them', async () => {
    const body = Buffer.from('compress me '.repeat(1000));
    const file = bucket.file('gzip/g.txt');
    await file.save(body, { gzip: true, resumable: false, metadata: { contentType: 'text/plain' } });
    const [metadata] = await file.getMetadata();
    assert.equal(metadata.contentEncoding, 'gzip');
    assert.ok(Number(metadata.size) < body.length);
    assert.deepEqual((await file.download())[0], body);
  });

  it('lists with prefix, delimiter and pages, in lexicographic order', async () => {
    const names = ['list/b', 'list/a', 'list/dir/x', 'list/dir/y', 'list/c', 'list/e/z'];
    for (const name of names) await bucket.file(name).save(name, { resumable: false });

    const [all] = await bucket.getFiles({ prefix: 'list/' });
    assert.deepEqual(all.map((f) => f.name), ['list/a', 'list/b', 'list/c', 'list/dir/x', 'list/dir/y', 'list/e/z']);

    const seen: string[] = [];
    // With autoPaginate off the client hands back the next page's query (pageToken set), or null.
    let query: GetFilesOptions | null = { prefix: 'list/', maxResults: 2, autoPaginate: false };
    let pages = 0;
    while (query !== null) {
      const response: GetFilesResponse = await bucket.getFiles(query);
      const [files, next] = response;
      assert.ok(files.length <= 2);
      seen.push(...files.map((f) => f.name));
      pages++;
      query = (next as GetFilesOptions | null) ?? null;
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen, all.map((f) => f.name));

    const [files, , response] = await bucket.getFiles({ prefix: 'list/', delimiter: '/', autoPaginate: false });
    assert.deepEqual(files.map((f) => f.name), ['list/a', 'list/b', 'list/c']);
    assert.deepEqual((response as { prefixes?: string[] }).prefixes, ['list/dir/', 'list/e/']);
  });

  it('orders names by UTF-8 bytes, not UTF-16 code units', async () => {
    // U+FFFD sorts after U+1F600's lead surrogate in UTF-16 but before it in UTF-8.
    await bucket.file('utf8/\u{1F600}').save('a', { resumable: false });
    await bucket.file('utf8/\uFFFD').save('b', { resumable: false });
    const [files] = await bucket.getFiles({ prefix: 'utf8/' });
    assert.deepEqual(files.map((f) => f.name), ['utf8/\uFFFD', 'utf8/\u{1F600}']);
  });

  it('deletes objects and reports missing ones as 404', async () => {
    const file = bucket.file('delete/me');
    await file.save('x', { resumable: false });
    await file.delete();
    assert.deepEqual(await file.exists(), [false]);
    await assertCode(file.delete(), 404);
    await assertCode(file.download(), 404);
    await assertCode(file.getMetadata(), 404);
    await assertCode(client(server).bucket('missing-bucket').file('x').getMetadata(), 404);
  });

  it('enforces generation preconditions on insert, read and delete', async () => {
    const file = bucket.file('pre/obj');
    await file.save('first', { preconditionOpts: { ifGenerationMatch: 0 } });
    const [metadata] = await file.getMetadata();
    const generation = Number(metadata.generation);
    await assertCode(file.save('again', { preconditionOpts: { ifGenerationMatch: 0 } }), 412);
    await assertCode(file.save('again', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }), 412);
    await assertCode(file.save('again', { resumable: false, preconditionOpts: { ifGenerationMatch: generation + 1 } }), 412);
    await file.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: generation } });
    const [after] = await file.getMetadata();
    assert.ok(BigInt(String(after.generation)) > BigInt(generation));
    await assertCode(file.delete({ ifGenerationMatch: generation }), 412);
    await assertCode(bucket.file('pre/obj', { generation }).download(), 404);
    await file.delete({ ifGenerationMatch: Number(after.generation) });
    await assertCode(bucket.file('pre/absent').save('x', { resumable: false, preconditionOpts: { ifGenerationMatch: 5 } }), 412);
  });

  it('rejects an upload whose declared hash does not match its bytes', async () => {
    const wrong = crc32cBase64(Buffer.from('something else'));
    await assertCode(bucket.file('hash/bad').save('payload', { resumable: false, metadata: { crc32c: wrong } }), 400);
    await assert.rejects(bucket.file('hash/bad').getMetadata());
  });
});

describe('GCS test server resumable protocol (raw HTTP)', TEST_TIMEOUT, () => {
  let server: GcsServerHandle;
  before(async () => {
    server = await startGcsServer({ buckets: ['raw'] });
  });
  after(async () => {
    await server.stop();
  });

  const chunk = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

  it('hands out a session URI on this server and walks chunks, status queries, retries and the final chunk', async () => {
    const uri = await openSession(server, 'raw', 'session/one');
    assert.ok(uri.startsWith(`${server.endpoint}/upload/storage/v1/b/raw/o?`), uri);
    assert.match(uri, /[?&]upload_id=/);

    // Nothing yet: 308 without a Range header.
    let res = await raw('PUT', uri, { headers: { 'Content-Range': 'bytes */*' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), null);

    const a = chunk(256 * KiB, 1);
    const b = chunk(256 * KiB, 2);
    const tail = chunk(10, 3);
    res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes 0-${256 * KiB - 1}/*` }, body: a });
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), `bytes=0-${256 * KiB - 1}`);

    res = await raw('PUT', uri, { headers: { 'Content-Range': 'bytes */*' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), `bytes=0-${256 * KiB - 1}`);

    // A retried chunk that overlaps what the server has: the known bytes are skipped.
    res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes 0-${512 * KiB - 1}/*` }, body: Buffer.concat([a, b]) });
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), `bytes=0-${512 * KiB - 1}`);

    const total = 512 * KiB + tail.length;
    res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes ${512 * KiB}-${total - 1}/${total}` }, body: tail });
    assert.equal(res.status, 200, res.body.toString());
    const resource = res.json();
    assert.equal(resource['name'], 'session/one');
    assert.equal(resource['size'], String(total));

    // A finished session answers a status query with the object.
    res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes */${total}` } });
    assert.equal(res.status, 200);
    assert.equal(res.json()['generation'], resource['generation']);

    const download = await raw('GET', `${server.endpoint}/storage/v1/b/raw/o/${encodeURIComponent('session/one')}?alt=media`);
    assert.ok(download.body.equals(Buffer.concat([a, b, tail])));
  });

  it('answers a chunk that would leave a gap with 503 and the service message, keeping the session', async () => {
    const uri = await openSession(server, 'raw', 'session/gap');
    let res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes ${256 * KiB}-${512 * KiB - 1}/*` }, body: chunk(256 * KiB, 1) });
    assert.equal(res.status, 503);
    assert.match(res.body.toString(), /upload offset is 262144 byte\(s\), which exceeds already uploaded size of 0 byte\(s\)/);
    res = await raw('PUT', uri, { headers: { 'Content-Range': 'bytes 0-4/5' }, body: Buffer.from('hello') });
    assert.equal(res.status, 200);
  });

  it('refuses a non-final chunk that is not a multiple of 256 KiB', async () => {
    const uri = await openSession(server, 'raw', 'session/unaligned');
    const res = await raw('PUT', uri, { headers: { 'Content-Range': 'bytes 0-99999/*' }, body: chunk(100_000, 1) });
    assertApiError(res, 400, 'invalid');
    const status = await raw('PUT', uri, { headers: { 'Content-Range': 'bytes */*' } });
    assert.equal(status.status, 308);
    assert.equal(status.headers.get('range'), null, 'nothing was persisted');
  });

  it('refuses malformed and inconsistent Content-Range headers', async () => {
    const uri = await openSession(server, 'raw', 'session/bad-range');
    assertApiError(await raw('PUT', uri, { headers: { 'Content-Range': 'bytes 0--1/0' } }), 400, 'invalid');
    assertApiError(await raw('PUT', uri, { headers: { 'Content-Range': 'bytes=0-4/5' }, body: 'hello' }), 400, 'invalid');
    assertApiError(await raw('PUT', uri, { headers: { 'Content-Range': 'bytes 0-9/10' }, body: 'hello' }), 400, 'invalid');
    assertApiError(await raw('PUT', uri, { headers: { 'Content-Range': 'bytes 0-4/3' }, body: 'hello' }), 400, 'invalid');
  });

  it('finalizes with a bytes */N status query once every byte is there', async () => {
    const uri = await openSession(server, 'raw', 'session/star-total');
    let res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes 0-${256 * KiB - 1}/*` }, body: chunk(256 * KiB, 9) });
    assert.equal(res.status, 308);
    res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes */${256 * KiB}` } });
    assert.equal(res.status, 200);
    assert.equal(res.json()['size'], String(256 * KiB));
  });

  it('takes the whole object in one PUT without Content-Range, honouring X-Upload-Content-Length', async () => {
    const res = await raw('POST', `${server.endpoint}/upload/storage/v1/b/raw/o?uploadType=resumable&name=session%2Fdeclared`, {
      headers: { 'X-Upload-Content-Length': '5', 'X-Upload-Content-Type': 'text/plain' },
    });
    const uri = res.headers.get('location');
    assert.ok(uri !== null);
    assertApiError(await raw('PUT', uri, { headers: { 'Content-Range': 'bytes 0-5/6' }, body: 'hello!' }), 400, 'invalid');
    const done = await raw('PUT', uri, { body: 'hello' });
    assert.equal(done.status, 200);
    assert.equal(done.json()['contentType'], 'text/plain');
  });

  it('answers 404 for an unknown upload id and 499 for a cancelled session, then refuses it', async () => {
    const unknown = await raw('PUT', `${server.endpoint}/upload/storage/v1/b/raw/o?uploadType=resumable&upload_id=nope`, {
      headers: { 'Content-Range': 'bytes */*' },
    });
    assertApiError(unknown, 404, 'notFound');
    const uri = await openSession(server, 'raw', 'session/cancel');
    await raw('PUT', uri, { headers: { 'Content-Range': `bytes 0-${256 * KiB - 1}/*` }, body: chunk(256 * KiB, 1) });
    const cancelled = await raw('DELETE', uri);
    assert.equal(cancelled.status, 499);
    assert.equal((await raw('PUT', uri, { headers: { 'Content-Range': 'bytes */*' } })).status, 410);
    assert.equal((await raw('GET', `${server.endpoint}/storage/v1/b/raw/o/session%2Fcancel`)).status, 404);
  });

  it('checks the insert precondition again at finalize: an object that appeared meanwhile fails with 412', async () => {
    const uri = await openSession(server, 'raw', 'session/race', '&ifGenerationMatch=0');
    let res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes 0-${256 * KiB - 1}/*` }, body: chunk(256 * KiB, 1) });
    assert.equal(res.status, 308);
    assert.equal((await mediaPut(server, 'raw', 'session/race', Buffer.from('winner'))).status, 200);
    res = await raw('PUT', uri, { headers: { 'Content-Range': `bytes ${256 * KiB}-${256 * KiB + 1}/${256 * KiB + 2}` }, body: 'xx' });
    assertApiError(res, 412, 'conditionNotMet');
    assertApiError(await raw('PUT', uri, { headers: { 'Content-Range': 'bytes */*' } }), 412, 'conditionNotMet');
    const winner = await raw('GET', `${server.endpoint}/storage/v1/b/raw/o/session%2Frace?alt=media`);
    assert.equal(winner.body.toString(), 'winner');
    // And a session whose precondition already fails is refused when it starts.
    const early = await raw('POST', `${server.endpoint}/upload/storage/v1/b/raw/o?uploadType=resumable&name=session%2Frace&ifGenerationMatch=0`);
    assertApiError(early, 412, 'conditionNotMet');
  });

  it('verifies X-Goog-Hash on the final chunk and hashes in the session metadata', async () => {
    const body = Buffer.from('checksummed');
    let uri = await openSession(server, 'raw', 'session/hash');
    let res = await raw('PUT', uri, {
      headers: { 'Content-Range': `bytes 0-${body.length - 1}/${body.length}`, 'X-Goog-Hash': `crc32c=${crc32cBase64(Buffer.from('other'))}` },
      body,
    });
    assertApiError(res, 400, 'invalid');
    uri = await openSession(server, 'raw', 'session/hash', '', { md5Hash: createHash('md5').update(body).digest('base64') });
    res = await raw('PUT', uri, {
      headers: { 'Content-Range': `bytes 0-${body.length - 1}/${body.length}`, 'X-Goog-Hash': `crc32c=${crc32cBase64(body)}` },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(res.json()['crc32c'], crc32cBase64(body));
  });
});

describe('GCS test server requests the client never sends (raw HTTP)', TEST_TIMEOUT, () => {
  let server: GcsServerHandle;
  const b = (path: string): string => `${server.endpoint}/storage/v1/b/strict${path}`;
  before(async () => {
    server = await startGcsServer({ buckets: ['strict'] });
    for (const name of ['p/1', 'p/2', 'p/3', 'q/1']) assert.equal((await mediaPut(server, 'strict', name, Buffer.from(name))).status, 200);
    assert.equal((await mediaPut(server, 'strict', 'empty', Buffer.alloc(0))).status, 200);
  });
  after(async () => {
    await server.stop();
  });

  it('answers the JSON API error shape for a missing object and bucket', async () => {
    const missing = await raw('GET', b('/o/nothing%2Fhere'));
    assertApiError(missing, 404, 'notFound');
    assert.equal(missing.json().error?.message, 'No such object: strict/nothing/here');
    assertApiError(await raw('GET', `${server.endpoint}/storage/v1/b/nope`), 404, 'notFound');
    assertApiError(await raw('DELETE', b('/o/nothing')), 404, 'notFound');
  });

  it('rejects garbage, tampered and foreign page tokens with 400', async () => {
    assertApiError(await raw('GET', b('/o?pageToken=garbage')), 400, 'invalid');
    const first = await raw('GET', b('/o?prefix=p%2F&maxResults=1'));
    const token = String(first.json()['nextPageToken']);
    assert.ok(token.length > 0);
    const next = await raw('GET', b(`/o?prefix=p%2F&maxResults=1&pageToken=${encodeURIComponent(token)}`));
    assert.equal(next.status, 200);
    assert.deepEqual((next.json()['items'] as { name: string }[]).map((i) => i.name), ['p/2']);
    const tampered = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`;
    assertApiError(await raw('GET', b(`/o?prefix=p%2F&pageToken=${encodeURIComponent(tampered)}`)), 400, 'invalid');
    assertApiError(await raw('GET', b(`/o?prefix=q%2F&pageToken=${encodeURIComponent(token)}`)), 400, 'invalid');
  });

  it('counts prefixes and items together against maxResults and leaves out empty fields', async () => {
    // Objects: empty, p/1, p/2, p/3, q/1. In order the entries are empty, p/, q/.
    const page = await raw('GET', b('/o?delimiter=%2F&maxResults=2'));
    const json = page.json();
    assert.deepEqual((json['items'] as { name: string }[]).map((i) => i.name), ['empty']);
    assert.deepEqual(json['prefixes'], ['p/']);
    assert.equal(typeof json['nextPageToken'], 'string');
    const rest = await raw('GET', b(`/o?delimiter=%2F&maxResults=2&pageToken=${encodeURIComponent(String(json['nextPageToken']))}`));
    assert.deepEqual(rest.json(), { kind: 'storage#objects', prefixes: ['q/'] });
    const none = await raw('GET', b('/o?prefix=zzz'));
    assert.deepEqual(none.json(), { kind: 'storage#objects' });
  });

  it('serves ranges with 206 and Content-Range, and answers 416 for unsatisfiable ones', async () => {
    const url = b('/o/p%2F1?alt=media');
    const part = await raw('GET', url, { headers: { Range: 'bytes=1-2' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), 'bytes 1-2/3');
    assert.equal(part.body.toString(), '/1');
    assert.equal(part.headers.get('x-goog-stored-content-length'), '3');
    assert.match(part.headers.get('x-goog-hash') ?? '', /^crc32c=[A-Za-z0-9+/=]{8},md5=[A-Za-z0-9+/=]{24}$/);
    assert.match(part.headers.get('x-goog-generation') ?? '', /^\d+$/);
    const mediaLink = String((await raw('GET', b('/o/p%2F1'))).json()['mediaLink']);
    assert.ok(mediaLink.startsWith(`${server.endpoint}/download/storage/v1/b/strict/o/p%2F1?`), mediaLink);
    assert.equal((await raw('GET', mediaLink, { headers: { Range: 'bytes=0-0' } })).body.toString(), 'p');
    const tail = await raw('GET', url, { headers: { Range: 'bytes=-10' } });
    assert.equal(tail.status, 206);
    assert.equal(tail.body.toString(), 'p/1');
    const beyond = await raw('GET', url, { headers: { Range: 'bytes=3-' } });
    assertApiError(beyond, 416, 'requestedRangeNotSatisfiable');
    assert.equal(beyond.headers.get('content-range'), 'bytes */3');
    assertApiError(await raw('GET', b('/o/empty?alt=media'), { headers: { Range: 'bytes=0-' } }), 416, 'requestedRangeNotSatisfiable');
    // A syntactically invalid range is ignored (RFC 9110): the whole object.
    const ignored = await raw('GET', url, { headers: { Range: 'bytes=2-1' } });
    assert.equal(ignored.status, 200);
    assert.equal(ignored.body.toString(), 'p/1');
  });

  it('answers 304 and 412 for failed read preconditions', async () => {
    const meta = await raw('GET', b('/o/p%2F1'));
    const generation = String(meta.json()['generation']);
    assert.equal((await raw('GET', b(`/o/p%2F1?ifGenerationNotMatch=${generation}`))).status, 304);
    assert.equal((await raw('GET', b(`/o/p%2F1?alt=media&ifMetagenerationNotMatch=1`))).status, 304);
    assertApiError(await raw('GET', b('/o/p%2F1?ifMetagenerationMatch=2')), 412, 'conditionNotMet');
    assertApiError(await raw('GET', b('/o/p%2F1?ifGenerationMatch=0')), 412, 'conditionNotMet');
    assertApiError(await raw('GET', b('/o/p%2F1?ifGenerationMatch=abc')), 400, 'invalid');
    assert.equal((await raw('GET', b(`/o/p%2F1?ifGenerationMatch=${generation}&fields=name,size`))).json()['name'], 'p/1');
  });

  it('applies fields partial responses', async () => {
    const list = await raw('GET', b('/o?prefix=p%2F&fields=items(name),nextPageToken'));
    assert.deepEqual(list.json(), { items: [{ name: 'p/1' }, { name: 'p/2' }, { name: 'p/3' }] });
    const one = await raw('GET', b('/o/q%2F1?fields=name,size'));
    assert.deepEqual(one.json(), { name: 'q/1', size: '3' });
    assertApiError(await raw('GET', b('/o/q%2F1?fields=name(')), 400, 'invalid');
  });

  it('rejects unknown parameters, unknown paths, wrong verbs and unimplemented methods', async () => {
    assert.equal((await raw('GET', b('/o/p%2F1?prettyPrint=false&userProject=p&quotaUser=q&alt=json&projection=noAcl'))).status, 200);
    assertApiError(await raw('GET', b('/o/p%2F1?ifGenerationMatches=1')), 400, 'invalid');
    assertApiError(await raw('GET', b('/o/p%2F1?projection=everything')), 400, 'invalid');
    assertApiError(await raw('GET', b('/o?prefix=a&prefix=b')), 400, 'invalid');
    assertApiError(await raw('GET', `${server.endpoint}/storage/v2/b/strict`), 404, 'notFound');
    assertApiError(await raw('GET', `${server.endpoint}/nothing`), 404, 'notFound');
    assertApiError(await raw('POST', b('/o/p%2F1')), 405, 'methodNotAllowed');
    assertApiError(await raw('PATCH', b('/o/p%2F1'), { body: '{}' }), 501, 'notImplemented');
    assertApiError(await raw('POST', b('/o/p%2F1/compose'), { body: '{}' }), 501, 'notImplemented');
  });

  it('rejects uploads without uploadType or name, to missing buckets, and with bad metadata', async () => {
    const upload = `${server.endpoint}/upload/storage/v1/b/strict/o`;
    assertApiError(await raw('POST', `${upload}?name=x`, { body: 'x' }), 400, 'invalid');
    assertApiError(await raw('POST', `${upload}?uploadType=media`, { body: 'x' }), 400, 'required');
    assertApiError(await raw('POST', `${upload}?uploadType=sideways&name=x`, { body: 'x' }), 400, 'invalid');
    assertApiError(await mediaPut(server, 'nope', 'x', Buffer.from('x')), 404, 'notFound');
    assertApiError(await raw('POST', `${upload}?uploadType=resumable&name=x`, { headers: { 'Content-Type': 'application/json' }, body: '{"colour":"red"}' }), 400, 'invalid');
    assertApiError(await raw('POST', `${upload}?uploadType=resumable&name=x`, { headers: { 'Content-Type': 'application/json' }, body: '{"name":"y"}' }), 400, 'invalid');
    assertApiError(await raw('POST', `${upload}?uploadType=resumable&name=x`, { body: 'not json' }), 400, 'invalid');
    assertApiError(await mediaPut(server, 'strict', 'x', Buffer.from('x'), '&kmsKeyName=not-a-key'), 400, 'invalid');
    assertApiError(await mediaPut(server, 'strict', '..', Buffer.from('x')), 400, 'invalid');
  });

  it('parses multipart/related uploads and refuses malformed ones', async () => {
    const upload = `${server.endpoint}/upload/storage/v1/b/strict/o?uploadType=multipart`;
    const boundary = 'b0undary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{"name":"mp/obj","metadata":{"a":"1"}}\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Type: image/png\r\n\r\n`),
      Buffer.from([0, 1, 2, 13, 10, 45, 45]),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await raw('POST', upload, { headers: { 'Content-Type': `multipart/related; boundary=${boundary}` }, body });
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.json()['contentType'], 'image/png');
    assert.deepEqual(res.json()['metadata'], { a: '1' });
    const media = await raw('GET', b('/o/mp%2Fobj?alt=media'));
    assert.deepEqual([...media.body], [0, 1, 2, 13, 10, 45, 45]);
    const onePart = Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{"name":"mp/x"}\r\n--${boundary}--`);
    assertApiError(await raw('POST', upload, { headers: { 'Content-Type': `multipart/related; boundary=${boundary}` }, body: onePart }), 400, 'invalid');
    assertApiError(await raw('POST', upload, { headers: { 'Content-Type': 'application/json' }, body: '{}' }), 400, 'invalid');
  });

  it('stops twice without complaint and then refuses connections', async () => {
    const other = await startGcsServer();
    await other.stop();
    await other.stop();
    await assert.rejects(raw('GET', `${other.endpoint}/storage/v1/b/x`));
  });
});

describe('GCS test server authentication', TEST_TIMEOUT, () => {
  const token = randomBytes(16).toString('hex');
  let server: GcsServerHandle;
  let dir: string;
  before(async () => {
    server = await startGcsServer({ buckets: ['auth'], requireBearerToken: token });
    dir = await makeTempDir('cloudbarman-gcs-auth');
  });
  after(async () => {
    await server.stop();
    await removeTempDir(dir);
  });

  it('answers 401 without a token or with a wrong one, and serves the required token', async () => {
    assertApiError(await raw('GET', `${server.endpoint}/storage/v1/b/auth`), 401, 'required');
    assertApiError(await raw('GET', `${server.endpoint}/storage/v1/b/auth`, { headers: { Authorization: 'Bearer wrong' } }), 401, 'authError');
    const ok = await raw('GET', `${server.endpoint}/storage/v1/b/auth`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    await assertCode(client(server).bucket('auth').exists(), 401);
  });

  it('accepts the self-signed JWTs the client makes from a trusted service-account key file', async () => {
    const key = await makeServiceAccountKeyFile(dir, server);
    const storage = client(server, { keyFilename: key.path, useAuthWithCustomEndpoint: true });
    const bucket = storage.bucket('auth');
    assert.deepEqual(await bucket.exists(), [true]);
    await bucket.file('k/multipart').save('via key file', { resumable: false });
    // @google-cloud/storage 8.4 does not authenticate createWriteStream's resumable uploads to a
    // custom endpoint; a session opened by createResumableUpload (authenticated) works, since the
    // session URI is its own credential.
    const [uri] = await bucket.file('k/resumable').createResumableUpload();
    await bucket.file('k/resumable').save('via session', { uri });
    assert.equal((await bucket.file('k/resumable').download())[0].toString(), 'via session');
    const [files] = await bucket.getFiles({ prefix: 'k/' });
    assert.deepEqual(files.map((f) => f.name), ['k/multipart', 'k/resumable']);
  });

  it('refuses JWTs from a key the server does not trust', async () => {
    const stranger = await startGcsServer();
    try {
      const key = await makeServiceAccountKeyFile(dir, stranger);
      const storage = client(server, { keyFilename: key.path, useAuthWithCustomEndpoint: true });
      await assertCode(storage.bucket('auth').exists(), 401);
    } finally {
      await stranger.stop();
    }
  });

  it('issues the required token for a JWT-bearer grant at POST /token, and refuses bad assertions', async () => {
    const key = await makeServiceAccountKeyFile(dir, server);
    const keyFile = JSON.parse(await readFile(key.path, 'utf8')) as { private_key: string; client_email: string; token_uri: string };
    assert.equal(keyFile.token_uri, `${server.endpoint}/token`);
    const now = Math.floor(Date.now() / 1000);
    const assertion = (claims: Record<string, unknown>, signWith = keyFile.private_key): string => {
      const head = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.keyId })).toString('base64url');
      const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
      const signature = createSign('RSA-SHA256').update(`${head}.${body}`).sign(signWith).toString('base64url');
      return `${head}.${body}.${signature}`;
    };
    const claims = {
      iss: keyFile.client_email,
      scope: 'https://www.googleapis.com/auth/devstorage.full_control',
      aud: keyFile.token_uri,
      iat: now,
      exp: now + 3600,
    };
    const grant = (jwt: string): Promise<RawResponse> =>
      raw('POST', keyFile.token_uri, {
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt }).toString(),
      });
    const ok = await grant(assertion(claims));
    assert.equal(ok.status, 200, ok.body.toString());
    assert.deepEqual(ok.json(), { access_token: token, expires_in: 3599, token_type: 'Bearer' });

    const otherKey = await makeServiceAccountKeyFile(dir, { endpoint: server.endpoint, trustServiceAccountKey: () => undefined });
    const otherPrivate = (JSON.parse(await readFile(otherKey.path, 'utf8')) as { private_key: string }).private_key;
    const badSignature = await grant(assertion(claims, otherPrivate));
    assert.equal(badSignature.status, 400);
    assert.equal(badSignature.json()['error'], 'invalid_grant');
    assert.equal((await grant(assertion({ ...claims, exp: now - 10 }))).json()['error'], 'invalid_grant');
    assert.equal((await grant(assertion({ ...claims, aud: 'https://example.com/token' }))).json()['error'], 'invalid_grant');
    assert.equal((await grant(assertion({ ...claims, scope: 'email' }))).json()['error'], 'invalid_scope');
    const wrongGrant = await raw('POST', keyFile.token_uri, {
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=password&username=u',
    });
    assert.equal(wrongGrant.json()['error'], 'unsupported_grant_type');
  });

  it('lets a session URI work without Authorization but still checks a token that is present', async () => {
    const open = await raw('POST', `${server.endpoint}/upload/storage/v1/b/auth/o?uploadType=resumable&name=s`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    const uri = open.headers.get('location');
    assert.ok(uri !== null);
    assertApiError(await raw('PUT', uri, { headers: { Authorization: 'Bearer wrong' }, body: 'x' }), 401, 'authError');
    assert.equal((await raw('PUT', uri, { body: 'x' })).status, 200);
  });
});
