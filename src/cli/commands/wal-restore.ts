/** `wal-restore SERVER WAL_NAME DEST_PATH`: the restore_command. Maps options to restoreWalPrefetching. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError } from '../../core/errors.ts';
import type { ObjectStore } from '../../../providers/object-store.ts';
import type { ServerConfig } from '../../config/load.ts';
import type { Logger } from '../../core/log.ts';

/** What a wal-restore call hands the prefetcher it starts, on its stdin (never on argv: no secrets there). */
interface PrefetcherInit {
  config: ServerConfig;
  spoolDir: string;
  dataDir: string;
  walDir: string;
}

/** Longest wait for a segment the prefetcher is downloading right now, before downloading it directly. */
const MAX_SPOOL_WAIT_MS = 60_000;

export const registerWalRestore: Register = (program, run) => {
  addConfigFlags(program.command('wal-restore')
    .summary('restore one WAL file (restore_command)')
    .description('Restore one WAL file: restore_command = \'cloudbarman wal-restore SERVER %f %p\'.\n' +
      'Exit 1 means the file is not in the archive. With recovery.signal in the data directory (targeted recovery),\n' +
      'any other failure exits 128 so that PostgreSQL aborts recovery instead of ending it early; with\n' +
      'standby.signal, storage failures exit 2 and the standby retries.\n' +
      'During recovery a background process downloads the next restore_prefetch segments ahead (docs/wal.md).')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<wal_name>', 'WAL file name (%f)')
    .argument('<dest_path>', 'where to write it (%p)')
    // The prefetcher's entry point: wal-restore starts it; nobody types it.
    .addOption(program.createOption('--prefetch-worker', 'run as the background prefetcher (internal)').hideHelp()))
    .action(run('wal-restore', async (output: Output, ...args: unknown[]) => {
      const [server, walName, destPath, opts] = args as [string, string, string, Record<string, unknown>];
      await walRestore(output, server, walName, destPath, { ...program.opts(), ...opts });
    }));
};

/**
 * The command's work, apart from commander: the WAL fast path (src/cli/fast-path.ts) calls it too.
 * opts: the global and the command's options, keyed as commander's opts() keys them.
 */
export async function walRestore(output: Output, server: string, walName: string, destPath: string, opts: Record<string, unknown>): Promise<void> {
  if (opts['prefetchWorker'] === true) {
    await runPrefetcher(output);
    return;
  }
  const { dataDirForRestorePath, detectRecoveryMode } = await import('../../pg/recovery-mode.ts');
  const dataDir = dataDirForRestorePath(destPath, process.cwd());
  const mode = await detectRecoveryMode(dataDir);
  let store: Promise<ObjectStore> | undefined;
  try {
    const [{ loadConfig, openStore }, { restoreWalPrefetching }, { restoreSpoolDir, spoolRoot }, { dirname, resolve }] = await Promise.all([
      import('../context.ts'), import('../../core/wal/wal-restore-prefetch.ts'), import('../../core/wal/spool-files.ts'), import('node:path'),
    ]);
    const cfg = await loadConfig(server, opts);
    const walDir = dirname(resolve(destPath));
    // Prefetch only for a recovery PostgreSQL runs: %p inside pg_wal and a signal file present.
    const prefetching = cfg.restorePrefetch > 0 && mode !== 'none' && dataDir === dirname(walDir);
    const spoolDir = restoreSpoolDir(spoolRoot(cfg.spoolDirectory, walDir), cfg.server);
    try {
      const result = await restoreWalPrefetching({
        getStore: () => (store ??= openStore(cfg, output.log)),
        server: cfg.server,
        walName,
        destPath,
        compression: cfg.compression,
        log: output.log,
        prefetch: !prefetching ? undefined : {
          spoolDir,
          dataDir,
          waitMs: Math.min(cfg.requestTimeoutMs, MAX_SPOOL_WAIT_MS),
          startWorker: () => startPrefetcher(
            { config: withoutSecrets(cfg), spoolDir, dataDir, walDir },
            [server, walName, destPath],
            output.verbosity === 'verbose',
          ),
        },
      });
      output.result(result, '');
    } finally {
      if (store !== undefined) await (await store.catch(() => undefined))?.close();
    }
  } catch (err) {
    const failure = err instanceof CloudbarmanError ? err
      : new CloudbarmanError('failed', err instanceof Error ? err.message : String(err), { cause: err });
    const { failureForRecoveryMode } = await import('../../core/wal/wal-restore.ts');
    throw failureForRecoveryMode(failure, mode);
  }
}

/** The settings the prefetcher needs, without the connection strings (it never connects to PostgreSQL). */
function withoutSecrets(cfg: ServerConfig): ServerConfig {
  const { conninfo: _c, streamingConninfo: _s, ...rest } = cfg;
  return rest;
}

/**
 * Starts the prefetcher as a detached process (its own session, so that it outlives this call
 * and PostgreSQL's signals to the startup process), running this same CLI with --prefetch-worker.
 * Its settings go through a pipe on stdin; its output goes to prefetch.log in the spool.
 */
async function startPrefetcher(init: PrefetcherInit, positional: string[], verbose: boolean): Promise<number> {
  const [{ spawn }, { open, stat }, { join }, { LOG_FILE }] = await Promise.all([
    import('node:child_process'), import('node:fs/promises'), import('node:path'), import('../../core/wal/prefetch-spool.ts'),
  ]);
  const entry = process.argv[1];
  if (entry === undefined) throw new Error('cannot tell which script to start the prefetcher from');
  const logPath = join(init.spoolDir, LOG_FILE);
  const logSize = (await stat(logPath).catch(() => undefined))?.size ?? 0;
  const logFile = await open(logPath, logSize > 1024 * 1024 ? 'w' : 'a', 0o600);
  try {
    const argv = [...process.execArgv, entry, ...(verbose ? ['-v'] : []), 'wal-restore', '--prefetch-worker', ...positional];
    const child = spawn(process.execPath, argv, { detached: true, stdio: ['pipe', logFile.fd, logFile.fd], cwd: init.dataDir, env: process.env });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid ?? -1));
    });
    if (pid < 0) throw new Error('the prefetcher did not start');
    const stdin = child.stdin;
    if (stdin === null) throw new Error('the prefetcher has no stdin');
    await new Promise<void>((resolve, reject) => {
      // A child that died at once closes the pipe: report that, do not crash on EPIPE.
      stdin.once('error', reject);
      stdin.end(JSON.stringify(init), () => resolve());
    });
    child.unref();
    return pid;
  } finally {
    await logFile.close();
  }
}

/** The --prefetch-worker side: reads its settings from stdin, opens the store, runs until recovery ends. */
async function runPrefetcher(output: Output): Promise<void> {
  const [{ openStore }, { runPrefetchWorker }] = await Promise.all([import('../context.ts'), import('../../core/wal/prefetch-worker.ts')]);
  const init = await readInit();
  const log = timestamped(output.log);
  const store = await openStore(init.config, log);
  try {
    log.info(`prefetcher ${process.pid} started for ${init.dataDir} (${init.config.restorePrefetch} segments ahead, ${init.config.archiveParallel} at once)`);
    await runPrefetchWorker({
      store,
      server: init.config.server,
      compression: init.config.compression,
      spoolDir: init.spoolDir,
      dataDir: init.dataDir,
      walDir: init.walDir,
      count: init.config.restorePrefetch,
      parallel: init.config.archiveParallel,
      idleExitMs: 60_000,
      tickMs: 250,
      absentRetryMs: 1_000,
      ownerWaitMs: 10_000,
      pid: process.pid,
      now: () => Date.now(),
      log,
    });
  } finally {
    await store.close();
  }
}

/** The init document on stdin: at most 1 MiB, within 10 s. */
async function readInit(): Promise<PrefetcherInit> {
  const chunks: Buffer[] = [];
  let size = 0;
  const timer = setTimeout(() => process.stdin.destroy(new Error('no settings on stdin within 10 s')), 10_000);
  try {
    for await (const chunk of process.stdin) {
      size += (chunk as Buffer).length;
      if (size > 1024 * 1024) throw new Error('settings on stdin exceed 1 MiB');
      chunks.push(chunk as Buffer);
    }
  } finally {
    clearTimeout(timer);
  }
  const init = JSON.parse(Buffer.concat(chunks).toString('utf8')) as PrefetcherInit;
  if (typeof init.spoolDir !== 'string' || typeof init.dataDir !== 'string' || typeof init.walDir !== 'string' || typeof init.config?.server !== 'string') {
    throw new CloudbarmanError('bad-input', 'the prefetcher got incomplete settings on stdin', { hint: 'it is started by wal-restore, not by hand' });
  }
  return init;
}

function timestamped(log: Logger): Logger {
  const at = (m: string) => `${new Date().toISOString()} ${m}`;
  return { debug: (m) => log.debug(at(m)), info: (m) => log.info(at(m)), notice: (m) => log.notice(at(m)), warn: (m) => log.warn(at(m)) };
}
