// Putting the manifest together from parts that completed in any order.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EMPTY_SHA256, assembleManifest, type AssemblyFile } from '../../../../src/core/backup/manifest-assembly.ts';
import type { PartOutcome } from '../../../../src/core/backup/part-upload.ts';

const mtime = new Date('2026-11-22T00:00:00Z');
const files: AssemblyFile[] = [
  { path: 'z/big', mode: 0o600, mtime },
  { path: 'a/small', mode: 0o640, mtime },
  { path: 'a/empty', mode: 0o600, mtime },
  { path: 'a/gone', mode: 0o600, mtime },
];
const part = (index: number): PartOutcome['part'] => ({ name: `data/00000${index}.zst`, rawSize: 10, storedSize: 5, sha256: `p${index}` });
const outcomes: PartOutcome[] = [
  { index: 1, part: part(1), chunks: [{ file: 0, fileOffset: 6, length: 4, partOffset: 0, sha256: 'c2' }], vanished: [] },
  { index: 0, part: part(0), chunks: [{ file: 1, fileOffset: 0, length: 4, partOffset: 0, sha256: 's1' }, { file: 0, fileOffset: 0, length: 6, partOffset: 4, sha256: 'c1' }], vanished: [3] },
];

describe('assembleManifest', () => {
  const m = assembleManifest({ backupId: '20261122T000000Z', compression: 'zstd', files, directories: [{ path: 'z', mode: 0o700 }, { path: 'a', mode: 0o700 }], outcomes });

  it('orders parts by number and files and directories by path', () => {
    assert.deepEqual(m.parts.map((p) => p.name), ['data/000000.zst', 'data/000001.zst']);
    assert.deepEqual(m.files.map((f) => f.path), ['a/empty', 'a/small', 'z/big']);
    assert.deepEqual(m.directories.map((d) => d.path), ['a', 'z']);
    assert.equal(m.format_version, 1);
    assert.equal(m.backup_id, '20261122T000000Z');
  });

  it('joins a split file\'s chunks in file order and leaves out its whole-file hash', () => {
    const big = m.files.find((f) => f.path === 'z/big');
    assert.deepEqual(big?.chunks, [
      { part: 0, partOffset: 4, fileOffset: 0, length: 6, sha256: 'c1' },
      { part: 1, partOffset: 0, fileOffset: 6, length: 4, sha256: 'c2' },
    ]);
    assert.equal(big?.size, 10);
    assert.equal(big?.sha256, undefined);
  });

  it('gives one-chunk and empty files their whole-file hash', () => {
    assert.equal(m.files.find((f) => f.path === 'a/small')?.sha256, 's1');
    const empty = m.files.find((f) => f.path === 'a/empty');
    assert.equal(empty?.sha256, EMPTY_SHA256);
    assert.equal(empty?.size, 0);
    assert.deepEqual(empty?.chunks, []);
    assert.equal(m.files.find((f) => f.path === 'a/small')?.mtime, '2026-11-22T00:00:00.000Z');
    assert.equal(m.files.find((f) => f.path === 'a/small')?.mode, 0o640);
  });

  it('leaves out a file that vanished', () => {
    assert.equal(m.files.some((f) => f.path === 'a/gone'), false);
  });

  it('refuses a missing part or a gap in a file', () => {
    assert.throws(() => assembleManifest({ backupId: 'x', compression: 'zstd', files, directories: [], outcomes: [outcomes[0] as PartOutcome] }), /part 0 is missing/);
    const gap: PartOutcome = { index: 0, part: part(0), chunks: [{ file: 1, fileOffset: 2, length: 2, partOffset: 0, sha256: 'x' }], vanished: [] };
    assert.throws(() => assembleManifest({ backupId: 'x', compression: 'zstd', files, directories: [], outcomes: [gap] }), /a\/small has a gap/);
  });
});
