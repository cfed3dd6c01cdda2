// Ready-made setups on the EC2 test server for the suites that drive the EC2 snapshotter: the
// snapshotter's own contract tests, and any test that runs a snapshot backup or restore through it.
import type { SnapshotterOptions } from '../../../providers/snapshotter.ts';
import type { Ec2ServerHandle } from './index.ts';
import type { Ec2State } from './state.ts';

/** A database server's instance as a snapshot backup finds it: a root volume, the named data disks, and one more disk that is not part of the backup. */
export interface DatabaseInstanceFixture {
  instanceId: string;
  name: string;
  zone: string;
  rootVolumeId: string;
  /** The data disks by name (Name tag), in the order given. */
  disks: { name: string; id: string; device: string }[];
  /** An attached data volume that the backup must leave out. */
  otherVolumeId: string;
}

/** Seeds a running instance with /dev/xvda as root, the given data disks (default: pgdata on /dev/sdf and pgwal on /dev/sdg) and a scratch disk on /dev/sdh. */
export function seedDatabaseInstance(
  state: Ec2State,
  options: { name?: string; zone?: string; disks?: { name: string; device: string; sizeGiB?: number }[] } = {},
): DatabaseInstanceFixture {
  const name = options.name ?? 'pg1';
  const disks = options.disks ?? [
    { name: 'pgdata', device: '/dev/sdf', sizeGiB: 100 },
    { name: 'pgwal', device: '/dev/sdg', sizeGiB: 20 },
  ];
  const { instance, volumeIds } = state.addInstance({
    name,
    ...(options.zone === undefined ? {} : { zone: options.zone }),
    volumes: [
      { device: '/dev/xvda', sizeGiB: 8, name: `${name}-root` },
      ...disks.map((d) => ({ device: d.device, sizeGiB: d.sizeGiB ?? 10, name: d.name })),
      { device: '/dev/sdh', sizeGiB: 50, name: `${name}-scratch` },
    ],
  });
  const [rootVolumeId = '', ...rest] = volumeIds;
  return {
    instanceId: instance.id,
    name,
    zone: instance.zone,
    rootVolumeId,
    disks: disks.map((d, i) => ({ name: d.name, id: rest[i] ?? '', device: d.device })),
    otherVolumeId: rest[disks.length] ?? '',
  };
}

/** An injected sleep that returns at once and remembers what it was asked to sleep; it honours aborts. */
export interface RecordingSleep {
  sleep: SnapshotterOptions['sleep'];
  /** Every requested delay, in order. */
  readonly delays: number[];
  /** Their sum: the time a real sleep would have taken. */
  total(): number;
}

/** A RecordingSleep: tests control time without waiting. */
export function recordingSleep(): RecordingSleep {
  const delays: number[] = [];
  return {
    delays,
    total: () => delays.reduce((a, b) => a + b, 0),
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      delays.push(ms);
    },
  };
}

/** Snapshotter options for the server: its endpoint and region, a recording sleep, a one-hour budget. */
export function ec2SnapshotterOptions(server: Ec2ServerHandle, extra: Partial<SnapshotterOptions> = {}): SnapshotterOptions {
  return {
    region: server.region,
    endpointUrl: server.endpoint,
    operationTimeoutMs: 3_600_000,
    sleep: recordingSleep().sleep,
    ...extra,
  };
}

/** Environment variables that would make the SDK's default credential chain or region lookup look elsewhere. */
const AMBIENT_AWS_VARIABLES = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  'AWS_REGION',
  'AWS_DEFAULT_REGION',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_EC2_METADATA_DISABLED',
  'AWS_ENDPOINT_URL',
  'AWS_ENDPOINT_URL_EC2',
] as const;

/**
 * Points the SDK's default credential chain at the server's access key (through the environment,
 * as on a machine with AWS_ACCESS_KEY_ID set), with no profile files and no instance metadata.
 * Returns a function that restores the previous environment.
 */
export function useServerCredentials(server: Pick<Ec2ServerHandle, 'accessKeyId' | 'secretAccessKey'>): () => void {
  const saved = new Map(AMBIENT_AWS_VARIABLES.map((name) => [name, process.env[name]]));
  for (const name of AMBIENT_AWS_VARIABLES) delete process.env[name];
  process.env['AWS_ACCESS_KEY_ID'] = server.accessKeyId;
  process.env['AWS_SECRET_ACCESS_KEY'] = server.secretAccessKey;
  process.env['AWS_CONFIG_FILE'] = '/nonexistent/cloudbarman-test/aws-config';
  process.env['AWS_SHARED_CREDENTIALS_FILE'] = '/nonexistent/cloudbarman-test/aws-credentials';
  process.env['AWS_EC2_METADATA_DISABLED'] = 'true';
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
