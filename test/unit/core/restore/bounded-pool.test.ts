// forEachBounded: at most `limit` items in flight, list order, and on a failure no new item starts
// and the call settles only after the items already started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forEachBounded } from '../../../../src/core/restore/bounded-pool.ts';

/** A promise with its resolve, so the test decides when each item finishes. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => {};
  const promise = new Promise<void>((resolve) => { open = resolve; });
  return { promise, open };
}

test('runs at most limit items at once, starting them in list order', async () => {
  const gates = Array.from({ length: 5 }, gate);
  const started: number[] = [];
  let running = 0;
  let most = 0;
  const run = forEachBounded([0, 1, 2, 3, 4], 2, new AbortController(), async (i) => {
    started.push(i);
    most = Math.max(most, ++running);
    await gates[i]?.promise;
    running--;
  });
  await Promise.resolve();
  assert.deepEqual(started, [0, 1]);
  gates[1]?.open();
  await new Promise<void>((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2]);
  for (const g of gates) g.open();
  await run;
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.equal(most, 2);
});

test('the first failure aborts the signal, starts nothing new and waits for items in flight', async () => {
  const slow = gate();
  const started: number[] = [];
  let slowFinished = false;
  const controller = new AbortController();
  const run = forEachBounded([0, 1, 2, 3], 2, controller, async (i, signal) => {
    started.push(i);
    if (i === 0) {
      await slow.promise;
      assert.equal(signal.aborted, true, 'the item in flight sees the abort');
      slowFinished = true;
    }
    if (i === 1) throw new Error('item 1 failed');
  });
  await new Promise<void>((r) => setImmediate(r));
  let settled = false;
  void run.catch(() => { settled = true; });
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(settled, false, 'still waiting for item 0');
  slow.open();
  await assert.rejects(run, /item 1 failed/);
  assert.ok(slowFinished);
  assert.deepEqual(started, [0, 1]);
  assert.equal(controller.signal.aborted, true);
});

test('an empty list does nothing', async () => {
  await forEachBounded([], 4, new AbortController(), async () => { throw new Error('not called'); });
});
