/**
 * Module-level registries that keep behaviour out of machine state: each
 * callback table (vm_operations_struct, file_operations, a driver's
 * probe/remove) gets an id the first time it is stored, and state keeps the
 * id. The registry is append-only, so ids stay valid across restores.
 *
 * Also the plain-data check for driver data kept in state (vm_private_data,
 * file->private_data, devres data, drvdata).
 */

import { DmalabError } from '../../machine/index.js';

const tables: object[] = [];
const ids = new WeakMap<object, number>();

/**
 * Registers a callback table (idempotent) and returns its id. `known` lists
 * the members the model implements; any other member is refused, so that a
 * misspelt or unmodelled callback does not silently never run.
 */
export function tableId(table: object, what: string, known: readonly string[]): number {
  const prev = ids.get(table);
  if (prev !== undefined) return prev;
  if (typeof table !== 'object' || table === null) {
    throw new DmalabError(`${what} must be an object of callbacks`, { field: what });
  }
  for (const [k, v] of Object.entries(table)) {
    if (!known.includes(k)) {
      throw new DmalabError(`${what}.${k} is not a callback dmalab models (known: ${known.join(', ')})`, {
        field: `${what}.${k}`,
      });
    }
    if (v !== undefined && typeof v !== 'function') {
      throw new DmalabError(`${what}.${k} must be a function`, { field: `${what}.${k}` });
    }
  }
  const id = tables.length;
  tables.push(table);
  ids.set(table, id);
  return id;
}

const keys = new Map<number, string>();

/**
 * A stable identity of the table registered under `id`, for state hashes:
 * its members and their source text. Two tables built by the same code (a
 * scenario replayed from the start) hash alike although their registry ids
 * differ.
 */
export function tableKey(id: number): string {
  let k = keys.get(id);
  if (k === undefined) {
    const t = tableById<Record<string, unknown>>(id);
    k = Object.keys(t)
      .sort()
      .map((name) => `${name}=${String(t[name])}`)
      .join('\n');
    keys.set(id, k);
  }
  return k;
}

/** The table registered under `id`. */
export function tableById<T extends object>(id: number): T {
  const t = tables[id];
  if (t === undefined) throw new DmalabError(`no callback table with id ${id}`);
  return t as T;
}

function isPlainProto(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/**
 * Throws a DmalabError unless `v` is plain data that `structuredClone`
 * copies faithfully: primitives, arrays, plain objects, Maps, Sets, typed
 * arrays. Functions and class instances (handles included) are refused:
 * store an id instead.
 */
export function assertPlainData(v: unknown, field: string, seen = new Set<object>()): void {
  switch (typeof v) {
    case 'undefined':
    case 'boolean':
    case 'number':
    case 'string':
    case 'bigint':
      return;
    case 'function':
      throw new DmalabError(
        'must be plain data (state is snapshotted): a function cannot be stored; register behaviour and store an id',
        { field },
      );
    case 'symbol':
      throw new DmalabError('must be plain data: a symbol cannot be stored', { field });
    default:
      break;
  }
  if (v === null) return;
  const o = v as object;
  if (seen.has(o)) return;
  seen.add(o);
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer) return;
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) assertPlainData(o[i], `${field}[${i}]`, seen);
    return;
  }
  if (o instanceof Map) {
    for (const [k, x] of o) {
      assertPlainData(k, `${field} key`, seen);
      assertPlainData(x, `${field}.get(${String(k)})`, seen);
    }
    return;
  }
  if (o instanceof Set) {
    for (const x of o) assertPlainData(x, `${field} member`, seen);
    return;
  }
  if (!isPlainProto(o)) {
    const name = (o as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    throw new DmalabError(
      `must be plain data (state is snapshotted): a ${name} instance cannot be stored; store its id or name`,
      { field },
    );
  }
  for (const [k, x] of Object.entries(o)) assertPlainData(x, `${field}.${k}`, seen);
}
