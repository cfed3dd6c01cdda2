/**
 * The demo behind `npm run demo`: the whole story with the embedded local-directory store and no
 * cloud account. A throwaway PostgreSQL archives WAL through cloudbarman, cloudbarman takes a base
 * backup, more rows are written, and the backup is restored to a point in time between two of them
 * into a new directory, where PostgreSQL starts and shows which rows came back.
 * Uses the test harness to run clusters as an unprivileged user on loopback.
 */
import { chown, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  assertReadableByPgUser, createCluster, makePgTempDir, mkdirForPgUser, pgOsUser,
  startCluster, switchWal, waitForArchived, type Cluster,
} from '../test/helpers/postgres.ts';
import { CLI_BIN, runCli } from '../test/helpers/cli.ts';

const say = (s: string) => process.stdout.write(`\n== ${s}\n`);
const show = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const version = 15;
const work = await makePgTempDir('cloudbarman-demo');
let primary: Cluster | undefined;
let restored: Cluster | undefined;
try {
  await assertReadableByPgUser(CLI_BIN);
  const store = await mkdirForPgUser(join(work, 'store'));
  const conf = join(work, 'cloudbarman.conf');
  // The config must exist before PostgreSQL starts: after three failed archive_command calls the
  // archiver waits a minute before it tries again.
  const storeLines = `[demo]\ndescription = "demo cluster"\ndestination = ${pathToFileURL(store).href}\ncompression = zstd\n`;
  await writeFile(conf, storeLines);
  await chown(conf, pgOsUser().uid, pgOsUser().gid);
  primary = await startCluster({ version, conf: { wal_level: 'replica', archive_mode: 'on', archive_command: `'${CLI_BIN} wal-upload demo %p'` }, env: { CLOUDBARMAN_CONFIG: conf } });
  const text = `${storeLines}conninfo = host=127.0.0.1 port=${primary.port} user=postgres dbname=postgres\npgdata = ${primary.dataDir}\nwal_archive_timeout = 60s\n`;
  await writeFile(conf, text);
  const env = { CLOUDBARMAN_CONFIG: conf };
  say(`PostgreSQL ${version} is running with archive_command = '${CLI_BIN} wal-upload demo %p'; the config ${conf} says:`);
  show(text);

  await primary.query('CREATE TABLE orders (id int PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp())');
  await primary.query("INSERT INTO orders (id, note) SELECT g, 'before the backup' FROM generate_series(1, 100000) g");

  say('cloudbarman backup demo');
  const backup = await runCli(['backup', 'demo'], { env, timeoutMs: 300_000 });
  show(backup.stdout + backup.stderr);
  if (backup.code !== 0) {
    show((await primary.logText()).split('\n').slice(-30).join('\n'));
    throw new Error(`backup exited ${backup.code}`);
  }

  say('after the backup: three orders, committed one second apart');
  const marks: string[] = [];
  for (let i = 1; i <= 3; i++) {
    await primary.query("INSERT INTO orders (id, note) VALUES ($1, $2)", [1_000_000 + i, `order ${i} after the backup`]);
    const t = (await primary.query<{ t: string }>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t"))[0]?.t ?? '';
    marks.push(t);
    show(`  order ${i} committed before ${t}`);
    if (i < 3) await primary.query('SELECT pg_sleep(1)');
  }
  const last = await switchWal(primary);
  await waitForArchived(primary, last, 60_000);

  say('cloudbarman list demo');
  show((await runCli(['list', 'demo'], { env })).stdout);

  const target = marks[1] ?? '';
  const dest = join(work, 'restored');
  say(`cloudbarman restore demo latest ${dest} --target-time '${target}' --target-action promote`);
  const restore = await runCli(['restore', 'demo', 'latest', dest, '--target-time', target, '--target-action', 'promote'], { env, timeoutMs: 300_000 });
  show(restore.stdout + restore.stderr);
  if (restore.code !== 0) throw new Error(`restore exited ${restore.code}`);

  say('starting PostgreSQL on the restored directory; recovery fetches WAL with cloudbarman wal-restore');
  restored = await createCluster({ version, env, dataDir: dest });
  await restored.start({ waitForRecovery: true });
  const rows = await restored.query<{ id: number; note: string }>('SELECT id, note FROM orders WHERE id > 1000000 ORDER BY id');
  const before = (await restored.query<{ n: string }>("SELECT count(*) AS n FROM orders WHERE note = 'before the backup'"))[0]?.n;
  show(`rows from before the backup: ${before}`);
  show(`orders after the backup that came back: ${rows.map((r) => r.note).join(', ') || 'none'}`);
  const ok = before === '100000' && rows.length === 2;
  say(ok ? 'exactly the data committed up to the target time came back (orders 1 and 2, not 3)' : 'MISMATCH: the restored data is not what was committed before the target');
  if (!ok) process.exitCode = 1;
} finally {
  await restored?.destroy();
  await primary?.destroy();
  await rm(work, { recursive: true, force: true });
}
