/**
 * Client-side encryption of stored objects: AES-256-GCM over bounded chunks (docs/encryption.md
 * describes the format byte by byte).
 *
 *   header  = magic "CBENC\0" | version 2 (1: no name) | wrap scheme 1 | key id (16) | chunk size (u32 BE)
 *             | nonce prefix (4) | wrapped key length (u16 BE) | wrapped data key
 *   chunk i = AES-256-GCM(data key, nonce = prefix | i (u64 BE),
 *                         aad = SHA-256(header | len(name) u32 | name) | i (u64 BE) | final (u8))
 *           ciphertext | tag (16); version 1 objects hash the header alone
 *
 * Every object has its own random 32-byte data key, wrapped (scheme 1) by AES-256-GCM under a key
 * encryption key derived from the master key with HKDF, with the header's fixed fields as additional
 * data. Chunks hold `chunkSize` plaintext bytes each except the last, which holds 0..chunkSize and is
 * the only one sealed with final = 1. So a flipped bit anywhere, a dropped, repeated, reordered or
 * appended chunk, and a truncation at or between chunk boundaries all fail authentication.
 *
 * Nothing here reads the environment or files: keys come in as bytes (src/core/crypto/keys.ts).
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** The algorithm name recorded in metadata and accepted by client_encryption. */
export const ENCRYPTION_ALGORITHM = 'aes-256-gcm' as const;
/** "CBENC\0": the first six bytes of every encrypted object. */
export const MAGIC = Buffer.from('CBENC\0', 'latin1');
/** Version 1: the object's name is not authenticated. Version 2 binds it (see objectHash). */
export const FORMAT_VERSION_UNNAMED = 1;
export const FORMAT_VERSION = 2;
/** Key wrapping schemes: 1 = AES-256-GCM under a key derived from the master key. KMS schemes may follow. */
export const WRAP_MASTER_GCM = 1;
/** Plaintext bytes per chunk written by this version. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** The largest chunk size a reader accepts (it bounds the memory one decryption holds). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
export const KEY_BYTES = 32;
export const KEY_ID_BYTES = 16;
export const TAG_BYTES = 16;
const NONCE_PREFIX_BYTES = 4;
const WRAP_NONCE_BYTES = 12;
/** Header bytes before the wrapped key: magic, version, scheme, key id, chunk size, prefix, wrapped length. */
const FIXED_HEADER_BYTES = MAGIC.length + 1 + 1 + KEY_ID_BYTES + 4 + NONCE_PREFIX_BYTES + 2;
const WRAPPED_KEY_BYTES = WRAP_NONCE_BYTES + KEY_BYTES + TAG_BYTES;
/** The header length of scheme 1 objects. */
export const HEADER_BYTES = FIXED_HEADER_BYTES + WRAPPED_KEY_BYTES;

/** A master key: its bytes, its public id, and the key that wraps data keys. */
export interface MasterKey {
  /** Hex of the first 16 bytes of HMAC-SHA256(master, "cloudbarman key id v1"). Safe to show. */
  readonly id: string;
  readonly kek: Buffer;
}

/** Keys that can open objects, by id; the first (when any) is the one new objects are written with. */
export interface Keyring {
  readonly keys: readonly MasterKey[];
}

/** Derives a master key's id and key-encryption key from its 32 bytes. */
export function masterKey(bytes: Uint8Array): MasterKey {
  if (bytes.length !== KEY_BYTES) throw new Error(`an encryption key is ${KEY_BYTES} bytes, not ${bytes.length}`);
  const id = createHmac('sha256', bytes).update('cloudbarman key id v1').digest().subarray(0, KEY_ID_BYTES).toString('hex');
  const kek = Buffer.from(hkdfSync('sha256', bytes, Buffer.alloc(0), 'cloudbarman key wrap v1', KEY_BYTES));
  return { id, kek };
}

/** Why an object could not be opened. */
export type DecryptFailure =
  | 'unknown-key' // the object names a key id that the keyring does not hold (exit 3)
  | 'malformed' // not an encrypted object of a format this version knows, or a damaged header
  | 'unsupported' // a version or wrap scheme this version does not know (upgrade)
  | 'unwrap' // the wrapped data key does not authenticate under the key with that id
  | 'chunk' // a chunk does not authenticate: damaged, reordered, dropped, duplicated or appended
  | 'truncated'; // the object ends before its final chunk

export class DecryptError extends Error {
  override readonly name = 'DecryptError';
  readonly reason: DecryptFailure;
  /** The key id the object names, once the header was read. */
  readonly keyId: string | undefined;
  /** The chunk that failed, for 'chunk'. */
  readonly chunk: number | undefined;

  constructor(reason: DecryptFailure, message: string, details: { keyId?: string; chunk?: number } = {}) {
    super(message);
    this.reason = reason;
    this.keyId = details.keyId;
    this.chunk = details.chunk;
  }
}

/** Per-object randomness; injectable so that tests and retried puts can be deterministic. */
export interface ObjectSecrets {
  dataKey: Buffer;
  noncePrefix: Buffer;
  wrapNonce: Buffer;
}

/** Fresh random secrets for one object. */
export function newObjectSecrets(): ObjectSecrets {
  return { dataKey: randomBytes(KEY_BYTES), noncePrefix: randomBytes(NONCE_PREFIX_BYTES), wrapNonce: randomBytes(WRAP_NONCE_BYTES) };
}

export interface EncryptOptions {
  chunkSize?: number;
  /**
   * The name the object is stored under: bound into every chunk (format version 2), so that an
   * object moved to another name no longer opens. Without it, version 1 is written.
   */
  name?: string;
  secrets?: ObjectSecrets;
  /** encryptBuffer: write here (when large enough) instead of into new memory; the result is a view of it. */
  into?: Uint8Array;
}

/** The stored size of `plainSize` bytes encrypted with a header of headerBytes and chunks of chunkSize. */
export function encryptedSize(plainSize: number, chunkSize: number = DEFAULT_CHUNK_SIZE, headerBytes: number = HEADER_BYTES): number {
  const chunks = Math.max(1, Math.ceil(plainSize / chunkSize));
  return headerBytes + plainSize + chunks * TAG_BYTES;
}

/** The plaintext size of a stored object of storedSize bytes; undefined when no plaintext has that size. */
export function plainSize(storedSize: number, chunkSize: number, headerBytes: number = HEADER_BYTES): number | undefined {
  const body = storedSize - headerBytes;
  if (body < TAG_BYTES || chunkSize < 1) return undefined;
  const chunks = Math.ceil(body / (chunkSize + TAG_BYTES));
  const plain = body - chunks * TAG_BYTES;
  return plain >= 0 && encryptedSize(plain, chunkSize, headerBytes) === storedSize ? plain : undefined;
}

/** Everything one object's chunks are sealed or opened with. */
interface ObjectState {
  header: Buffer;
  headerHash: Buffer;
  dataKey: Buffer;
  noncePrefix: Buffer;
  chunkSize: number;
  keyId: string;
}

/**
 * What every chunk's additional data starts with: SHA-256 of the header (version 1), or of the
 * header followed by the object name's length (u32) and its UTF-8 bytes (version 2). The version
 * byte is in the wrap's additional data, so a version-2 object cannot be passed off as version 1.
 */
function objectHash(header: Buffer, version: number, name: string | undefined): Buffer {
  if (version === FORMAT_VERSION_UNNAMED) return sha256(header);
  if (name === undefined) throw new DecryptError('malformed', 'it binds its object name (format 2), and no name was given to check it against');
  const nameBytes = Buffer.from(name, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(nameBytes.length);
  return createHash('sha256').update(header).update(length).update(nameBytes).digest();
}

/** Builds the header of a new object (scheme 1) and the state its chunks are sealed with. */
function sealHeader(key: MasterKey, chunkSize: number, secrets: ObjectSecrets, name: string | undefined): ObjectState {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) throw new Error(`chunk size ${chunkSize} is out of range`);
  const version = name === undefined ? FORMAT_VERSION_UNNAMED : FORMAT_VERSION;
  const fixed = Buffer.alloc(FIXED_HEADER_BYTES);
  let at = MAGIC.copy(fixed, 0);
  at = fixed.writeUInt8(version, at);
  at = fixed.writeUInt8(WRAP_MASTER_GCM, at);
  at += Buffer.from(key.id, 'hex').copy(fixed, at);
  at = fixed.writeUInt32BE(chunkSize, at);
  at += secrets.noncePrefix.copy(fixed, at);
  fixed.writeUInt16BE(WRAPPED_KEY_BYTES, at);
  const wrap = createCipheriv('aes-256-gcm', key.kek, secrets.wrapNonce);
  wrap.setAAD(fixed);
  const wrapped = Buffer.concat([secrets.wrapNonce, wrap.update(secrets.dataKey), wrap.final(), wrap.getAuthTag()]);
  const header = Buffer.concat([fixed, wrapped]);
  return { header, headerHash: objectHash(header, version, name), dataKey: secrets.dataKey, noncePrefix: secrets.noncePrefix, chunkSize, keyId: key.id };
}

/** The key id an object's header names, without any key; undefined when the bytes are not a header. */
export function headerKeyId(header: Uint8Array): string | undefined {
  if (header.length < FIXED_HEADER_BYTES || !Buffer.from(header.subarray(0, MAGIC.length)).equals(MAGIC)) return undefined;
  return Buffer.from(header.subarray(MAGIC.length + 2, MAGIC.length + 2 + KEY_ID_BYTES)).toString('hex');
}

/**
 * How many bytes the header starting at `data` has, once enough of it is there; undefined while
 * more is needed. Throws DecryptError for what is not a header this version reads.
 */
function headerLength(data: Buffer): number | undefined {
  const magicPart = data.subarray(0, Math.min(data.length, MAGIC.length));
  if (!magicPart.equals(MAGIC.subarray(0, magicPart.length))) throw new DecryptError('malformed', 'it does not start with the encryption header (CBENC)');
  if (data.length < FIXED_HEADER_BYTES) return undefined;
  const version = data.readUInt8(MAGIC.length);
  if (version !== FORMAT_VERSION && version !== FORMAT_VERSION_UNNAMED) throw new DecryptError('unsupported', `it has encryption format version ${version}, which this version does not know`);
  const scheme = data.readUInt8(MAGIC.length + 1);
  if (scheme !== WRAP_MASTER_GCM) throw new DecryptError('unsupported', `its data key is wrapped with scheme ${scheme}, which this version does not know`, { keyId: headerKeyId(data) ?? '' });
  const wrappedLength = data.readUInt16BE(FIXED_HEADER_BYTES - 2);
  if (wrappedLength !== WRAPPED_KEY_BYTES) throw new DecryptError('malformed', `its wrapped key is ${wrappedLength} bytes, scheme 1 has ${WRAPPED_KEY_BYTES}`);
  return FIXED_HEADER_BYTES + wrappedLength;
}

/** Opens a complete header with the keyring; name is what the object is stored under (for version 2). */
function openHeader(header: Buffer, keyring: Keyring, name: string | undefined): ObjectState {
  const keyId = headerKeyId(header) ?? '';
  const chunkSize = header.readUInt32BE(MAGIC.length + 2 + KEY_ID_BYTES);
  if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) throw new DecryptError('malformed', `its chunk size ${chunkSize} is out of range`, { keyId });
  const key = keyring.keys.find((k) => k.id === keyId);
  if (key === undefined) throw new DecryptError('unknown-key', `it is encrypted with key ${keyId}, which is not configured`, { keyId });
  const fixed = header.subarray(0, FIXED_HEADER_BYTES);
  const wrapped = header.subarray(FIXED_HEADER_BYTES);
  const noncePrefix = Buffer.from(header.subarray(FIXED_HEADER_BYTES - 2 - NONCE_PREFIX_BYTES, FIXED_HEADER_BYTES - 2));
  let dataKey: Buffer;
  try {
    const unwrap = createDecipheriv('aes-256-gcm', key.kek, wrapped.subarray(0, WRAP_NONCE_BYTES));
    unwrap.setAAD(fixed);
    unwrap.setAuthTag(wrapped.subarray(WRAP_NONCE_BYTES + KEY_BYTES));
    dataKey = Buffer.concat([unwrap.update(wrapped.subarray(WRAP_NONCE_BYTES, WRAP_NONCE_BYTES + KEY_BYTES)), unwrap.final()]);
  } catch {
    throw new DecryptError('unwrap', `its header does not authenticate under key ${keyId} (the header is damaged)`, { keyId });
  }
  return { header, headerHash: objectHash(header, header.readUInt8(MAGIC.length), name), dataKey, noncePrefix, chunkSize, keyId };
}

function nonceFor(state: ObjectState, index: number): Buffer {
  const nonce = Buffer.alloc(NONCE_PREFIX_BYTES + 8);
  state.noncePrefix.copy(nonce, 0);
  nonce.writeBigUInt64BE(BigInt(index), NONCE_PREFIX_BYTES);
  return nonce;
}

function aadFor(state: ObjectState, index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(32 + 8 + 1);
  state.headerHash.copy(aad, 0);
  aad.writeBigUInt64BE(BigInt(index), 32);
  aad.writeUInt8(final ? 1 : 0, 40);
  return aad;
}

function sealChunk(state: ObjectState, index: number, final: boolean, plain: Uint8Array): Buffer[] {
  const cipher = createCipheriv('aes-256-gcm', state.dataKey, nonceFor(state, index));
  cipher.setAAD(aadFor(state, index, final));
  const body = cipher.update(plain);
  const last = cipher.final();
  return last.length === 0 ? [body, cipher.getAuthTag()] : [body, last, cipher.getAuthTag()];
}

function openChunk(state: ObjectState, index: number, final: boolean, sealed: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', state.dataKey, nonceFor(state, index));
  decipher.setAAD(aadFor(state, index, final));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new DecryptError('chunk', final
      ? `chunk ${index} does not authenticate as the final chunk (damaged, or the object was truncated or extended)`
      : `chunk ${index} does not authenticate (damaged, reordered, dropped or duplicated)`, { keyId: state.keyId, chunk: index });
  }
}

/** Encrypts a whole buffer (objects held in memory: parts, WAL segments, manifests). */
export function encryptBuffer(plain: Uint8Array, key: MasterKey, options: EncryptOptions = {}): Buffer {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const state = sealHeader(key, chunkSize, options.secrets ?? newObjectSecrets(), options.name);
  const size = encryptedSize(plain.length, chunkSize, state.header.length);
  const into = options.into;
  const out = into !== undefined && into.length >= size ? Buffer.from(into.buffer, into.byteOffset, size) : Buffer.allocUnsafe(size);
  let at = state.header.copy(out, 0);
  const chunks = Math.max(1, Math.ceil(plain.length / chunkSize));
  for (let i = 0; i < chunks; i++) {
    const piece = plain.subarray(i * chunkSize, Math.min(plain.length, (i + 1) * chunkSize));
    for (const part of sealChunk(state, i, i === chunks - 1, piece)) at += part.copy(out, at);
  }
  if (at !== out.length) throw new Error(`internal: encrypted ${at} bytes, expected ${out.length}`);
  return out;
}

/** Decrypts and authenticates a whole buffer stored under name (needed for format 2). Throws DecryptError. */
export function decryptBuffer(stored: Uint8Array, keyring: Keyring, name?: string): Buffer {
  const data = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  const length = headerLength(data);
  if (length === undefined || data.length < length) throw new DecryptError('truncated', 'it ends inside its encryption header');
  const state = openHeader(data.subarray(0, length), keyring, name);
  const sealedSize = state.chunkSize + TAG_BYTES;
  const pieces: Buffer[] = [];
  let at = length;
  let index = 0;
  do {
    const end = Math.min(data.length, at + sealedSize);
    if (end - at < TAG_BYTES) throw new DecryptError('truncated', `it ends before its final chunk (after chunk ${index - 1})`, { keyId: state.keyId });
    pieces.push(openChunk(state, index, end === data.length, data.subarray(at, end)));
    at = end;
    index++;
  } while (at < data.length);
  return Buffer.concat(pieces);
}

/**
 * Encrypts a stream. Memory: one chunk. The chunk that is full is held until more input (then it is
 * not the final one) or the end (then it is) arrives.
 */
export class EncryptStream extends Transform {
  readonly #state: ObjectState;
  readonly #pending: Buffer;
  #filled = 0;
  #index = 0;
  #started = false;

  constructor(key: MasterKey, options: EncryptOptions = {}) {
    super();
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.#state = sealHeader(key, chunkSize, options.secrets ?? newObjectSecrets(), options.name);
    this.#pending = Buffer.allocUnsafe(chunkSize);
  }

  override _transform(data: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#start();
    let offset = 0;
    while (offset < data.length) {
      if (this.#filled === this.#pending.length) this.#seal(false);
      const take = Math.min(this.#pending.length - this.#filled, data.length - offset);
      data.copy(this.#pending, this.#filled, offset, offset + take);
      this.#filled += take;
      offset += take;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    this.#start();
    this.#seal(true);
    done();
  }

  #start(): void {
    if (this.#started) return;
    this.#started = true;
    this.push(this.#state.header);
  }

  #seal(final: boolean): void {
    for (const part of sealChunk(this.#state, this.#index, final, this.#pending.subarray(0, this.#filled))) this.push(part);
    this.#index++;
    this.#filled = 0;
  }
}

/**
 * Decrypts and authenticates a stream. Plaintext is only passed on once its chunk authenticated;
 * memory is about two chunks. Errors are DecryptError.
 */
export class DecryptStream extends Transform {
  readonly #keyring: Keyring;
  #state: ObjectState | undefined;
  #buffered: Buffer[] = [];
  #bufferedBytes = 0;
  #index = 0;
  /** Checked against the header once it is read (what the object's metadata promised). */
  readonly #expect: { keyId?: string; chunkSize?: number; name?: string } | undefined;

  readonly #mapError: (err: DecryptError) => Error;

  /**
   * expect: what the object's metadata says, and the name it is stored under (checked by format 2);
   * mapError turns a DecryptError into the error the stream fails with.
   */
  constructor(keyring: Keyring, expect?: { keyId?: string; chunkSize?: number; name?: string }, mapError: (err: DecryptError) => Error = (err) => err) {
    super();
    this.#keyring = keyring;
    this.#expect = expect;
    this.#mapError = mapError;
  }

  /** The key id named by the header, once read. */
  get keyId(): string | undefined {
    return this.#state?.keyId;
  }

  override _transform(data: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      this.#buffered.push(data);
      this.#bufferedBytes += data.length;
      this.#drain(false);
      done();
    } catch (err) {
      done(err instanceof DecryptError ? this.#mapError(err) : (err as Error));
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      this.#drain(true);
      done();
    } catch (err) {
      done(err instanceof DecryptError ? this.#mapError(err) : (err as Error));
    }
  }

  #drain(ended: boolean): void {
    if (this.#state === undefined) {
      const head = this.#take(this.#bufferedBytes, false);
      const length = headerLength(head);
      if (length === undefined || head.length < length) {
        if (ended) throw new DecryptError('truncated', 'it ends inside its encryption header');
        return;
      }
      this.#state = openHeader(Buffer.from(head.subarray(0, length)), this.#keyring, this.#expect?.name);
      this.#checkExpected(this.#state);
      this.#take(length, true);
    }
    const sealedSize = this.#state.chunkSize + TAG_BYTES;
    // A full sealed chunk is opened only when more bytes follow it (then it is not the final one).
    while (this.#bufferedBytes > sealedSize) {
      this.push(openChunk(this.#state, this.#index++, false, this.#take(sealedSize, true)));
    }
    if (!ended) return;
    if (this.#bufferedBytes < TAG_BYTES) {
      throw new DecryptError('truncated', this.#index === 0 ? 'it ends before its first chunk' : `it ends before its final chunk (after chunk ${this.#index - 1})`, { keyId: this.#state.keyId });
    }
    this.push(openChunk(this.#state, this.#index++, true, this.#take(this.#bufferedBytes, true)));
  }

  #checkExpected(state: ObjectState): void {
    if (this.#expect?.keyId !== undefined && this.#expect.keyId !== state.keyId) {
      throw new DecryptError('malformed', `its header names key ${state.keyId}, its metadata ${this.#expect.keyId}`, { keyId: state.keyId });
    }
    if (this.#expect?.chunkSize !== undefined && this.#expect.chunkSize !== state.chunkSize) {
      throw new DecryptError('malformed', `its header says chunks of ${state.chunkSize} bytes, its metadata ${this.#expect.chunkSize}`, { keyId: state.keyId });
    }
  }

  /** The first n buffered bytes as one buffer; consume removes them. */
  #take(n: number, consume: boolean): Buffer {
    const all = this.#buffered.length === 1 ? this.#buffered[0] ?? Buffer.alloc(0) : Buffer.concat(this.#buffered);
    this.#buffered = [all];
    if (!consume) return all.subarray(0, n);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#buffered = rest.length === 0 ? [] : [rest];
    this.#bufferedBytes = rest.length;
    return out;
  }
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}
