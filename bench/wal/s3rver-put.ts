/**
 * How fast the bench's S3 server itself takes PUTs: one Node process (the SDK cloudbarman uses)
 * PUTs objects of a WAL segment's stored size in a tight loop, a few at a time, to a fresh s3rver,
 * and reads the server's CPU time from /proc. It answers whether s3rver, a single-threaded JS
 * server on the same cores as the tools, bounds the burst bench's s3 rows.
 *
 *   bash scripts/with-node.sh node bench/wal/s3rver-put.ts [--mib 8] [--count 64] [--parallel 1,4]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { onCleanup, runCleanups } from '../lib/proc.ts';
import { startS3rver } from '../lib/s3rver.ts';
import { markdownTable } from '../lib/stats.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function argOf(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

/** User + system CPU seconds of a process, from /proc/<pid>/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const mib = Number(argOf('--mib', '8'));
const count = Number(argOf('--count', '64'));
const parallels = argOf('--parallel', '1,4').split(',').map(Number);
const dir = mkdtempSync('/tmp/cloudbarman-bench-s3put-');
onCleanup('workspace', () => rmSync(dir, { recursive: true, force: true }));
try {
  const s3 = await startS3rver({ root: ROOT, dir, buckets: ['bench'] });
  const client = new S3Client({
    endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const body = randomBytes(mib * 1024 * 1024);
  await client.send(new PutObjectCommand({ Bucket: 'bench', Key: 'warm-up', Body: body }));
  const rows: string[][] = [];
  for (const parallel of parallels) {
    let next = 0;
    const cpu0 = cpuSeconds(s3.pid);
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: parallel }, async () => {
      for (let i = next++; i < count; i = next++) await client.send(new PutObjectCommand({ Bucket: 'bench', Key: `p${parallel}/${i}`, Body: body }));
    }));
    const s = (performance.now() - t0) / 1000;
    const serverCpu = cpuSeconds(s3.pid) - cpu0;
    const self = process.cpuUsage(self0);
    rows.push([String(parallel), String(count), `${mib}`, s.toFixed(2), (count / s).toFixed(1), ((count * mib) / s).toFixed(0),
      `${((serverCpu / s) * 100).toFixed(0)} %`, `${(((self.user + self.system) / 1e6 / s) * 100).toFixed(0)} %`, ((serverCpu * 1000) / count).toFixed(0)]);
  }
  client.destroy();
  process.stdout.write(`## s3rver raw PUT throughput (${new Date().toISOString()})\n\n${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ` +
    `one client process (@aws-sdk/client-s3) PUTs ${count} objects of ${mib} MiB of random bytes to s3rver over HTTP on 127.0.0.1.\n\n` +
    markdownTable(['PUTs at once', 'objects', 'MiB each', 'seconds', 'PUT/s', 'MiB/s', 's3rver CPU (100 % = one core)', 'client CPU', 's3rver CPU ms per PUT'],
      rows, ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']) + '\n');
} catch (err) {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
