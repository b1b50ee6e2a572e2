#!/usr/bin/env node
/**
 * The `dmalab` command. Only this folder may use Node modules.
 */

import { DmalabError } from '../machine/index.js';
import { renderDemo } from './demo.js';

const USAGE = `usage: dmalab <command>

commands:
  demo      show how each architecture profile's caches and devices treat the same bytes
  help      show this help

examples:
  dmalab demo
`;

function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'demo') {
    if (rest.length > 0) throw new DmalabError(`demo takes no arguments, got '${rest.join(' ')}'`);
    process.stdout.write(renderDemo());
    return 0;
  }
  throw new DmalabError(`unknown command '${cmd}' (try 'dmalab help')`);
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  if (err instanceof DmalabError) {
    process.stderr.write(`dmalab: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
