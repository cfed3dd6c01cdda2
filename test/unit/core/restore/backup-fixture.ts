// Hand-built backups in a store, in the format src/core/catalog fixes (backup.json, manifest, parts
// holding the compressed concatenation of their chunks, backup_label), plus the WAL they need.
// Independent of src/core/backup, so restore is tested against the format, not against the writer.
import { createHash } from 'node:crypto';
import type { ObjectStore } from '../../../../providers/object-store.ts';
import { BACKUP_EXTENSIONS, compressPart, type BackupCodec } from '../../../../src/io/compression.ts';
import { BACKUP_FORMAT_VERSION, type BackupInfo, type BackupStatus, type TablespaceInfo } from '../../../../src/core/catalog/backup-info.ts';
import { backupPrefix, partName } from '../../../../src/core/catalog/backup-keys.ts';
import { writeManifest } from '../../../../src/core/catalog/catalog.ts';
import type { ChunkRef, Manifest, ManifestFile, ManifestPart } from '../../../../src/core/catalog/manifest.ts';

/** A file of the fixture backup. */
export interface FixtureFile {
  path: string;
  content: Buffer;
  mode?: number;
  mtime?: string;
}

export interface FixtureOptions {
  server?: string;
  id: string;
  status?: BackupStatus;
  files: FixtureFile[];
  directories?: Array<{ path: string; mode: number }>;
  /** Raw bytes per part: files are packed in order and split where a part fills up. */
  partSize?: number;
  compression?: BackupCodec;
  endTime?: string;
  beginLsn?: string;
  endLsn?: string;
  beginWal?: string;
  endWal?: string;
  timeline?: number;
  tablespaces?: TablespaceInfo[];
  /** Store the WAL segments begin..end (default true). */
  archiveWal?: boolean;
  label?: string;
  pgVersion?: number;
}

/** What was stored, for assertions. */
export interface Fixture {
  info: BackupInfo;
  manifest: Manifest;
  /** Object key of each part. */
  partKeys: string[];
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The minimal files of a data directory that restore requires (pg_control), plus PG_VERSION. */
export function baseFiles(): FixtureFile[] {
  return [
    { path: 'PG_VERSION', content: Buffer.from('15\n') },
    { path: 'global/pg_control', content: Buffer.alloc(8192, 7) },
  ];
}

/** Stores a backup and returns what it stored. */
export async function storeBackup(store: ObjectStore, opts: FixtureOptions): Promise<Fixture> {
  const server = opts.server ?? 'pg1';
  const compression = opts.compression ?? 'zstd';
  const partSize = opts.partSize ?? 1024 * 1024;
  const prefix = backupPrefix(server, opts.id);

  // Pack the files into parts, splitting a file where a part fills up (as the backup does).
  const raws: Buffer[][] = [[]];
  let fill = 0;
  const files: ManifestFile[] = opts.files.map((f) => {
    const chunks: ChunkRef[] = [];
    let offset = 0;
    while (offset < f.content.length) {
      if (fill === partSize) {
        raws.push([]);
        fill = 0;
      }
      const length = Math.min(f.content.length - offset, partSize - fill);
      const bytes = f.content.subarray(offset, offset + length);
      chunks.push({ part: raws.length - 1, partOffset: fill, fileOffset: offset, length, sha256: sha256(bytes) });
      raws.at(-1)?.push(bytes);
      fill += length;
      offset += length;
    }
    const file: ManifestFile = { path: f.path, size: f.content.length, mode: f.mode ?? 0o600, mtime: f.mtime ?? '2026-11-20T10:00:00.000Z', chunks };
    if (chunks.length <= 1) file.sha256 = sha256(f.content);
    return file;
  });
  const parts: ManifestPart[] = [];
  const partKeys: string[] = [];
  for (const [index, pieces] of raws.entries()) {
    if (pieces.length === 0) continue;
    const raw = Buffer.concat(pieces);
    const stored = Buffer.from(await compressPart(raw, compression));
    const name = partName(index, BACKUP_EXTENSIONS[compression]);
    await store.put(`${prefix}${name}`, stored, { metadata: { cb_compression: compression, cb_sha256: sha256(stored) } });
    parts.push({ name, rawSize: raw.length, storedSize: stored.length, sha256: sha256(stored) });
    partKeys.push(`${prefix}${name}`);
  }
  const directories = opts.directories ?? defaultDirectories(opts.files);
  const manifest: Manifest = { format_version: BACKUP_FORMAT_VERSION, backup_id: opts.id, compression, directories, files, parts };
  await writeManifest(store, server, manifest);
  await store.put(`${prefix}backup_label`, Buffer.from(opts.label ?? `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: ${opts.id}\n`));

  const beginWal = opts.beginWal ?? '000000010000000000000002';
  const endWal = opts.endWal ?? '000000010000000000000003';
  if (opts.archiveWal !== false) {
    for (let seg = parseInt(beginWal.slice(16), 16); seg <= parseInt(endWal.slice(16), 16); seg++) {
      const name = beginWal.slice(0, 16) + seg.toString(16).toUpperCase().padStart(8, '0');
      await store.put(`${server}/wals/${name.slice(0, 16)}/${name}.zst`, Buffer.from('wal'));
    }
  }
  const info: BackupInfo = {
    format_version: BACKUP_FORMAT_VERSION,
    id: opts.id,
    server,
    status: opts.status ?? 'DONE',
    method: 'local',
    label: `fixture ${opts.id}`,
    begin_time: '2026-11-20T09:59:00.000Z',
    end_time: opts.endTime ?? '2026-11-20T10:00:00.000Z',
    begin_lsn: opts.beginLsn ?? '0/2000028',
    end_lsn: opts.endLsn ?? '0/3000100',
    begin_wal: beginWal,
    end_wal: endWal,
    timeline: opts.timeline ?? 1,
    size_bytes: opts.files.reduce((n, f) => n + f.content.length, 0),
    stored_bytes: parts.reduce((n, p) => n + p.storedSize, 0),
    file_count: files.length,
    part_count: parts.length,
    compression,
    pg_version: opts.pgVersion ?? 150004,
    system_identifier: '7300000000000000000',
    data_checksums: false,
    wal_segment_size: 16 * 1024 * 1024,
    tablespaces: opts.tablespaces ?? [],
    error: null,
    cloudbarman_version: '0.1.0',
    hostname: 'fixture',
  };
  await store.put(`${prefix}backup.json`, Buffer.from(JSON.stringify(info, null, 2)));
  return { info, manifest, partKeys };
}

/** Every parent directory of the files, mode 0700. */
function defaultDirectories(files: readonly FixtureFile[]): Array<{ path: string; mode: number }> {
  const dirs = new Set<string>();
  for (const f of files) {
    const segments = f.path.split('/').slice(0, -1);
    for (let i = 1; i <= segments.length; i++) dirs.add(segments.slice(0, i).join('/'));
  }
  return [...dirs].sort().map((path) => ({ path, mode: 0o700 }));
}
