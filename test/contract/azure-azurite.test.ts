/**
 * The object-store conformance suite against AzureObjectStore on azurite (started as a child
 * process), plus what only Azure has: missing containers, endpoints that do not answer, account
 * keys, SAS tokens and connection strings, block uploads, tiers, tags, encryption scopes and metadata
 * names. Requests are observed through a recording proxy on 127.0.0.1, never through mocks.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import {
  BlobServiceClient,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import type { ContainerClient } from '@azure/storage-blob';
import { createLimitedAgent, createObjectStore } from '../../providers/azure/index.ts';
import { isStoreError, StoreError } from '../../providers/object-store.ts';
import type { ObjectStore, StoreErrorKind } from '../../providers/object-store.ts';
import type { StoreOptions } from '../../providers/store-options.ts';
import { freePort } from '../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { azuriteAccount, azuriteConnectionString, startAzurite } from '../servers/azurite.ts';
import type { AzuriteHandle } from '../servers/azurite.ts';
import { describeObjectStoreContract } from './object-store-contract.ts';

const CONTAINER = 'contract';
const MiB = 1024 * 1024;

/** The environment the stores read: only what a test injects, never the machine's own Azure settings. */
const KEY_ENV: NodeJS.ProcessEnv = { AZURE_STORAGE_KEY: azuriteAccount.key };

/** Store options for a test: 4 MiB blocks, so that the contract's 20 MiB body takes five. */
function options(endpoint: string, destination: string, extra: Partial<StoreOptions> = {}): StoreOptions {
  return {
    destination,
    endpointUrl: endpoint,
    azure: { account: azuriteAccount.name, credential: 'default' },
    multipart: { partSizeBytes: 4 * MiB, concurrency: 4 },
    connectTimeoutMs: 2_000,
    requestTimeoutMs: 30_000,
    ...extra,
  };
}

/** Asserts that a promise rejects with a StoreError of the given kind, and returns that error. */
async function expectStoreError(promise: Promise<unknown>, kind: StoreErrorKind): Promise<StoreError> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    assert.ok(isStoreError(err, kind), `expected StoreError '${kind}', got ${isStoreError(err) ? `'${err.kind}': ${err.message}` : String(err)}`);
    return true;
  });
  assert.ok(caught instanceof StoreError);
  return caught;
}

/** Asserts that no secret shows in an error: its message, its string form or its full inspection (cause included). */
function assertNoSecret(err: unknown, secrets: readonly string[]): void {
  const texts = [err instanceof Error ? err.message : '', String(err), inspect(err, { depth: 8 })];
  for (const secret of secrets) {
    for (const text of texts) assert.ok(!text.includes(secret), `a secret appears in the error: ${text.slice(0, 300)}`);
  }
}

/** A container client straight from the SDK, to look at what the store wrote without the code under test. */
function sdkContainer(endpoint: string, container = CONTAINER): ContainerClient {
  const credential = new StorageSharedKeyCredential(azuriteAccount.name, azuriteAccount.key);
  return new BlobServiceClient(endpoint, credential, { retryOptions: { maxTries: 1 } }).getContainerClient(container);
}

/** A container SAS token for the well-known account with the given permissions (e.g. "racwdl"). */
function containerSas(permissions: string, container = CONTAINER): string {
  const credential = new StorageSharedKeyCredential(azuriteAccount.name, azuriteAccount.key);
  return generateBlobSASQueryParameters(
    { containerName: container, permissions: ContainerSASPermissions.parse(permissions), expiresOn: new Date(Date.now() + 3_600_000) },
    credential,
  ).toString();
}

/** One request as the recording proxy saw it. */
interface Recorded {
  method: string;
  path: string;
  comp: string | null;
  headers: IncomingHttpHeaders;
}

/**
 * An HTTP proxy on 127.0.0.1 in front of azurite that records every request, the most Put Block
 * requests it saw in flight at once, and the client connections open right now.
 */
class RecordingProxy {
  readonly requests: Recorded[] = [];
  maxBlocksInFlight = 0;
  #blocksInFlight = 0;
  readonly #sockets = new Set<Socket>();
  readonly #server: Server;
  readonly #upstreamPort: number;
  #port = 0;

  private constructor(upstreamPort: number) {
    this.#upstreamPort = upstreamPort;
    this.#server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://proxy');
      const comp = url.searchParams.get('comp');
      this.requests.push({ method: req.method ?? '', path: url.pathname, comp, headers: req.headers });
      const isBlock = req.method === 'PUT' && comp === 'block';
      if (isBlock) this.maxBlocksInFlight = Math.max(this.maxBlocksInFlight, ++this.#blocksInFlight);
      let counted = isBlock;
      const settle = (): void => {
        if (counted) this.#blocksInFlight -= 1;
        counted = false;
      };
      const upstream = httpRequest(
        { host: '127.0.0.1', port: this.#upstreamPort, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          answer.once('end', settle);
        },
      );
      upstream.once('error', () => {
        settle();
        res.destroy();
      });
      // A client that gives up (or whose body failed) takes the upstream request down with it.
      req.once('close', () => {
        if (!req.complete) {
          settle();
          upstream.destroy();
        }
      });
      req.pipe(upstream);
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  /** Starts a proxy to azurite's port. */
  static async start(azuriteEndpoint: string): Promise<RecordingProxy> {
    const proxy = new RecordingProxy(Number(new URL(azuriteEndpoint).port));
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    const address = proxy.#server.address();
    assert.ok(address !== null && typeof address === 'object');
    proxy.#port = address.port;
    return proxy;
  }

  /** The endpoint to give a store: the proxy's port, azurite's account path. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}/${azuriteAccount.name}`;
  }

  /** Client connections open right now. */
  get openConnections(): number {
    return this.#sockets.size;
  }

  /** Forgets what was recorded so far. */
  reset(): void {
    this.requests.length = 0;
    this.maxBlocksInFlight = 0;
  }

  /** Resolves once every client connection has closed, or fails after timeoutMs. */
  async connectionsClosed(timeoutMs: number): Promise<void> {
    const pending = [...this.#sockets].map((s) => new Promise((resolve) => s.once('close', resolve)));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.#sockets.size} client connections still open after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([Promise.all(pending), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** A TCP server on 127.0.0.1; `onSocket` decides what each connection does. Stopping destroys every connection. */
async function startTcpServer(onSocket: (socket: Socket) => void): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    port: address.port,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describeObjectStoreContract('azure on azurite', async () => {
  const server = await startAzurite({ containers: [CONTAINER] });
  const store = await createObjectStore(options(server.endpoint, `azure://${CONTAINER}/some/prefix`), KEY_ENV);
  return {
    store,
    async cleanup() {
      await store.close();
      await server.stop();
    },
  };
});

describe('Azure provider specifics (azurite)', () => {
  let server: AzuriteHandle | undefined;
  const endpoint = (): string => {
    assert.ok(server, 'azurite did not start');
    return server.endpoint;
  };
  const stores: ObjectStore[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const open = async (destination: string, extra: Partial<StoreOptions> = {}, env: NodeJS.ProcessEnv = KEY_ENV, at = endpoint()): Promise<ObjectStore> => {
    const store = await createObjectStore(options(at, destination, extra), env);
    stores.push(store);
    return store;
  };
  const proxy = async (): Promise<RecordingProxy> => {
    const p = await RecordingProxy.start(endpoint());
    cleanups.push(() => p.stop());
    return p;
  };

  before(async () => {
    server = await startAzurite({ containers: [CONTAINER, 'other'] });
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    for (const cleanup of cleanups) await cleanup();
    await server?.stop();
  });

  it('a missing container is container-not-found, also on head', async () => {
    const store = await open('azure://no-such-container/prefix');
    await expectStoreError(store.checkAccess(), 'container-not-found');
    await expectStoreError(store.get('some/key'), 'container-not-found');
    await expectStoreError(store.head('some/key'), 'container-not-found');
    await expectStoreError(store.list('some/'), 'container-not-found');
    await expectStoreError(store.put('some/key', Buffer.from('x')), 'container-not-found');
    await expectStoreError(store.delete(['some/key']), 'container-not-found');
  });

  it('a closed port is unreachable at once', { timeout: 15_000 }, async () => {
    // freePort released the port; nothing listens there, so the connection is refused.
    const store = await open(`azure://${CONTAINER}`, {}, KEY_ENV, `http://127.0.0.1:${await freePort()}/${azuriteAccount.name}`);
    await expectStoreError(store.checkAccess(), 'unreachable');
    await expectStoreError(store.get('any/key'), 'unreachable');
    await expectStoreError(store.put('any/key', Buffer.from('x')), 'unreachable');
  });

  it('an endpoint that accepts connections but never answers is unreachable after the idle limit', { timeout: 15_000 }, async () => {
    const silent = await startTcpServer(() => undefined);
    cleanups.push(() => silent.stop());
    const store = await open(`azure://${CONTAINER}`, { requestTimeoutMs: 300 }, KEY_ENV, `http://127.0.0.1:${silent.port}/${azuriteAccount.name}`);
    // Without the socket's idle limit these would wait for the test's own timeout.
    const err = await expectStoreError(store.checkAccess(), 'unreachable');
    assert.match(err.message, /ETIMEDOUT/);
    await expectStoreError(store.head('k'), 'unreachable');
  });

  it('a connection that does not complete fails at the connect limit', { timeout: 15_000 }, async () => {
    // A lookup that never answers keeps the socket connecting forever, with no packet leaving the machine.
    const agent = createLimitedAgent('http:', { connectTimeoutMs: 200, idleTimeoutMs: 60_000 });
    try {
      const failure = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
        const req = httpRequest({ host: 'never-resolves.invalid', port: 80, agent, lookup: () => undefined }, () => reject(new Error('answered')));
        req.once('error', resolve);
        req.end();
      });
      assert.equal(failure.code, 'ETIMEDOUT');
      assert.match(failure.message, /no connection within 200 ms/);
    } finally {
      agent.destroy();
    }
  });

  it('a wrong account key is access-denied, and the key never shows', async () => {
    const wrongKey = randomBytes(64).toString('base64');
    const store = await open(`azure://${CONTAINER}`, {}, { AZURE_STORAGE_KEY: wrongKey });
    for (const err of [
      await expectStoreError(store.checkAccess(), 'access-denied'),
      await expectStoreError(store.put('k', Buffer.from('x')), 'access-denied'),
      await expectStoreError(store.head('k'), 'access-denied'),
    ]) {
      assertNoSecret(err, [wrongKey, azuriteAccount.key]);
    }
  });

  it('a SAS token authenticates, its permissions hold, and it never shows', async () => {
    const full = containerSas('racwdl');
    const store = await open(`azure://${CONTAINER}/sas`, {}, { AZURE_STORAGE_SAS_TOKEN: `?${full}` });
    await store.checkAccess();
    await store.put('obj', Buffer.from('via sas'), { metadata: { via: 'sas' } });
    assert.equal((await buffer((await store.get('obj')).body)).toString(), 'via sas');
    assert.deepEqual((await store.list('')).items.map((i) => i.key), ['obj']);
    await store.delete(['obj']);
    assert.equal(await store.head('obj'), undefined);

    const readOnly = containerSas('rl');
    const reader = await open(`azure://${CONTAINER}/sas`, {}, { AZURE_STORAGE_SAS_TOKEN: readOnly });
    const signature = new URLSearchParams(readOnly).get('sig') ?? '';
    assert.ok(signature.length > 0);
    const denied = await expectStoreError(reader.put('obj', Buffer.from('x')), 'access-denied');
    assertNoSecret(denied, [signature, encodeURIComponent(signature), readOnly]);
    // A SAS for another container does not open this one.
    const elsewhere = await open(`azure://${CONTAINER}/sas`, {}, { AZURE_STORAGE_SAS_TOKEN: containerSas('racwdl', 'other') });
    assertNoSecret(await expectStoreError(elsewhere.checkAccess(), 'access-denied'), [containerSas('racwdl', 'other')]);
  });

  it('a connection string authenticates and names the account and endpoint', async () => {
    const connectionString = azuriteConnectionString(endpoint());
    // No endpoint and no account in the options: both come from the connection string.
    const store = await createObjectStore(
      { ...options(endpoint(), `azure://${CONTAINER}/cs`), endpointUrl: undefined, azure: { credential: 'default' } },
      { AZURE_STORAGE_CONNECTION_STRING: connectionString },
    );
    stores.push(store);
    await store.checkAccess();
    await store.put('obj', Buffer.from('via connection string'));
    assert.equal((await store.head('obj'))?.size, 21);
  });

  it('the connection string comes first, then the account key, then the SAS token', async () => {
    const connectionString = azuriteConnectionString(endpoint());
    const wrongKey = randomBytes(64).toString('base64');
    // A wrong key beside a good connection string is ignored: the connection string wins.
    const viaConnectionString = await open(`azure://${CONTAINER}/order`, {}, { AZURE_STORAGE_CONNECTION_STRING: connectionString, AZURE_STORAGE_KEY: wrongKey });
    await viaConnectionString.checkAccess();
    // A good key beside a read-only SAS: the key wins, so a write succeeds.
    const viaKey = await open(`azure://${CONTAINER}/order`, {}, { AZURE_STORAGE_KEY: azuriteAccount.key, AZURE_STORAGE_SAS_TOKEN: containerSas('rl') });
    await viaKey.put('written-with-key', Buffer.from('x'));
    // A wrong key beside a full SAS: the key still wins, and is refused.
    const wrongKeyFirst = await open(`azure://${CONTAINER}/order`, {}, { AZURE_STORAGE_KEY: wrongKey, AZURE_STORAGE_SAS_TOKEN: containerSas('racwdl') });
    await expectStoreError(wrongKeyFirst.checkAccess(), 'access-denied');
  });

  it('an Entra ID credential is asked for a token before any request (azure-cli, with a fake az that is not logged in)', { timeout: 30_000 }, async (t) => {
    const dir = await makeTempDir('cloudbarman-fake-az');
    const savedPath = process.env['PATH'];
    t.after(async () => {
      process.env['PATH'] = savedPath;
      await removeTempDir(dir);
    });
    const az = join(dir, 'az');
    await writeFile(az, "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n");
    await chmod(az, 0o755);
    // AzureCliCredential runs `az` from PATH; this one answers like a machine where nobody logged in.
    process.env['PATH'] = `${dir}:${savedPath ?? ''}`;
    // Nothing listens on the port: reaching it first would be 'unreachable', not 'access-denied'.
    const store = await open(`azure://${CONTAINER}`, { azure: { account: azuriteAccount.name, credential: 'azure-cli' } }, {}, `https://127.0.0.1:${await freePort()}/${azuriteAccount.name}`);
    const err = await expectStoreError(store.checkAccess(), 'access-denied');
    assert.match(err.message, /CredentialUnavailableError/);
  });

  it('metadata names the contract allows but Azure does not are stored reversibly', async () => {
    const store = await open(`azure://${CONTAINER}/meta`);
    const metadata = { '1st': 'digit first', _under: 'underscore first', '__': 'only underscores', plain_name: 'as is', '9': 'one digit' };
    await store.put('obj', Buffer.from('x'), { metadata });
    await store.put('streamed', () => Readable.from([Buffer.from('y')]), { metadata });
    for (const key of ['obj', 'streamed']) {
      assert.deepEqual((await store.head(key))?.metadata, metadata, key);
      const { info, body } = await store.get(key);
      body.destroy();
      assert.deepEqual(info.metadata, metadata, key);
    }
    // What Azure holds: names that are C# identifiers, one "_" in front of any that does not start with a letter.
    const stored = (await sdkContainer(endpoint()).getBlobClient('meta/obj').getProperties()).metadata;
    assert.deepEqual(stored, { _1st: 'digit first', __under: 'underscore first', ___: 'only underscores', plain_name: 'as is', _9: 'one digit' });
  });

  it('access tier, blob index tags and metadata reach the blob, for a single put and a block upload', async () => {
    const tags = { team: 'dba', retention: '7d' };
    const store = await open(`azure://${CONTAINER}/tiered`, { azure: { account: azuriteAccount.name, credential: 'default', accessTier: 'Cool' }, tags });
    await store.put('small', Buffer.from('small body'), { metadata: { checksum: 'sha256:01' } });
    const large = randomBytes(9 * MiB);
    await store.put('large', () => Readable.from([large]), { metadata: { checksum: 'sha256:02' } });
    const container = sdkContainer(endpoint());
    for (const [name, checksum] of [['small', 'sha256:01'], ['large', 'sha256:02']] as const) {
      const blob = container.getBlobClient(`tiered/${name}`);
      const properties = await blob.getProperties();
      assert.equal(properties.accessTier, 'Cool', name);
      assert.equal(properties.blobType, 'BlockBlob', name);
      assert.deepEqual(properties.metadata, { checksum }, name);
      assert.deepEqual((await blob.getTags()).tags, tags, name);
    }
    assert.deepEqual(await buffer((await store.get('large')).body), large);
  });

  it('the encryption scope goes on Put Blob, Put Block and Put Block List', async () => {
    // Azurite accepts x-ms-encryption-scope but does not model scopes (getProperties reports none),
    // so the proxy checks what real Azure would receive.
    const recorder = await proxy();
    const store = await open(`azure://${CONTAINER}/scoped`, { azure: { account: azuriteAccount.name, credential: 'default', encryptionScope: 'cb-scope' } }, KEY_ENV, recorder.endpoint);
    await store.put('small', Buffer.from('x'));
    await store.put('large', () => Readable.from([randomBytes(5 * MiB)]));
    const writes = recorder.requests.filter((r) => r.method === 'PUT');
    assert.deepEqual(writes.map((r) => r.comp ?? 'blob').sort(), ['blob', 'block', 'block', 'blocklist']);
    for (const write of writes) assert.equal(write.headers['x-ms-encryption-scope'], 'cb-scope', write.comp ?? 'blob');
  });

  it('ifAbsent sends If-None-Match: * on Put Blob and Put Block List only', async () => {
    const recorder = await proxy();
    const store = await open(`azure://${CONTAINER}/if-none-match`, {}, KEY_ENV, recorder.endpoint);
    await store.put('bytes', Buffer.from('x'), { ifAbsent: true });
    await store.put('stream', () => Readable.from([Buffer.from('y')]), { ifAbsent: true, contentLength: 1 });
    await store.put('blocks', () => Readable.from([randomBytes(9 * MiB)]), { ifAbsent: true });
    await store.put('plain', Buffer.from('z'));
    const writes = recorder.requests.filter((r) => r.method === 'PUT').map((r) => [r.path.split('/').pop(), r.comp ?? 'blob', r.headers['if-none-match']]);
    assert.deepEqual(writes, [
      ['bytes', 'blob', '*'],
      ['stream', 'blob', '*'],
      ['blocks', 'block', undefined],
      ['blocks', 'block', undefined],
      ['blocks', 'block', undefined],
      ['blocks', 'blocklist', '*'],
      ['plain', 'blob', undefined],
    ]);
  });

  it('a body of known length up to the block size is one Put Blob; larger bodies are blocks, at most `concurrency` in flight', async () => {
    const recorder = await proxy();
    const store = await open(`azure://${CONTAINER}/blocks`, { multipart: { partSizeBytes: 1 * MiB, concurrency: 2 } }, KEY_ENV, recorder.endpoint);
    const body = randomBytes(1 * MiB);
    await store.put('exact', () => Readable.from([body]), { contentLength: body.length });
    await store.put('short-unknown-length', () => Readable.from([body.subarray(0, 1000)]));
    await store.put('bytes-exact', body);
    const puts = (name: string): string[] => recorder.requests.filter((r) => r.method === 'PUT' && r.path.endsWith(`/${name}`)).map((r) => r.comp ?? 'blob');
    assert.deepEqual(puts('exact'), ['blob']);
    assert.deepEqual(puts('short-unknown-length'), ['blob']);
    assert.deepEqual(puts('bytes-exact'), ['blob']);

    recorder.reset();
    const large = randomBytes(7 * MiB + 5);
    await store.put('streamed', () => Readable.from([large.subarray(0, 3 * MiB), large.subarray(3 * MiB)]));
    await store.put('bytes', large);
    assert.deepEqual(puts('streamed'), [...Array<string>(8).fill('block'), 'blocklist']);
    assert.deepEqual(puts('bytes'), [...Array<string>(8).fill('block'), 'blocklist']);
    assert.ok(recorder.maxBlocksInFlight <= 2, `${recorder.maxBlocksInFlight} blocks were in flight at once`);
    for (const name of ['streamed', 'bytes']) assert.deepEqual(await buffer((await store.get(name)).body), large, name);
  });

  it('a block upload whose body fails commits nothing', async () => {
    const recorder = await proxy();
    const store = await open(`azure://${CONTAINER}/failed-blocks`, { multipart: { partSizeBytes: 1 * MiB, concurrency: 2 } }, KEY_ENV, recorder.endpoint);
    const broken = new Error('disk went away');
    const body = (): Readable =>
      Readable.from(
        (async function* () {
          for (let i = 0; i < 5; i++) yield randomBytes(MiB);
          throw broken;
        })(),
      );
    // The caller's own error comes back as is, not as a store error.
    await assert.rejects(store.put('obj', body), (err: unknown) => err === broken);
    assert.ok(recorder.requests.some((r) => r.comp === 'block'), 'blocks were staged before the failure');
    assert.ok(!recorder.requests.some((r) => r.comp === 'blocklist'), 'no block list was committed');
    assert.equal(await store.head('obj'), undefined);
  });

  it('a connection reset in the middle of a download body is a transient StoreError', { timeout: 15_000 }, async () => {
    const store = await open(`azure://${CONTAINER}/reset`);
    await store.put('obj', randomBytes(2 * MiB));
    const azuritePort = Number(new URL(endpoint()).port);
    // Forwards to azurite, then resets the client connection once 256 KiB of the answer went through.
    let connections = 0;
    const cutter = await startTcpServer((client) => {
      connections += 1;
      const upstream = connect({ host: '127.0.0.1', port: azuritePort });
      upstream.on('error', () => client.destroy());
      let sent = 0;
      client.pipe(upstream);
      upstream.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        if (sent > 256 * 1024) {
          upstream.destroy();
          client.resetAndDestroy();
        } else {
          client.write(chunk);
        }
      });
    });
    cleanups.push(() => cutter.stop());
    const reader = await open(`azure://${CONTAINER}/reset`, {}, KEY_ENV, `http://127.0.0.1:${cutter.port}/${azuriteAccount.name}`);
    const { info, body } = await reader.get('obj');
    assert.equal(info.size, 2 * MiB);
    const err = await expectStoreError(buffer(body), 'transient');
    assert.ok(err.retryable);
    // One connection: nothing re-requested the rest behind the caller's back; retries belong to the decorator.
    assert.equal(connections, 1);
  });

  it('close releases every socket', { timeout: 15_000 }, async () => {
    const recorder = await proxy();
    const store = await createObjectStore(options(recorder.endpoint, `azure://${CONTAINER}/close`), KEY_ENV);
    await Promise.all(Array.from({ length: 4 }, (_, i) => store.put(`k${i}`, Buffer.from('x'))));
    assert.ok(recorder.openConnections > 0, 'keep-alive connections are pooled while the store is open');
    await store.close();
    await recorder.connectionsClosed(5_000);
  });

  it('a range starting at the end of the blob reads nothing', async () => {
    const store = await open(`azure://${CONTAINER}/ranges`);
    await store.put('obj', Buffer.from('0123456789'));
    const { info, body } = await store.get('obj', { range: { start: 10 } });
    assert.equal((await buffer(body)).length, 0);
    assert.equal(info.size, 10);
    const empty = await store.get('obj', { range: { start: 4, end: 4 } });
    assert.equal((await buffer(empty.body)).length, 0);
    await expectStoreError(store.get('obj', { range: { start: 5, end: 4 } }), 'invalid');
    await expectStoreError(store.get('missing', { range: { start: 0, end: 0 } }), 'not-found');
  });

  it('keys live under the destination prefix and the url names it', async () => {
    const nested = await open(`azure://${CONTAINER}/outer/inner/`);
    const outer = await open(`azure://${CONTAINER}/outer`);
    assert.equal(nested.url, `azure://${CONTAINER}/outer/inner`);
    await nested.put('k', Buffer.from('x'));
    assert.deepEqual((await outer.list('inner/')).items.map((i) => i.key), ['inner/k']);
    assert.deepEqual((await nested.list('')).items.map((i) => i.key), ['k']);
    const names: string[] = [];
    for await (const blob of sdkContainer(endpoint()).listBlobsFlat({ prefix: 'outer/' })) names.push(blob.name);
    assert.deepEqual(names, ['outer/inner/k']);
  });

  it('a declared contentLength that does not match the stream is rejected and stores nothing', async () => {
    const store = await open(`azure://${CONTAINER}/lengths`);
    await expectStoreError(store.put('short', () => Readable.from([Buffer.from('abc')]), { contentLength: 10 }), 'invalid');
    await expectStoreError(store.put('long', () => Readable.from([Buffer.from('abcdef')]), { contentLength: 2 }), 'invalid');
    // Above the block size the body is staged in blocks, which must see the same check.
    await expectStoreError(store.put('short-blocks', () => Readable.from([Buffer.alloc(1 * MiB)]), { contentLength: 8 * MiB }), 'invalid');
    await expectStoreError(store.put('long-blocks', () => Readable.from([Buffer.alloc(12 * MiB)]), { contentLength: 8 * MiB }), 'invalid');
    for (const key of ['short', 'long', 'short-blocks', 'long-blocks']) assert.equal(await store.head(key), undefined, key);
  });

  it('destinations that are not azure://container[/prefix] are invalid', async () => {
    for (const destination of ['s3://bucket/x', 'azure://', 'azure:///prefix', 'container/prefix', 'azure://Upper/x', 'azure://a/x', 'azure://two--hyphens', 'azure://c1/a/../b']) {
      await expectStoreError(createObjectStore(options(endpoint(), destination), KEY_ENV), 'invalid');
    }
  });

  it('no account and no connection string is invalid, with a hint naming the option and the variable', async () => {
    const err = await expectStoreError(
      createObjectStore({ ...options(endpoint(), `azure://${CONTAINER}`), azure: { credential: 'default' } }, { AZURE_STORAGE_KEY: azuriteAccount.key }),
      'invalid',
    );
    assert.match(err.message, /azure_storage_account/);
    assert.match(err.message, /AZURE_STORAGE_ACCOUNT/);
    assertNoSecret(err, [azuriteAccount.key]);
  });
});
