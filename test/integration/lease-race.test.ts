// Two processes race for the same lease, round after round, on every store whose create-if-absent
// is atomic (local, azurite, the GCS test server; s3rver ignores If-None-Match, see docs/providers.md):
// exactly one wins each round and the other is told the lease is held (exit-5 kind 'locked').
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { makeTempDir } from '../helpers/tmp.ts';
import { startAzurite, type AzuriteHandle } from '../servers/azurite.ts';
import { startGcsServer, type GcsServerHandle } from '../servers/gcs/index.ts';
import type { ProviderName, StoreOptions } from '../../providers/store-options.ts';

const CONTENDER = resolve(import.meta.dirname, '..', 'fixtures', 'lease-contender.ts');
const ROUNDS = 5;

interface Outcome { won: boolean; kind?: string; message?: string }

/** Starts one contender; resolves once it is ready to race. */
async function contender(spec: object, env: Record<string, string>): Promise<{ go(): void; outcome: Promise<Outcome>; finish(): Promise<number> }> {
  const child = spawn(process.execPath, [CONTENDER], { env: { ...process.env, ...env, CONTENDER_STORE: JSON.stringify(spec) }, stdio: ['pipe', 'pipe', 'inherit'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<number>((r) => child.once('close', (code) => { clearTimeout(timer); r(code ?? -1); }));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  assert.equal(first.value, 'ready', 'the contender did not start');
  return {
    go: () => child.stdin.write('go\n'),
    outcome: lines.next().then((r) => JSON.parse(String(r.value)) as Outcome),
    finish: async () => { child.stdin.end(); return exited; },
  };
}

const base = { multipart: { partSizeBytes: 5 << 20, concurrency: 2 }, connectTimeoutMs: 2_000, requestTimeoutMs: 30_000 };
let work: string;
let azure: AzuriteHandle | undefined;
let gcs: GcsServerHandle | undefined;

before(async () => {
  work = await makeTempDir('cb-lease-race');
  azure = await startAzurite({ containers: ['race'] });
  gcs = await startGcsServer({ buckets: ['race'] });
});
after(async () => {
  await azure?.stop();
  await gcs?.stop();
  await rm(work, { recursive: true, force: true });
});

const STORES: Array<{ name: string; open(): Promise<{ provider: ProviderName; options: StoreOptions; env: Record<string, string> }> }> = [
  { name: 'local', open: async () => { const dir = join(work, 'local'); await mkdir(dir, { recursive: true }); return { provider: 'local', options: { ...base, destination: pathToFileURL(dir).href }, env: {} }; } },
  { name: 'azure (azurite)', open: async () => ({ provider: 'azure', options: { ...base, destination: 'azure://race/p', endpointUrl: azure?.endpoint ?? '', azure: { account: azure?.account ?? '', credential: 'default' } }, env: { AZURE_STORAGE_KEY: azure?.accountKey ?? '' } }) },
  { name: 'gcp (GCS test server)', open: async () => ({ provider: 'gcp', options: { ...base, destination: 'gs://race/p', endpointUrl: gcs?.endpoint ?? '', gcp: {} }, env: {} }) },
];

for (const store of STORES) {
  describe(`lease race on ${store.name}`, () => {
    test(`${ROUNDS} rounds of two processes: exactly one takes the lease each time`, async () => {
      const { provider, options, env } = await store.open();
      for (let round = 0; round < ROUNDS; round++) {
        const spec = { provider, options, lease: `round-${round}` };
        const a = await contender(spec, env);
        const b = await contender(spec, env);
        a.go();
        b.go();
        const outcomes = await Promise.all([a.outcome, b.outcome]);
        const winners = outcomes.filter((o) => o.won);
        assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(outcomes)}`);
        const loser = outcomes.find((o) => !o.won);
        assert.equal(loser?.kind, 'locked', `round ${round}: ${JSON.stringify(loser)}`);
        assert.match(loser?.message ?? '', /lease of race is held by contender/);
        assert.deepEqual(await Promise.all([a.finish(), b.finish()]), [0, 0]);
      }
    });
  });
}
