/** `receive-wal SERVER [--create-slot|--drop-slot]`: streams WAL over the replication protocol. Maps options to receiveWal. */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { Option } from 'commander';
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { badInput } from '../../core/errors.ts';

/** Registers `receive-wal` on the program. */
export const registerReceiveWal: Register = (program, run) => {
  addConfigFlags(program.command('receive-wal')
    .summary('stream WAL over the replication protocol into the store')
    .description('Stream WAL from streaming_conninfo (a replication connection, application_name streaming_archiver_name) into the store,\n' +
      'through the replication slot slot_name when set. Complete segments are stored exactly as wal-upload stores them (an identical\n' +
      'segment already archived by archive_command is fine); the segment being written is uploaded as <segment>.partial every\n' +
      'receive_wal_partial_interval. Reconnects after a restart or a lost connection; SIGTERM or SIGINT stops it after the current\n' +
      'write, storing what it can, and it exits 0. With receive_wal_synchronous (auto: when synchronous_standby_names names\n' +
      'streaming_archiver_name) the flush position reported to the server is the WAL stored, so that commits wait for the store.\n' +
      'WAL waits locally in receive_wal_directory/SERVER (default: receive-wal/ in the spool folder when spool_directory or pgdata\n' +
      'is set, else $XDG_STATE_HOME or ~/.local/state, then cloudbarman/receive-wal/SERVER).\n' +
      '--create-slot and --drop-slot only manage the slot and exit (docs/wal.md).')
    .argument('<server>', 'server name: a [section] of the config file')
    .option('--create-slot', 'create the physical replication slot slot_name (RESERVE_WAL) and exit; success if it exists')
    .option('--drop-slot', 'drop the replication slot slot_name and exit; success if it does not exist')
    .option('--no-loop', 'exit (code 2) when the connection is lost instead of reconnecting')
    .option('--stop-after-segments <n>', 'stop once this many streamed segments are stored (tests, one-off catch-ups)')
    // Set by the daemon, which keeps the other end of the pipe: its death closes it (hidden from --help).
    .addOption(new Option('--stop-on-stdin-eof', 'stop as on SIGTERM when stdin reaches its end').hideHelp()))
    .action(run('receive-wal', async (output: Output, ...args: unknown[]) => {
      const [server, opts] = args as [string, Record<string, unknown>];
      if (opts['createSlot'] === true && opts['dropSlot'] === true) throw badInput('--create-slot and --drop-slot exclude each other');
      let stopAfter: number | undefined;
      if (opts['stopAfterSegments'] !== undefined) {
        stopAfter = Number(opts['stopAfterSegments']);
        if (!Number.isInteger(stopAfter) || stopAfter < 1) throw badInput(`--stop-after-segments ${String(opts['stopAfterSegments'])} is not a whole number >= 1`);
      }
      const [{ loadConfig, openStore }, core, { receiveWalDirectory }, { receiveWalDrainTimeoutMs }] = await Promise.all([
        import('../context.ts'), import('../../core/wal/receive-wal.ts'), import('../../core/wal/receive-wal-directory.ts'), import('../receive-wal-timing.ts'),
      ]);
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const conninfo = cfg.streamingConninfo;
      if (conninfo === undefined) throw badInput(`no streaming_conninfo (or conninfo) for server "${cfg.server}"`, 'set streaming_conninfo = host=... user=... in its section');
      const slotRequest = { conninfo, applicationName: cfg.streamingArchiverName, slotName: cfg.slotName, connectTimeoutMs: cfg.connectTimeoutMs, log: output.log };

      if (opts['createSlot'] === true || opts['dropSlot'] === true) {
        const result = await core.manageSlot(slotRequest, opts['createSlot'] === true ? 'create' : 'drop');
        output.result(result, `${result.slot}: ${result.action.replaceAll('-', ' ')}`);
        return;
      }

      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        output.log.notice(`${signal} received`);
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const parentGone = (): void => {
        output.log.notice('the daemon that started this receive-wal is gone (stdin closed): stopping');
        stop.abort();
      };
      if (opts['stopOnStdinEof'] === true) {
        process.stdin.once('end', parentGone).once('error', parentGone).resume();
      }
      const store = await openStore(cfg, output.log);
      try {
        const result = await core.receiveWal({
          server: cfg.server,
          conninfo,
          applicationName: cfg.streamingArchiverName,
          slotName: cfg.slotName,
          store,
          compression: cfg.compression,
          dir: receiveWalDirectory({ server: cfg.server, receiveWalDirectory: cfg.receiveWalDirectory, spoolDirectory: cfg.spoolDirectory, pgdata: cfg.pgdata, stateHome: stateHome() }),
          partialIntervalMs: cfg.receiveWalPartialIntervalMs,
          synchronous: cfg.receiveWalSynchronous,
          connectTimeoutMs: cfg.connectTimeoutMs,
          log: output.log,
          now: () => Date.now(),
          signal: stop.signal,
          reconnect: opts['loop'] !== false,
          ...(stopAfter === undefined ? {} : { stopAfterSegments: stopAfter }),
          drainTimeoutMs: receiveWalDrainTimeoutMs(cfg),
          pid: process.pid,
          isAlive,
        });
        output.result(result, [
          `stopped (${result.stopped_by}): received up to ${result.received_lsn ?? '-'} on timeline ${result.timeline ?? '-'}, stored up to ${result.stored_lsn ?? '-'}`,
          `segments stored: ${result.segments_uploaded} uploaded, ${result.segments_already_archived} already archived; last ${result.last_segment ?? '-'}`,
          ...(result.gaps.length > 0 ? [`GAPS (lost WAL): ${result.gaps.map((g) => `${g.from}-${g.to}`).join(', ')}`] : []),
          ...(result.all_stored ? [] : ['some WAL is still only in the local directory; the next run stores it']),
        ]);
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
        if (opts['stopOnStdinEof'] === true) process.stdin.removeListener('end', parentGone).destroy();
        await store.close();
      }
    }));
};

/** $XDG_STATE_HOME, else ~/.local/state: receive-wal's directory when the config names none. */
function stateHome(): string | undefined {
  const xdg = process.env['XDG_STATE_HOME'];
  if (xdg !== undefined && isAbsolute(xdg)) return xdg;
  const home = homedir();
  return home === '' ? undefined : join(home, '.local', 'state');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
