/**
 * A streaming reader of the tar archives BASE_BACKUP sends (ustar, as PostgreSQL writes them:
 * regular files, directories, symlinks; 512-byte blocks; sizes in octal or base-256). Bytes are
 * pushed as they arrive and each file's data goes to a sink piece by piece, so memory stays
 * bounded by the pushed chunks, whatever the file sizes.
 */

/** One archive member, from its header. */
export interface TarEntry {
  /** Path inside the archive, without a leading "./" or a trailing "/". */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  mode: number;
  mtime: Date;
  /** The symlink's target. */
  linkTarget: string;
}

/** Receives the members of an archive in order. */
export interface TarSink {
  entry(e: TarEntry): Promise<void>;
  /** A piece of the current file's data. */
  data(chunk: Buffer): Promise<void>;
  /** The current file is complete. */
  end(e: TarEntry): Promise<void>;
}

const BLOCK = 512;

/** Incremental tar parser. */
export class TarReader {
  readonly #sink: TarSink;
  #header: Buffer[] = [];
  #headerBytes = 0;
  #current: TarEntry | undefined;
  #remaining = 0;
  #padding = 0;
  #ended = false;

  constructor(sink: TarSink) {
    this.#sink = sink;
  }

  /** True once the end-of-archive block was read. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Feeds the next bytes of the archive. */
  async push(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      if (this.#ended) return;
      if (this.#remaining > 0 && this.#current !== undefined) {
        const n = Math.min(this.#remaining, chunk.length - at);
        await this.#sink.data(chunk.subarray(at, at + n));
        at += n;
        this.#remaining -= n;
        if (this.#remaining === 0) await this.#sink.end(this.#current);
        continue;
      }
      if (this.#padding > 0) {
        const n = Math.min(this.#padding, chunk.length - at);
        at += n;
        this.#padding -= n;
        continue;
      }
      const n = Math.min(BLOCK - this.#headerBytes, chunk.length - at);
      this.#header.push(chunk.subarray(at, at + n));
      this.#headerBytes += n;
      at += n;
      if (this.#headerBytes < BLOCK) continue;
      const block = Buffer.concat(this.#header);
      this.#header = [];
      this.#headerBytes = 0;
      await this.#startEntry(block);
    }
  }

  /** Throws unless the archive ended cleanly. */
  finish(): void {
    if (this.#remaining > 0 || this.#headerBytes > 0) throw new Error('tar archive ended in the middle of a member');
  }

  async #startEntry(block: Buffer): Promise<void> {
    if (block.every((b) => b === 0)) {
      this.#ended = true;
      return;
    }
    const e = parseHeader(block);
    this.#current = e;
    await this.#sink.entry(e);
    this.#remaining = e.type === 'file' ? e.size : 0;
    const dataSize = e.type === 'file' || e.type === 'other' ? e.size : 0;
    this.#padding = (BLOCK - (dataSize % BLOCK)) % BLOCK + (e.type === 'other' ? dataSize : 0);
    if (e.type === 'file' && e.size === 0) await this.#sink.end(e);
  }
}

/** Parses one ustar header block. */
export function parseHeader(block: Buffer): TarEntry {
  const stored = readOctal(block, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (block[i] ?? 0);
  if (sum !== stored) throw new Error('tar header checksum mismatch');
  const name = readString(block, 0, 100);
  const prefix = block.subarray(257, 263).toString('latin1').startsWith('ustar') ? readString(block, 345, 155) : '';
  // basebackup.c names some members "./pg_wal/archive_status": paths are kept relative and without "./".
  const path = (prefix === '' ? name : `${prefix}/${name}`).replace(/\/+$/, '').replace(/^(\.\/)+/, '');
  const flag = String.fromCharCode(block[156] ?? 0);
  const type: TarEntry['type'] = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'directory' : flag === '2' ? 'symlink' : 'other';
  return {
    path, type, size: readNumber(block, 124, 12), mode: readOctal(block, 100, 8) & 0o7777,
    mtime: new Date(readNumber(block, 136, 12) * 1000), linkTarget: readString(block, 157, 100),
  };
}

function readString(b: Buffer, at: number, len: number): string {
  const s = b.subarray(at, at + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function readOctal(b: Buffer, at: number, len: number): number {
  const s = readString(b, at, len).trim();
  return s === '' ? 0 : parseInt(s, 8);
}

function readNumber(b: Buffer, at: number, len: number): number {
  if (((b[at] ?? 0) & 0x80) !== 0) {
    let n = (b[at] ?? 0) & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + (b[at + i] ?? 0);
    return n;
  }
  return readOctal(b, at, len);
}
