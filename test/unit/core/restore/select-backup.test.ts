// Golden table for selectBackup: which backup a restore request gets, or the reason it gets none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { selectBackup, type BackupRequest } from '../../../../src/core/restore/select-backup.ts';
import { parseRecoveryTarget, type RecoveryTarget } from '../../../../src/core/restore/recovery-target.ts';
import { BACKUP_FORMAT_VERSION, type BackupInfo, type BackupStatus } from '../../../../src/core/catalog/backup-info.ts';

function backup(id: string, status: BackupStatus, end: string | null, endLsn: string | null, timeline = 1): BackupInfo {
  return {
    format_version: BACKUP_FORMAT_VERSION, id, server: 'pg1', status, method: 'local', label: id,
    begin_time: '2026-11-01T00:00:00.000Z', end_time: end, begin_lsn: '0/1000000', end_lsn: endLsn,
    begin_wal: null, end_wal: null, timeline, size_bytes: 0, stored_bytes: 0, file_count: 0, part_count: 0,
    compression: 'zstd', pg_version: 170000, system_identifier: null, data_checksums: null, wal_segment_size: null,
    tablespaces: [], error: status === 'FAILED' ? 'disk full' : null, cloudbarman_version: '0.1.0', hostname: 'h',
  };
}

// Three DONE backups on timelines 1, 1, 2, one FAILED and one STARTED in between.
const CATALOG: BackupInfo[] = [
  backup('20261101T000000Z', 'DONE', '2026-11-01T00:10:00.000Z', '0/5000000'),
  backup('20261102T000000Z', 'FAILED', null, null),
  backup('20261103T000000Z', 'DONE', '2026-11-03T00:10:00.500Z', '1/2000000'),
  backup('20261104T000000Z', 'STARTED', null, null),
  backup('20261105T000000Z', 'DONE', '2026-11-05T00:10:00.000Z', '1/A0000000', 2),
];

const time = (t: string): RecoveryTarget => {
  const target = parseRecoveryTarget({ time: t });
  if (target === undefined) throw new Error('no target');
  return target;
};
const lsn = (l: string): RecoveryTarget => ({ kind: 'lsn', lsn: l });

interface Row {
  name: string;
  request: BackupRequest;
  available?: number[];
  catalog?: BackupInfo[];
  /** The id chosen, or the error message's pattern. */
  expect: string | RegExp;
}

const TABLE: Row[] = [
  { name: 'latest, no target: newest DONE', request: { id: 'latest' }, expect: '20261105T000000Z' },
  { name: 'latest, target-time between backups: newest ending before it', request: { id: 'latest', target: time('2026-11-04 12:00:00+00') }, expect: '20261103T000000Z' },
  { name: 'latest, target-time in another zone', request: { id: 'latest', target: time('2026-11-03T01:10:00.4+01:00') }, expect: '20261101T000000Z' },
  { name: 'latest, target-time exactly at a backup end (microseconds)', request: { id: 'latest', target: time('2026-11-03 00:10:00.500000+00') }, expect: '20261103T000000Z' },
  { name: 'latest, target-time one microsecond before that end', request: { id: 'latest', target: time('2026-11-03 00:10:00.499999+00') }, expect: '20261101T000000Z' },
  { name: 'latest, target-time after all backups: newest', request: { id: 'latest', target: time('2030-01-01 00:00:00') }, expect: '20261105T000000Z' },
  { name: 'latest, target-time before the oldest backup ends', request: { id: 'latest', target: time('2026-11-01 00:05:00+00') },
    expect: /before the end of the oldest backup: target time 2026-11-01T00:05:00.000Z is before backup 20261101T000000Z ended at 2026-11-01T00:10:00.000Z/ },
  { name: 'latest, target-lsn compares numerically (1/2000000 > 0/5000000)', request: { id: 'latest', target: lsn('1/1FFFFFF') }, expect: '20261101T000000Z' },
  { name: 'latest, target-lsn with a long low half', request: { id: 'latest', target: lsn('1/9FFFFFFF') }, expect: '20261103T000000Z' },
  { name: 'latest, target-lsn before every backup', request: { id: 'latest', target: lsn('0/4FFFFFF') }, expect: /before the end of the oldest backup: target LSN 0\/4FFFFFF is before backup 20261101T000000Z ended at LSN 0\/5000000/ },
  { name: 'latest, target-xid: newest (an xid cannot be placed in time)', request: { id: 'latest', target: { kind: 'xid', xid: '1234' } }, expect: '20261105T000000Z' },
  { name: 'latest, target-name: newest', request: { id: 'latest', target: { kind: 'name', name: 'before_upgrade' } }, expect: '20261105T000000Z' },
  { name: 'latest, immediate: newest', request: { id: 'latest', target: { kind: 'immediate' } }, expect: '20261105T000000Z' },
  { name: 'explicit DONE id', request: { id: '20261101T000000Z' }, expect: '20261101T000000Z' },
  { name: 'explicit id with a later target-time', request: { id: '20261101T000000Z', target: time('2026-11-04 00:00:00Z') }, expect: '20261101T000000Z' },
  { name: 'explicit id with a target-time before its end', request: { id: '20261103T000000Z', target: time('2026-11-02 00:00:00Z') },
    expect: /target is before the end of the backup: target time 2026-11-02T00:00:00.000Z is before backup 20261103T000000Z ended/ },
  { name: 'explicit id with a target-lsn before its end', request: { id: '20261105T000000Z', target: lsn('1/2000000') }, expect: /target is before the end of the backup: target LSN 1\/2000000/ },
  { name: 'explicit id that does not exist', request: { id: '20261106T000000Z' }, expect: /backup 20261106T000000Z does not exist/ },
  { name: 'explicit FAILED id', request: { id: '20261102T000000Z' }, expect: /backup 20261102T000000Z is FAILED, not DONE/ },
  { name: 'explicit STARTED id', request: { id: '20261104T000000Z' }, expect: /is STARTED, not DONE/ },
  { name: 'no DONE backup at all', request: { id: 'latest' }, catalog: [backup('20261102T000000Z', 'FAILED', null, null)], expect: /no DONE backup of this server/ },
  { name: 'empty catalog, explicit id', request: { id: '20261101T000000Z' }, catalog: [], expect: /does not exist/ },
  { name: 'target-tli latest is accepted', request: { id: 'latest', timeline: 'latest' }, expect: '20261105T000000Z' },
  { name: 'target-tli current is accepted', request: { id: '20261101T000000Z', timeline: 'current' }, expect: '20261101T000000Z' },
  { name: 'target-tli equal to the backup\'s needs no history file', request: { id: '20261105T000000Z', timeline: 2 }, expect: '20261105T000000Z' },
  { name: 'target-tli 1 with latest: only timeline-1 backups qualify', request: { id: 'latest', timeline: 1 }, expect: '20261103T000000Z' },
  { name: 'target-tli 3 with its history file', request: { id: 'latest', timeline: 3 }, available: [3], expect: '20261105T000000Z' },
  { name: 'target-tli 3 without a history file', request: { id: 'latest', timeline: 3 }, expect: /timeline 3 does not exist in the archive: there is no 00000003.history/ },
  { name: 'target-tli before the backup\'s timeline', request: { id: '20261105T000000Z', timeline: 1 }, expect: /target timeline 1 is before backup 20261105T000000Z's timeline 2/ },
  { name: 'target-tli 2 from a timeline-1 backup with the history file', request: { id: '20261103T000000Z', timeline: 2 }, available: [2], expect: '20261103T000000Z' },
  { name: 'target-tli and target-time together', request: { id: 'latest', timeline: 1, target: time('2026-11-02 00:00:00Z') }, expect: '20261101T000000Z' },
];

for (const row of TABLE) {
  test(`selectBackup: ${row.name}`, () => {
    const result = selectBackup(row.catalog ?? CATALOG, row.request, { available: row.available ?? [] });
    if (typeof row.expect === 'string') {
      assert.ok(result.ok, result.ok ? '' : result.error.message);
      assert.equal(result.backup.id, row.expect);
      assert.ok(result.reason.includes(row.expect));
    } else {
      assert.ok(!result.ok, result.ok ? `chose ${result.backup.id}` : '');
      assert.equal(result.error.kind, 'bad-input');
      assert.match(result.error.message, row.expect);
      assert.ok(result.error.hint !== undefined && result.error.hint.length > 0, 'every refusal carries a hint');
    }
  });
}

test('selectBackup does not depend on the order of the catalog', () => {
  const shuffled = [CATALOG[4], CATALOG[0], CATALOG[2], CATALOG[1], CATALOG[3]].filter((b): b is BackupInfo => b !== undefined);
  const result = selectBackup(shuffled, { id: 'latest', target: time('2026-11-04 00:00:00Z') }, { available: [] });
  assert.ok(result.ok);
  assert.equal(result.backup.id, '20261103T000000Z');
});
