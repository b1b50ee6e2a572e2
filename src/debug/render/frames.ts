/**
 * Stack frames as `captureStack` records them (`[fn ]path:line:col`,
 * repo-relative inside the package), parsed, and made deterministic for
 * reports: a frame outside the repository keeps only its file name, so no
 * absolute path reaches a report.
 */

export interface Frame {
  fn: string;
  path: string;
  line: number;
  column: number;
}

/** Parses one frame; null when it is not in the `[fn ]path:line:col` shape. */
export function parseFrame(frame: string): Frame | null {
  const m = /^(?:(\S+) )?(.+):(\d+):(\d+)$/.exec(frame);
  if (m === null) return null;
  return { fn: m[1] ?? '', path: relative(m[2]!), line: Number(m[3]), column: Number(m[4]) };
}

/** A path with anything absolute (a file URL, a leading slash) cut down to the file name. */
export function relative(path: string): string {
  if (!path.startsWith('file:') && !path.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(path)) return path;
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] ?? path;
}

/** A frame back in its textual form, made deterministic. */
export function formatFrame(frame: string): string {
  const f = parseFrame(frame);
  if (f === null) return frame;
  return `${f.fn !== '' ? `${f.fn} ` : ''}${f.path}:${f.line}:${f.column}`;
}
