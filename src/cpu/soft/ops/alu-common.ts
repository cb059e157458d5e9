// Shared pieces of the integer ALU families (./alu.ts and ./alu-*.ts): explicit-flag helpers, 64-bit pair
// arithmetic (shifts, multiply, divide) on (hi, lo) int32 halves, and the LOCK-prefix rule.
//
// Results that have a high half are returned as the low int32 with the high int32 left in the exported `out`
// record (module state, so nothing is allocated per instruction).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';

/** PF for a result's low byte (SDM vol. 1 §3.4.3.1: set when the low byte has an even number of 1 bits). */
export const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i, p = 1;
  while (b) { p ^= b & 1; b >>= 1; }
  PARITY[i] = p ? C.PF : 0;
}

/** Operand-size masks indexed by size in bytes (1, 2, 4). */
export const MASK = [0, 0xff, 0xffff, 0, 0xffffffff];
/** Sign bit indexed by size (1, 2, 4). */
export const SIGN = [0, 0x80, 0x8000, 0, 0x80000000];

/** Secondary results: the high half of a 64-bit result, the high 64 bits of a 128-bit product, a remainder. */
export const out = { hi: 0, hi2lo: 0, hi2hi: 0, qLo: 0, qHi: 0, remLo: 0, remHi: 0 };

/** ZF, SF and PF of a result of `size` bytes (size 8: `lo`/`hi` halves). */
export function szp(size: number, lo: number, hi: number): number {
  let f = PARITY[lo & 0xff];
  if (size === 8) {
    if (lo === 0 && hi === 0) f |= C.ZF;
    if (hi < 0) f |= C.SF;
    return f;
  }
  if ((lo & MASK[size]) === 0) f |= C.ZF;
  if (lo & SIGN[size]) f |= C.SF;
  return f;
}

/** Replace the arithmetic flags in `mask` with `bits`, keeping the others (settles lazy flags first). */
export function setSomeFlags(cpu: SoftCpu, mask: number, bits: number): void {
  cpu.settleFlags();
  cpu.flags = (cpu.flags & ~mask) | (bits & mask);
}

/**
 * LOCK is allowed only on a memory destination of ADD ADC AND BTC BTR BTS CMPXCHG CMPXCHG8B/16B DEC INC NEG NOT
 * OR SBB SUB XOR XADD XCHG; anywhere else it raises #UD (SDM vol. 2 LOCK). Handlers of instructions that never
 * allow it call this; the read-modify-write ones check `cpu.mod === 3` themselves.
 */
export function noLock(cpu: SoftCpu): void {
  if (cpu.lock) cpu.ud();
}

// ---- 64-bit pair shifts, counts 0..63 (JS shift counts are taken mod 32, so the edges are handled apart)

export function shl64(lo: number, hi: number, c: number): number {
  if (c === 0) { out.hi = hi; return lo; }
  if (c < 32) { out.hi = (hi << c) | (lo >>> (32 - c)); return lo << c; }
  out.hi = c === 64 ? 0 : lo << (c - 32);
  return 0;
}

export function shr64(lo: number, hi: number, c: number): number {
  if (c === 0) { out.hi = hi; return lo; }
  if (c < 32) { out.hi = hi >>> c | 0; return (lo >>> c) | (hi << (32 - c)); }
  out.hi = 0;
  return c === 64 ? 0 : (hi >>> (c - 32)) | 0;
}

export function sar64(lo: number, hi: number, c: number): number {
  if (c === 0) { out.hi = hi; return lo; }
  if (c < 32) { out.hi = hi >> c; return (lo >>> c) | (hi << (32 - c)); }
  out.hi = hi >> 31;
  return hi >> (c - 32);
}

/** Bit `i` (0..63) of the pair. */
export function bit64(lo: number, hi: number, i: number): number {
  return i < 32 ? (lo >>> i) & 1 : (hi >>> (i - 32)) & 1;
}

// ---- multiplication

/** Unsigned 32x32 -> 64 product of uint32 `a` and `b` (16-bit limbs keep every partial product exact). */
export function mulU32(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  out.hi = (a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) | 0;
  return ((mid << 16) | (p00 & 0xffff)) | 0;
}

/**
 * Unsigned 64x64 -> 128 product of (ah, al) and (bh, bl). Returns bits 0-31; bits 32-63 in `out.hi`, bits 64-127
 * in `out.hi2lo`/`out.hi2hi`. With `signed`, the operands are two's complement and so is the product.
 */
export function mul64(al: number, ah: number, bl: number, bh: number, signed: boolean): number {
  // Fast path: the double product is exact, and detectably so, whenever its magnitude is below 2^53 (rounding
  // is monotonic and 2^53 is representable; an operand too large to be exact makes the product large too,
  // unless the other is 0, which gives 0 either way).
  const p = ((signed ? ah : ah >>> 0) * C.TWO32 + (al >>> 0)) * ((signed ? bh : bh >>> 0) * C.TWO32 + (bl >>> 0));
  if (p < 9007199254740992 && p > -9007199254740992) {
    out.hi = Math.floor(p / C.TWO32) | 0;
    out.hi2lo = out.hi2hi = p < 0 ? -1 : 0;
    return p | 0;
  }
  const w0 = mulU32(al >>> 0, bl >>> 0), h0 = out.hi >>> 0;
  const l1 = mulU32(al >>> 0, bh >>> 0) >>> 0, h1 = out.hi >>> 0;
  const l2 = mulU32(ah >>> 0, bl >>> 0) >>> 0, h2 = out.hi >>> 0;
  const l3 = mulU32(ah >>> 0, bh >>> 0) >>> 0, h3 = out.hi >>> 0;
  const s1 = h0 + l1 + l2; // < 3 * 2^32: exact
  const c1 = Math.floor(s1 / C.TWO32);
  const s2 = h1 + h2 + l3 + c1;
  const c2 = Math.floor(s2 / C.TWO32);
  let w2 = s2 >>> 0, w3 = (h3 + c2) >>> 0;
  if (signed) {
    // (a - 2^64 [a<0]) * (b - 2^64 [b<0]) = a*b - 2^64 (b [a<0] + a [b<0]) mod 2^128.
    if (ah < 0) { const t = (w2 >>> 0) - (bl >>> 0); w2 = t >>> 0; w3 = (w3 - (bh >>> 0) - (t < 0 ? 1 : 0)) >>> 0; }
    if (bh < 0) { const t = (w2 >>> 0) - (al >>> 0); w2 = t >>> 0; w3 = (w3 - (ah >>> 0) - (t < 0 ? 1 : 0)) >>> 0; }
  }
  out.hi = s1 | 0;
  out.hi2lo = w2 | 0;
  out.hi2hi = w3 | 0;
  return w0;
}

// ---- division

/**
 * One 32-bit word of a schoolbook division by `d` (uint32, non-zero) with running remainder `r` < `d`: returns
 * the quotient word (its upper half is 0 because r < d) and leaves the new remainder in `out.remLo`. The 16-bit
 * digits keep every intermediate below 2^48, so the double arithmetic is exact.
 */
export function divWord(r: number, w: number, d: number): number {
  let t = r * 65536 + (w >>> 16);
  const qh = Math.floor(t / d);
  r = t - qh * d;
  t = r * 65536 + (w & 0xffff);
  const ql = Math.floor(t / d);
  out.remLo = t - ql * d;
  return ((qh << 16) | ql) | 0;
}

/**
 * Unsigned 128 / 64 division of (n3 n2 n1 n0) by (dh dl), all int32 words. Returns false when the quotient
 * does not fit in 64 bits (or the divisor is zero); otherwise the quotient is in `out.qLo`/`out.qHi` and the
 * remainder in `out.remLo`/`out.remHi`.
 */
export function udiv128(n3: number, n2: number, n1: number, n0: number, dh: number, dl: number): boolean {
  if (dh === 0) {
    const d = dl >>> 0;
    if (d === 0 || n3 !== 0 || (n2 >>> 0) >= d) return false;
    const qh = divWord(n2 >>> 0, n1, d);
    const ql = divWord(out.remLo, n0, d);
    out.qLo = ql;
    out.qHi = qh;
    out.remHi = 0;
    out.remLo |= 0;
    return true;
  }
  // A divisor of 2^32 or more: rare enough (for this engine's guests) to take BigInt.
  const u = (v: number) => BigInt(v >>> 0);
  const n = (u(n3) << 96n) | (u(n2) << 64n) | (u(n1) << 32n) | u(n0);
  const d = (u(dh) << 32n) | u(dl);
  if ((n >> 64n) >= d) return false;
  const q = n / d, r = n % d;
  out.qLo = Number(q & 0xffffffffn) | 0;
  out.qHi = Number(q >> 32n) | 0;
  out.remLo = Number(r & 0xffffffffn) | 0;
  out.remHi = Number(r >> 32n) | 0;
  return true;
}

/**
 * CMPXCHG16B m128 at linear address `lin` (SDM Vol. 2A "CMPXCHG8B/CMPXCHG16B"): #GP(0) unless 16-byte aligned; both
 * halves read, then RDX:RAX compared; equal: m128 = RCX:RBX, else m128 written back with its own value and RDX:RAX =
 * m128; only ZF changes. The interpreter (./alu.ts, 0F C7 /1) and the block cache's fast form share it.
 */
export function cmpxchg16b(cpu: SoftCpu, lin: number): void {
  if (lin & 15) cpu.gp(0);
  const R = cpu.gpr;
  const lo = cpu.readLin(lin, 8), loh = cpu.hi;
  const hi = cpu.readLin(cpu.addLin(lin, 8), 8), hih = cpu.hi;
  const equal = lo === R[0] && loh === R[1] && hi === R[4] && hih === R[5];
  // One 16-byte-aligned block lies in one page: the second write cannot fault once the first succeeded.
  if (equal) {
    cpu.writeLin(lin, 8, R[6], R[7]);
    cpu.writeLin(cpu.addLin(lin, 8), 8, R[2], R[3]);
  } else {
    cpu.writeLin(lin, 8, lo, loh);
    cpu.writeLin(cpu.addLin(lin, 8), 8, hi, hih);
    R[0] = lo; R[1] = loh; R[4] = hi; R[5] = hih;
  }
  cmpxchgFlags(cpu, equal);
}

/** ZF = `equal`, the other flags as they were: CMPXCHG8B/CMPXCHG16B. */
export function cmpxchgFlags(cpu: SoftCpu, equal: boolean): void {
  cpu.settleFlags();
  cpu.flags = equal ? cpu.flags | C.ZF : cpu.flags & ~C.ZF;
}
