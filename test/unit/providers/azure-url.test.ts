/**
 * The Azure provider's pure parts: destination URLs, which credential and endpoint the options and
 * the environment select (barman-cloud's order), metadata-name encoding and error classification.
 * No server: azure-azurite.test.ts runs the same code against azurite.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyAzureError, toStoreError } from '../../../providers/azure/errors.ts';
import { parseAzureUrl, resolveAzureConnection } from '../../../providers/azure/index.ts';
import type { AzureConnection } from '../../../providers/azure/index.ts';
import { decodeMetadataName, encodeMetadataName } from '../../../providers/azure/object-store.ts';
import { isStoreError } from '../../../providers/object-store.ts';
import type { StoreOptions } from '../../../providers/store-options.ts';

/** Made-up secrets: what matters is that they never appear in a message. */
const KEY = 'c2VjcmV0LWFjY291bnQta2V5LXRoYXQtbXVzdC1uZXZlci1zaG93LXVwLWFueXdoZXJlLWF0LWFsbA==';
const SAS = 'sv=2024-08-04&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=U2VjcmV0U2lnbmF0dXJlVGhhdE11c3ROb3RTaG93';
const SIGNATURE = 'U2VjcmV0U2lnbmF0dXJlVGhhdE11c3ROb3RTaG93';

/** Options as the CLI would build them; only the Azure part varies between cases. */
function options(azure: Partial<NonNullable<StoreOptions['azure']>> = {}, extra: Partial<StoreOptions> = {}): StoreOptions {
  return {
    destination: 'azure://backups/pg',
    azure: { credential: 'default', ...azure },
    multipart: { partSizeBytes: 8 << 20, concurrency: 4 },
    connectTimeoutMs: 5_000,
    requestTimeoutMs: 60_000,
    ...extra,
  };
}

/** The resolved connection without its secrets, for comparing against a table. */
function shape(connection: AzureConnection): { source: string; account: string | undefined; serviceUrl: string; auth: string } {
  const { auth } = connection;
  const described = auth.kind === 'shared-key' ? `shared-key:${auth.account}` : auth.kind === 'sas' ? `sas:${auth.token === SAS ? 'SAS' : auth.token}` : `entra:${auth.credential}`;
  return { source: connection.source, account: connection.account, serviceUrl: connection.serviceUrl, auth: described };
}

/** Asserts that fn throws StoreError 'invalid' whose message matches and holds no secret. */
function assertInvalid(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isStoreError(err, 'invalid'), String(err));
    assert.match(err.message, pattern);
    for (const secret of [KEY, SAS, SIGNATURE]) assert.ok(!err.message.includes(secret), `secret in: ${err.message}`);
    return true;
  });
}

describe('parseAzureUrl', () => {
  it('splits the container from the prefix', () => {
    assert.deepEqual(parseAzureUrl('azure://backups'), { container: 'backups', keyPrefix: '' });
    assert.deepEqual(parseAzureUrl('azure://backups/'), { container: 'backups', keyPrefix: '' });
    assert.deepEqual(parseAzureUrl('azure://backups/pg/main'), { container: 'backups', keyPrefix: 'pg/main/' });
    assert.deepEqual(parseAzureUrl('azure://backups/pg//main/'), { container: 'backups', keyPrefix: 'pg/main/' });
    assert.deepEqual(parseAzureUrl('azure://a1-b2/x'), { container: 'a1-b2', keyPrefix: 'x/' });
  });

  it('rejects what is not azure://container[/prefix] with a valid container name', () => {
    const bad = [
      's3://backups/x',
      'azure://',
      'azure:///x',
      'azure://ab', // shorter than 3
      `azure://${'a'.repeat(64)}`, // longer than 63
      'azure://Backups', // upper case
      'azure://-backups',
      'azure://backups-',
      'azure://back--ups',
      'azure://back_ups',
      'azure://backups/a/../b',
      'azure://backups/a/./b',
      'azure://backups/a?b',
      'azure://user@backups/x',
    ];
    for (const url of bad) assert.throws(() => parseAzureUrl(url), (err: unknown) => isStoreError(err, 'invalid'), url);
  });
});

describe('resolveAzureConnection', () => {
  const cs = (parts: string): NodeJS.ProcessEnv => ({ AZURE_STORAGE_CONNECTION_STRING: parts });

  it('follows barman-cloud: connection string, then account key, then SAS token, then Entra ID', () => {
    const all: NodeJS.ProcessEnv = {
      AZURE_STORAGE_CONNECTION_STRING: `AccountName=acct;AccountKey=${KEY}`,
      AZURE_STORAGE_KEY: KEY,
      AZURE_STORAGE_SAS_TOKEN: SAS,
    };
    const rows: Array<[string, NodeJS.ProcessEnv, string]> = [
      ['everything set', all, 'connection-string'],
      ['no connection string', { ...all, AZURE_STORAGE_CONNECTION_STRING: undefined }, 'account-key'],
      ['only a SAS token', { AZURE_STORAGE_SAS_TOKEN: SAS }, 'sas-token'],
      ['nothing in the environment', {}, 'entra-id'],
      ['empty variables count as unset', { AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_KEY: ' ', AZURE_STORAGE_SAS_TOKEN: SAS }, 'sas-token'],
    ];
    for (const [label, env, source] of rows) assert.equal(resolveAzureConnection(options({ account: 'acct' }), env).source, source, label);
  });

  it('builds the public endpoint from the account, or uses endpoint_url as given', () => {
    assert.deepEqual(shape(resolveAzureConnection(options({ account: 'acct' }), { AZURE_STORAGE_KEY: KEY })), {
      source: 'account-key',
      account: 'acct',
      serviceUrl: 'https://acct.blob.core.windows.net',
      auth: 'shared-key:acct',
    });
    const local = resolveAzureConnection(options({ account: 'devstoreaccount1' }, { endpointUrl: 'http://127.0.0.1:10000/devstoreaccount1/' }), {
      AZURE_STORAGE_SAS_TOKEN: `?${SAS}`,
    });
    assert.deepEqual(shape(local), { source: 'sas-token', account: 'devstoreaccount1', serviceUrl: 'http://127.0.0.1:10000/devstoreaccount1', auth: 'sas:SAS' });
  });

  it('takes the account from the options, then AZURE_STORAGE_ACCOUNT, then the connection string', () => {
    const env = { AZURE_STORAGE_ACCOUNT: 'fromenv', AZURE_STORAGE_KEY: KEY };
    assert.equal(resolveAzureConnection(options({ account: 'fromoptions' }), env).account, 'fromoptions');
    assert.equal(resolveAzureConnection(options(), env).account, 'fromenv');
    assert.equal(resolveAzureConnection(options(), cs(`AccountName=fromcs;AccountKey=${KEY}`)).account, 'fromcs');
  });

  it('reads every form of connection string', () => {
    const rows: Array<[string, string, ReturnType<typeof shape>]> = [
      [
        'account key, default endpoint',
        `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${KEY};EndpointSuffix=core.windows.net`,
        { source: 'connection-string', account: 'acct', serviceUrl: 'https://acct.blob.core.windows.net', auth: 'shared-key:acct' },
      ],
      [
        'another cloud',
        `AccountName=acct;AccountKey=${KEY};EndpointSuffix=core.chinacloudapi.cn`,
        { source: 'connection-string', account: 'acct', serviceUrl: 'https://acct.blob.core.chinacloudapi.cn', auth: 'shared-key:acct' },
      ],
      [
        'explicit blob endpoint, names in any case',
        `accountname=devstoreaccount1;ACCOUNTKEY=${KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;`,
        { source: 'connection-string', account: 'devstoreaccount1', serviceUrl: 'http://127.0.0.1:10000/devstoreaccount1', auth: 'shared-key:devstoreaccount1' },
      ],
      [
        'SAS with a blob endpoint and no account name',
        `BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=${SAS}`,
        { source: 'connection-string', account: undefined, serviceUrl: 'https://acct.blob.core.windows.net', auth: 'sas:SAS' },
      ],
      [
        'the emulator shortcut',
        'UseDevelopmentStorage=true',
        { source: 'connection-string', account: 'devstoreaccount1', serviceUrl: 'http://127.0.0.1:10000/devstoreaccount1', auth: 'shared-key:devstoreaccount1' },
      ],
    ];
    for (const [label, value, expected] of rows) assert.deepEqual(shape(resolveAzureConnection(options(), cs(value))), expected, label);
    // endpoint_url overrides the connection string's endpoint (an emulator or a private endpoint).
    const overridden = resolveAzureConnection(options({}, { endpointUrl: 'https://private.example.net/' }), cs(`AccountName=acct;AccountKey=${KEY}`));
    assert.equal(overridden.serviceUrl, 'https://private.example.net');
  });

  it('Entra ID uses the configured credential and needs https', () => {
    for (const credential of ['default', 'azure-cli', 'managed-identity'] as const) {
      assert.deepEqual(shape(resolveAzureConnection(options({ account: 'acct', credential }), {})), {
        source: 'entra-id',
        account: 'acct',
        serviceUrl: 'https://acct.blob.core.windows.net',
        auth: `entra:${credential}`,
      });
    }
    assertInvalid(() => resolveAzureConnection(options({ account: 'acct' }, { endpointUrl: 'http://127.0.0.1:10000/acct' }), {}), /https/);
  });

  it('a missing account with no connection string is invalid, naming the option and the variable', () => {
    for (const env of [{}, { AZURE_STORAGE_KEY: KEY }, { AZURE_STORAGE_SAS_TOKEN: SAS }]) {
      assertInvalid(() => resolveAzureConnection(options(), env), /azure_storage_account.*AZURE_STORAGE_ACCOUNT/);
    }
  });

  it('refuses wrong settings without echoing any secret', () => {
    // A part without "=" (here the key pasted without its name or padding) must not be echoed back.
    assertInvalid(() => resolveAzureConnection(options(), cs(`AccountName=acct;${KEY.replaceAll('=', '')}`)), /malformed/);
    assertInvalid(() => resolveAzureConnection(options(), cs(`AccountKey=${KEY}`)), /AccountName/);
    assertInvalid(() => resolveAzureConnection(options(), cs('AccountName=acct')), /neither an AccountKey nor a SharedAccessSignature/);
    assertInvalid(() => resolveAzureConnection(options({ account: 'other' }), cs(`AccountName=acct;AccountKey=${KEY}`)), /is not the AccountName/);
    assertInvalid(() => resolveAzureConnection(options(), cs(`AccountName=acct;AccountKey=${KEY};DefaultEndpointsProtocol=ftp`)), /http or https/);
    assertInvalid(() => resolveAzureConnection(options({ account: 'acct' }), { AZURE_STORAGE_SAS_TOKEN: 'sv=2024-08-04&sp=r' }), /no sig=/);
    assertInvalid(() => resolveAzureConnection(options({ account: 'acct' }, { endpointUrl: `https://acct.blob.core.windows.net/?${SAS}` }), {}), /query string/);
    assertInvalid(() => resolveAzureConnection(options({ account: 'acct' }, { endpointUrl: 'not a url' }), { AZURE_STORAGE_KEY: KEY }), /not a URL/);
    assertInvalid(() => resolveAzureConnection(options({ account: 'Not_An_Account' }), { AZURE_STORAGE_KEY: KEY }), /3-24 lowercase/);
  });
});

describe('metadata names', () => {
  it('leave names that start with a letter alone and escape the others reversibly', () => {
    const rows: Array<[string, string]> = [
      ['checksum', 'checksum'],
      ['size_bytes', 'size_bytes'],
      ['1st', '_1st'],
      ['0', '_0'],
      ['_x', '__x'],
      ['_', '__'],
      ['__1', '___1'],
    ];
    for (const [name, stored] of rows) {
      assert.equal(encodeMetadataName(name), stored, name);
      assert.equal(decodeMetadataName(stored), name, stored);
      // What Azure requires of a metadata name: a C# identifier.
      assert.match(stored, /^[A-Za-z_][A-Za-z0-9_]*$/, stored);
    }
  });

  it('never map two contract names to one stored name', () => {
    const names = ['a', '_a', '__a', '1', '_1', '__1', '_', '__', 'a1', '1a'];
    assert.equal(new Set(names.map(encodeMetadataName)).size, names.length);
  });
});

describe('classifyAzureError', () => {
  it('reads the service code, the HEAD error code, Node codes and identity error names', () => {
    const rows: Array<[string, unknown, string]> = [
      ['blob missing', { name: 'RestError', code: 'BlobNotFound', statusCode: 404 }, 'not-found'],
      ['container missing on HEAD', { name: 'RestError', statusCode: 404, details: { errorCode: 'ContainerNotFound' } }, 'container-not-found'],
      ['blob missing on HEAD', { name: 'RestError', statusCode: 404, details: { errorCode: 'BlobNotFound' } }, 'not-found'],
      ['bare 404', { name: 'RestError', statusCode: 404 }, 'not-found'],
      ['create lost', { name: 'RestError', code: 'BlobAlreadyExists', statusCode: 409 }, 'already-exists'],
      ['condition failed', { name: 'RestError', code: 'ConditionNotMet', statusCode: 412 }, 'already-exists'],
      ['wrong key', { name: 'RestError', code: 'AuthenticationFailed', statusCode: 403 }, 'access-denied'],
      ['SAS without permission', { name: 'RestError', code: 'AuthorizationPermissionMismatch', statusCode: 403 }, 'access-denied'],
      ['no login', { name: 'CredentialUnavailableError' }, 'access-denied'],
      ['refused', { name: 'RestError', code: 'ECONNREFUSED' }, 'unreachable'],
      ['no such host', { name: 'RestError', code: 'ENOTFOUND' }, 'unreachable'],
      ['our timeouts', { code: 'ETIMEDOUT' }, 'unreachable'],
      ['reset mid-body', { code: 'ECONNRESET' }, 'transient'],
      ['busy', { name: 'RestError', code: 'ServerBusy', statusCode: 503 }, 'transient'],
      ['throttled, unknown code', { name: 'RestError', code: 'SomethingNew', statusCode: 429 }, 'transient'],
      ['5xx, unknown code', { name: 'RestError', statusCode: 502 }, 'transient'],
      ['blocks discarded by a concurrent commit', { name: 'RestError', code: 'InvalidBlockList', statusCode: 400 }, 'transient'],
      ['bad tag', { name: 'RestError', code: 'InvalidTag', statusCode: 400 }, 'invalid'],
      ['4xx, unknown code', { name: 'RestError', code: 'SomethingNew', statusCode: 400 }, 'invalid'],
      ['caller aborted', { name: 'AbortError' }, 'failed'],
      ['not an error at all', 'boom', 'failed'],
    ];
    for (const [label, err, kind] of rows) assert.equal(classifyAzureError(err).kind, kind, label);
  });

  it('puts the code and status in the message, never the SDK message, and keeps the cause', () => {
    const cause = Object.assign(new Error(`Server failed to authenticate the request ${SIGNATURE}`), { name: 'RestError', code: 'AuthenticationFailed', statusCode: 403 });
    const err = toStoreError(cause, 'azure://backups/pg/k');
    assert.equal(err.kind, 'access-denied');
    assert.equal(err.cause, cause);
    assert.equal(err.target, 'azure://backups/pg/k');
    assert.match(err.message, /azure:\/\/backups\/pg\/k \(AuthenticationFailed, HTTP 403\)$/);
    assert.ok(!err.message.includes(SIGNATURE));
  });
});
