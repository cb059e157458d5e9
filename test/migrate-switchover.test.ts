// The two-phase switch-over of live migration (src/migration: "loaded", then "go"), with the link cut at each phase by
// the test-only fault points (protocol.ts FaultPoint), between two soft-engine Machines in this process running the
// counter guest: the guest never runs on both sides, and the source never resumes by itself once "go" may have left.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../src/vmm/machine.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { migrateMachine, migrationProgress, resolveSwitchover, SwitchoverUnknownError, MigrationError } from '../src/migration/source.ts';
import { receiveMigration } from '../src/migration/destination.ts';
import net from 'node:net';
import { FrameReader, jsonFrame, MIGRATION_VERSION, T_JSON, type FaultPoint } from '../src/migration/protocol.ts';
import { SNAPSHOT_VERSION } from '../src/vmm/snapshot.ts';
import { captureConsole } from './support/capture-console.ts';
import { counterKernel, config, until, counterLines, consecutive } from './support/counter-guest.ts';

function startCounter(): { m: Machine; io: ReturnType<typeof captureConsole>; running: Promise<unknown> } {
  const io = captureConsole();
  const m = new Machine(config(counterKernel(0xffff), 64 * MiB), io);
  m.loadKernel();
  return { m, io, running: m.run() };
}

function destination(fault?: FaultPoint): { port: Promise<number>; machine: Promise<Machine>; io: ReturnType<typeof captureConsole> } {
  const io = captureConsole();
  let gotPort!: (p: number) => void;
  const port = new Promise<number>((r) => { gotPort = r; });
  const machine = receiveMigration({ host: '127.0.0.1', port: 0, fault, onListening: (a) => gotPort(a.port) }, io);
  machine.catch(() => {});
  return { port, machine, io };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stop(src: ReturnType<typeof startCounter>, dest?: Machine): Promise<void> {
  src.m.requestExit({ kind: 'poweroff' });
  if (src.m.paused) src.m.resume();
  await src.running;
  src.m.close();
  dest?.close();
}

test('link cut before "loaded": the source resumes and counts on, the destination discards its copy', async () => {
  const src = startCounter();
  const dst = destination();
  try {
    await until(() => counterLines(src.io.text()).length >= 3, 20_000, 'three ticks');
    const error = await migrateMachine(src.m, { host: '127.0.0.1', port: await dst.port, downtimeMs: 50, fault: 'source:after-state' }).then(() => undefined, (e: Error) => e);
    assert.ok(error instanceof MigrationError && !(error instanceof SwitchoverUnknownError), `an ordinary failure: ${String(error)}`);
    assert.equal(migrationProgress(src.m)?.phase, 'failed');
    assert.equal(src.m.paused, false, 'the source runs again');
    await assert.rejects(dst.machine, /source closed the connection/);
    const n = counterLines(src.io.text()).length;
    await until(() => counterLines(src.io.text()).length >= n + 3, 20_000, 'the source to count on');
    consecutive(counterLines(src.io.text()), 'the source\'s counter');
  } finally {
    await stop(src);
  }
});

test('link cut after "loaded", before "go": nothing runs, the source waits paused in switch-over-unknown; resolving resumes it without a gap', async () => {
  const src = startCounter();
  const dst = destination();
  try {
    await until(() => counterLines(src.io.text()).length >= 3, 20_000, 'three ticks');
    await assert.rejects(migrateMachine(src.m, { host: '127.0.0.1', port: await dst.port, downtimeMs: 50, fault: 'source:before-go' }),
      (e: Error) => e instanceof SwitchoverUnknownError && /switch-over to 127\.0\.0\.1:\d+ unknown: the destination had loaded the VM/.test(e.message));
    assert.equal(migrationProgress(src.m)?.phase, 'switch-over-unknown');
    await assert.rejects(dst.machine, /after the state was loaded but before "go": the VM is discarded here/);
    // Paused, and it stays so: no tick printed while nobody resolves.
    assert.equal(src.m.paused, true);
    const frozen = counterLines(src.io.text()).length;
    await sleep(400);
    assert.equal(src.m.paused, true, 'never resumed by itself');
    assert.equal(counterLines(src.io.text()).length, frozen, 'the guest does not run while the switch-over is unknown');
    // No new migration over an unresolved one.
    await assert.rejects(migrateMachine(src.m, { host: '127.0.0.1', port: 1 }), /unknown switch-over: resolve it first/);

    const resolved = resolveSwitchover(src.m, true);
    assert.equal(resolved.phase, 'failed');
    assert.equal(resolved.resolution, 'resumed-here');
    assert.equal(src.m.paused, false);
    await until(() => counterLines(src.io.text()).length >= frozen + 3, 20_000, 'the source to count on');
    consecutive(counterLines(src.io.text()), 'the source\'s counter across the pause');
    assert.throws(() => resolveSwitchover(src.m, true), /no migration of this VM awaits resolution/);
  } finally {
    await stop(src);
  }
});

test('link cut after "go" arrived: the destination runs the guest, the source stays paused in switch-over-unknown until told', async () => {
  const src = startCounter();
  const dst = destination('destination:after-go');
  let dest: Machine | undefined;
  let running: Promise<unknown> | undefined;
  try {
    await until(() => counterLines(src.io.text()).length >= 3, 20_000, 'three ticks');
    await assert.rejects(migrateMachine(src.m, { host: '127.0.0.1', port: await dst.port, downtimeMs: 50 }), SwitchoverUnknownError);
    dest = await dst.machine;
    running = dest.run();
    const before = counterLines(src.io.text());
    await until(() => counterLines(dst.io.text()).length >= 3, 20_000, 'the destination to count');
    const after = counterLines(dst.io.text());
    assert.equal(after[0], before[before.length - 1] + 1, `the counter continues at the destination: ...${before.slice(-2)} then ${after.slice(0, 2)}...`);
    consecutive(after, 'the destination\'s counter');
    await sleep(300);
    assert.equal(src.m.paused, true, 'the source never resumes by itself');
    assert.equal(counterLines(src.io.text()).length, before.length, 'the source prints nothing more');
    assert.equal(migrationProgress(src.m)?.phase, 'switch-over-unknown');

    const resolved = resolveSwitchover(src.m, false);
    assert.equal(resolved.phase, 'completed');
    assert.equal(resolved.resolution, 'ended-here');
    assert.equal(src.m.paused, true);
  } finally {
    if (dest) dest.requestExit({ kind: 'poweroff' });
    await running;
    await stop(src, dest);
  }
});

for (const [old, lacks] of [[1, 'no two-phase switch-over'], [2, 'no copy-storage']] as const) test(`a peer of migration version ${old} (${lacks}) is refused with a clear error`, async () => {
  const dst = destination();
  const socket = net.connect(await dst.port, '127.0.0.1');
  const reader = new FrameReader();
  const answers: Array<Record<string, unknown>> = [];
  socket.on('data', (c: Buffer) => { for (const f of reader.push(c)) if (f.type === T_JSON) answers.push(f.message); });
  socket.on('error', () => {});
  const closed = new Promise((resolve) => socket.on('close', resolve));
  socket.write(jsonFrame({ kind: 'hello', format: 'ringzero-migration', version: old, snapshotVersion: SNAPSHOT_VERSION, ringzeroVersion: 'old', config: {}, memorySize: 0 }));
  await assert.rejects(dst.machine, new RegExp(`the source speaks migration version ${old} .*this side speaks ${MIGRATION_VERSION}`));
  await closed;
  assert.equal(answers[0]?.kind, 'error');
  assert.match(String(answers[0]?.message), new RegExp(`migration version ${old}`));
  assert.equal(MIGRATION_VERSION, 3);
});
