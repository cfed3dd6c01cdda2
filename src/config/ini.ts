/**
 * A small INI parser we own: `[section]` headers, `key = value` lines, `#` and `;` comment
 * lines, blank lines. It keeps line numbers so that every config error can point at its line.
 *
 * Deliberate limits: no inline comments (a `#` may be part of a password), no continuation
 * lines, `=` is the only separator. Keys are lower-cased, like Python's configparser that
 * Barman uses, so a barman.conf written with `Compression = gzip` reads the same.
 * Errors never quote a line's text: it may hold a secret.
 */
import { badInput } from '../core/errors.ts';

/** One `key = value` line. */
export interface IniEntry {
  key: string;
  /** Trimmed, one pair of surrounding quotes removed. */
  value: string;
  /** 1-based. */
  line: number;
}

/** One `[name]` section with its entries by key, in file order. */
export interface IniSection {
  name: string;
  line: number;
  entries: ReadonlyMap<string, IniEntry>;
}

/** A parsed file: its sections by name, in file order. */
export interface IniDocument {
  /** The file name used in messages. */
  source: string;
  sections: ReadonlyMap<string, IniSection>;
}

/** Parses INI text; `source` names the file in error messages ("/etc/cloudbarman.conf:12: ..."). */
export function parseIni(text: string, source: string): IniDocument {
  const sections = new Map<string, IniSection>();
  let current: { name: string; entries: Map<string, IniEntry> } | undefined;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);

  for (const [index, raw] of lines.entries()) {
    const line = index + 1;
    const where = `${source}:${line}`;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) continue;

    if (trimmed.startsWith('[')) {
      if (!trimmed.endsWith(']')) throw badInput(`${where}: section header has no closing "]"`, 'write it as [name] on a line of its own');
      const name = trimmed.slice(1, -1).trim();
      if (name === '') throw badInput(`${where}: section header has no name`, 'write it as [name], e.g. [pg1]');
      const earlier = sections.get(name);
      if (earlier !== undefined) {
        throw badInput(`${where}: section [${name}] appears again (first at line ${earlier.line})`, 'merge the two sections into one');
      }
      current = { name, entries: new Map() };
      sections.set(name, { name, line, entries: current.entries });
      continue;
    }

    const equals = trimmed.indexOf('=');
    if (equals < 0) throw badInput(`${where}: expected "key = value", a [section] header or a comment`, 'comment lines start with # or ;');
    const key = trimmed.slice(0, equals).trim().toLowerCase();
    if (key === '') throw badInput(`${where}: a value has no option name before "="`, 'write it as "option = value"');
    if (current === undefined) {
      throw badInput(`${where}: option "${key}" comes before any [section]`, 'put it under [cloudbarman] (defaults for every server) or under a server\'s [section]');
    }
    const earlier = current.entries.get(key);
    if (earlier !== undefined) {
      throw badInput(`${where}: option "${key}" is set again in [${current.name}] (first at line ${earlier.line})`, 'keep one of the two lines');
    }
    const value = unquote(trimmed.slice(equals + 1).trim());
    if (value === undefined) {
      throw badInput(`${where}: option "${key}" has an unterminated quote`, 'close the quote at the end of the value, or remove it');
    }
    current.entries.set(key, { key, value, line });
  }
  return { source, sections };
}

/** Removes one pair of matching surrounding quotes; undefined when a leading quote is never closed. */
function unquote(value: string): string | undefined {
  const quote = value[0];
  if (quote !== '"' && quote !== "'") return value;
  if (value.length < 2 || !value.endsWith(quote)) return undefined;
  return value.slice(1, -1);
}
