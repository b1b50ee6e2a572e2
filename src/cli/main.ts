#!/usr/bin/env node
/**
 * The `dmalab` command's entry point: binds the command line to the real
 * process. Only this folder may use Node modules.
 */

import { readFileSync } from 'node:fs';
import { nodeIo } from './io.js';
import { runCli } from './program.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

// A reader that goes away (`dmalab explain | head`) ends the output, not the program with a trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
}

process.exitCode = runCli(process.argv.slice(2), nodeIo(), packageVersion());
