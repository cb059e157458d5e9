// SSE/SSE2/MMX on the software CPU: hand-assembled snippets (bytes from GNU as, the assembly in comments) in
// 64-bit mode. Expected values were taken from running the same snippets natively on the development host
// (an AMD EPYC) through src/cpu/soft/testing/native.ts and pasted here as constants.
import test from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, runCode, hexBytes, DATA, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';

const FLAGS = C.CF | C.PF | C.AF | C.ZF | C.SF | C.OF;

function machine(mxcsr = 0x1f80): Machine {
  const m = longModeMachine();
  m.cpu.mxcsr = mxcsr;
  m.cpu.setGpr(7, BigInt(DATA)); // rdi -> data area
  return m;
}
const view = (m: Machine) => new DataView(m.cpu.xmm.buffer);
const setF64 = (m: Machine, reg: number, v: number) => view(m).setFloat64(reg * 16, v, true);
const setU32 = (m: Machine, reg: number, lane: number, v: number) => view(m).setUint32(reg * 16 + lane * 4, v >>> 0, true);
const xmmHex = (m: Machine, reg: number) => Array.from(m.cpu.xmm.subarray(reg * 16, reg * 16 + 16), (b) => b.toString(16).padStart(2, '0')).join(' ');
const gpr = (m: Machine, i: number) => m.cpu.getGpr(i);

function run(m: Machine, hex: string): void {
  runCode(m, hexBytes(hex));
}

test('comisd sets ZF/PF/CF from the compare and clears OF/SF/AF; an unordered compare raises IE', () => {
  const cases: Array<[number, number, number, number]> = [
    // [a, b, flags, mxcsr] as the host leaves them
    [1, 2, C.CF, 0x1f80],
    [2, 1, 0, 0x1f80],
    [3, 3, C.ZF, 0x1f80],
    [NaN, 1, C.ZF | C.PF | C.CF, 0x1f81],
  ];
  for (const [a, b, flags, mxcsr] of cases) {
    const m = machine();
    setF64(m, 0, a);
    setF64(m, 1, b);
    m.cpu.setFlagsValue(C.FLAGS_FIXED | FLAGS); // every status flag set beforehand
    run(m, '66 0f 2f c1'); // comisd xmm0, xmm1
    assert.equal(m.cpu.lastException, -1);
    assert.equal(m.cpu.getFlags() & FLAGS, flags, `comisd ${a}, ${b}`);
    assert.equal(m.cpu.mxcsr, mxcsr);
  }
});

test('ucomisd signals only on an SNaN; comiss on a QNaN', () => {
  const m = machine();
  setU32(m, 0, 0, 0x7fc00000); // QNaN
  setU32(m, 1, 0, 0x3f800000);
  run(m, '0f 2e c1'); // ucomiss xmm0, xmm1
  assert.equal(m.cpu.mxcsr, 0x1f80);
  assert.equal(m.cpu.getFlags() & FLAGS, C.ZF | C.PF | C.CF);
  run(m, '0f 2f c1'); // comiss xmm0, xmm1
  assert.equal(m.cpu.mxcsr, 0x1f81);
});

test('addps NaN rules: first source QNaN, SNaN quieted, inf-inf gives the default NaN, denormal operand DE', () => {
  const m = machine();
  const a = [0x7fc00001, 0x3f800000, 0x7f800000, 0x00000001];
  const b = [0x7fc00002, 0x7f800005, 0xff800000, 0x3f800000];
  for (let i = 0; i < 4; i++) { setU32(m, 0, i, a[i]); setU32(m, 1, i, b[i]); }
  run(m, '0f 58 c1'); // addps xmm0, xmm1
  assert.equal(xmmHex(m, 0), '01 00 c0 7f 05 00 c0 7f 00 00 c0 ff 00 00 80 3f');
  assert.equal(m.cpu.mxcsr, 0x1fa3); // IE | DE | PE
});

test('sqrtsd of a negative number and divsd by zero; cvtsd2ss', () => {
  const m = machine();
  setF64(m, 0, 5); setF64(m, 1, -4); setF64(m, 2, 1); setF64(m, 3, 0);
  // sqrtsd xmm0, xmm1; divsd xmm2, xmm3; cvtsd2ss xmm1, xmm1
  run(m, 'f2 0f 51 c1 f2 0f 5e d3 f2 0f 5a c9');
  assert.equal(xmmHex(m, 0), '00 00 00 00 00 00 f8 ff 00 00 00 00 00 00 00 00');
  assert.equal(xmmHex(m, 1), '00 00 80 c0 00 00 10 c0 00 00 00 00 00 00 00 00');
  assert.equal(xmmHex(m, 2), '00 00 00 00 00 00 f0 7f 00 00 00 00 00 00 00 00');
  assert.equal(m.cpu.mxcsr, 0x1f85); // IE | ZE
});

test('cvtsd2si follows MXCSR.RC; out of range gives the integer indefinite and IE; cvttsd2si truncates', () => {
  // cvtsd2si eax, xmm0; cvtsd2si rbx, xmm1; cvttsd2si ecx, xmm0; cvtsd2si edx, xmm2
  const code = 'f2 0f 2d c0 f2 48 0f 2d d9 f2 0f 2c c8 f2 0f 2d d2';
  const expected: Array<[number, bigint, bigint]> = [
    // [mxcsr, eax, edx] from the host: -2.5 and 2147483647.5 under nearest, down, up, toward zero
    [0x1f80, 0xfffffffen, 0x80000000n],
    [0x3f80, 0xfffffffdn, 0x7fffffffn],
    [0x5f80, 0xfffffffen, 0x80000000n],
    [0x7f80, 0xfffffffen, 0x7fffffffn],
  ];
  for (const [mx, eax, edx] of expected) {
    const m = machine(mx);
    setF64(m, 0, -2.5); setF64(m, 1, 1e19); setF64(m, 2, 2147483647.5);
    run(m, code);
    assert.equal(gpr(m, 0), eax, `eax with MXCSR ${mx.toString(16)}`);
    assert.equal(gpr(m, 3), 0x8000000000000000n, 'rbx: 1e19 does not fit in int64');
    assert.equal(gpr(m, 1), 0xfffffffen, 'ecx: truncation');
    assert.equal(gpr(m, 2), edx, `edx with MXCSR ${mx.toString(16)}`);
    assert.equal(m.cpu.mxcsr, mx | 0x21);
  }
});

test('cvtss2si of NaN and cvttps2dq of out-of-range lanes give 0x80000000', () => {
  const m = machine();
  setU32(m, 0, 0, 0x7fc00000);
  const lanes = [0x4f000000, 0xcf000000, 0x3fc00000, 0xff800000]; // 2^31, -2^31, 1.5, -inf
  for (let i = 0; i < 4; i++) setU32(m, 1, i, lanes[i]);
  run(m, 'f3 0f 2d c0 f3 0f 5b d1'); // cvtss2si eax, xmm0; cvttps2dq xmm2, xmm1
  assert.equal(gpr(m, 0), 0x80000000n);
  assert.equal(xmmHex(m, 2), '00 00 00 80 00 00 00 80 01 00 00 00 00 00 00 80');
  assert.equal(m.cpu.mxcsr, 0x1fa1);
});

test('denormals: plain, FTZ and DAZ (mulss)', () => {
  // mulss xmm0, xmm1 (denormal 0x00400000 * 0.5); mulss xmm2, xmm3 (min normal * 0.25)
  const code = 'f3 0f 59 c1 f3 0f 59 d3';
  const expected: Array<[number, string, string, number]> = [
    [0x1f80, '00 00 20 00', '00 00 20 00', 0x1f82],
    [0x9f80, '00 00 00 00', '00 00 00 00', 0x9fb2],
    [0x1fc0, '00 00 00 00', '00 00 20 00', 0x1fc0],
  ];
  for (const [mx, x0, x2, after] of expected) {
    const m = machine(mx);
    setU32(m, 0, 0, 0x00400000); setU32(m, 1, 0, 0x3f000000);
    setU32(m, 2, 0, 0x00800000); setU32(m, 3, 0, 0x3e800000);
    run(m, code);
    assert.equal(xmmHex(m, 0).slice(0, 11), x0);
    assert.equal(xmmHex(m, 2).slice(0, 11), x2);
    assert.equal(m.cpu.mxcsr, after, `MXCSR ${mx.toString(16)}`);
  }
});

test('directed rounding at the edges (cases the differential suite found): a subnormal quotient of a negative divisor, a step past the largest double', () => {
  const setU64 = (m: Machine, reg: number, lane: number, v: bigint) => view(m).setBigUint64(reg * 16 + lane * 8, v, true);
  const u64 = (m: Machine, reg: number, lane: number) => view(m).getBigUint64(reg * 16 + lane * 8, true);
  // divsd xmm13, xmm15 toward zero (MXCSR 0x7f80): subnormal / -0.92 is a negative subnormal, truncated in magnitude.
  let m = machine(0x7f80);
  setU64(m, 13, 0, 0x000000e600008000n); setU64(m, 13, 1, 0x000100000000ffffn);
  setU64(m, 15, 0, 0xbfed700000000000n); setU64(m, 15, 1, 0xfff8000000000000n);
  run(m, 'f2 45 0f 5e ef');
  assert.equal(u64(m, 13, 0), 0x800000fa056ff74dn); // the host's result
  assert.equal(u64(m, 13, 1), 0x000100000000ffffn);
  assert.equal(m.cpu.mxcsr, 0x7fb2); // DE | UE | PE
  // subpd xmm12, xmm13 rounding up (MXCSR 0x5f80): DBL_MAX minus a tiny negative steps to +inf, which is an overflow.
  m = machine(0x5f80);
  setU64(m, 12, 0, 0x7fefffffffffffffn); setU64(m, 12, 1, 0x7ff8000000012345n);
  setU64(m, 13, 0, 0x95f4cf40d68e5306n); setU64(m, 13, 1, 0xa733186239f53e25n);
  run(m, '66 45 0f 5c e5');
  assert.equal(u64(m, 12, 0), 0x7ff0000000000000n);
  assert.equal(u64(m, 12, 1), 0x7ff8000000012345n);
  assert.equal(m.cpu.mxcsr, 0x5fa8); // OE | PE, as the host
});

test('pmovmskb, pshufd and psadbw', () => {
  const m = machine();
  for (let i = 0; i < 16; i++) m.cpu.xmm[i] = (i * 37 + 0x5a) & 0xff;
  for (let i = 0; i < 16; i++) m.cpu.xmm[32 + i] = (i * 11) & 0xff;
  // pmovmskb eax, xmm0; pshufd xmm1, xmm0, 0x1b; psadbw xmm0, xmm2
  run(m, '66 0f d7 c0 66 0f 70 c8 1b 66 0f f6 c2');
  assert.equal(gpr(m, 0), 0x8f1cn);
  assert.equal(xmmHex(m, 1), '16 3b 60 85 82 a7 cc f1 ee 13 38 5d 5a 7f a4 c9');
  assert.equal(xmmHex(m, 0), '04 03 00 00 00 00 00 00 60 02 00 00 00 00 00 00');
});

test('glibc-style strlen block: pcmpeqb + pmovmskb + bsf on an aligned load', () => {
  const m = machine();
  m.mem.write(DATA, new TextEncoder().encode('hello, world!\0zz'));
  // pxor xmm0, xmm0; movdqa xmm1, [rdi]; pcmpeqb xmm1, xmm0; pmovmskb eax, xmm1; bsf eax, eax
  run(m, '66 0f ef c0 66 0f 6f 0f 66 0f 74 c8 66 0f d7 c1');
  assert.equal(gpr(m, 0), 1n << 13n);
});

test('movaps/movdqa fault with #GP(0) on a misaligned operand; movups does not', () => {
  const m = machine();
  run(m, '0f 28 47 01'); // movaps xmm0, [rdi+1]
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(m.cpu.faultError, 0);
  run(m, '66 0f 7f 47 08'); // movdqa [rdi+8], xmm0
  assert.equal(m.cpu.lastException, C.EXC_GP);
  run(m, '0f 10 47 01'); // movups xmm0, [rdi+1]
  assert.equal(m.cpu.lastException, -1);
});

test('#NM with CR0.TS, #UD without CR4.OSFXSR or with CR0.EM', () => {
  const m = machine();
  m.cpu.cr0 |= C.CR0_TS;
  run(m, '0f 58 c1'); // addps xmm0, xmm1
  assert.equal(m.cpu.lastException, C.EXC_NM);
  m.cpu.cr0 &= ~C.CR0_TS;
  m.cpu.cr4 &= ~C.CR4_OSFXSR;
  run(m, '0f 58 c1');
  assert.equal(m.cpu.lastException, C.EXC_UD);
  m.cpu.cr4 |= C.CR4_OSFXSR;
  m.cpu.cr0 |= C.CR0_EM;
  run(m, '66 0f ef c0'); // pxor xmm0, xmm0
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('an unmasked SIMD exception raises #XM (CR4.OSXMMEXCPT) or #UD, sets the flag and leaves the destination', () => {
  const m = machine(0x1f80 & ~(1 << 9)); // ZE unmasked
  setF64(m, 0, 1); setF64(m, 1, 0);
  run(m, 'f2 0f 5e c1'); // divsd xmm0, xmm1
  assert.equal(m.cpu.lastException, C.EXC_XM);
  assert.equal(m.cpu.mxcsr & 0x3f, 0x04);
  assert.equal(view(m).getFloat64(0, true), 1);
  m.cpu.cr4 &= ~C.CR4_OSXMMEXCPT;
  run(m, 'f2 0f 5e c1');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('ldmxcsr rejects reserved bits with #GP(0); stmxcsr stores MXCSR', () => {
  const m = machine();
  m.mem.write(DATA, Uint8Array.of(0xc0, 0x7f, 0, 0, 0, 0, 1, 0)); // 0x7fc0, then 0x10000 (reserved bit 16)
  run(m, '0f ae 17 0f ae 5f 10'); // ldmxcsr [rdi]; stmxcsr [rdi+16]
  assert.equal(m.cpu.mxcsr, 0x7fc0);
  assert.deepEqual(Array.from(m.mem.slice(DATA + 16, 4)), [0xc0, 0x7f, 0, 0]);
  run(m, '0f ae 57 04'); // ldmxcsr [rdi+4]
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(m.cpu.mxcsr, 0x7fc0);
});

test('fxsave64/fxrstor64 round trip with the SDM layout; misaligned fxsave is #GP', () => {
  const m = machine(0x1f80 | 0x2000);
  for (let i = 0; i < 256; i++) m.cpu.xmm[i] = (i * 7 + 3) & 0xff;
  // fninit; fld1; fldpi (x87 state: TOP = 6, two valid registers)
  run(m, 'db e3 d9 e8 d9 eb');
  const area = DATA + 0x400;
  m.cpu.setGpr(6, BigInt(area));
  run(m, '48 0f ae 06'); // fxsave64 [rsi]
  assert.equal(m.cpu.lastException, -1);
  const img = m.mem.slice(area, 512);
  const iv = new DataView(img.buffer, img.byteOffset, 512);
  assert.equal(iv.getUint16(0, true), 0x037f, 'FCW');
  assert.equal((iv.getUint16(2, true) >> 11) & 7, 6, 'FSW.TOP');
  assert.equal(img[4], 0xc0, 'abridged FTW: physical registers 6 and 7 valid');
  assert.equal(iv.getUint32(24, true), 0x3f80, 'MXCSR');
  assert.equal(iv.getUint32(28, true), 0xffff, 'MXCSR_MASK');
  // ST0 = pi, ST1 = 1.0 as 80-bit values
  assert.deepEqual(Array.from(img.subarray(32, 42)), [0x35, 0xc2, 0x68, 0x21, 0xa2, 0xda, 0x0f, 0xc9, 0x00, 0x40]);
  assert.deepEqual(Array.from(img.subarray(48, 58)), [0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
  assert.deepEqual(Array.from(img.subarray(160, 416)), Array.from(m.cpu.xmm));
  const saved = Uint8Array.from(m.cpu.xmm);
  // clobber: fninit; pxor xmm3, xmm3; ldmxcsr default
  m.cpu.xmm.fill(0);
  m.cpu.mxcsr = 0x1f80;
  run(m, 'db e3');
  run(m, '48 0f ae 0e'); // fxrstor64 [rsi]
  assert.equal(m.cpu.lastException, -1);
  assert.deepEqual(Array.from(m.cpu.xmm), Array.from(saved));
  assert.equal(m.cpu.mxcsr, 0x3f80);
  assert.equal(m.cpu.fpu.top, 6);
  assert.equal(m.cpu.fpu.tagValid, 0xc0);
  // fstp qword [rdi]: ST0 is pi again
  run(m, 'dd 1f');
  assert.equal(Buffer.from(m.mem.slice(DATA, 8)).readDoubleLE(0), Math.PI);
  m.cpu.setGpr(6, BigInt(area + 8));
  run(m, '48 0f ae 06');
  assert.equal(m.cpu.lastException, C.EXC_GP);
});

test('MMX: movq/paddw on mm registers alias the x87 significands; emms empties the tag word', () => {
  const m = machine();
  m.mem.write(DATA, Uint8Array.of(1, 0, 2, 0, 3, 0, 0xff, 0xff, 1, 0, 1, 0, 1, 0, 1, 0));
  // movq mm0, [rdi]; paddw mm0, [rdi+8]; movq [rdi+16], mm0
  run(m, '0f 6f 07 0f fd 47 08 0f 7f 47 10');
  assert.deepEqual(Array.from(m.mem.slice(DATA + 16, 8)), [2, 0, 3, 0, 4, 0, 0, 0]);
  assert.equal(m.cpu.fpu.tagValid, 0xff);
  assert.equal(m.cpu.fpu.top, 0);
  assert.deepEqual(Array.from(m.cpu.fpu.regs.subarray(0, 10)), [2, 0, 3, 0, 4, 0, 0, 0, 0xff, 0xff]);
  run(m, '0f 77'); // emms
  assert.equal(m.cpu.fpu.tagValid, 0);
});
