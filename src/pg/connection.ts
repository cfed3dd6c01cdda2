/**
 * SQL connections from a libpq connection string. Both libpq forms are accepted (keyword=value
 * pairs and postgresql:// URIs) and mapped onto `pg`'s ClientConfig, so conninfo reads the same
 * as in Barman. PGPASSWORD, PGUSER... and ~/.pgpass are honoured by `pg` itself.
 *
 * Failures are classified here, at the edge: the server could not be reached (exit 2) or it
 * refused us (exit 3: wrong password, unknown role or database, TLS settings). Messages name the
 * user, host, port and database, never the password.
 */
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import type { ClientConfig } from 'pg';
import { parseConninfo } from '../config/values.ts';
import { CloudbarmanError, badInput } from '../core/errors.ts';

/** How to open a connection. */
export interface ConnectOptions {
  /** Shown in pg_stat_activity unless the conninfo sets application_name. */
  applicationName: string;
  connectTimeoutMs: number;
}

/** libpq keywords that are honoured. */
const MAPPED = new Set([
  'host', 'hostaddr', 'port', 'user', 'password', 'dbname', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey',
  'connect_timeout', 'application_name', 'fallback_application_name', 'options', 'client_encoding',
]);

/**
 * libpq keywords accepted and left to their defaults: they tune what `pg` does anyway (keepalives)
 * or have no meaning for one plain SQL session. Anything else is a typo, rejected as libpq would.
 */
const IGNORED = new Set([
  'keepalives', 'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout', 'target_session_attrs',
  'gssencmode', 'gsslib', 'krbsrvname', 'channel_binding', 'sslcompression', 'sslpassword', 'sslcrl', 'sslcrldir', 'sslsni',
  'ssl_min_protocol_version', 'ssl_max_protocol_version', 'sslnegotiation', 'sslcertmode', 'requirepeer', 'require_auth',
  'passfile', 'replication', 'load_balance_hosts', 'min_protocol_version', 'max_protocol_version', 'gssdelegation',
]);

/** Connection keywords from either conninfo form (URI parameters become keywords, as in libpq). */
export function conninfoKeywords(conninfo: string): Record<string, string> {
  const parsed = parseConninfo(conninfo);
  if (!parsed.ok) throw badInput(`conninfo ${parsed.problem}`, parsed.hint);
  if (parsed.value.form === 'keywords') return { ...parsed.value.params };
  let url: URL;
  try {
    url = new URL(parsed.value.uri);
  } catch (err) {
    throw new CloudbarmanError('bad-input', 'conninfo is not a valid postgresql:// URI', {
      hint: 'use postgresql://user@host:port/dbname, or keyword=value pairs; several hosts in one URI are not supported', cause: err,
    });
  }
  const params: Record<string, string> = {};
  const set = (key: string, value: string): void => {
    if (value !== '') params[key] = decodeURIComponent(value);
  };
  set('user', url.username);
  set('password', url.password);
  set('host', url.hostname.replace(/^\[(.*)\]$/, '$1'));
  set('port', url.port);
  set('dbname', url.pathname.replace(/^\//, ''));
  for (const [key, value] of url.searchParams) params[key] = value;
  return params;
}

/** The ClientConfig for a conninfo; reads the TLS files it names. */
export async function clientConfigFor(conninfo: string, opts: ConnectOptions): Promise<ClientConfig> {
  const params = conninfoKeywords(conninfo);
  const unknown = Object.keys(params).filter((k) => !MAPPED.has(k) && !IGNORED.has(k));
  if (unknown.includes('service')) {
    throw badInput('conninfo uses "service", which cloudbarman does not read (pg_service.conf)', 'give host, port, user and dbname in conninfo instead');
  }
  if (unknown.length > 0) {
    throw badInput(`conninfo has unknown keyword${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}`, 'check the spelling against libpq\'s connection parameters');
  }
  const host = params['hostaddr'] ?? params['host'];
  if (host?.includes(',') === true || params['port']?.includes(',') === true) {
    throw badInput('conninfo names several hosts, which cloudbarman does not support', 'give the one server this backup reads (backup_method local runs on its host)');
  }
  const config: ClientConfig = {
    fallback_application_name: opts.applicationName,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    keepAlive: true,
  };
  if (host !== undefined) config.host = host;
  if (params['port'] !== undefined) {
    const port = Number(params['port']);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw badInput(`conninfo port "${params['port']}" is not a port number`);
    config.port = port;
  }
  if (params['user'] !== undefined) config.user = params['user'];
  if (params['password'] !== undefined) config.password = params['password'];
  if (params['dbname'] !== undefined) config.database = params['dbname'];
  if (params['application_name'] !== undefined) config.application_name = params['application_name'];
  if (params['fallback_application_name'] !== undefined && params['application_name'] === undefined) {
    config.fallback_application_name = params['fallback_application_name'];
  }
  if (params['options'] !== undefined) config.options = params['options'];
  if (params['client_encoding'] !== undefined) config.client_encoding = params['client_encoding'];
  if (params['connect_timeout'] !== undefined) {
    const seconds = Number(params['connect_timeout']);
    if (!Number.isInteger(seconds) || seconds < 0) throw badInput(`conninfo connect_timeout "${params['connect_timeout']}" is not a whole number of seconds`);
    // libpq: 0 means wait forever; at least 2 s otherwise.
    config.connectionTimeoutMillis = seconds === 0 ? 0 : Math.max(2, seconds) * 1000;
  }
  const ssl = await sslConfig(params);
  if (ssl !== undefined) config.ssl = ssl;
  return config;
}

/**
 * libpq's sslmode on `pg`, which cannot fall back from TLS to plain text: allow and prefer
 * therefore connect without TLS. Unset leaves `pg` to read PGSSLMODE.
 */
async function sslConfig(params: Record<string, string>): Promise<ClientConfig['ssl']> {
  const mode = params['sslmode'];
  if (mode === undefined) return undefined;
  const files = async (): Promise<{ ca?: string; cert?: string; key?: string }> => {
    const out: { ca?: string; cert?: string; key?: string } = {};
    for (const [keyword, field] of [['sslrootcert', 'ca'], ['sslcert', 'cert'], ['sslkey', 'key']] as const) {
      const path = params[keyword];
      if (path === undefined) continue;
      out[field] = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new CloudbarmanError('bad-input', `cannot read ${keyword} ${path}: ${err.code ?? err.message}`, { cause: err });
      });
    }
    return out;
  };
  switch (mode) {
    case 'disable':
    case 'allow':
    case 'prefer':
      return false;
    case 'require': {
      // As libpq: require with a root certificate verifies the chain (verify-ca).
      const f = await files();
      return f.ca === undefined ? { ...f, rejectUnauthorized: false } : { ...f, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    }
    case 'verify-ca':
      return { ...(await files()), rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ...(await files()), rejectUnauthorized: true };
    default:
      throw badInput(`conninfo sslmode "${mode}" is not one of disable, allow, prefer, require, verify-ca, verify-full`);
  }
}

/** "user@host:port/dbname" for messages: what a client tries (after PG* defaults), without the password. */
export function describeTarget(client: Pick<pg.Client, 'host' | 'port' | 'user' | 'database'>): string {
  const host = client.host;
  const user = client.user === undefined ? '' : `${client.user}@`;
  const db = client.database ?? '';
  if (host.startsWith('/')) return `${user}${host}/.s.PGSQL.${client.port}${db === '' ? '' : ` (database ${db})`}`;
  return `${user}${host.includes(':') ? `[${host}]` : host}:${client.port}${db === '' ? '' : `/${db}`}`;
}

/** Opens a connection; failures become CloudbarmanErrors ('unreachable' or 'bad-input'). */
export async function connect(conninfo: string, opts: ConnectOptions): Promise<pg.Client> {
  const config = await clientConfigFor(conninfo, opts);
  const client = new pg.Client(config);
  try {
    await client.connect();
  } catch (err) {
    // A failed connect can still emit 'error' on its socket; nothing will read it.
    client.on('error', () => undefined);
    await client.end().catch(() => undefined);
    throw connectionFailure(err, describeTarget(client));
  }
  return client;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ENOENT']);
// invalid_authorization_specification, invalid_password, invalid_catalog_name
const REFUSED_STATES = new Set(['28000', '28P01', '3D000']);
const TLS_CODE = /^(ERR_TLS_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|ERR_SSL_)/;

/** Classifies a failure to connect to `target` ("user@host:port/db"). */
export function connectionFailure(err: unknown, target: string): CloudbarmanError {
  if (err instanceof CloudbarmanError) return err;
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const code = e.code ?? '';
  if (REFUSED_STATES.has(code)) {
    return new CloudbarmanError('bad-input', `PostgreSQL at ${target} refused the connection: ${message}`, {
      hint: code === '3D000' ? 'fix dbname in conninfo' : 'check user and password in conninfo, PGPASSWORD or ~/.pgpass, and pg_hba.conf',
      cause: err,
    });
  }
  if (/password must be a string|no password supplied|password authentication/i.test(message)) {
    return new CloudbarmanError('bad-input', `PostgreSQL at ${target} asked for a password and none was given`, {
      hint: 'put password= in conninfo, set PGPASSWORD, or add a ~/.pgpass line for the user running cloudbarman', cause: err,
    });
  }
  if (TLS_CODE.test(code) || /does not support SSL/i.test(message)) {
    return new CloudbarmanError('bad-input', `TLS with PostgreSQL at ${target} failed: ${message}`, {
      hint: 'check sslmode and sslrootcert in conninfo', cause: err,
    });
  }
  if (NETWORK_CODES.has(code) || /timeout|terminated|ECONNREFUSED/i.test(message) || code === '57P03' || code === '53300') {
    return new CloudbarmanError('unreachable', `cannot connect to PostgreSQL at ${target}: ${code !== '' && !message.includes(code) ? `${code} ` : ''}${message}`, {
      hint: 'check that the server is running and accepts connections there (host and port in conninfo, listen_addresses, firewalls)',
      cause: err,
    });
  }
  return new CloudbarmanError('failed', `connecting to PostgreSQL at ${target} failed: ${message}`, { hint: 'run with -v for the cause', cause: err });
}
