// Group 3 (F6 Eb / F7 Ev: TEST NOT NEG MUL IMUL DIV IDIV) and the two- and three-operand IMUL (0F AF, 69, 6B).
// Intel SDM vol. 2 "MUL", "IMUL", "DIV", "IDIV", "NEG", "NOT", "TEST".
//
// Flags the SDM leaves undefined follow the reference host (AMD EPYC), measured natively: MUL and IMUL change
// only CF and OF (SF ZF AF PF keep their values); DIV and IDIV leave CF and OF alone, clear SF ZF PF and set AF.
// 64-bit products and 128-bit dividends are done on 32-bit words (./alu-common.ts), never BigInt, except for a
// 64-bit divisor of 2^32 or more.
import type { SoftCpu } from '../cpu.ts';
import { Lazy } from '../lazy.ts';
import * as C from '../constants.ts';
import { def1, def0f } from '../tables.ts';
import { out, setSomeFlags, noLock, mulU32, mul64, divWord, udiv128 } from './alu-common.ts';

function setMulFlags(cpu: SoftCpu, overflow: boolean): void {
  setSomeFlags(cpu, C.CF | C.OF, overflow ? C.CF | C.OF : 0);
}

function setDivFlags(cpu: SoftCpu): void {
  setSomeFlags(cpu, C.SF | C.ZF | C.PF | C.AF, C.AF);
}

function divideError(cpu: SoftCpu): never {
  return cpu.fault(C.EXC_DE);
}

// ---- group 3

function group3(cpu: SoftCpu): void {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  const op = (cpu.modrm >> 3) & 7;
  if (op === 2 || op === 3) { notNeg(cpu, size, op === 3); return; }
  noLock(cpu);
  if (op < 2) {
    // TEST r/m, imm (/1 is an undocumented alias of /0, as on the host)
    const s = cpu.fetchImm(size), sh = cpu.hi;
    const d = cpu.readRm(size);
    cpu.setLazy(Lazy.Logic, size, 0, 0, d & s, 0, 0, cpu.hi & sh);
    return;
  }
  const v = cpu.readRm(size), vh = cpu.hi;
  switch (op) {
    case 4: mul(cpu, size, v, vh); return;
    case 5: imul1(cpu, size, v, vh); return;
    case 6: div(cpu, size, v, vh); return;
    default: idiv(cpu, size, v, vh);
  }
}
def1(0xf6, group3, 0xf7);

function notNeg(cpu: SoftCpu, size: number, neg: boolean): void {
  const reg = cpu.mod === 3;
  if (reg && cpu.lock) cpu.ud();
  let lin = 0, v: number;
  if (reg) v = cpu.getReg(size, cpu.rm);
  else { lin = cpu.eaLinear(); v = cpu.readLin(lin, size); }
  const vh = cpu.hi;
  let r: number, rh = 0;
  if (!neg) { r = ~v; rh = ~vh; if (size < 4) r &= size === 1 ? 0xff : 0xffff; }
  else if (size === 8) { r = -v | 0; rh = (-vh - (v !== 0 ? 1 : 0)) | 0; }
  else { r = -v | 0; if (size < 4) r &= size === 1 ? 0xff : 0xffff; }
  if (reg) cpu.setReg(size, cpu.rm, r, rh); else cpu.writeLin(lin, size, r, rh);
  // NEG: flags of 0 - src (CF = src != 0). NOT changes no flags.
  if (neg) cpu.setLazy(Lazy.Sub, size, 0, v, r, 0, vh, rh);
}

/** MUL: rDX:rAX = rAX * v (unsigned), size 1/2/4/8 (shared with ../fast-forms.ts). */
export function mul(cpu: SoftCpu, size: number, v: number, vh: number): void {
  const R = cpu.gpr;
  switch (size) {
    case 1: {
      const p = (R[0] & 0xff) * v;
      cpu.setReg(2, 0, p);
      setMulFlags(cpu, p > 0xff);
      return;
    }
    case 2: {
      const p = (R[0] & 0xffff) * v;
      cpu.setReg(2, 0, p & 0xffff);
      cpu.setReg(2, 2, p >>> 16);
      setMulFlags(cpu, p > 0xffff);
      return;
    }
    case 4: {
      const lo = mulU32(R[0] >>> 0, v >>> 0), hi = out.hi;
      cpu.setReg(4, 0, lo);
      cpu.setReg(4, 2, hi);
      setMulFlags(cpu, hi !== 0);
      return;
    }
    default: {
      const lo = mul64(R[0], cpu.gpr[1], v, vh, false);
      const hi = out.hi, w2 = out.hi2lo, w3 = out.hi2hi;
      cpu.setReg(8, 0, lo, hi);
      cpu.setReg(8, 2, w2, w3);
      setMulFlags(cpu, w2 !== 0 || w3 !== 0);
    }
  }
}

/** One-operand IMUL: rDX:rAX = rAX * v (signed). */
export function imul1(cpu: SoftCpu, size: number, v: number, vh: number): void {
  const R = cpu.gpr;
  switch (size) {
    case 1: {
      const p = ((R[0] << 24) >> 24) * ((v << 24) >> 24);
      cpu.setReg(2, 0, p & 0xffff);
      setMulFlags(cpu, p < -0x80 || p > 0x7f);
      return;
    }
    case 2: {
      const p = ((R[0] << 16) >> 16) * ((v << 16) >> 16);
      cpu.setReg(2, 0, p & 0xffff);
      cpu.setReg(2, 2, (p >> 16) & 0xffff);
      setMulFlags(cpu, p < -0x8000 || p > 0x7fff);
      return;
    }
    case 4: {
      const a = R[0];
      const lo = mulU32(a >>> 0, v >>> 0);
      // Signed high half: subtract the other operand for each negative one (two's complement product).
      const hi = (out.hi - (a < 0 ? v : 0) - (v < 0 ? a : 0)) | 0;
      cpu.setReg(4, 0, lo);
      cpu.setReg(4, 2, hi);
      setMulFlags(cpu, hi !== lo >> 31);
      return;
    }
    default: {
      const lo = mul64(R[0], cpu.gpr[1], v, vh, true);
      const hi = out.hi, w2 = out.hi2lo, w3 = out.hi2hi;
      cpu.setReg(8, 0, lo, hi);
      cpu.setReg(8, 2, w2, w3);
      setMulFlags(cpu, w2 !== hi >> 31 || w3 !== hi >> 31);
    }
  }
}

/** DIV by v: #DE (before any change) on a zero divisor or a quotient that does not fit. */
export function div(cpu: SoftCpu, size: number, v: number, vh: number): void {
  const R = cpu.gpr;
  switch (size) {
    case 1: {
      if (v === 0) divideError(cpu);
      const n = R[0] & 0xffff;
      const q = Math.floor(n / v);
      if (q > 0xff) divideError(cpu);
      cpu.setReg(2, 0, ((n - q * v) << 8) | q);
      break;
    }
    case 2: {
      if (v === 0) divideError(cpu);
      const n = (R[4] & 0xffff) * 65536 + (R[0] & 0xffff);
      const q = Math.floor(n / v);
      if (q > 0xffff) divideError(cpu);
      cpu.setReg(2, 0, q);
      cpu.setReg(2, 2, n - q * v);
      break;
    }
    case 4: {
      const d = v >>> 0;
      if (d === 0 || (R[4] >>> 0) >= d) divideError(cpu);
      const q = divWord(R[4] >>> 0, R[0], d);
      cpu.setReg(4, 0, q);
      cpu.setReg(4, 2, out.remLo | 0);
      break;
    }
    default: {
      if (!udiv128(R[5], R[4], R[1], R[0], vh, v)) divideError(cpu);
      const ql = out.qLo, qh = out.qHi;
      cpu.setReg(8, 0, ql, qh);
      cpu.setReg(8, 2, out.remLo, out.remHi);
    }
  }
  setDivFlags(cpu);
}

/** IDIV by v, as DIV for signed operands. */
export function idiv(cpu: SoftCpu, size: number, v: number, vh: number): void {
  const R = cpu.gpr;
  switch (size) {
    case 1: {
      const d = (v << 24) >> 24;
      if (d === 0) divideError(cpu);
      const n = (R[0] << 16) >> 16;
      const q = Math.trunc(n / d);
      if (q > 0x7f || q < -0x80) divideError(cpu);
      cpu.setReg(2, 0, (((n - q * d) & 0xff) << 8) | (q & 0xff));
      break;
    }
    case 2: {
      const d = (v << 16) >> 16;
      if (d === 0) divideError(cpu);
      const n = (R[4] << 16) | (R[0] & 0xffff);
      const q = Math.trunc(n / d);
      if (q > 0x7fff || q < -0x8000) divideError(cpu);
      cpu.setReg(2, 0, q & 0xffff);
      cpu.setReg(2, 2, (n - q * d) & 0xffff);
      break;
    }
    case 4: {
      if (v === 0) divideError(cpu);
      let nh = R[4], nl = R[0];
      const nNeg = nh < 0;
      if (nNeg) { nl = -nl | 0; nh = (~nh + (nl === 0 ? 1 : 0)) | 0; }
      const dNeg = v < 0;
      const d = dNeg ? (-v) >>> 0 : v >>> 0;
      if ((nh >>> 0) >= d) divideError(cpu);
      const q = divWord(nh >>> 0, nl, d) >>> 0;
      const r = out.remLo;
      const qNeg = nNeg !== dNeg;
      if (q > (qNeg ? 0x80000000 : 0x7fffffff)) divideError(cpu);
      cpu.setReg(4, 0, qNeg ? -q | 0 : q | 0);
      cpu.setReg(4, 2, nNeg ? -r | 0 : r | 0);
      break;
    }
    default: {
      // |RDX:RAX| as four words n3..n0
      let n3 = R[5], n2 = R[4], n1 = R[1], n0 = R[0];
      const nNeg = n3 < 0;
      if (nNeg) {
        n0 = ~n0; n1 = ~n1; n2 = ~n2; n3 = ~n3;
        n0 = (n0 + 1) | 0;
        if (n0 === 0) { n1 = (n1 + 1) | 0; if (n1 === 0) { n2 = (n2 + 1) | 0; if (n2 === 0) n3 = (n3 + 1) | 0; } }
      }
      const dNeg = vh < 0;
      let dl = v, dh = vh;
      if (dNeg) { dl = -v | 0; dh = (~vh + (dl === 0 ? 1 : 0)) | 0; }
      if (!udiv128(n3, n2, n1, n0, dh, dl)) divideError(cpu);
      let ql = out.qLo, qh = out.qHi;
      let rl = out.remLo, rh = out.remHi;
      const qNeg = nNeg !== dNeg;
      // The magnitude must fit: at most 2^63 - 1, or 2^63 for a negative quotient.
      if (qh < 0 && !(qNeg && qh === (0x80000000 | 0) && ql === 0)) divideError(cpu);
      if (qNeg) { ql = -ql | 0; qh = (~qh + (ql === 0 ? 1 : 0)) | 0; }
      if (nNeg) { rl = -rl | 0; rh = (~rh + (rl === 0 ? 1 : 0)) | 0; }
      cpu.setReg(8, 0, ql, qh);
      cpu.setReg(8, 2, rl, rh);
    }
  }
  setDivFlags(cpu);
}

// ---- IMUL Gv, Ev (0F AF); IMUL Gv, Ev, Iz (69); IMUL Gv, Ev, Ib (6B): the product truncated to the operand
// size; CF = OF = the signed product did not fit.

/** reg = a * b truncated to `size` (2, 4 or 8), CF = OF = overflow (shared with ../fast-forms.ts). */
export function imulTrunc(cpu: SoftCpu, size: number, reg: number, a: number, ah: number, b: number, bh: number): void {
  switch (size) {
    case 2: {
      const p = ((a << 16) >> 16) * ((b << 16) >> 16);
      cpu.setReg(2, reg, p & 0xffff);
      setMulFlags(cpu, p < -0x8000 || p > 0x7fff);
      return;
    }
    case 4: {
      const p = a * b; // rounded, but compares with the int32 bounds exactly (they are representable)
      cpu.setReg(4, reg, Math.imul(a, b));
      setMulFlags(cpu, p > 0x7fffffff || p < -0x80000000);
      return;
    }
    default: {
      const lo = mul64(a, ah, b, bh, true);
      const hi = out.hi;
      const of = out.hi2lo !== hi >> 31 || out.hi2hi !== hi >> 31;
      cpu.setReg(8, reg, lo, hi);
      setMulFlags(cpu, of);
    }
  }
}

def0f(0xaf, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  const b = cpu.readRm(size), bh = cpu.hi;
  const a = cpu.getReg(size, cpu.reg), ah = cpu.hi;
  imulTrunc(cpu, size, cpu.reg, a, ah, b, bh);
});

def1(0x69, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  const imm = cpu.fetchImm(size), immh = cpu.hi;
  const a = cpu.readRm(size);
  imulTrunc(cpu, size, cpu.reg, a, cpu.hi, imm, immh);
});

def1(0x6b, (cpu) => {
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  const imm = cpu.fetchS8();
  const a = cpu.readRm(size);
  imulTrunc(cpu, size, cpu.reg, a, cpu.hi, imm, imm >> 31);
});
