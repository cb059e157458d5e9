// SSE/SSE2 floating point: moves (0F 10-17, 28-29, 2B), conversions (0F 2A, 2C, 2D, 5A, 5B, E6), scalar
// compares to EFLAGS (0F 2E/2F), arithmetic (0F 51-5F), CMPPS/SS/PD/SD (0F C2), SHUFPS/PD (0F C6), and the
// 0F AE group (FXSAVE/FXRSTOR, LDMXCSR/STMXCSR, fences, CLFLUSH). SDM vol. 2 per instruction; exceptions
// per vol. 1 §11.5 and vol. 2 §2.4 (exception classes: legacy-SSE 16-byte memory operands must be aligned
// except for MOVUPS/MOVUPD/MOVDQU).
//
// The mandatory prefix selects the form: none = packed single, 66 = packed double, F3 = scalar single,
// F2 = scalar double. Arithmetic rounds to nearest whatever MXCSR.RC says (JavaScript has no other mode);
// conversions to integers honour RC. NaN results follow SDM vol. 1 §4.8.3.5 table 4-7: the first source's
// NaN (quieted), else the second's; an invalid operation gives the default QNaN (negative indefinite).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import {
  D, S, sseCheck, loadXmm, storeXmm, loadXmmSrc, readMem, writeMem, beginFp, commitExc, raise, rc, endLane, dropDe, daz32, dazOn,
  MX_IE, MX_ZE, MX_PE, MXCSR_MASK, INDEF32, INDEF64_HI, isNan32, isSnan32, isNan64, isSnan64, in32, in64,
  post32, post64, twoSumErr, mulErrSign, divErrSign, sqrtErrSign, toInt32, toInt64, i64Hi, i64ToF32, i64ToF64,
  mmxTransition, loadMm, storeMm, mmxCheck,
} from './sse-common.ts';
import { saveFpuImage, restoreFpuImage } from './x87.ts';

/** Which mandatory prefix: 0 none, 1 66, 2 F2, 3 F3 (F2/F3 win over 66, SDM vol. 2 §2.1.2). */
function pfx(cpu: SoftCpu): number {
  return cpu.rep === 0xf3 ? 3 : cpu.rep === 0xf2 ? 2 : cpu.p66 ? 1 : 0;
}

const enum Op { Add, Sub, Mul, Div, Min, Max, Sqrt }

// ---- one lane: D.lane = D.lane op S.lane (Sqrt: D.lane = sqrt(S.lane))

/** An exact zero sum is +0, except -0 when rounding down unless both addends are +0 (IEEE 754 §6.3). */
function zeroSum(x: number, y: number): number {
  if (Object.is(x, -0) && Object.is(y, -0)) return -0;
  return rc() === 1 && !(Object.is(x, 0) && Object.is(y, 0)) ? -0 : 0;
}

function laneF32(op: Op, i: number): void {
  const a = D.i32[i], b = S.i32[i];
  if (op === Op.Sqrt) {
    if (isNan32(b)) { if (isSnan32(b)) raise(MX_IE); D.i32[i] = b | 0x400000; return; }
    const y = in32(b, S.f32[i]);
    if (y < 0) { raise(MX_IE); D.i32[i] = INDEF32; return; }
    const f = Math.fround(Math.sqrt(y));
    D.f32[i] = f * f !== y && Number.isFinite(y) ? post32(f, true, Math.sign(y - f * f)) : f;
    return;
  }
  const an = isNan32(a), bn = isNan32(b);
  if (an || bn) {
    if (op === Op.Min || op === Op.Max) {
      // Any NaN: the second operand, whatever it is (with DAZ a denormal one reads as zero).
      raise(MX_IE);
      D.i32[i] = daz32(b);
      return;
    }
    if (isSnan32(a) || isSnan32(b)) raise(MX_IE);
    D.i32[i] = (an ? a : b) | 0x400000;
    return;
  }
  const x = in32(a, D.f32[i]), y = in32(b, S.f32[i]);
  let r: number;
  switch (op) {
    case Op.Add: r = x + y; break;
    case Op.Sub: r = x - y; break;
    case Op.Mul: r = x * y; break; // exact in double (24 + 24 significant bits)
    // The chosen operand as read: with MXCSR.DAZ a denormal one comes back as a signed zero (as on hardware).
    case Op.Min: D.f32[i] = x < y ? x : y; return;
    case Op.Max: D.f32[i] = x > y ? x : y; return;
    default: { // Div
      if (y === 0) {
        if (x === 0) { raise(MX_IE); D.i32[i] = INDEF32; return; }
        if (Number.isFinite(x)) raise(MX_ZE);
        D.f32[i] = (x < 0) !== Object.is(y, -0) ? -Infinity : Infinity;
        return;
      }
      r = x / y;
      if (Number.isNaN(r)) { raise(MX_IE); D.i32[i] = INDEF32; return; }
      const f = Math.fround(r);
      D.f32[i] = Number.isFinite(x) && Number.isFinite(y) ? post32(r, f * y !== x, Math.sign(x - f * y) * Math.sign(y)) : f;
      return;
    }
  }
  if (Number.isNaN(r)) { raise(MX_IE); D.i32[i] = INDEF32; return; }
  if (r === 0 && op !== Op.Mul) r = zeroSum(x, op === Op.Sub ? -y : y);
  // Float sums in double are exact unless the exponents are far apart; TwoSum tells (and which way).
  const err = op !== Op.Mul && Number.isFinite(r) ? twoSumErr(x, op === Op.Sub ? -y : y, r) : 0;
  D.f32[i] = post32(r, err !== 0, Math.sign(err));
}

function laneF64(op: Op, i: number): void {
  const al = D.i32[2 * i], ah = D.i32[2 * i + 1], bl = S.i32[2 * i], bh = S.i32[2 * i + 1];
  if (op === Op.Sqrt) {
    if (isNan64(bh, bl)) {
      if (isSnan64(bh, bl)) raise(MX_IE);
      D.i32[2 * i] = bl; D.i32[2 * i + 1] = bh | 0x80000; return;
    }
    const y = in64(bh, bl, S.f64[i]);
    if (y < 0) { raise(MX_IE); D.i32[2 * i] = 0; D.i32[2 * i + 1] = INDEF64_HI; return; }
    const s = Math.sqrt(y);
    const sg = y > 0 && Number.isFinite(y) ? sqrtErrSign(y) : 0;
    D.f64[i] = sg !== 0 ? post64(s, true, true, sg) : s;
    return;
  }
  const an = isNan64(ah, al), bn = isNan64(bh, bl);
  if (an || bn) {
    if (op === Op.Min || op === Op.Max) {
      raise(MX_IE);
      const daz = (S.i32[2 * i + 1] & 0x7ff00000) === 0 && dazOn();
      D.i32[2 * i] = daz ? 0 : bl; D.i32[2 * i + 1] = daz ? bh & 0x80000000 : bh;
      return;
    }
    if (isSnan64(ah, al) || isSnan64(bh, bl)) raise(MX_IE);
    if (an) { D.i32[2 * i + 1] = ah | 0x80000; } else { D.i32[2 * i] = bl; D.i32[2 * i + 1] = bh | 0x80000; }
    return;
  }
  const x = in64(ah, al, D.f64[i]), y = in64(bh, bl, S.f64[i]);
  const finite = Number.isFinite(x) && Number.isFinite(y);
  let r: number, sg = 0; // sg: sign of (exact - r)
  switch (op) {
    case Op.Add: r = x + y; sg = finite && Number.isFinite(r) ? Math.sign(twoSumErr(x, y, r)) : 0; break;
    case Op.Sub: r = x - y; sg = finite && Number.isFinite(r) ? Math.sign(twoSumErr(x, -y, r)) : 0; break;
    case Op.Mul: r = x * y; sg = finite && Number.isFinite(r) ? mulErrSign(x, y, r) : 0; break;
    case Op.Min: D.f64[i] = x < y ? x : y; return;
    case Op.Max: D.f64[i] = x > y ? x : y; return;
    default:
      if (y === 0) {
        if (x === 0) { raise(MX_IE); D.i32[2 * i] = 0; D.i32[2 * i + 1] = INDEF64_HI; return; }
        if (Number.isFinite(x)) raise(MX_ZE);
        D.f64[i] = (x < 0) !== Object.is(y, -0) ? -Infinity : Infinity;
        return;
      }
      r = x / y;
      sg = finite && Number.isFinite(r) ? divErrSign(x, y, r) : 0;
  }
  if (Number.isNaN(r)) { raise(MX_IE); D.i32[2 * i] = 0; D.i32[2 * i + 1] = INDEF64_HI; return; }
  if (r === 0 && (op === Op.Add || op === Op.Sub)) r = zeroSum(x, op === Op.Sub ? -y : y);
  D.f64[i] = post64(r, sg !== 0, finite, sg);
}

function arith(op: Op) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    const p = pfx(cpu);
    loadXmm(D.i32, cpu.reg, cpu);
    beginFp(cpu);
    switch (p) {
      case 0: loadXmmSrc(cpu, 16, true); for (let i = 0; i < 4; i++) { laneF32(op, i); endLane(); } break;
      case 1: loadXmmSrc(cpu, 16, true); laneF64(op, 0); endLane(); laneF64(op, 1); break;
      case 3: loadXmmSrc(cpu, 4, false); laneF32(op, 0); break;
      default: loadXmmSrc(cpu, 8, false); laneF64(op, 0); break;
    }
    commitExc(cpu);
    storeXmm(D.i32, cpu.reg, cpu);
  };
}
def0f(0x51, arith(Op.Sqrt));
def0f(0x58, arith(Op.Add));
def0f(0x59, arith(Op.Mul));
def0f(0x5c, arith(Op.Sub));
def0f(0x5d, arith(Op.Min));
def0f(0x5e, arith(Op.Div));
def0f(0x5f, arith(Op.Max));

// RSQRTPS/RSQRTSS, RCPPS/RCPSS: hardware gives a 12-bit approximation whose exact bits differ between
// vendors; this CPU returns the correctly rounded value (within the documented 1.5 * 2^-12 relative error).
// Denormal inputs count as zero and tiny results flush to zero, as on hardware; no MXCSR flags are raised.
function approxLane(rsqrt: boolean, i: number): void {
  const b = S.i32[i];
  if (isNan32(b)) { D.i32[i] = b | 0x400000; return; }
  let x = S.f32[i];
  if ((b & 0x7f800000) === 0) x = b < 0 ? -0 : 0;
  let r: number;
  if (rsqrt) {
    if (x < 0) { D.i32[i] = INDEF32; return; }
    r = Object.is(x, -0) ? -Infinity : 1 / Math.sqrt(x);
  } else {
    r = 1 / x;
  }
  r = Math.fround(r);
  if (r !== 0 && Math.abs(r) < 2 ** -126) r = r < 0 ? -0 : 0;
  D.f32[i] = r;
}
function approx(rsqrt: boolean) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    const p = pfx(cpu);
    if (p === 1 || p === 2) cpu.ud();
    loadXmm(D.i32, cpu.reg, cpu);
    if (p === 3) { loadXmmSrc(cpu, 4, false); approxLane(rsqrt, 0); } else { loadXmmSrc(cpu, 16, true); for (let i = 0; i < 4; i++) approxLane(rsqrt, i); }
    storeXmm(D.i32, cpu.reg, cpu);
  };
}
def0f(0x52, approx(true));
def0f(0x53, approx(false));

// ANDPS/ANDPD, ANDNPS/ANDNPD, ORPS/ORPD, XORPS/XORPD: bitwise, no floating-point exceptions.
function logic(kind: number) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    loadXmm(D.i32, cpu.reg, cpu);
    loadXmmSrc(cpu, 16, true);
    const d = D.i32, s = S.i32;
    for (let i = 0; i < 4; i++) {
      d[i] = kind === 0 ? d[i] & s[i] : kind === 1 ? ~d[i] & s[i] : kind === 2 ? d[i] | s[i] : d[i] ^ s[i];
    }
    storeXmm(d, cpu.reg, cpu);
  };
}
def0f(0x54, logic(0));
def0f(0x55, logic(1));
def0f(0x56, logic(2));
def0f(0x57, logic(3));

// =====================================================================================================
// Moves

// MOVUPS/MOVUPD (load), MOVSS/MOVSD: register to register merges the low element, a load zeroes the rest.
def0f(0x10, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  if (p >= 2) {
    const n = p === 3 ? 1 : 2;
    if (cpu.mod === 3) {
      loadXmm(D.i32, cpu.reg, cpu);
      loadXmm(S.i32, cpu.rm, cpu);
      for (let i = 0; i < n; i++) D.i32[i] = S.i32[i];
    } else {
      readMem(cpu, S.i32, n * 4, false);
      D.i32.fill(0);
      for (let i = 0; i < n; i++) D.i32[i] = S.i32[i];
    }
    storeXmm(D.i32, cpu.reg, cpu);
    return;
  }
  loadXmmSrc(cpu, 16, false);
  storeXmm(S.i32, cpu.reg, cpu);
});

// MOVUPS/MOVUPD (store), MOVSS/MOVSD to xmm/m.
def0f(0x11, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  loadXmm(S.i32, cpu.reg, cpu);
  if (p >= 2) {
    const n = p === 3 ? 1 : 2;
    if (cpu.mod === 3) {
      loadXmm(D.i32, cpu.rm, cpu);
      for (let i = 0; i < n; i++) D.i32[i] = S.i32[i];
      storeXmm(D.i32, cpu.rm, cpu);
    } else {
      writeMem(cpu, S.i32, n * 4, false);
    }
    return;
  }
  if (cpu.mod === 3) storeXmm(S.i32, cpu.rm, cpu);
  else writeMem(cpu, S.i32, 16, false);
});

// 0F 12: MOVLPS/MOVLPD m64 (low half from memory), MOVHLPS (register form of no prefix), MOVSLDUP (F3), MOVDDUP (F2).
def0f(0x12, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  loadXmm(D.i32, cpu.reg, cpu);
  if (p === 3) { // MOVSLDUP (SSE3)
    loadXmmSrc(cpu, 16, true);
    D.i32[0] = D.i32[1] = S.i32[0]; D.i32[2] = D.i32[3] = S.i32[2];
  } else if (p === 2) { // MOVDDUP (SSE3)
    loadXmmSrc(cpu, 8, false);
    D.i32[0] = D.i32[2] = S.i32[0]; D.i32[1] = D.i32[3] = S.i32[1];
  } else if (cpu.mod === 3) {
    if (p === 1) cpu.ud();
    loadXmm(S.i32, cpu.rm, cpu); // MOVHLPS
    D.i32[0] = S.i32[2]; D.i32[1] = S.i32[3];
  } else {
    readMem(cpu, S.i32, 8, false);
    D.i32[0] = S.i32[0]; D.i32[1] = S.i32[1];
  }
  storeXmm(D.i32, cpu.reg, cpu);
});

// 0F 16: MOVHPS/MOVHPD m64 (high half from memory), MOVLHPS (register form), MOVSHDUP (F3).
def0f(0x16, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  loadXmm(D.i32, cpu.reg, cpu);
  if (p === 3) { // MOVSHDUP (SSE3)
    loadXmmSrc(cpu, 16, true);
    D.i32[0] = D.i32[1] = S.i32[1]; D.i32[2] = D.i32[3] = S.i32[3];
  } else if (p === 2) {
    cpu.ud();
  } else if (cpu.mod === 3) {
    if (p === 1) cpu.ud();
    loadXmm(S.i32, cpu.rm, cpu); // MOVLHPS
    D.i32[2] = S.i32[0]; D.i32[3] = S.i32[1];
  } else {
    readMem(cpu, S.i32, 8, false);
    D.i32[2] = S.i32[0]; D.i32[3] = S.i32[1];
  }
  storeXmm(D.i32, cpu.reg, cpu);
});

// 0F 13 / 0F 17: MOVLPS/MOVLPD, MOVHPS/MOVHPD m64 <- low/high half (memory destination only).
function storeHalf(high: boolean) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    if (cpu.mod === 3 || cpu.rep) cpu.ud();
    loadXmm(S.i32, cpu.reg, cpu);
    if (high) { S.i32[0] = S.i32[2]; S.i32[1] = S.i32[3]; }
    writeMem(cpu, S.i32, 8, false);
  };
}
def0f(0x13, storeHalf(false));
def0f(0x17, storeHalf(true));

// UNPCKLPS/PD, UNPCKHPS/PD: interleave the low (high) halves of destination and source.
function unpack(high: boolean) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    loadXmm(D.i32, cpu.reg, cpu);
    loadXmmSrc(cpu, 16, true);
    const d = D.i32, s = S.i32;
    if (cpu.p66) {
      if (high) { d[0] = d[2]; d[1] = d[3]; d[2] = s[2]; d[3] = s[3]; } else { d[2] = s[0]; d[3] = s[1]; }
    } else if (high) {
      d[0] = d[2]; d[1] = s[2]; d[2] = d[3]; d[3] = s[3];
    } else {
      d[3] = s[1]; d[2] = d[1]; d[1] = s[0];
    }
    storeXmm(d, cpu.reg, cpu);
  };
}
def0f(0x14, unpack(false));
def0f(0x15, unpack(true));

// MOVAPS/MOVAPD: aligned 16-byte moves (#GP(0) on a misaligned memory operand).
def0f(0x28, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  if (cpu.rep) cpu.ud();
  loadXmmSrc(cpu, 16, true);
  storeXmm(S.i32, cpu.reg, cpu);
});
def0f(0x29, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  if (cpu.rep) cpu.ud();
  loadXmm(S.i32, cpu.reg, cpu);
  if (cpu.mod === 3) storeXmm(S.i32, cpu.rm, cpu);
  else writeMem(cpu, S.i32, 16, true);
});
// MOVNTPS/MOVNTPD: a non-temporal hint this CPU ignores; the operand must be aligned memory.
def0f(0x2b, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  if (cpu.mod === 3 || cpu.rep) cpu.ud();
  loadXmm(S.i32, cpu.reg, cpu);
  writeMem(cpu, S.i32, 16, true);
});

// MOVMSKPS/MOVMSKPD r32, xmm: the sign bits.
def0f(0x50, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  if (cpu.mod !== 3 || cpu.rep) cpu.ud();
  loadXmm(S.i32, cpu.rm, cpu);
  const s = S.i32;
  const m = cpu.p66 ? (s[1] >>> 31) | ((s[3] >>> 31) << 1)
    : (s[0] >>> 31) | ((s[1] >>> 31) << 1) | ((s[2] >>> 31) << 2) | ((s[3] >>> 31) << 3);
  cpu.setReg(4, cpu.reg, m);
});

// SHUFPS/SHUFPD xmm, xmm/m128, imm8.
def0f(0xc6, (cpu) => {
  cpu.decodeModrm();
  const imm = cpu.fetch8();
  sseCheck(cpu);
  if (cpu.rep) cpu.ud();
  loadXmm(D.i32, cpu.reg, cpu);
  loadXmmSrc(cpu, 16, true);
  const d = D.i32, s = S.i32;
  if (cpu.p66) {
    const a0 = (imm & 1) * 2, b0 = ((imm >> 1) & 1) * 2;
    const r0 = d[a0], r1 = d[a0 + 1], r2 = s[b0], r3 = s[b0 + 1];
    d[0] = r0; d[1] = r1; d[2] = r2; d[3] = r3;
  } else {
    const r0 = d[imm & 3], r1 = d[(imm >> 2) & 3], r2 = s[(imm >> 4) & 3], r3 = s[(imm >> 6) & 3];
    d[0] = r0; d[1] = r1; d[2] = r2; d[3] = r3;
  }
  storeXmm(d, cpu.reg, cpu);
});

// =====================================================================================================
// Compares

/** CMPccPS predicate 0-7 on two values (NaN-aware): EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD. */
function predicate(pred: number, x: number, y: number, unordered: boolean): boolean {
  switch (pred) {
    case 0: return !unordered && x === y;
    case 1: return !unordered && x < y;
    case 2: return !unordered && x <= y;
    case 3: return unordered;
    case 4: return unordered || x !== y;
    case 5: return unordered || !(x < y);
    case 6: return unordered || !(x <= y);
    default: return !unordered;
  }
}
// LT, LE, NLT, NLE signal invalid on any NaN; the others only on an SNaN (SDM CMPPS table 3-1 for imm8 0-7).
const SIGNALING = [false, true, true, false, false, true, true, false];

function cmpLane32(pred: number, i: number): void {
  const a = D.i32[i], b = S.i32[i];
  const un = isNan32(a) || isNan32(b);
  if (un && (SIGNALING[pred] || isSnan32(a) || isSnan32(b))) raise(MX_IE);
  const x = un ? 0 : in32(a, D.f32[i]), y = un ? 0 : in32(b, S.f32[i]);
  D.i32[i] = predicate(pred, x, y, un) ? -1 : 0;
}
function cmpLane64(pred: number, i: number): void {
  const al = D.i32[2 * i], ah = D.i32[2 * i + 1], bl = S.i32[2 * i], bh = S.i32[2 * i + 1];
  const un = isNan64(ah, al) || isNan64(bh, bl);
  if (un && (SIGNALING[pred] || isSnan64(ah, al) || isSnan64(bh, bl))) raise(MX_IE);
  const x = un ? 0 : in64(ah, al, D.f64[i]), y = un ? 0 : in64(bh, bl, S.f64[i]);
  const r = predicate(pred, x, y, un) ? -1 : 0;
  D.i32[2 * i] = r; D.i32[2 * i + 1] = r;
}

def0f(0xc2, (cpu) => {
  cpu.decodeModrm();
  const pred = cpu.fetch8() & 7;
  sseCheck(cpu);
  const p = pfx(cpu);
  loadXmm(D.i32, cpu.reg, cpu);
  beginFp(cpu);
  switch (p) {
    case 0: loadXmmSrc(cpu, 16, true); for (let i = 0; i < 4; i++) { cmpLane32(pred, i); endLane(); } break;
    case 1: loadXmmSrc(cpu, 16, true); cmpLane64(pred, 0); endLane(); cmpLane64(pred, 1); break;
    case 3: loadXmmSrc(cpu, 4, false); cmpLane32(pred, 0); break;
    default: loadXmmSrc(cpu, 8, false); cmpLane64(pred, 0); break;
  }
  commitExc(cpu);
  storeXmm(D.i32, cpu.reg, cpu);
});

// UCOMISS/UCOMISD (0F 2E) and COMISS/COMISD (0F 2F): ZF, PF, CF from the compare; OF, SF, AF cleared.
// COMIS signals invalid on any NaN, UCOMIS only on an SNaN.
function comis(signaling: boolean) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    if (cpu.rep) cpu.ud();
    loadXmm(D.i32, cpu.reg, cpu);
    beginFp(cpu);
    let un: boolean, x = 0, y = 0;
    if (cpu.p66) {
      loadXmmSrc(cpu, 8, false);
      const al = D.i32[0], ah = D.i32[1], bl = S.i32[0], bh = S.i32[1];
      un = isNan64(ah, al) || isNan64(bh, bl);
      if (un && (signaling || isSnan64(ah, al) || isSnan64(bh, bl))) raise(MX_IE);
      if (!un) { x = in64(ah, al, D.f64[0]); y = in64(bh, bl, S.f64[0]); }
    } else {
      loadXmmSrc(cpu, 4, false);
      const a = D.i32[0], b = S.i32[0];
      un = isNan32(a) || isNan32(b);
      if (un && (signaling || isSnan32(a) || isSnan32(b))) raise(MX_IE);
      if (!un) { x = in32(a, D.f32[0]); y = in32(b, S.f32[0]); }
    }
    commitExc(cpu);
    cpu.setArith(un ? C.ZF | C.PF | C.CF : x > y ? 0 : x < y ? C.CF : C.ZF);
  };
}
def0f(0x2e, comis(false));
def0f(0x2f, comis(true));

// =====================================================================================================
// Conversions

/** float32 lane (bits b, value f) to float64 in D lane `di`: exact; an SNaN is quieted with IE. */
function f32ToF64(b: number, f: number, di: number): void {
  if (isNan32(b)) {
    if (isSnan32(b)) raise(MX_IE);
    const m = (b | 0x400000) & 0x7fffff;
    D.i32[2 * di + 1] = (b & 0x80000000) | 0x7ff00000 | (m >>> 3);
    D.i32[2 * di] = (m & 7) << 29;
    return;
  }
  D.f64[di] = in32(b, f);
}

/** float64 (hi, lo, value f) to float32 in D lane `fi`: rounded, with OE/UE/PE; NaN payload truncated. */
function f64ToF32(hi: number, lo: number, f: number, fi: number): void {
  if (isNan64(hi, lo)) {
    if (isSnan64(hi, lo)) raise(MX_IE);
    D.i32[fi] = (hi & 0x80000000) | 0x7fc00000 | ((hi & 0x7ffff) << 3) | (lo >>> 29);
    return;
  }
  D.f32[fi] = post32(in64(hi, lo, f), false);
}

// 0F 5A: CVTPS2PD, CVTPD2PS (66), CVTSS2SD (F3), CVTSD2SS (F2).
def0f(0x5a, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  loadXmm(D.i32, cpu.reg, cpu);
  beginFp(cpu);
  switch (p) {
    case 0: {
      loadXmmSrc(cpu, 8, false);
      const b0 = S.i32[0], b1 = S.i32[1], f0 = S.f32[0], f1 = S.f32[1];
      f32ToF64(b0, f0, 0); endLane(); f32ToF64(b1, f1, 1);
      break;
    }
    case 1:
      loadXmmSrc(cpu, 16, true);
      f64ToF32(S.i32[1], S.i32[0], S.f64[0], 0); endLane(); f64ToF32(S.i32[3], S.i32[2], S.f64[1], 1);
      D.i32[2] = 0; D.i32[3] = 0;
      break;
    case 3: loadXmmSrc(cpu, 4, false); f32ToF64(S.i32[0], S.f32[0], 0); break;
    default: loadXmmSrc(cpu, 8, false); f64ToF32(S.i32[1], S.i32[0], S.f64[0], 0); break;
  }
  commitExc(cpu);
  storeXmm(D.i32, cpu.reg, cpu);
});

/** A float32 lane as a double for conversion to integer (NaN stays NaN). */
function num32(b: number, f: number): number {
  if (isNan32(b)) return NaN;
  const x = in32(b, f);
  dropDe();
  return x;
}
function num64(hi: number, lo: number, f: number): number {
  if (isNan64(hi, lo)) return NaN;
  const x = in64(hi, lo, f);
  dropDe();
  return x;
}

// 0F 5B: CVTDQ2PS, CVTPS2DQ (66, MXCSR.RC), CVTTPS2DQ (F3, truncating).
def0f(0x5b, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  if (p === 2) cpu.ud();
  loadXmmSrc(cpu, 16, true);
  beginFp(cpu);
  if (p === 0) {
    for (let i = 0; i < 4; i++) D.f32[i] = post32(S.i32[i], false);
  } else {
    const mode = p === 3 ? 3 : rc();
    for (let i = 0; i < 4; i++) D.i32[i] = toInt32(num32(S.i32[i], S.f32[i]), mode);
  }
  commitExc(cpu);
  storeXmm(D.i32, cpu.reg, cpu);
});

// 0F E6: CVTTPD2DQ (66), CVTDQ2PD (F3), CVTPD2DQ (F2). Conversions to dwords zero the upper 64 bits.
def0f(0xe6, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  if (p === 0) cpu.ud();
  beginFp(cpu);
  if (p === 3) {
    loadXmmSrc(cpu, 8, false);
    D.f64[0] = S.i32[0]; D.f64[1] = S.i32[1];
  } else {
    loadXmmSrc(cpu, 16, true);
    const mode = p === 1 ? 3 : rc();
    const r0 = toInt32(num64(S.i32[1], S.i32[0], S.f64[0]), mode);
    const r1 = toInt32(num64(S.i32[3], S.i32[2], S.f64[1]), mode);
    D.i32[0] = r0; D.i32[1] = r1; D.i32[2] = 0; D.i32[3] = 0;
  }
  commitExc(cpu);
  storeXmm(D.i32, cpu.reg, cpu);
});

// 0F 2A: CVTPI2PS (mm/m64 -> low two singles), CVTPI2PD (66: mm/m64 -> two doubles),
// CVTSI2SS (F3) / CVTSI2SD (F2) from r/m32 or, with REX.W, r/m64.
def0f(0x2a, (cpu) => {
  cpu.decodeModrm();
  sseCheck(cpu);
  const p = pfx(cpu);
  loadXmm(D.i32, cpu.reg, cpu);
  beginFp(cpu);
  if (p <= 1) {
    if (cpu.mod === 3) { mmxCheck(cpu); loadMm(S.i32, cpu.rm, cpu); mmxTransition(cpu); } else readMem(cpu, S.i32, 8, false);
    const a = S.i32[0], b = S.i32[1];
    if (p === 1) { D.f64[0] = a; D.f64[1] = b; } else {
      D.f32[0] = post32(a, false); D.f32[1] = post32(b, false);
    }
  } else {
    const size = cpu.rexW ? 8 : 4;
    const lo = cpu.readRm(size), hi = size === 8 ? cpu.hi : lo >> 31;
    if (p === 3) {
      D.f32[0] = i64ToF32(hi, lo);
    } else {
      D.f64[0] = i64ToF64(hi, lo);
    }
  }
  commitExc(cpu);
  storeXmm(D.i32, cpu.reg, cpu);
});

// 0F 2C / 2D: CVTTPS2PI/CVTPS2PI (to mm), CVTTPD2PI/CVTPD2PI (66, to mm), CVTTSS2SI/CVTSS2SI (F3) and
// CVTTSD2SI/CVTSD2SI (F2) to r32 or, with REX.W, r64. The T forms truncate, the others use MXCSR.RC.
function cvtToInt(truncate: boolean) {
  return (cpu: SoftCpu): void => {
    cpu.decodeModrm();
    sseCheck(cpu);
    const p = pfx(cpu);
    beginFp(cpu);
    const mode = truncate ? 3 : rc();
    if (p <= 1) {
      mmxCheck(cpu);
      let r0: number, r1: number;
      if (p === 0) {
        loadXmmSrc(cpu, 8, false);
        r0 = toInt32(num32(S.i32[0], S.f32[0]), mode); r1 = toInt32(num32(S.i32[1], S.f32[1]), mode);
      } else {
        loadXmmSrc(cpu, 16, true);
        r0 = toInt32(num64(S.i32[1], S.i32[0], S.f64[0]), mode); r1 = toInt32(num64(S.i32[3], S.i32[2], S.f64[1]), mode);
      }
      commitExc(cpu);
      mmxTransition(cpu);
      storeMm(r0, r1, cpu.reg, cpu);
      return;
    }
    const x = p === 3 ? (loadXmmSrc(cpu, 4, false), num32(S.i32[0], S.f32[0]))
      : (loadXmmSrc(cpu, 8, false), num64(S.i32[1], S.i32[0], S.f64[0]));
    if (cpu.rexW) {
      const lo = toInt64(x, mode), hi = i64Hi;
      commitExc(cpu);
      cpu.setReg(8, cpu.reg, lo, hi);
    } else {
      const v = toInt32(x, mode);
      commitExc(cpu);
      cpu.setReg(4, cpu.reg, v);
    }
  };
}
def0f(0x2c, cvtToInt(true));
def0f(0x2d, cvtToInt(false));

// =====================================================================================================
// 0F AE group 15 (SDM vol. 2 table A-6): FXSAVE, FXRSTOR, LDMXCSR, STMXCSR, CLFLUSH; LFENCE, MFENCE, SFENCE.

const image = new Uint8Array(512);
const imageView = new DataView(image.buffer);

def0f(0xae, (cpu) => {
  cpu.decodeModrm();
  const r = (cpu.modrm >> 3) & 7;
  if (cpu.mod === 3) {
    // LFENCE/MFENCE/SFENCE order memory; this CPU executes in order, so they do nothing.
    if (r >= 5 && !cpu.rep && !cpu.lock) return;
    cpu.unimplemented(`0f ae /${r} register form${cpu.rep ? ' with F3' : ''}`);
  }
  if (cpu.lock) cpu.ud();
  switch (r) {
    case 0: case 1: { // FXSAVE / FXRSTOR (SDM vol. 1 §10.5.1 table 10-2)
      if (cpu.rep) cpu.ud();
      if (cpu.cr0 & (C.CR0_EM | C.CR0_TS)) cpu.fault(C.EXC_NM);
      const lin = cpu.eaLinear();
      if (lin & 15) cpu.gp(0);
      // Outside 64-bit mode only XMM0-7 exist; bytes 464-511 belong to software and are never written.
      const bytes = cpu.mode64 ? 416 : 288;
      if (r === 0) {
        image.fill(0);
        saveFpuImage(cpu, imageView, cpu.rexW);
        imageView.setInt32(24, cpu.mxcsr, true);
        imageView.setInt32(28, MXCSR_MASK, true);
        image.set(cpu.xmm.subarray(0, bytes - 160), 160);
        cpu.probeWrite(lin, bytes);
        for (let o = 0; o < bytes; o += 8) {
          cpu.writeLin(cpu.addLin(lin, o), 8, imageView.getInt32(o, true), imageView.getInt32(o + 4, true));
        }
      } else {
        for (let o = 0; o < bytes; o += 8) {
          imageView.setInt32(o, cpu.readLin(cpu.addLin(lin, o), 8), true);
          imageView.setInt32(o + 4, cpu.hi, true);
        }
        const mxcsr = imageView.getInt32(24, true);
        if (mxcsr & ~MXCSR_MASK) cpu.gp(0);
        restoreFpuImage(cpu, imageView, cpu.rexW);
        cpu.mxcsr = mxcsr;
        cpu.xmm.set(image.subarray(160, bytes), 0);
      }
      return;
    }
    case 2: { // LDMXCSR m32: #GP(0) for bits outside MXCSR_MASK
      if (cpu.rep) cpu.ud();
      sseCheck(cpu);
      const v = cpu.readLin(cpu.eaLinear(), 4);
      if (v & ~MXCSR_MASK) cpu.gp(0);
      cpu.mxcsr = v;
      return;
    }
    case 3: // STMXCSR m32
      if (cpu.rep) cpu.ud();
      sseCheck(cpu);
      cpu.writeLin(cpu.eaLinear(), 4, cpu.mxcsr);
      return;
    case 7: // CLFLUSH (and CLFLUSHOPT with 66): caches are not modelled; the address must still translate.
      if (cpu.rep) cpu.ud();
      cpu.translate(cpu.eaLinear(), 0, cpu.cpl === 3);
      return;
    default:
      cpu.unimplemented(`0f ae /${r} (xsave family)`);
  }
});

