// Envelope encryption through Google Cloud KMS: the master key comes out of cryptoKeys.decrypt
// (providers/gcp/kms.ts through keys.ts), tested through the real @google-cloud/kms client (REST
// transport) against the strict Cloud KMS test server.
// Starts: one Cloud KMS test server (test/servers/gcp-kms), stopped in after().
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OAuth2Client } from 'google-auth-library';
import { encryptionKeysFor } from '../../../../src/core/crypto/encrypting-store.ts';
import type { EncryptionKeys } from '../../../../src/core/crypto/keys.ts';
import type { KeyUnwrapper } from '../../../../src/core/crypto/key-unwrap.ts';
import { masterKey } from '../../../../src/io/encryption.ts';
import { createGcpKmsUnwrapper, kmsTransport, parseGcpKmsKeyName } from '../../../../providers/gcp/kms.ts';
import { startGcpKmsServer, type GcpKmsServerHandle } from '../../../servers/gcp-kms/index.ts';
import { freePort } from '../../../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../../../helpers/tmp.ts';
import { unwrapFailsWith } from '../../../helpers/unwrap-errors.ts';

const KEY = 'projects/cb-test/locations/europe-west1/keyRings/backups/cryptoKeys/master';
const OTHER = 'projects/cb-test/locations/europe-west1/keyRings/backups/cryptoKeys/other';
const MASTER = randomBytes(32);

let kms: GcpKmsServerHandle;
let dir: string;
let blob: Buffer;

before(async () => {
  kms = await startGcpKmsServer();
  kms.addKey(KEY);
  kms.addKey(OTHER);
  blob = kms.encrypt(KEY, MASTER);
  dir = await makeTempDir('cb-gcpkms-');
});
after(async () => {
  await kms?.stop();
  await removeTempDir(dir);
});

function auth(token = kms.token): OAuth2Client {
  const client = new OAuth2Client();
  client.setCredentials({ access_token: token });
  return client;
}

function unwrapperFor(keyName: string, opts: { endpoint?: string; token?: string; maxAttempts?: number } = {}): () => Promise<KeyUnwrapper> {
  return async () =>
    createGcpKmsUnwrapper({
      keyName,
      endpointUrl: opts.endpoint ?? kms.endpoint,
      connectTimeoutMs: 2_000,
      requestTimeoutMs: 5_000,
      maxAttempts: opts.maxAttempts ?? 1,
      overrides: { authClient: auth(opts.token) },
    });
}

function keysWith(keyName: string, env: Record<string, string>, opts: Parameters<typeof unwrapperFor>[1] = {}): EncryptionKeys {
  return encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionGcpKmsKeyName: keyName }, env, unwrapperFor(keyName, opts));
}

function failsWith(exit: number, ...mentions: string[]): (err: unknown) => boolean {
  return unwrapFailsWith(() => [MASTER.toString('hex'), MASTER.toString('base64'), blob.toString('base64'), kms.token], exit, ...mentions);
}

describe('keys.ts unwraps the master key through Google Cloud KMS', () => {
  it('a raw ciphertext in the key file gives the master key, with one decrypt per process', async () => {
    const file = join(dir, 'raw.key.gcpkms');
    await writeFile(file, blob, { mode: 0o600 });
    const before = kms.calls.decrypt;
    const keys = encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: file, encryptionGcpKmsKeyName: KEY }, {}, unwrapperFor(KEY));
    const loaded = await keys.load();
    assert.equal(loaded.writeKey?.id, masterKey(MASTER).id);
    await keys.load();
    assert.equal(kms.calls.decrypt - before, 1);
  });

  it('ciphertexts of an older key version still unwrap after rotation; base64 lines, first one encrypts', async () => {
    const rotatedKey = 'projects/cb-test/locations/europe-west1/keyRings/backups/cryptoKeys/rotating';
    kms.addKey(rotatedKey);
    const old = kms.encrypt(rotatedKey, MASTER);
    kms.rotate(rotatedKey);
    const second = randomBytes(32);
    const current = kms.encrypt(rotatedKey, second);
    const file = join(dir, 'lines.key.gcpkms');
    await writeFile(file, `# newest first\n${current.toString('base64')}\n${old.toString('base64')}\n`, { mode: 0o600 });
    const loaded = await encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: file, encryptionGcpKmsKeyName: rotatedKey }, {}, unwrapperFor(rotatedKey)).load();
    assert.deepEqual(loaded.keys.map((k) => k.id), [masterKey(second).id, masterKey(MASTER).id]);
    assert.equal(loaded.writeKey?.id, masterKey(second).id);
  });

  it('a ciphertext of another key exits 3: the service calls it an invalid ciphertext', async () => {
    await assert.rejects(keysWith(OTHER, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, OTHER, 'Google Cloud KMS key', 'not a valid ciphertext', 'INVALID_ARGUMENT'));
  });

  it('a damaged ciphertext exits 3', async () => {
    const damaged = Buffer.from(blob);
    damaged[damaged.length - 3] = (damaged[damaged.length - 3] ?? 0) ^ 1;
    await assert.rejects(keysWith(KEY, { CB_KEY: damaged.toString('base64') }).load(), failsWith(3, KEY, 'INVALID_ARGUMENT'));
  });

  it('a disabled key version exits 3 with the hint to enable it, and works again once enabled', async () => {
    const name = 'projects/cb-test/locations/europe-west1/keyRings/backups/cryptoKeys/disabling';
    kms.addKey(name);
    const b = kms.encrypt(name, MASTER);
    kms.setVersionState(name, 1, 'DISABLED');
    await assert.rejects(keysWith(name, { CB_KEY: b.toString('base64') }).load(), failsWith(3, 'FAILED_PRECONDITION', 'gcloud kms keys versions enable'));
    kms.setVersionState(name, 1, 'ENABLED');
    assert.equal((await keysWith(name, { CB_KEY: b.toString('base64') }).load()).writeKey?.id, masterKey(MASTER).id);
  });

  it('an unknown key exits 3 naming the option to check', async () => {
    const missing = 'projects/cb-test/locations/europe-west1/keyRings/backups/cryptoKeys/typo';
    await assert.rejects(keysWith(missing, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, missing, 'NOT_FOUND', 'encryption_gcp_kms_key_name'));
  });

  it('denied access and a bad token exit 3 with the IAM hint', async () => {
    kms.deny(true);
    try {
      await assert.rejects(keysWith(KEY, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, 'PERMISSION_DENIED', 'roles/cloudkms.cryptoKeyDecrypter'));
    } finally {
      kms.deny(false);
    }
    await assert.rejects(keysWith(KEY, { CB_KEY: blob.toString('base64') }, { token: 'ya29.not-the-right-one' }).load(), failsWith(3, 'UNAUTHENTICATED'));
  });

  it('503s are retried up to maxAttempts, then exit 2; a passing outage is survived', async () => {
    kms.failNext(1);
    assert.equal((await keysWith(KEY, { CB_KEY: blob.toString('base64') }, { maxAttempts: 2 }).load()).writeKey?.id, masterKey(MASTER).id);
    kms.failNext(5);
    const refused = kms.calls.refused;
    try {
      await assert.rejects(keysWith(KEY, { CB_KEY: blob.toString('base64') }, { maxAttempts: 2 }).load(), failsWith(2, 'could not be reached'));
      assert.equal(kms.calls.refused - refused, 2, 'two attempts, none added by the client library');
    } finally {
      kms.failNext(0);
    }
  });

  it('an unreachable endpoint exits 2 within the timeout', async () => {
    const port = await freePort();
    await assert.rejects(keysWith(KEY, { CB_KEY: blob.toString('base64') }, { endpoint: `http://127.0.0.1:${port}` }).load(), failsWith(2, 'could not be reached'));
  });

  it('a plaintext whose CRC32C does not match what the service answered is refused, not taken as a key', async () => {
    kms.corruptPlaintextCrc(true);
    try {
      await assert.rejects(keysWith(KEY, { CB_KEY: blob.toString('base64') }).load(), failsWith(2, 'CRC32C'));
    } finally {
      kms.corruptPlaintextCrc(false);
    }
  });

  it('parses key names and endpoints strictly', () => {
    assert.deepEqual(parseGcpKmsKeyName(KEY), { project: 'cb-test', location: 'europe-west1', keyRing: 'backups', cryptoKey: 'master' });
    for (const bad of ['projects/p/locations/l/keyRings/r', `${KEY}/cryptoKeyVersions/1`, 'master', '']) {
      assert.throws(() => parseGcpKmsKeyName(bad), /not a Cloud KMS key name/);
    }
    assert.deepEqual(kmsTransport('https://private.googleapis.com'), { apiEndpoint: 'private.googleapis.com', port: 443, protocol: 'https' });
    assert.deepEqual(kmsTransport('http://127.0.0.1:8080'), { apiEndpoint: '127.0.0.1', port: 8080, protocol: 'http' });
    assert.throws(() => kmsTransport('http://kms.example.com'), /must be https/);
    assert.throws(() => kmsTransport('https://kms.example.com/v1'), /no path/);
  });
});

describe('Cloud KMS test server strictness', () => {
  const post = async (path: string, body: unknown, token = kms.token): Promise<{ status: number; json: { error?: { status?: string } } }> => {
    const res = await fetch(`${kms.endpoint}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as { error?: { status?: string } } };
  };

  it('refuses missing tokens, unknown fields, bad base64, bad checksums and unknown routes', async () => {
    assert.equal((await post(`/v1/${KEY}:decrypt`, { ciphertext: blob.toString('base64') }, 'nope')).status, 401);
    const unknown = await post(`/v1/${KEY}:decrypt`, { ciphertext: blob.toString('base64'), extra: 1 });
    assert.deepEqual([unknown.status, unknown.json.error?.status], [400, 'INVALID_ARGUMENT']);
    assert.equal((await post(`/v1/${KEY}:decrypt`, { ciphertext: '***' })).status, 400);
    assert.equal((await post(`/v1/${KEY}:decrypt`, {})).status, 400);
    assert.equal((await post(`/v1/${KEY}:decrypt`, { ciphertext: blob.toString('base64'), ciphertextCrc32c: '1' })).status, 400);
    assert.equal((await post(`/v1/${KEY}:decrypt`, 'not json')).status, 400);
    assert.equal((await post(`/v1/${KEY}:rawDecrypt`, {})).status, 404);
    const ok = await post(`/v1/${KEY}:decrypt`, { ciphertext: blob.toString('base64') });
    assert.equal(ok.status, 200);
  });
});
