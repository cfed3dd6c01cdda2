/**
 * Which WAL segments recovery will ask for next: the prefetcher's plan. Pure, for tests.
 *
 * Segment numbers count across log files (the middle eight hex digits), which hold 4 GiB / segment
 * size segments each, so the plan depends on wal_segment_size. Past a timeline switch point it
 * names segments of the newer timeline, as PostgreSQL's XLogFileReadAnyTLI reads them: a segment
 * belongs to the newest timeline of the chain that begins at or before it, so the segment holding
 * the switch point itself is read from the new timeline.
 */
import { walFileNameAt } from '../../pg/lsn.ts';
import type { TimelineSpan } from './timeline-history.ts';

/** Where recovery stands: the last segment PostgreSQL asked for, and whether it got it. */
export interface RecoveryPosition {
  name: string;
  /** false: the segment was not (yet) archived, so it is still the next one needed. */
  found: boolean;
}

/** The segment number of a segment name (log * segments per log + segment). */
export function segmentNumber(name: string, segmentSize: number): bigint {
  const perLog = 0x1_0000_0000n / BigInt(segmentSize);
  return BigInt(`0x${name.slice(8, 16)}`) * perLog + BigInt(`0x${name.slice(16, 24)}`);
}

/** The name of segment number `segNo` on `timeline`. */
export function segmentName(timeline: number, segNo: bigint, segmentSize: number): string {
  return walFileNameAt(segNo * BigInt(segmentSize), timeline, segmentSize);
}

/** True for a wal_segment_size PostgreSQL allows: a power of two from 1 MiB to 1 GiB. */
export function isValidSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1024 * 1024 && size <= 1024 * 1024 * 1024 && (size & (size - 1)) === 0;
}

/**
 * The next `count` segments recovery will ask for after `position`, on the timelines of `chain`
 * (oldest first, from chooseChain; its first span should be the position's timeline).
 */
export function planPrefetch(position: RecoveryPosition, count: number, segmentSize: number, chain: readonly TimelineSpan[]): string[] {
  if (count <= 0 || !/^[0-9A-F]{24}$/.test(position.name) || !isValidSegmentSize(segmentSize)) return [];
  const size = BigInt(segmentSize);
  const current = Number.parseInt(position.name.slice(0, 8), 16);
  const spans = chain.length > 0 && chain[0]?.timeline === current ? chain : [{ timeline: current, begin: 0n }];
  const first = segmentNumber(position.name, segmentSize) + (position.found ? 1n : 0n);
  const names: string[] = [];
  for (let segNo = first; names.length < count; segNo++) {
    let timeline = current;
    for (const span of spans) {
      if (span.begin / size <= segNo) timeline = span.timeline;
    }
    names.push(segmentName(timeline, segNo, segmentSize));
  }
  return names;
}
