/**
 * The peer tools come from Debian packages. When one is missing and we are root, install it with
 * apt-get; otherwise say what to install and let the caller skip that peer.
 */
import { run, which, describeFailure } from './proc.ts';

export interface Peer {
  /** The executable the bench runs. */
  bin: string;
  /** The Debian package that ships it. */
  pkg: string;
}

export interface PeerStatus {
  peer: Peer;
  path: string | null;
  /** Why the peer is unavailable, when path is null. */
  reason?: string;
  installed?: boolean;
}

export async function ensurePeers(peers: readonly Peer[], opts: { install: boolean; log: (m: string) => void }): Promise<PeerStatus[]> {
  const status: PeerStatus[] = peers.map((peer) => ({ peer, path: which(peer.bin) }));
  const missing = status.filter((s) => s.path === null);
  if (missing.length === 0) return status;
  const pkgs = [...new Set(missing.map((s) => s.peer.pkg))];
  const isRoot = process.getuid?.() === 0;
  if (!opts.install || !isRoot || !which('apt-get')) {
    const why = !opts.install ? '--no-install given' : !isRoot ? 'not root' : 'no apt-get';
    for (const s of missing) s.reason = `${s.peer.bin} not found (${why}); install it with: apt-get install ${s.peer.pkg}`;
    return status;
  }
  opts.log(`installing ${pkgs.join(' ')} with apt-get (Debian packages) ...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const upd = await run('apt-get', ['update', '-qq'], { env, timeoutMs: 180_000 });
  if (upd.code !== 0) opts.log(`warning: ${describeFailure('apt-get update', upd)}`);
  // One package at a time, so a package that fails does not take the other peer down with it.
  for (const pkg of pkgs) {
    const r = await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], { env, timeoutMs: 600_000 });
    for (const s of missing.filter((m) => m.peer.pkg === pkg)) {
      s.path = which(s.peer.bin);
      if (s.path) s.installed = true;
      else s.reason = `apt-get install ${pkg} failed: ${describeFailure('apt-get', r)}`;
    }
  }
  return status;
}
