// The soft engine's run loop when every vCPU is halted (issue 6: idle guests must cost next to nothing): it sleeps
// until the earliest VM-clock deadline or a kick, with no periodic wakeup of its own, and a timer armed from outside
// the loop while it sleeps (a device answering host I/O) still fires on time. The guest is a synthetic bzImage whose
// 64-bit entry is HLT with interrupts off (the boot protocol's RFLAGS), so nothing but the host can wake it.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { Machine } from '../src/vmm/machine.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { captureConsole } from './support/capture-console.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('soft: a halted guest with no timer armed costs no wakeup; a timer armed from the host while it sleeps fires on time', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-idle-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const kernel = path.join(dir, 'hlt.bzImage');
  fs.writeFileSync(kernel, makeBzImage({ payload: new Uint8Array(4096).fill(0xf4) })); // hlt; hlt; ...
  const m = new Machine({ engine: 'soft', kernel, cmdline: '', cpus: 1, memory: 64 * MiB, onReboot: 'exit' }, captureConsole());
  t.after(() => m.close());
  m.loadKernel();
  const running = m.run();
  try {
    await sleep(300);
    const before = m.stats().halts;
    assert.ok(before >= 1, 'the vCPU halted and the loop slept');
    await sleep(2300);
    assert.equal(m.stats().halts - before, 0, 'no wakeup in 2.3 s with nothing armed (the loop used to poll every second)');

    let firedAt = 0;
    const timer = m.clock.createTimer(() => { firedAt = performance.now(); });
    const armedAt = performance.now();
    m.clock.arm(timer, m.clock.now() + 50e6);
    for (let k = 0; k < 100 && firedAt === 0; k++) await sleep(10);
    assert.ok(firedAt > 0, 'the timer fired');
    assert.ok(firedAt - armedAt >= 45 && firedAt - armedAt < 400, `fired ${(firedAt - armedAt).toFixed(0)} ms after being armed for 50 ms`);
    // The arm wakes the loop to re-plan, then the deadline does (a Node timer may fire a little early and sleep
    // once more): a few wakeups, and none after.
    await sleep(50);
    const after = m.stats().halts;
    assert.ok(after - before >= 1 && after - before <= 4, `${after - before} wakeups for one timer`);
    await sleep(1200);
    assert.equal(m.stats().halts, after, 'asleep again, for good');
  } finally {
    m.requestExit({ kind: 'poweroff' });
    const exit = await running;
    assert.equal(exit.kind, 'poweroff', 'the exit request woke the sleeping loop');
  }
});
