// Integer arithmetic, logic and data movement (Intel SDM vol. 2, one section per mnemonic): ADD OR ADC SBB AND
// SUB XOR CMP in every form and group 1 (80-83), TEST, XCHG, MOV (88-8B, A0-A3, B0-BF, C6/C7), LEA, NOP/XCHG rAX
// (90-97), CBW/CWDE/CDQE, CWD/CDQ/CQO, INC/DEC (40-4F outside 64-bit mode, FE, FF /0 /1), MOVSXD, MOVZX/MOVSX,
// CMOVcc, SETcc, BSWAP, XADD, CMPXCHG, CMPXCHG8B/16B. Shifts and rotates are in ./alu-shift.ts,
// MUL/IMUL/DIV/IDIV/NOT/NEG in ./alu-muldiv.ts, bit tests and scans in ./alu-bits.ts.
//
// Flags the SDM leaves undefined follow this project's reference host (AMD EPYC), checked natively while these
// handlers were written; every such choice is named where it is made.
//
// A read-modify-write handler reads, computes, writes, and only then records flags: the write may fault
// (copy-on-write pages), and a fault must leave the flags as they were.
import type { SoftCpu } from '../cpu.ts';
import { Lazy } from '../lazy.ts';
import * as C from '../constants.ts';
import { def1, def0f, groupFF } from '../tables.ts';
import { cmpxchg16b, cmpxchgFlags, noLock } from './alu-common.ts';
import './alu-shift.ts';
import './alu-muldiv.ts';
import './alu-bits.ts';

// ---- ADD OR ADC SBB AND SUB XOR CMP: the operation is opcode bits 5:3 (or ModRM.reg in group 1)

const ADD = 0, OR = 1, ADC = 2, SBB = 3, AND = 4, SUB = 5, XOR = 6, CMP = 7;

/** Carry-in of the last ADC/SBB computed by `calc`, and the high half of its result. */
let carryIn = 0;
let resHi = 0;

/** Compute `d op s` without touching flags (size 8 passes and returns high halves; the result's in `resHi`). */
function calc(cpu: SoftCpu, op: number, size: number, d: number, dh: number, s: number, sh: number): number {
  if (size !== 8) {
    switch (op) {
      case ADD: return (d + s) | 0;
      case OR: return d | s;
      case ADC: carryIn = cpu.getCF() ? 1 : 0; return (d + s + carryIn) | 0;
      case SBB: carryIn = cpu.getCF() ? 1 : 0; return (d - s - carryIn) | 0;
      case AND: return d & s;
      case XOR: return d ^ s;
      default: return (d - s) | 0; // SUB, CMP
    }
  }
  switch (op) {
    case ADD: case ADC: {
      const cin = op === ADC ? (carryIn = cpu.getCF() ? 1 : 0) : 0;
      const l = (d >>> 0) + (s >>> 0) + cin;
      resHi = (dh + sh + (l > 0xffffffff ? 1 : 0)) | 0;
      return l | 0;
    }
    case SUB: case SBB: case CMP: {
      const bin = op === SBB ? (carryIn = cpu.getCF() ? 1 : 0) : 0;
      const l = (d >>> 0) - (s >>> 0) - bin;
      resHi = (dh - sh - (l < 0 ? 1 : 0)) | 0;
      return l | 0;
    }
    case OR: resHi = dh | sh; return d | s;
    case AND: resHi = dh & sh; return d & s;
    default: resHi = dh ^ sh; return d ^ s;
  }
}

/** The lazy-flag kind of each operation (OR AND XOR: CF=OF=0 and AF=0, as the host does). */
const LAZY_KIND = [Lazy.Add, Lazy.Logic, Lazy.Adc, Lazy.Sbb, Lazy.Logic, Lazy.Sub, Lazy.Logic, Lazy.Sub];

/** Record the flags of the `calc` that produced `r`/`rh` (the logic kinds ignore `d`/`s`). */
function flagsOf(cpu: SoftCpu, op: number, size: number, d: number, dh: number, s: number, sh: number, r: number, rh: number): void {
  cpu.lazyCarry = carryIn; // read only by the Adc/Sbb kinds, for which `calc` has just set it
  cpu.setLazy(LAZY_KIND[op], size, d, s, r, dh, sh, rh);
}

/** `r/m op= src` (CMP only compares): the r/m side of every form. */
function aluToRm(cpu: SoftCpu, op: number, size: number, s: number, sh: number): void {
  if (cpu.mod === 3) {
    if (cpu.lock) cpu.ud();
    const rm = cpu.rm;
    if (size === 4) {
      // Fast path: 32-bit register destination (zero-extends unless CMP).
      const R = cpu.gpr;
      const d = R[2 * rm];
      const r = calc(cpu, op, 4, d, 0, s, 0);
      if (op !== CMP) { R[2 * rm] = r; cpu.gpr[2 * rm + 1] = 0; }
      flagsOf(cpu, op, 4, d, 0, s, 0, r, 0);
      return;
    }
    const d = cpu.getReg(size, rm), dh = cpu.hi;
    const r = calc(cpu, op, size, d, dh, s, sh), rh = resHi;
    if (op !== CMP) cpu.setReg(size, rm, r, rh);
    flagsOf(cpu, op, size, d, dh, s, sh, r, rh);
    return;
  }
  if (cpu.lock && op === CMP) cpu.ud();
  const lin = cpu.eaLinear();
  const d = cpu.readLin(lin, size), dh = cpu.hi;
  const r = calc(cpu, op, size, d, dh, s, sh), rh = resHi;
  if (op !== CMP) cpu.writeLin(lin, size, r, rh);
  flagsOf(cpu, op, size, d, dh, s, sh, r, rh);
}

/** `reg op= src` (CMP only compares). */
function aluToReg(cpu: SoftCpu, op: number, size: number, reg: number, s: number, sh: number): void {
  const d = cpu.getReg(size, reg), dh = cpu.hi;
  const r = calc(cpu, op, size, d, dh, s, sh), rh = resHi;
  if (op !== CMP) cpu.setReg(size, reg, r, rh);
  flagsOf(cpu, op, size, d, dh, s, sh, r, rh);
}

// 00/08/.../38 Eb,Gb and 01/.../39 Ev,Gv
function aluEG(cpu: SoftCpu): void {
  const op = (cpu.opcode >> 3) & 7;
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const s = cpu.getReg(size, cpu.reg);
  aluToRm(cpu, op, size, s, cpu.hi);
}

// 02/.../3A Gb,Eb and 03/.../3B Gv,Ev
function aluGE(cpu: SoftCpu): void {
  noLock(cpu);
  const op = (cpu.opcode >> 3) & 7;
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const s = cpu.readRm(size);
  aluToReg(cpu, op, size, cpu.reg, s, cpu.hi);
}

// 04/.../3C AL,Ib and 05/.../3D rAX,Iz (imm32 sign-extended for 64-bit)
function aluAccImm(cpu: SoftCpu): void {
  noLock(cpu);
  const op = (cpu.opcode >> 3) & 7;
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  const s = cpu.fetchImm(size);
  aluToReg(cpu, op, size, 0, s, cpu.hi);
}

for (let op = 0; op < 8; op++) {
  const base = op << 3;
  def1(base, aluEG, base + 1);
  def1(base + 2, aluGE, base + 3);
  def1(base + 4, aluAccImm, base + 5);
}

// 80 Eb,Ib / 81 Ev,Iz / 83 Ev,Ib (sign-extended) / 82 = 80 outside 64-bit mode (SDM vol. 2 appendix A.3)
function group1(cpu: SoftCpu): void {
  const opc = cpu.opcode;
  if (opc === 0x82 && cpu.mode64) cpu.ud();
  cpu.decodeModrm();
  const op = (cpu.modrm >> 3) & 7;
  let size: number, s: number, sh = 0;
  if (opc === 0x81) {
    size = cpu.opsize;
    s = cpu.fetchImm(size);
    sh = cpu.hi;
  } else if (opc === 0x83) {
    size = cpu.opsize;
    s = cpu.fetchS8();
    sh = s >> 31;
    if (size < 4) s &= size === 1 ? 0xff : 0xffff;
  } else {
    size = 1;
    s = cpu.fetch8();
  }
  aluToRm(cpu, op, size, s, sh);
}
def1(0x80, group1, 0x83);

// ---- TEST (84 Eb,Gb; 85 Ev,Gv; A8 AL,Ib; A9 rAX,Iz): AND without writing; CF=OF=0, AF=0 like the host

function testFlags(cpu: SoftCpu, size: number, r: number, rh: number): void {
  cpu.setLazy(Lazy.Logic, size, 0, 0, r, 0, 0, rh);
}

def1(0x84, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const s = cpu.getReg(size, cpu.reg), sh = cpu.hi;
  const d = cpu.readRm(size);
  testFlags(cpu, size, d & s, cpu.hi & sh);
}, 0x85);

def1(0xa8, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  const s = cpu.fetchImm(size), sh = cpu.hi;
  const d = cpu.getReg(size, 0);
  testFlags(cpu, size, d & s, cpu.hi & sh);
}, 0xa9);

// ---- XCHG (86/87; LOCK is implied for a memory operand, and an explicit one is allowed there)

def1(0x86, (cpu) => {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const reg = cpu.reg;
  const a = cpu.getReg(size, reg), ah = cpu.hi;
  if (cpu.mod === 3) {
    if (cpu.lock) cpu.ud();
    const b = cpu.getReg(size, cpu.rm), bh = cpu.hi;
    cpu.setReg(size, reg, b, bh);
    cpu.setReg(size, cpu.rm, a, ah);
    return;
  }
  const lin = cpu.eaLinear();
  const b = cpu.readLin(lin, size), bh = cpu.hi;
  cpu.writeLin(lin, size, a, ah);
  cpu.setReg(size, reg, b, bh);
}, 0x87);

// 90+r: XCHG rAX, r. 90 itself is NOP (and F3 90 is PAUSE, also a no-op here) unless REX.B makes it r8.
def1(0x90, (cpu) => {
  noLock(cpu);
  const r = (cpu.opcode & 7) | cpu.rexB;
  if (r === 0) return;
  const size = cpu.opsize;
  const a = cpu.getReg(size, 0), ah = cpu.hi;
  const b = cpu.getReg(size, r), bh = cpu.hi;
  cpu.setReg(size, 0, b, bh);
  cpu.setReg(size, r, a, ah);
}, 0x97);

// ---- MOV

// 88 Eb,Gb / 89 Ev,Gv
def1(0x88, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const v = cpu.getReg(size, cpu.reg);
  cpu.writeRm(size, v, cpu.hi);
}, 0x89);

// 8A Gb,Eb / 8B Gv,Ev (a 32-bit destination zero-extends: SDM vol. 1 §3.4.1.1)
def1(0x8a, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const v = cpu.readRm(size);
  cpu.setReg(size, cpu.reg, v, cpu.hi);
}, 0x8b);

// C6 /0 Eb,Ib / C7 /0 Ev,Iz. Other /reg values are XABORT/XBEGIN (C6 F8, C7 F8: RTM, not offered) or reserved.
def1(0xc6, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  if (cpu.modrm & 0x38) cpu.ud();
  const v = cpu.fetchImm(size);
  cpu.writeRm(size, v, cpu.hi);
}, 0xc7);

// B0+r Ib (AH..BH without REX for r = 4..7), B8+r Iv (REX.W: a full 64-bit immediate)
def1(0xb0, (cpu) => {
  noLock(cpu);
  cpu.setReg(1, (cpu.opcode & 7) | cpu.rexB, cpu.fetch8());
}, 0xb7);
def1(0xb8, (cpu) => {
  noLock(cpu);
  const r = (cpu.opcode & 7) | cpu.rexB;
  const size = cpu.opsize;
  if (size === 8) {
    const lo = cpu.fetch32();
    cpu.setReg(8, r, lo, cpu.fetch32());
  } else {
    cpu.setReg(size, r, size === 2 ? cpu.fetch16() : cpu.fetch32());
  }
}, 0xbf);

/** A0-A3: the moffs operand is an address-size-wide offset (8 bytes in 64-bit mode) in DS or an override. */
function moffsLinear(cpu: SoftCpu): number {
  let off: number;
  const a = cpu.adsize;
  if (a === 8) {
    const lo = cpu.fetch32();
    off = cpu.fetch32() * C.TWO32 + (lo >>> 0);
  } else if (a === 4) {
    off = cpu.fetch32() >>> 0;
  } else {
    off = cpu.fetch16();
  }
  return cpu.linear(cpu.segOverride >= 0 ? cpu.segOverride : C.DS, off);
}

def1(0xa0, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  const v = cpu.readLin(moffsLinear(cpu), size);
  cpu.setReg(size, 0, v, cpu.hi);
}, 0xa1);
def1(0xa2, (cpu) => {
  noLock(cpu);
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  const lin = moffsLinear(cpu);
  const v = cpu.getReg(size, 0);
  cpu.writeLin(lin, size, v, cpu.hi);
}, 0xa3);

// ---- LEA (8D). The core's effective address is a double, exact only below 2^53, but LEA is used as plain
// arithmetic on arbitrary 64-bit values: with a 64-bit address size the sum is done here on int32 pairs.

let eaHi = 0;

/** Decode the ModRM/SIB/displacement of a 64-bit-address-size operand and return its exact value (hi in `eaHi`). */
function exactEa64(cpu: SoftCpu): number {
  const m = cpu.fetch8();
  cpu.modrm = m;
  const mod = m >> 6;
  cpu.mod = mod;
  cpu.reg = ((m >> 3) & 7) | cpu.rexR;
  if (mod === 3) cpu.ud();
  const rm = m & 7;
  let lo = 0, hi = 0;
  const R = cpu.gpr;
  if (rm === 4) {
    const sib = cpu.fetch8();
    const scale = sib >> 6;
    const index = ((sib >> 3) & 7) | cpu.rexX;
    if ((sib & 7) === 5 && mod === 0) {
      lo = cpu.fetch32(); hi = lo >> 31;
    } else {
      const base = (sib & 7) | cpu.rexB;
      lo = R[2 * base]; hi = R[2 * base + 1];
    }
    if (index !== 4) {
      let il = R[2 * index], ih = R[2 * index + 1];
      if (scale) { ih = (ih << scale) | (il >>> (32 - scale)); il <<= scale; }
      const l = (lo >>> 0) + (il >>> 0);
      hi = (hi + ih + (l > 0xffffffff ? 1 : 0)) | 0;
      lo = l | 0;
    }
  } else if (rm === 5 && mod === 0) {
    // RIP-relative: LEA has no immediate, so the end of the displacement is the end of the instruction.
    const disp = cpu.fetch32();
    const v = cpu.rip + disp;
    lo = v | 0;
    hi = Math.floor(v / C.TWO32) | 0;
  } else {
    const base = rm | cpu.rexB;
    lo = R[2 * base]; hi = R[2 * base + 1];
  }
  if (mod !== 0) {
    const disp = mod === 1 ? cpu.fetchS8() : cpu.fetch32();
    const l = (lo >>> 0) + (disp >>> 0);
    hi = (hi + (disp >> 31) + (l > 0xffffffff ? 1 : 0)) | 0;
    lo = l | 0;
  }
  eaHi = hi;
  return lo;
}

def1(0x8d, (cpu) => {
  noLock(cpu);
  const size = cpu.opsize;
  if (cpu.adsize === 8) {
    const lo = exactEa64(cpu);
    cpu.setReg(size, cpu.reg, size === 2 ? lo & 0xffff : lo, eaHi);
    return;
  }
  cpu.decodeModrm();
  if (cpu.mod === 3) cpu.ud();
  cpu.resolveEa();
  const ea = cpu.eaOff; // already truncated to the 32- or 16-bit address size
  cpu.setReg(size, cpu.reg, size === 2 ? ea & 0xffff : ea | 0, 0);
});

// ---- CBW/CWDE/CDQE (98), CWD/CDQ/CQO (99)

def1(0x98, (cpu) => {
  noLock(cpu);
  const r = cpu.gpr;
  switch (cpu.opsize) {
    case 2: cpu.setReg(2, 0, ((r[0] << 24) >> 24) & 0xffff); break;
    case 4: cpu.setReg(4, 0, (r[0] << 16) >> 16); break;
    default: cpu.setReg(8, 0, r[0], r[0] >> 31);
  }
});

def1(0x99, (cpu) => {
  noLock(cpu);
  const r = cpu.gpr;
  switch (cpu.opsize) {
    case 2: cpu.setReg(2, 2, (r[0] << 16) >> 31 & 0xffff); break;
    case 4: cpu.setReg(4, 2, r[0] >> 31); break;
    default: { const s = cpu.gpr[1] >> 31; cpu.setReg(8, 2, s, s); }
  }
});

// ---- INC/DEC: FE /0 /1 (byte), FF /0 /1 (through the groupFF table of ../tables.ts). CF is preserved.

function incDec(cpu: SoftCpu, size: number, dec: boolean): void {
  const reg = cpu.mod === 3;
  if (reg && cpu.lock) cpu.ud();
  let lin = 0, d: number;
  if (reg) d = cpu.getReg(size, cpu.rm);
  else { lin = cpu.eaLinear(); d = cpu.readLin(lin, size); }
  const dh = cpu.hi;
  let r: number, rh = 0;
  if (size === 8) {
    if (dec) { r = (d - 1) | 0; rh = (dh - (d === 0 ? 1 : 0)) | 0; }
    else { r = (d + 1) | 0; rh = (dh + (r === 0 ? 1 : 0)) | 0; }
  } else {
    r = dec ? (d - 1) | 0 : (d + 1) | 0;
  }
  if (reg) cpu.setReg(size, cpu.rm, r, rh); else cpu.writeLin(lin, size, r, rh);
  incDecFlags(cpu, dec, size, d, dh, r, rh);
}

function incDecFlags(cpu: SoftCpu, dec: boolean, size: number, d: number, dh: number, r: number, rh: number): void {
  cpu.lazyCarry = cpu.getCF() ? 1 : 0;
  cpu.setLazy(dec ? Lazy.Dec : Lazy.Inc, size, d, 1, r, dh, 0, rh);
}

// 40+r INC r16/r32, 48+r DEC r16/r32: outside 64-bit mode only (there these bytes are REX prefixes, which
// the core's prefix loop consumes before any opcode dispatch).
def1(0x40, (cpu) => {
  noLock(cpu);
  const i = cpu.opcode & 7;
  const dec = (cpu.opcode & 8) !== 0;
  const size = cpu.opsize;
  const d = cpu.getReg(size, i);
  const r = dec ? (d - 1) | 0 : (d + 1) | 0;
  cpu.setReg(size, i, r);
  incDecFlags(cpu, dec, size, d, 0, r, 0);
}, 0x4f);

def1(0xfe, (cpu) => {
  cpu.decodeModrm();
  const op = (cpu.modrm >> 3) & 7;
  if (op > 1) cpu.ud();
  incDec(cpu, 1, op === 1);
});
groupFF[0] = (cpu) => incDec(cpu, cpu.opsize, false);
groupFF[1] = (cpu) => incDec(cpu, cpu.opsize, true);

// ---- MOVSXD (63, 64-bit mode). Outside 64-bit mode 63 is ARPL, which ./system installs with `setArplHandler`.

let arpl = (cpu: SoftCpu): void => cpu.unimplemented('arpl');
/** Install the legacy-mode meaning of opcode 63 (ARPL); 64-bit mode keeps MOVSXD. */
export function setArplHandler(fn: (cpu: SoftCpu) => void): void {
  arpl = fn;
}

def1(0x63, (cpu) => {
  if (!cpu.mode64) { arpl(cpu); return; }
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  if (size === 8) {
    const v = cpu.readRm(4);
    cpu.setReg(8, cpu.reg, v, v >> 31);
  } else {
    cpu.setReg(size, cpu.reg, cpu.readRm(size));
  }
});

// ---- MOVZX (0F B6/B7), MOVSX (0F BE/BF)

def0f(0xb6, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  const v = cpu.readRm(cpu.opcode & 1 ? 2 : 1);
  cpu.setReg(cpu.opsize, cpu.reg, v, 0);
}, 0xb7);

def0f(0xbe, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  const word = cpu.opcode & 1;
  const raw = cpu.readRm(word ? 2 : 1);
  const v = word ? (raw << 16) >> 16 : (raw << 24) >> 24;
  const size = cpu.opsize;
  cpu.setReg(size, cpu.reg, size === 2 ? v & 0xffff : v, v >> 31);
}, 0xbf);

// ---- CMOVcc (0F 40-4F): the source is read (and may fault) whatever the condition; a 32-bit destination is
// zero-extended even when the condition is false (SDM CMOVcc, 64-bit mode).

def0f(0x40, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  const v = cpu.readRm(size), vh = cpu.hi;
  if (cpu.condition(cpu.opcode & 15)) cpu.setReg(size, cpu.reg, v, vh);
  else if (size === 4) cpu.gpr[2 * cpu.reg + 1] = 0;
}, 0x4f);

// ---- SETcc (0F 90-9F) r/m8; ModRM.reg is ignored

def0f(0x90, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  cpu.writeRm(1, cpu.condition(cpu.opcode & 15) ? 1 : 0);
}, 0x9f);

// ---- BSWAP (0F C8+r). With a 16-bit operand the result is undefined; the host clears the low word.

def0f(0xc8, (cpu) => {
  noLock(cpu);
  const r = (cpu.opcode & 7) | cpu.rexB;
  const size = cpu.opsize;
  if (size === 2) { cpu.setReg(2, r, 0); return; }
  const lo = cpu.gpr[2 * r];
  if (size === 4) { cpu.setReg(4, r, bswap32(lo)); return; }
  cpu.setReg(8, r, bswap32(cpu.gpr[2 * r + 1]), bswap32(lo));
}, 0xcf);

function bswap32(v: number): number {
  return ((v << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) | 0;
}

// ---- XADD (0F C0 Eb,Gb; 0F C1 Ev,Gv): TEMP = SRC + DEST; SRC = DEST; DEST = TEMP (so with one register, the sum)

def0f(0xc0, (cpu) => {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const reg = cpu.reg;
  const s = cpu.getReg(size, reg), sh = cpu.hi;
  if (cpu.mod === 3) {
    if (cpu.lock) cpu.ud();
    const d = cpu.getReg(size, cpu.rm), dh = cpu.hi;
    const r = calc(cpu, ADD, size, d, dh, s, sh), rh = resHi;
    cpu.setReg(size, reg, d, dh);
    cpu.setReg(size, cpu.rm, r, rh);
    flagsOf(cpu, ADD, size, d, dh, s, sh, r, rh);
    return;
  }
  const lin = cpu.eaLinear();
  const d = cpu.readLin(lin, size), dh = cpu.hi;
  const r = calc(cpu, ADD, size, d, dh, s, sh), rh = resHi;
  cpu.writeLin(lin, size, r, rh);
  cpu.setReg(size, reg, d, dh);
  flagsOf(cpu, ADD, size, d, dh, s, sh, r, rh);
}, 0xc1);

// ---- CMPXCHG (0F B0 Eb,Gb; 0F B1 Ev,Gv): flags of CMP rAX, DEST. Equal: DEST = SRC. Otherwise rAX = DEST, and a
// memory destination is written back with its own value (so a read-only page faults either way). A register
// destination that is not equal is left alone, and rAX untouched when equal (no 32-bit zero extension of the
// register that is not written, as on the host).

def0f(0xb0, (cpu) => {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const acc = cpu.getReg(size, 0), acch = cpu.hi;
  const mem = cpu.mod !== 3;
  if (!mem && cpu.lock) cpu.ud();
  let lin = 0;
  let d: number;
  if (mem) { lin = cpu.eaLinear(); d = cpu.readLin(lin, size); } else d = cpu.getReg(size, cpu.rm);
  const dh = size === 8 ? cpu.hi : 0;
  const r = calc(cpu, CMP, size, acc, acch, d, dh), rh = resHi;
  const equal = size === 8 ? r === 0 && rh === 0 : (r & (size === 1 ? 0xff : size === 2 ? 0xffff : -1)) === 0;
  if (equal) {
    const s = cpu.getReg(size, cpu.reg), sh = cpu.hi;
    if (mem) cpu.writeLin(lin, size, s, sh); else cpu.setReg(size, cpu.rm, s, sh);
  } else {
    if (mem) cpu.writeLin(lin, size, d, dh);
    cpu.setReg(size, 0, d, dh);
  }
  flagsOf(cpu, CMP, size, acc, acch, d, dh, r, rh);
}, 0xb1);

// ---- 0F C7: /1 CMPXCHG8B m64 / CMPXCHG16B m128 (REX.W; #GP(0) unless 16-byte aligned). Only ZF changes.
// /6 RDRAND and /7 RDSEED/RDPID are not advertised by CPUID: #UD, as on a CPU without them.

def0f(0xc7, (cpu) => {
  cpu.decodeModrm();
  const op = (cpu.modrm >> 3) & 7;
  if (op !== 1) {
    noLock(cpu);
    if (op === 6 || op === 7 || cpu.mod === 3) cpu.ud();
    cpu.unimplemented(`opcode 0f c7 /${op}`);
  }
  if (cpu.mod === 3) cpu.ud();
  const lin = cpu.eaLinear();
  if (cpu.rexW) {
    cmpxchg16b(cpu, lin);
    return;
  }
  const R = cpu.gpr;
  const lo = cpu.readLin(lin, 8), hi = cpu.hi;
  const equal = lo === R[0] && hi === R[4];
  if (equal) {
    cpu.writeLin(lin, 8, R[6], R[2]);
  } else {
    cpu.writeLin(lin, 8, lo, hi);
    cpu.setReg(4, 0, lo);
    cpu.setReg(4, 2, hi);
  }
  cmpxchgFlags(cpu, equal);
});

