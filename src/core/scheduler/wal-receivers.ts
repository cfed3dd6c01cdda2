/**
 * The daemon's supervision of receive-wal: one child process per server with streaming_archiver
 * on, restarted when it exits, with a growing pause between restarts so that a server that keeps
 * refusing the connection is not hammered. Children are started and stopped as the config file
 * changes between passes, and all of them get SIGTERM (then, after a bound, SIGKILL) when the
 * daemon stops. Processes and time are injected, so the policy is tested without either.
 */
import type { Logger } from '../log.ts';

/** A started receive-wal process. */
export interface ReceiverProcess {
  pid: number | undefined;
  /** Resolves with the exit code (null when killed by a signal); never rejects. */
  exited: Promise<number | null>;
  /** Asks it to stop (SIGTERM): it stores what it holds, then exits. */
  terminate(): void;
  /** SIGKILL, after terminate was not enough. */
  kill(): void;
  /** How long it may take to stop after SIGTERM (its own drain bound and more); default: the policy's. */
  stopTimeoutMs?: number;
}

/** What the supervisor needs from the outside world. */
export interface ReceiverDeps {
  start(server: string): ReceiverProcess;
  now(): number;
  /** Resolves after ms, or early (without rejecting) once the signal aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  log: Logger;
}

export interface RestartPolicy {
  /** The first pause after an exit. */
  minDelayMs: number;
  /** The longest pause; also the pause after exit 5 (another receive-wal holds the directory). */
  maxDelayMs: number;
  /** A child that ran at least this long starts the pauses again from minDelayMs. */
  stableAfterMs: number;
  /** How long a child has after SIGTERM before SIGKILL, unless the child names its own bound. */
  stopTimeoutMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { minDelayMs: 1_000, maxDelayMs: 60_000, stableAfterMs: 60_000, stopTimeoutMs: 30_000 };

/** exit code 'locked' in the exit-code table: another receive-wal streams into the same directory. */
const EXIT_LOCKED = 5;

interface Supervised {
  stop: AbortController;
  done: Promise<void>;
}

export class WalReceiverSupervisor {
  readonly #deps: ReceiverDeps;
  readonly #policy: RestartPolicy;
  readonly #children = new Map<string, Supervised>();
  #starts = 0;

  constructor(deps: ReceiverDeps, policy: RestartPolicy = DEFAULT_RESTART_POLICY) {
    this.#deps = deps;
    this.#policy = policy;
  }

  /** The servers supervised now. */
  get servers(): string[] {
    return [...this.#children.keys()].sort();
  }

  /** How many processes were started in all (restarts included). */
  get starts(): number {
    return this.#starts;
  }

  /** Supervises exactly these servers: starts the new ones, stops those no longer listed. */
  async reconcile(servers: readonly string[]): Promise<void> {
    const wanted = new Set(servers);
    const leaving = [...this.#children.keys()].filter((s) => !wanted.has(s));
    for (const server of servers) {
      if (this.#children.has(server)) continue;
      const stop = new AbortController();
      this.#deps.log.notice(`${server}: starting receive-wal (streaming_archiver = on)`);
      this.#children.set(server, { stop, done: this.#supervise(server, stop.signal) });
    }
    await Promise.all(leaving.map(async (server) => {
      this.#deps.log.notice(`${server}: stopping receive-wal (streaming_archiver is no longer on)`);
      await this.#stopOne(server);
    }));
  }

  /** Stops every child (SIGTERM, then SIGKILL after stopTimeoutMs) and waits for them. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#children.keys()].map((server) => this.#stopOne(server)));
  }

  async #stopOne(server: string): Promise<void> {
    const entry = this.#children.get(server);
    if (entry === undefined) return;
    entry.stop.abort();
    await entry.done;
    this.#children.delete(server);
  }

  async #supervise(server: string, signal: AbortSignal): Promise<void> {
    const { log } = this.#deps;
    const p = this.#policy;
    let delay = p.minDelayMs;
    while (!signal.aborted) {
      const started = this.#deps.now();
      let child: ReceiverProcess;
      try {
        child = this.#deps.start(server);
        this.#starts++;
      } catch (err) {
        log.warn(`${server}: receive-wal could not be started: ${err instanceof Error ? err.message : String(err)}`);
        await this.#deps.sleep(delay, signal);
        delay = Math.min(p.maxDelayMs, delay * 2);
        continue;
      }
      const code = await this.#waitOrStop(child, signal);
      if (signal.aborted) return;
      if (this.#deps.now() - started >= p.stableAfterMs) delay = p.minDelayMs;
      const pause = code === EXIT_LOCKED ? p.maxDelayMs : delay;
      const why = code === EXIT_LOCKED ? 'another receive-wal holds its directory' : `exit code ${code === null ? 'none (killed by a signal)' : code}`;
      log.warn(`${server}: receive-wal (pid ${child.pid ?? '?'}) stopped (${why}); starting it again in ${Math.round(pause / 1000)} s`);
      await this.#deps.sleep(pause, signal);
      delay = Math.min(p.maxDelayMs, delay * 2);
    }
  }

  /** The child's exit code; on abort, SIGTERM then (bounded) SIGKILL, and the exit awaited. */
  async #waitOrStop(child: ReceiverProcess, signal: AbortSignal): Promise<number | null> {
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<'abort'>((resolve) => {
      onAbort = () => resolve('abort');
      if (signal.aborted) resolve('abort');
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    const first = await Promise.race([child.exited.then((code) => ({ code })), aborted]);
    // One listener per start, removed again: a receive-wal that keeps failing must not pile them up.
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    if (first !== 'abort') return first.code;
    child.terminate();
    const timeout = new AbortController();
    const bound = child.stopTimeoutMs ?? this.#policy.stopTimeoutMs;
    const gaveUp = this.#deps.sleep(bound, timeout.signal).then(() => 'timeout' as const);
    const second = await Promise.race([child.exited.then((code) => ({ code })), gaveUp]);
    timeout.abort();
    if (second !== 'timeout') return second.code;
    this.#deps.log.warn(`receive-wal (pid ${child.pid ?? '?'}) did not stop within ${Math.round(bound / 1000)} s of SIGTERM: killing it`);
    child.kill();
    return await child.exited;
  }
}
