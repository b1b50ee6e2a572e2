/**
 * The checker's public face: attaching it (createMachine does), the finding
 * codes and the dma-debug parity table, the observed-bytes log, and the
 * renderers for text, JSON, SARIF and the profile matrix.
 */

export { attachChecker, checkerAttached, type ObservedRead, observedReads } from './checker.js';
export * from './codes.js';
export { registerInternalAgent } from './oracle.js';
