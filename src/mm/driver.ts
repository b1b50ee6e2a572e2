/**
 * The driver core (drivers/base/dd.c, devres.c): drivers bound to devices,
 * managed resources released at unbind, and bus notifiers.
 *
 *     bindDriver:   BIND_DRIVER notifiers → probe(dev) → BOUND_DRIVER
 *                   (probe < 0: devres released, DRIVER_NOT_BOUND)
 *     unbindDriver: UNBIND_DRIVER notifiers → remove(dev) → devres released
 *                   newest first → drvdata cleared, driver unset → UNBOUND_DRIVER
 *
 * dma-debug's leak check hangs on BUS_NOTIFY_UNBOUND_DRIVER; the DMA API's
 * `dmam*` functions register their release kinds with
 * `registerDevresRelease` and add plain data with `devresAdd`.
 */

import {
  __GFP_ZERO,
  apiCall,
  type Device,
  DmalabError,
  EBUSY,
  ENOENT,
  formatHex,
  type Gfp,
  type KernelVa,
  type Machine,
  reportFinding,
  WARN,
} from '../machine/index.js';
import {
  BUS_NOTIFY_BIND_DRIVER,
  BUS_NOTIFY_BOUND_DRIVER,
  BUS_NOTIFY_DRIVER_NOT_BOUND,
  BUS_NOTIFY_UNBIND_DRIVER,
  BUS_NOTIFY_UNBOUND_DRIVER,
} from './consts.js';
import { assertPlainData, tableById, tableId } from './internal/registry.js';
import { type DevBinding, mmState } from './internal/state.js';
import { kfree, kmalloc } from './kmalloc.js';

/** A driver's callbacks (`struct device_driver`'s probe and remove). */
export interface DriverOps {
  readonly name: string;
  probe(dev: Device): number;
  remove?(dev: Device): void;
}

/** `struct device_driver *`: a handle carrying its machine. */
export class Driver {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get name(): string {
    return mmState(this.machine).drivers[this.id]!.name;
  }
  toString(): string {
    return this.name;
  }
}

/** A bus notifier: `action` is a BUS_NOTIFY_* code; `driver` the driver involved (null after it is gone from the device). */
export type BusNotifier = (action: number, dev: Device, driver: string | null) => void;

const notifiers: BusNotifier[] = [];
const releases = new Map<string, (dev: Device, data: unknown) => void>();

/** `bus_register_notifier()` (module-wide, for every machine): returns the unregister function. */
export function registerBusNotifier(fn: BusNotifier): () => void {
  notifiers.push(fn);
  return () => {
    const i = notifiers.indexOf(fn);
    if (i >= 0) notifiers.splice(i, 1);
  };
}

function notify(action: number, dev: Device, driver: string | null): void {
  for (const fn of notifiers.slice()) fn(action, dev, driver);
}

/**
 * Registers the release function of a kind of managed resource (module
 * load time, once per kind): the kernel's `dr_release_t` passed to
 * `devres_alloc`, named so state can refer to it.
 */
export function registerDevresRelease<T>(kind: string, fn: (dev: Device, data: T) => void): void {
  const prev = releases.get(kind);
  if (prev !== undefined && prev !== fn) throw new DmalabError(`devres kind '${kind}' registered twice`);
  releases.set(kind, fn as (dev: Device, data: unknown) => void);
}

function binding(dev: Device): DevBinding {
  const devs = mmState(dev.machine).devs;
  let b = devs.get(dev.id);
  if (b === undefined) {
    b = { driver: -1, devres: [], drvdata: undefined };
    devs.set(dev.id, b);
  }
  return b;
}

/** `driver_register()`: makes a driver known; a second driver of the same name is refused. */
export function registerDriver(m: Machine, ops: DriverOps): Driver {
  return apiCall(m, 'driver_register', () => {
    if (typeof ops?.name !== 'string' || ops.name === '' || typeof ops.probe !== 'function') {
      throw new DmalabError('registerDriver needs { name, probe, remove? }', { field: 'driver' });
    }
    const st = mmState(m);
    if (st.drivers.some((d) => d.name === ops.name)) {
      throw new DmalabError(`Driver '${ops.name}' is already registered`, { field: 'name' });
    }
    const id = st.drivers.length;
    const opsId = tableId({ probe: ops.probe, remove: ops.remove }, 'driver', ['probe', 'remove']);
    st.drivers.push({ id, name: ops.name, ops: opsId });
    return new Driver(m, id);
  });
}

function opsOf(m: Machine, driverId: number): { probe: DriverOps['probe']; remove?: DriverOps['remove'] } {
  return tableById(mmState(m).drivers[driverId]!.ops);
}

function releaseAll(dev: Device, b: DevBinding): void {
  while (b.devres.length > 0) {
    const r = b.devres.pop()!;
    releases.get(r.kind)!(dev, r.data);
  }
}

/**
 * Binds `driver` to `dev` and calls its `probe`: returns probe's result
 * (0 when bound). A failed probe releases the managed resources it took and
 * leaves the device unbound. -EBUSY when the device already has a driver.
 */
export function bindDriver(dev: Device, driver: Driver): number {
  const m = dev.machine;
  if (driver.machine !== m) throw new DmalabError('bindDriver: the driver belongs to another machine');
  return apiCall(m, 'device_bind_driver', () => {
    const b = binding(dev);
    if (b.driver >= 0) return -EBUSY;
    const name = driver.name;
    notify(BUS_NOTIFY_BIND_DRIVER, dev, name);
    b.driver = driver.id;
    const r = opsOf(m, driver.id).probe(dev);
    if (typeof r !== 'number' || !Number.isInteger(r)) {
      throw new DmalabError(`driver ${name}: probe must return 0 or a negative errno, got ${String(r)}`);
    }
    if (m.bus.wants['driver-bind'])
      m.bus.emit({ type: 'driver-bind', device: dev.name, driver: name, result: r });
    if (r < 0) {
      releaseAll(dev, b);
      b.drvdata = undefined;
      b.driver = -1;
      notify(BUS_NOTIFY_DRIVER_NOT_BOUND, dev, name);
      return r;
    }
    notify(BUS_NOTIFY_BOUND_DRIVER, dev, name);
    return r;
  });
}

/**
 * `device_release_driver()`: the driver's `remove`, then every managed
 * resource released newest first, then BUS_NOTIFY_UNBOUND_DRIVER (where
 * dma-debug checks for leaks). Nothing happens on an unbound device.
 */
export function unbindDriver(dev: Device): void {
  const m = dev.machine;
  apiCall(m, 'device_release_driver', () => {
    const b = binding(dev);
    if (b.driver < 0) return;
    const name = mmState(m).drivers[b.driver]!.name;
    notify(BUS_NOTIFY_UNBIND_DRIVER, dev, name);
    opsOf(m, b.driver).remove?.(dev);
    releaseAll(dev, b);
    b.drvdata = undefined;
    b.driver = -1;
    if (m.bus.wants['driver-unbind']) m.bus.emit({ type: 'driver-unbind', device: dev.name, driver: name });
    notify(BUS_NOTIFY_UNBOUND_DRIVER, dev, name);
  });
}

/** The name of the driver bound to `dev`, or null (`dev_driver_string` without the bus fallback). */
export function deviceDriverName(dev: Device): string | null {
  const b = mmState(dev.machine).devs.get(dev.id);
  return b === undefined || b.driver < 0 ? null : mmState(dev.machine).drivers[b.driver]!.name;
}

/** `devres_add()`: records a managed resource of a registered kind, with plain data. */
export function devresAdd(dev: Device, kind: string, data: unknown): void {
  if (!releases.has(kind))
    throw new DmalabError(`devres kind '${kind}' has no registered release`, { field: 'kind' });
  assertPlainData(data, 'devres data');
  apiCall(dev.machine, 'devres_add', () => binding(dev).devres.push({ kind, data }));
}

function find(dev: Device, kind: string, match?: (data: unknown) => boolean): number {
  const list = mmState(dev.machine).devs.get(dev.id)?.devres ?? [];
  for (let i = list.length - 1; i >= 0; i--) {
    const r = list[i]!;
    if (r.kind === kind && (match === undefined || match(r.data))) return i;
  }
  return -1;
}

/**
 * `devres_remove()`: takes the newest matching resource off the list
 * without releasing it; returns its data, or null when none matches (the
 * dmam_free_* "no matching devres" case).
 */
export function devresRemove<T>(dev: Device, kind: string, match?: (data: T) => boolean): T | null {
  return apiCall(dev.machine, 'devres_remove', () => {
    const i = find(dev, kind, match as ((d: unknown) => boolean) | undefined);
    if (i < 0) return null;
    return binding(dev).devres.splice(i, 1)[0]!.data as T;
  });
}

/** `devres_release()`: removes the newest matching resource and runs its release; 0 or -ENOENT. */
export function devresRelease<T>(dev: Device, kind: string, match?: (data: T) => boolean): number {
  return apiCall(dev.machine, 'devres_release', () => {
    const i = find(dev, kind, match as ((d: unknown) => boolean) | undefined);
    if (i < 0) return -ENOENT;
    const r = binding(dev).devres.splice(i, 1)[0]!;
    releases.get(kind)!(dev, r.data);
    return 0;
  });
}

/** Managed resources on a device, newest last (dmalab helper, for tests and reports). */
export function devresList(dev: Device): readonly { kind: string; data: unknown }[] {
  return mmState(dev.machine).devs.get(dev.id)?.devres.slice() ?? [];
}

/** `dev_set_drvdata()`: plain data. */
export function devSetDrvdata(dev: Device, data: unknown): void {
  assertPlainData(data, 'drvdata');
  apiCall(dev.machine, 'dev_set_drvdata', () => {
    binding(dev).drvdata = data;
  });
}

/** `dev_get_drvdata()`. */
export function devGetDrvdata<T = unknown>(dev: Device): T | undefined {
  return mmState(dev.machine).devs.get(dev.id)?.drvdata as T | undefined;
}

const DEVM_KMALLOC = 'devm_kmalloc';
registerDevresRelease<{ va: number }>(DEVM_KMALLOC, (dev, d) => kfree(dev.machine, d.va));

/** `devm_kmalloc()`: kmalloc freed automatically at unbind. */
export function devmKmalloc(dev: Device, size: number, gfp: Gfp): KernelVa | null {
  const m = dev.machine;
  return apiCall(m, 'devm_kmalloc', () => {
    const va = kmalloc(m, size, gfp);
    if (va !== null && size > 0) devresAdd(dev, DEVM_KMALLOC, { va });
    return va;
  });
}

/** `devm_kzalloc()`. */
export function devmKzalloc(dev: Device, size: number, gfp: Gfp): KernelVa | null {
  return devmKmalloc(dev, size, gfp | __GFP_ZERO);
}

/** `devm_kfree()`: frees a devm_kmalloc allocation now; a pointer it does not know is a WARN. */
export function devmKfree(dev: Device, va: KernelVa | number): void {
  const m = dev.machine;
  apiCall(m, 'devm_kfree', () => {
    const r = devresRelease<{ va: number }>(dev, DEVM_KMALLOC, (d) => d.va === va);
    if (r !== 0) {
      reportFinding(
        m,
        WARN.code,
        `devm_kfree: ${dev.name} has no devm_kmalloc allocation at ${formatHex(va)}`,
        {
          device: dev.name,
          details: { va },
        },
      );
    }
  });
}
