/**
 * Finding codes the mm layer raises besides the machine's own (BUG, WARN,
 * OOPS, SIGSEGV, SIGBUS).
 */

import { formatHex, type Machine, registerFindingCode, reportFinding } from '../machine/index.js';

/** A CPU access went through a stale PTE to a frame that is no longer allocated. */
export const USE_AFTER_FREE = registerFindingCode({
  code: 'USE_AFTER_FREE',
  severity: 'error',
  verdict: 'broken',
  title: 'an access through a stale PTE reached a frame that was freed while still mapped',
  layer: 'mm',
});

/** A fault that never resolves: the CPU would retry the access forever. */
export const FAULT_LIVELOCK = registerFindingCode({
  code: 'FAULT_LIVELOCK',
  severity: 'error',
  verdict: 'broken',
  title: 'a page fault never resolves (the handler reports success without installing a PTE)',
  layer: 'mm',
});

/** A page fault ran out of memory and the OOM killer killed the process. */
export const OOM_KILL = registerFindingCode({
  code: 'OOM_KILL',
  severity: 'error',
  verdict: 'broken',
  title: 'a page fault ran out of memory and the process was OOM-killed',
  layer: 'mm',
});

/**
 * Reports an access through a stale PTE to a freed frame. The access still
 * happens (hardware does not know the frame was freed); the bytes belong to
 * whoever has the frame now.
 */
export function reportUseAfterFree(
  m: Machine,
  owner: string,
  pid: number,
  va: number,
  pfn: number,
  write: boolean,
): void {
  const who = pid < 0 ? owner : `${owner}[${pid}]`;
  reportFinding(
    m,
    USE_AFTER_FREE.code,
    `use-after-free: ${who} ${write ? 'wrote' : 'read'} ${formatHex(va)} through a stale PTE to frame ${formatHex(pfn)}, which was freed while still mapped`,
    { details: { pid, va, pfn, write } },
  );
}
