/**
 * LZ4 in TypeScript: the block format, inside the frame format that the `lz4` command-line tool
 * reads and writes. It replaces the lz4-napi binding, whose 2.10 release never frees the native
 * buffers it returns (every call leaks its output: a backup or restore would grow by the size of
 * the data it compresses). V8 runs this at native-binding speed for the fast, greedy LZ4 level.
 *
 */

const MAGIC = 0x184d2204;
/** Blocks of at most 4 MiB (BD byte 0x70): the largest the frame format offers, for the best ratio. */
export const LZ4_BLOCK_SIZE = 4 * 1024 * 1024;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** The most bytes a block of n input bytes can compress to (LZ4_compressBound). */
export function lz4BlockBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

/** The most bytes a frame of n input bytes can take. */
export function lz4FrameBound(n: number): number {
  const blocks = Math.max(1, Math.ceil(n / LZ4_BLOCK_SIZE));
  return 7 + blocks * 4 + n + 4;
}

const MIN_MATCH = 4;
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const SKIP_TRIGGER = 6;
const MAX_OFFSET = 65535;
// The match loop runs in slices of this many input bytes, so that V8 optimises it as an ordinary
// hot function, exits included. One long call per 4 MiB block left it in on-stack-replacement
// code that deoptimised at every exit, at a third of the speed.
const SLICE = 64 * 1024;

/** Where a block's compression stands between slices. */
interface Cursor {
  /** Next input position to search from. */
  ip: number;
  /** Start of the literals not yet written. */
  anchor: number;
  /** Next output position. */
  out: number;
}

/**
 * Compresses src[start, end) into dst at dstPos as one LZ4 block (the fast greedy matcher of
 * LZ4_compress_fast, acceleration 1). `table` is scratch: an Int32Array of LZ4_TABLE_SIZE entries.
 * Returns the block's compressed length, or -1 when it would not be smaller than the input.
 */
export function lz4CompressBlock(src: Uint8Array, start: number, end: number, dst: Uint8Array, dstPos: number, table: Int32Array): number {
  // Compressing must pay off: give up once the output would reach the input's size.
  const dstLimit = dstPos + (end - start);
  const cursor: Cursor = { ip: start + 1, anchor: start, out: dstPos };
  if (end - start >= MF_LIMIT + 1) {
    const sv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    table.fill(-1);
    table[hashOf(read32(sv, start))] = start;
    const searchLimit = end - MF_LIMIT;
    while (cursor.ip < searchLimit) {
      if (!compressSlice(src, sv, start, searchLimit, end - LAST_LITERALS, Math.min(searchLimit, cursor.ip + SLICE), dst, dstLimit, table, cursor)) return -1;
    }
  }
  // The rest is literals.
  const literals = end - cursor.anchor;
  if (cursor.out + literals + (literals >>> 8) + 1 > dstLimit) return -1;
  let pos = cursor.out + 1;
  if (literals >= 15) {
    dst[cursor.out] = 0xf0;
    pos = writeLength(dst, pos, literals - 15);
  } else {
    dst[cursor.out] = literals << 4;
  }
  dst.set(src.subarray(cursor.anchor, end), pos);
  return pos + literals - dstPos;
}

/** Finds and writes sequences from cursor.ip until stopAt; false when the output would overflow dstLimit. */
function compressSlice(src: Uint8Array, sv: DataView, start: number, searchLimit: number, matchLimit: number, stopAt: number,
  dst: Uint8Array, dstLimit: number, table: Int32Array, cursor: Cursor): boolean {
  let ip = cursor.ip;
  let anchor = cursor.anchor;
  let out = cursor.out;
  while (ip < stopAt) {
    // Find a match, stepping faster through incompressible data.
    let step = 1;
    let searchCount = 1 << SKIP_TRIGGER;
    let ref = -1;
    for (;;) {
      const seq = read32(sv, ip);
      const h = hashOf(seq);
      ref = table[h] ?? -1;
      table[h] = ip;
      if (ref >= 0 && ip - ref <= MAX_OFFSET && read32(sv, ref) === seq) break;
      ip += step;
      step = searchCount >> SKIP_TRIGGER;
      searchCount += 1;
      if (ip >= searchLimit) {
        ref = -1;
        break;
      }
    }
    if (ref < 0) {
      ip = searchLimit;
      break;
    }
    // Extend backwards over equal bytes.
    while (ip > anchor && ref > start && src[ip - 1] === src[ref - 1]) {
      ip -= 1;
      ref -= 1;
    }
    // Extend forwards, four bytes at a time first.
    let matchEnd = ip + MIN_MATCH;
    let refEnd = ref + MIN_MATCH;
    while (matchEnd + 4 <= matchLimit && read32(sv, matchEnd) === read32(sv, refEnd)) {
      matchEnd += 4;
      refEnd += 4;
    }
    while (matchEnd < matchLimit && src[matchEnd] === src[refEnd]) {
      matchEnd += 1;
      refEnd += 1;
    }
    const literals = ip - anchor;
    const matchLength = matchEnd - ip - MIN_MATCH;
    if (out + literals + (literals >>> 8) + (matchLength >>> 8) + 5 > dstLimit) return false;
    out = writeSequence(src, anchor, literals, ip - ref, matchLength, dst, out);
    ip = matchEnd;
    anchor = ip;
    // Seed the table inside the match, as LZ4 does, so that the next search sees recent data.
    if (ip < searchLimit) table[hashOf(read32(sv, ip - 2))] = ip - 2;
  }
  cursor.ip = ip;
  cursor.anchor = anchor;
  cursor.out = out;
  return true;
}

/** Writes one sequence (token, literals, offset, match length) at dstPos; returns the new position. */
function writeSequence(src: Uint8Array, anchor: number, literals: number, offset: number, matchLength: number, dst: Uint8Array, dstPos: number): number {
  let pos = dstPos + 1;
  let token: number;
  if (literals >= 15) {
    token = 0xf0;
    pos = writeLength(dst, pos, literals - 15);
  } else {
    token = literals << 4;
  }
  // Short runs byte by byte: a subarray per sequence would cost more than the copy.
  if (literals < 32) {
    for (let i = 0; i < literals; i++) dst[pos + i] = src[anchor + i] ?? 0;
  } else {
    dst.set(src.subarray(anchor, anchor + literals), pos);
  }
  pos += literals;
  dst[pos] = offset & 0xff;
  dst[pos + 1] = offset >>> 8;
  pos += 2;
  if (matchLength >= 15) {
    token |= 15;
    pos = writeLength(dst, pos, matchLength - 15);
  } else {
    token |= matchLength;
  }
  dst[dstPos] = token;
  return pos;
}

/** LZ4's length continuation bytes: 255s, then the remainder. */
function writeLength(dst: Uint8Array, pos: number, rest: number): number {
  let p = pos;
  let r = rest;
  while (r >= 255) {
    dst[p] = 255;
    p += 1;
    r -= 255;
  }
  dst[p] = r;
  return p + 1;
}

/** Four bytes at p, little-endian (as a signed 32-bit integer: only compared and hashed). */
function read32(src: DataView, p: number): number {
  return src.getInt32(p, true);
}

/** LZ4's multiplicative hash of four bytes, to 12 bits: LZ4's default 16 KiB table, which stays in L1 cache. */
function hashOf(v: number): number {
  return Math.imul(v, 2654435761) >>> 20;
}

/** Entries of the match table lz4CompressBlock needs. */
export const LZ4_TABLE_SIZE = 4096;

/**
 * Encodes src as one LZ4 frame (independent 4 MiB blocks, no checksums: parts carry SHA-256s),
 * into `into` when given (at least lz4FrameBound(src.length) bytes), so that a caller can reuse
 * one output buffer; returns the frame, a view of that buffer or of a new one.
 */
export function lz4EncodeFrame(src: Uint8Array, into?: Uint8Array): Uint8Array {
  const bound = lz4FrameBound(src.length);
  if (into !== undefined && into.length < bound) throw new RangeError(`an LZ4 frame of ${src.length} bytes needs ${bound} bytes of output, not ${into.length}`);
  const out = into ?? new Uint8Array(bound);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, MAGIC, true);
  out[4] = 0x60; // version 01, independent blocks, no block or content checksum, no content size
  out[5] = 0x70; // 4 MiB blocks
  out[6] = (xxh32(out.subarray(4, 6), 0) >>> 8) & 0xff;
  let pos = 7;
  const table = new Int32Array(LZ4_TABLE_SIZE);
  for (let at = 0; at < src.length; at += LZ4_BLOCK_SIZE) {
    const end = Math.min(src.length, at + LZ4_BLOCK_SIZE);
    const size = lz4CompressBlock(src, at, end, out, pos + 4, table);
    if (size < 0) {
      view.setUint32(pos, (end - at) | 0x80000000, true); // stored uncompressed
      out.set(src.subarray(at, end), pos + 4);
      pos += 4 + end - at;
    } else {
      view.setUint32(pos, size, true);
      pos += 4 + size;
    }
  }
  view.setUint32(pos, 0, true); // end mark
  pos += 4;
  return out.subarray(0, pos);
}

/** A frame that cannot be decoded: wrong magic, bad header checksum, truncated or overlong data. */
export class Lz4FormatError extends Error {
  override readonly name = 'Lz4FormatError';
  /** Same code shape as zlib's errors, so callers classify both codecs alike. */
  readonly code = 'Z_DATA_ERROR';
}

/**
 * Decodes one or more concatenated LZ4 frames (skippable frames skipped), as written by this
 * module, the lz4 tool or lz4-napi: any block size, linked or independent blocks, optional
 * content size and checksums (verified). `sizeHint` presizes the output when the size is known.
 */
export function lz4DecodeFrames(data: Uint8Array, sizeHint = 0): Uint8Array {
  const out: Output = { bytes: new Uint8Array(Math.max(sizeHint, 64)), length: 0 };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const need = (pos: number, n: number): void => {
    if (pos + n > data.length) throw new Lz4FormatError('truncated LZ4 data');
  };
  let pos = 0;
  while (pos < data.length) {
    need(pos, 4);
    const magic = view.getUint32(pos, true);
    if ((magic & SKIPPABLE_MASK) === (SKIPPABLE_MAGIC & SKIPPABLE_MASK)) {
      need(pos, 8);
      pos += 8 + view.getUint32(pos + 4, true);
      continue;
    }
    if (magic !== MAGIC) throw new Lz4FormatError(`not an LZ4 frame (magic 0x${magic.toString(16)})`);
    need(pos, 7);
    const flg = data[pos + 4] ?? 0;
    if (flg >> 6 !== 1) throw new Lz4FormatError('unsupported LZ4 frame version');
    const blockChecksum = (flg & 0x10) !== 0;
    const hasContentSize = (flg & 0x08) !== 0;
    const contentChecksum = (flg & 0x04) !== 0;
    if ((flg & 0x01) !== 0) throw new Lz4FormatError('LZ4 frames with a dictionary are not supported');
    const headerLength = 2 + (hasContentSize ? 8 : 0);
    need(pos + 4, headerLength + 1);
    const headerChecksum = (xxh32(data.subarray(pos + 4, pos + 4 + headerLength), 0) >>> 8) & 0xff;
    if (headerChecksum !== data[pos + 4 + headerLength]) throw new Lz4FormatError('LZ4 frame header checksum mismatch');
    if (hasContentSize) reserve(out, Number(view.getBigUint64(pos + 6, true)));
    pos += 4 + headerLength + 1;
    const frameStart = out.length;
    for (;;) {
      need(pos, 4);
      const word = view.getUint32(pos, true);
      pos += 4;
      if (word === 0) break;
      const size = word & 0x7fffffff;
      need(pos, size + (blockChecksum ? 4 : 0));
      if ((word & 0x80000000) !== 0) {
        reserve(out, size);
        out.bytes.set(data.subarray(pos, pos + size), out.length);
        out.length += size;
      } else {
        decodeBlock(data, pos, pos + size, out, frameStart);
      }
      pos += size + (blockChecksum ? 4 : 0);
    }
    if (contentChecksum) {
      need(pos, 4);
      if (xxh32(out.bytes.subarray(frameStart, out.length), 0) !== view.getUint32(pos, true)) throw new Lz4FormatError('LZ4 content checksum mismatch');
      pos += 4;
    }
  }
  return out.bytes.subarray(0, out.length);
}

/** The growing output of a decode. */
interface Output {
  bytes: Uint8Array;
  length: number;
}

/** Makes room for n more bytes. */
function reserve(out: Output, n: number): void {
  if (out.length + n <= out.bytes.length) return;
  const bigger = new Uint8Array(Math.max(out.bytes.length * 2, out.length + n));
  bigger.set(out.bytes.subarray(0, out.length));
  out.bytes = bigger;
}

/** Decodes one block of data[pos, end) onto the output; matches may reach back to frameStart (linked blocks). */
function decodeBlock(data: Uint8Array, pos: number, end: number, out: Output, frameStart: number): void {
  while (pos < end) {
    const token = data[pos++] ?? 0;
    let literals = token >>> 4;
    if (literals === 15) {
      let b = 255;
      while (b === 255) {
        if (pos >= end) throw new Lz4FormatError('truncated LZ4 block');
        b = data[pos++] ?? 0;
        literals += b;
      }
    }
    if (pos + literals > end) throw new Lz4FormatError('LZ4 literals run past the block');
    reserve(out, literals);
    if (literals < 32) {
      const bytes = out.bytes;
      let at = out.length;
      for (let i = 0; i < literals; i++) bytes[at++] = data[pos + i] ?? 0;
    } else {
      out.bytes.set(data.subarray(pos, pos + literals), out.length);
    }
    out.length += literals;
    pos += literals;
    if (pos >= end) break; // the last sequence has literals only
    if (pos + 2 > end) throw new Lz4FormatError('truncated LZ4 match offset');
    const offset = (data[pos] ?? 0) | ((data[pos + 1] ?? 0) << 8);
    pos += 2;
    if (offset === 0 || out.length - offset < frameStart) throw new Lz4FormatError('LZ4 match offset out of range');
    let matchLength = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b = 255;
      while (b === 255) {
        if (pos >= end) throw new Lz4FormatError('truncated LZ4 block');
        b = data[pos++] ?? 0;
        matchLength += b;
      }
    }
    reserve(out, matchLength);
    const bytes = out.bytes;
    let at = out.length;
    let from = at - offset;
    if (offset >= matchLength && matchLength >= 32) {
      bytes.copyWithin(at, from, from + matchLength);
      at += matchLength;
    } else {
      // Short or overlapping (the match repeats the last `offset` bytes): byte by byte.
      for (let i = 0; i < matchLength; i++) bytes[at++] = bytes[from++] ?? 0;
    }
    out.length = at;
  }
}

const P1 = 2654435761;
const P2 = 2246822519;
const P3 = 3266489917;
const P4 = 668265263;
const P5 = 374761393;

/** xxHash32, which the LZ4 frame format uses for its header (and optional content) checksums. */
export function xxh32(data: Uint8Array, seed: number): number {
  const len = data.length;
  let i = 0;
  let h: number;
  const rd = (p: number): number => ((data[p] ?? 0) | ((data[p + 1] ?? 0) << 8) | ((data[p + 2] ?? 0) << 16) | ((data[p + 3] ?? 0) << 24)) >>> 0;
  const rotl = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;
  const round = (acc: number, lane: number): number => Math.imul(rotl((acc + Math.imul(lane, P2)) >>> 0, 13), P1) >>> 0;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) >>> 0;
    let v2 = (seed + P2) >>> 0;
    let v3 = seed >>> 0;
    let v4 = (seed - P1) >>> 0;
    for (; i + 16 <= len; i += 16) {
      v1 = round(v1, rd(i));
      v2 = round(v2, rd(i + 4));
      v3 = round(v3, rd(i + 8));
      v4 = round(v4, rd(i + 12));
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) >>> 0;
  } else {
    h = (seed + P5) >>> 0;
  }
  h = (h + len) >>> 0;
  for (; i + 4 <= len; i += 4) h = Math.imul(rotl((h + Math.imul(rd(i), P3)) >>> 0, 17), P4) >>> 0;
  for (; i < len; i++) h = Math.imul(rotl((h + Math.imul((data[i] ?? 0), P5)) >>> 0, 11), P1) >>> 0;
  h = Math.imul(h ^ (h >>> 15), P2) >>> 0;
  h = Math.imul(h ^ (h >>> 13), P3) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// One small block through every path before any real data: V8 then optimises the match loop
// with feedback for its exits too, instead of deoptimising at the end of each slice.
warmUp();
function warmUp(): void {
  const sample = new Uint8Array(4096);
  for (let i = 0; i < sample.length; i++) sample[i] = i % 251 < 40 ? (i * 7) & 0xff : i % 13;
  lz4CompressBlock(sample, 0, sample.length, new Uint8Array(lz4BlockBound(sample.length)), 0, new Int32Array(LZ4_TABLE_SIZE));
}
