// Diff snapshots from the soft engine's dirty-page log: a full snapshot, then diffs holding only the pages written
// since the previous snapshot; restoring a diff applies its chain over the full base, and the restored RAM is
// byte for byte the RAM at the instant of the diff.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Machine } from '../src/vmm/machine.ts';
import { MiB, GuestMemory } from '../src/memory/guest-memory.ts';
import { readSnapshot, decodePageBitmap, STATE_FILE, SnapshotError } from '../src/vmm/snapshot.ts';
import { snapshotMachine } from '../src/vmm/snapshot-diff.ts';
import { captureConsole } from './support/capture-console.ts';
import { tmpDir, counterKernel, config, until, counterLines, stopMachine } from './support/counter-guest.ts';
import { ControlServer, controlRequest } from '../src/vmm/control.ts';

/** Bytes of the file that are allocated on disk (a sparse diff holds few). */
function allocated(file: string): number {
  return fs.statSync(file).blocks * 512;
}

test('the dirty-page log: device writes and CPU stores are logged, harvest re-arms, stop ends it', () => {
  const mem = new GuestMemory(64 * MiB);
  try {
    mem.startDirtyLog();
    mem.write(0x5000, new Uint8Array(10));
    mem.noteExternalWrite(0x8ff0, 0x20); // straddles two pages
    const pages = mem.harvestDirtyLog();
    assert.deepEqual([...pages.keys()].filter((p) => pages[p]), [5, 8, 9]);
    assert.equal(mem.harvestDirtyLog().some((b) => b !== 0), false, 'harvest leaves a clean log');
    mem.stopDirtyLog();
    mem.write(0x5000, new Uint8Array(1));
    assert.equal(mem.dirtyLog, undefined);
  } finally {
    mem.close();
  }
  const big = new GuestMemory(4 * 1024 * MiB);
  try {
    assert.throws(() => big.startDirtyLog(), /RAM below the PCI hole only/);
  } finally {
    big.close();
  }
});

test('full, diff, diff: each diff holds the written pages only and restores to the exact RAM and counter', async () => {
  const dir = tmpDir();
  const io = captureConsole();
  const m = new Machine(config(counterKernel(0x60), 64 * MiB), io);
  m.loadKernel();
  const running = m.run();
  const shots: { dir: string; last: number; ram: Buffer }[] = [];
  try {
    await assert.rejects(snapshotMachine(m, path.join(dir, 'early'), { diff: true }), /needs a base: take a full snapshot/);
    for (const [i, at] of [10, 20, 30].entries()) {
      await until(() => counterLines(io.text()).length >= at, 20_000, `the counter to reach ${at}`);
      await m.pause();
      const target = path.join(dir, `s${i}`);
      await snapshotMachine(m, target, { diff: i > 0 });
      const lines = counterLines(io.text());
      shots.push({ dir: target, last: lines[lines.length - 1], ram: Buffer.from(m.mem.low) });
      m.resume();
    }
    m.requestExit({ kind: 'error', message: 'stopped after the snapshots' });
    await running;
  } finally {
    m.close();
  }

  const [full, d1, d2] = shots;
  const b1 = readSnapshot(d1.dir).body;
  assert.equal(b1.memory.base?.dir, full.dir);
  const pages = decodePageBitmap(b1.memory.pages!, 64 * MiB / 4096);
  const dirty = pages.reduce((n, b) => n + b, 0);
  assert.ok(dirty > 0 && dirty < 64, `the counter guest dirties a few pages between snapshots (${dirty})`);
  assert.ok(allocated(path.join(d1.dir, 'memory')) < allocated(path.join(full.dir, 'memory')) / 4, 'a diff is much smaller than the full image');
  assert.equal(readSnapshot(d2.dir).diffs.length, 2, 'the second diff chains over the first');

  for (const shot of [d1, d2, full]) {
    const io2 = captureConsole();
    const r = Machine.restore(shot.dir, io2);
    try {
      assert.ok(Buffer.compare(Buffer.from(r.mem.low), shot.ram) === 0, `restored RAM of ${path.basename(shot.dir)} is the RAM at its instant`);
      const exit = await r.run();
      assert.deepEqual(exit, { kind: 'poweroff' });
      assert.equal(counterLines(io2.text())[0], shot.last + 1, `${path.basename(shot.dir)} continues the counter`);
    } finally {
      r.close();
    }
  }

  // A base replaced after the diff was taken: the diff is refused, never applied over the wrong memory.
  const state = JSON.parse(fs.readFileSync(path.join(full.dir, STATE_FILE), 'utf8'));
  state.body.header.createdAt = 'another instant';
  const zlib = await import('node:zlib');
  state.crc32 = zlib.crc32(JSON.stringify({ format: state.format, version: state.version, body: state.body })).toString(16).padStart(8, '0');
  fs.writeFileSync(path.join(full.dir, STATE_FILE), JSON.stringify(state));
  assert.throws(() => Machine.restore(d2.dir, captureConsole()), (e: unknown) => e instanceof SnapshotError && /base .* was replaced since the diff was taken/.test(e.message));
  fs.rmSync(full.dir, { recursive: true });
  assert.throws(() => Machine.restore(d1.dir, captureConsole()), /its base .* cannot be used: .*is not a snapshot/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the control socket takes {"cmd":"snapshot","diff":true}', async () => {
  const dir = tmpDir();
  const io = captureConsole();
  const m = new Machine(config(counterKernel(0x60), 64 * MiB), io);
  const control = new ControlServer(path.join(dir, 'ctl'), { vm: m }, () => {});
  m.loadKernel();
  const running = m.run();
  try {
    await control.listening();
    await until(() => counterLines(io.text()).length >= 3, 20_000, 'three ticks');
    const early = await controlRequest(control.path, { cmd: 'snapshot', dir: path.join(dir, 'x'), diff: true });
    assert.equal(early.ok, false);
    assert.match(String(early.error), /needs a base/);
    assert.equal((await controlRequest(control.path, { cmd: 'snapshot', dir: path.join(dir, 'full') }, 30_000)).ok, true);
    await until(() => counterLines(io.text()).length >= 6, 20_000, 'six ticks');
    const diff = await controlRequest(control.path, { cmd: 'snapshot', dir: path.join(dir, 'diff'), diff: true }, 30_000);
    assert.deepEqual(diff, { ok: true, dir: path.join(dir, 'diff'), diff: true });
    assert.equal((await controlRequest(control.path, { cmd: 'snapshot', dir: path.join(dir, 'y'), diff: 'yes' })).ok, false);
  } finally {
    await stopMachine(m, running, () => control.close());
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
