import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { WalReceiverSupervisor, type ReceiverDeps, type ReceiverProcess, type RestartPolicy } from '../../../../src/core/scheduler/wal-receivers.ts';

const POLICY: RestartPolicy = { minDelayMs: 1_000, maxDelayMs: 8_000, stableAfterMs: 60_000, stopTimeoutMs: 30_000 };

/** A process the test ends by hand; records the signals it got. */
class FakeChild implements ReceiverProcess {
  readonly pid: number;
  readonly signals: string[] = [];
  readonly exited: Promise<number | null>;
  exit!: (code: number | null) => void;
  readonly ignoresTerm: boolean;
  constructor(pid: number, ignoresTerm = false) {
    this.pid = pid;
    this.ignoresTerm = ignoresTerm;
    this.exited = new Promise((resolve) => { this.exit = resolve; });
  }
  terminate(): void {
    this.signals.push('TERM');
    if (!this.ignoresTerm) this.exit(0);
  }
  kill(): void {
    this.signals.push('KILL');
    this.exit(null);
  }
}

/** Virtual time: sleeps wait until the test advances the clock past them. */
function world(opts: { ignoresTerm?: boolean } = {}): { deps: ReceiverDeps; children: Array<{ server: string; child: FakeChild }>; sleeps: number[]; warnings: string[]; signals: Set<AbortSignal>; advance(ms: number): Promise<void>; settle(): Promise<void> } {
  let now = 0;
  const timers: Array<{ at: number; resolve: () => void }> = [];
  const children: Array<{ server: string; child: FakeChild }> = [];
  const sleeps: number[] = [];
  const warnings: string[] = [];
  const signals = new Set<AbortSignal>();
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  const deps: ReceiverDeps = {
    start(server) {
      const child = new FakeChild(100 + children.length, opts.ignoresTerm ?? false);
      children.push({ server, child });
      return child;
    },
    now: () => now,
    sleep(ms, signal) {
      sleeps.push(ms);
      signals.add(signal);
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        const onAbort = (): void => resolve();
        const timer = { at: now + ms, resolve: () => { signal.removeEventListener('abort', onAbort); resolve(); } };
        timers.push(timer);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
    log: { debug() {}, info() {}, notice() {}, warn: (m) => { warnings.push(m); } },
  };
  return {
    deps, children, sleeps, warnings, signals, settle,
    async advance(ms) {
      now += ms;
      for (const t of timers.splice(0)) {
        if (t.at <= now) t.resolve();
        else timers.push(t);
      }
      await settle();
    },
  };
}

describe('receive-wal supervision', () => {
  it('starts one receive-wal per server and restarts it after an exit, with growing pauses', async () => {
    const w = world();
    const sup = new WalReceiverSupervisor(w.deps, POLICY);
    await sup.reconcile(['a', 'b']);
    await w.settle();
    assert.deepEqual(w.children.map((c) => c.server), ['a', 'b']);

    w.children[0]!.child.exit(2);
    await w.settle();
    assert.deepEqual(w.sleeps, [1_000]);
    assert.match(w.warnings[0] ?? '', /a: receive-wal \(pid 100\) stopped \(exit code 2\); starting it again in 1 s/);
    await w.advance(999);
    assert.equal(w.children.length, 2, 'not before the pause is over');
    await w.advance(1);
    assert.equal(w.children.length, 3);
    assert.equal(w.children[2]?.server, 'a');

    // Quick failures double the pause up to the maximum.
    for (const expected of [2_000, 4_000, 8_000, 8_000]) {
      w.children.at(-1)!.child.exit(1);
      await w.settle();
      assert.equal(w.sleeps.at(-1), expected);
      await w.advance(expected);
    }
    // One that ran long enough starts again from the minimum.
    await w.advance(60_000);
    w.children.at(-1)!.child.exit(1);
    await w.settle();
    assert.equal(w.sleeps.at(-1), 1_000);
    assert.equal(sup.starts, 7);
    // Seven starts leave no pile of abort listeners behind (at most the running child's one).
    for (const signal of w.signals) assert.ok(getEventListeners(signal, 'abort').length <= 1, `${getEventListeners(signal, 'abort').length} abort listeners`);
    await w.advance(1_000);
    await sup.stopAll();
  });

  it('waits the longest pause when another receive-wal holds the directory (exit 5)', async () => {
    const w = world();
    const sup = new WalReceiverSupervisor(w.deps, POLICY);
    await sup.reconcile(['a']);
    await w.settle();
    w.children[0]!.child.exit(5);
    await w.settle();
    assert.deepEqual(w.sleeps, [8_000]);
    assert.match(w.warnings[0] ?? '', /another receive-wal holds its directory/);
    await sup.stopAll();
    assert.equal(w.children.length, 1, 'no start after stopAll');
  });

  it('follows the config: new servers start, removed ones get SIGTERM and are waited for', async () => {
    const w = world();
    const sup = new WalReceiverSupervisor(w.deps, POLICY);
    await sup.reconcile(['a']);
    await sup.reconcile(['a', 'b']);
    await w.settle();
    assert.deepEqual(w.children.map((c) => c.server), ['a', 'b']);
    await sup.reconcile(['b']);
    assert.deepEqual(w.children[0]!.child.signals, ['TERM']);
    assert.deepEqual(sup.servers, ['b']);
    await w.settle();
    assert.equal(w.children.length, 2, 'a stopped on purpose is not restarted');
    await sup.stopAll();
    assert.deepEqual(w.children[1]!.child.signals, ['TERM']);
    assert.deepEqual(sup.servers, []);
  });

  it('kills a child that ignores SIGTERM once the stop timeout passes', async () => {
    const w = world({ ignoresTerm: true });
    const sup = new WalReceiverSupervisor(w.deps, POLICY);
    await sup.reconcile(['a']);
    await w.settle();
    const stopping = sup.stopAll();
    await w.settle();
    assert.deepEqual(w.children[0]!.child.signals, ['TERM']);
    await w.advance(29_999);
    assert.deepEqual(w.children[0]!.child.signals, ['TERM']);
    await w.advance(1);
    await stopping;
    assert.deepEqual(w.children[0]!.child.signals, ['TERM', 'KILL']);
    assert.match(w.warnings.join('\n'), /did not stop within 30 s of SIGTERM: killing it/);
  });

  it('gives a child that names its own stop bound (its drain time) that long, not the policy default', async () => {
    const w = world({ ignoresTerm: true });
    const start = w.deps.start;
    w.deps.start = (server) => Object.assign(start(server), { stopTimeoutMs: 75_000 });
    const sup = new WalReceiverSupervisor(w.deps, POLICY);
    await sup.reconcile(['a']);
    await w.settle();
    const stopping = sup.stopAll();
    await w.settle();
    await w.advance(74_999);
    assert.deepEqual(w.children[0]!.child.signals, ['TERM'], 'not killed at the policy default of 30 s');
    await w.advance(1);
    await stopping;
    assert.deepEqual(w.children[0]!.child.signals, ['TERM', 'KILL']);
    assert.match(w.warnings.join('\n'), /did not stop within 75 s of SIGTERM/);
  });

  it('keeps trying when a process cannot even be started', async () => {
    const w = world();
    let failures = 2;
    const start = w.deps.start;
    w.deps.start = (server) => {
      if (failures-- > 0) throw new Error('spawn EAGAIN');
      return start(server);
    };
    const sup = new WalReceiverSupervisor(w.deps, POLICY);
    await sup.reconcile(['a']);
    await w.settle();
    assert.equal(w.children.length, 0);
    await w.advance(1_000);
    await w.advance(2_000);
    assert.equal(w.children.length, 1);
    assert.match(w.warnings[0] ?? '', /could not be started: spawn EAGAIN/);
    await sup.stopAll();
  });
});
