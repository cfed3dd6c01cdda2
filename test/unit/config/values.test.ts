import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatRetentionPolicy,
  formatSize,
  parseAbsolutePath,
  parseBool,
  parseConninfo,
  cronSchedule,
  parseCronSchedule,
  parseEnum,
  parseList,
  parseRetentionPolicy,
  parseSeconds,
  parseSize,
  parseUrl,
  parseWholeNumber,
} from '../../../src/config/values.ts';
import type { Parsed } from '../../../src/config/values.ts';

function value<T>(parsed: Parsed<T>): T {
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.problem);
  return parsed.value;
}

function problem<T>(parsed: Parsed<T>): string {
  assert.ok(!parsed.ok, `expected a problem, got ${JSON.stringify(parsed)}`);
  return parsed.problem;
}

describe('parseBool', () => {
  it('accepts on/off, true/false, yes/no, 1/0 in any case', () => {
    for (const t of ['on', 'ON', 'true', 'Yes', '1']) assert.equal(value(parseBool(t)), true, t);
    for (const f of ['off', 'False', 'no', '0']) assert.equal(value(parseBool(f)), false, f);
    assert.equal(problem(parseBool('enabled')), 'is not on or off');
  });
});

describe('parseWholeNumber', () => {
  it('checks digits and bounds', () => {
    assert.equal(value(parseWholeNumber('12', 0)), 12);
    assert.equal(problem(parseWholeNumber('two')), 'is not a whole number');
    assert.equal(problem(parseWholeNumber('1.5')), 'is not a whole number');
    assert.equal(problem(parseWholeNumber('-1', 0)), 'is less than the minimum, 0');
    assert.equal(problem(parseWholeNumber('9', 1, 8)), 'is more than the maximum, 8');
    assert.equal(problem(parseWholeNumber('99999999999999999999')), 'is too large');
  });
});

describe('parseSize', () => {
  it('reads bytes and binary units, however spelt', () => {
    assert.equal(value(parseSize('1048576')), 1048576);
    assert.equal(value(parseSize('64MiB')), 64 * 1024 * 1024);
    assert.equal(value(parseSize('16MB')), 16 * 1024 * 1024);
    assert.equal(value(parseSize('1 gib')), 1024 ** 3);
    assert.equal(value(parseSize('8k')), 8192);
  });

  it('rejects unknown units, fractions and sizes out of bounds', () => {
    assert.equal(problem(parseSize('64XB')), 'is not a size');
    assert.equal(problem(parseSize('1.5GiB')), 'is not a size');
    assert.equal(problem(parseSize('4MiB', 5 * 1024 * 1024)), 'is less than the minimum, 5MiB');
    assert.equal(problem(parseSize('6GiB', 0, 5 * 1024 ** 3)), 'is more than the maximum, 5GiB');
  });

  it('formats sizes in the largest exact binary unit', () => {
    assert.equal(formatSize(64 * 1024 * 1024), '64MiB');
    assert.equal(formatSize(1000), '1000 bytes');
    assert.equal(formatSize(2048), '2KiB');
  });
});

describe('parseSeconds', () => {
  it('reads seconds and PostgreSQL duration units, returning milliseconds', () => {
    assert.equal(value(parseSeconds('30')), 30_000);
    assert.equal(value(parseSeconds('30s')), 30_000);
    assert.equal(value(parseSeconds('500ms')), 500);
    assert.equal(value(parseSeconds('5min')), 300_000);
    assert.equal(value(parseSeconds('2h')), 7_200_000);
    assert.equal(value(parseSeconds('1d')), 86_400_000);
  });

  it('rejects other units and durations under the minimum', () => {
    assert.equal(problem(parseSeconds('5 fortnights')), 'is not a duration');
    assert.equal(problem(parseSeconds('-5')), 'is not a duration');
    assert.equal(problem(parseSeconds('500ms', 1)), 'is less than the minimum, 1s');
    assert.equal(value(parseSeconds('0', 0)), 0);
  });
});

describe('parseEnum', () => {
  it('matches case-insensitively and returns the canonical word', () => {
    assert.equal(value(parseEnum('ZSTD', ['none', 'zstd'])), 'zstd');
    assert.equal(problem(parseEnum('lz4', ['none', 'gzip', 'zstd'])), 'is not one of none, gzip, zstd');
  });
});

describe('parseList', () => {
  it('splits on commas and trims', () => {
    assert.deepEqual(value(parseList('disk-1, disk-2 ,disk-3')), ['disk-1', 'disk-2', 'disk-3']);
    assert.equal(problem(parseList('a,,b')), 'has an empty item');
    assert.equal(problem(parseList('a,')), 'has an empty item');
  });
});

describe('parseAbsolutePath', () => {
  it('accepts absolute paths only', () => {
    assert.equal(value(parseAbsolutePath('/var/lib/postgresql/17/main')), '/var/lib/postgresql/17/main');
    assert.equal(problem(parseAbsolutePath('data')), 'is not an absolute path');
  });
});

describe('parseUrl', () => {
  const stores = ['s3:', 'azure:', 'gs:', 'file:'];

  it('accepts each store scheme with a bucket or container', () => {
    for (const url of ['s3://bucket/prefix', 'azure://container/p', 'gs://bucket', 'file:///var/backups']) {
      assert.equal(value(parseUrl(url, stores)), url);
    }
  });

  it('turns a bare absolute path into a file:/// URL when file: is allowed', () => {
    assert.equal(value(parseUrl('/var/backups/cb', stores)), 'file:///var/backups/cb');
    assert.equal(value(parseUrl('/with space', stores)), 'file:///with%20space');
    assert.equal(problem(parseUrl('/var/x', ['http:', 'https:'])), 'is not a URL');
  });

  it('rejects relative paths, other schemes, credentials, queries and missing buckets', () => {
    assert.equal(problem(parseUrl('backups', stores)), 'is not a URL');
    assert.match(problem(parseUrl('ftp://host/x', stores)), /^has the scheme ftp: \(expected s3: azure: gs: file:\)$/);
    assert.equal(problem(parseUrl('s3://key:secret@bucket/p', stores)), 'contains credentials');
    assert.equal(problem(parseUrl('azure://c/p?sig=abc', stores)), 'has a query or fragment');
    assert.equal(problem(parseUrl('s3:///prefix', stores)), 'has no bucket or container');
    assert.equal(problem(parseUrl('file://server/share', stores)), 'names a host in a file: URL');
    assert.equal(problem(parseUrl('http://', ['http:', 'https:'])), 'is not a URL');
  });
});

describe('parseConninfo', () => {
  it('reads keyword=value pairs with libpq quoting', () => {
    const parsed = value(parseConninfo("host=10.0.0.5 user = barman dbname='my db' app=a\\ b"));
    assert.equal(parsed.form, 'keywords');
    if (parsed.form !== 'keywords') return;
    assert.equal(parsed.params.host, '10.0.0.5');
    assert.equal(parsed.params.user, 'barman');
    assert.equal(parsed.params.dbname, 'my db');
    assert.equal(parsed.params.app, 'a b');
  });

  it('unescapes \\\' and \\\\ inside quotes', () => {
    const parsed = value(parseConninfo("password='a\\'b\\\\c'"));
    assert.deepEqual(parsed, { form: 'keywords', params: { password: "a'b\\c" } });
  });

  it('accepts a postgresql:// URI as is', () => {
    assert.deepEqual(value(parseConninfo('postgresql://u@h1:5432,h2/db')), { form: 'uri', uri: 'postgresql://u@h1:5432,h2/db' });
  });

  it('rejects a keyword without "=", an unterminated quote and an empty string, without quoting the text', () => {
    const missing = problem(parseConninfo('host=h secretword'));
    assert.match(missing, /no "=" after the keyword at character 8/);
    assert.doesNotMatch(missing, /secretword/);
    assert.match(problem(parseConninfo("host=h password='abc")), /unterminated quoted value/);
    assert.equal(problem(parseConninfo('   ')), 'is empty');
  });
});

describe('parseRetentionPolicy', () => {
  it("reads Barman's two forms, case-insensitively, with or without the final S", () => {
    assert.deepEqual(value(parseRetentionPolicy('REDUNDANCY 3')), { kind: 'redundancy', count: 3 });
    assert.deepEqual(value(parseRetentionPolicy('recovery window of 7 days')), { kind: 'recovery-window', count: 7, unit: 'days' });
    assert.deepEqual(value(parseRetentionPolicy('RECOVERY  WINDOW OF 2 WEEK')), { kind: 'recovery-window', count: 2, unit: 'weeks' });
    assert.deepEqual(value(parseRetentionPolicy('Recovery Window Of 1 Months')), { kind: 'recovery-window', count: 1, unit: 'months' });
  });

  it('rejects other text and a count of 0', () => {
    assert.equal(problem(parseRetentionPolicy('7 DAYS')), 'is not a retention policy');
    assert.equal(problem(parseRetentionPolicy('RECOVERY WINDOW OF 7 YEARS')), 'is not a retention policy');
    assert.match(problem(parseRetentionPolicy('REDUNDANCY 0')), /at least 1/);
  });

  it('formats back to the canonical spelling', () => {
    assert.equal(formatRetentionPolicy({ kind: 'redundancy', count: 2 }), 'REDUNDANCY 2');
    assert.equal(formatRetentionPolicy({ kind: 'recovery-window', count: 7, unit: 'days' }), 'RECOVERY WINDOW OF 7 DAYS');
  });
});

describe('parseCronSchedule (croner)', () => {
  it('accepts the seed schedule and normalises spacing', () => {
    assert.equal(value(parseCronSchedule('0  3 * * *')), '0 3 * * *');
    assert.equal(value(parseCronSchedule('*/15 1-5/2,23 1,15 jan-mar SUN,7,mon-fri')), '*/15 1-5/2,23 1,15 jan-mar SUN,7,mon-fri');
  });

  it('fires where Vixie cron would: either day field matches when both are restricted', () => {
    const s = cronSchedule('0 3 13 * 5', 'UTC');
    // The 13th of November 2026 is a Friday; the 6th is a Friday; the 13th of December is a Sunday.
    const runs = s.nextRuns(4, new Date('2026-11-05T00:00:00Z')).map((d) => d.toISOString());
    assert.deepEqual(runs, ['2026-11-06T03:00:00.000Z', '2026-11-13T03:00:00.000Z', '2026-11-20T03:00:00.000Z', '2026-11-27T03:00:00.000Z']);
    assert.deepEqual(s.previousRuns(1, new Date('2026-12-13T04:00:00Z')).map((d) => d.toISOString()), ['2026-12-13T03:00:00.000Z']);
  });

  it('rejects the wrong field count and what croner rejects, with the hint', () => {
    assert.equal(problem(parseCronSchedule('0 3 * *')), 'has 4 fields, not 5');
    assert.equal(problem(parseCronSchedule('0 3 * * * *')), 'has 6 fields, not 5');
    for (const bad of ['60 3 * * *', '0 24 * * *', '0 3 0 * *', '0 3 * 13 *', '0 3 * * 8', '0 5-3 * * *', '0 3 * * @']) {
      assert.match(problem(parseCronSchedule(bad)) ?? '', /^is not a valid cron expression \(.+\)$/, bad);
    }
  });
});

