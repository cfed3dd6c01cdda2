#!/usr/bin/env node
/**
 * The entry point, and the only place that sets the process exit code.
 * It enables V8's compile cache before loading anything else, so that archive_command,
 * which starts a process per WAL file, pays the parse/compile cost once per machine and user.
 * Plain wal-upload and wal-restore calls take the fast path (fast-path.ts), which does not
 * load commander or the other commands; everything else goes to the commander program.
 */
import module from 'node:module';

// Not `import ... from 'node:fs'`: its ES module face reads every export, and fs.ReadStream's
// getter loads the whole stream machinery, about 20 ms that a WAL call does not need.
const { lstatSync, mkdirSync } = process.getBuiltinModule('node:fs');
const { tmpdir } = process.getBuiltinModule('node:os');
const { join } = process.getBuiltinModule('node:path');

enableCompileCache();
const argv = process.argv.slice(2);
const { runFastPath } = await import('./fast-path.ts');
const fastExitCode = await runFastPath(argv);
process.exitCode = fastExitCode ?? await (await import('./program.ts')).runCli(argv);

/**
 * Node's default cache folder (<tmp>/node-compile-cache) belongs to whichever user ran Node first,
 * often root, and then the postgres user running archive_command gets no cache at all. So each user
 * gets a folder of its own, used only when it is that user's and writable by nobody else (a cache
 * someone else can write could change the code this process runs). NODE_COMPILE_CACHE, when set,
 * has already been applied by Node and is left as it is.
 */
function enableCompileCache(): void {
  if (module.enableCompileCache === undefined) return;
  const uid = process.getuid?.();
  if (process.env['NODE_COMPILE_CACHE'] !== undefined || uid === undefined) {
    module.enableCompileCache();
    return;
  }
  const dir = join(tmpdir(), `cloudbarman-compile-cache-${uid}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch {
    // Already there (checked below), or not creatable: then no cache, only a slower start.
  }
  try {
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) return;
  } catch {
    return;
  }
  module.enableCompileCache(dir);
}
