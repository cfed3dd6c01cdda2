// Golden tables for planRetention: each scenario is a small catalog with the verdict every backup
// and every run of WAL should get, and why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatPlan, isObsoleteWal, planRetention, recoveryWindowStart, type RetentionBackup, type RetentionVerdict, type WalInventory, type WalVerdict,
} from '../../../../src/core/retention/retention-plan.ts';
import { retentionRules, type KeepTarget, type RetentionRules } from '../../../../src/core/retention/retention-policy.ts';
import type { BackupStatus } from '../../../../src/core/catalog/backup-info.ts';

const hex8 = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
/** The name of segment number n (16 MiB segments) on a timeline. */
const seg = (timeline: number, n: number): string => `${hex8(timeline)}${hex8(Math.floor(n / 256))}${hex8(n % 256)}`;
/** Segments from..to on a timeline. */
const segs = (timeline: number, from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => seg(timeline, from + i));
/** A backup id is its begin time: 20260301T030000Z -> 2026-03-01T03:00:00Z. */
const timeOf = (id: string): string => `${id.slice(0, 4)}-${id.slice(4, 6)}-${id.slice(6, 8)}T${id.slice(9, 11)}:${id.slice(11, 13)}:${id.slice(13, 15)}Z`;

const WINDOW_7_DAYS = retentionRules({ kind: 'recovery-window', count: 7, unit: 'days' });
const REDUNDANCY_1 = retentionRules({ kind: 'redundancy', count: 1 });
const REDUNDANCY_2 = retentionRules({ kind: 'redundancy', count: 2 });

interface Row {
  id: string;
  status?: BackupStatus;
  /** end_time; default: 30 minutes after the start for DONE, null otherwise. */
  end?: string | null;
  /** begin and end segment numbers, and the timeline (default 1). */
  wal?: readonly [number, number, number?];
  keep?: KeepTarget;
  verdict: RetentionVerdict;
  reason?: RegExp;
}

interface Scenario {
  name: string;
  rules: RetentionRules;
  now: string;
  rows: Row[];
  wal?: WalInventory;
  listingErrors?: string[];
  windowStart?: string;
  /** Expected runs: timeline, first and last segment number, file count, verdict, reason. */
  walRuns?: Array<[number, number, number, number, WalVerdict, RegExp?]>;
}

function backupOf(row: Row): RetentionBackup {
  const status = row.status ?? 'DONE';
  const begin = timeOf(row.id);
  const end = row.end !== undefined ? row.end : status === 'DONE' ? new Date(Date.parse(begin) + 30 * 60_000).toISOString() : null;
  const [from, to, timeline = 1] = row.wal ?? [];
  return {
    id: row.id, status, begin_time: begin, end_time: end,
    begin_wal: from === undefined ? null : seg(timeline, from),
    end_wal: to === undefined ? null : seg(timeline, to),
    timeline, keep: row.keep,
  };
}

function plan(s: Scenario) {
  return planRetention({
    backups: s.rows.map(backupOf),
    wal: s.wal ?? { files: [], branches: [] },
    policy: s.rules,
    now: new Date(s.now),
    listingErrors: s.listingErrors ?? [],
  });
}

// Timeline 1 up to segment 5, where a standby was promoted onto timeline 2 (the old primary's last
// segment archived as .partial); a backup on each timeline.
const PROMOTION: WalInventory = {
  files: [...segs(1, 1, 4), `${seg(1, 2)}.00000028.backup`, `${seg(1, 5)}.partial`, '00000002.history', ...segs(2, 5, 9), `${seg(2, 7)}.00000060.backup`],
  branches: [{ timeline: 2, parent: 1, switchWal: seg(2, 5) }],
};
const PROMOTION_ROWS = (first: RetentionVerdict, second: RetentionVerdict): Row[] => [
  { id: '20260301T030000Z', wal: [2, 3], verdict: first },
  { id: '20260305T030000Z', wal: [7, 8, 2], verdict: second },
];

const SCENARIOS: Scenario[] = [
  {
    name: 'REDUNDANCY 2 keeps the two newest DONE backups',
    rules: REDUNDANCY_2,
    now: '2026-03-10T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', verdict: 'obsolete', reason: /^REDUNDANCY 2: older than the 2 newest DONE backups$/ },
      { id: '20260302T030000Z', verdict: 'obsolete' },
      { id: '20260303T030000Z', verdict: 'keep', reason: /^REDUNDANCY 2: number 2 of the 2 newest DONE backups$/ },
      { id: '20260304T030000Z', verdict: 'keep', reason: /number 1 of the 2/ },
    ],
  },
  {
    name: 'REDUNDANCY 1 below minimum_redundancy 3 keeps the newest obsolete backups',
    rules: retentionRules({ kind: 'redundancy', count: 1 }, { minimumRedundancy: 3 }),
    now: '2026-03-10T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', verdict: 'obsolete' },
      { id: '20260302T030000Z', verdict: 'kept-for-minimum-redundancy', reason: /^minimum_redundancy 3: without it only 2 DONE backups would remain$/ },
      { id: '20260303T030000Z', verdict: 'kept-for-minimum-redundancy', reason: /only 1 DONE backup would remain/ },
      { id: '20260304T030000Z', verdict: 'keep' },
    ],
  },
  {
    name: 'RECOVERY WINDOW with minimum_redundancy: every backup ended before the window',
    rules: retentionRules({ kind: 'recovery-window', count: 7, unit: 'days' }, { minimumRedundancy: 2 }),
    now: '2026-03-31T12:00:00Z',
    windowStart: '2026-03-24T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', verdict: 'obsolete', reason: /before the window starts \(2026-03-24T12:00:00Z\), and 20260310T030000Z is newer/ },
      { id: '20260305T030000Z', verdict: 'kept-for-minimum-redundancy' },
      { id: '20260310T030000Z', verdict: 'keep', reason: /the newest backup that ended before the window starts/ },
    ],
  },
  {
    name: 'RECOVERY WINDOW OF 1 MONTH on 31 March starts on 28 February, not on 3 March',
    rules: retentionRules({ kind: 'recovery-window', count: 1, unit: 'months' }),
    now: '2026-03-31T12:00:00Z',
    windowStart: '2026-02-28T12:00:00Z',
    rows: [
      { id: '20260226T030000Z', verdict: 'obsolete', reason: /ended 2026-02-26T03:30:00Z, before the window starts \(2026-02-28T12:00:00Z\), and 20260228T030000Z is newer/ },
      { id: '20260228T030000Z', verdict: 'keep', reason: /^RECOVERY WINDOW: the newest backup that ended before the window starts \(2026-02-28T12:00:00Z\)/ },
      { id: '20260301T030000Z', verdict: 'keep', reason: /^RECOVERY WINDOW: ended 2026-03-01T03:30:00Z, inside the window from 2026-02-28T12:00:00Z$/ },
      { id: '20260331T030000Z', verdict: 'keep' },
    ],
  },
  {
    name: 'RECOVERY WINDOW OF 1 MONTH on 31 March of a leap year starts on 29 February',
    rules: retentionRules({ kind: 'recovery-window', count: 1, unit: 'months' }),
    now: '2024-03-31T12:00:00Z',
    windowStart: '2024-02-29T12:00:00Z',
    rows: [
      { id: '20240228T030000Z', verdict: 'obsolete' },
      { id: '20240229T030000Z', verdict: 'keep', reason: /newest backup that ended before the window starts/ },
      { id: '20240229T130000Z', verdict: 'keep', reason: /inside the window/ },
    ],
  },
  {
    // Europe/Berlin moved from CET to CEST on 29 March 2026. now is 12:00 CEST; the window starts
    // exactly 7 × 24 h earlier, at 11:00 CET, not at 12:00 local time.
    name: 'RECOVERY WINDOW OF 7 DAYS across a DST change is exactly 168 hours',
    rules: WINDOW_7_DAYS,
    now: '2026-04-02T10:00:00Z',
    windowStart: '2026-03-26T10:00:00Z',
    rows: [
      { id: '20260325T030000Z', verdict: 'obsolete' },
      { id: '20260326T090000Z', end: '2026-03-26T09:59:59Z', verdict: 'keep', reason: /newest backup that ended before the window starts \(2026-03-26T10:00:00Z\)/ },
      { id: '20260326T100000Z', end: '2026-03-26T10:30:00Z', verdict: 'keep', reason: /ended 2026-03-26T10:30:00Z, inside the window/ },
      { id: '20260401T030000Z', verdict: 'keep' },
    ],
  },
  {
    name: 'a backup ending exactly at the window start is inside it, and the one before still anchors the window',
    rules: WINDOW_7_DAYS,
    now: '2026-03-31T12:00:00Z',
    rows: [
      { id: '20260323T030000Z', verdict: 'keep', reason: /newest backup that ended before the window starts/ },
      { id: '20260324T113000Z', verdict: 'keep', reason: /ended 2026-03-24T12:00:00Z, inside the window/ },
    ],
  },
  {
    name: 'keep annotations: kept whatever the policy, and they do not take a REDUNDANCY place',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    wal: { files: segs(1, 1, 12), branches: [] },
    rows: [
      { id: '20260301T030000Z', wal: [2, 3], keep: 'full', verdict: 'kept-by-annotation', reason: /^keep full: kept with all WAL from its start, whatever the policy$/ },
      { id: '20260302T030000Z', wal: [5, 6], keep: 'standalone', verdict: 'kept-by-annotation', reason: /^keep standalone: kept with only the WAL from its begin_wal to its end_wal/ },
      { id: '20260303T030000Z', wal: [8, 9], verdict: 'obsolete' },
      { id: '20260304T030000Z', wal: [10, 11], verdict: 'keep' },
    ],
    walRuns: [
      [1, 1, 1, 1, 'obsolete', /^before 000000010000000000000002, where the oldest kept backup 20260301T030000Z starts$/],
      [1, 2, 12, 11, 'keep', /^needed by backup 20260301T030000Z, which starts at 000000010000000000000002$/],
    ],
  },
  {
    name: 'keep standalone keeps only the WAL from its begin_wal to its end_wal, with its .backup file',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    wal: { files: [...segs(1, 1, 12), `${seg(1, 2)}.00000028.backup`, `${seg(1, 5)}.00000060.backup`], branches: [] },
    rows: [
      { id: '20260301T030000Z', wal: [2, 3], keep: 'standalone', verdict: 'kept-by-annotation' },
      { id: '20260302T030000Z', wal: [5, 6], verdict: 'obsolete' },
      { id: '20260303T030000Z', wal: [8, 9], verdict: 'keep' },
    ],
    walRuns: [
      [1, 1, 1, 1, 'obsolete', /before 000000010000000000000008, where the oldest kept backup 20260303T030000Z starts/],
      [1, 2, 3, 3, 'keep', /^needed by standalone backup 20260301T030000Z \(its begin_wal to end_wal\)$/],
      [1, 4, 7, 5, 'obsolete'],
      [1, 8, 12, 5, 'keep', /needed by backup 20260303T030000Z/],
    ],
  },
  {
    name: 'the recovery window is anchored by a full backup, never by a standalone one',
    rules: WINDOW_7_DAYS,
    now: '2026-03-31T12:00:00Z',
    rows: [
      { id: '20260315T030000Z', verdict: 'obsolete', reason: /and 20260320T030000Z is newer/ },
      { id: '20260320T030000Z', verdict: 'keep', reason: /newest backup that ended before the window starts/ },
      { id: '20260323T030000Z', keep: 'standalone', verdict: 'kept-by-annotation' },
      { id: '20260325T030000Z', verdict: 'keep', reason: /inside the window/ },
    ],
  },
  {
    name: 'promotion onto timeline 2, REDUNDANCY 1: timeline 1 and the start of timeline 2 go',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    wal: PROMOTION,
    rows: PROMOTION_ROWS('obsolete', 'keep'),
    walRuns: [
      [1, 1, 5, 6, 'obsolete', /^before 000000020000000000000007, where the oldest kept backup 20260305T030000Z starts$/],
      [2, 5, 6, 2, 'obsolete'],
      [2, 7, 9, 4, 'keep', /^needed by backup 20260305T030000Z, which starts at 000000020000000000000007$/],
    ],
  },
  {
    name: 'promotion onto timeline 2, REDUNDANCY 2: the timeline 1 backup keeps timeline 2, which branched after it',
    rules: REDUNDANCY_2,
    now: '2026-03-10T12:00:00Z',
    wal: PROMOTION,
    rows: PROMOTION_ROWS('keep', 'keep'),
    walRuns: [
      [1, 1, 1, 1, 'obsolete'],
      [1, 2, 5, 5, 'keep', /^needed by backup 20260301T030000Z, which starts at 000000010000000000000002$/],
      [2, 5, 9, 6, 'keep', /^needed by backup 20260301T030000Z: timeline 2 branched from its timeline 1 after it began$/],
    ],
  },
  {
    name: 'a clone promoted onto timeline 2 before the kept backup began: its older WAL goes, the rest is kept to be safe',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    wal: { files: [...segs(1, 1, 8), '00000002.history', ...segs(2, 3, 8)], branches: [{ timeline: 2, parent: 1, switchWal: seg(2, 3) }] },
    rows: [
      { id: '20260301T030000Z', wal: [2, 2], verdict: 'obsolete' },
      { id: '20260305T030000Z', wal: [6, 6], verdict: 'keep' },
    ],
    walRuns: [
      [1, 1, 5, 5, 'obsolete'],
      [1, 6, 8, 3, 'keep', /needed by backup 20260305T030000Z/],
      [2, 3, 5, 3, 'obsolete'],
      [2, 6, 8, 3, 'keep', /^at or after 000000010000000000000006, where backup 20260305T030000Z starts: no kept backup replays it, but it is kept to be safe$/],
    ],
  },
  {
    name: 'FAILED entries between DONE ones are cleaned up once older than the newest DONE and the grace period; DELETING ones at once',
    rules: REDUNDANCY_2,
    now: '2026-03-10T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', verdict: 'obsolete' },
      { id: '20260301T120000Z', status: 'DELETING', verdict: 'obsolete', reason: /^an interrupted delete, older than the newest DONE backup 20260310T110000Z: finished now$/ },
      { id: '20260302T030000Z', status: 'FAILED', verdict: 'obsolete', reason: /^FAILED, older than the newest DONE backup 20260310T110000Z and than the grace period of 1 day: cleaned up$/ },
      { id: '20260303T030000Z', verdict: 'keep' },
      { id: '20260310T100000Z', status: 'FAILED', verdict: 'keep', reason: /^FAILED since 2026-03-10T10:00:00Z: within the cleanup grace period of 1 day$/ },
      { id: '20260310T103000Z', status: 'DELETING', verdict: 'obsolete', reason: /^an interrupted delete, older than the newest DONE backup 20260310T110000Z: finished now$/ },
      { id: '20260310T110000Z', verdict: 'keep' },
    ],
  },
  {
    name: 'a STARTED entry newer than the newest DONE backup may be in progress: kept however old',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', verdict: 'obsolete' },
      { id: '20260302T030000Z', status: 'STARTED', verdict: 'obsolete', reason: /^STARTED but never finished, older than the newest DONE backup 20260303T030000Z/ },
      { id: '20260303T030000Z', verdict: 'keep' },
      { id: '20260304T030000Z', status: 'STARTED', verdict: 'keep', reason: /^STARTED after the newest DONE backup 20260303T030000Z began: it may be a backup in progress$/ },
      { id: '20260305T030000Z', status: 'FAILED', verdict: 'keep', reason: /^FAILED, newer than the newest DONE backup 20260303T030000Z: kept until a newer backup is DONE$/ },
    ],
  },
  {
    name: 'a STARTED entry within the grace period keeps the WAL from its begin_wal',
    rules: retentionRules({ kind: 'redundancy', count: 1 }, { cleanupGraceMs: 6 * 3_600_000 }),
    now: '2026-03-10T12:00:00Z',
    wal: { files: segs(1, 1, 8), branches: [] },
    rows: [
      { id: '20260310T070000Z', status: 'STARTED', wal: [4, 4], verdict: 'keep', reason: /within the cleanup grace period of 6h/ },
      { id: '20260310T080000Z', wal: [6, 6], verdict: 'keep' },
    ],
    walRuns: [
      [1, 1, 3, 3, 'obsolete', /^before 000000010000000000000004, where the oldest kept STARTED backup 20260310T070000Z starts$/],
      [1, 4, 8, 5, 'keep', /^needed by STARTED backup 20260310T070000Z, which starts at 000000010000000000000004$/],
    ],
  },
  {
    name: 'no DONE backup yet: old FAILED entries and all WAL are kept',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    wal: { files: segs(1, 1, 3), branches: [] },
    rows: [{ id: '20260301T030000Z', status: 'FAILED', verdict: 'keep', reason: /^FAILED: there is no DONE backup yet, so it is kept until there is one$/ }],
    walRuns: [[1, 1, 3, 3, 'keep', /^no DONE backup is kept: all WAL is kept, so that none is stranded$/]],
  },
  {
    name: 'a DONE backup whose end_time cannot be read is kept and not counted by the policy',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', verdict: 'obsolete' },
      { id: '20260302T030000Z', end: null, verdict: 'keep', reason: /its begin_time or end_time cannot be read \(2026-03-02T03:00:00Z, null\)/ },
      { id: '20260303T030000Z', verdict: 'keep', reason: /number 1 of the 1/ },
    ],
  },
  {
    name: 'a kept backup without begin_wal keeps all WAL',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    wal: { files: segs(1, 1, 3), branches: [] },
    rows: [{ id: '20260301T030000Z', verdict: 'obsolete', wal: [1, 1] }, { id: '20260302T030000Z', verdict: 'keep' }],
    walRuns: [[1, 1, 3, 3, 'keep', /^backup 20260302T030000Z has no readable begin_wal \(null\): all WAL is kept/]],
  },
  {
    name: 'a listing error deletes nothing',
    rules: REDUNDANCY_1,
    now: '2026-03-10T12:00:00Z',
    listingErrors: ['reading the keep annotation of 20260302T030000Z: access denied'],
    wal: { files: [...segs(1, 1, 6), '00000002.history'], branches: [] },
    rows: [
      { id: '20260301T030000Z', wal: [2, 2], verdict: 'keep', reason: /^nothing is deleted because listing failed: reading the keep annotation of 20260302T030000Z: access denied$/ },
      { id: '20260301T120000Z', status: 'FAILED', verdict: 'keep', reason: /listing failed/ },
      { id: '20260302T030000Z', wal: [4, 4], verdict: 'keep', reason: /listing failed/ },
      { id: '20260303T030000Z', wal: [5, 5], verdict: 'keep', reason: /listing failed/ },
    ],
    walRuns: [[1, 1, 6, 6, 'keep', /listing failed/]],
  },
  {
    name: 'GFS: the newest backup of each of the last 2 days and 3 months is kept too',
    rules: retentionRules({ kind: 'redundancy', count: 1 }, { keepDaily: 2, keepMonthly: 3 }),
    now: '2026-03-31T12:00:00Z',
    rows: [
      { id: '20251231T030000Z', verdict: 'obsolete' },
      { id: '20260115T030000Z', verdict: 'obsolete' },
      { id: '20260131T030000Z', verdict: 'keep', reason: /^gfs: monthly 2026-01$/ },
      { id: '20260210T030000Z', verdict: 'obsolete' },
      { id: '20260227T030000Z', verdict: 'keep', reason: /^gfs: monthly 2026-02$/ },
      { id: '20260330T030000Z', verdict: 'keep', reason: /^gfs: daily 2026-03-30$/ },
      { id: '20260331T010000Z', verdict: 'obsolete' },
      { id: '20260331T030000Z', verdict: 'keep', reason: /^REDUNDANCY 1: number 1 of the 1 newest DONE backups; also gfs: daily 2026-03-31, monthly 2026-03$/ },
    ],
  },
  {
    // 29 December 2025 is the Monday of ISO week 2026-W01; 4 January 2026 its Sunday.
    name: 'GFS: weeks are ISO weeks, which can start in the previous year; years are calendar years',
    rules: retentionRules({ kind: 'redundancy', count: 1 }, { keepWeekly: 2, keepYearly: 2 }),
    now: '2026-01-06T12:00:00Z',
    rows: [
      { id: '20251228T030000Z', verdict: 'obsolete' },
      { id: '20251229T030000Z', verdict: 'keep', reason: /^gfs: yearly 2025$/ },
      { id: '20260101T030000Z', verdict: 'obsolete' },
      { id: '20260104T030000Z', verdict: 'keep', reason: /^gfs: weekly 2026-W01$/ },
      { id: '20260105T030000Z', verdict: 'keep', reason: /also gfs: weekly 2026-W02, yearly 2026$/ },
    ],
  },
  {
    name: 'annotated backups count toward minimum_redundancy',
    rules: retentionRules({ kind: 'redundancy', count: 1 }, { keepMonthly: 1, minimumRedundancy: 3 }),
    now: '2026-03-31T12:00:00Z',
    rows: [
      { id: '20260301T030000Z', keep: 'full', verdict: 'kept-by-annotation' },
      { id: '20260302T030000Z', verdict: 'obsolete' },
      { id: '20260303T030000Z', verdict: 'kept-for-minimum-redundancy' },
      { id: '20260304T030000Z', verdict: 'keep', reason: /also gfs: monthly 2026-03/ },
    ],
  },
];

for (const s of SCENARIOS) {
  test(s.name, () => {
    const p = plan(s);
    assert.deepEqual(p.backups.map((b) => [b.id, b.verdict]), s.rows.map((r) => [r.id, r.verdict]));
    for (const [i, row] of s.rows.entries()) {
      if (row.reason !== undefined) assert.match(p.backups[i]?.reason ?? '', row.reason, row.id);
    }
    if (s.windowStart !== undefined) assert.equal(p.windowStart, s.windowStart);
    if (s.walRuns !== undefined) {
      assert.deepEqual(
        p.wal.map((r) => [r.timeline, r.first, r.last, r.files, r.verdict]),
        s.walRuns.map(([tl, first, last, files, verdict]) => [tl, seg(tl, first), seg(tl, last), files, verdict]),
      );
      for (const [i, [, , , , , reason]] of s.walRuns.entries()) {
        if (reason !== undefined) assert.match(p.wal[i]?.reason ?? '', reason, `WAL run ${i}`);
      }
    }
    assert.equal(p.summary.obsoleteBackups, s.rows.filter((r) => r.verdict === 'obsolete').length);
    assert.deepEqual(JSON.parse(JSON.stringify(p)), p, 'the plan is plain JSON');
  });
}

test('history files are always kept, and .partial and .backup files follow their segment', () => {
  const p = plan({ name: '', rules: REDUNDANCY_1, now: '2026-03-10T12:00:00Z', wal: PROMOTION, rows: PROMOTION_ROWS('obsolete', 'keep') });
  assert.deepEqual(p.histories, [{ name: '00000002.history', verdict: 'keep', reason: 'timeline history files are always kept: recovery follows timeline switches through them' }]);
  assert.equal(isObsoleteWal(p, '00000002.history'), false);
  assert.equal(isObsoleteWal(p, `${seg(1, 5)}.partial`), true);
  assert.equal(isObsoleteWal(p, `${seg(1, 2)}.00000028.backup`), true);
  assert.equal(isObsoleteWal(p, `${seg(2, 7)}.00000060.backup`), false);
  assert.equal(isObsoleteWal(p, seg(2, 6)), true);
  assert.equal(isObsoleteWal(p, seg(2, 7)), false);
  assert.equal(isObsoleteWal(p, seg(3, 1)), false, 'a file the plan never saw is kept');
  assert.equal(isObsoleteWal(p, 'archive_status'), false);
  assert.deepEqual(p.walCut, { backup: '20260305T030000Z', wal: seg(2, 7) });
  assert.equal(p.summary.obsoleteWalFiles, 8);
});

test('the plan does not depend on the order of its input', () => {
  const s: Scenario = { name: '', rules: REDUNDANCY_2, now: '2026-03-10T12:00:00Z', wal: PROMOTION, rows: PROMOTION_ROWS('keep', 'keep') };
  const p = plan(s);
  const reversed = planRetention({
    backups: s.rows.map(backupOf).reverse(), wal: { files: [...PROMOTION.files].reverse(), branches: PROMOTION.branches },
    policy: s.rules, now: new Date(s.now), listingErrors: [],
  });
  assert.deepEqual(reversed, p);
});

test('WAL positions compare as numbers across a log boundary (…000000FF then …0100000000)', () => {
  const p = planRetention({
    backups: [backupOf({ id: '20260302T030000Z', wal: [0x100, 0x100], verdict: 'keep' })],
    wal: { files: segs(1, 0xfe, 0x101), branches: [] }, policy: REDUNDANCY_1, now: new Date('2026-03-10T12:00:00Z'), listingErrors: [],
  });
  assert.deepEqual(p.wal.map((r) => [r.first, r.last, r.verdict]), [
    ['0000000100000000000000FE', '0000000100000000000000FF', 'obsolete'],
    ['000000010000000100000000', '000000010000000100000001', 'keep'],
  ]);
});

test('the window start is a UTC instant: n days are n × 24 h whatever Berlin\'s clocks do', () => {
  const berlinHour = (d: Date): number => Number(new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', hourCycle: 'h23' }).format(d));
  for (const [now, count] of [['2026-04-02T10:00:00Z', 7], ['2026-10-26T12:00:00Z', 2], ['2026-03-29T01:30:00Z', 1]] as const) {
    const start = recoveryWindowStart({ kind: 'recovery-window', count, unit: 'days' }, new Date(now));
    assert.equal(Date.parse(now) - start.getTime(), count * 24 * 3_600_000, now);
    // Berlin's wall clock shows a different hour at the two ends: the window did not follow it.
    assert.notEqual(berlinHour(start), berlinHour(new Date(now)), now);
  }
  const weeks = recoveryWindowStart({ kind: 'recovery-window', count: 2, unit: 'weeks' }, new Date('2026-04-02T10:00:00Z'));
  assert.equal(weeks.toISOString(), '2026-03-19T10:00:00.000Z');
});

test('calendar months clamp the day to the shorter month', () => {
  const table: Array<[string, number, string]> = [
    ['2026-03-31T12:00:00.000Z', 1, '2026-02-28T12:00:00.000Z'],
    ['2024-03-31T12:00:00.000Z', 1, '2024-02-29T12:00:00.000Z'],
    ['2026-05-31T23:59:59.999Z', 3, '2026-02-28T23:59:59.999Z'],
    ['2026-01-31T00:00:00.000Z', 2, '2025-11-30T00:00:00.000Z'],
    ['2026-03-15T06:00:00.000Z', 12, '2025-03-15T06:00:00.000Z'],
    ['2026-03-31T12:00:00.000Z', 13, '2025-02-28T12:00:00.000Z'],
    ['2026-07-31T12:00:00.000Z', 1, '2026-06-30T12:00:00.000Z'],
  ];
  for (const [now, count, expected] of table) {
    assert.equal(recoveryWindowStart({ kind: 'recovery-window', count, unit: 'months' }, new Date(now)).toISOString(), expected, `${now} - ${count} months`);
  }
});

test('formatPlan prints the rules, one line per backup, then the WAL runs', () => {
  const rows: Row[] = [...PROMOTION_ROWS('obsolete', 'keep'), { id: '20260306T030000Z', status: 'STARTED', verdict: 'keep' }];
  const p = plan({ name: '', rules: retentionRules({ kind: 'redundancy', count: 1 }, { keepDaily: 1 }), now: '2026-03-10T12:00:00Z', wal: PROMOTION, rows });
  assert.equal(formatPlan(p), `retention: REDUNDANCY 1, keep_daily 1
now: 2026-03-10T12:00:00Z
backups (3):
  20260301T030000Z  DONE      obsolete  REDUNDANCY 1: older than the 1 newest DONE backups
  20260305T030000Z  DONE      keep      REDUNDANCY 1: number 1 of the 1 newest DONE backups; also gfs: daily 2026-03-05
  20260306T030000Z  STARTED   keep      STARTED after the newest DONE backup 20260305T030000Z began: it may be a backup in progress
WAL: kept from 000000020000000000000007, where backup 20260305T030000Z starts
  timeline 1  000000010000000000000001..000000010000000000000005  6 files  obsolete  before 000000020000000000000007, where the oldest kept backup 20260305T030000Z starts
  timeline 2  000000020000000000000005..000000020000000000000006  2 files  obsolete  before 000000020000000000000007, where the oldest kept backup 20260305T030000Z starts
  timeline 2  000000020000000000000007..000000020000000000000009  4 files  keep  needed by backup 20260305T030000Z, which starts at 000000020000000000000007
  00000002.history  keep  timeline history files are always kept: recovery follows timeline switches through them
obsolete: 1 backup, 8 WAL files
`);
});

test('formatPlan says when listing failed', () => {
  const p = plan({ name: '', rules: REDUNDANCY_1, now: '2026-03-10T12:00:00Z', listingErrors: ['listing WAL: timeout'], rows: [{ id: '20260301T030000Z', verdict: 'keep' }] });
  assert.match(formatPlan(p), /^listing failed, so nothing is deleted:\n {2}listing WAL: timeout$/m);
  assert.match(formatPlan(p), /WAL: all kept\n/);
});
