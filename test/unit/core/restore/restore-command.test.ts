// restore_command: the launcher by absolute path, -c for the config file, flags for settings that came
// from flags or the environment (never secrets), shell quoting and PostgreSQL's % escaping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { loadServerConfig } from '../../../../src/config/load.ts';
import { shellCommand, shellQuote, walRestoreArgv } from '../../../../src/core/restore/restore-command.ts';

const LAUNCHER = '/opt/cloudbarman/bin/cloudbarman';

test('config file only: -c FILE and nothing else', async () => {
  const cfg = await loadServerConfig('pg1', {
    configPath: '/etc/cb.conf', env: {}, flags: {},
    readFile: async () => '[pg1]\ndestination = s3://bucket/prefix\nendpoint_url = http://127.0.0.1:9000\nconninfo = host=db password=secret\n',
  });
  assert.deepEqual(walRestoreArgv(cfg, LAUNCHER), [LAUNCHER, '-c', '/etc/cb.conf', 'wal-restore', 'pg1', '%f', '%p']);
});

test('flags and environment settings travel as --option=value; secrets, defaults and --jobs do not', async () => {
  const cfg = await loadServerConfig('pg1', {
    defaultConfigPath: '/nonexistent/cloudbarman.conf',
    env: { CLOUDBARMAN_ENDPOINT_URL: 'http://127.0.0.1:9000', CLOUDBARMAN_RETRY_TIMEOUT: '5s', CLOUDBARMAN_CONNINFO: 'password=secret' },
    flags: { destination: 's3://bucket/pre fix', s3_force_path_style: 'on', parallel_jobs: '4', part_size: '64MiB' },
    readFile: async () => { throw Object.assign(new Error('missing'), { code: 'ENOENT' }); },
  });
  const argv = walRestoreArgv(cfg, LAUNCHER);
  assert.deepEqual(argv, [
    LAUNCHER, 'wal-restore',
    '--destination=s3://bucket/pre fix',
    '--endpoint-url=http://127.0.0.1:9000',
    '--s3-force-path-style=on',
    `--part-size=${64 * 1024 * 1024}`,
    '--retry-timeout=5000ms',
    'pg1', '%f', '%p',
  ]);
  assert.ok(!argv.join(' ').includes('secret'));
});

test('shellCommand quotes for /bin/sh and doubles % for PostgreSQL, keeping %f %p', () => {
  assert.equal(shellQuote('/plain/path-1.conf'), '/plain/path-1.conf');
  assert.equal(shellQuote('/with space'), "'/with space'");
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  const cmd = shellCommand(['/opt/cb dir/cloudbarman', '-c', "/etc/it's 100%.conf", 'wal-restore', 'pg1', '%f', '%p']);
  assert.equal(cmd, "'/opt/cb dir/cloudbarman' -c '/etc/it'\\''s 100%%.conf' wal-restore pg1 %f %p");
  assert.throws(() => shellQuote('a\nb'), /line break/);
});

test('the quoted command really runs as the intended argv under /bin/sh (after PostgreSQL expands %)', () => {
  const argv = ['/bin/echo', "it's", 'a b', '$HOME', '`x`', '100%', '%f', '%p'];
  // What PostgreSQL does before running it: %f and %p replaced, %% turned into %.
  const expanded = shellCommand(argv).replaceAll('%f', '000000010000000000000003').replaceAll('%p', 'pg_wal/RECOVERYXLOG').replaceAll('%%', '%');
  const r = spawnSync('/bin/sh', ['-c', expanded], { encoding: 'utf8' });
  assert.equal(r.stdout, "it's a b $HOME `x` 100% 000000010000000000000003 pg_wal/RECOVERYXLOG\n");
});

test('a relative launcher path is refused', async () => {
  const cfg = await loadServerConfig('pg1', { env: {}, flags: { destination: '/tmp/store' }, defaultConfigPath: '/nonexistent' });
  assert.throws(() => walRestoreArgv(cfg, 'bin/cloudbarman'), /is not absolute/);
});
