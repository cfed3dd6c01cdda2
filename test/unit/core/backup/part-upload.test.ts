// Parts built from real files and stored in the real local provider: each codec's parts decompress to
// the planned bytes, chunk hashes match, and files that shrink or vanish mid-backup are handled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { decompressPart, type BackupCodec } from '../../../../src/io/compression.ts';
import { PartWorkers } from '../../../../src/io/part-workers.ts';
import { planParts } from '../../../../src/core/backup/part-plan.ts';
import { uploadParts, type PartContext, type PartOutcome } from '../../../../src/core/backup/part-upload.ts';
import { PART_META } from '../../../../src/core/catalog/backup-info.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger } from '../../../../src/core/log.ts';

let dir: string;
let store: LocalObjectStore;
let pool: PartWorkers;
before(async () => {
  pool = new PartWorkers(2);
  dir = await mkdtemp(join(tmpdir(), 'cb-parts-'));
  await mkdir(join(dir, 'store'));
  await mkdir(join(dir, 'files'));
  store = new LocalObjectStore(pathToFileURL(join(dir, 'store')).href);
});
after(async () => {
  await pool.close();
  await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function makeFiles(name: string, contents: Buffer[]): Promise<Array<{ path: string; absolutePath: string; size: number }>> {
  await mkdir(join(dir, 'files', name));
  return Promise.all(contents.map(async (c, i) => {
    const absolutePath = join(dir, 'files', name, `f${i}`);
    await writeFile(absolutePath, c);
    return { path: `base/1/f${i}`, absolutePath, size: c.length };
  }));
}

function context(codec: BackupCodec, files: PartContext['files'], prefix: string, signal = new AbortController().signal): PartContext {
  return { files, store, prefix, codec, hash: pool.digest, lz4: pool.lz4, signal, log: silentLogger };
}

async function readPart(key: string, codec: BackupCodec): Promise<{ raw: Buffer; stored: Buffer; metadata: Record<string, string> }> {
  const { body, info } = await store.get(key);
  const stored = await buffer(body);
  return { raw: await decompressPart(stored, codec), stored, metadata: info.metadata ?? {} };
}

for (const codec of ['none', 'gzip', 'lz4', 'zstd'] as const) {
  test(`${codec}: every part decompresses to its chunks, which match the files`, async () => {
    // Compressible and random content, one file split over three parts.
    const contents = [Buffer.alloc(3000, 1), randomBytes(10_000), Buffer.from('small'), Buffer.alloc(0), randomBytes(2500)];
    const files = await makeFiles(codec, contents);
    const plan = planParts(files, 4096);
    const outcomes: PartOutcome[] = [];
    await uploadParts(plan.parts, 3, context(codec, files, `srv/base/${codec}/`), (o) => outcomes.push(o));
    assert.equal(outcomes.length, plan.parts.length);
    for (const o of outcomes) {
      assert.match(o.part.name, new RegExp(`^data/\\d{6}${codec === 'none' ? '' : `\\.${codec === 'gzip' ? 'gz' : codec === 'zstd' ? 'zst' : 'lz4'}`}$`));
      const { raw, stored, metadata } = await readPart(`srv/base/${codec}/${o.part.name}`, codec);
      assert.equal(raw.length, o.part.rawSize);
      assert.equal(stored.length, o.part.storedSize);
      assert.equal(sha(stored), o.part.sha256);
      assert.equal(metadata[PART_META.sha256], o.part.sha256);
      assert.equal(metadata[PART_META.compression], codec);
      assert.equal(metadata[PART_META.rawSize], String(o.part.rawSize));
      for (const c of o.chunks) {
        const bytes = raw.subarray(c.partOffset, c.partOffset + c.length);
        assert.equal(sha(bytes), c.sha256);
        assert.ok(bytes.equals(contents[c.file]?.subarray(c.fileOffset, c.fileOffset + c.length) ?? Buffer.alloc(0)), `chunk of f${c.file} at ${c.fileOffset}`);
      }
    }
    if (codec !== 'none') {
      const first = outcomes.find((o) => o.index === 0);
      assert.ok((first?.part.storedSize ?? 0) < (first?.part.rawSize ?? 0), 'the run of ones compresses');
    }
  });
}

test('a file that shrinks after planning: its last chunk records what was read, earlier chunks are zero-padded', async () => {
  const contents = [randomBytes(100), randomBytes(1000), randomBytes(100)];
  const files = await makeFiles('shrink', contents);
  const plan = planParts(files, 400); // f1 spans parts 0..3
  await truncate(files[1]?.absolutePath ?? '', 500); // now ends inside its second chunk
  await truncate(files[2]?.absolutePath ?? '', 40);
  const outcomes: PartOutcome[] = [];
  await uploadParts(plan.parts, 2, context('zstd', files, 'srv/base/shrink/'), (o) => outcomes.push(o));
  const chunks = outcomes.flatMap((o) => o.chunks.map((c) => ({ ...c, part: o.index }))).sort((a, b) => a.file - b.file || a.fileOffset - b.fileOffset);
  const f1 = chunks.filter((c) => c.file === 1);
  // Planned: [0,300) [300,700) [700,1000). Read: 300, 200 of 400 (padded to 400: not the last chunk), 0 (last: nothing recorded).
  assert.deepEqual(f1.map((c) => [c.fileOffset, c.length]), [[0, 300], [300, 400]]);
  const second = f1[1];
  assert.ok(second !== undefined);
  const { raw } = await readPart(`srv/base/shrink/${outcomes.find((o) => o.index === second.part)?.part.name ?? ''}`, 'zstd');
  const bytes = raw.subarray(second.partOffset, second.partOffset + second.length);
  assert.ok(bytes.subarray(0, 200).equals(contents[1]?.subarray(300, 500) ?? Buffer.alloc(0)));
  assert.ok(bytes.subarray(200).equals(Buffer.alloc(200)), 'the missing bytes are zeros');
  assert.deepEqual(chunks.filter((c) => c.file === 2).map((c) => [c.fileOffset, c.length]), [[0, 40]], 'the last chunk is as short as the file');
  // Chunks are packed: the part holding f2 has no gap where f1's bytes did not come.
  for (const o of outcomes) {
    let at = 0;
    for (const c of o.chunks) {
      assert.equal(c.partOffset, at);
      at += c.length;
    }
    assert.equal(o.part.rawSize, at);
  }
});

test('a file that vanishes after planning is reported, not stored', async () => {
  const files = await makeFiles('vanish', [randomBytes(50), randomBytes(50)]);
  const plan = planParts(files, 1000);
  await unlink(files[0]?.absolutePath ?? '');
  const outcomes: PartOutcome[] = [];
  await uploadParts(plan.parts, 1, context('gzip', files, 'srv/base/vanish/'), (o) => outcomes.push(o));
  assert.deepEqual(outcomes[0]?.vanished, [0]);
  assert.deepEqual(outcomes[0]?.chunks.map((c) => [c.file, c.partOffset, c.length]), [[1, 0, 50]]);
  assert.equal(outcomes[0]?.part.rawSize, 50);
});

test('an abort stops the workers and rethrows its reason; no later part is stored', async () => {
  const files = await makeFiles('abort', Array.from({ length: 20 }, () => randomBytes(600)));
  const plan = planParts(files, 1000);
  const controller = new AbortController();
  const reason = new CloudbarmanError('failed', 'the backup was interrupted by SIGINT');
  const done: number[] = [];
  await assert.rejects(
    uploadParts(plan.parts, 2, context('zstd', files, 'srv/base/abort/', controller.signal), (o) => {
      done.push(o.index);
      if (done.length === 3) controller.abort(reason);
    }),
    (err: unknown) => err === reason,
  );
  assert.ok(done.length < plan.parts.length, `${done.length} of ${plan.parts.length} parts stored`);
  assert.ok(done.length <= 4, 'at most the parts already in flight finish');
});

test('a file that cannot be read fails the upload with a message naming it', async () => {
  const files = await makeFiles('unreadable', [randomBytes(10)]);
  // Replaced by a directory after planning: open succeeds, read fails (EISDIR), even for root.
  await unlink(files[0]?.absolutePath ?? '');
  await mkdir(files[0]?.absolutePath ?? '');
  await assert.rejects(uploadParts(planParts(files, 100).parts, 1, context('none', files, 'srv/base/unreadable/'), () => undefined),
    (err: unknown) => err instanceof CloudbarmanError && err.kind === 'failed' && /cannot read .*unreadable\/f0: EISDIR/.test(err.message));
});
