import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTimelineHistory, type TimelineSpan } from '../../../../src/core/wal/timeline-history.ts';
import { checkWalContinuity, describeRange, timelineAt, type ArchivedWal, type WalCheckInput } from '../../../../src/core/verify/wal-continuity.ts';

const MiB = 1024 * 1024;
const SEG = 16 * MiB;

/** Segment name on a timeline, 16 MiB segments: seg(1, 5) = 000000010000000000000005. */
function seg(timeline: number, segNo: number, size = SEG): string {
  const perLog = 0x1_0000_0000 / size;
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(timeline) + hex(Math.floor(segNo / perLog)) + hex(segNo % perLog);
}

/** An archive holding these segments (keys as the store lays them out) and history files. */
function archive(names: string[], histories: Record<number, string | undefined> = {}): ArchivedWal {
  return {
    segments: new Map(names.map((n) => [n, `pg1/wals/${n.slice(0, 16)}/${n}.zst`])),
    histories: new Map(Object.entries(histories).map(([t, text]): [number, readonly TimelineSpan[] | undefined] =>
      [Number(t), text === undefined ? undefined : parseTimelineHistory(text, Number(t))])),
  };
}

function range(timeline: number, from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => seg(timeline, from + i));
}

/** A backup on timeline 1 from segment 2 to 3, ending at 0/3000100. */
const BACKUP: WalCheckInput = { timeline: 1, beginWal: seg(1, 2), endWal: seg(1, 3), endLsn: 0x3000100n, segmentSize: SEG, toLatest: true };

test('a continuous archive: the needed range and everything after it are there', () => {
  const found = checkWalContinuity(BACKUP, archive(range(1, 1, 9)));
  assert.equal(found.invalid, undefined);
  assert.deepEqual(found.needed, [seg(1, 2), seg(1, 3)]);
  assert.deepEqual(found.neededGaps, []);
  assert.equal(found.branches.length, 1);
  const [branch] = found.branches;
  assert.deepEqual(branch?.timelines, [1]);
  assert.equal(branch?.newest, seg(1, 9));
  assert.equal(branch?.count, 6);
  assert.deepEqual(branch?.gaps, []);
  assert.deepEqual(branch?.present.map(([name]) => name), range(1, 4, 9));
  assert.equal(branch?.present[0]?.[1], `pg1/wals/0000000100000000/${seg(1, 4)}.zst`);
});

test('a segment missing from the needed range is a gap there, named', () => {
  const found = checkWalContinuity({ ...BACKUP, endWal: seg(1, 5) }, archive([seg(1, 2), seg(1, 4), seg(1, 5)]));
  assert.deepEqual(found.neededGaps, [{ first: seg(1, 3), last: seg(1, 3), count: 1 }]);
});

test('gaps after the end are coalesced into ranges, up to the newest segment', () => {
  const found = checkWalContinuity(BACKUP, archive([...range(1, 2, 3), seg(1, 4), seg(1, 8), seg(1, 9), seg(1, 12)]));
  const gaps = found.branches[0]?.gaps ?? [];
  assert.deepEqual(gaps.map(describeRange), [
    `${seg(1, 5)}..${seg(1, 7)} (3 segments)`,
    `${seg(1, 10)}..${seg(1, 11)} (2 segments)`,
  ]);
  assert.equal(found.branches[0]?.count, 9);
});

test('the segment right after end_wal missing is a gap, not the end of the archive', () => {
  const found = checkWalContinuity(BACKUP, archive([...range(1, 2, 3), seg(1, 6)]));
  assert.deepEqual(found.branches[0]?.gaps, [{ first: seg(1, 4), last: seg(1, 5), count: 2 }]);
});

test('nothing after the end yet is not a gap', () => {
  const found = checkWalContinuity(BACKUP, archive(range(1, 2, 3)));
  assert.deepEqual(found.branches, [{ timelines: [1], switchPoints: [], newest: undefined, count: 0, gaps: [], present: [] }]);
});

test('without toLatest only the needed range is checked', () => {
  const found = checkWalContinuity({ ...BACKUP, toLatest: false }, archive([...range(1, 2, 3), seg(1, 9)]));
  assert.deepEqual(found.branches, []);
  assert.deepEqual(found.neededGaps, []);
});

test('across a switch to timeline 2, segments from the switch segment on are read from timeline 2', () => {
  // Timeline 2 begins at 0/6000100, inside segment 6: 1..5 are timeline 1's, 6.. timeline 2's.
  // The old primary's own segment 6 and 7 on timeline 1 are not on the branch.
  const names = [...range(1, 2, 7), ...range(2, 6, 8)];
  const found = checkWalContinuity(BACKUP, archive(names, { 2: '1\t0/6000100\tno recovery target specified\n' }));
  assert.equal(found.branches.length, 1);
  const [branch] = found.branches;
  assert.deepEqual(branch?.timelines, [1, 2]);
  assert.deepEqual(branch?.switchPoints, ['0/6000100']);
  assert.equal(branch?.newest, seg(2, 8));
  assert.deepEqual(branch?.gaps, []);
  assert.deepEqual(branch?.present.map(([name]) => name), [seg(1, 4), seg(1, 5), seg(2, 6), seg(2, 7), seg(2, 8)]);
});

test('the switch segment missing on the new timeline is a gap even when the old timeline has it', () => {
  const names = [...range(1, 2, 7), seg(2, 7)];
  const found = checkWalContinuity(BACKUP, archive(names, { 2: '1\t0/6000100\tx\n' }));
  assert.deepEqual(found.branches[0]?.gaps, [{ first: seg(2, 6), last: seg(2, 6), count: 1 }]);
});

test('a gap that spans the switch point names each end on its own timeline', () => {
  const names = [...range(1, 2, 4), seg(2, 8)];
  const found = checkWalContinuity(BACKUP, archive(names, { 2: '1\t0/6000100\tx\n' }));
  assert.deepEqual(found.branches[0]?.gaps, [{ first: seg(1, 5), last: seg(2, 7), count: 3 }]);
});

test('timeline 3 after 2: the chain is followed to the newest timeline', () => {
  const names = [...range(1, 2, 5), ...range(2, 6, 9), ...range(3, 10, 11)];
  const found = checkWalContinuity(BACKUP, archive(names, {
    2: '1\t0/6000000\tx\n',
    3: '1\t0/6000000\tx\n2\t0/A000000\ty\n',
  }));
  assert.equal(found.branches.length, 1);
  assert.deepEqual(found.branches[0]?.timelines, [1, 2, 3]);
  assert.equal(found.branches[0]?.newest, seg(3, 11));
  assert.deepEqual(found.branches[0]?.gaps, []);
});

test('two branches from the backup\'s timeline are each checked', () => {
  const names = [...range(1, 2, 5), ...range(2, 5, 7), ...range(3, 5, 6)];
  const found = checkWalContinuity(BACKUP, archive(names, { 2: '1\t0/5000000\tx\n', 3: '1\t0/5800000\ty\n' }));
  assert.deepEqual(found.branches.map((b) => [b.timelines, b.newest, b.gaps.length]), [[[1, 2], seg(2, 7), 0], [[1, 3], seg(3, 6), 0]]);
});

test('a branch that left the backup\'s timeline before the backup ended is not followed', () => {
  const names = [...range(1, 2, 6), ...range(2, 3, 5)];
  const found = checkWalContinuity(BACKUP, archive(names, { 2: '1\t0/3000000\tx\n' }));
  assert.deepEqual(found.unreachable, [{ timeline: 2, switchPoint: '0/3000000' }]);
  // Recovery of this backup stays on timeline 1.
  assert.deepEqual(found.branches.map((b) => [b.timelines, b.newest]), [[[1], seg(1, 6)]]);
});

test('a timeline that does not descend from the backup\'s is ignored', () => {
  const input = { ...BACKUP, timeline: 2, beginWal: seg(2, 2), endWal: seg(2, 3) };
  const names = [...range(2, 2, 4), ...range(3, 4, 6)];
  // Timeline 3 branched from 1, not from 2.
  const found = checkWalContinuity(input, archive(names, { 2: '1\t0/1000000\tx\n', 3: '1\t0/1800000\ty\n' }));
  assert.deepEqual(found.branches.map((b) => [b.timelines, b.newest]), [[[2], seg(2, 4)]]);
});

test('segments of a timeline without a history file are reported; a malformed history too', () => {
  const found = checkWalContinuity(BACKUP, archive([...range(1, 2, 3), seg(2, 4), seg(4, 9)], { 4: 'garbage' }));
  assert.deepEqual(found.timelinesWithoutHistory, [2]);
  assert.deepEqual(found.malformedHistories, [4]);
});

test('segment numbers roll over into the next log file (1 MiB segments, 4096 per log)', () => {
  const size = MiB;
  const input: WalCheckInput = { timeline: 1, beginWal: seg(1, 4094, size), endWal: seg(1, 4095, size), endLsn: undefined, segmentSize: size, toLatest: true };
  assert.equal(seg(1, 4096, size), '000000010000000100000000');
  const found = checkWalContinuity(input, archive([seg(1, 4094, size), seg(1, 4095, size), seg(1, 4097, size)]));
  assert.deepEqual(found.branches[0]?.gaps, [{ first: '000000010000000100000000', last: '000000010000000100000000', count: 1 }]);
});

test('a name whose segment digits do not fit the segment size is not a segment of this cluster', () => {
  const found = checkWalContinuity(BACKUP, archive([...range(1, 2, 3), '0000000100000000000001FF']));
  assert.equal(found.branches[0]?.newest, undefined);
});

test('a WAL range that makes no sense is refused, not checked', () => {
  assert.match(checkWalContinuity({ ...BACKUP, endWal: seg(1, 1) }, archive([])).invalid ?? '', /ends before it begins/);
  assert.match(checkWalContinuity({ ...BACKUP, endWal: seg(2, 3) }, archive([])).invalid ?? '', /not on the backup's timeline 1/);
  assert.match(checkWalContinuity({ ...BACKUP, segmentSize: 3 * MiB }, archive([])).invalid ?? '', /segment size/);
  assert.match(checkWalContinuity({ ...BACKUP, beginWal: 'x' }, archive([])).invalid ?? '', /not made of segment names/);
});

test('timelineAt: the newest timeline of the chain that began at or before the segment', () => {
  const chain: TimelineSpan[] = [{ timeline: 1, begin: 0n }, { timeline: 2, begin: 0x6000100n }, { timeline: 5, begin: 0x9000000n }];
  assert.deepEqual([5, 6, 8, 9, 10].map((n) => timelineAt(chain, BigInt(n), SEG)), [1, 2, 2, 5, 5]);
});
