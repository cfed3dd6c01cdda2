// The replication protocol without a server: message layouts byte by byte, and the command and
// stream machinery driven through a scripted stand-in for pg's wire connection.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import {
  PG_EPOCH_UNIX_MS, ReplicationProtocolError, encodeStandbyStatus, parseShownDuration, parseShownSize, parseStandbyStatus,
  parseStreamingMessage, pgTimestamp, quoteSlotName, unixMsOf,
} from '../../../src/pg/replication-messages.ts';
import { ReplicationCommand, WalStream, parseNextTimeline, sqlStateOf, type CommandEvent } from '../../../src/pg/replication-client.ts';
import { CloudbarmanError } from '../../../src/core/errors.ts';

/** An XLogData payload as the server sends it. */
function xlogData(start: bigint, walEnd: bigint, sendTime: bigint, data: Buffer): Buffer {
  const head = Buffer.alloc(25);
  head[0] = 0x77;
  head.writeBigUInt64BE(start, 1);
  head.writeBigUInt64BE(walEnd, 9);
  head.writeBigInt64BE(sendTime, 17);
  return Buffer.concat([head, data]);
}

function keepalive(walEnd: bigint, sendTime: bigint, reply: boolean): Buffer {
  const buf = Buffer.alloc(18);
  buf[0] = 0x6b;
  buf.writeBigUInt64BE(walEnd, 1);
  buf.writeBigInt64BE(sendTime, 9);
  buf[17] = reply ? 1 : 0;
  return buf;
}

describe('replication messages', () => {
  it('decodes XLogData with 64-bit LSNs beyond 2^53', () => {
    const start = (0xfedcba98n << 32n) | 0x76543210n;
    const msg = parseStreamingMessage(xlogData(start, start + 0x1000n, 123_456_789n, Buffer.from('walbytes')));
    assert.equal(msg.kind, 'xlog-data');
    assert.ok(msg.kind === 'xlog-data');
    assert.equal(msg.start, start);
    assert.equal(msg.walEnd, start + 0x1000n);
    assert.equal(msg.sendTime, 123_456_789n);
    assert.equal(msg.data.toString(), 'walbytes');
  });

  it('decodes a keepalive and its reply flag', () => {
    const msg = parseStreamingMessage(keepalive(0x3000000n, 42n, true));
    assert.deepEqual(msg, { kind: 'keepalive', walEnd: 0x3000000n, sendTime: 42n, replyRequested: true });
    assert.equal((parseStreamingMessage(keepalive(1n, 1n, false)) as { replyRequested: boolean }).replyRequested, false);
  });

  it('refuses truncated and unknown messages', () => {
    assert.throws(() => parseStreamingMessage(Buffer.from([0x77, 0, 0])), ReplicationProtocolError);
    assert.throws(() => parseStreamingMessage(keepalive(1n, 1n, true).subarray(0, 17)), ReplicationProtocolError);
    assert.throws(() => parseStreamingMessage(Buffer.from([0x71])), /0x71/);
    assert.throws(() => parseStreamingMessage(Buffer.alloc(0)), /empty/);
  });

  it('encodes a standby status update as 34 bytes, big-endian', () => {
    const buf = encodeStandbyStatus({ write: 0x1_0000_0010n, flush: 0x20n, apply: 0n, clock: -5n, replyRequested: true });
    assert.equal(buf.length, 34);
    assert.equal(buf.subarray(0, 9).toString('hex'), '720000000100000010');
    assert.equal(buf.subarray(9, 17).toString('hex'), '0000000000000020');
    assert.equal(buf.subarray(17, 25).toString('hex'), '0000000000000000');
    assert.equal(buf.subarray(25, 33).toString('hex'), 'fffffffffffffffb');
    assert.equal(buf[33], 1);
    assert.deepEqual(parseStandbyStatus(buf), { write: 0x1_0000_0010n, flush: 0x20n, apply: 0n, clock: -5n, replyRequested: true });
  });

  it('counts time in microseconds since 2000-01-01', () => {
    assert.equal(pgTimestamp(PG_EPOCH_UNIX_MS), 0n);
    assert.equal(pgTimestamp(Date.UTC(2000, 0, 1, 0, 0, 1)), 1_000_000n);
    assert.equal(unixMsOf(pgTimestamp(Date.UTC(2026, 10, 22, 3, 0, 0))), Date.UTC(2026, 10, 22, 3, 0, 0));
  });

  it('reads sizes and durations as SHOW prints them', () => {
    assert.equal(parseShownSize('16MB'), 16 * 1024 * 1024);
    assert.equal(parseShownSize('1GB'), 1024 ** 3);
    assert.equal(parseShownSize('8192'), 8192);
    assert.equal(parseShownSize('16 MB'), 16 * 1024 * 1024);
    assert.equal(parseShownSize('lots'), undefined);
    assert.equal(parseShownDuration('1min'), 60_000);
    assert.equal(parseShownDuration('30s'), 30_000);
    assert.equal(parseShownDuration('500ms'), 500);
    assert.equal(parseShownDuration('0'), 0);
    assert.equal(parseShownDuration('2h'), 7_200_000);
    assert.equal(parseShownDuration('soon'), undefined);
  });

  it('quotes slot names as identifiers', () => {
    assert.equal(quoteSlotName('cloudbarman'), '"cloudbarman"');
    assert.equal(quoteSlotName('a"b'), '"a""b"');
  });

  it('reads the next timeline from the result set after a timeline ends', () => {
    assert.deepEqual(parseNextTimeline({ columns: ['next_tli', 'next_tli_startpos'], rows: [['2', '0/500FB70']] }), { timeline: 2, start: 0x500fb70n });
    assert.equal(parseNextTimeline({ columns: ['a', 'b'], rows: [['2', '0/5']] }), undefined);
    assert.equal(parseNextTimeline({ columns: ['next_tli', 'next_tli_startpos'], rows: [] }), undefined);
  });

  it('finds the SQLSTATE through causes', () => {
    assert.equal(sqlStateOf(new CloudbarmanError('failed', 'x', { cause: Object.assign(new Error('gone'), { code: '58P01' }) })), '58P01');
    assert.equal(sqlStateOf(Object.assign(new Error('net'), { code: 'ECONNRESET' })), undefined);
    assert.equal(sqlStateOf(undefined), undefined);
  });
});

/** Polls a condition every 5 ms for at most 5 s. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met within 5 s');
    await delay(5);
  }
}

/** A stand-in for pg's Connection: records what is sent, counts pauses. */
class FakeWire extends EventEmitter {
  readonly sent: Buffer[] = [];
  queries: string[] = [];
  copyDoneSent = 0;
  pauses = 0;
  resumes = 0;
  destroyed: Error | undefined;
  readonly stream = {
    pause: () => { this.pauses++; },
    resume: () => { this.resumes++; },
    destroy: (err?: Error) => { this.destroyed = err ?? new Error('destroyed'); },
  };

  query(text: string): void { this.queries.push(text); }
  sendCopyFromChunk(chunk: Buffer): void { this.sent.push(Buffer.from(chunk)); }
  endCopyFrom(): void { this.copyDoneSent++; }
}

function command(wire: FakeWire, timeoutMs = 60_000): ReplicationCommand {
  const cmd = new ReplicationCommand('START_REPLICATION PHYSICAL 0/1000000 TIMELINE 1', wire as never, {
    target: 'test@host:5432', commandTimeoutMs: timeoutMs, abort: (err) => wire.stream.destroy(err),
  });
  cmd.submit(wire);
  return cmd;
}

async function collect(cmd: AsyncIterable<CommandEvent>): Promise<CommandEvent[]> {
  const events: CommandEvent[] = [];
  for await (const e of cmd) events.push(e);
  return events;
}

describe('ReplicationCommand', () => {
  it('sends the command and delivers copy and result events in order', async () => {
    const wire = new FakeWire();
    const cmd = command(wire);
    assert.deepEqual(wire.queries, ['START_REPLICATION PHYSICAL 0/1000000 TIMELINE 1']);
    wire.emit('replicationStart', {});
    const chunk = Buffer.from('abc');
    cmd.handleCopyData({ chunk });
    chunk.write('XYZ'); // pg reuses its buffer: the event must hold a copy
    wire.emit('copyDone', {});
    cmd.handleRowDescription({ fields: [{ name: 'next_tli' }, { name: 'next_tli_startpos' }] });
    cmd.handleDataRow({ fields: ['2', '0/3000000'] });
    cmd.handleCommandComplete({ text: 'SELECT' });
    cmd.handleCommandComplete({ text: 'START_STREAMING' });
    cmd.handleReadyForQuery();
    const events = await collect(cmd);
    assert.deepEqual(events.map((e) => e.type), ['copy-start', 'copy-data', 'copy-done', 'result', 'command-complete']);
    assert.equal((events[1] as { data: Buffer }).data.toString(), 'abc');
    assert.deepEqual((events[3] as { result: unknown }).result, { columns: ['next_tli', 'next_tli_startpos'], rows: [['2', '0/3000000']] });
    assert.equal(wire.listenerCount('copyDone'), 0, 'listeners are removed at the end');
  });

  it('pauses the socket above the high-water mark and resumes once drained', async () => {
    const wire = new FakeWire();
    const cmd = command(wire);
    wire.emit('replicationStart', {});
    for (let i = 0; i < 6; i++) cmd.handleCopyData({ chunk: Buffer.alloc(1024 * 1024) });
    assert.equal(wire.pauses, 1, 'paused once more than 4 MiB waited');
    assert.equal(cmd.paused, true);
    cmd.handleReadyForQuery();
    let seen = 0;
    for await (const e of cmd) if (e.type === 'copy-data') seen++;
    assert.equal(seen, 6);
    assert.equal(wire.resumes, 1);
  });

  it('classifies server errors by SQLSTATE', async () => {
    const cases: Array<[string | undefined, string]> = [['42704', 'bad-input'], ['55006', 'locked'], ['57P01', 'unreachable'], ['58P01', 'failed'], [undefined, 'unreachable']];
    for (const [code, kind] of cases) {
      const wire = new FakeWire();
      const cmd = command(wire);
      cmd.handleError(Object.assign(new Error(`server says ${code ?? 'nothing'}`), code === undefined ? {} : { code }));
      await assert.rejects(collect(cmd), (err: unknown) => err instanceof CloudbarmanError && err.kind === kind && sqlStateOf(err) === code);
    }
  });

  it('gives up on a command that gets no answer', async () => {
    const wire = new FakeWire();
    command(wire, 20);
    await until(() => wire.destroyed !== undefined);
    assert.match(wire.destroyed?.message ?? '', /no answer/);
  });
});

describe('WalStream', () => {
  const positions = { write: 0x1000100n, flush: 0x1000080n, apply: 0n };

  it('reports positions at the start, yields WAL, and answers the server\'s CopyDone', async () => {
    const wire = new FakeWire();
    const cmd = command(wire);
    const stream = new WalStream(cmd, { positions: () => positions, statusIntervalMs: 10_000, receiveTimeoutMs: 60_000, now: () => PG_EPOCH_UNIX_MS + 1000, abort: () => undefined, target: 't' });
    const kinds: string[] = [];
    const iterating = (async () => { for await (const m of stream) kinds.push(m.kind); })();
    wire.emit('replicationStart', {});
    cmd.handleCopyData({ chunk: xlogData(0x1000000n, 0x1000010n, 0n, Buffer.from('0123456789abcdef')) });
    cmd.handleCopyData({ chunk: keepalive(0x1000010n, 0n, false) });
    wire.emit('copyDone', {});
    await until(() => wire.copyDoneSent > 0);
    assert.equal(stream.serverEnded, true);
    cmd.handleRowDescription({ fields: [{ name: 'next_tli' }, { name: 'next_tli_startpos' }] });
    cmd.handleDataRow({ fields: ['3', '0/1000010'] });
    cmd.handleCommandComplete({ text: 'SELECT' });
    cmd.handleReadyForQuery();
    await iterating;
    assert.deepEqual(kinds, ['xlog-data', 'keepalive']);
    assert.deepEqual(stream.end, { nextTimeline: { timeline: 3, start: 0x1000010n } });
    assert.equal(wire.copyDoneSent, 1, 'the client answered CopyDone once');
    const status = parseStandbyStatus(wire.sent[0] ?? Buffer.alloc(0));
    assert.deepEqual({ ...status, clock: undefined }, { ...positions, clock: undefined, replyRequested: false });
    assert.equal(status.clock, 1_000_000n);
  });

  it('stop() sends a last status and CopyDone, then nothing more', async () => {
    const wire = new FakeWire();
    const cmd = command(wire);
    const stream = new WalStream(cmd, { positions: () => positions, statusIntervalMs: 10_000, receiveTimeoutMs: 60_000, now: Date.now, abort: () => undefined, target: 't' });
    wire.emit('replicationStart', {});
    const iterating = (async () => { for await (const _ of stream) { /* drain */ } })();
    await delay(0);
    stream.stop();
    stream.sendStatus(true);
    assert.equal(wire.copyDoneSent, 1);
    const statuses = wire.sent.length;
    wire.emit('copyDone', {});
    cmd.handleCommandComplete({ text: 'START_STREAMING' });
    cmd.handleReadyForQuery();
    await iterating;
    assert.equal(wire.sent.length, statuses, 'no status after CopyDone');
    assert.equal(wire.copyDoneSent, 1, 'CopyDone is sent once');
    assert.deepEqual(stream.end, { nextTimeline: undefined });
  });

  it('asks for a keepalive after half the receive timeout of silence, and gives up after all of it', async () => {
    const wire = new FakeWire();
    const cmd = command(wire);
    let now = 1_000_000;
    let aborted: Error | undefined;
    const stream = new WalStream(cmd, { positions: () => positions, statusIntervalMs: 10_000, receiveTimeoutMs: 1_000, now: () => now, abort: (err) => { aborted = err; cmd.handleError(err); }, target: 't' });
    wire.emit('replicationStart', {});
    const iterating = (async () => { for await (const _ of stream) { /* drain */ } })();
    iterating.catch(() => undefined); // asserted below
    await until(() => wire.sent.length === 1);
    assert.equal(parseStandbyStatus(wire.sent[0] ?? Buffer.alloc(0)).replyRequested, false, 'the status at the start');
    now += 600;
    await until(() => wire.sent.length === 2);
    assert.equal(parseStandbyStatus(wire.sent[1] ?? Buffer.alloc(0)).replyRequested, true, 'a status asking for a reply');
    now += 500;
    await until(() => aborted !== undefined);
    assert.ok(aborted instanceof CloudbarmanError && aborted.kind === 'unreachable', String(aborted));
    await assert.rejects(iterating, /no message/);
  });
});
