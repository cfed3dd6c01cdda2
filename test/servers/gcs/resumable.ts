// Resumable upload sessions: the state machine behind the session URI that `uploadType=resumable`
// hands out. Reference: https://cloud.google.com/storage/docs/performing-resumable-uploads and
// https://cloud.google.com/storage/docs/resumable-uploads.
import { randomBytes } from 'node:crypto';
import { GcsError, invalid } from './errors.ts';
import type { NewObject, Preconditions, StoredObject } from './store.ts';

/** Every chunk but the last must be a multiple of this (256 KiB). */
export const CHUNK_GRANULARITY = 256 * 1024;

/** An open, finished, failed or cancelled resumable upload. */
export interface UploadSession {
  id: string;
  bucket: string;
  /** The object's metadata from the initiating request; bytes are filled in at finalize. */
  object: Omit<NewObject, 'bytes'>;
  preconditions: Preconditions;
  /** Total size, once the client has declared it (X-Upload-Content-Length or a `/N` range). */
  total: number | undefined;
  chunks: Buffer[];
  persisted: number;
  state:
    | { kind: 'open' }
    | { kind: 'done'; object: StoredObject }
    | { kind: 'failed'; error: GcsError }
    | { kind: 'cancelled' };
}

/** What a PUT to the session URI carries, already read off the request. */
export interface ChunkRequest {
  contentRange: string | undefined;
  body: Buffer;
}

/** The reply to a chunk: still incomplete (308), or a final body to turn into an object. */
export type ChunkOutcome = { kind: 'incomplete'; persisted: number } | { kind: 'final'; bytes: Buffer } | { kind: 'done'; object: StoredObject };

/** A parsed Content-Range of the forms the protocol uses. `first`/`last` are absent for a status
 *  query (`bytes *\/...`); `last` is "open" for the Node client's single-request form `bytes N-*\/...`. */
interface ContentRange {
  first: number | undefined;
  last: number | 'open' | undefined;
  total: number | undefined;
}

/** The live sessions of one server, by upload id. */
export class UploadSessions {
  readonly #sessions = new Map<string, UploadSession>();

  /** Opens a session; the id is unguessable, like the service's, since the URI is the credential. */
  create(bucket: string, object: Omit<NewObject, 'bytes'>, preconditions: Preconditions, total: number | undefined): UploadSession {
    const id = `ACJd0N${randomBytes(24).toString('base64url')}`;
    const session: UploadSession = { id, bucket, object, preconditions, total, chunks: [], persisted: 0, state: { kind: 'open' } };
    this.#sessions.set(id, session);
    return session;
  }

  /** The session for an upload id, or undefined. */
  get(id: string): UploadSession | undefined {
    return this.#sessions.get(id);
  }

  /** Frees every session; the server calls it on stop. */
  clear(): void {
    this.#sessions.clear();
  }
}

/** Applies one PUT to an open session. Returns what to answer, or throws the service's error.
 *  The caller finalizes a `final` outcome (preconditions, hashes) and records the result. */
export function applyChunk(session: UploadSession, request: ChunkRequest): ChunkOutcome {
  if (session.state.kind === 'done') return { kind: 'done', object: session.state.object };
  if (session.state.kind === 'failed') throw session.state.error;
  if (session.state.kind === 'cancelled') {
    throw new GcsError(410, 'gone', 'The upload session was cancelled; start a new one.');
  }
  const range = parseContentRange(request.contentRange, request.body.length);
  const persisted = session.persisted;

  if (range.total !== undefined) {
    if (session.total !== undefined && session.total !== range.total) {
      throw invalid(`Content-Range total ${range.total} does not match the upload's declared size ${session.total}.`);
    }
    if (range.total < persisted) {
      throw invalid(`Content-Range total ${range.total} is less than the ${persisted} bytes already uploaded.`);
    }
  }

  // Status query: no data, only "how far are you?" or "the object is N bytes and you have them all".
  if (range.first === undefined) {
    if (request.body.length !== 0) throw invalid('A Content-Range of bytes */N must come with an empty body.');
    if (range.total !== undefined) session.total = range.total;
    if (session.total !== undefined && session.total === persisted) return finalBytes(session);
    return { kind: 'incomplete', persisted };
  }

  const first = range.first;
  const last = range.last === 'open' ? first + request.body.length - 1 : (range.last ?? first - 1);
  const total = range.last === 'open' ? (range.total ?? last + 1) : (range.total ?? session.total);
  if (range.last === 'open' && total !== last + 1) {
    // The single-request form promises the rest of the object; a body that stops short of the
    // declared total would leave a hole the client never said it would fill.
    throw invalid(`Content-Range bytes ${first}-*/${total} but the request carried ${request.body.length} bytes.`);
  }
  if (total !== undefined && last + 1 > total) {
    throw invalid(`Content-Range ends at byte ${last}, beyond the object's total size ${total}.`);
  }
  if (first > persisted) {
    // The chunk would leave a gap. Google's own clients document the service's answer: a 503 with
    // this plain-text message (googleapis/java-storage ITJsonResumableSessionQueryTaskTest, "error
    // message from GCS circa 2023-02"; googleapis/google-cloud-go#1507), after which they query the
    // session's status and resume from its Range. Reproduced, double space included.
    throw new GcsError(
      503,
      'backendError',
      `Invalid request.  According to the Content-Range header, the upload offset is ${first} byte(s), which exceeds already uploaded size of ${persisted} byte(s).`,
      { plainText: true },
    );
  }
  const isFinal = total !== undefined && last + 1 === total;
  if (!isFinal && (last + 1) % CHUNK_GRANULARITY !== 0) {
    // The reference: every chunk except the one that completes the upload must be a multiple of
    // 256 KiB. The service may instead keep only a 256 KiB-aligned prefix and answer 308 with a
    // shorter Range (clients are told not to assume every byte sent was persisted); this server
    // refuses outright, so a client that sends such chunks fails here rather than in production.
    throw invalid(
      `Invalid request. Non-final chunk ends at byte ${last}; chunks other than the last must be a multiple of ${CHUNK_GRANULARITY} bytes.`,
    );
  }
  // Bytes the server already has (a retried or overlapping chunk) are skipped, as the service does.
  const skip = persisted - first;
  if (skip < request.body.length) {
    const fresh = request.body.subarray(skip);
    session.chunks.push(Buffer.from(fresh));
    session.persisted += fresh.length;
  }
  if (total !== undefined) session.total = total;
  if (isFinal) return finalBytes(session);
  return { kind: 'incomplete', persisted: session.persisted };
}

/** All bytes of a session whose upload is complete. */
function finalBytes(session: UploadSession): ChunkOutcome {
  return { kind: 'final', bytes: Buffer.concat(session.chunks, session.persisted) };
}

/** The Range header of a 308: `bytes=0-N`, absent when nothing is persisted yet. */
export function persistedRangeHeader(persisted: number): Record<string, string> {
  return persisted === 0 ? {} : { Range: `bytes=0-${persisted - 1}` };
}

/** Parses Content-Range for a session PUT. No header means "the whole object in this request". */
function parseContentRange(value: string | undefined, bodyLength: number): ContentRange {
  if (value === undefined) return { first: 0, last: 'open', total: bodyLength };
  const failed = () => invalid('Failed to parse Content-Range header.');
  const match = /^bytes (?:\*|(\d+)-(\d+|\*))\/(\*|\d+)$/.exec(value.trim());
  if (match === null) throw failed();
  const [, firstText, lastText, totalText] = match;
  const total = totalText === '*' || totalText === undefined ? undefined : toSafeInt(totalText);
  if (firstText === undefined) return { first: undefined, last: undefined, total };
  const first = toSafeInt(firstText);
  if (lastText === '*') return { first, last: 'open', total };
  const last = toSafeInt(lastText ?? '');
  if (last < first) throw failed();
  if (bodyLength !== last - first + 1) {
    throw invalid(`Content-Range bytes ${first}-${last} names ${last - first + 1} bytes but the body has ${bodyLength}.`);
  }
  return { first, last, total };
}

/** A decimal byte offset that fits in a JavaScript number. */
function toSafeInt(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw invalid('Failed to parse Content-Range header.');
  return value;
}
