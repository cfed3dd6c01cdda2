import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planBackupDeletion } from '../../../../src/core/catalog/delete-plan.ts';
import type { BackupInfo, BackupStatus } from '../../../../src/core/catalog/backup-info.ts';

function backup(id: string, status: BackupStatus, beginWal: string | null, timeline = 1): BackupInfo {
  return {
    format_version: 1, id, server: 'pg1', status, method: 'local', label: id, begin_time: '', end_time: null,
    begin_lsn: null, end_lsn: null, begin_wal: beginWal, end_wal: null, timeline, size_bytes: 0, stored_bytes: 0,
    file_count: 0, part_count: 0, compression: 'zstd', pg_version: null, system_identifier: null, data_checksums: null,
    wal_segment_size: null, tablespaces: [], error: null, cloudbarman_version: 'test', hostname: 'h',
  };
}
const key = (name: string) => `pg1/wals/${name.length === 24 || name.includes('.') && name.length > 20 ? `${name.slice(0, 16)}/` : ''}${name}.zst`;
const wal = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000002.00000028.backup',
  '000000010000000000000003', '000000010000000000000004', '00000002.history', '000000020000000000000004', '000000020000000000000005'].map(key);

test('deleting the oldest DONE backup removes only the WAL before the next backup starts', () => {
  const a = backup('20260101T000000Z', 'DONE', '000000010000000000000002');
  const b = backup('20260102T000000Z', 'DONE', '000000010000000000000004');
  const plan = planBackupDeletion([a, b], a, wal);
  assert.deepEqual(plan.wal.map((w) => w.key.split('/').at(-1)), [
    '000000010000000000000001.zst', '000000010000000000000002.zst', '000000010000000000000002.00000028.backup.zst', '000000010000000000000003.zst']);
});

test('deleting a newer backup, or the only one, keeps all WAL', () => {
  const a = backup('20260101T000000Z', 'DONE', '000000010000000000000002');
  const b = backup('20260102T000000Z', 'DONE', '000000010000000000000004');
  assert.equal(planBackupDeletion([a, b], b, wal).wal.length, 0);
  assert.equal(planBackupDeletion([a], a, wal).wal.length, 0);
  assert.match(planBackupDeletion([a], a, wal).walReason, /no newer DONE backup/);
});

test('FAILED entries, even the oldest, never take WAL with them', () => {
  const f = backup('20260101T000000Z', 'FAILED', '000000010000000000000002');
  const b = backup('20260102T000000Z', 'DONE', '000000010000000000000004');
  assert.equal(planBackupDeletion([f, b], f, wal).wal.length, 0);
});

test('history files stay, and later timelines are untouched', () => {
  const a = backup('20260101T000000Z', 'DONE', '000000010000000000000002');
  const b = backup('20260103T000000Z', 'DONE', '000000020000000000000005', 2);
  const names = planBackupDeletion([a, b], a, wal).wal.map((w) => w.key.split('/').at(-1));
  assert.ok(!names.includes('00000002.history.zst'));
  assert.ok(names.includes('000000020000000000000004.zst'));
  assert.ok(!names.includes('000000020000000000000005.zst'));
});
