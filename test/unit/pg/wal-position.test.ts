// Segment arithmetic on LSNs, checked against names PostgreSQL prints (pg_walfile_name).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isValidSegmentSize, segmentFloor, segmentNameAt, segmentNumberOf, segmentStartOf } from '../../../src/pg/wal-position.ts';

const MiB = 1024 * 1024;

describe('WAL positions', () => {
  it('turns segment names into start LSNs and back', () => {
    assert.equal(segmentStartOf('000000010000000000000003', 16 * MiB), 0x3000000n);
    assert.equal(segmentStartOf('0000000200000016000000B3', 16 * MiB), 0x16b3000000n);
    assert.equal(segmentNumberOf('0000000100000001000000FF', 16 * MiB), 256n + 255n);
    assert.equal(segmentStartOf('000000010000000100000003', 64 * MiB), (1n << 32n) + 3n * 64n * 1024n * 1024n);
    for (const name of ['000000010000000000000001', '0000000A00000016000000B3', '00000001FFFFFFFF000000FF']) {
      const start = segmentStartOf(name, 16 * MiB);
      assert.equal(segmentNameAt(start, Number.parseInt(name.slice(0, 8), 16), 16 * MiB), name);
    }
  });

  it('rounds an LSN down to its segment', () => {
    assert.equal(segmentFloor(0x500fb70n, 16 * MiB), 0x5000000n);
    assert.equal(segmentFloor(0x5000000n, 16 * MiB), 0x5000000n);
    assert.equal(segmentFloor((0x16n << 32n) | 0xb374d848n, 16 * MiB), (0x16n << 32n) | 0xb3000000n);
  });

  it('knows the segment sizes initdb allows', () => {
    for (const ok of [MiB, 16 * MiB, 1024 * MiB]) assert.equal(isValidSegmentSize(ok), true);
    for (const bad of [0, 512 * 1024, 3 * MiB, 2048 * MiB, 1.5]) assert.equal(isValidSegmentSize(bad), false);
  });
});
