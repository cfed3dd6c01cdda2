/**
 * PostgreSQL WAL file names: what archive_command and restore_command pass as %f.
 * Segments are TTTTTTTTXXXXXXXXYYYYYYYY (timeline, log, segment in hex).
 */

/** The kinds of file PostgreSQL archives. */
export type WalFileKind = 'segment' | 'partial' | 'backup-history' | 'timeline-history';

export interface WalFileName {
  name: string;
  kind: WalFileKind;
  /** Timeline, from the first eight hex digits. */
  timeline: number;
  /** The first 16 hex digits (timeline + log), the bucket a segment is stored under; undefined for .history. */
  bucket: string | undefined;
}

const PATTERNS: ReadonlyArray<readonly [WalFileKind, RegExp]> = [
  ['segment', /^[0-9A-F]{24}$/],
  ['partial', /^[0-9A-F]{24}\.partial$/],
  ['backup-history', /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/],
  ['timeline-history', /^[0-9A-F]{8}\.history$/],
];

/** Parses a WAL file name; undefined when it is not one PostgreSQL would archive. */
export function parseWalFileName(name: string): WalFileName | undefined {
  for (const [kind, re] of PATTERNS) {
    if (re.test(name)) {
      return {
        name,
        kind,
        timeline: Number.parseInt(name.slice(0, 8), 16),
        bucket: kind === 'timeline-history' ? undefined : name.slice(0, 16),
      };
    }
  }
  return undefined;
}

/** The next segment's name after a segment, for a segment size in bytes (16 MiB by default). */
export function nextSegmentName(name: string, segmentSize = 16 * 1024 * 1024): string {
  const tli = name.slice(0, 8);
  let log = Number.parseInt(name.slice(8, 16), 16);
  let seg = Number.parseInt(name.slice(16, 24), 16);
  const segsPerLog = 0x1_0000_0000 / segmentSize;
  seg += 1;
  if (seg >= segsPerLog) {
    seg = 0;
    log += 1;
  }
  return `${tli}${hex8(log)}${hex8(seg)}`;
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}
