/**
 * BASE_BACKUP over a physical replication connection (PostgreSQL 15+ protocol: one CopyOut stream
 * of 'n' new-archive, 'd' data, 'p' progress and 'm' manifest messages). The tar archives (one
 * per tablespace) are parsed as they stream, and their members go to a sink per archive, which
 * the caller supplies (stream-parts.ts packs them into parts); nothing touches the local disk.
 * The sink's promises are awaited, so a slow sink stops the reading of the connection, whose
 * socket then pauses. Every file is checked against the server's backup_manifest (size, and
 * CRC32C when listed), and backup_label and tablespace_map are kept for the caller.
 */
import { CloudbarmanError } from '../core/errors.ts';
import { ReplicationClient, type ResultSet } from './replication-client.ts';
import { TarReader, type TarEntry, type TarSink } from './tar-stream.ts';

/** What a finished BASE_BACKUP reports. */
export interface BaseBackupResult {
  startLsn: string;
  startTimeline: number;
  endLsn: string;
  endTimeline: number;
  /** The server's backup_manifest, as sent. */
  manifest: Buffer;
  /** backup_label and tablespace_map as they were in the base archive ('' when absent). */
  labelFile: string;
  spcmapFile: string;
  /** Files received, all archives. */
  fileCount: number;
}

/** How to run it. */
export interface BaseBackupOptions {
  conninfo: string;
  applicationName: string;
  connectTimeoutMs: number;
  label: string;
  /**
   * The sink of one archive's members: oid undefined for base.tar (the data directory), else the
   * tablespace's oid (its <oid>.tar, paths relative to the tablespace location). Paths are checked
   * to be relative and free of "..".
   */
  archive: (oid: number | undefined) => TarSink;
  /** How long the start checkpoint may take before the first message. */
  checkpointTimeoutMs?: number;
  onProgress?: (bytes: number) => void;
  /** Aborting it closes the connection, which ends the BASE_BACKUP on the server. */
  signal?: AbortSignal;
}

interface Received {
  size: number;
  crc32c: number;
}

interface Texts {
  label: string;
  spcmap: string;
}

/** Runs BASE_BACKUP and hands every archive's members to opts.archive; throws CloudbarmanError. */
export async function runBaseBackup(opts: BaseBackupOptions): Promise<BaseBackupResult> {
  const client = await ReplicationClient.open(opts.conninfo, { applicationName: opts.applicationName, connectTimeoutMs: opts.connectTimeoutMs });
  const onAbort = (): void => void client.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (opts.signal?.aborted === true) throw opts.signal.reason;
    const version = await showServerVersion(client);
    if (version < 150000) {
      throw new CloudbarmanError('bad-input', `backup_method postgres needs PostgreSQL 15 or later; the server is ${version}`, { hint: 'use backup_method local on the database host' });
    }
    const label = opts.label.replace(/'/g, "''");
    const command = client.run(`BASE_BACKUP (LABEL '${label}', CHECKPOINT 'fast', MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP, WAIT true)`,
      { timeoutMs: opts.checkpointTimeoutMs ?? 3_600_000 });
    const results: ResultSet[] = [];
    const received = new Map<string, Received>();
    const manifestParts: Buffer[] = [];
    let inManifest = false;
    let reader: TarReader | undefined;
    let progress = 0;
    const texts: Texts = { label: '', spcmap: '' };
    const closeArchive = (): void => {
      if (reader !== undefined) reader.finish();
      reader = undefined;
    };
    for await (const ev of command) {
      if (ev.type === 'result') results.push(ev.result);
      if (ev.type !== 'copy-data') continue;
      const kind = ev.data[0];
      if (kind === 0x6e) { // 'n': name\0 location\0
        closeArchive();
        const body = ev.data.subarray(1);
        const nul = body.indexOf(0);
        const name = body.subarray(0, nul).toString('utf8');
        const location = body.subarray(nul + 1, body.indexOf(0, nul + 1)).toString('utf8');
        const oid = name === 'base.tar' ? undefined : /^(\d+)\.tar$/.exec(name)?.[1];
        if (name !== 'base.tar' && oid === undefined) throw new CloudbarmanError('failed', `BASE_BACKUP sent an archive ${name}, which is not base.tar or <oid>.tar`, { hint: 'compression or a target is not expected here' });
        reader = new TarReader(new ReceivingSink(opts.archive(oid === undefined ? undefined : Number(oid)), oid === undefined ? '' : `pg_tblspc/${oid}/`, received, texts));
      } else if (kind === 0x6d) { // 'm': the manifest follows
        closeArchive();
        inManifest = true;
      } else if (kind === 0x64) { // 'd'
        const data = ev.data.subarray(1);
        if (inManifest) manifestParts.push(Buffer.from(data));
        else if (reader !== undefined) await reader.push(data);
        else throw new CloudbarmanError('failed', 'BASE_BACKUP sent data before naming an archive');
      } else if (kind === 0x70) { // 'p'
        progress = Number(ev.data.readBigInt64BE(1));
        opts.onProgress?.(progress);
      }
    }
    closeArchive();
    const start = results[0]?.rows[0];
    const end = results[results.length - 1]?.rows[0];
    if (start === undefined || end === undefined || results.length < 3) throw new CloudbarmanError('failed', `BASE_BACKUP returned ${results.length} result sets, expected 3`);
    const manifest = Buffer.concat(manifestParts);
    checkAgainstManifest(manifest, received);
    return {
      startLsn: start[0] ?? '', startTimeline: Number(start[1]), endLsn: end[0] ?? '', endTimeline: Number(end[1]), manifest,
      labelFile: texts.label, spcmapFile: texts.spcmap, fileCount: received.size,
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await client.close();
  }
}


async function showServerVersion(client: ReplicationClient): Promise<number> {
  const results: ResultSet[] = [];
  for await (const ev of client.run('SHOW server_version_num')) if (ev.type === 'result') results.push(ev.result);
  return Number(results[0]?.rows[0]?.[0] ?? 0);
}

/** Passes one archive's members on, noting each file's size and CRC32C and keeping backup_label and tablespace_map. */
class ReceivingSink implements TarSink {
  readonly #inner: TarSink;
  readonly #prefix: string;
  readonly #received: Map<string, Received>;
  readonly #texts: Texts;
  #current: Received | undefined;
  #text: Buffer[] | undefined;

  constructor(inner: TarSink, prefix: string, received: Map<string, Received>, texts: Texts) {
    this.#inner = inner;
    this.#prefix = prefix;
    this.#received = received;
    this.#texts = texts;
  }

  async entry(e: TarEntry): Promise<void> {
    if (e.path.split('/').includes('..') || e.path.startsWith('/')) throw new CloudbarmanError('failed', `BASE_BACKUP sent an unsafe path ${e.path}`);
    if (e.type === 'file') {
      this.#current = { size: 0, crc32c: 0xffffffff };
      this.#received.set(`${this.#prefix}${e.path}`, this.#current);
      this.#text = this.#prefix === '' && (e.path === 'backup_label' || e.path === 'tablespace_map') ? [] : undefined;
    }
    await this.#inner.entry(e);
  }

  async data(chunk: Buffer): Promise<void> {
    if (this.#current === undefined) return;
    this.#current.size += chunk.length;
    this.#current.crc32c = crc32cUpdate(this.#current.crc32c, chunk);
    this.#text?.push(Buffer.from(chunk));
    await this.#inner.data(chunk);
  }

  async end(e: TarEntry): Promise<void> {
    if (this.#text !== undefined) {
      const text = Buffer.concat(this.#text).toString('utf8');
      if (e.path === 'backup_label') this.#texts.label = text;
      else this.#texts.spcmap = text;
    }
    this.#text = undefined;
    this.#current = undefined;
    await this.#inner.end(e);
  }
}

interface ManifestFile {
  Path?: string;
  'Encoded-Path'?: string;
  Size?: number;
  'Checksum-Algorithm'?: string;
  Checksum?: string;
}

/** Every file the manifest lists was received, with its size and checksum. Exported for tests. */
export function checkAgainstManifest(manifest: Buffer, received: ReadonlyMap<string, { size: number; crc32c: number }>): void {
  let files: ManifestFile[];
  try {
    files = (JSON.parse(manifest.toString('utf8')) as { Files?: ManifestFile[] }).Files ?? [];
  } catch (err) {
    throw new CloudbarmanError('failed', `the server's backup_manifest cannot be parsed: ${(err as Error).message}`);
  }
  const problems: string[] = [];
  for (const f of files) {
    const path = f.Path ?? (f['Encoded-Path'] === undefined ? '' : Buffer.from(f['Encoded-Path'], 'hex').toString('utf8'));
    const got = received.get(path);
    if (got === undefined) { problems.push(`${path} is missing`); continue; }
    if (got.size !== f.Size) { problems.push(`${path} has ${got.size} bytes, the manifest says ${f.Size ?? '?'}`); continue; }
    if (f['Checksum-Algorithm'] === 'CRC32C' && f.Checksum !== undefined) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE((got.crc32c ^ 0xffffffff) >>> 0);
      if (b.toString('hex') !== f.Checksum.toLowerCase()) problems.push(`${path} fails its CRC32C`);
    }
  }
  if (problems.length > 0) {
    throw new CloudbarmanError('failed', `the received base backup does not match its backup_manifest: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` and ${problems.length - 5} more` : ''}`);
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC32C without the final inversion; start from 0xffffffff. */
export function crc32cUpdate(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) c = (CRC_TABLE[(c ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return c >>> 0;
}
