/**
 * The restore_command a restored cluster runs: `cloudbarman wal-restore SERVER %f %p`, by absolute
 * path, with everything needed to reach the same store the restore read. PostgreSQL runs it later,
 * as its own OS user and with its own environment, so settings that came from this command's flags
 * or environment are written into the command; settings from the config file travel as `-c FILE`.
 */
import { CONFIG_FIELDS, type ServerConfig } from '../../config/load.ts';
import { OPTIONS, flagName, type OptionName, type OptionSpec } from '../../config/options.ts';
import { formatRetentionPolicy, type RetentionPolicy } from '../../config/values.ts';
import { badInput } from '../errors.ts';

/**
 * The argument vector of the restore_command, before shell quoting: launcher, `-c FILE` when a
 * config file was used, `wal-restore`, `--option=value` for each non-secret setting given by flag
 * or environment, then SERVER and the %f %p placeholders (kept as their own elements).
 * Secret settings (connection strings) are never written: wal-restore does not need them.
 * Neither is --jobs, which on restore is the restore's own parallelism (parallel_jobs).
 */
export function walRestoreArgv(cfg: ServerConfig, launcher: string): string[] {
  if (!launcher.startsWith('/')) throw badInput(`the cloudbarman launcher path ${JSON.stringify(launcher)} is not absolute`, 'restore_command runs from the data directory, so it needs an absolute path');
  const argv = [launcher];
  if (cfg.configFile !== undefined) argv.push('-c', cfg.configFile);
  argv.push('wal-restore');
  for (const spec of OPTIONS) {
    const origin = cfg.origins[spec.name];
    if ((origin !== 'flag' && origin !== 'env') || spec.secret === true || spec.flag === false || spec.name === 'parallel_jobs') continue;
    const value = cfg[CONFIG_FIELDS[spec.name as OptionName]];
    if (value === undefined) continue;
    argv.push(`${flagName(spec.name)}=${optionText(spec, value)}`);
  }
  argv.push(cfg.server, '%f', '%p');
  return argv;
}

/**
 * Quotes an argv for /bin/sh and escapes "%" for PostgreSQL, which expands %f, %p, %r and %% in
 * restore_command. Elements that are exactly "%f" or "%p" stay placeholders.
 */
export function shellCommand(argv: readonly string[]): string {
  return argv.map((arg) => (arg === '%f' || arg === '%p' ? arg : shellQuote(arg).replaceAll('%', '%%'))).join(' ');
}

/** One shell word: bare when it is plainly safe, otherwise single-quoted. */
export function shellQuote(arg: string): string {
  if (/[\0\r\n]/.test(arg)) throw badInput(`${JSON.stringify(arg)} cannot go into restore_command: it contains a line break or NUL`);
  if (/^[A-Za-z0-9_\/.:=@,+-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** A typed setting back to text its option parser accepts (sizes in bytes, durations in ms). */
function optionText(spec: OptionSpec, value: ServerConfig[keyof ServerConfig]): string {
  switch (spec.type) {
    case 'bool': return value === true ? 'on' : 'off';
    case 'seconds': return `${String(value)}ms`;
    case 'list': return Array.isArray(value) ? value.join(',') : String(value);
    case 'retention': return formatRetentionPolicy(value as RetentionPolicy);
    default: return String(value);
  }
}
