// Snapshots, diff snapshots and live migration of a Machine on the KVM engine, in the format both engines share: a
// small long-mode guest program computes (a rotate/xor chain), stores into 1024 pages of RAM, reports progress on the
// debug console port and its result at the end, then powers off. Paused mid-run on one engine and continued on the
// same one or the other (through a snapshot directory or a live migration over loopback TCP), it must print exactly
// what an uninterrupted run prints and leave exactly the same memory. On kvm_pvm the program runs through KVM's
// instruction emulator (a few µs per iteration): the runs are sized for that. Skipped without a usable /dev/kvm.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { Machine, type MachineExit } from '../src/vmm/machine.ts';
import type { ConsoleIo, VmConfig, EngineKind } from '../src/vmm/config.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { readSnapshot, SnapshotError, STATE_FILE, SNAPSHOT_VERSION, decodePageBitmap } from '../src/vmm/snapshot.ts';
import { snapshotMachine } from '../src/vmm/snapshot-diff.ts';
import { migrateMachine, migrationProgress, type MigrationProgress } from '../src/migration/source.ts';
import { receiveMigration } from '../src/migration/destination.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { stopMachine } from './support/counter-guest.ts';

const host = detectKvm();
const skip = host.verdict === 'none' ? `no usable KVM: ${host.reason}` : false;

/*
 * The guest (GNU as --64, ld -Ttext=0 --oformat binary), position-independent, entered at payload offset 0x200:
 *         mov n(%rip),%ecx; xor %eax,%eax; xor %ebx,%ebx
 *   loop: add %rcx,%rax; rol $7,%rbx; xor %rax,%rbx
 *         mov %ecx,%edx; and $0x3ff,%edx; shl $12,%edx; mov %rbx,0x800000(%rdx)    # page (rcx & 1023) of 8 MiB..12 MiB
 *         test $0xfff,%ecx; jnz 1f
 *         mov %rax,%r8; mov %ebx,%eax; and $15,%eax; add $0x61,%eax; out %al,$0xe9; mov %r8,%rax   # 'a' + (rbx & 15)
 *   1:    dec %rcx; jnz loop
 *         lea hex(%rip),%rdi; mov $16,%esi
 *   2:    rol $4,%rbx; mov %ebx,%eax; and $15,%eax; mov (%rdi,%rax),%al; out %al,$0xe9; dec %esi; jnz 2b
 *         mov $0x0a,%al; out %al,$0xe9
 *         mov $0x604,%dx; mov $0x3400,%ax; out %ax,%dx                                # PM1a_CNT: SLP_TYP 5 | SLP_EN
 *   3:    hlt; jmp 3b
 *   hex:  "0123456789abcdef"    n: .long (iterations, patched at N_OFFSET)
 */
const GUEST_HEX = '8b0d7c00000031c031db4801c848c1c3074831c389ca81e2ff030000c1e20c48899a00008000f7c1ff0f000075104989c089d883e00f'
  + '83c061e6e94c89c048ffc975c7488d3d28000000be1000000048c1c30489d883e00f8a0407e6e9ffce75eeb00ae6e966ba040666b8003466ef'
  + 'f4ebfd30313233343536373839616263646566400d0300';
const ENTRY = 0x200;
const N_OFFSET = 0x82;
const BUF = 0x800000;
const SLOTS = 1024;

interface Expected { text: string; slots: bigint[] }

/** What an uninterrupted run of `n` iterations prints and leaves in its 1024 pages. */
function expected(n: number): Expected {
  const M = (1n << 64n) - 1n;
  let rax = 0n, rbx = 0n;
  let text = '';
  const slots: bigint[] = new Array(SLOTS).fill(0n);
  for (let i = n; i > 0; i--) {
    rax = (rax + BigInt(i)) & M;
    rbx = (((rbx << 7n) | (rbx >> 57n)) & M) ^ rax;
    slots[i & (SLOTS - 1)] = rbx;
    if ((i & 0xfff) === 0) text += String.fromCharCode(0x61 + Number(rbx & 15n));
  }
  return { text: text + rbx.toString(16).padStart(16, '0') + '\n', slots };
}

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-kvm-snap-'));
  dirs.push(d);
  return d;
}
test.after(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

function kernel(n: number): string {
  const code = Buffer.from(GUEST_HEX, 'hex');
  code.writeUInt32LE(n, N_OFFSET);
  const payload = new Uint8Array(4096);
  payload.set(code, ENTRY);
  const file = path.join(tmpDir(), 'loop.bzImage');
  fs.writeFileSync(file, makeBzImage({ payload }));
  return file;
}

function config(engine: EngineKind, n: number): VmConfig {
  return { engine, kernel: kernel(n), cmdline: 'console=ttyS0', cpus: 1, memory: 64 * MiB, onReboot: 'exit' };
}

/** A console that keeps the output and calls `at` once when it reaches `chars` characters. */
function console(): ConsoleIo & { text(): string; when(chars: number, at: () => void): void } {
  let text = '';
  let trigger: { chars: number; at: () => void } | undefined;
  return {
    write: (data) => {
      text += Buffer.from(data).toString('latin1');
      if (trigger && text.length >= trigger.chars) { const t = trigger; trigger = undefined; t.at(); }
    },
    onInput: () => () => {},
    text: () => text,
    when: (chars, at) => { trigger = { chars, at }; },
  };
}

/** Resolve once `io` has printed `chars` characters, with the machine paused right then. */
function pauseAt(m: Machine, io: ReturnType<typeof console>, chars: number): Promise<void> {
  return new Promise((resolve, reject) => io.when(chars, () => { m.pause().then(resolve, reject); }));
}

/** Run to the end with a watchdog (kvm_pvm is slow, but not this slow). */
async function finish(m: Machine, running?: Promise<MachineExit>): Promise<MachineExit> {
  const watchdog = setTimeout(() => m.requestExit({ kind: 'error', message: 'watchdog: the guest did not finish' }), 90_000);
  try {
    return await (running ?? m.run());
  } finally {
    clearTimeout(watchdog);
  }
}

function slotsOf(m: Machine): bigint[] {
  const bytes = Buffer.from(m.mem.read(BUF, SLOTS * 4096));
  return Array.from({ length: SLOTS }, (_, s) => bytes.readBigUInt64LE(s * 4096));
}

function assertResult(m: Machine, before: string, after: string, want: Expected, what: string): void {
  assert.ok(before.length > 0 && before.length < want.text.length - 17, `${what}: paused mid-run (${before.length} characters printed)`);
  assert.equal(before + after, want.text, `${what}: the output continues exactly`);
  assert.deepEqual(slotsOf(m), want.slots, `${what}: memory as an uninterrupted run leaves it`);
}

/** Start `engine`'s machine, pause it once `chars` characters are out, snapshot it into a fresh directory. */
async function snapshotMidRun(engine: EngineKind, n: number, chars: number, opts: { inlineBsp?: boolean } = {}): Promise<{ dir: string; before: string; m: Machine; running: Promise<MachineExit>; io: ReturnType<typeof console> }> {
  const io = console();
  // The soft engine runs without its translator here: the console's bytes reach `io` only when the run loop turns
  // its event loop (the debug port flushes per microtask; the loop yields every 8 ms), and translated, the whole
  // program (~2M instructions) can end within one such turn, before the pause (CI at 6dd0240 saw it power off first).
  // Interpreted, it runs many turns past the pause point. (Which path runs it does not matter to the snapshot.)
  const m = new Machine(engine === 'soft' ? { ...config(engine, n), translate: false } : config(engine, n), io, { kvmInlineBsp: opts.inlineBsp });
  m.loadKernel();
  const paused = pauseAt(m, io, chars);
  const running = m.run();
  await Promise.race([paused, running.then((e) => { throw new Error(`the guest ended before the pause: ${JSON.stringify(e)}`); })]);
  const before = io.text();
  const dir = path.join(tmpDir(), 'snap');
  await m.snapshot(dir);
  assert.ok(m.paused, 'a paused machine stays paused through its snapshot');
  assert.equal(io.text(), before, 'nothing ran while paused');
  return { dir, before, m, running, io };
}

/**
 * Run `m` (kernel loaded) until `paused` settles (it pauses the machine), snapshot it into a fresh directory
 * `name`, then end it; returns the directory and the console text up to the pause.
 */
async function snapshotThenStop(m: Machine, io: ReturnType<typeof console>, paused: () => Promise<void>, name: string): Promise<{ dir: string; before: string }> {
  const running = m.run();
  const dir = path.join(tmpDir(), name);
  try {
    await paused();
    const before = io.text();
    await m.snapshot(dir);
    return { dir, before };
  } finally {
    await stopMachine(m, running);
  }
}

const N = 160_000;

test('KVM -> KVM: a snapshot taken mid-run restores into a fresh Machine, which finishes exactly as an uninterrupted run; the original finishes too', { skip }, async () => {
  const want = expected(N);
  const { dir, before, m, running, io } = await snapshotMidRun('kvm', N, 4);
  const body = readSnapshot(dir).body;
  assert.equal(body.header.engine, 'kvm');
  assert.ok(body.devices.kvm?.irqchip && body.devices.kvm.pit, 'KVM\'s in-kernel device structs saved');
  assert.ok(body.devices.pic && body.devices.ioapic && body.devices.pit, 'and their soft-engine forms');
  assert.equal(body.vcpus[0].mpState, 'runnable');
  // The original was only paused: it goes on and ends as if nothing happened.
  m.resume();
  try {
    assert.deepEqual(await finish(m, running), { kind: 'poweroff' });
    assertResult(m, before, io.text().slice(before.length), want, 'the original');
  } finally {
    m.close();
  }

  // Wall time passes; guest time must resume from the saved instant (kvm-clock and the VmClock together).
  await new Promise((r) => setTimeout(r, 300));
  const io2 = console();
  const r = Machine.restore(dir, io2, { kvmInlineBsp: false }); // the vCPU on a worker this time
  try {
    assert.equal(r.config.engine, 'kvm', 'restores on the engine it was saved on');
    await r.pause();
    const runAt = performance.now();
    const run = r.run();
    for (let i = 0; i < 500 && !r.kvmCpus; i++) await new Promise((res) => setTimeout(res, 10));
    const kvmClock = Number(r.kvmCpus!.engine.vm.getClock().clock);
    const vmClock = r.clock.now();
    // (run() loads kvm-clock and resumes the VmClock at two instants while it creates the KVM VM, and each clock
    // runs on from its own: they can drift apart by at most the wall time since run() began, which host load can
    // stretch past any fixed bound: 78 ms at load ~18)
    const sinceRunNs = (performance.now() - runAt) * 1e6;
    assert.ok(Math.abs(kvmClock - body.guestTimeNs) < 200e6 + sinceRunNs, `kvm-clock continues from the saved ${body.guestTimeNs} ns, not from host time (${kvmClock})`);
    assert.ok(Math.abs(kvmClock - vmClock) < sinceRunNs + 20e6, `kvm-clock (${kvmClock}) and the VmClock (${vmClock}) agree (${(sinceRunNs / 1e6).toFixed(0)} ms since run())`);
    r.resume();
    assert.deepEqual(await finish(r, run), { kind: 'poweroff' });
    assertResult(r, before, io2.text(), want, 'the restored VM');
  } finally {
    r.close();
  }

  // A damaged or foreign KVM snapshot is refused before anything is built.
  const text = fs.readFileSync(path.join(dir, STATE_FILE), 'utf8');
  const damaged = path.join(tmpDir(), 'damaged');
  fs.cpSync(dir, damaged, { recursive: true });
  const at = text.indexOf('"rip":"0x') + 9;
  fs.writeFileSync(path.join(damaged, STATE_FILE), text.slice(0, at) + (text[at] === '1' ? '2' : '1') + text.slice(at + 1));
  assert.throws(() => Machine.restore(damaged, console()), (e: unknown) => e instanceof SnapshotError && /damaged: checksum mismatch/.test(e.message));
  const other = path.join(tmpDir(), 'other');
  fs.cpSync(dir, other, { recursive: true });
  const state = JSON.parse(text);
  state.version = SNAPSHOT_VERSION - 1;
  const zlib = await import('node:zlib');
  state.crc32 = zlib.crc32(JSON.stringify({ format: state.format, version: state.version, body: state.body })).toString(16).padStart(8, '0');
  fs.writeFileSync(path.join(other, STATE_FILE), JSON.stringify(state));
  assert.throws(() => Machine.restore(other, console()), (e: unknown) => e instanceof SnapshotError && /format version \d+ .*reads version \d+ only/.test(e.message));
});

test('KVM -> soft and soft -> KVM through the snapshot directory: the other engine finishes the run exactly', { skip }, async () => {
  const want = expected(N);
  const k = await snapshotMidRun('kvm', N, 3);
  await stopMachine(k.m, k.running);
  const io = console();
  const soft = Machine.restore(k.dir, io, { engine: 'soft' });
  try {
    assert.equal(soft.config.engine, 'soft');
    assert.deepEqual(await finish(soft), { kind: 'poweroff' });
    assertResult(soft, k.before, io.text(), want, 'KVM -> soft');
  } finally {
    soft.close();
  }

  const s = await snapshotMidRun('soft', N, 3);
  await stopMachine(s.m, s.running);
  assert.equal(readSnapshot(s.dir).body.devices.kvm, undefined);
  const io2 = console();
  const kvm = Machine.restore(s.dir, io2, { engine: 'kvm' });
  try {
    assert.equal(kvm.config.engine, 'kvm');
    assert.deepEqual(await finish(kvm), { kind: 'poweroff' });
    assertResult(kvm, s.before, io2.text(), want, 'soft -> KVM');
  } finally {
    kvm.close();
  }
});

test('a diff snapshot on KVM (from KVM\'s dirty log) restores byte-identical RAM and finishes exactly', { skip }, async () => {
  const want = expected(N);
  const io = console();
  const m = new Machine(config('kvm', N), io);
  m.loadKernel();
  let paused = pauseAt(m, io, 2);
  const running = m.run();
  const root = tmpDir();
  try {
    await paused;
    await snapshotMachine(m, path.join(root, 'full'));
    paused = pauseAt(m, io, 8);
    m.resume();
    await paused;
    const diffDir = path.join(root, 'diff');
    await snapshotMachine(m, diffDir, { diff: true });
    const before = io.text();
    const diff = readSnapshot(diffDir);
    assert.equal(diff.diffs.length, 1, 'a diff over the full snapshot');
    const pages = decodePageBitmap(diff.body.memory.pages!, m.mem.pageCount);
    const count = pages.reduce((a, b) => a + b, 0);
    // The guest wrote all 1024 of its pages since the full snapshot; the diff holds those and little else.
    for (let s = 0; s < SLOTS; s++) assert.equal(pages[BUF / 4096 + s], 1, `page ${s} of the guest's buffer is in the diff`);
    assert.ok(count < 2 * SLOTS, `the diff holds ${count} of ${m.mem.pageCount} pages`);

    const r = Machine.restore(diffDir, console());
    try {
      assert.ok(Buffer.compare(Buffer.from(r.mem.low), Buffer.from(m.mem.low)) === 0, 'the restored RAM is the paused VM\'s, byte for byte');
    } finally {
      r.close();
    }
    m.requestExit({ kind: 'error', message: 'stopped after the diff' });
    await running;

    const io2 = console();
    const again = Machine.restore(diffDir, io2);
    try {
      assert.deepEqual(await finish(again), { kind: 'poweroff' });
      assertResult(again, before, io2.text(), want, 'restored from the diff');
    } finally {
      again.close();
    }
  } finally {
    await stopMachine(m, running);
  }
});

for (const destEngine of ['kvm', 'soft'] as const) {
  test(`live migration of a KVM guest over loopback TCP to a ${destEngine} destination: RAM arrives intact, the run finishes exactly`, { skip }, async () => {
    const n = 400_000;
    const want = expected(n);
    const io = console();
    // The source's vCPU on a worker for one, on the main thread for the other (the pre-copy shares that thread).
    const m = new Machine(config('kvm', n), io, { kvmInlineBsp: destEngine === 'soft' });
    m.loadKernel();
    const running = m.run();
    const dio = console();
    let gotPort!: (p: number) => void;
    const port = new Promise<number>((r) => { gotPort = r; });
    const incoming = receiveMigration({ host: '127.0.0.1', port: 0, engine: destEngine, onListening: (a) => gotPort(a.port) }, dio);
    incoming.catch(() => {});
    let dest: Machine | undefined;
    try {
      await new Promise<void>((resolve) => io.when(2, resolve));
      // The guest must run during the pre-copy: it prints more between the first report of the pre-copy and the
      // stop-and-copy's pause. Not left to the pre-copy's length in wall time (on a loaded host the guest may get no
      // CPU in that second): the stop-and-copy's pause waits until the guest has printed again (the pre-copy is over
      // then, the guest still running). A migration that stopped the guest earlier fails by the deadline.
      let atStart = -1;
      const pause = m.pause.bind(m);
      m.pause = async () => {
        if (migrationProgress(m)?.phase === 'stop-and-copy') {
          const deadline = Date.now() + 30_000;
          while (!(atStart >= 0 && io.text().length > atStart)) {
            assert.ok(Date.now() < deadline, `the guest printed nothing during the pre-copy in 30 s (${atStart} -> ${io.text().length} characters)`);
            await new Promise((r) => setTimeout(r, 5));
          }
        }
        return pause();
      };
      const onProgress = (p: MigrationProgress) => { if (atStart < 0 && p.phase === 'precopy') atStart = io.text().length; };
      // verifyMemory: the destination checks a SHA-256 of all RAM against the source's at the pause, so a page the
      // dirty log missed fails the migration. The guest rewrites its 1024 pages every few milliseconds: at 8 MiB/s the
      // full pass takes about half a second of guest run time, and each dirty round (4 MiB) fits the 2 s limit.
      const result = await migrateMachine(m, { host: '127.0.0.1', port: await port, verifyMemory: true, bandwidth: 8 * MiB, downtimeMs: 2000 }, onProgress);
      assert.equal(result.phase, 'completed');
      assert.ok(result.iteration >= 1 && result.pagesSent > 2 * SLOTS, `${result.iteration} dirty rounds, ${result.pagesSent} pages sent`);
      dest = await incoming;
      assert.equal(dest.config.engine, destEngine);
      assert.ok(m.paused, 'the source stays paused after the switch-over');
      const before = io.text();
      assert.ok(before.length > atStart, `the guest ran during the pre-copy (${atStart} -> ${before.length} characters)`);
      m.requestExit({ kind: 'poweroff' });
      await running;
      assert.deepEqual(await finish(dest), { kind: 'poweroff' });
      assertResult(dest, before, dio.text(), want, `KVM -> ${destEngine} migration`);
    } finally {
      await stopMachine(m, running);
      dest?.close();
    }
  });
}

for (const from of ['kvm', 'soft'] as const) {
  test(`interrupts across the switch: the counter guest (timer IRQ0 through the 8254 and 8259: KVM's in-kernel ones or the soft engine's) snapshotted on ${from} counts on without a gap, on KVM and on the soft engine`, { skip }, async () => {
    const { counterKernel, counterLines, until } = await import('./support/counter-guest.ts');
    const cfg: VmConfig = { engine: from, kernel: counterKernel(0x30), cmdline: 'console=ttyS0', cpus: 1, memory: 64 * MiB, onReboot: 'exit' };
    const io = console();
    const m = new Machine(cfg, io);
    m.loadKernel();
    // The console text, not its parsed lines, is what continues: a pause may fall between the digits of a line.
    const { dir, before } = await snapshotThenStop(m, io, async () => {
      await until(() => counterLines(io.text()).length >= 8, 20_000, `the counter to reach 8 on ${from}`);
      await m.pause();
    }, 'counter');
    assert.deepEqual(counterLines(before), counterLines(before).map((_, i) => i + 1), `${from} counted from 1`);
    for (const engine of ['kvm', 'soft'] as const) {
      const io2 = console();
      const r = Machine.restore(dir, io2, { engine });
      try {
        const exit = await finish(r);
        assert.deepEqual(exit, { kind: 'poweroff' }, `${from} -> ${engine}: ${JSON.stringify(exit)} after ${JSON.stringify(io2.text())}`);
        assert.deepEqual(counterLines(before + io2.text()), Array.from({ length: 0x30 }, (_, i) => i + 1), `${from} -> ${engine}: no gap, no repeat`);
      } finally {
        r.close();
      }
    }
  });
}

test('two vCPUs on KVM (the AP waiting for its startup IPI): the snapshot restores on KVM and on the soft engine, which finish the run', { skip }, async () => {
  const n = 60_000;
  const want = expected(n);
  const io = console();
  const m = new Machine({ ...config('kvm', n), cpus: 2 }, io);
  m.loadKernel();
  const paused = pauseAt(m, io, 3);
  const { dir, before } = await snapshotThenStop(m, io, () => paused, 'smp');
  const body = readSnapshot(dir).body;
  assert.deepEqual(body.vcpus.map((v) => v.mpState), ['runnable', 'wait-for-sipi']);
  for (const engine of ['kvm', 'soft'] as const) {
    const io2 = console();
    const r = Machine.restore(dir, io2, { engine });
    try {
      assert.deepEqual(await finish(r), { kind: 'poweroff' });
      assertResult(r, before, io2.text(), want, `2 vCPUs, KVM -> ${engine}`);
    } finally {
      r.close();
    }
  }
});

test('a 2 GiB KVM guest restores on KVM from the mapped memory file: RAM is not read in, the snapshot stays untouched', { skip }, async () => {
  const n = 40_000;
  const want = expected(n);
  const io = console();
  const m = new Machine({ ...config('kvm', n), memory: 2048 * MiB }, io);
  m.loadKernel();
  const paused = pauseAt(m, io, 2);
  const { dir, before } = await snapshotThenStop(m, io, () => paused, 'big');
  for (let round = 0; round < 2; round++) {
    const rss = process.memoryUsage().rss;
    const io2 = console();
    const r = Machine.restore(dir, io2);
    try {
      assert.equal(r.mem.privateFile, true, 'guest RAM is the snapshot file mapped copy-on-write');
      await r.pause();
      const run = r.run();
      for (let i = 0; i < 500 && !r.kvmCpus; i++) await new Promise((res) => setTimeout(res, 10));
      const grew = process.memoryUsage().rss - rss;
      assert.ok(grew < 256 * MiB, `restoring into the KVM VM made the process ${(grew / MiB).toFixed(0)} MiB bigger`);
      r.resume();
      assert.deepEqual(await finish(r, run), { kind: 'poweroff' });
      // The second round restores the same snapshot again: the first run's writes went to private copies.
      assertResult(r, before, io2.text(), want, `restore ${round + 1} of the 2 GiB snapshot`);
    } finally {
      r.close();
    }
  }
});

test('KVM across VMM processes (src/vmm/snapshot-run.ts): SIGUSR2 snapshots and ends the first, a fresh process restores and finishes exactly', { skip }, async () => {
  const { spawn } = await import('node:child_process');
  const n = 160_000;
  const want = expected(n);
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
  const work = tmpDir();
  const cfgFile = path.join(work, 'vm.json');
  fs.writeFileSync(cfgFile, JSON.stringify(config('kvm', n)));
  const dir = path.join(work, 'snap');
  function vmm(args: string[]): { out: () => string; done: Promise<number>; kill: () => void; child: ReturnType<typeof spawn> } {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/vmm/snapshot-run.ts'), ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: root });
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => { out += c.toString('latin1'); });
    child.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
    const done = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 90_000);
    void done.then(() => clearTimeout(watchdog));
    return { out: () => out, done: done.then((c) => { if (c !== 0) process.stderr.write(err); return c; }), kill: () => child.kill('SIGKILL'), child };
  }
  const first = vmm(['boot', cfgFile, dir]);
  try {
    const end = Date.now() + 60_000;
    while (first.out().length < 3) {
      assert.ok(Date.now() < end, 'the first VMM printed nothing');
      await new Promise((r) => setTimeout(r, 5));
    }
    first.child.kill('SIGUSR2');
    assert.equal(await first.done, 0);
  } finally {
    first.kill();
  }
  const before = first.out();
  assert.ok(before.length >= 3 && before.length < want.text.length - 17, `snapshotted mid-run (${JSON.stringify(before)})`);
  const second = vmm(['restore', dir]);
  try {
    assert.equal(await second.done, 0);
  } finally {
    second.kill();
  }
  assert.equal(before + second.out(), want.text, 'the second process continues exactly where the first stopped');
});

/*
 * A guest that reads a device: n times `in $0xe0,%al`, folding each byte into rbx (add, rol $5), progress on 0xe9 every
 * 256 reads, then rbx in hex and poweroff (same assembly conventions as the loop guest above; n at offset 0x69).
 */
const IN_GUEST_HEX = '8b0d6300000031dbe4e00fb6c04801c348c1c305f7c1ff000000750a89d883e00f83c061e6e9ffc975de488d3d28000000be1000000048c1'
  + 'c30489d883e00f8a0407e6e9ffce75eeb00ae6e966ba040666b8003466eff4ebfd30313233343536373839616263646566b80b0000';
const IN_N_OFFSET = 0x69;
const IN_PORT = 0xe0;
/** The k-th read of the device (k from 0). */
const deviceByte = (k: number) => (k * 7 + 3) & 0xff;

function expectedIn(n: number): string {
  const M = (1n << 64n) - 1n;
  let rbx = 0n;
  let text = '';
  for (let i = n, k = 0; i > 0; i--, k++) {
    rbx = (rbx + BigInt(deviceByte(k))) & M;
    rbx = ((rbx << 5n) | (rbx >> 59n)) & M;
    if ((i & 0xff) === 0) text += String.fromCharCode(0x61 + Number(rbx & 15n));
  }
  return text + rbx.toString(16).padStart(16, '0') + '\n';
}

/** The device: answers reads with deviceByte(k), k counting from `from`; `onRead(k)` sees each read. */
function inDevice(m: Machine, from: number, onRead?: (k: number) => void): { reads: () => number } {
  let k = from;
  m.ports.register(IN_PORT, 1, { ioRead: () => { const v = deviceByte(k); onRead?.(k); k++; return v; }, ioWrite: () => {} }, 'test counter');
  return { reads: () => k };
}

test('a vCPU paused right after a port read (KVM_EXIT_IO in) is saved with the read completed: the restored guest does not read again', { skip }, async () => {
  const n = 3000;
  const code = Buffer.from(IN_GUEST_HEX, 'hex');
  code.writeUInt32LE(n, IN_N_OFFSET);
  const payload = new Uint8Array(4096);
  payload.set(code, ENTRY);
  const kernelFile = path.join(tmpDir(), 'in.bzImage');
  fs.writeFileSync(kernelFile, makeBzImage({ payload }));
  const cfg: VmConfig = { engine: 'kvm', kernel: kernelFile, cmdline: 'console=ttyS0', cpus: 1, memory: 64 * MiB, onReboot: 'exit' };
  for (const inlineBsp of [true, false]) {
    const io = console();
    const m = new Machine(cfg, io, { kvmInlineBsp: inlineBsp });
    m.loadKernel();
    // Pause from inside the 1000th read: the exit is handled, and the vCPU stops before it re-enters KVM_RUN.
    let paused!: Promise<void>;
    const reached = new Promise<void>((resolve) => {
      inDevice(m, 0, (k) => { if (k === 999) { paused = m.pause(); resolve(); } });
    });
    const { dir, before } = await snapshotThenStop(m, io, async () => { await reached; await paused; }, 'in-snap');
    for (const engine of ['kvm', 'soft'] as const) {
      const io2 = console();
      const r = Machine.restore(dir, io2, { engine, kvmInlineBsp: inlineBsp });
      const dev = inDevice(r, 1000);
      try {
        assert.deepEqual(await finish(r), { kind: 'poweroff' });
        assert.equal(dev.reads(), n, `${inlineBsp ? 'inline' : 'worker'} -> ${engine}: the device was read ${n} times in all`);
        assert.equal(before + io2.text(), expectedIn(n), `${inlineBsp ? 'inline' : 'worker'} -> ${engine}: the guest got every byte once`);
      } finally {
        r.close();
      }
    }
  }
});

test('a KVM machine with a virtio device: the restored KVM VM wires the restored BAR to its ioeventfd, and the run finishes exactly', { skip }, async () => {
  const n = 60_000;
  const want = expected(n);
  const io = console();
  const m = new Machine({ ...config('kvm', n), rng: true }, io, { kvmInlineBsp: false });
  m.loadKernel();
  // Place the rng's register BAR and enable it, as a guest's PCI code would (the loop guest itself does not).
  const slot = [...Array(32).keys()].find((s) => m.pci.configRead(0, s, 0, 0, 2) === 0x1af4)!;
  m.pci.configWrite(0, slot, 0, 0x10, 4, 0xc000_0000);
  m.pci.configWrite(0, slot, 0, 0x04, 2, 0x6);
  const paused = pauseAt(m, io, 3);
  const { dir, before } = await snapshotThenStop(m, io, () => paused, 'virtio');
  const io2 = console();
  const r = Machine.restore(dir, io2, { kvmInlineBsp: false });
  try {
    assert.equal((r.pci.configRead(0, slot, 0, 0x10, 4) & ~0xf) >>> 0, 0xc000_0000, 'the BAR restored');
    await r.pause();
    const run = r.run();
    for (let i = 0; i < 500 && !r.kvmCpus; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(r.kvmCpus?.accel?.stats.ioeventfds, 1, 'the rng queue\'s notify register has its ioeventfd in the new KVM VM');
    r.resume();
    assert.deepEqual(await finish(r, run), { kind: 'poweroff' });
    assertResult(r, before, io2.text(), want, 'with virtio-rng');
  } finally {
    r.close();
  }
});

test('live migration of the counter guest (timer interrupts from KVM\'s in-kernel 8254/8259) KVM -> KVM: the counter goes on without a gap or a repeat', { skip }, async () => {
  const { counterKernel, counterLines, until } = await import('./support/counter-guest.ts');
  const cfg: VmConfig = { engine: 'kvm', kernel: counterKernel(0x40), cmdline: 'console=ttyS0', cpus: 1, memory: 64 * MiB, onReboot: 'exit' };
  const io = console();
  const m = new Machine(cfg, io, { kvmInlineBsp: false });
  m.loadKernel();
  const running = m.run();
  const dio = console();
  let gotPort!: (p: number) => void;
  const port = new Promise<number>((r) => { gotPort = r; });
  const incoming = receiveMigration({ host: '127.0.0.1', port: 0, onListening: (a) => gotPort(a.port) }, dio);
  incoming.catch(() => {});
  let dest: Machine | undefined;
  try {
    await until(() => counterLines(io.text()).length >= 5, 20_000, 'five ticks on KVM');
    const result = await migrateMachine(m, { host: '127.0.0.1', port: await port, verifyMemory: true });
    assert.equal(result.phase, 'completed');
    dest = await incoming;
    assert.equal(dest.config.engine, 'kvm', 'the destination runs the engine the VM definition names');
    // The console text, not its parsed lines, is what continues: the switch may fall between the digits of a line.
    const before = io.text();
    m.requestExit({ kind: 'poweroff' });
    await running;
    assert.deepEqual(await finish(dest), { kind: 'poweroff' });
    assert.deepEqual(counterLines(before + dio.text()), Array.from({ length: 0x40 }, (_, i) => i + 1), 'no gap, no repeat');
  } finally {
    await stopMachine(m, running);
    dest?.close();
  }
});

test('KVM\'s dirty log covers RAM above 4 GiB: the guest\'s buffer remapped there, a diff snapshot carries its pages and restores byte-identical', { skip }, async () => {
  const want = expected(N);
  const GiB4 = 4 * 1024 * MiB;
  const io = console();
  const m = new Machine({ ...config('kvm', N), memory: 3 * 1024 * MiB + 64 * MiB }, io);
  m.loadKernel();
  // The boot page tables map the first GiB with 2 MiB pages in the PD at 0xb000: point the guest's buffer (virtual
  // 8-12 MiB, PD entries 4 and 5) at guest-physical 4 GiB instead, the start of the high RAM slot.
  const pd = Buffer.from(m.mem.slice(0xb000, 4096));
  assert.equal(pd.readBigUInt64LE(8 * 4), BigInt(BUF) | 0x83n, 'identity mapping with 2 MiB pages as expected');
  const entries = Buffer.alloc(16);
  entries.writeBigUInt64LE(BigInt(GiB4) | 0x83n, 0);
  entries.writeBigUInt64LE(BigInt(GiB4 + 2 * MiB) | 0x83n, 8);
  m.mem.write(0xb000 + 8 * 4, entries);
  let paused = pauseAt(m, io, 2);
  const running = m.run();
  const root = tmpDir();
  const highSlots = (mm: Machine) => {
    const bytes = Buffer.from(mm.mem.read(GiB4, SLOTS * 4096));
    return Array.from({ length: SLOTS }, (_, s) => bytes.readBigUInt64LE(s * 4096));
  };
  try {
    await paused;
    await snapshotMachine(m, path.join(root, 'full'));
    paused = pauseAt(m, io, 6);
    m.resume();
    await paused;
    const diffDir = path.join(root, 'diff');
    await snapshotMachine(m, diffDir, { diff: true });
    const before = io.text();
    const diff = readSnapshot(diffDir);
    const pages = decodePageBitmap(diff.body.memory.pages!, m.mem.pageCount);
    const highFirst = m.mem.lowSize / 4096; // image page of guest-physical 4 GiB
    for (let s = 0; s < SLOTS; s++) assert.equal(pages[highFirst + s], 1, `high page ${s} is in the diff`);
    const r = Machine.restore(diffDir, console());
    try {
      const same = (gpa: number, len: number) => Buffer.compare(Buffer.from(r.mem.slice(gpa, len)), Buffer.from(m.mem.slice(gpa, len))) === 0;
      assert.ok(same(GiB4, 8 * MiB), 'high RAM restored byte for byte');
      assert.ok(same(0, 16 * MiB), 'low RAM restored byte for byte');
    } finally {
      r.close();
    }
    m.requestExit({ kind: 'error', message: 'stopped after the diff' });
    await running;
    const io2 = console();
    const again = Machine.restore(diffDir, io2);
    try {
      assert.deepEqual(await finish(again), { kind: 'poweroff' });
      assert.equal(before + io2.text(), want.text, 'the output continues exactly');
      assert.deepEqual(highSlots(again), want.slots, 'the buffer above 4 GiB as an uninterrupted run leaves it');
    } finally {
      again.close();
    }
  } finally {
    await stopMachine(m, running);
  }
});
