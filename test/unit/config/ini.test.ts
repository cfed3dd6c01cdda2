import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CloudbarmanError } from '../../../src/core/errors.ts';
import { parseIni } from '../../../src/config/ini.ts';

/** Asserts that parsing fails with a bad-input error whose message matches. */
function assertParseError(text: string, message: RegExp): CloudbarmanError {
  let caught: unknown;
  try {
    parseIni(text, '/etc/x.conf');
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CloudbarmanError, `expected a CloudbarmanError, got ${String(caught)}`);
  assert.equal(caught.kind, 'bad-input');
  assert.match(caught.message, message);
  assert.ok(caught.hint !== undefined && caught.hint.length > 0, 'has a hint');
  return caught;
}

describe('parseIni', () => {
  it('reads sections and options with their line numbers', () => {
    const doc = parseIni('[cloudbarman]\ncompression = gzip\n\n[pg1]\ndestination = s3://b/p\n', 'f.conf');
    assert.deepEqual([...doc.sections.keys()], ['cloudbarman', 'pg1']);
    const pg1 = doc.sections.get('pg1');
    assert.equal(pg1?.line, 4);
    assert.deepEqual(pg1?.entries.get('destination'), { key: 'destination', value: 's3://b/p', line: 5 });
    assert.equal(doc.sections.get('cloudbarman')?.entries.get('compression')?.value, 'gzip');
    assert.equal(doc.source, 'f.conf');
  });

  it('skips # and ; comments and blank lines, and keeps # inside values', () => {
    const doc = parseIni('# top\n; also\n[pg1]\n   \n  # indented comment\nconninfo = password=a#b;c\n', 'f');
    const entries = doc.sections.get('pg1')?.entries;
    assert.equal(entries?.size, 1);
    assert.equal(entries?.get('conninfo')?.value, 'password=a#b;c');
    assert.equal(entries?.get('conninfo')?.line, 6);
  });

  it('trims, strips one pair of double or single quotes, and keeps "=" in values', () => {
    const doc = parseIni('[s]\na =  "Main cluster"  \nb = \'x y\'\nc=k=v\nd = ""\ne = plain value \n', 'f');
    const get = (k: string) => doc.sections.get('s')?.entries.get(k)?.value;
    assert.equal(get('a'), 'Main cluster');
    assert.equal(get('b'), 'x y');
    assert.equal(get('c'), 'k=v');
    assert.equal(get('d'), '');
    assert.equal(get('e'), 'plain value');
  });

  it('lower-cases keys like configparser, but keeps section names as written', () => {
    const doc = parseIni('[PG1]\nCompression = gzip\n', 'f');
    assert.equal(doc.sections.get('PG1')?.entries.get('compression')?.value, 'gzip');
    assert.equal(doc.sections.get('pg1'), undefined);
  });

  it('accepts CRLF line endings and a byte-order mark', () => {
    const doc = parseIni('\uFEFF[pg1]\r\nslot_name = a\r\n', 'f');
    assert.equal(doc.sections.get('pg1')?.entries.get('slot_name')?.value, 'a');
    assert.equal(doc.sections.get('pg1')?.entries.get('slot_name')?.line, 2);
  });

  it('returns no sections for an empty file', () => {
    assert.equal(parseIni('', 'f').sections.size, 0);
  });

  it('rejects a line without "=", naming file and line', () => {
    assertParseError('[pg1]\ndestination s3://b\n', /^\/etc\/x\.conf:2: expected "key = value"/);
  });

  it('rejects an option before any section, naming it', () => {
    assertParseError('# c\ncompression = zstd\n[pg1]\n', /^\/etc\/x\.conf:2: option "compression" comes before any \[section\]/);
  });

  it('rejects a duplicate key in one section, case-insensitively, pointing at both lines', () => {
    assertParseError('[pg1]\ncompression = zstd\nCOMPRESSION = gzip\n', /^\/etc\/x\.conf:3: option "compression" is set again in \[pg1\] \(first at line 2\)/);
  });

  it('allows the same key in different sections', () => {
    const doc = parseIni('[a]\nk = 1\n[b]\nk = 2\n', 'f');
    assert.equal(doc.sections.get('b')?.entries.get('k')?.value, '2');
  });

  it('rejects an unterminated "[" header', () => {
    assertParseError('[pg1\nk = v\n', /^\/etc\/x\.conf:1: section header has no closing "\]"/);
  });

  it('rejects an empty section name and a repeated section', () => {
    assertParseError('[ ]\n', /^\/etc\/x\.conf:1: section header has no name/);
    assertParseError('[pg1]\n[pg2]\n[pg1]\n', /^\/etc\/x\.conf:3: section \[pg1\] appears again \(first at line 1\)/);
  });

  it('rejects a value with an opening quote that is never closed', () => {
    assertParseError('[pg1]\ndescription = "Main cluster\n', /^\/etc\/x\.conf:2: option "description" has an unterminated quote/);
    assertParseError("[pg1]\ndescription = '\n", /:2: option "description" has an unterminated quote/);
  });

  it('rejects "= value" with no key', () => {
    assertParseError('[pg1]\n = v\n', /^\/etc\/x\.conf:2: a value has no option name/);
  });

  it('never quotes the offending line, which may hold a password', () => {
    const err = assertParseError('[pg1]\npassword hunter2\n', /:2:/);
    assert.doesNotMatch(err.message, /hunter2/);
    assert.doesNotMatch(err.hint ?? '', /hunter2/);
    const quoted = assertParseError('[pg1]\nconninfo = "password=hunter2\n', /:2:/);
    assert.doesNotMatch(quoted.message, /hunter2/);
  });
});
