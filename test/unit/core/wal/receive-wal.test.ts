// receive-wal's connection loop against scripted replication sessions (no server): a failover to a
// server whose history forked before the WAL already received, and WAL gone from the server
// before it was stored. A real local store and local directory take the WAL.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { receiveWal, type ReceiveWalRequest } from '../../../../src/core/wal/receive-wal.ts';
import type { ReplicationSession, StartReplicationOptions, StreamEnd, SystemIdentity, WalStreamHandle } from '../../../../src/pg/replication-client.ts';
import type { StreamingMessage } from '../../../../src/pg/replication-messages.ts';
import { uploadWal } from '../../../../src/core/wal/wal-upload.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { silentLogger, type Logger } from '../../../../src/core/log.ts';

const SEG = 1024 * 1024;
const SYSTEM = '7710831655170753718';
let root: string;
let store: LocalObjectStore;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cb-rw-'));
  await mkdir(join(root, 'store'));
  store = new LocalObjectStore(pathToFileURL(join(root, 'store')).href);
});
afterEach(() => rm(root, { recursive: true, force: true }));

/** How one START_REPLICATION goes: WAL chunks, then an error, the end of the timeline, or waiting for stop(). */
interface StreamScript {
  chunks: Array<{ start: bigint; length: number }>;
  then: { error: Error } | { nextTimeline: { timeline: number; start: bigint } } | 'wait';
}

/** One connection: what IDENTIFY_SYSTEM says, the history files it has, and its streams in order. */
interface SessionScript {
  identify: SystemIdentity[];
  /** SHOW answers beyond the defaults. */
  settings?: Record<string, string>;
  histories?: Record<number, string>;
  streams: StreamScript[];
}

class ScriptedStream implements WalStreamHandle {
  end: StreamEnd | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  readonly #script: StreamScript;
  readonly #opts: StartReplicationOptions;
  readonly #wal: (lsn: bigint, length: number) => Buffer;

  constructor(script: StreamScript, opts: StartReplicationOptions, wal: (lsn: bigint, length: number) => Buffer) {
    this.#script = script;
    this.#opts = opts;
    this.#wal = wal;
  }

  sendStatus(): void { this.#opts.positions(); }

  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamingMessage> {
    for (const chunk of this.#script.chunks) {
      if (this.#stopped) break;
      yield { kind: 'xlog-data', start: chunk.start, walEnd: chunk.start + BigInt(chunk.length), sendTime: 0n, data: this.#wal(chunk.start, chunk.length) };
    }
    const then = this.#script.then;
    if (then === 'wait') {
      if (!this.#stopped) await new Promise<void>((resolve) => { this.#wake = resolve; });
      this.end = { nextTimeline: undefined };
      return;
    }
    if ('error' in then) throw then.error;
    this.end = { nextTimeline: then.nextTimeline };
  }
}

class ScriptedSession implements ReplicationSession {
  readonly target = 'scripted@server:5432';
  readonly started: Array<{ start: bigint; timeline: number }>;
  readonly #script: SessionScript;
  readonly #wal: (lsn: bigint, length: number) => Buffer;

  constructor(script: SessionScript, started: Array<{ start: bigint; timeline: number }>, wal: (lsn: bigint, length: number) => Buffer) {
    this.#script = script;
    this.started = started;
    this.#wal = wal;
  }

  async identifySystem(): Promise<SystemIdentity> {
    const next = this.#script.identify.length > 1 ? this.#script.identify.shift() : this.#script.identify[0];
    if (next === undefined) throw new Error('script: no IDENTIFY_SYSTEM answer');
    return next;
  }

  async show(name: string): Promise<string> {
    const settings: Record<string, string> = {
      server_version_num: '180001', server_version: '18.1', wal_segment_size: '1MB', wal_sender_timeout: '1min', synchronous_standby_names: '', archive_mode: 'off',
      ...this.#script.settings,
    };
    const value = settings[name];
    if (value === undefined) throw new Error(`script: SHOW ${name}`);
    return value;
  }

  async timelineHistory(timeline: number): Promise<{ fileName: string; content: Buffer }> {
    const text = this.#script.histories?.[timeline];
    if (text === undefined) throw new Error(`script: no history for timeline ${timeline}`);
    return { fileName: `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`, content: Buffer.from(text) };
  }

  async createPhysicalSlot(): Promise<boolean> { return true; }
  async dropSlot(): Promise<boolean> { return true; }
  async readSlot(): Promise<undefined> { return undefined; }

  startReplication(opts: StartReplicationOptions): WalStreamHandle {
    this.started.push({ start: opts.start, timeline: opts.timeline });
    const script = this.#script.streams.shift();
    if (script === undefined) throw new Error('script: no more streams');
    return new ScriptedStream(script, opts, this.#wal);
  }

  async close(): Promise<void> {}
}

/** Deterministic WAL bytes for an LSN range, so the stored segments can be checked. */
const walBytes = (() => {
  const pattern = randomBytes(4 * SEG);
  return (lsn: bigint, length: number): Buffer => {
    const out = Buffer.alloc(length);
    let i = 0;
    while (i < length) {
      const at = Number((lsn + BigInt(i)) % BigInt(pattern.length));
      i += pattern.copy(out, i, at, Math.min(pattern.length, at + length - i));
    }
    return out;
  };
})();

function request(sessions: SessionScript[], overrides: Partial<ReceiveWalRequest> = {}): { req: ReceiveWalRequest; started: Array<{ start: bigint; timeline: number }>; warnings: string[] } {
  const started: Array<{ start: bigint; timeline: number }> = [];
  const warnings: string[] = [];
  const log: Logger = { ...silentLogger, warn: (m) => { warnings.push(m); } };
  const req: ReceiveWalRequest = {
    server: 'pg1', conninfo: 'host=unused', applicationName: 'cloudbarman_receive_wal', slotName: undefined, store, compression: 'none',
    dir: join(root, 'local'), partialIntervalMs: 0, synchronous: 'auto', connectTimeoutMs: 1000, log, now: Date.now,
    signal: new AbortController().signal, reconnect: true, maxBackoffMs: 10, drainTimeoutMs: 10_000, pid: process.pid, isAlive: () => false,
    connect: async () => {
      const script = sessions.shift();
      if (script === undefined) throw new CloudbarmanError('unreachable', 'script: no more connections');
      return new ScriptedSession(script, started, walBytes);
    },
    ...overrides,
  };
  return { req, started, warnings };
}

function chunks(from: bigint, to: bigint, size = 256 * 1024): Array<{ start: bigint; length: number }> {
  const out: Array<{ start: bigint; length: number }> = [];
  for (let at = from; at < to; at += BigInt(size)) out.push({ start: at, length: Number(to - at < BigInt(size) ? to - at : BigInt(size)) });
  return out;
}

async function storedNames(): Promise<string[]> {
  const dir = join(root, 'store', 'pg1', 'wals');
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
}

describe('receiveWal', () => {
  it('after a failover to a server whose history forked before our WAL, keeps the old tail as .partial and continues on the new timeline', async () => {
    const connectionLost = new CloudbarmanError('unreachable', 'connection lost');
    const { req, started, warnings } = request([
      { identify: [{ systemId: SYSTEM, timeline: 1, xlogPos: 0x300010n }], streams: [{ chunks: chunks(0x300000n, 0x480000n), then: { error: connectionLost } }] },
      {
        identify: [{ systemId: SYSTEM, timeline: 2, xlogPos: 0x500000n }],
        histories: { 2: '1\t0/400100\tno recovery target specified\n' },
        streams: [{ chunks: chunks(0x400000n, 0x500000n), then: 'wait' }],
      },
    ], { stopAfterSegments: 2 });
    const result = await receiveWal(req);
    assert.deepEqual(started, [{ start: 0x300000n, timeline: 1 }, { start: 0x400000n, timeline: 2 }]);
    assert.deepEqual(await storedNames(), ['000000010000000000000003', '000000010000000000000004.partial', '00000002.history', '000000020000000000000004']);
    const partial = await store.head('pg1/wals/0000000100000000/000000010000000000000004.partial');
    assert.equal(partial?.metadata?.['cb_partial_end'], '0/480000');
    assert.ok(warnings.some((w) => /goes past 0\/400100, where the server's history switched to timeline 2/.test(w)), warnings.join('\n'));
    assert.equal(result.stopped_by, 'segments');
    assert.equal(result.reconnects, 1);
    assert.equal(result.timeline, 2);
    assert.equal(result.partials_kept, 1);
    assert.equal(result.history_files, 1);
    assert.deepEqual(result.gaps, []);
    assert.deepEqual(await readdir(req.dir), ['receive-wal.json'], 'everything stored, the lock released');
  });

  it('leaves the old timeline\'s .partial to a new primary that archives it itself', async () => {
    const { req } = request([
      { identify: [{ systemId: SYSTEM, timeline: 1, xlogPos: 0x300010n }], streams: [{ chunks: chunks(0x300000n, 0x480000n), then: { nextTimeline: { timeline: 2, start: 0x480000n } } }, { chunks: chunks(0x400000n, 0x500000n), then: 'wait' }],
        histories: { 2: '1\t0/480000\tno recovery target specified\n' }, settings: { archive_mode: 'on' } },
    ], { stopAfterSegments: 2, partialIntervalMs: 1 });
    const result = await receiveWal(req);
    assert.deepEqual(await storedNames(), ['000000010000000000000003', '00000002.history', '000000020000000000000004']);
    assert.equal(result.partials_kept, 0);
    assert.deepEqual(await readdir(req.dir), ['receive-wal.json']);
  });

  it('starts after the last stored segment, and reports a gap when the server no longer has that WAL', async () => {
    await mkdir(join(root, 'pg_wal'));
    await writeFile(join(root, 'pg_wal', '000000010000000000000002'), walBytes(0x200000n, SEG));
    await uploadWal({ store, server: 'pg1', walPath: join(root, 'pg_wal', '000000010000000000000002'), compression: 'none', log: silentLogger });
    const removed = new CloudbarmanError('failed', 'requested WAL segment 000000010000000000000003 has already been removed', { cause: Object.assign(new Error('removed'), { code: '58P01' }) });
    const { req, started, warnings } = request([{
      identify: [{ systemId: SYSTEM, timeline: 1, xlogPos: 0x500010n }],
      streams: [{ chunks: [], then: { error: removed } }, { chunks: chunks(0x500000n, 0x600000n), then: 'wait' }],
    }], { stopAfterSegments: 1 });
    const result = await receiveWal(req);
    assert.deepEqual(started, [{ start: 0x300000n, timeline: 1 }, { start: 0x500000n, timeline: 1 }]);
    assert.deepEqual(result.gaps, [{ from: '0/300000', to: '0/500000' }]);
    assert.ok(warnings.some((w) => /is lost/.test(w)));
    assert.deepEqual(await storedNames(), ['000000010000000000000002', '000000010000000000000005']);
  });

  it('refuses a local directory of another cluster', async () => {
    await mkdir(join(root, 'local'));
    await writeFile(join(root, 'local', 'receive-wal.json'), JSON.stringify({ format_version: 1, system_identifier: '1', wal_segment_size: SEG }));
    const { req } = request([{ identify: [{ systemId: SYSTEM, timeline: 1, xlogPos: 0x300000n }], streams: [] }]);
    await assert.rejects(receiveWal(req), (e: unknown) => e instanceof CloudbarmanError && e.kind === 'bad-input' && /system identifier 1/.test(e.message));
  });
});
