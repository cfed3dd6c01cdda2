/**
 * Turns the walk and the uploaded parts into the backup's Manifest. Pure: parts complete in any
 * order, so each file's entry is put together only once every part is in.
 */
import { BACKUP_FORMAT_VERSION, type BackupCompression } from '../catalog/backup-info.ts';
import type { ChunkRef, Manifest, ManifestDirectory, ManifestFile, ManifestPart } from '../catalog/manifest.ts';
import type { PartOutcome } from './part-upload.ts';

/** SHA-256 of zero bytes: the checksum of an empty file. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A walked file as the manifest needs it. */
export interface AssemblyFile {
  path: string;
  mode: number;
  mtime: Date;
}

/** What goes into the manifest. */
export interface AssemblyInput {
  backupId: string;
  compression: BackupCompression;
  files: readonly AssemblyFile[];
  directories: readonly ManifestDirectory[];
  /** Every part, in any order; part numbers must run 0..n-1 without gaps. */
  outcomes: readonly PartOutcome[];
}

/** Builds the manifest. Files that vanished while being read are left out. */
export function assembleManifest(input: AssemblyInput): Manifest {
  const parts: ManifestPart[] = [];
  const chunksByFile = new Map<number, ChunkRef[]>();
  const vanished = new Set<number>();
  for (const outcome of input.outcomes) {
    if (parts[outcome.index] !== undefined) throw new Error(`internal: part ${outcome.index} was stored twice`);
    parts[outcome.index] = outcome.part;
    for (const f of outcome.vanished) vanished.add(f);
    for (const c of outcome.chunks) {
      const list = chunksByFile.get(c.file) ?? [];
      list.push({ part: outcome.index, partOffset: c.partOffset, fileOffset: c.fileOffset, length: c.length, sha256: c.sha256 });
      chunksByFile.set(c.file, list);
    }
  }
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === undefined) throw new Error(`internal: part ${i} is missing from the manifest`);
  }

  const files: ManifestFile[] = [];
  input.files.forEach((file, index) => {
    if (vanished.has(index)) return;
    const chunks = (chunksByFile.get(index) ?? []).sort((a, b) => a.fileOffset - b.fileOffset);
    let size = 0;
    for (const c of chunks) {
      if (c.fileOffset !== size) throw new Error(`internal: ${file.path} has a gap at offset ${size} in its chunks`);
      size += c.length;
    }
    const sha256 = chunks.length === 0 ? EMPTY_SHA256 : chunks.length === 1 ? chunks[0]?.sha256 : undefined;
    files.push({ path: file.path, size, mode: file.mode, mtime: file.mtime.toISOString(), ...(sha256 === undefined ? {} : { sha256 }), chunks });
  });
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const directories = [...input.directories].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  return { format_version: BACKUP_FORMAT_VERSION, backup_id: input.backupId, compression: input.compression, directories, files, parts };
}
