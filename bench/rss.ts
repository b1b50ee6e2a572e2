// Child process of machine.bench.ts: touches 1 GiB of a 64 GiB machine and prints RSS in MiB.
import { createMachine } from '../src/boot.js';
import { addDevice, deviceDmaWrite } from '../src/machine/index.js';

const MiB = 1024 * 1024;
const m = createMachine({ ramBytes: 64 * 1024 * MiB, check: false });
const dev = addDevice(m, { name: 'filler', dmaMaskBits: 64 });
const chunk = new Uint8Array(MiB).fill(1);
for (let i = 0; i < 1024; i++) deviceDmaWrite(dev, 8 * 1024 * MiB + i * MiB, chunk);
(globalThis as { gc?: () => void }).gc?.();
process.stdout.write(`${(process.memoryUsage().rss / MiB).toFixed(1)}\n`);
