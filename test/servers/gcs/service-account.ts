// Service-account key files for tests of key-file authentication against the GCS test server.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GcsServerHandle } from './index.ts';

/** A key file written for a test, and what the server will see in the JWTs it signs. */
export interface ServiceAccountKeyFile {
  /** Path of the JSON key file (mode 0600). */
  path: string;
  /** client_email: the issuer of the JWTs. */
  email: string;
  /** private_key_id: the `kid` of the JWTs. */
  keyId: string;
}

/** The universe a generated key declares unless told otherwise. google-auth-library 11.x signs
 *  requests itself (a self-signed JWT as the bearer token) for a key outside googleapis.com, and for
 *  googleapis.com keys it always sends the JWT-bearer grant to https://oauth2.googleapis.com/token,
 *  ignoring the key file's token_uri; so only a non-default universe keeps the SDK on 127.0.0.1. */
export const TEST_UNIVERSE_DOMAIN = 'cloudbarman-test.invalid';

/** Writes a service-account key file with a fresh RSA key into `dir` and makes `server` trust it.
 *  Its token_uri points at the server's POST /token, which accepts the JWT-bearer grant. */
export async function makeServiceAccountKeyFile(
  dir: string,
  server: Pick<GcsServerHandle, 'endpoint' | 'trustServiceAccountKey'>,
  opts: { universeDomain?: string; projectId?: string } = {},
): Promise<ServiceAccountKeyFile> {
  const { privateKey, publicKey } = await new Promise<{ privateKey: string; publicKey: string }>((resolve, reject) => {
    generateKeyPair(
      'rsa',
      { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } },
      (err, pub, priv) => (err ? reject(err) : resolve({ publicKey: pub, privateKey: priv })),
    );
  });
  const projectId = opts.projectId ?? 'cloudbarman-test';
  const keyId = randomBytes(20).toString('hex');
  const email = `cloudbarman-test@${projectId}.iam.gserviceaccount.com`;
  const keyFile = {
    type: 'service_account',
    project_id: projectId,
    private_key_id: keyId,
    private_key: privateKey,
    client_email: email,
    client_id: '100000000000000000001',
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: `${server.endpoint}/token`,
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
    universe_domain: opts.universeDomain ?? TEST_UNIVERSE_DOMAIN,
  };
  const path = join(dir, `${keyId.slice(0, 8)}-service-account.json`);
  await writeFile(path, `${JSON.stringify(keyFile, null, 2)}\n`, { mode: 0o600 });
  server.trustServiceAccountKey(email, keyId, publicKey);
  return { path, email, keyId };
}
