// Envelope encryption through Azure Key Vault: the master key comes out of unwrapKey (RSA-OAEP-256)
// (providers/azure/keyvault.ts through keys.ts), tested through the real @azure/keyvault-keys
// CryptographyClient against the strict Key Vault test server over HTTPS.
// Starts: one Key Vault test server (test/servers/keyvault), stopped in after().
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encryptionKeysFor } from '../../../../src/core/crypto/encrypting-store.ts';
import type { EncryptionKeys } from '../../../../src/core/crypto/keys.ts';
import type { KeyUnwrapper } from '../../../../src/core/crypto/key-unwrap.ts';
import { masterKey } from '../../../../src/io/encryption.ts';
import { createAzureKeyVaultUnwrapper, parseKeyVaultKeyId } from '../../../../providers/azure/keyvault.ts';
import { startKeyVaultServer, type KeyVaultServerHandle } from '../../../servers/keyvault/index.ts';
import { freePort } from '../../../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../../../helpers/tmp.ts';
import { unwrapFailsWith } from '../../../helpers/unwrap-errors.ts';

const MASTER = randomBytes(32);

let kv: KeyVaultServerHandle;
let dir: string;
let keyId: string;
let otherId: string;
let blob: Buffer;

before(async () => {
  kv = await startKeyVaultServer();
  keyId = kv.addKey('cloudbarman');
  otherId = kv.addKey('other');
  blob = kv.wrap('cloudbarman', MASTER);
  dir = await makeTempDir('cb-kv-');
});
after(async () => {
  await kv?.stop();
  await removeTempDir(dir);
});

function unwrapperFor(id: string, opts: { token?: string; maxAttempts?: number } = {}): () => Promise<KeyUnwrapper> {
  return async () =>
    createAzureKeyVaultUnwrapper({
      keyId: id,
      connectTimeoutMs: 2_000,
      requestTimeoutMs: 5_000,
      maxAttempts: opts.maxAttempts ?? 1,
      credential: kv.credential(opts.token),
      trustedCertificates: kv.ca,
    });
}

function keysWith(id: string, env: Record<string, string>, opts: Parameters<typeof unwrapperFor>[1] = {}): EncryptionKeys {
  return encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionAzureKeyId: id }, env, unwrapperFor(id, opts));
}

function failsWith(exit: number, ...mentions: string[]): (err: unknown) => boolean {
  return unwrapFailsWith(() => [MASTER.toString('hex'), MASTER.toString('base64'), blob.toString('base64'), kv.token], exit, ...mentions);
}

describe('keys.ts unwraps the master key through Azure Key Vault', () => {
  it('a raw wrapKey result in the key file gives the master key, with one unwrap per process', async () => {
    const file = join(dir, 'raw.key.kv');
    await writeFile(file, blob, { mode: 0o600 });
    const before = kv.calls.unwrap;
    const keys = encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: file, encryptionAzureKeyId: keyId }, {}, unwrapperFor(keyId));
    assert.equal((await keys.load()).writeKey?.id, masterKey(MASTER).id);
    await keys.load();
    assert.equal(kv.calls.unwrap - before, 1);
    assert.ok(kv.calls.challenges >= 1, 'the SDK went through the bearer challenge');
  });

  it('a versionless key id, base64 lines (first encrypts), and a hex key wrapped as text', async () => {
    const second = randomBytes(32);
    const asText = kv.wrap('cloudbarman', Buffer.from(second.toString('hex')));
    const file = join(dir, 'lines.key.kv');
    await writeFile(file, `${asText.toString('base64')}\n${blob.toString('base64')}\n`, { mode: 0o600 });
    const versionless = `${kv.vaultUrl}/keys/cloudbarman`;
    const loaded = await encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: file, encryptionAzureKeyId: versionless }, {}, unwrapperFor(versionless)).load();
    assert.deepEqual(loaded.keys.map((k) => k.id), [masterKey(second).id, masterKey(MASTER).id]);
  });

  it('a blob wrapped by another key exits 3: the service answers BadParameter', async () => {
    await assert.rejects(keysWith(otherId, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, 'Azure Key Vault key', otherId, 'not a valid ciphertext', 'BadParameter'));
  });

  it('a disabled key exits 3 with the hint to enable it, and works again once enabled', async () => {
    kv.setEnabled('cloudbarman', false);
    try {
      await assert.rejects(keysWith(keyId, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, 'disabled', 'set-attributes --enabled true'));
    } finally {
      kv.setEnabled('cloudbarman', true);
    }
    assert.equal((await keysWith(keyId, { CB_KEY: blob.toString('base64') }).load()).writeKey?.id, masterKey(MASTER).id);
  });

  it('a missing key exits 3 naming the option to check', async () => {
    const missing = `${kv.vaultUrl}/keys/typo`;
    await assert.rejects(keysWith(missing, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, missing, 'KeyNotFound', 'encryption_azure_key_id'));
  });

  it('a denied caller and a wrong token exit 3 with the role hint', async () => {
    kv.deny(true);
    try {
      await assert.rejects(keysWith(keyId, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, 'ForbiddenByRbac', 'Key Vault Crypto User'));
    } finally {
      kv.deny(false);
    }
    await assert.rejects(keysWith(keyId, { CB_KEY: blob.toString('base64') }, { token: 'not-the-token' }).load(), failsWith(3, 'access was denied'));
  });

  it('503s are retried up to maxAttempts, then exit 2; a passing outage is survived', async () => {
    kv.failNext(1);
    assert.equal((await keysWith(keyId, { CB_KEY: blob.toString('base64') }, { maxAttempts: 2 }).load()).writeKey?.id, masterKey(MASTER).id);
    kv.failNext(10);
    const refused = kv.calls.refused;
    try {
      await assert.rejects(keysWith(keyId, { CB_KEY: blob.toString('base64') }, { maxAttempts: 2 }).load(), failsWith(2, 'could not be reached'));
    } finally {
      kv.failNext(0);
    }
    // Each attempt of the get (falls back to remote) and of the unwrap is bounded by maxAttempts.
    assert.ok(kv.calls.refused - refused <= 4, `${kv.calls.refused - refused} refused calls`);
  });

  it('an unreachable vault exits 2 within the timeout', async () => {
    const port = await freePort();
    const id = `https://127.0.0.1:${port}/keys/cloudbarman`;
    await assert.rejects(keysWith(id, { CB_KEY: blob.toString('base64') }).load(), failsWith(2, 'could not be reached'));
  });

  it('parses key identifiers strictly', () => {
    assert.deepEqual(parseKeyVaultKeyId('https://v1.vault.azure.net/keys/cb/0123abcd'), { vaultUrl: 'https://v1.vault.azure.net', name: 'cb', version: '0123abcd' });
    assert.deepEqual(parseKeyVaultKeyId('https://v1.vault.azure.net/keys/cb'), { vaultUrl: 'https://v1.vault.azure.net', name: 'cb' });
    assert.throws(() => parseKeyVaultKeyId('http://v1.vault.azure.net/keys/cb'), /must be https/);
    assert.throws(() => parseKeyVaultKeyId('https://v1.vault.azure.net/secrets/cb'), /not a key identifier/);
    assert.throws(() => parseKeyVaultKeyId('https://v1.vault.azure.net/keys/cb?x=1'), /query string/);
    assert.throws(() => parseKeyVaultKeyId('not a url'), /not a URL/);
  });
});

describe('Key Vault test server strictness', () => {
  const call = async (method: string, path: string, body?: unknown, auth: string | null = `Bearer ${kv.token}`): Promise<{ status: number; code?: string; challenge: string | null }> => {
    const { request } = await import('node:https');
    return await new Promise((resolve, reject) => {
      const req = request(`${kv.vaultUrl}${path}`, { method, ca: kv.ca, headers: { ...(auth === null ? {} : { authorization: auth }), 'content-type': 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string } };
          resolve({ status: res.statusCode ?? 0, ...(json.error?.code === undefined ? {} : { code: json.error.code }), challenge: res.headers['www-authenticate'] ?? null });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
    });
  };

  it('challenges anonymous requests and refuses bad tokens, missing api-version, bad bodies and routes', async () => {
    const anonymous = await call('GET', '/keys/cloudbarman?api-version=2025-07-01', undefined, null);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.challenge ?? '', /^Bearer authorization="https:\/\/login\.microsoftonline\.com\/[^"]+", resource="https:\/\/vault\.azure\.net"$/);
    assert.equal((await call('GET', '/keys/cloudbarman?api-version=2025-07-01', undefined, 'Bearer nope')).status, 401);
    assert.equal((await call('GET', '/keys/cloudbarman')).status, 400);
    assert.equal((await call('GET', '/keys/cloudbarman?api-version=2025-07-01')).status, 200);
    const v = '/keys/cloudbarman//unwrapkey?api-version=2025-07-01';
    assert.deepEqual([(await call('POST', v, { alg: 'RSA-OAEP-256' })).code], ['BadParameter']);
    assert.equal((await call('POST', v, { alg: 'RSA1_5', value: blob.toString('base64url') })).status, 400);
    assert.equal((await call('POST', v, { alg: 'RSA-OAEP-256', value: blob.toString('base64url'), extra: 1 })).status, 400);
    assert.equal((await call('POST', v, 'not json')).status, 400);
    assert.equal((await call('POST', v, { alg: 'RSA-OAEP-256', value: blob.toString('base64url') })).status, 200);
    assert.equal((await call('DELETE', '/keys/cloudbarman?api-version=2025-07-01')).status, 405);
    assert.equal((await call('POST', '/keys/cloudbarman//decrypt?api-version=2025-07-01', {})).status, 404);
  });
});
