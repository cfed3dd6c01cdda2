// Running as root (a backup started by root, say) in a store directory owned by another user must
// leave objects and folders that user can still write: archive_command runs as postgres.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../providers/local/object-store.ts';

test('as root, new folders and objects take the owner of the store directory', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root: only root can create files for another user');
    return;
  }
  const root = await mkdtemp(join(tmpdir(), 'cb-owner-'));
  try {
    await chown(root, 4242, 4343);
    const store = new LocalObjectStore(pathToFileURL(root).href);
    await store.put('pg1/base/x/data/000000.zst', Buffer.from('x'));
    for (const p of ['pg1', 'pg1/base', 'pg1/base/x', 'pg1/base/x/data', 'pg1/base/x/data/000000.zst']) {
      const s = await stat(join(root, p));
      assert.deepEqual([s.uid, s.gid], [4242, 4343], p);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
