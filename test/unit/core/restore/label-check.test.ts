import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKUP_FORMAT_VERSION, type BackupInfo } from '../../../../src/core/catalog/backup-info.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { backupLabelProblem, checkBackupLabel } from '../../../../src/core/restore/label-check.ts';

/** What pg_backup_stop returns on PostgreSQL 15 to 18 for a backup from a primary. */
const LABEL = [
  'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)',
  'CHECKPOINT LOCATION: 0/2000060',
  'BACKUP METHOD: streamed',
  'BACKUP FROM: primary',
  'START TIME: 2026-11-22 03:42:13 UTC',
  'LABEL: cloudbarman 20261122T034213Z',
  'START TIMELINE: 1',
  '',
].join('\n');

const BACKUP: BackupInfo = {
  format_version: BACKUP_FORMAT_VERSION, id: '20261122T034213Z', server: 'pg1', status: 'DONE', method: 'local', label: 'cloudbarman 20261122T034213Z',
  begin_time: '2026-11-22T03:42:13.000Z', end_time: '2026-11-22T03:42:20.000Z', begin_lsn: '0/2000028', end_lsn: '0/2000138',
  begin_wal: '000000010000000000000002', end_wal: '000000010000000000000002', timeline: 1, size_bytes: 0, stored_bytes: 0, file_count: 0,
  part_count: 0, compression: 'zstd', pg_version: 150010, system_identifier: '1', data_checksums: false, wal_segment_size: 16 * 1024 * 1024,
  tablespaces: [], error: null, cloudbarman_version: '0.1.0', hostname: 'h',
};

const problem = (text: string | Buffer, backup: BackupInfo = BACKUP): string | undefined => backupLabelProblem(backup, Buffer.isBuffer(text) ? text : Buffer.from(text));

test('the label PostgreSQL wrote for this backup passes', () => {
  assert.equal(problem(LABEL), undefined);
  // PostgreSQL 17 incremental backups add two lines; a newer version may add others.
  assert.equal(problem(`${LABEL}INCREMENTAL FROM LSN: 0/1000028\nINCREMENTAL FROM TLI: 1\nSOME FUTURE FIELD: x\n`), undefined);
});

test('any byte inverted is refused: never valid UTF-8 in an ASCII label', () => {
  for (let i = 0; i < LABEL.length; i++) {
    const b = Buffer.from(LABEL);
    b[i] = (b[i] ?? 0) ^ 0xff;
    assert.notEqual(problem(b), undefined, `byte ${i} (${JSON.stringify(LABEL[i])})`);
  }
});

test('truncated anywhere is refused, except after the first line alone, which PostgreSQL refuses (no CHECKPOINT LOCATION)', () => {
  const first = LABEL.slice(0, LABEL.indexOf('\n') + 1);
  for (let n = 0; n < LABEL.length; n++) {
    const cut = LABEL.slice(0, n);
    if (cut === first) assert.equal(problem(cut), undefined);
    else assert.notEqual(problem(cut), undefined, `cut at ${n}: ${JSON.stringify(cut)}`);
  }
});

test('fields that recovery acts on must be the catalog\'s, or well-formed and in range', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['START WAL LOCATION: 0/2000028', 'START WAL LOCATION: 0/2000029', /catalog recorded 0\/2000028/],
    ['(file 000000010000000000000002)', '(file 000000010000000000000003)', /names file 000000010000000000000003/],
    ['START TIMELINE: 1', 'START TIMELINE: 3', /START TIMELINE 3 differs/],
    ['CHECKPOINT LOCATION: 0/2000060', 'CHECKPOINT LOCATION: 0/2000020', /before START WAL LOCATION/],
    ['CHECKPOINT LOCATION: 0/2000060', 'CHECKPOINT LOCATION: 0/3000060', /after the end of the backup/],
    ['CHECKPOINT LOCATION: 0/2000060', 'CHECKPOINT LOCATION: 0/20G0060', /is not an LSN/],
    ['BACKUP FROM: primary', 'BACKUP FROM: primarz', /neither primary nor standby/],
    ['BACKUP METHOD: streamed', 'BACKUP METHOD: streamex', /not one PostgreSQL writes/],
    ['START TIME: 2026-11-22 03:42:13 UTC', 'START TIME: 2026-11-2x 03:42:13 UTC', /is not a time/],
    ['LABEL: cloudbarman', 'LABEL: cloud\x01barman', /line 6 is not a "KEY: value" line/],
    ['BACKUP FROM: primary', 'BACKUP FRoM: primary', /line 4 is not a "KEY: value" line/],
    ['BACKUP FROM: primary\n', 'BACKUP FROM: primary\nBACKUP FROM: primary\n', /BACKUP FROM appears twice/],
  ];
  for (const [from, to, want] of cases) {
    assert.ok(LABEL.includes(from), from);
    assert.match(problem(LABEL.replace(from, to)) ?? 'passed', want, to);
  }
  assert.match(problem('') ?? '', /empty/);
  assert.match(problem('LABEL: x\n') ?? '', /no valid START WAL LOCATION/);
});

test('the catalog\'s timeline and the file\'s must agree; a backup that recorded no LSNs checks the label alone', () => {
  assert.match(problem(LABEL, { ...BACKUP, timeline: 2 }) ?? '', /starts on timeline 1, the catalog recorded 2/);
  assert.equal(problem(LABEL, { ...BACKUP, begin_lsn: null, begin_wal: null, end_lsn: null, timeline: null }), undefined);
  assert.match(problem(LABEL.replace('(file 000000010000000000000002)', '(file 000000010000000000000005)'), { ...BACKUP, begin_wal: null }) ?? '', /is not in file 000000010000000000000005/);
});

test('checkBackupLabel throws an integrity error naming the object', () => {
  assert.throws(() => checkBackupLabel(BACKUP, Buffer.from('x'), 'file:///s pg1/base/x/backup_label'), (err: unknown) =>
    err instanceof CloudbarmanError && err.kind === 'integrity' && err.message.startsWith('backup_label file:///s pg1/base/x/backup_label of backup 20261122T034213Z is damaged: '));
});
