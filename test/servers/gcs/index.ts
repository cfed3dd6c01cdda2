/**
 * A strict, in-process test server for the part of the Google Cloud Storage JSON API that
 * `@google-cloud/storage` 8.x uses. No GCS emulator installs on these machines, so the GCS provider is
 * tested against this, through the real SDK over HTTP on 127.0.0.1. State lives in memory.
 *
 * Implemented, following https://cloud.google.com/storage/docs/json_api/v1 and the pages named below:
 * - buckets: get, list (one page), insert (409 when taken), delete (409 when not empty),
 *   iam/testPermissions (every storage.* permission is granted to an authenticated caller).
 * - objects.insert at /upload/storage/v1/b/{bucket}/o: uploadType=media, multipart (multipart/related,
 *   JSON metadata part then media part) and resumable (uploading-objects, performing-resumable-uploads):
 *   session URI in Location; chunks with `Content-Range: bytes a-b/*|N`, the Node client's
 *   single-request form `bytes a-*\/*|N`, status queries `bytes *\/*|N`; 308 with `Range: bytes=0-N`;
 *   overlapping (retried) bytes skipped; a gap answers 503 with the service's plain-text message;
 *   a non-final chunk must end on a 256 KiB boundary (400); DELETE cancels (499, then 410);
 *   an unknown upload_id is 404. A request is applied whole or not at all (the service may keep a
 *   256 KiB-aligned prefix of a request cut off mid-body). Metadata: name, contentType,
 *   contentEncoding, contentDisposition, contentLanguage, cacheControl, customTime, metadata
 *   (8 KiB cap), storageClass, kmsKeyName
 *   (query or metadata; returned with `/cryptoKeyVersions/1` as the service does), crc32c and md5Hash
 *   (and X-Goog-Hash) verified against the bytes (400 on mismatch).
 * - objects.get (JSON) and alt=media downloads (also at /download/storage/v1/...): single byte ranges
 *   (`a-b`, `a-`, `-n`; 206, 416 when unsatisfiable), x-goog-hash, x-goog-generation,
 *   x-goog-metageneration, x-goog-stored-content-length and -encoding; gzip objects served as stored
 *   to clients that accept gzip, inflated (decompressive transcoding) to others.
 * - objects.list: prefix, delimiter (prefixes[]), includeTrailingDelimiter, startOffset, endOffset,
 *   maxResults (capped at 1,000, counting items and prefixes together), pageToken (opaque, MAC'd,
 *   bound to prefix and delimiter; garbage is 400), versions; UTF-8 byte order.
 * - objects.delete: 204, 404 when absent.
 * - Preconditions (request-preconditions) on insert, get, download and delete: ifGenerationMatch
 *   (0 = must not exist), ifGenerationNotMatch, ifMetagenerationMatch, ifMetagenerationNotMatch;
 *   412 conditionNotMet, or 304 for the NotMatch ones on reads. A resumable upload's are checked when
 *   it starts and again atomically at finalize.
 * - `fields` partial responses, and the standard parameters (alt, prettyPrint, userProject, ...).
 * - Errors in the JSON API shape `{"error":{"code","message","errors":[{domain,reason,message}]}}`.
 * - Auth, when `requireBearerToken` is set: every request but a session-URI one (the URI is the
 *   credential) needs `Authorization: Bearer` with that token, a token POST /token issued, or a
 *   self-signed JWT from a trusted service-account key (see service-account.ts); else 401.
 *   Two client facts shape this: google-auth-library 11.x (under storage 8.4) posts JWT-bearer grants to
 *   oauth2.googleapis.com whatever the key file's token_uri says (so generated keys declare a
 *   non-default universe, which makes the client sign its own JWTs), and @google-cloud/storage 8.4's
 *   createWriteStream sends resumable uploads to a custom endpoint without credentials even with
 *   useAuthWithCustomEndpoint (createResumableUpload, then `uri`, is authenticated).
 *
 * Deliberately stricter than the service: an unknown or repeated query parameter and an unknown
 * metadata field are 400, so that a misspelt precondition fails a test instead of being ignored.
 *
 * Not implemented (each answers 501 or 400, never a silent 200): objects.patch/update, compose,
 * rewrite, copy, ACLs, holds and retention, object versioning (no noncurrent generations are kept;
 * `versions=true` lists live objects), soft delete, matchGlob, bucket patch and bucket-list paging,
 * metadata-only inserts, XML API, batch requests, customer-supplied encryption keys (accepted by
 * transport, not modelled), the `X-GUploader-No-308` convention, and session expiry.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { Authenticator } from './auth.ts';
import { UploadSessions } from './resumable.ts';
import { handleRequest } from './routes.ts';
import type { ServerContext } from './routes.ts';
import { GcsStore } from './store.ts';
import { listenOnLoopback } from '../loopback-server.ts';

export { makeServiceAccountKeyFile } from './service-account.ts';
export type { ServiceAccountKeyFile } from './service-account.ts';

/** A running GCS test server. */
export interface GcsServerHandle {
  /** e.g. http://127.0.0.1:PORT — pass as apiEndpoint to new Storage({ apiEndpoint, projectId }) */
  endpoint: string;
  /** Creates a bucket directly (tests use it for setup). */
  createBucket(name: string): void;
  /** Trusts a service-account key, so that JWTs it signs authenticate (makeServiceAccountKeyFile calls it). */
  trustServiceAccountKey(email: string, keyId: string, publicKeyPem: string): void;
  /** Stops listening, closes open sockets, frees everything. Safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a server on a free port of 127.0.0.1 and resolves once it listens. */
export async function startGcsServer(
  opts: {
    buckets?: string[];
    /** when set, every request must carry Authorization: Bearer <token> or gets 401 */
    requireBearerToken?: string;
  } = {},
): Promise<GcsServerHandle> {
  const store = new GcsStore();
  const sessions = new UploadSessions();
  const auth = new Authenticator(opts.requireBearerToken);
  const ctx: ServerContext = { store, sessions, auth, endpoint: '', tokenKey: randomBytes(32) };
  for (const name of opts.buckets ?? []) store.createBucket(name);

  const server = createServer((req, res) => {
    void handleRequest(ctx, req, res);
  });
  const listener = await listenOnLoopback(server, 'GCS test server', () => { store.clear(); sessions.clear(); });
  ctx.endpoint = `http://127.0.0.1:${listener.port}`;
  auth.setTokenUri(`${ctx.endpoint}/token`);

  return {
    endpoint: ctx.endpoint,
    createBucket(name: string): void {
      if (!store.createBucket(name)) throw new Error(`GCS test server: bucket ${name} already exists`);
    },
    trustServiceAccountKey(email: string, keyId: string, publicKeyPem: string): void {
      auth.trust(email, keyId, publicKeyPem);
    },
    stop: () => listener.stop(),
  };
}
