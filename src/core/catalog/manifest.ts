/**
 * The manifest of a backup: every file and directory, and where each file's bytes are.
 * Stored as <server>/base/<id>/manifest.json.<ext> before the catalog entry turns DONE.
 *
 * Data goes into parts: a part is the plain concatenation of file byte ranges ("chunks"),
 * compressed as one stream and stored as <server>/base/<id>/data/<NNNNNN>.<ext>. A large file
 * spans several parts; a part holds many small files. Restore writes each chunk at its offset,
 * so parts restore independently and in parallel.
 */
import type { BackupCompression } from './backup-info.ts';

/**
 * One byte range of a file, stored contiguously inside one part. A file's chunks, in fileOffset
 * order, are contiguous from 0 to its size. A file that shrank while it was read ends early;
 * where a chunk other than its last came up short, the rest of that chunk is stored as zeros,
 * as pg_basebackup pads such a file (zero pages are valid; WAL replay truncates the file again).
 */
export interface ChunkRef {
  /** Part number (index into Manifest.parts). */
  part: number;
  /** Offset of the chunk inside the part's uncompressed stream. */
  partOffset: number;
  /** Offset of the chunk inside the file. */
  fileOffset: number;
  length: number;
  /** SHA-256 of the chunk's bytes, checked as restore writes them. */
  sha256: string;
}

export interface ManifestFile {
  /** Path relative to the data directory, "/" separated; tablespace files are under pg_tblspc/<oid>/. */
  path: string;
  /** Bytes backed up (what was read; a file may change size while PostgreSQL runs). */
  size: number;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  /** Modification time, ISO 8601. */
  mtime: string;
  /**
   * SHA-256 of the whole file as backed up, for a file stored in at most one chunk (then equal
   * to that chunk's sha256; for an empty file, the SHA-256 of nothing). Absent for a file split
   * across parts: its chunks' sha256 already cover every byte, and a second whole-file pass over
   * the large relation files that hold most of a database would cost more CPU than compression.
   */
  sha256?: string;
  chunks: ChunkRef[];
}

export interface ManifestDirectory {
  /**
   * Relative to the data directory. A tablespace appears as pg_tblspc/<oid> (a symlink on the
   * source, to the location in BackupInfo.tablespaces and tablespace_map) and its subdirectories.
   */
  path: string;
  mode: number;
}

export interface ManifestPart {
  /** Key relative to the backup's folder: data/000001.zst */
  name: string;
  /** Uncompressed bytes. */
  rawSize: number;
  /** Bytes stored. */
  storedSize: number;
  /** SHA-256 of the stored object. */
  sha256: string;
}

export interface Manifest {
  format_version: number;
  backup_id: string;
  compression: BackupCompression;
  directories: ManifestDirectory[];
  files: ManifestFile[];
  parts: ManifestPart[];
}
