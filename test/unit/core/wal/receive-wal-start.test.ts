// Where receive-wal starts streaming, as a table of situations, and how a start on an older
// timeline is checked against the server's history.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseStart, followServerHistory, describeFork, type StartInputs } from '../../../../src/core/wal/receive-wal-start.ts';
import { parseTimelineHistory } from '../../../../src/core/wal/timeline-history.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';

const SEG = 16 * 1024 * 1024;
const none = { complete: [], partial: [], history: [] };
const base: StartInputs = { local: none, slot: undefined, lastStored: undefined, server: { lsn: 0x9123456n, timeline: 1 }, segmentSize: SEG };

describe('chooseStart', () => {
  const cases: Array<[string, Partial<StartInputs>, { lsn: bigint; timeline: number; source: string; abandonedPartials: string[] }]> = [
    ['nothing known: the server\'s current segment', {}, { lsn: 0x9000000n, timeline: 1, source: 'server', abandonedPartials: [] }],
    ['a slot: its restart_lsn, rounded down to the segment', { slot: { lsn: 0x4abcdefn, timeline: 1 } }, { lsn: 0x4000000n, timeline: 1, source: 'slot', abandonedPartials: [] }],
    ['a slot on an older timeline keeps that timeline', { slot: { lsn: 0x4abcdefn, timeline: 2 }, server: { lsn: 0x9000000n, timeline: 3 } }, { lsn: 0x4000000n, timeline: 2, source: 'slot', abandonedPartials: [] }],
    ['the store: right after its last segment', { lastStored: '000000010000000000000006' }, { lsn: 0x7000000n, timeline: 1, source: 'store', abandonedPartials: [] }],
    ['the store already at the server: the server', { lastStored: '000000010000000000000009' }, { lsn: 0x9000000n, timeline: 1, source: 'server', abandonedPartials: [] }],
    ['a local partial: its segment again from the start', { local: { ...none, partial: ['000000010000000000000005'] }, slot: { lsn: 0x3000000n, timeline: 1 } },
      { lsn: 0x5000000n, timeline: 1, source: 'local', abandonedPartials: [] }],
    ['local complete segments not yet stored: after the last', { local: { ...none, complete: ['000000010000000000000004', '000000010000000000000005'] } },
      { lsn: 0x6000000n, timeline: 1, source: 'local', abandonedPartials: [] }],
    ['a complete segment and the next one\'s partial: the partial', { local: { ...none, complete: ['000000010000000000000005'], partial: ['000000010000000000000006'] } },
      { lsn: 0x6000000n, timeline: 1, source: 'local', abandonedPartials: [] }],
    ['an old timeline\'s partial beside the new timeline\'s: continue the new, keep the old',
      { local: { ...none, partial: ['000000010000000000000005', '000000020000000000000005'] } },
      { lsn: 0x5000000n, timeline: 2, source: 'local', abandonedPartials: ['000000010000000000000005'] }],
  ];
  for (const [what, inputs, expected] of cases) {
    it(what, () => assert.deepEqual(chooseStart({ ...base, ...inputs }), expected));
  }
});

describe('followServerHistory', () => {
  // Timeline 3 forked from 1 at 0/5000100, then from 2 at 0/8000000.
  const history = parseTimelineHistory('1\t0/5000100\tno recovery target specified\n2\t0/8000000\tno recovery target specified\n', 3);

  it('leaves a start on the server\'s timeline alone', () => {
    assert.deepEqual(followServerHistory({ lsn: 0x9000000n, timeline: 3 }, 3, history, SEG), { lsn: 0x9000000n, timeline: 3 });
  });

  it('keeps a start on an older timeline up to where the history left it', () => {
    assert.deepEqual(followServerHistory({ lsn: 0x5000000n, timeline: 1 }, 3, history, SEG), { lsn: 0x5000000n, timeline: 1 });
    assert.deepEqual(followServerHistory({ lsn: 0x8000000n, timeline: 2 }, 3, history, SEG), { lsn: 0x8000000n, timeline: 2 });
  });

  it('moves a start past the fork to the next timeline, at the fork\'s segment', () => {
    const check = followServerHistory({ lsn: 0x6000000n, timeline: 1 }, 3, history, SEG);
    assert.deepEqual(check, { lsn: 0x5000000n, timeline: 2, forkedAt: 0x5000100n });
    assert.match(describeFork({ lsn: 0x6000000n, timeline: 1 }, check), /timeline 1 goes past 0\/5000100.*timeline 2 from 0\/5000000/);
  });

  it('refuses a timeline the server has never had, and a server behind us', () => {
    assert.throws(() => followServerHistory({ lsn: 0x5000000n, timeline: 4 }, 3, history, SEG), (e: unknown) => e instanceof CloudbarmanError && /older server/.test(e.hint ?? ''));
    const other = parseTimelineHistory('5\t0/5000100\tx\n', 6);
    assert.throws(() => followServerHistory({ lsn: 0x5000000n, timeline: 1 }, 6, other, SEG), /not in the history/);
    assert.throws(() => followServerHistory({ lsn: 0x5000000n, timeline: 1 }, 2, undefined, SEG), /not in the history/);
  });
});
