// LSN text and the WAL segment holding an LSN, checked against values PostgreSQL itself prints.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatLsn, parseLsn, walFileNameAt } from '../../../src/pg/lsn.ts';

const MiB = 1024 * 1024;

describe('LSNs', () => {
  it('parses and prints PostgreSQL\'s form', () => {
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(formatLsn(parseLsn('16/b374d848') ?? -1n), '16/B374D848');
    assert.equal(formatLsn(0x2000028n), '0/2000028');
    for (const bad of ['', '0', '0/', '/0', '1/2/3', 'G/0', '123456789/0']) assert.equal(parseLsn(bad), undefined, bad);
  });

  it('names the segment of an LSN as PostgreSQL does', () => {
    // SELECT pg_walfile_name('16/B374D848') on timeline 1, 16 MiB segments: 0000000100000016000000B3
    assert.equal(walFileNameAt(parseLsn('16/B374D848') ?? 0n, 1, 16 * MiB), '0000000100000016000000B3');
    assert.equal(walFileNameAt(0x2000028n, 1, 16 * MiB), '000000010000000000000002');
    assert.equal(walFileNameAt(0x2000028n, 0x1a, 16 * MiB), '0000001A0000000000000002');
    assert.equal(walFileNameAt((5n << 32n) | 0xff000010n, 2, 16 * MiB), '0000000200000005000000FF');
    // Other segment sizes: 64 MiB puts 64 segments in each 4 GiB log file.
    assert.equal(walFileNameAt((1n << 32n) | 0x0c000000n, 1, 64 * MiB), '000000010000000100000003');
    assert.equal(walFileNameAt(0x40000000n, 1, MiB), '000000010000000000000400');
  });

  it('names the previous segment for an end LSN on a boundary (pg_walfile_name semantics)', () => {
    assert.equal(walFileNameAt(0x3000000n, 1, 16 * MiB, true), '000000010000000000000002');
    assert.equal(walFileNameAt(0x3000000n, 1, 16 * MiB, false), '000000010000000000000003');
    assert.equal(walFileNameAt(0x3000001n, 1, 16 * MiB, true), '000000010000000000000003');
    assert.equal(walFileNameAt(1n << 32n, 1, 16 * MiB, true), '0000000100000000000000FF');
  });
});
