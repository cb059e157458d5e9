// Integer ALU instructions of the software CPU in 32-bit protected mode (flat segments, no paging) and in real
// mode (16-bit operands and addressing): operand- and address-size prefixes, 40-4F INC/DEC, 16-bit effective
// addresses with their default segments, moffs of the address size. Bytes from GNU as (.code32 / .code16).
import test from 'node:test';
import assert from 'node:assert/strict';
import { makeMachine, runCode, hexBytes, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';

const CF = C.CF, PF = C.PF, AF = C.AF, ZF = C.ZF, SF = C.SF, OF = C.OF;
const EAX = 0, ECX = 1, EDX = 2, EBX = 3, ESP = 4, EBP = 5, ESI = 6, EDI = 7;

function flat32(): Machine {
  const m = makeMachine();
  const cpu = m.cpu;
  cpu.cr0 |= C.CR0_PE;
  const data = C.SEG_P | C.SEG_S | C.SEG_TYPE_WRITABLE | C.SEG_TYPE_ACCESSED | C.SEG_DB | C.SEG_G;
  for (const s of [C.ES, C.SS, C.DS, C.FS, C.GS]) cpu.loadSegmentRaw(s, 0x10, 0, 0xffffffff, data);
  cpu.loadSegmentRaw(C.CS, 0x08, 0, 0xffffffff, C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | C.SEG_TYPE_READABLE | C.SEG_DB | C.SEG_G);
  cpu.setGpr(ESP, 0x300000n);
  return m;
}

function real16(): Machine {
  const m = makeMachine();
  m.cpu.loadSegmentRaw(C.CS, 0, 0, 0xffff, C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | 3);
  for (const s of [C.ES, C.SS, C.DS]) m.cpu.loadSegmentReal(s, 0);
  m.cpu.setGpr(ESP, 0xf000n);
  return m;
}

let m32: Machine | undefined, m16: Machine | undefined;

function run(mode: 32 | 16, hex: string, regs: Record<number, number> = {}, flags = 0): Machine {
  const m = mode === 32 ? (m32 ??= flat32()) : (m16 ??= real16());
  const cpu = m.cpu;
  for (let i = 0; i < 8; i++) if (i !== ESP) cpu.setGpr(i, 0n);
  for (const [k, v] of Object.entries(regs)) cpu.setGpr(Number(k), BigInt(v >>> 0));
  cpu.setFlagsValue(flags);
  runCode(m, hexBytes(hex), { at: mode === 32 ? 0x100000 : 0x1000 });
  assert.equal(cpu.lastException, -1, `exception ${cpu.lastException}`);
  return m;
}

const r32 = (m: Machine, i: number) => Number(m.cpu.getGpr(i));
const arith = (m: Machine) => m.cpu.getFlags() & C.ARITH_FLAGS;

test('32-bit mode: 40-4F are INC/DEC, keeping CF', () => {
  // 40: inc eax ; 49: dec ecx ; 66 41: inc cx
  let m = run(32, '40', { [EAX]: 0x7fffffff }, CF);
  assert.equal(r32(m, EAX), 0x80000000);
  assert.equal(arith(m), CF | OF | SF | AF | PF);
  m = run(32, '49', { [ECX]: 1 });
  assert.equal(r32(m, ECX), 0);
  assert.equal(arith(m), ZF | PF);
  m = run(32, '66 41', { [ECX]: 0x1234ffff });
  assert.equal(r32(m, ECX), 0x12340000);
  assert.equal(arith(m), ZF | PF | AF);
});

test('32-bit mode: operand-size prefix, LEA, moffs32, 82 alias, 16-bit addressing through 67', () => {
  // 66 01 c8: add ax, cx ; 01 c8: add eax, ecx
  let m = run(32, '66 01 c8', { [EAX]: 0xaaaaffff, [ECX]: 1 });
  assert.equal(r32(m, EAX), 0xaaaa0000);
  m = run(32, '01 c8', { [EAX]: 0xffffffff, [ECX]: 1 });
  assert.equal(r32(m, EAX), 0);
  assert.equal(arith(m), CF | ZF | PF | AF);
  // 8d 44 4b 08: lea eax, [ebx+ecx*2+8] (wraps at 4 GiB)
  m = run(32, '8d 44 4b 08', { [EBX]: 0xfffffff8, [ECX]: 2 });
  assert.equal(r32(m, EAX), 4);
  // 66 8d 04 0b: lea ax, [ebx+ecx]
  m = run(32, '66 8d 04 0b', { [EAX]: 0x12345678, [EBX]: 0x1ffff, [ECX]: 2 });
  assert.equal(r32(m, EAX), 0x12340001);
  // a1 10 00 20 00: mov eax, [0x200010]
  m32!.mem.write(0x200010, Uint8Array.of(0x78, 0x56, 0x34, 0x12));
  m = run(32, 'a1 10 00 20 00');
  assert.equal(r32(m, EAX), 0x12345678);
  // 82 c0 01: add al, 1 (valid outside 64-bit mode)
  m = run(32, '82 c0 01', { [EAX]: 0x1ff });
  assert.equal(r32(m, EAX), 0x100);
  // 67 8b 00: mov eax, [bx+si]
  m32!.mem.write(0x3000, Uint8Array.of(1, 2, 3, 4));
  m = run(32, '67 8b 00', { [EBX]: 0xffff2000, [ESI]: 0x1000 });
  assert.equal(r32(m, EAX), 0x04030201);
  // b8 78 56 34 12: mov eax, imm32 ; 66 b8 34 12: mov ax, imm16 ; 91: xchg eax, ecx
  m = run(32, 'b8 78 56 34 12 66 b8 34 12 91', { [ECX]: 7 });
  assert.equal(r32(m, EAX), 7);
  assert.equal(r32(m, ECX), 0x12341234);
});

test('32-bit mode: MUL/DIV use EDX:EAX; CMPXCHG8B; SHLD with a 16-bit operand', () => {
  // f7 e1: mul ecx ; f7 f1: div ecx ; f7 f9: idiv ecx
  let m = run(32, 'f7 e1', { [EAX]: 0x80000000, [ECX]: 4 });
  assert.equal(r32(m, EAX), 0);
  assert.equal(r32(m, EDX), 2);
  m = run(32, 'f7 f1', { [EDX]: 2, [EAX]: 1, [ECX]: 4 });
  assert.equal(r32(m, EAX), 0x80000000);
  assert.equal(r32(m, EDX), 1);
  m = run(32, 'f7 f9', { [EDX]: 0xffffffff, [EAX]: 0xfffffff9, [ECX]: 2 });
  assert.equal(r32(m, EAX) | 0, -3);
  assert.equal(r32(m, EDX) | 0, -1);
  // 0f c7 0b: cmpxchg8b [ebx] (equal: ECX:EBX stored)
  m32!.mem.write(0x4000, Uint8Array.of(1, 0, 0, 0, 2, 0, 0, 0));
  m = run(32, '0f c7 0b', { [EBX]: 0x4000, [EAX]: 1, [EDX]: 2, [ECX]: 0xabcdef01 });
  assert.deepEqual([...m.mem.read(0x4000, 8)], [0x00, 0x40, 0, 0, 0x01, 0xef, 0xcd, 0xab]);
  assert.equal(arith(m) & ZF, ZF);
  // 66 0f a4 c8 04: shld ax, cx, 4
  m = run(32, '66 0f a4 c8 04', { [EAX]: 0xffff1234, [ECX]: 0xabcd });
  assert.equal(r32(m, EAX), 0xffff234a);
});

test('real mode: 16-bit default operand size, 16-bit addressing with DS/SS defaults, 66/67 prefixes', () => {
  const m = (m16 ??= real16());
  // 01 c8: add ax, cx ; 66 01 c8: add eax, ecx
  let r = run(16, '01 c8', { [EAX]: 0x1234ffff, [ECX]: 1 });
  assert.equal(r32(r, EAX), 0x12340000);
  assert.equal(arith(r), CF | ZF | PF | AF);
  r = run(16, '66 01 c8', { [EAX]: 0x1234ffff, [ECX]: 1 });
  assert.equal(r32(r, EAX), 0x12350000);
  // 8b 40 04: mov ax, [bx+si+4] with DS = 0x100 (base 0x1000)
  m.cpu.loadSegmentReal(C.DS, 0x100);
  m.mem.write(0x1000 + 0x0204, Uint8Array.of(0xcd, 0xab));
  r = run(16, '8b 40 04', { [EBX]: 0x200, [ESI]: 0 });
  assert.equal(r32(r, EAX), 0xabcd);
  // a1 34 12: mov ax, [0x1234] (moffs16 in DS)
  m.mem.write(0x1000 + 0x1234, Uint8Array.of(0x11, 0x22));
  r = run(16, 'a1 34 12');
  assert.equal(r32(r, EAX), 0x2211);
  // c7 06 00 20 34 12: mov word [0x2000], 0x1234
  run(16, 'c7 06 00 20 34 12');
  assert.deepEqual([...m.mem.read(0x1000 + 0x2000, 2)], [0x34, 0x12]);
  // 8b 46 00: mov ax, [bp] uses SS (base 0x5000 here), not DS
  m.cpu.loadSegmentReal(C.SS, 0x500);
  m.mem.write(0x5000 + 0x10, Uint8Array.of(0x99, 0x88));
  r = run(16, '8b 46 00', { [EBP]: 0x10 });
  assert.equal(r32(r, EAX), 0x8899);
  m.cpu.loadSegmentReal(C.SS, 0);
  // 8d 43 fe: lea ax, [bp+di-2] wraps at 64 KiB
  r = run(16, '8d 43 fe', { [EBP]: 1, [EDI]: 0 });
  assert.equal(r32(r, EAX), 0xffff);
  // 67 66 8b 04 8b: mov eax, [ebx+ecx*4] (32-bit addressing through 67)
  m.mem.write(0x1000 + 0x108, Uint8Array.of(4, 3, 2, 1));
  r = run(16, '67 66 8b 04 8b', { [EBX]: 0x100, [ECX]: 2 });
  assert.equal(r32(r, EAX), 0x01020304);
  m.cpu.loadSegmentReal(C.DS, 0);
  // f7 f1: div cx (DX:AX) ; 99: cwd ; 66 99: cdq ; 48: dec ax
  r = run(16, 'f7 f1', { [EDX]: 1, [EAX]: 0, [ECX]: 0x10 });
  assert.equal(r32(r, EAX), 0x1000);
  assert.equal(r32(r, EDX), 0);
  r = run(16, '99', { [EAX]: 0x8000, [EDX]: 0x12340000 });
  assert.equal(r32(r, EDX), 0x1234ffff);
  r = run(16, '66 99', { [EAX]: 0x80000000 });
  assert.equal(r32(r, EDX), 0xffffffff);
  r = run(16, '48', { [EAX]: 0x10000 });
  assert.equal(r32(r, EAX), 0x1ffff);
  assert.equal(arith(r), SF | PF | AF);
  // 66 0f af c1: imul eax, ecx
  r = run(16, '66 0f af c1', { [EAX]: 0x10000, [ECX]: 0x10000 });
  assert.equal(r32(r, EAX), 0);
  assert.equal(arith(r) & (CF | OF), CF | OF);
});
