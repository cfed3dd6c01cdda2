// Property-based tests of planRetention over random histories: backups of every status, keep
// annotations, promotions onto new timelines (with the old primary sometimes writing on), WAL
// with .partial and .backup files, and random policies. Seeded, so a failure reproduces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  isObsoleteWal, planRetention, type RetentionBackup, type RetentionInput, type RetentionPlan, type TimelineBranch,
} from '../../../../src/core/retention/retention-plan.ts';
import { retentionRules, type KeepTarget, type RetentionRules } from '../../../../src/core/retention/retention-policy.ts';
import type { RetentionPolicy } from '../../../../src/config/values.ts';
import type { BackupStatus } from '../../../../src/core/catalog/backup-info.ts';

const RUNS = { numRuns: 300, seed: 20260331 } as const;

const hex8 = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
const seg = (timeline: number, n: number): string => `${hex8(timeline)}${hex8(Math.floor(n / 256))}${hex8(n % 256)}`;
const position = (name: string): bigint => (BigInt(`0x${name.slice(8, 16)}`) << 32n) + BigInt(`0x${name.slice(16, 24)}`);
const idOf = (ms: number): string => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
const HOUR = 3_600_000;

interface Step {
  gapHours: number;
  durationMin: number;
  walBefore: number;
  walDuring: number;
  status: BackupStatus;
  keep: KeepTarget | undefined;
  promote: boolean;
  /** Segments the old primary still archived on its timeline after the promotion (split brain). */
  oldTimelineTail: number;
}

interface History {
  startPos: number;
  steps: Step[];
  trailingWal: number;
  nowGapHours: number;
  rules: RetentionRules;
  shuffle: number;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  gapHours: fc.oneof(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 24 * 40 })),
  durationMin: fc.integer({ min: 1, max: 600 }),
  walBefore: fc.integer({ min: 0, max: 3 }),
  walDuring: fc.integer({ min: 0, max: 2 }),
  status: fc.constantFrom<BackupStatus>('DONE', 'DONE', 'DONE', 'DONE', 'FAILED', 'STARTED', 'DELETING'),
  keep: fc.constantFrom<KeepTarget | undefined>(undefined, undefined, undefined, undefined, undefined, 'full', 'standalone'),
  promote: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
  oldTimelineTail: fc.integer({ min: 0, max: 2 }),
});

const policyArb: fc.Arbitrary<RetentionPolicy> = fc.oneof(
  fc.integer({ min: 1, max: 5 }).map((count): RetentionPolicy => ({ kind: 'redundancy', count })),
  fc.record({ count: fc.integer({ min: 1, max: 10 }), unit: fc.constantFrom('days' as const, 'weeks' as const, 'months' as const) })
    .map(({ count, unit }): RetentionPolicy => ({ kind: 'recovery-window', count, unit })),
);

const countArb = (max: number): fc.Arbitrary<number> => fc.oneof(fc.constant(0), fc.integer({ min: 1, max }));

const rulesArb: fc.Arbitrary<RetentionRules> = fc.record({
  policy: policyArb,
  minimumRedundancy: fc.integer({ min: 0, max: 6 }),
  keepDaily: countArb(4),
  keepWeekly: countArb(3),
  keepMonthly: countArb(3),
  keepYearly: countArb(2),
  graceHours: fc.integer({ min: 0, max: 72 }),
}).map(({ policy, graceHours, ...counts }) => retentionRules(policy, { ...counts, cleanupGraceMs: graceHours * HOUR }));

const historyArb: fc.Arbitrary<History> = fc.record({
  startPos: fc.integer({ min: 0xf0, max: 0x120 }), // crosses a log boundary (…FF -> next log) now and then
  steps: fc.array(stepArb, { maxLength: 14 }),
  trailingWal: fc.integer({ min: 0, max: 3 }),
  nowGapHours: fc.integer({ min: 0, max: 24 * 20 }),
  rules: rulesArb,
  shuffle: fc.integer(),
});

/** Plays a history forward: WAL positions and times only ever increase, as on a real cluster. */
function build(h: History): RetentionInput {
  let t = Date.parse('2025-11-20T00:00:00Z');
  let pos = h.startPos;
  let tli = 1;
  const files = new Set<string>();
  const branches: TimelineBranch[] = [];
  const backups: RetentionBackup[] = [];
  const write = (n: number): void => {
    for (let i = 0; i < n; i++) files.add(seg(tli, pos++));
  };
  write(1);
  for (const step of h.steps) {
    t += step.gapHours * HOUR;
    if (step.promote) {
      const parent = tli;
      files.add(`${seg(parent, pos)}.partial`);
      for (let i = 1; i <= step.oldTimelineTail; i++) files.add(seg(parent, pos + i));
      tli++;
      branches.push({ timeline: tli, parent, switchWal: seg(tli, pos) });
      files.add(`${hex8(tli)}.history`);
    }
    write(step.walBefore);
    const begin = pos;
    if (step.status === 'DONE') files.add(`${seg(tli, begin)}.00000028.backup`);
    write(step.walDuring + 1);
    const end = pos - 1;
    const beginTime = t;
    t += step.durationMin * 60_000;
    backups.push({
      id: idOf(beginTime), status: step.status, begin_time: new Date(beginTime).toISOString(),
      end_time: step.status === 'STARTED' ? null : new Date(t).toISOString(),
      begin_wal: seg(tli, begin), end_wal: step.status === 'DONE' ? seg(tli, end) : null, timeline: tli, keep: step.keep,
    });
  }
  write(h.trailingWal);
  return { backups, wal: { files: [...files], branches }, policy: h.rules, now: new Date(t + h.nowGapHours * HOUR), listingErrors: [] };
}

/** A deterministic shuffle, so that order-independence is checked on a reproducible permutation. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const verdictOf = (plan: RetentionPlan, id: string) => plan.backups.find((b) => b.id === id)?.verdict;
const isKept = (plan: RetentionPlan, id: string): boolean => { const v = verdictOf(plan, id); return v !== undefined && v !== 'obsolete'; };
const segmentFiles = (input: RetentionInput): string[] => input.wal.files.filter((f) => !f.endsWith('.history'));

function property(name: string, check: (input: RetentionInput, plan: RetentionPlan, h: History) => void): void {
  test(name, () => {
    fc.assert(fc.property(historyArb, (h) => {
      const input = build(h);
      check(input, planRetention(input), h);
    }), RUNS);
  });
}

property('every backup gets exactly one verdict, and every WAL file lies in exactly one run', (input, plan) => {
  assert.deepEqual(plan.backups.map((b) => b.id).sort(), input.backups.map((b) => b.id).sort());
  const files = segmentFiles(input);
  assert.equal(plan.wal.reduce((n, r) => n + r.files, 0), files.length);
  for (const f of files) {
    const covering = plan.wal.filter((r) => r.timeline === Number.parseInt(f.slice(0, 8), 16) && position(r.first) <= position(f) && position(f) <= position(r.last));
    assert.equal(covering.length, 1, f);
  }
});

property('never fewer DONE backups than minimum_redundancy (or all of them, when there are fewer)', (input, plan) => {
  const done = input.backups.filter((b) => b.status === 'DONE');
  const kept = done.filter((b) => isKept(plan, b.id));
  assert.ok(kept.length >= Math.min(input.policy.minimumRedundancy, done.length), `${kept.length} kept of ${done.length}`);
});

property('the policy keeps what Barman keeps: the n newest DONE backups, or every backup that ended in the window', (input, plan) => {
  const candidates = input.backups.filter((b) => b.status === 'DONE' && b.keep === undefined);
  const policy = input.policy.retentionPolicy;
  if (policy.kind === 'redundancy') {
    for (const b of candidates.slice(-policy.count)) assert.equal(verdictOf(plan, b.id), 'keep', b.id);
  } else {
    const start = Date.parse(plan.windowStart ?? '');
    for (const b of candidates) if (Date.parse(b.end_time ?? '') >= start) assert.equal(verdictOf(plan, b.id), 'keep', b.id);
  }
});

property('no WAL that a kept DONE backup needs is obsolete: from its begin_wal on, or begin_wal..end_wal when standalone', (input, plan) => {
  const files = segmentFiles(input);
  const keptDone = input.backups.filter((b) => b.status === 'DONE' && isKept(plan, b.id));
  if (keptDone.length === 0) assert.equal(plan.summary.obsoleteWalFiles, 0);
  for (const b of keptDone) {
    if (b.begin_wal === null) continue;
    const from = position(b.begin_wal);
    const to = b.keep === 'standalone' && b.end_wal !== null ? position(b.end_wal) : undefined;
    for (const f of files) {
      const p = position(f);
      if (p >= from && (to === undefined || p <= to)) assert.equal(isObsoleteWal(plan, f), false, `${f} is needed by ${b.id}`);
    }
  }
});

property('every point of the recovery window is recoverable from a kept backup with all WAL after it', (input, plan) => {
  if (plan.windowStart === null) return;
  const start = Date.parse(plan.windowStart);
  const full = input.backups.filter((b) => b.status === 'DONE' && b.keep !== 'standalone');
  const points = [start, input.now.getTime(), ...full.map((b) => Date.parse(b.end_time ?? '')).filter((e) => e >= start)];
  const files = segmentFiles(input);
  for (const point of points) {
    if (!full.some((b) => Date.parse(b.end_time ?? '') <= point)) continue; // nothing could reach it even before retention
    const from = full.find((b) => Date.parse(b.end_time ?? '') <= point && isKept(plan, b.id)
      && files.every((f) => position(f) < position(b.begin_wal ?? '') || !isObsoleteWal(plan, f)));
    assert.ok(from !== undefined, `no kept backup recovers to ${new Date(point).toISOString()}`);
  }
});

property('timeline history files are always kept', (input, plan) => {
  const histories = input.wal.files.filter((f) => f.endsWith('.history')).sort();
  assert.deepEqual(plan.histories.map((h) => h.name), histories);
  for (const h of plan.histories) {
    assert.equal(h.verdict, 'keep');
    assert.equal(isObsoleteWal(plan, h.name), false);
  }
});

property('a listing error deletes nothing', (input) => {
  const plan = planRetention({ ...input, listingErrors: ['listing WAL: connection reset'] });
  assert.deepEqual(plan.backups.filter((b) => b.verdict !== 'keep'), []);
  assert.deepEqual(plan.wal.filter((r) => r.verdict !== 'keep'), []);
  assert.deepEqual(plan.summary, { obsoleteBackups: 0, obsoleteWalFiles: 0 });
});

property('annotated backups are never obsolete', (input, plan) => {
  for (const b of input.backups) if (b.keep !== undefined) assert.equal(verdictOf(plan, b.id), 'kept-by-annotation', b.id);
});

property('a FAILED, STARTED or DELETING entry goes only when older than the newest DONE backup and (but DELETING) the grace period', (input, plan) => {
  const newestDone = input.backups.filter((b) => b.status === 'DONE').map((b) => Date.parse(b.begin_time)).reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
  for (const b of input.backups) {
    if (b.status === 'DONE' || verdictOf(plan, b.id) !== 'obsolete') continue;
    const begin = Date.parse(b.begin_time);
    assert.ok(begin < newestDone, `${b.id} (${b.status}) is not older than the newest DONE backup`);
    // An interrupted delete (DELETING) is finished whatever its age: its fate was already decided.
    if (b.status !== 'DELETING') assert.ok(begin + input.policy.cleanupGraceMs < input.now.getTime(), `${b.id} is within the grace period`);
  }
  for (const b of input.backups) {
    if (b.status === 'STARTED' && Date.parse(b.begin_time) >= newestDone) assert.notEqual(verdictOf(plan, b.id), 'obsolete', b.id);
  }
});

property('GFS keeps the newest DONE backup of each of the last N days, ISO weeks, months and years', (input, plan) => {
  const done = input.backups.filter((b) => b.status === 'DONE');
  const mondayOf = (iso: string): string => {
    const d = new Date(iso.slice(0, 10));
    return new Date(d.getTime() - ((d.getUTCDay() + 6) % 7) * 24 * HOUR).toISOString().slice(0, 10);
  };
  const periods: Array<[number, (iso: string) => string]> = [
    [input.policy.keepDaily, (iso) => iso.slice(0, 10)],
    [input.policy.keepWeekly, mondayOf],
    [input.policy.keepMonthly, (iso) => iso.slice(0, 7)],
    [input.policy.keepYearly, (iso) => iso.slice(0, 4)],
  ];
  for (const [count, bucket] of periods) {
    const newest = new Map<string, RetentionBackup>();
    for (const b of done) newest.set(bucket(b.begin_time), b);
    const recent = [...newest.keys()].sort().reverse().slice(0, count);
    for (const key of recent) {
      const b = newest.get(key);
      if (b !== undefined) assert.ok(isKept(plan, b.id), `${b.id} is the newest of ${key}`);
    }
  }
});

property('the plan is deterministic and does not depend on the order of its input', (input, plan, h) => {
  assert.deepEqual(planRetention(input), plan);
  const reordered = planRetention({
    ...input, backups: shuffled(input.backups, h.shuffle), wal: { files: shuffled(input.wal.files, h.shuffle + 1), branches: shuffled(input.wal.branches, h.shuffle + 2) },
  });
  assert.deepEqual(reordered, plan);
});

property('planning again over what remains, at the same time, deletes nothing more', (input, plan) => {
  const again = planRetention({
    ...input,
    backups: input.backups.filter((b) => verdictOf(plan, b.id) !== 'obsolete'),
    wal: { files: input.wal.files.filter((f) => !isObsoleteWal(plan, f)), branches: input.wal.branches },
  });
  assert.deepEqual(again.backups.filter((b) => b.verdict === 'obsolete'), []);
  assert.deepEqual(again.wal.filter((r) => r.verdict === 'obsolete'), []);
  for (const b of again.backups) assert.equal(b.verdict, verdictOf(plan, b.id), b.id);
  assert.deepEqual(again.walCut, plan.walCut);
});
