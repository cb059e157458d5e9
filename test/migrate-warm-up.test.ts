// A migration's destination warming up V8 before it answers "ready" (issue 7, src/migration/warm-up.ts): a scratch
// machine boots the VM's kernel on RAM of its own for a CPU budget while the source's guest runs on; the migration
// then goes as before, and a source that gives up meanwhile keeps its guest running. Soft-engine Machines in this
// process, the counter guest (test/support/counter-guest.ts) as both the migrating VM and the scratch kernel.
import test from 'node:test';
import assert from 'node:assert/strict';
import { counterPair } from './support/counter-pair.ts';
import type { Machine } from '../src/vmm/machine.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { migrateMachine } from '../src/migration/source.ts';
import { receiveMigration } from '../src/migration/destination.ts';
import { warmUp, type WarmUpReport } from '../src/migration/warm-up.ts';
import { counterKernel, config, until, counterLines } from './support/counter-guest.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('warmUp boots a scratch copy of the kernel for its CPU budget; stop() ends it; a kernel missing here ends it at once', async () => {
  const cfg = config(counterKernel(0xffff), 64 * MiB);
  // (the counter guest is mostly halted, waiting for its timer: its idling ends the warm-up, or the wall time, rather
  // than the CPU)
  const r = await new Promise<WarmUpReport>((resolve) => warmUp(cfg, resolve, { ms: 150, wallMs: 3000 }));
  assert.equal(r.done, true, JSON.stringify(r));
  assert.ok((r.ms >= 150 || r.haltedMs >= 500 || r.wallMs >= 3000) && r.wallMs < 10_000 && r.instructions > 0 && r.steps > 0, JSON.stringify(r));
  // (the scratch guest's console output goes nowhere, but it is counted: the counter printed)
  assert.ok(r.consoleBytes > 0, `the scratch guest got as far as printing (${JSON.stringify(r)})`);

  let stopped: WarmUpReport | undefined;
  const w = warmUp(cfg, (x) => { stopped = x; }, { ms: 60_000 });
  await sleep(100);
  w.stop();
  assert.equal(stopped?.done, false, 'stopped before its budget');
  w.stop();

  const missing = await new Promise<WarmUpReport>((resolve) => warmUp({ ...cfg, kernel: '/nonexistent/bzImage' }, resolve, { ms: 1000 }));
  assert.equal(missing.steps, 0);
  assert.match(missing.failed ?? '', /ENOENT|no such file/i);
  const none = await new Promise<WarmUpReport>((resolve) => warmUp({ ...cfg, engine: 'kvm' }, resolve, { ms: 1000 }));
  assert.equal(none.steps, 0, 'no warm-up for a KVM guest');
});

/** The counter pair with a destination that warms up first (`warm`), its reports in `reports`. */
function pair(warm: { ms: number; wallMs: number }) {
  const reports: WarmUpReport[] = [];
  return { reports, ...counterPair((at, dio) => receiveMigration({ ...at, warmUp: warm, onWarmUp: (r) => reports.push(r) }, dio)) };
}

test('a destination that warms up first: the source\'s guest runs on meanwhile, then the VM moves with no value lost', async () => {
  const { io, src, dio, port, incoming, reports, stop } = pair({ ms: 300, wallMs: 1000 });
  let dest: Machine | undefined;
  try {
    await until(() => counterLines(io.text()).length >= 3, 20_000, 'three ticks');
    const migrated = migrateMachine(src, { host: '127.0.0.1', port: await port, downtimeMs: 50 });
    await until(() => reports.length > 0, 30_000, 'the warm-up');
    const atReady = counterLines(io.text()).length;
    dest = await incoming;
    dest.run().catch(() => {});
    const p = await migrated;
    assert.equal(p.phase, 'completed');
    assert.equal(reports.length, 1);
    assert.equal(reports[0].done, true, JSON.stringify(reports[0]));
    assert.ok(reports[0].ms >= 300 || reports[0].haltedMs >= 500 || reports[0].wallMs >= 1000, JSON.stringify(reports[0]));
    const before = counterLines(io.text());
    assert.ok(before.length >= atReady, 'the source counted on until the switch-over');
    await until(() => counterLines(dio.text()).length >= 3, 20_000, 'ticks at the destination');
    assert.equal(counterLines(dio.text())[0], before[before.length - 1] + 1, 'the counter goes on: nothing of the scratch guest reached the VM');
  } finally {
    await stop(dest);
  }
});

test('a source that gives up while the destination warms up keeps its guest running; the destination ends with nothing', async () => {
  const { io, src, port, incoming, reports, stop } = pair({ ms: 60_000, wallMs: 60_000 });
  try {
    await until(() => counterLines(io.text()).length >= 3, 20_000, 'three ticks');
    await assert.rejects(migrateMachine(src, { host: '127.0.0.1', port: await port, timeoutMs: 200 }), /no 'ready' from the destination/);
    await assert.rejects(incoming, /closed the connection/);
    assert.equal(reports.length, 1);
    assert.equal(reports[0].done, false, 'the warm-up stopped with the stream');
    assert.equal(src.paused, false);
    const n = counterLines(io.text()).length;
    await until(() => counterLines(io.text()).length >= n + 3, 20_000, 'the source counting on');
  } finally {
    await stop(undefined);
  }
});
