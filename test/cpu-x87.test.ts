// The x87 FPU of the software CPU: hand-assembled snippets in 64-bit mode (bytes from GNU as, assembly in the
// comments). Expected values come from running the same snippets natively on the development host (AMD EPYC)
// through src/cpu/soft/testing/native.ts. Status-word checks mask PE and C1: ringzero computes in doubles and
// does not report precision for arithmetic (see src/cpu/soft/ops/x87.ts).
import test from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, runCode, hexBytes, DATA, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';

function machine(values: number[] = []): Machine {
  const m = longModeMachine();
  m.cpu.setGpr(7, BigInt(DATA));
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeDoubleLE(v, i * 8));
  m.mem.write(DATA, b);
  return m;
}
const mem = (m: Machine, off: number, n: number) => Buffer.from(m.mem.slice(DATA + off, n));
const ax = (m: Machine) => Number(m.cpu.getGpr(0) & 0xffffn);
const STATUS_MASK = ~(0x20 | 0x200) & 0xffff; // without PE and C1

test('fdivp, and division by zero giving +inf with ZE', () => {
  const m = machine([1, 3]);
  // fninit; fld qword [rdi]; fld qword [rdi+8]; fdivp; fstp qword [rdi+0x100];
  // fld qword [rdi]; fldz; fdivp; fstp qword [rdi+0x108]; fnstsw ax
  runCode(m, hexBytes('db e3 dd 07 dd 47 08 de f9 dd 9f 00 01 00 00 dd 07 d9 ee de f9 dd 9f 08 01 00 00 df e0'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(mem(m, 0x100, 16).toString('hex'), '555555555555d53f000000000000f07f');
  assert.equal(ax(m) & STATUS_MASK, 0x0004);
});

test('fcomi / fucomip set EFLAGS; TOP in the status word', () => {
  const m = machine([2, 1]);
  m.cpu.setFlagsValue(C.FLAGS_FIXED | C.ZF | C.SF | C.OF | C.AF | C.PF);
  // fninit; fld qword [rdi]; fld qword [rdi+8]; fcomi st, st(1); fnstsw ax
  runCode(m, hexBytes('db e3 dd 07 dd 47 08 db f1 df e0'));
  assert.equal(ax(m), 0x3000);
  assert.equal(m.cpu.getFlags() & (C.CF | C.PF | C.AF | C.ZF | C.SF | C.OF), C.CF);
  runCode(m, hexBytes('df e9 dd d8')); // fucomip st, st(1); fstp st(0)
  assert.equal(m.cpu.getFlags() & (C.CF | C.ZF | C.PF), C.CF);
  assert.equal(m.cpu.fpu.tagValid, 0);
});

test('fistp rounds to nearest even, fisttp truncates, out of range stores the integer indefinite with IE', () => {
  const m = machine([-2.5, 3.5, -7.9, 1e6]);
  // fninit; fld [rdi]; fistp dword [rdi+0x100]; fld [rdi+8]; fistp qword [rdi+0x104];
  // fld [rdi+16]; fisttp word [rdi+0x10c]; fld [rdi+24]; fistp word [rdi+0x10e]; fnstsw ax
  runCode(m, hexBytes('db e3 dd 07 db 9f 00 01 00 00 dd 47 08 df bf 04 01 00 00 dd 47 10 df 8f 0c 01 00 00 dd 47 18 df 9f 0e 01 00 00 df e0'));
  assert.equal(mem(m, 0x100, 16).toString('hex'), 'feffffff0400000000000000f9ff0080');
  assert.equal(ax(m), 0x0021); // IE | PE
});

test('fist honours the rounding control; frndint too', () => {
  const m = machine([-2.5]);
  // fninit; fld [rdi]; mov word [rdi+0x80], 0x077f (RC down); fldcw [rdi+0x80]; fist dword [rdi+0x100];
  // frndint; fstp qword [rdi+0x108]
  runCode(m, hexBytes('db e3 dd 07 66 c7 87 80 00 00 00 7f 07 d9 af 80 00 00 00 db 97 00 01 00 00 d9 fc dd 9f 08 01 00 00'));
  assert.equal(mem(m, 0x100, 4).readInt32LE(0), -3);
  assert.equal(mem(m, 0x108, 8).readDoubleLE(0), -3);
  m.mem.write(DATA + 0x80, Uint8Array.of(0x7f, 0x0f)); // RC toward zero
  runCode(m, hexBytes('dd 07 d9 af 80 00 00 00 db 97 00 01 00 00 dd d8'));
  assert.equal(mem(m, 0x100, 4).readInt32LE(0), -2);
});

test('fxam classes; fld/fstp m80 round-trips exactly', () => {
  const m = machine([-Infinity, 0]);
  m.mem.write(DATA + 16, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 0x87, 0x34, 0x92));
  // fninit; fld [rdi]; fxam; fnstsw ax; mov bx, ax; fstp st(0); fxam; fnstsw ax; mov cx, ax;
  // fld tbyte [rdi+16]; fstp tbyte [rdi+0x100]
  runCode(m, hexBytes('db e3 dd 07 d9 e5 df e0 66 89 c3 dd d8 d9 e5 df e0 66 89 c1 db 6f 10 db bf 00 01 00 00'));
  assert.equal(Number(m.cpu.getGpr(3) & 0xffffn), 0x3f00); // -inf: C2|C0, C1 = sign, TOP 7
  assert.equal(Number(m.cpu.getGpr(1) & 0x4500n), 0x4100); // empty: C3|C0
  assert.equal(mem(m, 0x100, 10).toString('hex'), '01020304050607873492');
});

test('fsqrt, fyl2x, fprem (quotient bits in C3/C1/C0) and fsin', () => {
  const m = machine([10, 3]);
  // fninit; fld [rdi]; fsin; fstp [rdi+0x100]; fld [rdi]; fsqrt; fstp [rdi+0x108]; fld1; fld [rdi]; fyl2x;
  // fstp [rdi+0x110]; fld [rdi+8]; fld [rdi]; fprem; fnstsw ax; fstp [rdi+0x118]
  runCode(m, hexBytes('db e3 dd 07 d9 fe dd 9f 00 01 00 00 dd 07 d9 fa dd 9f 08 01 00 00 d9 e8 dd 07 d9 f1 dd 9f 10 01 00 00 dd 47 08 dd 07 d9 f8 df e0 dd 9f 18 01 00 00'));
  assert.ok(Math.abs(mem(m, 0x100, 8).readDoubleLE(0) - -0.5440211108893698) < 1e-15);
  assert.equal(mem(m, 0x108, 24).toString('hex'), '535bda3a584c0940' + '71a379094f930a40' + '000000000000f03f');
  assert.equal(ax(m) & (STATUS_MASK | 0x200) & ~0x20, 0x7200); // C3 | C1 (quotient 3), TOP 6
});

test('stack overflow and underflow set IE|SF and load the indefinite', () => {
  const m = machine();
  // fninit; 9 x fld1; fnstsw ax
  runCode(m, hexBytes('db e3 ' + 'd9 e8 '.repeat(9) + 'df e0'));
  assert.equal(ax(m) & 0x41, 0x41);
  const top = m.cpu.fpu.top;
  assert.deepEqual(Array.from(m.cpu.fpu.regs.subarray(top * 10, top * 10 + 10)), [0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff]);
  // fninit; fstp qword [rdi] with an empty stack stores the indefinite
  runCode(m, hexBytes('db e3 dd 1f df e0'));
  assert.equal(mem(m, 0, 8).toString('hex'), '000000000000f8ff');
  assert.equal(ax(m) & 0x41, 0x41);
});

test('fnsave/frstor round trip; fnstenv layout', () => {
  const m = machine([1.25, -8]);
  // fninit; fld [rdi]; fld [rdi+8]; fnsave [rdi+0x100]; fld1 (after fnsave's init); frstor [rdi+0x100]; fsubp; fstp [rdi+0x200]
  runCode(m, hexBytes('db e3 dd 07 dd 47 08 dd b7 00 01 00 00 d9 e8 dd a7 00 01 00 00 de e9 dd 9f 00 02 00 00'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(mem(m, 0x200, 8).readDoubleLE(0), 9.25);
  const env = mem(m, 0x100, 28);
  assert.equal(env.readUInt16LE(0), 0x037f);
  assert.equal((env.readUInt16LE(4) >> 11) & 7, 6);
  assert.equal(env.readUInt16LE(8), 0x0fff); // tag word: R6, R7 valid
  assert.equal(mem(m, 0x100 + 28, 10).toString('hex'), '000000000000008002c0'); // ST0 = -8 (sign+exponent 0xC002)
});

test('#NM with CR0.TS or CR0.EM; fwait only with CR0.MP and TS', () => {
  const m = machine();
  m.cpu.cr0 |= C.CR0_TS;
  runCode(m, hexBytes('d9 e8')); // fld1
  assert.equal(m.cpu.lastException, C.EXC_NM);
  m.cpu.cr0 &= ~C.CR0_MP;
  runCode(m, hexBytes('9b')); // fwait
  assert.equal(m.cpu.lastException, -1);
  m.cpu.cr0 |= C.CR0_MP;
  runCode(m, hexBytes('9b'));
  assert.equal(m.cpu.lastException, C.EXC_NM);
  m.cpu.cr0 = (m.cpu.cr0 & ~C.CR0_TS) | C.CR0_EM;
  runCode(m, hexBytes('d9 e8'));
  assert.equal(m.cpu.lastException, C.EXC_NM);
});
