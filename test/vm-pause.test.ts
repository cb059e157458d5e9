// Pause/resume of a running machine on both engines (what `ringzero suspend/resume` does through the control socket),
// with the synthetic echo guest of the manager tests (it polls COM1 and echoes each byte; 'q' powers off): input
// typed while paused is not echoed until resume; the vCPU threads are reported for pinning; an exit requested while
// paused still ends the run.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Machine } from '../src/vmm/machine.ts';
import { controlRequest } from '../src/vmm/control.ts';
import type { ConsoleIo, EngineKind } from '../src/vmm/config.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { guestKernel, tempDir, waitFor } from './support/manager-harness.ts';

const kvmHost = detectKvm();

function console_(): ConsoleIo & { text(): string; type(s: string): void } {
  const chunks: Buffer[] = [];
  let receiver: ((data: Uint8Array) => void) | undefined;
  return {
    write: (data) => { chunks.push(Buffer.from(data)); },
    onInput: (r) => { receiver = r; return () => { receiver = undefined; }; },
    text: () => Buffer.concat(chunks).toString('latin1'),
    type: (s) => receiver?.(Buffer.from(s, 'latin1')),
  };
}

for (const engine of ['soft', 'kvm'] as const satisfies readonly EngineKind[]) {
  test(`${engine}: pause holds the vCPU (no echo), resume continues, threads reported, exit while paused`, {
    skip: engine === 'kvm' && kvmHost.verdict === 'none' ? `no usable KVM: ${kvmHost.reason}` : false,
    timeout: 60_000,
  }, async () => {
    const dir = tempDir('pause');
    const io = console_();
    const ctl = path.join(dir, 'ctl');
    const m = new Machine({ engine, kernel: guestKernel(dir, 'echo'), cmdline: 'console=ttyS0', cpus: 1, memory: 64 * MiB, onReboot: 'exit', controlSocket: ctl }, io);
    try {
      m.loadKernel();
      const run = m.run();
      await waitFor('the banner', () => io.text().includes('ready\n'), 30_000);
      io.type('a');
      await waitFor('the echo of a', () => io.text().endsWith('a'), 10_000);

      assert.deepEqual(await controlRequest(ctl, { cmd: 'pause' }), { ok: true, paused: true });
      const status = await controlRequest(ctl, { cmd: 'status' });
      assert.equal(status.paused, true);
      assert.equal(status.engine, engine);
      const threads = status.vcpuThreads as number[];
      assert.equal(threads.length, 1);
      assert.ok(fs.existsSync(`/proc/${process.pid}/task/${threads[0]}`), `vCPU thread ${threads[0]} is a thread of this process`);
      io.type('b');
      await new Promise((resolve) => setTimeout(resolve, 700));
      assert.ok(!io.text().endsWith('b'), 'a paused guest echoed its input');

      assert.deepEqual(await controlRequest(ctl, { cmd: 'resume' }), { ok: true, paused: false });
      await waitFor('the echo of b after resume', () => io.text().endsWith('b'), 10_000);

      // An exit asked for while paused (destroy-like: the machine's own exit path) ends the run.
      await controlRequest(ctl, { cmd: 'pause' });
      m.requestExit({ kind: 'poweroff' });
      assert.deepEqual(await run, { kind: 'poweroff' });
    } finally {
      m.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
