/**
 * The Azure Blob Storage provider's entry point: turns StoreOptions and the environment into an
 * authenticated container client and store. The CLI imports this file lazily, so nothing here runs
 * unless the destination is azure://; @azure/identity loads only when an Entra ID credential is used.
 */
import { ContainerClient, newPipeline, AnonymousCredential, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { RequestPolicyFactory } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { Agent as HttpAgent } from 'node:http';
import type { ClientRequest, ClientRequestArgs } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { RequestOptions as HttpsRequestOptions } from 'node:https';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { StoreError } from '../object-store.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreOptions } from '../store-options.ts';
import { AzureObjectStore } from './object-store.ts';

/** Sockets per agent: enough for --jobs × block concurrency, bounded so a runaway caller queues instead. */
const MAX_SOCKETS = 64;

/** The public cloud's blob endpoint suffix, when neither the options nor a connection string name another. */
const DEFAULT_ENDPOINT_SUFFIX = 'core.windows.net';

/**
 * The storage emulator's well-known account (published by Microsoft, not a secret), for connection
 * strings that say UseDevelopmentStorage=true.
 */
const DEVELOPMENT_STORAGE = {
  account: 'devstoreaccount1',
  key: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
  endpoint: 'http://127.0.0.1:10000/devstoreaccount1',
} as const;

/** The hint every "which account?" error carries: the config option and the environment variable. */
const ACCOUNT_HINT = 'set azure_storage_account (or AZURE_STORAGE_ACCOUNT), or AZURE_STORAGE_CONNECTION_STRING';

/** A parsed azure:// destination. */
export interface AzureLocation {
  container: string;
  /** "" or a prefix ending in "/", joined in front of every key. */
  keyPrefix: string;
}

/** Parses azure://container/optional/prefix, checking Azure's container-name rules so a typo fails here, not as an HTTP 400. */
export function parseAzureUrl(url: string): AzureLocation {
  const match = /^azure:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  const container = match?.[1] ?? '';
  if (match === null || !/^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(container)) {
    throw new StoreError(
      'invalid',
      `destination ${JSON.stringify(url)} is not azure://container[/prefix] (container names are 3-63 lowercase letters, digits and single hyphens)`,
      { target: url },
    );
  }
  const segments = (match[2] ?? '').split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..') || /[?#\x00-\x1f\x7f\\]/.test(match[2] ?? '')) {
    throw new StoreError('invalid', `destination ${JSON.stringify(url)} has an invalid prefix`, { target: url });
  }
  return { container, keyPrefix: segments.length === 0 ? '' : `${segments.join('/')}/` };
}

/** How requests are authenticated; holds secrets, so it never goes into a message. */
export type AzureAuth =
  | { kind: 'shared-key'; account: string; key: string }
  | { kind: 'sas'; token: string }
  | { kind: 'entra'; credential: 'default' | 'azure-cli' | 'managed-identity' };

/** Where to connect and how to authenticate, as resolved from the options and the environment. */
export interface AzureConnection {
  /** Which setting won, in barman-cloud's order; safe to show. */
  source: 'connection-string' | 'account-key' | 'sas-token' | 'entra-id';
  /** The storage account, when known (a SAS connection string with a BlobEndpoint needs none). */
  account: string | undefined;
  /** The blob service URL without a trailing slash or query, e.g. https://acct.blob.core.windows.net. */
  serviceUrl: string;
  auth: AzureAuth;
}

/** The settings of a connection string, by lower-cased name (Azure treats the names case-insensitively). */
function parseConnectionString(value: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const part of value.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    // Never echo the string: it holds the key or the SAS signature.
    if (eq <= 0) throw new StoreError('invalid', 'AZURE_STORAGE_CONNECTION_STRING is malformed: every part must be Name=value');
    settings.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return settings;
}

/** A set, non-empty environment variable, or undefined. */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** Validates an endpoint and drops its trailing slashes; a query string would be a misplaced secret. */
function serviceUrlFrom(endpoint: string, origin: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch (err) {
    throw new StoreError('invalid', `${origin} is not a URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new StoreError('invalid', `${origin} must be an http or https URL`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new StoreError('invalid', `${origin} must not carry a query string or credentials (put a SAS token in AZURE_STORAGE_SAS_TOKEN)`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** https://<account>.blob.<suffix>, after checking the account name is one Azure could have issued. */
function defaultServiceUrl(account: string, protocol = 'https', suffix = DEFAULT_ENDPOINT_SUFFIX): string {
  if (!/^[a-z0-9]{3,24}$/.test(account)) {
    throw new StoreError('invalid', `storage account ${JSON.stringify(account)} is not 3-24 lowercase letters and digits`);
  }
  return `${protocol}://${account}.blob.${suffix}`;
}

/** A SAS token without its leading "?", after checking it looks like one (it must be signed). */
function normalizeSasToken(token: string, origin: string): string {
  const query = token.startsWith('?') ? token.slice(1) : token;
  if (!new URLSearchParams(query).has('sig')) throw new StoreError('invalid', `${origin} is not a SAS token (it has no sig= parameter)`);
  return query;
}

/**
 * Picks endpoint and credential in barman-cloud's order: AZURE_STORAGE_CONNECTION_STRING, then account +
 * AZURE_STORAGE_KEY, then account + AZURE_STORAGE_SAS_TOKEN, then options.azure.credential (Entra ID).
 */
export function resolveAzureConnection(options: StoreOptions, env: NodeJS.ProcessEnv = process.env): AzureConnection {
  // The account: the option, else AZURE_STORAGE_ACCOUNT, else (below) the connection string's AccountName.
  const configured = options.azure?.account?.trim() || envValue(env, 'AZURE_STORAGE_ACCOUNT');
  const endpoint = options.endpointUrl === undefined || options.endpointUrl.trim() === '' ? undefined : serviceUrlFrom(options.endpointUrl, 'endpoint_url');
  const connectionString = envValue(env, 'AZURE_STORAGE_CONNECTION_STRING');
  if (connectionString !== undefined) return fromConnectionString(parseConnectionString(connectionString), configured, endpoint);

  if (configured === undefined) {
    throw new StoreError('invalid', `no Azure storage account is configured: ${ACCOUNT_HINT}`);
  }
  const serviceUrl = endpoint ?? defaultServiceUrl(configured);
  const key = envValue(env, 'AZURE_STORAGE_KEY');
  if (key !== undefined) return { source: 'account-key', account: configured, serviceUrl, auth: { kind: 'shared-key', account: configured, key } };
  const sas = envValue(env, 'AZURE_STORAGE_SAS_TOKEN');
  if (sas !== undefined) {
    return { source: 'sas-token', account: configured, serviceUrl, auth: { kind: 'sas', token: normalizeSasToken(sas, 'AZURE_STORAGE_SAS_TOKEN') } };
  }
  const credential = options.azure?.credential ?? 'default';
  // The SDK refuses to send a bearer token in clear text; saying so here beats an untyped error per request.
  if (!serviceUrl.startsWith('https://')) {
    throw new StoreError('invalid', `Entra ID credentials (azure_credential = ${credential}) need an https endpoint; use an account key or SAS token for ${new URL(serviceUrl).origin}`);
  }
  return { source: 'entra-id', account: configured, serviceUrl, auth: { kind: 'entra', credential } };
}

/** The connection-string case of resolveAzureConnection. */
function fromConnectionString(settings: Map<string, string>, configured: string | undefined, endpoint: string | undefined): AzureConnection {
  const source = 'connection-string';
  if (settings.get('usedevelopmentstorage')?.toLowerCase() === 'true') {
    const proxy = settings.get('developmentstorageproxyuri');
    const serviceUrl = endpoint ?? (proxy === undefined ? DEVELOPMENT_STORAGE.endpoint : `${serviceUrlFrom(proxy, 'DevelopmentStorageProxyUri')}/${DEVELOPMENT_STORAGE.account}`);
    const account = DEVELOPMENT_STORAGE.account;
    return { source, account, serviceUrl, auth: { kind: 'shared-key', account, key: DEVELOPMENT_STORAGE.key } };
  }
  const named = settings.get('accountname') || undefined;
  if (configured !== undefined && named !== undefined && configured !== named) {
    throw new StoreError(
      'invalid',
      `the storage account ${JSON.stringify(configured)} (azure_storage_account or AZURE_STORAGE_ACCOUNT) is not the AccountName of AZURE_STORAGE_CONNECTION_STRING (${JSON.stringify(named)})`,
    );
  }
  const account = configured ?? named;
  const blobEndpoint = settings.get('blobendpoint') || undefined;
  let serviceUrl = endpoint ?? (blobEndpoint === undefined ? undefined : serviceUrlFrom(blobEndpoint, 'the BlobEndpoint of AZURE_STORAGE_CONNECTION_STRING'));
  if (serviceUrl === undefined) {
    if (account === undefined) throw new StoreError('invalid', `AZURE_STORAGE_CONNECTION_STRING names no AccountName or BlobEndpoint: ${ACCOUNT_HINT}`);
    const protocol = settings.get('defaultendpointsprotocol')?.toLowerCase() || 'https';
    if (protocol !== 'http' && protocol !== 'https') throw new StoreError('invalid', 'the DefaultEndpointsProtocol of AZURE_STORAGE_CONNECTION_STRING must be http or https');
    serviceUrl = defaultServiceUrl(account, protocol, settings.get('endpointsuffix') || DEFAULT_ENDPOINT_SUFFIX);
  }
  const key = settings.get('accountkey') || undefined;
  if (key !== undefined) {
    if (named === undefined) throw new StoreError('invalid', 'AZURE_STORAGE_CONNECTION_STRING has an AccountKey but no AccountName');
    return { source, account: named, serviceUrl, auth: { kind: 'shared-key', account: named, key } };
  }
  const sas = settings.get('sharedaccesssignature') || undefined;
  if (sas !== undefined) {
    return { source, account, serviceUrl, auth: { kind: 'sas', token: normalizeSasToken(sas, 'the SharedAccessSignature of AZURE_STORAGE_CONNECTION_STRING') } };
  }
  throw new StoreError('invalid', 'AZURE_STORAGE_CONNECTION_STRING has neither an AccountKey nor a SharedAccessSignature');
}

/** Connect and idle limits for every socket of one store. */
export interface SocketLimits {
  /** Time allowed for TCP connect (and the TLS handshake) before the socket fails with ETIMEDOUT. */
  connectTimeoutMs: number;
  /** Time a socket in use may see no bytes either way before it fails with ETIMEDOUT. */
  idleTimeoutMs: number;
}

/** An error shaped like Node's own timeouts, so classification reads it as 'unreachable'. */
function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ETIMEDOUT' });
}

/**
 * Fails a socket that does not connect within the connect limit or sits idle past the idle limit.
 * The SDK's own request timeout is a total limit that would cut off a large block, and it has no
 * connect limit at all, so both live on the socket.
 */
function guardSocket(socket: Duplex | null | undefined, limits: SocketLimits): void {
  if (!(socket instanceof Socket)) return;
  socket.on('timeout', () => socket.destroy(timeoutError(`no bytes moved for ${limits.idleTimeoutMs} ms`)));
  if (!socket.connecting) return;
  const timer = setTimeout(
    () => socket.destroy(timeoutError(`no connection within ${limits.connectTimeoutMs} ms`)),
    limits.connectTimeoutMs,
  );
  const done = (): void => clearTimeout(timer);
  socket.once(socket instanceof TLSSocket ? 'secureConnect' : 'connect', done);
  socket.once('close', done);
}

/**
 * The agent options both protocols share. `timeout` is the idle limit of new and pooled sockets
 * (Node shortens it for pooled ones to the server's keep-alive hint).
 */
function agentOptions(limits: SocketLimits): { keepAlive: true; maxSockets: number; maxFreeSockets: number; timeout: number } {
  return { keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_SOCKETS, timeout: limits.idleTimeoutMs };
}

/** An http agent whose sockets honour SocketLimits. */
class LimitedHttpAgent extends HttpAgent {
  readonly #limits: SocketLimits;

  constructor(limits: SocketLimits) {
    super(agentOptions(limits));
    this.#limits = limits;
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    guardSocket(socket, this.#limits);
    return socket;
  }

  override reuseSocket(socket: Duplex, request: ClientRequest): void {
    // A pooled socket may carry the server's shorter keep-alive timeout; in use, the idle limit applies again.
    if (socket instanceof Socket) socket.setTimeout(this.#limits.idleTimeoutMs);
    super.reuseSocket(socket, request);
  }
}

/** An https agent whose sockets honour SocketLimits (the TLS handshake counts toward the connect limit). */
class LimitedHttpsAgent extends HttpsAgent {
  readonly #limits: SocketLimits;

  constructor(limits: SocketLimits) {
    super(agentOptions(limits));
    this.#limits = limits;
  }

  override createConnection(options: HttpsRequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = super.createConnection(options, callback);
    guardSocket(socket, this.#limits);
    return socket;
  }

  override reuseSocket(socket: Duplex, request: ClientRequest): void {
    if (socket instanceof Socket) socket.setTimeout(this.#limits.idleTimeoutMs);
    super.reuseSocket(socket, request);
  }
}

/** The agent for one protocol, exported so that tests can check the connect limit without a network. */
export function createLimitedAgent(protocol: 'http:' | 'https:', limits: SocketLimits): HttpAgent {
  return protocol === 'https:' ? new LimitedHttpsAgent(limits) : new LimitedHttpAgent(limits);
}

/** The sockets of one store: an agent per protocol, made on first use, destroyed on close. */
class StoreAgents {
  readonly #limits: SocketLimits;
  readonly #agents = new Map<string, HttpAgent>();
  #destroyed = false;

  constructor(limits: SocketLimits) {
    this.#limits = limits;
  }

  /** The agent for a request URL. */
  for(url: string): HttpAgent {
    // A request after close() would open sockets nobody closes again.
    if (this.#destroyed) throw new Error('the Azure store is closed');
    const protocol = url.startsWith('https:') ? 'https:' : 'http:';
    let agent = this.#agents.get(protocol);
    if (agent === undefined) {
      agent = createLimitedAgent(protocol, this.#limits);
      this.#agents.set(protocol, agent);
    }
    return agent;
  }

  /** Closes every socket, pooled or in use. */
  destroy(): void {
    this.#destroyed = true;
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}

/**
 * Routes every request of the pipeline through the store's own agents. The SDK's default HTTP client
 * shares one process-wide agent with no timeouts; the documented way to customise a pipeline is an
 * extra request policy factory.
 */
function agentPolicy(agents: StoreAgents): RequestPolicyFactory {
  return {
    create: (next) => ({
      sendRequest: (request) => {
        request.agent = agents.for(request.url);
        return next.sendRequest(request);
      },
    }),
  };
}

/** The credential object for an AzureAuth; @azure/identity is imported only in the Entra ID case. */
async function credentialFor(auth: AzureAuth, env: NodeJS.ProcessEnv): Promise<StorageSharedKeyCredential | AnonymousCredential | TokenCredential> {
  switch (auth.kind) {
    case 'shared-key':
      return new StorageSharedKeyCredential(auth.account, auth.key);
    case 'sas':
      // The token travels in the URL; the pipeline itself adds nothing.
      return new AnonymousCredential();
    case 'entra':
      return entraCredential(auth.credential, env);
  }
}

/** The Entra ID credential azure_credential names (also used for Key Vault, src/cli/context.ts). */
export async function entraCredential(name: 'default' | 'azure-cli' | 'managed-identity', env: NodeJS.ProcessEnv): Promise<TokenCredential> {
  const identity = await import('@azure/identity');
  if (name === 'azure-cli') return new identity.AzureCliCredential();
  if (name === 'managed-identity') {
    // A user-assigned identity is chosen by its client id, as DefaultAzureCredential does.
    const clientId = envValue(env, 'AZURE_CLIENT_ID');
    return clientId === undefined ? new identity.ManagedIdentityCredential() : new identity.ManagedIdentityCredential({ clientId });
  }
  return new identity.DefaultAzureCredential();
}

/** A container client and what closing its store must release. */
export interface AzureContainer {
  client: ContainerClient;
  /** Destroys the sockets of the client's agents. */
  dispose(): void;
}

/**
 * Builds the container client: one attempt per call (the retry decorator owns retries), the store's
 * own agents with connect and idle limits, and the credential resolveAzureConnection chose.
 */
export async function createContainerClient(
  options: StoreOptions,
  container: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AzureContainer> {
  const connection = resolveAzureConnection(options, env);
  const agents = new StoreAgents({ connectTimeoutMs: options.connectTimeoutMs, idleTimeoutMs: options.requestTimeoutMs });
  const pipeline = newPipeline(await credentialFor(connection.auth, env), {
    // Our retry decorator retries every store call; SDK retries on top would multiply attempts.
    retryOptions: { maxTries: 1 },
  });
  pipeline.factories.push(agentPolicy(agents));
  const sas = connection.auth.kind === 'sas' ? `?${connection.auth.token}` : '';
  return {
    client: new ContainerClient(`${connection.serviceUrl}/${container}${sas}`, pipeline),
    dispose: () => agents.destroy(),
  };
}

/** Opens the store for an azure:// destination; the client is created here and owned by the store. */
export async function createObjectStore(options: StoreOptions, env: NodeJS.ProcessEnv = process.env): Promise<ObjectStore> {
  const location = parseAzureUrl(options.destination);
  const { client, dispose } = await createContainerClient(options, location.container, env);
  return new AzureObjectStore({
    client,
    ...location,
    partSizeBytes: options.multipart.partSizeBytes,
    concurrency: options.multipart.concurrency,
    ...(options.azure?.accessTier === undefined ? {} : { accessTier: options.azure.accessTier }),
    ...(options.azure?.encryptionScope === undefined ? {} : { encryptionScope: options.azure.encryptionScope }),
    ...(options.tags === undefined ? {} : { tags: options.tags }),
    dispose,
  });
}
