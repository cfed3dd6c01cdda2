/** Classifies filesystem errors into the object-store contract's kinds. */
import { StoreError, type StoreErrorKind } from '../object-store.ts';

const KINDS: Readonly<Record<string, StoreErrorKind>> = {
  ENOENT: 'not-found',
  ENOTDIR: 'not-found',
  EEXIST: 'already-exists',
  EACCES: 'access-denied',
  EPERM: 'access-denied',
  EROFS: 'access-denied',
  EAGAIN: 'transient',
  EBUSY: 'transient',
  EINTR: 'transient',
  EMFILE: 'transient',
  ENFILE: 'transient',
  ENOSPC: 'failed',
  EIO: 'failed',
};

/** Turns a Node fs error into a StoreError that names the object, keeping the cause. */
export function toStoreError(err: unknown, target: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  const kind = KINDS[code] ?? 'failed';
  const detail = err instanceof Error ? err.message : String(err);
  return new StoreError(kind, `${target}: ${detail}`, { target, cause: err });
}
