// Envelope encryption through AWS KMS, with the CLI as a process: wal-upload and wal-restore with
// client_encryption = aes-256-gcm and a key file that holds the KMS ciphertext blob of the master
// key, unwrapped by the strict KMS test server through the real @aws-sdk/client-kms.
// Starts: one KMS test server (test/servers/kms), stopped in after().
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { runCli, type CliResult } from '../helpers/cli.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { startKmsServer, type KmsServerHandle, type KmsTestKey } from '../servers/kms/index.ts';

let kms: KmsServerHandle;
let dir: string;
let key: KmsTestKey;
const MASTER = randomBytes(32);
let blob: Buffer;
let keyFile: string;
let storeRoot: string;

before(async () => {
  kms = await startKmsServer();
  key = kms.createKey('alias/cloudbarman-e2e');
  blob = kms.encrypt(key.keyId, MASTER);
  dir = await makeTempDir('cb-kms-e2e-');
  await mkdir(join(dir, 'pg_wal'));
  storeRoot = join(dir, 'store');
  await mkdir(storeRoot);
  keyFile = join(dir, 'key.kms');
  await writeFile(keyFile, blob);
  await chmod(keyFile, 0o600);
});
after(async () => {
  await kms?.stop();
  await removeTempDir(dir);
});

function args(): string[] {
  return [
    '--destination', pathToFileURL(storeRoot).href,
    '--client-encryption', 'aes-256-gcm',
    '--encryption-key-file', keyFile,
    '--encryption-kms-key-id', key.arn,
    '--encryption-kms-endpoint-url', kms.endpoint,
    '--aws-region', kms.region,
    '--restore-prefetch', '0',
  ];
}

const env = (): Record<string, string> => ({ AWS_ACCESS_KEY_ID: kms.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: kms.credentials.secretAccessKey });

/** Nothing secret in what the CLI printed: not the master key, the blob, nor the AWS secret. */
function assertNoSecrets(r: CliResult): void {
  const out = `${r.stdout}\n${r.stderr}`;
  for (const secret of [MASTER.toString('hex'), MASTER.toString('base64'), blob.toString('base64'), blob.toString('hex'), kms.credentials.secretAccessKey]) {
    assert.ok(!out.includes(secret), 'a secret appeared in the output');
  }
  assert.ok(!out.includes(MASTER.toString('latin1')) && !out.includes(blob.subarray(0, 40).toString('latin1')), 'raw key bytes appeared in the output');
}

/** The stored bytes of the one WAL object (the local store's file is CBOBJ header, metadata JSON, payload). */
async function storedPayload(name: string): Promise<Buffer> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.name.startsWith(name)) found.push(join(d, e.name));
    }
  };
  await walk(storeRoot);
  assert.equal(found.length, 1, `one object for ${name}: ${found.join(', ')}`);
  const raw = await readFile(found[0] ?? '');
  assert.equal(raw.subarray(0, 8).toString('latin1'), 'CBOBJ\0\x01\n');
  const metaLength = raw.readUInt32BE(8);
  return raw.subarray(12 + metaLength);
}

test('wal-upload and wal-restore with the master key unwrapped by AWS KMS; denied KMS exits 3', async () => {
  const name = '000000010000000000000007';
  const segment = randomBytes(16 * 1024 * 1024);
  const path = join(dir, 'pg_wal', name);
  await writeFile(path, segment);

  const decryptsBefore = kms.calls['Decrypt'] ?? 0;
  const up = await runCli(['wal-upload', 'pg1', path, ...args()], { env: env() });
  assert.equal(up.code, 0, up.stderr);
  assertNoSecrets(up);
  assert.equal((kms.calls['Decrypt'] ?? 0) - decryptsBefore, 1, 'one Decrypt for the process');

  const payload = await storedPayload(name);
  assert.equal(payload.subarray(0, 6).toString('latin1'), 'CBENC\0', 'the stored object is encrypted');
  assert.equal(payload.indexOf(segment.subarray(4096, 4096 + 64)), -1, 'no plaintext in the stored object');

  const back = join(dir, 'restored');
  const restored = await runCli(['wal-restore', 'pg1', name, back, ...args()], { env: env() });
  assert.equal(restored.code, 0, restored.stderr);
  assertNoSecrets(restored);
  assert.ok((await readFile(back)).equals(segment), 'the restored segment is the original');

  key.denied = true;
  try {
    const denied = await runCli(['wal-restore', 'pg1', name, join(dir, 'denied'), ...args()], { env: env() });
    assert.equal(denied.code, 3, denied.stderr);
    assert.match(denied.stderr, /AccessDeniedException/);
    assert.ok(denied.stderr.includes(key.arn), 'the message names the KMS key');
    assert.match(denied.stderr, /kms:Decrypt/);
    assert.doesNotMatch(denied.stderr, /\n\s+at /, 'no stack trace');
    assertNoSecrets(denied);
    assert.ok(!(await readdir(dir)).includes('denied'), 'nothing written');
  } finally {
    key.denied = false;
  }

  // The blob as base64 text in the key file works the same.
  await writeFile(keyFile, `${blob.toString('base64')}\n`);
  const again = await runCli(['wal-restore', 'pg1', name, join(dir, 'again'), ...args()], { env: env() });
  assert.equal(again.code, 0, again.stderr);
  assertNoSecrets(again);
  assert.ok((await readFile(join(dir, 'again'))).equals(segment));
});
