// The segment writer on a real temporary directory, with 1 MiB segments (the smallest initdb allows).
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SegmentWriter, scanLocalWal } from '../../../../src/core/wal/receive-wal-segments.ts';

const SEG = 1024 * 1024;
const TL1 = 1;
let dir: string;

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cb-rwseg-')); });
afterEach(() => rm(dir, { recursive: true, force: true }));

function writer(done: string[] = []): SegmentWriter {
  return new SegmentWriter(dir, SEG, (name) => { done.push(name); });
}

describe('SegmentWriter', () => {
  it('writes WAL at its offsets, across segment boundaries, and renames each complete segment', async () => {
    const done: string[] = [];
    const w = writer(done);
    const start = 16n * BigInt(SEG); // 0/1000000: segment 000000010000000000000010
    await w.begin(start, TL1);
    const wal = randomBytes(2 * SEG + 1000);
    let at = 0;
    for (const size of [700_000, 700_000, 697_152, 1000]) {
      await w.write(start + BigInt(at), wal.subarray(at, at + size));
      at += size;
    }
    assert.deepEqual(done, ['000000010000000000000010', '000000010000000000000011']);
    assert.ok((await readFile(join(dir, '000000010000000000000010'))).equals(wal.subarray(0, SEG)));
    assert.ok((await readFile(join(dir, '000000010000000000000011'))).equals(wal.subarray(SEG, 2 * SEG)));
    const partial = join(dir, '000000010000000000000012.partial');
    assert.equal((await stat(partial)).size, SEG, 'a .partial has the full segment size');
    assert.ok((await readFile(partial)).subarray(0, 1000).equals(wal.subarray(2 * SEG)));
    assert.equal(w.written, start + BigInt(wal.length));
    assert.equal(w.flushed, start + 2n * BigInt(SEG), 'complete segments are fsynced');
    assert.equal(await w.flush(), w.written);
    assert.deepEqual(w.current, { name: '000000010000000000000012', path: partial, timeline: 1, start: start + 2n * BigInt(SEG), written: w.written });
    await w.close();
  });

  it('refuses WAL that does not start where the last ended', async () => {
    const w = writer();
    await w.begin(0n, TL1);
    await w.write(0n, Buffer.alloc(100));
    await assert.rejects(w.write(200n, Buffer.alloc(10)), /sent WAL at 0\/C8, expected 0\/64/);
    await w.close();
  });

  it('continues inside the open segment after a reconnect, and reports a segment it leaves unfinished', async () => {
    const w = writer();
    await w.begin(0n, TL1);
    await w.write(0n, Buffer.alloc(100, 1));
    assert.equal(await w.begin(60n, TL1), undefined, 'same segment: writing continues');
    await w.write(60n, Buffer.alloc(40, 2));
    const closed = await w.begin(5n * BigInt(SEG), TL1);
    assert.deepEqual(closed && { name: closed.name, written: closed.written }, { name: '000000010000000000000000', written: 100n });
    const bytes = await readFile(join(dir, '000000010000000000000000.partial'));
    assert.ok(bytes.subarray(0, 60).equals(Buffer.alloc(60, 1)) && bytes.subarray(60, 100).equals(Buffer.alloc(40, 2)));
    await w.write(5n * BigInt(SEG), Buffer.alloc(10));
    const ended = await w.endTimeline();
    assert.equal(ended?.name, '000000010000000000000005');
    assert.equal(ended?.written, 5n * BigInt(SEG) + 10n);
    await w.begin(5n * BigInt(SEG), 2);
    await w.write(5n * BigInt(SEG), Buffer.alloc(10));
    assert.equal(w.current?.name, '000000020000000000000005');
    await w.close();
  });

  it('reuses a .partial left by an earlier run, rewriting it from the segment start', async () => {
    await writeFile(join(dir, '000000010000000000000003.partial'), Buffer.alloc(1000, 7));
    const w = writer();
    await w.begin(3n * BigInt(SEG), TL1);
    await w.write(3n * BigInt(SEG), Buffer.alloc(10, 9));
    await w.close();
    const bytes = await readFile(join(dir, '000000010000000000000003.partial'));
    assert.equal(bytes.length, SEG);
    assert.ok(bytes.subarray(0, 10).equals(Buffer.alloc(10, 9)));
  });
});

describe('scanLocalWal', () => {
  it('lists what is left in WAL order and removes temporary files', async () => {
    for (const name of ['000000020000000000000005.partial', '000000010000000000000005.partial', '000000010000000000000004', '000000010000000000000003',
      '00000002.history', '.000000010000000000000006.tmp-1-abcd', 'receive-wal.json', 'receive-wal.lock']) {
      await writeFile(join(dir, name), '');
    }
    assert.deepEqual(await scanLocalWal(dir), {
      complete: ['000000010000000000000003', '000000010000000000000004'],
      partial: ['000000010000000000000005', '000000020000000000000005'],
      history: ['00000002.history'],
    });
    assert.ok(!(await readdir(dir)).some((n) => n.startsWith('.')));
  });
});
