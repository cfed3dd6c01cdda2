#!/usr/bin/env node
/**
 * The entry point, and the only place that sets the process exit code.
 * It enables V8's compile cache before loading anything else, so that archive_command,
 * which starts a process per WAL file, pays the parse/compile cost once per machine.
 */
import module from 'node:module';

module.enableCompileCache?.();
const { runCli } = await import('./program.ts');
process.exitCode = await runCli(process.argv.slice(2));
