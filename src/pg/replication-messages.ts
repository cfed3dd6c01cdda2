/**
 * The binary messages of PostgreSQL's streaming replication protocol, carried inside CopyData
 * once START_REPLICATION has switched the connection to CopyBoth mode (protocol-replication.html).
 * Pure encoding and decoding: no sockets here, so every byte layout is unit-tested.
 *
 * LSNs and timestamps are 64-bit on the wire and stay bigint throughout: an LSN past 2^53
 * (8 PiB of WAL) is rare but legal, and a rounding error there would silently lose WAL.
 */

/** Milliseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC. */
export const PG_EPOCH_UNIX_MS = 946_684_800_000;

/** A chunk of WAL ('w'): `data` belongs at `start`. */
export interface XLogDataMessage {
  kind: 'xlog-data';
  /** The LSN of the first byte of data. */
  start: bigint;
  /** The server's current end of WAL. */
  walEnd: bigint;
  /** The server's clock when it sent this, in microseconds since 2000-01-01. */
  sendTime: bigint;
  data: Buffer;
}

/** A primary keepalive ('k'): the server's end of WAL, and whether it wants a status update now. */
export interface KeepaliveMessage {
  kind: 'keepalive';
  walEnd: bigint;
  sendTime: bigint;
  /** The server closes the connection after wal_sender_timeout unless it gets a reply. */
  replyRequested: boolean;
}

/** What the server sends inside CopyData while streaming WAL. */
export type StreamingMessage = XLogDataMessage | KeepaliveMessage;

/** A standby status update ('r'). Positions are the byte after the last one written/flushed/applied; 0 = invalid. */
export interface StandbyStatus {
  write: bigint;
  flush: bigint;
  apply: bigint;
  /** The client's clock, in microseconds since 2000-01-01. */
  clock: bigint;
  /** Ask the server to answer with a keepalive at once (to test the connection). */
  replyRequested: boolean;
}

/** Thrown for a message that does not have the documented layout: the stream cannot be trusted. */
export class ReplicationProtocolError extends Error {
  override readonly name = 'ReplicationProtocolError';
}

const XLOG_DATA_HEADER = 1 + 8 + 8 + 8;
const KEEPALIVE_LENGTH = 1 + 8 + 8 + 1;
const STATUS_LENGTH = 1 + 8 + 8 + 8 + 8 + 1;

/**
 * Decodes one CopyData payload of a physical replication stream. `data` of an XLogData message
 * is a view into `payload`: copy it if the payload's memory may be reused.
 */
export function parseStreamingMessage(payload: Buffer): StreamingMessage {
  const type = payload[0];
  if (type === 0x77 /* 'w' */) {
    if (payload.length < XLOG_DATA_HEADER) throw new ReplicationProtocolError(`XLogData message of ${payload.length} bytes is shorter than its ${XLOG_DATA_HEADER}-byte header`);
    return {
      kind: 'xlog-data',
      start: payload.readBigUInt64BE(1),
      walEnd: payload.readBigUInt64BE(9),
      sendTime: payload.readBigInt64BE(17),
      data: payload.subarray(XLOG_DATA_HEADER),
    };
  }
  if (type === 0x6b /* 'k' */) {
    if (payload.length !== KEEPALIVE_LENGTH) throw new ReplicationProtocolError(`keepalive message of ${payload.length} bytes, expected ${KEEPALIVE_LENGTH}`);
    return {
      kind: 'keepalive',
      walEnd: payload.readBigUInt64BE(1),
      sendTime: payload.readBigInt64BE(9),
      replyRequested: payload[17] !== 0,
    };
  }
  const shown = type === undefined ? 'an empty message' : `message type 0x${type.toString(16).padStart(2, '0')}`;
  throw new ReplicationProtocolError(`unexpected ${shown} in the replication stream`);
}

/** Encodes a standby status update, the payload of one CopyData message to the server. */
export function encodeStandbyStatus(status: StandbyStatus): Buffer {
  const buf = Buffer.alloc(STATUS_LENGTH);
  buf[0] = 0x72; // 'r'
  buf.writeBigUInt64BE(status.write, 1);
  buf.writeBigUInt64BE(status.flush, 9);
  buf.writeBigUInt64BE(status.apply, 17);
  buf.writeBigInt64BE(status.clock, 25);
  buf[33] = status.replyRequested ? 1 : 0;
  return buf;
}

/** Decodes a standby status update (the server's view; for tests and diagnostics). */
export function parseStandbyStatus(payload: Buffer): StandbyStatus {
  if (payload[0] !== 0x72 || payload.length !== STATUS_LENGTH) throw new ReplicationProtocolError(`not a standby status update (${payload.length} bytes)`);
  return {
    write: payload.readBigUInt64BE(1),
    flush: payload.readBigUInt64BE(9),
    apply: payload.readBigUInt64BE(17),
    clock: payload.readBigInt64BE(25),
    replyRequested: payload[33] !== 0,
  };
}

/** A Unix time in milliseconds as PostgreSQL's timestamp: microseconds since 2000-01-01. */
export function pgTimestamp(unixMs: number): bigint {
  return BigInt(Math.round(unixMs - PG_EPOCH_UNIX_MS)) * 1000n;
}

/** A PostgreSQL timestamp back to Unix milliseconds. */
export function unixMsOf(pgMicros: bigint): number {
  return Number(pgMicros / 1000n) + PG_EPOCH_UNIX_MS;
}

/** A replication slot name as a quoted identifier for the replication grammar. */
export function quoteSlotName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

const SIZE_UNITS: Readonly<Record<string, number>> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME_UNITS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** A memory setting as SHOW prints it ("16MB", "1GB", "8192") in bytes; undefined when it is not one. */
export function parseShownSize(text: string): number | undefined {
  const match = /^(\d+)\s*(B|kB|MB|GB|TB)?$/.exec(text.trim());
  if (match === null) return undefined;
  return Number(match[1]) * (SIZE_UNITS[match[2] ?? 'B'] ?? 1);
}

/** A time setting as SHOW prints it ("1min", "60s", "500ms", "0") in milliseconds; undefined when it is not one. */
export function parseShownDuration(text: string): number | undefined {
  const match = /^(-?\d+)\s*(us|ms|s|min|h|d)?$/.exec(text.trim());
  if (match === null) return undefined;
  return Number(match[1]) * (TIME_UNITS[match[2] ?? 'ms'] ?? 1);
}
