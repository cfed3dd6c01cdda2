// verify and restore of a backup written through the encrypting store: a sound one passes; a part whose
// ciphertext changed (metadata intact) is reported by verify as a problem of that part (not as a dropped
// download) and fails a restore with exit 4; a wrong key is exit 3.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import type { ObjectStore } from '../../../../providers/object-store.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import { encryptionKeysFor, withClientEncryption } from '../../../../src/core/crypto/encrypting-store.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { uploadWal } from '../../../../src/core/wal/wal-upload.ts';
import { verifyBackup, type VerifyRequest } from '../../../../src/core/verify/verify-backup.ts';
import { baseFiles, storeBackup } from '../restore/backup-fixture.ts';

const ID = '20261120T095900Z';
const KEY = randomBytes(32).toString('hex');
let root: string;

before(async () => { root = await mkdtemp(join(tmpdir(), 'cb-verify-enc-')); });
after(() => rm(root, { recursive: true, force: true }));

function encrypting(raw: ObjectStore, key: string): ObjectStore {
  return withClientEncryption(raw, encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'K' }, { K: key }));
}

function request(store: ObjectStore, extra: Partial<VerifyRequest> = {}): VerifyRequest {
  return { store, server: 'pg1', backupId: 'latest', mode: 'full', walToLatest: false, jobs: 2, log: silentLogger, now: () => new Date('2026-11-22T12:00:00Z'), ...extra };
}

test('an encrypted backup verifies; a changed ciphertext is a problem of its part; a wrong key is exit 3', async () => {
  const dir = join(root, 'store');
  await mkdir(dir, { recursive: true });
  const raw = new LocalObjectStore(pathToFileURL(dir).href);
  const store = encrypting(raw, KEY);
  const fixture = await storeBackup(store, {
    id: ID, partSize: 64 * 1024, archiveWal: false,
    files: [...baseFiles(), { path: 'base/1/1259', content: randomBytes(200_000) }],
  });
  // The WAL the backup needs, archived through the encrypting store as wal-upload does.
  await mkdir(join(root, 'pg_wal'));
  for (const n of [2, 3]) {
    const path = join(root, 'pg_wal', `00000001000000000000000${n}`);
    await writeFile(path, randomBytes(4096));
    const { key } = await uploadWal({ store, server: 'pg1', walPath: path, compression: 'zstd', log: silentLogger });
    assert.equal((await raw.head(key))?.metadata?.['cb_encryption'], 'aes-256-gcm');
  }
  const sound = (await verifyBackup(request(store))).report;
  assert.deepEqual(sound.checks.filter((c) => !c.ok).map((c) => c.name), []);

  // Every part is stored encrypted.
  const partKey = fixture.partKeys[1] ?? '';
  const { body, info } = await raw.get(partKey);
  assert.equal(info.metadata?.['cb_encryption'], 'aes-256-gcm');
  const bytes = await buffer(body);
  bytes[bytes.length - 40] = (bytes[bytes.length - 40] ?? 0) ^ 0x10;
  await raw.put(partKey, bytes, { metadata: info.metadata ?? {} });

  const damaged = (await verifyBackup(request(store))).report;
  const parts = damaged.checks.find((c) => c.name === 'parts');
  assert.equal(parts?.ok, false);
  assert.deepEqual(parts?.problems.map((p) => p.key), [partKey]);
  assert.match(parts?.problems[0]?.problem ?? '', /does not decrypt: chunk 0 does not authenticate/);
  // Quick mode reads no part bytes, so it cannot see this; it still passes on the metadata.
  assert.equal((await verifyBackup(request(store, { mode: 'quick' }))).report.checks.find((c) => c.name === 'parts')?.ok, true);

  // Restore, buffered and streamed: exit 4 naming the part; DEST stays marked incomplete.
  const { restoreBackup } = await import('../../../../src/core/restore/restore-backup.ts');
  for (const path of ['memory', 'streamed'] as const) {
    const dest = join(root, `dest-${path}`);
    await assert.rejects(restoreBackup({
      store, server: 'pg1', backupId: 'latest', dest, standby: false, relocations: new Map(), jobs: 2, restoreCommand: '/x/cloudbarman wal-restore pg1 %f %p',
      log: silentLogger, now: () => new Date('2026-11-22T12:00:00Z'), ...(path === 'streamed' ? { bufferedPartLimit: 0 } : {}),
    }), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'integrity' && err.message.includes(partKey) && /does not authenticate/.test(err.message));
    await stat(join(dest, 'cloudbarman_restore_incomplete'));
  }

  // A wrong key: exit 3 naming the expected key id, before any part is read.
  await assert.rejects(verifyBackup(request(encrypting(raw, randomBytes(32).toString('hex')))), (err: unknown) =>
    err instanceof CloudbarmanError && err.kind === 'bad-input' && /is encrypted with key [0-9a-f]{32}/.test(err.message));
  await raw.close();
});
