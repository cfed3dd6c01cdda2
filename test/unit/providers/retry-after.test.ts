// Reading the wait a service asks for: seconds, HTTP dates, Azure's milliseconds, and the header
// containers the SDKs use (plain objects, Headers-like maps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRetryAfter, retryAfterOf } from '../../../providers/retry-after.ts';

const NOW = Date.parse('2026-11-22T06:00:00Z');

test('Retry-After in seconds or as an HTTP date; unreadable or empty is no answer', () => {
  assert.equal(parseRetryAfter('3', NOW), 3_000);
  assert.equal(parseRetryAfter(' 0 ', NOW), 0);
  assert.equal(parseRetryAfter('1.5', NOW), 1_500);
  assert.equal(parseRetryAfter('Sun, 22 Nov 2026 06:00:42 GMT', NOW), 42_000);
  assert.equal(parseRetryAfter('Sun, 22 Nov 2026 05:59:00 GMT', NOW), 0, 'a date in the past asks for no wait');
  assert.equal(parseRetryAfter('soon', NOW), undefined);
  assert.equal(parseRetryAfter('', NOW), undefined);
  assert.equal(parseRetryAfter(undefined, NOW), undefined);
});

test('headers: milliseconds first, then Retry-After, from plain objects and Headers-like maps', () => {
  assert.equal(retryAfterOf({ 'x-ms-retry-after-ms': '2500', 'retry-after': '9' }, NOW), 2_500);
  assert.equal(retryAfterOf({ 'Retry-After-Ms': '700' }, NOW), 700);
  assert.equal(retryAfterOf({ 'Retry-After': ['4'] }, NOW), 4_000);
  assert.equal(retryAfterOf(new Headers({ 'retry-after': '6' }), NOW), 6_000);
  assert.equal(retryAfterOf(new Headers({ 'x-ms-retry-after-ms': 'junk', 'retry-after': '2' }), NOW), 2_000);
  assert.equal(retryAfterOf({ 'content-type': 'application/xml' }, NOW), undefined);
  assert.equal(retryAfterOf(undefined, NOW), undefined);
  assert.equal(retryAfterOf('retry-after: 3', NOW), undefined);
});
