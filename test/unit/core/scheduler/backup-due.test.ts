import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cronSchedule } from '../../../../src/config/values.ts';
import { backupDue } from '../../../../src/core/scheduler/backup-due.ts';
import type { ScheduledBackupView } from '../../../../src/core/scheduler/backup-due.ts';

const DAILY_3AM = cronSchedule('0 3 * * *', 'UTC');
const b = (id: string, status: ScheduledBackupView['status'], begin: string): ScheduledBackupView => ({ id, status, begin_time: begin });

describe('backupDue', () => {
  const cases: Array<{ name: string; now: string; backups: ScheduledBackupView[]; due: boolean; reason: RegExp }> = [
    { name: 'no backup at all, after the firing', now: '2026-11-22T03:00:30Z', backups: [], due: true, reason: /scheduled at 2026-11-22T03:00:00.000Z/ },
    { name: 'the firing is exactly now', now: '2026-11-22T03:00:00Z', backups: [b('x', 'DONE', '2026-11-21T03:00:05Z')], due: true, reason: /no backup began since/ },
    { name: "yesterday's backup does not cover today's firing", now: '2026-11-22T09:00:00Z', backups: [b('x', 'DONE', '2026-11-21T03:00:05Z')], due: true, reason: /2026-11-22T03:00/ },
    { name: 'a DONE backup since the firing', now: '2026-11-22T09:00:00Z', backups: [b('y', 'DONE', '2026-11-22T03:00:05Z')], due: false, reason: /backup y .* was taken/ },
    { name: 'a running backup since the firing', now: '2026-11-22T03:10:00Z', backups: [b('y', 'STARTED', '2026-11-22T03:00:05Z')], due: false, reason: /is running or was killed/ },
    { name: 'a FAILED attempt is not retried every pass', now: '2026-11-22T03:10:00Z', backups: [b('y', 'FAILED', '2026-11-22T03:00:05Z')], due: false, reason: /ended FAILED/ },
    { name: 'before the firing of the day, yesterday covered', now: '2026-11-22T02:59:00Z', backups: [b('x', 'DONE', '2026-11-21T03:01:00Z')], due: false, reason: /2026-11-21T03:00/ },
    { name: 'a manual backup after the firing counts', now: '2026-11-22T12:00:00Z', backups: [b('m', 'DONE', '2026-11-22T11:00:00Z'), b('x', 'DONE', '2026-11-21T03:01:00Z')], due: false, reason: /backup m/ },
    { name: 'several missed firings are caught up once', now: '2026-11-25T10:00:00Z', backups: [b('x', 'DONE', '2026-11-21T03:01:00Z')], due: true, reason: /2026-11-25T03:00/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const decision = backupDue(DAILY_3AM, c.backups, new Date(c.now));
      assert.equal(decision.due, c.due, decision.reason);
      assert.match(decision.reason, c.reason);
      assert.ok(decision.nextAt !== undefined && decision.nextAt.getTime() > Date.parse(c.now));
    });
  }

  it('follows the local time zone of the schedule across a DST change', () => {
    const berlin = cronSchedule('0 3 * * *', 'Europe/Berlin');
    // 2026-10-25: Europe/Berlin leaves summer time; 03:00 local is 02:00 UTC that day, 01:00 UTC the day before.
    const before = backupDue(berlin, [], new Date('2026-10-24T01:30:00Z'));
    assert.equal(before.firedAt?.toISOString(), '2026-10-24T01:00:00.000Z');
    const after = backupDue(berlin, [], new Date('2026-10-25T02:30:00Z'));
    assert.equal(after.firedAt?.toISOString(), '2026-10-25T02:00:00.000Z');
  });
});
