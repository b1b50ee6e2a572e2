/**
 * What the command touches outside itself — streams, terminals, the
 * environment, files, the clock — behind one small interface, so the
 * commands stay testable and `main.ts` alone binds them to Node.
 */

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { DmalabError } from '../machine/index.js';

export interface Io {
  out(text: string): void;
  err(text: string): void;
  readonly stdoutIsTTY: boolean;
  readonly stderrIsTTY: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Wall-clock milliseconds (only for deciding when a progress bar is worth showing). */
  now(): number;
  /** The text of a file; a DmalabError naming the file when it cannot be read. */
  readText(path: string): string;
  /** The entries of a directory, sorted, or null when `path` is not a directory. */
  listDir(path: string): string[] | null;
  writeText(path: string, text: string): void;
  /** A progress bar on stderr; only called when stderr is a terminal. */
  progressBar(total: number): { update(done: number): void; stop(): void };
}

/** The real process's streams, environment and files. */
export function nodeIo(): Io {
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    stdoutIsTTY: process.stdout.isTTY === true,
    stderrIsTTY: process.stderr.isTTY === true,
    env: process.env,
    now: () => Date.now(),
    readText(path) {
      if (!existsSync(path))
        throw new DmalabError('no such file or built-in scenario (see dmalab list)', { file: path });
      if (statSync(path).isDirectory())
        throw new DmalabError('is a directory, not a scenario file', { file: path });
      try {
        return readFileSync(path, 'utf8');
      } catch (e) {
        throw new DmalabError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
          file: path,
        });
      }
    },
    listDir(path) {
      if (!existsSync(path) || !statSync(path).isDirectory()) return null;
      return readdirSync(path)
        .map((f) => join(path, f))
        .sort();
    },
    writeText(path, text) {
      try {
        writeFileSync(path, text);
      } catch (e) {
        throw new DmalabError(`cannot be written (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
          file: path,
        });
      }
    },
    progressBar(total) {
      const bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: 'dmalab [{bar}] {value}/{total} runs',
          clearOnComplete: true,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
      return { update: (done) => bar.update(done), stop: () => bar.stop() };
    },
  };
}

/**
 * Colour on a stream only when it is a terminal, never with `NO_COLOR` set
 * to anything non-empty (no-color.org) or on a dumb terminal.
 */
export function wantsColour(io: Io, stream: 'stdout' | 'stderr'): boolean {
  const tty = stream === 'stdout' ? io.stdoutIsTTY : io.stderrIsTTY;
  const noColor = io.env.NO_COLOR;
  return tty && (noColor === undefined || noColor === '') && io.env.TERM !== 'dumb';
}

/**
 * A progress callback for long runs: nothing for the first second, then a
 * bar on stderr — and never when stderr is not a terminal.
 */
export function progress(io: Io): {
  onProgress: (done: number, total: number) => void;
  stop(): void;
} {
  const start = io.now();
  let bar: { update(done: number): void; stop(): void } | null = null;
  return {
    onProgress(done, total) {
      if (!io.stderrIsTTY) return;
      if (bar === null) {
        if (io.now() - start < 1000 || done >= total) return;
        bar = io.progressBar(total);
      }
      bar.update(done);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
