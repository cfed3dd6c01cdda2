/**
 * s3rver (the project's dev dependency) as a separate process on 127.0.0.1, over HTTP or, with a
 * self-signed certificate, HTTPS (pgBackRest only speaks TLS to S3).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { onCleanup, runOk, waitExit } from './proc.ts';

export interface S3rverHandle {
  endpoint: string;
  host: string;
  port: number;
  /** s3rver's data directory: objects live under <dataDir>/<bucket>/... */
  dataDir: string;
  /** The server's process id (for its CPU time in /proc). */
  pid: number;
  stop(): Promise<void>;
}

export interface S3rverOptions {
  root: string; // repository root (for node_modules/s3rver)
  dir: string; // working dir for data and log
  buckets: readonly string[];
  tls?: { key: string; cert: string };
  nodeBin?: string;
}

/** A self-signed certificate for 127.0.0.1 (also usable as its own CA bundle). */
export async function selfSignedCert(dir: string): Promise<{ key: string; cert: string }> {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  await runOk(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { timeoutMs: 30_000 },
  );
  return { key, cert };
}

export async function startS3rver(opts: S3rverOptions): Promise<S3rverHandle> {
  const dataDir = join(opts.dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const logFile = join(opts.dir, 's3rver.log');
  const args = [join(opts.root, 'node_modules/s3rver/bin/s3rver.js'), '-d', dataDir, '-a', '127.0.0.1', '-p', '0', '--silent', '--no-vhost-buckets'];
  for (const b of opts.buckets) args.push('--configure-bucket', b);
  if (opts.tls) args.push('--key', opts.tls.key, '--cert', opts.tls.cert);
  const logFd = openSync(logFile, 'a');
  const child = spawn(opts.nodeBin ?? process.execPath, args, {
    env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' },
    stdio: ['ignore', 'pipe', logFd],
  });
  closeSync(logFd);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await waitExit(child, 5000);
    }
  };
  onCleanup(`s3rver ${opts.dir}`, stop, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start in 20 s; log:\n${safeRead(logFile)}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on [^\s:]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code}; log:\n${safeRead(logFile)}`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  child.stdout!.resume();
  const scheme = opts.tls ? 'https' : 'http';
  return { endpoint: `${scheme}://127.0.0.1:${port}`, host: '127.0.0.1', port, dataDir, pid: child.pid ?? -1, stop };
}

function safeRead(f: string): string {
  try {
    return readFileSync(f, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}
