// The part workers: SHA-256 and LZ4 off the main thread give what the main thread would, and close cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PartWorkers, hashOnThisThread, sharedBuffer } from '../../../src/io/part-workers.ts';
import { Sha256Pool } from '../../../src/io/sha256-pool.ts';
import { lz4DecodeFrames, lz4EncodeFrame, lz4FrameBound } from '../../../src/io/lz4.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

test('digests ranges of shared memory (on a worker) and of an ordinary buffer or a view into one (here), as the main thread would', async () => {
  const workers = new PartWorkers(2);
  try {
    const shared = sharedBuffer(1 << 20);
    randomBytes(1 << 20).copy(shared);
    const ranges = [{ offset: 0, length: 10 }, { offset: 10, length: 500_000 }, { offset: 1000, length: 0 }, { offset: (1 << 20) - 7, length: 7 }];
    assert.deepEqual(await workers.digest(shared, ranges), ranges.map((r) => sha(shared.subarray(r.offset, r.offset + r.length))));
    assert.deepEqual(await hashOnThisThread(shared, ranges), await workers.digest(shared, ranges));
    const view = shared.subarray(4096, 8192); // shared memory at an offset
    assert.deepEqual(await workers.digest(view, [{ offset: 5, length: 10 }]), [sha(view.subarray(5, 15))]);
    const plain = randomBytes(4096).subarray(100, 3000);
    assert.deepEqual(await workers.digest(plain, [{ offset: 0, length: plain.length }]), [sha(plain)]);
    // More requests than threads queue, and all complete.
    const many = await Promise.all(Array.from({ length: 9 }, (_, i) => workers.digest(shared, [{ offset: i, length: 1000 }])));
    assert.deepEqual(many.map(([d]) => d), Array.from({ length: 9 }, (_, i) => sha(shared.subarray(i, i + 1000))));
  } finally {
    await workers.close();
  }
});

test('compresses LZ4 frames on a worker exactly as on this thread', async () => {
  const workers = new PartWorkers(1);
  try {
    const shared = sharedBuffer(300_000);
    for (let i = 0; i < shared.length; i += 100) shared.write(`row ${i % 700} `, i);
    const part = shared.subarray(1000, 250_000);
    const into = sharedBuffer(lz4FrameBound(part.length) + 10);
    const frame = await workers.lz4(part, into);
    assert.equal(frame.buffer, into.buffer, 'the frame is written into the caller\'s buffer');
    assert.deepEqual(Buffer.from(frame), Buffer.from(lz4EncodeFrame(part)));
    const here = await workers.lz4(Buffer.from(part), new Uint8Array(lz4FrameBound(part.length)));
    assert.deepEqual(Buffer.from(here), Buffer.from(frame), 'ordinary memory is compressed on this thread, alike');
    assert.equal(sha(lz4DecodeFrames(frame)), sha(part));
    assert.ok(frame.length < part.length / 4);
  } finally {
    await workers.close();
  }
});

test('closed workers refuse work; the Sha256Pool name is the same class', async () => {
  const workers = new Sha256Pool(1);
  assert.ok(workers instanceof PartWorkers);
  await workers.close();
  await assert.rejects(workers.digest(sharedBuffer(1), [{ offset: 0, length: 1 }]), /closed/);
});
