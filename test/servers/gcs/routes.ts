// Request routing and the handlers for each JSON API method the test server implements.
// Reference: https://cloud.google.com/storage/docs/json_api/v1 (buckets, objects) and
// https://cloud.google.com/storage/docs/uploading-objects (media, multipart, resumable).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { Authenticator } from './auth.ts';
import { GcsError, conditionNotMet, invalid, notModified, required } from './errors.ts';
import {
  PREDEFINED_OBJECT_ACLS,
  PROJECTIONS,
  Query,
  decodeSegment,
  header,
  internalError,
  readBody,
  sendEmpty,
  sendError,
  sendJson,
} from './http.ts';
import { MAX_PAGE, listPage } from './listing.ts';
import { parseMultipartRelated } from './multipart.ts';
import { applyChunk, persistedRangeHeader } from './resumable.ts';
import type { UploadSession, UploadSessions } from './resumable.ts';
import { bucketResource, etagOf, objectResource } from './store.ts';
import type { GcsStore, NewObject, Preconditions, StoredObject } from './store.ts';

/** Everything a handler needs: the state, the auth rules and the server's own address. */
export interface ServerContext {
  store: GcsStore;
  sessions: UploadSessions;
  auth: Authenticator;
  /** http://127.0.0.1:PORT, for links and session URIs. */
  endpoint: string;
  /** Key for page-token MACs, fresh per server. */
  tokenKey: Buffer;
}

/** The four precondition parameters, accepted by every method that reads or writes one object. */
const PRECONDITION_PARAMS = ['ifGenerationMatch', 'ifGenerationNotMatch', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch'] as const;

/** Custom metadata may total at most 8 KiB (keys plus values), per the reference. */
const MAX_CUSTOM_METADATA_BYTES = 8 * 1024;

/** Handles one request end to end; never throws. */
export async function handleRequest(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: Buffer;
  try {
    body = await readBody(req);
  } catch {
    // The client went away mid-body: nothing to answer.
    res.destroy();
    return;
  }
  try {
    route(ctx, req, res, body);
  } catch (err) {
    const error = err instanceof GcsError ? err : internalError(err);
    if (res.headersSent) res.destroy();
    else sendError(res, error);
  }
}

/** Finds the method for a path and verb; unknown paths are 404, known paths with another verb 405. */
function route(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const path = q === -1 ? raw : raw.slice(0, q);
  const search = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1));
  const method = req.method ?? 'GET';
  const segments = path.split('/').slice(1);

  if (path === '/token') {
    if (method !== 'POST') throw methodNotAllowed(method);
    const { status, json } = ctx.auth.token(header(req, 'content-type'), body);
    sendJson(res, status, json);
    return;
  }

  // A session URI is its own credential (the reference: requests to it need no Authorization), so
  // only a header that is present is checked there.
  const authorization = header(req, 'authorization');
  const isSessionUri = path.startsWith('/upload/') && search.has('upload_id');
  if (!(isSessionUri && authorization === undefined)) ctx.auth.check(authorization);

  const [api, version, b, bucketSeg, o, objectSeg, ...rest] = segments;
  const bucket = bucketSeg === undefined ? undefined : decodeSegment(bucketSeg);
  const object = objectSeg === undefined ? undefined : decodeSegment(objectSeg);

  if (api === 'storage' && version === 'v1' && b === 'b') {
    if (bucket === undefined) {
      if (method === 'GET') return listBuckets(ctx, res, search);
      if (method === 'POST') return insertBucket(ctx, res, search, body);
      throw methodNotAllowed(method);
    }
    if (bucket === '') throw notFound();
    if (o === undefined) {
      if (method === 'GET') return getBucket(ctx, res, search, bucket);
      if (method === 'DELETE') return deleteBucket(ctx, res, search, bucket);
      if (method === 'PATCH' || method === 'PUT') throw notImplemented('buckets.patch/update');
      throw methodNotAllowed(method);
    }
    if (o === 'iam' && objectSeg === 'testPermissions' && rest.length === 0) {
      if (method === 'GET') return testPermissions(ctx, res, search, bucket);
      throw methodNotAllowed(method);
    }
    if (o !== 'o') throw notImplemented(`bucket sub-resource '${o}'`);
    if (object === undefined) {
      if (method === 'GET') return listObjects(ctx, res, search, bucket);
      if (method === 'POST') {
        throw invalid('Metadata-only objects.insert is not implemented by the GCS test server; upload through /upload/storage/v1.');
      }
      throw methodNotAllowed(method);
    }
    if (object === '') throw notFound();
    if (rest.length > 0) throw notImplemented(`object sub-resource '${rest.join('/')}' (compose, rewrite, copy, acl)`);
    if (method === 'GET') {
      if (search.get('alt') === 'media') return download(ctx, req, res, search, bucket, object);
      return getObject(ctx, res, search, bucket, object);
    }
    if (method === 'DELETE') return deleteObject(ctx, res, search, bucket, object);
    if (method === 'PATCH' || method === 'PUT') throw notImplemented('objects.patch/update');
    throw methodNotAllowed(method);
  }

  if (api === 'download' && version === 'storage' && b === 'v1' && bucketSeg === 'b' && o !== undefined) {
    // /download/storage/v1/b/{bucket}/o/{object}: the mediaLink form of a download.
    const [, , , , dlBucket, dlO, dlObject, ...dlRest] = segments;
    if (dlBucket === undefined || dlO !== 'o' || dlObject === undefined || dlRest.length > 0) throw notFound();
    if (method !== 'GET') throw methodNotAllowed(method);
    if (search.get('alt') !== 'media') throw invalid('Downloads through /download require alt=media.');
    return download(ctx, req, res, search, decodeSegment(dlBucket), decodeSegment(dlObject));
  }

  if (api === 'upload' && version === 'storage' && b === 'v1' && bucketSeg === 'b' && o !== undefined) {
    // /upload/storage/v1/b/{bucket}/o
    const [, , , , upBucket, upO, ...upRest] = segments;
    if (upBucket === undefined || upO !== 'o' || upRest.length > 0) throw notFound();
    const uploadBucket = decodeSegment(upBucket);
    if (search.has('upload_id')) {
      if (method === 'PUT' || method === 'POST') return sessionChunk(ctx, req, res, search, body);
      if (method === 'DELETE') return cancelSession(ctx, res, search);
      throw methodNotAllowed(method);
    }
    if (method !== 'POST') throw methodNotAllowed(method);
    const uploadType = search.get('uploadType');
    if (uploadType === 'media') return mediaUpload(ctx, req, res, search, uploadBucket, body);
    if (uploadType === 'multipart') return multipartUpload(ctx, req, res, search, uploadBucket, body);
    if (uploadType === 'resumable') return startResumable(ctx, req, res, search, uploadBucket, body);
    throw invalid('Upload requests must include an uploadType URL parameter and a URL-encoded object name.');
  }

  throw notFound();
}

// ---- buckets ----

/** GET /storage/v1/b/{bucket}: the bucket resource, 404 when it does not exist. */
function getBucket(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, name: string): void {
  const query = new Query(search, ['projection', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch']);
  query.oneOf('projection', PROJECTIONS);
  const bucket = ctx.store.bucket(name);
  const mm = query.int64('ifMetagenerationMatch');
  const mnm = query.int64('ifMetagenerationNotMatch');
  // Buckets here are never patched, so their metageneration stays 1.
  if (mm !== undefined && mm !== '1') throw conditionNotMet();
  if (mnm === '1') throw notModified();
  sendJson(res, 200, bucketResource(ctx.endpoint, bucket), { fields: query.get('fields') });
}

/** GET /storage/v1/b?project=: every bucket, in one page. */
function listBuckets(ctx: ServerContext, res: ServerResponse, search: URLSearchParams): void {
  const query = new Query(search, ['project', 'prefix', 'projection']);
  if (query.get('project') === undefined) throw required('Required parameter: project');
  query.oneOf('projection', PROJECTIONS);
  const prefix = query.get('prefix') ?? '';
  const items = [...ctx.store.buckets.values()]
    .filter((bucket) => bucket.name.startsWith(prefix))
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((bucket) => bucketResource(ctx.endpoint, bucket));
  sendJson(res, 200, items.length === 0 ? { kind: 'storage#buckets' } : { kind: 'storage#buckets', items }, { fields: query.get('fields') });
}

/** POST /storage/v1/b?project=: creates a bucket; 409 when the name is taken. */
function insertBucket(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, body: Buffer): void {
  const query = new Query(search, ['project', 'predefinedAcl', 'predefinedDefaultObjectAcl', 'projection']);
  if (query.get('project') === undefined) throw required('Required parameter: project');
  const resource = parseJsonBody(body);
  const name = resource.name;
  if (typeof name !== 'string' || name === '') throw required('Required');
  if (!ctx.store.createBucket(name)) {
    throw new GcsError(409, 'conflict', 'Your previous request to create the named bucket succeeded and you already own it.');
  }
  sendJson(res, 200, bucketResource(ctx.endpoint, ctx.store.bucket(name)), { fields: query.get('fields') });
}

/** DELETE /storage/v1/b/{bucket}: 204; 409 while it still holds objects. */
function deleteBucket(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, name: string): void {
  // Built only to refuse parameters this method does not take.
  new Query(search, ['ifMetagenerationMatch', 'ifMetagenerationNotMatch']);
  const bucket = ctx.store.bucket(name);
  if (bucket.objects.size > 0) throw new GcsError(409, 'conflict', 'The bucket you tried to delete is not empty.');
  ctx.store.buckets.delete(name);
  sendEmpty(res, 204);
}

/** GET /storage/v1/b/{bucket}/iam/testPermissions: a caller that got past auth holds every storage permission. */
function testPermissions(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, name: string): void {
  const query = new Query(search, [], ['permissions']);
  const permissions = query.all('permissions');
  if (permissions.length === 0) throw required('Required parameter: permissions');
  ctx.store.bucket(name);
  const granted = permissions.filter((p) => p.startsWith('storage.'));
  sendJson(res, 200, { kind: 'storage#testIamPermissionsResponse', ...(granted.length > 0 ? { permissions: granted } : {}) }, { fields: query.get('fields') });
}

// ---- objects: read, list, delete ----

/** GET /storage/v1/b/{bucket}/o/{object}: the object resource. */
function getObject(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, bucket: string, name: string): void {
  const query = new Query(search, ['generation', 'projection', ...PRECONDITION_PARAMS]);
  query.oneOf('projection', PROJECTIONS);
  const object = ctx.store.read(bucket, name, query.int64('generation'), preconditionsOf(query));
  sendJson(res, 200, objectResource(ctx.endpoint, bucket, object), { fields: query.get('fields'), headers: { ETag: etagOf(object) } });
}

/** GET ...?alt=media: the bytes, with single-range support and the x-goog-* headers the client
 *  validates downloads with (x-goog-hash, x-goog-stored-content-*, x-goog-generation). */
function download(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, search: URLSearchParams, bucket: string, name: string): void {
  const query = new Query(search, ['generation', ...PRECONDITION_PARAMS]);
  const object = ctx.store.read(bucket, name, query.int64('generation'), preconditionsOf(query));
  const headers: Record<string, string> = {
    'Content-Type': object.contentType,
    'Cache-Control': object.cacheControl ?? 'no-cache, no-store, max-age=0, must-revalidate',
    ETag: etagOf(object),
    'Last-Modified': new Date(object.updated).toUTCString(),
    'Accept-Ranges': 'bytes',
    'X-Goog-Generation': object.generation,
    'X-Goog-Metageneration': String(object.metageneration),
    'X-Goog-Hash': `crc32c=${object.crc32c},md5=${object.md5Hash}`,
    'X-Goog-Stored-Content-Length': String(object.bytes.length),
    'X-Goog-Stored-Content-Encoding': object.contentEncoding ?? 'identity',
    'X-Goog-Storage-Class': object.storageClass,
  };
  if (object.contentDisposition !== undefined) headers['Content-Disposition'] = object.contentDisposition;
  if (object.contentLanguage !== undefined) headers['Content-Language'] = object.contentLanguage;

  if (object.contentEncoding === 'gzip') {
    const acceptsGzip = /\bgzip\b/i.test(header(req, 'accept-encoding') ?? '');
    if (!acceptsGzip) {
      // Decompressive transcoding: the service serves the inflated bytes and ignores Range.
      const inflated = gunzipSync(object.bytes);
      res.writeHead(200, { ...headers, 'Content-Length': String(inflated.length), 'Warning': '214 UploadServer gunzipped' });
      res.end(inflated);
      return;
    }
    headers['Content-Encoding'] = 'gzip';
  }

  const range = parseRange(header(req, 'range'), object.bytes.length);
  if (range === 'unsatisfiable') {
    throw new GcsError(416, 'requestedRangeNotSatisfiable', 'The requested range cannot be satisfied.', {
      headers: { 'Content-Range': `bytes */${object.bytes.length}` },
    });
  }
  if (range === undefined) {
    res.writeHead(200, { ...headers, 'Content-Length': String(object.bytes.length) });
    res.end(object.bytes);
    return;
  }
  const slice = object.bytes.subarray(range.start, range.end + 1);
  res.writeHead(206, {
    ...headers,
    'Content-Length': String(slice.length),
    'Content-Range': `bytes ${range.start}-${range.end}/${object.bytes.length}`,
  });
  res.end(slice);
}

/** GET /storage/v1/b/{bucket}/o: one page of the listing. */
function listObjects(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, bucketName: string): void {
  const query = new Query(search, [
    'delimiter',
    'endOffset',
    'includeTrailingDelimiter',
    'maxResults',
    'pageToken',
    'prefix',
    'projection',
    'startOffset',
    'versions',
  ]);
  query.oneOf('projection', PROJECTIONS);
  query.bool('versions');
  const bucket = ctx.store.bucket(bucketName);
  const maxResults = query.uint32('maxResults') ?? MAX_PAGE;
  if (maxResults < 1) throw invalid(`Invalid value for maxResults: ${maxResults}.`);
  const delimiter = query.get('delimiter');
  if (delimiter === '') throw invalid('Invalid value for delimiter: it must not be empty.');
  const result = listPage(
    bucket.objects.values(),
    {
      prefix: query.get('prefix') ?? '',
      delimiter,
      includeTrailingDelimiter: query.bool('includeTrailingDelimiter') ?? false,
      startOffset: query.get('startOffset'),
      endOffset: query.get('endOffset'),
      maxResults: Math.min(maxResults, MAX_PAGE),
      pageToken: query.get('pageToken'),
    },
    ctx.tokenKey,
  );
  // The service leaves out empty arrays and an absent token rather than sending them empty.
  const response: Record<string, unknown> = { kind: 'storage#objects' };
  if (result.nextPageToken !== undefined) response.nextPageToken = result.nextPageToken;
  if (result.prefixes.length > 0) response.prefixes = result.prefixes;
  if (result.items.length > 0) response.items = result.items.map((item) => objectResource(ctx.endpoint, bucketName, item));
  sendJson(res, 200, response, { fields: query.get('fields') });
}

/** DELETE /storage/v1/b/{bucket}/o/{object}: 204, 404 when absent, 412 on a failed precondition. */
function deleteObject(ctx: ServerContext, res: ServerResponse, search: URLSearchParams, bucket: string, name: string): void {
  const query = new Query(search, ['generation', ...PRECONDITION_PARAMS]);
  ctx.store.remove(bucket, name, query.int64('generation'), preconditionsOf(query));
  sendEmpty(res, 204);
}

// ---- uploads ----

/** Parameters every objects.insert form accepts. */
const INSERT_PARAMS = ['uploadType', 'name', 'contentEncoding', 'kmsKeyName', 'predefinedAcl', 'projection', ...PRECONDITION_PARAMS] as const;

/** POST /upload/...?uploadType=media: the body is the object; `name` is required. */
function mediaUpload(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, search: URLSearchParams, bucket: string, body: Buffer): void {
  const query = new Query(search, INSERT_PARAMS);
  const name = query.get('name');
  if (name === undefined) throw required('Upload requests must include an uploadType URL parameter and a URL-encoded object name.');
  const spec = objectSpec(query, {}, name);
  spec.contentType ??= header(req, 'content-type') ?? 'application/octet-stream';
  const object = finishInsert(ctx, bucket, { ...spec, contentType: spec.contentType, bytes: body }, preconditionsOf(query), header(req, 'x-goog-hash'));
  sendJson(res, 200, objectResource(ctx.endpoint, bucket, object), { fields: query.get('fields') });
}

/** POST /upload/...?uploadType=multipart: JSON metadata part, then the media part. */
function multipartUpload(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, search: URLSearchParams, bucket: string, body: Buffer): void {
  const query = new Query(search, INSERT_PARAMS);
  const { metadata, media } = parseMultipartRelated(header(req, 'content-type'), body);
  const spec = objectSpec(query, parseJsonBody(metadata.body), undefined);
  spec.contentType ??= media.headers.get('content-type') ?? 'application/octet-stream';
  const object = finishInsert(ctx, bucket, { ...spec, contentType: spec.contentType, bytes: media.body }, preconditionsOf(query), header(req, 'x-goog-hash'));
  sendJson(res, 200, objectResource(ctx.endpoint, bucket, object), { fields: query.get('fields') });
}

/** POST /upload/...?uploadType=resumable: opens a session and answers 200 with its URI in Location. */
function startResumable(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, search: URLSearchParams, bucket: string, body: Buffer): void {
  const query = new Query(search, INSERT_PARAMS);
  ctx.store.bucket(bucket);
  const metadata = body.length === 0 ? {} : parseJsonBody(body);
  const spec = objectSpec(query, metadata, undefined);
  spec.contentType ??= header(req, 'x-upload-content-type') ?? 'application/octet-stream';
  const declared = header(req, 'x-upload-content-length');
  let total: number | undefined;
  if (declared !== undefined) {
    if (!/^\d{1,15}$/.test(declared)) throw invalid(`Invalid X-Upload-Content-Length: '${declared}'.`);
    total = Number(declared);
  }
  const preconditions = preconditionsOf(query);
  // The service refuses a session whose precondition already fails, and checks again at finalize.
  ctx.store.checkInsertPreconditions(bucket, spec.name, preconditions);
  const session = ctx.sessions.create(bucket, { ...spec, contentType: spec.contentType }, preconditions, total);
  const location =
    `${ctx.endpoint}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o` +
    `?uploadType=resumable&name=${encodeURIComponent(spec.name)}&upload_id=${session.id}`;
  sendEmpty(res, 200, { Location: location, 'X-GUploader-UploadID': session.id });
}

/** PUT (or POST) to a session URI: a chunk, a final chunk or a status query. */
function sessionChunk(ctx: ServerContext, req: IncomingMessage, res: ServerResponse, search: URLSearchParams, body: Buffer): void {
  const session = sessionOf(ctx, search);
  const outcome = applyChunk(session, { contentRange: header(req, 'content-range'), body });
  if (outcome.kind === 'incomplete') {
    sendEmpty(res, 308, persistedRangeHeader(outcome.persisted));
    return;
  }
  if (outcome.kind === 'done') {
    sendJson(res, 200, objectResource(ctx.endpoint, session.bucket, outcome.object));
    return;
  }
  try {
    // Custom metadata may also arrive as X-Goog-Meta-* headers on the final request.
    const metadata = { ...session.object.metadata, ...metaHeaders(req) };
    const object = finishInsert(
      ctx,
      session.bucket,
      { ...session.object, metadata: Object.keys(metadata).length > 0 ? metadata : undefined, bytes: outcome.bytes },
      session.preconditions,
      header(req, 'x-goog-hash'),
    );
    session.state = { kind: 'done', object };
    session.chunks = [];
    sendJson(res, 200, objectResource(ctx.endpoint, session.bucket, object));
  } catch (err) {
    // A failed finalize (412, checksum mismatch) ends the session; asking again gets the same answer.
    if (err instanceof GcsError) {
      session.state = { kind: 'failed', error: err };
      session.chunks = [];
    }
    throw err;
  }
}

/** DELETE to a session URI: cancels it; the service answers 499. */
function cancelSession(ctx: ServerContext, res: ServerResponse, search: URLSearchParams): void {
  const session = sessionOf(ctx, search);
  if (session.state.kind === 'done') throw invalid('The upload has already completed and cannot be cancelled.');
  session.state = { kind: 'cancelled' };
  session.chunks = [];
  sendEmpty(res, 499);
}

/** The session an upload_id names; 404 for an id this server never issued. */
function sessionOf(ctx: ServerContext, search: URLSearchParams): UploadSession {
  // Built only to refuse parameters a session URI does not carry.
  new Query(search, ['upload_id', 'uploadType', 'name']);
  const id = search.get('upload_id') ?? '';
  const session = ctx.sessions.get(id);
  if (session === undefined) throw new GcsError(404, 'notFound', 'No such upload session (unknown upload_id).');
  return session;
}

/** Writes the object, turning an X-Goog-Hash header into hashes the store must verify. */
function finishInsert(ctx: ServerContext, bucket: string, input: NewObject, pre: Preconditions, xGoogHash: string | undefined): StoredObject {
  const hashes = parseXGoogHash(xGoogHash);
  for (const [kind, metaValue, headerValue] of [
    ['crc32c', input.expectedCrc32c, hashes.crc32c],
    ['md5', input.expectedMd5, hashes.md5],
  ] as const) {
    if (metaValue !== undefined && headerValue !== undefined && metaValue !== headerValue) {
      throw invalid(`The ${kind} in the object metadata and in X-Goog-Hash disagree.`);
    }
  }
  return ctx.store.insert(
    bucket,
    { ...input, expectedCrc32c: input.expectedCrc32c ?? hashes.crc32c, expectedMd5: input.expectedMd5 ?? hashes.md5 },
    pre,
  );
}

/** The object's name and metadata from the query and the JSON resource of an insert. Output-only
 *  fields the client may echo back are ignored; any other unknown field is a 400. */
function objectSpec(query: Query, resource: Record<string, unknown>, queryOnlyName: string | undefined): Omit<NewObject, 'bytes' | 'contentType'> & { contentType?: string } {
  query.oneOf('predefinedAcl', PREDEFINED_OBJECT_ACLS);
  query.oneOf('projection', PROJECTIONS);
  const ignored = new Set(['kind', 'id', 'selfLink', 'mediaLink', 'bucket', 'generation', 'metageneration', 'size', 'etag', 'timeCreated', 'updated', 'acl']);
  const strings = ['name', 'contentType', 'contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl', 'customTime', 'storageClass', 'kmsKeyName', 'crc32c', 'md5Hash'];
  for (const [key, value] of Object.entries(resource)) {
    if (ignored.has(key)) continue;
    if (strings.includes(key)) {
      if (typeof value !== 'string') throw invalid(`Invalid value for field '${key}': expected a string.`);
      continue;
    }
    if (key === 'metadata' || key === 'temporaryHold' || key === 'eventBasedHold') continue;
    throw invalid(`Unknown or unsupported object field '${key}' (the GCS test server accepts no other).`);
  }
  const str = (key: string): string | undefined => resource[key] as string | undefined;

  const queryName = queryOnlyName ?? query.get('name');
  const bodyName = str('name');
  if (queryName !== undefined && bodyName !== undefined && queryName !== bodyName) {
    throw invalid(`Value '${bodyName}' in content does not agree with value '${queryName}'.`);
  }
  const name = queryName ?? bodyName;
  if (name === undefined || name === '') {
    throw required('Upload requests must include an uploadType URL parameter and a URL-encoded object name.');
  }

  for (const hold of ['temporaryHold', 'eventBasedHold']) {
    if (resource[hold] !== undefined && resource[hold] !== false) throw invalid(`Object holds (${hold}) are not implemented by the GCS test server.`);
  }

  const queryKms = query.get('kmsKeyName');
  const bodyKms = str('kmsKeyName');
  if (queryKms !== undefined && bodyKms !== undefined && queryKms !== bodyKms) {
    throw invalid(`kmsKeyName '${queryKms}' in the query and '${bodyKms}' in the metadata disagree.`);
  }
  const queryEncoding = query.get('contentEncoding');

  const customTime = str('customTime');
  if (customTime !== undefined && Number.isNaN(Date.parse(customTime))) throw invalid(`Invalid value for customTime: '${customTime}'.`);

  return {
    name,
    contentType: str('contentType'),
    contentEncoding: str('contentEncoding') ?? queryEncoding,
    contentDisposition: str('contentDisposition'),
    contentLanguage: str('contentLanguage'),
    cacheControl: str('cacheControl'),
    customTime: customTime === undefined ? undefined : new Date(customTime).toISOString(),
    metadata: customMetadata(resource.metadata),
    storageClass: str('storageClass'),
    kmsKeyName: queryKms ?? bodyKms,
    expectedCrc32c: checkedHash(str('crc32c'), 4, 'crc32c'),
    expectedMd5: checkedHash(str('md5Hash'), 16, 'md5Hash'),
  };
}

/** The `metadata` map: string values only (null drops a key), at most 8 KiB in all. */
function customMetadata(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid('Invalid value for field \'metadata\': expected an object.');
  const out: Record<string, string> = {};
  let bytes = 0;
  for (const [key, v] of Object.entries(value)) {
    if (v === null) continue;
    if (typeof v !== 'string') throw invalid(`Invalid value for metadata key '${key}': expected a string.`);
    if (key === '') throw invalid('Custom metadata keys must not be empty.');
    out[key] = v;
    bytes += Buffer.byteLength(key) + Buffer.byteLength(v);
  }
  if (bytes > MAX_CUSTOM_METADATA_BYTES) throw invalid('Custom metadata exceeds the 8 KiB limit.');
  return Object.keys(out).length > 0 ? out : undefined;
}

/** X-Goog-Meta-* headers, as custom metadata keys (lower-cased, as HTTP delivers them). */
function metaHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (key.startsWith('x-goog-meta-') && typeof value === 'string') out[key.slice('x-goog-meta-'.length)] = value;
  }
  return out;
}

/** A base64 hash from the metadata, checked for the right length (4 bytes crc32c, 16 bytes md5). */
function checkedHash(value: string | undefined, length: number, field: string): string | undefined {
  if (value === undefined) return undefined;
  const decoded = Buffer.from(value, 'base64');
  if (decoded.length !== length || decoded.toString('base64') !== value) throw invalid(`Invalid value for ${field}: '${value}'.`);
  return value;
}

/** `crc32c=...,md5=...` from an X-Goog-Hash header. */
function parseXGoogHash(value: string | undefined): { crc32c?: string; md5?: string } {
  if (value === undefined) return {};
  const out: { crc32c?: string; md5?: string } = {};
  for (const pair of value.split(',')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalid(`Invalid X-Goog-Hash header: '${value}'.`);
    const kind = pair.slice(0, eq).trim().toLowerCase();
    const hash = pair.slice(eq + 1).trim();
    if (kind === 'crc32c') out.crc32c = checkedHash(hash, 4, 'X-Goog-Hash crc32c');
    else if (kind === 'md5') out.md5 = checkedHash(hash, 16, 'X-Goog-Hash md5');
    else throw invalid(`Invalid X-Goog-Hash header: unknown hash '${kind}'.`);
  }
  return out;
}

// ---- shared ----

/** The precondition parameters of a request, validated as int64. */
function preconditionsOf(query: Query): Preconditions {
  return {
    ifGenerationMatch: query.int64('ifGenerationMatch'),
    ifGenerationNotMatch: query.int64('ifGenerationNotMatch'),
    ifMetagenerationMatch: query.int64('ifMetagenerationMatch'),
    ifMetagenerationNotMatch: query.int64('ifMetagenerationNotMatch'),
  };
}

/** A JSON object body; anything else is the service's parse error. */
function parseJsonBody(body: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw invalid(`Parse Error: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid('Parse Error: expected a JSON object.');
  return value as Record<string, unknown>;
}

/** A single byte range from a Range header, per RFC 9110 section 14: undefined when absent or not
 *  a single valid range (served whole), 'unsatisfiable' for a 416. */
function parseRange(value: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (value === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (match === null) return undefined;
  const [, startText = '', endText = ''] = match;
  if (startText === '' && endText === '') return undefined;
  if (startText === '') {
    const suffix = Number(endText);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(startText);
  if (endText !== '' && Number(endText) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: endText === '' ? size - 1 : Math.min(Number(endText), size - 1) };
}

/** 404 for a path no method lives at. */
function notFound(): GcsError {
  return new GcsError(404, 'notFound', 'Not Found');
}

/** 405 for a known path with a verb it does not take. */
function methodNotAllowed(method: string): GcsError {
  return new GcsError(405, 'methodNotAllowed', `Method ${method} is not allowed on this resource.`);
}

/** 501 for a real JSON API method this test server deliberately leaves out. */
function notImplemented(what: string): GcsError {
  return new GcsError(501, 'notImplemented', `${what} is not implemented by the GCS test server.`);
}
