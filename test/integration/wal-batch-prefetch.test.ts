// Batch archiving and prefetching restore with real PostgreSQL 15 and 18 and s3rver: a sustained
// pgbench run archived through `cloudbarman wal-upload` in small batches loses no segment, and a
// recovery through the prefetching `cloudbarman wal-restore` follows a timeline switch.
// Starts: one s3rver for the file; per version, one primary for pgbench, and one primary plus two
// restored clusters for the timeline switch. pgbench is Debian's PostgreSQL 15 client, which talks to 18 too.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chown, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PG_VERSIONS, assertReadableByPgUser, copyBaseBackup, createCluster, makePgTempDir, pgOsUser, pollUntil, startCluster,
  switchWal, waitForArchived, type Cluster, type PgVersion,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { startS3rver, s3rverCredentials, type S3rverHandle } from '../servers/s3rver.ts';

const BUCKET = 'cloudbarman-it';
const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';
const VERSIONS = PG_VERSIONS.filter((v) => v === 15 || v === 18);

let s3: S3rverHandle | undefined;
let work: string;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-batchit');
  s3 = await startS3rver({ buckets: [BUCKET] });
});
after(async () => {
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A config file as an operator writes it (readable by the pg user), and the environment to use it. */
async function configure(server: string, extra: string): Promise<Record<string, string>> {
  assert.ok(s3, 's3rver did not start');
  const file = join(work, `${server}.conf`);
  await writeFile(file, [
    '[cloudbarman]', 'compression = zstd', 'retry_timeout = 10s', extra, '',
    `[${server}]`, 'provider = aws', `destination = s3://${BUCKET}/${server}`, `endpoint_url = ${s3.endpoint}`, '',
  ].join('\n'));
  await chown(file, pgOsUser().uid, pgOsUser().gid);
  return { CLOUDBARMAN_CONFIG: file, AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey };
}

/** WAL file names under <server>/wals/ in the bucket, listed with the SDK (not through cloudbarman). */
async function archivedNames(server: string): Promise<string[]> {
  assert.ok(s3);
  const { S3Client, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: s3rverCredentials });
  try {
    const names: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${server}/${server}/wals/`, ContinuationToken: token }));
      for (const item of page.Contents ?? []) names.push((item.Key ?? '').split('/').pop()!.replace(/\.(zst|gz)$/, ''));
      token = page.NextContinuationToken;
    } while (token !== undefined);
    return names.sort();
  } finally {
    client.destroy();
  }
}

/** Runs Debian's pgbench against a cluster; resolves with its exit code and output. */
async function pgbench(cluster: Cluster, args: string[], timeoutMs: number): Promise<{ code: number; output: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(PGBENCH, ['-h', cluster.host, '-p', String(cluster.port), '-U', cluster.superuser, ...args, 'postgres'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output = (output + c).slice(-20_000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, output }); });
  });
}

/** Rows of a marks table by tag. */
async function tagged(cluster: Cluster, tag: string): Promise<number> {
  const rows = await cluster.query<{ n: string }>('SELECT count(*) AS n FROM marks WHERE tag = $1', [tag]);
  return Number(rows[0]?.n);
}

/** Fills about `segments` WAL segments with rows tagged `tag`, switching after each. Returns the last switched segment. */
async function fill(cluster: Cluster, tag: string, segments: number): Promise<string> {
  let last = '';
  for (let i = 0; i < segments; i++) {
    await cluster.query(`INSERT INTO marks (tag, payload) SELECT $1, repeat(md5(g::text), 40) FROM generate_series(1, 6000) g`, [tag]);
    last = await switchWal(cluster);
  }
  return last;
}

for (const version of VERSIONS) {
  describe(`PostgreSQL ${version}, s3rver`, () => {
    const clusters: Cluster[] = [];
    after(async () => {
      for (const c of clusters.reverse()) await c.destroy().catch(() => undefined);
    });

    test('a sustained pgbench run archived in batches loses nothing: every segment up to the last switch is stored byte-identical', async () => {
      const server = `batch${version}`;
      const env = await configure(server, 'archive_batch_size = 4\narchive_parallel = 2');
      const primary = await startCluster({
        version, env, fsync: false,
        conf: {
          wal_level: 'replica', archive_mode: 'on', archive_timeout: '0',
          archive_command: `'${CLI_BIN} -v wal-upload ${server} %p'`,
          // Small, so that checkpoints recycle archived segments while the run goes on.
          max_wal_size: "'96MB'", min_wal_size: "'32MB'",
        },
      });
      clusters.push(primary);
      const init = await pgbench(primary, ['-i', '-s', '2', '-q'], 120_000);
      assert.equal(init.code, 0, init.output);
      await primary.query('CREATE TABLE filler (id int, payload text)');

      // pgbench for ~15 s, with a writer beside it that fills and switches segments faster than one
      // archive_command per segment can keep up with: .ready files pile up and batches form.
      const bench = pgbench(primary, ['-n', '-T', '15', '-c', '2', '-j', '2'], 90_000);
      let running = true;
      void bench.finally(() => { running = false; });
      let round = 0;
      while (running) {
        await primary.query(`INSERT INTO filler SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 8000) g`);
        if (++round % 3 === 0) await switchWal(primary);
      }
      const run = await bench;
      assert.equal(run.code, 0, run.output);
      // A final burst of small switched segments, all .ready at once.
      for (let i = 0; i < 8; i++) {
        await primary.query(`INSERT INTO filler VALUES (${-i}, 'burst')`);
        await switchWal(primary);
      }
      await primary.query("INSERT INTO filler VALUES (-100, 'last')");
      const last = await switchWal(primary);
      await waitForArchived(primary, last, 120_000);

      const archiver = (await primary.query<{ archived_count: string; failed_count: string }>('SELECT archived_count, failed_count FROM pg_stat_archiver'))[0];
      const log = await primary.logText();
      assert.equal(archiver?.failed_count, '0', `archive_command failed:\n${log.slice(-4000)}`);

      // Every segment from the first to the last switch is in the store, and nothing more than PostgreSQL archived.
      const stored = await archivedNames(server);
      const lastNo = Number.parseInt(last.slice(8, 16), 16) * 256 + Number.parseInt(last.slice(16, 24), 16);
      const missing: string[] = [];
      for (let n = 1; n <= lastNo; n++) {
        const name = `00000001${Math.floor(n / 256).toString(16).toUpperCase().padStart(8, '0')}${(n % 256).toString(16).toUpperCase().padStart(8, '0')}`;
        if (!stored.includes(name)) missing.push(name);
      }
      assert.deepEqual(missing, [], `segments missing from the store (last ${last})`);
      assert.equal(stored.length, Number(archiver?.archived_count), 'objects in the store vs pg_stat_archiver.archived_count');
      assert.ok(lastNo >= 12, `expected a sustained run to produce many segments, got ${lastNo}`);

      // Batches did form, and PostgreSQL's later calls were answered from their records.
      assert.match(log, /more \.ready WAL files ahead of PostgreSQL/);
      assert.match(log, /was archived ahead by an earlier batch .*spool record confirmed/);
      const spool = join(primary.dataDir, 'pg_wal', 'cloudbarman_spool', server, 'archive');
      const leftover = (await readdir(spool).catch(() => [] as string[])).filter((f) => f.endsWith('.ok'));
      assert.deepEqual(leftover, [], 'no record outlives its segment');

      // Each archived segment restores (checksum-verified); those still in pg_wal restore byte-identical.
      const scratch = await mkdtemp(join(tmpdir(), 'cb-batch-restored-'));
      let compared = 0;
      const queue = [...stored];
      const check = async (): Promise<void> => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          const dest = join(scratch, name);
          const r = await runCli(['wal-restore', server, name, dest], { env });
          assert.equal(r.code, 0, `${name}: ${r.stderr}`);
          const original = await readFile(join(primary.dataDir, 'pg_wal', name)).catch(() => undefined);
          if (original !== undefined) { // else recycled by a checkpoint since
            assert.ok((await readFile(dest)).equals(original), `${name} restored differently`);
            compared++;
          }
          await rm(dest);
        }
      };
      try {
        await Promise.all([check(), check()]);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
      assert.ok(compared >= 1, 'at least one archived segment was still in pg_wal to compare');
    });

    test('a recovery through the prefetching wal-restore follows a timeline switch and cleans its spool up', async () => {
      const server = `tli${version}`;
      const env = await configure(server, 'archive_batch_size = 4\nrestore_prefetch = 6\narchive_parallel = 2');
      const archiveCommand = `'${CLI_BIN} wal-upload ${server} %p'`;
      const primary = await startCluster({ version, env, fsync: false, conf: { wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand } });
      clusters.push(primary);
      await primary.query('CREATE TABLE marks (id serial PRIMARY KEY, tag text, payload text)');
      const base1 = await copyBaseBackup(primary, join(work, `${server}-base1`));
      const base2 = await copyBaseBackup(primary, join(work, `${server}-base2`));

      // Timeline 1: rows tagged tl1 over several segments.
      const last1 = await fill(primary, 'tl1', 4);
      await waitForArchived(primary, last1, 60_000);
      const tl1Rows = await tagged(primary, 'tl1');
      await primary.stop();

      // A restored copy replays to the end of the archive and is promoted: timeline 2, archived too.
      const branch = await createCluster({
        version, env, fsync: false, dataDir: base1.dataDir, signal: 'recovery',
        conf: { restore_command: `'${CLI_BIN} wal-restore ${server} %f %p'`, archive_mode: 'on', archive_command: archiveCommand },
      });
      clusters.push(branch);
      await branch.start({ waitForRecovery: true });
      assert.equal(await tagged(branch, 'tl1'), tl1Rows, `timeline 1 rows on the branch\n${await branch.logText()}`);
      const last2 = await fill(branch, 'tl2', 6);
      assert.equal(last2.slice(0, 8), '00000002', `the branch writes timeline 2, not ${last2}`);
      await waitForArchived(branch, last2, 60_000);
      const tl2Rows = await tagged(branch, 'tl2');
      await branch.stop();
      const stored = await archivedNames(server);
      assert.ok(stored.includes('00000002.history'), `00000002.history archived: ${stored.join(', ')}`);

      // Recovery from the other base backup, through the prefetching wal-restore, to the latest timeline.
      const restored = await createCluster({
        version, env, fsync: false, dataDir: base2.dataDir, signal: 'recovery',
        conf: { restore_command: `'${CLI_BIN} -v wal-restore ${server} %f %p'`, recovery_target_timeline: "'latest'", archive_mode: 'off' },
      });
      clusters.push(restored);
      await restored.start({ waitForRecovery: true });
      const log = await restored.logText();
      assert.equal(await tagged(restored, 'tl1'), tl1Rows, `timeline 1 rows after recovery\n${log.slice(-4000)}`);
      assert.equal(await tagged(restored, 'tl2'), tl2Rows, `timeline 2 rows after recovery\n${log.slice(-4000)}`);
      const tli = (await restored.query<{ timeline_id: number }>('SELECT timeline_id FROM pg_control_checkpoint()'))[0]?.timeline_id;
      assert.equal(tli, 3, 'promoted past timeline 2');

      // Timeline 2's segments came from the prefetch spool: the prefetcher followed the switch.
      const served = [...log.matchAll(/restored ([0-9A-F]{24}) from the prefetch spool/g)].map((m) => m[1] ?? '');
      assert.ok(served.some((name) => name.startsWith('00000002')), `no timeline 2 segment was served from the prefetch spool:\n${log.slice(-6000)}`);
      for (const name of served) assert.ok(stored.includes(name), `${name} was served but is not archived`);

      // Recovery is over: the prefetcher removes its spool and ends.
      const spool = join(restored.dataDir, 'pg_wal', 'cloudbarman_spool', server, 'restore');
      await pollUntil(async () => (existsSync(spool) ? undefined : true), { timeoutMs: 30_000, what: `${spool} to be removed after recovery` });
    });
  });
}
