/**
 * The recovery configuration of a restored data directory: the settings appended to
 * postgresql.auto.conf and the signal file that starts recovery (recovery.signal) or a standby
 * (standby.signal). Pure: built from the request, rendered to text, tested line by line.
 *
 * The backed-up postgresql.auto.conf may already hold recovery settings (a cluster that was itself
 * restored once). PostgreSQL refuses two different recovery_target_* settings, and an empty value
 * does not unset one safely, so earlier lines of the settings this module manages are commented
 * out rather than overridden.
 *
 * archive_command becomes 'false', as Barman's recover does. The restored cluster would otherwise
 * archive into its source's archive: once promoted, its new timeline and history file would be
 * there, and a later restore of the source with recovery_target_timeline 'latest' would follow that
 * branch instead of the source's own history. With 'false', PostgreSQL keeps its WAL in pg_wal
 * (marked .ready) until an operator sets a real archive_command, so making the restored cluster the
 * new primary loses no WAL: the summary says how.
 */
import { badInput } from '../errors.ts';
import type { RecoveryTarget, TargetAction, TargetTimeline } from './recovery-target.ts';

/** What the recovery must do. */
export interface RecoveryConfigRequest {
  /** The complete restore_command (see restore-command.ts). */
  restoreCommand: string;
  target?: RecoveryTarget;
  timeline?: TargetTimeline;
  action?: TargetAction;
  standby: boolean;
}

/** The settings, in order, as [name, literal] pairs, and the signal file to create. */
export interface RecoveryConfig {
  settings: Array<readonly [string, string]>;
  signalFile: 'recovery.signal' | 'standby.signal';
}

/** Every setting a restore manages; earlier lines of these are commented out (see the module comment). */
export const MANAGED_SETTINGS: readonly string[] = [
  'restore_command',
  'recovery_target',
  'recovery_target_time',
  'recovery_target_xid',
  'recovery_target_lsn',
  'recovery_target_name',
  'recovery_target_inclusive',
  'recovery_target_timeline',
  'recovery_target_action',
  'archive_command',
];

/** archive_command in a restored cluster (see the module comment). */
export const DISABLED_ARCHIVE_COMMAND = 'false';

/** Builds the settings for a request. */
export function buildRecoveryConfig(request: RecoveryConfigRequest): RecoveryConfig {
  if (request.action !== undefined && request.target === undefined) {
    throw badInput('--target-action needs a recovery target', 'give --target-time, --target-xid, --target-lsn, --target-name or --target-immediate; without one, recovery replays all archived WAL');
  }
  const settings: Array<readonly [string, string]> = [['restore_command', quoteSetting(request.restoreCommand)]];
  const target = request.target;
  if (target !== undefined) {
    switch (target.kind) {
      case 'immediate': settings.push(['recovery_target', quoteSetting('immediate')]); break;
      case 'time': settings.push(['recovery_target_time', quoteSetting(target.time.text)]); break;
      case 'xid': settings.push(['recovery_target_xid', quoteSetting(target.xid)]); break;
      case 'lsn': settings.push(['recovery_target_lsn', quoteSetting(target.lsn)]); break;
      case 'name': settings.push(['recovery_target_name', quoteSetting(target.name)]); break;
    }
  }
  if (request.timeline !== undefined) settings.push(['recovery_target_timeline', quoteSetting(String(request.timeline))]);
  if (request.action !== undefined) settings.push(['recovery_target_action', quoteSetting(request.action)]);
  settings.push(['archive_command', quoteSetting(DISABLED_ARCHIVE_COMMAND)]);
  return { settings, signalFile: request.standby ? 'standby.signal' : 'recovery.signal' };
}

/**
 * A value as a postgresql.conf string literal. Inside quotes PostgreSQL's config parser turns
 * '' into ' and also reads backslash escapes, so both are doubled (as ALTER SYSTEM writes them).
 */
export function quoteSetting(value: string): string {
  if (/[\0\r\n]/.test(value)) throw badInput(`${JSON.stringify(value)} cannot be a PostgreSQL setting: it contains a line break or NUL`);
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/**
 * The new text of postgresql.auto.conf: the restored text with earlier managed settings commented
 * out, then a header comment and the recovery settings. `existing` is undefined when the backup had none.
 */
export function renderAutoConf(existing: string | undefined, config: RecoveryConfig, header: string): string {
  const managed = new Set(MANAGED_SETTINGS);
  const kept = (existing ?? '').split('\n').map((line) => {
    const name = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?/.exec(line)?.[1]?.toLowerCase();
    return name !== undefined && managed.has(name) ? `# disabled by cloudbarman restore: ${line}` : line;
  });
  let text = kept.join('\n');
  if (text !== '' && !text.endsWith('\n')) text += '\n';
  if (/[\r\n]/.test(header)) throw new Error('internal: the auto.conf header must be one line');
  text += `# ${header}\n`;
  for (const [name, literal] of config.settings) text += `${name} = ${literal}\n`;
  return text;
}
