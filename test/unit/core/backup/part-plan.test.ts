// The part planner: pure, so checked with tables and with every byte of random inputs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LAST_FILE, planParts, type PlanFile, type PlannedPart } from '../../../../src/core/backup/part-plan.ts';

const MiB = 1024 * 1024;

/** Every byte of every file is planned exactly once, in file order, with no part over the limit. */
function assertCovers(files: readonly PlanFile[], parts: readonly PlannedPart[], partSize: number): void {
  const next = new Map<number, number>();
  parts.forEach((part, i) => {
    assert.equal(part.index, i, 'parts are numbered in order');
    assert.ok(part.rawSize <= partSize, `part ${i} holds ${part.rawSize} > ${partSize}`);
    assert.equal(part.rawSize, part.chunks.reduce((s, c) => s + c.length, 0));
    assert.ok(part.chunks.length > 0, `part ${i} is empty`);
    for (const c of part.chunks) {
      assert.ok(c.length > 0);
      assert.equal(c.fileOffset, next.get(c.file) ?? 0, `file ${c.file} continues where it stopped`);
      next.set(c.file, c.fileOffset + c.length);
      assert.equal(c.last, c.fileOffset + c.length === files[c.file]?.size);
    }
  });
  files.forEach((f, i) => {
    if (f.path !== LAST_FILE) assert.equal(next.get(i) ?? 0, f.size, `${f.path} fully planned`);
  });
}

describe('planParts', () => {
  it('packs small files together up to the part size', () => {
    const files = [{ path: 'a', size: 3 }, { path: 'b', size: 4 }, { path: 'c', size: 5 }];
    const plan = planParts(files, 8);
    assert.deepEqual(plan.parts.map((p) => p.chunks.map((c) => [c.file, c.fileOffset, c.length])), [
      [[0, 0, 3], [1, 0, 4], [2, 0, 1]],
      [[2, 1, 4]],
    ]);
    assert.equal(plan.totalBytes, 12);
    assert.equal(plan.finalPart, undefined);
  });

  it('splits a large file into chunks across parts of exactly the part size', () => {
    const files = [{ path: 'base/5/16384', size: 2.5 * 32 * MiB }];
    const plan = planParts(files, 32 * MiB);
    assert.deepEqual(plan.parts.map((p) => p.rawSize), [32 * MiB, 32 * MiB, 16 * MiB]);
    assert.deepEqual(plan.parts.map((p) => p.chunks[0]?.fileOffset), [0, 32 * MiB, 64 * MiB]);
    assert.deepEqual(plan.parts.map((p) => p.chunks[0]?.last), [false, false, true]);
  });

  it('puts pg_control alone in a final part numbered after all others', () => {
    const files = [{ path: 'PG_VERSION', size: 3 }, { path: LAST_FILE, size: 8192 }, { path: 'global/1260', size: 10 }];
    const plan = planParts(files, 16);
    assert.ok(plan.parts.every((p) => p.chunks.every((c) => c.file !== 1)), 'pg_control is in no ordinary part');
    assert.equal(plan.finalPart?.index, plan.parts.length);
    assert.deepEqual(plan.finalPart?.chunks, [{ file: 1, fileOffset: 0, length: 8192, last: true }]);
    assert.equal(plan.totalBytes, 3 + 8192 + 10);
  });

  it('gives empty files no chunk and makes no empty part', () => {
    const plan = planParts([{ path: 'e1', size: 0 }, { path: 'x', size: 8 }, { path: 'e2', size: 0 }], 8);
    assert.equal(plan.parts.length, 1);
    assert.deepEqual(plan.parts[0]?.chunks.map((c) => c.file), [1]);
  });

  it('plans no part for a directory of empty files', () => {
    assert.deepEqual(planParts([{ path: 'e', size: 0 }], 8).parts, []);
  });

  it('rejects a part size that is not a positive integer', () => {
    assert.throws(() => planParts([], 0), RangeError);
    assert.throws(() => planParts([], 1.5), RangeError);
  });

  it('covers every byte once and bounds every part, for random file sets', () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const partSize = 1 + random(100);
      const files: PlanFile[] = Array.from({ length: random(30) }, (_, i) => ({ path: `f${i}`, size: random(4) === 0 ? 0 : random(350) }));
      if (random(2) === 0) files.splice(random(files.length + 1), 0, { path: LAST_FILE, size: 1 + random(20) });
      const plan = planParts(files, partSize);
      assertCovers(files, plan.parts, partSize);
      // Parts are filled: all but the last are full, so the count is the minimum possible.
      plan.parts.slice(0, -1).forEach((p) => assert.equal(p.rawSize, partSize));
      const total = files.reduce((s, f) => s + f.size, 0);
      assert.equal(plan.totalBytes, total);
    }
  });
});
