// backup_label as pg_backup_stop() returns it (PostgreSQL 15-18 format).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBackupLabel } from '../../../src/pg/backup-label.ts';

test('reads the start location, file, checkpoint, timeline and label', () => {
  const label = 'START WAL LOCATION: 0/9000028 (file 000000020000000000000009)\nCHECKPOINT LOCATION: 0/9000060\n' +
    'BACKUP METHOD: streamed\nBACKUP FROM: standby\nSTART TIME: 2026-11-22 00:41:07 UTC\nLABEL: nightly: run 3\nSTART TIMELINE: 2\n';
  assert.deepEqual(parseBackupLabel(label), {
    startLsn: '0/9000028', startWalFile: '000000020000000000000009', checkpointLsn: '0/9000060',
    startTimeline: 2, backupFrom: 'standby', label: 'nightly: run 3',
  });
});

test('refuses a label without its START lines', () => {
  assert.equal(parseBackupLabel(''), undefined);
  assert.equal(parseBackupLabel('START WAL LOCATION: 0/9000028 (file 000000020000000000000009)\n'), undefined);
  assert.equal(parseBackupLabel('START WAL LOCATION: garbage\nSTART TIMELINE: 1\n'), undefined);
  assert.equal(parseBackupLabel('START WAL LOCATION: 0/9000028 (file 000000020000000000000009)\nSTART TIMELINE: 0\n'), undefined);
});
