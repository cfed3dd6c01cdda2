// The launcher's confirmation without Node (bin/cloudbarman, docs/wal.md): records written by the
// real batch code, then the real launcher run by sh. The launcher is copied into a checkout that
// has no dist/, so a call it does not confirm itself ends in "not built yet" (exit 3): that is how
// each case shows which way it went.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFile, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../providers/local/object-store.ts';
import { archiveWal, type WalArchiveRequest } from '../../../src/core/wal/wal-batch-upload.ts';
import { decodeRecord, recordPath, settledStat, shellStatKey } from '../../../src/core/wal/archive-records.ts';
import { silentLogger } from '../../../src/core/log.ts';
import { loadServerConfig } from '../../../src/config/load.ts';
import { launcherConfigKey } from '../../../src/cli/commands/wal-upload.ts';

const LAUNCHER = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/cloudbarman');
/** Past the 2 s settling rule for files written by the test itself, without waiting for it. */
const LATER = (): Date => new Date(Date.now() + 10_000);
const seg = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;

let dir: string;
let pgdata: string;
let walDir: string;
let conf: string;
let launcher: string;
let store: LocalObjectStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cb-launcher-'));
  pgdata = join(dir, 'data');
  walDir = join(pgdata, 'pg_wal');
  await mkdir(join(walDir, 'archive_status'), { recursive: true });
  await mkdir(join(dir, 'store'));
  await mkdir(join(dir, 'checkout', 'bin'), { recursive: true });
  launcher = join(dir, 'checkout', 'bin', 'cloudbarman');
  await copyFile(LAUNCHER, launcher);
  store = new LocalObjectStore(pathToFileURL(join(dir, 'store')).href);
  conf = join(dir, 'cloudbarman.conf');
  await writeFile(conf, `[pg1]\ndestination = ${store.url}\n`);
  await bootPostmaster('4242', '1700000000');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function bootPostmaster(pid: string, start: string): Promise<void> {
  await writeFile(join(pgdata, 'postmaster.pid'), `${pid}\n${pgdata}\n${start}\n5432\n/tmp\n*\n  1 2\nready   \n`);
}

/** Segments 1..n in pg_wal, .ready; then one batch call for segment 1 archives the others ahead. */
async function batch(n: number, over: Partial<WalArchiveRequest> = {}): Promise<void> {
  for (let i = 1; i <= n; i++) {
    await writeFile(join(walDir, seg(i)), Buffer.alloc(8192, i));
    await writeFile(join(walDir, 'archive_status', `${seg(i)}.ready`), '');
  }
  const confStat = await settledStat(conf, LATER().getTime());
  assert.ok(confStat !== undefined);
  const result = await archiveWal({
    server: 'pg1', walPath: join(walDir, seg(1)), compression: 'zstd', destination: store.url,
    batchSize: n, parallel: 2, spoolDirectory: undefined, configStatKey: shellStatKey(confStat),
    getStore: async () => store, log: silentLogger, now: LATER, ...over,
  });
  assert.equal(result.batch?.archived, n - 1);
}

const spool = (): string => join(walDir, 'cloudbarman_spool', 'pg1', 'archive');

/** Runs the launcher as archive_command does: in the data directory, with %p relative to it. */
function call(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stderr: string } {
  const res = spawnSync('/bin/sh', ['-c', '"$0" "$@"', launcher, ...args], {
    cwd: pgdata, encoding: 'utf8', timeout: 10_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
  });
  return { code: res.status, stderr: res.stderr };
}

function assertConfirmed(res: { code: number | null; stderr: string }, name: string): void {
  assert.deepEqual(res, { code: 0, stderr: '' });
  assert.equal(existsSync(recordPath(spool(), name)), false, 'the record is removed, as Node removes it');
}

function assertLeftToNode(res: { code: number | null; stderr: string }, name: string): void {
  assert.equal(res.code, 3, res.stderr);
  assert.match(res.stderr, /not built yet/);
  assert.equal(existsSync(recordPath(spool(), name)), true, 'the record stays for Node to check');
}

describe('launcher confirmation without Node', { skip: process.platform !== 'linux' ? 'needs GNU stat' : false }, () => {
  it('confirms a batch record with -c FILE, --config=FILE and CLOUDBARMAN_CONFIG, and the key is what GNU stat prints', async () => {
    await batch(4);
    const record = decodeRecord(await readFile(recordPath(spool(), seg(2)), 'utf8'), seg(2));
    const printed = spawnSync('stat', ['-L', '--printf', '%d:%i:%s:%.9Y:%.9Z|', join(walDir, seg(2)), conf], { encoding: 'utf8' }).stdout;
    assert.equal(record?.sh, `4242@1700000000|${printed}`);
    assertConfirmed(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(2)}`]), seg(2));
    assertConfirmed(call([`--config=${conf}`, 'wal-upload', 'pg1', `pg_wal/${seg(3)}`]), seg(3));
    // The encryption key's variable is not an option: it does not stop the confirmation.
    assertConfirmed(call(['wal-upload', 'pg1', `pg_wal/${seg(4)}`], { CLOUDBARMAN_CONFIG: conf, CLOUDBARMAN_ENCRYPTION_KEY: 'not-logged' }), seg(4));
    // Confirmed once: a second call finds no record and goes to Node.
    assert.equal(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(2)}`]).code, 3);
  });

  it('leaves to Node a changed WAL file, a changed config file and a restarted postmaster', async () => {
    await batch(4);
    await appendFile(join(walDir, seg(2)), 'x');
    assertLeftToNode(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(2)}`]), seg(2));
    await bootPostmaster('4243', '1700000100');
    assertLeftToNode(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(3)}`]), seg(3));
    await bootPostmaster('4242', '1700000000');
    assertConfirmed(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(3)}`]), seg(3));
    await appendFile(conf, '# edited\n');
    assertLeftToNode(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(4)}`]), seg(4));
  });

  it('leaves to Node an option in the environment, other arguments, another server, another config and no GNU stat', async () => {
    await batch(3);
    const args = ['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(2)}`];
    assertLeftToNode(call(args, { CLOUDBARMAN_DESTINATION: 'file:///elsewhere' }), seg(2));
    assertLeftToNode(call(['-v', ...args]), seg(2));
    assertLeftToNode(call([...args.slice(0, 4), `pg_wal/${seg(2)}`, 'extra']), seg(2));
    assertLeftToNode(call(['-c', conf, 'wal-upload', 'pg2', `pg_wal/${seg(2)}`]), seg(2));
    const copy = join(dir, 'copy.conf');
    await copyFile(conf, copy);
    assertLeftToNode(call(['-c', copy, 'wal-upload', 'pg1', `pg_wal/${seg(2)}`]), seg(2));
    // Without stat on PATH (sh's builtins still work), nothing can be compared.
    assertLeftToNode(call(args, { PATH: join(dir, 'empty') }), seg(2));
    assertConfirmed(call(args), seg(2));
  });

  it('writes no sh key when the settings are not the config file alone', async () => {
    await batch(3, { configStatKey: undefined });
    assertLeftToNode(call(['-c', conf, 'wal-upload', 'pg1', `pg_wal/${seg(2)}`]), seg(2));
    const record = decodeRecord(await readFile(recordPath(spool(), seg(2)), 'utf8'), seg(2));
    assert.ok(record !== undefined && record.file !== undefined && record.sh === undefined);
  });

  it('writes no sh key when the spool is elsewhere (the launcher looks only in the default place)', async () => {
    const elsewhere = join(dir, 'spool');
    await batch(2, { spoolDirectory: elsewhere });
    const record = decodeRecord(await readFile(recordPath(join(elsewhere, 'pg1', 'archive'), seg(2)), 'utf8'), seg(2));
    assert.ok(record !== undefined && record.file !== undefined && record.sh === undefined);
  });

  it('the config key is given only for settings from the config file alone, settled before it was read', async () => {
    const later = LATER().getTime();
    const load = (env: NodeJS.ProcessEnv, flags: Record<string, string> = {}) => loadServerConfig('pg1', { configPath: conf, env, flags });
    const key = await launcherConfigKey(await load({}), later);
    const st = await settledStat(conf, later);
    assert.ok(st !== undefined);
    assert.equal(key, shellStatKey(st));
    assert.equal(await launcherConfigKey(await load({ CLOUDBARMAN_COMPRESSION: 'gzip' }), later), undefined);
    assert.equal(await launcherConfigKey(await load({}, { compression: 'gzip' }), later), undefined);
    assert.equal(await launcherConfigKey(await load({ CLOUDBARMAN_SPOOL_DIRECTORY: join(dir, 'spool') }), later), undefined);
    // Read right after a change: the change might be the one the launcher sees, so no key.
    assert.equal(await launcherConfigKey(await load({}), Date.now()), undefined);
  });
});
