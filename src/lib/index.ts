/**
 * The kernel library layer's public face (the kernel's lib/): scatterlists.
 * It builds on the machine layer only.
 */

export * from './scatterlist/index.js';
