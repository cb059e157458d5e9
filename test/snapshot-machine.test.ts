// Pause, snapshot and restore of a soft-engine Machine with a tiny synthetic guest: it programs the 8259 pair and the
// 8254 (channel 0, mode 2, 100 Hz), takes the timer interrupt through its own IDT, and prints a counter on COM1 for
// every tick (4 hex digits and a newline), powering off through ACPI when the counter reaches its limit. Snapshot it
// mid-run, restore into a fresh Machine, and the counter must continue with no gap and no repeat.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Machine } from '../src/vmm/machine.ts';
import type { ConsoleIo } from '../src/vmm/config.ts';
import { MiB, GiB } from '../src/memory/guest-memory.ts';
import { readSnapshot, sealState, SnapshotError, STATE_FILE, MEMORY_FILE, SNAPSHOT_VERSION, type SnapshotBody } from '../src/vmm/snapshot.ts';
import { captureConsole } from './support/capture-console.ts';

import { tmpDir, counterKernel, config, until, counterLines, stopMachine } from './support/counter-guest.ts';

/** Run the counter guest until it printed `atLeast` lines, snapshot it into a fresh directory and stop it. */
async function snapshotCounterGuest(memory = 64 * MiB): Promise<{ dir: string; before: string; guestNs: number }> {
  const io = captureConsole();
  const m = new Machine(config(counterKernel(0x40), memory), io);
  m.loadKernel();
  const running = m.run();
  try {
    await until(() => counterLines(io.text()).length >= 10, 10_000, 'the counter to reach 10');
    const dir = path.join(tmpDir(), 'snap');
    await m.pause();
    const guestNs = m.clock.now();
    await m.snapshot(dir);
    assert.ok(m.paused, 'snapshot of a paused VM leaves it paused');
    const before = io.text();
    m.requestExit({ kind: 'error', message: 'stopped after the snapshot' });
    await running;
    assert.equal(io.text(), before, 'nothing ran after the pause');
    return { dir, before, guestNs };
  } finally {
    m.close();
  }
}

test('pause stops the vCPUs and guest time; resume continues', async () => {
  const io = captureConsole();
  const m = new Machine(config(counterKernel(0x40)), io);
  m.loadKernel();
  const running = m.run();
  try {
    await until(() => counterLines(io.text()).length >= 3, 10_000, 'three ticks');
    await m.pause();
    const text = io.text();
    const t = m.clock.now();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(io.text(), text, 'no output while paused');
    assert.equal(m.clock.now(), t, 'guest time stands still while paused');
    m.resume();
    await until(() => counterLines(io.text()).length >= counterLines(text).length + 3, 10_000, 'three more ticks');
    const lines = counterLines(io.text());
    assert.deepEqual(lines, lines.map((_, i) => i + 1));
  } finally {
    await stopMachine(m, running);
  }
});

test('snapshot mid-run, restore into a fresh Machine: the counter continues without a gap or a repeat', async () => {
  const { dir, before, guestNs } = await snapshotCounterGuest();
  const saved = counterLines(before);
  assert.ok(fs.statSync(path.join(dir, MEMORY_FILE)).size === 64 * MiB);
  // Let wall time pass: guest time must continue from the saved instant, not catch up.
  await new Promise((r) => setTimeout(r, 300));
  const io = captureConsole();
  const m = Machine.restore(dir, io);
  try {
    assert.ok(Math.abs(m.clock.now() - guestNs) < 50e6, `guest time resumes at the saved ${guestNs} ns, not ${m.clock.now()}`);
    const watchdog = setTimeout(() => m.requestExit({ kind: 'error', message: 'watchdog' }), 20_000);
    const cpuBefore = process.cpuUsage(), wallBefore = performance.now();
    const exit = await m.run();
    const used = process.cpuUsage(cpuBefore);
    const wallMs = performance.now() - wallBefore;
    clearTimeout(watchdog);
    assert.deepEqual(exit, { kind: 'poweroff' }, io.text());
    const after = counterLines(io.text());
    assert.equal(after[0], saved[saved.length - 1] + 1, 'first value after restore follows the last one before');
    assert.deepEqual([...saved, ...after], Array.from({ length: 0x40 }, (_, i) => i + 1));
    // A restored vCPU that halts between its ticks sleeps, as a booted one does (issue 6: idle guests cost next to
    // nothing): the run loop slept at most ticks, and the process used a fraction of the wall time, not all of it.
    const cpuMs = (used.user + used.system) / 1000;
    assert.ok(m.stats().halts >= after.length / 2, `the run loop slept ${m.stats().halts} times for ${after.length} ticks`);
    assert.ok(cpuMs < wallMs / 2, `the restored guest used ${cpuMs.toFixed(0)} ms of CPU in ${wallMs.toFixed(0)} ms`);
  } finally {
    m.close();
  }
  // The snapshot is untouched by the restored run (RAM is a private copy-on-write mapping), so it restores again;
  // also with the optional `warm` section (and its file) that session 15's builds wrote, which is now ignored.
  const stateFile = path.join(dir, STATE_FILE);
  const body = (JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { body: SnapshotBody }).body;
  fs.writeFileSync(path.join(dir, 'warm'), 'not a list');
  fs.writeFileSync(stateFile, JSON.stringify(sealState({ ...body, warm: { format: 1, blocks: 3, file: 'warm', crc32: '00000000' } } as SnapshotBody)));
  const io2 = captureConsole();
  const again = Machine.restore(dir, io2, { verifyMemory: true });
  try {
    const exit = await again.run();
    assert.deepEqual(exit, { kind: 'poweroff' });
    assert.equal(counterLines(io2.text())[0], saved[saved.length - 1] + 1);
  } finally {
    again.close();
  }
});

test('a damaged state file, a damaged memory image and another format version are refused with one clear error', async () => {
  const { dir } = await snapshotCounterGuest();
  const copy = (name: string) => {
    const d = path.join(tmpDir(), name);
    fs.cpSync(dir, d, { recursive: true });
    return d;
  };
  const io = captureConsole();

  const flipped = copy('flipped');
  const stateFile = path.join(flipped, STATE_FILE);
  const text = fs.readFileSync(stateFile, 'utf8');
  const at = text.indexOf('"rip":"0x') + 9;
  fs.writeFileSync(stateFile, text.slice(0, at) + (text[at] === '1' ? '2' : '1') + text.slice(at + 1));
  assert.throws(() => Machine.restore(flipped, io), (e: unknown) => e instanceof SnapshotError && /damaged: checksum mismatch/.test(e.message));

  const truncated = copy('truncated');
  fs.writeFileSync(path.join(truncated, STATE_FILE), text.slice(0, text.length / 2));
  assert.throws(() => Machine.restore(truncated, io), /damaged: state.json is not valid JSON/);

  const other = copy('other-version');
  const state = JSON.parse(text);
  state.version = SNAPSHOT_VERSION + 1;
  // A consistent file from a "future" ringzero: checksum recomputed as that version would.
  const zlib = await import('node:zlib');
  state.crc32 = zlib.crc32(JSON.stringify({ format: state.format, version: state.version, body: state.body })).toString(16).padStart(8, '0');
  fs.writeFileSync(path.join(other, STATE_FILE), JSON.stringify(state));
  assert.throws(() => Machine.restore(other, io), (e: unknown) => e instanceof SnapshotError && new RegExp(`format version ${SNAPSHOT_VERSION + 1} .*reads version ${SNAPSHOT_VERSION} only`).test(e.message));

  const shortMemory = copy('short-memory');
  fs.truncateSync(path.join(shortMemory, MEMORY_FILE), 32 * MiB);
  assert.throws(() => Machine.restore(shortMemory, io), /damaged: memory image is 33554432 bytes/);

  // The memory image is mapped without being read while its modification time is the one the state recorded; a
  // copy that kept the time is too. One written since (or copied without its time) is checked against its SHA-256.
  assert.equal(readSnapshot(dir).memoryCheck, 'unchanged');
  const kept = path.join(tmpDir(), 'kept');
  fs.cpSync(dir, kept, { recursive: true, preserveTimestamps: true });
  assert.equal(readSnapshot(kept).memoryCheck, 'unchanged');
  const plain = copy('plain');
  assert.equal(readSnapshot(plain).memoryCheck, 'digest', 'a copy with a new time is checked, and it matches');
  Machine.restore(plain, io).close();
  const badMemory = path.join(tmpDir(), 'bad-memory');
  fs.cpSync(dir, badMemory, { recursive: true, preserveTimestamps: true });
  const fd = fs.openSync(path.join(badMemory, MEMORY_FILE), 'r+');
  fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, 0x100200); // a byte of the guest's code
  fs.closeSync(fd);
  assert.throws(() => Machine.restore(badMemory, io), (e: unknown) => e instanceof SnapshotError && /damaged: the memory image does not match its SHA-256 \(it was written or copied after the snapshot/.test(e.message));
  assert.throws(() => readSnapshot(badMemory, { verifyMemory: true }), /memory image does not match its SHA-256/);
  // (a change that leaves the time as it was is found by verifyMemory only: restore --verify)
  const st = fs.statSync(path.join(dir, MEMORY_FILE));
  fs.utimesSync(path.join(badMemory, MEMORY_FILE), st.atime, st.mtime);
  assert.equal(readSnapshot(badMemory).memoryCheck, 'unchanged');
  assert.throws(() => readSnapshot(badMemory, { verifyMemory: true }), /memory image does not match its SHA-256/);

  assert.throws(() => Machine.restore(path.join(tmpDir(), 'nothing'), io), /is not a snapshot: cannot read state.json/);
});

test('restore maps the memory image instead of reading it: restoring a 2 GiB guest leaves RAM untouched', async () => {
  // Speed is for benchmarks; what this checks is the mechanism: the restored RAM is a private (copy-on-write) mapping
  // of the snapshot's memory file, and restoring does not bring its 2 GiB into this process (reading or copying it
  // would make the resident set grow by about that much).
  const { dir } = await snapshotCounterGuest(2 * GiB);
  const rssBefore = process.memoryUsage().rss;
  const m = Machine.restore(dir, captureConsole());
  try {
    const grew = process.memoryUsage().rss - rssBefore;
    assert.equal(m.mem.privateFile, true, 'guest RAM is mapped from the snapshot file');
    assert.ok(grew < 256 * MiB, `restore made the process ${(grew / MiB).toFixed(0)} MiB bigger`);
  } finally {
    m.close();
  }
});
