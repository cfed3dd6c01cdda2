/**
 * Which WAL a backup needs and whether the archive holds it without gaps: a pure function of the
 * backup's WAL range and the archive's listing, with a reason for every finding.
 *
 * Two ranges are checked. The WAL that makes the backup consistent: every segment from begin_wal
 * to end_wal on the backup's timeline. And, for a point-in-time restore to any later moment, the
 * WAL after end_wal up to the newest segment archived on the backup's timeline and each branch of
 * timelines that descends from it (the history files say which timelines do, and from which LSN).
 * On a branch, a segment belongs to the newest timeline that began at or before it, as
 * PostgreSQL's XLogFileReadAnyTLI reads them (prefetch-plan.ts): the segment holding a switch
 * point is read from the new timeline, and what an old primary archived past the switch point is
 * not on the branch. A branch that left the backup's timeline before the backup ended cannot be
 * reached from this backup, and is reported as such.
 */
import { formatLsn } from '../../pg/lsn.ts';
import { isValidSegmentSize, segmentName, segmentNumber } from '../wal/prefetch-plan.ts';
import type { TimelineSpan } from '../wal/timeline-history.ts';

/** What the archive holds, as its listing shows it. */
export interface ArchivedWal {
  /** Every complete segment (24 hex digits, stored under a known codec extension), by name: its key. */
  segments: ReadonlyMap<string, string>;
  /**
   * Timelines whose history file is archived, with the chain it describes (oldest first, ending
   * with the timeline itself; parseTimelineHistory), or undefined when the file is malformed.
   */
  histories: ReadonlyMap<number, readonly TimelineSpan[] | undefined>;
}

/** What is checked. */
export interface WalCheckInput {
  /** The backup's timeline and WAL range (backup.json). */
  timeline: number;
  beginWal: string;
  endWal: string;
  /** The backup's end LSN: branches that leave its timeline before it are unreachable. */
  endLsn: bigint | undefined;
  segmentSize: number;
  /** Also check continuity after end_wal (otherwise only begin..end). */
  toLatest: boolean;
}

/** Consecutive segments, by first and last name. */
export interface SegmentRange {
  first: string;
  last: string;
  count: number;
}

/** One branch of timelines followed from the backup's end. */
export interface WalBranch {
  /** Timelines followed, oldest first: the backup's own, then its descendants on this branch. */
  timelines: number[];
  /** Where each later timeline of the branch begins, as LSN text, in the order of `timelines` (minus the first). */
  switchPoints: string[];
  /** The newest segment archived on the branch after end_wal; undefined when there is none yet. */
  newest: string | undefined;
  /** Segments after end_wal up to and with `newest`. */
  count: number;
  /** Segments of that range that are not archived. */
  gaps: SegmentRange[];
  /** The archived segments of the range, in WAL order, with their keys (what a full verify reads). */
  present: Array<readonly [string, string]>;
}

/** Everything the checker found. */
export interface WalCheck {
  /** begin_wal..end_wal, in order. */
  needed: string[];
  neededGaps: SegmentRange[];
  /** Empty when toLatest is off. */
  branches: WalBranch[];
  /** Branches not followed because they leave the backup's timeline before its end. */
  unreachable: Array<{ timeline: number; switchPoint: string }>;
  /** Timelines above 1 with archived segments but no history file: recovery cannot follow them. */
  timelinesWithoutHistory: number[];
  /** History files that could not be parsed. */
  malformedHistories: number[];
  /** The input itself is wrong (a WAL range that does not make sense); the rest is then empty. */
  invalid: string | undefined;
}

const SEGMENT = /^[0-9A-F]{24}$/;

/** Checks the archive for a backup's WAL; pure. */
export function checkWalContinuity(input: WalCheckInput, archive: ArchivedWal): WalCheck {
  const result: WalCheck = { needed: [], neededGaps: [], branches: [], unreachable: [], timelinesWithoutHistory: [], malformedHistories: [], invalid: undefined };
  const { segmentSize } = input;
  if (!isValidSegmentSize(segmentSize)) return { ...result, invalid: `WAL segment size ${segmentSize} is not a power of two from 1 MiB to 1 GiB` };
  if (!SEGMENT.test(input.beginWal) || !SEGMENT.test(input.endWal)) return { ...result, invalid: `the WAL range ${input.beginWal}..${input.endWal} is not made of segment names` };
  const tli = (name: string): number => Number.parseInt(name.slice(0, 8), 16);
  if (tli(input.beginWal) !== input.timeline || tli(input.endWal) !== input.timeline) {
    return { ...result, invalid: `the WAL range ${input.beginWal}..${input.endWal} is not on the backup's timeline ${input.timeline}` };
  }
  const begin = segmentNumber(input.beginWal, segmentSize);
  const end = segmentNumber(input.endWal, segmentSize);
  if (end < begin) return { ...result, invalid: `the WAL range ${input.beginWal}..${input.endWal} ends before it begins` };

  for (let segNo = begin; segNo <= end; segNo++) result.needed.push(segmentName(input.timeline, segNo, segmentSize));
  const own: TimelineSpan[] = [{ timeline: input.timeline, begin: 0n }];
  result.neededGaps = scan(begin, end, own, archive, segmentSize).gaps;

  result.malformedHistories = [...archive.histories].filter(([, chain]) => chain === undefined).map(([timeline]) => timeline).sort((a, b) => a - b);
  const segmentTimelines = new Set([...archive.segments.keys()].map(tli));
  result.timelinesWithoutHistory = [...segmentTimelines].filter((t) => t > 1 && !archive.histories.has(t)).sort((a, b) => a - b);
  if (!input.toLatest) return result;

  // Descendants: timelines whose history passes through the backup's; leaves: those no other descends from.
  const chains = new Map<number, TimelineSpan[]>();
  for (const [timeline, chain] of archive.histories) {
    if (chain === undefined || timeline <= input.timeline) continue;
    const from = chain.findIndex((span) => span.timeline === input.timeline);
    if (from >= 0) chains.set(timeline, chain.slice(from).map((span, i) => (i === 0 ? { timeline: span.timeline, begin: 0n } : { ...span })));
  }
  const leaves = [...chains.keys()].filter((t) => ![...chains.values()].some((c) => c.at(-1)?.timeline !== t && c.some((span) => span.timeline === t)));
  const reachable: TimelineSpan[][] = [];
  for (const leaf of leaves.sort((a, b) => a - b)) {
    const chain = chains.get(leaf) ?? [];
    const leaving = chain[1];
    if (leaving !== undefined && input.endLsn !== undefined && leaving.begin < input.endLsn) {
      result.unreachable.push({ timeline: leaving.timeline, switchPoint: formatLsn(leaving.begin) });
    } else {
      reachable.push(chain);
    }
  }
  // Without a reachable descendant, recovery stays on the backup's own timeline.
  if (reachable.length === 0) reachable.push(own);

  for (const chain of reachable) {
    const onChain = (segNo: bigint): number => timelineAt(chain, segNo, segmentSize);
    // The newest segment archived on this branch after end_wal.
    let newest: bigint | undefined;
    for (const name of archive.segments.keys()) {
      if (!fitsSegmentSize(name, segmentSize)) continue;
      const segNo = segmentNumber(name, segmentSize);
      if (segNo > end && tli(name) === onChain(segNo) && (newest === undefined || segNo > newest)) newest = segNo;
    }
    const branch: WalBranch = {
      timelines: chain.map((span) => span.timeline),
      switchPoints: chain.slice(1).map((span) => formatLsn(span.begin)),
      newest: newest === undefined ? undefined : segmentName(onChain(newest), newest, segmentSize),
      count: newest === undefined ? 0 : Number(newest - end),
      gaps: [],
      present: [],
    };
    if (newest !== undefined) {
      const found = scan(end + 1n, newest, chain, archive, segmentSize);
      branch.gaps = found.gaps;
      branch.present = found.present;
    }
    result.branches.push(branch);
  }
  return result;
}

/** The timeline a segment is read from on a chain: the newest that began at or before it. */
export function timelineAt(chain: readonly TimelineSpan[], segNo: bigint, segmentSize: number): number {
  const size = BigInt(segmentSize);
  let timeline = chain[0]?.timeline ?? 1;
  for (const span of chain) {
    if (span.begin / size <= segNo) timeline = span.timeline;
  }
  return timeline;
}

/**
 * The missing and the present segments of [from, to] on a chain. Walks the archived segments of
 * the range rather than every number in it, so a stray far-away name cannot make it loop for long.
 */
function scan(from: bigint, to: bigint, chain: readonly TimelineSpan[], archive: ArchivedWal, segmentSize: number): { gaps: SegmentRange[]; present: Array<readonly [string, string]> } {
  const found: Array<readonly [bigint, string, string]> = [];
  for (const [name, key] of archive.segments) {
    if (!fitsSegmentSize(name, segmentSize)) continue;
    const segNo = segmentNumber(name, segmentSize);
    if (segNo >= from && segNo <= to && Number.parseInt(name.slice(0, 8), 16) === timelineAt(chain, segNo, segmentSize)) found.push([segNo, name, key]);
  }
  found.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const gaps: SegmentRange[] = [];
  const nameOf = (segNo: bigint): string => segmentName(timelineAt(chain, segNo, segmentSize), segNo, segmentSize);
  let expected = from;
  for (const [segNo] of found) {
    if (segNo > expected) gaps.push({ first: nameOf(expected), last: nameOf(segNo - 1n), count: Number(segNo - expected) });
    expected = segNo + 1n;
  }
  if (expected <= to) gaps.push({ first: nameOf(expected), last: nameOf(to), count: Number(to - expected + 1n) });
  return { gaps, present: found.map(([, name, key]) => [name, key] as const) };
}

/** False for a name whose segment digits are out of range for the segment size (not a segment of this cluster). */
function fitsSegmentSize(name: string, segmentSize: number): boolean {
  return SEGMENT.test(name) && BigInt(`0x${name.slice(16, 24)}`) < 0x1_0000_0000n / BigInt(segmentSize);
}

/** "A..B (n segments)" or "A" for a range of one. */
export function describeRange(range: SegmentRange): string {
  return range.count === 1 ? range.first : `${range.first}..${range.last} (${range.count} segments)`;
}
