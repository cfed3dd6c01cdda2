/**
 * One timed command: wall time from spawn() to exit (process.hrtime), GNU time's maxrss and CPU
 * seconds, and a /proc sampler that sums the memory of the whole process tree every few ms.
 *
 * Why both: `/usr/bin/time -f %M` reports ru_maxrss from wait4(), which for a process tree is the
 * largest *single* process (Linux merges children's maxrss with max(), not a sum). Multi-process
 * tools (pgbackrest process-max, barman-cloud's upload workers) use more than that in total, so the
 * sampler adds up RSS (and PSS, which splits shared pages fairly) of every live descendant.
 * Processes that live shorter than one sampling interval are missed by the sampler, not by %M.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';

export interface MeasureOptions {
  uid?: number;
  gid?: number;
  env: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs: number;
  /** Where GNU time writes its line; must be writable by uid. */
  timeFile: string;
  /** Sampling interval for the process tree; 0 turns the sampler off. */
  sampleMs: number;
}

export interface Measurement {
  ok: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Wall-clock ms from just before spawn() to the 'exit' event. */
  ms: number;
  /** GNU time %M: max RSS of the largest single process in the tree, in KiB. */
  maxRssKiB: number | null;
  /** GNU time %U + %S: CPU seconds of the command and every descendant it waited for. */
  cpuS: number | null;
  /** Highest sampled sum of RSS over the live process tree (bytes), below /usr/bin/time itself. */
  treeRssPeak: number;
  /** Highest sampled sum of PSS over the live process tree (bytes). */
  treePssPeak: number;
  /** Most processes seen at once in the tree. */
  treeProcsPeak: number;
  samples: number;
  stdoutTail: string;
  stderrTail: string;
  spawnError?: string;
}

const TAIL = 16 * 1024;
const PAGE = 4096;

/** Pids of /usr/bin/time processes still running, for killInFlight(). */
const inFlight = new Set<number>();

/** SIGKILLs every measured command still running, with its whole process tree (for cleanup on a
 *  signal or an error: the tools would otherwise go on as orphans). Synchronous, so it also works in
 *  an 'exit' handler. */
export function killInFlight(): void {
  for (const pid of inFlight) {
    for (const d of descendants(pid)) tryKill(d);
    tryKill(pid);
  }
  inFlight.clear();
}

/** Runs `cmd args` under /usr/bin/time, sampling its process tree. Never throws. */
export function measure(cmd: string, args: readonly string[], opts: MeasureOptions): Promise<Measurement> {
  return new Promise((resolve) => {
    rmSync(opts.timeFile, { force: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    let exitMs = 0;
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    let rssPeak = 0;
    let pssPeak = 0;
    let procsPeak = 0;
    let samples = 0;
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', '%M %U %S', '-o', opts.timeFile, cmd, ...args], {
      env: opts.env,
      cwd: opts.cwd ?? '/',
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    const sample = (): void => {
      if (child.pid === undefined || child.exitCode !== null) return;
      const tree = descendants(child.pid);
      let rss = 0;
      let pss = 0;
      for (const pid of tree) {
        rss += readRss(pid);
        pss += readPss(pid);
      }
      samples++;
      if (rss > rssPeak) rssPeak = rss;
      if (pss > pssPeak) pssPeak = pss;
      if (tree.length > procsPeak) procsPeak = tree.length;
    };
    if (child.pid !== undefined) inFlight.add(child.pid);
    const sampler = opts.sampleMs > 0 ? setInterval(sample, opts.sampleMs) : null;
    const timer = setTimeout(() => {
      timedOut = true;
      // Kill the tool's whole tree, not just /usr/bin/time (which would orphan it).
      if (child.pid !== undefined) for (const pid of descendants(child.pid)) tryKill(pid);
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      stdout = (stdout + d.toString()).slice(-TAIL);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-TAIL);
    });
    const finish = (spawnError?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (sampler) clearInterval(sampler);
      if (child.pid !== undefined) inFlight.delete(child.pid);
      let maxRssKiB: number | null = null;
      let cpuS: number | null = null;
      try {
        // GNU time prefixes "Command exited with non-zero status N" on its own line.
        const lines = readFileSync(opts.timeFile, 'utf8').trim().split('\n');
        const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(lines[lines.length - 1] ?? '');
        if (m) {
          maxRssKiB = Number(m[1]);
          cpuS = Number(m[2]) + Number(m[3]);
        }
      } catch {
        /* killed before time wrote it */
      }
      const m: Measurement = {
        ok: !spawnError && !timedOut && exitCode === 0,
        code: exitCode,
        signal: exitSignal,
        timedOut,
        ms: exitMs,
        maxRssKiB,
        cpuS,
        treeRssPeak: rssPeak,
        treePssPeak: pssPeak,
        treeProcsPeak: procsPeak,
        samples,
        stdoutTail: stdout,
        stderrTail: stderr,
      };
      if (spawnError) m.spawnError = spawnError;
      resolve(m);
    };
    child.on('error', (err) => finish(err.message));
    child.on('exit', (code, signal) => {
      if (child.pid !== undefined) inFlight.delete(child.pid);
      exitMs = Number(process.hrtime.bigint() - t0) / 1e6;
      exitCode = code;
      exitSignal = signal;
      // stdio may be held open by an orphaned grandchild; do not wait for it forever.
      setTimeout(() => finish(), 2000).unref();
    });
    child.on('close', () => finish());
  });
}

/** One line describing a failed measurement. */
export function describeMeasurement(what: string, m: Measurement): string {
  const why = m.spawnError ? `could not start: ${m.spawnError}` : m.timedOut ? `timed out after ${(m.ms / 1000).toFixed(0)} s` : `exit ${m.code ?? m.signal}`;
  const tail = (m.stderrTail || m.stdoutTail).trim().split('\n').slice(-4).join(' | ');
  return `${what}: ${why}${tail ? ` — ${tail.slice(-600)}` : ''}`;
}

/** Every live descendant of `root` (excluding root itself), from a scan of /proc/<pid>/stat.
 *  Only pids above root's are read: pids are handed out in increasing order, so descendants are
 *  there (barring a wrap-around of pid_max, 4M on 64-bit, which would hide them from the sampler). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    const c = e.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(e);
    if (pid <= root) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses.
    const close = stat.lastIndexOf(')');
    const ppid = Number(stat.slice(close + 2).split(' ', 3)[1]);
    let list = children.get(ppid);
    if (!list) children.set(ppid, (list = []));
    list.push(pid);
  }
  const out: number[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

function readRss(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ');
    return Number(f[1]) * PAGE;
  } catch {
    return 0;
  }
}

function readPss(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}
