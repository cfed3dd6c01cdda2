import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TarReader, parseHeader, type TarEntry } from '../../../src/pg/tar-stream.ts';
import { checkAgainstManifest, crc32cUpdate } from '../../../src/pg/base-backup.ts';

function header(path: string, size: number, flag: string, link = ''): Buffer {
  const b = Buffer.alloc(512);
  b.write(path, 0, 'utf8');
  b.write('0000600\0', 100);
  b.write('0000000\0', 108);
  b.write('0000000\0', 116);
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  b.write(`${(1_700_000_000).toString(8).padStart(11, '0')}\0`, 136);
  b.write(flag, 156);
  b.write(link, 157);
  b.write('ustar\0', 257);
  b.write('00', 263);
  b.fill(' ', 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return b;
}

function archive(): Buffer {
  const data = Buffer.from('x'.repeat(700));
  return Buffer.concat([
    header('base', 0, '5'), header('base/1', 700, '0'), data, Buffer.alloc(1024 - 700),
    header('empty', 0, '0'), header('pg_tblspc/16384', 0, '2', '/ts'), Buffer.alloc(1024),
  ]);
}

async function read(chunkSize: number): Promise<{ entries: TarEntry[]; files: Map<string, string> }> {
  const entries: TarEntry[] = [];
  const files = new Map<string, string>();
  let current = '';
  const reader = new TarReader({
    entry: async (e) => { entries.push(e); current = e.path; if (e.type === 'file') files.set(e.path, ''); },
    data: async (c) => { files.set(current, (files.get(current) ?? '') + c.toString()); },
    end: async () => undefined,
  });
  const buf = archive();
  for (let i = 0; i < buf.length; i += chunkSize) await reader.push(buf.subarray(i, i + chunkSize));
  reader.finish();
  assert.equal(reader.ended, true);
  return { entries, files };
}

test('tar members come out whole whatever the chunking', async () => {
  for (const size of [1, 7, 512, 513, 100_000]) {
    const { entries, files } = await read(size);
    assert.deepEqual(entries.map((e) => [e.path, e.type, e.size]), [['base', 'directory', 0], ['base/1', 'file', 700], ['empty', 'file', 0], ['pg_tblspc/16384', 'symlink', 0]]);
    assert.equal(files.get('base/1'), 'x'.repeat(700));
    assert.equal(files.get('empty'), '');
    assert.equal(entries[3]?.linkTarget, '/ts');
    assert.equal(entries[1]?.mode, 0o600);
  }
});

test('a corrupt header is refused', () => {
  const h = header('a', 1, '0');
  h[0] = 0x62;
  assert.throws(() => parseHeader(h), /checksum/);
});

test('CRC32C matches the standard check value', () => {
  assert.equal((crc32cUpdate(0xffffffff, Buffer.from('123456789')) ^ 0xffffffff) >>> 0, 0xe3069283);
});

test('checkAgainstManifest: sizes and CRC32C (little-endian hex, as PostgreSQL writes it)', () => {
  const crc = crc32cUpdate(0xffffffff, Buffer.from('123456789'));
  const manifest = Buffer.from(JSON.stringify({ Files: [{ Path: 'a', Size: 9, 'Checksum-Algorithm': 'CRC32C', Checksum: '839206e3' }] }));
  checkAgainstManifest(manifest, new Map([['a', { size: 9, crc32c: crc }]]));
  assert.throws(() => checkAgainstManifest(manifest, new Map([['a', { size: 8, crc32c: crc }]])), /has 8 bytes/);
  assert.throws(() => checkAgainstManifest(manifest, new Map([['a', { size: 9, crc32c: 0 }]])), /CRC32C/);
  assert.throws(() => checkAgainstManifest(manifest, new Map()), /a is missing/);
});
