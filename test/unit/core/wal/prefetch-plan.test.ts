// The prefetch planner: which segments recovery asks for next, across log files, segment sizes and timeline switches.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isValidSegmentSize, planPrefetch, segmentName, segmentNumber } from '../../../../src/core/wal/prefetch-plan.ts';
import { chooseChain, parseTimelineHistory, type TimelineSpan } from '../../../../src/core/wal/timeline-history.ts';

const MiB = 1024 * 1024;
const one = (timeline: number): TimelineSpan[] => [{ timeline, begin: 0n }];

describe('segment numbers', () => {
  it('count across log files by wal_segment_size', () => {
    assert.equal(segmentNumber('0000000100000000000000FF', 16 * MiB), 255n);
    assert.equal(segmentNumber('000000010000000100000000', 16 * MiB), 256n);
    assert.equal(segmentNumber('000000010000000100000003', 1024 * MiB), 7n);
    assert.equal(segmentName(1, 256n, 16 * MiB), '000000010000000100000000');
    assert.equal(segmentName(2, 7n, 1024 * MiB), '000000020000000100000003');
    assert.equal(segmentName(3, 4095n, MiB), '000000030000000000000FFF');
    assert.equal(segmentName(3, 4096n, MiB), '000000030000000100000000');
  });

  it('accepts only the sizes PostgreSQL allows', () => {
    for (const size of [MiB, 16 * MiB, 64 * MiB, 1024 * MiB]) assert.ok(isValidSegmentSize(size), String(size));
    for (const size of [0, 512 * 1024, 3 * MiB, 2048 * MiB, 16 * MiB + 1]) assert.ok(!isValidSegmentSize(size), String(size));
  });
});

describe('planPrefetch', () => {
  it('names the next segments after one PostgreSQL got', () => {
    assert.deepEqual(planPrefetch({ name: '000000010000000000000005', found: true }, 3, 16 * MiB, one(1)), [
      '000000010000000000000006', '000000010000000000000007', '000000010000000000000008',
    ]);
  });

  it('starts with the asked segment when it was not archived yet', () => {
    assert.deepEqual(planPrefetch({ name: '000000010000000000000005', found: false }, 2, 16 * MiB, one(1)), [
      '000000010000000000000005', '000000010000000000000006',
    ]);
  });

  it('crosses into the next log file at 16 MiB', () => {
    assert.deepEqual(planPrefetch({ name: '0000000100000000000000FE', found: true }, 3, 16 * MiB, one(1)), [
      '0000000100000000000000FF', '000000010000000100000000', '000000010000000100000001',
    ]);
  });

  it('crosses into the next log file at 1 GiB (four segments per log file) and at 64 MiB', () => {
    assert.deepEqual(planPrefetch({ name: '000000010000000000000002', found: true }, 3, 1024 * MiB, one(1)), [
      '000000010000000000000003', '000000010000000100000000', '000000010000000100000001',
    ]);
    assert.deepEqual(planPrefetch({ name: '00000001000000000000003F', found: true }, 2, 64 * MiB, one(1)), [
      '000000010000000100000000', '000000010000000100000001',
    ]);
  });

  it('switches timeline at the segment that holds the switch point', () => {
    // Timeline 2 begins at 0/7000060: segment 7 and later are read from timeline 2.
    const chain = chooseChain(new Map([[2, parseTimelineHistory('1\t0/7000060\tno recovery target specified\n', 2)!]]), 1);
    assert.deepEqual(planPrefetch({ name: '000000010000000000000005', found: true }, 4, 16 * MiB, chain), [
      '000000010000000000000006', '000000020000000000000007', '000000020000000000000008', '000000020000000000000009',
    ]);
  });

  it('a switch exactly on a segment boundary leaves the segment before it on the old timeline', () => {
    const chain = chooseChain(new Map([[2, parseTimelineHistory('1\t0/7000000\treason\n', 2)!]]), 1);
    assert.deepEqual(planPrefetch({ name: '000000010000000000000005', found: true }, 3, 16 * MiB, chain), [
      '000000010000000000000006', '000000020000000000000007', '000000020000000000000008',
    ]);
  });

  it('follows several switches in one window, skipping timeline numbers that are not in the chain', () => {
    const history = '1\t0/3000000\tfirst\n3\t0/5800000\tsecond\n';
    const chain = chooseChain(new Map([[4, parseTimelineHistory(history, 4)!]]), 1);
    assert.deepEqual(planPrefetch({ name: '000000010000000000000001', found: true }, 5, 16 * MiB, chain), [
      '000000010000000000000002', '000000030000000000000003', '000000030000000000000004', '000000040000000000000005', '000000040000000000000006',
    ]);
  });

  it('stays on the current timeline once past the switch', () => {
    const chain = chooseChain(new Map([[2, parseTimelineHistory('1\t0/7000060\treason\n', 2)!]]), 2);
    assert.deepEqual(planPrefetch({ name: '000000020000000000000009', found: true }, 2, 16 * MiB, chain), [
      '00000002000000000000000A', '00000002000000000000000B',
    ]);
  });

  it('plans nothing for a bad name, a bad segment size or no room', () => {
    assert.deepEqual(planPrefetch({ name: '00000001.history', found: true }, 3, 16 * MiB, one(1)), []);
    assert.deepEqual(planPrefetch({ name: '000000010000000000000005', found: true }, 3, 3 * MiB, one(1)), []);
    assert.deepEqual(planPrefetch({ name: '000000010000000000000005', found: true }, 0, 16 * MiB, one(1)), []);
  });
});

describe('timeline history', () => {
  it('parses the chain, skipping comments and blank lines', () => {
    assert.deepEqual(parseTimelineHistory('# comment\n\n1\t0/3000000\tno recovery target specified\n2\t1/A0000028\tat restore point "x"\n', 3), [
      { timeline: 1, begin: 0n },
      { timeline: 2, begin: 0x3000000n },
      { timeline: 3, begin: 0x1_A000_0028n },
    ]);
  });

  it('refuses malformed files', () => {
    assert.equal(parseTimelineHistory('1\tnot-an-lsn\treason\n', 2), undefined);
    assert.equal(parseTimelineHistory('x\t0/3000000\n', 2), undefined);
    assert.equal(parseTimelineHistory('1\t0/5000000\n2\t0/3000000\n', 3), undefined, 'switch points go backwards');
    assert.equal(parseTimelineHistory('2\t0/5000000\n', 2), undefined, 'parent not older than the timeline');
  });

  it('chooses the newest history that contains the current timeline', () => {
    const histories = new Map([
      [2, parseTimelineHistory('1\t0/3000000\tr\n', 2)!],
      [3, parseTimelineHistory('1\t0/3000000\tr\n2\t0/6000000\tr\n', 3)!],
      // A sibling branch of timeline 1 that does not descend from 2.
      [4, parseTimelineHistory('1\t0/4000000\tr\n', 4)!],
    ]);
    assert.deepEqual(chooseChain(histories, 2).map((s) => s.timeline), [2, 3]);
    assert.equal(chooseChain(histories, 2)[0]?.begin, 0n);
    assert.deepEqual(chooseChain(histories, 1).map((s) => s.timeline), [1, 4]);
    assert.deepEqual(chooseChain(histories, 5), [{ timeline: 5, begin: 0n }]);
  });
});
