// Request-body checks shared by the handlers. The Compute and Disk RPs deserialize bodies strictly:
// a member the model does not have, or a value of the wrong JSON type, is InvalidRequestContent.
import { ArmError, invalidContent } from './errors.ts';
import { LOCATIONS, normalizeLocation } from './state.ts';
import type { ResourceType } from './state.ts';

/** A JSON object. */
export type JsonObject = Record<string, unknown>;

/** Parses a PUT/PATCH body: JSON media type (415 otherwise), valid JSON, an object. */
export function jsonBody(contentType: string | undefined, body: Buffer): JsonObject {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw new ArmError(415, 'UnsupportedMediaType', `The content media type '${mediaType ?? ''}' is not supported. Only 'application/json' is supported.`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw invalidContent(err instanceof Error ? err.message : String(err));
  }
  if (!isObject(parsed)) throw invalidContent('The request body must be a JSON object.');
  return parsed;
}

/** True for a plain JSON object. */
export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Refuses members a model does not have, naming the model and the JSON path as the RP does. */
export function onlyMembers(value: JsonObject, allowed: readonly string[], model: string, path: string): void {
  for (const member of Object.keys(value)) {
    if (!allowed.includes(member)) {
      throw invalidContent(`Could not find member '${member}' on object of type '${model}'. Path '${path === '' ? member : `${path}.${member}`}'`);
    }
  }
}

/** A wrong JSON type for a member. */
function wrongType(path: string, expected: string): ArmError {
  return invalidContent(`Error converting value to type '${expected}'. Path '${path}'`);
}

/** An optional object member (null counts as absent). */
export function optionalObject(value: unknown, path: string): JsonObject | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw wrongType(path, 'Object');
  return value;
}

/** An optional string member. */
export function optionalString(value: unknown, path: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw wrongType(path, 'String');
  return value;
}

/** An optional boolean member. */
export function optionalBoolean(value: unknown, path: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw wrongType(path, 'Boolean');
  return value;
}

/** An optional integer member. */
export function optionalInteger(value: unknown, path: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw wrongType(path, 'Int32');
  return value;
}

/** An optional array member. */
export function optionalArray(value: unknown, path: string): unknown[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw wrongType(path, 'Array');
  return value;
}

/** `location`: required, and a region where the type is available; returns ARM's normalised name. */
export function requiredLocation(value: unknown, type: ResourceType): string {
  const raw = optionalString(value, 'location');
  if (raw === undefined || raw.trim() === '') throw new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
  const location = normalizeLocation(raw);
  if (!(LOCATIONS as readonly string[]).includes(location)) {
    throw new ArmError(
      400,
      'LocationNotAvailableForResourceType',
      `The provided location '${raw}' is not available for resource type 'Microsoft.Compute/${type}'. List of available regions for the resource type is '${LOCATIONS.join(',')}'.`,
    );
  }
  return location;
}

/** ARM's tag rules: at most 50, names up to 512 characters without <>%&\?/ or control characters, values up to 256. */
export function optionalTags(value: unknown): Record<string, string> | undefined {
  const tags = optionalObject(value, 'tags');
  if (tags === undefined) return undefined;
  const out: Record<string, string> = {};
  const badNames: string[] = [];
  for (const [name, tagValue] of Object.entries(tags)) {
    if (typeof tagValue !== 'string') throw wrongType(`tags.${name}`, 'String');
    if (/[<>%&\\?/\x00-\x1f]/.test(name)) badNames.push(name);
    if (name.length > 512) throw new ArmError(400, 'InvalidTag', `The tag name '${name.slice(0, 32)}...' exceeds the maximum length of 512 characters.`);
    if (tagValue.length > 256) throw new ArmError(400, 'InvalidTag', `The value of tag '${name}' exceeds the maximum length of 256 characters.`);
    out[name] = tagValue;
  }
  if (badNames.length > 0) {
    throw new ArmError(400, 'InvalidTagNameCharacters', `The tag names '${badNames.join(',')}' have reserved characters '<,>,%,&,\\,?,/' or control characters.`);
  }
  if (Object.keys(out).length > 50) throw new ArmError(400, 'InvalidTag', `The number of tags ${Object.keys(out).length} exceeds the maximum of 50.`);
  return out;
}

/** Resource names of disks, snapshots and VMs: 1-80 word characters, '.', '-', ending in a word character or '_'. */
export function checkResourceName(name: string): void {
  if (!/^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$/.test(name)) {
    throw new ArmError(
      400,
      'InvalidResourceName',
      `Resource name ${name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.`,
    );
  }
}
