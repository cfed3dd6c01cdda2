// Damages objects of a local store on disk, as bit rot, a torn copy or a careless cleanup would, for
// the corruption and verify suites. A local object is one file: "CBOBJ\0\x01\n", a big-endian uint32
// metadata length, the metadata JSON, then the payload (providers/local/object-store.ts); damage goes
// into the payload, so the store still reads the object and its recorded checksums.
import assert from 'node:assert/strict';
import { copyFile, open, readFile, stat, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** How an object is damaged: one byte inverted, the payload cut in half, or the object removed. */
export type Damage = 'flip' | 'truncate' | 'delete';

/** The file of an object of a local store rooted at `root`. */
export function objectFile(root: string, key: string): string {
  return join(root, ...key.split('/'));
}

/** Where the payload starts in a local object file. */
export async function payloadOffset(file: string): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const fixed = Buffer.alloc(12);
    await handle.read(fixed, 0, 12, 0);
    assert.equal(fixed.subarray(0, 5).toString('latin1'), 'CBOBJ', `${file} is not a local store object`);
    return 12 + fixed.readUInt32BE(8);
  } finally {
    await handle.close();
  }
}

/** Damages a local object in place; `at` places the flipped byte, as a fraction of the payload. */
export async function damage(file: string, how: Damage, at = 0.5): Promise<void> {
  if (how === 'delete') {
    await unlink(file);
    return;
  }
  const offset = await payloadOffset(file);
  const length = (await stat(file)).size - offset;
  assert.ok(length > 1, `${file} has an empty payload`);
  if (how === 'truncate') {
    await truncate(file, offset + Math.floor(length / 2));
    return;
  }
  const handle = await open(file, 'r+');
  try {
    const position = offset + Math.min(length - 1, Math.floor(length * at));
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, position);
    byte[0] = (byte[0] ?? 0) ^ 0xff;
    await handle.write(byte, 0, 1, position);
  } finally {
    await handle.close();
  }
}

/**
 * Damages `file`, runs `body`, and puts the original back whatever happened. The original waits in
 * `spare` (a path outside the store: a copy beside the object would show up in its listings).
 */
export async function withDamaged<T>(file: string, how: Damage, spare: string, body: () => Promise<T>, at?: number): Promise<T> {
  await copyFile(file, spare);
  try {
    await damage(file, how, at);
    return await body();
  } finally {
    await copyFile(spare, file);
    await unlink(spare);
  }
}

/** The payload of a local object (for tests that compare or rebuild one). */
export async function payload(file: string): Promise<Buffer> {
  return (await readFile(file)).subarray(await payloadOffset(file));
}
