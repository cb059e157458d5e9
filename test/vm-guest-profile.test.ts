// The guest profile (`ringzero run --profile-guest FILE [--kallsyms FILE]`, src/vmm/guest-profile.ts): the soft
// engine's run loop samples RIP at the end of every full slice, so the samples split between two guest loops in
// proportion to the instructions each one executes, and kallsyms-style symbols name them.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { GuestProfile, parseKallsyms, hexAddress } from '../src/vmm/guest-profile.ts';
import { SLICE } from '../src/vmm/machine.ts';
import { writeTinyKernel } from './support/guest.ts';

const run = promisify(execFile);
const BIN = path.join(import.meta.dirname, '..', 'bin', 'ringzero');

/*
 * The guest (as --64, objcopy -O binary), entered at payload offset 0x200 (linear 0x1000200: the kernel is loaded at
 * 16 MiB, its preferred address, identity-mapped):
 *   _start: mov ecx, 3000000
 *   loop_a: dec ecx; jnz loop_a            # 6M instructions
 *           mov ecx, 1000000
 *   loop_b: dec ecx; jnz loop_b            # 2M instructions
 *           mov dx, 0x604; mov ax, 0x3400; out dx, ax     # ACPI PM1a_CNT: SLP_TYP=5 | SLP_EN: power off
 *   halt:   hlt; jmp halt
 */
const GUEST_HEX = 'b9c0c62d00ffc975fcb940420f00ffc975fc66ba040666b8003466eff4ebfd';
const KALLSYMS = [
  '0000000001000200 T _start',
  '0000000001000205 t loop_a',
  '0000000001000209 t between',
  '000000000100020e t loop_b',
  '0000000001000212 t finish',
  'ffffffff81000000 T _text',
  'ffffffff81000010 D not_text',
].join('\n');

function workDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rz-profile-'));
}

test('kallsyms: text symbols only, sorted, kernel addresses as signed numbers', () => {
  const symbols = parseKallsyms(`${KALLSYMS}\nnot a line\n`);
  assert.deepEqual(symbols.map((s) => s.name), ['_text', '_start', 'loop_a', 'between', 'loop_b', 'finish']);
  assert.equal(symbols[0].address, -0x7f000000);
  assert.equal(hexAddress(symbols[0].address), 'ffffffff81000000');
});

test('report: samples by symbol, user addresses never given a kernel symbol', () => {
  const p = new GuestProfile(1000);
  for (let i = 0; i < 3; i++) p.record(-0x7f000000 + 5); // _text+5
  p.record(0x400000); // a user address above every low symbol here: the last low symbol would claim it
  const symbols = parseKallsyms('ffffffff81000000 T _text\n');
  const r = p.report(symbols);
  assert.equal(r.samples, 4);
  assert.deepEqual(r.top.map((e) => [e.where, e.samples]), [['_text', 3], ['low/user 0x400000', 1]]);
  assert.deepEqual(r.addresses[0], ['ffffffff81000005', 3]);
});

test('run --profile-guest: samples split between two loops as their instruction counts (3:1)', async () => {
  const dir = workDir();
  try {
    const kernel = writeTinyKernel(path.join(dir, 'guest.bzImage'), GUEST_HEX);
    fs.writeFileSync(path.join(dir, 'kallsyms'), KALLSYMS);
    const out = path.join(dir, 'profile.json');
    const { stderr } = await run(process.execPath, [BIN, 'run', '--engine', 'soft', '--kernel', kernel, '--memory', '64M',
      '--cmdline', 'console=ttyS0', '--profile-guest', out, '--kallsyms', path.join(dir, 'kallsyms')], { timeout: 120_000 });
    assert.match(stderr, /guest profile: \d+ samples, one per 20000 instructions/);
    const report = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(report.every, SLICE);
    const by = new Map<string, number>(report.top.map((e: { where: string; samples: number }) => [e.where, e.samples]));
    const a = by.get('loop_a') ?? 0, b = by.get('loop_b') ?? 0;
    // 8M instructions in 20000-instruction slices: ~300 samples in loop_a and ~100 in loop_b (a slice may also end
    // early at a timer or halt, which takes no sample).
    assert.ok(a >= 250 && a <= 310, `loop_a: ${a} samples`);
    assert.ok(b >= 80 && b <= 110, `loop_b: ${b} samples`);
    assert.ok(a + b >= report.samples - 2, `samples outside the loops: ${JSON.stringify(report.top)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('run --profile-guest: bad combinations are usage errors', async () => {
  const dir = workDir();
  try {
    await assert.rejects(run(process.execPath, [BIN, 'run', '--kallsyms', path.join(dir, 'k')]),
      (e: { stderr: string }) => /--kallsyms names the symbols of --profile-guest/.test(e.stderr));
    fs.writeFileSync(path.join(dir, 'empty'), 'nothing here\n');
    const payload = new Uint8Array(4096).fill(0xf4);
    fs.writeFileSync(path.join(dir, 'k.bzImage'), makeBzImage({ payload }));
    await assert.rejects(run(process.execPath, [BIN, 'run', '--engine', 'soft', '--kernel', path.join(dir, 'k.bzImage'),
      '--profile-guest', path.join(dir, 'p.json'), '--kallsyms', path.join(dir, 'empty')]),
      (e: { stderr: string }) => /holds no text symbols/.test(e.stderr));
    assert.equal(fs.existsSync(path.join(dir, 'p.json')), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the control socket\'s guest-profile: the samples since the last request, then none while paused; an error without a profile', async () => {
  const { Machine } = await import('../src/vmm/machine.ts');
  const { ControlServer, controlRequest } = await import('../src/vmm/control.ts');
  const { MiB } = await import('../src/memory/guest-memory.ts');
  const { captureConsole } = await import('./support/capture-console.ts');
  const { config, until, stopMachine } = await import('./support/counter-guest.ts');
  const dir = workDir();
  const io = captureConsole();
  const profile = new GuestProfile(SLICE);
  // (a guest that spins: `jmp $`, so every slice ends at its budget and takes a sample)
  const m = new Machine(config(writeTinyKernel(path.join(dir, 'spin.bzImage'), 'ebfe'), 64 * MiB), io, { profile });
  const control = new ControlServer(path.join(dir, 'ctl'), { vm: m }, () => {});
  m.loadKernel();
  const running = m.run();
  try {
    await control.listening();
    await until(() => profile.samples >= 5, 20_000, 'five samples');
    assert.equal((await controlRequest(control.path, { cmd: 'pause' }, 30_000)).ok, true);
    const first = await controlRequest(control.path, { cmd: 'guest-profile' }) as { ok: boolean; samples: number; every: number; addresses: [string, number][] };
    assert.equal(first.ok, true);
    assert.equal(first.every, SLICE);
    assert.ok(first.samples >= 5, 'samples of the run so far');
    assert.equal(first.addresses.reduce((n, [, k]) => n + k, 0), first.samples);
    assert.deepEqual(first.addresses.map(([a]) => a), ['1000200'], 'all at the loop (payload entry, linear 0x1000200)');
    const again = await controlRequest(control.path, { cmd: 'guest-profile' }) as { samples: number; addresses: unknown[] };
    assert.equal(again.samples, 0, 'forgotten once taken, and none taken while paused');
    assert.deepEqual(again.addresses, []);
    const plain = new ControlServer(path.join(dir, 'ctl2'), { vm: { requestShutdown: () => false, snapshot: async () => undefined } }, () => {});
    try {
      await plain.listening();
      const none = await controlRequest(plain.path, { cmd: 'guest-profile' });
      assert.equal(none.ok, false);
      assert.match(String(none.error), /no guest profile/);
    } finally {
      plain.close();
    }
  } finally {
    await stopMachine(m, running, () => control.close());
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
