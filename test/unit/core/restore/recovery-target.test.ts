// Parsing of the --target-* options: timestamps with their zones, LSNs, xids, timelines, actions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatTimestamp, parseLsn, parseRecoveryTarget, parseTargetAction, parseTargetTimeline, parseTimestamp,
} from '../../../../src/core/restore/recovery-target.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';

const TIMES: ReadonlyArray<readonly [string, string, string]> = [
  // input, ISO UTC instant, text given to PostgreSQL
  ['2026-11-22 10:41:07+01', '2026-11-22T09:41:07.000Z', '2026-11-22 10:41:07+01:00'],
  ['2026-11-22T09:41:07Z', '2026-11-22T09:41:07.000Z', '2026-11-22 09:41:07+00:00'],
  ['2026-11-22 09:41:07.123456+00', '2026-11-22T09:41:07.123456Z', '2026-11-22 09:41:07.123456+00:00'],
  ['2026-11-22 09:41:07.1234567-0230', '2026-11-22T12:11:07.123456Z', '2026-11-22 09:41:07.123456-02:30'],
  ['2026-11-22 09:41', '2026-11-22T09:41:00.000Z', '2026-11-22 09:41:00+00:00'],
  ['2026-11-22 09:41:07 UTC', '2026-11-22T09:41:07.000Z', '2026-11-22 09:41:07+00:00'],
];

for (const [input, iso, pg] of TIMES) {
  test(`parseTimestamp ${JSON.stringify(input)}`, () => {
    const t = parseTimestamp(input);
    assert.ok(t !== undefined);
    assert.equal(formatTimestamp(t.micros), iso);
    assert.equal(t.text, pg);
  });
}

test('parseTimestamp marks a time without a zone as assumed UTC', () => {
  assert.equal(parseTimestamp('2026-11-22 09:41:07')?.assumedUtc, true);
  assert.equal(parseTimestamp('2026-11-22 09:41:07Z')?.assumedUtc, false);
});

test('parseTimestamp refuses what is not a real instant', () => {
  for (const bad of ['2026-02-30 00:00:00', '2026-13-01 00:00', '2026-11-22 24:00:00', 'yesterday', '2026-11-22', '2026-11-22 09:41:07+16', '']) {
    assert.equal(parseTimestamp(bad), undefined, bad);
  }
});

test('parseLsn compares numerically', () => {
  assert.equal(parseLsn('0/0'), 0n);
  assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xB374D848n);
  assert.ok((parseLsn('1/0') ?? 0n) > (parseLsn('0/FFFFFFFF') ?? 0n));
  assert.equal(parseLsn('0/1FFFFFFFF'), undefined);
  assert.equal(parseLsn('0-1'), undefined);
});

test('parseRecoveryTarget: each kind, and none', () => {
  assert.equal(parseRecoveryTarget({}), undefined);
  assert.deepEqual(parseRecoveryTarget({ immediate: true }), { kind: 'immediate' });
  assert.deepEqual(parseRecoveryTarget({ xid: ' 1234 ' }), { kind: 'xid', xid: '1234' });
  assert.deepEqual(parseRecoveryTarget({ lsn: '0/3000060' }), { kind: 'lsn', lsn: '0/3000060' });
  assert.deepEqual(parseRecoveryTarget({ lsn: 'a/bc' }), { kind: 'lsn', lsn: 'A/BC' });
  assert.deepEqual(parseRecoveryTarget({ name: "it's done" }), { kind: 'name', name: "it's done" });
  const time = parseRecoveryTarget({ time: '2026-11-22 10:41:07+01' });
  assert.equal(time?.kind, 'time');
});

test('parseRecoveryTarget refuses two targets and malformed values, as bad input naming the flag', () => {
  const cases: ReadonlyArray<readonly [Parameters<typeof parseRecoveryTarget>[0], RegExp]> = [
    [{ time: '2026-11-22 10:41:07', xid: '5' }, /only one recovery target.*--target-time and --target-xid/],
    [{ lsn: '0/1', immediate: true }, /--target-lsn and --target-immediate/],
    [{ time: 'noon' }, /--target-time "noon" is not a timestamp/],
    [{ xid: '-3' }, /--target-xid "-3" is not a transaction id/],
    [{ xid: '99999999999999999999' }, /is not a transaction id/],
    [{ lsn: '3000060' }, /--target-lsn "3000060" is not an LSN/],
    [{ name: '' }, /--target-name "" is not a restore point name/],
    [{ name: 'a\nb' }, /is not a restore point name/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => parseRecoveryTarget(options), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && message.test(err.message));
  }
  // --target-immediate given as false (commander's negation) is no target.
  assert.equal(parseRecoveryTarget({ immediate: false }), undefined);
});

test('parseTargetTimeline and parseTargetAction', () => {
  assert.equal(parseTargetTimeline('latest'), 'latest');
  assert.equal(parseTargetTimeline('CURRENT'), 'current');
  assert.equal(parseTargetTimeline('3'), 3);
  for (const bad of ['0', '-1', '0x3', 'newest', '4294967296']) {
    assert.throws(() => parseTargetTimeline(bad), /is not a timeline/, bad);
  }
  assert.equal(parseTargetAction('promote'), 'promote');
  assert.throws(() => parseTargetAction('resume'), /is not pause, promote or shutdown/);
});
