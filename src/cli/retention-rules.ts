/** The retention rules of a server, from its config: what `delete --retention` and `cron` apply. */
import type { ServerConfig } from '../config/load.ts';
import { envName, flagName } from '../config/options.ts';
import { badInput } from '../core/errors.ts';
import { retentionRules, type RetentionRules } from '../core/retention/retention-policy.ts';

/** The rules, or a bad-input error saying how to set retention_policy when it is missing. */
export function rulesFromConfig(cfg: ServerConfig): RetentionRules {
  if (cfg.retentionPolicy === undefined) {
    const inFile = cfg.configFile === undefined ? '' : `, or "retention_policy = RECOVERY WINDOW OF 7 DAYS" in [${cfg.server}] of ${cfg.configFile}`;
    throw badInput(`server ${cfg.server} has no retention_policy, so retention would not know what to keep`,
      `set ${flagName('retention_policy')} 'REDUNDANCY 3', ${envName('retention_policy')}${inFile}`);
  }
  return retentionRules(cfg.retentionPolicy, {
    minimumRedundancy: cfg.minimumRedundancy,
    walRetentionPolicy: cfg.walRetentionPolicy,
    keepDaily: cfg.keepDaily,
    keepWeekly: cfg.keepWeekly,
    keepMonthly: cfg.keepMonthly,
    keepYearly: cfg.keepYearly,
  });
}
