// Names, links, labels and request bodies as the Compute Engine API reference defines them.
// References: https://cloud.google.com/compute/docs/naming-resources,
// https://cloud.google.com/compute/docs/labeling-resources#requirements,
// https://cloud.google.com/compute/docs/reference/rest/v1/snapshots (sourceDisk forms),
// https://cloud.google.com/compute/docs/reference/rest/v1/disks (sourceSnapshot forms).
import { createHash } from 'node:crypto';
import { ComputeError, badRequest, invalidField, notImplemented, requiredField } from './errors.ts';

/** Self links always name the public host, whatever endpoint the request came in on, as the service does. */
export const API_BASE = 'https://www.googleapis.com/compute/v1/';

/** Hosts whose /compute/v1/ URLs the service accepts as full resource URLs. */
const API_HOSTS = ['https://www.googleapis.com/compute/v1/', 'https://compute.googleapis.com/compute/v1/'];

/** RFC 1035 resource names: what insert requires of `name`. */
export const NAME_PATTERN = '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?';
const NAME = new RegExp(`^(?:${NAME_PATTERN})$`);

/** What get and delete accept in the path: a name or a numeric id. */
export const NAME_OR_ID_PATTERN = `${NAME_PATTERN}|[1-9][0-9]{0,19}`;
const NAME_OR_ID = new RegExp(`^(?:${NAME_OR_ID_PATTERN})$`);

/** Whether a path segment is a valid name or numeric id. */
export function isNameOrId(value: string): boolean {
  return NAME_OR_ID.test(value);
}

/** Checks `name` on an insert: present, a string, RFC 1035. */
export function validateName(value: unknown, field: string): string {
  if (value === undefined || value === '') throw requiredField(field);
  if (typeof value !== 'string') throw badRequest(`Invalid value at '${field}' (TYPE_STRING), ${JSON.stringify(value)}`);
  if (!NAME.test(value)) throw invalidField(field, value, `Must be a match of regex '(?:${NAME_PATTERN})'`);
  return value;
}

/** `projects/p/zones/z` and friends: the paths the service quotes in messages. */
export const paths = {
  zone: (project: string, zone: string): string => `projects/${project}/zones/${zone}`,
  instance: (project: string, zone: string, name: string): string => `projects/${project}/zones/${zone}/instances/${name}`,
  disk: (project: string, zone: string, name: string): string => `projects/${project}/zones/${zone}/disks/${name}`,
  diskType: (project: string, zone: string, name: string): string => `projects/${project}/zones/${zone}/diskTypes/${name}`,
  snapshot: (project: string, name: string): string => `projects/${project}/global/snapshots/${name}`,
  zoneOperation: (project: string, zone: string, name: string): string => `projects/${project}/zones/${zone}/operations/${name}`,
  globalOperation: (project: string, name: string): string => `projects/${project}/global/operations/${name}`,
};

/** A resource path as a full URL on the public host. */
export function link(path: string): string {
  return `${API_BASE}${path}`;
}

/** Strips a full URL's host part; partial URLs are returned as they are. */
function partialOf(value: string): string {
  for (const host of API_HOSTS) if (value.startsWith(host)) return value.slice(host.length);
  return value;
}

/** A zonal disk named by a full or partial URL: `https://.../projects/p/zones/z/disks/d`,
 *  `projects/p/zones/z/disks/d` or `zones/z/disks/d` (in the request's project). */
export function parseDiskUrl(value: unknown, field: string, project: string): { project: string; zone: string; name: string } {
  if (typeof value !== 'string') throw badRequest(`Invalid value at '${field}' (TYPE_STRING), ${JSON.stringify(value)}`);
  const partial = partialOf(value);
  const match = /^(?:projects\/([^/]+)\/)?zones\/([^/]+)\/disks\/([^/]+)$/.exec(partial);
  if (match === null || value.includes('?') || value.includes('#')) throw invalidField(field, value, 'The URL is malformed.');
  if (/^regions\//.test(partial) || partial.includes('/regions/')) throw notImplemented('Regional disks');
  const [, p = project, zone = '', name = ''] = match;
  if (!NAME_OR_ID.test(name)) throw invalidField(field, value, 'The URL is malformed.');
  return { project: p, zone, name };
}

/** A snapshot named by a full or partial URL: `https://.../projects/p/global/snapshots/s`,
 *  `projects/p/global/snapshots/s` or `global/snapshots/s`. */
export function parseSnapshotUrl(value: unknown, field: string, project: string): { project: string; name: string } {
  if (typeof value !== 'string') throw badRequest(`Invalid value at '${field}' (TYPE_STRING), ${JSON.stringify(value)}`);
  const match = /^(?:projects\/([^/]+)\/)?global\/snapshots\/([^/]+)$/.exec(partialOf(value));
  if (match === null || value.includes('?') || value.includes('#')) throw invalidField(field, value, 'The URL is malformed.');
  const [, p = project, name = ''] = match;
  if (!NAME_OR_ID.test(name)) throw invalidField(field, value, 'The URL is malformed.');
  return { project: p, name };
}

/** Disk types this server models; the others (extreme, hyperdisk) have rules of their own. */
export const DISK_TYPES = ['pd-standard', 'pd-balanced', 'pd-ssd'] as const;

/** A disk type by full or partial URL, or `zones/z/diskTypes/t`; it must be in the disk's zone. */
export function parseDiskType(value: unknown, field: string, project: string, zone: string): string {
  if (typeof value !== 'string') throw badRequest(`Invalid value at '${field}' (TYPE_STRING), ${JSON.stringify(value)}`);
  const match = /^(?:projects\/([^/]+)\/)?zones\/([^/]+)\/diskTypes\/([^/]+)$/.exec(partialOf(value));
  if (match === null) throw invalidField(field, value, 'The URL is malformed.');
  const [, p = project, z = '', type = ''] = match;
  if (p !== project || z !== zone) throw invalidField(field, value, 'Disk type must be in the same project and zone as the disk.');
  if (!(DISK_TYPES as readonly string[]).includes(type)) {
    throw invalidField(field, value, `Disk type '${type}' is not one of ${DISK_TYPES.join(', ')} (the test server models only these).`);
  }
  return type;
}

/** Label keys: 1-63 characters, a lower-case (or caseless international) letter first, then those, digits, '_' and '-'. */
const LABEL_KEY = /^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$/u;
/** Label values: 0-63 of the same characters, any first. */
const LABEL_VALUE = /^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$/u;
/** The service's explanations of the two rules. */
const LABEL_KEY_RULE =
  'The key must start with a lowercase character, can only contain lowercase letters, numeric characters, underscores and dashes. ' +
  'The key can be at most 63 characters long. International characters are allowed.';
const LABEL_VALUE_RULE =
  'The value can only contain lowercase letters, numeric characters, underscores and dashes. ' +
  'The value can be at most 63 characters long. International characters are allowed.';
/** At most this many labels per resource. */
const MAX_LABELS = 64;

/** Checks a `labels` map against the labelling requirements; returns a copy. */
export function validateLabels(value: unknown, field: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest(`Invalid value at '${field}' (type.googleapis.com/google.protobuf.Map), ${JSON.stringify(value)}`);
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_LABELS) throw invalidField(field, '', `Labels can have at most ${MAX_LABELS} entries.`);
  const out: Record<string, string> = {};
  for (const [key, v] of entries) {
    if (typeof v !== 'string') throw badRequest(`Invalid value at '${field}[${key}]' (TYPE_STRING), ${JSON.stringify(v)}`);
    if (!LABEL_KEY.test(key)) throw invalidField(field, '', `Label key '${key}' violates format constraints. ${LABEL_KEY_RULE}`);
    if (!LABEL_VALUE.test(v)) throw invalidField(field, '', `Label value '${v}' violates format constraints. ${LABEL_VALUE_RULE}`);
    out[key] = v;
  }
  return out;
}

/** The fingerprint the service reports for labels; its value for no labels is the one the service shows. */
export function labelFingerprint(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '42WmSpB8rSM=';
  const text = keys.map((k) => `${k}=${labels[k] ?? ''}`).join(',');
  return createHash('sha256').update(text).digest().subarray(0, 8).toString('base64');
}

/** How the server treats each field of a resource in a request body. */
export interface FieldRules {
  /** The JSON name of the resource in messages: 'snapshot', 'disk', 'attachedDisk'. */
  resource: string;
  /** Fields the server reads. */
  modelled: readonly string[];
  /** Output-only fields: the service ignores them on input, and so does this server. */
  outputOnly: readonly string[];
  /** Real input fields this server does not model: refused with 501 rather than silently ignored. */
  unmodelled: readonly string[];
}

/** Parses a JSON request body into an object and checks every field against the rules: an unknown
 *  name is the 400 the API front end answers, an unmodelled one a 501. */
export function parseBody(raw: Buffer, rules: FieldRules): Record<string, unknown> {
  return checkFields(parseJson(raw), rules);
}

/** Parses a JSON body; malformed JSON is the front end's 400 parseError. */
export function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new ComputeError(400, 'parseError', 'Invalid JSON payload received. Unexpected token.');
  }
}

/** Checks an already parsed body against the field rules. */
export function checkFields(value: unknown, rules: FieldRules): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest(`Invalid JSON payload received. Expected an object for '${rules.resource}'.`);
  }
  const body = value as Record<string, unknown>;
  for (const key of Object.keys(body)) {
    if (rules.modelled.includes(key) || rules.outputOnly.includes(key)) continue;
    // The REST client sends unset map fields as {} (asyncSecondaryDisks on every disk insert): empty is unset.
    if (rules.unmodelled.includes(key)) {
      if (isEmpty(body[key])) continue;
      throw notImplemented(`Field '${rules.resource}.${key}'`);
    }
    throw badRequest(`Invalid JSON payload received. Unknown name "${key}" at '${rules.resource}': Cannot find field.`);
  }
  return body;
}

/** Whether a JSON value carries nothing: null, {} or []. */
function isEmpty(value: unknown): boolean {
  if (value === null) return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value).length === 0;
}

/** An int64 field, which JSON carries as a string or a number; undefined when absent. */
export function int64Field(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^-?\d{1,19}$/.test(text)) throw badRequest(`Invalid value at '${field}' (TYPE_INT64), ${JSON.stringify(value)}`);
  return Number(text);
}

/** A string field, undefined when absent. */
export function stringField(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw badRequest(`Invalid value at '${field}' (TYPE_STRING), ${JSON.stringify(value)}`);
  return value;
}

/** A bool field, undefined when absent. */
export function boolField(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw badRequest(`Invalid value at '${field}' (TYPE_BOOL), ${JSON.stringify(value)}`);
  return value;
}

/** An enum field: one of the given names; undefined when absent. */
export function enumField<T extends string>(value: unknown, field: string, values: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
    throw badRequest(`Invalid value at '${field}' (TYPE_ENUM), ${JSON.stringify(value)}`);
  }
  return value as T;
}
