/**
 * One place that starts the object stores integration tests run against (a local directory,
 * s3rver, azurite and the GCS test server) and turns each into the config lines and environment
 * an operator would write. Counting objects goes through each provider's own SDK or a directory
 * walk, never through the code under test.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { mkdirForPgUser } from './postgres.ts';
import { startS3rver, s3rverCredentials } from '../servers/s3rver.ts';
import { startAzurite, type AzuriteHandle } from '../servers/azurite.ts';
import { startGcsServer, type GcsServerHandle } from '../servers/gcs/index.ts';

/** The stores an integration test can run against. */
export type StoreKind = 'local' | 's3' | 'azure' | 'gcs';

/** One server's store, as config lines plus the environment its secrets come from. */
export interface StoreFixture {
  kind: StoreKind;
  /** Lines for the server's [section]: destination and connection settings, newline-terminated. */
  section: string;
  /** Credentials, as an operator would export them (never in the config file). */
  env: Record<string, string>;
  /** Objects whose keys start with <server>/<sub>, counted with the provider's SDK or a directory walk. */
  count(server: string, sub: string): Promise<number>;
}

/** The bucket (or container) every cloud fixture uses; each fixture has its own prefix in it. */
export const TEST_BUCKET = 'cloudbarman-it';
const BUCKET = TEST_BUCKET;

/**
 * Emulators already running elsewhere (localstack/docker-compose.yml), named by these variables;
 * when one is set, the suites use it instead of starting their own server. See localstack/README.md.
 */
export const EXTERNAL_STORE_ENV = {
  s3: 'CLOUDBARMAN_TEST_S3_ENDPOINT',
  azure: 'CLOUDBARMAN_TEST_AZURE_ENDPOINT',
  gcs: 'CLOUDBARMAN_TEST_GCS_ENDPOINT',
} as const;

/** The well-known Azurite development account (public, documented by Microsoft; not a secret). */
const AZURITE_ACCOUNT = 'devstoreaccount1';
const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

interface S3Server { endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string }; stop(): Promise<void> }
interface AzureServer { endpoint: string; account: string; accountKey: string; connectionString: string; stop(): Promise<void> }
interface GcsServer { endpoint: string; stop(): Promise<void> }

const NOTHING_TO_STOP = async (): Promise<void> => undefined;

/** s3rver, or LocalStack when CLOUDBARMAN_TEST_S3_ENDPOINT names it (credentials test/test, LocalStack's). */
async function startS3(env: NodeJS.ProcessEnv): Promise<S3Server> {
  const external = env[EXTERNAL_STORE_ENV.s3];
  if (external) return { endpoint: external, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, stop: NOTHING_TO_STOP };
  const server = await startS3rver({ buckets: [BUCKET] });
  return { endpoint: server.endpoint, credentials: s3rverCredentials, stop: () => server.stop() };
}

/** azurite from npm, or the Azurite container when CLOUDBARMAN_TEST_AZURE_ENDPOINT names it (http://host:port/devstoreaccount1). */
async function startAzure(env: NodeJS.ProcessEnv): Promise<AzureServer> {
  const external = env[EXTERNAL_STORE_ENV.azure];
  if (external) {
    const connectionString = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${external};`;
    return { endpoint: external, account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, connectionString, stop: NOTHING_TO_STOP };
  }
  const server: AzuriteHandle = await startAzurite({ containers: [BUCKET] });
  return { endpoint: server.endpoint, account: server.account, accountKey: server.accountKey, connectionString: server.connectionString, stop: () => server.stop() };
}

/** The GCS test server, or fake-gcs-server when CLOUDBARMAN_TEST_GCS_ENDPOINT names it. */
async function startGcs(env: NodeJS.ProcessEnv): Promise<GcsServer> {
  const external = env[EXTERNAL_STORE_ENV.gcs];
  if (external) return { endpoint: external, stop: NOTHING_TO_STOP };
  const server: GcsServerHandle = await startGcsServer({ buckets: [BUCKET] });
  return { endpoint: server.endpoint, stop: () => server.stop() };
}

/** The servers behind a set of store kinds; stop() stops all of them. */
export class StoreServers {
  readonly #s3: S3Server | undefined;
  readonly #azure: AzureServer | undefined;
  readonly #gcs: GcsServer | undefined;
  readonly #work: string;

  private constructor(work: string, s3: S3Server | undefined, azure: AzureServer | undefined, gcs: GcsServer | undefined) {
    this.#work = work;
    this.#s3 = s3;
    this.#azure = azure;
    this.#gcs = gcs;
  }

  /** Starts the servers the kinds need (none for local); `work` holds local stores and must be readable by the pg user. */
  static async start(kinds: readonly StoreKind[], work: string, env: NodeJS.ProcessEnv = process.env): Promise<StoreServers> {
    const started: Array<{ stop(): Promise<void> }> = [];
    try {
      const s3 = kinds.includes('s3') ? await startS3(env) : undefined;
      if (s3 !== undefined) started.push(s3);
      const azure = kinds.includes('azure') ? await startAzure(env) : undefined;
      if (azure !== undefined) started.push(azure);
      const gcs = kinds.includes('gcs') ? await startGcs(env) : undefined;
      return new StoreServers(work, s3, azure, gcs);
    } catch (err) {
      await Promise.all(started.map((s) => s.stop()));
      throw err;
    }
  }

  /** A fresh store for one test: its own directory or its own prefix named `name`. */
  async fixture(kind: StoreKind, name: string): Promise<StoreFixture> {
    switch (kind) {
      case 'local': {
        const dir = await mkdirForPgUser(join(this.#work, `store-${name}`));
        return { kind, section: `destination = ${pathToFileURL(dir).href}\n`, env: {}, count: (server, sub) => countFiles(join(dir, server, sub)) };
      }
      case 's3': {
        const s3 = required(this.#s3, kind);
        return {
          kind,
          section: `provider = aws\ndestination = s3://${BUCKET}/${name}\nendpoint_url = ${s3.endpoint}\n`,
          env: { AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey },
          count: (server, sub) => countS3(s3, `${name}/${server}/${sub}`),
        };
      }
      case 'azure': {
        const azure = required(this.#azure, kind);
        return {
          kind,
          section: `provider = azure\ndestination = azure://${BUCKET}/${name}\nendpoint_url = ${azure.endpoint}\nazure_storage_account = ${azure.account}\n`,
          env: { AZURE_STORAGE_KEY: azure.accountKey },
          count: (server, sub) => countAzure(azure, `${name}/${server}/${sub}`),
        };
      }
      case 'gcs': {
        const gcs = required(this.#gcs, kind);
        return {
          kind,
          section: `provider = gcp\ndestination = gs://${BUCKET}/${name}\nendpoint_url = ${gcs.endpoint}\n`,
          env: {},
          count: (server, sub) => countGcs(gcs.endpoint, `${name}/${server}/${sub}`),
        };
      }
    }
  }

  /** Stops every server that was started. */
  async stop(): Promise<void> {
    await Promise.all([this.#s3?.stop(), this.#azure?.stop(), this.#gcs?.stop()]);
  }
}

function required<T>(handle: T | undefined, kind: StoreKind): T {
  if (handle === undefined) throw new Error(`the ${kind} server was not started: pass '${kind}' to StoreServers.start`);
  return handle;
}

/** Files under dir, skipping the local store's hidden temporaries; a missing dir counts 0. */
async function countFiles(dir: string): Promise<number> {
  let n = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (!e.name.startsWith('.')) n++;
    }
  };
  await walk(dir);
  return n;
}

async function countS3(s3: S3Server, prefix: string): Promise<number> {
  const { S3Client, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: s3.credentials });
  try {
    let n = 0;
    let token: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const out = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
      n += out.Contents?.length ?? 0;
      token = out.NextContinuationToken;
      if (token === undefined) return n;
    }
    throw new Error('S3 listing did not end');
  } finally {
    client.destroy();
  }
}

async function countAzure(azure: AzureServer, prefix: string): Promise<number> {
  const { BlobServiceClient } = await import('@azure/storage-blob');
  const container = BlobServiceClient.fromConnectionString(azure.connectionString).getContainerClient(BUCKET);
  let n = 0;
  for await (const _blob of container.listBlobsFlat({ prefix })) n++;
  return n;
}

async function countGcs(endpoint: string, prefix: string): Promise<number> {
  const { Storage } = await import('@google-cloud/storage');
  const storage = new Storage({ apiEndpoint: endpoint, projectId: 'cloudbarman-test' });
  const [files] = await storage.bucket(BUCKET).getFiles({ prefix });
  return files.length;
}
