/**
 * `verify SERVER BACKUP_ID|latest [--quick] [--no-wal-to-latest] [--restore ...]`: maps the options
 * to verifyBackup and, with --restore, runRestoreDrill; prints one line per check and sets the exit
 * code: 0 all OK, 4 damage found, 2 store unreachable, 1 a drill that could not run here.
 */
import { spawn, execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError, badInput } from '../../core/errors.ts';
import type { ProcessRunner } from '../../core/verify/restore-drill.ts';
import type { VerifyReport } from '../../core/verify/verify-report.ts';

interface VerifyOptions {
  quick?: boolean;
  walToLatest: boolean;
  restore?: boolean;
  pgBin?: string;
  runAs?: string;
  pgSuperuser: string;
  workDir?: string;
  recoveryTimeout: string;
}

/** Registers `verify`; its work is in src/core/verify/. */
export const registerVerify: Register = (program, run) => {
  addConfigFlags(program.command('verify')
    .summary('check that a backup and its WAL are intact, and optionally restore it as a drill')
    .description('Check every object of a backup against what was recorded when it was stored, and the WAL it needs: ' +
      'each segment from the backup\'s begin_wal to end_wal, and (unless --no-wal-to-latest) every segment after it up to ' +
      'the newest archived on the backup\'s timeline and the timelines that descend from it (following the .history files), ' +
      'naming each gap. Prints "name: OK|FAILED (detail)" per check, each damaged object by key.\n\n' +
      'By default every part and WAL segment is downloaded (as a stream, --jobs at a time) and hashed, and every chunk of ' +
      'every part too: this proves the bytes are the ones backed up. --quick only checks that each object exists with the ' +
      'size and checksum metadata the manifest recorded, and lists the WAL: it finds deleted, truncated and replaced ' +
      'objects, not bit rot inside one.\n\n' +
      '--restore then restores the backup into a temporary directory (under --work-dir), recovers it to consistency, ' +
      'starts PostgreSQL on a private Unix socket, runs amcheck on every btree index and table when the build has it, ' +
      'stops it, removes the directory and prints the measured RTO. It needs PostgreSQL of the backup\'s major version ' +
      '(--pg-bin, else /usr/lib/postgresql/N/bin, /usr/pgsql-N/bin or pg_ctl in PATH) and, as root, an OS user to run it ' +
      '(--run-as, default postgres when that user exists), who must be able to read the config file and reach the store.\n\n' +
      'Exit 0 when everything is intact, 4 when something is damaged or missing, 2 when the store cannot be reached, ' +
      '1 when the drill could not run on this host.')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<backup_id>', 'a backup id from "cloudbarman list", or latest')
    .option('--quick', 'check existence, sizes and recorded checksums only; download nothing but the small objects')
    .option('--no-wal-to-latest', 'check only the WAL the backup needs (begin_wal..end_wal), not the WAL after it')
    .option('--restore', 'also restore into a temporary directory, start PostgreSQL, run amcheck and measure the RTO')
    .option('--pg-bin <dir>', 'with --restore: the bin directory of PostgreSQL of the backup\'s major version')
    .option('--run-as <user>', 'with --restore, as root: the OS user PostgreSQL runs as (default postgres)')
    .option('--pg-superuser <name>', 'with --restore: the superuser role amcheck connects as', 'postgres')
    .option('--work-dir <dir>', 'with --restore: where the temporary directory goes (default: the system temp directory)')
    .option('--recovery-timeout <seconds>', 'with --restore: longest wait for recovery to reach consistency', '3600'))
    .action(run('verify', async (output: Output, ...args: unknown[]) => {
      const [server, backupId, opts] = args as [string, string, VerifyOptions & Record<string, unknown>];
      const { isBackupId } = await import('../../core/catalog/backup-keys.ts');
      if (backupId !== 'latest' && !isBackupId(backupId)) {
        throw badInput(`"${backupId}" is not a backup id`, 'give an id from "cloudbarman list" (YYYYMMDDTHHMMSSZ), or latest');
      }
      const timeoutS = Number(opts.recoveryTimeout);
      if (!Number.isInteger(timeoutS) || timeoutS < 1) throw badInput(`--recovery-timeout ${opts.recoveryTimeout} is not a whole number of seconds`);
      if (opts.restore !== true && (opts.pgBin !== undefined || opts.runAs !== undefined || opts.workDir !== undefined)) {
        throw badInput('--pg-bin, --run-as and --work-dir apply to verify --restore only', 'add --restore, or leave them out');
      }
      const runAs = opts.restore === true ? await drillUser(opts.runAs) : undefined;

      const { loadConfig, openStore } = await import('../context.ts');
      const loaded = await loadConfig(server, { ...program.opts(), ...opts });
      // PostgreSQL runs restore_command from the data directory: the config file needs an absolute path.
      const cfg = loaded.configFile === undefined ? loaded : { ...loaded, configFile: resolve(loaded.configFile) };
      const [{ verifyBackup }, { formatReport, plainCheck }] = await Promise.all([
        import('../../core/verify/verify-backup.ts'), import('../../core/verify/verify-report.ts')]);
      const store = await openStore(cfg, output.log);
      let report: VerifyReport;
      try {
        const outcome = await verifyBackup({
          store, server: cfg.server, backupId, mode: opts.quick === true ? 'quick' : 'full', walToLatest: opts.walToLatest,
          jobs: cfg.parallelJobs, log: output.log, now: () => new Date(),
        });
        report = outcome.report;
        if (opts.restore === true) {
          if (!report.ok || outcome.backup === undefined) {
            report.checks.push(plainCheck('restore drill', false, 'not run: the checks above found damage'));
          } else {
            const backup = outcome.backup;
            const major = backup.pg_version === null ? undefined : Math.floor(backup.pg_version / 10000);
            const pgBin = findPgBin(opts.pgBin, major);
            const { shellCommand, walRestoreArgv } = await import('../../core/restore/restore-command.ts');
            const { runRestoreDrill } = await import('../../core/verify/restore-drill.ts');
            const drill = await runRestoreDrill({
              store, server: cfg.server, backup, workDir: resolve(opts.workDir ?? tmpdir()), pgBin,
              owner: runAs === undefined ? undefined : { uid: runAs.uid, gid: runAs.gid }, superuser: opts.pgSuperuser,
              restoreCommand: shellCommand(walRestoreArgv(cfg, launcherPath())), jobs: cfg.parallelJobs, timeoutMs: timeoutS * 1000,
              run: processRunner(runAs), now: () => new Date(), sleep: (ms) => delay(ms), log: output.log,
            });
            report.checks.push(...drill.checks);
            if (drill.drill !== undefined) report.restore_drill = drill.drill;
          }
          report.ok = report.checks.every((c) => c.ok);
        }
      } finally {
        await store.close();
      }
      output.result(report, formatReport(report));
      const failed = report.checks.filter((c) => !c.ok);
      if (failed.length === 0) return;
      const damage = failed.filter((c) => c.cause !== 'environment');
      const names = failed.map((c) => c.name).join(', ');
      throw damage.length > 0
        ? new CloudbarmanError('integrity', `backup ${report.backup_id} of ${cfg.server} failed verification: ${names}`, { hint: 'each FAILED line above names the damaged objects; restore another backup, and check the store', resultPrinted: true })
        : new CloudbarmanError('failed', `the restore drill of ${report.backup_id} could not run here: ${names}`, { hint: 'the FAILED line above says why; fix the host, not the backup', resultPrinted: true });
    }));
};

/** The OS user PostgreSQL runs as in the drill: as root, --run-as or postgres; otherwise this user. */
async function drillUser(name: string | undefined): Promise<{ name: string; uid: number; gid: number } | undefined> {
  const root = process.getuid?.() === 0;
  if (!root) {
    if (name !== undefined) throw badInput(`--run-as ${name}: only root can run PostgreSQL as another user`, 'leave --run-as out to run it as yourself');
    return undefined;
  }
  const user = await lookupUser(name ?? 'postgres');
  if (user === undefined) {
    throw badInput(name === undefined ? 'PostgreSQL refuses to run as root, and there is no postgres user to run the drill as' : `--run-as ${name}: no such user`,
      'give --run-as USER, an unprivileged user who can read the config file and reach the store');
  }
  if (user.uid === 0) throw badInput(`--run-as ${user.name}: PostgreSQL refuses to run as root`, 'give an unprivileged user');
  return user;
}

async function lookupUser(name: string): Promise<{ name: string; uid: number; gid: number } | undefined> {
  const line = await new Promise<string | undefined>((done) => {
    execFile('getent', ['passwd', name], { timeout: 10_000 }, (err, stdout) => done(err === null ? stdout.trim() : undefined));
  });
  const [user, , uid, gid] = line?.split(':') ?? [];
  if (user === undefined || uid === undefined || gid === undefined) return undefined;
  return { name: user, uid: Number(uid), gid: Number(gid) };
}

/** --pg-bin, else the usual package locations of the major version, else pg_ctl in PATH. */
function findPgBin(given: string | undefined, major: number | undefined): string {
  if (given !== undefined) return resolve(given);
  const candidates = major === undefined ? [] : [`/usr/lib/postgresql/${major}/bin`, `/usr/pgsql-${major}/bin`];
  for (const dir of candidates) if (existsSync(join(dir, 'pg_ctl'))) return dir;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir !== '' && existsSync(join(dir, 'pg_ctl'))) return dirname(realpathSync(join(dir, 'pg_ctl')));
  }
  throw badInput(`no PostgreSQL ${major ?? ''} binaries found for the restore drill`.replace('  ', ' '), 'give --pg-bin DIR, the directory holding pg_ctl and postgres');
}

/**
 * Runs PostgreSQL's programs as `user` (root switches uid/gid; never sudo), without the PG*
 * variables of this shell, from /, with a time limit. pg_ctl start leaves a postmaster behind
 * that holds no pipe of ours (its output goes to -l), but a grandchild that kept them must not
 * hold this up: the exit of the child bounds the wait.
 */
function processRunner(user: { name: string; uid: number; gid: number } | undefined): ProcessRunner {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('PG')) env[key] = value;
  if (user !== undefined) Object.assign(env, { USER: user.name, LOGNAME: user.name });
  return (command, args, { timeoutMs }) => new Promise((done, fail) => {
    const child = spawn(command, [...args], { cwd: '/', env, stdio: ['ignore', 'pipe', 'pipe'], ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }) });
    let stdout = '';
    let stderr = '';
    let settled = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      done({ code: code ?? 128 + (signal === null ? 0 : osConstants.signals[signal]), stdout, stderr });
    };
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fail(new CloudbarmanError('bad-input', `cannot run ${command}: ${err.message}`, { cause: err }));
    });
    child.once('close', finish);
    child.once('exit', (code, signal) => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal);
      }, 5_000).unref();
    });
  });
}

/**
 * The absolute path of the cloudbarman launcher for restore_command: bin/cloudbarman in the checkout
 * or package that holds the running script. The same search as restore's (commands/restore.ts).
 */
function launcherPath(): string {
  const script = process.argv[1];
  if (script !== undefined) {
    for (let dir = dirname(realpathSync(script)); dir !== dirname(dir); dir = dirname(dir)) {
      if (existsSync(join(dir, 'bin', 'cloudbarman'))) return join(dir, 'bin', 'cloudbarman');
    }
  }
  throw badInput('cannot find the cloudbarman launcher to put into restore_command', 'run verify through bin/cloudbarman');
}
