/** Renders the option table as the Markdown of docs/configuration.md, so the doc cannot drift from the code. */
import { OPTIONS, envName, flagName } from './options.ts';

/** The whole configuration reference page. */
export function renderOptionsMarkdown(): string {
  const rows = OPTIONS.map((o) => {
    const values = o.values ? o.values.join(' \\| ') : o.type;
    const flag = o.flag === false ? '(config only)' : `\`${flagName(o.name)}\``;
    const where = o.applies === 'server' ? ' Server sections only.' : o.applies === 'global' ? ' `[cloudbarman]` only.' : '';
    const secret = o.secret ? ' Never shown in output.' : '';
    return `| \`${o.name}\` | ${values} | ${o.default === undefined ? '' : `\`${o.default}\``} | ${flag} | \`${envName(o.name)}\` | ${o.description.replaceAll('|', '\\|')}.${where}${secret} |`;
  });
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/options.ts by `node scripts/gen-config-doc.ts`; test/unit/config/options-doc.test.ts fails when it is stale. -->',
    '',
    'One INI file, one `[section]` per PostgreSQL server, with Barman\'s option names where Barman has the option.',
    'The `[cloudbarman]` section holds defaults for every server; Barman\'s own `[barman]` section is ignored so that a',
    'barman.conf can be reused. Values may be quoted; lines starting with `#` or `;` are comments.',
    '',
    'Precedence: command-line flag > environment variable > the server\'s section > `[cloudbarman]` > default.',
    'The file is `-c FILE`, else `$CLOUDBARMAN_CONFIG`, else `/etc/cloudbarman.conf` when it exists; a backup or',
    'WAL command works with no file at all when the destination comes from a flag or the environment.',
    'An unknown option, a malformed value or an unknown `CLOUDBARMAN_*` variable is an error (exit 3) that names',
    'the file, the line and the option.',
    '',
    'Sizes take B, kB, MB, GB (powers of 1024, as in PostgreSQL) or KiB/MiB/GiB; durations take ms, s, min, h, d',
    '(a bare number is seconds); booleans take on/off, true/false, yes/no, 1/0.',
    '',
    '| option | values | default | flag | environment | meaning |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
