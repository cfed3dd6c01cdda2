import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { randomBytes } from 'node:crypto';
import { COMPRESSIONS, EXTENSIONS, compressBuffer, compressStream, compressionFromExtension, decompressStream } from '../../../src/io/compression.ts';

const sample = Buffer.concat([randomBytes(100_000), Buffer.alloc(300_000, 7)]);

for (const codec of COMPRESSIONS) {
  test(`${codec}: buffer and stream forms round-trip`, async () => {
    const packed = await compressBuffer(sample, codec);
    const unpacked = await buffer(Readable.from([packed]).pipe(decompressStream(codec)));
    assert.ok(unpacked.equals(sample));
    const streamed = await buffer(Readable.from([sample]).pipe(compressStream(codec)));
    assert.ok((await buffer(Readable.from([streamed]).pipe(decompressStream(codec)))).equals(sample));
    if (codec !== 'none') assert.ok(packed.length < sample.length * 0.5, `${codec} should compress the zero run`);
  });
}

test('extensions map back to their codec', () => {
  for (const codec of COMPRESSIONS) {
    assert.equal(compressionFromExtension(`000000010000000000000001${EXTENSIONS[codec]}`), codec === 'none' ? undefined : codec);
  }
});
