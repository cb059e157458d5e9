// Shared machinery of the SSE/SSE2, MMX and x87 families: availability checks (#UD/#NM), scratch operand
// buffers, XMM/MMX/memory operand transfer, and the MXCSR exception accumulator with the IEEE helpers that
// decide which SIMD floating-point exception flags an operation raises (SDM vol. 1 §11.5, §4.9).
//
// Handlers work on two 16-byte scratch operands: D (the destination, loaded from the register and written back
// at the end) and S (the source, from a register or memory). Copying costs a few stores but removes every
// aliasing case (pxor xmm0,xmm0; punpcklbw x,x) and lets MMX (8 bytes inside a 10-byte x87 slot) and XMM share code.
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { F80 } from './fpu-state.ts';

// ---- MXCSR (SDM vol. 1 §10.2.3)
export const MX_IE = 1 << 0;
export const MX_DE = 1 << 1;
export const MX_ZE = 1 << 2;
export const MX_OE = 1 << 3;
export const MX_UE = 1 << 4;
export const MX_PE = 1 << 5;
export const MX_DAZ = 1 << 6;
export const MX_UM = 1 << 11;
export const MX_FTZ = 1 << 15;
export const MX_RC_SHIFT = 13;
/** Bits of MXCSR that exist on this CPU; reported as MXCSR_MASK by FXSAVE (DAZ supported). */
export const MXCSR_MASK = 0xffff;

// ---- scratch operands
function views(buf: ArrayBuffer) {
  return {
    u8: new Uint8Array(buf), i8: new Int8Array(buf), u16: new Uint16Array(buf), i16: new Int16Array(buf),
    i32: new Int32Array(buf), u32: new Uint32Array(buf), f32: new Float32Array(buf), f64: new Float64Array(buf),
  };
}
export const D = views(new ArrayBuffer(16));
export const S = views(new ArrayBuffer(16));
export const T = views(new ArrayBuffer(16));

// ---- availability checks

/** SSE/SSE2 instruction: #UD with CR0.EM, without CR4.OSFXSR or with LOCK; #NM with CR0.TS (SDM vol. 3A §2.5, §13.1). */
export function sseCheck(cpu: SoftCpu): void {
  if ((cpu.cr0 & C.CR0_EM) || !(cpu.cr4 & C.CR4_OSFXSR) || cpu.lock) cpu.ud();
  if (cpu.cr0 & C.CR0_TS) cpu.fault(C.EXC_NM);
}

/** MMX instruction: #UD with CR0.EM or LOCK, #NM with CR0.TS (SDM vol. 3A §2.5 table 2-2). */
export function mmxCheck(cpu: SoftCpu): void {
  if ((cpu.cr0 & C.CR0_EM) || cpu.lock) cpu.ud();
  if (cpu.cr0 & C.CR0_TS) cpu.fault(C.EXC_NM);
}

/** x87 instruction: #NM when CR0.EM or CR0.TS is set (SDM vol. 3A §2.5 table 2-2). */
export function x87Check(cpu: SoftCpu): void {
  if (cpu.cr0 & (C.CR0_EM | C.CR0_TS)) cpu.fault(C.EXC_NM);
  if (cpu.lock) cpu.ud();
}

// ---- register transfer

export function loadXmm(dst: Int32Array, reg: number, cpu: SoftCpu): void {
  const x = cpu.fpu.xi32, o = reg << 2;
  dst[0] = x[o]; dst[1] = x[o + 1]; dst[2] = x[o + 2]; dst[3] = x[o + 3];
}

export function storeXmm(src: Int32Array, reg: number, cpu: SoftCpu): void {
  const x = cpu.fpu.xi32, o = reg << 2;
  x[o] = src[0]; x[o + 1] = src[1]; x[o + 2] = src[2]; x[o + 3] = src[3];
}

/** Every MMX instruction but EMMS sets TOP to 0 and marks all x87 registers valid (SDM vol. 1 §9.5.1). */
export function mmxTransition(cpu: SoftCpu): void {
  cpu.fpu.top = 0;
  cpu.fpu.tagValid = 0xff;
}

/** Read MMn (the significand of physical register n) into dst[0..1]. */
export function loadMm(dst: Int32Array, n: number, cpu: SoftCpu): void {
  const v = cpu.fpu.regsView, o = (n & 7) * F80;
  dst[0] = v.getInt32(o, true);
  dst[1] = v.getInt32(o + 4, true);
}

/** Write MMn; the exponent/sign field becomes all ones (SDM vol. 1 §9.5.1). */
export function storeMm(lo: number, hi: number, n: number, cpu: SoftCpu): void {
  const v = cpu.fpu.regsView, o = (n & 7) * F80;
  v.setInt32(o, lo, true);
  v.setInt32(o + 4, hi, true);
  v.setUint16(o + 8, 0xffff, true);
}

// ---- memory operands (the ModRM memory operand; call after every immediate is fetched)

/** Read `bytes` (4, 8 or 16) of the ModRM memory operand into dst; `aligned`: #GP(0) unless 16-byte aligned. */
export function readMem(cpu: SoftCpu, dst: Int32Array, bytes: number, aligned: boolean): void {
  const lin = cpu.eaLinear();
  if (bytes === 4) { dst[0] = cpu.readLin(lin, 4); return; }
  if (bytes === 8) { dst[0] = cpu.readLin(lin, 8); dst[1] = cpu.hi; return; }
  if (aligned && (lin & 15)) cpu.gp(0);
  const a = cpu.readLin(lin, 8), b = cpu.hi;
  const c = cpu.readLin(cpu.addLin(lin, 8), 8), d = cpu.hi;
  dst[0] = a; dst[1] = b; dst[2] = c; dst[3] = d;
}

/** Write src[0..bytes/4) to the ModRM memory operand (every page is checked before the first byte is written). */
export function writeMem(cpu: SoftCpu, src: Int32Array, bytes: number, aligned: boolean): void {
  const lin = cpu.eaLinear();
  if (bytes === 4) { cpu.writeLin(lin, 4, src[0]); return; }
  if (bytes === 8) { cpu.writeLin(lin, 8, src[0], src[1]); return; }
  if (aligned && (lin & 15)) cpu.gp(0);
  cpu.probeWrite(lin, 16);
  cpu.writeLin(lin, 8, src[0], src[1]);
  cpu.writeLin(cpu.addLin(lin, 8), 8, src[2], src[3]);
}

/** Source operand of an XMM instruction: XMM[rm] or `bytes` of memory, into S. */
export function loadXmmSrc(cpu: SoftCpu, bytes: number, aligned: boolean): void {
  if (cpu.mod === 3) loadXmm(S.i32, cpu.rm, cpu);
  else readMem(cpu, S.i32, bytes, aligned);
}

// =====================================================================================================
// SIMD floating-point exceptions (SDM vol. 1 §11.5.2) and IEEE arithmetic helpers

/** Exception flags raised by the current instruction (committed by `commitExc`). */
export let exc = 0;
/** MXCSR of the current instruction. */
let mx = 0x1f80;

/**
 * DE of the current element: reported only if the element raises neither IE nor ZE (on the host CPU an
 * invalid operation or a division by zero hides the denormal operand). Folded in by `endLane`/`commitExc`.
 */
let laneDe = 0;

export function beginFp(cpu: SoftCpu): void {
  exc = 0;
  laneDe = 0;
  mx = cpu.mxcsr;
}

export function raise(flags: number): void {
  exc |= flags;
  if (flags & (MX_IE | MX_ZE)) laneDe = 0;
}

/** End of one element of a packed operation. */
export function endLane(): void {
  exc |= laneDe;
  laneDe = 0;
}

/** Forget the element's DE (conversions to integers do not report denormal operands). */
export function dropDe(): void {
  laneDe = 0;
}

/** The MXCSR rounding control of the current instruction: 0 nearest, 1 down, 2 up, 3 toward zero. */
export function rc(): number {
  return (mx >> MX_RC_SHIFT) & 3;
}

/**
 * Fold the flags into MXCSR; an unmasked one raises #XM (CR4.OSXMMEXCPT) or #UD (SDM vol. 3A §6.15 int 19).
 * Called before the destination is written, so with an unmasked exception the destination is left unchanged
 * (as for the pre-computation exceptions; real hardware writes the result for unmasked OE/UE/PE).
 */
export function commitExc(cpu: SoftCpu): void {
  exc |= laneDe;
  laneDe = 0;
  if (exc === 0) return;
  cpu.mxcsr |= exc;
  const unmasked = exc & ~(cpu.mxcsr >> 7) & 0x3f;
  exc = 0;
  if (unmasked) {
    if (cpu.cr4 & C.CR4_OSXMMEXCPT) cpu.fault(C.EXC_XM);
    cpu.ud();
  }
}

// The default NaN ("QNaN floating-point indefinite", SDM vol. 1 §4.8.3.7 table 4-3).
export const INDEF32 = 0xffc00000 | 0;
export const INDEF64_HI = 0xfff80000 | 0;
const MIN_NORMAL32 = 2 ** -126;
const MIN_NORMAL64 = 2 ** -1022;

export function isNan32(b: number): boolean {
  return (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0;
}
export function isSnan32(b: number): boolean {
  return isNan32(b) && (b & 0x400000) === 0;
}
export function isNan64(hi: number, lo: number): boolean {
  return (hi & 0x7ff00000) === 0x7ff00000 && ((hi & 0xfffff) | lo) !== 0;
}
export function isSnan64(hi: number, lo: number): boolean {
  return isNan64(hi, lo) && (hi & 0x80000) === 0;
}

/** A float32 operand value (bits b, value f): a denormal raises DE, or reads as zero with MXCSR.DAZ. */
export function in32(b: number, f: number): number {
  if ((b & 0x7f800000) === 0 && (b & 0x7fffff) !== 0) {
    if (mx & MX_DAZ) return b < 0 ? -0 : 0;
    laneDe = MX_DE;
  }
  return f;
}

/** The bits of a float32 operand returned unchanged (MINSS with a NaN): DAZ still zeroes a denormal. */
export function dazOn(): boolean {
  return (mx & MX_DAZ) !== 0;
}

export function daz32(b: number): number {
  return (mx & MX_DAZ) && (b & 0x7f800000) === 0 ? b & 0x80000000 : b;
}

export function in64(hi: number, lo: number, f: number): number {
  if ((hi & 0x7ff00000) === 0 && ((hi & 0xfffff) | lo) !== 0) {
    if (mx & MX_DAZ) return hi < 0 ? -0 : 0;
    laneDe = MX_DE;
  }
  return f;
}

/**
 * Round a result `r` (a double: exact, or rounded once with `inexact` telling and `hint` the sign of
 * exact - r) to float32 by MXCSR.RC, and raise OE/UE/PE; FTZ flushes a tiny result to zero when underflow
 * is masked.
 */
export function post32(r: number, inexact: boolean, hint = 0): number {
  let f = Math.fround(r);
  if (f !== r) inexact = true;
  const mode = (mx >> MX_RC_SHIFT) & 3;
  if (mode !== 0 && inexact) f = directed32(f, f !== r ? Math.sign(r - f) : hint, mode);
  if (!Number.isFinite(r) || Number.isFinite(f) && Math.abs(f) <= 3.4028234663852886e38 && Math.abs(r) <= 3.4028235677973366e38) {
    // not an overflow
  } else { exc |= MX_OE | MX_PE; return f; }
  if (r !== 0 && Math.abs(r) < MIN_NORMAL32 || (r === 0 && inexact)) return tiny(f, inexact);
  if (inexact) exc |= MX_PE;
  return f;
}

/** Same for a float64 result `r` (already rounded to nearest; `hint`: sign of exact - r when inexact). */
export function post64(r: number, inexact: boolean, finiteIn: boolean, hint = 0): number {
  const mode = (mx >> MX_RC_SHIFT) & 3;
  if ((r === Infinity || r === -Infinity) && finiteIn) {
    exc |= MX_OE | MX_PE;
    return mode === 0 ? r : directed64(r, -Math.sign(r), mode);
  }
  if (mode !== 0 && inexact) {
    r = directed64(r, hint, mode);
    // Stepping up from the largest finite value: an overflow after all (SDM vol. 1 §4.9.1.4).
    if (r === Infinity || r === -Infinity) { exc |= MX_OE | MX_PE; return r; }
  }
  if (r !== 0 && Math.abs(r) < MIN_NORMAL64 || (r === 0 && inexact)) return tiny(r, inexact);
  if (inexact) exc |= MX_PE;
  return r;
}

const dF32 = new Float32Array(1);
const dI32 = new Int32Array(dF32.buffer);

/** Move a nearest-rounded f one unit toward the exact value (direction `dir`) if RC `mode` asks for it. */
function directed32(f: number, dir: number, mode: number): number {
  if (!shouldStep(f, dir, mode)) return f;
  if (f === 0) return dir > 0 ? 2 ** -149 : -(2 ** -149);
  dF32[0] = f;
  dI32[0] += (f > 0) === (dir > 0) ? 1 : -1;
  return dF32[0];
}

function directed64(r: number, dir: number, mode: number): number {
  if (!shouldStep(r, dir, mode)) return r;
  if (r === 0) return dir > 0 ? 5e-324 : -5e-324;
  cvF[0] = r;
  if ((r > 0) === (dir > 0)) { if (cvI[0] === -1) { cvI[0] = 0; cvI[1] += 1; } else cvI[0] += 1; }
  else if (cvI[0] === 0) { cvI[0] = -1; cvI[1] -= 1; } else cvI[0] -= 1;
  return cvF[0];
}

/** dir = sign(exact - rounded): step for round down if the result is above, up if below, toward zero if away. */
function shouldStep(f: number, dir: number, mode: number): boolean {
  if (dir === 0) return false;
  if (mode === 1) return dir < 0;
  if (mode === 2) return dir > 0;
  return f > 0 ? dir < 0 : f < 0 ? dir > 0 : false;
}

function tiny(f: number, inexact: boolean): number {
  // Masked underflow is reported only when the tiny result is also inexact (SDM vol. 1 §4.9.1.5).
  if (!(mx & MX_UM)) { exc |= MX_UE | (inexact ? MX_PE : 0); return f; }
  if (mx & MX_FTZ) { exc |= MX_UE | MX_PE; return f < 0 || Object.is(f, -0) ? -0 : 0; }
  if (inexact) exc |= MX_UE | MX_PE;
  return f;
}

// ---- exactness tests for double results (the PE flag): error-free transformations

const SPLIT = 134217729; // 2^27 + 1 (Veltkamp splitting)
const cvF = new Float64Array(1);
const cvI = new Int32Array(cvF.buffer);

/** a*b - p exactly, when nothing overflows or underflows (Dekker's TwoProduct). */
function twoProdErr(a: number, b: number, p: number): number {
  let t = SPLIT * a;
  const ah = t - (t - a), al = a - ah;
  t = SPLIT * b;
  const bh = t - (t - b), bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

/** a+b - s exactly (Knuth's TwoSum). */
export function twoSumErr(a: number, b: number, s: number): number {
  const bb = s - a;
  return (a - (s - bb)) + (b - bb);
}

let mantExp = 0;
/** x = m * 2^mantExp with |m| in [1, 2) (x finite, nonzero). */
function mant(x: number): number {
  cvF[0] = x;
  let hi = cvI[1];
  let e = (hi >>> 20) & 0x7ff;
  if (e === 0) {
    cvF[0] = x * 2 ** 64;
    hi = cvI[1];
    e = ((hi >>> 20) & 0x7ff) - 64;
  }
  mantExp = e - 1023;
  cvI[1] = (hi & 0x800fffff) | (1023 << 20);
  return cvF[0];
}

/** x * 2^e, exact unless the result overflows or is subnormal. */
export function scale(x: number, e: number): number {
  while (e > 1000) { x *= 2 ** 1000; e -= 1000; }
  while (e < -1000) { x *= 2 ** -1000; e += 1000; }
  return x * 2 ** e;
}

/** Sign of a*b - p for the double product p = a*b (a, b, p finite): 0 when exact. */
export function mulErrSign(a: number, b: number, p: number): number {
  if (a === 0 || b === 0) return 0;
  const ma = mant(a), ea = mantExp, mb = mant(b), eb = mantExp;
  const pm = ma * mb;
  const u = scale(p, -(ea + eb));
  if (u !== pm) return Math.sign(pm - u);
  return Math.sign(twoProdErr(ma, mb, pm));
}

/** Sign of a/b - q for the double quotient q = a/b (finite, b nonzero). */
export function divErrSign(a: number, b: number, q: number): number {
  if (a === 0) return 0;
  const ma = mant(a), ea = mantExp, mb = mant(b), eb = mantExp;
  const qm = ma / mb;
  const u = scale(q, eb - ea);
  // q was rounded at a coarser place than qm (a tiny or huge quotient): the exact quotient lies on qm's side of it.
  if (u !== qm) return Math.sign(qm - u);
  const p = qm * mb;
  return Math.sign((ma - p) - twoProdErr(qm, mb, p)) * Math.sign(mb);
}

/** Sign of sqrt(a) - s for s = Math.sqrt(a) (a > 0 finite). */
export function sqrtErrSign(a: number): number {
  let ma = mant(a);
  if (mantExp & 1) ma *= 2;
  const sm = Math.sqrt(ma);
  const p = sm * sm;
  return Math.sign((ma - p) - twoProdErr(sm, sm, p));
}

// ---- conversions to integers (CVTSS2SI and friends)

/** Round an integer-valued-or-not double by the rounding control (0 nearest-even, 1 down, 2 up, 3 truncate). */
export function roundRc(x: number, mode: number): number {
  switch (mode) {
    case 0: {
      const f = Math.floor(x), d = x - f;
      return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
    }
    case 1: return Math.floor(x);
    case 2: return Math.ceil(x);
    default: return Math.trunc(x);
  }
}

/**
 * Convert a double to int32 with rounding `mode`: NaN or out of range gives the integer indefinite
 * 0x80000000 and IE; an inexact conversion raises PE (SDM vol. 2 CVTSD2SI; vol. 1 §11.5.2.1).
 */
export function toInt32(x: number, mode: number): number {
  if (Number.isNaN(x)) { exc |= MX_IE; return 0x80000000 | 0; }
  const v = roundRc(x, mode);
  if (v < -2147483648 || v > 2147483647) { exc |= MX_IE; return 0x80000000 | 0; }
  if (v !== x) exc |= MX_PE;
  return v | 0;
}

/** Same to int64: returns the low int32; the high int32 is left in `i64Hi`. */
export let i64Hi = 0;
export function toInt64(x: number, mode: number): number {
  if (Number.isNaN(x)) { exc |= MX_IE; i64Hi = 0x80000000 | 0; return 0; }
  const v = roundRc(x, mode);
  if (v < -9223372036854775808 || v >= 9223372036854775808) { exc |= MX_IE; i64Hi = 0x80000000 | 0; return 0; }
  if (v !== x) exc |= MX_PE;
  const hi = Math.floor(v / 4294967296);
  i64Hi = hi | 0;
  return (v - hi * 4294967296) | 0;
}

/** int64 (hi, lo) to double, rounded by MXCSR.RC (one rounding: hi*2^32 is exact). */
export function i64ToF64(hi: number, lo: number): number {
  const d = hi * 4294967296 + (lo >>> 0);
  const err = Math.abs(d) >= 2 ** 53 ? twoSumErr(hi * 4294967296, lo >>> 0, d) : 0;
  return err === 0 ? d : post64(d, true, true, Math.sign(err));
}

/** int64 (hi, lo) to float32, correctly rounded: round to odd at 53 bits first, then to 24 (no double rounding). */
export function i64ToF32(hi: number, lo: number): number {
  const a = hi * 4294967296, b = lo >>> 0;
  let d = a + b;
  if (Math.abs(d) >= 2 ** 53) {
    const err = twoSumErr(a, b, d);
    if (err !== 0) {
      cvF[0] = d;
      if ((cvI[0] & 1) === 0) {
        // Step one unit in the last place toward the exact value, landing on the odd neighbour.
        if ((err > 0) === (d > 0)) cvI[0] |= 1;
        else if (cvI[0] === 0) { cvI[1] -= 1; cvI[0] = -1; } else cvI[0] -= 1;
        d = cvF[0];
      }
    }
  }
  return post32(d, false);
}
