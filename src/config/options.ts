/**
 * The one option table. Each row drives a config-file key, an environment variable
 * (CLOUDBARMAN_<NAME>), a command-line flag, its help text and its validation. Names are
 * Barman's wherever Barman has the option, so that a Barman user's server section reads the same.
 */

import { parseTags } from './values.ts';

/** How an option's text is parsed and validated (see values.ts). */
export type OptionType =
  | 'string'
  | 'int'
  | 'bool'
  | 'enum'
  | 'size'
  | 'seconds'
  | 'conninfo'
  | 'url'
  | 'path'
  | 'cron'
  | 'retention'
  | 'list';

/** One configurable setting. */
export interface OptionSpec {
  /** snake_case config key; Barman's name where Barman has the option. */
  name: string;
  type: OptionType;
  /** The allowed words of an 'enum'. */
  values?: readonly string[];
  /** Default as config text, parsed like any other value. Absent: no value, or derived (see load.ts). */
  default?: string;
  /** One line for --help. */
  description: string;
  /** Never shown in messages or output (connection strings may hold a password). */
  secret?: boolean;
  /** false = config file and environment only, no command-line flag. */
  flag?: boolean;
  /** The flag's spelling when it is not the kebab-case name (Barman's --jobs for parallel_jobs). */
  longFlag?: string;
  /** 'server' = not allowed in [cloudbarman] (it cannot be shared); 'global' = only there. Absent: both. */
  applies?: 'server' | 'global';
  /** Inclusive bounds: the number for 'int', seconds for 'seconds', bytes for 'size'. */
  min?: number;
  max?: number;
  /** URL schemes a 'url' accepts, with the colon ("s3:"); "file:" also admits a bare absolute path. */
  schemes?: readonly string[];
  /** Extra check on a 'string': returns the problem ("is too long"), or undefined when fine. */
  check?: (value: string) => string | undefined;
}

const PROVIDERS = ['aws', 'azure', 'gcp', 'local'] as const;
const MiB = 1024 * 1024;

const TABLE = [
  // --- the server
  { name: 'description', type: 'string', flag: false, applies: 'server', description: 'a human-readable description of the server' },
  { name: 'conninfo', type: 'conninfo', secret: true, applies: 'server', description: 'libpq connection string for SQL access to the server' },
  {
    name: 'streaming_conninfo',
    type: 'conninfo',
    secret: true,
    applies: 'server',
    description: 'libpq connection string for the replication protocol (default: conninfo, as in Barman)',
  },
  { name: 'pgdata', type: 'path', applies: 'server', description: 'the data directory, for backup_method local' },

  // --- where backups go
  { name: 'provider', type: 'enum', values: PROVIDERS, description: 'object store: aws, azure, gcp or local (default: from the destination scheme)' },
  {
    name: 'destination',
    type: 'url',
    schemes: ['s3:', 'azure:', 'gs:', 'file:'],
    description: 'where backups and WAL go: s3://bucket/prefix, azure://container/prefix, gs://bucket/prefix, file:///path',
  },
  { name: 'endpoint_url', type: 'url', schemes: ['http:', 'https:'], description: 'custom endpoint for S3-compatible stores and emulators' },
  {
    name: 's3_force_path_style',
    type: 'bool',
    description: 'S3 path-style addressing, bucket in the path (default: on when endpoint_url is set)',
  },
  { name: 'aws_region', type: 'string', description: 'AWS region (store and snapshots)' },
  { name: 'aws_profile', type: 'string', description: 'AWS shared-config profile' },
  { name: 'azure_subscription_id', type: 'string', description: 'Azure subscription, for snapshots' },
  { name: 'azure_resource_group', type: 'string', description: 'Azure resource group, for snapshots' },
  {
    name: 'azure_storage_account',
    type: 'string',
    check: (v: string) => (/^[a-z0-9]{3,24}$/.test(v) ? undefined : 'is not a storage account name (3 to 24 lower-case letters and digits)'),
    description: 'Azure storage account of azure:// destinations (default: AZURE_STORAGE_ACCOUNT, or the account of AZURE_STORAGE_CONNECTION_STRING)',
  },
  {
    name: 'azure_credential',
    type: 'enum',
    values: ['default', 'azure-cli', 'managed-identity'],
    default: 'default',
    description: "Entra ID credential used when no connection string, account key or SAS token is set (Barman's name): default (DefaultAzureCredential), azure-cli or managed-identity",
  },
  { name: 'azure_encryption_scope', type: 'string', description: 'Azure encryption scope that new blobs are encrypted with' },
  { name: 'azure_access_tier', type: 'enum', values: ['Hot', 'Cool', 'Cold'], description: 'access tier of new Azure blobs: Hot, Cool or Cold (default: the account default)' },
  { name: 'gcp_key_file', type: 'path', description: 'service-account key file for gs:// (default: GOOGLE_APPLICATION_CREDENTIALS, then Application Default Credentials)' },
  { name: 'gcp_kms_key_name', type: 'string', description: 'Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) that encrypts new gs:// objects (CMEK)' },
  {
    name: 'gcp_storage_class',
    type: 'enum',
    values: ['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE'],
    description: "storage class of new gs:// objects (default: the bucket's)",
  },
  {
    name: 'tags',
    type: 'string',
    check: (v: string) => parseTags(v).problem,
    description: 'key=value pairs, comma-separated, set as tags on new objects (Azure blob index tags, S3 object tags)',
  },

  // --- client-side encryption (docs/encryption.md)
  {
    name: 'client_encryption',
    type: 'enum',
    values: ['none', 'aes-256-gcm'],
    default: 'none',
    description: 'encrypt base backup data, manifests, backup_label and WAL on this host before they are stored: none or aes-256-gcm (docs/encryption.md); reading encrypted objects needs only the key',
  },
  {
    name: 'encryption_key_file',
    type: 'path',
    description: 'file holding the client-side encryption key: 32 raw bytes, or lines of 64 hex digits or base64 (the first encrypts, the others still decrypt); must not be readable by every user',
  },
  {
    name: 'encryption_key_env',
    type: 'string',
    default: 'CLOUDBARMAN_ENCRYPTION_KEY',
    check: (v: string) => (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(v)
      ? 'is not an environment variable name'
      : v !== 'CLOUDBARMAN_ENCRYPTION_KEY' && v.toUpperCase().startsWith('CLOUDBARMAN_') ? 'must not start with CLOUDBARMAN_ (those name settings), except the default CLOUDBARMAN_ENCRYPTION_KEY' : undefined),
    description: 'environment variable holding the client-side encryption key (64 hex digits or base64 of 32 bytes), used when encryption_key_file is not set',
  },
  {
    name: 'encryption_kms_key_id',
    type: 'string',
    description: 'AWS KMS key (id, ARN, alias/NAME or alias ARN) that wraps the master key: the key file or variable then holds the KMS ciphertext blob of the key, unwrapped once per run with kms:Decrypt (docs/encryption.md)',
  },
  {
    name: 'encryption_kms_endpoint_url',
    type: 'url',
    schemes: ['http:', 'https:'],
    description: 'custom endpoint of the key-management service for encryption_kms_key_id or encryption_gcp_kms_key_name (VPC or private endpoints, test servers)',
  },
  {
    name: 'encryption_azure_key_id',
    type: 'url',
    schemes: ['https:'],
    description: 'Azure Key Vault key (https://VAULT.vault.azure.net/keys/NAME[/VERSION]) that wraps the master key: the key file or variable then holds the RSA-OAEP-256 wrapKey result of the key, unwrapped once per run with unwrapKey (docs/encryption.md)',
  },
  {
    name: 'encryption_gcp_kms_key_name',
    type: 'string',
    check: (v: string) => (/^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/.test(v) ? undefined : 'is not a Cloud KMS key name (projects/P/locations/L/keyRings/R/cryptoKeys/K)'),
    description: 'Google Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) that wraps the master key: the key file or variable then holds the gcloud kms encrypt ciphertext of the key, unwrapped once per run with decrypt (docs/encryption.md)',
  },
  {
    name: 'encryption_allow_plaintext',
    type: 'bool',
    default: 'off',
    description: 'with client_encryption on, also read WAL and backup objects that were stored unencrypted (an archive from before encryption was turned on); off refuses them as tampered (exit 4)',
  },

  // --- backups
  {
    name: 'backup_method',
    type: 'enum',
    values: ['local', 'postgres', 'snapshot'],
    default: 'local',
    longFlag: 'method',
    description: 'local (read pgdata on this host), postgres (stream over streaming_conninfo) or snapshot (cloud volume snapshots)',
  },
  {
    name: 'compression',
    type: 'enum',
    values: ['none', 'gzip', 'zstd'],
    default: 'zstd',
    description: "WAL compression (Barman's option name for it): none, gzip or zstd",
  },
  {
    name: 'backup_compression',
    type: 'enum',
    values: ['none', 'gzip', 'lz4', 'zstd'],
    description: 'base backup compression: none, gzip, lz4 or zstd (default: the WAL compression)',
  },
  {
    name: 'parallel_jobs',
    type: 'int',
    min: 1,
    default: '2',
    longFlag: 'jobs',
    description: "files read, compressed and uploaded at once by backup and restore (Barman's parallel_jobs)",
  },
  { name: 'part_size', type: 'size', min: 5 * MiB, max: 5 * 1024 * MiB, default: '32MiB', description: 'size of each backup data part and of each multipart upload part, 5MiB to 5GiB; backup memory is about jobs x 2 x part_size' },
  { name: 'upload_concurrency', type: 'int', min: 1, default: '4', description: 'parts of one object uploaded at once' },

  // --- retention
  { name: 'retention_policy', type: 'retention', description: 'REDUNDANCY n, or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS' },
  { name: 'wal_retention_policy', type: 'enum', values: ['main'], default: 'main', flag: false, description: 'WAL retention: main (follows retention_policy; the only value, as in Barman)' },
  { name: 'retention_policy_mode', type: 'enum', values: ['auto'], default: 'auto', flag: false, description: 'auto: cron applies retention_policy (the only value, as in Barman)' },
  { name: 'minimum_redundancy', type: 'int', min: 0, default: '0', description: 'backups that retention never deletes, whatever the policy' },
  { name: 'keep_daily', type: 'int', min: 0, default: '0', description: 'also keep the newest backup of each of the last N days that have one (grandfather-father-son)' },
  { name: 'keep_weekly', type: 'int', min: 0, default: '0', description: 'also keep the newest backup of each of the last N ISO weeks that have one' },
  { name: 'keep_monthly', type: 'int', min: 0, default: '0', description: 'also keep the newest backup of each of the last N months that have one' },
  { name: 'keep_yearly', type: 'int', min: 0, default: '0', description: 'also keep the newest backup of each of the last N years that have one' },
  { name: 'last_backup_maximum_age', type: 'seconds', min: 1, description: "check fails when the newest DONE backup is older than this (Barman's option), e.g. 1 DAYS or 26h" },

  // --- streaming WAL
  {
    name: 'slot_name',
    type: 'string',
    check: (v: string) => (/^[a-z0-9_]{1,63}$/.test(v) ? undefined : 'is not a replication slot name (lower-case letters, digits and _, at most 63)'),
    description: 'replication slot for receive-wal',
  },
  { name: 'streaming_archiver', type: 'bool', default: 'off', description: 'stream WAL with receive-wal (run by daemon)' },
  { name: 'streaming_archiver_name', type: 'string', default: 'cloudbarman_receive_wal', description: 'application_name of the WAL streaming connection' },
  { name: 'streaming_backup_name', type: 'string', default: 'cloudbarman_streaming_backup', description: 'application_name of the backup_method postgres connection' },
  {
    name: 'receive_wal_directory',
    type: 'path',
    description: 'where receive-wal writes WAL as it arrives, until it is stored, one folder per server (default: receive-wal/ in the spool folder of the server)',
  },
  {
    name: 'receive_wal_partial_interval',
    type: 'seconds',
    min: 0,
    default: '60',
    description: 'how often receive-wal uploads the segment being written, as its .partial object; 0: only when it stops',
  },
  {
    name: 'receive_wal_synchronous',
    type: 'enum',
    values: ['auto', 'on', 'off'],
    default: 'auto',
    description: 'receive-wal reports as flushed only WAL stored in the store (on), or fsynced locally (off); auto: on when synchronous_standby_names names streaming_archiver_name, as Barman decides',
  },

  // --- scheduling
  { name: 'backup_schedule', type: 'cron', flag: false, description: 'when cron/daemon take a backup: 5-field cron, e.g. 0 3 * * *' },

  // --- snapshots
  { name: 'snapshot_provider', type: 'enum', values: PROVIDERS, description: 'cloud whose volume snapshots backup_method snapshot takes' },
  { name: 'snapshot_instance', type: 'string', applies: 'server', description: 'VM (instance) the disks are attached to' },
  { name: 'snapshot_disks', type: 'list', applies: 'server', description: 'comma-separated disks to snapshot (local: directories, each its own mount point)' },
  { name: 'snapshot_zone', type: 'string', description: 'zone of the instance and disks' },
  { name: 'snapshot_gcp_project', type: 'string', description: 'Google Cloud project of the instance' },
  { name: 'snapshot_endpoint_url', type: 'url', schemes: ['http:', 'https:'], description: 'custom endpoint of the compute API that takes snapshots (private endpoints, test servers)' },
  {
    name: 'snapshot_timeout',
    type: 'seconds',
    min: 1,
    default: '1d',
    description: 'how long backup waits for its snapshots to be taken and completed, and restore for a disk to be created or attached',
  },
  {
    name: 'snapshot_local_directory',
    type: 'path',
    description: 'snapshot_provider local: where snapshots are kept (default: .snapshots in a file:// destination)',
  },

  // --- WAL archiving and restore (docs/wal.md)
  {
    name: 'archive_batch_size',
    type: 'int',
    min: 1,
    max: 1024,
    default: '32',
    description: 'WAL files one wal-upload call archives: the one PostgreSQL asks for plus others archive_status already marks .ready; 1 turns batching off',
  },
  {
    name: 'archive_parallel',
    type: 'int',
    min: 1,
    max: 64,
    default: '4',
    description: 'WAL files transferred at once: uploads of a wal-upload batch, downloads of the wal-restore prefetcher',
  },
  {
    name: 'restore_prefetch',
    type: 'int',
    min: 0,
    max: 1024,
    default: '16',
    description: 'WAL segments wal-restore downloads ahead of recovery in a background process; the spool holds at most this many plus the one being handed over; 0 turns prefetch off',
  },
  {
    name: 'spool_directory',
    type: 'path',
    description: 'where batch-archive records and prefetched segments are kept, one folder per server (default: cloudbarman_spool inside pg_wal)',
  },

  // --- time limits
  { name: 'retry_timeout', type: 'seconds', min: 0, default: '30', description: 'how long a store operation keeps retrying' },
  { name: 'connect_timeout', type: 'seconds', min: 1, default: '10', description: 'time allowed to open a connection' },
  { name: 'request_timeout', type: 'seconds', min: 1, default: '120', description: 'time a request may sit idle before it is abandoned' },
  { name: 'wal_archive_timeout', type: 'seconds', min: 1, default: '300', description: 'how long backup waits for the WAL that makes it consistent to reach the store (through archive_command, or receive-wal with streaming_archiver = on)' },
] as const satisfies readonly OptionSpec[];

/** The name of an option in the table. */
export type OptionName = (typeof TABLE)[number]['name'];

/** Every option, in the order --help lists them. */
export const OPTIONS: readonly OptionSpec[] = TABLE;

const BY_NAME: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((spec) => [spec.name, spec]));

/** The option called `name`, if there is one. */
export function findOption(name: string): OptionSpec | undefined {
  return BY_NAME.get(name);
}

/** The option's command-line flag: endpoint_url -> "--endpoint-url", parallel_jobs -> "--jobs". */
export function flagName(name: string): string {
  return `--${BY_NAME.get(name)?.longFlag ?? name.replaceAll('_', '-')}`;
}

/** The option's environment variable: endpoint_url -> "CLOUDBARMAN_ENDPOINT_URL". */
export function envName(name: string): string {
  return `${ENV_PREFIX}${name.toUpperCase()}`;
}

/** Every environment variable cloudbarman reads starts with this. */
export const ENV_PREFIX = 'CLOUDBARMAN_';

/** CLOUDBARMAN_ variables that are not options, so the typo check leaves them alone. */
export const NON_OPTION_ENV_VARS: ReadonlySet<string> = new Set(['CLOUDBARMAN_CONFIG', 'CLOUDBARMAN_ENCRYPTION_KEY']);

/** The section holding defaults for every server. */
export const DEFAULTS_SECTION = 'cloudbarman';

/**
 * Barman's global section. It is skipped, not rejected, so that a barman.conf can be reused
 * as is: its [barman] options (barman_home, log_file, ...) configure Barman itself, not a server.
 */
export const BARMAN_SECTION = 'barman';
