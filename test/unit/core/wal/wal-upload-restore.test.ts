// The WAL core against the real local provider in a temporary directory (no servers).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, readdir, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { uploadWal } from '../../../../src/core/wal/wal-upload.ts';
import { restoreWal, failureForRecoveryMode } from '../../../../src/core/wal/wal-restore.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger, type Logger } from '../../../../src/core/log.ts';

let dir: string;
let store: LocalObjectStore;
const SEG = '000000010000000000000003';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cb-wal-'));
  await mkdir(join(dir, 'store'));
  await mkdir(join(dir, 'pg_wal'));
  store = new LocalObjectStore(pathToFileURL(join(dir, 'store')).href);
});
after(() => rm(dir, { recursive: true, force: true }));

async function walFile(name: string, content: Buffer): Promise<string> {
  const p = join(dir, 'pg_wal', name);
  await writeFile(p, content);
  return p;
}

function recordingLog(): Logger & { notices: string[] } {
  const notices: string[] = [];
  return { ...silentLogger, notices, notice: (m: string) => { notices.push(m); } };
}

for (const compression of ['none', 'gzip', 'zstd'] as const) {
  test(`${compression}: upload, then restore byte-identical`, async () => {
    const name = `0000000100000000000000${compression === 'none' ? '10' : compression === 'gzip' ? '11' : '12'}`;
    const content = Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(1024 * 1024)]);
    const up = await uploadWal({ store, server: 'pg1', walPath: await walFile(name, content), compression, log: silentLogger });
    assert.equal(up.status, 'uploaded');
    assert.equal(up.key, `pg1/wals/0000000100000000/${name}${{ none: '', gzip: '.gz', zstd: '.zst' }[compression]}`);
    const dest = join(dir, 'pg_wal', 'RECOVERYXLOG');
    // Restore with a different preferred codec: the archived variant is found by listing.
    const res = await restoreWal({ store, server: 'pg1', walName: name, destPath: dest, compression: compression === 'zstd' ? 'gzip' : 'zstd', log: silentLogger });
    assert.equal(res.key, up.key);
    assert.ok((await readFile(dest)).equals(content));
  });
}

test('a second upload of identical content succeeds with a notice', async () => {
  const content = randomBytes(4096);
  const path = await walFile(SEG, content);
  await uploadWal({ store, server: 'pg1', walPath: path, compression: 'zstd', log: silentLogger });
  const log = recordingLog();
  // Even with another codec configured, the existing object is recognised.
  const again = await uploadWal({ store, server: 'pg1', walPath: path, compression: 'gzip', log });
  assert.equal(again.status, 'already-archived');
  assert.match(log.notices.join('\n'), /already archived with identical content/);
});

test('different content under an archived name is an integrity error and nothing is overwritten', async () => {
  const name = '000000010000000000000020';
  const original = randomBytes(4096);
  await uploadWal({ store, server: 'pg1', walPath: await walFile(name, original), compression: 'zstd', log: silentLogger });
  await assert.rejects(uploadWal({ store, server: 'pg1', walPath: await walFile(name, randomBytes(4096)), compression: 'zstd', log: silentLogger }),
    (err: CloudbarmanError) => err.kind === 'integrity' && err.message.includes(name) && /nothing was overwritten/.test(err.message));
  const dest = join(dir, 'restored-20');
  await restoreWal({ store, server: 'pg1', walName: name, destPath: dest, compression: 'zstd', log: silentLogger });
  assert.ok((await readFile(dest)).equals(original));
});

test('timeline history files live beside the buckets', async () => {
  const up = await uploadWal({ store, server: 'pg1', walPath: await walFile('00000002.history', Buffer.from('1\t0/3000000\tno recovery target specified\n')), compression: 'gzip', log: silentLogger });
  assert.equal(up.key, 'pg1/wals/00000002.history.gz');
});

test('a file that is not archived is not-found, and nothing is written', async () => {
  const dest = join(dir, 'pg_wal', 'RECOVERYHISTORY');
  await assert.rejects(restoreWal({ store, server: 'pg1', walName: '00000009.history', destPath: dest, compression: 'zstd', log: silentLogger }),
    (err: CloudbarmanError) => err.kind === 'not-found');
  assert.ok(!(await readdir(join(dir, 'pg_wal'))).some((f) => f.startsWith('RECOVERYHISTORY') || f.includes('cbtmp')));
});

test('a corrupt archived object is an integrity error naming it, and DEST is not written', async () => {
  const name = '000000010000000000000030';
  const up = await uploadWal({ store, server: 'pg1', walPath: await walFile(name, randomBytes(8192)), compression: 'none', log: silentLogger });
  // Flip one byte in the stored payload (the last byte of the file).
  const file = join(dir, 'store', ...up.key.split('/'));
  const raw = await readFile(file);
  raw[raw.length - 1] = (raw[raw.length - 1] ?? 0) ^ 0xff;
  await writeFile(file, raw);
  const dest = join(dir, 'restored-30');
  await assert.rejects(restoreWal({ store, server: 'pg1', walName: name, destPath: dest, compression: 'none', log: silentLogger }),
    (err: CloudbarmanError) => err.kind === 'integrity' && err.message.includes(up.key));
  await assert.rejects(readFile(dest), { code: 'ENOENT' });
});

test('names that are not WAL files are bad input', async () => {
  await assert.rejects(uploadWal({ store, server: 'pg1', walPath: await walFile('postmaster.pid', Buffer.from('x')), compression: 'none', log: silentLogger }), { kind: 'bad-input' });
  await assert.rejects(restoreWal({ store, server: 'pg1', walName: '../etc/passwd', destPath: join(dir, 'x'), compression: 'none', log: silentLogger }), { kind: 'bad-input' });
});

test('recovery mode decides what a failed restore_command means', () => {
  const unreachable = new CloudbarmanError('unreachable', 'down');
  const absent = new CloudbarmanError('not-found', 'absent');
  const config = new CloudbarmanError('bad-input', 'typo');
  assert.equal(failureForRecoveryMode(absent, 'targeted').kind, 'not-found');
  assert.equal(failureForRecoveryMode(unreachable, 'targeted').kind, 'abort-recovery');
  assert.equal(failureForRecoveryMode(config, 'targeted').kind, 'abort-recovery');
  assert.equal(failureForRecoveryMode(unreachable, 'standby').kind, 'unreachable');
  assert.equal(failureForRecoveryMode(new CloudbarmanError('failed', 'x'), 'standby').kind, 'unreachable');
  assert.equal(failureForRecoveryMode(config, 'standby').kind, 'bad-input');
  assert.equal(failureForRecoveryMode(unreachable, 'none').kind, 'unreachable');
});

test("a .partial held by receive-wal's provisional copy is refused (exit 5) whatever its content, and stored once it is gone", async () => {
  const name = '000000010000000000000030.partial';
  const streamed = randomBytes(8192);
  const { compressBuffer } = await import('../../../../src/io/compression.ts');
  const { createHash } = await import('node:crypto');
  const { PARTIAL_SOURCE, PARTIAL_SOURCE_META, WAL_META, WAL_FORMAT_VERSION } = await import('../../../../src/core/wal/wal-keys.ts');
  const key = `pg1/wals/0000000100000000/${name}.zst`;
  // receive-wal's copy: same key scheme, marked cb_source=receive-wal.
  await store.put(key, await compressBuffer(streamed, 'zstd'), {
    metadata: {
      [WAL_META.sha256]: createHash('sha256').update(streamed).digest('hex'), [WAL_META.size]: String(streamed.length),
      [WAL_META.compression]: 'zstd', [WAL_META.format]: WAL_FORMAT_VERSION, [PARTIAL_SOURCE_META]: PARTIAL_SOURCE,
    },
  });
  const refused = (err: CloudbarmanError): boolean => err.kind === 'locked' && /held by receive-wal's provisional copy/.test(err.message) && /cb_source=receive-wal/.test(err.hint ?? '');
  // Other content, and the very same content: neither replaced nor taken as archived.
  await assert.rejects(uploadWal({ store, server: 'pg1', walPath: await walFile(name, randomBytes(8192)), compression: 'zstd', log: silentLogger }), refused);
  await assert.rejects(uploadWal({ store, server: 'pg1', walPath: await walFile(name, streamed), compression: 'zstd', log: silentLogger }), refused);
  assert.ok(await store.head(key), "receive-wal's copy is left to receive-wal");

  // Once receive-wal removed its copy, PostgreSQL's next try stores its own, write-once from then on.
  await store.delete([key]);
  const archived = randomBytes(8192);
  const up = await uploadWal({ store, server: 'pg1', walPath: await walFile(name, archived), compression: 'gzip', log: silentLogger });
  assert.equal(up.status, 'uploaded');
  const dest = join(dir, 'restored-30');
  await restoreWal({ store, server: 'pg1', walName: name, destPath: dest, compression: 'zstd', log: silentLogger });
  assert.ok((await readFile(dest)).equals(archived));
  await assert.rejects(uploadWal({ store, server: 'pg1', walPath: await walFile(name, randomBytes(8192)), compression: 'zstd', log: silentLogger }),
    (err: CloudbarmanError) => err.kind === 'integrity' && /nothing was overwritten/.test(err.message));
});
