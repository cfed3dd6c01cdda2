// Storage faults, injected by test/servers/fault-proxy.ts between cloudbarman and the store servers.
// Starts: s3rver, azurite and the GCS test server, a fault proxy in front of each, and real
// PostgreSQL 15 clusters (a primary archiving through the proxy, and the restored copy).
//
// - Per provider, through each SDK: every fault kind comes out as a retryable error, one store
//   call is exactly maxAttempts requests on the wire (the SDKs add no retries of their own), and a
//   mix of puts, gets, lists and deletes at 30 % faults ends exactly as it would without faults.
// - PostgreSQL at 10 % faults: archiving through wal-upload, a backup, a PITR restore that replays
//   through wal-restore; the data and every WAL file come back bit-identical.
// - PostgreSQL at 100 % faults: wal-upload, wal-restore, backup and restore each exit 2 with one
//   line naming the store, and nothing is marked DONE or left half-written.
//
// More seeds: CB_FAULT_SEEDS=1,2,3 (each PostgreSQL run adds about a minute). Not CLOUDBARMAN_*:
// PostgreSQL's archive_command inherits the environment, and cloudbarman rejects unknown settings there.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { ObjectStore } from '../../providers/object-store.ts';
import type { StoreOptions } from '../../providers/store-options.ts';
import { isStoreError, listAll } from '../../providers/object-store.ts';
import { withRetries, type RetryPolicy } from '../../providers/retrying-store.ts';
import { createS3Client } from '../../providers/aws/index.ts';
import { S3ObjectStore } from '../../providers/aws/object-store.ts';
import { createObjectStore as createAzureStore } from '../../providers/azure/index.ts';
import { createObjectStore as createGcsStore } from '../../providers/gcp/index.ts';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, pgOsUser, startCluster, switchWal, waitForArchived, type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli, type CliResult } from '../helpers/cli.ts';
import { TEST_BUCKET } from '../helpers/stores.ts';
import { startS3rver, s3rverCredentials, type S3rverHandle } from '../servers/s3rver.ts';
import { startAzurite, type AzuriteHandle } from '../servers/azurite.ts';
import { startGcsServer, type GcsServerHandle } from '../servers/gcs/index.ts';
import { FAULT_KINDS, startFaultProxy, type FaultProxyHandle, type ProxyFlavor } from '../servers/fault-proxy.ts';

const SEEDS = (process.env['CB_FAULT_SEEDS'] ?? '1').split(',').map(Number).filter((n) => Number.isInteger(n));
const MiB = 1024 * 1024;

let s3: S3rverHandle | undefined;
let azurite: AzuriteHandle | undefined;
let gcs: GcsServerHandle | undefined;
const proxies: FaultProxyHandle[] = [];

before(async () => {
  // Started together; each is kept as soon as it is up, so that after() stops it even if another fails.
  await Promise.all([
    startS3rver({ buckets: [TEST_BUCKET] }).then((h) => { s3 = h; }),
    startAzurite({ containers: [TEST_BUCKET] }).then((h) => { azurite = h; }),
    startGcsServer({ buckets: [TEST_BUCKET] }).then((h) => { gcs = h; }),
  ]);
});
after(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all([s3?.stop(), azurite?.stop(), gcs?.stop()]);
});

/** A proxy that the suite stops at the end even when a test fails. */
async function proxy(target: string, options: { seed: number; rate: number; flavor?: ProxyFlavor; kinds?: typeof FAULT_KINDS }): Promise<FaultProxyHandle> {
  const p = await startFaultProxy({ target: new URL(target).origin, stallCapMs: 20_000, ...options });
  proxies.push(p);
  return p;
}

/** One line per fault kind and how often, for failure messages and the test log. */
function faultSummary(p: FaultProxyHandle): string {
  const counts = new Map<string, number>();
  for (const f of p.faults) counts.set(f.kind + (f.afterUpstream ? ' (after the server applied it)' : ''), (counts.get(f.kind) ?? 0) + 1);
  return `${p.faults.length} faults in ${p.requests} requests: ${[...counts].map(([k, n]) => `${k} ×${n}`).join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// Per provider, at the store level

type Provider = 's3' | 'azure' | 'gcs';
const PROVIDERS: readonly Provider[] = ['s3', 'azure', 'gcs'];

/** The store of a provider at an endpoint: through the proxy, or straight to the server to check. */
async function openProviderStore(provider: Provider, endpoint: string, prefix: string): Promise<ObjectStore> {
  const base: StoreOptions = {
    destination: '',
    multipart: { partSizeBytes: provider === 's3' ? 5 * MiB : MiB, concurrency: 2 },
    connectTimeoutMs: 1_000,
    // A stalled answer is given up quickly (the config's floor of 1 s does not apply here).
    requestTimeoutMs: 500,
  };
  switch (provider) {
    case 's3': {
      const options = { ...base, destination: `s3://${TEST_BUCKET}/${prefix}`, endpointUrl: endpoint };
      return new S3ObjectStore({
        client: createS3Client(options, { credentials: s3rverCredentials }),
        bucket: TEST_BUCKET, keyPrefix: `${prefix}/`, partSizeBytes: 5 * MiB, concurrency: 2,
      });
    }
    case 'azure': {
      const server = required(azurite, 'azurite');
      const path = new URL(server.endpoint).pathname;
      return createAzureStore(
        { ...base, destination: `azure://${TEST_BUCKET}/${prefix}`, endpointUrl: `${new URL(endpoint).origin}${path}`, azure: { account: server.account, credential: 'default' } },
        { AZURE_STORAGE_KEY: server.accountKey },
      );
    }
    case 'gcs':
      return createGcsStore({ ...base, destination: `gs://${TEST_BUCKET}/${prefix}`, endpointUrl: endpoint });
  }
}

function serverEndpoint(provider: Provider): string {
  return provider === 's3' ? required(s3, 's3rver').endpoint : provider === 'azure' ? required(azurite, 'azurite').endpoint : required(gcs, 'the GCS server').endpoint;
}

function flavorOf(provider: Provider): ProxyFlavor {
  return provider === 'gcs' ? 'gcs' : provider;
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} did not start`);
  return value;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

for (const provider of PROVIDERS) {
  describe(`${provider}: store calls through the fault proxy`, () => {
    it('every fault kind is a retryable error, and one call is exactly maxAttempts requests', async () => {
      const policy: RetryPolicy = { timeoutMs: 60_000, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 };
      const seen: string[] = [];
      for (const kind of FAULT_KINDS) {
        const p = await proxy(serverEndpoint(provider), { seed: 11, rate: 1, kinds: [kind], flavor: flavorOf(provider) });
        const store = withRetries(await openProviderStore(provider, p.endpoint, `calls-${kind}`), policy);
        // An object that exists: a missing one answers 404, and a 404 whose body breaks off is still
        // (rightly) "not there" on GCS, where an object's metadata comes in a body.
        const direct = await openProviderStore(provider, serverEndpoint(provider), `calls-${kind}`);
        await direct.put('there', Buffer.from('present'));
        await direct.close();
        try {
          for (const [what, call] of [
            ['head', () => store.head('there')],
            ['list', () => store.list('')],
            ['put', () => store.put('k', Buffer.from('payload'))],
          ] as const) {
            const before = p.requests;
            await assert.rejects(call(), (err) => {
              assert.ok(isStoreError(err) && err.retryable, `${kind} on ${what}: ${String(err)}`);
              assert.match(err.message, /gave up after 3 attempts/);
              return true;
            });
            assert.equal(p.requests - before, 3, `${kind} on ${what}: requests on the wire for 3 attempts`);
            seen.push(`${kind}/${what}`);
          }
          // A get whose body breaks off after some bytes resumes from there: it ends with every
          // byte, or with a retryable error, never with fewer bytes.
          try {
            assert.equal((await buffer((await store.get('there')).body)).toString(), 'present', `${kind} on get`);
          } catch (err) {
            assert.ok(isStoreError(err) && err.retryable, `${kind} on get: ${String(err)}`);
          }
          seen.push(`${kind}/get`);
        } finally {
          await store.close();
          await p.stop();
        }
      }
      assert.equal(seen.length, FAULT_KINDS.length * 4);
    });

    for (const seed of SEEDS) {
      it(`seed ${seed}: puts, gets, lists and deletes at 30 % faults end exactly as without faults`, async (t) => {
        const p = await proxy(serverEndpoint(provider), { seed, rate: 0.3, flavor: flavorOf(provider) });
        const prefix = `mix-${seed}`;
        // At 30 %, a create-if-absent attempt that must check its earlier doubtful one makes up to three
        // requests, each of which may meet a fault: more attempts than the CLI's 10 keep this test certain.
        const store = withRetries(await openProviderStore(provider, p.endpoint, prefix), { timeoutMs: 60_000, maxAttempts: 25, baseDelayMs: 20, maxDelayMs: 200 });
        const direct = await openProviderStore(provider, serverEndpoint(provider), prefix);
        try {
          const objects = new Map<string, Buffer>([
            ['small', randomBytes(1_000)],
            ['medium', randomBytes(300_000)],
            // Multipart on S3 (5 MiB parts), staged blocks on Azure, a resumable upload on GCS (1 MiB).
            ['large', randomBytes(6 * MiB + 123)],
          ]);
          let i = 0;
          for (const [key, bytes] of objects) {
            const metadata = { cb_sha256: sha256(bytes) };
            if (i++ % 2 === 0) await store.put(key, bytes, { metadata });
            else await store.put(key, () => Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]), { metadata, contentLength: bytes.length });
          }
          // Create-if-absent: each succeeds once, even when its answer was lost after the server applied it.
          for (let n = 0; n < 10; n++) await store.put(`claims/${n}`, Buffer.from(`claim ${n}`), { ifAbsent: true, metadata: { cb_n: String(n) } });
          if (provider !== 's3') {
            // s3rver ignores If-None-Match (see DESIGN.md), so a real conflict is checked on the other stores.
            await assert.rejects(store.put('claims/0', Buffer.from('another run'), { ifAbsent: true }), (err) => isStoreError(err, 'already-exists'));
          }
          for (const [key, bytes] of objects) {
            const whole = await store.get(key);
            assert.equal(sha256(await buffer(whole.body)), sha256(bytes), `${key} read back`);
            assert.equal(whole.info.metadata?.['cb_sha256'], sha256(bytes));
            const start = Math.floor(bytes.length / 3);
            const ranged = await store.get(key, { range: { start, end: bytes.length - 7 } });
            assert.ok((await buffer(ranged.body)).equals(bytes.subarray(start, bytes.length - 7)), `${key} range`);
          }
          const listed: string[] = [];
          for await (const item of listAll(store, '')) listed.push(item.key);
          assert.deepEqual(listed.sort(), [...Array.from({ length: 10 }, (_, n) => `claims/${n}`), 'large', 'medium', 'small'].sort());
          await store.delete(['medium', 'claims/9', 'never-existed']);
          assert.equal(await store.head('medium'), undefined);

          // Straight to the server: exactly the objects, with exactly the bytes.
          const stored = new Map<string, string>();
          for await (const item of listAll(direct, '')) stored.set(item.key, sha256(await buffer((await direct.get(item.key)).body)));
          assert.deepEqual(Object.fromEntries([...stored].sort()), Object.fromEntries([
            ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => [`claims/${n}`, sha256(Buffer.from(`claim ${n}`))] as const),
            ['large', sha256(objects.get('large') ?? Buffer.alloc(0))],
            ['small', sha256(objects.get('small') ?? Buffer.alloc(0))],
          ].sort()));
          assert.ok(p.faults.length > 0, faultSummary(p));
          t.diagnostic(faultSummary(p));
        } finally {
          await Promise.all([store.close(), direct.close()]);
          await p.stop();
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL 15, the CLI as PostgreSQL and operators run it, s3rver behind the proxy

/** Straight to s3rver, never through the proxy or the code under test. */
function directS3(): S3Client {
  return new S3Client({ endpoint: required(s3, 's3rver').endpoint, forcePathStyle: true, region: 'us-east-1', credentials: s3rverCredentials, maxAttempts: 1 });
}

async function s3Keys(prefix: string): Promise<string[]> {
  const client = directS3();
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key.slice(prefix.length));
      token = page.NextContinuationToken;
    } while (token !== undefined);
    return keys.sort();
  } finally {
    client.destroy();
  }
}

async function s3Text(key: string): Promise<string> {
  const client = directS3();
  try {
    const out = await client.send(new GetObjectCommand({ Bucket: TEST_BUCKET, Key: key }));
    return (await out.Body?.transformToString()) ?? '';
  } finally {
    client.destroy();
  }
}

/** The status of every backup entry under a server's prefix, read straight from s3rver. */
async function entryStatuses(prefix: string): Promise<Array<[string, string]>> {
  const entries = (await s3Keys(`${prefix}/base/`)).filter((k) => k.endsWith('/backup.json'));
  return Promise.all(entries.map(async (k) => [k.split('/')[0] ?? '', (JSON.parse(await s3Text(`${prefix}/base/${k}`)) as { status: string }).status] as [string, string]));
}

function doneOnly(entries: Array<[string, string]>): Array<[string, string]> {
  return entries.filter(([, status]) => status === 'DONE');
}

/** A config file the pg user can read, pointing cloudbarman at a proxy. */
async function writeConfig(dir: string, name: string, server: string, endpoint: string, prefix: string, retryTimeout: string): Promise<string> {
  const file = join(dir, `${name}.conf`);
  await writeFile(file, [
    `[${server}]`,
    'provider = aws',
    `destination = s3://${TEST_BUCKET}/${prefix}`,
    `endpoint_url = ${endpoint}`,
    'compression = zstd',
    // Small parts: more requests, so more of them meet a fault.
    'part_size = 5MiB',
    'upload_concurrency = 2',
    `retry_timeout = ${retryTimeout}`,
    // A stalled response is given up after a second.
    'request_timeout = 1s',
    'connect_timeout = 1s',
    'wal_archive_timeout = 120s',
    '',
  ].join('\n'));
  await chown(file, pgOsUser().uid, pgOsUser().gid);
  return file;
}

/**
 * The clean failure every command must show at 100 % faults: exit 2, and one error line that names
 * the store, followed by its hint. Progress and warning lines may come before it; a stack trace or
 * a secret may not appear at all.
 */
function assertCleanStoreFailure(r: CliResult, what: string): void {
  assert.equal(r.code, 2, `${what}: exit code\n${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  const errors = lines.filter((l) => /^cloudbarman [a-z-]+: error: /.test(l));
  assert.equal(errors.length, 1, `${what}: one error line, got\n${r.stderr}`);
  assert.match(errors[0] ?? '', new RegExp(`s3://${TEST_BUCKET}/`), `${what}: the message names the store`);
  assert.match(lines.at(-1) ?? '', /^\s+hint: /, `${what}: the error ends with its hint\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at |S3RVER/, `${what}: no stack trace, no secret`);
}

const CHECKSUM_SQL = "SELECT count(*)::text AS n, md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)) AS sum FROM t";

for (const seed of SEEDS) {
  describe(`PostgreSQL 15 through the fault proxy, seed ${seed}`, () => {
    const server = 'faults';
    const prefix = `pg-${seed}`;
    const env: Record<string, string> = { AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey };
    let work: string;
    let primary: Cluster | undefined;
    let restored: Cluster | undefined;
    let backupId = '';
    let archivedSegment = '';

    before(async () => {
      await assertReadableByPgUser(CLI_BIN);
      work = await makePgTempDir('cb-faults');
    });
    after(async () => {
      await restored?.destroy();
      await primary?.destroy();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('at 10 % faults: archive, backup, PITR restore and replay succeed, bit-identical', async (t) => {
      const p = await proxy(required(s3, 's3rver').endpoint, { seed, rate: 0.1 });
      env['CLOUDBARMAN_CONFIG'] = await writeConfig(work, 'ten-percent', server, p.endpoint, prefix, '60s');
      primary = await startCluster({
        version: 15, env, fsync: false,
        conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${server} %p'`, archive_timeout: '0' },
      });
      await primary.query("CREATE TABLE t (id int PRIMARY KEY, payload text)");
      await primary.query('INSERT INTO t SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 3) FROM generate_series(1, 120000) g');
      await switchWal(primary);

      const backup = await runCli(['--format', 'json', 'backup', server, '--jobs', '2', '--pgdata', primary.dataDir,
        '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`], { env, timeoutMs: 240_000 });
      assert.equal(backup.code, 0, `backup: ${backup.stderr}\n${faultSummary(p)}\n${(await primary.logText()).split('\n').slice(-30).join('\n')}`);
      backupId = (JSON.parse(backup.stdout) as { id: string }).id;

      // Changes after the backup, over several segments, that recovery must replay.
      for (let round = 0; round < 3; round++) {
        await primary.query(`UPDATE t SET payload = md5(payload) WHERE id % 7 = ${round}`);
        await primary.query(`INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(${200_000 + round * 20_000}, ${200_000 + round * 20_000 + 19_999}) g`);
        await switchWal(primary);
      }
      const expected = (await primary.query<{ n: string; sum: string }>(CHECKSUM_SQL))[0];
      await primary.query("SELECT pg_create_restore_point('faults_target')");
      // After the target: must not be in the restored cluster.
      await primary.query('INSERT INTO t VALUES (-1, \'after the target\')');
      const last = await switchWal(primary);
      await waitForArchived(primary, last, 120_000);

      const archiver = (await primary.query<{ failed_count: string }>('SELECT failed_count::text FROM pg_stat_archiver'))[0];
      assert.equal(archiver?.failed_count, '0', `every wal-upload succeeded\n${faultSummary(p)}\n${await primary.logText()}`);

      // Every segment PostgreSQL marked archived and still has restores byte-identical.
      const statusDir = join(primary.dataDir, 'pg_wal', 'archive_status');
      const done = (await readdir(statusDir)).filter((f) => /^[0-9A-F]{24}\.done$/.test(f)).map((f) => f.slice(0, 24));
      assert.ok(done.length >= 3, `archived segments in pg_wal: ${done.join(', ')}`);
      const scratch = await mkdtemp(join(tmpdir(), 'cb-faults-wal-'));
      try {
        let compared = 0;
        for (const name of done) {
          const original = await readFile(join(primary.dataDir, 'pg_wal', name)).catch(() => undefined);
          if (original === undefined) continue; // recycled since
          const r = await runCli(['wal-restore', server, name, join(scratch, name)], { env });
          assert.equal(r.code, 0, `wal-restore ${name}: ${r.stderr}`);
          assert.ok((await readFile(join(scratch, name))).equals(original), `${name} restored differently`);
          archivedSegment = name;
          compared++;
        }
        assert.ok(compared >= 3, `compared ${compared} segments`);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }

      // Exactly one backup, DONE: no orphan STARTED entry from a retried create.
      assert.deepEqual(await entryStatuses(`${prefix}/${server}`), [[backupId, 'DONE']]);

      const dest = join(work, 'restored');
      const restore = await runCli(['restore', server, backupId, dest, '--target-name', 'faults_target', '--target-action', 'promote', '--jobs', '2'], { env, timeoutMs: 240_000 });
      assert.equal(restore.code, 0, `restore: ${restore.stderr}\n${faultSummary(p)}`);
      // restore_command runs wal-restore through the proxy, with the same config.
      restored = await createCluster({ version: 15, env, fsync: false, dataDir: dest });
      await restored.start({ waitForRecovery: true });
      const got = (await restored.query<{ n: string; sum: string }>(CHECKSUM_SQL))[0];
      assert.deepEqual(got, expected, `restored table vs the primary at the target\n${await restored.logText()}`);
      assert.match(await restored.logText(), /restored log file "[0-9A-F]{24}" from archive/);
      await restored.stop('fast');

      t.diagnostic(faultSummary(p));
      // Faults were really injected. The request count varies a little from run to run (archiving
      // batches by timing), so the bound is loose: about 120 requests at 10 % give 3 or more nearly always.
      const kinds = new Set(p.faults.map((f) => f.kind));
      assert.ok(p.faults.length >= 3 && kinds.size >= 2, `faults were injected: ${faultSummary(p)}`);
      // The proxy stays up (the suite stops it): the primary keeps archiving through it.
    });

    it('at 100 % faults: wal-upload, wal-restore, backup and restore exit 2 cleanly, nothing DONE or half-written', async (t) => {
      const timings: string[] = [];
      /** runCli, noting how long each command took to give up. */
      const timedCli = async (args: string[], opts: { env: Record<string, string>; timeoutMs?: number }): Promise<CliResult> => {
        const started = performance.now();
        try {
          return await runCli(args, opts);
        } finally {
          timings.push(`${args[0] ?? ''} ${((performance.now() - started) / 1000).toFixed(1)} s`);
        }
      };
      assert.ok(primary !== undefined && backupId !== '' && archivedSegment !== '', 'the 10 % test set up the cluster and the archive');
      const cluster = primary;
      const all = await proxy(required(s3, 's3rver').endpoint, { seed, rate: 1 });
      const failEnv = { ...env, CLOUDBARMAN_CONFIG: await writeConfig(work, 'all-faults', server, all.endpoint, prefix, '3s') };
      const freshPrefix = `${prefix}-fresh`;
      const freshEnv = { ...env, CLOUDBARMAN_CONFIG: await writeConfig(work, 'all-faults-fresh', server, all.endpoint, freshPrefix, '3s') };
      const scratch = await mkdtemp(join(tmpdir(), 'cb-faults-100-'));
      try {
        // wal-upload of a segment into an empty archive: nothing may appear there.
        const walCopy = join(scratch, archivedSegment);
        await writeFile(walCopy, randomBytes(16 * MiB));
        const upload = await timedCli(['wal-upload', server, walCopy], { env: freshEnv });
        assertCleanStoreFailure(upload, 'wal-upload');
        assert.deepEqual(await s3Keys(`${freshPrefix}/`), [], 'nothing written to the store');

        // wal-restore of a file that is in the archive, outside recovery: exit 2, no file, no temporary.
        // The backup's small .backup history file when pg_wal still has it: quicker than a segment.
        const history = (await readdir(join(cluster.dataDir, 'pg_wal', 'archive_status'))).find((f) => f.endsWith('.backup.done'))?.slice(0, -'.done'.length) ?? archivedSegment;
        const restoreDir = join(scratch, 'wal-dest');
        await mkdir(restoreDir);
        const walRestore = await timedCli(['wal-restore', server, history, join(restoreDir, history)], { env: failEnv });
        assertCleanStoreFailure(walRestore, 'wal-restore');
        assert.deepEqual(await readdir(restoreDir), [], 'no file and no temporary left');

        const conninfo = `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres`;
        const backup = await timedCli(['backup', server, '--pgdata', cluster.dataDir, '--conninfo', conninfo], { env: failEnv, timeoutMs: 120_000 });
        assertCleanStoreFailure(backup, 'backup');
        // A 500 that came after the server applied the put may have left the STARTED entry (list
        // shows it, retention removes it); nothing but the first backup is DONE.
        assert.deepEqual(doneOnly(await entryStatuses(`${prefix}/${server}`)), [[backupId, 'DONE']], 'nothing new marked DONE');

        // A backup that loses the store once its STARTED entry exists: it must not end DONE.
        all.setRate(0);
        all.switchRateAfter(new RegExp(`^PUT /${TEST_BUCKET}/${freshPrefix}/${server}/base/[0-9TZ-]+/backup\\.json`), 1);
        const midway = await timedCli(['backup', server, '--pgdata', cluster.dataDir, '--conninfo', conninfo], { env: freshEnv, timeoutMs: 120_000 });
        assertCleanStoreFailure(midway, 'backup failing mid-way');
        const entries = await entryStatuses(`${freshPrefix}/${server}`);
        assert.equal(entries.length, 1, 'the STARTED entry is visible, for list and retention');
        assert.notEqual(entries[0]?.[1], 'DONE');
        assert.ok(!(await s3Keys(`${freshPrefix}/${server}/base/`)).some((k) => k.includes('manifest')), 'no manifest: the backup is not complete');

        // restore of the DONE backup, at 100 % from the start and from the first data part on.
        all.setRate(1);
        const dest = join(work, 'restore-all-faults');
        const restore = await timedCli(['restore', server, backupId, dest], { env: failEnv, timeoutMs: 120_000 });
        assertCleanStoreFailure(restore, 'restore');
        assert.equal(await stat(join(dest, 'global', 'pg_control')).catch(() => undefined), undefined, 'no startable data directory');

        all.setRate(0);
        all.switchRateAfter(new RegExp(`^GET /${TEST_BUCKET}/${prefix}/${server}/base/${backupId}/data/`), 1);
        const destMidway = join(work, 'restore-midway');
        const restoreMidway = await timedCli(['restore', server, backupId, destMidway], { env: failEnv, timeoutMs: 120_000 });
        assertCleanStoreFailure(restoreMidway, 'restore failing mid-way');
        assert.equal(await stat(join(destMidway, 'global', 'pg_control')).catch(() => undefined), undefined, 'pg_control withheld');
        assert.ok((await readdir(destMidway)).includes('cloudbarman_restore_incomplete'), 'the marker says the directory is incomplete');

        // The DONE backup is untouched, and still the only one.
        assert.deepEqual(doneOnly(await entryStatuses(`${prefix}/${server}`)), [[backupId, 'DONE']]);
        t.diagnostic(faultSummary(all));
        t.diagnostic(`each command: ${timings.join(', ')} (wal-restore of ${history})`);
      } finally {
        await rm(scratch, { recursive: true, force: true });
        await all.stop();
      }
    });
  });
}
