// Pre-decoded forms of the hottest 64-bit-mode instructions, for the block cache (./code-cache.ts).
//
// `compileFast` looks at an instruction that has just executed (its prefix state is in the block entry, its bytes
// in RAM at `pa`) and, when it is one of the forms below, stores its decoded operands in the entry and points
// `entry.fast` at a function that executes it without fetching or decoding anything. The forms were chosen from an
// opcode histogram of the Debian kernel's boot (MOV 89/8B, LEA, ADD/SUB/CMP/AND/OR/XOR/TEST in their register and
// memory forms, group 1 with imm8/imm32, Jcc/JMP/CALL/RET, PUSH/POP, MOVZX, MOVSXD, MOV r,imm covered ~85% of the
// instructions executed). Their semantics mirror the interpreter's handlers in ./ops (same lazy-flag records, same
// order of memory accesses, faults raised before any state changes); anything unusual (REP, 67h, 16/8-bit
// operands, legacy segment overrides) keeps the generic replay. LOCK is kept only on the read-modify-write memory
// forms (lockable(); the vCPUs run on one thread, so a locked form is the plain one).
//
// When a fast form runs, `cpu.rip` already holds the address of the next instruction (RIP-relative operands and
// relative branches are computed from it) and `cpu.ripStart` that of this one.
import type { SoftCpu } from './cpu.ts';
import { Lazy } from './lazy.ts';
import type { BlockEntry, FastHandler } from './code-cache.ts';
import { push64, pop64 } from './ops/flow-branch.ts';
import { shift32, shift64, doubleShift } from './ops/alu-shift.ts';
import { popcount32 } from './ops/alu-bits.ts';
import { cmpxchg16b, out, setSomeFlags, PARITY } from './ops/alu-common.ts';
import { mul, imul1, div, idiv, imulTrunc } from './ops/alu-muldiv.ts';
import * as C from './constants.ts';
import { ops0f } from './tables.ts';
import { INT_FN, type IntFn } from './ops/sse-int.ts';
import { D, S } from './ops/sse-common.ts';
import { rdtsc as execRdtsc } from './system/control.ts';
import { rdtscp as execRdtscp, swapgs as execSwapgs } from './system/gs-tsc.ts';
import { stiSetsIf } from './ops/interrupt-flag.ts';
import { syscall as execSyscall, sysret as execSysret } from './system/fastcall.ts';

const TWO32 = C.TWO32;
const TWO47 = C.TWO47;
const TWO63 = 9223372036854775808;
const TWO64 = 18446744073709551616;

const ADD = 0, OR = 1, AND = 4, SUB = 5, XOR = 6, CMP = 7;
/** Lazy-flag kind per ALU operation (ADC/SBB are not given fast forms). */
// (Numeric values of cpu.ts's Lazy: this module is imported by cpu.ts, so its enum object is not there yet.)
const L_ADD = 1 as Lazy, L_SUB = 3 as Lazy, L_LOGIC = 5 as Lazy;
const KIND: Lazy[] = [L_ADD, L_LOGIC, 0, 0, L_LOGIC, L_SUB, L_LOGIC, L_SUB];
/** Pseudo-operation for TEST (AND without writing). */
const TEST = 8;

// ---- effective address from the recipe in the entry (64-bit address size)

function ea(c: SoftCpu, e: BlockEntry): number {
  let a: number;
  const b = e.base;
  if (b >= 0) a = c.gpr[2 * b + 1] * TWO32 + (c.gpr[2 * b] >>> 0);
  else a = b === -2 ? c.rip : 0;
  const x = e.index;
  if (x >= 0) a += (c.gpr[2 * x + 1] * TWO32 + (c.gpr[2 * x] >>> 0)) * e.scale;
  a += e.disp;
  if (a >= TWO63) a -= TWO64;
  else if (a < -TWO63) a += TWO64;
  const s = e.seg;
  return s < 0 ? a : c.linear(s, a);
}

// ---- MOV

const movStoreReg64: FastHandler = (c, e) => { c.gpr[2 * e.b] = c.gpr[2 * e.a]; c.gpr[2 * e.b + 1] = c.gpr[2 * e.a + 1]; };
const movStoreReg32: FastHandler = (c, e) => { c.gpr[2 * e.b] = c.gpr[2 * e.a]; c.gpr[2 * e.b + 1] = 0; };
const movStoreMem64: FastHandler = (c, e) => { c.writeLin(ea(c, e), 8, c.gpr[2 * e.a], c.gpr[2 * e.a + 1]); };
const movStoreMem32: FastHandler = (c, e) => { c.writeLin(ea(c, e), 4, c.gpr[2 * e.a]); };
const movLoadMem64: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 8); c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = c.hi; };
const movLoadMem32: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 4); c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = 0; };
const movImmReg: FastHandler = (c, e) => { c.gpr[2 * e.a] = e.imm; c.gpr[2 * e.a + 1] = e.immHi; };
const movImmMem64: FastHandler = (c, e) => { c.writeLin(ea(c, e), 8, e.imm, e.immHi); };
const movImmMem32: FastHandler = (c, e) => { c.writeLin(ea(c, e), 4, e.imm); };

// ---- LEA (exact 64-bit sum on int32 halves, as ./ops/alu.ts does)

const lea: FastHandler = (c, e) => {
  let lo: number, hi: number;
  const b = e.base;
  if (b >= 0) { lo = c.gpr[2 * b]; hi = c.gpr[2 * b + 1]; }
  else if (b === -2) { const v = c.rip; lo = v | 0; hi = Math.floor(v / TWO32) | 0; }
  else { lo = 0; hi = 0; }
  const x = e.index;
  if (x >= 0) {
    let il = c.gpr[2 * x], ih = c.gpr[2 * x + 1];
    const sh = e.size; // log2 scale
    if (sh) { ih = (ih << sh) | (il >>> (32 - sh)); il <<= sh; }
    const l = (lo >>> 0) + (il >>> 0);
    hi = (hi + ih + (l > 0xffffffff ? 1 : 0)) | 0;
    lo = l | 0;
  }
  const d = e.disp;
  if (d !== 0) {
    const l = (lo >>> 0) + (d >>> 0);
    hi = (hi + (d >> 31) + (l > 0xffffffff ? 1 : 0)) | 0;
    lo = l | 0;
  }
  c.gpr[2 * e.a] = lo;
  c.gpr[2 * e.a + 1] = e.immHi === 8 ? hi : 0;
};

// ---- ALU: d op s for sizes 4 and 8; `hiOut` receives the high half of a 64-bit result

let hiOut = 0;

function calc64(op: number, d: number, dh: number, s: number, sh: number): number {
  switch (op) {
    case ADD: { const l = (d >>> 0) + (s >>> 0); hiOut = (dh + sh + (l > 0xffffffff ? 1 : 0)) | 0; return l | 0; }
    case SUB: case CMP: { const l = (d >>> 0) - (s >>> 0); hiOut = (dh - sh - (l < 0 ? 1 : 0)) | 0; return l | 0; }
    case OR: hiOut = dh | sh; return d | s;
    case XOR: hiOut = dh ^ sh; return d ^ s;
    default: hiOut = dh & sh; return d & s; // AND, TEST
  }
}

function calc32(op: number, d: number, s: number): number {
  switch (op) {
    case ADD: return (d + s) | 0;
    case SUB: case CMP: return (d - s) | 0;
    case OR: return d | s;
    case XOR: return d ^ s;
    default: return d & s;
  }
}

/** Register destination `e.b`, source value (s, sh); the operation is `e.op`, the size `e.size` (4 or 8). */
function aluReg(c: SoftCpu, e: BlockEntry, s: number, sh: number): void {
  const op = e.op, rd = e.b;
  const d = c.gpr[2 * rd];
  if (e.size === 8) {
    const dh = c.gpr[2 * rd + 1];
    const r = calc64(op, d, dh, s, sh), rh = hiOut;
    if (op < CMP) { c.gpr[2 * rd] = r; c.gpr[2 * rd + 1] = rh; }
    c.setLazy(op === TEST ? L_LOGIC : KIND[op], 8, d, s, r, dh, sh, rh);
  } else {
    const r = calc32(op, d, s);
    if (op < CMP) { c.gpr[2 * rd] = r; c.gpr[2 * rd + 1] = 0; }
    c.setLazy(op === TEST ? L_LOGIC : KIND[op], 4, d, s, r, 0, 0, 0);
  }
}

/** Memory destination at `lin`. */
function aluMem(c: SoftCpu, e: BlockEntry, lin: number, s: number, sh: number): void {
  const op = e.op;
  if (e.size === 8) {
    const d = c.readLin(lin, 8), dh = c.hi;
    const r = calc64(op, d, dh, s, sh), rh = hiOut;
    if (op < CMP) c.writeLin(lin, 8, r, rh);
    c.setLazy(op === TEST ? L_LOGIC : KIND[op], 8, d, s, r, dh, sh, rh);
  } else {
    const d = c.readLin(lin, 4);
    const r = calc32(op, d, s);
    if (op < CMP) c.writeLin(lin, 4, r);
    c.setLazy(op === TEST ? L_LOGIC : KIND[op], 4, d, s, r, 0, 0, 0);
  }
}

// r/m (register e.b) op= register e.a
const aluRegReg: FastHandler = (c, e) => aluReg(c, e, c.gpr[2 * e.a], e.size === 8 ? c.gpr[2 * e.a + 1] : 0);
// r/m (memory) op= register e.a
const aluMemReg: FastHandler = (c, e) => aluMem(c, e, ea(c, e), c.gpr[2 * e.a], e.size === 8 ? c.gpr[2 * e.a + 1] : 0);
// register e.b op= memory
const aluRegMem: FastHandler = (c, e) => {
  const v = c.readLin(ea(c, e), e.size);
  aluReg(c, e, v, e.size === 8 ? c.hi : 0);
};
// r/m op= immediate
const aluRegImm: FastHandler = (c, e) => aluReg(c, e, e.imm, e.immHi);
const aluMemImm: FastHandler = (c, e) => aluMem(c, e, ea(c, e), e.imm, e.immHi);

// ---- INC/DEC r (FF /0, /1): CF is preserved (lazyCarry = old CF), as ./ops/alu.ts records it

const L_INC = 6 as Lazy, L_DEC = 7 as Lazy;
const incDecReg: FastHandler = (c, e) => {
  const r = e.b, dec = e.op === 1;
  const d = c.gpr[2 * r];
  c.lazyCarry = c.getCF() ? 1 : 0;
  if (e.size === 8) {
    const dh = c.gpr[2 * r + 1];
    let v: number, vh: number;
    if (dec) { v = (d - 1) | 0; vh = (dh - (d === 0 ? 1 : 0)) | 0; }
    else { v = (d + 1) | 0; vh = (dh + (v === 0 ? 1 : 0)) | 0; }
    c.gpr[2 * r] = v; c.gpr[2 * r + 1] = vh;
    c.setLazy(dec ? L_DEC : L_INC, 8, d, 1, v, dh, 0, vh);
  } else {
    const v = dec ? (d - 1) | 0 : (d + 1) | 0;
    c.gpr[2 * r] = v; c.gpr[2 * r + 1] = 0;
    c.setLazy(dec ? L_DEC : L_INC, 4, d, 1, v, 0, 0, 0);
  }
};

// ---- group 2 shifts/rotates of a register by a constant non-zero count (C1 /n ib, D1 /n), as ./ops/alu-shift.ts

const shiftRegImm: FastHandler = (c, e) => {
  const r = e.b;
  c.settleFlags();
  if (e.size === 8) {
    const v = shift64(c, e.op, c.gpr[2 * r], c.gpr[2 * r + 1], e.imm);
    c.gpr[2 * r] = v; c.gpr[2 * r + 1] = out.hi;
  } else {
    c.gpr[2 * r] = shift32(c, e.op, 4, c.gpr[2 * r], e.imm); c.gpr[2 * r + 1] = 0;
  }
};

// ---- branches (64-bit mode: targets must be canonical, #GP(0) before RIP changes)

function jumpTo(c: SoftCpu, target: number): void {
  if (target < -TWO47 || target >= TWO47) c.gp(0);
  c.rip = target;
}

const jcc: FastHandler = (c, e) => { if (c.condition(e.a)) jumpTo(c, c.rip + e.disp); };
const jmp: FastHandler = (c, e) => jumpTo(c, c.rip + e.disp);
const call: FastHandler = (c, e) => {
  const ret = c.rip;
  const target = ret + e.disp;
  if (target < -TWO47 || target >= TWO47) c.gp(0);
  push64(c, ret | 0, Math.floor(ret / TWO32) | 0);
  c.rip = target;
};
const ret: FastHandler = (c) => {
  const spLo = c.gpr[8], spHi = c.gpr[9];
  const lo = c.readLin(spHi * TWO32 + (spLo >>> 0), 8);
  const target = c.hi * TWO32 + (lo >>> 0);
  if (target < -TWO47 || target >= TWO47) c.gp(0);
  if ((spLo >>> 0) > 0xfffffff7) c.gpr[9] = (spHi + 1) | 0;
  c.gpr[8] = (spLo + 8) | 0;
  c.rip = target;
};

// ---- stack

const pushReg: FastHandler = (c, e) => push64(c, c.gpr[2 * e.a], c.gpr[2 * e.a + 1]);
const popReg: FastHandler = (c, e) => { const lo = pop64(c); c.gpr[2 * e.a] = lo; c.gpr[2 * e.a + 1] = c.hi; };

// ---- MOVZX / MOVSXD (destination e.a; a byte register source is (e.b, shift e.imm))

const movzxReg8: FastHandler = (c, e) => { c.gpr[2 * e.a] = (c.gpr[2 * e.b] >> e.imm) & 0xff; c.gpr[2 * e.a + 1] = 0; };
const movzxReg16: FastHandler = (c, e) => { c.gpr[2 * e.a] = c.gpr[2 * e.b] & 0xffff; c.gpr[2 * e.a + 1] = 0; };
const movzxMem: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), e.size); c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = 0; };
const movsxdReg: FastHandler = (c, e) => { const v = c.gpr[2 * e.b]; c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = v >> 31; };
const movsxdMem: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 4); c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = v >> 31; };

// ---- 8-bit ALU/MOV (byte registers are (register, bit position 0 or 8): AH..BH are bits 8-15 of RAX..RBX)

const rd8 = (c: SoftCpu, r: number, sh: number): number => (c.gpr[2 * r] >> sh) & 0xff;
const wr8 = (c: SoftCpu, r: number, sh: number, v: number): void => { c.gpr[2 * r] = (c.gpr[2 * r] & ~(0xff << sh)) | ((v & 0xff) << sh); };

function calc8(op: number, d: number, s: number): number {
  switch (op) {
    case ADD: return (d + s) & 0xff;
    case SUB: case CMP: return (d - s) & 0xff;
    case OR: return d | s;
    case XOR: return d ^ s;
    default: return d & s;
  }
}

/** 8-bit ALU into a byte register (e.b, e.bsh) with source s. */
function alu8Reg(c: SoftCpu, e: BlockEntry, s: number): void {
  const op = e.op;
  const d = rd8(c, e.b, e.bsh);
  const r = calc8(op, d, s);
  if (op < CMP) wr8(c, e.b, e.bsh, r);
  c.setLazy(op === TEST ? L_LOGIC : KIND[op], 1, d, s, r, 0, 0, 0);
}

function alu8Mem(c: SoftCpu, e: BlockEntry, lin: number, s: number): void {
  const op = e.op;
  const d = c.readLin(lin, 1);
  const r = calc8(op, d, s);
  if (op < CMP) c.writeLin(lin, 1, r);
  c.setLazy(op === TEST ? L_LOGIC : KIND[op], 1, d, s, r, 0, 0, 0);
}

const alu8RR: FastHandler = (c, e) => alu8Reg(c, e, rd8(c, e.a, e.ash));
const alu8RM: FastHandler = (c, e) => alu8Reg(c, e, c.readLin(ea(c, e), 1));
const alu8MR: FastHandler = (c, e) => alu8Mem(c, e, ea(c, e), rd8(c, e.a, e.ash));
const alu8RI: FastHandler = (c, e) => alu8Reg(c, e, e.imm);
const alu8MI: FastHandler = (c, e) => alu8Mem(c, e, ea(c, e), e.imm);
const mov8RR: FastHandler = (c, e) => wr8(c, e.b, e.bsh, rd8(c, e.a, e.ash));
const mov8RM: FastHandler = (c, e) => wr8(c, e.b, e.bsh, c.readLin(ea(c, e), 1));
const mov8MR: FastHandler = (c, e) => c.writeLin(ea(c, e), 1, rd8(c, e.a, e.ash));
const mov8RI: FastHandler = (c, e) => wr8(c, e.b, e.bsh, e.imm);
const mov8MI: FastHandler = (c, e) => c.writeLin(ea(c, e), 1, e.imm);

// ---- CMOVcc (the source is read whatever the condition; a 32-bit destination is zero-extended either way),
// SETcc r8, NOP

const cmovRR: FastHandler = (c, e) => {
  const lo = c.gpr[2 * e.a], hi = c.gpr[2 * e.a + 1];
  if (c.condition(e.op)) { c.gpr[2 * e.b] = lo; c.gpr[2 * e.b + 1] = e.size === 8 ? hi : 0; } else if (e.size === 4) c.gpr[2 * e.b + 1] = 0;
};
const cmovRM: FastHandler = (c, e) => {
  const lo = c.readLin(ea(c, e), e.size), hi = e.size === 8 ? c.hi : 0;
  if (c.condition(e.op)) { c.gpr[2 * e.b] = lo; c.gpr[2 * e.b + 1] = hi; } else if (e.size === 4) c.gpr[2 * e.b + 1] = 0;
};
const setcc: FastHandler = (c, e) => wr8(c, e.b, e.bsh, c.condition(e.op) ? 1 : 0);
const nop: FastHandler = () => {};


// =====================================================================================================
// Second generation of forms (session 11): the instructions the translators still replayed most on the Linux boot
// (RINGZERO_WASM_PROFILE=1: group 3, IMUL, ADC/SBB, INC/DEC of memory, MOVSX, shifts by CL, indirect CALL/JMP,
// CMPXCHG, PUSHF, BT*, SETcc to memory, CDQE/CQO, BSWAP, SHLD/SHRD, XADD, PUSH imm). Each mirrors its handler in
// ./ops: same reads and writes in the same order (every fault before any state change), same flag record.

const L_ADC = 2 as Lazy, L_SBB = 4 as Lazy;

/** ModRM r/m operand of a form: register `e.b` when `e.base` is -3, else the memory recipe. */
const REG_OPERAND = -3;

// ---- NOT / NEG (F7 /2 /3), sizes 4 and 8; e.op 0 NOT, 1 NEG. NOT changes no flag; NEG records 0 - v.

function notNeg(c: SoftCpu, neg: boolean, size: number, v: number, vh: number): number {
  if (!neg) { hiOut = ~vh; return ~v; }
  if (size === 8) { hiOut = (-vh - (v !== 0 ? 1 : 0)) | 0; return -v | 0; }
  hiOut = 0;
  return -v | 0;
}

const notNegR: FastHandler = (c, e) => {
  const r = e.b, size = e.size, neg = e.op === 1;
  const v = c.gpr[2 * r], vh = size === 8 ? c.gpr[2 * r + 1] : 0;
  const res = notNeg(c, neg, size, v, vh), rh = hiOut;
  c.gpr[2 * r] = res; c.gpr[2 * r + 1] = size === 8 ? rh : 0;
  if (neg) c.setLazy(L_SUB, size, 0, v, res, 0, vh, size === 8 ? rh : 0);
};
const notNegM: FastHandler = (c, e) => {
  const size = e.size, neg = e.op === 1;
  const lin = ea(c, e);
  const v = c.readLin(lin, size), vh = size === 8 ? c.hi : 0;
  const res = notNeg(c, neg, size, v, vh), rh = size === 8 ? hiOut : 0;
  c.writeLin(lin, size, res, rh);
  if (neg) c.setLazy(L_SUB, size, 0, v, res, 0, vh, rh);
};

// ---- MUL / IMUL / DIV / IDIV rAX (F7 /4-/7), sizes 4 and 8: ./ops/alu-muldiv.ts's own functions.

function mulDiv(c: SoftCpu, op: number, size: number, v: number, vh: number): void {
  switch (op) {
    case 4: mul(c, size, v, vh); return;
    case 5: imul1(c, size, v, vh); return;
    case 6: div(c, size, v, vh); return;
    default: idiv(c, size, v, vh);
  }
}
const mulDivR: FastHandler = (c, e) => mulDiv(c, e.op, e.size, c.gpr[2 * e.b], c.gpr[2 * e.b + 1]);
const mulDivM: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), e.size); mulDiv(c, e.op, e.size, v, c.hi); };

// ---- IMUL Gv,Ev (0F AF) and IMUL Gv,Ev,imm (69, 6B): destination e.b, source register e.a or memory, imm in
// e.imm/e.immHi (the 2-operand forms multiply by the destination).

const imulRR: FastHandler = (c, e) => {
  const s = e.a, d = e.b;
  imulTrunc(c, e.size, d, c.gpr[2 * d], c.gpr[2 * d + 1], c.gpr[2 * s], c.gpr[2 * s + 1]);
};
const imulRM: FastHandler = (c, e) => {
  const v = c.readLin(ea(c, e), e.size), vh = c.hi;
  const d = e.b;
  imulTrunc(c, e.size, d, c.gpr[2 * d], c.gpr[2 * d + 1], v, vh);
};
const imulRRI: FastHandler = (c, e) => imulTrunc(c, e.size, e.b, c.gpr[2 * e.a], c.gpr[2 * e.a + 1], e.imm, e.immHi);
const imulRMI: FastHandler = (c, e) => {
  const v = c.readLin(ea(c, e), e.size);
  imulTrunc(c, e.size, e.b, v, c.hi, e.imm, e.immHi);
};

// ---- ADC / SBB (11 13 19 1B, 81/83 /2 /3), sizes 4 and 8; e.op 2 ADC, 3 SBB. The carry-in is CF before the
// instruction; the record is Adc/Sbb with lazyCarry = carry-in, as ./ops/alu.ts leaves it.

let carryIn = 0;
function adcCalc(c: SoftCpu, sbb: boolean, size: number, d: number, dh: number, s: number, sh: number): number {
  const cin = carryIn = c.getCF() ? 1 : 0;
  if (size !== 8) { hiOut = 0; return sbb ? (d - s - cin) | 0 : (d + s + cin) | 0; }
  if (sbb) { const l = (d >>> 0) - (s >>> 0) - cin; hiOut = (dh - sh - (l < 0 ? 1 : 0)) | 0; return l | 0; }
  const l = (d >>> 0) + (s >>> 0) + cin;
  hiOut = (dh + sh + (l > 0xffffffff ? 1 : 0)) | 0;
  return l | 0;
}
function adcFlags(c: SoftCpu, sbb: boolean, size: number, d: number, dh: number, s: number, sh: number, r: number, rh: number): void {
  c.lazyCarry = carryIn;
  c.setLazy(sbb ? L_SBB : L_ADC, size, d, s, r, dh, sh, rh);
}
function adcReg(c: SoftCpu, e: BlockEntry, s: number, sh: number): void {
  const rd = e.b, size = e.size, sbb = e.op === 3;
  const d = c.gpr[2 * rd], dh = size === 8 ? c.gpr[2 * rd + 1] : 0;
  const r = adcCalc(c, sbb, size, d, dh, s, sh), rh = hiOut;
  c.gpr[2 * rd] = r; c.gpr[2 * rd + 1] = rh;
  adcFlags(c, sbb, size, d, dh, s, sh, r, rh);
}
function adcMem(c: SoftCpu, e: BlockEntry, lin: number, s: number, sh: number): void {
  const size = e.size, sbb = e.op === 3;
  const d = c.readLin(lin, size), dh = size === 8 ? c.hi : 0;
  const r = adcCalc(c, sbb, size, d, dh, s, sh), rh = hiOut;
  c.writeLin(lin, size, r, rh);
  adcFlags(c, sbb, size, d, dh, s, sh, r, rh);
}
const adcRR: FastHandler = (c, e) => adcReg(c, e, c.gpr[2 * e.a], e.size === 8 ? c.gpr[2 * e.a + 1] : 0);
const adcRM: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), e.size); adcReg(c, e, v, e.size === 8 ? c.hi : 0); };
const adcRI: FastHandler = (c, e) => adcReg(c, e, e.imm, e.immHi);
const adcMR: FastHandler = (c, e) => adcMem(c, e, ea(c, e), c.gpr[2 * e.a], e.size === 8 ? c.gpr[2 * e.a + 1] : 0);
const adcMI: FastHandler = (c, e) => adcMem(c, e, ea(c, e), e.imm, e.immHi);

// ---- INC/DEC of memory (FF /0 /1, sizes 4 and 8; FE /0 /1, size 1); e.op 0 INC, 1 DEC (CF kept: lazyCarry = CF
// before). The record's result is unmasked, as ./ops/alu.ts incDec leaves it (the flags mask it by size).

const incDecM: FastHandler = (c, e) => {
  const size = e.size, dec = e.op === 1;
  const lin = ea(c, e);
  const d = c.readLin(lin, size), dh = size === 8 ? c.hi : 0;
  let v: number, vh = 0;
  if (size === 8) {
    if (dec) { v = (d - 1) | 0; vh = (dh - (d === 0 ? 1 : 0)) | 0; }
    else { v = (d + 1) | 0; vh = (dh + (v === 0 ? 1 : 0)) | 0; }
  } else v = dec ? (d - 1) | 0 : (d + 1) | 0;
  c.writeLin(lin, size, v, vh);
  c.lazyCarry = c.getCF() ? 1 : 0;
  c.setLazy(dec ? L_DEC : L_INC, size, d, 1, v, dh, 0, vh);
};

// ---- INC/DEC of a byte register (FE /0 /1 with mod 3): e.b, bits e.bsh; as ./ops/alu.ts incDec. busybox ash's
// arithmetic and parser loops count down in byte registers (`dec dl / je`, `dec r13b / jne`: two replays per pass of
// a `while` loop's body before this form).

const incDec8Reg: FastHandler = (c, e) => {
  const dec = e.op === 1, d = rd8(c, e.b, e.bsh), v = dec ? (d - 1) | 0 : (d + 1) | 0;
  wr8(c, e.b, e.bsh, v);
  c.lazyCarry = c.getCF() ? 1 : 0;
  c.setLazy(dec ? L_DEC : L_INC, 1, d, 1, v, 0, 0, 0);
};

// ---- MOVSX (0F BE/BF): destination e.a of size e.op (4 or 8); source byte register (e.b, bit position e.imm),
// word register e.b, or memory of e.size (1 or 2) bytes.

function movsxTo(c: SoftCpu, e: BlockEntry, v: number): void {
  c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = e.op === 8 ? v >> 31 : 0;
}
const movsxR8: FastHandler = (c, e) => movsxTo(c, e, (c.gpr[2 * e.b] << (24 - e.imm)) >> 24);
const movsxR16: FastHandler = (c, e) => movsxTo(c, e, (c.gpr[2 * e.b] << 16) >> 16);
const movsxM: FastHandler = (c, e) => {
  const v = c.readLin(ea(c, e), e.size);
  movsxTo(c, e, e.size === 1 ? (v << 24) >> 24 : (v << 16) >> 16);
};

// ---- group 2 shifts/rotates of a register by CL (D3 /n), sizes 4 and 8: a masked count of 0 changes nothing but
// the upper half of a 32-bit register (as ./ops/alu-shift.ts group2)

const shiftRegCl: FastHandler = (c, e) => {
  const r = e.b, size = e.size;
  const n = c.gpr[2] & (size === 8 ? 63 : 31);
  if (n === 0) { if (size === 4) c.gpr[2 * r + 1] = 0; return; }
  c.settleFlags();
  if (size === 8) { const v = shift64(c, e.op, c.gpr[2 * r], c.gpr[2 * r + 1], n); c.gpr[2 * r] = v; c.gpr[2 * r + 1] = out.hi; }
  else { c.gpr[2 * r] = shift32(c, e.op, 4, c.gpr[2 * r], n); c.gpr[2 * r + 1] = 0; }
};

// ---- SHLD/SHRD r, r, imm8 (0F A4 / 0F AC, register destination): e.b destination, e.a source, e.imm the masked
// non-zero count, e.op 0 SHLD, 1 SHRD

const shiftDoubleRI: FastHandler = (c, e) => {
  const d = e.b, s = e.a, size = e.size;
  c.settleFlags();
  const r = doubleShift(c, e.op === 1, size, c.gpr[2 * d], c.gpr[2 * d + 1], c.gpr[2 * s], c.gpr[2 * s + 1], e.imm);
  c.gpr[2 * d] = r; c.gpr[2 * d + 1] = size === 8 ? out.hi : 0;
};

// ---- SHLD/SHRD r, r, CL (0F A5 / 0F AD, register destination, sizes 4 and 8): as shiftDoubleRI with the count from
// CL; a masked count of 0 changes nothing but the upper half of a 32-bit destination (./ops/alu-shift.ts shiftDouble)

const shiftDoubleRCl: FastHandler = (c, e) => {
  const d = e.b, s = e.a, size = e.size;
  const n = c.gpr[2] & (size === 8 ? 63 : 31);
  if (n === 0) { if (size === 4) c.gpr[2 * d + 1] = 0; return; }
  c.settleFlags();
  const r = doubleShift(c, e.op === 1, size, c.gpr[2 * d], c.gpr[2 * d + 1], c.gpr[2 * s], c.gpr[2 * s + 1], n);
  c.gpr[2 * d] = r; c.gpr[2 * d + 1] = size === 8 ? out.hi : 0;
};

// ---- ROL/ROR/SHL/SAL/SHR/SAR of a 16-bit register by a constant 1..15 (66 C1 /n ib, 66 D1 /n; not RCL/RCR): bits
// 16-63 kept

const shift16RegImm: FastHandler = (c, e) => {
  const r = e.b;
  c.settleFlags();
  c.gpr[2 * r] = (c.gpr[2 * r] & ~0xffff) | shift32(c, e.op, 2, c.gpr[2 * r] & 0xffff, e.imm);
};

// ---- SHL/SAL/SHR/SAR of a 16-bit memory operand by a constant 1..15 (66 C1 /4-/7 ib, 66 D1 /4-/7): the read, the
// result and flags computed, the write (which may fault: the flags from before stay until it is done, as
// ./ops/alu-shift.ts group2), then the flags. Linux's page allocator (get_page_from_freelist: `sar word [rbp+16],1`)
// runs one per page it hands out: ~270 replays per MiB of bench/io's sequential write before this form.

const shift16M: FastHandler = (c, e) => {
  const lin = ea(c, e);
  const v = c.readLin(lin, 2);
  c.settleFlags();
  const before = c.flags;
  const r = shift32(c, e.op, 2, v, e.imm);
  const after = c.flags;
  c.flags = before;
  c.writeLin(lin, 2, r);
  c.flags = after;
};

// ---- SHL/SAL/SHR/SAR of a 32/64-bit memory operand by CL (D3 /4-/7, memory), as ./ops/alu-shift.ts group2: the
// read (which may fault) always; a masked count (CL & 31, & 63 for size 8) of 0 then changes nothing (no write, no
// flag: SDM Vol. 2B SAL/SAR/SHL/SHR "If the count is 0, the flags are not affected"); else the result and flags,
// the write (which may fault: the flags from before stay until it is done), then the flags. Linux:
// `shr qword [rsp+8],cl` in __update_load_avg_se (~37 replays per MiB of bench/io's write before this form).

const shiftMCl: FastHandler = (c, e) => {
  const size = e.size, lin = ea(c, e);
  const v = c.readLin(lin, size), vh = c.hi;
  const n = c.gpr[2] & (size === 8 ? 63 : 31);
  if (n === 0) return;
  c.settleFlags();
  const before = c.flags;
  let r: number, rh = 0;
  if (size === 8) { r = shift64(c, e.op, v, vh, n); rh = out.hi; } else r = shift32(c, e.op, 4, v, n);
  const after = c.flags;
  c.flags = before;
  c.writeLin(lin, size, r, rh);
  c.flags = after;
};

// ---- CALL/JMP near indirect (FF /2, FF /4): target from register e.b or memory (8 bytes in 64-bit mode), #GP(0)
// when it is not canonical, then (CALL) the push of the return address, then RIP

function indirect(c: SoftCpu, e: BlockEntry): number {
  let lo: number, hi: number;
  if (e.base === REG_OPERAND) { lo = c.gpr[2 * e.b]; hi = c.gpr[2 * e.b + 1]; } else { lo = c.readLin(ea(c, e), 8); hi = c.hi; }
  const t = hi * TWO32 + (lo >>> 0);
  if (t < -TWO47 || t >= TWO47) c.gp(0);
  return t;
}
const callInd: FastHandler = (c, e) => {
  const target = indirect(c, e);
  const r = c.rip;
  push64(c, r | 0, Math.floor(r / TWO32) | 0);
  c.rip = target;
};
const jmpInd: FastHandler = (c, e) => { c.rip = indirect(c, e); };

// ---- CMPXCHG r/m, r (0F B1), memory destination, sizes 4 and 8: flags of CMP rAX, DEST; equal: DEST = e.a,
// otherwise rAX = DEST and DEST is written back with its own value (both after the read, before the flags)

const cmpxchgM: FastHandler = (c, e) => {
  const size = e.size;
  const acc = c.gpr[0], acch = size === 8 ? c.gpr[1] : 0;
  const lin = ea(c, e);
  const d = c.readLin(lin, size), dh = size === 8 ? c.hi : 0;
  const r = size === 8 ? calc64(CMP, acc, acch, d, dh) : (acc - d) | 0, rh = size === 8 ? hiOut : 0;
  if (size === 8 ? r === 0 && rh === 0 : r === 0) {
    c.writeLin(lin, size, c.gpr[2 * e.a], size === 8 ? c.gpr[2 * e.a + 1] : 0);
  } else {
    c.writeLin(lin, size, d, dh);
    c.gpr[0] = d; c.gpr[1] = dh;
  }
  c.setLazy(L_SUB, size, acc, d, r, acch, dh, rh);
};

// ---- XADD r/m, r (0F C1), memory destination: DEST = DEST + SRC written first, then SRC = old DEST, flags of ADD

const xaddM: FastHandler = (c, e) => {
  const size = e.size, s = e.a;
  const sl = c.gpr[2 * s], sh = size === 8 ? c.gpr[2 * s + 1] : 0;
  const lin = ea(c, e);
  const d = c.readLin(lin, size), dh = size === 8 ? c.hi : 0;
  const r = size === 8 ? calc64(ADD, d, dh, sl, sh) : (d + sl) | 0, rh = size === 8 ? hiOut : 0;
  c.writeLin(lin, size, r, rh);
  c.gpr[2 * s] = d; c.gpr[2 * s + 1] = dh;
  c.setLazy(L_ADD, size, d, sl, r, dh, sh, rh);
};

// ---- XCHG r/m, r (87), sizes 4 and 8 (session 12, for the wasm translator), as ./ops/alu.ts: registers e.a and e.b
// swap (a 32-bit swap zero-extends both); with memory: the read, the write of e.a, then e.a = the old value (a
// memory XCHG is implicitly locked: nothing to do with the vCPUs on one thread)

const xchgRR: FastHandler = (c, e) => {
  const a = c.gpr[2 * e.a], ah = c.gpr[2 * e.a + 1], wide = e.size === 8;
  c.gpr[2 * e.a] = c.gpr[2 * e.b]; c.gpr[2 * e.a + 1] = wide ? c.gpr[2 * e.b + 1] : 0;
  c.gpr[2 * e.b] = a; c.gpr[2 * e.b + 1] = wide ? ah : 0;
};
const xchgM: FastHandler = (c, e) => {
  const size = e.size, lin = ea(c, e);
  const v = c.readLin(lin, size), vh = size === 8 ? c.hi : 0;
  c.writeLin(lin, size, c.gpr[2 * e.a], size === 8 ? c.gpr[2 * e.a + 1] : 0);
  c.gpr[2 * e.a] = v; c.gpr[2 * e.a + 1] = vh;
};

// ---- PUSHF (9C, 64-bit operand): RFLAGS with VM and RF cleared (VM is 0 in 64-bit mode); PUSH imm (68, 6A)

const pushf: FastHandler = (c) => push64(c, c.getFlags() & ~(C.VM | C.RF), 0);
const pushImm: FastHandler = (c, e) => push64(c, e.imm, e.immHi);

// ---- SETcc m8 (0F 90-9F, memory): e.op the condition

const setccM: FastHandler = (c, e) => c.writeLin(ea(c, e), 1, c.condition(e.op) ? 1 : 0);

// ---- BT/BTS/BTR/BTC (0F BA /4-/7 imm8; 0F A3/AB/B3/BB with a register offset), sizes 4 and 8: e.op 0 BT, 1 BTS,
// 2 BTR, 3 BTC; bit offset e.imm (immediate, masked) or register e.a (memory forms: the signed offset also selects
// the operand, SDM BT "bit base, bit offset"). Only CF changes.

function bitChange(c: SoftCpu, kind: number, lo: number, hi: number, bit: number): number {
  let cf: number;
  if (bit < 32) {
    const m = 1 << bit;
    cf = (lo >>> bit) & 1;
    if (kind === 1) lo |= m; else if (kind === 2) lo &= ~m; else if (kind === 3) lo ^= m;
  } else {
    const m = 1 << (bit - 32);
    cf = (hi >>> (bit - 32)) & 1;
    if (kind === 1) hi |= m; else if (kind === 2) hi &= ~m; else if (kind === 3) hi ^= m;
  }
  hiOut = hi;
  carryIn = cf;
  return lo;
}
function btReg(c: SoftCpu, e: BlockEntry, bit: number): void {
  const r = e.b, size = e.size, kind = e.op;
  const lo = bitChange(c, kind, c.gpr[2 * r], size === 8 ? c.gpr[2 * r + 1] : 0, bit), cf = carryIn;
  if (kind !== 0) { c.gpr[2 * r] = lo; c.gpr[2 * r + 1] = size === 8 ? hiOut : 0; }
  setSomeFlags(c, C.CF, cf);
}
function btMem(c: SoftCpu, e: BlockEntry, lin: number, bit: number): void {
  const size = e.size, kind = e.op;
  const v = c.readLin(lin, size);
  const lo = bitChange(c, kind, v, size === 8 ? c.hi : 0, bit), cf = carryIn;
  if (kind !== 0) c.writeLin(lin, size, lo, hiOut);
  setSomeFlags(c, C.CF, cf);
}
const btRI: FastHandler = (c, e) => btReg(c, e, e.imm);
const btMI: FastHandler = (c, e) => btMem(c, e, ea(c, e), e.imm);
const btRR: FastHandler = (c, e) => btReg(c, e, c.gpr[2 * e.a] & (e.size * 8 - 1));
const btMR: FastHandler = (c, e) => {
  const size = e.size, off = c.gpr[2 * e.a];
  // Byte displacement of the addressed operand: floor(offset / width) operands (the offset is signed).
  const delta = size === 8 ? Math.floor((c.gpr[2 * e.a + 1] * TWO32 + (off >>> 0)) / 64) * 8 : (off >> 5) * 4;
  let a = ea(c, e) + delta;
  if (a >= TWO63) a -= TWO64; else if (a < -TWO63) a += TWO64;
  btMem(c, e, a, off & (size * 8 - 1));
};

// ---- CBW family (98: CDQE with REX.W, CWDE) and CWD family (99: CQO, CDQ); e.op 0 for 98, 1 for 99

const cdq: FastHandler = (c, e) => {
  const R = c.gpr;
  if (e.op === 0) {
    if (e.size === 8) { c.gpr[1] = R[0] >> 31; } else { R[0] = (R[0] << 16) >> 16; c.gpr[1] = 0; }
  } else if (e.size === 8) { const s = c.gpr[1] >> 31; R[4] = s; c.gpr[5] = s; }
  else { R[4] = R[0] >> 31; c.gpr[5] = 0; }
};

// ---- BSWAP r (0F C8+r), sizes 4 and 8

const bswap32 = (v: number): number => ((v << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) | 0;
const bswap: FastHandler = (c, e) => {
  const r = e.b;
  if (e.size === 8) { const lo = c.gpr[2 * r]; c.gpr[2 * r] = bswap32(c.gpr[2 * r + 1]); c.gpr[2 * r + 1] = bswap32(lo); }
  else { c.gpr[2 * r] = bswap32(c.gpr[2 * r]); c.gpr[2 * r + 1] = 0; }
};

// ---- 16-bit ALU and MOV (66h prefix): a register destination keeps bits 16-63; the result recorded for the flags
// is the unmasked int32 sum/difference of the zero-extended operands, as ./ops/alu.ts records it

function alu16(c: SoftCpu, op: number, d: number, s: number): number {
  switch (op) {
    case ADD: return (d + s) | 0;
    case SUB: case CMP: return (d - s) | 0;
    case OR: return d | s;
    case XOR: return d ^ s;
    default: return d & s; // AND, TEST
  }
}
function alu16Reg(c: SoftCpu, e: BlockEntry, s: number): void {
  const op = e.op, rd = e.b;
  const d = c.gpr[2 * rd] & 0xffff;
  const r = alu16(c, op, d, s);
  if (op < CMP) c.gpr[2 * rd] = (c.gpr[2 * rd] & ~0xffff) | (r & 0xffff);
  c.setLazy(op === TEST ? L_LOGIC : KIND[op], 2, d, s, r, 0, 0, 0);
}
function alu16Mem(c: SoftCpu, e: BlockEntry, lin: number, s: number): void {
  const op = e.op;
  const d = c.readLin(lin, 2);
  const r = alu16(c, op, d, s);
  if (op < CMP) c.writeLin(lin, 2, r);
  c.setLazy(op === TEST ? L_LOGIC : KIND[op], 2, d, s, r, 0, 0, 0);
}
const alu16RR: FastHandler = (c, e) => alu16Reg(c, e, c.gpr[2 * e.a] & 0xffff);
const alu16RI: FastHandler = (c, e) => alu16Reg(c, e, e.imm);
const alu16RM: FastHandler = (c, e) => alu16Reg(c, e, c.readLin(ea(c, e), 2));
const alu16MR: FastHandler = (c, e) => alu16Mem(c, e, ea(c, e), c.gpr[2 * e.a] & 0xffff);
const alu16MI: FastHandler = (c, e) => alu16Mem(c, e, ea(c, e), e.imm);
const movStore16: FastHandler = (c, e) => c.writeLin(ea(c, e), 2, c.gpr[2 * e.a] & 0xffff);
// MOV m16, imm16 (66 C7 /0 iw, memory): Linux's handle_softirqs clears a per-CPU word (`mov word gs:[rip+x],0`)
// on every pass (~19 replays per MiB of bench/io's write before this form)
const movImm16M: FastHandler = (c, e) => c.writeLin(ea(c, e), 2, e.imm);
const movLoad16: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 2); c.gpr[2 * e.a] = (c.gpr[2 * e.a] & ~0xffff) | v; };

// ---- LEAVE (C9, 64-bit operand): RBP is read at [RBP] (the fault comes first), RSP = RBP + 8

const leave: FastHandler = (c) => {
  const lo = c.gpr[10], hi = c.gpr[11];
  const v = c.readLin(hi * TWO32 + (lo >>> 0), 8), vh = c.hi;
  c.gpr[8] = (lo + 8) | 0; c.gpr[9] = (lo >>> 0) > 0xfffffff7 ? (hi + 1) | 0 : hi;
  c.gpr[10] = v; c.gpr[11] = vh;
};

// ---- CLI / STI (FA, FB) in 64-bit mode: #GP(0) when CPL > IOPL; STI that sets IF blocks interrupts for one more
// instruction and asks for an event check (as ./system/control.ts)

const cli: FastHandler = (c) => {
  if (c.cpl > ((c.flags >> 12) & 3)) c.gp(0);
  c.flags &= ~C.IF;
};
const sti: FastHandler = (c) => {
  if (c.cpl > ((c.flags >> 12) & 3)) c.gp(0);
  stiSetsIf(c);
};

// ---- SWAPGS (0F 01 F8): the interpreter's ./system/gs-tsc.ts swapgs (64-bit mode, #GP(0) above CPL 0;
// exchanges the GS base with IA32_KERNEL_GS_BASE)

const swapgs: FastHandler = (c) => execSwapgs(c);

// ---- PUSH r/m64 (FF /6, memory): the operand is read (at the address from the old RSP) before the push

const pushM: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 8); push64(c, v, c.hi); };

// =====================================================================================================
// Third generation (session 12): the SSE/SSE2 instructions of glibc's string functions (strlen, strchr, memchr,
// memset, memcpy: RINGZERO_WASM_PROFILE=1 on an ash loop), for ./wasm/sse.ts to run inline. Each does what its
// handler in ./ops/sse.ts or ./ops/sse-int.ts does, in the same order: the SSE availability check (#UD for CR0.EM
// or no CR4.OSFXSR, then #NM for CR0.TS; LOCK and the prefixes that make another instruction get no form), then
// the memory operand (16-byte aligned ones: #GP(0) when misaligned; a 16-byte store probes both pages before it
// writes), then the registers. XMM registers are `c.fpu.xi32` (4 int32 each), the operations run on the handlers'
// scratch operands D (destination) and S (source) with the handlers' own functions (INT_FN).

/** sseCheck of ./ops/sse-common.ts but LOCK (no form has it); passing it means SSE is usable now (FpuState.sseOk). */
function sseCheck(c: SoftCpu): void {
  if ((c.cr0 & C.CR0_EM) || !(c.cr4 & C.CR4_OSFXSR)) c.ud();
  if (c.cr0 & C.CR0_TS) c.fault(C.EXC_NM);
  c.fpu.sseOk[0] = 1;
}

/** 16 bytes of memory at the entry's operand into S (readMem of ./ops/sse-common.ts: two 8-byte reads). */
function read16(c: SoftCpu, e: BlockEntry, aligned: boolean): void {
  const lin = ea(c, e);
  if (aligned && (lin & 15)) c.gp(0);
  const a = c.readLin(lin, 8), b = c.hi;
  const x = c.readLin(c.addLin(lin, 8), 8), d = c.hi;
  const s = S.i32;
  s[0] = a; s[1] = b; s[2] = x; s[3] = d;
}

const toS = (c: SoftCpu, r: number): void => { const x = c.fpu.xi32, o = r << 2, s = S.i32; s[0] = x[o]; s[1] = x[o + 1]; s[2] = x[o + 2]; s[3] = x[o + 3]; };
const toD = (c: SoftCpu, r: number): void => { const x = c.fpu.xi32, o = r << 2, d = D.i32; d[0] = x[o]; d[1] = x[o + 1]; d[2] = x[o + 2]; d[3] = x[o + 3]; };
const put = (c: SoftCpu, r: number, v: Int32Array): void => { const x = c.fpu.xi32, o = r << 2; x[o] = v[0]; x[o + 1] = v[1]; x[o + 2] = v[2]; x[o + 3] = v[3]; };

/** MOVAPS/MOVUPS/MOVDQA/MOVDQU register to register: XMM e.b = XMM e.a. */
const sseMovRR: FastHandler = (c, e) => { sseCheck(c); toS(c, e.a); put(c, e.b, S.i32); };
/** The loads of those (0F 28, 10, 6F): XMM e.a = m128, e.op 1: aligned. */
const sseLoad: FastHandler = (c, e) => { sseCheck(c); read16(c, e, e.op === 1); put(c, e.a, S.i32); };
/** The stores (0F 29, 11, 7F, 2B, E7): m128 = XMM e.a, e.op 1: aligned; both pages checked before the first write. */
const sseStore: FastHandler = (c, e) => {
  sseCheck(c);
  toS(c, e.a);
  const lin = ea(c, e);
  if (e.op === 1 && (lin & 15)) c.gp(0);
  c.probeWrite(lin, 16);
  const s = S.i32;
  c.writeLin(lin, 8, s[0], s[1]);
  c.writeLin(c.addLin(lin, 8), 8, s[2], s[3]);
};

/** The D = D op S function of each 0F xx opcode with a form (the handler's), and PSHUFD's immediate. */
const SSE_FN: IntFn[] = new Array(256);
let sseImm = 0;
/** PSHUFD (66 0F 70): D's dwords from S's, picked by the immediate (the handler is not an intOp one). */
const pshufd: IntFn = () => {
  const d = D.i32, s = S.i32, k = sseImm;
  d[0] = s[k & 3]; d[1] = s[(k >> 2) & 3]; d[2] = s[(k >> 4) & 3]; d[3] = s[(k >> 6) & 3];
};
SSE_FN[0x70] = pshufd;

/** 66 0F op / 0F 54-57 with a register source: XMM e.b = XMM e.b op XMM e.a (e.op: the opcode's low byte). */
const sseOpRR: FastHandler = (c, e) => { sseCheck(c); toD(c, e.b); toS(c, e.a); sseImm = e.imm; SSE_FN[e.op](16); put(c, e.b, D.i32); };
/** The same with an aligned m128 source. */
const sseOpRM: FastHandler = (c, e) => { sseCheck(c); toD(c, e.b); read16(c, e, true); sseImm = e.imm; SSE_FN[e.op](16); put(c, e.b, D.i32); };

/** PMOVMSKB r32, xmm (66 0F D7): register e.b = the sign bits of XMM e.a's bytes. */
const ssePmovmskb: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, o = e.a << 2;
  let m = 0;
  for (let k = 0; k < 4; k++) {
    const v = x[o + k];
    m |= (((v >>> 7) & 1) | ((v >>> 14) & 2) | ((v >>> 21) & 4) | ((v >>> 28) & 8)) << (4 * k);
  }
  c.gpr[2 * e.b] = m; c.gpr[2 * e.b + 1] = 0;
};

/** MOVD/MOVQ xmm, r (66 0F 6E): XMM e.b = register e.a of e.size bytes, zero-extended. */
const sseMovdXR: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, o = e.b << 2;
  x[o] = c.gpr[2 * e.a]; x[o + 1] = e.size === 8 ? c.gpr[2 * e.a + 1] : 0; x[o + 2] = 0; x[o + 3] = 0;
};
/** MOVD/MOVQ xmm, m (66 0F 6E; F3 0F 7E m64): XMM e.b = e.size bytes of memory, zero-extended. */
const sseMovdXM: FastHandler = (c, e) => {
  sseCheck(c);
  const lo = c.readLin(ea(c, e), e.size), hi = e.size === 8 ? c.hi : 0;
  const x = c.fpu.xi32, o = e.b << 2;
  x[o] = lo; x[o + 1] = hi; x[o + 2] = 0; x[o + 3] = 0;
};
/** MOVD/MOVQ r, xmm (66 0F 7E): register e.b = the low e.size bytes of XMM e.a (size 4 zero-extends). */
const sseMovdRX: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, o = e.a << 2;
  c.gpr[2 * e.b] = x[o]; c.gpr[2 * e.b + 1] = e.size === 8 ? x[o + 1] : 0;
};
/** MOVD/MOVQ m, xmm (66 0F 7E; 66 0F D6): e.size bytes of memory = the low bytes of XMM e.a. */
const sseMovdMX: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, o = e.a << 2;
  c.writeLin(ea(c, e), e.size, x[o], x[o + 1]);
};
/** MOVQ xmm, xmm (F3 0F 7E, 66 0F D6): XMM e.b = the low 8 bytes of XMM e.a, the upper half zeroed. */
const sseMovqXX: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, s = e.a << 2, d = e.b << 2;
  const lo = x[s], hi = x[s + 1];
  x[d] = lo; x[d + 1] = hi; x[d + 2] = 0; x[d + 3] = 0;
};

/** MOVLPS/MOVLPD, MOVHPS/MOVHPD m64 loads (0F 12/16): the low (e.op 0) or high (1) half of XMM e.a from memory. */
const sseHalfLoad: FastHandler = (c, e) => {
  sseCheck(c);
  const lo = c.readLin(ea(c, e), 8), hi = c.hi;
  const x = c.fpu.xi32, o = (e.a << 2) + 2 * e.op;
  x[o] = lo; x[o + 1] = hi;
};
/** Their stores (0F 13/17): memory = the low (e.op 0) or high (1) half of XMM e.a. */
const sseHalfStore: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, o = (e.a << 2) + 2 * e.op;
  c.writeLin(ea(c, e), 8, x[o], x[o + 1]);
};
/** MOVHLPS (e.op 0: low half of XMM e.b = high half of XMM e.a) / MOVLHPS (1: high half of e.b = low half of e.a). */
const sseHalfMove: FastHandler = (c, e) => {
  sseCheck(c);
  const x = c.fpu.xi32, s = (e.a << 2) + (e.op === 0 ? 2 : 0), d = (e.b << 2) + (e.op === 0 ? 0 : 2);
  const lo = x[s], hi = x[s + 1];
  x[d] = lo; x[d + 1] = hi;
};

/** 0F opcodes (low byte) compileSse looks at: 1 a move, 2 an intOp operation (66 only), 3 ANDPS..XORPS. */
const SSE_OPS = new Uint8Array(256);
for (const op of [0x10, 0x11, 0x12, 0x13, 0x16, 0x17, 0x28, 0x29, 0x2b, 0x6e, 0x6f, 0x70, 0x7e, 0x7f, 0xd6, 0xd7, 0xe7]) SSE_OPS[op] = 1;
for (const op of [0x54, 0x55, 0x56, 0x57]) SSE_OPS[op] = 3;
/** ANDPS, ANDNPS, ORPS, XORPS (and the PD forms) are PAND, PANDN, POR, PXOR on 16 bytes (./ops/sse.ts logic). */
const LOGIC_AS_INT = [0xdb, 0xdf, 0xeb, 0xef];

/** compileFast for the SSE forms (their mandatory prefixes are 66/F3, which compileFast rejects). */
function compileSse(c: SoftCpu, e: BlockEntry, pa: number, len: number, op: number, ram: Uint8Array): number {
  if (e.lock || e.adsize !== 8) return 0;
  const rep = e.rep, p66 = e.p66;
  let p = modrm(ram, pa + e.opLen, e);
  const reg = regField, rm = rmReg, m3 = mod === 3;
  let f: FastHandler | null = null;
  let form = Form.None;
  const move = (load: boolean, aligned: boolean) => {
    if (m3) { if (load) { e.b = reg; e.a = rm; } else { e.b = rm; e.a = reg; } f = sseMovRR; form = Form.SseMovRR; }
    else { e.a = reg; e.op = aligned ? 1 : 0; f = load ? sseLoad : sseStore; form = load ? Form.SseLoad : Form.SseStore; }
  };
  const intop = (k: number) => {
    const fn = SSE_FN[k] ?? INT_FN.get(ops0f[k]);
    if (fn === undefined) return;
    SSE_FN[k] = fn;
    e.op = k; e.b = reg;
    if (m3) { e.a = rm; f = sseOpRR; form = Form.SseOpRR; } else { f = sseOpRM; form = Form.SseOpRM; }
  };
  switch (SSE_OPS[op] === 0 ? -1 : op) {
    case 0x28: case 0x10: if (rep === 0) move(true, op === 0x28); break;
    case 0x29: case 0x11: if (rep === 0) move(false, op === 0x29); break;
    case 0x6f: case 0x7f:
      if (rep === 0xf3 || (p66 && rep === 0)) move(op === 0x6f, rep === 0);
      break;
    case 0x2b: case 0xe7:
      if (rep === 0 && !m3 && (op === 0x2b || p66)) move(false, true);
      break;
    case 0x12: case 0x16:
      // (F3/F2: MOVSLDUP, MOVDDUP, MOVSHDUP: no form; 66 with a register operand: #UD in the handler)
      if (rep !== 0) break;
      if (!m3) { e.a = reg; e.op = op === 0x16 ? 1 : 0; f = sseHalfLoad; form = Form.SseHalfLoad; }
      else if (!p66) { e.b = reg; e.a = rm; e.op = op === 0x16 ? 1 : 0; f = sseHalfMove; form = Form.SseHalfMove; }
      break;
    case 0x13: case 0x17:
      if (rep === 0 && !m3) { e.a = reg; e.op = op === 0x17 ? 1 : 0; f = sseHalfStore; form = Form.SseHalfStore; }
      break;
    case 0x54: case 0x55: case 0x56: case 0x57:
      if (rep === 0) intop(LOGIC_AS_INT[op - 0x54]);
      break;
    case 0x70:
      if (p66 && rep === 0) { e.imm = ram[p]; p += 1; intop(0x70); }
      break;
    case 0xd7:
      if (p66 && rep === 0 && m3) { e.b = reg; e.a = rm; f = ssePmovmskb; form = Form.SsePmovmskb; }
      break;
    case 0x6e:
      if (p66 && rep === 0) {
        e.b = reg; e.size = e.rexW ? 8 : 4;
        if (m3) { e.a = rm; f = sseMovdXR; form = Form.SseMovdXR; } else { f = sseMovdXM; form = Form.SseMovdXM; }
      }
      break;
    case 0x7e:
      if (rep === 0xf3) {
        e.b = reg;
        if (m3) { e.a = rm; f = sseMovqXX; form = Form.SseMovqXX; } else { e.size = 8; f = sseMovdXM; form = Form.SseMovdXM; }
      } else if (p66 && rep === 0) {
        e.a = reg; e.size = e.rexW ? 8 : 4;
        if (m3) { e.b = rm; f = sseMovdRX; form = Form.SseMovdRX; } else { f = sseMovdMX; form = Form.SseMovdMX; }
      }
      break;
    case 0xd6:
      if (p66 && rep === 0) {
        e.a = reg;
        if (m3) { e.b = rm; f = sseMovqXX; form = Form.SseMovqXX; } else { e.size = 8; f = sseMovdMX; form = Form.SseMovdMX; }
      }
      break;
    default:
      if (p66 && rep === 0) intop(op);
  }
  if (f === null) return 0;
  const decoded = p - pa;
  if (len !== 0 && decoded !== len) return 0;
  e.fast = f;
  e.form = form;
  return decoded;
}

// ---- BSF / BSR (0F BC / 0F BD; F3 0F BC/BD, TZCNT/LZCNT, run as BSF/BSR on this CPU, as ./ops/alu-bits.ts
// bitScan), sizes 4 and 8: a zero source sets ZF and PF, clears the other arithmetic flags and leaves the destination
// alone; else the destination (e.b) is the index of the lowest (e.op 0) / highest (1) set bit and PF its parity.

function bitScanTo(c: SoftCpu, e: BlockEntry, lo: number, hi: number): void {
  if (lo === 0 && hi === 0) { c.setArith(C.ZF | C.PF); return; }
  const idx = e.op === 0 ? (lo !== 0 ? 31 - Math.clz32(lo & -lo) : 63 - Math.clz32(hi & -hi))
    : (hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo));
  c.gpr[2 * e.b] = idx; c.gpr[2 * e.b + 1] = 0;
  c.setArith(PARITY[idx]);
}
const bitScanR: FastHandler = (c, e) => bitScanTo(c, e, c.gpr[2 * e.a], e.size === 8 ? c.gpr[2 * e.a + 1] : 0);
const bitScanM: FastHandler = (c, e) => { const lo = c.readLin(ea(c, e), e.size); bitScanTo(c, e, lo, e.size === 8 ? c.hi : 0); };

// ---- POPCNT (F3 0F B8), sizes 4 and 8 (16 keeps the handler), as ./ops/alu-bits.ts: destination e.b = the number
// of set bits of register e.a or memory; ZF = the source is 0, OF SF AF CF PF cleared (SDM Vol. 2B "POPCNT").
// Linux (hweight64 under the alternative that picks POPCNT): ~700 replays per boot before this form.

function popcntTo(c: SoftCpu, e: BlockEntry, lo: number, hi: number): void {
  const n = popcount32(lo) + popcount32(hi);
  c.gpr[2 * e.b] = n; c.gpr[2 * e.b + 1] = 0;
  c.setArith(n === 0 ? C.ZF : 0);
}
const popcntR: FastHandler = (c, e) => popcntTo(c, e, c.gpr[2 * e.a], e.size === 8 ? c.gpr[2 * e.a + 1] : 0);
const popcntM: FastHandler = (c, e) => { const lo = c.readLin(ea(c, e), e.size); popcntTo(c, e, lo, e.size === 8 ? c.hi : 0); };

/**
 * A 32/64-bit destination register (ModRM reg) from a register or memory source (ModRM r/m), no LOCK, 64-bit
 * addressing: POPCNT and BSF/BSR. `r`/`m`: the form and handler for each kind of source. Returns the bytes decoded, 0
 * when the instruction has no fast form.
 */
function compileRegFromRm(e: BlockEntry, pa: number, len: number, ram: Uint8Array, r: [Form, FastHandler], m: [Form, FastHandler]): number {
  const size = e.opsize;
  if (e.lock || e.adsize !== 8 || (size !== 4 && size !== 8)) return 0;
  const p = modrm(ram, pa + e.opLen, e);
  e.b = regField; e.size = size;
  const [form, f] = mod === 3 ? r : m;
  if (mod === 3) e.a = rmReg;
  e.form = form;
  const decoded = p - pa;
  if (len !== 0 && decoded !== len) { e.form = Form.None; return 0; }
  e.fast = f;
  return decoded;
}

// =====================================================================================================
// Session 13 (issue 4/5, the kernel's I/O paths): RDTSC/RDTSCP (every kvm-clock read), CMPXCHG m8 (vmstat's
// this_cpu_cmpxchg with GS), and LOCK on the read-modify-write memory forms (compileFast's lockable()).

// ---- RDTSC (0F 31) / RDTSCP (0F 01 F9): the interpreter's ./system/control.ts rdtsc and ./system/gs-tsc.ts rdtscp
// (#GP(0) when CR4.TSD and CPL > 0; EDX:EAX = TSC; RDTSCP also ECX = IA32_TSC_AUX[31:0]).

const rdtsc: FastHandler = (c) => execRdtsc(c);
const rdtscp: FastHandler = (c) => execRdtscp(c);

/**
 * The wasm translator's helper `sy` (./wasm/runtime.ts) for kinds >= 2: 2 RDTSC, 3 RDTSCP, 4 SWAPGS, 5 CLD, 6 STD (as
 * their closures; 0 returned), 8 + n: the selector of segment register n (MOV r/m, Sreg), which is JavaScript state;
 * SY_SYSCALL, SY_SYSRETQ (the helper sets RIP to the next instruction's and moves the flag record first).
 */
export const SY_SYSCALL = 16, SY_SYSRETQ = 17;
/**
 * The helper `sy`'s kind for translated RDTSC's time-stamp counter (./wasm/runtime.ts: low half returned, high half in
 * the state area's S_HI; the #GP(0) of CR4.TSD is checked in wasm): not an instruction of execSy's.
 */
export const SY_TSC = 18;
export function execSy(c: SoftCpu, kind: number): number {
  if (kind === SY_SYSCALL) { execSyscall(c); return 0; }
  if (kind === SY_SYSRETQ) { execSysret(c, true); return 0; }
  if (kind >= 8) return c.segSel[kind - 8];
  if (kind === 5) { c.flags &= ~C.DF; return 0; } // CLD
  if (kind === 6) { c.flags |= C.DF; return 0; } // STD
  if (kind === 2) execRdtsc(c);
  else if (kind === 3) execRdtscp(c);
  else execSwapgs(c);
  return 0;
}

// ---- MOV r/m, Sreg (8C) as ./system/segments.ts: register e.b gets the selector (16-bit operand: its low 16 bits
// only; 32/64-bit: zero-extended), memory gets 2 bytes. e.op the segment register (0-5).

const movSregR: FastHandler = (c, e) => {
  const sel = c.segSel[e.op];
  if (e.size === 2) c.gpr[2 * e.b] = (c.gpr[2 * e.b] & ~0xffff) | sel;
  else { c.gpr[2 * e.b] = sel; c.gpr[2 * e.b + 1] = 0; }
};
const movSregM: FastHandler = (c, e) => c.writeLin(ea(c, e), 2, c.segSel[e.op]);

// ---- CLD / STD (FC, FD) as ./ops/flow-misc.ts

const cld: FastHandler = (c) => { c.flags &= ~C.DF; };
const std: FastHandler = (c) => { c.flags |= C.DF; };

// ---- group 2 of a byte register by a constant 1..7 (C0 /n ib, D0 /n) as ./ops/alu-shift.ts group2: register
// (e.b, bits e.bsh), operation e.op, count e.imm (larger counts keep the handler)

const shift8RegImm: FastHandler = (c, e) => {
  c.settleFlags();
  wr8(c, e.b, e.bsh, shift32(c, e.op, 1, rd8(c, e.b, e.bsh), e.imm));
};

// ---- CMPXCHG16B m128 (REX.W 0F C7 /1): ./ops/alu-common.ts cmpxchg16b, as the interpreter

const cmpxchg16bM: FastHandler = (c, e) => cmpxchg16b(c, ea(c, e));

// ---- CMPXCHG m8, r8 (0F B0, memory) as ./ops/alu.ts: flags of CMP AL, DEST; equal: DEST = r8 e.a (bits e.ash),
// else DEST written back with its own value, then AL = DEST

const cmpxchg8M: FastHandler = (c, e) => {
  const acc = c.gpr[0] & 0xff;
  const lin = ea(c, e);
  const d = c.readLin(lin, 1);
  const r = (acc - d) & 0xff;
  if (r === 0) c.writeLin(lin, 1, rd8(c, e.a, e.ash));
  else { c.writeLin(lin, 1, d); wr8(c, 0, 0, d); }
  c.setLazy(L_SUB, 1, acc, d, r, 0, 0, 0);
};

// =====================================================================================================
// Session 16 (issues 4/5, the kernel's system-call path): SYSCALL and SYSRETQ, each a replay per Linux system call
// (RINGZERO_WASM_PROFILE: 2 of the ~2 replays per system call of bench/engines' syscall loop, 2 of ~5.5 per 4 KiB
// random read of bench/io). Their state (CPL, CS/SS, RFLAGS' system bits, the MSRs) is JavaScript's: translated code
// calls the helper `sy` (kinds SY_SYSCALL, SY_SYSRETQ), which runs these without the replay's decoder state.

/** SYSCALL (0F 05) as ./system/fastcall.ts (its #UD checks, RCX/R11, RFLAGS masked by SFMASK, CS/SS from STAR). */
const syscallF: FastHandler = (c) => execSyscall(c);
/** SYSRETQ (REX.W 0F 07) as ./system/fastcall.ts (#UD, #GP(0) above CPL 0 or for a non-canonical RCX, RFLAGS from R11). */
const sysretqF: FastHandler = (c) => execSysret(c, true);

/**
 * Whether form `f` (as decoded into `e`) may carry LOCK: the read-modify-write memory forms the SDM lists under LOCK
 * (ADD ADC AND BTC BTR BTS CMPXCHG DEC INC NEG NOT OR SBB SUB XOR XADD XCHG). LOCK with CMP/TEST/BT, a register
 * destination or any other instruction is #UD: those keep the handler, which raises it. The vCPUs run on one
 * thread, so a locked form is the plain one.
 */
function lockable(f: FastHandler, e: BlockEntry): boolean {
  if (f === aluMemReg || f === aluMemImm || f === alu8MR || f === alu8MI || f === alu16MR || f === alu16MI) return e.op < CMP;
  if (f === btMI || f === btMR) return e.op !== 0;
  if (f === notNegM) return e.op <= 1;
  return f === adcMR || f === adcMI || f === incDecM || f === xaddM || f === cmpxchgM || f === cmpxchg8M || f === xchgM ||
    f === cmpxchg16bM;
}

// =====================================================================================================
// Compilation

/** Result of `modrm`: the offset just past ModRM/SIB/displacement, or -1 if the form is not supported. */
let mod = 0, regField = 0, rmReg = 0;

/** Decode the ModRM operand at `p` into the entry's recipe (64-bit address size). Returns the next offset. */
function modrm(ram: Uint8Array, p: number, e: BlockEntry): number {
  const m = ram[p++];
  mod = m >> 6;
  regField = ((m >> 3) & 7) | e.rexR;
  const rm = m & 7;
  if (mod === 3) { rmReg = rm | e.rexB; return p; }
  let base = -1, index = -1, scale = 1, scaleShift = 0, disp = 0;
  if (rm === 4) {
    const sib = ram[p++];
    const baseLow = sib & 7;
    const idx = ((sib >> 3) & 7) | e.rexX;
    if (baseLow === 5 && mod === 0) { disp = rd32(ram, p); p += 4; }
    else base = baseLow | e.rexB;
    if (idx !== 4) { index = idx; scaleShift = sib >> 6; scale = 1 << scaleShift; }
  } else if (rm === 5 && mod === 0) {
    disp = rd32(ram, p); p += 4; base = -2;
  } else {
    base = rm | e.rexB;
  }
  if (mod === 1) { disp += (ram[p++] << 24) >> 24; }
  else if (mod === 2) { disp += rd32(ram, p); p += 4; }
  e.base = base; e.index = index; e.scale = scale; e.disp = disp;
  e.size = scaleShift; // for LEA (overwritten by the ALU/MOV forms)
  e.seg = e.segOverride >= C.FS ? e.segOverride : -1;
  return p;
}

/** Register number `r` of an 8-bit operand as (register, bit position): AH..BH without a REX prefix. */
let byteShift = 0;
function byteReg(r: number, rex: number): number {
  if (r < 4 || rex !== 0 || r > 7) { byteShift = 0; return r; }
  byteShift = 8;
  return r - 4;
}

function rd32(ram: Uint8Array, p: number): number {
  return ram[p] | (ram[p + 1] << 8) | (ram[p + 2] << 16) | (ram[p + 3] << 24);
}

/*
 * compileFast's decoding is one ordered chain of opcode tests (the first that matches decides), cut into eight
 * functions taken in turn: part k runs only when parts 1..k-1 had no form for the opcode (NO_FORM). One long
 * function is optimized by TurboFan before its cold branches have run, and each branch reached later (an opcode
 * first met well into a boot) lacked type feedback: the whole function was deoptimized and compiled again, ~0.3-0.5 s
 * of background compile each time (three times per boot, --trace-deopt). Cut up, only the small part holding the
 * new branch is (the trace shows the parts deoptimized and compiled on their own: not inlined back into compileFast,
 * whose own compiles, for its chain of calls, take ~20-50 ms).
 * Each returns the position after the decoded bytes with its handler in formOut, NO_FORM, or REJECT (the opcode is
 * this part's but the instruction has no form: compileFast returns 0, as the chain did).
 */
const NO_FORM = -1, REJECT = -2;
let formOut: FastHandler | null = null;

/** compileFast, part 1: the common 32/64-bit ALU and MOV forms. */
function formsWide(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if (op < 0x40 && (op & 7) === 1 && wide && (op >> 3) !== 2 && (op >> 3) !== 3) {
    // ALU Ev,Gv: 01 09 21 29 31 39
    p = modrm(ram, p, e);
    e.a = regField; e.op = op >> 3; e.size = size;
    if (mod === 3) { e.b = rmReg; f = aluRegReg; } else f = aluMemReg;
  } else if (op < 0x40 && (op & 7) === 3 && wide && (op >> 3) !== 2 && (op >> 3) !== 3) {
    // ALU Gv,Ev: 03 0B 23 2B 33 3B
    p = modrm(ram, p, e);
    e.b = regField; e.op = op >> 3; e.size = size;
    if (mod === 3) { e.a = rmReg; f = aluRegReg; } else f = aluRegMem;
    // aluRegReg reads source e.a and writes e.b: for Gv,Ev the destination is the reg field.
  } else if (op === 0x85 && wide) {
    p = modrm(ram, p, e);
    e.a = regField; e.op = TEST; e.size = size;
    if (mod === 3) { e.b = rmReg; f = aluRegReg; } else f = aluMemReg;
  } else if ((op === 0x81 || op === 0x83) && wide) {
    p = modrm(ram, p, e);
    const aop = (regField & 7);
    let imm: number;
    if (op === 0x83) { imm = (ram[p] << 24) >> 24; p += 1; } else { imm = rd32(ram, p); p += 4; }
    e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.op = aop; e.size = size;
    if (aop === 2 || aop === 3) { if (mod === 3) { e.b = rmReg; f = adcRI; } else f = adcMI; } // ADC/SBB
    else if (mod === 3) { e.b = rmReg; f = aluRegImm; } else f = aluMemImm;
  } else if (op === 0x89 && wide) {
    p = modrm(ram, p, e);
    e.a = regField;
    if (mod === 3) { e.b = rmReg; f = size === 8 ? movStoreReg64 : movStoreReg32; }
    else f = size === 8 ? movStoreMem64 : movStoreMem32;
  } else if (op === 0x8b && wide) {
    p = modrm(ram, p, e);
    e.a = regField;
    if (mod === 3) { e.b = e.a; e.a = rmReg; f = size === 8 ? movStoreReg64 : movStoreReg32; }
    else f = size === 8 ? movLoadMem64 : movLoadMem32;
  } else if (op === 0x8d && wide) {
    p = modrm(ram, p, e);
    if (mod === 3) return REJECT;
    e.a = regField; e.immHi = size; f = lea;
  } else if (op === 0xc7 && wide) {
    p = modrm(ram, p, e);
    if ((regField & 7) !== 0) return REJECT;
    const imm = rd32(ram, p); p += 4;
    e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0;
    if (mod === 3) { e.a = rmReg; f = movImmReg; } else f = size === 8 ? movImmMem64 : movImmMem32;
  } else if (op >= 0xb8 && op <= 0xbf && wide) {
    e.a = (op & 7) | e.rexB;
    if (size === 8) { e.imm = rd32(ram, p); e.immHi = rd32(ram, p + 4); p += 8; }
    else { e.imm = rd32(ram, p); e.immHi = 0; p += 4; }
    f = movImmReg;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 2: branches, CALL/RET, PUSH/POP. */
function formsFlow(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if (op >= 0x70 && op <= 0x7f) {
    e.a = op & 15; e.disp = (ram[p] << 24) >> 24; p += 1; f = jcc;
  } else if (op >= 0x180 && op <= 0x18f) {
    e.a = op & 15; e.disp = rd32(ram, p); p += 4; f = jcc;
  } else if (op === 0xeb) {
    e.disp = (ram[p] << 24) >> 24; p += 1; f = jmp;
  } else if (op === 0xe9) {
    e.disp = rd32(ram, p); p += 4; f = jmp;
  } else if (op === 0xe8) {
    e.disp = rd32(ram, p); p += 4; f = call;
  } else if (op === 0xc3 && size !== 2) {
    f = ret;
  } else if (op >= 0x50 && op <= 0x57 && size !== 2) {
    e.a = (op & 7) | e.rexB; f = pushReg;
  } else if (op >= 0x58 && op <= 0x5f && size !== 2) {
    e.a = (op & 7) | e.rexB; f = popReg;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 3: MOVZX, group 5 (FF), shifts, MOVSXD. */
function formsGroups(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if ((op === 0x1b6 || op === 0x1b7) && wide) {
    p = modrm(ram, p, e);
    e.a = regField;
    const srcSize = op & 1 ? 2 : 1;
    if (mod === 3) {
      const r = rmReg;
      if (srcSize === 2) { e.b = r; f = movzxReg16; }
      else if (r < 4 || e.rex !== 0 || r > 7) { e.b = r; e.imm = 0; f = movzxReg8; }
      else { e.b = r - 4; e.imm = 8; f = movzxReg8; }
    } else { e.size = srcSize; f = movzxMem; }
  } else if (op === 0xff && wide) {
    p = modrm(ram, p, e);
    const r = regField & 7;
    if (r <= 1) {
      e.op = r; e.size = size;
      if (mod === 3) { e.b = rmReg; f = incDecReg; } else f = incDecM;
    } else if (r === 6) {
      if (mod === 3) return REJECT;
      f = pushM; // PUSH r/m: 64-bit whatever REX.W says (the stack operand size of 64-bit mode)
    } else if (r === 2 || r === 4) {
      // CALL/JMP near indirect: 64-bit target whatever the operand size (as ./ops/flow-branch.ts in 64-bit mode)
      if (mod === 3) { e.b = rmReg; e.base = REG_OPERAND; }
      f = r === 2 ? callInd : jmpInd;
    } else return REJECT;
  } else if (op === 0xfe && (ram[p] & 0x38) <= 0x08) {
    // INC/DEC r/m8 (FE /0 /1; the operand is a byte whatever 66h or REX.W say)
    p = modrm(ram, p, e);
    e.op = regField & 7; e.size = 1;
    if (mod === 3) { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = incDec8Reg; } else f = incDecM;
  } else if (op === 0xd3 && wide) {
    p = modrm(ram, p, e);
    if (mod !== 3) {
      // (memory: SHL/SAL/SHR/SAR only; ROL/ROR/RCL/RCR keep the handler)
      if ((regField & 7) < 4) return REJECT;
      e.op = regField & 7; e.size = size; f = shiftMCl;
    } else { e.b = rmReg; e.op = regField & 7; e.size = size; f = shiftRegCl; }
  } else if ((op === 0xc1 || op === 0xd1) && wide) {
    p = modrm(ram, p, e);
    if (mod !== 3) return REJECT;
    let count = 1;
    if (op === 0xc1) { count = ram[p]; p += 1; }
    count &= size === 8 ? 63 : 31;
    if (count === 0) return REJECT;
    e.b = rmReg; e.op = regField & 7; e.size = size; e.imm = count; f = shiftRegImm;
  } else if (op === 0x63 && size === 8) {
    p = modrm(ram, p, e);
    e.a = regField;
    if (mod === 3) { e.b = rmReg; f = movsxdReg; } else f = movsxdMem;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 4: 8-bit ALU and TEST, ALU with rAX, group 3 (F7). */
function formsByte(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if (op < 0x40 && (op & 7) <= 4 && (op & 7) !== 1 && (op & 7) !== 3 && (op >> 3) !== 2 && (op >> 3) !== 3) {
    // 8-bit ALU: Eb,Gb (00 08 20 28 30 38), Gb,Eb (02 0A ...), AL,Ib (04 0C ...)
    const aop = op >> 3, form = op & 7;
    e.op = aop;
    if (form === 4) {
      e.b = 0; e.bsh = 0; e.imm = ram[p]; p += 1; f = alu8RI;
    } else {
      p = modrm(ram, p, e);
      const g = byteReg(regField, e.rex), gsh = byteShift;
      if (form === 0) {
        e.a = g; e.ash = gsh;
        if (mod === 3) { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = alu8RR; } else f = alu8MR;
      } else {
        e.b = g; e.bsh = gsh;
        if (mod === 3) { e.a = byteReg(rmReg, e.rex); e.ash = byteShift; f = alu8RR; } else f = alu8RM;
      }
    }
  } else if (op === 0x80 || (op === 0xf6 && (ram[p] & 0x38) === 0)) {
    p = modrm(ram, p, e);
    const aop = op === 0xf6 ? TEST : regField & 7;
    if (aop === 2 || aop === 3) return REJECT; // ADC/SBB
    e.op = aop; e.imm = ram[p]; p += 1;
    if (mod === 3) { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = alu8RI; } else f = alu8MI;
  } else if (op === 0x84) {
    p = modrm(ram, p, e);
    e.op = TEST; e.a = byteReg(regField, e.rex); e.ash = byteShift;
    if (mod === 3) { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = alu8RR; } else f = alu8MR;
  } else if (op === 0xa8) {
    e.op = TEST; e.b = 0; e.bsh = 0; e.imm = ram[p]; p += 1; f = alu8RI;
  } else if (op === 0xa9 && wide) {
    const imm = rd32(ram, p); p += 4;
    e.op = TEST; e.b = 0; e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.size = size; f = aluRegImm;
  } else if (op < 0x40 && (op & 7) === 5 && wide && (op >> 3) !== 2 && (op >> 3) !== 3) {
    // ALU rAX, imm32 (05 0D 25 2D 35 3D)
    const imm = rd32(ram, p); p += 4;
    e.op = op >> 3; e.b = 0; e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.size = size; f = aluRegImm;
  } else if ((op === 0x15 || op === 0x1d) && wide) {
    // ADC/SBB rAX, imm32 (15, 1D): Linux's csum_tcpudp_nofold ends with `adc eax,0xffff` (tcp_v4_send_check, every
    // segment sent)
    const imm = rd32(ram, p); p += 4;
    e.op = op === 0x15 ? 2 : 3; e.b = 0; e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.size = size; f = adcRI;
  } else if (op === 0xf7 && wide && (ram[p] & 0x38) >= 0x10) {
    // NOT NEG MUL IMUL DIV IDIV
    p = modrm(ram, p, e);
    const r = regField & 7;
    e.size = size;
    if (r <= 3) { e.op = r - 2; if (mod === 3) { e.b = rmReg; f = notNegR; } else f = notNegM; }
    else { e.op = r; if (mod === 3) { e.b = rmReg; f = mulDivR; } else f = mulDivM; }
  } else if (op === 0xf7 && wide && (ram[p] & 0x38) === 0) {
    p = modrm(ram, p, e);
    const imm = rd32(ram, p); p += 4;
    e.op = TEST; e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.size = size;
    if (mod === 3) { e.b = rmReg; f = aluRegImm; } else f = aluMemImm;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 5: 8-bit MOV, CMOVcc, SETcc. */
function formsMov8(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if (op === 0x88 || op === 0x8a) {
    p = modrm(ram, p, e);
    const g = byteReg(regField, e.rex), gsh = byteShift;
    if (op === 0x88) {
      e.a = g; e.ash = gsh;
      if (mod === 3) { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = mov8RR; } else f = mov8MR;
    } else {
      e.b = g; e.bsh = gsh;
      if (mod === 3) { e.a = byteReg(rmReg, e.rex); e.ash = byteShift; f = mov8RR; } else f = mov8RM;
    }
  } else if (op === 0xc6 && (ram[p] & 0x38) === 0) {
    p = modrm(ram, p, e);
    e.imm = ram[p]; p += 1;
    if (mod === 3) { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = mov8RI; } else f = mov8MI;
  } else if (op >= 0xb0 && op <= 0xb7) {
    e.b = byteReg((op & 7) | e.rexB, e.rex); e.bsh = byteShift; e.imm = ram[p]; p += 1; f = mov8RI;
  } else if (op >= 0x140 && op <= 0x14f && wide) {
    p = modrm(ram, p, e);
    e.op = op & 15; e.b = regField; e.size = size;
    if (mod === 3) { e.a = rmReg; f = cmovRR; } else f = cmovRM;
  } else if (op >= 0x190 && op <= 0x19f) {
    p = modrm(ram, p, e);
    e.op = op & 15;
    if (mod !== 3) f = setccM;
    else { e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = setcc; }
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 6: ADC/SBB, IMUL, MOVSX, SHLD/SHRD, 16-bit shifts, CMPXCHG/XADD/XCHG. */
function formsMulti(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if ((op === 0x11 || op === 0x19 || op === 0x13 || op === 0x1b) && wide) {
    // ADC/SBB Ev,Gv (11 19) and Gv,Ev (13 1B)
    p = modrm(ram, p, e);
    e.op = op >> 3; e.size = size;
    if (op & 2) { e.b = regField; if (mod === 3) { e.a = rmReg; f = adcRR; } else f = adcRM; }
    else { e.a = regField; if (mod === 3) { e.b = rmReg; f = adcRR; } else f = adcMR; }
  } else if (op === 0x1af && wide) {
    p = modrm(ram, p, e);
    e.b = regField; e.size = size;
    if (mod === 3) { e.a = rmReg; f = imulRR; } else f = imulRM;
  } else if ((op === 0x69 || op === 0x6b) && wide) {
    p = modrm(ram, p, e);
    let imm: number;
    if (op === 0x6b) { imm = (ram[p] << 24) >> 24; p += 1; } else { imm = rd32(ram, p); p += 4; }
    e.b = regField; e.size = size; e.imm = imm; e.immHi = imm >> 31;
    if (mod === 3) { e.a = rmReg; f = imulRRI; } else f = imulRMI;
  } else if ((op === 0x1be || op === 0x1bf) && wide) {
    p = modrm(ram, p, e);
    e.a = regField; e.op = size;
    if (mod === 3) {
      if (op === 0x1bf) { e.b = rmReg; f = movsxR16; }
      else { e.b = byteReg(rmReg, e.rex); e.imm = byteShift; f = movsxR8; }
    } else { e.size = op === 0x1bf ? 2 : 1; f = movsxM; }
  } else if ((op === 0x1a4 || op === 0x1ac) && wide) {
    p = modrm(ram, p, e);
    if (mod !== 3) return REJECT;
    const count = ram[p] & (size === 8 ? 63 : 31); p += 1;
    if (count === 0) return REJECT;
    e.b = rmReg; e.a = regField; e.imm = count; e.op = op === 0x1ac ? 1 : 0; e.size = size; f = shiftDoubleRI;
  } else if ((op === 0x1a5 || op === 0x1ad) && wide) {
    p = modrm(ram, p, e);
    if (mod !== 3) return REJECT;
    e.b = rmReg; e.a = regField; e.op = op === 0x1ad ? 1 : 0; e.size = size; f = shiftDoubleRCl;
  } else if ((op === 0xc1 || op === 0xd1) && size === 2 && (ram[p] >> 6) === 3 && ((ram[p] >> 4) & 3) !== 1) {
    // (Linux's block layer: IOPRIO_PRIO_CLASS, `shr ax,13`, several times per request; its network stack: ntohs/htons,
    // `rol r16,8`, several times per packet) RCL/RCR keep the handler.
    p = modrm(ram, p, e);
    let count = 1;
    if (op === 0xc1) { count = ram[p]; p += 1; }
    count &= 31;
    if (count === 0 || count > 15) return REJECT;
    e.b = rmReg; e.op = regField & 7; e.imm = count; e.size = 2; f = shift16RegImm;
  } else if ((op === 0xc1 || op === 0xd1) && size === 2 && (ram[p] >> 6) !== 3 && ((ram[p] >> 3) & 7) >= 4) {
    // (memory operand, SHL/SAL/SHR/SAR only; RCL/RCR/ROL/ROR keep the handler)
    p = modrm(ram, p, e);
    let count = 1;
    if (op === 0xc1) { count = ram[p]; p += 1; }
    count &= 31;
    if (count === 0 || count > 15) return REJECT;
    e.op = regField & 7; e.imm = count; e.size = 2; f = shift16M;
  } else if (op === 0x1b1 && wide) {
    p = modrm(ram, p, e);
    if (mod === 3) return REJECT;
    e.a = regField; e.size = size; f = cmpxchgM;
  } else if (op === 0x1c1 && wide) {
    p = modrm(ram, p, e);
    if (mod === 3) return REJECT;
    e.a = regField; e.size = size; f = xaddM;
  } else if (op === 0x87 && wide) {
    p = modrm(ram, p, e);
    e.a = regField; e.size = size;
    if (mod === 3) { e.b = rmReg; f = xchgRR; } else f = xchgM;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 7: PUSHF/PUSH imm, BT*, CDQ, BSWAP, 16-bit ALU and MOV. */
function formsMisc(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if (op === 0x9c && size !== 2) {
    f = pushf;
  } else if ((op === 0x68 || op === 0x6a) && size !== 2) {
    let imm: number;
    if (op === 0x6a) { imm = (ram[p] << 24) >> 24; p += 1; } else { imm = rd32(ram, p); p += 4; }
    e.imm = imm; e.immHi = imm >> 31; f = pushImm;
  } else if (op === 0x1ba && wide && (ram[p] & 0x20) !== 0) {
    // BT/BTS/BTR/BTC Ev, imm8 (/4-/7)
    p = modrm(ram, p, e);
    e.op = (regField & 7) - 4; e.size = size; e.imm = ram[p] & (size * 8 - 1); p += 1;
    if (mod === 3) { e.b = rmReg; f = btRI; } else f = btMI;
  } else if ((op === 0x1a3 || op === 0x1ab || op === 0x1b3 || op === 0x1bb) && wide) {
    p = modrm(ram, p, e);
    e.op = (op >> 3) & 3; e.a = regField; e.size = size;
    if (mod === 3) { e.b = rmReg; f = btRR; } else f = btMR;
  } else if ((op === 0x98 || op === 0x99) && wide) {
    e.op = op & 1; e.size = size; f = cdq;
  } else if (op >= 0x1c8 && op <= 0x1cf && wide) {
    e.b = (op & 7) | e.rexB; e.size = size; f = bswap;
  } else if (size === 2 && op < 0x40 && ((op & 7) === 1 || (op & 7) === 3 || (op & 7) === 5) && (op >> 3) !== 2 && (op >> 3) !== 3) {
    // 16-bit ALU Ev,Gv (01 09 21 29 31 39), Gv,Ev (03 ...), AX,imm16 (05 ...)
    const form = op & 7;
    e.op = op >> 3;
    if (form === 5) { e.b = 0; e.imm = ram[p] | (ram[p + 1] << 8); p += 2; f = alu16RI; }
    else {
      p = modrm(ram, p, e);
      if (form === 1) { e.a = regField; if (mod === 3) { e.b = rmReg; f = alu16RR; } else f = alu16MR; }
      else { e.b = regField; if (mod === 3) { e.a = rmReg; f = alu16RR; } else f = alu16RM; }
    }
  } else if (size === 2 && op === 0x85) {
    p = modrm(ram, p, e);
    e.op = TEST; e.a = regField;
    if (mod === 3) { e.b = rmReg; f = alu16RR; } else f = alu16MR;
  } else if (size === 2 && (op === 0x81 || op === 0x83 || op === 0xa9 || (op === 0xf7 && (ram[p] & 0x38) === 0))) {
    let aop = TEST;
    if (op !== 0xa9) { p = modrm(ram, p, e); if (op !== 0xf7) aop = regField & 7; }
    if (aop === 2 || aop === 3) return REJECT; // ADC/SBB
    if (op === 0x83) { e.imm = ((ram[p] << 24) >> 24) & 0xffff; p += 1; } else { e.imm = ram[p] | (ram[p + 1] << 8); p += 2; }
    e.op = aop;
    if (op === 0xa9) { e.b = 0; f = alu16RI; } else if (mod === 3) { e.b = rmReg; f = alu16RI; } else f = alu16MI;
  } else if (size === 2 && (op === 0x89 || op === 0x8b)) {
    p = modrm(ram, p, e);
    if (mod === 3) return REJECT;
    e.a = regField; f = op === 0x89 ? movStore16 : movLoad16;
  } else if (size === 2 && op === 0xc7 && (ram[p] & 0x38) === 0 && (ram[p] >> 6) !== 3) {
    // (the immediate follows the ModRM bytes; a RIP-relative address is from the instruction's end, as for alu16MI)
    p = modrm(ram, p, e);
    e.imm = ram[p] | (ram[p + 1] << 8); p += 2; f = movImm16M;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/** compileFast, part 8: system and rare forms. */
function formsRare(e: BlockEntry, ram: Uint8Array, op: number, size: number, wide: boolean, p: number): number {
  let f: FastHandler | null = null;
  if (op === 0x101 && ram[p] === 0xf8) {
    p += 1; f = swapgs;
  } else if (op === 0x101 && ram[p] === 0xe8) {
    // SERIALIZE (0F 01 E8; F2/F3 and LOCK are #UD: no form above/below): nothing to do on this in-order CPU, whose
    // stores into code are seen by the next instruction (./system/tables-ops.ts). It does not end its block either
    // (code-cache.ts TERMINATOR): Linux's text_poke_early runs it ~100k times per boot (sync_core).
    p += 1; f = nop;
  } else if (op === 0xc9 && size !== 2) {
    f = leave;
  } else if (op === 0xfa || op === 0xfb) {
    f = op === 0xfa ? cli : sti;
  } else if ((op === 0x90 && e.rexB === 0) || op === 0x11f || op === 0x118 || op === 0x10d) {
    if (op !== 0x90) p = modrm(ram, p, e);
    f = nop;
  } else if (op === 0x1b0) {
    p = modrm(ram, p, e);
    if (mod === 3) return REJECT;
    e.a = byteReg(regField, e.rex); e.ash = byteShift; f = cmpxchg8M;
  } else if (op === 0x131) {
    f = rdtsc;
  } else if (op === 0x101 && ram[p] === 0xf9) {
    p += 1; f = rdtscp;
  } else if (op === 0x8c && ((ram[p] >> 3) & 7) <= C.GS) {
    p = modrm(ram, p, e);
    e.op = (regField & 7); e.size = size;
    if (mod === 3) { e.b = rmReg; f = movSregR; } else f = movSregM;
  } else if (op === 0xfc || op === 0xfd) {
    f = op === 0xfc ? cld : std;
  } else if (op === 0x1ae && (ram[p] >> 6) === 3 && ((ram[p] >> 3) & 7) >= 5) {
    // LFENCE / MFENCE / SFENCE (0F AE E8-FF): nothing to do on this in-order CPU (./ops/sse.ts)
    p = modrm(ram, p, e);
    f = nop;
  } else if ((op === 0xc0 || op === 0xd0) && (ram[p] >> 6) === 3) {
    p = modrm(ram, p, e);
    let count = 1;
    if (op === 0xc0) { count = ram[p]; p += 1; }
    count &= 31;
    if (count === 0 || count > 7) return REJECT;
    e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; e.op = regField & 7; e.imm = count; f = shift8RegImm;
  } else if (op === 0x1c7 && e.rexW && (ram[p] & 0x38) === 0x08 && (ram[p] >> 6) !== 3) {
    p = modrm(ram, p, e);
    f = cmpxchg16bM;
  } else if (op === 0x105) {
    f = syscallF;
  } else if (op === 0x107 && e.rexW) {
    f = sysretqF;
  } else return NO_FORM;
  formOut = f;
  return p;
}

/**
 * Give `e` (an instruction of 64-bit code at physical `pa`, already executed once) a fast form if it has one.
 * `len` is the instruction length when known (0 for a block's last instruction); returns the length the form
 * decoded (0 when it has none). The caller has checked that the instruction lies in one page of low RAM, or, for one
 * that straddles a page end (its bytes are in two physical pages), passes a copy of its bytes as `ram` (pa its index).
 */
export function compileFast(c: SoftCpu, e: BlockEntry, pa: number, len: number, ram: Uint8Array = c.ram): number {
  const op = e.opcode;
  if (op >= 0x100 && (SSE_OPS[op & 0xff] !== 0 || INT_FN.has(e.handler))) return compileSse(c, e, pa, len, op & 0xff, ram);
  if ((op === 0x1bc || op === 0x1bd) && (e.rep === 0 || e.rep === 0xf3)) {
    e.op = op & 1;
    return compileRegFromRm(e, pa, len, ram, [Form.BitScanR, bitScanR], [Form.BitScanM, bitScanM]);
  }
  if (op === 0x1b8 && e.rep === 0xf3) return compileRegFromRm(e, pa, len, ram, [Form.PopcntR, popcntR], [Form.PopcntM, popcntM]);
  // (F3 90 is PAUSE: a NOP here, as in ./ops/alu.ts.)
  // (LOCK CMPXCHG/XADD to memory are the plain forms: the vCPUs run on one thread; with a register operand the
  // decode below gives no form and the handler raises #UD)
  // (LOCK: decoded as any form, then kept only on the read-modify-write memory forms: lockable below)
  if ((e.rep !== 0 && !(op === 0x90 && e.rep === 0xf3)) || e.adsize !== 8) return 0;
  const p = pa + e.opLen;
  const size = e.opsize;
  const wide = size === 8 || size === 4;
  let q = formsWide(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsFlow(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsGroups(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsByte(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsMov8(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsMulti(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsMisc(e, ram, op, size, wide, p);
  if (q === NO_FORM) q = formsRare(e, ram, op, size, wide, p);
  if (q < 0) return 0; // NO_FORM or REJECT
  const f = formOut;
  formOut = null;
  if (f === null) return 0;
  if (e.lock && !lockable(f, e)) return 0;
  const decoded = q - pa;
  if (len !== 0 && decoded !== len) return 0; // the decoder and this table disagree: keep the generic replay
  e.fast = f;
  e.form = FORM_OF.get(f) ?? Form.None;
  return decoded;
}

/**
 * Which fast form an entry has (`entry.form`), for the JavaScript translator (./jit/translate.ts), which emits the
 * same semantics inline. Form.None: no fast form (the handler is replayed).
 */
export const enum Form {
  None = 0,
  MovRR64, MovRR32, MovStore64, MovStore32, MovLoad64, MovLoad32, MovImmReg, MovImmMem64, MovImmMem32,
  Lea, AluRR, AluMR, AluRM, AluRI, AluMI, IncDec, ShiftImm, Jcc, Jmp, Call, Ret, Push, Pop,
  MovzxReg8, MovzxReg16, MovzxMem, MovsxdReg, MovsxdMem,
  Alu8RR, Alu8RM, Alu8MR, Alu8RI, Alu8MI, Mov8RR, Mov8RM, Mov8MR, Mov8RI, Mov8MI, CmovRR, CmovRM, Setcc, Nop,
  // ---- session 11 (append only: the translators switch on these numbers). Sizes are 4 or 8 (e.size) unless
  // said; "M" forms have the memory recipe (base/index/scale/disp/seg) and "R" forms the r/m register in e.b.
  /** NOT/NEG (F7 /2 /3): e.op 0 NOT (no flags), 1 NEG (record Sub 0 - v). */
  NotNegR, NotNegM,
  /** MUL/IMUL/DIV/IDIV rAX by r/m (F7 /4-/7): e.op 4..7; flags as ./ops/alu-muldiv.ts; DIV/IDIV may raise #DE. */
  MulDivR, MulDivM,
  /** IMUL e.b = e.b * r/m (0F AF): source register e.a or memory. */
  ImulRR, ImulRM,
  /** IMUL e.b = r/m * imm (69, 6B): source register e.a or memory, imm e.imm/e.immHi. */
  ImulRRI, ImulRMI,
  /**
   * ADC/SBB (e.op 2/3; record Adc/Sbb with lazyCarry = CF before): RR e.b op= e.a; RM e.b op= memory; RI e.b op= imm;
   * MR memory op= e.a; MI memory op= imm.
   */
  AdcRR, AdcRM, AdcRI, AdcMR, AdcMI,
  /** INC/DEC of memory (FF /0 /1): e.op 0 INC, 1 DEC. */
  IncDecM,
  /**
   * MOVSX (0F BE/BF): destination e.a of e.op (4 or 8) bytes; R8 source byte register e.b bits e.imm..e.imm+7 (e.imm 0
   * or 8); R16 source e.b; M source memory of e.size (1 or 2) bytes.
   */
  MovsxR8, MovsxR16, MovsxM,
  /** Shift/rotate register e.b by CL (D3 /e.op); masked count 0: only a 32-bit register's upper half is cleared. */
  ShiftCl,
  /** SHLD (e.op 0) / SHRD (e.op 1) e.b, e.a, e.imm (0F A4/AC, register destination, masked count 1..). */
  ShiftDoubleRI,
  /** CALL/JMP near indirect (FF /2, /4): target register e.b when e.base === -3, else memory (8 bytes). */
  CallInd, JmpInd,
  /** CMPXCHG memory, e.a (0F B1). */
  CmpxchgM,
  /** XADD memory, e.a (0F C1). */
  XaddM,
  /** PUSHF (9C) with a 64-bit operand; PUSH imm (68, 6A) of e.imm/e.immHi. */
  Pushf, PushImm,
  /** SETcc memory (0F 90-9F): condition e.op. */
  SetccM,
  /**
   * BT/BTS/BTR/BTC (e.op 0..3; only CF changes): RI register e.b, bit e.imm; MI memory, bit e.imm; RR register e.b,
   * bit e.a mod width; MR memory displaced by the signed offset in e.a (0F A3/AB/B3/BB).
   */
  BtRI, BtMI, BtRR, BtMR,
  /** e.op 0: CWDE/CDQE (98), 1: CDQ/CQO (99). */
  Cdq,
  /** BSWAP e.b (0F C8+r). */
  Bswap,
  /**
   * 16-bit ALU (66h; e.op ADD OR AND SUB XOR CMP, or 8 = TEST): RR e.b op= e.a; RI e.b op= e.imm (zero-extended 16-bit);
   * RM e.b op= memory; MR memory op= e.a; MI memory op= e.imm. A register destination keeps its bits 16-63.
   */
  Alu16RR, Alu16RI, Alu16RM, Alu16MR, Alu16MI,
  /** MOV memory16, e.a (89) / MOV e.a, memory16 (8B; bits 16-63 of e.a kept). */
  MovStore16, MovLoad16,
  /** LEAVE (C9, 64-bit): RBP = [RBP], RSP = old RBP + 8. */
  Leave,
  /** CLI / STI (#GP(0) if CPL > IOPL; STI setting IF also sets interruptShadow and eventPending). */
  Cli, Sti,
  /** SWAPGS (0F 01 F8; #GP(0) unless CPL 0): GS base <-> kernelGsBase. */
  Swapgs,
  /** PUSH memory64 (FF /6): read, then push. */
  PushM,
  // ---- session 12: SSE/SSE2 (XMM registers are in the wasm state area, ./wasm/layout.ts S_XMM; ./wasm/sse.ts)
  /** XMM e.b = XMM e.a (MOVAPS/MOVUPS/MOVDQA/MOVDQU register forms). */
  SseMovRR,
  /** XMM e.a = m128 (0F 28, 10, 6F); e.op 1: #GP(0) unless 16-byte aligned. */
  SseLoad,
  /** m128 = XMM e.a (0F 29, 11, 7F, 2B, E7); e.op 1: aligned. */
  SseStore,
  /** XMM e.b = XMM e.b op XMM e.a / aligned m128; e.op the opcode (66 0F xx intOp, 0F 54-57 as 66 0F DB/DF/EB/EF), e.imm PSHUFD's. */
  SseOpRR, SseOpRM,
  /** PMOVMSKB r32 e.b, XMM e.a. */
  SsePmovmskb,
  /** MOVD/MOVQ XMM e.b = register e.a / memory of e.size bytes, zero-extended. */
  SseMovdXR, SseMovdXM,
  /** MOVD/MOVQ register e.b / memory of e.size bytes = low part of XMM e.a. */
  SseMovdRX, SseMovdMX,
  /** MOVQ XMM e.b = low 8 bytes of XMM e.a, upper half zeroed. */
  SseMovqXX,
  /** BSF (e.op 0) / BSR (e.op 1), also F3 (TZCNT/LZCNT run as BSF/BSR): e.b = scan of register e.a / memory, size e.size. */
  BitScanR, BitScanM,
  /** XCHG (87) of register e.a with register e.b / memory, size e.size (4 or 8). */
  XchgRR, XchgM,
  /** MOVLPx/MOVHPx m64 load / store: the low (e.op 0) or high (1) half of XMM e.a; MOVHLPS (e.op 0) / MOVLHPS (1) e.b, e.a. */
  SseHalfLoad, SseHalfStore, SseHalfMove,
  // ---- session 13
  /** RDTSC (0F 31) / RDTSCP (0F 01 F9): #GP(0) if CR4.TSD and CPL > 0; EDX:EAX = TSC, RDTSCP also ECX = TSC_AUX. */
  Rdtsc, Rdtscp,
  /** CMPXCHG memory8, byte register (e.a, bits e.ash) (0F B0). */
  Cmpxchg8M,
  /** MOV register e.b (16-bit operand e.size 2: low half only; else zero-extended) / memory16, segment register e.op (8C). */
  MovSregR, MovSregM,
  /** CMPXCHG16B memory (REX.W 0F C7 /1): #GP(0) unless 16-byte aligned; only ZF changes. */
  Cmpxchg16bM,
  /** Group 2 (e.op ROL..SAR) of byte register (e.b, bits e.bsh) by a constant e.imm of 1..7 (C0 /n ib, D0 /n). */
  Shift8Imm,
  /** CLD (FC) / STD (FD): EFLAGS.DF, which is JavaScript state (SoftCpu.flags; S_EFL holds a copy during a wasm call). */
  Cld, Std,
  // ---- session 14
  /** SHLD (e.op 0) / SHRD (e.op 1) e.b, e.a, CL (0F A5/AD, register destination, e.size 4 or 8; masked count 0: see above). */
  ShiftDoubleCl,
  /** ROL/ROR/SHL/SAL/SHR/SAR (e.op 0, 1, 4..7) of 16-bit register e.b by a constant e.imm of 1..15 (66 C1 /n ib, 66 D1 /n). */
  Shift16Imm,
  // ---- session 16
  /** SYSCALL (0F 05) / SYSRETQ (REX.W 0F 07): ./system/fastcall.ts; always a block's last instruction (they change RIP). */
  Syscall, Sysret,
  // ---- session 20
  /** SHL/SAL/SHR/SAR (e.op 4..7) of a 16-bit memory operand by a constant e.imm of 1..15 (66 C1 /n ib, 66 D1 /n). */
  Shift16M,
  // ---- session 21
  /** INC (e.op 0) / DEC (1) of byte register e.b, bits e.bsh (FE /0 /1, mod 3); CF kept. (Memory: IncDecM, e.size 1.) */
  IncDec8,
  /** SHL/SAL/SHR/SAR (e.op 4..7) of a 4- or 8-byte memory operand by CL (D3 /4-/7); masked count 0: read only. */
  ShiftMCl,
  /** MOV m16, imm16 (66 C7 /0 iw, memory operand): e.imm the word. */
  MovImm16M,
  /** POPCNT e.b, register e.a / memory (F3 0F B8), sizes 4 and 8. */
  PopcntR, PopcntM,
}
/** How many forms there are (the last one + 1: update with the enum), the length of the translator's tables by form. */
export const FORM_COUNT = Form.PopcntM + 1;

const FORM_OF = new Map<FastHandler, Form>([
  [movStoreReg64, Form.MovRR64], [movStoreReg32, Form.MovRR32], [movStoreMem64, Form.MovStore64],
  [movStoreMem32, Form.MovStore32], [movLoadMem64, Form.MovLoad64], [movLoadMem32, Form.MovLoad32],
  [movImmReg, Form.MovImmReg], [movImmMem64, Form.MovImmMem64], [movImmMem32, Form.MovImmMem32], [lea, Form.Lea],
  [aluRegReg, Form.AluRR], [aluMemReg, Form.AluMR], [aluRegMem, Form.AluRM], [aluRegImm, Form.AluRI],
  [aluMemImm, Form.AluMI], [incDecReg, Form.IncDec], [shiftRegImm, Form.ShiftImm], [jcc, Form.Jcc], [jmp, Form.Jmp],
  [call, Form.Call], [ret, Form.Ret], [pushReg, Form.Push], [popReg, Form.Pop], [movzxReg8, Form.MovzxReg8],
  [movzxReg16, Form.MovzxReg16], [movzxMem, Form.MovzxMem], [movsxdReg, Form.MovsxdReg], [movsxdMem, Form.MovsxdMem],
  [alu8RR, Form.Alu8RR], [alu8RM, Form.Alu8RM], [alu8MR, Form.Alu8MR], [alu8RI, Form.Alu8RI], [alu8MI, Form.Alu8MI],
  [mov8RR, Form.Mov8RR], [mov8RM, Form.Mov8RM], [mov8MR, Form.Mov8MR], [mov8RI, Form.Mov8RI], [mov8MI, Form.Mov8MI],
  [cmovRR, Form.CmovRR], [cmovRM, Form.CmovRM], [setcc, Form.Setcc], [nop, Form.Nop],
  [notNegR, Form.NotNegR], [notNegM, Form.NotNegM], [mulDivR, Form.MulDivR], [mulDivM, Form.MulDivM],
  [imulRR, Form.ImulRR], [imulRM, Form.ImulRM], [imulRRI, Form.ImulRRI], [imulRMI, Form.ImulRMI],
  [adcRR, Form.AdcRR], [adcRM, Form.AdcRM], [adcRI, Form.AdcRI], [adcMR, Form.AdcMR], [adcMI, Form.AdcMI],
  [incDecM, Form.IncDecM], [movsxR8, Form.MovsxR8], [movsxR16, Form.MovsxR16], [movsxM, Form.MovsxM],
  [shiftRegCl, Form.ShiftCl], [shiftDoubleRI, Form.ShiftDoubleRI], [callInd, Form.CallInd], [jmpInd, Form.JmpInd],
  [cmpxchgM, Form.CmpxchgM], [xaddM, Form.XaddM], [pushf, Form.Pushf], [pushImm, Form.PushImm], [setccM, Form.SetccM],
  [btRI, Form.BtRI], [btMI, Form.BtMI], [btRR, Form.BtRR], [btMR, Form.BtMR], [cdq, Form.Cdq], [bswap, Form.Bswap],
  [alu16RR, Form.Alu16RR], [alu16RI, Form.Alu16RI], [alu16RM, Form.Alu16RM], [alu16MR, Form.Alu16MR],
  [alu16MI, Form.Alu16MI], [movStore16, Form.MovStore16], [movLoad16, Form.MovLoad16],
  [leave, Form.Leave], [cli, Form.Cli], [sti, Form.Sti], [swapgs, Form.Swapgs], [pushM, Form.PushM],
  [xchgRR, Form.XchgRR], [xchgM, Form.XchgM],
  [rdtsc, Form.Rdtsc], [rdtscp, Form.Rdtscp], [cmpxchg8M, Form.Cmpxchg8M], [movSregR, Form.MovSregR],
  [movSregM, Form.MovSregM], [cmpxchg16bM, Form.Cmpxchg16bM], [shift8RegImm, Form.Shift8Imm],
  [shiftDoubleRCl, Form.ShiftDoubleCl], [shift16RegImm, Form.Shift16Imm],
  [cld, Form.Cld], [std, Form.Std],
  [syscallF, Form.Syscall], [sysretqF, Form.Sysret], [shift16M, Form.Shift16M],
  [incDec8Reg, Form.IncDec8], [shiftMCl, Form.ShiftMCl], [movImm16M, Form.MovImm16M],
]);
