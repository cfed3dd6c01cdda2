/**
 * Where receive-wal asks the server to start streaming, decided without gaps: after whatever the
 * local directory holds, else at the slot's restart_lsn, else right after the last segment in the
 * store, else at the server's current segment. Streaming always starts on a segment boundary
 * (as pg_receivewal does), so that every file holds its segment from the first byte.
 *
 * Then the start is checked against the server's timeline history: a start on an older timeline
 * is fine up to the point where the server's history left it (the server streams up to there and
 * switches); past that point the local WAL diverged (the old primary wrote WAL the new one never
 * received), and streaming continues where the history forked, on the next timeline.
 */
import { formatLsn } from '../../pg/lsn.ts';
import { segmentFloor, segmentStartOf } from '../../pg/wal-position.ts';
import { CloudbarmanError } from '../errors.ts';
import type { LocalWal } from './receive-wal-segments.ts';
import type { TimelineSpan } from './timeline-history.ts';

/** Where the start position came from, for the log. */
export type StartSource = 'local' | 'slot' | 'store' | 'server';

/** A position on a timeline. */
export interface WalPoint {
  lsn: bigint;
  timeline: number;
}

/** What the start is chosen from. */
export interface StartInputs {
  local: LocalWal;
  /** The slot's restart position, when it has one. */
  slot: WalPoint | undefined;
  /** The last complete segment in the store on the server's timeline, when looked up. */
  lastStored: string | undefined;
  /** IDENTIFY_SYSTEM's timeline and position. */
  server: WalPoint;
  segmentSize: number;
}

/** The chosen start, and the local .partial files it leaves behind (kept as .partial). */
export interface StartChoice extends WalPoint {
  source: StartSource;
  /** Local .partial segments that streaming will not continue: each is the tail of an ended timeline. */
  abandonedPartials: string[];
}

/** Picks the start position; see the file comment for the order. */
export function chooseStart(inputs: StartInputs): StartChoice {
  const { local, segmentSize } = inputs;
  const size = BigInt(segmentSize);
  let best: (WalPoint & { partial?: string }) | undefined;
  const consider = (point: WalPoint & { partial?: string }): void => {
    // Later position wins; at the same position, the newer timeline and then a .partial.
    if (best === undefined || point.lsn > best.lsn || (point.lsn === best.lsn && (point.timeline > best.timeline || (point.timeline === best.timeline && point.partial !== undefined)))) {
      best = point;
    }
  };
  for (const name of local.complete) consider({ lsn: segmentStartOf(name, segmentSize) + size, timeline: timelineOf(name) });
  for (const name of local.partial) consider({ lsn: segmentStartOf(name, segmentSize), timeline: timelineOf(name), partial: name });
  if (best !== undefined) {
    const chosen = best;
    return { lsn: chosen.lsn, timeline: chosen.timeline, source: 'local', abandonedPartials: local.partial.filter((p) => p !== chosen.partial) };
  }
  if (inputs.slot !== undefined) {
    return { lsn: segmentFloor(inputs.slot.lsn, segmentSize), timeline: inputs.slot.timeline, source: 'slot', abandonedPartials: [] };
  }
  const serverStart = segmentFloor(inputs.server.lsn, segmentSize);
  if (inputs.lastStored !== undefined) {
    const afterStored = segmentStartOf(inputs.lastStored, segmentSize) + size;
    if (afterStored < serverStart) return { lsn: afterStored, timeline: timelineOf(inputs.lastStored), source: 'store', abandonedPartials: [] };
  }
  return { lsn: serverStart, timeline: inputs.server.timeline, source: 'server', abandonedPartials: [] };
}

/** The outcome of checking a start against the server's history. */
export interface HistoryCheck extends WalPoint {
  /** Set when local WAL went past the fork point: the LSN where the server's history left our timeline. */
  forkedAt?: bigint;
}

/**
 * Checks a start on `start.timeline` against the server on `serverTimeline`, whose history
 * (parseTimelineHistory of its .history file) is `history` (undefined on timeline 1).
 */
export function followServerHistory(start: WalPoint, serverTimeline: number, history: readonly TimelineSpan[] | undefined, segmentSize: number): HistoryCheck {
  if (start.timeline === serverTimeline) return { ...start };
  if (start.timeline > serverTimeline) {
    throw new CloudbarmanError('failed', `the WAL received so far is on timeline ${start.timeline}, but the server is on timeline ${serverTimeline}`, {
      hint: 'streaming_conninfo reaches an older server than the one streamed from before (a failed-over primary?); point it at the current primary',
    });
  }
  const chain = history ?? [];
  const index = chain.findIndex((span) => span.timeline === start.timeline);
  const next = chain[index + 1];
  if (index < 0 || next === undefined) {
    throw new CloudbarmanError('failed', `timeline ${start.timeline}, which the WAL received so far is on, is not in the history of the server's timeline ${serverTimeline}`, {
      hint: 'the server is not a descendant of the cluster streamed from before; check streaming_conninfo, or move the local receive-wal directory away to start afresh',
    });
  }
  if (start.lsn <= next.begin) return { ...start };
  return { lsn: segmentFloor(next.begin, segmentSize), timeline: next.timeline, forkedAt: next.begin };
}

/** Explains a fork for the log. */
export function describeFork(from: WalPoint, check: HistoryCheck): string {
  return `WAL received on timeline ${from.timeline} goes past ${formatLsn(check.forkedAt ?? 0n)}, where the server's history switched to timeline ${check.timeline}; ` +
    `what follows on timeline ${from.timeline} is kept as it is, and streaming continues on timeline ${check.timeline} from ${formatLsn(check.lsn)}`;
}

function timelineOf(name: string): number {
  return Number.parseInt(name.slice(0, 8), 16);
}
