// Bit test and scan: BT BTS BTR BTC (0F A3/AB/B3/BB with a register offset, 0F BA /4-/7 with imm8), BSF/BSR
// (0F BC/BD) and POPCNT (F3 0F B8). Intel SDM vol. 2 "BT", "BTC", "BTR", "BTS", "BSF", "BSR", "POPCNT".
//
// Undefined flags follow the reference host (AMD EPYC), measured natively: BTx changes only CF; BSF/BSR set
// ZF from the source, PF from the result index, clear CF OF SF AF, and leave the destination untouched (all 64
// bits of it) when the source is zero.
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def0f } from '../tables.ts';
import { PARITY, setSomeFlags, noLock } from './alu-common.ts';

const BT = 0, BTS = 1, BTR = 2, BTC = 3;

/**
 * Test and change bit `bit` of the r/m operand of `size` bytes, `delta` bytes away from the decoded address
 * (memory forms with a register offset reach outside the operand: SDM BT "bit base, bit offset").
 */
function bitOp(cpu: SoftCpu, kind: number, size: number, bit: number, delta: number): void {
  const reg = cpu.mod === 3;
  if (cpu.lock && (reg || kind === BT)) cpu.ud();
  let lin = 0, lo: number;
  if (reg) lo = cpu.getReg(size, cpu.rm);
  else { lin = cpu.eaLinear(delta); lo = cpu.readLin(lin, size); }
  let hi = cpu.hi;
  let cf: number;
  if (bit < 32) {
    const m = 1 << bit;
    cf = (lo >>> bit) & 1;
    if (kind === BTS) lo |= m; else if (kind === BTR) lo &= ~m; else if (kind === BTC) lo ^= m;
  } else {
    const m = 1 << (bit - 32);
    cf = (hi >>> (bit - 32)) & 1;
    if (kind === BTS) hi |= m; else if (kind === BTR) hi &= ~m; else if (kind === BTC) hi ^= m;
  }
  if (kind !== BT) {
    if (size === 2) lo &= 0xffff;
    if (reg) cpu.setReg(size, cpu.rm, lo, hi); else cpu.writeLin(lin, size, lo, hi);
  }
  setSomeFlags(cpu, C.CF, cf);
}

// 0F A3 BT / AB BTS / B3 BTR / BB BTC Ev, Gv: the bit offset is the signed value of the register.
function bitOpReg(cpu: SoftCpu): void {
  const kind = (cpu.opcode >> 3) & 3; // A3 -> 0, AB -> 1, B3 -> 2, BB -> 3
  cpu.decodeModrm();
  const size = cpu.opsize;
  const off = cpu.getReg(size, cpu.reg);
  const bits = size * 8;
  if (cpu.mod === 3) { bitOp(cpu, kind, size, off & (bits - 1), 0); return; }
  let delta: number;
  if (size === 8) {
    const offNum = cpu.hi * C.TWO32 + (off >>> 0);
    delta = Math.floor(offNum / 64) * 8;
  } else {
    const signed = size === 2 ? (off << 16) >> 16 : off;
    delta = (signed >> (size === 2 ? 4 : 5)) * size;
  }
  bitOp(cpu, kind, size, off & (bits - 1), delta);
}
def0f(0xa3, bitOpReg);
def0f(0xab, bitOpReg);
def0f(0xb3, bitOpReg);
def0f(0xbb, bitOpReg);

// 0F BA /4 BT, /5 BTS, /6 BTR, /7 BTC Ev, Ib: the immediate is taken modulo the operand width.
def0f(0xba, (cpu) => {
  cpu.decodeModrm();
  const op = (cpu.modrm >> 3) & 7;
  if (op < 4) cpu.ud();
  const size = cpu.opsize;
  const bit = cpu.fetch8() & (size * 8 - 1);
  bitOp(cpu, op - 4, size, bit, 0);
});

// ---- BSF (0F BC) / BSR (0F BD). F3 0F BC/BD would be TZCNT/LZCNT, which CPUID does not offer (no BMI1/ABM):
// such CPUs execute them as BSF/BSR, and so does this one.

function bitScan(cpu: SoftCpu): void {
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  let lo = cpu.readRm(size);
  let hi = size === 8 ? cpu.hi : 0;
  if (size === 2) lo &= 0xffff;
  if (lo === 0 && hi === 0) { cpu.setArith(C.ZF | C.PF); return; }
  let idx: number;
  if (cpu.opcode === 0x1bc) {
    idx = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 63 - Math.clz32(hi & -hi);
  } else {
    idx = hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
  }
  cpu.setReg(size, cpu.reg, idx, 0);
  cpu.setArith(PARITY[idx]);
}
def0f(0xbc, bitScan, 0xbd);

// ---- POPCNT (F3 0F B8; CPUID.01H:ECX.POPCNT[bit 23]). Without F3, 0F B8 is JMPE (IA-64 only): #UD.

export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

def0f(0xb8, (cpu) => {
  if (cpu.rep !== 0xf3) cpu.ud();
  noLock(cpu);
  cpu.decodeModrm();
  const size = cpu.opsize;
  let lo = cpu.readRm(size);
  const hi = size === 8 ? cpu.hi : 0;
  if (size === 2) lo &= 0xffff;
  const n = popcount32(lo) + popcount32(hi);
  cpu.setReg(size, cpu.reg, n, 0);
  cpu.setArith(n === 0 ? C.ZF : 0);
});
