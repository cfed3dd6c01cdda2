// PostgreSQL's basebackup.c exclusion rules, as tables.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { excludedRelationFiles, isDatabaseDirectory, isExcludedName, parseRelationFileName } from '../../../../src/core/backup/exclusions.ts';

describe('isExcludedName', () => {
  const cases: Array<[string, boolean]> = [
    ['postmaster.pid', true], ['postmaster.opts', true], ['backup_label', true], ['tablespace_map', true],
    ['backup_manifest', true], ['postgresql.auto.conf.tmp', true], ['current_logfiles.tmp', true],
    ['pg_internal.init', true], ['pg_internal.init.12345', true], ['pgsql_tmp', true], ['pgsql_tmp1234.0', true],
    ['postgresql.auto.conf', false], ['PG_VERSION', false], ['pg_control', false], ['16384', false], ['backup_label.old', false],
    ['current_logfiles', false], ['pg_hba.conf', false],
  ];
  for (const [name, excluded] of cases) it(`${name}: ${excluded ? 'skipped' : 'kept'}`, () => assert.equal(isExcludedName(name), excluded));
});

describe('relation files', () => {
  it('parses forks, segments and temporary relations', () => {
    assert.deepEqual(parseRelationFileName('16384'), { relNumber: '16384', fork: 'main', temporary: false });
    assert.deepEqual(parseRelationFileName('16384.12'), { relNumber: '16384', fork: 'main', temporary: false });
    assert.deepEqual(parseRelationFileName('16384_fsm'), { relNumber: '16384', fork: 'fsm', temporary: false });
    assert.deepEqual(parseRelationFileName('16384_vm.1'), { relNumber: '16384', fork: 'vm', temporary: false });
    assert.deepEqual(parseRelationFileName('16384_init'), { relNumber: '16384', fork: 'init', temporary: false });
    assert.deepEqual(parseRelationFileName('t3_16390'), { relNumber: '16390', fork: 'main', temporary: true });
    assert.equal(parseRelationFileName('PG_VERSION'), undefined);
    assert.equal(parseRelationFileName('pg_filenode.map'), undefined);
    assert.equal(parseRelationFileName('16384_foo'), undefined);
  });

  it('drops every fork of an unlogged relation but its init fork, and temporary relations', () => {
    const names = ['16384', '16384.1', '16384_fsm', '16384_vm', '16384_init', '16390', '16390_fsm', 't3_16400', 't3_16400_fsm', 'PG_VERSION', 'pg_filenode.map'];
    assert.deepEqual([...excludedRelationFiles(names)].sort(), ['16384', '16384.1', '16384_fsm', '16384_vm', 't3_16400', 't3_16400_fsm']);
  });

  it('applies only in database directories', () => {
    assert.equal(isDatabaseDirectory('base/5'), true);
    assert.equal(isDatabaseDirectory('pg_tblspc/16385/PG_15_202209061/5'), true);
    assert.equal(isDatabaseDirectory('global'), false);
    assert.equal(isDatabaseDirectory('base'), false);
    assert.equal(isDatabaseDirectory('base/5/extra'), false);
  });
});
