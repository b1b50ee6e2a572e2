/**
 * The checker's public face: attaching it (createMachine does), the finding
 * codes and the dma-debug parity table, the observed-bytes log, and the
 * renderers for text, JSON, SARIF and the profile matrix.
 */

export { attachChecker, checkerAttached, type ObservedRead, observedReads } from './checker.js';
export * from './codes.js';
export {
  firstDivergence,
  type MatrixOptions,
  type ProfileRow,
  type ProfilesResult,
  renderMatrix,
  renderProfiles,
  type TableCell,
  textTable,
} from './matrix.js';
export { registerInternalAgent } from './oracle.js';
export { DMABUF_UNORDERED } from './ordering.js';
export { findingData, type JsonOptions, renderFindingsJson, stableStringify } from './render/json.js';
export { renderFindingsSarif, renderSarifRuns } from './render/sarif.js';
export { renderFindingsText, type TextOptions, verdictText } from './render/text.js';
