/**
 * receive-wal: streams WAL over the physical replication protocol into the store, as a
 * replacement for (or a companion to) archive_command, with a lag of seconds instead of a segment.
 *
 * One process per server. It connects to streaming_conninfo as a walsender client, picks a start
 * that leaves no gap (receive-wal-start.ts), writes WAL into local segment files as it arrives
 * (receive-wal-segments.ts) and stores each complete segment exactly as wal-upload does, plus the
 * growing segment as <segment>.partial (receive-wal-upload.ts). It follows timeline switches,
 * storing each new timeline's history file, and reconnects with bounded backoff when the
 * connection is lost (a restart, a failover behind the same address, the network).
 *
 * Flush positions reported to the server: in asynchronous mode (the default) the end of what is
 * fsynced locally; in synchronous mode the end of what is in the store without a gap, so that
 * with receive-wal named in synchronous_standby_names a commit returns only once its WAL is
 * stored. An integrity error (a different segment already archived under a name) stops it: two
 * clusters are writing to one server name, and continuing would hide that.
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { listAll } from '../../../providers/object-store.ts';
import type { Compression } from '../../io/compression.ts';
import { MIN_SERVER_VERSION_NUM } from '../../pg/backup-api.ts';
import { formatLsn } from '../../pg/lsn.ts';
import {
  ReplicationClient, sqlStateOf, type ReplicationConnectOptions, type ReplicationSession, type SlotInfo, type WalStreamHandle,
} from '../../pg/replication-client.ts';
import { parseShownDuration, parseShownSize } from '../../pg/replication-messages.ts';
import { namesSynchronousStandby } from '../../pg/synchronous-standby-names.ts';
import { parseWalFileName } from '../../pg/wal-names.ts';
import { isValidSegmentSize, segmentFloor, segmentNameAt, segmentStartOf } from '../../pg/wal-position.ts';
import { CloudbarmanError, badInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { storeFailure } from '../store/store-failure.ts';
import { STATE_FILE, checkDirectoryState, lockDirectory, readDirectoryState, writeDirectoryState, type DirectoryState } from './receive-wal-directory.ts';
import { SegmentWriter, partialPath, scanLocalWal, type LocalWal, type OpenSegment } from './receive-wal-segments.ts';
import { chooseStart, describeFork, followServerHistory, type StartSource, type WalPoint } from './receive-wal-start.ts';
import { WalUploader } from './receive-wal-upload.ts';
import { writeFileAtomic } from './spool-files.ts';
import { parseTimelineHistory } from './timeline-history.ts';

/** When the flush position follows the store: on, off, or auto (when synchronous_standby_names names us, as Barman decides). */
export type SynchronousMode = 'auto' | 'on' | 'off';

/** Everything receive-wal needs; the CLI fills it from the config. */
export interface ReceiveWalRequest {
  server: string;
  /** streaming_conninfo. Never logged. */
  conninfo: string;
  /** streaming_archiver_name: the application_name synchronous_standby_names can list. */
  applicationName: string;
  slotName: string | undefined;
  store: ObjectStore;
  compression: Compression;
  /** The local directory (receiveWalDirectory()). */
  dir: string;
  /** Upload the growing segment as .partial this often (ms); 0 = only when stopping. */
  partialIntervalMs: number;
  synchronous: SynchronousMode;
  connectTimeoutMs: number;
  log: Logger;
  /** The clock, Unix ms. */
  now: () => number;
  /** Abort = stop gracefully: finish the current write, store what can be stored, report. */
  signal: AbortSignal;
  /** Reconnect after a lost connection (pg_receivewal's default); false fails with 'unreachable'. */
  reconnect: boolean;
  /** Stop once this many streamed segments are stored (tests, one-off catch-ups). */
  stopAfterSegments?: number;
  /** Longest wait between reconnection attempts; default 30 s. */
  maxBackoffMs?: number;
  /** How long stopping may spend storing what is pending; the rest stays local for the next run. */
  drainTimeoutMs: number;
  /** This process's id and a liveness check, for the directory lock. */
  pid: number;
  isAlive: (pid: number) => boolean;
  /** Opens the replication connection (injectable for tests). */
  connect?: (conninfo: string, opts: ReplicationConnectOptions) => Promise<ReplicationSession>;
}

/** The summary printed at the end. */
export interface ReceiveWalResult {
  server: string;
  stopped_by: 'signal' | 'segments';
  system_identifier: string | null;
  timeline: number | null;
  start_lsn: string | null;
  /** End of the WAL received (the next byte expected). */
  received_lsn: string | null;
  /** End of the WAL stored without a gap. */
  stored_lsn: string | null;
  synchronous: boolean;
  segments_uploaded: number;
  segments_already_archived: number;
  last_segment: string | null;
  partial_uploads: number;
  partials_kept: number;
  history_files: number;
  reconnects: number;
  /** WAL ranges that were neither stored nor still on the server when streaming began: lost. */
  gaps: { from: string; to: string }[];
  /** False when stopping could not store everything; the rest waits in the local directory. */
  all_stored: boolean;
}

const STOP_GRACE_MS = 15_000;
const LOCAL_FSYNC_INTERVAL_MS = 1_000;

/** Runs receive-wal until the signal aborts it (or stopAfterSegments); throws for what it cannot go on with. */
export async function receiveWal(req: ReceiveWalRequest): Promise<ReceiveWalResult> {
  const lock = await lockDirectory(req.dir, req.pid, req.isAlive);
  try {
    try {
      await req.store.checkAccess();
    } catch (err) {
      throw storeFailure(err, 'checking the store', req.store.url);
    }
    const receiver = new Receiver(req, await scanLocalWal(req.dir), await readDirectoryState(req.dir));
    return await receiver.run();
  } finally {
    await lock.release();
  }
}

/** One receive-wal run: its connection loop and the state that outlives a connection. */
class Receiver {
  readonly #req: ReceiveWalRequest;
  readonly #local: LocalWal;
  #state: DirectoryState | undefined;
  #writer: SegmentWriter | undefined;
  #uploader: WalUploader | undefined;
  #segmentSize = 0;
  #client: ReplicationSession | undefined;
  #stream: WalStreamHandle | undefined;
  #synchronous = false;
  /** The server streamed from archives WAL itself (archive_mode on or always): it stores an ended timeline's .partial. */
  #serverArchives = false;
  #stopReason: ReceiveWalResult['stopped_by'] | undefined;
  #fatal: CloudbarmanError | undefined;
  /** A failure that ends the run after what is pending has been stored (bad input, or a lost connection with reconnect off). */
  #failure: CloudbarmanError | undefined;
  #stopTimer: NodeJS.Timeout | undefined;
  readonly #wake = new AbortController();
  #firstSession = true;
  #receivedSinceConnect = false;
  #reconnects = 0;
  #startPoint: WalPoint | undefined;
  readonly #streamed = new Set<string>();
  #storedStreamed = 0;
  readonly #historyStored = new Set<number>();
  readonly #gaps: ReceiveWalResult['gaps'] = [];

  constructor(req: ReceiveWalRequest, local: LocalWal, state: DirectoryState | undefined) {
    this.#req = req;
    this.#local = local;
    this.#state = state;
  }

  async run(): Promise<ReceiveWalResult> {
    const { log, signal } = this.#req;
    const onAbort = (): void => this.#requestStop('signal');
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    let fsyncTimer: NodeJS.Timeout | undefined;
    try {
      let attempt = 0;
      while (this.#stopReason === undefined) {
        this.#receivedSinceConnect = false;
        try {
          this.#client = await (this.#req.connect ?? ReplicationClient.open)(this.#req.conninfo, {
            applicationName: this.#req.applicationName,
            connectTimeoutMs: this.#req.connectTimeoutMs,
            now: this.#req.now,
          });
          log.info(`connected to ${this.#client.target} as ${this.#req.applicationName}`);
          fsyncTimer ??= this.#startLocalFsync();
          await this.#session(this.#client);
        } catch (err) {
          const failure = err instanceof CloudbarmanError ? err : new CloudbarmanError('failed', err instanceof Error ? err.message : String(err), { cause: err });
          if (this.#fatal !== undefined) throw this.#fatal;
          if (this.#stopReason !== undefined) break;
          if (failure.kind === 'integrity') throw failure;
          if (failure.kind === 'bad-input' || failure.kind === 'locked' || !this.#req.reconnect) {
            this.#failure = failure;
            break;
          }
          attempt = this.#receivedSinceConnect ? 1 : attempt + 1;
          const delay = Math.min(this.#req.maxBackoffMs ?? 30_000, 1000 * 2 ** (attempt - 1));
          log.warn(`${failure.message}; reconnecting in ${Math.round(delay / 100) / 10} s (attempt ${attempt})`);
          await sleep(delay, this.#wake.signal);
          if (this.#stopReason === undefined) this.#reconnects++;
        } finally {
          this.#stream = undefined;
          const client = this.#client;
          this.#client = undefined;
          await client?.close();
        }
      }
      return await this.#finish();
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (fsyncTimer !== undefined) clearInterval(fsyncTimer);
      clearTimeout(this.#stopTimer);
      await this.#uploader?.stop();
    }
  }

  /** One connection: identify, choose the start, stream timeline after timeline until stopped. */
  async #session(client: ReplicationSession): Promise<void> {
    const { log } = this.#req;
    const versionNum = Number(await client.show('server_version_num'));
    if (!(versionNum >= MIN_SERVER_VERSION_NUM)) {
      throw badInput(`${client.target} runs PostgreSQL ${await client.show('server_version')}; receive-wal needs 15 or later`, 'READ_REPLICATION_SLOT and the other replication commands used appeared in PostgreSQL 15');
    }
    const id = await client.identifySystem();
    await this.#prepare(client, id.systemId);
    const senderTimeoutMs = parseShownDuration(await client.show('wal_sender_timeout')) ?? 60_000;
    const statusIntervalMs = senderTimeoutMs > 0 ? Math.min(10_000, Math.floor(senderTimeoutMs / 2)) : 10_000;
    const receiveTimeoutMs = Math.max(60_000, senderTimeoutMs);
    await this.#decideSynchronous(client);
    this.#serverArchives = (await client.show('archive_mode')) !== 'off';
    const slot = await this.#readSlot(client);

    let point: WalPoint;
    let source: StartSource | 'continue';
    if (this.#firstSession) {
      const slotPoint = slot?.restartLsn !== undefined && slot.restartTimeline !== undefined ? { lsn: slot.restartLsn, timeline: slot.restartTimeline } : undefined;
      const noLocal = this.#local.complete.length === 0 && this.#local.partial.length === 0;
      const lastStored = noLocal && slotPoint === undefined ? await this.#lastStoredSegment(id.timeline, id.xlogPos) : undefined;
      const choice = chooseStart({ local: this.#local, slot: slotPoint, lastStored, server: { lsn: id.xlogPos, timeline: id.timeline }, segmentSize: this.#segmentSize });
      point = choice;
      source = choice.source;
    } else {
      const writer = this.#mustWriter();
      point = { lsn: writer.written, timeline: writer.timeline };
      source = 'continue';
    }
    const history = await this.#historyChain(client, id.timeline, point.timeline);
    const checked = followServerHistory(point, id.timeline, history, this.#segmentSize);
    if (checked.forkedAt !== undefined) log.warn(describeFork(point, checked));
    point = { lsn: checked.lsn, timeline: checked.timeline };
    if (this.#firstSession) await this.#queueLocalLeftovers(point);
    this.#firstSession = false;
    this.#startPoint ??= point;

    for (;;) {
      if (this.#stopReason !== undefined) return;
      await this.#storeHistory(client, point.timeline);
      await this.#begin(point);
      log.notice(`streaming from ${formatLsn(point.lsn)} on timeline ${point.timeline} (${describeSource(source)})${slot === undefined ? '' : ` through slot ${this.#req.slotName ?? ''}`}` +
        `${this.#synchronous ? ', synchronous: flush positions follow the store' : ''}`);
      let next: WalPoint | undefined;
      try {
        next = await this.#streamTimeline(client, point, { statusIntervalMs, receiveTimeoutMs });
      } catch (err) {
        // WAL that is gone from the server and was never stored cannot be had any more: say so
        // loudly, keep what is local, and go on from the server's current segment.
        if (sqlStateOf(err) !== '58P01' || this.#receivedSinceConnect || this.#stopReason !== undefined) throw err;
        const now = await client.identifySystem();
        const serverPoint = { lsn: segmentFloor(now.xlogPos, this.#segmentSize), timeline: now.timeline };
        if (serverPoint.lsn <= point.lsn) throw err;
        this.#gaps.push({ from: formatLsn(point.lsn), to: formatLsn(serverPoint.lsn) });
        log.warn(`WAL from ${formatLsn(point.lsn)} to ${formatLsn(serverPoint.lsn)} is neither in the store nor on the server any more: it is lost, and recovery cannot pass this gap; ` +
          `take a new base backup. Streaming continues from ${formatLsn(serverPoint.lsn)} (use a replication slot, slot_name, to keep this from happening)`);
        point = serverPoint;
        source = 'server';
        continue;
      }
      if (next === undefined) return;
      const ended = await this.#mustWriter().endTimeline();
      if (ended !== undefined) await this.#keepPartial(ended);
      log.notice(`timeline ${point.timeline} ended at ${formatLsn(next.lsn)}; following timeline ${next.timeline}`);
      point = { lsn: segmentFloor(next.lsn, this.#segmentSize), timeline: next.timeline };
      source = 'continue';
    }
  }

  /** Streams one timeline; returns where the next begins, or undefined when stopped. */
  async #streamTimeline(client: ReplicationSession, point: WalPoint, timing: { statusIntervalMs: number; receiveTimeoutMs: number }): Promise<WalPoint | undefined> {
    const writer = this.#mustWriter();
    const uploader = this.#mustUploader();
    const stream = client.startReplication({
      ...(this.#req.slotName === undefined ? {} : { slot: this.#req.slotName }),
      start: point.lsn,
      timeline: point.timeline,
      positions: () => this.#positions(),
      ...timing,
    });
    this.#stream = stream;
    if (this.#stopReason !== undefined) stream.stop();
    for await (const message of stream) {
      if (message.kind === 'xlog-data') {
        if (message.data.length === 0) continue;
        await writer.write(message.start, message.data);
        this.#receivedSinceConnect = true;
        if (this.#synchronous) uploader.poke();
      } else if (message.replyRequested) {
        // The server waits for this (at shutdown, for everything it sent): make it true first.
        if (!this.#synchronous) await writer.flush();
        stream.sendStatus(false);
      }
    }
    this.#stream = undefined;
    if (this.#stopReason !== undefined) return undefined;
    const next = stream.end?.nextTimeline;
    if (next === undefined) {
      throw new CloudbarmanError('unreachable', `${client.target} ended streaming without naming a next timeline`, { hint: 'the server is shutting down or was promoted' });
    }
    return { lsn: next.start, timeline: next.timeline };
  }

  /** Learns the segment size, ties the directory to the cluster, and starts the writer and uploader (first connection). */
  async #prepare(client: ReplicationSession, systemId: string): Promise<void> {
    if (this.#writer !== undefined) {
      if (this.#state !== undefined && systemId !== this.#state.systemId) {
        throw badInput(`${client.target} is now a different cluster (system identifier ${systemId}, streamed from ${this.#state.systemId} before)`, 'streaming_conninfo must reach the same cluster (or its promoted standby)');
      }
      return;
    }
    const shown = await client.show('wal_segment_size');
    const segmentSize = parseShownSize(shown);
    if (segmentSize === undefined || !isValidSegmentSize(segmentSize)) throw new CloudbarmanError('failed', `the server reports wal_segment_size "${shown}", which is not a segment size`);
    const server = { systemId, segmentSize };
    if (this.#state === undefined) {
      const leftovers = this.#local.complete.length + this.#local.partial.length;
      if (leftovers > 0) throw badInput(`${this.#req.dir} holds WAL files but no ${STATE_FILE}`, 'it was not written by receive-wal; move the files away');
      await writeDirectoryState(this.#req.dir, server);
      this.#state = server;
    } else {
      checkDirectoryState(this.#req.dir, this.#state, server);
    }
    this.#segmentSize = segmentSize;
    this.#writer = new SegmentWriter(this.#req.dir, segmentSize, (segment) => {
      this.#streamed.add(segment);
      this.#uploader?.addSegment(segment);
      // A finished segment is fsynced: let the server see the new positions now, as pg_receivewal does.
      this.#stream?.sendStatus(false);
    });
    this.#uploader = new WalUploader({
      store: this.#req.store,
      server: this.#req.server,
      compression: this.#req.compression,
      dir: this.#req.dir,
      segmentSize,
      log: this.#req.log,
      now: this.#req.now,
      partialIntervalMs: this.#req.partialIntervalMs,
      currentSegment: () => this.#writer?.current,
      onStored: (event) => this.#onStored(event.segment),
      onFatal: (err) => {
        this.#fatal ??= err;
        this.#requestStop('signal');
      },
    });
  }

  async #decideSynchronous(client: ReplicationSession): Promise<void> {
    let on = this.#req.synchronous === 'on';
    if (this.#req.synchronous === 'auto') {
      const names = await client.show('synchronous_standby_names');
      on = namesSynchronousStandby(names, this.#req.applicationName);
    }
    if (on !== this.#synchronous || this.#firstSession) {
      this.#req.log.info(on ? `synchronous mode: flush positions report WAL stored in ${this.#req.store.url}` : 'asynchronous mode: flush positions report WAL fsynced locally');
    }
    this.#synchronous = on;
    this.#mustUploader().setSynchronous(on);
  }

  async #readSlot(client: ReplicationSession): Promise<SlotInfo | undefined> {
    const name = this.#req.slotName;
    if (name === undefined) return undefined;
    const slot = await client.readSlot(name);
    if (slot === undefined) {
      throw badInput(`replication slot "${name}" does not exist on ${client.target}`, `create it: cloudbarman receive-wal ${this.#req.server} --create-slot`);
    }
    if (slot.type !== 'physical') throw badInput(`replication slot "${name}" on ${client.target} is a logical slot`, 'slot_name must name a physical slot');
    return slot;
  }

  /** The chain of the server's timeline, when streaming starts on an older one. */
  async #historyChain(client: ReplicationSession, serverTimeline: number, timeline: number): Promise<ReturnType<typeof parseTimelineHistory>> {
    if (timeline >= serverTimeline || serverTimeline <= 1) return undefined;
    const { content } = await client.timelineHistory(serverTimeline);
    const chain = parseTimelineHistory(content.toString('utf8'), serverTimeline);
    if (chain === undefined) throw new CloudbarmanError('failed', `the history file of timeline ${serverTimeline} from ${client.target} is malformed`);
    return chain;
  }

  /** Stores the history file of a timeline (> 1) before any of its WAL, once per run. */
  async #storeHistory(client: ReplicationSession, timeline: number): Promise<void> {
    if (timeline <= 1 || this.#historyStored.has(timeline)) return;
    const { fileName, content } = await client.timelineHistory(timeline);
    if (parseWalFileName(fileName)?.kind !== 'timeline-history') throw new CloudbarmanError('failed', `TIMELINE_HISTORY ${timeline} named the file "${fileName}"`);
    if (content.toString('utf8').includes('\uFFFD')) this.#req.log.warn(`${fileName} holds bytes that are not UTF-8 (a restore point name?); they were stored as the replication protocol delivered them`);
    await writeFileAtomic(join(this.#req.dir, fileName), content, { durable: true });
    this.#mustUploader().addHistory(fileName);
    this.#historyStored.add(timeline);
  }

  /** Positions the writer; a segment it leaves unfinished is kept as a .partial. */
  async #begin(point: WalPoint): Promise<void> {
    const closed = await this.#mustWriter().begin(point.lsn, point.timeline);
    if (closed !== undefined) await this.#keepPartial(closed);
    // Streaming again from an earlier point (a new timeline, a fork): what the store holds past it
    // is another timeline's, and must not count as this one's in synchronous mode.
    const uploader = this.#mustUploader();
    if (uploader.storedEnd > point.lsn) uploader.setStoredEnd(point.lsn);
  }

  /** Queues what the directory held at start: history files, complete segments, and .partials streaming will not continue. */
  async #queueLocalLeftovers(start: WalPoint): Promise<void> {
    const uploader = this.#mustUploader();
    for (const name of this.#local.history) uploader.addHistory(name);
    let stored = start.lsn;
    for (const name of this.#local.complete) {
      uploader.addSegment(name);
      const begin = segmentStartOf(name, this.#segmentSize);
      if (begin < stored) stored = begin;
    }
    const continuing = segmentNameAt(segmentFloor(start.lsn, this.#segmentSize), start.timeline, this.#segmentSize);
    for (const name of this.#local.partial) {
      if (name === continuing) continue;
      const begin = segmentStartOf(name, this.#segmentSize);
      await this.#keepPartial({ name, path: partialPath(this.#req.dir, name), timeline: Number.parseInt(name.slice(0, 8), 16), start: begin, written: begin }, undefined);
    }
    uploader.setStoredEnd(stored);
    uploader.start();
  }

  /**
   * A segment streaming left unfinished: kept in the store as .partial (Barman's convention), or
   * removed when nothing was written to it, or when the server archives that .partial itself.
   */
  async #keepPartial(segment: OpenSegment, end: bigint | undefined = segment.written): Promise<void> {
    if (end !== undefined && end <= segment.start) {
      await unlink(segment.path).catch(() => undefined);
    } else if (this.#serverArchives) {
      this.#req.log.notice(`${segment.name}.partial is left to the server's archive_command (archive_mode is on there); receive-wal removes its own copy`);
      this.#mustUploader().discardPartial(segment);
    } else {
      this.#mustUploader().addFinalPartial(segment, end);
    }
  }

  /** The last complete segment in the store on this timeline, looking in the current and the previous log's folder. */
  async #lastStoredSegment(timeline: number, serverLsn: bigint): Promise<string | undefined> {
    const current = segmentNameAt(segmentFloor(serverLsn, this.#segmentSize), timeline, this.#segmentSize);
    const log = Number.parseInt(current.slice(8, 16), 16);
    const buckets = [current.slice(0, 16)];
    if (log > 0) buckets.push(current.slice(0, 8) + (log - 1).toString(16).toUpperCase().padStart(8, '0'));
    try {
      for (const bucket of buckets) {
        let best: string | undefined;
        for await (const item of listAll(this.#req.store, `${this.#req.server}/wals/${bucket}/`)) {
          const name = item.key.slice(item.key.lastIndexOf('/') + 1).replace(/\.(gz|zst)$/, '');
          const wal = parseWalFileName(name);
          if (wal?.kind === 'segment' && wal.timeline === timeline && name < current && (best === undefined || name > best)) best = name;
        }
        if (best !== undefined) return best;
      }
    } catch (err) {
      throw storeFailure(err, 'looking for the last stored segment', this.#req.store.url);
    }
    return undefined;
  }

  #positions(): { write: bigint; flush: bigint; apply: bigint } {
    const writer = this.#mustWriter();
    const write = writer.written;
    const stored = this.#mustUploader().storedEnd;
    const flush = this.#synchronous ? (stored < write ? stored : write) : writer.flushed;
    // Nothing is applied (replayed) here, as with pg_receivewal: 0 is "invalid".
    return { write, flush, apply: 0n };
  }

  #onStored(segment: string | undefined): void {
    if (this.#synchronous) this.#stream?.sendStatus(false);
    if (segment === undefined || !this.#streamed.has(segment)) return;
    this.#storedStreamed++;
    const limit = this.#req.stopAfterSegments;
    if (limit !== undefined && this.#storedStreamed >= limit) this.#requestStop('segments');
  }

  /** Asynchronous mode: fsyncs written WAL about every second, so the flush position keeps up when WAL stops. */
  #startLocalFsync(): NodeJS.Timeout {
    const timer = setInterval(() => {
      const writer = this.#writer;
      if (this.#synchronous || writer === undefined || writer.flushed >= writer.written) return;
      writer.flush().then(() => this.#stream?.sendStatus(false), (err: unknown) => this.#req.log.warn(`fsync in ${this.#req.dir} failed: ${err instanceof Error ? err.message : String(err)}`));
    }, LOCAL_FSYNC_INTERVAL_MS);
    timer.unref();
    return timer;
  }

  #requestStop(reason: ReceiveWalResult['stopped_by']): void {
    if (this.#stopReason !== undefined) return;
    this.#stopReason = reason;
    this.#req.log.notice(reason === 'segments' ? `stored ${this.#storedStreamed} streamed segment(s): stopping` : 'stopping: finishing the current write');
    this.#wake.abort();
    this.#stream?.stop();
    // A server that does not answer the CopyDone must not keep us: drop the connection after a grace period.
    this.#stopTimer = setTimeout(() => { void this.#client?.close(); }, STOP_GRACE_MS);
    this.#stopTimer.unref();
  }

  async #finish(): Promise<ReceiveWalResult> {
    const writer = this.#writer;
    const uploader = this.#uploader;
    let allStored = true;
    if (writer !== undefined && uploader !== undefined) {
      await writer.flush();
      if (this.#fatal === undefined) {
        allStored = await uploader.drain(this.#req.drainTimeoutMs);
        if (!allStored) this.#req.log.warn(`not everything could be stored within ${Math.round(this.#req.drainTimeoutMs / 1000)} s; the rest stays in ${this.#req.dir} and is stored by the next run`);
      }
      await uploader.stop();
      await writer.close();
    }
    if (this.#fatal !== undefined) throw this.#fatal;
    if (this.#failure !== undefined) throw this.#failure;
    const stats = uploader?.stats;
    const start = this.#startPoint;
    return {
      server: this.#req.server,
      stopped_by: this.#stopReason ?? 'signal',
      system_identifier: this.#state?.systemId ?? null,
      timeline: writer?.timeline ?? null,
      start_lsn: start === undefined ? null : formatLsn(start.lsn),
      received_lsn: writer === undefined || start === undefined ? null : formatLsn(writer.written),
      stored_lsn: uploader === undefined || start === undefined ? null : formatLsn(uploader.storedEnd),
      synchronous: this.#synchronous,
      segments_uploaded: stats?.segmentsUploaded ?? 0,
      segments_already_archived: stats?.segmentsAlreadyArchived ?? 0,
      last_segment: stats?.lastSegment ?? null,
      partial_uploads: stats?.partialUploads ?? 0,
      partials_kept: stats?.partialsKept ?? 0,
      history_files: stats?.historyFiles ?? 0,
      reconnects: this.#reconnects,
      gaps: this.#gaps,
      all_stored: allStored,
    };
  }

  #mustWriter(): SegmentWriter {
    if (this.#writer === undefined) throw new Error('internal: receive-wal has no writer yet');
    return this.#writer;
  }

  #mustUploader(): WalUploader {
    if (this.#uploader === undefined) throw new Error('internal: receive-wal has no uploader yet');
    return this.#uploader;
  }
}

function describeSource(source: StartSource | 'continue'): string {
  switch (source) {
    case 'local': return 'after the WAL in the local directory';
    case 'slot': return "the replication slot's restart_lsn";
    case 'store': return 'after the last segment in the store';
    case 'server': return "the server's current segment";
    case 'continue': return 'continuing';
  }
}

/** Waits ms, or less when the signal aborts; never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) { resolve(); return; }
    const timer = setTimeout(() => { signal.removeEventListener('abort', done); resolve(); }, ms);
    const done = (): void => { clearTimeout(timer); resolve(); };
    signal.addEventListener('abort', done, { once: true });
  });
}

/** What --create-slot and --drop-slot do. */
export interface SlotRequest {
  conninfo: string;
  applicationName: string;
  slotName: string | undefined;
  connectTimeoutMs: number;
  log: Logger;
  connect?: (conninfo: string, opts: ReplicationConnectOptions) => Promise<ReplicationSession>;
}

/** The outcome of --create-slot / --drop-slot. */
export interface SlotResult {
  slot: string;
  action: 'created' | 'already-exists' | 'dropped' | 'did-not-exist';
}

/** Creates (RESERVE_WAL) or drops the physical slot slot_name; both are idempotent. */
export async function manageSlot(req: SlotRequest, action: 'create' | 'drop'): Promise<SlotResult> {
  const slot = req.slotName;
  if (slot === undefined) throw badInput(`--${action}-slot needs slot_name`, 'set slot_name in the server\'s section (or --slot-name NAME)');
  const client = await (req.connect ?? ReplicationClient.open)(req.conninfo, { applicationName: req.applicationName, connectTimeoutMs: req.connectTimeoutMs });
  try {
    if (action === 'create') {
      const created = await client.createPhysicalSlot(slot);
      req.log.notice(created ? `created physical replication slot "${slot}" on ${client.target}, reserving WAL from now on` : `replication slot "${slot}" already exists on ${client.target}`);
      return { slot, action: created ? 'created' : 'already-exists' };
    }
    const dropped = await client.dropSlot(slot);
    req.log.notice(dropped ? `dropped replication slot "${slot}" on ${client.target}` : `replication slot "${slot}" does not exist on ${client.target}`);
    return { slot, action: dropped ? 'dropped' : 'did-not-exist' };
  } finally {
    await client.close();
  }
}
