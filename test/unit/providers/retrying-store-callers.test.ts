// Every caller of create-if-absent, through the retry decorator, when the server applied an
// attempt whose answer was lost: the catalog entry (which claims a backup id), the manifest, a
// lease, a WAL segment. Each must see its own write as a success: before the decorator knew
// better, the first left an orphan STARTED entry and moved on to the next id, the second failed
// the backup with an integrity error, the third reported the lease "held by another run".
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { LocalObjectStore } from '../../../providers/local/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { withRetries, type RetryPolicy } from '../../../providers/retrying-store.ts';
import type { BackupInfo } from '../../../src/core/catalog/backup-info.ts';
import { backupsPrefix } from '../../../src/core/catalog/backup-keys.ts';
import { createBackupEntry, listBackups, readManifest, writeManifest } from '../../../src/core/catalog/catalog.ts';
import { acquireLease, leasePrefix } from '../../../src/core/locks/lease.ts';
import { silentLogger } from '../../../src/core/log.ts';
import { uploadWal } from '../../../src/core/wal/wal-upload.ts';
import { FlakyStore, instantEnv, tempLocalStore } from './flaky-store.ts';

const policy: RetryPolicy = { timeoutMs: 60_000, maxAttempts: 6, baseDelayMs: 100, maxDelayMs: 1_000 };

let local: LocalObjectStore;
let remove: () => Promise<void>;
before(async () => ({ store: local, remove } = await tempLocalStore()));
after(() => remove());

function started(server: string, id: string): BackupInfo {
  return {
    format_version: 1, id, server, status: 'STARTED', method: 'local', label: id, begin_time: '2026-03-01T03:00:00.000Z', end_time: null,
    begin_lsn: null, end_lsn: null, begin_wal: null, end_wal: null, timeline: null, size_bytes: 0, stored_bytes: 0,
    file_count: 0, part_count: 0, compression: 'zstd', pg_version: null, system_identifier: null, data_checksums: null,
    wal_segment_size: null, tablespaces: [], error: null, cloudbarman_version: 'test', hostname: 'h',
  };
}

async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of listAll(local, prefix)) keys.push(item.key.slice(prefix.length));
  return keys.sort();
}

describe('create-if-absent callers through the retry decorator', () => {
  it('createBackupEntry keeps the id its lost-answer attempt claimed: one entry, no orphan STARTED', async () => {
    const flaky = new FlakyStore(local);
    flaky.fail('put', 'after');
    const store = withRetries(flaky, policy, instantEnv());
    const now = new Date('2026-03-01T03:00:00Z');
    const info = await createBackupEntry(store, (id) => started('entry', id), now);
    assert.equal(info.id, '20260301T030000Z');
    assert.deepEqual(await keysUnder(backupsPrefix('entry')), ['20260301T030000Z/backup.json']);
    const listing = await listBackups(local, 'entry');
    assert.deepEqual(listing.backups.map((b) => [b.id, b.status]), [['20260301T030000Z', 'STARTED']]);
  });

  it('createBackupEntry still moves to the next id when another run holds the first', async () => {
    const store = withRetries(new FlakyStore(local), policy, instantEnv());
    const now = new Date('2026-03-02T03:00:00Z');
    await createBackupEntry(store, (id) => ({ ...started('taken', id), hostname: 'other' }), now);
    const info = await createBackupEntry(store, (id) => started('taken', id), now);
    assert.notEqual(info.id, '20260302T030000Z');
    assert.equal((await keysUnder(backupsPrefix('taken'))).length, 2);
  });

  it('writeManifest whose answer was lost succeeds instead of failing the backup as an integrity error', async () => {
    const flaky = new FlakyStore(local);
    flaky.fail('put', 'after');
    const store = withRetries(flaky, policy, instantEnv());
    const manifest = { format_version: 1, backup_id: '20260303T030000Z', compression: 'zstd' as const, directories: [], files: [], parts: [] };
    await writeManifest(store, 'manifest', manifest);
    assert.deepEqual(await readManifest(local, 'manifest', '20260303T030000Z'), manifest);
  });

  it('acquireLease whose answer was lost holds the lease instead of reporting it held by another run', async () => {
    const flaky = new FlakyStore(local);
    flaky.fail('put', 'after');
    const store = withRetries(flaky, policy, instantEnv());
    const lease = await acquireLease(store, 'lease', 'backup', { host: 'h', pid: 1, command: 'backup' }, {
      ttlMs: 60_000, skewMs: 10_000, now: () => new Date('2026-03-04T03:00:00Z'),
    });
    assert.equal(lease.record.seq, 1);
    assert.equal((await keysUnder(leasePrefix('lease', 'backup'))).length, 1);
  });

  it('uploadWal whose answer was lost reports the segment uploaded, once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cb-flaky-wal-'));
    try {
      const name = '000000010000000000000007';
      const path = join(dir, name);
      await writeFile(path, randomBytes(64 * 1024));
      const flaky = new FlakyStore(local);
      flaky.fail('put', 'after');
      const store = withRetries(flaky, policy, instantEnv());
      const result = await uploadWal({ store, server: 'wal', walPath: path, compression: 'zstd', log: silentLogger });
      assert.equal(result.status, 'uploaded');
      assert.equal((await keysUnder('wal/wals/')).length, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
