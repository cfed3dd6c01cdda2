/** `restore SERVER BACKUP_ID|latest DEST_DIR [targets]`: maps the options to restoreBackup and prints the summary. */
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Option } from 'commander';
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { badInput } from '../../core/errors.ts';

interface RestoreOptions {
  targetTime?: string;
  targetXid?: string;
  targetLsn?: string;
  targetName?: string;
  targetImmediate?: boolean;
  targetTli?: string;
  targetAction?: string;
  tablespace: string[];
  standby?: boolean;
  snapshotRecoveryInstance?: string;
  createDisks?: boolean;
}

export const registerRestore: Register = (program, run) => {
  addConfigFlags(program.command('restore')
    .summary('restore a base backup into an empty directory, ready for point-in-time recovery')
    .description('Restore a base backup into DEST_DIR (absent or empty), verifying every chunk against its SHA-256, and ' +
      'write the recovery settings: restore_command calling "cloudbarman wal-restore", the recovery target, and ' +
      'recovery.signal (standby.signal with --standby). "latest", or a --target-time with latest, picks the newest ' +
      'DONE backup that ends before the target. Until the restore has finished, DEST_DIR holds ' +
      'cloudbarman_restore_incomplete and no global/pg_control, so PostgreSQL cannot start on a partial restore. ' +
      'As with Barman, the restored cluster gets archive_command = \'false\' so that it cannot archive into its ' +
      'source\'s archive; it keeps its WAL until a real archive_command is set (the summary shows the command). ' +
      'A snapshot backup (backup --method snapshot) is restored with --snapshot-recovery-instance, run on that ' +
      'instance: disks made from the backup\'s snapshots must be attached to it (--create-disks makes and attaches ' +
      'the missing ones) and mounted where the source had them; DEST_DIR must then be the backup\'s data directory ' +
      '(show prints it), and the data is not copied: backup_label, tablespace_map and the recovery settings are ' +
      'written onto the disks, as for any restore (docs/snapshots.md).')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<backup_id>', 'a backup id from "cloudbarman list", or latest')
    .argument('<dest_dir>', 'the data directory to create (absent or empty); for a snapshot backup, its data directory on the restored disks')
    .option('--target-time <time>', "recover up to this time, e.g. '2026-11-22 10:41:07+01' (no zone: UTC)")
    .option('--target-xid <xid>', 'recover up to this transaction id')
    .option('--target-lsn <lsn>', 'recover up to this WAL location, e.g. 0/3000060')
    .option('--target-name <name>', 'recover up to this restore point (pg_create_restore_point)')
    .option('--target-immediate', 'recover only until the backup is consistent')
    .option('--target-tli <tli>', 'recovery_target_timeline: latest, current or a timeline id')
    .addOption(new Option('--target-action <action>', 'recovery_target_action on reaching the target').choices(['pause', 'promote', 'shutdown']))
    .option('--tablespace <name:path>', 'put tablespace NAME at PATH instead of its original location (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--standby', 'write standby.signal instead of recovery.signal')
    .option('--snapshot-recovery-instance <instance>', 'restore a snapshot backup on this instance (VM), onto disks made from its snapshots')
    .option('--create-disks', 'with --snapshot-recovery-instance: create the missing disks from the snapshots and attach them'))
    .action(run('restore', async (output: Output, ...args: unknown[]) => {
      const [server, backupId, destDir, opts] = args as [string, string, string, RestoreOptions & Record<string, unknown>];
      const { isBackupId } = await import('../../core/catalog/backup-keys.ts');
      if (backupId !== 'latest' && !isBackupId(backupId)) {
        throw badInput(`"${backupId}" is not a backup id`, 'give an id from "cloudbarman list" (YYYYMMDDTHHMMSSZ), or latest');
      }
      const { parseRecoveryTarget, parseTargetAction, parseTargetTimeline } = await import('../../core/restore/recovery-target.ts');
      const { parseRelocations } = await import('../../core/restore/restore-plan.ts');
      const target = parseRecoveryTarget({
        ...(opts.targetTime === undefined ? {} : { time: opts.targetTime }),
        ...(opts.targetXid === undefined ? {} : { xid: opts.targetXid }),
        ...(opts.targetLsn === undefined ? {} : { lsn: opts.targetLsn }),
        ...(opts.targetName === undefined ? {} : { name: opts.targetName }),
        ...(opts.targetImmediate === undefined ? {} : { immediate: opts.targetImmediate }),
      });
      const timeline = opts.targetTli === undefined ? undefined : parseTargetTimeline(opts.targetTli);
      const action = opts.targetAction === undefined ? undefined : parseTargetAction(opts.targetAction);
      const relocations = parseRelocations(opts.tablespace, process.cwd());
      const dest = resolve(destDir);
      if (opts.createDisks === true && opts.snapshotRecoveryInstance === undefined) {
        throw badInput('--create-disks needs --snapshot-recovery-instance', 'name the instance the disks are made for and attached to');
      }

      const { loadConfig, openStore } = await import('../context.ts');
      const loaded = await loadConfig(server, { ...program.opts(), ...opts });
      // PostgreSQL runs restore_command from the data directory: the config file needs an absolute path.
      const cfg = loaded.configFile === undefined ? loaded : { ...loaded, configFile: resolve(loaded.configFile) };
      const { shellCommand, walRestoreArgv } = await import('../../core/restore/restore-command.ts');
      const launcher = launcherPath();
      const restoreCommand = shellCommand(walRestoreArgv(cfg, launcher));
      const { restoreBackup } = await import('../../core/restore/restore-backup.ts');
      const instance = opts.snapshotRecoveryInstance;
      const snapshots = instance === undefined ? undefined : {
        instance, createDisks: opts.createDisks === true,
        open: async (provider: string) => (await import('../open-snapshotter.ts')).openServerSnapshotter(cfg, provider),
      };
      const store = await openStore(cfg, output.log);
      try {
        const result = await restoreBackup({
          store, server: cfg.server, backupId, dest, standby: opts.standby === true, relocations,
          jobs: cfg.parallelJobs, restoreCommand, log: output.log, now: () => new Date(),
          ...(snapshots === undefined ? {} : { snapshots }),
          ...(target === undefined ? {} : { target }),
          ...(timeline === undefined ? {} : { timeline }),
          ...(action === undefined ? {} : { action }),
        });
        const start = `pg_ctl -D ${dest} start`;
        const { quoteSetting } = await import('../../core/restore/recovery-config.ts');
        const archiveCommand = `${launcher} wal-upload ${cfg.server} %p`;
        const enableArchiving = `ALTER SYSTEM SET archive_command = ${quoteSetting(archiveCommand)}; SELECT pg_reload_conf();`;
        const what = result.snapshot_disks === undefined
          ? [`  ${gib(result.size_bytes)} in ${result.files} files from ${result.parts} parts (${gib(result.stored_bytes)} stored) in ${result.seconds.toFixed(1)} s`]
          : result.snapshot_disks.map((d) => `  disk ${d.disk_name} (${d.disk_id}) from snapshot ${d.snapshot_id}${d.created ? ', created now,' : ''} at ${d.mount_point}`);
        const lines = [
          `restored backup ${result.backup_id} of ${result.server} into ${dest}`,
          ...what,
          `  chosen: ${result.reason}`,
          ...result.tablespaces.map((t) => `  tablespace ${t.name} (oid ${t.oid}) at ${t.location}${t.relocated ? ' (relocated)' : ''}`),
          `  recovery: ${result.recovery_target ?? 'all archived WAL'}; ${result.signal_file}`,
          ...Object.entries(result.recovery_settings).map(([k, v]) => `  ${k} = ${v}`),
          `next: start PostgreSQL as its OS user: ${start}`,
          '  it replays archived WAL through restore_command; that user needs read access to the config file and the store\'s credentials.',
          ...(process.getuid?.() === 0 && result.snapshot_disks === undefined ? [`  the files belong to root now: chown -R the data directory${result.tablespaces.length > 0 ? ' and tablespaces' : ''} to PostgreSQL's OS user first.`] : []),
          'archiving is off in the restored cluster (archive_command = \'false\'), so it cannot write into the archive it came from;',
          '  its WAL waits in pg_wal until archiving is on. Once it has replaced the primary of ' + cfg.server + ' (otherwise give it a server name of its own):',
          `  ${enableArchiving}`,
        ];
        output.result({ ...result, next_step: start, enable_archiving: enableArchiving }, lines);
      } finally {
        await store.close();
      }
    }));
};

/**
 * The absolute path of the cloudbarman launcher, for restore_command: bin/cloudbarman in the
 * checkout or package that holds the running script (dist/cloudbarman.mjs, or src/cli/main.ts).
 */
function launcherPath(): string {
  const script = process.argv[1];
  if (script !== undefined) {
    for (let dir = dirname(realpathSync(script)); dir !== dirname(dir); dir = dirname(dir)) {
      if (existsSync(join(dir, 'bin', 'cloudbarman'))) return join(dir, 'bin', 'cloudbarman');
    }
  }
  throw badInput('cannot find the cloudbarman launcher to put into restore_command', 'run restore through bin/cloudbarman');
}

function gib(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}
