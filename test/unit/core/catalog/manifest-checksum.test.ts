// The manifest and backup_label carry their own SHA-256 (cb_sha256), like parts; a manifest whose bytes
// changed in the store is an integrity error (exit 4) naming it, encrypted or not.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { buffer } from 'node:stream/consumers';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import type { ObjectStore } from '../../../../providers/object-store.ts';
import { readManifest, writeManifest } from '../../../../src/core/catalog/catalog.ts';
import type { Manifest } from '../../../../src/core/catalog/manifest.ts';
import { putText } from '../../../../src/core/backup/take-backup.ts';
import { encryptionKeysFor, withClientEncryption } from '../../../../src/core/crypto/encrypting-store.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { makeTempDir, removeTempDir } from '../../../helpers/tmp.ts';

const manifest = (id: string): Manifest => ({
  format_version: 1,
  backup_id: id,
  compression: 'zstd',
  directories: [{ path: 'base', mode: 0o700 }],
  files: [{ path: 'PG_VERSION', size: 3, mode: 0o600, mtime: '2026-01-01T00:00:00.000Z', sha256: 'x', chunks: [] }],
  parts: [],
});

describe('manifest and backup_label checksums', () => {
  let dir: string;
  let raw: ObjectStore;
  before(async () => {
    dir = await makeTempDir('cb-manifest');
    raw = new LocalObjectStore(pathToFileURL(dir).href);
  });
  after(async () => {
    await raw.close();
    await removeTempDir(dir);
  });

  for (const encrypted of [false, true]) {
    it(`records the stored bytes' SHA-256 and refuses a manifest whose bytes changed${encrypted ? ' (encrypted)' : ''}`, async () => {
      const store = encrypted
        ? withClientEncryption(raw, encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'K' }, { K: randomBytes(32).toString('hex') }))
        : raw;
      const id = encrypted ? '20260101T000000Z' : '20260101T000001Z';
      const key = await writeManifest(store, 'pg1', manifest(id));
      const { info, body } = await store.get(key);
      const bytes = await buffer(body);
      assert.equal(info.metadata?.['cb_sha256'], createHash('sha256').update(bytes).digest('hex'));
      assert.deepEqual(await readManifest(store, 'pg1', id), manifest(id));

      // Another valid manifest put in its place, under the old metadata: only the checksum can tell.
      const other = { ...manifest(id), files: [] };
      const { compressBuffer } = await import('../../../../src/io/compression.ts');
      const replaced = await compressBuffer(Buffer.from(JSON.stringify(other)), 'zstd');
      const meta = { ...info.metadata };
      if (encrypted) {
        // Through the encrypting layer, so that only the inner checksum differs; its own cb_* come anew.
        for (const k of Object.keys(meta)) if (k.startsWith('cb_enc') || k === 'cb_encryption' || k === 'cb_key_id') delete meta[k];
      }
      await store.put(key, replaced, { metadata: meta });
      await assert.rejects(readManifest(store, 'pg1', id), (err: unknown) =>
        err instanceof CloudbarmanError && err.kind === 'integrity' && err.message.includes(key) && err.message.includes('SHA-256'));
    });
  }

  it('stores backup_label with its SHA-256', async () => {
    const key = 'pg1/base/20260101T000002Z/backup_label';
    await putText(raw, key, 'START WAL LOCATION: 0/2000028\n');
    const info = await raw.head(key);
    assert.equal(info?.metadata?.['cb_sha256'], createHash('sha256').update('START WAL LOCATION: 0/2000028\n').digest('hex'));
  });
});
