// LZ4 in TypeScript: round trips, frames written by the lz4 tool (v1.9.4), and refusal of damaged input.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { LZ4_BLOCK_SIZE, Lz4FormatError, lz4DecodeFrames, lz4EncodeFrame, xxh32 } from '../../../src/io/lz4.ts';

/** The input of the fixtures: 4000 lines "The quick brown fox jumps over the lazy dog #<i % 10>". */
function foxes(): Buffer {
  let s = '';
  for (let i = 0; i < 4000; i++) s += `The quick brown fox jumps over the lazy dog #${i % 10}\n`;
  return Buffer.from(s);
}

// lz4 -B4 -BD -BX --content-size: 64 KiB linked blocks, block checksums, content size, content checksum.
const LINKED =
  'BCJNGFxAYN4CAAAAAAAcaQEAAP8gVGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZyAjMAovABofMS8AGx8yLwAbHz' +
  'MvABsfNC8AGx81LwAbHzYvABsfNy8AGx84LwAbHzkvABsP1gH/////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '/////////////////////////////////////////////////////////+NQd24gZm8DoiYTDgEAAA/u/wgPMv////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////zVB0aGUgbBwz' +
  'QzJHAQAA9SBhenkgZG9nICM4ClRoZSBxdWljayBicm93biBmb3gganVtcHMgb3ZlciB0aGUgbC8AHzkvABsfMC8AGx8xLwAbHzIvABsfMy8AGx' +
  '80LwAbHzUvABsfNi8AGx83LwAbD9YB////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '////////////////////////////////////////////////////////////////////////////////////////////////////////9GUGcg' +
  'IzkKMfGEEwAAAABpiQKb';
// lz4 -B4 --no-frame-crc: 64 KiB independent blocks, no checksums.
const PLAIN =
  'BCJNGGBAgmkBAAD/IFRoZSBxdWljayBicm93biBmb3gganVtcHMgb3ZlciB0aGUgbGF6eSBkb2cgIzAKLwAaHzEvABsfMi8AGx8zLwAbHzQvAB' +
  'sfNS8AGx82LwAbHzcvABsfOC8AGx85LwAbD9YB////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '///////////////////////////////////////////////jUHduIGZvaQEAAP8geCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZyAjNApUaGUgcX' +
  'VpY2sgYnJvd24gZm8vAAgfNS8AGx82LwAbHzcvABsfOC8AGx85LwAbHzAvABsfMS8AGx8yLwAbHzMvABsP1gH/////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////VQdGhlIGxHAQAA9S' +
  'BhenkgZG9nICM4ClRoZSBxdWljayBicm93biBmb3gganVtcHMgb3ZlciB0aGUgbC8AHzkvABsfMC8AGx8xLwAbHzIvABsfMy8AGx80LwAbHzUv' +
  'ABsfNi8AGx83LwAbD9YB//////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////////////////////' +
  '//////////////////////////////////////////////////////////////////////////////////////////////9GUGcgIzkKAAAAAA' +
  '==';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('lz4', () => {
  it('round-trips empty, tiny, random, repetitive and multi-block inputs', () => {
    const pages = Buffer.alloc(3 * LZ4_BLOCK_SIZE + 12345);
    for (let i = 0; i < pages.length; i += 8192) pages.write(`page ${i} `.repeat(40), i);
    const inputs = [Buffer.alloc(0), Buffer.from('a'), Buffer.from('abcdabcdabcdabcd'), randomBytes(100_000), Buffer.alloc(70_000, 7), foxes(), pages];
    for (const input of inputs) {
      const frame = lz4EncodeFrame(input);
      assert.equal(sha(lz4DecodeFrames(frame, input.length)), sha(input), `${input.length} bytes`);
      assert.equal(sha(lz4DecodeFrames(frame)), sha(input), `${input.length} bytes, no size hint`);
    }
    assert.ok(lz4EncodeFrame(pages).length < pages.length / 10, 'repetitive pages compress');
    const random = randomBytes(LZ4_BLOCK_SIZE + 10);
    assert.ok(lz4EncodeFrame(random).length <= random.length + 7 + 3 * 4, 'incompressible blocks are stored, not expanded');
  });

  it('decodes frames written by the lz4 tool, linked blocks and checksums included', () => {
    const expected = sha(foxes());
    assert.equal(sha(lz4DecodeFrames(Buffer.from(LINKED, 'base64'))), expected);
    assert.equal(sha(lz4DecodeFrames(Buffer.from(PLAIN, 'base64'))), expected);
    const both = Buffer.concat([Buffer.from(PLAIN, 'base64'), Buffer.from(LINKED, 'base64')]);
    assert.equal(lz4DecodeFrames(both).length, 2 * foxes().length, 'concatenated frames decode one after the other');
  });

  it('writes frames the lz4 tool reads', { skip: spawnSync('lz4', ['--version']).status === 0 ? false : 'no lz4 tool on this machine' }, () => {
    const input = Buffer.concat([foxes(), randomBytes(50_000), foxes()]);
    const r = spawnSync('lz4', ['-d', '-c'], { input: lz4EncodeFrame(input), maxBuffer: 1 << 24 });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.equal(sha(r.stdout), sha(input));
  });

  it('refuses damaged frames instead of returning wrong bytes', () => {
    const linked = Buffer.from(LINKED, 'base64');
    const cases: Array<[string, Buffer]> = [
      ['bad magic', Buffer.concat([Buffer.from([0, 0, 0, 0]), linked.subarray(4)])],
      ['header checksum', Buffer.from(linked.map((b, i) => (i === 6 ? b ^ 1 : b)))],
      ['truncated', linked.subarray(0, linked.length - 10)],
      ['content checksum', Buffer.from(linked.map((b, i) => (i === linked.length - 1 ? b ^ 0xff : b)))],
    ];
    for (const [what, data] of cases) assert.throws(() => lz4DecodeFrames(data), Lz4FormatError, what);
  });

  it('computes xxHash32 as the reference does', () => {
    // Reference values from the xxHash test vectors.
    assert.equal(xxh32(new Uint8Array(0), 0), 0x02cc5d05);
    assert.equal(xxh32(Buffer.from('a'), 0), 0x550d7456);
    assert.equal(xxh32(Buffer.from('abc'), 0), 0x32d153ff);
    assert.equal(xxh32(Buffer.from('Nobody inspects the spammish repetition'), 0), 0xe2293b2f);
  });
});
