/** `show SERVER BACKUP_ID|latest`: one backup in full. */
import type { Register } from '../program.ts';
import type { Output } from '../output.ts';
import { addConfigFlags } from '../config-flags.ts';
import { CloudbarmanError } from '../../core/errors.ts';

export const registerShow: Register = (program, run) => {
  addConfigFlags(program.command('show')
    .summary('show one backup in full')
    .description('Show everything the catalog knows about one backup. "latest" is the newest DONE backup.')
    .argument('<server>', 'server name: a [section] of the config file')
    .argument('<backup_id>', 'backup id, or latest'))
    .action(run('show', async (output: Output, ...args: unknown[]) => {
      const [server, id, opts] = args as [string, string, Record<string, unknown>];
      const [{ loadConfig, openStore }, { listBackups }, { formatBytes }] = await Promise.all([
        import('../context.ts'), import('../../core/catalog/catalog.ts'), import('../format.ts')]);
      const cfg = await loadConfig(server, { ...program.opts(), ...opts });
      const store = await openStore(cfg, output.log);
      try {
        const { backups, keeps, unreadable } = await listBackups(store, cfg.server);
        const damaged = unreadable.find((u) => u.id === id);
        if (damaged !== undefined) {
          throw new CloudbarmanError('integrity', `backup ${id} of ${cfg.server} cannot be read: ${damaged.error}`, { hint: 'the catalog entry is damaged or from a newer cloudbarman; upgrade, or delete the backup' });
        }
        const backup = id === 'latest' ? backups.filter((b) => b.status === 'DONE').at(-1) : backups.find((b) => b.id === id);
        if (backup === undefined) {
          // An id that is not there is bad input (exit 3), as for delete and keep; no DONE backup at all is a failure (exit 1).
          throw new CloudbarmanError(id === 'latest' ? 'failed' : 'bad-input', id === 'latest' ? `${cfg.server} has no DONE backup in ${store.url}` : `backup ${id} of ${cfg.server} is not in ${store.url}`, {
            hint: `\`cloudbarman list ${cfg.server}\` shows the backups there are`,
          });
        }
        const text = [
          `Backup ${backup.id} of ${backup.server}`,
          `  status:            ${backup.status}${backup.error ? ` (${backup.error})` : ''}`,
          `  method:            ${backup.method}`,
          `  label:             ${backup.label}`,
          `  begin:             ${backup.begin_time}  lsn ${backup.begin_lsn ?? '-'}  wal ${backup.begin_wal ?? '-'}`,
          `  end:               ${backup.end_time ?? '-'}  lsn ${backup.end_lsn ?? '-'}  wal ${backup.end_wal ?? '-'}`,
          `  timeline:          ${backup.timeline ?? '-'}`,
          ...(backup.method === 'snapshot' ? [`  size:              ${formatBytes(backup.size_bytes)} of disks, in cloud snapshots`] : [
            `  size:              ${formatBytes(backup.size_bytes)} in ${backup.file_count} files`,
            `  stored:            ${formatBytes(backup.stored_bytes)} in ${backup.part_count} parts (${backup.compression})`,
          ]),
          `  postgresql:        ${backup.pg_version ?? '-'}, system identifier ${backup.system_identifier ?? '-'}, data checksums ${backup.data_checksums === null ? '-' : backup.data_checksums ? 'on' : 'off'}`,
          `  encryption:        ${backup.encryption === undefined ? '-' : backup.encryption === null ? 'none (client-side)' : `${backup.encryption.algorithm}, key ${backup.encryption.key_id}`}`,
          `  tablespaces:       ${backup.tablespaces.length === 0 ? 'none' : backup.tablespaces.map((t) => `${t.name} (oid ${t.oid}) at ${t.location}`).join(', ')}`,
          ...(backup.pgdata === undefined ? [] : [`  data directory:    ${backup.pgdata}`]),
          ...(backup.snapshots === undefined ? [] : backup.snapshots.length === 0 ? ['  snapshots:         none'] : backup.snapshots.map((s, i) =>
            `  ${i === 0 ? 'snapshots:' : '          '}         ${s.id} (${s.provider}) of disk ${s.disk_name} (${s.disk_id}${s.device === null ? '' : `, ${s.device}`}${s.zone === null ? '' : `, ${s.zone}`}) mounted at ${s.mount_point}${s.contents.length === 0 ? '' : `: ${s.contents.join(', ')}`}`)),
          `  keep:              ${keeps.get(backup.id)?.target ?? 'nokeep'}`,
          `  taken on:          ${backup.hostname} by cloudbarman ${backup.cloudbarman_version}`,
        ];
        output.result({ ...backup, keep: keeps.get(backup.id) ?? null }, text);
      } finally {
        await store.close();
      }
    }));
};
