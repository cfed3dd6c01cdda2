/**
 * Starts azurite-blob (the Azure Storage emulator, from npm) for tests, as a child process on a free
 * loopback port with its data in a temporary directory, and creates the containers a test needs
 * through the real SDK. The account is the emulator's well-known devstoreaccount1.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { freePort } from '../helpers/ports.ts';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';

/** A running azurite: the blob endpoint (with the account in its path) and the credentials it accepts. */
export interface AzuriteHandle {
  /** http://127.0.0.1:<port>/devstoreaccount1 */
  endpoint: string;
  /** A connection string naming the account, its key and the endpoint, as an operator would export it. */
  connectionString: string;
  account: string;
  accountKey: string;
  /** Kills the server and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The emulator's well-known account and key, published by Microsoft for every Azurite and Azure
 * Storage Emulator install; not a secret.
 */
export const azuriteAccount = {
  name: 'devstoreaccount1',
  key: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
} as const;

/** How long azurite may take to listen; it starts in about a second. */
const START_TIMEOUT_MS = 30_000;
/** How long a stopping azurite may take before it is killed outright. */
const STOP_TIMEOUT_MS = 5_000;
/** Attempts on a fresh port when another process took the one freePort() returned. */
const PORT_ATTEMPTS = 3;

/** The connection string for the well-known account at an endpoint. */
export function azuriteConnectionString(endpoint: string): string {
  return `DefaultEndpointsProtocol=http;AccountName=${azuriteAccount.name};AccountKey=${azuriteAccount.key};BlobEndpoint=${endpoint};`;
}

/** Creates containers (if absent) through the SDK, authenticated with the well-known key. */
export async function createContainers(endpoint: string, names: readonly string[]): Promise<void> {
  const { BlobServiceClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  const service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(azuriteAccount.name, azuriteAccount.key), {
    retryOptions: { maxTries: 1 },
  });
  for (const name of names) await service.getContainerClient(name).createIfNotExists();
}

/** Starts azurite-blob with the given containers already created; resolves once it accepts connections. */
export async function startAzurite(opts: { containers?: string[] } = {}): Promise<AzuriteHandle> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= PORT_ATTEMPTS; attempt++) {
    const server = await startOnce(await freePort());
    if ('handle' in server) {
      try {
        await createContainers(server.handle.endpoint, opts.containers ?? []);
      } catch (err) {
        await server.handle.stop();
        throw err;
      }
      return server.handle;
    }
    lastError = server.error;
    // Only a port lost to another process is worth another try.
    if (!server.portTaken) break;
  }
  throw lastError;
}

/** One start on one port: a handle, or why it failed (and whether the port was the reason). */
async function startOnce(port: number): Promise<{ handle: AzuriteHandle } | { error: unknown; portTaken: boolean }> {
  const location = await makeTempDir('cloudbarman-azurite');
  const main = createRequire(import.meta.url).resolve('azurite/dist/src/blob/main.js');
  const args = ['--skipApiVersionCheck', '--disableTelemetry', '--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', location];
  const env = { ...process.env };
  // Not the test runner's settings: the child is a plain server process.
  delete env['NODE_OPTIONS'];
  delete env['NODE_TEST_CONTEXT'];
  const child = spawn(process.execPath, [main, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  // Last resort for a test process that exits without calling stop(): no orphan server, no temp dir.
  const onExit = (): void => {
    child.kill('SIGKILL');
    rmSync(location, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  let output = '';
  const collect = (chunk: string): void => {
    output = (output + chunk).slice(-4000);
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      process.off('exit', onExit);
      await killChild(child);
      await removeTempDir(location);
    })());

  try {
    await waitForListening(child, port, () => output);
  } catch (err) {
    await stop();
    return { error: err, portTaken: /EADDRINUSE/.test(output) };
  }
  const endpoint = `http://127.0.0.1:${port}/${azuriteAccount.name}`;
  return {
    handle: {
      endpoint,
      connectionString: azuriteConnectionString(endpoint),
      account: azuriteAccount.name,
      accountKey: azuriteAccount.key,
      stop,
    },
  };
}

/** The line azurite prints once its HTTP server listens. */
const LISTENING = /successfully listens on/;

/**
 * Resolves once azurite says it listens and a TCP connection to the port succeeds; fails when the
 * child exits first or the deadline passes.
 */
async function waitForListening(child: ChildProcess, port: number, output: () => string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`azurite did not listen on ${port} within ${START_TIMEOUT_MS} ms: ${output()}`)), START_TIMEOUT_MS);
    const onData = (): void => {
      if (LISTENING.test(output())) finish(undefined);
    };
    const onExit = (code: number | null, signal: string | null): void =>
      finish(new Error(`azurite exited before it listened on ${port} (code ${code}, signal ${signal}): ${output()}`));
    const finish = (err: Error | undefined): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (err === undefined) resolve();
      else reject(err);
    };
    // Registered after the collector, so output() already holds the chunk that arrived.
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
    onData();
  });
  if (!(await canConnect(port))) throw new Error(`azurite said it listens on ${port} but accepts no connections: ${output()}`);
}

/** One TCP connection attempt to 127.0.0.1:port. */
async function canConnect(port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** SIGTERM, then SIGKILL if the child is still there after STOP_TIMEOUT_MS. */
async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
