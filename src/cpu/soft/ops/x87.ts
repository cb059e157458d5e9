// The x87 FPU: opcodes D8-DF and 9B (FWAIT), SDM vol. 1 ch. 8 and vol. 2 per instruction.
//
// PRECISION: registers are stored in the 80-bit extended format (ops/fpu-state.ts), so loads, stores of m80,
// register moves, FXCH, FCHS/FABS, FXSAVE and integer loads/stores are exact, but arithmetic and the
// transcendental functions are computed in JavaScript doubles: a 53-bit significand (64-bit double), not the
// 64-bit significand of real hardware, and the precision-control field of the control word is ignored.
// Rounding control is honoured by FIST/FISTP, FRNDINT and the stores to integers; arithmetic rounds to
// nearest. Unmasked x87 exceptions set ES/B and raise #MF at the next waiting x87 instruction when CR0.NE is
// set; the masked response (default NaN, infinity, ...) is always written. PE is reported for conversions only.
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1 } from '../tables.ts';
import { F80, TEMP_SLOT, type FpuState } from './fpu-state.ts';
import { x87Check, roundRc, scale } from './sse-common.ts';

// Status word bits (SDM vol. 1 §8.1.3)
const IE = 1 << 0, DE = 1 << 1, ZE = 1 << 2, OE = 1 << 3, UE = 1 << 4, PE = 1 << 5, SF = 1 << 6, ES = 1 << 7;
const C0 = 1 << 8, C1 = 1 << 9, C2 = 1 << 10, C3 = 1 << 14, B = 1 << 15;
void DE; void UE;

const cvF = new Float64Array(1);
const cvI = new Int32Array(cvF.buffer);
const cvF32 = new Float32Array(1);
const cvI32 = new Int32Array(cvF32.buffer);

// =====================================================================================================
// 80-bit format <-> double

function phys(f: FpuState, i: number): number {
  return (f.top + i) & 7;
}
function isValid(f: FpuState, p: number): boolean {
  return ((f.tagValid >> p) & 1) !== 0;
}

function slotExp(f: FpuState, s: number): number {
  return f.regsView.getUint16(s * F80 + 8, true);
}
function slotIsNan(f: FpuState, s: number): boolean {
  const v = f.regsView, o = s * F80;
  return (v.getUint16(o + 8, true) & 0x7fff) === 0x7fff && ((v.getUint32(o + 4, true) & 0x7fffffff) | v.getUint32(o, true)) !== 0;
}
function slotIsSnan(f: FpuState, s: number): boolean {
  return slotIsNan(f, s) && (f.regs[s * F80 + 7] & 0x40) === 0;
}

/** The value of a slot as a double (rounded to 53 bits; NaN for NaNs). */
function get(f: FpuState, s: number): number {
  const v = f.regsView, o = s * F80;
  const se = v.getUint16(o + 8, true), exp = se & 0x7fff;
  const lo = v.getUint32(o, true), hi = v.getUint32(o + 4, true);
  let x: number;
  if (exp === 0x7fff) x = ((hi & 0x7fffffff) | lo) === 0 ? Infinity : NaN;
  else if ((hi | lo) === 0) x = 0;
  else x = scale(hi * 4294967296 + lo, (exp === 0 ? 1 : exp) - 16383 - 63); // one rounding to 53 bits, then exact scaling
  return se & 0x8000 ? -x : x;
}

function setRaw(f: FpuState, s: number, se: number, hi: number, lo: number): void {
  const v = f.regsView, o = s * F80;
  v.setUint32(o, lo >>> 0, true);
  v.setUint32(o + 4, hi >>> 0, true);
  v.setUint16(o + 8, se, true);
}

/** The x87 default NaN ("real indefinite": negative, quiet, significand C000...0). */
function setIndefinite(f: FpuState, s: number): void {
  setRaw(f, s, 0xffff, 0xc0000000, 0);
}

/** Store a double into a slot (NaN becomes the indefinite). */
function put(f: FpuState, s: number, x: number): void {
  if (Number.isNaN(x)) { setIndefinite(f, s); return; }
  cvF[0] = x;
  let hi = cvI[1], lo = cvI[0];
  const sign = hi < 0 ? 0x8000 : 0;
  let e = (hi >>> 20) & 0x7ff;
  if (e === 0x7ff) { setRaw(f, s, sign | 0x7fff, 0x80000000, 0); return; }
  if (e === 0) {
    if (((hi & 0xfffff) | lo) === 0) { setRaw(f, s, sign, 0, 0); return; }
    cvF[0] = x * 2 ** 64; // normalise a denormal double
    hi = cvI[1]; lo = cvI[0];
    e = ((hi >>> 20) & 0x7ff) - 64;
  }
  setRaw(f, s, sign | (e - 1023 + 16383), 0x80000000 | ((hi & 0xfffff) << 11) | (lo >>> 21), lo << 11);
}

function copySlot(f: FpuState, from: number, to: number): void {
  f.regs.copyWithin(to * F80, from * F80, from * F80 + F80);
}

/** Integer (bigint) to a slot, exactly (a 64-bit significand holds any int64). */
function putInt(f: FpuState, s: number, v: bigint): void {
  if (v === 0n) { setRaw(f, s, 0, 0, 0); return; }
  const sign = v < 0n ? 0x8000 : 0;
  let m = v < 0n ? -v : v;
  let e = 63;
  while (m >= 1n << 64n) { m >>= 1n; e++; } // (callers pass at most 64 significant bits)
  while (!(m & 0x8000000000000000n)) { m <<= 1n; e--; }
  setRaw(f, s, sign | (16383 + e), Number(m >> 32n), Number(m & 0xffffffffn));
}

/**
 * A slot rounded to an integer with rounding mode `mode` (0 nearest-even, 1 down, 2 up, 3 toward zero),
 * exactly from the 80-bit value; null for NaN and infinity. Sets PE when rounding changed the value.
 */
function toInt(f: FpuState, s: number, mode: number): bigint | null {
  const v = f.regsView, o = s * F80;
  const se = v.getUint16(o + 8, true), exp = se & 0x7fff, neg = (se & 0x8000) !== 0;
  if (exp === 0x7fff) return null;
  const m = (BigInt(v.getUint32(o + 4, true)) << 32n) | BigInt(v.getUint32(o, true));
  if (m === 0n) return 0n;
  const shift = (exp === 0 ? 1 : exp) - 16383 - 63;
  if (shift >= 0) return shift > 64 ? (neg ? -(1n << 80n) : 1n << 80n) : neg ? -(m << BigInt(shift)) : m << BigInt(shift);
  const sh = BigInt(-shift);
  let q = -shift >= 128 ? 0n : m >> sh;
  const rem = -shift >= 128 ? m : m - (q << sh);
  if (rem !== 0n) {
    f.sw |= PE;
    const half = -shift >= 128 ? -1 : compareHalf(rem, sh);
    let up: boolean;
    switch (mode) {
      case 0: up = half > 0 || (half === 0 && (q & 1n) === 1n); break;
      case 1: up = neg; break;
      case 2: up = !neg; break;
      default: up = false;
    }
    if (up) q += 1n;
  }
  return neg ? -q : q;
}
function compareHalf(rem: bigint, sh: bigint): number {
  const half = 1n << (sh - 1n);
  return rem > half ? 1 : rem < half ? -1 : 0;
}

// =====================================================================================================
// Exceptions and the stack

/** Record exception flags; unmasked ones set ES and B (the #MF is raised by the next waiting instruction). */
function flag(f: FpuState, bits: number): void {
  f.sw |= bits;
  if (bits & ~f.cw & 0x3f) f.sw |= ES | B;
}

/** Before a waiting x87 instruction: a pending unmasked exception raises #MF (CR0.NE; SDM vol. 1 §8.7). */
function pending(cpu: SoftCpu): void {
  if ((cpu.fpu.sw & ES) && (cpu.cr0 & C.CR0_NE)) cpu.fault(C.EXC_MF);
}

/** Stack underflow: IE|SF with C1 = 0 (SDM vol. 1 §8.5.1.1). */
function underflow(f: FpuState): void {
  f.sw &= ~C1;
  flag(f, IE | SF);
}

/** Push: the new ST(0) gets slot `from`'s contents (copied first: `from` may be a register being pushed). */
function pushSlot(f: FpuState, from: number): void {
  copySlot(f, from, TEMP_SLOT + 0);
  const p = (f.top - 1) & 7;
  f.top = p;
  if (isValid(f, p)) {
    // Stack overflow: IE|SF with C1 = 1; the masked response loads the indefinite.
    f.sw |= C1;
    flag(f, IE | SF);
    setIndefinite(f, p);
  } else {
    copySlot(f, TEMP_SLOT, p);
  }
  f.tagValid |= 1 << p;
}

function pushValue(f: FpuState, x: number): void {
  put(f, TEMP_SLOT, x);
  pushSlot(f, TEMP_SLOT);
}

function pop(f: FpuState): void {
  f.tagValid &= ~(1 << f.top);
  f.top = (f.top + 1) & 7;
}

/** Slot of ST(i), or -1 after signalling underflow if it is empty. */
function st(f: FpuState, i: number): number {
  const p = phys(f, i);
  if (!isValid(f, p)) { underflow(f); return -1; }
  return p;
}

// =====================================================================================================
// Memory operands

const F32_SLOT = TEMP_SLOT;

/** Load m32real/m64real/m80real/m16int/m32int/m64int at `lin` into the scratch slot. */
function loadMem(cpu: SoftCpu, lin: number, kind: number): void {
  const f = cpu.fpu;
  switch (kind) {
    case 0: { // m32real
      const b = cpu.readLin(lin, 4);
      if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) {
        setRaw(f, F32_SLOT, (b >>> 16 & 0x8000) | 0x7fff, 0x80000000 | ((b & 0x7fffff) << 8), 0);
      } else {
        cvI32[0] = b;
        put(f, F32_SLOT, cvF32[0]);
      }
      return;
    }
    case 1: { // m64real
      const lo = cpu.readLin(lin, 8), hi = cpu.hi;
      if ((hi & 0x7ff00000) === 0x7ff00000 && ((hi & 0xfffff) | lo) !== 0) {
        setRaw(f, F32_SLOT, (hi >>> 16 & 0x8000) | 0x7fff, 0x80000000 | ((hi & 0xfffff) << 11) | (lo >>> 21), lo << 11);
      } else {
        cvI[0] = lo; cvI[1] = hi;
        put(f, F32_SLOT, cvF[0]);
      }
      return;
    }
    case 2: { // m80real
      const lo = cpu.readLin(lin, 8), hi = cpu.hi;
      const se = cpu.readLin(cpu.addLin(lin, 8), 2);
      setRaw(f, F32_SLOT, se, hi, lo);
      return;
    }
    case 3: put(f, F32_SLOT, (cpu.readLin(lin, 2) << 16) >> 16); return; // m16int
    case 4: put(f, F32_SLOT, cpu.readLin(lin, 4)); return; // m32int
    default: { // m64int
      const lo = cpu.readLin(lin, 8), hi = cpu.hi;
      putInt(f, F32_SLOT, (BigInt(hi) << 32n) | BigInt(lo >>> 0));
    }
  }
}

/** Store slot `s` as m32real (kind 0), m64real (1) or m80real (2). */
function storeReal(cpu: SoftCpu, lin: number, s: number, kind: number): void {
  const f = cpu.fpu;
  if (kind === 2) {
    const v = f.regsView, o = s * F80;
    cpu.probeWrite(lin, 10);
    cpu.writeLin(lin, 8, v.getInt32(o, true), v.getInt32(o + 4, true));
    cpu.writeLin(cpu.addLin(lin, 8), 2, v.getUint16(o + 8, true));
    return;
  }
  let lo: number, hi = 0;
  if (slotIsNan(f, s)) {
    if (slotIsSnan(f, s)) flag(f, IE);
    const v = f.regsView, o = s * F80;
    const sign = v.getUint16(o + 8, true) & 0x8000 ? 0x80000000 : 0;
    const mh = v.getUint32(o + 4, true) | 0x40000000, ml = v.getUint32(o, true);
    if (kind === 0) lo = sign | 0x7f800000 | ((mh >>> 8) & 0x7fffff);
    else { hi = sign | 0x7ff00000 | ((mh >>> 11) & 0xfffff); lo = (mh << 21) | (ml >>> 11); }
  } else {
    const x = get(f, s);
    if (kind === 0) {
      const r = Math.fround(x);
      if (r !== x) flag(f, Number.isFinite(x) && !Number.isFinite(r) ? OE | PE : PE);
      cvF32[0] = r; lo = cvI32[0];
    } else {
      cvF[0] = x; lo = cvI[0]; hi = cvI[1];
    }
  }
  if (kind === 0) cpu.writeLin(lin, 4, lo);
  else cpu.writeLin(lin, 8, lo, hi);
}

/** Store slot `s` as an integer of `size` bytes, rounded by `mode`; NaN/out of range: integer indefinite with IE. */
function storeInt(cpu: SoftCpu, lin: number, s: number, size: number, mode: number): void {
  const f = cpu.fpu;
  const saved = f.sw;
  let v = toInt(f, s, mode);
  const bits = BigInt(size * 8);
  if (v === null || v < -(1n << (bits - 1n)) || v >= 1n << (bits - 1n)) {
    f.sw = saved;
    flag(f, IE);
    v = -(1n << (bits - 1n));
  } else if (f.sw & PE) {
    flag(f, PE);
  }
  if (size === 8) {
    cpu.writeLin(lin, 8, Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
  } else {
    cpu.writeLin(lin, size, Number(BigInt.asIntN(size * 8, v)) & (size === 2 ? 0xffff : -1));
  }
}

// =====================================================================================================
// Arithmetic

/**
 * dst(slot) = a op b for op 0 add, 1 mul, 4 sub (a-b), 5 subr (b-a), 6 div (a/b), 7 divr (b/a), with the
 * NaN rules of SDM vol. 1 §4.8.3.5 table 4-7 (x87 column: of two NaNs the larger significand wins).
 */
function arith(f: FpuState, op: number, dst: number, a: number, b: number): void {
  const an = slotIsNan(f, a), bn = slotIsNan(f, b);
  if (an || bn) {
    if ((an && slotIsSnan(f, a)) || (bn && slotIsSnan(f, b))) flag(f, IE);
    let src = an ? a : b;
    if (an && bn) {
      const v = f.regsView;
      const ma = v.getUint32(a * F80 + 4, true) & 0x3fffffff, mb = v.getUint32(b * F80 + 4, true) & 0x3fffffff;
      const la = v.getUint32(a * F80, true), lb = v.getUint32(b * F80, true);
      if (mb > ma || (mb === ma && lb > la)) src = b;
    }
    copySlot(f, src, dst);
    f.regs[dst * F80 + 7] |= 0x40;
    return;
  }
  const x = get(f, a), y = get(f, b);
  let r: number;
  switch (op) {
    case 0: r = x + y; break;
    case 1: r = x * y; break;
    case 4: r = x - y; break;
    case 5: r = y - x; break;
    case 6: r = divide(f, x, y); break;
    default: r = divide(f, y, x); break;
  }
  if (Number.isNaN(r)) { flag(f, IE); setIndefinite(f, dst); return; }
  const byZero = (op === 6 && y === 0) || (op === 7 && x === 0);
  if (!Number.isFinite(r) && Number.isFinite(x) && Number.isFinite(y) && !byZero) flag(f, OE | PE);
  put(f, dst, r);
}

function divide(f: FpuState, x: number, y: number): number {
  if (y === 0 && x !== 0 && Number.isFinite(x)) flag(f, ZE);
  return x / y;
}

/** Compare a with b: C3/C2/C0 (or, for FCOMI, the EFLAGS result); `quiet`: only an SNaN is invalid. */
function compare(f: FpuState, a: number, b: number, quiet: boolean): number {
  // Returns 0 greater, 1 less, 2 equal, 3 unordered.
  if (a < 0 || b < 0) return 3; // an empty operand (underflow already signalled)
  if (slotIsNan(f, a) || slotIsNan(f, b)) {
    if (!quiet || slotIsSnan(f, a) || slotIsSnan(f, b)) flag(f, IE);
    return 3;
  }
  const x = get(f, a), y = get(f, b);
  return x > y ? 0 : x < y ? 1 : 2;
}

const CC_BITS = [0, C0, C3, C3 | C2 | C0];
function setCc(f: FpuState, r: number): void {
  f.sw = (f.sw & ~(C0 | C1 | C2 | C3)) | CC_BITS[r];
}
const EFL_BITS = [0, C.CF, C.ZF, C.ZF | C.PF | C.CF];

// =====================================================================================================
// Decoding helpers

/** Record FOP/FIP/FDP for FSTENV/FXSAVE (SDM vol. 1 §8.1.8, 8.1.9). */
function note(cpu: SoftCpu, lin: number): void {
  const f = cpu.fpu;
  f.fop = ((cpu.opcode & 7) << 8) | cpu.modrm;
  f.fip = cpu.ripStart;
  f.fcs = cpu.segSel[C.CS];
  f.fdp = lin;
  f.fds = cpu.segSel[cpu.eaSeg];
}

/** Common prologue of a waiting x87 instruction; returns the memory operand's linear address (mod != 3). */
function begin(cpu: SoftCpu): number {
  cpu.decodeModrm();
  x87Check(cpu);
  pending(cpu);
  const lin = cpu.mod === 3 ? 0 : cpu.eaLinear();
  note(cpu, lin);
  return lin;
}

/** ST(0) op= memory operand of `kind` (D8, DA, DC, DE memory forms). */
function memArith(cpu: SoftCpu, lin: number, kind: number): void {
  const f = cpu.fpu;
  const r = (cpu.modrm >> 3) & 7;
  loadMem(cpu, lin, kind);
  const s0 = st(f, 0);
  if (r === 2 || r === 3) {
    setCc(f, compare(f, s0, TEMP_SLOT, false));
    if (r === 3) pop(f);
    return;
  }
  if (s0 < 0) { if (f.cw & IE) { setIndefinite(f, phys(f, 0)); f.tagValid |= 1 << phys(f, 0); } return; }
  arith(f, r, s0, s0, TEMP_SLOT);
}

/** Register forms of D8/DC/DE: dst = ST(0) (D8) or ST(i) (DC, DE); `pop` for DE. */
function regArith(cpu: SoftCpu, toSti: boolean, popAfter: boolean): void {
  const f = cpu.fpu;
  const r = (cpu.modrm >> 3) & 7, i = cpu.modrm & 7;
  if (r === 2 || r === 3) { // FCOM/FCOMP ST(i) (and the DC/DE aliases)
    const a = st(f, 0), b = st(f, i);
    setCc(f, compare(f, a, b, false));
    if (r === 3 || popAfter) pop(f);
    return;
  }
  const a = st(f, 0), b = st(f, i);
  const dst = toSti ? phys(f, i) : phys(f, 0);
  if (a < 0 || b < 0) { if (f.cw & IE) { setIndefinite(f, dst); f.tagValid |= 1 << dst; } }
  else if (toSti) arith(f, r >= 4 ? r ^ 1 : r, dst, b, a); // DC/DE: FSUBR/FSUB and FDIVR/FDIV swap (SDM DC E0+i etc.)
  else arith(f, r, dst, a, b);
  if (popAfter) pop(f);
}

// =====================================================================================================
// Opcodes

// D8: arithmetic with m32real or ST(i).
def1(0xd8, (cpu) => {
  const lin = begin(cpu);
  if (cpu.mod === 3) regArith(cpu, false, false); else memArith(cpu, lin, 0);
});
// DC: arithmetic with m64real, or ST(i) op= ST(0).
def1(0xdc, (cpu) => {
  const lin = begin(cpu);
  if (cpu.mod === 3) regArith(cpu, true, false); else memArith(cpu, lin, 1);
});
// DA: m32int arithmetic; FCMOVB/E/BE/U; FUCOMPP.
def1(0xda, (cpu) => {
  const lin = begin(cpu);
  if (cpu.mod !== 3) { memArith(cpu, lin, 4); return; }
  const f = cpu.fpu, r = (cpu.modrm >> 3) & 7;
  if (r < 4) { fcmov(cpu, r, false); return; }
  if (cpu.modrm === 0xe9) { // FUCOMPP
    setCc(f, compare(f, st(f, 0), st(f, 1), true));
    pop(f); pop(f);
    return;
  }
  cpu.ud();
});
// DE: m16int arithmetic; FADDP, FMULP, FCOMPP, FSUBRP, FSUBP, FDIVRP, FDIVP.
def1(0xde, (cpu) => {
  const lin = begin(cpu);
  if (cpu.mod !== 3) { memArith(cpu, lin, 3); return; }
  const f = cpu.fpu, r = (cpu.modrm >> 3) & 7;
  if (r === 3) {
    if (cpu.modrm !== 0xd9) cpu.ud();
    setCc(f, compare(f, st(f, 0), st(f, 1), false)); // FCOMPP
    pop(f); pop(f);
    return;
  }
  regArith(cpu, true, true);
});

const FCMOV_CC = [2, 4, 6, 10]; // B (CF), E (ZF), BE (CF|ZF), U (PF): the Jcc condition numbers
function fcmov(cpu: SoftCpu, r: number, negate: boolean): void {
  const f = cpu.fpu, i = cpu.modrm & 7;
  const src = st(f, i);
  if (src < 0) return;
  if (cpu.condition(FCMOV_CC[r]) !== negate) copySlot(f, src, phys(f, 0));
}

// Constants exactly as the hardware loads them (round to nearest).
const CONSTANTS: Array<[number, number, number]> = [
  [0x3fff, 0x80000000, 0x00000000], // FLD1
  [0x4000, 0xd49a784b, 0xcd1b8afe], // FLDL2T
  [0x3fff, 0xb8aa3b29, 0x5c17f0bc], // FLDL2E
  [0x4000, 0xc90fdaa2, 0x2168c235], // FLDPI
  [0x3ffd, 0x9a209a84, 0xfbcff799], // FLDLG2
  [0x3ffe, 0xb17217f7, 0xd1cf79ac], // FLDLN2
  [0x0000, 0x00000000, 0x00000000], // FLDZ
];

// D9: FLD/FST/FSTP m32real, FLDENV, FLDCW, FNSTENV, FNSTCW; FLD/FXCH ST(i), FNOP, FCHS ... FCOS.
def1(0xd9, (cpu) => {
  cpu.decodeModrm();
  x87Check(cpu);
  const f = cpu.fpu, r = (cpu.modrm >> 3) & 7;
  if (cpu.mod !== 3) {
    const lin = cpu.eaLinear();
    switch (r) {
      case 0: pending(cpu); note(cpu, lin); loadMem(cpu, lin, 0); pushSlot(f, TEMP_SLOT); return;
      case 2: case 3: {
        pending(cpu); note(cpu, lin);
        const s = st(f, 0);
        if (s < 0) { if (f.cw & IE) cpu.writeLin(lin, 4, 0xffc00000 | 0); else return; }
        else storeReal(cpu, lin, s, 0);
        if (r === 3) pop(f);
        return;
      }
      case 4: pending(cpu); loadEnv(cpu, lin); return;
      case 5: pending(cpu); f.cw = cpu.readLin(lin, 2) | 0x40; recheck(f); return; // bit 6 reads as 1
      case 6: storeEnv(cpu, lin); f.cw |= 0x3f; return; // FNSTENV masks every exception afterwards
      case 7: cpu.writeLin(lin, 2, f.cw); return;
      default: cpu.ud();
    }
  }
  pending(cpu);
  note(cpu, 0);
  const i = cpu.modrm & 7;
  switch (r) {
    case 0: { // FLD ST(i)
      const s = st(f, i);
      if (s < 0) { setIndefinite(f, TEMP_SLOT); pushSlot(f, TEMP_SLOT); } else pushSlot(f, s);
      return;
    }
    case 1: { // FXCH ST(i)
      const a = phys(f, 0), b = phys(f, i);
      if (!isValid(f, a) || !isValid(f, b)) {
        underflow(f);
        if (!isValid(f, a)) setIndefinite(f, a);
        if (!isValid(f, b)) setIndefinite(f, b);
        f.tagValid |= (1 << a) | (1 << b);
      }
      copySlot(f, a, TEMP_SLOT); copySlot(f, b, a); copySlot(f, TEMP_SLOT, b);
      f.sw &= ~C1;
      return;
    }
    case 2: if (i === 0) return; break; // FNOP
    case 3: { // FSTP1 (undocumented alias of FSTP ST(i))
      const s = st(f, 0);
      if (s >= 0) copySlot(f, s, phys(f, i));
      f.tagValid |= 1 << phys(f, i);
      pop(f);
      return;
    }
  }
  switch (cpu.modrm) {
    case 0xe0: case 0xe1: { // FCHS, FABS: sign bit only
      const s = st(f, 0);
      if (s < 0) return;
      const o = s * F80 + 9;
      f.regs[o] = cpu.modrm === 0xe0 ? f.regs[o] ^ 0x80 : f.regs[o] & 0x7f;
      f.sw &= ~C1;
      return;
    }
    case 0xe4: { // FTST
      const s = st(f, 0);
      put(f, TEMP_SLOT, 0);
      setCc(f, compare(f, s, TEMP_SLOT, false));
      return;
    }
    case 0xe5: { // FXAM (C3,C2,C0: 000 unsupported, 001 NaN, 010 normal, 011 inf, 100 zero, 101 empty, 110 denormal)
      const p = phys(f, 0);
      const sign = f.regs[p * F80 + 9] & 0x80 ? C1 : 0;
      let cc: number;
      if (!isValid(f, p)) cc = C3 | C0;
      else {
        const exp = slotExp(f, p) & 0x7fff;
        const v = f.regsView;
        const hi = v.getUint32(p * F80 + 4, true), lo = v.getUint32(p * F80, true);
        if (exp === 0x7fff) cc = ((hi & 0x7fffffff) | lo) === 0 ? C2 | C0 : hi & 0x80000000 ? C0 : 0;
        else if (exp === 0) cc = (hi | lo) === 0 ? C3 : C3 | C2;
        else cc = hi & 0x80000000 ? C2 : 0;
      }
      f.sw = (f.sw & ~(C0 | C1 | C2 | C3)) | cc | sign;
      return;
    }
    case 0xe8: case 0xe9: case 0xea: case 0xeb: case 0xec: case 0xed: case 0xee: {
      const [se, hi, lo] = CONSTANTS[cpu.modrm - 0xe8];
      setRaw(f, TEMP_SLOT, se, hi, lo);
      pushSlot(f, TEMP_SLOT);
      return;
    }
    case 0xf6: f.top = (f.top - 1) & 7; f.sw &= ~C1; return; // FDECSTP
    case 0xf7: f.top = (f.top + 1) & 7; f.sw &= ~C1; return; // FINCSTP
  }
  transcendental(cpu, f);
});

function recheck(f: FpuState): void {
  // Unmasking a pending exception in FLDCW makes it pending for #MF (SDM FLDCW).
  if (f.sw & ~f.cw & 0x3f) f.sw |= ES | B; else f.sw &= ~(ES | B);
}

const TWO63 = 2 ** 63;

/** D9 E0-FF arithmetic that works on ST(0) (and ST(1)). */
function transcendental(cpu: SoftCpu, f: FpuState): void {
  const op = cpu.modrm;
  const s0 = st(f, 0);
  const twoOperands = op === 0xf1 || op === 0xf3 || op === 0xf5 || op === 0xf8 || op === 0xf9 || op === 0xfd;
  const s1 = twoOperands ? st(f, 1) : 0;
  if (s0 < 0 || s1 < 0) {
    if (twoOperands && (op === 0xf1 || op === 0xf3 || op === 0xf9)) { setIndefinite(f, phys(f, 1)); pop(f); }
    else setIndefinite(f, phys(f, 0));
    return;
  }
  if (slotIsNan(f, s0) || (twoOperands && slotIsNan(f, s1))) {
    if (slotIsSnan(f, s0) || (twoOperands && slotIsSnan(f, s1))) flag(f, IE);
    const nan = slotIsNan(f, s0) ? s0 : s1;
    f.regs[nan * F80 + 7] |= 0x40;
    if (op === 0xf1 || op === 0xf3 || op === 0xf9) { copySlot(f, nan, s1); pop(f); }
    else if (op === 0xf2 || op === 0xf4 || op === 0xfb) { copySlot(f, nan, TEMP_SLOT); pushSlot(f, TEMP_SLOT); }
    else copySlot(f, nan, s0);
    return;
  }
  const x = get(f, s0);
  const y = twoOperands ? get(f, s1) : 0;
  f.sw &= ~C1;
  switch (op) {
    case 0xf0: put(f, s0, Math.expm1(x * Math.LN2)); return; // F2XM1
    case 0xf1: { // FYL2X: ST(1) = ST(1) * log2(ST(0)), pop
      if (x < 0 || (x === 0 && y === 0)) { flag(f, IE); setIndefinite(f, s1); }
      else { if (x === 0) flag(f, ZE); put(f, s1, y * Math.log2(x)); }
      pop(f);
      return;
    }
    case 0xf9: // FYL2XP1: ST(1) = ST(1) * log2(ST(0) + 1), pop
      put(f, s1, y * (Math.log1p(x) / Math.LN2));
      pop(f);
      return;
    case 0xf2: case 0xfe: case 0xff: case 0xfb: { // FPTAN, FSIN, FCOS, FSINCOS
      if (!Number.isFinite(x)) { flag(f, IE); setIndefinite(f, s0); return; }
      if (Math.abs(x) >= TWO63) { f.sw |= C2; return; } // out of range: operand unchanged, C2 = 1
      f.sw &= ~C2;
      if (op === 0xf2) { put(f, s0, Math.tan(x)); pushValue(f, 1); }
      else if (op === 0xfe) put(f, s0, Math.sin(x));
      else if (op === 0xff) put(f, s0, Math.cos(x));
      else { put(f, s0, Math.sin(x)); pushValue(f, Math.cos(x)); }
      return;
    }
    case 0xf3: put(f, s1, Math.atan2(y, x)); pop(f); return; // FPATAN
    case 0xf4: { // FXTRACT: ST(0) = significand, pushed over the exponent
      if (x === 0) { flag(f, ZE); put(f, s0, -Infinity); pushValue(f, x); return; }
      if (!Number.isFinite(x)) { put(f, s0, Infinity); pushValue(f, x); return; }
      const e = slotExp(f, s0) & 0x7fff;
      const exponent = e === 0 ? Math.floor(Math.log2(Math.abs(x))) : e - 16383;
      const sig = scale(x, -exponent);
      put(f, s0, exponent);
      pushValue(f, sig);
      return;
    }
    case 0xf5: case 0xf8: { // FPREM1, FPREM: the complete remainder in one step (C2 = 0 even when hardware would
      // stop at a partial one for exponents 64 or more apart: a loop on C2 ends with the same final result)
      if (!Number.isFinite(x) || y === 0) { flag(f, IE); setIndefinite(f, s0); return; }
      if (!Number.isFinite(y)) { f.sw &= ~(C0 | C1 | C2 | C3); return; }
      let rem = x % y; // exact (fmod), with the sign of x
      // The low three quotient bits, exactly: (x mod 8y - x mod y) / y is an integer 0-7.
      const y8 = Math.abs(y) * 8;
      let q = Number.isFinite(y8) ? Math.round(Math.abs((x % y8) - rem) / Math.abs(y)) : 0;
      if (op === 0xf5) {
        const ay = Math.abs(y), ar = Math.abs(rem);
        if (ar > ay / 2 || (ar === ay / 2 && (q & 1) === 1)) {
          rem = rem - Math.sign(rem) * ay;
          q += 1;
        }
        if (rem === 0) rem = x < 0 || Object.is(x, -0) ? -0 : 0;
      }
      const ql = q & 7;
      f.sw = (f.sw & ~(C0 | C1 | C2 | C3)) | (ql & 4 ? C0 : 0) | (ql & 2 ? C1 : 0) | (ql & 1 ? C3 : 0);
      put(f, s0, rem);
      return;
    }
    case 0xfa: // FSQRT
      if (x < 0) { flag(f, IE); setIndefinite(f, s0); return; }
      put(f, s0, Math.sqrt(x));
      return;
    case 0xfc: { // FRNDINT: round to an integer by RC
      // With an unbiased exponent of 63 or more the value is already an integer (and may not fit 64 bits).
      const v = (slotExp(f, s0) & 0x7fff) - 16383 >= 63 ? null : toInt(f, s0, (f.cw >> 10) & 3);
      if (v !== null) {
        const neg = (slotExp(f, s0) & 0x8000) !== 0;
        putInt(f, s0, v);
        if (v === 0n && neg) f.regs[s0 * F80 + 9] |= 0x80;
        if (f.sw & PE) flag(f, PE);
      }
      return;
    }
    case 0xfd: { // FSCALE: ST(0) * 2^trunc(ST(1))
      const n = Math.trunc(y);
      if (!Number.isFinite(n)) { put(f, s0, (n > 0) === (x !== 0) ? x * Infinity : x * 0); return; }
      put(f, s0, scale(x, Math.max(-70000, Math.min(70000, n))));
      return;
    }
  }
  cpu.ud();
}

// DB: FILD/FISTTP/FIST/FISTP m32int, FLD/FSTP m80real; FCMOVNB..NU, FNCLEX, FNINIT, FUCOMI, FCOMI.
def1(0xdb, (cpu) => {
  cpu.decodeModrm();
  x87Check(cpu);
  const f = cpu.fpu, r = (cpu.modrm >> 3) & 7;
  if (cpu.mod === 3) {
    if (cpu.modrm === 0xe2) { f.sw &= ~(0xff | B); return; } // FNCLEX
    if (cpu.modrm === 0xe3) { f.init(); return; } // FNINIT
    if (cpu.modrm === 0xe0 || cpu.modrm === 0xe1 || cpu.modrm === 0xe4) return; // FENI, FDISI, FSETPM: no-ops
    pending(cpu);
    note(cpu, 0);
    if (r < 4) { fcmov(cpu, r, true); return; }
    if (r === 5 || r === 6) { comi(cpu, r === 5, false); return; }
    cpu.ud();
  }
  pending(cpu);
  const lin = cpu.eaLinear();
  note(cpu, lin);
  switch (r) {
    case 0: loadMem(cpu, lin, 4); pushSlot(f, TEMP_SLOT); return;
    case 1: case 2: case 3: storeIntOp(cpu, lin, 4, r); return;
    case 5: loadMem(cpu, lin, 2); pushSlot(f, TEMP_SLOT); return;
    case 7: {
      const s = st(f, 0);
      if (s < 0) { if (!(f.cw & IE)) return; setIndefinite(f, TEMP_SLOT); storeReal(cpu, lin, TEMP_SLOT, 2); }
      else storeReal(cpu, lin, s, 2);
      pop(f);
      return;
    }
  }
  cpu.ud();
});

/** FIST/FISTP/FISTTP (r = 2, 3, 1). */
function storeIntOp(cpu: SoftCpu, lin: number, size: number, r: number): void {
  const f = cpu.fpu;
  const s = st(f, 0);
  if (s < 0) {
    if (!(f.cw & IE)) return;
    cpu.writeLin(lin, size, size === 8 ? 0 : size === 4 ? 0x80000000 | 0 : 0x8000, size === 8 ? 0x80000000 | 0 : 0);
  } else {
    storeInt(cpu, lin, s, size, r === 1 ? 3 : (f.cw >> 10) & 3);
  }
  if (r !== 2) pop(f);
}

/** FCOMI/FUCOMI/FCOMIP/FUCOMIP ST(0), ST(i): ZF, PF, CF; OF, SF, AF cleared. */
function comi(cpu: SoftCpu, quiet: boolean, popAfter: boolean): void {
  const f = cpu.fpu;
  const a = st(f, 0), b = st(f, cpu.modrm & 7);
  const r = compare(f, a, b, quiet);
  f.sw &= ~C1;
  cpu.setArith(EFL_BITS[r]);
  if (popAfter) pop(f);
}

// DD: FLD/FISTTP/FST/FSTP m64, FRSTOR, FNSAVE, FNSTSW m16; FFREE, FST/FSTP ST(i), FUCOM/FUCOMP.
def1(0xdd, (cpu) => {
  cpu.decodeModrm();
  x87Check(cpu);
  const f = cpu.fpu, r = (cpu.modrm >> 3) & 7;
  if (cpu.mod !== 3) {
    const lin = cpu.eaLinear();
    switch (r) {
      case 0: pending(cpu); note(cpu, lin); loadMem(cpu, lin, 1); pushSlot(f, TEMP_SLOT); return;
      case 1: pending(cpu); note(cpu, lin); storeIntOp(cpu, lin, 8, 1); return;
      case 2: case 3: {
        pending(cpu); note(cpu, lin);
        const s = st(f, 0);
        if (s < 0) { if (!(f.cw & IE)) return; cpu.writeLin(lin, 8, 0, 0xfff80000 | 0); }
        else storeReal(cpu, lin, s, 1);
        if (r === 3) pop(f);
        return;
      }
      case 4: { // FRSTOR: every read happens before anything is loaded
        pending(cpu);
        const envSize = cpu.opsize === 2 ? 14 : 28;
        const regs = new Int32Array(24);
        for (let i = 0; i < 8; i++) {
          const a = cpu.addLin(lin, envSize + i * 10);
          regs[3 * i] = cpu.readLin(a, 8);
          regs[3 * i + 1] = cpu.hi;
          regs[3 * i + 2] = cpu.readLin(cpu.addLin(a, 8), 2);
        }
        loadEnv(cpu, lin);
        for (let i = 0; i < 8; i++) setRaw(f, phys(f, i), regs[3 * i + 2], regs[3 * i + 1], regs[3 * i]);
        return;
      }
      case 6: { // FNSAVE: environment and registers, then FNINIT
        const envSize = cpu.opsize === 2 ? 14 : 28;
        cpu.probeWrite(lin, envSize + 80);
        storeEnv(cpu, lin);
        for (let i = 0; i < 8; i++) storeReal(cpu, cpu.addLin(lin, envSize + i * 10), phys(f, i), 2);
        f.init();
        return;
      }
      case 7: cpu.writeLin(lin, 2, f.statusWord()); return; // FNSTSW m16
    }
    cpu.ud();
  }
  pending(cpu);
  note(cpu, 0);
  const i = cpu.modrm & 7;
  switch (r) {
    case 0: f.tagValid &= ~(1 << phys(f, i)); return; // FFREE
    case 1: { // FXCH4 alias
      const a = phys(f, 0), b = phys(f, i);
      copySlot(f, a, TEMP_SLOT); copySlot(f, b, a); copySlot(f, TEMP_SLOT, b);
      return;
    }
    case 2: case 3: { // FST / FSTP ST(i)
      const s = st(f, 0);
      const d = phys(f, i);
      if (s < 0) { if (!(f.cw & IE)) return; setIndefinite(f, d); } else copySlot(f, s, d);
      f.tagValid |= 1 << d;
      if (r === 3) pop(f);
      return;
    }
    case 4: case 5: // FUCOM / FUCOMP
      setCc(f, compare(f, st(f, 0), st(f, i), true));
      if (r === 5) pop(f);
      return;
  }
  cpu.ud();
});

// DF: FILD/FISTTP/FIST/FISTP m16int, FILD/FISTP m64int; FNSTSW AX, FUCOMIP, FCOMIP.
def1(0xdf, (cpu) => {
  cpu.decodeModrm();
  x87Check(cpu);
  const f = cpu.fpu, r = (cpu.modrm >> 3) & 7;
  if (cpu.mod === 3) {
    if (cpu.modrm === 0xe0) { cpu.setReg(2, 0, f.statusWord()); return; } // FNSTSW AX
    pending(cpu);
    note(cpu, 0);
    if (r === 5 || r === 6) { comi(cpu, r === 5, true); return; }
    if (r === 0) { f.tagValid &= ~(1 << phys(f, cpu.modrm & 7)); pop(f); return; } // FFREEP
    cpu.ud();
  }
  pending(cpu);
  const lin = cpu.eaLinear();
  note(cpu, lin);
  switch (r) {
    case 0: loadMem(cpu, lin, 3); pushSlot(f, TEMP_SLOT); return;
    case 1: case 2: case 3: storeIntOp(cpu, lin, 2, r); return;
    case 5: loadMem(cpu, lin, 5); pushSlot(f, TEMP_SLOT); return;
    case 7: storeIntOp(cpu, lin, 8, 3); return;
  }
  cpu.unimplemented(`x87 df /${r} (packed BCD)`);
});

// 9B: FWAIT: #NM when CR0.MP and CR0.TS (SDM vol. 3A §2.5 table 2-2), then pending x87 exceptions.
def1(0x9b, (cpu) => {
  if ((cpu.cr0 & (C.CR0_MP | C.CR0_TS)) === (C.CR0_MP | C.CR0_TS)) cpu.fault(C.EXC_NM);
  pending(cpu);
});

// =====================================================================================================
// FSTENV/FLDENV (SDM vol. 1 §8.1.10 figures 8-9, 8-10: the protected-mode layouts) and the FXSAVE x87 part

function storeEnv(cpu: SoftCpu, lin: number): void {
  const f = cpu.fpu;
  if (cpu.opsize === 2) {
    cpu.probeWrite(lin, 14);
    const w = [f.cw, f.statusWord(), f.tagWord(), f.fip & 0xffff, f.fcs, f.fdp & 0xffff, f.fds];
    for (let k = 0; k < 7; k++) cpu.writeLin(cpu.addLin(lin, 2 * k), 2, w[k] & 0xffff);
    return;
  }
  cpu.probeWrite(lin, 28);
  const d = [f.cw | 0xffff0000, f.statusWord() | 0xffff0000, f.tagWord() | 0xffff0000, f.fip | 0,
    (f.fcs & 0xffff) | ((f.fop & 0x7ff) << 16), f.fdp | 0, (f.fds & 0xffff) | 0xffff0000];
  for (let k = 0; k < 7; k++) cpu.writeLin(cpu.addLin(lin, 4 * k), 4, d[k] | 0);
}

function loadEnv(cpu: SoftCpu, lin: number): void {
  const f = cpu.fpu;
  const step = cpu.opsize === 2 ? 2 : 4;
  const v: number[] = [];
  for (let k = 0; k < 7; k++) v.push(cpu.readLin(cpu.addLin(lin, step * k), step));
  f.cw = v[0] & 0xffff;
  f.setStatusWord(v[1] & 0xffff);
  f.setTagWord(v[2] & 0xffff);
  f.fip = v[3] >>> 0;
  f.fcs = v[4] & 0xffff;
  if (step === 4) f.fop = (v[4] >>> 16) & 0x7ff;
  f.fdp = v[5] >>> 0;
  f.fds = v[6] & 0xffff;
  recheck(f);
}

/** Fill bytes 0-23 and 32-159 of an FXSAVE image (SDM vol. 1 §10.5.1 table 10-2); `rex64`: the FXSAVE64 form. */
export function saveFpuImage(cpu: SoftCpu, img: DataView, rex64: boolean): void {
  const f = cpu.fpu;
  img.setUint16(0, f.cw, true);
  img.setUint16(2, f.statusWord(), true);
  img.setUint8(4, f.tagValid);
  img.setUint16(6, f.fop, true);
  if (rex64) {
    setU64(img, 8, f.fip);
    setU64(img, 16, f.fdp);
  } else {
    img.setUint32(8, f.fip >>> 0, true);
    img.setUint16(12, f.fcs, true);
    img.setUint32(16, f.fdp >>> 0, true);
    img.setUint16(20, f.fds, true);
  }
  for (let i = 0; i < 8; i++) {
    const o = phys(f, i) * F80;
    for (let k = 0; k < 10; k++) img.setUint8(32 + 16 * i + k, f.regs[o + k]);
  }
}

export function restoreFpuImage(cpu: SoftCpu, img: DataView, rex64: boolean): void {
  const f = cpu.fpu;
  f.cw = img.getUint16(0, true);
  f.setStatusWord(img.getUint16(2, true));
  f.tagValid = img.getUint8(4);
  f.fop = img.getUint16(6, true) & 0x7ff;
  if (rex64) {
    f.fip = getU64(img, 8);
    f.fdp = getU64(img, 16);
  } else {
    f.fip = img.getUint32(8, true);
    f.fcs = img.getUint16(12, true);
    f.fdp = img.getUint32(16, true);
    f.fds = img.getUint16(20, true);
  }
  for (let i = 0; i < 8; i++) {
    const o = phys(f, i) * F80;
    for (let k = 0; k < 10; k++) f.regs[o + k] = img.getUint8(32 + 16 * i + k);
  }
  recheck(f);
}

function setU64(img: DataView, o: number, v: number): void {
  const hi = Math.floor(v / 4294967296);
  img.setUint32(o, (v - hi * 4294967296) >>> 0, true);
  img.setInt32(o + 4, hi | 0, true);
}
function getU64(img: DataView, o: number): number {
  return img.getInt32(o + 4, true) * 4294967296 + img.getUint32(o, true);
}
