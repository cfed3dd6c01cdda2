/**
 * Where a point-in-time recovery stops: the --target-* options, parsed and validated once so that
 * backup selection and the recovery configuration see the same values. Every parser here is pure
 * and throws CloudbarmanError('bad-input') naming the flag, so a typo fails before anything is written.
 */
import { badInput } from '../errors.ts';

/**
 * An instant with microsecond precision (PostgreSQL's), plus the text PostgreSQL is given.
 * Microseconds since the epoch stay below 2^53 until the year 2255, so a number holds them exactly.
 */
export interface Timestamp {
  /** Microseconds since 1970-01-01 00:00:00 UTC. */
  micros: number;
  /** "YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM": explicit zone, so the restored server's TimeZone cannot shift it. */
  text: string;
}

/** One recovery target; PostgreSQL accepts at most one. */
export type RecoveryTarget =
  | { kind: 'immediate' }
  | { kind: 'time'; time: Timestamp }
  | { kind: 'xid'; xid: string }
  | { kind: 'lsn'; lsn: string }
  | { kind: 'name'; name: string };

/** recovery_target_timeline: a timeline id, or PostgreSQL's two keywords. */
export type TargetTimeline = 'latest' | 'current' | number;

/** recovery_target_action. */
export type TargetAction = 'pause' | 'promote' | 'shutdown';

/** The --target-* option values as typed; at most one of the five may be given. */
export interface TargetOptions {
  time?: string;
  xid?: string;
  lsn?: string;
  name?: string;
  immediate?: boolean;
}

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * Parses "2026-11-22 10:41:07.123456+01", ISO 8601 ("2026-11-22T09:41:07Z") and the like. A time
 * without a zone is taken as UTC (`assumedUtc` says so), never as the restoring host's zone: the
 * same command must mean the same instant wherever it runs. Fractions beyond microseconds are cut.
 */
export function parseTimestamp(text: string): (Timestamp & { assumedUtc: boolean }) | undefined {
  const m = TIMESTAMP.exec(text.trim());
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s = '00', frac = '', zone] = m;
  const year = Number(y), month = Number(mo), day = Number(d), hour = Number(h), minute = Number(mi), second = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  if (new Date(ms).getUTCDate() !== day) return undefined; // 2026-02-30 rolls over in Date.UTC
  let offsetMinutes = 0;
  if (zone !== undefined && zone !== 'Z' && zone !== 'z' && zone !== 'UTC') {
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 15 || om > 59) return undefined;
    offsetMinutes = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om);
  }
  const micro = frac === '' ? 0 : Number(frac.slice(0, 6).padEnd(6, '0'));
  const micros = (ms - offsetMinutes * 60_000) * 1000 + micro;
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const zoneText = `${sign}${pad2(Math.floor(abs / 60))}:${pad2(abs % 60)}`;
  const fracText = frac === '' ? '' : `.${frac.slice(0, 6)}`;
  return {
    micros,
    text: `${y}-${mo}-${d} ${h}:${mi}:${s}${fracText}${zoneText}`,
    assumedUtc: zone === undefined,
  };
}

/** The ISO 8601 UTC form of a timestamp, for messages ("2026-11-22T09:41:07.123456Z"). */
export function formatTimestamp(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const rest = micros - ms * 1000;
  const iso = new Date(ms).toISOString(); // ...07.123Z
  return rest === 0 ? iso : `${iso.slice(0, -1)}${String(rest).padStart(3, '0')}Z`;
}

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** An LSN "X/Y" (two hex numbers of up to 32 bits) as a comparable 64-bit value; undefined if malformed. */
export function parseLsn(text: string): bigint | undefined {
  const m = LSN.exec(text.trim());
  if (m === null || m[1] === undefined || m[2] === undefined) return undefined;
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** The five --target-* options to one target (or none); more than one is an error, as in PostgreSQL. */
export function parseRecoveryTarget(options: TargetOptions): RecoveryTarget | undefined {
  const given = (['time', 'xid', 'lsn', 'name', 'immediate'] as const).filter((k) => options[k] !== undefined && options[k] !== false);
  if (given.length > 1) {
    throw badInput(`only one recovery target may be given, not ${given.map((k) => `--target-${k}`).join(' and ')}`,
      'PostgreSQL stops at one target: choose the time, xid, lsn, name or immediate');
  }
  if (options.time !== undefined) {
    const time = parseTimestamp(options.time);
    if (time === undefined) {
      throw badInput(`--target-time ${JSON.stringify(options.time)} is not a timestamp`,
        "use 'YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]', e.g. '2026-11-22 10:41:07+01'; without a zone it is UTC");
    }
    return { kind: 'time', time: { micros: time.micros, text: time.text } };
  }
  if (options.xid !== undefined) {
    // PostgreSQL 13+ also takes a full 64-bit xid (epoch-qualified), so only the shape is checked.
    if (!/^\d{1,20}$/.test(options.xid.trim()) || BigInt(options.xid.trim()) > 0xFFFF_FFFF_FFFF_FFFFn) {
      throw badInput(`--target-xid ${JSON.stringify(options.xid)} is not a transaction id`, 'give the decimal xid, e.g. 1234567');
    }
    return { kind: 'xid', xid: options.xid.trim() };
  }
  if (options.lsn !== undefined) {
    if (parseLsn(options.lsn) === undefined) {
      throw badInput(`--target-lsn ${JSON.stringify(options.lsn)} is not an LSN`, 'give it as PostgreSQL prints it: two hex numbers, e.g. 0/3000060');
    }
    return { kind: 'lsn', lsn: options.lsn.trim().toUpperCase() };
  }
  if (options.name !== undefined) {
    if (options.name === '' || /[\0\r\n]/.test(options.name)) {
      throw badInput(`--target-name ${JSON.stringify(options.name)} is not a restore point name`, 'give the name passed to pg_create_restore_point()');
    }
    return { kind: 'name', name: options.name };
  }
  if (options.immediate === true) return { kind: 'immediate' };
  return undefined;
}

/** --target-tli: latest, current, or a timeline id in decimal. */
export function parseTargetTimeline(text: string): TargetTimeline {
  const t = text.trim().toLowerCase();
  if (t === 'latest' || t === 'current') return t;
  if (/^\d{1,10}$/.test(t)) {
    const n = Number(t);
    if (n >= 1 && n <= 0xFFFF_FFFF) return n;
  }
  throw badInput(`--target-tli ${JSON.stringify(text)} is not a timeline`, 'give latest, current, or a timeline id such as 2');
}

/** --target-action: what PostgreSQL does on reaching the target. */
export function parseTargetAction(text: string): TargetAction {
  if (text === 'pause' || text === 'promote' || text === 'shutdown') return text;
  throw badInput(`--target-action ${JSON.stringify(text)} is not pause, promote or shutdown`);
}

/** A short description of a target for messages and summaries. */
export function describeTarget(target: RecoveryTarget): string {
  switch (target.kind) {
    case 'immediate': return 'immediate (the end of the backup)';
    case 'time': return `time ${target.time.text}`;
    case 'xid': return `xid ${target.xid}`;
    case 'lsn': return `lsn ${target.lsn}`;
    case 'name': return `restore point ${JSON.stringify(target.name)}`;
  }
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}
