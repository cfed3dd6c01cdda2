// The server's state: buckets and their live objects, held in memory, with the service's rules for
// generations, preconditions and the object resource's JSON form.
// References: https://cloud.google.com/storage/docs/json_api/v1/objects (resource),
// https://cloud.google.com/storage/docs/request-preconditions, https://cloud.google.com/storage/docs/metadata
import { createHash } from 'node:crypto';
import { crc32cBase64 } from './crc32c.ts';
import { conditionNotMet, invalid, noSuchBucket, noSuchObject, notModified } from './errors.ts';

/** An object as stored: its bytes and the metadata the service keeps beside them. */
export interface StoredObject {
  name: string;
  bytes: Buffer;
  /** Decimal string of an int64, as the JSON API spells generations. */
  generation: string;
  metageneration: number;
  contentType: string;
  contentEncoding: string | undefined;
  contentDisposition: string | undefined;
  contentLanguage: string | undefined;
  cacheControl: string | undefined;
  customTime: string | undefined;
  metadata: Record<string, string> | undefined;
  storageClass: string;
  kmsKeyName: string | undefined;
  md5Hash: string;
  crc32c: string;
  timeCreated: string;
  updated: string;
}

/** What an insert supplies; the store fills in generation, hashes and times. */
export interface NewObject {
  name: string;
  bytes: Buffer;
  contentType: string;
  contentEncoding?: string | undefined;
  contentDisposition?: string | undefined;
  contentLanguage?: string | undefined;
  cacheControl?: string | undefined;
  customTime?: string | undefined;
  metadata?: Record<string, string> | undefined;
  storageClass?: string | undefined;
  kmsKeyName?: string | undefined;
  /** Client-supplied hashes to verify against the bytes (base64), as in the metadata or X-Goog-Hash. */
  expectedMd5?: string | undefined;
  expectedCrc32c?: string | undefined;
}

/** A bucket: its creation time and its live objects by name (no noncurrent versions are kept). */
export interface Bucket {
  name: string;
  timeCreated: string;
  objects: Map<string, StoredObject>;
}

/** The four generation preconditions of the JSON API; undefined when the request omits one. */
export interface Preconditions {
  ifGenerationMatch?: string | undefined;
  ifGenerationNotMatch?: string | undefined;
  ifMetagenerationMatch?: string | undefined;
  ifMetagenerationNotMatch?: string | undefined;
}

/** Storage classes the service accepts for objects; anything else is a 400. */
export const STORAGE_CLASSES: ReadonlySet<string> = new Set([
  'STANDARD',
  'NEARLINE',
  'COLDLINE',
  'ARCHIVE',
  'MULTI_REGIONAL',
  'REGIONAL',
  'DURABLE_REDUCED_AVAILABILITY',
]);

/** Cloud KMS key resource name, the only form `kmsKeyName` takes. */
const KMS_KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;

/** Bucket naming rules (https://cloud.google.com/storage/docs/buckets#naming), without the dotted-name
 *  and "goog" prefix rules, which tests never exercise. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/;

/** The in-memory state of one server, with every rule that depends on what is stored. */
export class GcsStore {
  readonly buckets = new Map<string, Bucket>();
  /** Last generation handed out; generations are microseconds since the epoch, like the service's,
   *  and strictly increase even when two writes land in the same microsecond. */
  #lastGeneration = 0n;

  /** Creates a bucket; returns false when it already exists. Throws 400 on an invalid name. */
  createBucket(name: string): boolean {
    if (!BUCKET_NAME.test(name) || name.includes('..')) throw invalid(`Invalid bucket name: '${name}'`);
    if (this.buckets.has(name)) return false;
    this.buckets.set(name, { name, timeCreated: new Date().toISOString(), objects: new Map() });
    return true;
  }

  /** The bucket, or 404 notFound. */
  bucket(name: string): Bucket {
    const bucket = this.buckets.get(name);
    if (bucket === undefined) throw noSuchBucket();
    return bucket;
  }

  /** A live object for a read (get or download): 404 when absent or when `generation` names another
   *  generation; 412 or 304 when a precondition fails (304 for the NotMatch ones, as on any GET). */
  read(bucketName: string, name: string, generation: string | undefined, pre: Preconditions): StoredObject {
    const object = this.bucket(bucketName).objects.get(name);
    if (object === undefined || (generation !== undefined && generation !== object.generation)) {
      throw noSuchObject(bucketName, name);
    }
    if (!matchConditionsHold(object, pre)) throw conditionNotMet();
    if (!notMatchConditionsHold(object, pre)) throw notModified();
    return object;
  }

  /** Removes a live object: 404 when absent, 412 when a precondition fails. */
  remove(bucketName: string, name: string, generation: string | undefined, pre: Preconditions): void {
    const bucket = this.bucket(bucketName);
    const object = bucket.objects.get(name);
    if (object === undefined || (generation !== undefined && generation !== object.generation)) {
      throw noSuchObject(bucketName, name);
    }
    if (!matchConditionsHold(object, pre) || !notMatchConditionsHold(object, pre)) throw conditionNotMet();
    bucket.objects.delete(name);
  }

  /** Throws 412 when an insert with these preconditions would fail right now; a resumable upload
   *  is checked when it starts and again, atomically, when it finalizes. */
  checkInsertPreconditions(bucketName: string, name: string, pre: Preconditions): void {
    validateObjectName(name);
    if (!insertConditionsHold(this.bucket(bucketName).objects.get(name), pre)) throw conditionNotMet();
  }

  /** Writes a new generation of an object. The preconditions are checked here, against what is stored
   *  at this moment, so a resumable upload is judged when it finalizes, not when it began. */
  insert(bucketName: string, input: NewObject, pre: Preconditions): StoredObject {
    const bucket = this.bucket(bucketName);
    validateObjectName(input.name);
    const current = bucket.objects.get(input.name);
    if (!insertConditionsHold(current, pre)) throw conditionNotMet();
    const md5Hash = createHash('md5').update(input.bytes).digest('base64');
    const crc32c = crc32cBase64(input.bytes);
    // The service rejects an upload whose bytes do not match the hashes the client declared.
    if (input.expectedMd5 !== undefined && input.expectedMd5 !== md5Hash) {
      throw invalid(`Provided MD5 hash "${input.expectedMd5}" doesn't match calculated MD5 hash "${md5Hash}".`);
    }
    if (input.expectedCrc32c !== undefined && input.expectedCrc32c !== crc32c) {
      throw invalid(`Provided CRC32C "${input.expectedCrc32c}" doesn't match calculated CRC32C "${crc32c}".`);
    }
    const storageClass = input.storageClass ?? 'STANDARD';
    if (!STORAGE_CLASSES.has(storageClass)) throw invalid(`Invalid argument: storageClass '${storageClass}'.`);
    let kmsKeyName: string | undefined;
    if (input.kmsKeyName !== undefined) {
      if (!KMS_KEY_NAME.test(input.kmsKeyName)) throw invalid(`Invalid argument: kmsKeyName '${input.kmsKeyName}'.`);
      // The service reports the key version it used, not the key the client named.
      kmsKeyName = `${input.kmsKeyName}/cryptoKeyVersions/1`;
    }
    const now = new Date().toISOString();
    const object: StoredObject = {
      name: input.name,
      bytes: input.bytes,
      generation: this.#nextGeneration(),
      metageneration: 1,
      contentType: input.contentType,
      contentEncoding: input.contentEncoding,
      contentDisposition: input.contentDisposition,
      contentLanguage: input.contentLanguage,
      cacheControl: input.cacheControl,
      customTime: input.customTime,
      metadata: input.metadata,
      storageClass,
      kmsKeyName,
      md5Hash,
      crc32c,
      timeCreated: now,
      updated: now,
    };
    bucket.objects.set(input.name, object);
    return object;
  }

  /** Frees every object; the server calls it on stop. */
  clear(): void {
    this.buckets.clear();
  }

  #nextGeneration(): string {
    const now = BigInt(Date.now()) * 1000n;
    this.#lastGeneration = now > this.#lastGeneration ? now : this.#lastGeneration + 1n;
    return this.#lastGeneration.toString();
  }
}

/** Object naming rules (https://cloud.google.com/storage/docs/objects#naming): 1-1024 bytes of UTF-8,
 *  no carriage return or line feed, not "." or "..", not starting with ".well-known/acme-challenge/". */
export function validateObjectName(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) throw invalid('Object name must not be empty.');
  if (bytes > 1024) throw invalid('The maximum object length is 1024 characters, but got a name with more.');
  if (/[\r\n]/.test(name)) throw invalid('Object name contains a carriage return or line feed.');
  if (name === '.' || name === '..') throw invalid(`Object name '${name}' is not allowed.`);
  if (name.startsWith('.well-known/acme-challenge/')) throw invalid('Object name must not start with .well-known/acme-challenge/.');
  // A lone surrogate has no UTF-8 form: percent-decoding invalid UTF-8 produces one.
  if (/\p{Surrogate}/u.test(name)) throw invalid('Object name is not valid UTF-8.');
}

/** ifGenerationMatch and ifMetagenerationMatch against an existing object. */
function matchConditionsHold(object: StoredObject, pre: Preconditions): boolean {
  if (pre.ifGenerationMatch !== undefined && pre.ifGenerationMatch !== object.generation) return false;
  if (pre.ifMetagenerationMatch !== undefined && pre.ifMetagenerationMatch !== String(object.metageneration)) return false;
  return true;
}

/** ifGenerationNotMatch and ifMetagenerationNotMatch against an existing object. */
function notMatchConditionsHold(object: StoredObject, pre: Preconditions): boolean {
  if (pre.ifGenerationNotMatch !== undefined && pre.ifGenerationNotMatch === object.generation) return false;
  if (pre.ifMetagenerationNotMatch !== undefined && pre.ifMetagenerationNotMatch === String(object.metageneration)) {
    return false;
  }
  return true;
}

/** The rules for writes, where the object may be absent: ifGenerationMatch=0 means "no live object";
 *  ifGenerationNotMatch=0 means "a live object exists"; any other condition on an absent object fails. */
function insertConditionsHold(current: StoredObject | undefined, pre: Preconditions): boolean {
  if (current === undefined) {
    if (pre.ifGenerationMatch !== undefined && pre.ifGenerationMatch !== '0') return false;
    if (pre.ifGenerationNotMatch !== undefined) return false;
    if (pre.ifMetagenerationMatch !== undefined || pre.ifMetagenerationNotMatch !== undefined) return false;
    return true;
  }
  // A live object's generation is never 0, so ifGenerationMatch=0 fails and ifGenerationNotMatch=0 holds.
  return matchConditionsHold(current, pre) && notMatchConditionsHold(current, pre);
}

/** The object resource as the JSON API returns it (storage#object), with `endpoint` in the links. */
export function objectResource(endpoint: string, bucket: string, object: StoredObject): Record<string, unknown> {
  const encoded = encodeURIComponent(object.name);
  const resource: Record<string, unknown> = {
    kind: 'storage#object',
    id: `${bucket}/${object.name}/${object.generation}`,
    selfLink: `${endpoint}/storage/v1/b/${bucket}/o/${encoded}`,
    mediaLink: `${endpoint}/download/storage/v1/b/${bucket}/o/${encoded}?generation=${object.generation}&alt=media`,
    name: object.name,
    bucket,
    generation: object.generation,
    metageneration: String(object.metageneration),
    contentType: object.contentType,
    storageClass: object.storageClass,
    size: String(object.bytes.length),
    md5Hash: object.md5Hash,
    crc32c: object.crc32c,
    etag: etagOf(object),
    timeCreated: object.timeCreated,
    updated: object.updated,
    timeStorageClassUpdated: object.timeCreated,
    timeFinalized: object.timeCreated,
  };
  if (object.contentEncoding !== undefined) resource.contentEncoding = object.contentEncoding;
  if (object.contentDisposition !== undefined) resource.contentDisposition = object.contentDisposition;
  if (object.contentLanguage !== undefined) resource.contentLanguage = object.contentLanguage;
  if (object.cacheControl !== undefined) resource.cacheControl = object.cacheControl;
  if (object.customTime !== undefined) resource.customTime = object.customTime;
  if (object.metadata !== undefined) resource.metadata = object.metadata;
  if (object.kmsKeyName !== undefined) resource.kmsKeyName = object.kmsKeyName;
  return resource;
}

/** The object's ETag: the service derives it from generation and metageneration; so does this. */
export function etagOf(object: StoredObject): string {
  return Buffer.from(`${object.generation}/${object.metageneration}`).toString('base64');
}

/** The bucket resource (storage#bucket), with the fields a client reads. */
export function bucketResource(endpoint: string, bucket: Bucket): Record<string, unknown> {
  return {
    kind: 'storage#bucket',
    id: bucket.name,
    selfLink: `${endpoint}/storage/v1/b/${bucket.name}`,
    projectNumber: '123456789012',
    name: bucket.name,
    timeCreated: bucket.timeCreated,
    updated: bucket.timeCreated,
    metageneration: '1',
    location: 'US',
    locationType: 'multi-region',
    storageClass: 'STANDARD',
    etag: 'CAE=',
  };
}
