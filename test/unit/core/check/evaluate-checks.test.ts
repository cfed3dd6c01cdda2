import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archiveCommandIsOurs, evaluateChecks } from '../../../../src/core/check/evaluate-checks.ts';
import type { CheckConfig, CheckFacts, PgFacts } from '../../../../src/core/check/evaluate-checks.ts';

const NOW = new Date('2026-11-22T12:00:00Z');
const CONFIG: CheckConfig = { server: 'pg1', streamingArchiver: false, streamingArchiverName: 'cloudbarman_receive_wal', minimumRedundancy: 1, lastBackupMaximumAgeMs: 86_400_000 };
const PG: PgFacts = {
  versionNum: 170004, role: 'postgres', superuser: true, mayBackup: true, replication: true, walLevel: 'replica', archiveMode: 'on',
  archiveCommand: '/opt/cloudbarman/bin/cloudbarman wal-upload pg1 %p',
  archiver: { archivedCount: 10, failedCount: 0, lastArchivedTime: '2026-11-22T11:59:00.000Z', lastFailedWal: null, lastFailedTime: null },
  replicationClients: [],
};
const GOOD: CheckFacts = {
  pg: PG, storeReachable: true, storeWritable: true,
  catalog: { done: [{ id: '20261122T030000Z', endTime: '2026-11-22T03:10:00Z' }], failed: [] },
};

function verdicts(config: CheckConfig, facts: CheckFacts): Record<string, boolean> {
  return Object.fromEntries(evaluateChecks(config, facts, NOW).map((c) => [c.name, c.ok]));
}

describe('evaluateChecks', () => {
  it('a healthy archiving server passes every check that applies, and only those', () => {
    assert.deepEqual(verdicts(CONFIG, GOOD), {
      PostgreSQL: true, 'superuser or backup privileges': true, wal_level: true, archive_mode: true, archive_command: true,
      'continuous archiving': true, 'object store': true, 'object store writable': true, 'backup maximum age': true,
      'minimum redundancy requirements': true, 'failed backups': true,
    });
  });

  const broken: Array<{ name: string; check: string; config?: Partial<CheckConfig>; facts: Partial<CheckFacts>; pg?: Partial<PgFacts>; detail: RegExp }> = [
    { name: 'unreachable server', check: 'PostgreSQL', facts: { pg: { error: 'cannot connect to PostgreSQL at 127.0.0.1:1' } }, detail: /cannot connect/ },
    { name: 'PostgreSQL 14', check: 'PostgreSQL', facts: {}, pg: { versionNum: 140010 }, detail: /older than 15/ },
    { name: 'no backup privileges', check: 'superuser or backup privileges', facts: {}, pg: { superuser: false, mayBackup: false, role: 'barman' }, detail: /barman may not run pg_backup_start/ },
    { name: 'wal_level minimal', check: 'wal_level', facts: {}, pg: { walLevel: 'minimal' }, detail: /set wal_level = replica/ },
    { name: 'archive_mode off', check: 'archive_mode', facts: {}, pg: { archiveMode: 'off' }, detail: /set archive_mode = on/ },
    { name: 'archive_command of another tool', check: 'archive_command', facts: {}, pg: { archiveCommand: 'barman-cloud-wal-archive s3://b pg1 %p' }, detail: /does not run "cloudbarman wal-upload pg1 %p"/ },
    { name: 'archive_command for another server', check: 'archive_command', facts: {}, pg: { archiveCommand: 'cloudbarman wal-upload pg2 %p' }, detail: /does not run/ },
    {
      name: 'archiving failing now', check: 'continuous archiving', facts: {},
      pg: { archiver: { archivedCount: 3, failedCount: 5, lastArchivedTime: '2026-11-22T10:00:00.000Z', lastFailedWal: '000000010000000000000009', lastFailedTime: '2026-11-22T11:00:00.000Z' } },
      detail: /the last attempt failed: 000000010000000000000009/,
    },
    { name: 'no slot', check: 'replication slot', config: { streamingArchiver: true, slotName: 'cb' }, facts: {}, detail: /slot cb does not exist: run cloudbarman receive-wal pg1 --create-slot/ },
    { name: 'a logical slot', check: 'replication slot', config: { streamingArchiver: true, slotName: 'cb' }, facts: {}, pg: { slot: { type: 'logical', active: false, restartLsn: null } }, detail: /not physical/ },
    { name: 'receive-wal not running', check: 'receive-wal running', config: { streamingArchiver: true }, facts: {}, detail: /no walsender for application_name cloudbarman_receive_wal/ },
    { name: 'no REPLICATION', check: 'replication privilege', config: { streamingArchiver: true }, facts: {}, pg: { superuser: false, replication: false, role: 'barman' }, detail: /ALTER ROLE barman REPLICATION/ },
    {
      name: 'a refused replication connection', check: 'streaming connection', config: { streamingArchiver: true },
      facts: { streaming: { error: 'no pg_hba.conf entry for replication connection from host "10.0.0.9", user "replica"' } },
      detail: /streaming_conninfo: no pg_hba\.conf entry for replication connection/,
    },
    {
      name: 'a refused replication connection, though the conninfo role has REPLICATION', check: 'replication privilege', config: { streamingArchiver: true },
      facts: { streaming: { error: 'role "replica" is not permitted to log in' } }, detail: /not verified: the replication connection on streaming_conninfo failed/,
    },
    { name: 'store down', check: 'object store', facts: { storeReachable: { error: 'connect ECONNREFUSED' }, storeWritable: { error: 'not tried' } }, detail: /ECONNREFUSED/ },
    { name: 'store read-only', check: 'object store writable', facts: { storeWritable: { error: 'access denied' } }, detail: /access denied/ },
    { name: 'no backup at all', check: 'backup maximum age', facts: { catalog: { done: [], failed: [] } }, detail: /no DONE backup/ },
    { name: 'the newest backup is too old', check: 'backup maximum age', facts: { catalog: { done: [{ id: 'a', endTime: '2026-11-20T03:00:00Z' }], failed: [] } }, detail: /ended 2 d 9 h ago/ },
    { name: 'below minimum redundancy', check: 'minimum redundancy requirements', config: { minimumRedundancy: 2 }, facts: {}, detail: /have 1 DONE backup, expected at least 2/ },
    { name: 'a failed backup', check: 'failed backups', facts: { catalog: { done: [{ id: 'a', endTime: '2026-11-22T03:10:00Z' }], failed: ['20261121T030000Z'] } }, detail: /there is 1 failed backup \(20261121T030000Z\)/ },
  ];
  for (const b of broken) {
    it(`fails "${b.check}" on ${b.name}`, () => {
      const facts: CheckFacts = { ...GOOD, ...b.facts, ...(b.pg === undefined ? {} : { pg: { ...PG, ...b.pg } }) };
      const results = evaluateChecks({ ...CONFIG, ...b.config }, facts, NOW);
      const result = results.find((r) => r.name === b.check);
      assert.ok(result, `no "${b.check}" check among ${results.map((r) => r.name).join(', ')}`);
      assert.equal(result.ok, false);
      assert.match(result.detail, b.detail);
    });
  }

  it('a streaming-only server (archive_mode off) is not asked for archive_command', () => {
    const names = evaluateChecks({ ...CONFIG, streamingArchiver: true, slotName: 'cb' }, {
      ...GOOD, pg: { ...PG, archiveMode: 'off', slot: { type: 'physical', active: true, restartLsn: '0/3000000' }, replicationClients: [{ applicationName: 'cloudbarman_receive_wal', syncState: 'async' }] },
    }, NOW);
    assert.deepEqual(names.filter((c) => !c.ok), []);
    assert.ok(!names.some((c) => c.name === 'archive_command'));
    assert.ok(names.some((c) => c.name === 'receive-wal running' && /async/.test(c.detail)));
  });

  it('a replication connection accepted on streaming_conninfo proves the privilege of its role, not of conninfo\'s', () => {
    const results = evaluateChecks({ ...CONFIG, streamingArchiver: true }, {
      ...GOOD, streaming: { target: 'replica@10.0.0.5:5432', systemId: '7300000000000000001', timeline: 3 },
      pg: { ...PG, superuser: false, replication: false, role: 'barman', replicationClients: [{ applicationName: 'cloudbarman_receive_wal', syncState: 'async' }] },
    }, NOW);
    const by = Object.fromEntries(results.map((r) => [r.name, r]));
    assert.equal(by['streaming connection']?.ok, true);
    assert.match(by['streaming connection']?.detail ?? '', /replica@10\.0\.0\.5:5432 \(replication\): system identifier 7300000000000000001, timeline 3/);
    assert.equal(by['replication privilege']?.ok, true);
    assert.match(by['replication privilege']?.detail ?? '', /^replica may stream WAL/);
  });

  it('recognises cloudbarman in archive_command however it is spelled', () => {
    assert.equal(archiveCommandIsOurs("'/opt/cloudbarman/bin/cloudbarman' -c /etc/cb.conf wal-upload pg1 %p", 'pg1'), true);
    assert.equal(archiveCommandIsOurs('cloudbarman wal-upload pg1 %p', 'pg1'), true);
    assert.equal(archiveCommandIsOurs('cloudbarman wal-upload pg10 %p', 'pg1'), false);
    assert.equal(archiveCommandIsOurs('cloudbarman wal-restore pg1 %f %p', 'pg1'), false);
    assert.equal(archiveCommandIsOurs('/bin/true cloudbarman wal-upload pg1', 'pg1'), false);
  });
});
