/**
 * Log sequence numbers ("16/B374D848") and the WAL segment that holds one. Computed here rather
 * than with pg_walfile_name(), which a standby refuses to run during recovery.
 */

/** Parses PostgreSQL's text form of an LSN; undefined when it is not one. */
export function parseLsn(text: string): bigint | undefined {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (match === null) return undefined;
  return (BigInt(`0x${match[1] ?? '0'}`) << 32n) | BigInt(`0x${match[2] ?? '0'}`);
}

/** The text form PostgreSQL prints: upper-case hex, no leading zeros on either half. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/**
 * The name of the WAL segment holding the byte at `lsn` on `timeline`. With `endOfRange`, an LSN
 * exactly on a segment boundary names the segment before it, as pg_walfile_name() does: that is
 * the segment a backup that stopped at that LSN needs, since nothing of the next one is written.
 */
export function walFileNameAt(lsn: bigint, timeline: number, segmentSize: number, endOfRange = false): string {
  const size = BigInt(segmentSize);
  const byte = endOfRange && lsn > 0n ? lsn - 1n : lsn;
  const segNo = byte / size;
  const segmentsPerXLogId = 0x1_0000_0000n / size;
  return hex8(BigInt(timeline)) + hex8(segNo / segmentsPerXLogId) + hex8(segNo % segmentsPerXLogId);
}

function hex8(n: bigint): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}
