/**
 * Keep annotations in the store: <server>/base/<id>/annotations/keep. Written by `keep`, read by
 * list/show and by retention, which never deletes an annotated backup.
 */
import { buffer } from 'node:stream/consumers';
import type { ObjectStore } from '../../../providers/object-store.ts';
import { isStoreError } from '../../../providers/object-store.ts';
import { CloudbarmanError } from '../errors.ts';
import { storeFailure } from '../store/store-failure.ts';
import { decodeKeepAnnotation, encodeKeepAnnotation, type KeepAnnotation } from '../retention/retention-policy.ts';
import { backupPrefix } from './backup-keys.ts';

/** The annotation's key below the backup's folder. */
export const KEEP_ANNOTATION_NAME = 'annotations/keep';

/** The key of a backup's keep annotation. */
export function keepKey(server: string, id: string): string {
  return `${backupPrefix(server, id)}${KEEP_ANNOTATION_NAME}`;
}

/** The backup's annotation, or undefined when it has none. A damaged one is an integrity error: retention must not guess. */
export async function readKeep(store: ObjectStore, server: string, id: string): Promise<KeepAnnotation | undefined> {
  const key = keepKey(server, id);
  let text: string;
  try {
    const { body } = await store.get(key);
    text = (await buffer(body)).toString('utf8');
  } catch (err) {
    if (isStoreError(err, 'not-found')) return undefined;
    throw storeFailure(err, `reading the keep annotation of ${id}`, `${store.url} ${key}`);
  }
  const parsed = decodeKeepAnnotation(text);
  if (!parsed.ok) {
    throw new CloudbarmanError('integrity', `${store.url} ${key} ${parsed.problem}`, { hint: parsed.hint ?? `rewrite it with "cloudbarman keep ${server} ${id} --target full|standalone"` });
  }
  return parsed.value;
}

/** Sets (or replaces) the annotation. */
export async function writeKeep(store: ObjectStore, server: string, id: string, annotation: KeepAnnotation): Promise<void> {
  const key = keepKey(server, id);
  const body = Buffer.from(encodeKeepAnnotation(annotation));
  try {
    await store.put(key, body, { contentLength: body.byteLength });
  } catch (err) {
    throw storeFailure(err, `writing the keep annotation of ${id}`, `${store.url} ${key}`);
  }
}

/** Removes the annotation; idempotent. */
export async function releaseKeep(store: ObjectStore, server: string, id: string): Promise<void> {
  const key = keepKey(server, id);
  try {
    await store.delete([key]);
  } catch (err) {
    throw storeFailure(err, `removing the keep annotation of ${id}`, `${store.url} ${key}`);
  }
}
