// Integer ALU instructions of the software CPU in 64-bit mode: hand-assembled snippets (GNU as, intel syntax,
// in the comments) with results and flags from the Intel SDM; where the SDM leaves a flag undefined, the values
// are what the reference host (AMD EPYC) produced natively for the same snippet.
import test from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, runCode, hexBytes, DATA, PAGE_TABLES, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';

const CF = C.CF, PF = C.PF, AF = C.AF, ZF = C.ZF, SF = C.SF, OF = C.OF, ARITH = C.ARITH_FLAGS;

let shared: Machine | undefined;
/** One machine per file (fresh registers and flags per run) keeps the file fast. */
function machine(): Machine {
  shared ??= longModeMachine();
  return shared;
}

interface RunOpts {
  regs?: Record<number, bigint>;
  flags?: number;
}

/** Run `hex` from clean registers (RSP kept), with `regs` and arithmetic `flags` loaded first. */
function run(hex: string, opts: RunOpts = {}): Machine {
  const m = machine();
  const cpu = m.cpu;
  for (let i = 0; i < 16; i++) if (i !== RSP) cpu.setGpr(i, 0n);
  for (const [k, v] of Object.entries(opts.regs ?? {})) cpu.setGpr(Number(k), BigInt.asUintN(64, v));
  cpu.setFlagsValue(opts.flags ?? 0);
  runCode(m, hexBytes(hex));
  return m;
}

const reg = (m: Machine, i: number) => m.cpu.getGpr(i);
const flags = (m: Machine) => m.cpu.getFlags() & ARITH;
const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, R8 = 8;
const hex64 = (v: bigint) => '0x' + v.toString(16);

function expectRegs(m: Machine, want: Record<number, bigint>): void {
  assert.equal(m.cpu.lastException, -1, `unexpected exception ${m.cpu.lastException}`);
  for (const [k, v] of Object.entries(want)) assert.equal(hex64(reg(m, Number(k))), hex64(BigInt.asUintN(64, v)), `register ${k}`);
}

function expectFlags(m: Machine, want: number): void {
  const all: [number, string][] = [[CF, 'CF'], [PF, 'PF'], [AF, 'AF'], [ZF, 'ZF'], [SF, 'SF'], [OF, 'OF']];
  const names = (f: number) => all.filter(([b]) => f & b).map(([, n]) => n).join('|') || '-';
  assert.equal(names(flags(m)), names(want));
}

function memRead(m: Machine, addr: number, size: number): bigint {
  const b = m.mem.read(addr, size);
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

function memWrite(m: Machine, addr: number, size: number, v: bigint): void {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  m.mem.write(addr, b);
}

// ---------------------------------------------------------------------------------------------------------

test('add/adc/sub/sbb/cmp: carry, overflow, auxiliary carry and parity at the boundaries', () => {
  // 01 c8: add eax, ecx (0x7fffffff + 1: signed overflow; the upper half of RAX is cleared)
  let m = run('01 c8', { regs: { [RAX]: 0xdead_beef_7fff_ffffn, [RCX]: 1n } });
  expectRegs(m, { [RAX]: 0x8000_0000n });
  expectFlags(m, OF | SF | AF | PF);
  // 48 01 d8: add rax, rbx (all ones + 1)
  m = run('48 01 d8', { regs: { [RAX]: -1n, [RBX]: 1n } });
  expectRegs(m, { [RAX]: 0n });
  expectFlags(m, CF | ZF | AF | PF);
  // 10 c8: adc al, cl with CF=1: 0xff + 0 + 1 (the rest of RAX is kept)
  m = run('10 c8', { regs: { [RAX]: 0x1234_56ffn }, flags: CF });
  expectRegs(m, { [RAX]: 0x1234_5600n });
  expectFlags(m, CF | ZF | AF | PF);
  // 48 19 c8: sbb rax, rcx with CF=1: 0 - 0 - 1
  m = run('48 19 c8', { flags: CF });
  expectRegs(m, { [RAX]: -1n });
  expectFlags(m, CF | SF | AF | PF);
  // 48 19 c8: sbb rax, rcx: 0x8000000000000000 - 0 - 1 overflows
  m = run('48 19 c8', { regs: { [RAX]: 0x8000_0000_0000_0000n }, flags: CF });
  expectRegs(m, { [RAX]: 0x7fff_ffff_ffff_ffffn });
  expectFlags(m, OF | AF | PF);
  // 48 39 c8: cmp rax, rcx (only flags)
  m = run('48 39 c8', { regs: { [RAX]: 5n, [RCX]: 7n } });
  expectRegs(m, { [RAX]: 5n, [RCX]: 7n });
  expectFlags(m, CF | SF | AF);
  // 66 01 c8: add ax, cx merges into the low 16 bits
  m = run('66 01 c8', { regs: { [RAX]: 0x1111_2222_3333_ffffn, [RCX]: 2n } });
  expectRegs(m, { [RAX]: 0x1111_2222_3333_0001n });
  expectFlags(m, CF | AF);
  // 48 83 c0 ff: add rax, -1 (imm8 sign-extended to 64 bits)
  m = run('48 83 c0 ff', { regs: { [RAX]: 0x1_0000_0000n } });
  expectRegs(m, { [RAX]: 0xffff_ffffn });
  expectFlags(m, CF | PF);
  // 48 05 00 00 00 80: add rax, -0x80000000 (imm32 sign-extended)
  m = run('48 05 00 00 00 80', { regs: { [RAX]: 0n } });
  expectRegs(m, { [RAX]: 0xffff_ffff_8000_0000n });
  expectFlags(m, SF | PF);
  // 66 83 e8 01: sub ax, 1 from 0 (imm8 sign-extended to 16 bits only)
  m = run('66 83 e8 01', { regs: { [RAX]: 0xaaaa_0000n } });
  expectRegs(m, { [RAX]: 0xaaaa_ffffn });
  expectFlags(m, CF | SF | AF | PF);
});

test('logic ops clear CF and OF (and AF, as the host does); xor zeroes the whole register', () => {
  // 31 c0: xor eax, eax
  let m = run('31 c0', { regs: { [RAX]: -1n }, flags: CF | OF | AF });
  expectRegs(m, { [RAX]: 0n });
  expectFlags(m, ZF | PF);
  // 81 e1 01 00 00 80: and ecx, 0x80000001
  m = run('81 e1 01 00 00 80', { regs: { [RCX]: 0xffff_ffff_ffff_ffffn }, flags: CF | OF });
  expectRegs(m, { [RCX]: 0x8000_0001n });
  expectFlags(m, SF);
  // 48 0d 00 80 ff ff: or rax, 0xffffffffffff8000
  m = run('48 0d 00 80 ff ff', { regs: { [RAX]: 1n } });
  expectRegs(m, { [RAX]: 0xffff_ffff_ffff_8001n });
  expectFlags(m, SF);
  // a8 81: test al, 0x81 ; 48 85 c9: test rcx, rcx
  m = run('a8 81', { regs: { [RAX]: 0x80n }, flags: CF });
  expectFlags(m, SF);
  m = run('48 85 c9', { regs: { [RCX]: 0x8000_0000_0000_0000n } });
  expectFlags(m, SF | PF);
});

test('8-bit registers: AH..BH without REX, SPL..DIL and R8B.. with it', () => {
  // b4 12: mov ah, 0x12
  let m = run('b4 12', { regs: { [RAX]: 0xffff_ffffn } });
  expectRegs(m, { [RAX]: 0xffff_12ffn });
  // 40 b4 12: mov spl, 0x12 (with REX, encoding 4 is SPL)
  m = run('40 b4 12 48 89 e3', {}); // ...; mov rbx, rsp
  assert.equal(reg(m, RBX) & 0xffn, 0x12n);
  m.cpu.setGpr(RSP, 0x300000n);
  // 41 b1 34: mov r9b, 0x34
  m = run('41 b1 34', { regs: { 9: 0x1111n } });
  expectRegs(m, { 9: 0x1134n });
  // 86 c4: xchg ah, al ; 0f 92 c4: setc ah
  m = run('86 c4', { regs: { [RAX]: 0x1234n } });
  expectRegs(m, { [RAX]: 0x3412n });
  m = run('0f 92 c4', { regs: { [RAX]: 0xffffn }, flags: CF });
  expectRegs(m, { [RAX]: 0x01ffn });
  // 0f b6 c4: movzx eax, ah ; 40 0f b6 c6: movzx eax, sil
  m = run('0f b6 c4', { regs: { [RAX]: 0xffff_ffff_0000_ab00n } });
  expectRegs(m, { [RAX]: 0xabn });
  m = run('40 0f b6 c6', { regs: { 6: 0x1234n } });
  expectRegs(m, { [RAX]: 0x34n });
});

test('LEA computes exact 64-bit sums (beyond 2^53), 32- and 16-bit forms truncate', () => {
  // 48 8d 84 cb ff ff ff 7f: lea rax, [rbx+rcx*8+0x7fffffff]
  const rbx = 0xdead_beef_cafe_f00dn, rcx = 0x1234_5678_9abc_def1n;
  let m = run('48 8d 84 cb ff ff ff 7f', { regs: { [RBX]: rbx, [RCX]: rcx } });
  expectRegs(m, { [RAX]: BigInt.asUintN(64, rbx + rcx * 8n + 0x7fffffffn) });
  // 8d 44 4b ff: lea eax, [rbx+rcx*2-1] (64-bit address, 32-bit result zero-extended)
  m = run('8d 44 4b ff', { regs: { [RAX]: -1n, [RBX]: rbx, [RCX]: rcx } });
  expectRegs(m, { [RAX]: BigInt.asUintN(32, rbx + rcx * 2n - 1n) });
  // 66 8d 44 4b ff: lea ax, [rbx+rcx*2-1]
  m = run('66 8d 44 4b ff', { regs: { [RAX]: -1n, [RBX]: rbx, [RCX]: rcx } });
  expectRegs(m, { [RAX]: 0xffff_ffff_ffff_0000n | BigInt.asUintN(16, rbx + rcx * 2n - 1n) });
  // 67 48 8d 04 0b: lea rax, [ebx+ecx] (32-bit address size: wraps at 4 GiB)
  m = run('67 48 8d 04 0b', { regs: { [RBX]: 0xffff_ffffn, [RCX]: 2n } });
  expectRegs(m, { [RAX]: 1n });
  // 48 8d 05 10 00 00 00: lea rax, [rip+0x10]
  m = run('48 8d 05 10 00 00 00');
  expectRegs(m, { [RAX]: BigInt(0x100000 + 7 + 0x10) });
  // 8d c0: lea eax, eax (register operand) is #UD
  m = run('8d c0');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('RIP-relative operands are relative to the end of the instruction, after the immediate', () => {
  const m = machine();
  const target = 0x100000 + 10 + 0x100;
  memWrite(m, target, 4, 0x1000_0000n);
  // 81 05 00 01 00 00 78 56 34 12: add dword ptr [rip+0x100], 0x12345678 (10 bytes)
  run('81 05 00 01 00 00 78 56 34 12');
  assert.equal(memRead(m, target, 4), 0x2234_5678n);
  // c1 25 00 01 00 00 04: shl dword ptr [rip+0x100], 4 (7 bytes) -> target moves with the length
  const t2 = 0x100000 + 7 + 0x100;
  memWrite(m, t2, 4, 0x0123_4567n);
  run('c1 25 00 01 00 00 04');
  assert.equal(memRead(m, t2, 4), 0x1234_5670n);
  // 69 05 00 01 00 00 03 00 00 00: imul eax, dword ptr [rip+0x100], 3
  const t3 = 0x100000 + 10 + 0x100;
  memWrite(m, t3, 4, 7n);
  const r = run('69 05 00 01 00 00 03 00 00 00');
  expectRegs(r, { [RAX]: 21n });
});

test('MOV: imm64, moffs with a 64-bit offset, 32-bit zero extension, C7 sign-extends', () => {
  // 48 b8 f0 de bc 9a 78 56 34 12: movabs rax, 0x123456789abcdef0
  let m = run('48 b8 f0 de bc 9a 78 56 34 12');
  expectRegs(m, { [RAX]: 0x1234_5678_9abc_def0n });
  // b8 ff ff ff ff: mov eax, -1 -> zero-extended
  m = run('b8 ff ff ff ff', { regs: { [RAX]: 0x1234_0000_0000n } });
  expectRegs(m, { [RAX]: 0xffff_ffffn });
  // 48 c7 c0 ff ff ff ff: mov rax, -1 (imm32 sign-extended)
  m = run('48 c7 c0 ff ff ff ff');
  expectRegs(m, { [RAX]: -1n });
  // a1 10 00 20 00 00 00 00 00: movabs eax, [0x200010] ; 48 a3 20 00 20 00 00 00 00 00: movabs [0x200020], rax
  memWrite(machine(), DATA + 0x10, 4, 0xcafe_baben);
  m = run('a1 10 00 20 00 00 00 00 00 48 a3 20 00 20 00 00 00 00 00', { regs: { [RAX]: -1n } });
  expectRegs(m, { [RAX]: 0xcafe_baben });
  assert.equal(memRead(m, DATA + 0x20, 8), 0xcafe_baben);
  // 66 c7 03 34 12: mov word ptr [rbx], 0x1234
  memWrite(m, DATA, 4, 0xffff_ffffn);
  m = run('66 c7 03 34 12', { regs: { [RBX]: BigInt(DATA) } });
  assert.equal(memRead(m, DATA, 4), 0xffff_1234n);
  // c6 f8 00: C6 /7 (XABORT, no RTM) is #UD
  m = run('c6 f8 00');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('NOP, XCHG with rAX (41 90 is xchg r8, rax), and the 32-bit zero extension of 87 c0', () => {
  // 90: nop (RAX keeps its upper half) ; f3 90: pause
  let m = run('90 f3 90', { regs: { [RAX]: 0x1234_5678_9abc_def0n } });
  expectRegs(m, { [RAX]: 0x1234_5678_9abc_def0n });
  // 49 90: xchg r8, rax
  m = run('49 90', { regs: { [RAX]: 1n, [R8]: 2n } });
  expectRegs(m, { [RAX]: 2n, [R8]: 1n });
  // 87 c0: xchg eax, eax through ModRM zero-extends
  m = run('87 c0', { regs: { [RAX]: 0xffff_ffff_0000_0001n } });
  expectRegs(m, { [RAX]: 1n });
  // 87 0b: xchg dword ptr [rbx], ecx
  memWrite(m, DATA, 4, 0x1111n);
  m = run('87 0b', { regs: { [RBX]: BigInt(DATA), [RCX]: 0x2222n } });
  expectRegs(m, { [RCX]: 0x1111n });
  assert.equal(memRead(m, DATA, 4), 0x2222n);
});

test('INC/DEC keep CF and set OF at the signed boundary', () => {
  // ff c0: inc eax
  let m = run('ff c0', { regs: { [RAX]: 0x7fff_ffffn }, flags: CF });
  expectRegs(m, { [RAX]: 0x8000_0000n });
  expectFlags(m, CF | OF | SF | AF | PF);
  // 48 ff c8: dec rax from 0
  m = run('48 ff c8', { flags: 0 });
  expectRegs(m, { [RAX]: -1n });
  expectFlags(m, SF | AF | PF);
  // 48 ff c0: inc rax across the 32-bit boundary
  m = run('48 ff c0', { regs: { [RAX]: 0xffff_ffffn }, flags: CF });
  expectRegs(m, { [RAX]: 0x1_0000_0000n });
  expectFlags(m, CF | AF | PF);
  // fe 03: inc byte ptr [rbx]
  memWrite(m, DATA, 1, 0xffn);
  m = run('fe 03', { regs: { [RBX]: BigInt(DATA) } });
  assert.equal(memRead(m, DATA, 1), 0n);
  expectFlags(m, ZF | AF | PF);
  // fe d0: FE /2 is #UD
  m = run('fe d0');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('shifts: count masking, OF for count 1, flags untouched for count 0, the host AF', () => {
  // d1 e0: shl eax, 1
  let m = run('d1 e0', { regs: { [RAX]: 0x4000_0000n } });
  expectRegs(m, { [RAX]: 0x8000_0000n });
  expectFlags(m, OF | SF | AF | PF);
  // 48 d3 e0: shl rax, cl with cl = 65 -> count 1 (masked to 6 bits)
  m = run('48 d3 e0', { regs: { [RAX]: 0x8000_0000_0000_0001n, [RCX]: 65n } });
  expectRegs(m, { [RAX]: 2n });
  expectFlags(m, CF | OF | AF);
  // d3 e0: shl eax, cl with cl = 32 -> count 0: flags kept, but the 32-bit write still clears bits 63:32
  m = run('d3 e0', { regs: { [RAX]: 0xffff_ffff_0000_0001n, [RCX]: 32n }, flags: CF | ZF | OF });
  expectRegs(m, { [RAX]: 1n });
  expectFlags(m, CF | ZF | OF);
  // 48 c1 f8 3f: sar rax, 63
  m = run('48 c1 f8 3f', { regs: { [RAX]: 0x8000_0000_0000_0000n } });
  expectRegs(m, { [RAX]: -1n });
  expectFlags(m, SF | PF | AF);
  // c0 e8 08: shr al, 8 (count = width: CF is the last bit out)
  m = run('c0 e8 08', { regs: { [RAX]: 0x80n } });
  expectRegs(m, { [RAX]: 0n });
  expectFlags(m, CF | ZF | PF | AF);
  // c1 e3 03: shl dword ptr [rbx], 3
  memWrite(m, DATA, 4, 0x3000_0001n);
  m = run('c1 23 03', { regs: { [RBX]: BigInt(DATA) } });
  assert.equal(memRead(m, DATA, 4), 0x8000_0008n);
  expectFlags(m, CF | SF | AF);
});

test('rotates: RCL/RCR through CF, 8-bit counts mod 9, ROR OF from the two top bits', () => {
  // c0 d0 09: rcl al, 9 -> no rotation; CF kept, OF = MSB ^ CF (host)
  let m = run('c0 d0 09', { regs: { [RAX]: 0x81n }, flags: ZF });
  expectRegs(m, { [RAX]: 0x81n });
  expectFlags(m, ZF | OF);
  // 48 d1 c8: ror rax, 1
  m = run('48 d1 c8', { regs: { [RAX]: 1n } });
  expectRegs(m, { [RAX]: 0x8000_0000_0000_0000n });
  expectFlags(m, CF | OF);
  // 48 d1 d0: rcl rax, 1 with CF=1
  m = run('48 d1 d0', { regs: { [RAX]: 0x8000_0000_0000_0000n }, flags: CF });
  expectRegs(m, { [RAX]: 1n });
  expectFlags(m, CF | OF);
  // 48 c1 d8 05: rcr rax, 5 with CF=1: CF enters at bit 59
  m = run('48 c1 d8 05', { regs: { [RAX]: 0x10n }, flags: CF });
  expectRegs(m, { [RAX]: 0x0800_0000_0000_0000n });
  expectFlags(m, CF);
  // c1 c0 08: rol eax, 8 (SF/ZF/PF/AF are not touched)
  m = run('c1 c0 08', { regs: { [RAX]: 0x1234_5678n }, flags: SF | ZF | PF | AF });
  expectRegs(m, { [RAX]: 0x3456_7812n });
  expectFlags(m, SF | ZF | PF | AF);
});

test('SHLD/SHRD', () => {
  // 0f a4 c8 08: shld eax, ecx, 8
  let m = run('0f a4 c8 08', { regs: { [RAX]: 0x1234_5678n, [RCX]: 0x9abc_def0n } });
  expectRegs(m, { [RAX]: 0x3456_789an });
  expectFlags(m, AF | PF);
  // 48 0f ad c8: shrd rax, rcx, cl (cl = 4)
  m = run('48 0f ad c8', { regs: { [RAX]: 0x1234_5678_9abc_def0n, [RCX]: 0xf000_0000_0000_0004n } });
  expectRegs(m, { [RAX]: 0x4123_4567_89ab_cdefn });
  expectFlags(m, AF | OF); // OF: the two top result bits differ (host, count > 1)
});

test('MUL/IMUL: full-width products, CF=OF when the high half is significant, other flags kept (host)', () => {
  // 48 f7 e1: mul rcx
  let m = run('48 f7 e1', { regs: { [RAX]: -1n, [RCX]: -1n }, flags: ZF });
  expectRegs(m, { [RAX]: 1n, [RDX]: 0xffff_ffff_ffff_fffen });
  expectFlags(m, CF | OF | ZF);
  // 48 f7 e9: imul rcx (-1 * -1 = 1 fits)
  m = run('48 f7 e9', { regs: { [RAX]: -1n, [RCX]: -1n } });
  expectRegs(m, { [RAX]: 1n, [RDX]: 0n });
  expectFlags(m, 0);
  // f7 e1: mul ecx: 0xffffffff^2
  m = run('f7 e1', { regs: { [RAX]: 0xffff_ffffn, [RCX]: 0xffff_ffffn, [RDX]: -1n } });
  expectRegs(m, { [RAX]: 1n, [RDX]: 0xffff_fffen });
  expectFlags(m, CF | OF);
  // f7 e9: imul ecx: -0x80000000 * -1 = 0x80000000 needs EDX
  m = run('f7 e9', { regs: { [RAX]: 0x8000_0000n, [RCX]: 0xffff_ffffn } });
  expectRegs(m, { [RAX]: 0x8000_0000n, [RDX]: 0n });
  expectFlags(m, CF | OF);
  // 48 6b c1 fe: imul rax, rcx, -2
  m = run('48 6b c1 fe', { regs: { [RCX]: 0x4000_0000_0000_0000n } });
  expectRegs(m, { [RAX]: 0x8000_0000_0000_0000n });
  expectFlags(m, 0);
  m = run('48 6b c1 fe', { regs: { [RCX]: 0x4000_0000_0000_0001n } });
  expectRegs(m, { [RAX]: 0x7fff_ffff_ffff_fffen });
  expectFlags(m, CF | OF);
  // 0f af c1: imul eax, ecx (32-bit product beyond 2^53 in magnitude)
  m = run('0f af c1', { regs: { [RAX]: 0x7fff_ffffn, [RCX]: 0x7fff_ffffn } });
  expectRegs(m, { [RAX]: 1n });
  expectFlags(m, CF | OF);
  // f6 e1: mul cl
  m = run('f6 e1', { regs: { [RAX]: 0x80n, [RCX]: 2n } });
  expectRegs(m, { [RAX]: 0x100n });
  expectFlags(m, CF | OF);
});

test('DIV/IDIV: 128/64 with small and large divisors, remainders, and #DE', () => {
  // 48 f7 f1: div rcx; 128-bit dividend with a 32-bit divisor
  const n = (0x1234n << 64n) | 0x5678_9abc_def0_1234n, d = 0xfedc_ba98n;
  let m = run('48 f7 f1', { regs: { [RDX]: n >> 64n, [RAX]: n & ((1n << 64n) - 1n), [RCX]: d } });
  expectRegs(m, { [RAX]: n / d, [RDX]: n % d });
  expectFlags(m, AF);
  // divisor >= 2^32
  const d2 = 0x1_2345_6789_abcdn;
  m = run('48 f7 f1', { regs: { [RDX]: n >> 64n, [RAX]: n & ((1n << 64n) - 1n), [RCX]: d2 }, flags: CF | ZF | SF });
  expectRegs(m, { [RAX]: n / d2, [RDX]: n % d2 });
  expectFlags(m, CF | AF);
  // 48 f7 f9: idiv rcx: -7 / 2 = -3 rem -1
  m = run('48 f7 f9', { regs: { [RDX]: -1n, [RAX]: -7n, [RCX]: 2n } });
  expectRegs(m, { [RAX]: -3n, [RDX]: -1n });
  // idiv of INT64_MIN by -1 overflows: #DE, registers untouched
  m = run('48 f7 f9', { regs: { [RDX]: -1n, [RAX]: -0x8000_0000_0000_0000n, [RCX]: -1n } });
  assert.equal(m.cpu.lastException, C.EXC_DE);
  assert.equal(reg(m, RAX), 0x8000_0000_0000_0000n);
  // idiv giving exactly INT64_MIN is fine: -2^64 / 2
  m = run('48 f7 f9', { regs: { [RDX]: -1n, [RAX]: 0n, [RCX]: 2n } });
  expectRegs(m, { [RAX]: 0x8000_0000_0000_0000n, [RDX]: 0n });
  // f7 f1: div ecx by zero -> #DE; RDX >= divisor -> #DE
  m = run('f7 f1', { regs: { [RAX]: 1n } });
  assert.equal(m.cpu.lastException, C.EXC_DE);
  m = run('f7 f1', { regs: { [RDX]: 3n, [RCX]: 3n } });
  assert.equal(m.cpu.lastException, C.EXC_DE);
  // f7 f1: div ecx with EDX:EAX = 0x2_ffffffff / 3
  m = run('f7 f1', { regs: { [RDX]: 2n, [RAX]: 0xffff_ffffn, [RCX]: 3n } });
  expectRegs(m, { [RAX]: 0xffff_ffffn, [RDX]: 2n });
  // f6 f9: idiv cl: -128 / -1 overflows an 8-bit quotient
  m = run('f6 f9', { regs: { [RAX]: 0xff80n, [RCX]: 0xffn } });
  assert.equal(m.cpu.lastException, C.EXC_DE);
  // f6 f9: idiv cl: -7 / 2
  m = run('f6 f9', { regs: { [RAX]: 0xfff9n, [RCX]: 2n } });
  expectRegs(m, { [RAX]: 0xfffdn }); // AL = -3, AH = -1
});

test('BT/BTS/BTR/BTC: register offsets reach outside the memory operand, immediates wrap', () => {
  const m0 = machine();
  m0.mem.write(DATA, new Uint8Array(64));
  // 0f ab 0b: bts dword ptr [rbx], ecx with ecx = -1 -> bit 31 of the dword at rbx-4
  let m = run('0f ab 0b', { regs: { [RBX]: BigInt(DATA + 32), [RCX]: 0xffff_ffffn } });
  assert.equal(memRead(m, DATA + 28, 4), 0x8000_0000n);
  expectFlags(m, 0);
  // 48 0f a3 0b: bt qword ptr [rbx], rcx with rcx = 70 -> bit 6 of the qword at rbx+8
  memWrite(m, DATA + 40, 1, 0x40n);
  m = run('48 0f a3 0b', { regs: { [RBX]: BigInt(DATA + 32), [RCX]: 70n }, flags: ZF });
  expectFlags(m, CF | ZF);
  // 48 0f ba 2b 41: bts qword ptr [rbx], 65 -> the immediate is taken mod 64: bit 1 of [rbx]
  memWrite(m, DATA + 32, 8, 0n);
  m = run('48 0f ba 2b 41', { regs: { [RBX]: BigInt(DATA + 32) } });
  assert.equal(memRead(m, DATA + 32, 8), 2n);
  // 48 0f b3 c8: btr rax, rcx (register: offset mod 64)
  m = run('48 0f b3 c8', { regs: { [RAX]: -1n, [RCX]: 127n } });
  expectRegs(m, { [RAX]: 0x7fff_ffff_ffff_ffffn });
  expectFlags(m, CF);
});

test('BSF/BSR/POPCNT', () => {
  // 0f bc c1: bsf eax, ecx; a zero source leaves all of RAX and sets ZF
  let m = run('0f bc c1', { regs: { [RAX]: 0xffff_ffff_1234_5678n, [RCX]: 0n } });
  expectRegs(m, { [RAX]: 0xffff_ffff_1234_5678n });
  expectFlags(m, ZF | PF);
  m = run('0f bc c1', { regs: { [RAX]: -1n, [RCX]: 0x10n }, flags: CF | OF });
  expectRegs(m, { [RAX]: 4n });
  expectFlags(m, 0);
  // 48 0f bd c1: bsr rax, rcx
  m = run('48 0f bd c1', { regs: { [RCX]: 0x8000_0000_0000_0001n } });
  expectRegs(m, { [RAX]: 63n });
  // f3 48 0f b8 c1: popcnt rax, rcx
  m = run('f3 48 0f b8 c1', { regs: { [RCX]: 0xf0f0_0000_0000_0001n }, flags: CF });
  expectRegs(m, { [RAX]: 9n });
  expectFlags(m, 0);
  m = run('f3 48 0f b8 c1', { regs: { [RCX]: 0n } });
  expectFlags(m, ZF);
  // 0f b8 c1 without F3 (JMPE) is #UD
  m = run('0f b8 c1');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('CMOVcc and SETcc; a 32-bit CMOV zero-extends even when the condition is false', () => {
  // 0f 44 c1: cmovz eax, ecx with ZF=0
  let m = run('0f 44 c1', { regs: { [RAX]: 0xffff_ffff_0000_0001n, [RCX]: 2n } });
  expectRegs(m, { [RAX]: 1n });
  m = run('0f 44 c1', { regs: { [RAX]: 0xffff_ffff_0000_0001n, [RCX]: 2n }, flags: ZF });
  expectRegs(m, { [RAX]: 2n });
  // 66 0f 4c c1: cmovl ax, cx with SF != OF; false 16-bit cmov keeps everything
  m = run('66 0f 4c c1', { regs: { [RAX]: 0xffff_ffff_0000_0001n, [RCX]: 2n }, flags: SF });
  expectRegs(m, { [RAX]: 0xffff_ffff_0000_0002n });
  m = run('66 0f 4c c1', { regs: { [RAX]: 0xffff_ffff_0000_0001n, [RCX]: 2n }, flags: SF | OF });
  expectRegs(m, { [RAX]: 0xffff_ffff_0000_0001n });
  // 0f 97 c0: seta al (CF=0 and ZF=0)
  m = run('0f 97 c0', { regs: { [RAX]: 0xff00n } });
  expectRegs(m, { [RAX]: 0xff01n });
});

test('CMPXCHG, XADD, CMPXCHG8B/16B', () => {
  // 0f b1 0b: cmpxchg dword ptr [rbx], ecx (equal: store ECX, ZF=1)
  memWrite(machine(), DATA, 4, 5n);
  let m = run('0f b1 0b', { regs: { [RAX]: 5n, [RBX]: BigInt(DATA), [RCX]: 9n } });
  assert.equal(memRead(m, DATA, 4), 9n);
  expectFlags(m, ZF | PF);
  // not equal: EAX = [rbx] (zero-extended), memory unchanged
  m = run('0f b1 0b', { regs: { [RAX]: 0xffff_0000_0000_0005n, [RBX]: BigInt(DATA), [RCX]: 1n } });
  expectRegs(m, { [RAX]: 9n });
  expectFlags(m, CF | SF | PF | AF);
  // 0f b1 ca: cmpxchg edx, ecx (register destination, equal: RAX keeps its upper half)
  m = run('0f b1 ca', { regs: { [RAX]: 0xffff_0000_0000_0005n, [RDX]: 0xaaaa_0000_0000_0005n, [RCX]: 7n } });
  expectRegs(m, { [RAX]: 0xffff_0000_0000_0005n, [RDX]: 7n });
  // 48 0f c1 c1: xadd rcx, rax
  m = run('48 0f c1 c1', { regs: { [RAX]: 1n, [RCX]: -1n } });
  expectRegs(m, { [RAX]: -1n, [RCX]: 0n });
  expectFlags(m, CF | ZF | PF | AF);
  // 48 0f c7 0b: cmpxchg16b [rbx]: equal
  memWrite(m, DATA, 8, 0x1111n); memWrite(m, DATA + 8, 8, 0x2222n);
  m = run('48 0f c7 0b', { regs: { [RBX]: BigInt(DATA), [RAX]: 0x1111n, [RDX]: 0x2222n, [RCX]: 0x4444n } });
  assert.equal(memRead(m, DATA, 8), BigInt(DATA)); // RBX goes to the low qword
  assert.equal(memRead(m, DATA + 8, 8), 0x4444n);
  expectFlags(m, ZF);
  // not equal: RDX:RAX loaded, ZF=0, other flags kept
  m = run('48 0f c7 0b', { regs: { [RBX]: BigInt(DATA) }, flags: CF | ZF });
  expectRegs(m, { [RAX]: BigInt(DATA), [RDX]: 0x4444n });
  expectFlags(m, CF);
  // misaligned cmpxchg16b -> #GP(0)
  m = run('48 0f c7 0b', { regs: { [RBX]: BigInt(DATA + 8) } });
  assert.equal(m.cpu.lastException, C.EXC_GP);
  // 0f c7 0b: cmpxchg8b [rbx] not equal: EDX:EAX = m64 (32-bit writes zero-extend)
  memWrite(m, DATA, 8, 0x8765_4321_1234_5678n);
  m = run('0f c7 0b', { regs: { [RBX]: BigInt(DATA), [RAX]: -1n, [RDX]: -1n } });
  expectRegs(m, { [RAX]: 0x1234_5678n, [RDX]: 0x8765_4321n });
  // 0f c7 c8: cmpxchg8b with a register operand is #UD; 0f c7 f0: rdrand (not offered) is #UD
  m = run('0f c7 c8');
  assert.equal(m.cpu.lastException, C.EXC_UD);
  m = run('0f c7 f0');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('conversions and moves with extension: BSWAP, CBW..CQO, MOVSX/MOVZX/MOVSXD', () => {
  // 48 0f c8: bswap rax ; 0f c8: bswap eax ; 66 0f c8: bswap ax (host: clears the low word)
  let m = run('48 0f c8', { regs: { [RAX]: 0x0102_0304_0506_0708n } });
  expectRegs(m, { [RAX]: 0x0807_0605_0403_0201n });
  m = run('0f c8', { regs: { [RAX]: 0xffff_ffff_1122_3344n } });
  expectRegs(m, { [RAX]: 0x4433_2211n });
  m = run('66 0f c8', { regs: { [RAX]: 0x1234_5678_1234_5678n } });
  expectRegs(m, { [RAX]: 0x1234_5678_1234_0000n });
  // 66 98: cbw ; 98: cwde ; 48 98: cdqe ; 48 99: cqo ; 99: cdq
  m = run('66 98', { regs: { [RAX]: 0xffff_0080n } });
  expectRegs(m, { [RAX]: 0xffff_ff80n });
  m = run('98', { regs: { [RAX]: 0xffff_ffff_0000_8000n } });
  expectRegs(m, { [RAX]: 0xffff_8000n });
  m = run('48 98', { regs: { [RAX]: 0x8000_0000n } });
  expectRegs(m, { [RAX]: 0xffff_ffff_8000_0000n });
  m = run('48 99', { regs: { [RAX]: -5n, [RDX]: 0n } });
  expectRegs(m, { [RDX]: -1n });
  m = run('99', { regs: { [RAX]: 0x7fff_ffffn, [RDX]: -1n } });
  expectRegs(m, { [RDX]: 0n });
  // 48 0f be c1: movsx rax, cl ; 48 63 c1: movsxd rax, ecx ; 0f b7 c1: movzx eax, cx
  m = run('48 0f be c1', { regs: { [RCX]: 0x80n } });
  expectRegs(m, { [RAX]: -0x80n });
  m = run('48 63 c1', { regs: { [RCX]: 0x1_8000_0000n } });
  expectRegs(m, { [RAX]: -0x8000_0000n });
  m = run('0f b7 c1', { regs: { [RAX]: -1n, [RCX]: 0xffffn } });
  expectRegs(m, { [RAX]: 0xffffn });
});

test('NEG/NOT', () => {
  // 48 f7 d8: neg rax
  let m = run('48 f7 d8', { regs: { [RAX]: 1n } });
  expectRegs(m, { [RAX]: -1n });
  expectFlags(m, CF | SF | AF | PF);
  m = run('48 f7 d8', { regs: { [RAX]: 0n }, flags: CF });
  expectFlags(m, ZF | PF);
  m = run('48 f7 d8', { regs: { [RAX]: 0x8000_0000_0000_0000n } });
  expectRegs(m, { [RAX]: 0x8000_0000_0000_0000n });
  expectFlags(m, CF | OF | SF | PF);
  // f7 d0: not eax (no flags)
  m = run('f7 d0', { regs: { [RAX]: 0xffff_ffff_0000_ffffn }, flags: CF | ZF });
  expectRegs(m, { [RAX]: 0xffff_0000n });
  expectFlags(m, CF | ZF);
});

test('LOCK: allowed on memory read-modify-write, #UD on registers and on other instructions; 82 is #UD', () => {
  memWrite(machine(), DATA, 4, 1n);
  // f0 01 03: lock add dword ptr [rbx], eax
  let m = run('f0 01 03', { regs: { [RBX]: BigInt(DATA), [RAX]: 2n } });
  assert.equal(memRead(m, DATA, 4), 3n);
  // f0 01 c3: lock add ebx, eax
  m = run('f0 01 c3');
  assert.equal(m.cpu.lastException, C.EXC_UD);
  // f0 89 03: lock mov [rbx], eax
  m = run('f0 89 03', { regs: { [RBX]: BigInt(DATA) } });
  assert.equal(m.cpu.lastException, C.EXC_UD);
  // f0 39 03: lock cmp [rbx], eax
  m = run('f0 39 03', { regs: { [RBX]: BigInt(DATA) } });
  assert.equal(m.cpu.lastException, C.EXC_UD);
  // f0 0f a3 03: lock bt [rbx], eax ; f0 0f ab 03: lock bts [rbx], eax is fine
  m = run('f0 0f a3 03', { regs: { [RBX]: BigInt(DATA) } });
  assert.equal(m.cpu.lastException, C.EXC_UD);
  m = run('f0 0f ab 03', { regs: { [RBX]: BigInt(DATA), [RAX]: 4n } });
  assert.equal(m.cpu.lastException, -1);
  assert.equal(memRead(m, DATA, 4), 0x13n);
  // 82 c0 01: add al, 1 through the 82 alias is invalid in 64-bit mode
  m = run('82 c0 01');
  assert.equal(m.cpu.lastException, C.EXC_UD);
});

test('a faulting write leaves memory, registers and flags as they were', () => {
  const m = machine();
  const cpu = m.cpu;
  // Make the 2 MiB page at DATA (PD entry 1) read-only; CR0.WP is set, so supervisor writes fault too.
  const pde = PAGE_TABLES + 8192 + 8;
  const old = memRead(m, pde, 4);
  memWrite(m, pde, 4, old & ~BigInt(C.PTE_RW));
  cpu.flushTlb(true);
  try {
    memWrite(m, DATA, 4, 0x10n);
    // 01 03: add dword ptr [rbx], eax
    let r = run('01 03', { regs: { [RBX]: BigInt(DATA), [RAX]: -0x10n }, flags: CF | OF });
    assert.equal(cpu.lastException, C.EXC_PF);
    assert.equal(memRead(m, DATA, 4), 0x10n);
    expectFlags(r, CF | OF);
    // c1 23 03: shl dword ptr [rbx], 3
    r = run('c1 23 03', { regs: { [RBX]: BigInt(DATA) }, flags: ZF | SF });
    assert.equal(cpu.lastException, C.EXC_PF);
    expectFlags(r, ZF | SF);
    // 0f c1 03: xadd dword ptr [rbx], eax: EAX is not updated
    r = run('0f c1 03', { regs: { [RBX]: BigInt(DATA), [RAX]: 7n } });
    assert.equal(cpu.lastException, C.EXC_PF);
    expectRegs2(r, RAX, 7n);
    // 0f b1 0b: cmpxchg [rbx], ecx that does not match still writes (and faults) before touching EAX
    r = run('0f b1 0b', { regs: { [RBX]: BigInt(DATA), [RAX]: 1n } });
    assert.equal(cpu.lastException, C.EXC_PF);
    expectRegs2(r, RAX, 1n);
  } finally {
    memWrite(m, pde, 4, old);
    cpu.flushTlb(true);
  }
});

function expectRegs2(m: Machine, i: number, v: bigint): void {
  assert.equal(hex64(reg(m, i)), hex64(v));
}
