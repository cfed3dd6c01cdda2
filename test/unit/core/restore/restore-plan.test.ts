// planRestore: where each path goes (tablespaces, pg_control held back), and the manifest checks
// that make verified chunks a proof of every file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { BACKUP_FORMAT_VERSION, type BackupInfo } from '../../../../src/core/catalog/backup-info.ts';
import type { Manifest, ManifestFile } from '../../../../src/core/catalog/manifest.ts';
import { CloudbarmanError } from '../../../../src/core/errors.ts';
import { EMPTY_SHA256, parseRelocations, planRestore, type PlanInput } from '../../../../src/core/restore/restore-plan.ts';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

function info(tablespaces: BackupInfo['tablespaces'] = [], pgVersion = 170000): BackupInfo {
  return {
    format_version: BACKUP_FORMAT_VERSION, id: '20261120T100000Z', server: 'pg1', status: 'DONE', method: 'local', label: 'x',
    begin_time: '2026-11-20T09:59:00Z', end_time: '2026-11-20T10:00:00Z', begin_lsn: '0/2000028', end_lsn: '0/2000100',
    begin_wal: null, end_wal: null, timeline: 1, size_bytes: 0, stored_bytes: 0, file_count: 0, part_count: 0, compression: 'none',
    pg_version: pgVersion, system_identifier: null, data_checksums: null, wal_segment_size: null, tablespaces, error: null,
    cloudbarman_version: '0.1.0', hostname: 'h',
  };
}

/** pg_control (8 bytes, part 1) and base/1/1234 split over parts 0 and 1, a file in the tablespace, an empty file. */
function manifest(extra: ManifestFile[] = []): Manifest {
  return {
    format_version: BACKUP_FORMAT_VERSION, backup_id: '20261120T100000Z', compression: 'none',
    directories: [{ path: 'global', mode: 0o700 }, { path: 'base', mode: 0o700 }, { path: 'base/1', mode: 0o750 }, { path: 'pg_tblspc', mode: 0o700 }, { path: 'pg_tblspc/16400', mode: 0o700 }],
    files: [
      { path: 'base/1/1234', size: 10, mode: 0o600, mtime: '2026-11-20T09:00:00Z', chunks: [
        { part: 1, partOffset: 0, fileOffset: 6, length: 4, sha256: sha('7890') },
        { part: 0, partOffset: 0, fileOffset: 0, length: 6, sha256: sha('123456') },
      ] },
      { path: 'pg_tblspc/16400/PG_17_1/5/99', size: 2, mode: 0o600, mtime: '2026-11-20T09:00:00Z', sha256: sha('ab'), chunks: [{ part: 0, partOffset: 6, fileOffset: 0, length: 2, sha256: sha('ab') }] },
      { path: 'global/pg_control', size: 8, mode: 0o600, mtime: '2026-11-20T09:00:00Z', sha256: sha('CCCCCCCC'), chunks: [{ part: 1, partOffset: 4, fileOffset: 0, length: 8, sha256: sha('CCCCCCCC') }] },
      { path: 'base/1/empty', size: 0, mode: 0o600, mtime: '2026-11-20T09:00:00Z', sha256: EMPTY_SHA256, chunks: [] },
      ...extra,
    ],
    parts: [{ name: 'data/000000', rawSize: 8, storedSize: 8, sha256: 'x' }, { name: 'data/000001', rawSize: 12, storedSize: 12, sha256: 'y' }],
  };
}

const SPC = [{ name: 'extra', oid: 16400, location: '/srv/spc' }];

function input(overrides: Partial<PlanInput> = {}): PlanInput {
  return { server: 'pg1', backup: info(SPC), manifest: manifest(), dest: '/restore/data', relocations: new Map(), ...overrides };
}

function integrity(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof CloudbarmanError && err.kind === 'integrity' && message.test(err.message));
}

function badInput(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && message.test(err.message));
}

test('layout: data files under DEST, tablespace files at the location, pg_control held back, pg_wal added', () => {
  const plan = planRestore(input());
  assert.deepEqual(plan.files.map((f) => f.local), [
    '/restore/data/base/1/1234',
    '/srv/spc/PG_17_1/5/99',
    '/restore/data/global/pg_control.cloudbarman_incomplete',
    '/restore/data/base/1/empty',
  ]);
  assert.deepEqual(plan.pgControl, ['/restore/data/global/pg_control.cloudbarman_incomplete', '/restore/data/global/pg_control']);
  assert.deepEqual(plan.directories.map((d) => [d.local, d.mode.toString(8)]), [
    ['/srv/spc', '700'],
    ['/restore/data/base', '700'],
    ['/restore/data/global', '700'],
    ['/restore/data/pg_tblspc', '700'],
    ['/restore/data/pg_wal', '700'],
    ['/srv/spc/PG_17_1', '700'],
    ['/restore/data/base/1', '750'],
    ['/restore/data/pg_wal/archive_status', '700'],
    ['/restore/data/pg_wal/summaries', '700'],
    ['/srv/spc/PG_17_1/5', '700'],
  ]);
  assert.deepEqual(plan.links, [['/restore/data/pg_tblspc/16400', '/srv/spc']]);
  assert.equal(plan.tablespaceMap, '16400 /srv/spc\n');
  assert.deepEqual(plan.parts.map((p) => [p.key, p.chunks.map((c) => `${c.file}@${c.fileOffset}`)]), [
    ['pg1/base/20261120T100000Z/data/000000', ['0@0', '1@0']],
    ['pg1/base/20261120T100000Z/data/000001', ['0@6', '2@0']],
  ]);
  assert.equal(plan.rawBytes, 20);
});

test('PostgreSQL 15 and 16 get no pg_wal/summaries', () => {
  const plan = planRestore(input({ backup: info(SPC, 160004) }));
  assert.ok(!plan.directories.some((d) => d.local.endsWith('summaries')));
});

test('relocation: --tablespace NAME:PATH moves the files, the link and the map', () => {
  const plan = planRestore(input({ relocations: parseRelocations(['extra:/mnt/new spc/'], '/') }));
  assert.equal(plan.files[1]?.local, '/mnt/new spc/PG_17_1/5/99');
  assert.deepEqual(plan.links, [['/restore/data/pg_tblspc/16400', '/mnt/new spc']]);
  assert.equal(plan.tablespaceMap, '16400 /mnt/new spc\n');
  assert.deepEqual(plan.tablespaces, [{ name: 'extra', oid: 16400, original: '/srv/spc', location: '/mnt/new spc', relocated: true, inPlace: false }]);
});

test('tablespace_map escapes backslashes and line breaks as PostgreSQL does', () => {
  const plan = planRestore(input({ relocations: new Map([['extra', '/mnt/a\\b']]) }));
  assert.equal(plan.tablespaceMap, '16400 /mnt/a\\\\b\n');
});

test('an in-place tablespace stays inside the data directory, with no link and no map', () => {
  const plan = planRestore(input({ backup: info([{ name: 'inplace', oid: 16400, location: 'pg_tblspc/16400' }]) }));
  assert.equal(plan.files[1]?.local, '/restore/data/pg_tblspc/16400/PG_17_1/5/99');
  assert.deepEqual(plan.links, []);
  assert.equal(plan.tablespaceMap, undefined);
  badInput(() => planRestore(input({ backup: info([{ name: 'inplace', oid: 16400, location: 'pg_tblspc/16400' }]), relocations: new Map([['inplace', '/x']]) })), /in-place tablespace/);
});

test('relocation requests that cannot work are bad input', () => {
  badInput(() => planRestore(input({ relocations: new Map([['nosuch', '/x']]) })), /--tablespace nosuch: the backup has no tablespace of that name/);
  badInput(() => planRestore(input({ relocations: new Map([['extra', '/restore']]) })), /contains the destination/);
  const two = info([...SPC, { name: 'other', oid: 16401, location: '/srv/other' }]);
  badInput(() => planRestore(input({ backup: two, relocations: new Map([['other', '/srv/spc']]) })), /both go to \/srv\/spc/);
  badInput(() => planRestore(input({ dest: 'relative/data' })), /not an absolute path/);
});

test('parseRelocations splits at the first colon and resolves relative paths', () => {
  assert.deepEqual([...parseRelocations(['a:/x:y', 'b:rel/dir'], '/work')], [['a', '/x:y'], ['b', '/work/rel/dir']]);
  badInput(() => parseRelocations(['nocolon'], '/'), /is not NAME:PATH/);
  badInput(() => parseRelocations([':/x'], '/'), /is not NAME:PATH/);
  badInput(() => parseRelocations(['a:/x', 'a:/y'], '/'), /given twice/);
});

const file = (path: string, chunks: ManifestFile['chunks'], size = chunks.reduce((n, c) => n + c.length, 0)): ManifestFile =>
  ({ path, size, mode: 0o600, mtime: '2026-11-20T09:00:00Z', chunks });

test('a damaged or hostile manifest is an integrity error before anything is written', () => {
  const m = (mutate: (x: Manifest) => void): Manifest => {
    const x = manifest();
    mutate(x);
    return x;
  };
  integrity(() => planRestore(input({ manifest: m((x) => x.files.push(file('../../etc/passwd', []))) })), /"..\/..\/etc\/passwd", which is not inside the data directory/);
  integrity(() => planRestore(input({ manifest: m((x) => x.files.push(file('/etc/passwd', []))) })), /not inside the data directory/);
  integrity(() => planRestore(input({ manifest: m((x) => x.directories.push({ path: 'base/../../x', mode: 0o700 })) })), /not inside the data directory/);
  integrity(() => planRestore(input({ manifest: m((x) => { x.files = x.files.filter((f) => f.path !== 'global/pg_control'); x.parts[1] = { name: 'data/000001', rawSize: 4, storedSize: 4, sha256: 'y' }; }) })), /no global\/pg_control/);
  integrity(() => planRestore(input({ manifest: m((x) => { const f = x.files[0]; if (f) f.size = 11; }) })), /base\/1\/1234: its chunks hold 10 bytes, its size is 11/);
  integrity(() => planRestore(input({ manifest: m((x) => { const c = x.files[0]?.chunks[1]; if (c) c.fileOffset = 1; }) })), /do not cover it contiguously at offset 0/);
  integrity(() => planRestore(input({ manifest: m((x) => { const p = x.parts[0]; if (p) p.rawSize = 9; }) })), /part data\/000000: its chunks hold 8 bytes, its raw size is 9/);
  integrity(() => planRestore(input({ manifest: m((x) => { const c = x.files[1]?.chunks[0]; if (c) c.partOffset = 7; }) })), /do not cover its bytes contiguously at offset 6/);
  integrity(() => planRestore(input({ manifest: m((x) => { const c = x.files[1]?.chunks[0]; if (c) c.part = 5; }) })), /refers to part 5, which does not exist/);
  integrity(() => planRestore(input({ manifest: m((x) => { const f = x.files[1]; if (f) f.sha256 = sha('zz'); }) })), /its one chunk's SHA-256 differs/);
  integrity(() => planRestore(input({ manifest: m((x) => { const f = x.files[3]; if (f) f.sha256 = sha('zz'); }) })), /empty but its SHA-256/);
  integrity(() => planRestore(input({ manifest: m((x) => { const f = x.files[3]; if (f) x.files.push({ ...f }); }) })), /listed twice/);
  integrity(() => planRestore(input({ manifest: m((x) => { const p = x.parts[0]; if (p) p.name = '../data/000000'; }) })), /unexpected name/);
  integrity(() => planRestore(input({ manifest: m((x) => { x.backup_id = '20261121T000000Z'; }) })), /the manifest is for backup 20261121T000000Z/);
});
