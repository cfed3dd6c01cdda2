// Client-side encryption as a store decorator, and where keys come from.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { withRetries } from '../../../../providers/retrying-store.ts';
import type { ObjectStore } from '../../../../providers/object-store.ts';
import { ENCRYPTION_META, encryptionKeysFor, isEncryptedKey, withClientEncryption } from '../../../../src/core/crypto/encrypting-store.ts';
import { EncryptionKeys, parseKeyText } from '../../../../src/core/crypto/keys.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { HEADER_BYTES, masterKey } from '../../../../src/io/encryption.ts';
import { makeTempDir, removeTempDir } from '../../../helpers/tmp.ts';

const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const ID_A = masterKey(KEY_A).id;
const ID_B = masterKey(KEY_B).id;

function keysFrom(encrypt: boolean, env: Record<string, string>): EncryptionKeys {
  return encryptionKeysFor({ clientEncryption: encrypt ? 'aes-256-gcm' : 'none', encryptionKeyEnv: 'CLOUDBARMAN_ENCRYPTION_KEY' }, env);
}

function isExit(code: 'bad-input' | 'integrity', ...mentions: string[]) {
  return (err: unknown): boolean => err instanceof CloudbarmanError && err.kind === code && mentions.every((m) => `${err.message} ${err.hint ?? ''}`.includes(m));
}

describe('encrypting store', () => {
  let dir: string;
  let raw: ObjectStore;

  before(async () => {
    dir = await makeTempDir('cb-enc');
    raw = withRetries(new LocalObjectStore(pathToFileURL(dir).href));
  });
  after(async () => {
    await raw.close();
    await removeTempDir(dir);
  });

  it('chooses what to encrypt by key: WAL and backup data, not catalog entries, annotations or locks', () => {
    assert.ok(isEncryptedKey('pg1/wals/0000000100000000/000000010000000000000001.zst'));
    assert.ok(!isEncryptedKey('pg1/wals/00000002.history'), 'timeline history stays readable for retention without the key');
    assert.ok(!isEncryptedKey('pg1/wals/00000002.history.zst'));
    assert.ok(isEncryptedKey('pg1/wals/0000000100000000/000000010000000000000002.00000028.backup.zst'));
    assert.ok(isEncryptedKey('pg1/base/20260101T000000Z/data/000001.zst'));
    assert.ok(isEncryptedKey('pg1/base/20260101T000000Z/manifest.json.zst'));
    assert.ok(isEncryptedKey('pg1/base/20260101T000000Z/backup_label'));
    assert.ok(!isEncryptedKey('pg1/base/20260101T000000Z/backup.json'));
    assert.ok(!isEncryptedKey('pg1/base/20260101T000000Z/annotations/keep'));
    assert.ok(!isEncryptedKey('pg1/locks/backup/000000000001'));
  });

  it('stores ciphertext, records the key id, and gives back plaintext with plaintext sizes', async () => {
    const store = withClientEncryption(raw, keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') }));
    const marker = Buffer.from('PLAINTEXT-MARKER-'.repeat(100));
    const key = 'pg1/base/20260101T000000Z/data/000001';
    await store.put(key, marker, { metadata: { cb_sha256: 'abc' }, contentSha256: 'ignored' });
    const stored = await raw.get(key);
    const bytes = await buffer(stored.body);
    assert.equal(bytes.indexOf('PLAINTEXT-MARKER'), -1);
    assert.equal(stored.info.metadata?.[ENCRYPTION_META.keyId], ID_A);
    assert.equal(stored.info.metadata?.['cb_sha256'], 'abc');
    assert.equal(stored.info.size, marker.length + HEADER_BYTES + 16);
    const head = await store.head(key);
    assert.equal(head?.size, marker.length);
    const got = await store.get(key);
    assert.equal(got.info.size, marker.length);
    assert.ok((await buffer(got.body)).equals(marker));
    // A catalog entry stays plaintext.
    await store.put('pg1/base/20260101T000000Z/backup.json', Buffer.from('{"status":"DONE"}'));
    assert.equal((await buffer((await raw.get('pg1/base/20260101T000000Z/backup.json')).body)).toString(), '{"status":"DONE"}');
  });

  it('encrypts stream bodies', async () => {
    const store = withClientEncryption(raw, keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('base64') }));
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const key = 'pg1/wals/0000000100000000/000000010000000000000002';
    await store.put(key, () => Readable.from([data.subarray(0, 1000), data.subarray(1000)]), { contentLength: data.length });
    assert.equal((await raw.head(key))?.size, data.length + HEADER_BYTES + 4 * 16);
    assert.ok((await buffer((await store.get(key)).body)).equals(data));
  });

  it('seals large bodies into reused memory without disturbing objects already stored', async () => {
    const store = withClientEncryption(raw, keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') }));
    const parts = [randomBytes(2 * 1024 * 1024), randomBytes(2 * 1024 * 1024 - 3), randomBytes(3 * 1024 * 1024)];
    for (const [i, part] of parts.entries()) await store.put(`pg1/base/20260102T000000Z/data/00000${i}`, part);
    for (const [i, part] of parts.entries()) {
      assert.ok((await buffer((await store.get(`pg1/base/20260102T000000Z/data/00000${i}`)).body)).equals(part), `part ${i}`);
    }
  });

  it('with client_encryption on, refuses plaintext where ciphertext belongs unless encryption_allow_plaintext is on', async () => {
    const wal = 'pg1/wals/0000000100000000/000000010000000000000003';
    await raw.put(wal, Buffer.from('plain wal'));
    const env = { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') };
    const allowing = encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CLOUDBARMAN_ENCRYPTION_KEY', encryptionAllowPlaintext: true }, env);
    // Read as it is with encryption off (keys or not), or on with encryption_allow_plaintext.
    for (const store of [withClientEncryption(raw, allowing), withClientEncryption(raw, keysFrom(false, {})), withClientEncryption(raw, keysFrom(false, env))]) {
      assert.equal((await buffer((await store.get(wal)).body)).toString(), 'plain wal');
    }
    // On and strict (the default): exit 4 naming the object, with the option in the hint.
    const strict = withClientEncryption(raw, keysFrom(true, env));
    await assert.rejects(strict.get(wal), isExit('integrity', wal, 'not encrypted', 'encryption_allow_plaintext'));
    // Objects that stay plaintext by design are still read: catalog entries, annotations, timeline history.
    for (const key of ['pg1/base/20260101T000000Z/backup.json', 'pg1/base/20260101T000000Z/annotations/keep', 'pg1/wals/00000002.history']) {
      await raw.put(key, Buffer.from('{}'));
      assert.equal((await buffer((await strict.get(key)).body)).toString(), '{}');
    }
    // A plaintext object put in place of an encrypted one (same name, the attacker has no key) is refused.
    const label = 'pg1/base/20260102T000000Z/backup_label';
    await strict.put(label, Buffer.from('real label'));
    assert.equal((await buffer((await strict.get(label)).body)).toString(), 'real label');
    await raw.put(label, Buffer.from('forged label'));
    await assert.rejects(strict.get(label), isExit('integrity', label, 'not encrypted'));
  });

  it('an encrypted object moved to another name fails with exit 4 naming it (the name is authenticated)', async () => {
    const store = withClientEncryption(raw, keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') }));
    const a = 'pg1/wals/0000000100000000/000000010000000000000021';
    const b = 'pg1/wals/0000000100000000/000000010000000000000022';
    await store.put(a, Buffer.from('segment twenty-one'));
    await store.put(b, Buffer.from('segment twenty-two'));
    const gotA = await raw.get(a);
    const gotB = await raw.get(b);
    const [bytesA, bytesB] = [await buffer(gotA.body), await buffer(gotB.body)];
    // Swap whole objects, metadata included: each is authentic, under the other's name.
    await raw.put(a, bytesB, gotB.info.metadata === undefined ? {} : { metadata: gotB.info.metadata });
    await raw.put(b, bytesA, gotA.info.metadata === undefined ? {} : { metadata: gotA.info.metadata });
    await assert.rejects(buffer((await store.get(a)).body), isExit('integrity', a, 'corrupt'));
    await assert.rejects(buffer((await store.get(b)).body), isExit('integrity', b, 'corrupt'));
  });

  it('fails a wrong or missing key with exit 3 naming the expected key id, before reading', async () => {
    const key = 'pg1/base/20260101T000000Z/manifest.json';
    await withClientEncryption(raw, keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') })).put(key, Buffer.from('{}'));
    await assert.rejects(withClientEncryption(raw, keysFrom(false, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_B.toString('hex') })).get(key), isExit('bad-input', ID_A, ID_B, 'CLOUDBARMAN_ENCRYPTION_KEY'));
    await assert.rejects(withClientEncryption(raw, keysFrom(false, {})).get(key), isExit('bad-input', ID_A, 'no encryption key'));
    // The old key kept as a second line of the key file still opens it (rotation).
    const file = join(dir, 'two.key');
    await writeFile(file, `# current\n${KEY_B.toString('hex')}\n${KEY_A.toString('base64')}\n`, { mode: 0o600 });
    const rotated = withClientEncryption(raw, encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyFile: file, encryptionKeyEnv: 'X' }, {}));
    assert.equal((await buffer((await rotated.get(key)).body)).toString(), '{}');
    await rotated.put('pg1/base/20260101T000000Z/backup_label', Buffer.from('label'));
    assert.equal((await raw.head('pg1/base/20260101T000000Z/backup_label'))?.metadata?.[ENCRYPTION_META.keyId], ID_B);
  });

  it('fails damage in the store with exit 4 naming the object, mid-stream', async () => {
    const store = withClientEncryption(raw, keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') }));
    const key = 'pg1/wals/0000000100000000/000000010000000000000004';
    await store.put(key, randomBytes(2 * 1024 * 1024));
    const { body, info } = await raw.get(key);
    const bytes = await buffer(body);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 1;
    await raw.put(key, bytes, { ...(info.metadata === undefined ? {} : { metadata: info.metadata }) });
    const got = await store.get(key);
    await assert.rejects(buffer(got.body), isExit('integrity', key, 'corrupt'));
    // A truncated object (one chunk dropped from the end) too.
    await raw.put(key, bytes.subarray(0, HEADER_BYTES + 1024 * 1024 + 16), { ...(info.metadata === undefined ? {} : { metadata: info.metadata }) });
    await assert.rejects(buffer((await store.get(key)).body), isExit('integrity', key));
  });

  it('refuses to write without a key, and refuses a world-readable key file', async () => {
    await assert.rejects(withClientEncryption(raw, keysFrom(true, {})).put('pg1/wals/x/y', Buffer.from('z')), isExit('bad-input', 'no encryption key is set'));
    const file = join(dir, 'open.key');
    await writeFile(file, KEY_A);
    await chmod(file, 0o644);
    const keys = new EncryptionKeys({ encrypt: true, keyFile: file, keyEnv: 'X' }, { env: {}, readFile: (p) => readFile(p), fileMode: async (p) => (await stat(p)).mode });
    await assert.rejects(keys.load(), isExit('bad-input', file, 'chmod 600'));
    await chmod(file, 0o600);
    const ok = new EncryptionKeys({ encrypt: true, keyFile: file, keyEnv: 'X' }, { env: {}, readFile: (p) => readFile(p), fileMode: async (p) => (await stat(p)).mode });
    assert.equal((await ok.load()).writeKey?.id, ID_A);
  });

  it('parses keys as 64 hex digits or base64 of 32 bytes only, and never echoes one', async () => {
    assert.ok(parseKeyText(KEY_A.toString('hex'))?.equals(KEY_A));
    assert.ok(parseKeyText(KEY_A.toString('base64'))?.equals(KEY_A));
    assert.ok(parseKeyText(KEY_A.toString('base64url'))?.equals(KEY_A));
    assert.equal(parseKeyText(KEY_A.toString('hex').slice(2)), undefined);
    assert.equal(parseKeyText(randomBytes(31).toString('base64')), undefined);
    const bad = 'not-a-key-but-a-secret-anyway';
    await assert.rejects(keysFrom(true, { CLOUDBARMAN_ENCRYPTION_KEY: bad }).load(), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && !err.message.includes(bad) && !(err.hint ?? '').includes(bad));
  });
});

describe('encryption options', () => {
  it('are off by default; CLOUDBARMAN_ENCRYPTION_KEY is not mistaken for a setting; a custom variable may not look like one', async () => {
    const { loadServerConfig } = await import('../../../../src/config/load.ts');
    const absent = '/nonexistent/cloudbarman.conf';
    const cfg = await loadServerConfig('pg1', { defaultConfigPath: absent, flags: { destination: 'file:///tmp' }, env: { CLOUDBARMAN_ENCRYPTION_KEY: KEY_A.toString('hex') } });
    assert.equal(cfg.clientEncryption, 'none');
    assert.equal(cfg.encryptionKeyEnv, 'CLOUDBARMAN_ENCRYPTION_KEY');
    const on = await loadServerConfig('pg1', { defaultConfigPath: absent, flags: { destination: 'file:///tmp' }, env: { CLOUDBARMAN_CLIENT_ENCRYPTION: 'aes-256-gcm', CLOUDBARMAN_ENCRYPTION_KEY_ENV: 'PG1_KEY' } });
    assert.equal(on.clientEncryption, 'aes-256-gcm');
    assert.equal(on.encryptionKeyEnv, 'PG1_KEY');
    await assert.rejects(loadServerConfig('pg1', { defaultConfigPath: absent, flags: { destination: 'file:///tmp' }, env: { CLOUDBARMAN_ENCRYPTION_KEY_ENV: 'CLOUDBARMAN_MY_KEY' } }), isExit('bad-input', 'encryption_key_env'));
    await assert.rejects(loadServerConfig('pg1', { defaultConfigPath: absent, flags: { destination: 'file:///tmp' }, env: { CLOUDBARMAN_CLIENT_ENCRYPTION: 'aes-128' } }), isExit('bad-input', 'client_encryption'));
  });
});
