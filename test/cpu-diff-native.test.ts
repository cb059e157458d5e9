// The native snippet runner of the differential CPU test: known snippets with hand-computed results.
import test from 'node:test';
import assert from 'node:assert/strict';
import { runNative } from '../src/cpu/soft/testing/native.ts';
import { CODE_BASE, INITIAL_RSP, SCRATCH_BASE, SCRATCH_SIZE, MXCSR_MASKS, CF, ZF, SF, OF, PF, AF, DF, type SnippetState } from '../src/cpu/soft/testing/layout.ts';

function state(): SnippetState {
  const gpr = Array.from({ length: 16 }, (_, i) => BigInt(i) * 0x1111n);
  gpr[4] = INITIAL_RSP;
  return { gpr, rflags: 0n, xmm: new Uint8Array(256), mxcsr: MXCSR_MASKS, mem: new Uint8Array(SCRATCH_SIZE) };
}
const bytes = (hex: string) => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const flags = (r: SnippetState) => Number(r.rflags) & (CF | PF | AF | ZF | SF | OF | DF);

test('add rax, rbx leaves the sum and the flags of the sum; other registers untouched', () => {
  const s = state();
  s.gpr[0] = 0xffff_ffff_ffff_ffffn;
  s.gpr[3] = 1n;
  const r = runNative(bytes('48 01 d8'), s);
  assert.equal(r.gpr[0], 0n);
  assert.equal(flags(r), CF | ZF | PF | AF);
  for (let i = 1; i < 16; i++) assert.equal(r.gpr[i], s.gpr[i], `gpr ${i}`);
  assert.equal(r.rflags & 0x202n, 0x202n, 'bit 1 and IF read back as set');
});

test('sub eax, ecx zero-extends and sets SF/OF; flags go in through popfq', () => {
  const s = state();
  s.gpr[0] = 0xdead_beef_8000_0000n;
  s.gpr[1] = 1n;
  s.rflags = BigInt(CF | ZF); // overwritten by the sub
  const r = runNative(bytes('29 c8'), s);
  assert.equal(r.gpr[0], 0x7fff_ffffn);
  assert.equal(flags(r), OF | AF | PF);
});

test('adc reads the carry flag loaded from the state; std leaves DF set in the result', () => {
  const s = state();
  s.gpr[0] = 5n;
  s.rflags = BigInt(CF);
  const r = runNative(bytes('48 83 d0 00 fd'), s); // adc rax, 0; std
  assert.equal(r.gpr[0], 6n);
  assert.equal(flags(r) & DF, DF);
});

test('push and pop use the snippet stack inside the scratch area', () => {
  const s = state();
  s.gpr[3] = 0x0123_4567_89ab_cdefn;
  const r = runNative(bytes('53 41 5f 53'), s); // push rbx; pop r15; push rbx
  assert.equal(r.gpr[15], s.gpr[3]);
  assert.equal(r.gpr[4], INITIAL_RSP - 8n);
  const off = Number(INITIAL_RSP) - 8 - SCRATCH_BASE;
  assert.equal(new DataView(r.mem.buffer).getBigUint64(off, true), s.gpr[3]);
});

test('RIP-relative and absolute memory operands address the fixed scratch area', () => {
  const s = state();
  new DataView(s.mem.buffer).setUint32(0x10, 0xcafe_f00d, true);
  // mov eax, [rip+disp32] where the target is SCRATCH_BASE+0x10 and the instruction is 6 bytes long
  const disp = SCRATCH_BASE + 0x10 - (CODE_BASE + 6);
  const code = new Uint8Array(6 + 7);
  code.set([0x8b, 0x05]);
  new DataView(code.buffer).setInt32(2, disp, true);
  // mov [abs SCRATCH_BASE+0x20], eax: 89 04 25 disp32
  code.set([0x89, 0x04, 0x25], 6);
  new DataView(code.buffer).setInt32(9, SCRATCH_BASE + 0x20, true);
  const r = runNative(code, s);
  assert.equal(r.gpr[0], 0xcafe_f00dn);
  assert.equal(new DataView(r.mem.buffer).getUint32(0x20, true), 0xcafe_f00d);
});

test('XMM registers and MXCSR round-trip; paddd and a rounding mode take effect', () => {
  const s = state();
  const v = new DataView(s.xmm.buffer);
  for (let i = 0; i < 4; i++) { v.setUint32(16 * 1 + 4 * i, 0xffff_ffff, true); v.setUint32(16 * 2 + 4 * i, i + 1, true); }
  v.setFloat64(16 * 3, 1, true);
  v.setFloat64(16 * 4, 3, true);
  s.mxcsr = MXCSR_MASKS | (3 << 13); // round toward zero
  const r = runNative(bytes('66 0f fe ca  f2 0f 5e dc'), s); // paddd xmm1, xmm2; divsd xmm3, xmm4
  const rv = new DataView(r.xmm.buffer);
  for (let i = 0; i < 4; i++) assert.equal(rv.getUint32(16 + 4 * i, true), i);
  assert.equal(rv.getBigUint64(48, true), 0x3fd5_5555_5555_5555n, '1/3 truncated toward zero');
  assert.equal(r.mxcsr, MXCSR_MASKS | (3 << 13) | 0x20, 'precision flag set by the inexact division');
  assert.deepEqual(r.xmm.subarray(5 * 16), s.xmm.subarray(5 * 16));
});

test('the host survives many runs and its MXCSR is restored', () => {
  const s = state();
  s.mxcsr = MXCSR_MASKS | (1 << 13) | 0x8040; // round down, FTZ, DAZ
  for (let i = 0; i < 1000; i++) runNative(bytes('90'), s);
  assert.equal(0.1 + 0.2, 0.30000000000000004, 'host arithmetic still rounds to nearest');
});
