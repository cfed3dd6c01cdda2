// synchronous_standby_names as PostgreSQL's syncrep grammar reads it, and whether it names receive-wal.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { namesSynchronousStandby, parseSynchronousStandbyNames } from '../../../src/pg/synchronous-standby-names.ts';

describe('synchronous_standby_names', () => {
  it('parses every form of the grammar', () => {
    assert.deepEqual(parseSynchronousStandbyNames(''), { method: 'first', count: 0, names: [] });
    assert.deepEqual(parseSynchronousStandbyNames('a, b'), { method: 'first', count: 1, names: ['a', 'b'] });
    assert.deepEqual(parseSynchronousStandbyNames('2 (a, b, c)'), { method: 'first', count: 2, names: ['a', 'b', 'c'] });
    assert.deepEqual(parseSynchronousStandbyNames('FIRST 1 (s1, s2)'), { method: 'first', count: 1, names: ['s1', 's2'] });
    assert.deepEqual(parseSynchronousStandbyNames('any 2(s1,"S 2",*)'), { method: 'any', count: 2, names: ['s1', 'S 2', '*'] });
    assert.deepEqual(parseSynchronousStandbyNames('"a""b"'), { method: 'first', count: 1, names: ['a"b'] });
  });

  it('refuses what PostgreSQL would refuse', () => {
    for (const bad of ['a,', '(a)', '"open', 'a b', 'ANY 1 ()']) assert.equal(parseSynchronousStandbyNames(bad), undefined, bad);
  });

  it('matches application_name case-insensitively, quoted or not, and "*"', () => {
    assert.equal(namesSynchronousStandby('cloudbarman_receive_wal', 'cloudbarman_receive_wal'), true);
    assert.equal(namesSynchronousStandby('ANY 1 (standby1, "CloudBarman_Receive_Wal")', 'cloudbarman_receive_wal'), true);
    assert.equal(namesSynchronousStandby('FIRST 1 (standby1, *)', 'cloudbarman_receive_wal'), true);
    assert.equal(namesSynchronousStandby('standby1, standby2', 'cloudbarman_receive_wal'), false);
    assert.equal(namesSynchronousStandby('', 'cloudbarman_receive_wal'), false);
    assert.equal(namesSynchronousStandby('0 (cloudbarman_receive_wal)', 'cloudbarman_receive_wal'), false);
  });
});
