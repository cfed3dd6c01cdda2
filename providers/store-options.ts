/**
 * What a provider needs to open a store: the destination URL plus the connection settings the
 * config resolved. Built by the CLI from ServerConfig; providers read only their own part.
 */
export type ProviderName = 'aws' | 'azure' | 'gcp' | 'local';

export interface StoreOptions {
  /** Destination URL: s3://bucket/prefix, azure://container/prefix, gs://bucket/prefix or file:///path. */
  destination: string;
  /** Custom endpoint (S3-compatible stores, emulators). */
  endpointUrl?: string;
  aws?: {
    region?: string;
    profile?: string;
    /** Path-style addressing (bucket in the path); the default when endpointUrl is set. */
    forcePathStyle?: boolean;
  };
  azure?: {
    /** Storage account; otherwise AZURE_STORAGE_ACCOUNT or the connection string's. */
    account?: string;
    /** The Entra ID credential used when no connection string, account key or SAS token is in the environment. */
    credential: 'default' | 'azure-cli' | 'managed-identity';
    encryptionScope?: string;
    accessTier?: 'Hot' | 'Cool' | 'Cold';
  };
  gcp?: {
    /** Service-account key file; otherwise GOOGLE_APPLICATION_CREDENTIALS, then Application Default Credentials. */
    keyFile?: string;
    /** CMEK: the Cloud KMS key name for new objects. */
    kmsKeyName?: string;
    storageClass?: 'STANDARD' | 'NEARLINE' | 'COLDLINE' | 'ARCHIVE';
  };
  /** Tags set on every new object (providers that support object tags). */
  tags?: Record<string, string>;
  /** Bounded memory for large uploads: partSizeBytes × concurrency bytes in flight at most. */
  multipart: { partSizeBytes: number; concurrency: number };
  /** Time allowed to open a connection. */
  connectTimeoutMs: number;
  /** Time a request may sit idle (no bytes either way) before it is abandoned. */
  requestTimeoutMs: number;
}

/** The URL scheme each provider accepts. */
export const PROVIDER_SCHEMES: Record<ProviderName, string> = {
  aws: 's3:',
  azure: 'azure:',
  gcp: 'gs:',
  local: 'file:',
};
