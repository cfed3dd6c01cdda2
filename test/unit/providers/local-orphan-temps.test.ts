// A put killed mid-write (SIGKILL, power loss) leaves its .cbtmp-* temporary beside the target.
// Listings never show it; a listing that passes one older than an hour removes it, and never
// touches a fresh one (a live writer's) or a real object.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../providers/local/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import { makeTempDir, removeTempDir } from '../../helpers/tmp.ts';

describe('local store: temporaries of killed writers', () => {
  let dir: string;
  let store: LocalObjectStore;

  before(async () => {
    dir = await makeTempDir('cb-orphans');
    store = new LocalObjectStore(pathToFileURL(dir).href);
  });
  after(async () => {
    await store.close();
    await removeTempDir(dir);
  });

  it('removes stale temporaries under the listed prefix, keeps fresh ones and every object', async () => {
    await store.put('pg1/wals/0000000100000000/000000010000000000000001', Buffer.from('seg'));
    await store.put('pg1/base/b1/data/000001', Buffer.from('part'));
    const walDir = join(dir, 'pg1', 'wals', '0000000100000000');
    const baseDir = join(dir, 'pg1', 'base', 'b1', 'data');
    const stale = join(walDir, '.cbtmp-0123456789ab');
    const fresh = join(walDir, '.cbtmp-ba9876543210');
    const elsewhere = join(baseDir, '.cbtmp-aaaaaaaaaaaa');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    for (const path of [stale, fresh, elsewhere]) await writeFile(path, 'half-written');
    await utimes(stale, twoHoursAgo, twoHoursAgo);
    await utimes(elsewhere, twoHoursAgo, twoHoursAgo);
    // A directory that happens to carry the prefix is not a temporary file: left alone.
    await mkdir(join(walDir, '.cbtmp-notafile'));

    const wal: string[] = [];
    for await (const item of listAll(store, 'pg1/wals/')) wal.push(item.key);
    assert.deepEqual(wal, ['pg1/wals/0000000100000000/000000010000000000000001']);
    const left = (await readdir(walDir)).sort();
    assert.deepEqual(left, ['.cbtmp-ba9876543210', '.cbtmp-notafile', '000000010000000000000001']);
    // Not under the listed prefix: not walked, not removed yet.
    assert.ok((await readdir(baseDir)).includes('.cbtmp-aaaaaaaaaaaa'));
    for await (const _ of listAll(store, 'pg1/base/'));
    assert.deepEqual(await readdir(baseDir), ['000001']);
  });
});
