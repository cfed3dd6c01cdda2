/**
 * Timeline history files (<TTTTTTTT>.history): which timelines a timeline descends from, and the
 * LSN where each switch happened. Recovery follows them, and so must a prefetcher: past a switch
 * point, PostgreSQL reads segments of the newer timeline.
 */
import { parseLsn } from '../../pg/lsn.ts';

/** One timeline of a chain, and the LSN where it begins (0 for the oldest). */
export interface TimelineSpan {
  timeline: number;
  begin: bigint;
}

/**
 * Parses the history file of `timeline` into its chain, oldest first, ending with `timeline`
 * itself. Each line is "<parent tli>\t<switch LSN>\t<reason>"; "#" comments and blank lines are
 * skipped, as PostgreSQL's readTimeLineHistory does. Undefined when the text is malformed.
 */
export function parseTimelineHistory(text: string, timeline: number): TimelineSpan[] | undefined {
  const chain: TimelineSpan[] = [];
  let begin = 0n;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [tliText, lsnText] = line.split(/\s+/);
    if (tliText === undefined || lsnText === undefined || !/^\d+$/.test(tliText)) return undefined;
    const tli = Number(tliText);
    const lsn = parseLsn(lsnText);
    if (lsn === undefined || lsn < begin) return undefined;
    const previous = chain.at(-1);
    if (previous !== undefined && tli <= previous.timeline) return undefined;
    chain.push({ timeline: tli, begin });
    begin = lsn;
  }
  const last = chain.at(-1);
  if (last !== undefined && timeline <= last.timeline) return undefined;
  chain.push({ timeline, begin });
  return chain;
}

/**
 * The chain recovery is following from `current`: that of the newest known timeline whose
 * history contains `current` (PostgreSQL's recovery_target_timeline = latest picks the newest,
 * and it asks for that history file before replaying). Without one, `current` alone.
 */
export function chooseChain(histories: ReadonlyMap<number, readonly TimelineSpan[]>, current: number): TimelineSpan[] {
  let best: readonly TimelineSpan[] | undefined;
  for (const [timeline, chain] of histories) {
    if (timeline < current || !chain.some((span) => span.timeline === current)) continue;
    if (best === undefined || timeline > (best.at(-1)?.timeline ?? 0)) best = chain;
  }
  if (best === undefined) return [{ timeline: current, begin: 0n }];
  // From `current` on: recovery never goes back to an older timeline.
  const index = best.findIndex((span) => span.timeline === current);
  return best.slice(index).map((span, i) => (i === 0 ? { timeline: span.timeline, begin: 0n } : { ...span }));
}
