/**
 * synchronous_standby_names, read the way PostgreSQL's syncrep grammar reads it: a plain list
 * ("a, b"), "N (a, b)", "FIRST N (...)" or "ANY N (...)". Names match application_name
 * case-insensitively, quoted or not (syncrep.c compares with pg_strcasecmp), and "*" matches any.
 */

/** The parsed setting; an empty setting means no synchronous standbys. */
export interface SynchronousStandbyNames {
  method: 'first' | 'any';
  count: number;
  names: string[];
}

/** Parses the setting; undefined when it does not follow the grammar (PostgreSQL would have refused it). */
export function parseSynchronousStandbyNames(text: string): SynchronousStandbyNames | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return { method: 'first', count: 0, names: [] };
  const numbered = /^(?:(any|first)\s+)?(\d+)\s*\(([\s\S]*)\)$/i.exec(trimmed);
  const listText = numbered === null ? trimmed : (numbered[3] ?? '');
  const names = splitNames(listText);
  if (names === undefined || names.length === 0) return undefined;
  if (numbered === null) return { method: 'first', count: 1, names };
  return { method: numbered[1]?.toLowerCase() === 'any' ? 'any' : 'first', count: Number(numbered[2]), names };
}

/** True when a standby connecting with `applicationName` is a candidate synchronous standby. */
export function namesSynchronousStandby(setting: string, applicationName: string): boolean {
  const parsed = parseSynchronousStandbyNames(setting);
  if (parsed === undefined || parsed.count === 0) return false;
  const wanted = applicationName.toLowerCase();
  return parsed.names.some((name) => name === '*' || name.toLowerCase() === wanted);
}

function splitNames(text: string): string[] | undefined {
  const names: string[] = [];
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i] ?? '')) i++;
    let name = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) return undefined; // unterminated quote
        if (text[i] === '"') {
          if (text[i + 1] === '"') { name += '"'; i += 2; continue; }
          i++;
          break;
        }
        name += text[i];
        i++;
      }
    } else {
      const start = i;
      while (i < text.length && text[i] !== ',') i++;
      name = text.slice(start, i).trim();
      if (name === '' || /[\s"()]/.test(name)) return undefined;
    }
    names.push(name);
    while (i < text.length && /\s/.test(text[i] ?? '')) i++;
    if (i >= text.length) return names;
    if (text[i] !== ',') return undefined;
    i++;
  }
}
