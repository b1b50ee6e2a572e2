import { describe, expect, it } from 'vitest';
import { parseScenario } from '../parse.js';
import { runScenario } from '../run.js';

/** The timeline as `time agent: op`, signals and waits between agents left out. */
function steps(r: { timeline: readonly { time: number; agent: string; op: string }[] }): string[] {
  return r.timeline.map((t) => `${t.time} ${t.agent}: ${t.op}`).filter((x) => !/: (signal|wait) /.test(x));
}

/** A one-page heap buffer two devices import; `producer` and `consumer` are the drivers' steps. */
function pipeline(producer: string, consumer: string, extra = ''): string {
  return `name: fences
intent: a producer device and a consumer device ordered by fences
profiles: [x86_64, arm64-noncoherent]
devices: [{ name: gpu, coherencyDomain: soc }, { name: disp, coherencyDomain: soc }]
buffers: [{ name: buf, kind: heap, size: 4096 }]
agents:
  - name: render
    kind: kernel
    steps:
      - dmaBufAttach: { buffer: buf, device: gpu, as: ga }
      - dmaBufMapAttachment: { attachment: ga, dir: DMA_FROM_DEVICE, as: gm }
${producer}  - name: show
    kind: kernel
    steps:
      - dmaBufAttach: { buffer: buf, device: disp, as: da }
      - dmaBufMapAttachment: { attachment: da, dir: DMA_TO_DEVICE, as: dm }
${consumer}${extra}`;
}

const PRODUCE = `      - drmSchedEntityPushJob: { mapping: gm, write: { length: 4096, fill: 0x77 }, duration: 5000, as: drawn }
      - dmaResvAddFence: { buffer: buf, fence: drawn, usage: WRITE }
      - signal: queued
`;

function run(text: string, profile = 'x86_64') {
  return runScenario(parseScenario('f.yaml', text), { profile });
}

describe('fence steps', () => {
  it('a job gated on the buffer’s WRITE fences starts when the producer’s fence signals', () => {
    const consume = `      - wait: queued
      - drmSchedEntityPushJob: { mapping: dm, read: { offset: 16, length: 64, expect: 0x77 }, duration: 1000, resv: { buffer: buf, usage: WRITE }, as: shown }
      - dmaFenceWait: { fence: shown }
`;
    for (const profile of ['x86_64', 'arm64-noncoherent']) {
      const r = run(pipeline(PRODUCE, consume), profile);
      expect(r.findings, profile).toEqual([]);
      expect(r.bytes).toEqual({ ok: true, detail: '1 byte condition(s) hold' });
      expect(r.verdict).toBe('clean');
    }
    const r = run(pipeline(PRODUCE, consume));
    expect(steps(r).slice(4)).toEqual([
      '0 render: drm_sched_entity_push_job: gpu writes 4096 × 0x77 at gm+0, 5000 ns = drawn (fence 1:1)',
      '0 render: dma_resv_add_fence(buf, drawn, DMA_RESV_USAGE_WRITE)',
      "0 show: drm_sched_entity_push_job: disp reads 64 at dm+16, 1000 ns after buf's WRITE fences = shown (fence 2:1)",
      '0 show: blocks on shown (fence 2:1)',
      '6000 show: dma_fence_wait(shown) = 0',
    ]);
  });

  it('without the dependency the consumer reads first: unordered, and the bytes it read are the old ones', () => {
    const consume = `      - wait: queued
      - drmSchedEntityPushJob: { mapping: dm, read: { length: 64, expect: 0x77 }, duration: 1000, as: shown }
      - dmaFenceWait: { fence: shown }
`;
    const r = run(pipeline(PRODUCE, consume));
    expect(r.verdict).toBe('latent');
    expect(r.findings.map((f) => f.code)).toEqual(['DMABUF_UNORDERED']);
    expect(r.bytes).toEqual({
      ok: false,
      detail: 'f.yaml:21: disp reads 64 at dm+0: expected 0x77 × 64, got 0x00 at byte 0',
    });
  });

  it('a named fence dependency orders the job too, and dma_resv_wait_timeout blocks the CPU until the writer is done', () => {
    const consume = `      - wait: queued
      - drmSchedEntityPushJob: { mapping: dm, read: { length: 64, expect: 0x77 }, duration: 1000, deps: [drawn], as: shown }
      - dmaResvAddFence: { buffer: buf, fence: shown, usage: READ }
      - dmaResvWaitTimeout: { buffer: buf, usage: READ }
`;
    const r = run(pipeline(PRODUCE, consume));
    expect(r.findings).toEqual([]);
    expect(steps(r).slice(-4)).toEqual([
      '0 show: dma_resv_add_fence(buf, shown, DMA_RESV_USAGE_READ)',
      "0 show: blocks on buf's fence 1:1",
      "5000 show: blocks on buf's fence 2:1",
      '6000 show: dma_resv_wait_timeout(buf, DMA_RESV_USAGE_READ, MAX_SCHEDULE_TIMEOUT) = MAX_SCHEDULE_TIMEOUT',
    ]);
  });

  it('a software fence gates a job until a kernel agent signals it', () => {
    const producer = `      - dmaFenceInit: { as: go }
      - drmSchedEntityPushJob: { mapping: gm, write: { length: 4096, fill: 0x77 }, duration: 100, deps: [go], as: drawn }
      - signal: queued
      - sleep: 3000
      - dmaFenceSignal: { fence: go }
      - dmaFenceWait: { fence: drawn }
`;
    const r = run(pipeline(producer, '      - wait: queued\n'));
    expect(r.findings).toEqual([]);
    expect(steps(r).filter((x) => x.includes('render'))).toEqual([
      '0 render: dma_buf_attach(buf, gpu) = ga',
      '0 render: dma_buf_map_attachment_unlocked(ga, DMA_FROM_DEVICE) = 1 DMA segment from 0x1005000',
      '0 render: dma_fence_init = go (fence 1:1)',
      '0 render: drm_sched_entity_push_job: gpu writes 4096 × 0x77 at gm+0, 100 ns after go = drawn (fence 2:1)',
      '0 render: sleep 3000 ns',
      '3000 render: dma_fence_signal(go)',
      '3000 render: blocks on drawn (fence 2:1)',
      '3100 render: dma_fence_wait(drawn) = 0',
    ]);
  });

  it('a wait on a fence nobody signals ends at the hung-task horizon with HUNG_TASK, not a hang', () => {
    const producer = `      - dmaFenceInit: { as: never }
      - dmaFenceWait: { fence: never }
`;
    const r = run(pipeline(producer, ''));
    expect(r.verdict).toBe('broken');
    expect(r.findings.map((f) => [f.code, f.message])).toEqual([
      [
        'HUNG_TASK',
        'INFO: task kernel blocked for more than 120 seconds: waiting on fence 1:1, which nothing pending on any device engine can signal',
      ],
    ]);
    expect(steps(r).slice(-2)).toEqual([
      '0 render: blocks on never (fence 1:1)',
      '120000000000 render: dma_fence_wait(never) = -ERESTARTSYS',
    ]);
    expect(r.bytes).toEqual({ ok: false, detail: 'f.yaml:13: dma_fence_wait(never) = -ERESTARTSYS' });
  });

  it('a job whose dependency never signals never runs, and its read says so', () => {
    const producer = `      - dmaFenceInit: { as: never }
      - drmSchedEntityPushJob: { mapping: gm, read: { length: 8, expect: 0 }, duration: 10, deps: [never], as: stuck }
`;
    const r = run(pipeline(producer, ''));
    expect(r.findings).toEqual([]);
    expect(r.bytes).toEqual({
      ok: false,
      detail: 'f.yaml:13: gpu reads 8 at gm+0: the job never ran (a dependency never signalled)',
    });
  });

  it('a fence another agent makes, used before that agent ran, is an error at the step', () => {
    // The producer starts only after the consumer's wait: the fence does not exist yet when it is used.
    const text = pipeline(
      `      - wait: go\n${PRODUCE}`,
      '      - dmaFenceWait: { fence: drawn }\n      - signal: go\n',
    );
    expect(() => run(text)).toThrow(
      /^f\.yaml:21:9: fence: fence 'drawn' used before the step that makes it \(wait for a signal first\)$/,
    );
  });

  it('explicit sync: a process exports the implicit fences as a sync_file, polls it, imports its own fence back', () => {
    const text = `${pipeline(PRODUCE, '')}  - name: app
    kind: process
    steps:
      - wait: queued
      - dmaBufExportSyncFile: { buffer: buf, flags: [READ], as: frameDone }
      - poll: { syncFile: frameDone }
      - dmaBufImportSyncFile: { buffer: buf, syncFile: frameDone, flags: [WRITE] }
      - signal: polled
  - name: late
    kind: kernel
    steps:
      - wait: polled
      - drmSchedEntityPushJob: { mapping: dm, read: { length: 64, expect: 0x77 }, duration: 10, deps: [frameDone], as: shown }
      - dmaFenceWait: { fence: shown }
`;
    const r = run(text);
    expect(r.findings).toEqual([]);
    expect(r.bytes).toEqual({ ok: true, detail: '1 byte condition(s) hold' });
    expect(steps(r).filter((x) => / (app|late): /.test(x))).toEqual([
      '0 app: ioctl(buf fd 3, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DMA_BUF_SYNC_READ) = 0: frameDone is fd 4',
      '0 app: blocks on frameDone (fence 1:1)',
      '5000 app: poll(frameDone fd 4, POLLIN) = POLLIN',
      '5000 app: ioctl(buf fd 3, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DMA_BUF_SYNC_WRITE, fd 4) = 0',
      '5000 late: drm_sched_entity_push_job: disp reads 64 at dm+0, 10 ns after frameDone = shown (fence 2:1)',
      '5000 late: blocks on shown (fence 2:1)',
      '5010 late: dma_fence_wait(shown) = 0',
    ]);
  });
});

describe('fence names are checked before anything runs', () => {
  const fail = (text: string): string => {
    try {
      parseScenario('bad.yaml', text);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('parsed');
  };

  it('an unknown fence, a fence used before its own agent makes it, a fence named twice', () => {
    expect(fail(pipeline(PRODUCE, '      - dmaFenceWait: { fence: nope }\n'))).toBe(
      "bad.yaml:20:32: agents[1].steps[2].dmaFenceWait.fence: no fence or sync_file named 'nope' (drmSchedEntityPushJob, dmaFenceInit or dmaBufExportSyncFile … as)",
    );
    const early = `      - dmaFenceWait: { fence: go }\n      - dmaFenceInit: { as: go }\n`;
    expect(fail(pipeline(early, ''))).toBe(
      "bad.yaml:12:32: agents[0].steps[2].dmaFenceWait.fence: 'go' is used before the step that makes it (line 13)",
    );
    expect(fail(pipeline(PRODUCE, '      - dmaFenceInit: { as: drawn }\n'))).toBe(
      "bad.yaml:20:29: agents[1].steps[2].dmaFenceInit.as: 'drawn' already names a drmSchedEntityPushJob fence (line 12)",
    );
  });

  it('a job’s fence is not signalled by a step, and a dependency must exist', () => {
    expect(fail(pipeline(PRODUCE, '      - dmaFenceSignal: { fence: drawn }\n'))).toBe(
      "bad.yaml:20:34: agents[1].steps[2].dmaFenceSignal.fence: 'drawn' is a drmSchedEntityPushJob fence: only a software fence is signalled by a step (a job's fence signals when the device completes it)",
    );
    const job = `      - drmSchedEntityPushJob: { mapping: dm, read: { length: 64 }, duration: 1, deps: [drawn, ghost], as: x }\n`;
    expect(fail(pipeline(PRODUCE, job))).toBe(
      "bad.yaml:20:96: agents[1].steps[2].drmSchedEntityPushJob.deps[1]: no fence or sync_file named 'ghost' (drmSchedEntityPushJob, dmaFenceInit or dmaBufExportSyncFile … as)",
    );
  });

  it('a job reads or writes, within its mapping, and gates on a dma-buf’s reservation object only', () => {
    const both = `      - drmSchedEntityPushJob: { mapping: dm, read: { length: 64 }, write: { length: 4, fill: 1 }, duration: 1, as: x }\n`;
    expect(fail(pipeline('', both))).toBe(
      'bad.yaml:17:32: agents[1].steps[2].drmSchedEntityPushJob: a job either writes or reads: give write or read, not both',
    );
    const past = `      - drmSchedEntityPushJob: { mapping: dm, read: { offset: 4000, length: 200 }, duration: 1, as: x }\n`;
    expect(fail(pipeline('', past))).toBe(
      "bad.yaml:17:77: agents[1].steps[2].drmSchedEntityPushJob.read.length: offset + length is 4200, past the end of 'dm' (4096 bytes)",
    );
    const resv = `      - drmSchedEntityPushJob: { mapping: dm, read: { length: 1 }, duration: 1, resv: { buffer: k, usage: WRITE }, as: x }\n`;
    const withK = pipeline('', resv).replace(
      'size: 4096 }]',
      'size: 4096 }, { name: k, kind: kmalloc, size: 64 }]',
    );
    expect(fail(withK)).toBe(
      "bad.yaml:17:97: agents[1].steps[2].drmSchedEntityPushJob.resv.buffer: 'k' is a kmalloc buffer: only a heap buffer is a dma-buf with a reservation object",
    );
    const usage = `      - dmaResvAddFence: { buffer: buf, fence: drawn, usage: SHARED }\n`;
    expect(fail(pipeline(PRODUCE, usage))).toBe(
      'bad.yaml:20:62: agents[1].steps[2].dmaResvAddFence.usage: must be one of "KERNEL" | "WRITE" | "READ" | "BOOKKEEP", got "SHARED"',
    );
  });

  it('a sync_file fd is its process’s own, and its flags are READ and/or WRITE', () => {
    const text = `${pipeline(PRODUCE, '')}  - name: a
    kind: process
    steps:
      - dmaBufExportSyncFile: { buffer: buf, flags: [READ], as: sf }
  - name: b
    kind: process
    steps:
      - poll: { syncFile: sf }
`;
    expect(fail(text)).toBe(
      "bad.yaml:27:27: agents[3].steps[0].poll.syncFile: 'sf' is an fd of agent 'a': a sync_file fd belongs to the process that made it",
    );
    expect(fail(text.replace('flags: [READ]', 'flags: []'))).toBe(
      'bad.yaml:23:53: agents[2].steps[0].dmaBufExportSyncFile.flags: must be READ, WRITE or both, each once: [READ], [WRITE], [READ, WRITE]',
    );
  });
});
