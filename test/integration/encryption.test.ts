// Client-side encryption end to end on PostgreSQL 15 with a local store: WAL archived through
// `cloudbarman wal-upload` (archive_command) and a base backup, both encrypted, with compression off so
// that plaintext would show; no stored byte may hold the marker rows. A restore with the wrong key
// fails with exit 3 before writing anything, wal-restore without a key fails with exit 3, a segment
// whose ciphertext changed is exit 4, and a restore with the right key recovers (restore_command with
// the prefetcher decrypting WAL) to a point in time that includes WAL-only rows.
// Starts: one PostgreSQL 15 cluster, and the restored copy.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chown, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assertReadableByPgUser, createCluster, makePgTempDir, pgOsUser, startCluster, switchWal, waitForArchived, type Cluster } from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { masterKey } from '../../src/io/encryption.ts';

const SERVER = 'enc';
const MARKER_BACKUP = 'CBMARKER-in-the-base-backup-6c1f0d';
const MARKER_WAL = 'CBMARKER-only-in-the-wal-93ab27';

let work: string;
let primary: Cluster | undefined;
let restored: Cluster | undefined;

before(async () => {
  await assertReadableByPgUser(CLI_BIN);
  work = await makePgTempDir('cb-enc');
});
after(async () => {
  await restored?.destroy();
  await primary?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A key file the PostgreSQL user can read, and no one else. */
async function keyFile(name: string, key: Buffer): Promise<string> {
  const path = join(work, name);
  await writeFile(path, `${key.toString('hex')}\n`, { mode: 0o600 });
  await chown(path, pgOsUser().uid, pgOsUser().gid);
  return path;
}

/** Every regular file under dir, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...await filesUnder(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

describe('client-side encryption, PostgreSQL 15, local store', () => {
  test('backup and WAL are stored encrypted; wrong or missing keys are exit 3; the right key restores to a point in time', async () => {
    const storeDir = join(work, 'store');
    await mkdir(storeDir);
    await chown(storeDir, pgOsUser().uid, pgOsUser().gid);
    const rightKey = randomBytes(32);
    const right = await keyFile('right.key', rightKey);
    const wrong = await keyFile('wrong.key', randomBytes(32));
    const rightId = masterKey(rightKey).id;
    const config = join(work, 'cloudbarman.conf');
    await writeFile(config, [
      `[${SERVER}]`,
      `destination = ${pathToFileURL(storeDir).href}`,
      'compression = none',
      'backup_compression = none',
      'client_encryption = aes-256-gcm',
      `encryption_key_file = ${right}`,
      'retry_timeout = 5s',
      'wal_archive_timeout = 60s',
      '',
    ].join('\n'));
    await chown(config, pgOsUser().uid, pgOsUser().gid);
    const env = { CLOUDBARMAN_CONFIG: config };

    primary = await startCluster({
      version: 15, env, fsync: false,
      conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload ${SERVER} %p'`, archive_timeout: '0' },
    });
    await primary.query('CREATE TABLE secret (id int PRIMARY KEY, t text)');
    await primary.query(`INSERT INTO secret SELECT g, '${MARKER_BACKUP}' FROM generate_series(1, 200) g`);
    await primary.query('CHECKPOINT');

    const backup = await runCli(['--format', 'json', 'backup', SERVER, '--pgdata', primary.dataDir,
      '--conninfo', `host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres`], { env, timeoutMs: 120_000 });
    assert.equal(backup.code, 0, backup.stderr);
    const backupId = (JSON.parse(backup.stdout) as { id: string }).id;

    await primary.query(`INSERT INTO secret SELECT g, '${MARKER_WAL}' FROM generate_series(1001, 1200) g`);
    const rows = await primary.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t");
    const target = rows[0]?.t ?? '';
    await primary.query("INSERT INTO secret VALUES (5000, 'after the target')");
    const last = await switchWal(primary);
    await waitForArchived(primary, last, 60_000);

    // No stored object holds either marker, and every WAL and data object records the key id.
    const stored = await filesUnder(join(storeDir, SERVER));
    assert.ok(stored.some((f) => f.includes('/wals/')) && stored.some((f) => f.includes('/data/')), `objects: ${stored.join(', ')}`);
    for (const file of stored) {
      const bytes = await readFile(file);
      assert.equal(bytes.indexOf(MARKER_BACKUP), -1, `${file} holds the backup marker in plaintext`);
      assert.equal(bytes.indexOf(MARKER_WAL), -1, `${file} holds the WAL marker in plaintext`);
      if (!file.endsWith('backup.json') && (file.includes('/wals/') || file.includes('/base/'))) {
        assert.ok(bytes.subarray(0, 4096).includes(`"cb_key_id":"${rightId}"`), `${file} does not record the key id`);
      }
    }

    const noKeyConfig = join(work, 'no-key.conf');
    await writeFile(noKeyConfig, `[${SERVER}]\ndestination = ${pathToFileURL(storeDir).href}\nretry_timeout = 5s\nrestore_prefetch = 0\n`);
    const noKeyEnv = { CLOUDBARMAN_CONFIG: noKeyConfig };
    // list and show need no key; verify reads and authenticates every part with the right one.
    const list = await runCli(['--format', 'json', 'list', SERVER], { env: noKeyEnv });
    assert.equal(list.code, 0, list.stderr);
    assert.equal((JSON.parse(list.stdout) as Array<{ id: string; status: string }>)[0]?.status, 'DONE');
    const show = await runCli(['--format', 'json', 'show', SERVER, backupId], { env: { CLOUDBARMAN_CONFIG: noKeyConfig } });
    assert.equal(show.code, 0, show.stderr);
    assert.deepEqual((JSON.parse(show.stdout) as { encryption: unknown }).encryption, { algorithm: 'aes-256-gcm', key_id: rightId });
    const verify = await runCli(['verify', SERVER, backupId], { env, timeoutMs: 120_000 });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);

    // Wrong key: exit 3 naming the expected key id, and nothing written at DEST.
    const wrongDest = join(work, 'restore-wrong');
    const bad = await runCli(['restore', SERVER, 'latest', wrongDest], { env: { ...env, CLOUDBARMAN_ENCRYPTION_KEY_FILE: wrong }, timeoutMs: 60_000 });
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, new RegExp(rightId));
    assert.ok(!bad.stderr.includes(rightKey.toString('hex')) && !bad.stderr.includes(rightKey.toString('base64')));
    await assert.rejects(stat(wrongDest), { code: 'ENOENT' });

    // wal-restore without any key: exit 3 naming the key id, no file at %p.
    const walDir = join(work, 'fake-pgdata', 'pg_wal');
    await mkdir(walDir, { recursive: true });
    const walName = stored.map((f) => f.slice(f.lastIndexOf('/') + 1)).find((n) => /^[0-9A-F]{24}$/.test(n)) ?? '';
    assert.notEqual(walName, '');
    const noKey = await runCli(['wal-restore', SERVER, walName, join(walDir, 'RECOVERYXLOG')], { env: noKeyEnv, cwd: join(work, 'fake-pgdata') });
    assert.equal(noKey.code, 3, noKey.stderr);
    assert.match(noKey.stderr, new RegExp(rightId));
    assert.deepEqual((await readdir(walDir)).filter((n) => !n.startsWith('cloudbarman_spool')), []);

    // The right key on a segment whose ciphertext changed in the store: exit 4 naming it, nothing at %p.
    const walFile = stored.find((f) => f.endsWith(`/${walName}`)) ?? '';
    const original = await readFile(walFile);
    const flipped = Buffer.from(original);
    flipped[flipped.length - 20] = (flipped[flipped.length - 20] ?? 0) ^ 0x01;
    await writeFile(walFile, flipped);
    const damaged = await runCli(['wal-restore', SERVER, walName, join(walDir, 'RECOVERYXLOG')], { env: { ...env, CLOUDBARMAN_RESTORE_PREFETCH: '0' }, cwd: join(work, 'fake-pgdata') });
    await writeFile(walFile, original);
    assert.equal(damaged.code, 4, damaged.stderr);
    assert.match(damaged.stderr, new RegExp(`${walName}.* is corrupt: chunk \\d+ does not authenticate`));
    assert.deepEqual((await readdir(walDir)).filter((n) => !n.startsWith('cloudbarman_spool')), []);

    // The right key: point-in-time restore; PostgreSQL replays the encrypted WAL through restore_command.
    const dest = join(work, 'restore-right');
    const good = await runCli(['restore', SERVER, backupId, dest, '--target-time', target, '--target-action', 'promote'], { env, timeoutMs: 120_000 });
    assert.equal(good.code, 0, good.stderr);
    restored = await createCluster({ version: 15, env, fsync: false, dataDir: dest });
    await restored.start({ waitForRecovery: true });
    const counts = await restored.query<{ t: string; n: string }>('SELECT t, count(*) AS n FROM secret GROUP BY t ORDER BY t');
    assert.deepEqual(counts.map((r) => [r.t, Number(r.n)]), [[MARKER_BACKUP, 200], [MARKER_WAL, 200]], await restored.logText());
    await restored.stop('fast');
    await primary.stop('fast');
  });
});
