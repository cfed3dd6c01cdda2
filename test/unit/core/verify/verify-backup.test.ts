// verifyBackup against hand-built backups (test/unit/core/restore/backup-fixture.ts) and WAL archived
// by uploadWal, in a temporary local store (no servers): a sound backup passes in both modes; each
// kind of damage is found, named by key, and said for what it is (bytes changed, object replaced,
// metadata or manifest wrong, WAL gap, damaged history); quick mode is shown not to read bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { LocalObjectStore } from '../../../../providers/local/object-store.ts';
import { silentLogger } from '../../../../src/core/log.ts';
import { writeManifest } from '../../../../src/core/catalog/catalog.ts';
import { uploadWal } from '../../../../src/core/wal/wal-upload.ts';
import { verifyBackup, type VerifyRequest } from '../../../../src/core/verify/verify-backup.ts';
import { formatReport, type VerifyReport } from '../../../../src/core/verify/verify-report.ts';
import { baseFiles, storeBackup, type Fixture } from '../restore/backup-fixture.ts';

let root: string;
let counter = 0;
const ID = '20261120T095900Z';

before(async () => { root = await mkdtemp(join(tmpdir(), 'cb-verify-')); });
after(() => rm(root, { recursive: true, force: true }));

interface Setup { store: LocalObjectStore; fixture: Fixture; dir: string; wal: (name: string, content?: Buffer) => Promise<string> }

/** A store with a DONE backup (several parts) and its WAL 2..3, plus segments 4..5 after it. */
async function setup(): Promise<Setup> {
  const dir = join(root, `t${++counter}`);
  await mkdir(join(dir, 'store'), { recursive: true });
  await mkdir(join(dir, 'pg_wal'));
  const store = new LocalObjectStore(pathToFileURL(join(dir, 'store')).href);
  const fixture = await storeBackup(store, {
    id: ID, partSize: 64 * 1024, archiveWal: false,
    files: [...baseFiles(), { path: 'base/1/1259', content: randomBytes(200_000) }, { path: 'base/1/2608', content: Buffer.alloc(50_000, 'x') }],
  });
  const wal = async (name: string, content: Buffer = randomBytes(2048)): Promise<string> => {
    const path = join(dir, 'pg_wal', name);
    await writeFile(path, content);
    return (await uploadWal({ store, server: 'pg1', walPath: path, compression: 'zstd', log: silentLogger })).key;
  };
  for (const n of [2, 3, 4, 5]) await wal(`00000001000000000000000${n}`);
  return { store, fixture, dir, wal };
}

function request(store: LocalObjectStore, extra: Partial<VerifyRequest> = {}): VerifyRequest {
  return { store, server: 'pg1', backupId: 'latest', mode: 'full', walToLatest: true, jobs: 2, log: silentLogger, now: () => new Date('2026-11-22T12:00:00Z'), ...extra };
}

function failed(report: VerifyReport): Record<string, string[]> {
  return Object.fromEntries(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.problems.map((p) => `${p.key}: ${p.problem}`)]));
}

/** Rewrites an object with other bytes, keeping its metadata (bit rot under intact metadata). */
async function rewrite(store: LocalObjectStore, key: string, change: (bytes: Buffer) => Buffer, metadata?: Record<string, string>): Promise<void> {
  const { body, info } = await store.get(key);
  const bytes = change(await buffer(body));
  await store.put(key, bytes, { metadata: metadata ?? info.metadata ?? {} });
}

const flipMiddle = (b: Buffer): Buffer => {
  const c = Buffer.from(b);
  const i = Math.floor(c.length / 2);
  c[i] = (c[i] ?? 0) ^ 0xff;
  return c;
};

test('a sound backup passes, full and quick; the full one reads every part and segment', async () => {
  const { store, fixture } = await setup();
  assert.ok(fixture.partKeys.length >= 4);
  const full = (await verifyBackup(request(store))).report;
  assert.deepEqual(failed(full), {});
  assert.deepEqual(full.checks.map((c) => c.name), ['catalog', 'manifest', 'parts', 'backup_label', 'wal needed', 'timeline history', 'wal to latest']);
  assert.ok(full.bytes_read >= fixture.info.stored_bytes);
  assert.match(full.checks.find((c) => c.name === 'wal to latest')?.detail ?? '', /2 segments after 000000010000000000000003 up to 000000010000000000000005 on timeline 1/);
  const quick = (await verifyBackup(request(store, { mode: 'quick' }))).report;
  assert.deepEqual(failed(quick), {});
  assert.equal(quick.bytes_read, 0);
  assert.match(formatReport(full).join('\n'), /^\tparts: OK \(\d+ parts, \d+ bytes read: each matches the manifest's SHA-256, and every chunk its own\)$/m);
});

test('a part whose bytes changed under intact metadata: full finds it, quick (reading nothing) does not', async () => {
  const { store, fixture } = await setup();
  const key = fixture.partKeys[1] ?? '';
  await rewrite(store, key, flipMiddle);
  assert.deepEqual(failed((await verifyBackup(request(store))).report), { parts: [`${key}: its SHA-256 does not match the manifest's (the stored bytes changed)`] });
  assert.deepEqual(failed((await verifyBackup(request(store, { mode: 'quick' }))).report), {});
});

test('a part replaced by another object (with its own checksum record) is named as replaced, in both modes', async () => {
  const { store, fixture } = await setup();
  const key = fixture.partKeys[1] ?? '';
  const other = fixture.partKeys[0] ?? '';
  const { body, info } = await store.get(other);
  await store.put(key, await buffer(body), { metadata: info.metadata ?? {} });
  const full = failed((await verifyBackup(request(store))).report);
  assert.match(full['parts']?.[0] ?? '', new RegExp(`^${key}: it is \\d+ bytes, the manifest recorded \\d+$`));
  const quick = failed((await verifyBackup(request(store, { mode: 'quick' }))).report);
  assert.match(quick['parts']?.[0] ?? '', /it is \d+ bytes, the manifest recorded/);
});

test('a same-sized part with its own matching checksum record: replaced, and quick sees the record differ', async () => {
  const { store, fixture } = await setup();
  const key = fixture.partKeys[1] ?? '';
  const { body, info } = await store.get(key);
  const bytes = flipMiddle(await buffer(body));
  await store.put(key, bytes, { metadata: { ...info.metadata, cb_sha256: createHash('sha256').update(bytes).digest('hex') } });
  assert.match(failed((await verifyBackup(request(store))).report)['parts']?.[0] ?? '', /it was replaced/);
  assert.match(failed((await verifyBackup(request(store, { mode: 'quick' }))).report)['parts']?.[0] ?? '', /recorded SHA-256 \(cb_sha256\) is not the manifest's/);
});

test('a manifest whose chunk checksum is wrong over an intact part: the manifest is blamed', async () => {
  const { store, fixture } = await setup();
  const manifest = structuredClone(fixture.manifest);
  const chunk = manifest.files.find((f) => f.path === 'base/1/1259')?.chunks[0];
  assert.ok(chunk);
  chunk.sha256 = '0'.repeat(64);
  const keys = (await store.list('pg1/base/')).items.map((i) => i.key).filter((k) => k.includes('manifest.json'));
  await store.delete(keys);
  await writeManifest(store, 'pg1', manifest);
  const parts = failed((await verifyBackup(request(store))).report)['parts'] ?? [];
  assert.equal(parts.length, 1);
  assert.match(parts[0] ?? '', /1 chunk do not match their SHA-256 \(first: base\/1\/1259 at offset 0, \d+ bytes\); the stored bytes match the manifest's SHA-256, so the manifest's chunk checksums are what is wrong/);
});

test('a manifest that disagrees with backup.json (one file more) is FAILED', async () => {
  const { store, fixture } = await setup();
  const manifest = structuredClone(fixture.manifest);
  manifest.files.push({ path: 'base/1/extra', size: 0, mode: 0o600, mtime: '2026-11-20T10:00:00.000Z', chunks: [] });
  const keys = (await store.list('pg1/base/')).items.map((i) => i.key).filter((k) => k.includes('manifest.json'));
  await store.delete(keys);
  await writeManifest(store, 'pg1', manifest);
  assert.deepEqual(failed((await verifyBackup(request(store))).report), {
    manifest: [`pg1/base/${ID}/manifest.json: it does not agree with backup.json: ${fixture.manifest.files.length + 1} files, backup.json says ${fixture.manifest.files.length}`],
  });
});

test('a part whose metadata changed over intact bytes: the metadata is blamed', async () => {
  const { store, fixture } = await setup();
  const key = fixture.partKeys[0] ?? '';
  const info = await store.head(key);
  await rewrite(store, key, (b) => b, { ...info?.metadata, cb_size: '1' });
  assert.match(failed((await verifyBackup(request(store))).report)['parts']?.[0] ?? '', /cb_size 1.*the object's metadata is what changed/);
});

test('WAL: a needed segment missing, one damaged, a gap after the end; each named', async () => {
  const { store } = await setup();
  await store.delete(['pg1/wals/0000000100000000/000000010000000000000002.zst']);
  await rewrite(store, 'pg1/wals/0000000100000000/000000010000000000000003.zst', flipMiddle);
  await store.delete(['pg1/wals/0000000100000000/000000010000000000000004.zst']);
  const problems = failed((await verifyBackup(request(store))).report);
  assert.deepEqual(Object.keys(problems).sort(), ['wal needed', 'wal to latest']);
  assert.deepEqual(problems['wal needed']?.map((p) => p.replace(/: .*/, '')), [
    'pg1/wals/0000000100000000/000000010000000000000002', 'pg1/wals/0000000100000000/000000010000000000000003.zst']);
  assert.deepEqual(problems['wal to latest'], ['pg1/wals/0000000100000000/000000010000000000000004: not archived: 000000010000000000000004']);
  // Quick does not read the damaged one.
  assert.equal(failed((await verifyBackup(request(store, { mode: 'quick' }))).report)['wal needed']?.length, 1);
});

test('WAL after a promotion: the branch is followed; a damaged history file and a timeline without one are FAILED', async () => {
  const { store, dir, wal } = await setup();
  await writeFile(join(dir, 'pg_wal', '00000002.history'), '1\t0/5000000\tno recovery target specified\n');
  await uploadWal({ store, server: 'pg1', walPath: join(dir, 'pg_wal', '00000002.history'), compression: 'zstd', log: silentLogger });
  await wal('000000020000000000000005');
  await wal('000000020000000000000006');
  const sound = (await verifyBackup(request(store))).report;
  assert.deepEqual(failed(sound), {});
  assert.match(sound.checks.find((c) => c.name === 'wal to latest')?.detail ?? '', /up to 000000020000000000000006 on timelines 1->2 \(switch at 0\/5000000\)/);

  await wal('000000030000000000000007');
  await rewrite(store, 'pg1/wals/00000002.history.zst', flipMiddle);
  const problems = failed((await verifyBackup(request(store))).report);
  assert.deepEqual(problems['timeline history']?.map((p) => p.replace(/: .*/, '')), ['pg1/wals/00000002.history.zst', 'pg1/wals/00000003.history']);
});

test('an unreadable backup.json is a FAILED catalog check naming it', async () => {
  const { store } = await setup();
  await store.put(`pg1/base/${ID}/backup.json`, Buffer.from('{"format_version": 1, "id": '));
  const { report, backup } = await verifyBackup(request(store, { backupId: ID }));
  assert.equal(backup, undefined);
  assert.deepEqual(Object.keys(failed(report)), ['catalog']);
  assert.match(failed(report)['catalog']?.[0] ?? '', new RegExp(`^pg1/base/${ID}/backup.json: .*not valid JSON`));
});

test('a damaged backup_label is FAILED, the rest still checked', async () => {
  const { store } = await setup();
  await store.put(`pg1/base/${ID}/backup_label`, Buffer.from('START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: x'));
  const problems = failed((await verifyBackup(request(store))).report);
  assert.deepEqual(Object.keys(problems), ['backup_label']);
  assert.match(problems['backup_label']?.[0] ?? '', /ends in the middle of a line/);
});
