/**
 * The command-line face of the option table: one `--kebab-name <value>` flag per option, and
 * the way back from commander's camelCase keys to option names for loadServerConfig.
 *
 * No commander defaults are set: a default would look like a flag and beat the environment and
 * the config file. Defaults live in the table and are applied by src/config/load.ts. Values are
 * validated there too, so a bad flag gets the same message as a bad line in the file.
 */
// Types only: the WAL fast path (fast-path.ts) maps flags without loading commander.
import type { Command } from 'commander';
import { OPTIONS, envName, flagName } from '../config/options.ts';
import type { OptionSpec } from '../config/options.ts';

/** The help group every config flag is listed under. */
export const CONFIG_FLAGS_HELP_GROUP = 'Config overrides:';

/**
 * A command's own spelling for some options, by option name, without dashes. From the CLI
 * contract: on `backup`, `--compression` is backup_compression (WAL compression keeps its env
 * variable and config key but has no flag there). Pass the same renames to configFlagsFrom,
 * and to loadServerConfig as `flagRenames` so that its messages name the flag the user typed.
 */
export type FlagRenames = Readonly<Record<string, string>>;

/** The renames of the backup command (`backup --compression none|gzip|lz4|zstd`). */
export const BACKUP_FLAG_RENAMES: FlagRenames = { backup_compression: 'compression' };

/** Registers one flag per option that has one, in the "Config overrides" help group. */
export function addConfigFlags(cmd: Command, renames: FlagRenames = {}): Command {
  for (const { spec, flag } of configFlags(renames)) {
    const placeholder = spec.type === 'bool' ? '<on|off>' : spec.type === 'enum' ? `<${(spec.values ?? []).join('|')}>` : '<value>';
    const option = cmd.createOption(`${flag} ${placeholder}`, helpText(spec)).helpGroup(CONFIG_FLAGS_HELP_GROUP);
    cmd.addOption(option);
  }
  return cmd;
}

/** Maps commander's parsed options (camelCase keys) back to option names, for ConfigSources.flags. */
export function configFlagsFrom(opts: Readonly<Record<string, unknown>>, renames: FlagRenames = {}): Record<string, string | boolean | undefined> {
  const flags: Record<string, string | boolean | undefined> = {};
  for (const { spec, flag } of configFlags(renames)) {
    const value = opts[flagAttributeName(flag)];
    if (typeof value === 'string' || typeof value === 'boolean') flags[spec.name] = value;
  }
  return flags;
}

/** commander's key for a `--kebab-name` flag in opts(): camelCase without the dashes (Option.attributeName). */
export function flagAttributeName(flag: string): string {
  return flag.replace(/^--/, '').split('-').reduce((name, word) => name + word.charAt(0).toUpperCase() + word.slice(1));
}

/** The options that get a flag on a command, with the flag each gets. */
export function configFlags(renames: FlagRenames): { spec: OptionSpec; flag: string }[] {
  const taken = new Set(Object.values(renames).map((name) => `--${name}`));
  const result: { spec: OptionSpec; flag: string }[] = [];
  for (const spec of OPTIONS) {
    if (spec.flag === false) continue;
    const renamed = renames[spec.name];
    if (renamed !== undefined) {
      result.push({ spec, flag: `--${renamed}` });
    } else if (!taken.has(flagName(spec.name))) {
      result.push({ spec, flag: flagName(spec.name) });
    }
  }
  return result;
}

function helpText(spec: OptionSpec): string {
  const fallback = spec.default === undefined ? '' : `; default ${spec.default}`;
  return `${spec.description} (env ${envName(spec.name)}, config ${spec.name}${fallback})`;
}
