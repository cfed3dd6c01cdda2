// `cloudbarman daemon` supervising receive-wal on real PostgreSQL 15 (archive_mode off, local store):
// the daemon starts receive-wal for the server with streaming_archiver = on, starts it again after it
// is killed, WAL switched meanwhile reaches the store, and SIGTERM stops the daemon and its child.
// Starts: one cluster and a daemon process (which starts receive-wal processes).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pollUntil, startCluster, switchWal, type Cluster } from '../helpers/postgres.ts';
import { CLI_BIN, runCli } from '../helpers/cli.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';

const SERVER = 'dmn15';
const APP_NAME = 'cb_daemon_receiver';

let work: string;
before(async () => {
  work = await makeTempDir('cb-daemon-rw');
});
after(async () => {
  if (work) await removeTempDir(work);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('daemon supervises receive-wal on PostgreSQL 15', { timeout: 240_000 }, () => {
  let primary: Cluster | undefined;
  after(async () => {
    await primary?.destroy();
  });

  test('starts receive-wal, restarts it after SIGKILL, and stops it with the daemon', async () => {
    primary = await startCluster({ version: 15, fsync: false, conf: { wal_level: 'replica', max_wal_senders: '10', archive_mode: 'off' } });
    await primary.query('CREATE ROLE streamer WITH LOGIN REPLICATION');
    await primary.query('CREATE TABLE marks (id int, payload text)');
    const storeDir = join(work, 'store');
    const receiveDir = join(work, 'receive');
    await mkdir(storeDir, { recursive: true });
    const config = join(work, 'cloudbarman.conf');
    await writeFile(config, [
      '[cloudbarman]', 'compression = zstd', 'retry_timeout = 10s', '',
      `[${SERVER}]`, `destination = file://${storeDir}`,
      `conninfo = host=${primary.host} port=${primary.port} user=postgres dbname=postgres`,
      `streaming_conninfo = host=${primary.host} port=${primary.port} user=streamer dbname=postgres`,
      'streaming_archiver = on', `streaming_archiver_name = ${APP_NAME}`, 'slot_name = cb_daemon_slot',
      `receive_wal_directory = ${receiveDir}`, 'receive_wal_partial_interval = 1s', '',
    ].join('\n'));
    const env = { CLOUDBARMAN_CONFIG: config };
    const slot = await runCli(['receive-wal', SERVER, '--create-slot'], { env });
    assert.equal(slot.code, 0, slot.stderr);

    const daemon = spawn(CLI_BIN, ['--format', 'json', 'daemon', '--interval', '1'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const killer = setTimeout(() => daemon.kill('SIGKILL'), 180_000);
    let stderr = '';
    let stdout = '';
    daemon.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    daemon.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    const exited = new Promise<number | null>((r) => daemon.once('close', (code) => { clearTimeout(killer); r(code); }));
    const details = async (): Promise<string> => stderr.slice(-4000);
    const lockFile = join(receiveDir, SERVER, 'receive-wal.lock');
    let firstPid = 0;
    try {
      const walsender = async (): Promise<number | undefined> => {
        const rows = await primary!.query<{ pid: number }>('SELECT pid FROM pg_stat_replication WHERE application_name = $1', [APP_NAME]);
        return rows[0]?.pid;
      };
      const firstSender = await pollUntil(walsender, { timeoutMs: 60_000, what: 'receive-wal started by the daemon', details });
      firstPid = await pollUntil(async () => {
        const text = await readFile(lockFile, 'utf8').catch(() => '');
        const pid = Number(text.split(' ')[0]);
        return Number.isInteger(pid) && pid > 0 ? pid : undefined;
      }, { timeoutMs: 30_000, what: 'the receive-wal lock file', details });
      assert.notEqual(firstPid, daemon.pid, 'receive-wal runs as its own process');

      process.kill(firstPid, 'SIGKILL');
      const secondSender = await pollUntil(async () => {
        const pid = await walsender();
        return pid !== undefined && pid !== firstSender ? pid : undefined;
      }, { timeoutMs: 60_000, what: 'receive-wal started again after SIGKILL', details });
      assert.notEqual(secondSender, firstSender);
      assert.match(stderr, /dmn15: receive-wal \(pid \d+\) stopped \(exit code none \(killed by a signal\)\); starting it again in 1 s/);

      // WAL written after the restart reaches the store through the new receive-wal.
      await primary.query("INSERT INTO marks SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g");
      const segment = await switchWal(primary);
      await pollUntil(async () => {
        const root = join(storeDir, SERVER, 'wals');
        if (!existsSync(root)) return undefined;
        const names = (await readdir(root, { recursive: true })).map((n) => String(n).split('/').pop()?.replace(/\.zst$/, ''));
        return names.includes(segment) ? true : undefined;
      }, { timeoutMs: 90_000, intervalMs: 200, what: `${segment} in the store`, details });
    } finally {
      daemon.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
    const result = JSON.parse(stdout) as { passes: number; stopped_by_signal: boolean; receive_wal_started: number };
    assert.equal(result.stopped_by_signal, true);
    assert.equal(result.receive_wal_started, 2);
    const senders = await primary.query('SELECT pid FROM pg_stat_replication WHERE application_name = $1', [APP_NAME]);
    assert.equal(senders.length, 0, 'the daemon stopped its receive-wal');
    assert.equal(existsSync(lockFile), false, 'receive-wal stopped cleanly and released its lock');
    assert.equal(alive(firstPid), false);
  });

  test('a SIGKILLed daemon leaves no receive-wal behind: the child sees its stdin close and stops cleanly', async () => {
    assert.ok(primary !== undefined, 'the first test started the cluster');
    const env = { CLOUDBARMAN_CONFIG: join(work, 'cloudbarman.conf') };
    const lockFile = join(work, 'receive', SERVER, 'receive-wal.lock');
    const daemon = spawn(CLI_BIN, ['daemon', '--interval', '1'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    daemon.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const exited = new Promise<void>((r) => daemon.once('close', () => r()));
    const details = async (): Promise<string> => stderr.slice(-4000);
    let childPid = 0;
    try {
      childPid = await pollUntil(async () => {
        const text = await readFile(lockFile, 'utf8').catch(() => '');
        const pid = Number(text.split(' ')[0]);
        return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
      }, { timeoutMs: 60_000, what: 'receive-wal started by the daemon', details });
    } finally {
      daemon.kill('SIGKILL');
    }
    await exited;
    try {
      // Nobody sends the child a signal: only the closed pipe can stop it.
      await pollUntil(async () => (alive(childPid) ? undefined : true), { timeoutMs: 60_000, intervalMs: 100, what: `receive-wal (pid ${childPid}) to stop after its daemon was killed`, details });
    } finally {
      if (alive(childPid)) process.kill(childPid, 'SIGKILL');
    }
    assert.match(stderr, /the daemon that started this receive-wal is gone \(stdin closed\): stopping/);
    assert.equal(existsSync(lockFile), false, 'it stopped cleanly and released its lock');
    const senders = await primary.query('SELECT pid FROM pg_stat_replication WHERE application_name = $1', [APP_NAME]);
    assert.equal(senders.length, 0);
  });
});
