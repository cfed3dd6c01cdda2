// conninfo -> pg's ClientConfig, and how connection failures are classified. A refused port is real.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientConfigFor, connect, connectionFailure, conninfoKeywords } from '../../../src/pg/connection.ts';
import { CloudbarmanError } from '../../../src/core/errors.ts';

const opts = { applicationName: 'cloudbarman_backup', connectTimeoutMs: 5000 };

describe('conninfo', () => {
  it('maps libpq keywords', async () => {
    const c = await clientConfigFor("host=db1 port=5433 user=barman dbname='my db' password='p w\\'d' application_name=nightly options='-c work_mem=64MB'", opts);
    assert.equal(c.host, 'db1');
    assert.equal(c.port, 5433);
    assert.equal(c.user, 'barman');
    assert.equal(c.database, 'my db');
    assert.equal(c.password, "p w'd");
    assert.equal(c.application_name, 'nightly');
    assert.equal(c.options, '-c work_mem=64MB');
    assert.equal(c.connectionTimeoutMillis, 5000);
    assert.equal(c.fallback_application_name, 'cloudbarman_backup');
    assert.equal(c.ssl, undefined, 'no sslmode: pg reads PGSSLMODE');
  });

  it('maps postgresql:// URIs, percent-decoding and query parameters included', async () => {
    const c = await clientConfigFor('postgresql://bar%40man:s%3Acret@[::1]:6543/db%2F1?sslmode=require&connect_timeout=3&application_name=x', opts);
    assert.equal(c.user, 'bar@man');
    assert.equal(c.password, 's:cret');
    assert.equal(c.host, '::1');
    assert.equal(c.port, 6543);
    assert.equal(c.database, 'db/1');
    assert.equal(c.connectionTimeoutMillis, 3000);
    assert.deepEqual(c.ssl, { rejectUnauthorized: false });
    assert.deepEqual(conninfoKeywords('postgres:///postgres?host=/var/run/postgresql'), { dbname: 'postgres', host: '/var/run/postgresql' });
  });

  it('prefers hostaddr, and reads sslrootcert for verify-full', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cb-conn-'));
    try {
      await writeFile(join(dir, 'root.crt'), 'CERT');
      const c = await clientConfigFor(`host=db.example hostaddr=10.0.0.5 sslmode=verify-full sslrootcert=${join(dir, 'root.crt')}`, opts);
      assert.equal(c.host, '10.0.0.5');
      assert.deepEqual(c.ssl, { ca: 'CERT', rejectUnauthorized: true });
      assert.equal((await clientConfigFor('sslmode=disable', opts)).ssl, false);
      await assert.rejects(clientConfigFor(`sslmode=verify-ca sslrootcert=${join(dir, 'missing.crt')}`, opts), /cannot read sslrootcert .*missing\.crt: ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects what it cannot honour, as bad input', async () => {
    const cases: Array<[string, RegExp]> = [
      ['host=a,b', /several hosts/],
      ['service=pg1', /"service"/],
      ['hots=db1', /unknown keyword "hots"/],
      ['port=http', /not a port number/],
      ['sslmode=maybe', /sslmode "maybe"/],
      ['host', /no "=" after the keyword/],
    ];
    for (const [conninfo, message] of cases) {
      await assert.rejects(clientConfigFor(conninfo, opts), (err: unknown) => err instanceof CloudbarmanError && err.kind === 'bad-input' && message.test(err.message), conninfo);
    }
  });
});

describe('connection failures', () => {
  it('a refused port is unreachable (exit 2), naming host and port but never the password', async () => {
    // Take a free port, then close it: nothing listens there.
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    await new Promise<void>((r) => server.close(() => r()));
    await assert.rejects(connect(`host=127.0.0.1 port=${port} user=barman password=hunter2 dbname=postgres`, opts), (err: unknown) => {
      assert.ok(err instanceof CloudbarmanError);
      assert.equal(err.kind, 'unreachable');
      assert.match(err.message, new RegExp(`barman@127\\.0\\.0\\.1:${port}/postgres.*ECONNREFUSED`));
      assert.doesNotMatch(`${err.message} ${err.hint ?? ''}`, /hunter2/);
      return true;
    });
  });

  it('classifies server refusals as bad input', () => {
    const auth = connectionFailure(Object.assign(new Error('password authentication failed for user "barman"'), { code: '28P01' }), 'barman@db:5432/postgres');
    assert.equal(auth.kind, 'bad-input');
    assert.match(auth.hint ?? '', /pgpass/);
    assert.equal(connectionFailure(Object.assign(new Error('database "nope" does not exist'), { code: '3D000' }), 't').kind, 'bad-input');
    assert.equal(connectionFailure(new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string'), 't').kind, 'bad-input');
    assert.equal(connectionFailure(Object.assign(new Error('the database system is starting up'), { code: '57P03' }), 't').kind, 'unreachable');
    assert.equal(connectionFailure(new Error('Connection terminated due to connection timeout'), 't').kind, 'unreachable');
    assert.equal(connectionFailure(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), 't').kind, 'bad-input');
  });
});
