/**
 * dmalab: an executable model of the Linux kernel's DMA and device-memory
 * subsystem. Everything a user needs is exported from here, with the
 * kernel's names in camelCase.
 */

export * from './bo/index.js';
export { createMachine, type MachineOptions, resolveOptions, runOnProfiles } from './boot.js';
export * from './debug/index.js';
export * from './dma/index.js';
export * from './dmabuf/index.js';
export * from './lib/index.js';
export * from './machine/index.js';
export * from './mm/index.js';
export * from './scenario/index.js';
