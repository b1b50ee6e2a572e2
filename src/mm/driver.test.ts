import { afterEach, describe, expect, it } from 'vitest';
import { findings, machine } from '../../test/mm-kit.js';
import { addDevice, type Device, GFP_KERNEL, pageIsAllocated, virtToPage } from '../machine/index.js';
import {
  BUS_NOTIFY_BIND_DRIVER,
  BUS_NOTIFY_BOUND_DRIVER,
  BUS_NOTIFY_DRIVER_NOT_BOUND,
  BUS_NOTIFY_UNBIND_DRIVER,
  BUS_NOTIFY_UNBOUND_DRIVER,
} from './consts.js';
import {
  bindDriver,
  devGetDrvdata,
  deviceDriverName,
  devmKfree,
  devmKzalloc,
  devresAdd,
  devresList,
  devresRelease,
  devresRemove,
  devSetDrvdata,
  registerBusNotifier,
  registerDevresRelease,
  registerDriver,
  unbindDriver,
} from './driver.js';
import { kernelRead } from './kaccess.js';

const trace: string[] = [];
registerDevresRelease<{ n: number }>('test-res', (dev, d) => trace.push(`release ${dev.name} ${d.n}`));
const NAMES: Record<number, string> = {
  [BUS_NOTIFY_BIND_DRIVER]: 'BIND',
  [BUS_NOTIFY_BOUND_DRIVER]: 'BOUND',
  [BUS_NOTIFY_UNBIND_DRIVER]: 'UNBIND',
  [BUS_NOTIFY_UNBOUND_DRIVER]: 'UNBOUND',
  [BUS_NOTIFY_DRIVER_NOT_BOUND]: 'NOT_BOUND',
};
let off: (() => void) | null = null;
afterEach(() => {
  off?.();
  trace.length = 0;
});

describe('the driver core', () => {
  it('probes on bind; on unbind runs remove, releases devres newest first, then UNBOUND_DRIVER', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'cam0' });
    off = registerBusNotifier((action, d, drv) =>
      trace.push(`${NAMES[action]} ${d.name} ${drv} bound=${deviceDriverName(d)}`),
    );
    const drv = registerDriver(m, {
      name: 'camdrv',
      probe(d: Device) {
        trace.push(`probe ${deviceDriverName(d)}`);
        devresAdd(d, 'test-res', { n: 1 });
        devresAdd(d, 'test-res', { n: 2 });
        devSetDrvdata(d, { frames: 0 });
        return 0;
      },
      remove(d: Device) {
        trace.push(`remove ${JSON.stringify(devGetDrvdata(d))}`);
      },
    });
    expect(bindDriver(dev, drv)).toBe(0);
    expect(bindDriver(dev, drv)).toBe(-16);
    expect(deviceDriverName(dev)).toBe('camdrv');
    expect(devresList(dev)).toEqual([
      { kind: 'test-res', data: { n: 1 } },
      { kind: 'test-res', data: { n: 2 } },
    ]);
    unbindDriver(dev);
    unbindDriver(dev);
    expect(trace).toEqual([
      'BIND cam0 camdrv bound=null',
      'probe camdrv',
      'BOUND cam0 camdrv bound=camdrv',
      'UNBIND cam0 camdrv bound=camdrv',
      'remove {"frames":0}',
      'release cam0 2',
      'release cam0 1',
      'UNBOUND cam0 camdrv bound=null',
    ]);
    expect(devGetDrvdata(dev)).toBeUndefined();
  });

  it('releases what a failed probe took and leaves the device unbound', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'nic0' });
    off = registerBusNotifier((action, d) => trace.push(`${NAMES[action]} ${d.name}`));
    const drv = registerDriver(m, {
      name: 'nicdrv',
      probe(d) {
        devresAdd(d, 'test-res', { n: 7 });
        return -19;
      },
    });
    expect(bindDriver(dev, drv)).toBe(-19);
    expect(deviceDriverName(dev)).toBeNull();
    expect(trace).toEqual(['BIND nic0', 'release nic0 7', 'NOT_BOUND nic0']);
    expect(() => registerDriver(m, { name: 'nicdrv', probe: () => 0 })).toThrow(/already registered/);
  });

  it('removes devres entries by match (null when none matches) and releases one on request', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'd' });
    devresAdd(dev, 'test-res', { n: 1 });
    devresAdd(dev, 'test-res', { n: 2 });
    devresAdd(dev, 'test-res', { n: 1 });
    expect(devresRemove<{ n: number }>(dev, 'test-res', (d) => d.n === 3)).toBeNull();
    expect(devresRemove<{ n: number }>(dev, 'test-res', (d) => d.n === 1)).toEqual({ n: 1 });
    expect(devresRelease<{ n: number }>(dev, 'test-res', (d) => d.n === 2)).toBe(0);
    expect(devresRelease<{ n: number }>(dev, 'test-res', (d) => d.n === 2)).toBe(-2);
    expect(devresList(dev)).toEqual([{ kind: 'test-res', data: { n: 1 } }]);
    expect(trace).toEqual(['release d 2']);
    expect(() => devresAdd(dev, 'nope', {})).toThrow(/no registered release/);
    expect(() => devresAdd(dev, 'test-res', { dev })).toThrow(/Device instance cannot be stored/);
    expect(() => devSetDrvdata(dev, () => 1)).toThrow(/a function cannot be stored/);
  });

  it('frees devm_kzalloc memory at unbind, and devm_kfree early', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'snd0' });
    let a = 0;
    let b = 0;
    const drv = registerDriver(m, {
      name: 'snddrv',
      probe(d) {
        a = devmKzalloc(d, 4096, GFP_KERNEL)!;
        b = devmKzalloc(d, 4096, GFP_KERNEL)!;
        return 0;
      },
    });
    bindDriver(dev, drv);
    expect(kernelRead(m, a, 4)).toEqual(new Uint8Array(4));
    devmKfree(dev, b);
    expect(pageIsAllocated(m, virtToPage(b))).toBe(false);
    devmKfree(dev, b);
    unbindDriver(dev);
    expect(pageIsAllocated(m, virtToPage(a))).toBe(false);
    expect(findings(m)).toEqual([
      `WARN: devm_kfree: snd0 has no devm_kmalloc allocation at 0x${b.toString(16)}`,
    ]);
  });
});
