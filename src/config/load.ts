/**
 * INI file + environment + flags -> one typed, validated ServerConfig.
 *
 * Precedence, highest first: flag > environment (CLOUDBARMAN_<NAME>) > the server's [section]
 * > the [cloudbarman] section (defaults for every server) > the table's default. Every value a
 * layer sets is validated, even one a higher layer overrides, so a typo never waits for the day
 * the override is removed. Only the server's own section and [cloudbarman] are read: a mistake
 * in another server's section must not stop this server's WAL archiving.
 */
import { readFile as fsReadFile } from 'node:fs/promises';
import { CloudbarmanError, badInput } from '../core/errors.ts';
import { PROVIDER_SCHEMES } from '../../providers/store-options.ts';
import type { ProviderName, StoreOptions } from '../../providers/store-options.ts';
import { closestMatch } from './did-you-mean.ts';
import { parseIni } from './ini.ts';
import type { IniDocument, IniSection } from './ini.ts';
import {
  BARMAN_SECTION,
  DEFAULTS_SECTION,
  ENV_PREFIX,
  NON_OPTION_ENV_VARS,
  OPTIONS,
  envName,
  findOption,
  flagName,
} from './options.ts';
import type { OptionName, OptionSpec } from './options.ts';
import {
  parseAbsolutePath,
  parseBool,
  parseConninfo,
  parseCronSchedule,
  parseEnum,
  parseList,
  parseRetentionPolicy,
  parseSeconds,
  parseSize,
  parseTags,
  parseUrl,
  parseWholeNumber,
} from './values.ts';
import type { Parsed, RetentionPolicy } from './values.ts';

/** Where the settings come from. Nothing here reads process.env: the caller passes it in. */
export interface ConfigSources {
  /** From -c. Otherwise env.CLOUDBARMAN_CONFIG; otherwise defaultConfigPath if it exists. A named file must exist. */
  configPath?: string;
  /** The file used when none is named and it exists; /etc/cloudbarman.conf unless a test overrides it. */
  defaultConfigPath?: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Keyed by option name (snake_case), values from commander; undefined = not given. */
  flags: Readonly<Record<string, string | boolean | undefined>>;
  /** The command's own flag spellings (FlagRenames in src/cli/config-flags.ts), so messages name the flag the user typed. */
  flagRenames?: Readonly<Record<string, string>>;
  /** Injectable for tests; node:fs by default. Must reject with code ENOENT for a missing file. */
  readFile?: (path: string) => Promise<string>;
}

/** Which layer a value came from. */
export type Origin = 'flag' | 'env' | 'file' | 'default';

/** How a base backup reads the cluster. */
export type BackupMethod = 'local' | 'postgres' | 'snapshot';
/** WAL compression (Barman's `compression`). */
export type WalCompression = 'none' | 'gzip' | 'zstd';
/** The Entra ID credential for Azure when the environment holds no key (Barman's azure_credential). */
export type AzureCredentialName = 'default' | 'azure-cli' | 'managed-identity';
/** Base backup compression. */
export type BackupCompression = 'none' | 'gzip' | 'lz4' | 'zstd';

/** Everything one server's commands need, typed and validated. Field names are the options' in camelCase, with units where they convert. */
export interface ServerConfig {
  /** The SERVER argument: a [section] name, and the object-key segment under the destination. */
  server: string;
  description?: string;
  conninfo?: string;
  /** Defaults to conninfo, as in Barman. */
  streamingConninfo?: string;
  pgdata?: string;
  provider: ProviderName;
  /** Normalised: a bare path has become a file:/// URL. */
  destination: string;
  endpointUrl?: string;
  /** Defaults to true when endpointUrl is set. */
  s3ForcePathStyle: boolean;
  awsRegion?: string;
  awsProfile?: string;
  azureSubscriptionId?: string;
  azureResourceGroup?: string;
  azureStorageAccount?: string;
  azureCredential: AzureCredentialName;
  azureEncryptionScope?: string;
  azureAccessTier?: 'Hot' | 'Cool' | 'Cold';
  gcpKeyFile?: string;
  gcpKmsKeyName?: string;
  gcpStorageClass?: 'STANDARD' | 'NEARLINE' | 'COLDLINE' | 'ARCHIVE';
  /** key=value,... as written; toStoreOptions parses it (values.ts parseTags). */
  tags?: string;
  /** Client-side encryption of what is stored (docs/encryption.md). */
  clientEncryption: 'none' | 'aes-256-gcm';
  encryptionKeyFile?: string;
  /** The environment variable holding the key when no key file is set. */
  encryptionKeyEnv: string;
  /** AWS KMS key that wraps the master key (envelope encryption). */
  encryptionKmsKeyId?: string;
  encryptionKmsEndpointUrl?: string;
  /** Azure Key Vault key that wraps the master key. */
  encryptionAzureKeyId?: string;
  /** Google Cloud KMS key that wraps the master key. */
  encryptionGcpKmsKeyName?: string;
  /** With client_encryption on, read WAL and backup objects stored unencrypted. */
  encryptionAllowPlaintext: boolean;
  backupMethod: BackupMethod;
  compression: WalCompression;
  /** Defaults to the WAL compression. */
  backupCompression: BackupCompression;
  parallelJobs: number;
  partSizeBytes: number;
  uploadConcurrency: number;
  retentionPolicy?: RetentionPolicy;
  walRetentionPolicy: 'main';
  retentionPolicyMode: 'auto';
  minimumRedundancy: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  keepYearly: number;
  lastBackupMaximumAgeMs?: number;
  slotName?: string;
  streamingArchiver: boolean;
  streamingArchiverName: string;
  streamingBackupName: string;
  /** Root of receive-wal's local directories (a folder per server); unset = receive-wal/ in the server's spool folder. */
  receiveWalDirectory?: string;
  /** How often receive-wal uploads the growing segment as .partial; 0 = only when stopping. */
  receiveWalPartialIntervalMs: number;
  /** Whether receive-wal's flush position follows the store (on), local disk (off), or synchronous_standby_names (auto). */
  receiveWalSynchronous: 'auto' | 'on' | 'off';
  /** A validated 5-field cron expression; cronSchedule (values.ts) turns it into a croner schedule. */
  backupSchedule?: string;
  snapshotProvider?: ProviderName;
  snapshotInstance?: string;
  snapshotDisks?: string[];
  snapshotZone?: string;
  snapshotGcpProject?: string;
  snapshotEndpointUrl?: string;
  snapshotTimeoutMs: number;
  snapshotLocalDirectory?: string;
  retryTimeoutMs: number;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  walArchiveTimeoutMs: number;
  /** WAL files per wal-upload call, the asked one included; 1 = no batching. */
  archiveBatchSize: number;
  /** WAL files uploaded or prefetched at once. */
  archiveParallel: number;
  /** Segments wal-restore prefetches ahead; 0 = off. */
  restorePrefetch: number;
  /** Root of the WAL spool; unset = cloudbarman_spool inside pg_wal. */
  spoolDirectory?: string;
  /** Where each value came from, by option name, for show-config and errors. Unset options have no entry. */
  origins: Record<string, Origin>;
  /** The same in detail: "/etc/cloudbarman.conf:12 [pg1]", "CLOUDBARMAN_PROVIDER", "--provider", "default". */
  locations: Record<string, string>;
  /** The config file read, if any. */
  configFile?: string;
}

/** The ServerConfig field of every option; the compiler checks that none is missing. */
export const CONFIG_FIELDS: Readonly<Record<OptionName, keyof ServerConfig>> = {
  description: 'description',
  conninfo: 'conninfo',
  streaming_conninfo: 'streamingConninfo',
  pgdata: 'pgdata',
  provider: 'provider',
  destination: 'destination',
  endpoint_url: 'endpointUrl',
  s3_force_path_style: 's3ForcePathStyle',
  aws_region: 'awsRegion',
  aws_profile: 'awsProfile',
  azure_subscription_id: 'azureSubscriptionId',
  azure_resource_group: 'azureResourceGroup',
  azure_storage_account: 'azureStorageAccount',
  azure_credential: 'azureCredential',
  azure_encryption_scope: 'azureEncryptionScope',
  azure_access_tier: 'azureAccessTier',
  gcp_key_file: 'gcpKeyFile',
  gcp_kms_key_name: 'gcpKmsKeyName',
  gcp_storage_class: 'gcpStorageClass',
  tags: 'tags',
  client_encryption: 'clientEncryption',
  encryption_key_file: 'encryptionKeyFile',
  encryption_key_env: 'encryptionKeyEnv',
  encryption_kms_key_id: 'encryptionKmsKeyId',
  encryption_kms_endpoint_url: 'encryptionKmsEndpointUrl',
  encryption_azure_key_id: 'encryptionAzureKeyId',
  encryption_gcp_kms_key_name: 'encryptionGcpKmsKeyName',
  encryption_allow_plaintext: 'encryptionAllowPlaintext',
  backup_method: 'backupMethod',
  compression: 'compression',
  backup_compression: 'backupCompression',
  parallel_jobs: 'parallelJobs',
  part_size: 'partSizeBytes',
  upload_concurrency: 'uploadConcurrency',
  retention_policy: 'retentionPolicy',
  wal_retention_policy: 'walRetentionPolicy',
  retention_policy_mode: 'retentionPolicyMode',
  minimum_redundancy: 'minimumRedundancy',
  keep_daily: 'keepDaily',
  keep_weekly: 'keepWeekly',
  keep_monthly: 'keepMonthly',
  keep_yearly: 'keepYearly',
  last_backup_maximum_age: 'lastBackupMaximumAgeMs',
  slot_name: 'slotName',
  streaming_archiver: 'streamingArchiver',
  streaming_archiver_name: 'streamingArchiverName',
  streaming_backup_name: 'streamingBackupName',
  receive_wal_directory: 'receiveWalDirectory',
  receive_wal_partial_interval: 'receiveWalPartialIntervalMs',
  receive_wal_synchronous: 'receiveWalSynchronous',
  backup_schedule: 'backupSchedule',
  snapshot_provider: 'snapshotProvider',
  snapshot_instance: 'snapshotInstance',
  snapshot_disks: 'snapshotDisks',
  snapshot_zone: 'snapshotZone',
  snapshot_gcp_project: 'snapshotGcpProject',
  snapshot_endpoint_url: 'snapshotEndpointUrl',
  snapshot_timeout: 'snapshotTimeoutMs',
  snapshot_local_directory: 'snapshotLocalDirectory',
  retry_timeout: 'retryTimeoutMs',
  connect_timeout: 'connectTimeoutMs',
  request_timeout: 'requestTimeoutMs',
  wal_archive_timeout: 'walArchiveTimeoutMs',
  archive_batch_size: 'archiveBatchSize',
  archive_parallel: 'archiveParallel',
  restore_prefetch: 'restorePrefetch',
  spool_directory: 'spoolDirectory',
};

/** The config file used when neither -c nor CLOUDBARMAN_CONFIG names one. */
export const DEFAULT_CONFIG_PATH = '/etc/cloudbarman.conf';

/** Server names become an object-key segment under the destination, so they are kept plain. */
const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

type Value = string | number | boolean | string[] | RetentionPolicy;

interface Setting {
  value: Value;
  origin: Origin;
  where: string;
}

/** Loads, merges and validates everything for one server. Throws CloudbarmanError('bad-input') with a hint. */
export async function loadServerConfig(server: string, sources: ConfigSources): Promise<ServerConfig> {
  checkServerName(server);
  const flagLayer = readFlags(sources.flags, sources.flagRenames ?? {});
  const envLayer = readEnv(sources.env);
  const file = await readConfigFile(sources);
  const section = file?.sections.get(server);
  const defaultsSection = file?.sections.get(DEFAULTS_SECTION);
  const sectionLayer = section === undefined || file === undefined ? new Map<string, Setting>() : readSection(section, file, 'server');
  const defaultsLayer = defaultsSection === undefined || file === undefined ? new Map<string, Setting>() : readSection(defaultsSection, file, 'global');

  if (file !== undefined && section === undefined && !flagLayer.has('destination') && !envLayer.has('destination')) {
    const known = serverSections(file).map((s) => s.name);
    const suggestion = closestMatch(server, known);
    // A [cloudbarman] destination alone is not enough: a mistyped server name would then
    // archive quietly under a new prefix, where no restore would look for it.
    throw badInput(
      `server "${server}" is not in ${file.source}, and its destination is not given on the command line or in the environment`,
      (suggestion !== undefined ? `did you mean "${suggestion}"? Otherwise add` : 'add') +
        ` a [${server}] section to ${file.source}, or give ${flagName('destination')} or ${envName('destination')}` +
        (known.length > 0 && suggestion === undefined ? ` (configured servers: ${known.join(', ')})` : ''),
    );
  }

  const settings = new Map<string, Setting>();
  for (const spec of OPTIONS) {
    const chosen = flagLayer.get(spec.name) ?? envLayer.get(spec.name) ?? sectionLayer.get(spec.name) ?? defaultsLayer.get(spec.name);
    if (chosen !== undefined) {
      settings.set(spec.name, chosen);
    } else if (spec.default !== undefined) {
      settings.set(spec.name, { value: unwrapDefault(spec), origin: 'default', where: 'default' });
    }
  }
  resolveDerived(server, settings, file);
  return buildServerConfig(server, settings, file?.source);
}

/** The servers the config file configures: every section except [cloudbarman] and [barman]. No file: none. */
export async function listConfiguredServers(sources: Pick<ConfigSources, 'configPath' | 'defaultConfigPath' | 'env' | 'readFile'>): Promise<string[]> {
  const file = await readConfigFile(sources);
  if (file === undefined) return [];
  const sections = serverSections(file);
  for (const section of sections) checkServerName(section.name, `${file.source}:${section.line}: `);
  return sections.map((s) => s.name);
}

/** What a provider needs to open the server's store. */
export function toStoreOptions(cfg: ServerConfig): StoreOptions {
  const options: StoreOptions = {
    destination: cfg.destination,
    multipart: { partSizeBytes: cfg.partSizeBytes, concurrency: cfg.uploadConcurrency },
    connectTimeoutMs: cfg.connectTimeoutMs,
    requestTimeoutMs: cfg.requestTimeoutMs,
  };
  if (cfg.endpointUrl !== undefined) options.endpointUrl = cfg.endpointUrl;
  if (cfg.tags !== undefined) options.tags = parseTags(cfg.tags).value ?? {};
  if (cfg.provider === 'aws') {
    options.aws = { forcePathStyle: cfg.s3ForcePathStyle };
    if (cfg.awsRegion !== undefined) options.aws.region = cfg.awsRegion;
    if (cfg.awsProfile !== undefined) options.aws.profile = cfg.awsProfile;
  }
  if (cfg.provider === 'azure') {
    options.azure = { credential: cfg.azureCredential };
    if (cfg.azureStorageAccount !== undefined) options.azure.account = cfg.azureStorageAccount;
    if (cfg.azureEncryptionScope !== undefined) options.azure.encryptionScope = cfg.azureEncryptionScope;
    if (cfg.azureAccessTier !== undefined) options.azure.accessTier = cfg.azureAccessTier;
  }
  if (cfg.provider === 'gcp') {
    options.gcp = {};
    if (cfg.gcpKeyFile !== undefined) options.gcp.keyFile = cfg.gcpKeyFile;
    if (cfg.gcpKmsKeyName !== undefined) options.gcp.kmsKeyName = cfg.gcpKmsKeyName;
    if (cfg.gcpStorageClass !== undefined) options.gcp.storageClass = cfg.gcpStorageClass;
  }
  return options;
}

// ---------------------------------------------------------------- the layers

function checkServerName(server: string, prefix = ''): void {
  if (!SERVER_NAME.test(server)) {
    throw badInput(
      `${prefix}server name ${JSON.stringify(server)} is not valid`,
      'use letters, digits, "_", "." and "-", starting with a letter or digit: it becomes part of every object key',
    );
  }
  if (server === DEFAULTS_SECTION || server === BARMAN_SECTION) {
    throw badInput(`${prefix}"${server}" is not a server name`, `[${server}] is the section of ${server === DEFAULTS_SECTION ? 'defaults for every server' : "Barman's own settings"}; name a server section instead`);
  }
}

function readFlags(flags: ConfigSources['flags'], renames: Readonly<Record<string, string>>): Map<string, Setting> {
  const layer = new Map<string, Setting>();
  for (const [name, raw] of Object.entries(flags)) {
    if (raw === undefined) continue;
    const spec = findOption(name);
    // The CLI builds this record from the table, so an unknown name is a bug, not user input.
    if (spec === undefined) throw new Error(`internal: flags record has unknown option "${name}"`);
    const renamed = renames[name];
    const where = renamed === undefined ? flagName(name) : `--${renamed}`;
    const text = typeof raw === 'boolean' ? (raw ? 'on' : 'off') : raw;
    layer.set(name, { value: parseOrThrow(spec, text, `option "${name}" (${where})`), origin: 'flag', where });
  }
  return layer;
}

function readEnv(env: ConfigSources['env']): Map<string, Setting> {
  const layer = new Map<string, Setting>();
  const known = OPTIONS.map((spec) => envName(spec.name));
  for (const [key, raw] of Object.entries(env)) {
    if (!key.startsWith(ENV_PREFIX) || NON_OPTION_ENV_VARS.has(key)) continue;
    const spec = findOption(key.slice(ENV_PREFIX.length).toLowerCase());
    if (spec === undefined || envName(spec.name) !== key) {
      const suggestion = closestMatch(key, [...known, ...NON_OPTION_ENV_VARS]);
      throw badInput(
        `environment variable ${key} is not a cloudbarman setting`,
        suggestion !== undefined ? `did you mean ${suggestion}?` : `unset it; settings are ${ENV_PREFIX}<OPTION_NAME>, e.g. ${envName('destination')}`,
      );
    }
    // An empty variable counts as unset, the usual shell convention (CLOUDBARMAN_X= cmd).
    if (raw === undefined || raw === '') continue;
    layer.set(spec.name, { value: parseOrThrow(spec, raw, `option "${spec.name}" (environment ${key})`), origin: 'env', where: key });
  }
  return layer;
}

async function readConfigFile(sources: Pick<ConfigSources, 'configPath' | 'defaultConfigPath' | 'env' | 'readFile'>): Promise<IniDocument | undefined> {
  const envPath = sources.env.CLOUDBARMAN_CONFIG;
  const named = sources.configPath ?? (envPath === undefined || envPath === '' ? undefined : envPath);
  const path = named ?? sources.defaultConfigPath ?? DEFAULT_CONFIG_PATH;
  const read = sources.readFile ?? ((p: string) => fsReadFile(p, 'utf8'));
  let text: string;
  try {
    text = await read(path);
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'ENOENT' && named === undefined) return undefined;
    const namedBy = sources.configPath !== undefined ? 'given with -c' : named !== undefined ? 'named by CLOUDBARMAN_CONFIG' : 'the default';
    if (code === 'ENOENT') {
      throw new CloudbarmanError('bad-input', `config file ${path} does not exist`, { hint: `check the path ${namedBy}`, cause: err });
    }
    const reason = code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : String((err as Error).message);
    throw new CloudbarmanError('bad-input', `cannot read config file ${path}: ${reason}`, {
      hint: 'make it readable by the user running cloudbarman (archive_command runs as postgres)',
      cause: err,
    });
  }
  return parseIni(text, path);
}

function serverSections(file: IniDocument): IniSection[] {
  return [...file.sections.values()].filter((s) => s.name !== DEFAULTS_SECTION && s.name !== BARMAN_SECTION);
}

function readSection(section: IniSection, file: IniDocument, kind: 'server' | 'global'): Map<string, Setting> {
  const layer = new Map<string, Setting>();
  const names = OPTIONS.map((spec) => spec.name);
  for (const entry of section.entries.values()) {
    const at = `${file.source}:${entry.line}`;
    const spec = findOption(entry.key);
    if (spec === undefined) {
      const suggestion = closestMatch(entry.key, names);
      throw badInput(
        `${at}: option "${entry.key}" is unknown`,
        suggestion !== undefined ? `did you mean "${suggestion}"?` : 'remove it, or check its spelling against the options in --help ("Config overrides")',
      );
    }
    if (spec.applies !== undefined && spec.applies !== kind) {
      throw badInput(
        `${at}: option "${spec.name}" cannot be set in [${section.name}]`,
        spec.applies === 'server' ? `it differs per server: move it to each server's section` : `move it to [${DEFAULTS_SECTION}]`,
      );
    }
    layer.set(spec.name, { value: parseOrThrow(spec, entry.value, `${at}: option "${spec.name}"`), origin: 'file', where: `${at} [${section.name}]` });
  }
  return layer;
}

// ---------------------------------------------------------------- values

function parseOrThrow(spec: OptionSpec, text: string, prefix: string): Value {
  const parsed = parseValue(spec, text);
  if (parsed.ok) return parsed.value;
  // A URL's user:password@ is a secret however the option is declared: never echo it.
  const shown = spec.secret === true ? '<hidden>' : JSON.stringify(spec.type === 'url' ? text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1***@') : text);
  throw badInput(`${prefix}: ${shown} ${parsed.problem}`, parsed.hint ?? `${spec.name} is ${spec.description}`);
}

/** Parses one option's text by its type. */
export function parseValue(spec: OptionSpec, text: string): Parsed<Value> {
  if (text === '') return { ok: false, problem: 'is empty', hint: `remove the setting to leave ${spec.name} at its default` };
  switch (spec.type) {
    case 'string': {
      const problem = spec.check?.(text);
      return problem === undefined ? { ok: true, value: text } : { ok: false, problem };
    }
    case 'int':
      return parseWholeNumber(text, spec.min, spec.max);
    case 'bool':
      return parseBool(text);
    case 'enum':
      return parseEnum(text, spec.values ?? []);
    case 'size':
      return parseSize(text, spec.min, spec.max);
    case 'seconds':
      return parseSeconds(text, spec.min, spec.max);
    case 'conninfo': {
      const parsed = parseConninfo(text);
      return parsed.ok ? { ok: true, value: text } : parsed;
    }
    case 'url':
      return parseUrl(text, spec.schemes ?? []);
    case 'path':
      return parseAbsolutePath(text);
    case 'cron': {
      return parseCronSchedule(text);
    }
    case 'retention':
      return parseRetentionPolicy(text);
    case 'list':
      return parseList(text);
  }
}

function unwrapDefault(spec: OptionSpec): Value {
  const parsed = parseValue(spec, spec.default ?? '');
  if (!parsed.ok) throw new Error(`internal: default of ${spec.name} ${parsed.problem}`);
  return parsed.value;
}

/** Defaults that depend on other options, and the checks that span several. */
function resolveDerived(server: string, settings: Map<string, Setting>, file: IniDocument | undefined): void {
  const destination = settings.get('destination');
  if (destination === undefined) {
    const inFile = file === undefined ? '' : `, or "destination = s3://bucket/prefix" in [${server}] of ${file.source}`;
    throw badInput(`no destination for server "${server}"`, `set option "destination": ${flagName('destination')} URL, ${envName('destination')}${inFile}`);
  }
  const url = String(destination.value);
  const scheme = url.slice(0, url.indexOf(':') + 1);
  const implied = (Object.keys(PROVIDER_SCHEMES) as ProviderName[]).find((p) => PROVIDER_SCHEMES[p] === scheme);
  if (implied === undefined) throw new Error(`internal: destination scheme ${scheme} passed validation`);
  const provider = settings.get('provider');
  if (provider === undefined) {
    settings.set('provider', { value: implied, origin: 'default', where: `inferred from destination (${destination.where})` });
  } else if (provider.value !== implied) {
    const wanted = PROVIDER_SCHEMES[provider.value as ProviderName];
    throw badInput(
      `destination ${url} (${destination.where}) does not match provider "${String(provider.value)}" (${provider.where})`,
      `provider ${String(provider.value)} takes ${wanted}//... destinations${provider.value === 'local' ? ' or an absolute path' : ''}; change one of the two`,
    );
  }

  const wrapping = ['encryption_kms_key_id', 'encryption_azure_key_id', 'encryption_gcp_kms_key_name'].filter((name) => settings.has(name));
  if (wrapping.length > 1) {
    throw badInput(
      `${wrapping.map((name) => `${name} (${settings.get(name)?.where ?? ''})`).join(' and ')} cannot be combined`,
      'the master key is wrapped by one key-management service: keep the option of the service that made the key file',
    );
  }

  derive(settings, 'backup_compression', 'compression');
  derive(settings, 'streaming_conninfo', 'conninfo');
  if (!settings.has('s3_force_path_style')) {
    settings.set('s3_force_path_style', { value: settings.has('endpoint_url'), origin: 'default', where: 'default (on when endpoint_url is set)' });
  }
}

/** An unset option takes another's value, recorded as a default. */
function derive(settings: Map<string, Setting>, name: string, from: string): void {
  const source = settings.get(from);
  if (settings.has(name) || source === undefined) return;
  settings.set(name, { value: source.value, origin: 'default', where: `default (same as ${from})` });
}

function buildServerConfig(server: string, settings: ReadonlyMap<string, Setting>, configFile: string | undefined): ServerConfig {
  const get = (name: OptionName): Value | undefined => settings.get(name)?.value;
  const str = (name: OptionName): string | undefined => {
    const v = get(name);
    return typeof v === 'string' ? v : undefined;
  };
  const num = (name: OptionName): number => {
    const v = get(name);
    if (typeof v !== 'number') throw new Error(`internal: ${name} has no number`);
    return v;
  };
  const bool = (name: OptionName): boolean => get(name) === true;
  const required = (name: OptionName): string => {
    const v = str(name);
    if (v === undefined) throw new Error(`internal: ${name} has no value`);
    return v;
  };
  const list = (name: OptionName): string[] | undefined => {
    const v = get(name);
    return Array.isArray(v) ? v : undefined;
  };
  const retention = get('retention_policy');

  const origins: Record<string, Origin> = {};
  const locations: Record<string, string> = {};
  for (const [name, setting] of settings) {
    origins[name] = setting.origin;
    locations[name] = setting.where;
  }

  const cfg: ServerConfig = {
    server,
    description: str('description'),
    conninfo: str('conninfo'),
    streamingConninfo: str('streaming_conninfo'),
    pgdata: str('pgdata'),
    provider: required('provider') as ProviderName,
    destination: required('destination'),
    endpointUrl: str('endpoint_url'),
    s3ForcePathStyle: bool('s3_force_path_style'),
    awsRegion: str('aws_region'),
    awsProfile: str('aws_profile'),
    azureSubscriptionId: str('azure_subscription_id'),
    azureResourceGroup: str('azure_resource_group'),
    azureStorageAccount: str('azure_storage_account'),
    azureCredential: required('azure_credential') as AzureCredentialName,
    azureEncryptionScope: str('azure_encryption_scope'),
    azureAccessTier: str('azure_access_tier') as ServerConfig['azureAccessTier'],
    gcpKeyFile: str('gcp_key_file'),
    gcpKmsKeyName: str('gcp_kms_key_name'),
    gcpStorageClass: str('gcp_storage_class') as ServerConfig['gcpStorageClass'],
    tags: str('tags'),
    clientEncryption: required('client_encryption') as ServerConfig['clientEncryption'],
    encryptionKeyFile: str('encryption_key_file'),
    encryptionKeyEnv: required('encryption_key_env'),
    encryptionKmsKeyId: str('encryption_kms_key_id'),
    encryptionKmsEndpointUrl: str('encryption_kms_endpoint_url'),
    encryptionAzureKeyId: str('encryption_azure_key_id'),
    encryptionGcpKmsKeyName: str('encryption_gcp_kms_key_name'),
    encryptionAllowPlaintext: bool('encryption_allow_plaintext'),
    backupMethod: required('backup_method') as BackupMethod,
    compression: required('compression') as WalCompression,
    backupCompression: required('backup_compression') as BackupCompression,
    parallelJobs: num('parallel_jobs'),
    partSizeBytes: num('part_size'),
    uploadConcurrency: num('upload_concurrency'),
    retentionPolicy: typeof retention === 'object' && !Array.isArray(retention) ? retention : undefined,
    walRetentionPolicy: required('wal_retention_policy') as 'main',
    retentionPolicyMode: required('retention_policy_mode') as 'auto',
    minimumRedundancy: num('minimum_redundancy'),
    keepDaily: num('keep_daily'),
    keepWeekly: num('keep_weekly'),
    keepMonthly: num('keep_monthly'),
    keepYearly: num('keep_yearly'),
    lastBackupMaximumAgeMs: get('last_backup_maximum_age') as number | undefined,
    slotName: str('slot_name'),
    streamingArchiver: bool('streaming_archiver'),
    streamingArchiverName: required('streaming_archiver_name'),
    streamingBackupName: required('streaming_backup_name'),
    receiveWalDirectory: str('receive_wal_directory'),
    receiveWalPartialIntervalMs: num('receive_wal_partial_interval'),
    receiveWalSynchronous: required('receive_wal_synchronous') as ServerConfig['receiveWalSynchronous'],
    backupSchedule: str('backup_schedule'),
    snapshotProvider: str('snapshot_provider') as ProviderName | undefined,
    snapshotInstance: str('snapshot_instance'),
    snapshotDisks: list('snapshot_disks'),
    snapshotZone: str('snapshot_zone'),
    snapshotGcpProject: str('snapshot_gcp_project'),
    snapshotEndpointUrl: str('snapshot_endpoint_url'),
    snapshotTimeoutMs: num('snapshot_timeout'),
    snapshotLocalDirectory: str('snapshot_local_directory'),
    retryTimeoutMs: num('retry_timeout'),
    connectTimeoutMs: num('connect_timeout'),
    requestTimeoutMs: num('request_timeout'),
    walArchiveTimeoutMs: num('wal_archive_timeout'),
    archiveBatchSize: num('archive_batch_size'),
    archiveParallel: num('archive_parallel'),
    restorePrefetch: num('restore_prefetch'),
    spoolDirectory: str('spool_directory'),
    origins,
    locations,
    configFile,
  };
  // Leave unset options out, rather than present as undefined, so that show-config and
  // deepEqual see only what is set.
  const fields = cfg as unknown as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (fields[key] === undefined) delete fields[key];
  }
  return cfg;
}
