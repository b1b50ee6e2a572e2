/**
 * Seed 000 ("can device drivers return non-ram via vm_ops->nopage?", 2004),
 * the VIA case: a scatter-gather sound buffer made of page-sized coherent
 * chunks, a descriptor table the chip walks, and a user mapping built page
 * by page in the fault handler — with the user's cache attribute, as the
 * 2004 driver did, or with `dma_pgprot`, as `dma_mmap_*` does today.
 */

import { dmaAllocCoherent, dmaGetSgtable, dmaPgprot } from '../../dma/index.js';
import { createSgTable, sgPage } from '../../lib/index.js';
import {
  addDevice,
  type DmaAddr,
  deviceByName,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  type KernelVa,
  type Machine,
  PAGE_SIZE,
} from '../../machine/index.js';
import {
  kernelWrite,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  registerChrdev,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
  userWrite,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_FAULT_SIGBUS,
  VM_IO,
  VM_PFNMAP,
  type VmFault,
  type VmOperationsStruct,
  vmFlagsSet,
  vmfInsertPfn,
  vmfInsertPfnProt,
} from '../../mm/index.js';
import type { RunContext } from '../runtime.js';
import { type AgentBody, wait } from '../runtime.js';
import { builtin, filled, hex } from './kit.js';

const CHUNKS = 4;
const SIZE = CHUNKS * PAGE_SIZE;

/** What the fault handler needs, as plain data in `vm_private_data`. */
interface ViaMmap {
  device: string;
  pfns: number[];
  dmaPgprot: boolean;
}

/** The fault handler: the faulting page's chunk, inserted by PFN. */
const viaVmOps: VmOperationsStruct = {
  fault(vmf: VmFault) {
    const d = vmf.vma.vmPrivateData as ViaMmap;
    const pfn = d.pfns[vmf.pgoff];
    if (pfn === undefined) return VM_FAULT_SIGBUS;
    if (!d.dmaPgprot) return vmfInsertPfn(vmf.vma, vmf.address, pfn);
    const dev = deviceByName(vmf.vma.machine, d.device)!;
    return vmfInsertPfnProt(vmf.vma, vmf.address, pfn, dmaPgprot(dev, vmf.vma.vmPageProt, 0));
  },
};

function viaCase(m: Machine, ctx: RunContext, withDmaPgprot: boolean) {
  const dev = addDevice(m, { name: 'via82xx' });
  // The buffer: one coherent allocation per page, as snd_pcm_sgbuf did; the chip gets their bus addresses.
  const chunks: { cpu: KernelVa; dma: DmaAddr; pfn: number }[] = [];
  for (let i = 0; i < CHUNKS; i++) {
    const r = dmaAllocCoherent(dev, PAGE_SIZE, GFP_KERNEL)!;
    const sgt = createSgTable();
    dmaGetSgtable(dev, sgt, r.cpuAddr, r.dmaHandle, PAGE_SIZE);
    chunks.push({ cpu: r.cpuAddr, dma: r.dmaHandle, pfn: sgPage(sgt.sgl!)! as number });
  }
  // The chip's scatter-gather descriptor table, in coherent memory too: (address, length) pairs.
  const table = dmaAllocCoherent(dev, PAGE_SIZE, GFP_KERNEL)!;
  const desc = new Uint8Array(CHUNKS * 8);
  const view = new DataView(desc.buffer);
  chunks.forEach((c, i) => {
    view.setUint32(i * 8, c.dma, true);
    view.setUint32(i * 8 + 4, PAGE_SIZE, true);
  });
  kernelWrite(m, table.cpuAddr, desc);
  registerChrdev(m, '/dev/snd/pcmC0D0p', {
    mmap(_file, vma) {
      vmFlagsSet(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
      vma.vmPrivateData = {
        device: dev.name,
        pfns: chunks.map((c) => c.pfn),
        dmaPgprot: withDmaPgprot,
      } satisfies ViaMmap;
      vma.vmOps = viaVmOps;
      return 0;
    },
  });
  const proc = spawnProcess(m, 'aplay');
  let addr = 0;
  function* aplay(): AgentBody {
    addr = sysMmap(proc, 0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(proc, '/dev/snd/pcmC0D0p'), 0);
    yield { op: `mmap(/dev/snd/pcmC0D0p, ${SIZE}) = ${hex(addr)}` };
    userRead(proc, addr + 3 * PAGE_SIZE, 4);
    yield { op: 'poll the hardware pointer in the last chunk (faults it in)' };
    userWrite(proc, addr + PAGE_SIZE, filled(256, 0x21));
    yield { op: 'write 256 bytes of samples into the second chunk' };
    yield ctx.signal('samples');
    yield wait.signal('played');
    ctx.expectBytes('the hardware pointer aplay reads', userRead(proc, addr + 3 * PAGE_SIZE, 4), 0x40);
    yield { op: 'read the hardware pointer' };
  }
  function* chip(): AgentBody {
    yield wait.signal('samples');
    const d = new DataView(deviceDmaRead(dev, table.dmaHandle, CHUNKS * 8).buffer);
    const entry = (i: number) => d.getUint32(i * 8, true);
    yield { op: 'fetch the SG descriptor table' };
    ctx.expectBytes('the samples the chip plays', deviceDmaRead(dev, entry(1), 256), 0x21);
    yield { op: `play the second chunk at ${hex(entry(1))}` };
    deviceDmaWrite(dev, entry(3), filled(4, 0x40));
    yield { op: 'write the hardware pointer into the last chunk' };
    yield ctx.signal('played');
  }
  return {
    agents: [
      { name: 'aplay', kind: 'process' as const, body: aplay() },
      { name: 'via82xx', kind: 'device' as const, body: chip() },
    ],
  };
}

builtin(
  {
    name: 'via-sg-buffer-nopage',
    intent:
      'a VIA-style SG sound buffer of coherent chunks mapped page by page in the fault handler, user attributes kept',
    seed: '000',
    expect: {
      'arm64-noncoherent': 'broken',
      parisc: 'broken',
      'parisc-pcxl': 'broken',
    },
  },
  (m, ctx) => viaCase(m, ctx, false),
);

builtin(
  {
    name: 'via-sg-buffer-dma-pgprot',
    intent:
      'the same SG sound buffer, each page inserted with the attributes dma_pgprot gives coherent memory',
    seed: '000',
    expect: { parisc: 'broken' },
  },
  (m, ctx) => viaCase(m, ctx, true),
);
