// Azure classification of answers that broke off in transit, as the fault proxy produces them: the
// SDK reads a listing or an error body as text, and a body cut short arrives as PARSE_ERROR.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyAzureError, toStoreError } from '../../../providers/azure/errors.ts';

describe('classifyAzureError, for answers cut in transit', () => {
  it('a body that could not be read is retryable (a listing or an error body reset or truncated)', () => {
    // As @typespec/ts-http-runtime's streamToText reports it: no status.
    const cut = Object.assign(new Error('Error reading response as text: aborted'), { name: 'RestError', code: 'PARSE_ERROR' });
    assert.equal(classifyAzureError(cut).kind, 'transient');
    assert.equal(toStoreError(cut, 'azure://c/k').retryable, true);
    // A 200 or 5xx whose body did not parse: nothing was learnt, try again.
    assert.equal(classifyAzureError({ name: 'RestError', code: 'PARSE_ERROR', statusCode: 200 }).kind, 'transient');
    assert.equal(classifyAzureError({ name: 'RestError', code: 'PARSE_ERROR', statusCode: 503 }).kind, 'transient');
  });

  it('an error status that did arrive still decides, however garbled its body', () => {
    assert.equal(classifyAzureError({ name: 'RestError', code: 'PARSE_ERROR', statusCode: 404 }).kind, 'not-found');
    assert.equal(classifyAzureError({ name: 'RestError', code: 'PARSE_ERROR', statusCode: 412 }).kind, 'already-exists');
    assert.equal(classifyAzureError({ name: 'RestError', code: 'PARSE_ERROR', statusCode: 403 }).kind, 'access-denied');
  });
});
