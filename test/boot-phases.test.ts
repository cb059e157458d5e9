// RINGZERO_BOOT_PHASES=FILE (src/vmm/boot-phases.ts): one JSON row of the engine's counters per console line, taken at
// the end of the run-loop slice that printed it; with --profile-guest, one guest profile per phase (up to each line
// that ends a boot phase).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SLICE } from '../src/vmm/machine.ts';
import { writeTinyKernel } from './support/guest.ts';

const run = promisify(execFile);
const BIN = path.join(import.meta.dirname, '..', 'bin', 'ringzero');

/*
 * The guest (as --64, objcopy -O binary), entered at payload offset 0x200:
 *   _start: mov ecx, 1000000; a: dec ecx; jnz a         # 2M instructions
 *           lea rsi, msg1; call puts                     # "first line\n"
 *           mov ecx, 2000000; b: dec ecx; jnz b          # 4M instructions
 *           lea rsi, msg2; call puts                     # "[    0.1] Run /init as init process\n": a phase's end
 *           mov dx, 0x604; mov ax, 0x3400; out dx, ax    # ACPI power off
 *   h:      hlt; jmp h
 *   puts:   mov dx, 0x3f8; p: lodsb; test al, al; jz done; out dx, al; jmp p; done: ret
 */
const GUEST_HEX = 'b940420f00ffc975fc488d3534000000e822000000b980841e00ffc975fc488d352b000000e80d00000066ba040666b8003466eff4ebfd66baf803ac84c07403eeebf8c3' +
  Buffer.from('first line\n\0[    0.1] Run /init as init process\n\0', 'latin1').toString('hex');

test('RINGZERO_BOOT_PHASES: a row per console line with the counters there, a profile per phase', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-phases-'));
  try {
    const kernel = writeTinyKernel(path.join(dir, 'guest.bzImage'), GUEST_HEX);
    const file = path.join(dir, 'phases.jsonl');
    const { stdout } = await run(process.execPath, [BIN, 'run', '--engine', 'soft', '--kernel', kernel, '--memory', '64M',
      '--cmdline', 'console=ttyS0', '--profile-guest', path.join(dir, 'profile.json')],
    { timeout: 120_000, env: { ...process.env, RINGZERO_BOOT_PHASES: file } });
    assert.match(stdout, /first line/);
    const rows = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(rows.map((r) => r.text), ['first line', '[    0.1] Run /init as init process']);
    // 2M instructions of loop a before the first line, 4M of loop b between the lines (+ the few of the calls), each
    // row up to a slice late
    assert.ok(rows[0].instr >= 2_000_000 && rows[0].instr <= 2_000_100 + SLICE, `first row at ${rows[0].instr}`);
    const between = rows[1].instr - rows[0].instr;
    assert.ok(Math.abs(between - 4_000_000) <= SLICE + 100, `${between} instructions between the lines`);
    assert.ok(rows[1].main >= 0 && rows[1].cpu > 0 && rows[1].ms > rows[0].ms - 1);
    // only the phase's end carries every thread's CPU, and a guest profile of its phase
    assert.equal(rows[0].threads, undefined);
    assert.ok(rows[1].threads.main >= 0);
    const profile = JSON.parse(fs.readFileSync(`${file}.0.json`, 'utf8'));
    assert.ok(profile.samples >= 250 && profile.samples <= 310, `${profile.samples} samples of 20000 instructions in 6M`);
    assert.equal(fs.existsSync(`${file}.1.json`), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('RINGZERO_SLICE_LOG: one line per run-loop slice (host ms, instructions, final RIP) written at exit', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-slices-'));
  try {
    const kernel = writeTinyKernel(path.join(dir, 'guest.bzImage'), GUEST_HEX);
    const file = path.join(dir, 'slices.txt');
    await run(process.execPath, [BIN, 'run', '--engine', 'soft', '--kernel', kernel, '--memory', '64M', '--cmdline', 'console=ttyS0'],
      { timeout: 120_000, env: { ...process.env, RINGZERO_SLICE_LOG: file } });
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '));
    let total = 0;
    for (const [ms, n, rip] of lines) {
      assert.ok(Number(ms) >= 0, `host ms ${ms}`);
      assert.ok(Number.isInteger(Number(n)) && Number(n) >= 0 && Number(n) <= SLICE, `${n} instructions in a slice`);
      assert.match(rip, /^[0-9a-f]+$/);
      total += Number(n);
    }
    // the two loops' 6M instructions and the few around them, in slices of at most SLICE: most of them full
    assert.ok(total >= 6_000_000 && total <= 6_000_000 + 2000, `${total} instructions in all`);
    assert.ok(lines.length >= 6_000_000 / SLICE && lines.length <= 6_000_000 / SLICE + 20, `${lines.length} slices`);
    // a slice that ran its whole budget in loop a or b ended inside the guest's code, a few hundred bytes long
    const rips = lines.filter(([, n]) => Number(n) === SLICE).map(([, , rip]) => BigInt(`0x${rip}`));
    assert.ok(rips.length > 250, `${rips.length} full slices`);
    const lo = rips.reduce((a, b) => (a < b ? a : b)), hi = rips.reduce((a, b) => (a > b ? a : b));
    assert.ok(hi - lo < 0x100n, `full slices ended between ${lo.toString(16)} and ${hi.toString(16)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
