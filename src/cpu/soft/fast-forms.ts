// Pre-decoded forms of the hottest 64-bit-mode instructions, for the block cache (./code-cache.ts).
//
// `compileFast` looks at an instruction that has just executed (its prefix state is in the block entry, its bytes
// in RAM at `pa`) and, when it is one of the forms below, stores its decoded operands in the entry and points
// `entry.fast` at a function that executes it without fetching or decoding anything. The forms were chosen from an
// opcode histogram of the Debian kernel's boot (MOV 89/8B, LEA, ADD/SUB/CMP/AND/OR/XOR/TEST in their register and
// memory forms, group 1 with imm8/imm32, Jcc/JMP/CALL/RET, PUSH/POP, MOVZX, MOVSXD, MOV r,imm covered ~85% of the
// instructions executed). Their semantics mirror the interpreter's handlers in ./ops (same lazy-flag records, same
// order of memory accesses, faults raised before any state changes); anything unusual (LOCK, REP, 67h, 16/8-bit
// operands, legacy segment overrides) keeps the generic replay.
//
// When a fast form runs, `cpu.rip` already holds the address of the next instruction (RIP-relative operands and
// relative branches are computed from it) and `cpu.ripStart` that of this one.
import type { SoftCpu } from './cpu.ts';
import { Lazy } from './cpu.ts';
import type { BlockEntry, FastHandler } from './code-cache.ts';
import { push64, pop64 } from './ops/flow-branch.ts';
import { shift32, shift64 } from './ops/alu-shift.ts';
import { out } from './ops/alu-common.ts';
import * as C from './constants.ts';

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
  if (b >= 0) a = c.rhi[b] * TWO32 + (c.rlo[b] >>> 0);
  else a = b === -2 ? c.rip : 0;
  const x = e.index;
  if (x >= 0) a += (c.rhi[x] * TWO32 + (c.rlo[x] >>> 0)) * e.scale;
  a += e.disp;
  if (a >= TWO63) a -= TWO64;
  else if (a < -TWO63) a += TWO64;
  const s = e.seg;
  return s < 0 ? a : c.linear(s, a);
}

// ---- MOV

const movStoreReg64: FastHandler = (c, e) => { c.rlo[e.b] = c.rlo[e.a]; c.rhi[e.b] = c.rhi[e.a]; };
const movStoreReg32: FastHandler = (c, e) => { c.rlo[e.b] = c.rlo[e.a]; c.rhi[e.b] = 0; };
const movStoreMem64: FastHandler = (c, e) => { c.writeLin(ea(c, e), 8, c.rlo[e.a], c.rhi[e.a]); };
const movStoreMem32: FastHandler = (c, e) => { c.writeLin(ea(c, e), 4, c.rlo[e.a]); };
const movLoadMem64: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 8); c.rlo[e.a] = v; c.rhi[e.a] = c.hi; };
const movLoadMem32: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 4); c.rlo[e.a] = v; c.rhi[e.a] = 0; };
const movImmReg: FastHandler = (c, e) => { c.rlo[e.a] = e.imm; c.rhi[e.a] = e.immHi; };
const movImmMem64: FastHandler = (c, e) => { c.writeLin(ea(c, e), 8, e.imm, e.immHi); };
const movImmMem32: FastHandler = (c, e) => { c.writeLin(ea(c, e), 4, e.imm); };

// ---- LEA (exact 64-bit sum on int32 halves, as ./ops/alu.ts does)

const lea: FastHandler = (c, e) => {
  let lo: number, hi: number;
  const b = e.base;
  if (b >= 0) { lo = c.rlo[b]; hi = c.rhi[b]; }
  else if (b === -2) { const v = c.rip; lo = v | 0; hi = Math.floor(v / TWO32) | 0; }
  else { lo = 0; hi = 0; }
  const x = e.index;
  if (x >= 0) {
    let il = c.rlo[x], ih = c.rhi[x];
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
  c.rlo[e.a] = lo;
  c.rhi[e.a] = e.immHi === 8 ? hi : 0;
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
  const d = c.rlo[rd];
  if (e.size === 8) {
    const dh = c.rhi[rd];
    const r = calc64(op, d, dh, s, sh), rh = hiOut;
    if (op < CMP) { c.rlo[rd] = r; c.rhi[rd] = rh; }
    c.setLazy(op === TEST ? L_LOGIC : KIND[op], 8, d, s, r, dh, sh, rh);
  } else {
    const r = calc32(op, d, s);
    if (op < CMP) { c.rlo[rd] = r; c.rhi[rd] = 0; }
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
const aluRegReg: FastHandler = (c, e) => aluReg(c, e, c.rlo[e.a], e.size === 8 ? c.rhi[e.a] : 0);
// r/m (memory) op= register e.a
const aluMemReg: FastHandler = (c, e) => aluMem(c, e, ea(c, e), c.rlo[e.a], e.size === 8 ? c.rhi[e.a] : 0);
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
  const d = c.rlo[r];
  c.lazyCarry = c.getCF() ? 1 : 0;
  if (e.size === 8) {
    const dh = c.rhi[r];
    let v: number, vh: number;
    if (dec) { v = (d - 1) | 0; vh = (dh - (d === 0 ? 1 : 0)) | 0; }
    else { v = (d + 1) | 0; vh = (dh + (v === 0 ? 1 : 0)) | 0; }
    c.rlo[r] = v; c.rhi[r] = vh;
    c.setLazy(dec ? L_DEC : L_INC, 8, d, 1, v, dh, 0, vh);
  } else {
    const v = dec ? (d - 1) | 0 : (d + 1) | 0;
    c.rlo[r] = v; c.rhi[r] = 0;
    c.setLazy(dec ? L_DEC : L_INC, 4, d, 1, v, 0, 0, 0);
  }
};

// ---- group 2 shifts/rotates of a register by a constant non-zero count (C1 /n ib, D1 /n), as ./ops/alu-shift.ts

const shiftRegImm: FastHandler = (c, e) => {
  const r = e.b;
  c.settleFlags();
  if (e.size === 8) {
    const v = shift64(c, e.op, c.rlo[r], c.rhi[r], e.imm);
    c.rlo[r] = v; c.rhi[r] = out.hi;
  } else {
    c.rlo[r] = shift32(c, e.op, 4, c.rlo[r], e.imm); c.rhi[r] = 0;
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
  const spLo = c.rlo[4], spHi = c.rhi[4];
  const lo = c.readLin(spHi * TWO32 + (spLo >>> 0), 8);
  const target = c.hi * TWO32 + (lo >>> 0);
  if (target < -TWO47 || target >= TWO47) c.gp(0);
  if ((spLo >>> 0) > 0xfffffff7) c.rhi[4] = (spHi + 1) | 0;
  c.rlo[4] = (spLo + 8) | 0;
  c.rip = target;
};

// ---- stack

const pushReg: FastHandler = (c, e) => push64(c, c.rlo[e.a], c.rhi[e.a]);
const popReg: FastHandler = (c, e) => { const lo = pop64(c); c.rlo[e.a] = lo; c.rhi[e.a] = c.hi; };

// ---- MOVZX / MOVSXD (destination e.a; a byte register source is (e.b, shift e.imm))

const movzxReg8: FastHandler = (c, e) => { c.rlo[e.a] = (c.rlo[e.b] >> e.imm) & 0xff; c.rhi[e.a] = 0; };
const movzxReg16: FastHandler = (c, e) => { c.rlo[e.a] = c.rlo[e.b] & 0xffff; c.rhi[e.a] = 0; };
const movzxMem: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), e.size); c.rlo[e.a] = v; c.rhi[e.a] = 0; };
const movsxdReg: FastHandler = (c, e) => { const v = c.rlo[e.b]; c.rlo[e.a] = v; c.rhi[e.a] = v >> 31; };
const movsxdMem: FastHandler = (c, e) => { const v = c.readLin(ea(c, e), 4); c.rlo[e.a] = v; c.rhi[e.a] = v >> 31; };

// ---- 8-bit ALU/MOV (byte registers are (register, bit position 0 or 8): AH..BH are bits 8-15 of RAX..RBX)

const rd8 = (c: SoftCpu, r: number, sh: number): number => (c.rlo[r] >> sh) & 0xff;
const wr8 = (c: SoftCpu, r: number, sh: number, v: number): void => { c.rlo[r] = (c.rlo[r] & ~(0xff << sh)) | ((v & 0xff) << sh); };

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
  const lo = c.rlo[e.a], hi = c.rhi[e.a];
  if (c.condition(e.op)) { c.rlo[e.b] = lo; c.rhi[e.b] = e.size === 8 ? hi : 0; } else if (e.size === 4) c.rhi[e.b] = 0;
};
const cmovRM: FastHandler = (c, e) => {
  const lo = c.readLin(ea(c, e), e.size), hi = e.size === 8 ? c.hi : 0;
  if (c.condition(e.op)) { c.rlo[e.b] = lo; c.rhi[e.b] = hi; } else if (e.size === 4) c.rhi[e.b] = 0;
};
const setcc: FastHandler = (c, e) => wr8(c, e.b, e.bsh, c.condition(e.op) ? 1 : 0);
const nop: FastHandler = () => {};

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

/**
 * Give `e` (an instruction of 64-bit code at physical `pa`, already executed once) a fast form if it has one.
 * `len` is the instruction length when known (0 for a block's last instruction); returns the length the form
 * decoded (0 when it has none). The caller has checked that the instruction lies in one page of low RAM.
 */
export function compileFast(c: SoftCpu, e: BlockEntry, pa: number, len: number): number {
  if (e.lock || e.rep !== 0 || e.adsize !== 8) return 0;
  const ram = c.ram;
  const op = e.opcode;
  let p = pa + e.opLen;
  const size = e.opsize;
  const wide = size === 8 || size === 4;
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
    if (aop === 2 || aop === 3) return 0; // ADC/SBB
    let imm: number;
    if (op === 0x83) { imm = (ram[p] << 24) >> 24; p += 1; } else { imm = rd32(ram, p); p += 4; }
    e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.op = aop; e.size = size;
    if (mod === 3) { e.b = rmReg; f = aluRegImm; } else f = aluMemImm;
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
    if (mod === 3) return 0;
    e.a = regField; e.immHi = size; f = lea;
  } else if (op === 0xc7 && wide) {
    p = modrm(ram, p, e);
    if ((regField & 7) !== 0) return 0;
    const imm = rd32(ram, p); p += 4;
    e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0;
    if (mod === 3) { e.a = rmReg; f = movImmReg; } else f = size === 8 ? movImmMem64 : movImmMem32;
  } else if (op >= 0xb8 && op <= 0xbf && wide) {
    e.a = (op & 7) | e.rexB;
    if (size === 8) { e.imm = rd32(ram, p); e.immHi = rd32(ram, p + 4); p += 8; }
    else { e.imm = rd32(ram, p); e.immHi = 0; p += 4; }
    f = movImmReg;
  } else if (op >= 0x70 && op <= 0x7f) {
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
  } else if ((op === 0x1b6 || op === 0x1b7) && wide) {
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
    if (r > 1 || mod !== 3) return 0;
    e.b = rmReg; e.op = r; e.size = size; f = incDecReg;
  } else if ((op === 0xc1 || op === 0xd1) && wide) {
    p = modrm(ram, p, e);
    if (mod !== 3) return 0;
    let count = 1;
    if (op === 0xc1) { count = ram[p]; p += 1; }
    count &= size === 8 ? 63 : 31;
    if (count === 0) return 0;
    e.b = rmReg; e.op = regField & 7; e.size = size; e.imm = count; f = shiftRegImm;
  } else if (op === 0x63 && size === 8) {
    p = modrm(ram, p, e);
    e.a = regField;
    if (mod === 3) { e.b = rmReg; f = movsxdReg; } else f = movsxdMem;
  } else if (op < 0x40 && (op & 7) <= 4 && (op & 7) !== 1 && (op & 7) !== 3 && (op >> 3) !== 2 && (op >> 3) !== 3) {
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
    if (aop === 2 || aop === 3) return 0; // ADC/SBB
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
  } else if (op === 0xf7 && wide && (ram[p] & 0x38) === 0) {
    p = modrm(ram, p, e);
    const imm = rd32(ram, p); p += 4;
    e.op = TEST; e.imm = imm; e.immHi = size === 8 ? imm >> 31 : 0; e.size = size;
    if (mod === 3) { e.b = rmReg; f = aluRegImm; } else f = aluMemImm;
  } else if (op === 0x88 || op === 0x8a) {
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
    if (mod !== 3) return 0;
    e.op = op & 15; e.b = byteReg(rmReg, e.rex); e.bsh = byteShift; f = setcc;
  } else if ((op === 0x90 && e.rexB === 0) || op === 0x11f || op === 0x118 || op === 0x10d) {
    if (op !== 0x90) p = modrm(ram, p, e);
    f = nop;
  }
  if (f === null) return 0;
  const decoded = p - pa;
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
}

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
]);
