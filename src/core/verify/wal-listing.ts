/**
 * The WAL archive of a server as verify sees it: one listing of <server>/wals/, the complete
 * segments by name, and the timeline history files read back and checked against the checksum
 * recorded when they were archived. Only what the listing says exists counts; a history file
 * that cannot be read or does not match its checksum is a finding, not a silent skip.
 */
import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError, listAll } from '../../../providers/object-store.ts';
import { compressionFromExtension, decompressBuffer, isCompression, type Compression } from '../../io/compression.ts';
import { storeFailure } from '../store/store-failure.ts';
import { parseTimelineHistory, type TimelineSpan } from '../wal/timeline-history.ts';
import { WAL_META, isWalVariant } from '../wal/wal-keys.ts';
import type { ArchivedWal } from './wal-continuity.ts';
import type { ObjectProblem } from './verify-report.ts';

/** The archive, plus what was wrong with its history files. */
export interface WalListing {
  archive: ArchivedWal;
  /** History files by timeline, with their keys. */
  historyKeys: ReadonlyMap<number, string>;
  problems: ObjectProblem[];
}

const SEGMENT_KEY = /^([0-9A-F]{16})\/([0-9A-F]{24})(\.[a-z0-9]+)?$/;
const HISTORY_KEY = /^([0-9A-F]{8})\.history(\.[a-z0-9]+)?$/;

/** Lists <server>/wals/ and reads the history files of timelines from `fromTimeline` on. */
export async function listArchivedWal(store: ObjectStore, server: string, fromTimeline: number): Promise<WalListing> {
  const prefix = `${server}/wals/`;
  const segments = new Map<string, string>();
  const historyKeys = new Map<number, string>();
  try {
    for await (const item of listAll(store, prefix)) {
      const rest = item.key.slice(prefix.length);
      const segment = SEGMENT_KEY.exec(rest);
      if (segment !== null) {
        const [, bucket = '', name = ''] = segment;
        if (name.startsWith(bucket) && isWalVariant(`${prefix}${bucket}/${name}`, item.key) && !segments.has(name)) segments.set(name, item.key);
        continue;
      }
      const history = HISTORY_KEY.exec(rest);
      if (history !== null && isWalVariant(`${prefix}${history[1] ?? ''}.history`, item.key)) {
        historyKeys.set(Number.parseInt(history[1] ?? '0', 16), item.key);
      }
    }
  } catch (err) {
    throw storeFailure(err, 'listing the WAL archive', `${store.url} ${prefix}`);
  }
  const histories = new Map<number, readonly TimelineSpan[] | undefined>();
  const problems: ObjectProblem[] = [];
  for (const [timeline, key] of [...historyKeys].sort((a, b) => a[0] - b[0])) {
    if (timeline < fromTimeline) {
      // Older timelines cannot descend from the backup's; their history is not needed here.
      histories.set(timeline, []);
      continue;
    }
    const read = await readHistory(store, key);
    if (typeof read !== 'string') {
      problems.push({ key, problem: read.problem });
      histories.set(timeline, undefined);
      continue;
    }
    const chain = parseTimelineHistory(read, timeline);
    if (chain === undefined) problems.push({ key, problem: 'it is not a valid timeline history' });
    histories.set(timeline, chain);
  }
  return { archive: { segments, histories }, historyKeys, problems };
}

/** A history file's text, checked against its recorded SHA-256 and size; or what is wrong with it. */
async function readHistory(store: ObjectStore, key: string): Promise<string | { problem: string }> {
  let raw: Buffer;
  let meta: Record<string, string>;
  try {
    const got = await store.get(key);
    meta = got.info.metadata ?? {};
    raw = await buffer(got.body);
  } catch (err) {
    if (isStoreError(err, 'not-found')) return { problem: 'it was listed but is gone' };
    throw storeFailure(err, 'reading a timeline history file', `${store.url} ${key}`);
  }
  const fromMeta = meta[WAL_META.compression];
  const codec: Compression = fromMeta !== undefined && isCompression(fromMeta) ? fromMeta : compressionFromExtension(key) ?? 'none';
  let text: Buffer;
  try {
    text = decompressBuffer(raw, codec);
  } catch {
    return { problem: `it does not decompress as ${codec}` };
  }
  const sha256 = meta[WAL_META.sha256];
  if (sha256 !== undefined && createHash('sha256').update(text).digest('hex') !== sha256) return { problem: 'its SHA-256 does not match the one recorded at upload' };
  const size = meta[WAL_META.size];
  if (size !== undefined && Number(size) !== text.length) return { problem: `it holds ${text.length} bytes, ${size} were archived` };
  return text.toString('utf8');
}
