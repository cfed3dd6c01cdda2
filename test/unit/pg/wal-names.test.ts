import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextSegmentName, parseWalFileName } from '../../../src/pg/wal-names.ts';

test('parses every kind of file PostgreSQL archives', () => {
  assert.deepEqual(parseWalFileName('00000001000000000000000A'), { name: '00000001000000000000000A', kind: 'segment', timeline: 1, bucket: '0000000100000000' });
  assert.equal(parseWalFileName('0000000200000001000000FF.partial')?.kind, 'partial');
  assert.equal(parseWalFileName('000000010000000000000002.00000028.backup')?.kind, 'backup-history');
  const history = parseWalFileName('0000000A.history');
  assert.equal(history?.kind, 'timeline-history');
  assert.equal(history?.timeline, 10);
  assert.equal(history?.bucket, undefined);
});

test('rejects names PostgreSQL never archives', () => {
  for (const bad of ['', 'RECOVERYXLOG', '00000001000000000000000a', '0000000100000000000000', '../00000001000000000000000A', '00000001.history.gz', '00000001000000000000000A.gz']) {
    assert.equal(parseWalFileName(bad), undefined, bad);
  }
});

test('next segment wraps the segment number into the next log id', () => {
  assert.equal(nextSegmentName('000000010000000000000001'), '000000010000000000000002');
  assert.equal(nextSegmentName('0000000100000000000000FF'), '000000010000000100000000');
  assert.equal(nextSegmentName('000000010000000000000FFF', 1024 * 1024), '000000010000000100000000');
});
