// receive-wal's local directory: where it is, its lock, and the state that ties it to one cluster.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LOCK_FILE, checkDirectoryState, lockDirectory, readDirectoryState, receiveWalDirectory, writeDirectoryState,
} from '../../../../src/core/wal/receive-wal-directory.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';

let root: string;
beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'cb-rwdir-')); });
afterEach(() => rm(root, { recursive: true, force: true }));

describe('receiveWalDirectory', () => {
  it('puts each server in its own folder', () => {
    assert.equal(receiveWalDirectory({ server: 'pg1', receiveWalDirectory: '/var/lib/cb' }), '/var/lib/cb/pg1');
    assert.equal(receiveWalDirectory({ server: 'pg1', spoolDirectory: '/var/spool/cb', pgdata: '/data' }), '/var/spool/cb/pg1/receive-wal');
    assert.equal(receiveWalDirectory({ server: 'pg1', pgdata: '/data' }), '/data/pg_wal/cloudbarman_spool/pg1/receive-wal');
    assert.throws(() => receiveWalDirectory({ server: 'pg1' }), (e: unknown) => e instanceof CloudbarmanError && e.kind === 'bad-input' && /receive_wal_directory/.test(e.hint ?? ''));
  });
});

describe('lockDirectory', () => {
  const dir = (): string => join(root, 'pg1');

  it('creates the directory, holds the lock, and releases it', async () => {
    const lock = await lockDirectory(dir(), 4242, () => false);
    assert.equal(await readFile(join(dir(), LOCK_FILE), 'utf8'), `4242 ${hostname()}\n`);
    await lock.release();
    assert.equal(existsSync(join(dir(), LOCK_FILE)), false);
  });

  it('refuses while another live process holds it, and takes over a stale one', async () => {
    const lock = await lockDirectory(dir(), 4242, () => false);
    await assert.rejects(lockDirectory(dir(), 4343, (pid) => pid === 4242), (e: unknown) => e instanceof CloudbarmanError && e.kind === 'locked' && /pid 4242/.test(e.message));
    const taken = await lockDirectory(dir(), 4343, () => false);
    assert.equal(await readFile(join(dir(), LOCK_FILE), 'utf8'), `4343 ${hostname()}\n`);
    await taken.release();
    await lock.release();
  });

  it('refuses a lock naming another host', async () => {
    await lockDirectory(dir(), 1, () => false);
    await writeFile(join(dir(), LOCK_FILE), '77 elsewhere.example\n');
    await assert.rejects(lockDirectory(dir(), 2, () => false), /elsewhere\.example/);
  });
});

describe('directory state', () => {
  it('round-trips and refuses another cluster or segment size', async () => {
    assert.equal(await readDirectoryState(root), undefined);
    const state = { systemId: '7710831655170753718', segmentSize: 16 * 1024 * 1024 };
    await writeDirectoryState(root, state);
    assert.deepEqual(await readDirectoryState(root), state);
    checkDirectoryState(root, state, state);
    assert.throws(() => checkDirectoryState(root, state, { ...state, systemId: '1' }), /system identifier 7710831655170753718, but the server is 1/);
    assert.throws(() => checkDirectoryState(root, state, { ...state, segmentSize: 1024 * 1024 }), /segments of 16777216 bytes/);
    await writeFile(join(root, 'receive-wal.json'), '{"format_version": 9}');
    await assert.rejects(readDirectoryState(root), /format this version does not know/);
  });
});
