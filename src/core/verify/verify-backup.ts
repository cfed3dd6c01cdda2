/**
 * `verify SERVER BACKUP_ID`: is this backup restorable, and is the WAL to take it to any later
 * point there? Every object of the backup is checked against what was recorded when it was
 * stored, and the archive against the backup's WAL range and timelines (wal-continuity.ts).
 *
 * Two modes, because the stores cannot prove integrity without a download. An object's metadata
 * (cb_sha256) was written by us beside it and says what its bytes should be, not what they are;
 * the providers' own hashes are not used (an S3 ETag is an MD5 only for single-part uploads).
 *  - full (default): every part, the WAL segments and the history files are downloaded as streams
 *    and hashed, `jobs` objects at a time; each part is also decompressed and every chunk hashed,
 *    as a restore would (part-check.ts). Proves the bytes are those that were backed up.
 *  - quick: existence, stored size and the recorded checksums against the manifest, and the WAL
 *    listing without gaps. Catches deleted, truncated, replaced objects; not bit rot inside one.
 * In both, the manifest and backup_label, which carry no checksum of their own unless the writer
 * recorded one, are read and cross-checked against backup.json and the parts' own records.
 *
 * Findings are reported, never thrown: only a store that cannot be reached (or bad input) stops
 * verify, so that one run names every damaged object.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { StoreError, isStoreError, listAll } from '../../../providers/object-store.ts';
import { isBackupCodec, type BackupCodec } from '../../io/compression.ts';
import { parseLsn } from '../../pg/lsn.ts';
import { PART_META, type BackupInfo } from '../catalog/backup-info.ts';
import { MANIFEST_BASENAME, backupPrefix } from '../catalog/backup-keys.ts';
import { listBackups, readManifest } from '../catalog/catalog.ts';
import type { Manifest } from '../catalog/manifest.ts';
import { CloudbarmanError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { forEachBounded } from '../restore/bounded-pool.ts';
import { readBackupLabel, readTablespaceMap } from '../restore/recovery-files.ts';
import { planRestore, type RestorePlan } from '../restore/restore-plan.ts';
import { selectBackup } from '../restore/select-backup.ts';
import { storeFailure } from '../store/store-failure.ts';
import { readWalObject } from '../wal/wal-read.ts';
import { checkPartFully, checkPartQuickly } from './part-check.ts';
import { checkWalContinuity, describeRange, type SegmentRange } from './wal-continuity.ts';
import { listArchivedWal } from './wal-listing.ts';
import { checkFrom, plainCheck, type ObjectProblem, type VerifyCheck, type VerifyReport } from './verify-report.ts';

/** What to verify and how. */
export interface VerifyRequest {
  store: ObjectStore;
  server: string;
  /** A backup id, or 'latest'. */
  backupId: string;
  mode: 'full' | 'quick';
  /** Also check the WAL after the backup's end, up to the newest archived segment of each branch. */
  walToLatest: boolean;
  /** Objects read at once. */
  jobs: number;
  log: Logger;
  now: () => Date;
}

/** The report, and the backup it is about (for verify --restore). */
export interface VerifyOutcome {
  report: VerifyReport;
  backup: BackupInfo | undefined;
}

const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;
/** Where planRestore is told the backup would go: only the plan's checks are wanted, nothing is written. */
const PLAN_ONLY_DEST = '/.cloudbarman-verify-plan';

/** Verifies one backup and the WAL it needs; throws only when the store cannot be read or the request is wrong. */
export async function verifyBackup(req: VerifyRequest): Promise<VerifyOutcome> {
  const started = req.now();
  if (!Number.isSafeInteger(req.jobs) || req.jobs < 1) throw new CloudbarmanError('bad-input', `--jobs ${req.jobs} must be a whole number of at least 1`);
  const counter = { bytes: 0 };
  const report = (backupId: string, checks: VerifyCheck[]): VerifyReport => ({
    server: req.server,
    backup_id: backupId,
    mode: req.mode,
    ok: checks.every((c) => c.ok),
    guarantee: guarantee(req.mode),
    checks,
    bytes_read: counter.bytes,
    seconds: (req.now().getTime() - started.getTime()) / 1000,
  });

  const { backups, unreadable } = await listBackups(req.store, req.server);
  const broken = unreadable.find((u) => u.id === req.backupId);
  if (broken !== undefined) {
    const key = `${backupPrefix(req.server, broken.id)}backup.json`;
    return { report: report(broken.id, [checkFrom('catalog', [{ key, problem: broken.error }], '')]), backup: undefined };
  }
  for (const u of unreadable) req.log.warn(`backup ${u.id} is skipped: its catalog entry cannot be read (${u.error})`);
  const selection = selectBackup(backups, { id: req.backupId }, { available: [] });
  if (!selection.ok) throw selection.error;
  const backup = selection.backup;
  req.log.info(`verifying backup ${backup.id} of ${req.server} (${req.mode})`);

  const checks: VerifyCheck[] = [plainCheck('catalog', true,
    `${backup.status}, ${backup.method} backup of PostgreSQL ${backup.pg_version ?? '?'}, WAL ${backup.begin_wal ?? '?'}..${backup.end_wal ?? '?'} on timeline ${backup.timeline ?? '?'}`)];

  if (backup.method === 'snapshot') {
    checks.push(plainCheck('data', true, 'not in the store: a snapshot backup keeps its data in cloud snapshots, which restore --snapshot-recovery-instance checks'));
  } else {
    checks.push(...await verifyData(req, backup, counter));
  }
  checks.push(...await verifyLabel(req, backup));
  checks.push(...await verifyWal(req, backup, counter));
  return { report: report(backup.id, checks), backup };
}

/** The manifest and every part. */
async function verifyData(req: VerifyRequest, backup: BackupInfo, counter: { bytes: number }): Promise<VerifyCheck[]> {
  const manifestPrefix = `${backupPrefix(req.server, backup.id)}${MANIFEST_BASENAME}`;
  let manifest: Manifest;
  let plan: RestorePlan;
  try {
    manifest = await readManifest(req.store, req.server, backup.id);
    plan = planRestore({ server: req.server, backup, manifest, dest: PLAN_ONLY_DEST, relocations: new Map() });
  } catch (err) {
    const problem = integrityProblem(err, manifestPrefix);
    return [checkFrom('manifest', [problem], ''), plainCheck('parts', false, 'not checked: without a sound manifest nothing says what the parts should hold')];
  }
  const manifestProblems: ObjectProblem[] = [];
  const mismatch = catalogMismatch(backup, manifest);
  if (mismatch !== undefined) manifestProblems.push({ key: manifestPrefix, problem: `it does not agree with backup.json: ${mismatch}` });
  const own = await manifestChecksum(req, manifestPrefix, counter);
  if (own.problem !== undefined) manifestProblems.push(own.problem);
  const checks = [checkFrom('manifest', manifestProblems,
    `${manifest.files.length} files, ${manifest.parts.length} parts, agrees with backup.json; ${own.note}`)];

  const codec: BackupCodec = isBackupCodec(backup.compression) ? backup.compression : 'none';
  const problems: ObjectProblem[] = [];
  const ctx = { store: req.store, compression: codec, files: plan.files, signal: new AbortController().signal };
  let done = 0;
  await forEachBounded(plan.parts, req.jobs, new AbortController(), async (part, signal) => {
    try {
      const outcome = req.mode === 'full' ? await checkPartFully({ ...ctx, signal }, part) : await checkPartQuickly({ ...ctx, signal }, part);
      counter.bytes += outcome.bytesRead;
      if (outcome.problem !== undefined) problems.push({ key: part.key, problem: outcome.problem });
    } catch (err) {
      problems.push(integrityProblem(err, part.key, req.store.url));
    }
    done++;
    if (done % 50 === 0) req.log.info(`${done} of ${plan.parts.length} parts checked`);
  });
  problems.sort((a, b) => a.key.localeCompare(b.key));
  const stored = plan.storedBytes;
  checks.push(checkFrom('parts', problems, req.mode === 'full'
    ? `${plan.parts.length} parts, ${stored} bytes read: each matches the manifest's SHA-256, and every chunk its own`
    : `${plan.parts.length} parts present with the recorded sizes and checksums; ${stored} bytes not read`));
  return checks;
}

/** backup_label (checked against the catalog) and tablespace_map. */
async function verifyLabel(req: VerifyRequest, backup: BackupInfo): Promise<VerifyCheck[]> {
  const prefix = backupPrefix(req.server, backup.id);
  const checks: VerifyCheck[] = [];
  try {
    await readBackupLabel(req.store, req.server, backup);
    checks.push(plainCheck('backup_label', true, 'present, whole, and agrees with backup.json'));
  } catch (err) {
    checks.push(checkFrom('backup_label', [integrityProblem(err, `${prefix}backup_label`)], ''));
  }
  if (backup.tablespaces.length > 0) {
    try {
      const map = await readTablespaceMap(req.store, req.server, backup);
      checks.push(plainCheck('tablespace_map', true, map === undefined ? 'none needed (in-place tablespaces only)' : 'present'));
    } catch (err) {
      checks.push(checkFrom('tablespace_map', [integrityProblem(err, `${prefix}tablespace_map`)], ''));
    }
  }
  return checks;
}

/** The WAL the backup needs, the history files, and (walToLatest) continuity after the backup's end. */
async function verifyWal(req: VerifyRequest, backup: BackupInfo, counter: { bytes: number }): Promise<VerifyCheck[]> {
  if (backup.begin_wal === null || backup.end_wal === null || backup.timeline === null) {
    return [plainCheck('wal needed', false, 'backup.json records no WAL range: nothing says which WAL makes the backup consistent')];
  }
  const timeline = backup.timeline;
  const segmentSize = backup.wal_segment_size ?? DEFAULT_SEGMENT_SIZE;
  const listing = await listArchivedWal(req.store, req.server, backup.timeline + 1);
  const endLsn = backup.end_lsn === null ? undefined : parseLsn(backup.end_lsn);
  const found = checkWalContinuity({
    timeline: backup.timeline, beginWal: backup.begin_wal, endWal: backup.end_wal, endLsn, segmentSize, toLatest: req.walToLatest,
  }, listing.archive);
  if (found.invalid !== undefined) return [plainCheck('wal needed', false, `backup.json is inconsistent: ${found.invalid}`)];
  const keyOf = (name: string): string => `${req.server}/wals/${name.slice(0, 16)}/${name}`;
  const gapProblem = (range: SegmentRange): ObjectProblem => ({ key: keyOf(range.first), problem: `not archived: ${describeRange(range)}` });

  // Full: every present segment checked is read and hashed, jobs at a time.
  const needed = found.needed.flatMap((name) => {
    const key = listing.archive.segments.get(name);
    return key === undefined ? [] : [[name, key] as const];
  });
  const later = found.branches.flatMap((b) => b.present);
  const damaged = new Map<string, string>();
  if (req.mode === 'full') {
    const keys = [...new Set([...needed, ...later].map(([, key]) => key))];
    let done = 0;
    await forEachBounded(keys, req.jobs, new AbortController(), async (key) => {
      try {
        const result = await readWalObject(req.store, key);
        counter.bytes += result.sizeBytes;
        if (!result.verified) damaged.set(key, 'it carries no checksum (not written by cloudbarman): read, but not verified');
      } catch (err) {
        damaged.set(key, integrityProblem(err, key, req.store.url).problem.replace(`${req.store.url} ${key} is corrupt: `, ''));
      }
      done++;
      if (done % 100 === 0) req.log.info(`${done} of ${keys.length} WAL segments checked`);
    });
  }
  const damagedIn = (present: ReadonlyArray<readonly [string, string]>): ObjectProblem[] =>
    present.flatMap(([, key]) => {
      const problem = damaged.get(key);
      return problem === undefined ? [] : [{ key, problem }];
    });

  const checks: VerifyCheck[] = [];
  const neededProblems = [...found.neededGaps.map(gapProblem), ...damagedIn(needed)];
  const how = req.mode === 'full' ? 'read, each matches its SHA-256' : 'listed';
  checks.push(checkFrom('wal needed', neededProblems, `${backup.begin_wal}..${backup.end_wal}, ${found.needed.length} segment${found.needed.length === 1 ? '' : 's'} ${how}`));

  const historyProblems: ObjectProblem[] = [
    ...listing.problems,
    ...found.timelinesWithoutHistory.filter((t) => t > timeline).map((t) => ({
      key: `${req.server}/wals/${t.toString(16).toUpperCase().padStart(8, '0')}.history`,
      problem: `timeline ${t} has archived WAL but no history file: recovery cannot follow it`,
    })),
  ];
  if (req.walToLatest || historyProblems.length > 0) {
    const followed = listing.historyKeys.size === 0 ? 'no timeline history files' : `${[...listing.historyKeys.keys()].filter((t) => t > timeline).length} history file(s) of later timelines read`;
    checks.push(checkFrom('timeline history', historyProblems, followed));
  }
  if (req.walToLatest) {
    const problems = found.branches.flatMap((b) => [...b.gaps.map(gapProblem), ...damagedIn(b.present)]);
    const described = found.branches.map((b) => {
      const path = b.timelines.length === 1 ? `timeline ${b.timelines[0] ?? '?'}` : `timelines ${b.timelines.join('->')} (switch at ${b.switchPoints.join(', ')})`;
      return b.newest === undefined ? `nothing archived after ${backup.end_wal ?? ''} on ${path} yet` : `${b.count} segment${b.count === 1 ? '' : 's'} after ${backup.end_wal ?? ''} up to ${b.newest} on ${path}, ${how}`;
    });
    const skipped = found.unreachable.map((u) => `timeline ${u.timeline} not followed: it left timeline ${backup.timeline ?? ''} at ${u.switchPoint}, before the backup ended`);
    checks.push(checkFrom('wal to latest', problems, [...described, ...skipped].join('; ')));
  }
  return checks;
}

/** The manifest's own checksum, when its writer recorded one (cb_sha256): checked in full mode. */
async function manifestChecksum(req: VerifyRequest, prefix: string, counter: { bytes: number }): Promise<{ note: string; problem?: ObjectProblem }> {
  let key: string | undefined;
  try {
    for await (const item of listAll(req.store, prefix)) key ??= item.key;
  } catch (err) {
    throw storeFailure(err, 'finding the manifest', `${req.store.url} ${prefix}`);
  }
  if (key === undefined) return { note: '', problem: { key: prefix, problem: 'it is gone' } };
  const info = await req.store.head(key).catch((err: unknown) => { throw storeFailure(err, 'checking the manifest', `${req.store.url} ${key}`); });
  const recorded = info?.metadata?.[PART_META.sha256];
  if (recorded === undefined) return { note: 'it carries no checksum of its own: cross-checked only' };
  if (req.mode === 'quick') return { note: 'its recorded checksum is not read in quick mode' };
  const hash = createHash('sha256');
  try {
    const { body } = await req.store.get(key);
    for await (const piece of body) {
      hash.update(piece as Buffer);
      counter.bytes += (piece as Buffer).length;
    }
  } catch (err) {
    throw storeFailure(err, 'reading the manifest', `${req.store.url} ${key}`);
  }
  if (hash.digest('hex') !== recorded) return { note: '', problem: { key, problem: 'its SHA-256 does not match the one recorded when it was stored' } };
  return { note: 'its bytes match their recorded SHA-256' };
}

/** What backup.json says against what the manifest holds; undefined when they agree. */
function catalogMismatch(backup: BackupInfo, manifest: Manifest): string | undefined {
  const stored = manifest.parts.reduce((n, p) => n + p.storedSize, 0);
  const size = manifest.files.reduce((n, f) => n + f.size, 0);
  if (manifest.files.length !== backup.file_count) return `${manifest.files.length} files, backup.json says ${backup.file_count}`;
  if (manifest.parts.length !== backup.part_count) return `${manifest.parts.length} parts, backup.json says ${backup.part_count}`;
  if (stored !== backup.stored_bytes) return `${stored} bytes stored, backup.json says ${backup.stored_bytes}`;
  if (size !== backup.size_bytes) return `${size} bytes of files, backup.json says ${backup.size_bytes}`;
  return undefined;
}

/**
 * A finding about one object as a problem: damage, a missing object, or an object the store could not
 * hand out as one ('failed': a local object whose header is damaged, say). A store that cannot be
 * reached, or refuses us, is rethrown: nothing about the objects can be said then.
 */
function integrityProblem(err: unknown, key: string, url?: string): ObjectProblem {
  if (isStoreError(err, 'not-found')) return { key, problem: 'it is missing' };
  if (!(err instanceof CloudbarmanError) && !(err instanceof StoreError)) throw err; // a bug, not a finding
  const failure = storeFailure(err, 'reading', url === undefined ? key : `${url} ${key}`);
  if (failure.kind === 'integrity' || failure.kind === 'not-found' || failure.kind === 'failed') return { key, problem: failure.message };
  throw failure;
}

function guarantee(mode: 'full' | 'quick'): string {
  return mode === 'full'
    ? 'full: every part and every WAL segment checked was read and matched its SHA-256, every chunk too; the manifest and backup_label were cross-checked against backup.json and the parts\' own records'
    : 'quick: every object exists with its recorded size and checksum metadata and the WAL listing has no gaps; nothing inside the objects was read, so bit rot is not detected (run a full verify for that)';
}
