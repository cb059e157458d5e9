// Group 2 shifts and rotates (C0, C1, D0-D3: ROL ROR RCL RCR SHL/SAL SHR SAR) and SHLD/SHRD (0F A4/A5/AC/AD).
// Intel SDM vol. 2 "RCL/RCR/ROL/ROR", "SAL/SAR/SHL/SHR", "SHLD", "SHRD".
//
// The count is masked to 5 bits (6 with a 64-bit operand); a masked count of 0 changes no flag and writes nothing
// to memory, but a 32-bit register operand is still written, so its upper half is cleared (as on the host).
// Where the SDM leaves a flag undefined (counts above 1, AF, counts past the operand width) this follows the
// reference host (AMD EPYC), measured natively:
// - SHL/SHR/SAR: AF = 1; OF = MSB(result) XOR CF for SHL, and the XOR of the two top result bits for SHR/SAR
//   (which is the SDM's count-1 definition applied to the last single-bit step).
// - ROL/RCL: OF = MSB(result) XOR CF; ROR/RCR: OF = XOR of the two top result bits; for every count, including
//   an 8/16-bit ROL/ROR/RCL/RCR whose count is a multiple of the width (then CF of ROL/ROR is still updated).
// - SHLD/SHRD: AF = 1, OF as SHL/SHR; 16-bit operands with counts 16..31 shift through SRC repeated (see below).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1, def0f } from '../tables.ts';
import { MASK, SIGN, out, szp, setSomeFlags, shl64, shr64, sar64, bit64 } from './alu-common.ts';

const ROL = 0, ROR = 1, RCL = 2, RCR = 3, SHL = 4, SHR = 5, SAL6 = 6, SAR = 7;

/** Shift/rotate `v` (sizes 1, 2, 4) by `c` (1..31); sets the flags and returns the result. */
export function shift32(cpu: SoftCpu, op: number, size: number, v: number, c: number): number {
  const bits = size * 8;
  const mask = MASK[size];
  const msb = SIGN[size];
  let r: number, cf: number;
  switch (op) {
    case SHL: case SAL6:
      r = (v << c) & mask;
      cf = c <= bits ? (v >>> (bits - c)) & 1 : 0;
      cpu.setArith(shiftFlags(size, r, cf, (r & msb ? 1 : 0) ^ cf));
      return size === 4 ? r | 0 : r;
    case SHR:
      r = (v & mask) >>> c;
      cf = (v & mask) >>> (c - 1) & 1;
      cpu.setArith(shiftFlags(size, r, cf, topTwo(r, bits)));
      return size === 4 ? r | 0 : r;
    case SAR: {
      const sv = size === 1 ? (v << 24) >> 24 : size === 2 ? (v << 16) >> 16 : v;
      r = (sv >> c) & mask;
      cf = (sv >> (c - 1)) & 1;
      cpu.setArith(shiftFlags(size, r, cf, 0));
      return size === 4 ? r | 0 : r;
    }
    case ROL: {
      const t = c & (bits - 1);
      v &= mask;
      r = t ? ((v << t) | (v >>> (bits - t))) & mask : v;
      cf = r & 1;
      setSomeFlags(cpu, C.CF | C.OF, cf | (((r & msb ? 1 : 0) ^ cf) ? C.OF : 0));
      return size === 4 ? r | 0 : r;
    }
    case ROR: {
      const t = c & (bits - 1);
      v &= mask;
      r = t ? ((v >>> t) | (v << (bits - t))) & mask : v;
      cf = r & msb ? 1 : 0;
      setSomeFlags(cpu, C.CF | C.OF, cf | (topTwo(r, bits) ? C.OF : 0));
      return size === 4 ? r | 0 : r;
    }
    case RCL: {
      // Rotate the (bits+1)-bit quantity CF:v; 8- and 16-bit counts are taken mod 9 and 17.
      const t = size === 1 ? c % 9 : size === 2 ? c % 17 : c;
      const cin = cpu.getCF() ? 1 : 0;
      v &= mask;
      if (t === 0) { r = v; cf = cin; }
      else if (size === 4) {
        r = (v << t) | (cin << (t - 1)) | (t === 1 ? 0 : v >>> (33 - t));
        cf = (v >>> (32 - t)) & 1;
      } else {
        const x = (cin << bits) | v;
        const w = ((x << t) | (x >>> (bits + 1 - t))) & ((mask << 1) | 1);
        r = w & mask;
        cf = (w >>> bits) & 1;
      }
      setSomeFlags(cpu, C.CF | C.OF, cf | (((r & msb ? 1 : 0) ^ cf) ? C.OF : 0));
      return size === 4 ? r | 0 : r;
    }
    default: { // RCR
      const t = size === 1 ? c % 9 : size === 2 ? c % 17 : c;
      const cin = cpu.getCF() ? 1 : 0;
      v &= mask;
      if (t === 0) { r = v; cf = cin; }
      else if (size === 4) {
        r = (v >>> t) | (cin << (32 - t)) | (t === 1 ? 0 : v << (33 - t));
        cf = (v >>> (t - 1)) & 1;
      } else {
        const x = (cin << bits) | v;
        const w = ((x >>> t) | (x << (bits + 1 - t))) & ((mask << 1) | 1);
        r = w & mask;
        cf = (w >>> bits) & 1;
      }
      setSomeFlags(cpu, C.CF | C.OF, cf | (topTwo(r, bits) ? C.OF : 0));
      return size === 4 ? r | 0 : r;
    }
  }
}

/** XOR of the two most significant bits of a `bits`-wide result (the OF of right shifts and rotates). */
function topTwo(r: number, bits: number): number {
  return ((r >>> (bits - 1)) ^ (r >>> (bits - 2))) & 1;
}

function shiftFlags(size: number, r: number, cf: number, of: number): number {
  return szp(size, r, 0) | cf | C.AF | (of ? C.OF : 0);
}

/** The same for a 64-bit operand (lo, hi) and count 1..63; result hi in `out.hi`. */
export function shift64(cpu: SoftCpu, op: number, lo: number, hi: number, c: number): number {
  let rl: number, rh: number, cf: number;
  switch (op) {
    case SHL: case SAL6:
      rl = shl64(lo, hi, c); rh = out.hi;
      cf = bit64(lo, hi, 64 - c);
      cpu.setArith(szp(8, rl, rh) | cf | C.AF | (((rh >>> 31) ^ cf) ? C.OF : 0));
      break;
    case SHR:
      rl = shr64(lo, hi, c); rh = out.hi;
      cf = bit64(lo, hi, c - 1);
      cpu.setArith(szp(8, rl, rh) | cf | C.AF | (topTwo(rh, 32) ? C.OF : 0));
      break;
    case SAR:
      rl = sar64(lo, hi, c); rh = out.hi;
      cf = bit64(lo, hi, c - 1);
      cpu.setArith(szp(8, rl, rh) | cf | C.AF);
      break;
    case ROL:
      rl = shl64(lo, hi, c) | shr64(lo, hi, 64 - c);
      rh = rotHi(lo, hi, c);
      cf = rl & 1;
      setSomeFlags(cpu, C.CF | C.OF, cf | (((rh >>> 31) ^ cf) ? C.OF : 0));
      break;
    case ROR:
      rl = shr64(lo, hi, c) | shl64(lo, hi, 64 - c);
      rh = rotHi(lo, hi, 64 - c);
      cf = rh >>> 31;
      setSomeFlags(cpu, C.CF | C.OF, cf | (topTwo(rh, 32) ? C.OF : 0));
      break;
    case RCL: {
      // 65-bit rotate of CF:value left by c: value << c | CF << (c-1) | value >> (65-c).
      const cin = cpu.getCF() ? 1 : 0;
      rl = shl64(lo, hi, c); rh = out.hi;
      const cl = shl64(cin, 0, c - 1), ch = out.hi;
      const ql = shr64(lo, hi, 65 - c), qh = out.hi;
      rl = rl | cl | ql; rh = rh | ch | qh;
      cf = bit64(lo, hi, 64 - c);
      setSomeFlags(cpu, C.CF | C.OF, cf | (((rh >>> 31) ^ cf) ? C.OF : 0));
      break;
    }
    default: { // RCR: value >> c | CF << (64-c) | value << (65-c)
      const cin = cpu.getCF() ? 1 : 0;
      rl = shr64(lo, hi, c); rh = out.hi;
      const cl = shl64(cin, 0, 64 - c), ch = out.hi;
      const ql = shl64(lo, hi, 65 - c), qh = out.hi;
      rl = rl | cl | ql; rh = rh | ch | qh;
      cf = bit64(lo, hi, c - 1);
      setSomeFlags(cpu, C.CF | C.OF, cf | (topTwo(rh, 32) ? C.OF : 0));
    }
  }
  out.hi = rh;
  return rl;
}

/** High half of a 64-bit rotate left by c (1..63). */
function rotHi(lo: number, hi: number, c: number): number {
  shl64(lo, hi, c);
  const a = out.hi;
  shr64(lo, hi, 64 - c);
  return a | out.hi;
}

/** Shared body of group 2: the operand is decoded, `c` is the raw count. */
function group2(cpu: SoftCpu, size: number, count: number): void {
  const op = (cpu.modrm >> 3) & 7;
  const c = count & (size === 8 ? 63 : 31);
  const reg = cpu.mod === 3;
  if (cpu.lock) cpu.ud();
  let lin = 0, v: number;
  if (reg) v = cpu.getReg(size, cpu.rm);
  else { lin = cpu.eaLinear(); v = cpu.readLin(lin, size); }
  const vh = cpu.hi;
  if (c === 0) {
    if (reg && size === 4) cpu.gpr[2 * cpu.rm + 1] = 0;
    return;
  }
  // Compute into locals and module state first, write, then commit flags: the write may fault.
  cpu.settleFlags();
  const savedFlags = cpu.flags;
  let r: number, rh = 0;
  if (size === 8) { r = shift64(cpu, op, v, vh, c); rh = out.hi; } else r = shift32(cpu, op, size, v, c);
  if (reg) { cpu.setReg(size, cpu.rm, r, rh); return; }
  const newFlags = cpu.flags;
  cpu.flags = savedFlags;
  cpu.writeLin(lin, size, r, rh);
  cpu.flags = newFlags;
}

// C0 Eb,Ib / C1 Ev,Ib (the immediate comes before the memory operand is touched: RIP-relative addressing)
def1(0xc0, (cpu) => {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  group2(cpu, size, cpu.fetch8());
}, 0xc1);
// D0 Eb,1 / D1 Ev,1
def1(0xd0, (cpu) => {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  group2(cpu, size, 1);
}, 0xd1);
// D2 Eb,CL / D3 Ev,CL
def1(0xd2, (cpu) => {
  const size = cpu.opcode & 1 ? cpu.opsize : 1;
  cpu.decodeModrm();
  group2(cpu, size, cpu.gpr[2] & 0xff);
}, 0xd3);

// ---- SHLD (0F A4 Ev,Gv,Ib; 0F A5 Ev,Gv,CL), SHRD (0F AC Ev,Gv,Ib; 0F AD Ev,Gv,CL)

/**
 * 16-bit SHLD/SHRD with counts 16..31 (undefined in the SDM): the host shifts DEST:SRC:SRC (SHLD) or
 * SRC:SRC:DEST (SHRD) as one 48-bit quantity and returns CF = 0 for counts above 16, OF = 0 for SHLD above 16 and
 * OF = CF for SHLD by exactly 16. Below 16 it is the documented 32-bit-style double shift.
 */
export function doubleShift(cpu: SoftCpu, right: boolean, size: number, d: number, dh: number, s: number, sh: number, c: number): number {
  let r: number, rh = 0, cf: number, of: number;
  if (size === 8) {
    if (right) {
      r = shr64(d, dh, c) | shl64(s, sh, 64 - c);
      rh = (shr64(d, dh, c), out.hi) | (shl64(s, sh, 64 - c), out.hi);
      cf = bit64(d, dh, c - 1);
      of = topTwo(rh, 32);
    } else {
      r = shl64(d, dh, c) | shr64(s, sh, 64 - c);
      rh = (shl64(d, dh, c), out.hi) | (shr64(s, sh, 64 - c), out.hi);
      cf = bit64(d, dh, 64 - c);
      of = (rh >>> 31) ^ cf;
    }
    cpu.setArith(szp(8, r, rh) | cf | C.AF | (of ? C.OF : 0));
    out.hi = rh;
    return r;
  }
  if (size === 4) {
    if (right) {
      r = (d >>> c) | (s << (32 - c));
      cf = (d >>> (c - 1)) & 1;
      of = topTwo(r, 32);
    } else {
      r = (d << c) | (s >>> (32 - c));
      cf = (d >>> (32 - c)) & 1;
      of = (r >>> 31) ^ cf;
    }
  } else if (right) {
    if (c <= 16) {
      r = ((d >>> c) | (s << (16 - c))) & 0xffff;
      cf = (d >>> (c - 1)) & 1;
    } else {
      r = ((s >>> (c - 16)) | (s << (32 - c))) & 0xffff;
      cf = 0;
    }
    of = topTwo(r, 16);
  } else if (c < 16) {
    r = ((d << c) | (s >>> (16 - c))) & 0xffff;
    cf = (d >>> (16 - c)) & 1;
    of = (r >>> 15) ^ cf;
  } else if (c === 16) {
    r = s;
    cf = d & 1;
    of = cf;
  } else {
    r = ((s << (c - 16)) | (s >>> (32 - c))) & 0xffff;
    cf = 0;
    of = 0;
  }
  cpu.setArith(szp(size, r, 0) | cf | C.AF | (of ? C.OF : 0));
  out.hi = 0;
  return r;
}

function shiftDouble(cpu: SoftCpu, right: boolean, count: number): void {
  const size = cpu.opsize;
  const c = count & (size === 8 ? 63 : 31);
  const reg = cpu.mod === 3;
  if (cpu.lock) cpu.ud();
  const s = cpu.getReg(size, cpu.reg), sh = cpu.hi;
  let lin = 0, d: number;
  if (reg) d = cpu.getReg(size, cpu.rm);
  else { lin = cpu.eaLinear(); d = cpu.readLin(lin, size); }
  const dh = cpu.hi;
  if (c === 0) {
    if (reg && size === 4) cpu.gpr[2 * cpu.rm + 1] = 0;
    return;
  }
  cpu.settleFlags();
  const savedFlags = cpu.flags;
  const r = doubleShift(cpu, right, size, d, dh, s, sh, c), rh = out.hi;
  if (reg) { cpu.setReg(size, cpu.rm, r, rh); return; }
  const newFlags = cpu.flags;
  cpu.flags = savedFlags;
  cpu.writeLin(lin, size, r, rh);
  cpu.flags = newFlags;
}

def0f(0xa4, (cpu) => { cpu.decodeModrm(); shiftDouble(cpu, false, cpu.fetch8()); });
def0f(0xa5, (cpu) => { cpu.decodeModrm(); shiftDouble(cpu, false, cpu.gpr[2] & 0xff); });
def0f(0xac, (cpu) => { cpu.decodeModrm(); shiftDouble(cpu, true, cpu.fetch8()); });
def0f(0xad, (cpu) => { cpu.decodeModrm(); shiftDouble(cpu, true, cpu.gpr[2] & 0xff); });
