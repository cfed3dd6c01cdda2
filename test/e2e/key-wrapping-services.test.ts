// Envelope encryption through Google Cloud KMS and Azure Key Vault, with the CLI as a process.
// Cloud KMS: wal-upload and wal-restore with a key file holding the Cloud KMS ciphertext of the
// master key, unwrapped by the strict Cloud KMS test server through the real @google-cloud/kms
// client, authenticated with a service-account key file (gcp_key_file) whose self-signed JWTs the
// server verifies. Key Vault: the CLI reaches for the configured vault (a closed port here: the SDK's
// Entra ID sign-in cannot be pointed at a test server), and the failure names the service and key.
// Starts: one Cloud KMS test server (test/servers/gcp-kms), stopped in after().
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { runCli, type CliResult } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';
import { startGcpKmsServer, type GcpKmsServerHandle } from '../servers/gcp-kms/index.ts';
import { makeServiceAccountKeyFile } from '../servers/gcs/service-account.ts';

const KEY = 'projects/cloudbarman-test/locations/europe-west1/keyRings/backups/cryptoKeys/e2e';
const MASTER = randomBytes(32);

let kms: GcpKmsServerHandle;
let dir: string;
let blob: Buffer;
let keyFile: string;
let serviceAccount: string;
let storeRoot: string;

before(async () => {
  kms = await startGcpKmsServer();
  kms.addKey(KEY);
  blob = kms.encrypt(KEY, MASTER);
  dir = await makeTempDir('cb-keywrap-e2e-');
  await mkdir(join(dir, 'pg_wal'));
  storeRoot = join(dir, 'store');
  await mkdir(storeRoot);
  keyFile = join(dir, 'key.gcpkms');
  await writeFile(keyFile, blob, { mode: 0o600 });
  serviceAccount = (await makeServiceAccountKeyFile(dir, kms)).path;
});
after(async () => {
  await kms?.stop();
  await removeTempDir(dir);
});

function assertClean(r: CliResult): void {
  const out = `${r.stdout}\n${r.stderr}`;
  for (const secret of [MASTER.toString('hex'), MASTER.toString('base64'), blob.toString('base64'), blob.toString('hex')]) {
    assert.ok(!out.includes(secret), 'a secret appeared in the output');
  }
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('Cloud KMS: wal-upload encrypts under the unwrapped key, wal-restore gives the segment back; a disabled version exits 3', async () => {
  const args = [
    '--destination', pathToFileURL(storeRoot).href,
    '--client-encryption', 'aes-256-gcm',
    '--encryption-key-file', keyFile,
    '--encryption-gcp-kms-key-name', KEY,
    '--encryption-kms-endpoint-url', kms.endpoint,
    '--gcp-key-file', serviceAccount,
    '--restore-prefetch', '0',
  ];
  const name = '000000010000000000000011';
  const segment = randomBytes(16 * 1024 * 1024);
  const path = join(dir, 'pg_wal', name);
  await writeFile(path, segment);
  const decrypts = kms.calls.decrypt;
  const up = await runCli(['wal-upload', 'pg1', path, ...args]);
  assert.equal(up.code, 0, up.stderr);
  assertClean(up);
  assert.equal(kms.calls.decrypt - decrypts, 1, 'one decrypt for the process');

  const back = join(dir, 'restored');
  const restored = await runCli(['wal-restore', 'pg1', name, back, ...args]);
  assert.equal(restored.code, 0, restored.stderr);
  assertClean(restored);
  assert.ok((await readFile(back)).equals(segment), 'the restored segment is the original');

  kms.setVersionState(KEY, 1, 'DISABLED');
  try {
    const disabled = await runCli(['wal-restore', 'pg1', name, join(dir, 'disabled'), ...args]);
    assert.equal(disabled.code, 3, disabled.stderr);
    assert.ok(disabled.stderr.includes(`Google Cloud KMS key ${KEY}`), disabled.stderr);
    assert.match(disabled.stderr, /FAILED_PRECONDITION/);
    assertClean(disabled);
  } finally {
    kms.setVersionState(KEY, 1, 'ENABLED');
  }
});

test('Key Vault: the configured vault is the one reached; unreachable exits 2 naming it, and two wrapping keys exit 3', async () => {
  const port = await freePort();
  const vaultKey = `https://127.0.0.1:${port}/keys/cloudbarman/0123456789abcdef0123456789abcdef`;
  const name = '000000010000000000000012';
  const path = join(dir, 'pg_wal', name);
  await writeFile(path, randomBytes(16 * 1024 * 1024));
  const base = ['--destination', pathToFileURL(storeRoot).href, '--client-encryption', 'aes-256-gcm', '--encryption-key-file', keyFile];
  const r = await runCli(['wal-upload', 'pg1', path, ...base, '--encryption-azure-key-id', vaultKey]);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(`Azure Key Vault key ${vaultKey}`), r.stderr);
  assert.match(r.stderr, /could not be reached/);
  assertClean(r);

  const both = await runCli(['wal-upload', 'pg1', path, ...base, '--encryption-azure-key-id', vaultKey, '--encryption-gcp-kms-key-name', KEY]);
  assert.equal(both.code, 3, both.stderr);
  assert.match(both.stderr, /encryption_azure_key_id .* and encryption_gcp_kms_key_name .* cannot be combined/);
});
