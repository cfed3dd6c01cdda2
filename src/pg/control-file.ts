/**
 * Reading global/pg_control from a data directory. Only the system identifier is read: it is
 * the first field of ControlFileData, written in the byte order of the machine that runs the
 * cluster, which for backup_method local is this one.
 */
import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';

/** Where pg_control lives, relative to the data directory. */
export const CONTROL_FILE_PATH = 'global/pg_control';

/** The database system identifier recorded in pgdata's pg_control, as decimal text (as pg_control_system() shows it). */
export async function readSystemIdentifier(pgdata: string): Promise<string> {
  const handle = await open(join(pgdata, CONTROL_FILE_PATH), 'r');
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await handle.read(buf, 0, 8, 0);
    if (bytesRead !== 8) throw new Error(`${join(pgdata, CONTROL_FILE_PATH)} is shorter than 8 bytes`);
    return (endianness() === 'LE' ? buf.readBigUInt64LE(0) : buf.readBigUInt64BE(0)).toString();
  } finally {
    await handle.close();
  }
}
