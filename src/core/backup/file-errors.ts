/** The one way a backup reports a data-directory file it cannot read. */
import { CloudbarmanError } from '../errors.ts';

/** A read failure on `path`: a permission problem is bad input (exit 3), anything else a failure. */
export function fileReadFailure(path: string, err: unknown): CloudbarmanError {
  const code = (err as NodeJS.ErrnoException).code;
  const denied = code === 'EACCES' || code === 'EPERM';
  return new CloudbarmanError(denied ? 'bad-input' : 'failed', `cannot read ${path}: ${code ?? String(err)}`, {
    hint: denied ? 'run the backup as the PostgreSQL OS user (or root) on the database host' : 'check the disk and the kernel log',
    cause: err,
  });
}
