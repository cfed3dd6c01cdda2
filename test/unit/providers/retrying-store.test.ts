import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError } from '../../../providers/object-store.ts';
import { retrying, type RetryEnv } from '../../../providers/retrying-store.ts';

function fakeEnv(): RetryEnv & { clock: number; sleeps: number[] } {
  const env = {
    clock: 0,
    sleeps: [] as number[],
    now: () => env.clock,
    sleep: async (ms: number) => { env.sleeps.push(ms); env.clock += ms; },
    random: () => 1,
  };
  return env;
}

const policy = { timeoutMs: 10_000, maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1_000 };

test('retries transient failures with exponential backoff, then succeeds', async () => {
  const env = fakeEnv();
  let calls = 0;
  const value = await retrying('op', policy, env, async () => {
    calls++;
    if (calls < 4) throw new StoreError('transient', 'busy');
    return 'ok';
  });
  assert.equal(value, 'ok');
  assert.equal(calls, 4);
  assert.deepEqual(env.sleeps, [100, 200, 400]);
});

test('never retries errors that are not retryable', async () => {
  const env = fakeEnv();
  let calls = 0;
  await assert.rejects(retrying('op', policy, env, async () => { calls++; throw new StoreError('not-found', 'gone'); }), { kind: 'not-found' });
  await assert.rejects(retrying('op', policy, env, async () => { calls++; throw new Error('plain'); }), /plain/);
  assert.equal(calls, 2);
});

test('gives up after maxAttempts, saying how many attempts it made', async () => {
  const env = fakeEnv();
  let calls = 0;
  await assert.rejects(retrying('op', policy, env, async () => { calls++; throw new StoreError('unreachable', 'refused'); }),
    (err: StoreError) => err.kind === 'unreachable' && /after 5 attempts/.test(err.message));
  assert.equal(calls, 5);
  assert.deepEqual(env.sleeps, [100, 200, 400, 800]);
});

test('gives up when the next wait would pass the time budget', async () => {
  const env = fakeEnv();
  let calls = 0;
  await assert.rejects(retrying('op', { ...policy, timeoutMs: 250, maxAttempts: 100 }, env, async () => { calls++; throw new StoreError('transient', 'x'); }));
  assert.equal(calls, 2); // 100 ms, then 200 more would exceed 250
});
