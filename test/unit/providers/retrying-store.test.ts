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

test('a Retry-After is a floor under the backoff: the wait is the larger of the two', async () => {
  const env = fakeEnv();
  const asked = [3_000, 50, undefined];
  let calls = 0;
  const value = await retrying('op', policy, env, async () => {
    const retryAfterMs = asked[calls++];
    if (calls <= asked.length) throw new StoreError('transient', 'slow down', retryAfterMs === undefined ? {} : { retryAfterMs });
    return 'ok';
  });
  assert.equal(value, 'ok');
  // 3 s asked over a 100 ms backoff; 50 ms asked under a 200 ms backoff; nothing asked: 400 ms.
  assert.deepEqual(env.sleeps, [3_000, 200, 400]);
});

test('a Retry-After beyond the budget fails at once, naming the wait and what was left', async () => {
  const env = fakeEnv();
  let calls = 0;
  const retried: number[] = [];
  await assert.rejects(
    retrying('op', { ...policy, timeoutMs: 5_000 }, { ...env, onRetry: (_op, _n, _e, delay) => retried.push(delay) }, async () => {
      calls++;
      throw new StoreError('transient', 'throttled', { target: 'k', retryAfterMs: calls === 1 ? 1_000 : 4_500 });
    }),
    (err: StoreError) => {
      assert.equal(err.kind, 'transient');
      assert.equal(err.target, 'k');
      assert.match(err.message, /^throttled \(the store asked to retry after 4\.5 s, more than the 4\.0 s left of the retry budget; gave up after 2 attempts in 1\.0 s\)$/);
      return true;
    },
  );
  assert.equal(calls, 2);
  assert.deepEqual(env.sleeps, [1_000]);
  assert.deepEqual(retried, [1_000]);
});
