import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_CLEANUP_GRACE_MS, KEEP_FORMAT_VERSION, decodeKeepAnnotation, encodeKeepAnnotation, formatRetentionRules, keepAnnotation,
  keepStatus, parseKeepCount, parseKeepTarget, retentionRules,
} from '../../../../src/core/retention/retention-policy.ts';

test('keep counts are whole numbers, 0 or more, with a problem that says why not', () => {
  const table: Array<[string, number | RegExp]> = [
    ['0', 0],
    ['7', 7],
    [' 12 ', 12],
    ['-1', /is negative: a keep count is 0 or more/],
    ['1.5', /is not a whole number/],
    ['seven', /is not a whole number/],
    ['', /is not a whole number/],
    ['99999999999999999999', /is too large/],
  ];
  for (const [text, expected] of table) {
    const parsed = parseKeepCount(text);
    if (typeof expected === 'number') {
      assert.deepEqual(parsed, { ok: true, value: expected }, text);
    } else {
      assert.equal(parsed.ok, false, text);
      if (!parsed.ok) {
        assert.match(parsed.problem, expected, text);
        assert.match(parsed.hint ?? '', /0 turns this rule off/, text);
      }
    }
  }
});

test('rules default to no minimum, no GFS and a one-day grace, and print in the config file\'s words', () => {
  const rules = retentionRules({ kind: 'redundancy', count: 3 });
  assert.deepEqual(rules, {
    retentionPolicy: { kind: 'redundancy', count: 3 }, minimumRedundancy: 0, walRetentionPolicy: 'main',
    keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepYearly: 0, cleanupGraceMs: DEFAULT_CLEANUP_GRACE_MS,
  });
  assert.equal(DEFAULT_CLEANUP_GRACE_MS, 86_400_000);
  assert.equal(formatRetentionRules(rules), 'REDUNDANCY 3');
  assert.equal(
    formatRetentionRules(retentionRules({ kind: 'recovery-window', count: 7, unit: 'days' }, { minimumRedundancy: 2, keepDaily: 7, keepYearly: 3 })),
    'RECOVERY WINDOW OF 7 DAYS, minimum_redundancy 2, keep_daily 7, keep_yearly 3',
  );
});

test('a keep annotation is a small JSON document that reads back as written', () => {
  const annotation = keepAnnotation('standalone', new Date('2026-03-31T12:00:00Z'));
  assert.deepEqual(annotation, { format_version: KEEP_FORMAT_VERSION, target: 'standalone', set_at: '2026-03-31T12:00:00.000Z' });
  const body = encodeKeepAnnotation(annotation);
  assert.equal(body, '{"format_version":1,"target":"standalone","set_at":"2026-03-31T12:00:00.000Z"}\n');
  assert.deepEqual(decodeKeepAnnotation(body), { ok: true, value: annotation });
});

test('Barman\'s bare-word annotation is read too, without a time', () => {
  assert.deepEqual(decodeKeepAnnotation('full'), { ok: true, value: { format_version: 1, target: 'full', set_at: null } });
  assert.deepEqual(decodeKeepAnnotation('standalone\n'), { ok: true, value: { format_version: 1, target: 'standalone', set_at: null } });
});

test('damaged or unknown annotations are refused with a reason', () => {
  const table: Array<[string, RegExp]> = [
    ['keep me', /is neither JSON nor a keep target/],
    ['[1]', /is not a JSON object/],
    ['null', /is not a JSON object/],
    ['{"format_version":2,"target":"full","set_at":null}', /format_version 2, which this version does not know/],
    ['{"target":"full","set_at":null}', /format_version undefined/],
    ['{"format_version":1,"target":"forever","set_at":null}', /target "forever", not full or standalone/],
    ['{"format_version":1,"target":"full","set_at":"yesterday"}', /set_at "yesterday", which is not an ISO 8601 time/],
    ['{"format_version":1,"target":"full"}', /set_at undefined/],
  ];
  for (const [body, problem] of table) {
    const decoded = decodeKeepAnnotation(body);
    assert.equal(decoded.ok, false, body);
    if (!decoded.ok) assert.match(decoded.problem, problem, body);
  }
});

test('--target takes full or standalone, and --status says nokeep without an annotation', () => {
  assert.deepEqual(parseKeepTarget('FULL'), { ok: true, value: 'full' });
  assert.deepEqual(parseKeepTarget('standalone'), { ok: true, value: 'standalone' });
  assert.deepEqual(parseKeepTarget('forever'), { ok: false, problem: 'is not a keep target', hint: 'use full or standalone' });
  assert.equal(keepStatus(undefined), 'nokeep');
  assert.equal(keepStatus(keepAnnotation('full', new Date(0))), 'full');
});
