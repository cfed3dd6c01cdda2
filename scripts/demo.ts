/**
 * The demo behind `npm run demo`: cloudbarman as archive_command and restore_command of real
 * PostgreSQL clusters, with the embedded local-directory store, no cloud account needed.
 * Uses the test harness to run throwaway clusters as an unprivileged user on loopback.
 */
import { chown, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, copyBaseBackup, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser,
  startCluster, switchWal, waitForArchived, type Cluster,
} from '../test/helpers/postgres.ts';
import { CLI_BIN } from '../test/helpers/cli.ts';

const say = (s: string) => process.stdout.write(`\n== ${s}\n`);
const version = 15;
const work = await makePgTempDir('cloudbarman-demo');
let primary: Cluster | undefined;
let restored: Cluster | undefined;
try {
  await assertReadableByPgUser(CLI_BIN);
  const store = await mkdirForPgUser(join(work, 'store'));
  const conf = join(work, 'cloudbarman.conf');
  await writeFile(conf, `[demo]\ndescription = "demo cluster"\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\n`);
  await chown(conf, pgOsUser().uid, pgOsUser().gid);
  const env = { CLOUDBARMAN_CONFIG: conf };
  say(`config ${conf}:`);
  process.stdout.write(`[demo]\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\n`);

  say(`starting PostgreSQL ${version} with archive_command = '${CLI_BIN} wal-upload demo %p'`);
  primary = await startCluster({
    version, env,
    conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload demo %p'` },
  });
  await primary.query('CREATE TABLE orders (id int PRIMARY KEY, note text, at timestamptz DEFAULT now())');
  await primary.query("INSERT INTO orders (id, note) SELECT g, 'before the base copy' FROM generate_series(1, 1000) g");

  say('taking a base copy with pg_backup_start/pg_backup_stop (cloudbarman backup comes next)');
  const copy = join(work, 'restored');
  await copyBaseBackup(primary, copy);

  say('writing 50,000 more rows and switching WAL segments');
  let last = '';
  for (let i = 0; i < 5; i++) {
    await primary.query(`INSERT INTO orders (id, note) SELECT g, 'after the copy, round ${i}' FROM generate_series(${2000 + i * 10000}, ${2000 + i * 10000 + 9999}) g`);
    last = await switchWal(primary);
  }
  await waitForArchived(primary, last, 60_000);
  const archiver = (await primary.query<{ archived_count: string; failed_count: string }>('SELECT archived_count, failed_count FROM pg_stat_archiver'))[0];
  process.stdout.write(`pg_stat_archiver: ${archiver?.archived_count} files archived, ${archiver?.failed_count} failures\n`);
  const wanted = (await primary.query<{ n: string; sum: string }>("SELECT count(*) AS n, md5(string_agg(id || note, ',' ORDER BY id)) AS sum FROM orders"))[0];

  say('the store now holds:');
  for await (const line of walkStore(store)) process.stdout.write(`  ${line}\n`);

  say(`starting a second cluster on the copy with restore_command = '${CLI_BIN} wal-restore demo %f %p'`);
  restored = await createCluster({
    version, env, dataDir: copy, signal: 'recovery',
    conf: { restore_command: `'${CLI_BIN} wal-restore demo %f %p'`, archive_mode: 'off' },
  });
  await restored.start({ waitForRecovery: true });
  const got = (await restored.query<{ n: string; sum: string }>("SELECT count(*) AS n, md5(string_agg(id || note, ',' ORDER BY id)) AS sum FROM orders"))[0];
  const replayed = (await restored.logText()).match(/restored log file "[0-9A-F]{24}" from archive/g)?.length ?? 0;
  process.stdout.write(`replayed ${replayed} WAL segments from the store\n`);
  process.stdout.write(`primary:  ${wanted?.n} rows, checksum ${wanted?.sum}\nrestored: ${got?.n} rows, checksum ${got?.sum}\n`);
  if (wanted?.n !== got?.n || wanted?.sum !== got?.sum) {
    say('MISMATCH: the restored cluster differs');
    process.exitCode = 1;
  } else {
    say('the restored cluster has exactly the primary\'s data');
  }
} finally {
  await restored?.destroy();
  await primary?.destroy();
  await rm(`${join(work, 'restored')}.tablespaces`, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
}

async function* walkStore(root: string): AsyncGenerator<string> {
  const { readdir } = await import('node:fs/promises');
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  for (const e of entries.filter((x) => x.isFile()).sort((a, b) => join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)))) {
    yield join(e.parentPath, e.name).slice(root.length + 1);
  }
}
