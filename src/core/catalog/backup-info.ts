/**
 * The catalog entry of one base backup: <server>/base/<id>/backup.json. Written as STARTED when a
 * backup begins (create-if-absent, which also claims the id) and rewritten DONE or FAILED at the
 * end, after everything else of the backup is stored. Only a DONE entry counts as a backup.
 */

/** Object format of backup.json and the manifest; readers reject versions they do not know. */
export const BACKUP_FORMAT_VERSION = 1;

/** DELETING: a delete has begun; the entry goes last, so an interrupted delete stays visible and never looks DONE. */
export type BackupStatus = 'STARTED' | 'DONE' | 'FAILED' | 'DELETING';
export type BackupMethod = 'local' | 'postgres' | 'snapshot';
export type BackupCompression = 'none' | 'gzip' | 'lz4' | 'zstd';

/** A tablespace as the backup found it. */
export interface TablespaceInfo {
  name: string;
  oid: number;
  /** Where it lived on the source (the target of pg_tblspc/<oid>). */
  location: string;
}

/** Everything known about a backup; the JSON fields DESIGN.md fixes use snake_case. */
export interface BackupInfo {
  format_version: number;
  id: string;
  server: string;
  status: BackupStatus;
  method: BackupMethod;
  label: string;
  /** ISO 8601 UTC. begin_time is the server's clock at pg_backup_start; end_time at pg_backup_stop. */
  begin_time: string;
  end_time: string | null;
  begin_lsn: string | null;
  end_lsn: string | null;
  /** WAL segment names of the start and stop LSNs (the WAL a restore needs, at least). */
  begin_wal: string | null;
  end_wal: string | null;
  timeline: number | null;
  /** Bytes of data files read; stored_bytes after compression, as stored. */
  size_bytes: number;
  stored_bytes: number;
  file_count: number;
  part_count: number;
  compression: BackupCompression;
  /** PostgreSQL's server_version_num, e.g. 170004. */
  pg_version: number | null;
  system_identifier: string | null;
  data_checksums: boolean | null;
  wal_segment_size: number | null;
  tablespaces: TablespaceInfo[];
  /** Set when status is FAILED. */
  error: string | null;
  cloudbarman_version: string;
  /** Host that took the backup. */
  hostname: string;
  /**
   * backup_method snapshot: one record per disk snapshot, written as soon as the snapshots exist (so
   * a killed run leaves no invisible snapshot) and kept on a FAILED entry for the ones that could
   * not be deleted. Absent on file backups.
   */
  snapshots?: SnapshotRecord[];
  /** backup_method snapshot: the data directory as the snapshots hold it; a restore brings it back at this path. */
  pgdata?: string;
  /**
   * Client-side encryption of the backup's data, manifest and backup_label (docs/encryption.md): the
   * algorithm and the id of the key, never the key. null: not encrypted. Absent: written before
   * cloudbarman recorded it. This entry itself is never encrypted.
   */
  encryption?: BackupEncryption | null;
}

/** How a backup's objects are encrypted. */
export interface BackupEncryption {
  algorithm: 'aes-256-gcm';
  /** The master key's id (a fingerprint, docs/encryption.md). */
  key_id: string;
}

/**
 * One snapshot of a snapshot backup: everything a restore needs to find it, make a disk of it
 * and check that the disk is mounted where the data lived.
 */
export interface SnapshotRecord {
  /** The cloud's snapshot id (snap-..., an ARM id, a Compute Engine name; local: the snapshot's name). */
  id: string;
  name: string;
  /** Which snapshotter took it (aws, azure, gcp, local); restore and delete open that one. */
  provider: string;
  disk_id: string;
  disk_name: string;
  /** Where the disk was attached on the source instance, as the cloud reported it. */
  device: string | null;
  /** Where the disk was mounted on the source instance; a restore needs a disk made from this snapshot mounted here. */
  mount_point: string;
  zone: string | null;
  /** What the disk held: "pgdata", "pg_wal", "tablespace NAME"; for people reading show. */
  contents: string[];
}

/** Metadata names on the objects of a backup. */
export const PART_META = {
  sha256: 'cb_sha256', // SHA-256 of the stored (compressed) object
  rawSha256: 'cb_raw_sha256', // SHA-256 of the uncompressed part
  rawSize: 'cb_size',
  compression: 'cb_compression',
  format: 'cb_format',
} as const;
