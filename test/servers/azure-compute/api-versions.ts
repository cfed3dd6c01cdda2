// The api-version values the server accepts, per resource type. ARM routes a request to a resource
// provider only for versions that provider registered; these are the versions @azure/arm-compute
// 25.1.1 sends (its generated operations hard-code them), so that a client upgrade that moves to a
// version nobody checked here fails loudly instead of being served as if nothing changed.
import { ArmError } from './errors.ts';

/** The Disk RP (disks, snapshots, DiskOperations) and the Compute RP (virtualMachines, operations). */
export type ResourceProviderPart = 'disk' | 'compute';

/** api-versions accepted per part, newest first. */
export const API_VERSIONS: Readonly<Record<ResourceProviderPart, readonly string[]>> = {
  disk: ['2026-03-02'],
  compute: ['2026-04-01'],
};

/** ARM's format for api-version: a date, optionally with a -preview (or similar) suffix. */
const API_VERSION_FORMAT = /^\d{4}-\d{2}-\d{2}(-[a-z]+)?$/i;

/**
 * Checks a request's api-version for a resource type, as ARM does before the request reaches the
 * provider: missing is MissingApiVersionParameter, malformed InvalidApiVersionParameter, and a
 * well-formed but unregistered version NoRegisteredProviderFound.
 */
export function checkApiVersion(value: string | null, part: ResourceProviderPart, type: string, location: string): string {
  if (value === null || value === '') throw missingApiVersion();
  const supported = API_VERSIONS[part];
  if (!API_VERSION_FORMAT.test(value)) {
    throw new ArmError(400, 'InvalidApiVersionParameter', `The api-version '${value}' is invalid. The supported versions are '${supported.join(',')}'.`);
  }
  if (!supported.includes(value)) {
    throw new ArmError(
      400,
      'NoRegisteredProviderFound',
      `No registered resource provider found for location '${location}' and API version '${value}' for type '${type}'. The supported api-versions are '${supported.join(', ')}'.`,
    );
  }
  return value;
}

/** ARM's answer to a request without api-version, whatever it is for. */
export function missingApiVersion(): ArmError {
  return new ArmError(400, 'MissingApiVersionParameter', 'The api-version query parameter (?api-version=) is required for all requests.');
}
