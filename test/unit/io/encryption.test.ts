// The client-side encryption format: round trips, and every kind of damage is detected.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import {
  DecryptError,
  DecryptStream,
  EncryptStream,
  HEADER_BYTES,
  MAX_CHUNK_SIZE,
  TAG_BYTES,
  decryptBuffer,
  encryptBuffer,
  encryptedSize,
  headerKeyId,
  masterKey,
  plainSize,
  type ObjectSecrets,
} from '../../../src/io/encryption.ts';

const master = masterKey(Buffer.alloc(32, 7));
const other = masterKey(Buffer.alloc(32, 8));
const ring = { keys: [master] };
const CHUNK = 64 * 1024;

/** Streams bytes in pieces of `piece` bytes through a transform. */
async function through(stream: NodeJS.ReadWriteStream, data: Buffer, piece: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let at = 0; at < data.length; at += piece) pieces.push(data.subarray(at, at + piece));
  return buffer(Readable.from(pieces).pipe(stream));
}

async function rejectsWith(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof DecryptError && err.reason === reason);
}

function throwsWith(fn: () => unknown, reason: string): void {
  assert.throws(fn, (err: unknown) => err instanceof DecryptError && err.reason === reason);
}

/** Splits a stored object into header and sealed chunks. */
function split(stored: Buffer, chunkSize: number): { header: Buffer; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  for (let at = HEADER_BYTES; at < stored.length; at += chunkSize + TAG_BYTES) chunks.push(stored.subarray(at, Math.min(stored.length, at + chunkSize + TAG_BYTES)));
  return { header: stored.subarray(0, HEADER_BYTES), chunks };
}

describe('encryption format', () => {
  it('derives a stable 16-byte key id that differs between keys', () => {
    assert.match(master.id, /^[0-9a-f]{32}$/);
    assert.equal(masterKey(Buffer.alloc(32, 7)).id, master.id);
    assert.notEqual(other.id, master.id);
    assert.throws(() => masterKey(Buffer.alloc(31)));
  });

  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * 1024 * 1024 + 17]) {
    it(`round-trips ${size} bytes as a buffer and as a stream`, async () => {
      const plain = randomBytes(size);
      const stored = encryptBuffer(plain, master, { chunkSize: CHUNK });
      assert.equal(stored.length, encryptedSize(size, CHUNK));
      assert.equal(plainSize(stored.length, CHUNK), size);
      assert.equal(headerKeyId(stored), master.id);
      assert.ok(decryptBuffer(stored, ring).equals(plain));
      const streamed = await through(new EncryptStream(master, { chunkSize: CHUNK }), plain, 10_000);
      assert.equal(streamed.length, stored.length);
      assert.ok(decryptBuffer(streamed, ring).equals(plain));
      assert.ok((await through(new DecryptStream(ring), streamed, 7_001)).equals(plain));
      assert.ok((await through(new DecryptStream(ring), stored, 1 << 20)).equals(plain));
      if (size >= 64) assert.equal(stored.indexOf(plain.subarray(0, 64)), -1, 'the plaintext must not appear in the stored bytes');
    });
  }

  it('plainSize refuses sizes no plaintext encrypts to', () => {
    assert.equal(plainSize(HEADER_BYTES + TAG_BYTES - 1, CHUNK), undefined);
    assert.equal(plainSize(HEADER_BYTES + CHUNK + TAG_BYTES + 5, CHUNK), undefined); // a second chunk too short for its tag
  });

  it('uses a fresh data key per object: the same plaintext encrypts differently', () => {
    const plain = Buffer.alloc(1000, 1);
    const a = encryptBuffer(plain, master);
    const b = encryptBuffer(plain, master);
    assert.ok(!a.subarray(HEADER_BYTES).equals(b.subarray(HEADER_BYTES)));
  });

  it('never repeats a nonce within an object: prefix + chunk counter', () => {
    const secrets: ObjectSecrets = { dataKey: randomBytes(32), noncePrefix: Buffer.from([1, 2, 3, 4]), wrapNonce: randomBytes(12) };
    const plain = Buffer.alloc(8 * 1024, 0); // identical chunks of zeros
    const stored = encryptBuffer(plain, master, { chunkSize: 1024, secrets });
    const { header, chunks } = split(stored, 1024);
    assert.ok(header.subarray(28, 32).equals(secrets.noncePrefix));
    // Identical plaintext chunks give distinct ciphertexts only if the keystream (nonce) differs.
    const bodies = new Set(chunks.map((c) => c.subarray(0, 1024).toString('hex')));
    assert.equal(bodies.size, chunks.length);
    // And chunk i really is AES-CTR under prefix|i: decrypting chunk 3 with nonce prefix|3 gives zeros.
    const nonce = Buffer.concat([secrets.noncePrefix, Buffer.from([0, 0, 0, 0, 0, 0, 0, 3])]);
    const ctr = createDecipheriv('aes-256-gcm', secrets.dataKey, nonce);
    assert.ok(ctr.update(chunks[3]?.subarray(0, 1024) ?? Buffer.alloc(0)).equals(Buffer.alloc(1024)));
  });

  it('detects every single-bit flip in the header, a chunk and a tag of a small object', () => {
    const stored = encryptBuffer(Buffer.from('a small object of a few bytes'), master, { chunkSize: 16 });
    for (let byte = 0; byte < stored.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const damaged = Buffer.from(stored);
        damaged[byte] = (damaged[byte] ?? 0) ^ (1 << bit);
        assert.throws(() => decryptBuffer(damaged, ring), DecryptError, `flip of bit ${bit} of byte ${byte} went unnoticed`);
      }
    }
  });

  it('detects truncation at and between chunk boundaries, and inside the header', async () => {
    const stored = encryptBuffer(randomBytes(4 * 1024), master, { chunkSize: 1024 });
    const sealed = 1024 + TAG_BYTES;
    for (const cut of [HEADER_BYTES + sealed, HEADER_BYTES + 2 * sealed, HEADER_BYTES + 3 * sealed]) {
      throwsWith(() => decryptBuffer(stored.subarray(0, cut), ring), 'chunk');
      await rejectsWith(through(new DecryptStream(ring), stored.subarray(0, cut), 500), 'chunk');
    }
    // Between boundaries: a tail shorter than a tag cannot be a chunk; a longer one fails as the final chunk.
    for (const [cut, reason] of [[HEADER_BYTES + sealed + 1, 'truncated'], [HEADER_BYTES + sealed + 700, 'chunk'], [stored.length - 1, 'chunk']] as const) {
      throwsWith(() => decryptBuffer(stored.subarray(0, cut), ring), reason);
      await rejectsWith(through(new DecryptStream(ring), stored.subarray(0, cut), 500), reason);
    }
    for (const cut of [HEADER_BYTES, HEADER_BYTES + 5]) {
      throwsWith(() => decryptBuffer(stored.subarray(0, cut), ring), 'truncated');
      await rejectsWith(through(new DecryptStream(ring), stored.subarray(0, cut), 500), 'truncated');
    }
    for (const cut of [0, 3, 30, HEADER_BYTES - 1]) {
      throwsWith(() => decryptBuffer(stored.subarray(0, cut), ring), 'truncated');
      await rejectsWith(through(new DecryptStream(ring), stored.subarray(0, cut), 500), 'truncated');
    }
  });

  it('detects dropped, reordered, duplicated and appended chunks', async () => {
    const plainText = randomBytes(4 * 1024);
    const stored = encryptBuffer(plainText, master, { chunkSize: 1024 });
    const { header, chunks } = split(stored, 1024);
    const [c0, c1, c2, c3] = chunks as [Buffer, Buffer, Buffer, Buffer];
    const variants: Record<string, Buffer[]> = {
      'dropped first': [c1, c2, c3],
      'dropped middle': [c0, c2, c3],
      reordered: [c0, c2, c1, c3],
      'duplicated middle': [c0, c1, c1, c2, c3],
      'duplicated final': [c0, c1, c2, c3, c3],
      'appended from another object': [c0, c1, c2, c3, split(encryptBuffer(randomBytes(1024), master, { chunkSize: 1024 }), 1024).chunks[0] ?? Buffer.alloc(0)],
      'final moved first': [c3, c0, c1, c2],
    };
    for (const [name, parts] of Object.entries(variants)) {
      const damaged = Buffer.concat([header, ...parts]);
      assert.throws(() => decryptBuffer(damaged, ring), DecryptError, name);
      await assert.rejects(through(new DecryptStream(ring), damaged, 333), DecryptError, name);
    }
    // A chunk moved into another object (another header) fails too.
    const second = encryptBuffer(randomBytes(4 * 1024), master, { chunkSize: 1024 });
    throwsWith(() => decryptBuffer(Buffer.concat([split(second, 1024).header, c0, c1, c2, c3]), ring), 'chunk');
    assert.ok(decryptBuffer(Buffer.concat([header, c0, c1, c2, c3]), ring).equals(plainText));
  });

  it('reports a wrong key as unknown-key naming the expected id, before any chunk', async () => {
    const stored = encryptBuffer(randomBytes(100), master);
    assert.throws(() => decryptBuffer(stored, { keys: [other] }), (err: unknown) => err instanceof DecryptError && err.reason === 'unknown-key' && err.keyId === master.id && err.message.includes(master.id));
    assert.throws(() => decryptBuffer(stored, { keys: [] }), (err: unknown) => err instanceof DecryptError && err.reason === 'unknown-key');
    await rejectsWith(through(new DecryptStream({ keys: [other] }), stored, 10), 'unknown-key');
    // Several keys: the one with the object's id opens it (rotation).
    assert.equal(decryptBuffer(stored, { keys: [other, master] }).length, 100);
  });

  it('rejects what is not an encrypted object, unknown versions and schemes, and bad chunk sizes', () => {
    throwsWith(() => decryptBuffer(Buffer.from('plain text that is long enough to be a header, surely, yes indeed it is so long'), ring), 'malformed');
    const stored = encryptBuffer(Buffer.from('x'), master);
    const v3 = Buffer.from(stored);
    v3[6] = 3;
    throwsWith(() => decryptBuffer(v3, ring), 'unsupported');
    const scheme = Buffer.from(stored);
    scheme[7] = 9;
    throwsWith(() => decryptBuffer(scheme, ring), 'unsupported');
    const huge = Buffer.from(stored);
    huge.writeUInt32BE(MAX_CHUNK_SIZE + 1, 24);
    throwsWith(() => decryptBuffer(huge, ring), 'malformed');
    assert.throws(() => encryptBuffer(Buffer.alloc(1), master, { chunkSize: 0 }));
  });

  it('format 2 binds the object name: it opens only under the name it was sealed for; format 1 still opens', async () => {
    const name = 'pg1/wals/0000000100000000/000000010000000000000007.zst';
    const plain = randomBytes(3000);
    const named = encryptBuffer(plain, master, { name, chunkSize: 1024 });
    assert.equal(named[6], 2, 'written as format 2');
    assert.ok(decryptBuffer(named, ring, name).equals(plain));
    throwsWith(() => decryptBuffer(named, ring, 'pg1/wals/0000000100000000/000000010000000000000008.zst'), 'chunk');
    throwsWith(() => decryptBuffer(named, ring), 'malformed');
    // Streams: the same through DecryptStream, for both writers.
    const streamed = await through(new EncryptStream(master, { name, chunkSize: 1024 }), plain, 100);
    assert.ok((await through(new DecryptStream(ring, { name }), streamed, 77)).equals(plain));
    await rejectsWith(through(new DecryptStream(ring, { name: `${name}.partial` }), streamed, 77), 'chunk');
    // Rewriting the version byte to 1 (to skip the name) breaks the wrapped key's authentication.
    const downgraded = Buffer.from(named);
    downgraded[6] = 1;
    throwsWith(() => decryptBuffer(downgraded, ring, 'anything'), 'unwrap');
    // Objects written before names were bound (format 1) open under any name.
    const old = encryptBuffer(plain, master, { chunkSize: 1024 });
    assert.equal(old[6], 1);
    assert.ok(decryptBuffer(old, ring, name).equals(plain));
  });

  it('checks the header against what the metadata promised', async () => {
    const stored = encryptBuffer(randomBytes(10), master, { chunkSize: 1024 });
    await rejectsWith(through(new DecryptStream(ring, { keyId: other.id }), stored, 50), 'malformed');
    await rejectsWith(through(new DecryptStream(ring, { chunkSize: 2048 }), stored, 50), 'malformed');
  });

  it('keeps stream memory bounded: plaintext leaves as chunks authenticate', async () => {
    const chunkSize = 4096;
    const plain = randomBytes(64 * chunkSize);
    const stored = encryptBuffer(plain, master, { chunkSize });
    const decrypt = new DecryptStream(ring);
    const out: Buffer[] = [];
    decrypt.on('data', (d: Buffer) => out.push(d));
    // After feeding n+1 sealed chunks, n chunks of plaintext are out (one is held: it may be the final one).
    const sealed = chunkSize + TAG_BYTES;
    decrypt.write(stored.subarray(0, HEADER_BYTES + 3 * sealed));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(out.reduce((n, b) => n + b.length, 0), 2 * chunkSize);
    decrypt.end(stored.subarray(HEADER_BYTES + 3 * sealed));
    await new Promise((resolve) => decrypt.once('end', resolve));
    assert.ok(Buffer.concat(out).equals(plain));
  });
});
