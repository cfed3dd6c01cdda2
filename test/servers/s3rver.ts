/**
 * Starts s3rver (a fake S3) for tests, in its own Node process on a free loopback port. A child
 * process keeps its blocking filesystem work and its legacy-OpenSSL setting out of the test process.
 * This file is also the child's entry point: `node s3rver.ts --serve` runs the server itself.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { makeTempDir, removeTempDir } from '../helpers/tmp.ts';

/** A running s3rver; path-style endpoint URL, credentials S3RVER / S3RVER (see s3rverCredentials). */
export interface S3rverHandle {
  endpoint: string;
  /** Kills the server and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** The fixed credentials s3rver accepts; tests put them in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */
export const s3rverCredentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** How long the child may take to report its port; s3rver starts in well under a second. */
const START_TIMEOUT_MS = 20_000;
/** How long a stopping child may take before it is killed outright. */
const STOP_TIMEOUT_MS = 5_000;

/** What the parent tells the child, as JSON in argv. */
interface ServeConfig {
  directory: string;
  buckets: string[];
}

/** The one message the child sends once it listens. */
interface ReadyMessage {
  port: number;
}

/** Starts s3rver with the given buckets already created and resolves once it accepts connections. */
export async function startS3rver(opts: { buckets?: string[] } = {}): Promise<S3rverHandle> {
  const directory = await makeTempDir('cloudbarman-s3rver');
  const config: ServeConfig = { directory, buckets: opts.buckets ?? [] };
  const child = fork(fileURLToPath(import.meta.url), ['--serve', JSON.stringify(config)], {
    execPath: process.execPath,
    // Not the test runner's flags (--test-*, --inspect): the child is a plain server process.
    execArgv: [],
    // Without the legacy provider, s3rver's continuation tokens (md4-based) fail on OpenSSL 3.
    env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  // Last resort for a test process that exits without calling stop(): no orphan server, no temp dir.
  const onExit = (): void => {
    child.kill('SIGKILL');
    rmSync(directory, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      process.off('exit', onExit);
      await killChild(child);
      await removeTempDir(directory);
    })());

  try {
    const { port } = await waitForReady(child, () => stderr);
    await waitForConnect(port, START_TIMEOUT_MS);
    return { endpoint: `http://127.0.0.1:${port}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Resolves with the child's ready message, or rejects when it exits or takes too long. */
async function waitForReady(child: ChildProcess, stderr: () => string): Promise<ReadyMessage> {
  return await new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms: ${stderr()}`)), START_TIMEOUT_MS);
    const onMessage = (message: unknown): void => {
      const port = (message as Partial<ReadyMessage> | null)?.port;
      if (typeof port === 'number') finish(undefined, { port });
    };
    const onExit = (code: number | null, signal: string | null): void =>
      finish(new Error(`s3rver exited before it was ready (code ${code}, signal ${signal}): ${stderr()}`));
    const finish = (err: Error | undefined, ready?: ReadyMessage): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (ready !== undefined) resolve(ready);
      else reject(err);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Tries a TCP connection until one succeeds or the deadline passes. */
async function waitForConnect(port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > deadline) throw new Error(`s3rver on port ${port} accepts no connections`);
    // Back off on the next event-loop turn rather than on a timer: the child already said it listens.
    await new Promise((resolve) => setImmediate(resolve));
  }
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

/** The part of s3rver's API the child uses (s3rver ships no types). */
interface S3rverInstance {
  run(): Promise<{ port: number }>;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string; configs: never[] }[];
}) => S3rverInstance;

/** The child: runs s3rver until the parent goes away (the IPC channel closes) or signals it. */
async function serve(config: ServeConfig): Promise<void> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: config.directory,
    configureBuckets: config.buckets.map((name) => ({ name, configs: [] })),
  });
  const { port } = await server.run();
  // If the parent dies without stopping us, the channel closes: exit rather than linger.
  process.once('disconnect', () => process.exit(0));
  process.send?.({ port } satisfies ReadyMessage);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--serve') {
  serve(JSON.parse(process.argv[3] ?? '{}') as ServeConfig).catch((err: unknown) => {
    process.stderr.write(`s3rver failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
