// compressPart / decompressPart for every backup codec, with and without a reused PartOutput.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BACKUP_CODECS, BACKUP_EXTENSIONS, PartOutput, compressPart, compressedBound, decompressPart, isBackupCodec } from '../../../src/io/compression.ts';

const sample = Buffer.concat([randomBytes(200_000), Buffer.alloc(600_000, 9), Buffer.from('the end')]);

for (const codec of BACKUP_CODECS) {
  test(`${codec}: a part round-trips, into fresh memory and into a reused output`, async () => {
    const fresh = await compressPart(sample, codec);
    assert.ok(Buffer.from(await decompressPart(fresh, codec)).equals(sample));
    const output = new PartOutput(1024, compressedBound(sample.length));
    const first = Buffer.from(await compressPart(sample, codec, { output }));
    assert.ok(Buffer.from(await decompressPart(first, codec)).equals(sample));
    const other = randomBytes(5000);
    const second = await compressPart(other, codec, { output });
    assert.ok(Buffer.from(await decompressPart(second, codec)).equals(other), 'the output is reused from its start');
    if (codec !== 'none') assert.ok(fresh.length < sample.length * 0.5);
  });
}

test('PartOutput grows by doubling up to its usual maximum, and past it only as far as needed', () => {
  const output = new PartOutput(4, 10);
  output.write(Buffer.from('abc'));
  output.write(Buffer.from('defgh')); // 8 > 4: doubles to 8
  output.write(Buffer.from('ij')); // 10 > 8: min(16, 10) = 10
  output.write(Buffer.from('klm')); // 13 > 10: exactly 13
  assert.equal(Buffer.from(output.view()).toString(), 'abcdefghijklm');
  output.reset();
  output.write(Buffer.from('z'));
  assert.equal(Buffer.from(output.view()).toString(), 'z');
});

test('backup codecs have their extensions and are recognised', () => {
  assert.deepEqual(BACKUP_EXTENSIONS, { none: '', gzip: '.gz', lz4: '.lz4', zstd: '.zst' });
  assert.ok(BACKUP_CODECS.every(isBackupCodec));
  assert.equal(isBackupCodec('bzip2'), false);
});
