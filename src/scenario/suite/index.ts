/**
 * The seed suite: the scenario files of scenarios/ (embedded) and the
 * built-in TypeScript scenarios, in the catalogue's order
 * (scenarios/README.md).
 */

import { DmalabError } from '../../machine/index.js';
import { parseScenario } from '../parse.js';
import { builtinScenario } from '../run.js';
import type { Scenario } from '../types.js';
import { SCENARIO_FILES } from './files.js';
import './seed000.js';
import './seed001.js';
import './seed002.js';
import './seed003.js';
import './seed004.js';

/** Catalogue order: seed thread first, then the order of scenarios/README.md. */
export const CATALOGUE: readonly string[] = [
  'sound-ring-mmap-remap',
  'sound-ring-mmap-fault',
  'sound-ring-mmap-congruent',
  'sound-ring-mmap-coherence-index',
  'sound-ring-mmap-refuse',
  'via-sg-buffer-nopage',
  'via-sg-buffer-dma-pgprot',
  'pageless-dma-to-pmem',
  'pageless-dma-to-pmem-ci-user',
  'pageless-dma-to-ioremap',
  'sg-rx-read-before-sync',
  'sg-rx-sync-for-cpu',
  'sg-page-list-cpu-iterator',
  'sg-page-list-dma-iterator',
  'gpu-virt-to-phys',
  'gpu-refuses-without-coherence',
  'gpu-require-coherent',
  'display-low-1g-green-frame',
  'rdma-user-mr-noncoherent',
  'dmabuf-mmap-write-unbracketed',
  'dmabuf-mmap-write-bracketed',
  'dmabuf-two-driver-table',
  'dmabuf-two-driver-exclusive',
  'dmabuf-fence-implicit-ordered',
  'dmabuf-fence-implicit-missing',
  'dmabuf-fence-explicit-sync-file',
  'bo-migrate-under-mapping',
  'bo-migrate-stale-pte',
];

let cache: readonly Scenario[] | null = null;

/** The seed suite and other built-in scenarios, in catalogue order. */
export function builtinScenarios(): readonly Scenario[] {
  if (cache !== null) return cache;
  const byName = new Map<string, Scenario>();
  for (const f of SCENARIO_FILES) {
    const s = parseScenario(f.path, f.text);
    byName.set(s.name, s);
  }
  const out = CATALOGUE.map((name) => {
    const s = byName.get(name) ?? builtinScenario(name);
    if (s === undefined) throw new DmalabError(`the catalogue names '${name}', which is not in the suite`);
    return s;
  });
  const uncatalogued = [...byName.keys()].filter((n) => !CATALOGUE.includes(n));
  if (uncatalogued.length > 0) {
    throw new DmalabError(`scenario files missing from the catalogue: ${uncatalogued.join(', ')}`);
  }
  cache = out;
  return out;
}
