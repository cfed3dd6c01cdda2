// Bundles the CLI into dist/ with esbuild: one entry file plus lazily loaded chunks
// (each provider's SDK is its own chunk, so wal-upload to S3 never loads Azure or GCS).
import { build } from 'esbuild';
import { renameSync, rmSync } from 'node:fs';

// Build beside dist/ and swap it in, so that a CLI started during a rebuild never finds dist/ missing.
const root = new URL('..', import.meta.url).pathname;
const next = `${root}dist.next-${process.pid}`;
const old = `${root}dist.old-${process.pid}`;
rmSync(next, { recursive: true, force: true });
await build({
  entryPoints: { cloudbarman: 'src/cli/main.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  outdir: next,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: 'linked',
  minifySyntax: true,
  legalComments: 'none',
  external: ['pg-native'],
  // Bundled CommonJS dependencies call require() and read __dirname/__filename at load time
  // (google-gax does, for @google-cloud/compute and @google-cloud/kms); give ESM output real ones.
  // They name the chunk's own file: only gRPC proto loading would read paths from them, and the
  // Google clients here use the REST transport with their bundled JSON protos.
  banner: {
    js: "import { createRequire as __cbCreateRequire } from 'node:module'; import { fileURLToPath as __cbFileURLToPath } from 'node:url'; " +
      "const require = __cbCreateRequire(import.meta.url); const __cbFilename = __cbFileURLToPath(import.meta.url); " +
      "const __cbDirname = __cbFileURLToPath(new URL('.', import.meta.url));",
  },
  define: { __dirname: '__cbDirname', __filename: '__cbFilename' },
  logLevel: 'warning',
});

try {
  renameSync(`${root}dist`, old);
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
renameSync(next, `${root}dist`);
rmSync(old, { recursive: true, force: true });
