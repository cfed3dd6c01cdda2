// Retention end to end on real PostgreSQL 15 with a local store: three backups with marked rows
// between them, REDUNDANCY 2 applied by `cloudbarman delete --retention`, then every backup that
// remains is restored to every mark in its promised range (from its end to the last archived WAL),
// and a keep annotation holds an obsolete backup back. Starts: one cluster, a restored cluster per target.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chown, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser, startCluster, switchWal, waitForArchived,
  type Cluster,
} from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';

const VERSION = 15;
const SERVER = 'ret15';

interface Mark { id: number; time: string }
interface Entry { id: string; status: string; begin_wal: string; keep: string | null }

let work: string;
before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-retention');
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Every WAL segment name in the store, from the directory itself (not through cloudbarman). */
async function storedSegments(storeDir: string): Promise<string[]> {
  const names: string[] = [];
  const root = join(storeDir, SERVER, 'wals');
  for (const bucket of await readdir(root, { withFileTypes: true })) {
    if (!bucket.isDirectory()) continue;
    for (const f of await readdir(join(root, bucket.name))) {
      const m = /^([0-9A-F]{24})(\.zst)?$/.exec(f);
      if (m?.[1] !== undefined) names.push(m[1]);
    }
  }
  return names.sort();
}

describe(`retention on PostgreSQL ${VERSION}`, () => {
  let primary: Cluster | undefined;
  const restored: Cluster[] = [];
  after(async () => {
    for (const r of restored) await r.destroy();
    await primary?.destroy();
  });

  test('REDUNDANCY 2 deletes the oldest backup and its WAL; what remains restores to every mark after it', async () => {
    const storeDir = await mkdirForPgUser(join(work, 'store'));
    const config = join(work, 'cloudbarman.conf');
    await writeFile(config, `[${SERVER}]\ndestination = ${pathToFileURL(storeDir).href}\ncompression = zstd\nretry_timeout = 5s\n` +
      `wal_archive_timeout = 60s\nretention_policy = REDUNDANCY 2\nminimum_redundancy = 1\n`);
    await chown(config, pgOsUser().uid, pgOsUser().gid);
    const env = { CLOUDBARMAN_CONFIG: config };
    primary = await startCluster({
      version: VERSION, env, fsync: false,
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${SERVER} %p'` },
    });
    const p = primary;
    await p.query('CREATE TABLE marks (id int PRIMARY KEY, at timestamptz)');
    const conninfo = `host=127.0.0.1 port=${p.port} user=postgres dbname=postgres`;
    const backup = async (): Promise<string> => {
      const r = await runCli(['--format', 'json', 'backup', SERVER, '--pgdata', p.dataDir, '--conninfo', conninfo], { env, timeoutMs: 180_000 });
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { id: string }).id;
    };
    const mark = async (id: number): Promise<Mark> => {
      await p.query('INSERT INTO marks VALUES ($1, now())', [id]);
      const row = (await p.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t"))[0];
      // Spread the marks over several segments, so that retention has WAL to delete.
      await p.query("SELECT pg_switch_wal()");
      return { id, time: row?.t ?? '' };
    };

    const b1 = await backup();
    const m1 = await mark(1);
    const b2 = await backup();
    const m2 = await mark(2);
    const b3 = await backup();
    const m3 = await mark(3);
    await p.query('INSERT INTO marks VALUES (4, now())');
    await waitForArchived(p, await switchWal(p), 60_000);

    const listed = async (): Promise<Entry[]> => {
      const r = await runCli(['--format', 'json', 'list', SERVER], { env });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Entry[];
    };
    const before = await listed();
    assert.deepEqual(before.map((e) => [e.id, e.status]), [[b1, 'DONE'], [b2, 'DONE'], [b3, 'DONE']]);
    const b2Begin = before[1]?.begin_wal ?? '';
    const segmentsBefore = await storedSegments(storeDir);
    assert.ok(segmentsBefore.some((s) => s < b2Begin), 'WAL older than the second backup was archived');

    // A dry run plans and prints, and deletes nothing.
    const dry = await runCli(['--format', 'json', 'delete', SERVER, '--retention', '--dry-run'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const plan = (JSON.parse(dry.stdout) as { plan: { backups: Array<{ id: string; verdict: string; reason: string }> } }).plan;
    assert.deepEqual(plan.backups.map((b) => [b.id, b.verdict]), [[b1, 'obsolete'], [b2, 'keep'], [b3, 'keep']]);
    assert.deepEqual(await storedSegments(storeDir), segmentsBefore);
    const text = await runCli(['delete', SERVER, '--retention', '--dry-run'], { env });
    assert.match(text.stdout, new RegExp(`${b1}\\s+DONE\\s+obsolete\\s+\\S`));

    // A keep annotation holds the obsolete backup, and its WAL, back.
    assert.equal((await runCli(['keep', SERVER, b1, '--target', 'full'], { env })).code, 0);
    assert.equal((await runCli(['keep', SERVER, b1, '--status'], { env })).stdout.trim(), 'full');
    const kept = await runCli(['--format', 'json', 'delete', SERVER, '--retention'], { env });
    assert.equal(kept.code, 0, kept.stderr);
    assert.deepEqual((JSON.parse(kept.stdout) as { deleted_backups: string[] }).deleted_backups, []);
    const b1Begin = before[0]?.begin_wal ?? '';
    assert.deepEqual(await storedSegments(storeDir), segmentsBefore.filter((s) => s >= b1Begin), 'a full keep keeps all WAL from the kept backup on, and only that');
    const refused = await runCli(['delete', SERVER, b1], { env });
    assert.equal(refused.code, 3, 'deleting a kept backup is refused');
    assert.match(refused.stderr, /is kept \(full\).*--release/s);
    assert.equal((await runCli(['keep', SERVER, b1, '--release'], { env })).code, 0);

    // Applied for real: the oldest backup and the WAL before the second backup go.
    const applied = await runCli(['--format', 'json', 'delete', SERVER, '--retention'], { env });
    assert.equal(applied.code, 0, applied.stderr);
    const outcome = JSON.parse(applied.stdout) as { deleted_backups: string[]; deleted_wal: number };
    assert.deepEqual(outcome.deleted_backups, [b1]);
    assert.ok(outcome.deleted_wal > 0);
    assert.deepEqual((await listed()).map((e) => e.id), [b2, b3]);
    const segmentsAfter = await storedSegments(storeDir);
    assert.deepEqual(segmentsAfter, segmentsBefore.filter((s) => s >= b2Begin), 'exactly the WAL before the oldest remaining backup was deleted');

    // Re-running finds nothing more to do.
    const again = await runCli(['--format', 'json', 'delete', SERVER, '--retention'], { env });
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout) as { deleted_backups: string[]; deleted_wal: number };
    assert.deepEqual([second.deleted_backups, second.deleted_wal], [[], 0]);

    // Each remaining backup restores to each mark after its end, and to the end of the WAL.
    const targets: Array<{ backup: string; time?: string; expected: number[] }> = [
      { backup: b2, time: m2.time, expected: [1, 2] },
      { backup: b2, time: m3.time, expected: [1, 2, 3] },
      { backup: b2, expected: [1, 2, 3, 4] },
      { backup: b3, time: m3.time, expected: [1, 2, 3] },
    ];
    assert.ok(m1.time < m2.time);
    for (const [i, t] of targets.entries()) {
      const dest = join(work, `restore-${i}`);
      const args = ['restore', SERVER, t.backup, dest, ...(t.time === undefined ? [] : ['--target-time', t.time, '--target-action', 'promote'])];
      const r = await runCli(args, { env, timeoutMs: 180_000 });
      assert.equal(r.code, 0, `${t.backup} to ${t.time ?? 'the end'}: ${r.stderr}`);
      const cluster = await createCluster({ version: VERSION, env, fsync: false, dataDir: dest });
      restored.push(cluster);
      await cluster.start({ waitForRecovery: true });
      const rows = await cluster.query<{ id: number }>('SELECT id FROM marks ORDER BY id');
      assert.deepEqual(rows.map((x) => x.id), t.expected, `${t.backup} to ${t.time ?? 'the end'}\n${await cluster.logText()}`);
      await cluster.stop('fast');
    }
  });
});
