/**
 * Plans the parts of a backup: a pure function from the walked files to parts of at most
 * part_size raw bytes. Files are packed in walk (path) order, so a part holds neighbouring
 * small files; a file larger than the room left is split into chunks across parts. Memory
 * then depends on part_size and jobs only, never on file or database size.
 *
 * global/pg_control is left out of the plan and gets a part of its own, uploaded after every
 * other part: a restore whose pg_control is present then knows the rest was stored first,
 * which is why pg_basebackup also sends it last.
 */

/** What the planner needs to know of a file. */
export interface PlanFile {
  path: string;
  size: number;
}

/** A byte range of one file, as planned (reading may find fewer bytes, see part-upload.ts). */
export interface PlannedChunk {
  /** Index into the planned files. */
  file: number;
  fileOffset: number;
  length: number;
  /** True for the chunk that ends the file as walked. */
  last: boolean;
}

/** One part: chunks stored back to back, then compressed as one object. */
export interface PlannedPart {
  /** Part number, 0-based, also its index in Manifest.parts. */
  index: number;
  chunks: PlannedChunk[];
  /** Sum of the chunks' planned lengths; at most the part size. */
  rawSize: number;
}

/** The whole plan. */
export interface PartPlan {
  /** Every part except the final one, in order. */
  parts: PlannedPart[];
  /** The part holding only pg_control, numbered after all others; undefined when there is no pg_control. */
  finalPart: PlannedPart | undefined;
  /** Bytes planned in all parts. */
  totalBytes: number;
}

/** The file stored alone in the last part. */
export const LAST_FILE = 'global/pg_control';

/** Splits files into parts of at most partSize bytes. Files of size 0 get no chunk. */
export function planParts(files: readonly PlanFile[], partSize: number, lastPath: string = LAST_FILE): PartPlan {
  if (!Number.isSafeInteger(partSize) || partSize < 1) throw new RangeError(`part size ${partSize} is not a positive byte count`);
  const parts: PlannedPart[] = [];
  let current: PlannedPart | undefined;
  let totalBytes = 0;
  let last: number | undefined;
  files.forEach((file, index) => {
    if (file.path === lastPath) {
      last = index;
      return;
    }
    let offset = 0;
    while (offset < file.size) {
      if (current === undefined || current.rawSize === partSize) {
        current = { index: parts.length, chunks: [], rawSize: 0 };
        parts.push(current);
      }
      const length = Math.min(file.size - offset, partSize - current.rawSize);
      current.chunks.push({ file: index, fileOffset: offset, length, last: offset + length === file.size });
      current.rawSize += length;
      offset += length;
    }
    totalBytes += file.size;
  });
  let finalPart: PlannedPart | undefined;
  if (last !== undefined) {
    const size = files[last]?.size ?? 0;
    // pg_control is 8 KiB; a part of its own even if a part_size below that were ever allowed.
    finalPart = { index: parts.length, chunks: size === 0 ? [] : [{ file: last, fileOffset: 0, length: size, last: true }], rawSize: size };
    totalBytes += size;
  }
  return { parts, finalPart, totalBytes };
}
