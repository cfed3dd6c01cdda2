// What every key-unwrapping test asserts of a failure: a CloudbarmanError with the exit code of the
// table, naming what it must, and holding none of the secrets given (key, blob, token, secret key).
import assert from 'node:assert/strict';
import { CloudbarmanError } from '../../src/core/errors.ts';
import { exitCodeFor } from '../../src/cli/exit-codes.ts';

/** A predicate for assert.rejects: exit code, mentions, and no secret in message or hint. */
export function unwrapFailsWith(secrets: () => readonly string[], exit: number, ...mentions: string[]): (err: unknown) => boolean {
  return (err: unknown): boolean => {
    assert.ok(err instanceof CloudbarmanError, String(err));
    assert.equal(exitCodeFor(err.kind), exit, err.message);
    const text = `${err.message} ${err.hint ?? ''}`;
    for (const m of mentions) assert.ok(text.includes(m), `${JSON.stringify(text)} mentions ${m}`);
    for (const secret of secrets()) assert.ok(secret === '' || !text.includes(secret), 'a secret appeared in the message');
    return true;
  };
}
