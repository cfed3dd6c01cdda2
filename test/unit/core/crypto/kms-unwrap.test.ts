// Envelope encryption: the master key comes out of AWS KMS Decrypt (providers/aws/kms.ts through
// keys.ts), tested through the real @aws-sdk/client-kms against the strict KMS test server.
// Starts: one KMS test server (test/servers/kms), stopped in after().
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DecryptCommand, EncryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { encryptionKeysFor } from '../../../../src/core/crypto/encrypting-store.ts';
import { EncryptionKeys } from '../../../../src/core/crypto/keys.ts';
import type { KeyUnwrapper } from '../../../../src/core/crypto/key-unwrap.ts';
import { masterKey } from '../../../../src/io/encryption.ts';
import { createKmsUnwrapper, regionOfKeyArn, resolveKmsRegion } from '../../../../providers/aws/kms.ts';
import { startKmsServer, type KmsServerHandle, type KmsTestKey } from '../../../servers/kms/index.ts';
import { freePort } from '../../../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../../../helpers/tmp.ts';
import { unwrapFailsWith } from '../../../helpers/unwrap-errors.ts';

let kms: KmsServerHandle;
let dir: string;
let keyA: KmsTestKey;
let keyB: KmsTestKey;
const MASTER = randomBytes(32);
let blobA: Buffer;

before(async () => {
  kms = await startKmsServer();
  dir = await makeTempDir('cb-kms-');
  keyA = kms.createKey('alias/cloudbarman-a');
  keyB = kms.createKey();
  blobA = kms.encrypt(keyA.keyId, MASTER);
});
after(async () => {
  await kms?.stop();
  await removeTempDir(dir);
});

function sdkClient(region = kms.region): KMSClient {
  return new KMSClient({ region, endpoint: kms.endpoint, credentials: kms.credentials, maxAttempts: 1 });
}

function unwrapperFor(keyId: string, endpoint = kms.endpoint): () => Promise<KeyUnwrapper> {
  return async () =>
    createKmsUnwrapper({
      keyId,
      endpointUrl: endpoint,
      region: kms.region,
      connectTimeoutMs: 2_000,
      requestTimeoutMs: 5_000,
      maxAttempts: 1,
      overrides: { credentials: kms.credentials },
    });
}

function keysWith(keyId: string, env: Record<string, string>, endpoint?: string, encrypt = true): EncryptionKeys {
  return encryptionKeysFor(
    { clientEncryption: encrypt ? 'aes-256-gcm' : 'none', encryptionKeyEnv: 'CB_KEY', encryptionKmsKeyId: keyId },
    env,
    unwrapperFor(keyId, endpoint),
  );
}

function failsWith(exit: number, ...mentions: string[]): (err: unknown) => boolean {
  return unwrapFailsWith(() => [MASTER.toString('hex'), MASTER.toString('base64'), blobA.toString('base64'), kms.credentials.secretAccessKey], exit, ...mentions);
}

describe('KMS test server through the real SDK', () => {
  it('GenerateDataKey, Encrypt and Decrypt round-trip, and the blob binds the key', async () => {
    const client = sdkClient();
    try {
      const dk = await client.send(new GenerateDataKeyCommand({ KeyId: 'alias/cloudbarman-a', KeySpec: 'AES_256' }));
      assert.equal(dk.KeyId, keyA.arn);
      assert.equal(dk.Plaintext?.length, 32);
      const back = await client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, KeyId: keyA.arn }));
      assert.deepEqual(Buffer.from(back.Plaintext ?? []), Buffer.from(dk.Plaintext ?? []));
      const noKeyId = await client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
      assert.equal(noKeyId.KeyId, keyA.arn);
      const enc = await client.send(new EncryptCommand({ KeyId: keyB.keyId, Plaintext: Buffer.from('hello'), EncryptionContext: { a: 'b' } }));
      const dec = await client.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { a: 'b' } }));
      assert.equal(Buffer.from(dec.Plaintext ?? []).toString(), 'hello');
      await assert.rejects(client.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { a: 'c' } })), { name: 'InvalidCiphertextException' });
      await assert.rejects(client.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: keyA.keyId })), { name: 'IncorrectKeyException' });
      const tampered = Buffer.from(enc.CiphertextBlob ?? []);
      tampered[tampered.length - 20] = (tampered[tampered.length - 20] ?? 0) ^ 1;
      await assert.rejects(client.send(new DecryptCommand({ CiphertextBlob: tampered, KeyId: keyB.keyId })), { name: 'InvalidCiphertextException' });
      await assert.rejects(client.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: 'alias/nope' })), { name: 'NotFoundException' });
      await assert.rejects(client.send(new GenerateDataKeyCommand({ KeyId: keyA.keyId })), { name: 'ValidationException' });
    } finally {
      client.destroy();
    }
  });

  it('refuses a wrong signing region, wrong credentials, and a missing signature, with the JSON error shape', async () => {
    const wrongRegion = sdkClient('us-west-2');
    const wrongSecret = new KMSClient({ region: kms.region, endpoint: kms.endpoint, credentials: { ...kms.credentials, secretAccessKey: 'x'.repeat(40) }, maxAttempts: 1 });
    try {
      await assert.rejects(wrongRegion.send(new DecryptCommand({ CiphertextBlob: blobA })), { name: 'InvalidSignatureException' });
      await assert.rejects(wrongSecret.send(new DecryptCommand({ CiphertextBlob: blobA })), { name: 'InvalidSignatureException' });
    } finally {
      wrongRegion.destroy();
      wrongSecret.destroy();
    }
    const res = await fetch(kms.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.Decrypt' },
      body: JSON.stringify({ CiphertextBlob: blobA.toString('base64') }),
    });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { __type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' });
  });
});

describe('keys.ts unwraps the master key through KMS', () => {
  it('a raw blob in the key file gives the master key, with one Decrypt per process', async () => {
    const file = join(dir, 'raw.kms');
    await writeFile(file, blobA);
    await chmod(file, 0o600);
    const before = kms.calls['Decrypt'] ?? 0;
    const keys = encryptionKeysFor(
      { clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: file, encryptionKmsKeyId: keyA.arn },
      {},
      unwrapperFor(keyA.arn),
    );
    const loaded = await keys.load();
    assert.equal(loaded.writeKey?.id, masterKey(MASTER).id);
    await keys.load();
    assert.equal((kms.calls['Decrypt'] ?? 0) - before, 1, 'one Decrypt, cached');
  });

  it('base64 lines in the key file (first encrypts), an alias, and a hex key wrapped as text', async () => {
    const other = randomBytes(32);
    const file = join(dir, 'lines.kms');
    await writeFile(file, `# wrapped keys\n${kms.encrypt(keyA.keyId, Buffer.from(`${other.toString('hex')}\n`)).toString('base64')}\n\n${blobA.toString('base64')}\n`);
    await chmod(file, 0o640);
    const keys = encryptionKeysFor(
      { clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: file, encryptionKmsKeyId: 'alias/cloudbarman-a' },
      {},
      unwrapperFor('alias/cloudbarman-a'),
    );
    const loaded = await keys.load();
    assert.deepEqual(loaded.keys.map((k) => k.id), [masterKey(other).id, masterKey(MASTER).id]);
    assert.equal(loaded.writeKey?.id, masterKey(other).id);
  });

  it('a base64 blob in the environment variable', async () => {
    const loaded = await keysWith(keyA.keyId, { CB_KEY: blobA.toString('base64') }).load();
    assert.equal(loaded.writeKey?.id, masterKey(MASTER).id);
  });

  it('a blob of another KMS key exits 3 with the key id', async () => {
    await assert.rejects(keysWith(keyB.keyId, { CB_KEY: blobA.toString('base64') }).load(), failsWith(3, keyB.keyId, 'another KMS key', 'IncorrectKeyException'));
  });

  it('a tampered blob exits 3', async () => {
    const tampered = Buffer.from(blobA);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 0x80;
    await assert.rejects(keysWith(keyA.keyId, { CB_KEY: tampered.toString('base64') }).load(), failsWith(3, keyA.keyId, 'not a valid ciphertext of this key', 'InvalidCiphertextException'));
  });

  it('a disabled key exits 3, and works again once enabled', async () => {
    keyA.enabled = false;
    try {
      await assert.rejects(keysWith(keyA.keyId, { CB_KEY: blobA.toString('base64') }).load(), failsWith(3, keyA.keyId, 'DisabledException', 'enable the KMS key'));
    } finally {
      keyA.enabled = true;
    }
    assert.equal((await keysWith(keyA.keyId, { CB_KEY: blobA.toString('base64') }).load()).writeKey?.id, masterKey(MASTER).id);
  });

  it('a failed load is not cached: the same process succeeds once KMS answers again', async () => {
    const keys = keysWith(keyA.keyId, { CB_KEY: blobA.toString('base64') });
    keyA.enabled = false;
    try {
      await assert.rejects(keys.load(), failsWith(3, keyA.keyId, 'DisabledException'));
    } finally {
      keyA.enabled = true;
    }
    assert.equal((await keys.load()).writeKey?.id, masterKey(MASTER).id);
  });

  it('access denied exits 3 with the IAM hint', async () => {
    keyA.denied = true;
    try {
      await assert.rejects(keysWith(keyA.keyId, { CB_KEY: blobA.toString('base64') }).load(), failsWith(3, keyA.keyId, 'AccessDeniedException', 'kms:Decrypt'));
    } finally {
      keyA.denied = false;
    }
  });

  it('an unknown key, or a key ARN of another region, exits 3', async () => {
    await assert.rejects(keysWith('alias/missing', { CB_KEY: blobA.toString('base64') }).load(), failsWith(3, 'alias/missing', 'NotFoundException'));
    const elsewhere = keyA.arn.replace(`:${kms.region}:`, ':ap-south-1:');
    // The ARN's region is signed for, which the server (in eu-west-1) refuses: still exit 3, not a hang.
    await assert.rejects(keysWith(elsewhere, { CB_KEY: blobA.toString('base64') }).load(), failsWith(3, elsewhere));
  });

  it('KMS unreachable exits 2', async () => {
    const port = await freePort();
    await assert.rejects(keysWith(keyA.keyId, { CB_KEY: blobA.toString('base64') }, `http://127.0.0.1:${port}`).load(), failsWith(2, keyA.keyId, 'could not be reached'));
  });

  it('malformed blobs and a missing blob exit 3 without calling KMS; a read-only setup without a key needs none', async () => {
    const before = kms.calls['Decrypt'] ?? 0;
    await assert.rejects(keysWith(keyA.keyId, { CB_KEY: 'not base64!' }).load(), failsWith(3, 'CB_KEY', 'KMS ciphertext blob'));
    await assert.rejects(keysWith(keyA.keyId, {}).load(), failsWith(3, 'no encryption key is set'));
    assert.deepEqual(await keysWith(keyA.keyId, {}, undefined, false).load(), { keys: [], writeKey: undefined });
    const big = join(dir, 'big.kms');
    await writeFile(big, randomBytes(7000));
    await chmod(big, 0o600);
    const keys = encryptionKeysFor({ clientEncryption: 'aes-256-gcm', encryptionKeyEnv: 'CB_KEY', encryptionKeyFile: big, encryptionKmsKeyId: keyA.keyId }, {}, unwrapperFor(keyA.keyId));
    await assert.rejects(keys.load(), failsWith(3, big, 'does not hold a KMS ciphertext blob'));
    assert.equal(kms.calls['Decrypt'] ?? 0, before);
  });

  it('a plaintext that is not a key exits 3', async () => {
    const blob = kms.encrypt(keyA.keyId, randomBytes(16));
    await assert.rejects(keysWith(keyA.keyId, { CB_KEY: blob.toString('base64') }).load(), failsWith(3, 'is 16 bytes'));
  });

  it('region: a key ARN names its own; otherwise aws_region, then the environment', () => {
    assert.equal(regionOfKeyArn('arn:aws:kms:eu-central-1:111122223333:key/abc'), 'eu-central-1');
    assert.equal(regionOfKeyArn('alias/x'), undefined);
    assert.equal(resolveKmsRegion({ keyId: 'arn:aws:kms:eu-central-1:111122223333:alias/x', region: 'us-east-2' }, {}), 'eu-central-1');
    assert.equal(resolveKmsRegion({ keyId: 'alias/x', region: 'us-east-2' }, { AWS_REGION: 'sa-east-1' }), 'us-east-2');
    assert.equal(resolveKmsRegion({ keyId: 'alias/x' }, { AWS_REGION: 'sa-east-1' }), 'sa-east-1');
    assert.equal(resolveKmsRegion({ keyId: 'alias/x' }, {}), 'us-east-1');
  });

  it('without an unwrapper (no KMS in this build) it exits 3', async () => {
    const keys = new EncryptionKeys({ encrypt: true, keyEnv: 'CB_KEY', kmsKeyId: 'alias/x' }, { env: { CB_KEY: blobA.toString('base64') }, readFile: async () => Buffer.alloc(0), fileMode: async () => 0o600 });
    await assert.rejects(keys.load(), failsWith(3, 'encryption_kms_key_id'));
  });
});
