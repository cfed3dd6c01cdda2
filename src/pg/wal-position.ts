/**
 * WAL segment arithmetic on LSNs: the segment number of a file name, where a segment begins and
 * ends. Kept beside lsn.ts and wal-names.ts, which name segments; these go the other way.
 */
import { walFileNameAt } from './lsn.ts';

/** The segment number (log id x segments per log + segment) a segment file name stands for. */
export function segmentNumberOf(name: string, segmentSize: number): bigint {
  const log = BigInt(`0x${name.slice(8, 16)}`);
  const seg = BigInt(`0x${name.slice(16, 24)}`);
  return log * (0x1_0000_0000n / BigInt(segmentSize)) + seg;
}

/** The LSN of the first byte of the segment a file name stands for. */
export function segmentStartOf(name: string, segmentSize: number): bigint {
  return segmentNumberOf(name, segmentSize) * BigInt(segmentSize);
}

/** The LSN at the start of the segment holding `lsn`. */
export function segmentFloor(lsn: bigint, segmentSize: number): bigint {
  return lsn - (lsn % BigInt(segmentSize));
}

/** The segment file name for the segment starting at `start` on `timeline`. */
export function segmentNameAt(start: bigint, timeline: number, segmentSize: number): string {
  return walFileNameAt(start, timeline, segmentSize);
}

/** True for a power of two between 1 MiB and 1 GiB, the sizes initdb --wal-segsize allows. */
export function isValidSegmentSize(bytes: number): boolean {
  return Number.isInteger(bytes) && bytes >= 1024 * 1024 && bytes <= 1024 * 1024 * 1024 && (bytes & (bytes - 1)) === 0;
}
