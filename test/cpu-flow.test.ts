// Control flow, stack and string instructions of the software CPU, on hand-assembled snippets
// (bytes from GNU as, Intel syntax; the assembly is in the comments). Expected values follow the Intel SDM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, makeMachine, runCode, hexBytes, CODE, DATA, STACK_TOP, PAGE_TABLES, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';
import type { PortDevice } from '../src/devices/bus.ts';

const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7, R9 = 9, R12 = 12;

function reg(m: Machine, i: number): bigint {
  return m.cpu.getGpr(i);
}
function setReg(m: Machine, i: number, v: bigint | number): void {
  m.cpu.setGpr(i, BigInt.asUintN(64, BigInt(v)));
}

/** A real-mode machine with CS = DS = ES = SS = 0 and SP = 0x8000. */
function realModeMachine(): Machine {
  const m = makeMachine();
  for (const s of [C.CS, C.DS, C.ES, C.SS]) m.cpu.loadSegmentReal(s, 0);
  setReg(m, RSP, 0x8000);
  return m;
}

/**
 * Replace the 2 MiB identity mapping that covers `base` with a 4 KiB page table at `ptAt` (identity, user,
 * writable), so single pages can be unmapped. Returns the physical address of the page table.
 */
function split2M(m: Machine, base: number, ptAt: number): number {
  const flags = C.PTE_P | C.PTE_RW | C.PTE_US;
  const pt = m.mem.slice(ptAt, 4096);
  const dv = new DataView(pt.buffer, pt.byteOffset, 4096);
  for (let i = 0; i < 512; i++) dv.setUint32(i * 8, (base + i * 4096) | flags, true);
  const pdeAt = PAGE_TABLES + 8192 + (base >>> 21) * 8;
  m.mem.slice(pdeAt, 8).set([0, 0, 0, 0, 0, 0, 0, 0]);
  m.mem.lowView.setUint32(pdeAt, ptAt | flags, true);
  m.cpu.flushTlb(true);
  return ptAt;
}

function setPresent(m: Machine, ptAt: number, index: number, present: boolean): void {
  const dv = m.mem.lowView;
  const off = ptAt + index * 8;
  const v = dv.getUint32(off, true);
  dv.setUint32(off, present ? v | C.PTE_P : v & ~C.PTE_P, true);
  m.cpu.flushTlb(true);
}

test('call, push imm, pop, ret and jmp in 64-bit mode', () => {
  const m = longModeMachine();
  // call f; jmp end; f: push 7; pop rax; ret; end:
  runCode(m, hexBytes('e8 02 00 00 00 eb 04 6a 07 58 c3'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(reg(m, RAX), 7n);
  assert.equal(reg(m, RSP), BigInt(STACK_TOP));
  assert.equal(m.cpu.rip, CODE + 11);
});

test('call pushes an 8-byte return address; ret imm16 releases parameters', () => {
  const m = longModeMachine();
  // call +0 (to the next instruction), then inspect the stack
  runCode(m, hexBytes('e8 00 00 00 00'));
  assert.equal(reg(m, RSP), BigInt(STACK_TOP - 8));
  assert.equal(m.cpu.peekStack(0, 8), CODE + 5);
  assert.equal(m.cpu.hi, 0);
  // ret 16: pops the return address then adds 16 to RSP
  setReg(m, RSP, STACK_TOP - 64);
  const sp = STACK_TOP - 64;
  m.cpu.writeLin(sp, 8, CODE + 0x100, 0);
  runCode(m, hexBytes('c2 10 00'), { maxSteps: 1 });
  assert.equal(m.cpu.rip, CODE + 0x100);
  assert.equal(reg(m, RSP), BigInt(sp + 8 + 16));
});

test('push/pop registers: REX.B, push rsp pushes the old value, pop rsp loads the popped value', () => {
  const m = longModeMachine();
  setReg(m, R9, 0x1122334455667788n);
  // push r9; pop r12
  runCode(m, hexBytes('41 51 41 5c'));
  assert.equal(reg(m, R12), 0x1122334455667788n);
  // push rsp; pop rsp
  runCode(m, hexBytes('54 5c'));
  assert.equal(reg(m, RSP), BigInt(STACK_TOP));
  // 66 push imm16 (16-bit push in 64-bit mode), then pop rax with 66: ax = 0x1234
  setReg(m, RAX, -1);
  runCode(m, hexBytes('66 68 34 12 66 58'));
  assert.equal(reg(m, RAX), 0xffffffffffff1234n);
  assert.equal(reg(m, RSP), BigInt(STACK_TOP));
  // push -1 (6A FF) is sign-extended to 64 bits
  runCode(m, hexBytes('6a ff 58'));
  assert.equal(reg(m, RAX), 0xffffffffffffffffn);
});

test('64-bit push/pop/call/ret carry RSP across a 4 GiB boundary', () => {
  const m = longModeMachine();
  // Map 0xffe00000 (2 MiB page) to physical 0x600000 through a new PD for the 3-4 GiB slot.
  const dv = m.mem.lowView;
  const flags = C.PTE_P | C.PTE_RW | C.PTE_US;
  dv.setUint32(PAGE_TABLES + 4096 + 3 * 8, 0x40000 | flags, true);
  dv.setUint32(0x40000 + 511 * 8, 0x600000 | flags | C.PTE_PS, true);
  m.cpu.flushTlb(true);
  setReg(m, RSP, 0x100000000n);
  setReg(m, RAX, 0x1122334455667788n);
  // push rax
  runCode(m, hexBytes('50'));
  assert.equal(reg(m, RSP), 0xfffffff8n);
  assert.equal(m.mem.lowView.getBigUint64(0x7ffff8, true), 0x1122334455667788n);
  // pop rbx
  runCode(m, hexBytes('5b'));
  assert.equal(reg(m, RBX), 0x1122334455667788n);
  assert.equal(reg(m, RSP), 0x100000000n);
  // call +0 pushes across the boundary; ret pops back over it
  runCode(m, hexBytes('e8 00 00 00 00'));
  assert.equal(reg(m, RSP), 0xfffffff8n);
  m.cpu.writeLin(0xfffffff8, 8, CODE + 0x20, 0);
  runCode(m, hexBytes('c3'), { maxSteps: 1 });
  assert.equal(m.cpu.rip, CODE + 0x20);
  assert.equal(reg(m, RSP), 0x100000000n);
});

test('pop r/m with rSP as base uses the incremented rSP', () => {
  const m = longModeMachine();
  // push 0x11; push 0x22; pop qword ptr [rsp]   ; SDM POP: the address is computed after RSP is incremented
  runCode(m, hexBytes('6a 11 6a 22 8f 04 24'));
  assert.equal(reg(m, RSP), BigInt(STACK_TOP - 8));
  assert.equal(m.cpu.peekStack(0, 8), 0x22);
});

test('FF /2, FF /4 and FF /6: indirect call, jmp and push r/m', () => {
  const m = longModeMachine();
  m.cpu.writeLin(DATA, 8, CODE + 0x40, 0);
  setReg(m, RAX, DATA);
  // call qword ptr [rax]
  runCode(m, hexBytes('ff 10'), { maxSteps: 1 });
  assert.equal(m.cpu.rip, CODE + 0x40);
  assert.equal(m.cpu.peekStack(0, 8), CODE + 2);
  // jmp rax
  setReg(m, RAX, CODE + 0x80);
  runCode(m, hexBytes('ff e0'), { maxSteps: 1 });
  assert.equal(m.cpu.rip, CODE + 0x80);
  // push qword ptr [0x400000]; pop rbx
  m.cpu.writeLin(0x400000, 8, 0x55667788, 0x11223344);
  runCode(m, hexBytes('ff 34 25 00 00 40 00 5b'));
  assert.equal(reg(m, RBX), 0x1122334455667788n);
  // a non-canonical target raises #GP at the jmp, RIP unchanged
  setReg(m, RAX, 0x0000800000000000n);
  runCode(m, hexBytes('ff e0'), { maxSteps: 1 });
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(m.cpu.rip, CODE);
});

test('Jcc rel8 and rel32 follow the condition codes', () => {
  const combos = [0, C.CF, C.ZF, C.SF, C.OF, C.PF, C.SF | C.OF, C.ZF | C.CF, C.SF | C.ZF];
  for (const flags of combos) {
    const cf = !!(flags & C.CF), zf = !!(flags & C.ZF), sf = !!(flags & C.SF), of = !!(flags & C.OF), pf = !!(flags & C.PF);
    const base = [of, cf, zf, cf || zf, sf, pf, sf !== of, zf || sf !== of];
    for (let cc = 0; cc < 16; cc++) {
      const expected = cc & 1 ? !base[cc >> 1] : base[cc >> 1];
      const m = longModeMachine();
      m.cpu.setArith(flags);
      // j<cc> +0x10
      runCode(m, [0x70 + cc, 0x10], { maxSteps: 1 });
      assert.equal(m.cpu.rip, CODE + 2 + (expected ? 0x10 : 0), `rel8 cc=${cc} flags=${flags}`);
      m.cpu.setArith(flags);
      // j<cc> -0x100 (rel32)
      runCode(m, [0x0f, 0x80 + cc, 0x00, 0xff, 0xff, 0xff], { maxSteps: 1 });
      assert.equal(m.cpu.rip, CODE + 6 + (expected ? -0x100 : 0), `rel32 cc=${cc} flags=${flags}`);
    }
  }
});

test('loop uses RCX, ECX or CX by address size', () => {
  const m = longModeMachine();
  // l: loop l   (64-bit counter)
  setReg(m, RCX, 3);
  runCode(m, hexBytes('e2 fe'));
  assert.equal(reg(m, RCX), 0n);
  // a 64-bit counter borrows into the high half and keeps looping
  setReg(m, RCX, 0x100000000n);
  runCode(m, hexBytes('e2 fe'), { maxSteps: 1 });
  assert.equal(reg(m, RCX), 0xffffffffn);
  assert.equal(m.cpu.rip, CODE);
  // l: addr32 loop l  (ECX; the 32-bit write zero-extends RCX)
  setReg(m, RCX, 0x500000003n);
  runCode(m, hexBytes('67 e2 fd'));
  assert.equal(reg(m, RCX), 0n);
  // jrcxz / jecxz
  setReg(m, RCX, 0x100000000n);
  runCode(m, hexBytes('e3 10'), { maxSteps: 1 });
  assert.equal(m.cpu.rip, CODE + 2, 'jrcxz not taken: RCX != 0');
  runCode(m, hexBytes('67 e3 10'), { maxSteps: 1 });
  assert.equal(m.cpu.rip, CODE + 3 + 0x10, 'jecxz taken: ECX == 0');
  // loope / loopne stop on ZF
  setReg(m, RCX, 10);
  m.cpu.setArith(C.ZF);
  runCode(m, hexBytes('e0 fe'), { maxSteps: 5 }); // loopne: ZF=1 -> falls through at once
  assert.equal(reg(m, RCX), 9n);
  setReg(m, RCX, 10);
  runCode(m, hexBytes('e1 fe')); // loope: ZF=1 -> loops until RCX = 0
  assert.equal(reg(m, RCX), 0n);
});

test('16-bit code: call/ret use 2-byte slots, loop counts CX, addr32 loop counts ECX', () => {
  const m = realModeMachine();
  // call f; hlt; f: ret
  runCode(m, hexBytes('e8 01 00 f4 c3'), { at: 0x1000, maxSteps: 1 });
  assert.equal(m.cpu.rip, 0x1004);
  assert.equal(reg(m, RSP), 0x7ffen);
  assert.equal(m.cpu.readLin(0x7ffe, 2), 0x1003);
  setReg(m, RSP, 0x8000);
  runCode(m, hexBytes('e8 01 00 f4 c3'), { at: 0x1000 });
  assert.equal(m.cpu.halted, true);
  assert.equal(m.cpu.rip, 0x1004);
  assert.equal(reg(m, RSP), 0x8000n);
  m.cpu.halted = false;
  // l: loop l with ECX = 0x00010002: only CX counts
  setReg(m, RCX, 0x00010002);
  runCode(m, hexBytes('e2 fe'), { at: 0x1000 });
  assert.equal(reg(m, RCX), 0x00010000n);
  // addr32 loop +0 with ECX = 0x00010000: ECX counts -> 0x0000ffff
  setReg(m, RCX, 0x00010000);
  runCode(m, hexBytes('67 e2 00'), { at: 0x1000 });
  assert.equal(reg(m, RCX), 0x0000ffffn);
  // jmp wraps IP at 64 KiB: jmp short +0x10 from 0xfffc
  runCode(m, hexBytes('eb 10'), { at: 0xfffc, maxSteps: 1 });
  assert.equal(m.cpu.rip, (0xfffe + 0x10) & 0xffff);
});

test('rep stos: unaligned qwords across pages, byte fill, DF=1, and the 16-bit DI wrap', () => {
  const m = longModeMachine();
  const start = DATA + 4096 - 20;
  m.mem.slice(DATA, 5 * 4096).fill(0xee);
  setReg(m, RAX, 0x1122334455667788n);
  setReg(m, RDI, start);
  setReg(m, RCX, 1000);
  // rep stosq
  runCode(m, hexBytes('f3 48 ab'));
  assert.equal(reg(m, RCX), 0n);
  assert.equal(reg(m, RDI), BigInt(start + 8000));
  const got = m.mem.read(start - 1, 8002);
  assert.equal(got[0], 0xee);
  assert.equal(got[8001], 0xee);
  for (let k = 0; k < 1000; k++) {
    const v = new DataView(got.buffer, got.byteOffset + 1 + 8 * k, 8).getBigUint64(0, true);
    if (v !== 0x1122334455667788n) assert.fail(`qword ${k} = ${v.toString(16)}`);
  }
  // rep stosb with a count that is not a page multiple
  setReg(m, RAX, 0x5a);
  m.mem.slice(DATA + 0x10000, 0x4000).fill(0xee);
  setReg(m, RDI, DATA + 0x10000 + 10);
  setReg(m, RCX, 9000);
  runCode(m, hexBytes('f3 aa'));
  assert.ok(m.mem.read(DATA + 0x10000 + 10, 9000).every((b) => b === 0x5a));
  assert.equal(m.mem.read(DATA + 0x10000 + 9010, 1)[0], 0xee);
  assert.equal(m.mem.read(DATA + 0x10000 + 9, 1)[0], 0xee);
  // std; rep stosd: downwards from the last dword
  setReg(m, RAX, 0xcafef00d);
  setReg(m, RDI, DATA + 4096 + 4);
  setReg(m, RCX, 4);
  runCode(m, hexBytes('fd f3 ab fc'));
  assert.equal(reg(m, RDI), BigInt(DATA + 4096 + 4 - 16));
  for (let k = 0; k < 4; k++) assert.equal(m.cpu.readLin(DATA + 4096 + 4 - 4 * k, 4) >>> 0, 0xcafef00d);
  assert.equal(m.cpu.flags & C.DF, 0);

  // Real mode: DI wraps inside the 64 KiB segment
  const r = realModeMachine();
  r.cpu.loadSegmentReal(C.ES, 0x2000);
  r.mem.slice(0x20000, 0x10000).fill(0);
  setReg(r, RAX, 0x77);
  setReg(r, RDI, 0xfffe);
  setReg(r, RCX, 4);
  runCode(r, hexBytes('f3 aa'), { at: 0x1000 });
  assert.equal(reg(r, RDI), 2n);
  assert.deepEqual([...r.mem.read(0x2fffe, 2), ...r.mem.read(0x20000, 3)], [0x77, 0x77, 0x77, 0x77, 0]);
  assert.equal(r.mem.read(0x30000, 1)[0], 0, 'nothing written past the segment');
});

test('rep movs: across pages, forward overlap replicates, std copies backwards', () => {
  const m = longModeMachine();
  const src = DATA + 100, dst = DATA + 3 * 4096 - 50;
  const data = new Uint8Array(10000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  m.mem.write(src, data);
  setReg(m, RSI, src);
  setReg(m, RDI, dst);
  setReg(m, RCX, 10000 / 8);
  // rep movsq
  runCode(m, hexBytes('f3 48 a5'));
  assert.deepEqual(m.mem.read(dst, 10000), data);
  assert.equal(reg(m, RSI), BigInt(src + 10000));
  assert.equal(reg(m, RDI), BigInt(dst + 10000));
  // Forward overlap by one byte: rep movsb copies the first byte along (the classic memset-by-movsb)
  m.mem.write(DATA, Uint8Array.from([9, 1, 2, 3, 4, 5, 6, 7]));
  setReg(m, RSI, DATA);
  setReg(m, RDI, DATA + 1);
  setReg(m, RCX, 7);
  runCode(m, hexBytes('f3 a4'));
  assert.deepEqual([...m.mem.read(DATA, 8)], [9, 9, 9, 9, 9, 9, 9, 9]);
  // Overlap by 8 with movsq (distance >= element): replicates the first qword
  const q = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, ...new Array(24).fill(0)]);
  m.mem.write(DATA, q);
  setReg(m, RSI, DATA);
  setReg(m, RDI, DATA + 8);
  setReg(m, RCX, 3);
  runCode(m, hexBytes('f3 48 a5'));
  assert.deepEqual([...m.mem.read(DATA, 32)], [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
  // std; rep movsb; cld: memmove upwards (overlapping) done from the end
  m.mem.write(DATA, Uint8Array.from([1, 2, 3, 4, 5, 0, 0]));
  setReg(m, RSI, DATA + 4);
  setReg(m, RDI, DATA + 6);
  setReg(m, RCX, 5);
  runCode(m, hexBytes('fd f3 a4 fc'));
  assert.deepEqual([...m.mem.read(DATA, 7)], [1, 2, 1, 2, 3, 4, 5]);
});

test('rep movsq/stosq with elements straddling pages: each such element alone the slow way, the rest in one fast step', () => {
  // Linux's copy_user_generic_string aligns only the destination: a source 8-byte misaligned has an element across
  // every source page boundary. Such an element must not send the rest of the step down the element-by-element path.
  const m = longModeMachine();
  const src = DATA + 3, dst = DATA + 0x20000 + 5;
  const data = new Uint8Array(64 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
  m.mem.write(src, data);
  setReg(m, RSI, src);
  setReg(m, RDI, dst);
  setReg(m, RCX, data.length / 8);
  const before = m.cpu.instructions;
  runCode(m, hexBytes('f3 48 a5'));
  assert.equal(m.cpu.lastException, -1);
  assert.deepEqual(m.mem.read(dst, data.length), data);
  assert.equal(reg(m, RCX), 0n);
  assert.equal(reg(m, RSI), BigInt(src + data.length));
  assert.equal(reg(m, RDI), BigInt(dst + data.length));
  // 64 KiB in one step (FAST_CHUNK is 256 KiB); the old path took a step per 1024 slow elements after each straddle
  assert.equal(m.cpu.instructions - before, 1, 'one execution of the instruction');
  // rep stosq from a misaligned destination over 12 pages
  m.mem.slice(DATA + 0x40000, 0xd000).fill(0);
  setReg(m, RAX, 0x1122334455667788n);
  setReg(m, RDI, DATA + 0x40000 + 6);
  setReg(m, RCX, 6000);
  const before2 = m.cpu.instructions;
  runCode(m, hexBytes('f3 48 ab'));
  assert.equal(m.cpu.lastException, -1);
  const out = m.mem.read(DATA + 0x40000, 6 + 48000 + 2);
  assert.deepEqual([...out.subarray(0, 6)], [0, 0, 0, 0, 0, 0]);
  for (let k = 0; k < 6000; k++) assert.deepEqual([...out.subarray(6 + 8 * k, 14 + 8 * k)], [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], `element ${k}`);
  assert.deepEqual([...out.subarray(48006)], [0, 0]);
  assert.equal(m.cpu.instructions - before2, 1);
});

test('rep movsb faulting in the middle leaves restartable state and resumes', () => {
  const m = longModeMachine();
  const pt = split2M(m, 0x400000, 0x30000);
  const src = 0x400000 + 0x100;
  const dst = 0x400000 + 3 * 4096 - 0x300; // the page at 0x403000 is unmapped
  setPresent(m, pt, 3, false);
  const data = new Uint8Array(5000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
  m.mem.write(src, data);
  setReg(m, RSI, src);
  setReg(m, RDI, dst);
  setReg(m, RCX, 5000);
  runCode(m, hexBytes('f3 a4'));
  assert.equal(m.cpu.lastException, C.EXC_PF);
  assert.equal(m.cpu.cr2, 0x403000);
  assert.equal(m.cpu.faultError, C.PFEC_W);
  assert.equal(m.cpu.rip, CODE, 'RIP at the rep movsb');
  assert.equal(reg(m, RCX), 5000n - 0x300n);
  assert.equal(reg(m, RSI), BigInt(src + 0x300));
  assert.equal(reg(m, RDI), 0x403000n);
  assert.deepEqual(m.mem.read(dst, 0x300), data.subarray(0, 0x300));
  // The "page fault handler" maps the page; executing the instruction again finishes the copy.
  setPresent(m, pt, 3, true);
  runCode(m, hexBytes('f3 a4'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(reg(m, RCX), 0n);
  assert.deepEqual(m.mem.read(dst, 5000), data);
});

test('rep stosq with an element straddling an unmapped page faults before writing it', () => {
  const m = longModeMachine();
  const pt = split2M(m, 0x400000, 0x30000);
  setPresent(m, pt, 1, false);
  m.mem.slice(0x400000, 0x3000).fill(0);
  setReg(m, RAX, -1);
  setReg(m, RDI, 0x401000 - 12);
  setReg(m, RCX, 4);
  runCode(m, hexBytes('f3 48 ab'));
  assert.equal(m.cpu.lastException, C.EXC_PF);
  assert.equal(m.cpu.cr2, 0x401000);
  assert.equal(reg(m, RCX), 3n, 'one qword stored');
  assert.equal(reg(m, RDI), BigInt(0x401000 - 4));
  assert.deepEqual([...m.mem.read(0x401000 - 4, 4)], [0, 0, 0, 0], 'the straddling element was not half-written');
});

test('repne scasb, repe cmpsb, lods', () => {
  const m = longModeMachine();
  m.mem.write(DATA, new TextEncoder().encode('hello, world\0'));
  // repne scasb with AL = 0: strlen
  setReg(m, RAX, 0);
  setReg(m, RDI, DATA);
  setReg(m, RCX, -1);
  runCode(m, hexBytes('f2 ae'));
  assert.equal(reg(m, RDI), BigInt(DATA + 13));
  assert.equal(reg(m, RCX), BigInt.asUintN(64, -1n - 13n));
  assert.equal(m.cpu.getZF(), true);
  // repe cmpsb: first difference at index 7
  m.mem.write(DATA + 0x100, new TextEncoder().encode('hello, World'));
  setReg(m, RSI, DATA);
  setReg(m, RDI, DATA + 0x100);
  setReg(m, RCX, 12);
  runCode(m, hexBytes('f3 a6'));
  assert.equal(reg(m, RCX), 4n);
  assert.equal(reg(m, RSI), BigInt(DATA + 8));
  assert.equal(m.cpu.getZF(), false);
  assert.equal(m.cpu.getCF(), false, "'w' > 'W' unsigned");
  // rep with RCX = 0 does nothing and leaves flags alone
  m.cpu.setArith(C.CF);
  setReg(m, RCX, 0);
  runCode(m, hexBytes('f3 a6'));
  assert.equal(m.cpu.getCF(), true);
  assert.equal(reg(m, RSI), BigInt(DATA + 8));
  // lodsb; rep lodsw (66)
  setReg(m, RSI, DATA);
  runCode(m, hexBytes('ac'));
  assert.equal(Number(reg(m, RAX) & 0xffn), 'h'.charCodeAt(0));
  setReg(m, RCX, 2);
  runCode(m, hexBytes('66 f3 ad'));
  assert.equal(Number(reg(m, RAX) & 0xffffn), 'l'.charCodeAt(0) | ('o'.charCodeAt(0) << 8));
  assert.equal(reg(m, RSI), BigInt(DATA + 5));
});

class RecordingPorts implements PortDevice {
  writes: [number, number, number][] = [];
  next = 0x40;
  ioRead(port: number, size: 1 | 2 | 4): number { void port; return (this.next++) & (size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff); }
  ioWrite(port: number, size: 1 | 2 | 4, value: number): void { this.writes.push([port, size, value]); }
}

test('in/out and rep outs/ins go through the port bus', () => {
  const m = longModeMachine();
  const dev = new RecordingPorts();
  m.ports.register(0x70, 2, dev, 'test');
  setReg(m, RAX, 0x12345678);
  // out 0x70, al; in eax, 0x71
  runCode(m, hexBytes('e6 70 e5 71'));
  assert.deepEqual(dev.writes, [[0x70, 1, 0x78]]);
  assert.equal(reg(m, RAX), 0x40n, 'in eax zero-extends into RAX');
  // rep outsb from memory to port DX
  m.mem.write(DATA, Uint8Array.from([1, 2, 3]));
  setReg(m, RDX, 0x71);
  setReg(m, RSI, DATA);
  setReg(m, RCX, 3);
  runCode(m, hexBytes('f3 6e'));
  assert.deepEqual(dev.writes.slice(1), [[0x71, 1, 1], [0x71, 1, 2], [0x71, 1, 3]]);
  // rep insw into memory
  setReg(m, RDI, DATA + 0x10);
  setReg(m, RCX, 2);
  runCode(m, hexBytes('66 f3 6d'));
  assert.deepEqual([...m.mem.read(DATA + 0x10, 4)], [0x41, 0, 0x42, 0]);
  // unclaimed ports read as all ones
  setReg(m, RDX, 0x300);
  runCode(m, hexBytes('ec'));
  assert.equal(Number(reg(m, RAX) & 0xffn), 0xff);
});

test('at CPL 3 with IOPL 0, port access follows the TSS I/O permission bitmap', () => {
  const m = longModeMachine(3);
  const dev = new RecordingPorts();
  m.ports.register(0x60, 0x20, dev, 'test');
  // A 64-bit TSS at 0x50000 whose bitmap (at offset 0x68) allows ports 0x70-0x77 only.
  const tss = 0x50000;
  const bytes = m.mem.slice(tss, 0x68 + 0x2000 + 1);
  bytes.fill(0xff);
  bytes.fill(0, 0, 0x68);
  new DataView(bytes.buffer, bytes.byteOffset).setUint16(0x66, 0x68, true);
  bytes[0x68 + (0x70 >> 3)] = 0x00;
  m.cpu.trBase = tss;
  m.cpu.trLimit = 0x68 + 0x2000;
  m.cpu.trAttr = C.SEG_P | 11;
  // out 0x70, al is allowed
  runCode(m, hexBytes('e6 70'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(dev.writes.length, 1);
  // in eax, 0x76 covers 0x76-0x79 and 0x78 is denied
  runCode(m, hexBytes('e5 76'));
  assert.equal(m.cpu.lastException, C.EXC_GP);
  // out 0x68, al is denied
  runCode(m, hexBytes('e6 68'));
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(dev.writes.length, 1);
  // IOPL 3 lets CPL 3 use every port without the bitmap
  m.cpu.flags |= C.IOPL;
  runCode(m, hexBytes('e6 68'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(dev.writes.length, 2);
});

test('pushf/popf: privilege filtering at CPL 3 and CPL 0, VM and RF never popped', () => {
  const u = longModeMachine(3);
  u.cpu.setFlagsValue(C.FLAGS_FIXED | C.IF);
  const value = C.CF | C.ZF | C.DF | C.OF | C.NT | C.AC | C.ID | C.IOPL | C.VM | C.RF | C.VIF | C.VIP; // IF clear
  // push imm32; popfq
  runCode(u, [0x68, value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, 0, 0x9d]);
  assert.equal(u.cpu.lastException, -1);
  const f = u.cpu.getFlags();
  assert.equal(f & (C.CF | C.ZF | C.DF | C.OF | C.NT | C.AC | C.ID), C.CF | C.ZF | C.DF | C.OF | C.NT | C.AC | C.ID);
  assert.equal(f & C.IF, C.IF, 'IF unchanged at CPL 3 > IOPL');
  assert.equal(f & C.IOPL, 0, 'IOPL unchanged below CPL 0');
  assert.equal(f & (C.VM | C.RF | C.VIF | C.VIP), 0);
  // pushfq stores the image with VM/RF clear; pop rax
  runCode(u, hexBytes('9c 58'));
  assert.equal(Number(u.cpu.getGpr(RAX)), f);

  const k = longModeMachine(0);
  k.cpu.setFlagsValue(C.FLAGS_FIXED);
  k.cpu.eventPending = false;
  const v2 = C.IF | C.IOPL;
  runCode(k, [0x68, v2 & 0xff, (v2 >> 8) & 0xff, 0, 0, 0x9d]);
  assert.equal(k.cpu.getFlags() & (C.IF | C.IOPL), C.IF | C.IOPL);
  assert.equal(k.cpu.eventPending, true, 'IF 0 -> 1 asks for an event check');
  // 66 popf only replaces the low 16 bits
  k.cpu.setFlagsValue(C.FLAGS_FIXED | C.AC);
  runCode(k, hexBytes('66 68 01 00 66 9d'));
  assert.equal(k.cpu.getFlags() & (C.AC | C.CF | C.IF), C.AC | C.CF);
});

test('pushf/popf in virtual-8086 mode with IOPL < 3 raise #GP', () => {
  const m = realModeMachine();
  m.cpu.cr0 |= C.CR0_PE;
  m.cpu.setFlagsValue(C.FLAGS_FIXED | C.VM);
  m.cpu.loadSegmentRaw(C.CS, 0, 0, 0xffff, C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | 3);
  assert.equal(m.cpu.cpl, 3);
  runCode(m, hexBytes('9c'), { at: 0x1000 });
  assert.equal(m.cpu.lastException, C.EXC_GP);
  runCode(m, hexBytes('9d'), { at: 0x1000 });
  assert.equal(m.cpu.lastException, C.EXC_GP);
  runCode(m, hexBytes('fa'), { at: 0x1000 });
  assert.equal(m.cpu.lastException, C.EXC_GP, 'cli too');
  // with IOPL 3 pushf works and popf cannot change IOPL
  m.cpu.setFlagsValue(C.FLAGS_FIXED | C.VM | C.IOPL);
  runCode(m, hexBytes('68 01 00 9d'), { at: 0x1000 });
  assert.equal(m.cpu.lastException, -1);
  assert.equal(m.cpu.getFlags() & (C.IOPL | C.CF | C.VM), C.IOPL | C.CF | C.VM);
});

test('cli/sti/hlt privilege, the STI interrupt shadow', () => {
  const u = longModeMachine(3);
  runCode(u, hexBytes('fa'));
  assert.equal(u.cpu.lastException, C.EXC_GP);
  runCode(u, hexBytes('fb'));
  assert.equal(u.cpu.lastException, C.EXC_GP);
  runCode(u, hexBytes('f4'));
  assert.equal(u.cpu.lastException, C.EXC_GP);
  assert.equal(u.cpu.halted, false);
  const k = longModeMachine(0);
  runCode(k, hexBytes('fa'));
  assert.equal(k.cpu.flags & C.IF, 0);
  k.cpu.eventPending = false;
  runCode(k, hexBytes('fb'));
  assert.equal(k.cpu.flags & C.IF, C.IF);
  // No local APIC, so no interrupt can be pending: no shadow and no event check (ops/interrupt-flag.ts).
  assert.equal(k.cpu.interruptShadow, false);
  assert.equal(k.cpu.eventPending, false);
  runCode(k, hexBytes('f4'));
  assert.equal(k.cpu.halted, true);
  assert.equal(k.cpu.rip, CODE + 1);
  // With an interrupt pending at the APIC, STI opens the shadow and asks for an event check; with none (an APIC
  // that has nothing to give) it only sets IF. STI with IF already set changes nothing.
  for (const pending of [true, false]) {
    const p = longModeMachine(0);
    let asked = 0;
    (p.cpu.env as { lapic?: unknown }).lapic = {
      hasInterrupt: () => { asked++; return pending; }, acknowledge: () => 0x30, readApicBaseMsr: () => 0xfee00900n,
      writeApicBaseMsr: () => {}, mmioRead: () => 0, mmioWrite: () => {},
    };
    runCode(p, hexBytes('fa'));
    p.cpu.eventPending = false;
    runCode(p, hexBytes('fb'));
    assert.equal(p.cpu.flags & C.IF, C.IF);
    assert.equal(p.cpu.interruptShadow, pending, `pending ${pending}: shadow`);
    assert.equal(p.cpu.eventPending, pending, `pending ${pending}: event check`);
    assert.equal(asked, 1);
    p.cpu.interruptShadow = false; p.cpu.eventPending = false;
    runCode(p, hexBytes('fb'));
    assert.equal(p.cpu.interruptShadow, false, 'STI with IF set');
    assert.equal(p.cpu.eventPending, false, 'STI with IF set');
  }
});

test('enter/leave, lahf/sahf, xlat, flag instructions', () => {
  const m = longModeMachine();
  setReg(m, RBP, 0x1234);
  // enter 16, 0; leave
  runCode(m, hexBytes('c8 10 00 00'));
  assert.equal(reg(m, RBP), BigInt(STACK_TOP - 8));
  assert.equal(reg(m, RSP), BigInt(STACK_TOP - 8 - 16));
  assert.equal(m.cpu.peekStack(16, 8), 0x1234);
  runCode(m, hexBytes('c9'));
  assert.equal(reg(m, RBP), 0x1234n);
  assert.equal(reg(m, RSP), BigInt(STACK_TOP));
  // enter 8, 2: copies one outer frame pointer and pushes the new one
  setReg(m, RBP, STACK_TOP - 0x100);
  m.cpu.writeLin(STACK_TOP - 0x108, 8, 0xabcdef, 0);
  runCode(m, hexBytes('c8 08 00 02'));
  const frame = STACK_TOP - 8;
  assert.equal(reg(m, RBP), BigInt(frame));
  assert.equal(m.cpu.readLin(frame - 8, 8), 0xabcdef);
  assert.equal(m.cpu.readLin(frame - 16, 8), frame);
  assert.equal(reg(m, RSP), BigInt(frame - 16 - 8));
  // lahf / sahf
  m.cpu.setArith(C.CF | C.ZF | C.OF);
  runCode(m, hexBytes('9f'));
  assert.equal(Number((reg(m, RAX) >> 8n) & 0xffn), C.CF | C.ZF | 2);
  setReg(m, RAX, (C.SF | C.PF) << 8);
  runCode(m, hexBytes('9e'));
  assert.equal(m.cpu.getFlags() & C.ARITH_FLAGS, C.SF | C.PF | C.OF, 'SAHF keeps OF');
  // xlat
  m.mem.write(DATA, Uint8Array.from([10, 11, 12, 13]));
  setReg(m, RBX, DATA);
  setReg(m, RAX, 0xff03);
  runCode(m, hexBytes('d7'));
  assert.equal(reg(m, RAX), 0xff0dn);
  // stc; cmc; cmc; std; cld
  runCode(m, hexBytes('f9 f5'));
  assert.equal(m.cpu.getCF(), false);
  runCode(m, hexBytes('f5 fd'));
  assert.equal(m.cpu.getCF(), true);
  assert.equal(m.cpu.flags & C.DF, C.DF);
  runCode(m, hexBytes('fc f8'));
  assert.equal(m.cpu.flags & C.DF, 0);
  assert.equal(m.cpu.getCF(), false);
});

test('BCD adjustments in 16-bit code, #UD in 64-bit mode; multi-byte NOPs and UD2', () => {
  const r = realModeMachine();
  setReg(r, RAX, 0xae); // 0x79 + 0x35 in binary
  r.cpu.setArith(0);
  runCode(r, hexBytes('27'), { at: 0x1000 }); // daa
  assert.equal(reg(r, RAX) & 0xffn, 0x14n);
  assert.equal(r.cpu.getCF(), true);
  setReg(r, RAX, 0x4f);
  runCode(r, hexBytes('d4 0a'), { at: 0x1000 }); // aam
  assert.equal(reg(r, RAX) & 0xffffn, 0x0709n);
  runCode(r, hexBytes('d5 0a'), { at: 0x1000 }); // aad
  assert.equal(reg(r, RAX) & 0xffffn, 0x004fn);
  runCode(r, hexBytes('d4 00'), { at: 0x1000 }); // aam 0
  assert.equal(r.cpu.lastException, C.EXC_DE);
  const m = longModeMachine();
  runCode(m, hexBytes('27'));
  assert.equal(m.cpu.lastException, C.EXC_UD);
  // nop dword ptr [rax+rax*1]; endbr64; prefetchw [rax] (no memory access even if RAX is wild)
  setReg(m, RAX, 0x7fff00000000n);
  runCode(m, hexBytes('0f 1f 04 00 f3 0f 1e fa 0f 0d 08'));
  assert.equal(m.cpu.lastException, -1);
  assert.equal(m.cpu.rip, CODE + 11);
  runCode(m, hexBytes('0f 0b'));
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('pusha/popa in 16-bit code (and #UD in 64-bit mode)', () => {
  const r = realModeMachine();
  for (let i = 0; i < 8; i++) if (i !== RSP) setReg(r, i, 0x1100 + i);
  // pusha
  runCode(r, hexBytes('60'), { at: 0x1000 });
  assert.equal(reg(r, RSP), BigInt(0x8000 - 16));
  assert.equal(r.cpu.readLin(0x8000 - 2, 2), 0x1100, 'AX pushed first');
  assert.equal(r.cpu.readLin(0x8000 - 10, 2), 0x8000, 'the original SP');
  assert.equal(r.cpu.readLin(0x8000 - 16, 2), 0x1107, 'DI pushed last');
  for (let i = 0; i < 8; i++) if (i !== RSP) setReg(r, i, 0);
  r.mem.write(0x8000 - 10, Uint8Array.of(0x34, 0x12)); // the SP slot is skipped by popa
  // popa
  runCode(r, hexBytes('61'), { at: 0x1000 });
  for (let i = 0; i < 8; i++) if (i !== RSP) assert.equal(reg(r, i), BigInt(0x1100 + i));
  assert.equal(reg(r, RSP), 0x8000n);
  const m = longModeMachine();
  runCode(m, hexBytes('60'));
  assert.equal(m.cpu.lastException, C.EXC_UD);
});
