/**
 * A physical replication connection over `pg`: the startup parameter replication=true makes the
 * backend a walsender, which speaks the replication command language (IDENTIFY_SYSTEM,
 * START_REPLICATION, ...) over the simple query protocol. No pg_receivewal or pg_basebackup of a
 * matching version is needed, so PostgreSQL 15 to 18 are served by the same code.
 *
 * `pg` authenticates, negotiates TLS and parses messages; commands run through ReplicationCommand,
 * a `pg` Submittable that sees every message of its command, including the CopyOut/CopyBoth
 * messages `pg` itself does not route (CopyBothResponse, CopyOutResponse, CopyDone). Its events are
 * queued with backpressure: above a high-water mark the socket stops being read, so the server
 * blocks in TCP rather than this process buffering WAL in memory. START_REPLICATION (receive-wal)
 * and, later, BASE_BACKUP build on it.
 */
import type { Duplex } from 'node:stream';
import pg from 'pg';
import type { ClientConfig } from 'pg';
import { CloudbarmanError } from '../core/errors.ts';
import { clientConfigFor, connectionFailure, describeTarget } from './connection.ts';
import { formatLsn, parseLsn } from './lsn.ts';
import {
  encodeStandbyStatus, parseStreamingMessage, pgTimestamp, quoteSlotName, type StreamingMessage,
} from './replication-messages.ts';

/** How to open a replication connection. */
export interface ReplicationConnectOptions {
  /** application_name of the walsender: what pg_stat_replication and synchronous_standby_names see. Overrides the conninfo's. */
  applicationName: string;
  connectTimeoutMs: number;
  /** Longest a command (not a stream) may take before the connection is given up. Default 60 s. */
  commandTimeoutMs?: number;
  /** The clock, Unix milliseconds. Default Date.now. */
  now?: () => number;
}

/** IDENTIFY_SYSTEM. */
export interface SystemIdentity {
  /** Decimal, as PostgreSQL prints it (a 64-bit number). */
  systemId: string;
  timeline: number;
  /** The current WAL flush position. */
  xlogPos: bigint;
}

/** READ_REPLICATION_SLOT. */
export interface SlotInfo {
  type: 'physical' | 'logical';
  /** Undefined while the slot reserves no WAL (created without RESERVE_WAL and never used). */
  restartLsn: bigint | undefined;
  restartTimeline: number | undefined;
}

/** One result set of a command: column names and rows as text (null for SQL NULL). */
export interface ResultSet {
  columns: string[];
  rows: (string | null)[][];
}

/** What a running command delivers, in wire order. */
export type CommandEvent =
  | { type: 'copy-start'; mode: 'out' | 'both' }
  | { type: 'copy-data'; data: Buffer }
  | { type: 'copy-done' }
  | { type: 'result'; result: ResultSet; tag: string }
  | { type: 'command-complete'; tag: string };

/** Where START_REPLICATION begins. */
export interface StartReplicationOptions {
  /** Slot to stream from; its restart_lsn follows the flush positions reported. */
  slot?: string;
  start: bigint;
  timeline: number;
  /** Positions to report; called for every status update. */
  positions: () => { write: bigint; flush: bigint; apply: bigint };
  /** Status updates at least this often (pg_receivewal's --status-interval). Default 10 s. */
  statusIntervalMs?: number;
  /** No message from the server for this long ends the stream with 'unreachable' (wal_receiver_timeout). Default 60 s. */
  receiveTimeoutMs?: number;
}

/** Where streaming went after it ended: the next timeline and where it starts, when the server said so. */
export interface StreamEnd {
  nextTimeline: { timeline: number; start: bigint } | undefined;
}

/** A running START_REPLICATION as its consumers see it (WalStream; tests script their own). */
export interface WalStreamHandle extends AsyncIterable<StreamingMessage> {
  /** After the iteration ended: where WAL continues, when the server said so. */
  readonly end: StreamEnd | undefined;
  sendStatus(replyRequested?: boolean): void;
  stop(): void;
}

/** What receive-wal needs of a replication connection (ReplicationClient; tests script their own). */
export interface ReplicationSession {
  readonly target: string;
  identifySystem(): Promise<SystemIdentity>;
  show(name: string): Promise<string>;
  timelineHistory(timeline: number): Promise<{ fileName: string; content: Buffer }>;
  createPhysicalSlot(name: string): Promise<boolean>;
  dropSlot(name: string): Promise<boolean>;
  readSlot(name: string): Promise<SlotInfo | undefined>;
  startReplication(opts: StartReplicationOptions): WalStreamHandle;
  close(): Promise<void>;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const LOW_WATER_BYTES = 1024 * 1024;

/** The part of pg's internal Connection that commands drive; its public typing omits these. */
interface WireConnection {
  stream: Duplex;
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  on(event: string, listener: (message: unknown) => void): unknown;
  removeListener(event: string, listener: (message: unknown) => void): unknown;
}

interface PgField { name: string }
interface PgMessageWithText { text: string }

/** An open replication connection. Commands run one at a time; close() always. */
export class ReplicationClient implements ReplicationSession {
  readonly #client: pg.Client;
  readonly #wire: WireConnection;
  readonly #target: string;
  readonly #commandTimeoutMs: number;
  readonly #now: () => number;
  #lost: Error | undefined;
  #closed = false;

  private constructor(client: pg.Client, opts: ReplicationConnectOptions) {
    this.#client = client;
    this.#wire = (client as unknown as { connection: WireConnection }).connection;
    this.#target = describeTarget(client);
    this.#commandTimeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.#now = opts.now ?? Date.now;
    // A lost socket reaches the running command through handleError; this keeps the event from
    // crashing the process when no command runs.
    client.on('error', (err) => { this.#lost ??= err; });
    client.on('end', () => { this.#lost ??= new Error('connection ended'); });
  }

  /** Connects with replication=true (physical replication). Failures: 'unreachable' or 'bad-input'. */
  static async open(conninfo: string, opts: ReplicationConnectOptions): Promise<ReplicationClient> {
    const config: ClientConfig & { replication: string } = {
      ...(await clientConfigFor(conninfo, { applicationName: opts.applicationName, connectTimeoutMs: opts.connectTimeoutMs })),
      application_name: opts.applicationName,
      replication: 'true',
    };
    const client = new pg.Client(config);
    try {
      await client.connect();
    } catch (err) {
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw replicationConnectFailure(err, describeTarget(client));
    }
    return new ReplicationClient(client, opts);
  }

  /** "user@host:port", for messages; never the password. */
  get target(): string {
    return this.#target;
  }

  /** IDENTIFY_SYSTEM: the cluster's identity, current timeline and WAL position. */
  async identifySystem(): Promise<SystemIdentity> {
    const row = firstRow(await this.query('IDENTIFY_SYSTEM'), 'IDENTIFY_SYSTEM', 3);
    const [systemId, timeline, xlogPos] = row;
    const lsn = parseLsn(xlogPos ?? '');
    if (systemId == null || timeline == null || lsn === undefined) throw this.#protocolError(`IDENTIFY_SYSTEM returned an unexpected row ${JSON.stringify(row)}`);
    return { systemId, timeline: Number(timeline), xlogPos: lsn };
  }

  /** SHOW name: a server setting, as text with its unit ("16MB", "1min"). */
  async show(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_.]*$/.test(name)) throw new CloudbarmanError('bad-input', `"${name}" is not a setting name`);
    const value = firstRow(await this.query(`SHOW ${name}`), `SHOW ${name}`, 1)[0];
    if (value == null) throw this.#protocolError(`SHOW ${name} returned NULL`);
    return value;
  }

  /**
   * TIMELINE_HISTORY: the history file of a timeline (> 1). The server sends the file's bytes
   * as text; they travel through `pg`'s UTF-8 decoding, which is exact for every history file
   * PostgreSQL writes unless a restore point name holds bytes that are not UTF-8.
   */
  async timelineHistory(timeline: number): Promise<{ fileName: string; content: Buffer }> {
    const [fileName, content] = firstRow(await this.query(`TIMELINE_HISTORY ${timeline}`), 'TIMELINE_HISTORY', 2);
    if (fileName == null || content == null) throw this.#protocolError('TIMELINE_HISTORY returned NULL');
    return { fileName, content: Buffer.from(content, 'utf8') };
  }

  /** CREATE_REPLICATION_SLOT name PHYSICAL RESERVE_WAL. False when a slot of that name already exists. */
  async createPhysicalSlot(name: string): Promise<boolean> {
    try {
      await this.query(`CREATE_REPLICATION_SLOT ${quoteSlotName(name)} PHYSICAL RESERVE_WAL`);
      return true;
    } catch (err) {
      if (sqlStateOf(err) === '42710') return false; // duplicate_object
      throw err;
    }
  }

  /** DROP_REPLICATION_SLOT name. False when there is no such slot; 'locked' while a stream uses it. */
  async dropSlot(name: string): Promise<boolean> {
    try {
      await this.query(`DROP_REPLICATION_SLOT ${quoteSlotName(name)}`);
      return true;
    } catch (err) {
      if (sqlStateOf(err) === '42704') return false; // undefined_object
      throw err;
    }
  }

  /** READ_REPLICATION_SLOT (PostgreSQL 15+); undefined when the slot does not exist. */
  async readSlot(name: string): Promise<SlotInfo | undefined> {
    const [type, restartLsn, restartTli] = firstRow(await this.query(`READ_REPLICATION_SLOT ${quoteSlotName(name)}`), 'READ_REPLICATION_SLOT', 3);
    if (type == null) return undefined;
    return {
      type: type === 'logical' ? 'logical' : 'physical',
      restartLsn: restartLsn == null ? undefined : parseLsn(restartLsn),
      restartTimeline: restartTli == null ? undefined : Number(restartTli),
    };
  }

  /** Runs a command that returns result sets (no COPY) and collects them. */
  async query(sql: string): Promise<ResultSet[]> {
    const results: ResultSet[] = [];
    const command = this.run(sql);
    for await (const event of command) {
      if (event.type === 'result') results.push(event.result);
      else if (event.type === 'copy-start') {
        this.#abort(this.#protocolError(`${sql.split(' ')[0] ?? sql} unexpectedly started a COPY`));
      }
    }
    return results;
  }

  /**
   * Runs one command and returns its events, for commands that COPY (START_REPLICATION,
   * BASE_BACKUP). Iterate to the end: the connection serves nothing else meanwhile. Until the
   * first COPY message arrives the command timeout applies (timeoutMs overrides it, e.g. for a
   * BASE_BACKUP that waits for a spread checkpoint); afterwards the caller watches time.
   */
  run(sql: string, opts: { timeoutMs?: number } = {}): ReplicationCommand {
    if (this.#closed) throw new CloudbarmanError('failed', `the replication connection to ${this.#target} is closed`);
    if (this.#lost !== undefined) throw this.#lostError(this.#lost);
    const command = new ReplicationCommand(sql, this.#wire, {
      target: this.#target,
      commandTimeoutMs: opts.timeoutMs ?? this.#commandTimeoutMs,
      abort: (err) => this.#abort(err),
    });
    this.#client.query(command);
    return command;
  }

  /** START_REPLICATION [SLOT s] PHYSICAL X/Y TIMELINE n: streams WAL until stopped or the timeline ends. */
  startReplication(opts: StartReplicationOptions): WalStream {
    const slot = opts.slot === undefined ? '' : `SLOT ${quoteSlotName(opts.slot)} `;
    const command = this.run(`START_REPLICATION ${slot}PHYSICAL ${formatLsn(opts.start)} TIMELINE ${opts.timeline}`);
    return new WalStream(command, {
      positions: opts.positions,
      statusIntervalMs: opts.statusIntervalMs ?? 10_000,
      receiveTimeoutMs: opts.receiveTimeoutMs ?? 60_000,
      now: this.#now,
      abort: (err) => this.#abort(err),
      target: this.#target,
    });
  }

  /** Ends the session (a Terminate message, which also ends a running stream); never throws. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const ended = this.#client.end().catch(() => undefined);
    // A server that stopped answering must not hold the process: the socket goes after 5 s.
    const timer = setTimeout(() => this.#wire.stream.destroy(), 5_000);
    timer.unref();
    await ended;
    clearTimeout(timer);
  }

  /** Drops the socket: whatever runs fails with err. */
  #abort(err: Error): void {
    this.#lost ??= err;
    this.#wire.stream.destroy(err);
  }

  #lostError(cause: Error): CloudbarmanError {
    return new CloudbarmanError('unreachable', `the replication connection to ${this.#target} was lost: ${cause.message}`, { cause });
  }

  #protocolError(message: string): CloudbarmanError {
    return new CloudbarmanError('failed', `${this.#target}: ${message}`, { hint: 'the server does not speak the replication protocol as documented; is this PostgreSQL 15 or later?' });
  }
}

function firstRow(results: ResultSet[], what: string, columns: number): (string | null)[] {
  const row = results[0]?.rows[0];
  if (row === undefined || row.length < columns) {
    throw new CloudbarmanError('failed', `${what} returned no row with ${columns} columns`, { hint: 'is this PostgreSQL 15 or later, connected with replication=true?' });
  }
  return row;
}

/**
 * One replication command as a `pg` Submittable, delivering its messages as an async iterable of
 * CommandEvents. CopyData payloads are copied out of `pg`'s parse buffer (which it reuses), and the
 * socket is paused while more than a few MiB wait unconsumed.
 */
export class ReplicationCommand implements AsyncIterable<CommandEvent> {
  readonly text: string;
  readonly #wire: WireConnection;
  readonly #target: string;
  readonly #abortConnection: (err: Error) => void;
  readonly #queue: CommandEvent[] = [];
  #queuedBytes = 0;
  #paused = false;
  #waiter: (() => void) | undefined;
  #done = false;
  #error: Error | undefined;
  #columns: string[] | undefined;
  #rows: (string | null)[][] = [];
  #timer: NodeJS.Timeout | undefined;
  #copying = false;
  #lastMessageAt = 0;
  #now: () => number = Date.now;
  readonly #listeners: Array<[string, (message: unknown) => void]>;

  constructor(text: string, wire: WireConnection, opts: { target: string; commandTimeoutMs: number; abort: (err: Error) => void }) {
    this.text = text;
    this.#wire = wire;
    this.#target = opts.target;
    this.#abortConnection = opts.abort;
    this.#listeners = [
      ['replicationStart', () => this.#copyStart('both')],
      ['copyOutResponse', () => this.#copyStart('out')],
      ['copyDone', () => this.#push({ type: 'copy-done' }, 0)],
    ];
    this.#timer = setTimeout(() => {
      this.#abortConnection(new CloudbarmanError('unreachable', `${this.#verb()} got no answer from ${this.#target} within ${Math.round(opts.commandTimeoutMs / 1000)} s`, {
        hint: 'the server is overloaded or the network drops packets; the connection was closed',
      }));
    }, opts.commandTimeoutMs);
    this.#timer.unref();
  }

  /** Called by `pg` when the command's turn comes: sends it as a simple Query. */
  submit(connection: unknown): void {
    const wire = connection as WireConnection;
    for (const [event, listener] of this.#listeners) wire.on(event, listener);
    this.#lastMessageAt = this.#now();
    wire.query(this.text);
  }

  /** Sends one CopyData message to the server (CopyBoth mode). */
  sendCopyData(payload: Buffer): void {
    if (!this.#done) this.#wire.sendCopyFromChunk(payload);
  }

  /** Sends CopyDone: the client will send no more CopyData. */
  sendCopyDone(): void {
    if (!this.#done) this.#wire.endCopyFrom();
  }

  /** When the socket last delivered a message of this command (Unix ms), for a receive timeout. */
  get lastMessageAt(): number {
    return this.#lastMessageAt;
  }

  /** True while the socket is paused because the consumer is behind. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Injects the clock used for lastMessageAt. */
  setClock(now: () => number): void {
    this.#now = now;
  }

  // ---- the Submittable interface `pg` calls

  handleRowDescription(message: { fields: PgField[] }): void {
    this.#seen();
    this.#columns = message.fields.map((f) => f.name);
    this.#rows = [];
  }

  handleDataRow(message: { fields: (string | null)[] }): void {
    this.#seen();
    this.#rows.push(message.fields);
  }

  handleCommandComplete(message: PgMessageWithText): void {
    this.#seen();
    if (this.#columns !== undefined) {
      this.#push({ type: 'result', result: { columns: this.#columns, rows: this.#rows }, tag: message.text }, 0);
      this.#columns = undefined;
      this.#rows = [];
    } else {
      this.#push({ type: 'command-complete', tag: message.text }, 0);
    }
  }

  handleCopyData(message: { chunk: Buffer }): void {
    this.#seen();
    // pg parses into a buffer it later reuses: keep a copy, not a view.
    const data = Buffer.from(message.chunk);
    this.#push({ type: 'copy-data', data }, data.length);
  }

  handleReadyForQuery(): void {
    this.#finish(undefined);
  }

  handleError(err: Error): void {
    this.#finish(err);
  }

  handleEmptyQuery(): void {}

  handlePortalSuspended(): void {}

  handleCopyInResponse(): void {
    this.#abortConnection(new CloudbarmanError('failed', `${this.#verb()} asked to receive COPY data, which no replication command does`));
  }

  // ---- the consumer side

  async *[Symbol.asyncIterator](): AsyncIterator<CommandEvent> {
    for (;;) {
      const event = this.#queue.shift();
      if (event !== undefined) {
        if (event.type === 'copy-data') this.#queuedBytes -= event.data.length;
        if (this.#paused && this.#queuedBytes <= LOW_WATER_BYTES) {
          this.#paused = false;
          this.#lastMessageAt = this.#now();
          this.#wire.stream.resume();
        }
        yield event;
        continue;
      }
      if (this.#done) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => { this.#waiter = resolve; });
    }
  }

  #verb(): string {
    return this.text.split(' ')[0] ?? this.text;
  }

  #seen(): void {
    this.#lastMessageAt = this.#now();
  }

  #copyStart(mode: 'out' | 'both'): void {
    this.#seen();
    this.#copying = true;
    // From here on the caller's stream logic owns timing (a quiet stream is normal).
    clearTimeout(this.#timer);
    this.#push({ type: 'copy-start', mode }, 0);
  }

  #push(event: CommandEvent, bytes: number): void {
    if (this.#done) return;
    this.#queue.push(event);
    this.#queuedBytes += bytes;
    if (!this.#paused && this.#queuedBytes > HIGH_WATER_BYTES) {
      this.#paused = true;
      this.#wire.stream.pause();
    }
    this.#wake();
  }

  #finish(err: Error | undefined): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    for (const [event, listener] of this.#listeners) this.#wire.removeListener(event, listener);
    if (this.#paused) {
      this.#paused = false;
      this.#wire.stream.resume();
    }
    if (err !== undefined) this.#error = commandFailure(err, this.#verb(), this.#target, this.#copying);
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

/**
 * A running START_REPLICATION: iterate it for XLogData and keepalive messages. It sends status
 * updates by itself every statusIntervalMs, asks for a keepalive after half the receive timeout
 * of silence, and gives up after all of it. The iteration ends when the server ends the stream
 * (end of a timeline, or after stop()); `end` then says where WAL continues.
 */
export class WalStream implements WalStreamHandle {
  readonly #command: ReplicationCommand;
  readonly #positions: StartReplicationOptions['positions'];
  readonly #now: () => number;
  readonly #abort: (err: Error) => void;
  readonly #target: string;
  readonly #receiveTimeoutMs: number;
  readonly #statusIntervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #lastStatusAt = 0;
  #pinged = false;
  #clientDone = false;
  #serverDone = false;
  #streaming = false;
  #end: StreamEnd | undefined;

  constructor(command: ReplicationCommand, opts: {
    positions: StartReplicationOptions['positions']; statusIntervalMs: number; receiveTimeoutMs: number;
    now: () => number; abort: (err: Error) => void; target: string;
  }) {
    this.#command = command;
    this.#positions = opts.positions;
    this.#now = opts.now;
    this.#abort = opts.abort;
    this.#target = opts.target;
    this.#receiveTimeoutMs = opts.receiveTimeoutMs;
    this.#statusIntervalMs = opts.statusIntervalMs;
    command.setClock(opts.now);
  }

  /** After the iteration ended: the next timeline, when the server switched. */
  get end(): StreamEnd | undefined {
    return this.#end;
  }

  /** Sends a standby status update with the current positions. No-op once the client has ended its side. */
  sendStatus(replyRequested = false): void {
    if (!this.#streaming || this.#clientDone) return;
    const { write, flush, apply } = this.#positions();
    this.#lastStatusAt = this.#now();
    this.#command.sendCopyData(encodeStandbyStatus({ write, flush, apply, clock: pgTimestamp(this.#lastStatusAt), replyRequested }));
  }

  /** Asks the server to end the stream (CopyDone). Keep iterating: WAL already sent still arrives. */
  stop(): void {
    if (this.#clientDone) return;
    if (this.#streaming) this.sendStatus(false);
    this.#clientDone = true;
    if (this.#streaming) this.#command.sendCopyDone();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamingMessage> {
    let nextTimeline: StreamEnd['nextTimeline'];
    try {
      for await (const event of this.#command) {
        switch (event.type) {
          case 'copy-start':
            this.#streaming = true;
            this.#startTimer();
            if (this.#clientDone) this.#command.sendCopyDone();
            break;
          case 'copy-data':
            yield parseStreamingMessage(event.data);
            break;
          case 'copy-done':
            // The server ended its side (end of a timeline); answer in kind, then its result set follows.
            this.#serverDone = true;
            this.#stopTimer();
            if (!this.#clientDone) {
              this.#clientDone = true;
              this.#command.sendCopyDone();
            }
            break;
          case 'result':
            nextTimeline = parseNextTimeline(event.result) ?? nextTimeline;
            break;
          case 'command-complete':
            break;
        }
      }
    } finally {
      this.#stopTimer();
    }
    this.#end = { nextTimeline };
  }

  /** True once the server has ended its side of the copy. */
  get serverEnded(): boolean {
    return this.#serverDone;
  }

  #startTimer(): void {
    this.#lastStatusAt = this.#now();
    this.sendStatus(false);
    const tick = Math.max(50, Math.min(1000, Math.floor(this.#statusIntervalMs / 4), Math.floor(this.#receiveTimeoutMs / 8)));
    this.#timer = setInterval(() => this.#onTick(), tick);
    this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #onTick(): void {
    const now = this.#now();
    // A paused socket is our own doing: silence then says nothing about the server.
    const silentFor = this.#command.paused ? 0 : now - this.#command.lastMessageAt;
    if (silentFor >= this.#receiveTimeoutMs) {
      this.#stopTimer();
      this.#abort(new CloudbarmanError('unreachable', `no message from ${this.#target} for ${Math.round(silentFor / 1000)} s; the replication connection is considered dead`, {
        hint: 'the server or the network stopped answering; receive-wal reconnects',
      }));
      return;
    }
    if (silentFor < this.#receiveTimeoutMs / 2) this.#pinged = false;
    else if (!this.#pinged) {
      this.#pinged = true;
      this.sendStatus(true);
      return;
    }
    if (now - this.#lastStatusAt >= this.#statusIntervalMs) this.sendStatus(false);
  }
}

/** The one-row result set after a timeline's end: next_tli, next_tli_startpos. */
export function parseNextTimeline(result: ResultSet): StreamEnd['nextTimeline'] {
  const row = result.rows[0];
  if (result.columns[0] !== 'next_tli' || result.columns[1] !== 'next_tli_startpos' || row === undefined) return undefined;
  const timeline = Number(row[0]);
  const start = parseLsn(row[1] ?? '');
  if (!Number.isInteger(timeline) || timeline < 1 || start === undefined) return undefined;
  return { timeline, start };
}

/** The SQLSTATE of an error from the server, looking through causes; undefined for anything else. */
export function sqlStateOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

const SHUTDOWN_STATES = new Set(['57P01', '57P02', '57P03', '57P05']);

/** Classifies a failed command: a lost connection or a server going away is 'unreachable' (retry). */
function commandFailure(err: Error, verb: string, target: string, copying: boolean): Error {
  if (err instanceof CloudbarmanError) return err;
  const state = sqlStateOf(err);
  const what = `${verb} on ${target}`;
  if (state === undefined) {
    return new CloudbarmanError('unreachable', `${what} failed: the connection was lost (${err.message})`, {
      hint: copying ? 'the server restarted, failed over, or the network dropped the connection' : 'check that the server is running', cause: err,
    });
  }
  if (SHUTDOWN_STATES.has(state) || state.startsWith('08')) {
    return new CloudbarmanError('unreachable', `${what} failed: ${err.message}`, { hint: 'the server is shutting down or restarting', cause: err });
  }
  if (state === '42704') {
    return new CloudbarmanError('bad-input', `${what} failed: ${err.message}`, { hint: 'create the slot first: cloudbarman receive-wal SERVER --create-slot', cause: err });
  }
  if (state === '55006') {
    return new CloudbarmanError('locked', `${what} failed: ${err.message}`, { hint: 'another receive-wal (or standby) uses this slot; stop it first', cause: err });
  }
  if (state === '42501' || state === '28000') {
    return new CloudbarmanError('bad-input', `${what} failed: ${err.message}`, { hint: 'the role needs the REPLICATION attribute (ALTER ROLE ... REPLICATION)', cause: err });
  }
  return new CloudbarmanError('failed', `${what} failed: ${err.message}`, { cause: err });
}

/** A failed connect, with the hint replication connections need. */
function replicationConnectFailure(err: unknown, target: string): CloudbarmanError {
  const failure = connectionFailure(err, target);
  const refused = sqlStateOf(err) === '42501' || (failure.kind === 'bad-input' && /pg_hba|replication/i.test(failure.message));
  if (!refused) return failure;
  return new CloudbarmanError('bad-input', sqlStateOf(err) === '42501' ? `PostgreSQL at ${target} refused the replication connection: ${(err as Error).message}` : failure.message, {
    hint: 'replication connections need a pg_hba.conf line whose database column is "replication", and a role WITH REPLICATION',
    cause: failure.cause,
  });
}
