// x87 / MMX register state of the software CPU, plus typed views of the XMM file for the SSE families.
// SoftCpu holds one instance as `cpu.fpu`. This module imports nothing from cpu.ts (cpu.ts imports it).
// With the WebAssembly translator the XMM file and `sseOk` are views into the vCPU's state area (../wasm/layout.ts
// S_XMM, S_SSE), so translated code reads and writes them directly.
//
// The eight x87 data registers are kept in their architectural 80-bit extended format (SDM vol. 1 §8.2,
// §4.2.2): sign+exponent in bytes 8-9, the 64-bit significand (explicit integer bit) in bytes 0-7. That makes
// FLD/FSTP m80, FXCH, FXSAVE/FXRSTOR and the MMX aliasing (MMn is the significand of physical register Rn,
// SDM vol. 1 §9.5) exact. Arithmetic converts to a JavaScript double and back: ringzero's x87 computes with a
// 53-bit significand (64-bit double), not the 64-bit significand of real hardware.

import { CR0_EM, CR0_TS, CR4_OSFXSR } from '../constants.ts';

/** Bytes per register slot in `regs`. */
export const F80 = 10;
/** Slot 8 of `regs` is a scratch slot for memory operands converted to the 80-bit format. */
export const TEMP_SLOT = 8;

export class FpuState {
  /** Physical registers R0-R7 (slots 0-7) and the scratch slot, 10 bytes each. */
  readonly regs = new Uint8Array(F80 * 9);
  readonly regsView = new DataView(this.regs.buffer);
  /** TOP of stack (FSW bits 13:11), kept apart from `sw`. */
  top = 0;
  /** Status word without the TOP field. */
  sw = 0;
  /** Control word. */
  cw = 0x0040;
  /** Bit i set: physical register i is not empty (the abridged tag word of FXSAVE). */
  tagValid = 0xff;
  /** Last x87 opcode (11 bits), instruction and data pointers, for FSTENV/FXSAVE. */
  fop = 0;
  fip = 0;
  fcs = 0;
  fdp = 0;
  fds = 0;

  // Views of the XMM registers (cpu.xmm), 16 bytes per register, little endian.
  readonly xi32: Int32Array;
  readonly xf32: Float32Array;
  readonly xf64: Float64Array;

  /**
   * [0] is 1 while SSE instructions may execute: CR0.EM and CR0.TS clear and CR4.OSFXSR set (the conditions of
   * ../ops/sse-common.ts sseCheck but LOCK). SoftCpu.updateMode recomputes it (every write of CR0/CR4 but CLTS goes
   * through it; CLTS only clears TS, so the word can only be too strict, never too lenient), and a JavaScript SSE
   * form sets it after its own check passed. Translated SSE code runs inline only while it is 1, else it leaves the
   * instruction to the JavaScript form (which raises the #UD/#NM).
   */
  readonly sseOk: Int32Array;

  constructor(xmm: Uint8Array, sseOk: Int32Array = new Int32Array(1)) {
    this.sseOk = sseOk;
    this.xi32 = new Int32Array(xmm.buffer, xmm.byteOffset, xmm.byteLength >> 2);
    this.xf32 = new Float32Array(xmm.buffer, xmm.byteOffset, xmm.byteLength >> 2);
    this.xf64 = new Float64Array(xmm.buffer, xmm.byteOffset, xmm.byteLength >> 3);
    // FIP/FDP hold 32-bit and 64-bit addresses: doubles from the start, not small integers that a later unsigned or
    // 64-bit value would turn into doubles by replacing this object's map (deoptimizing the code that checked it).
    this.fip = this.fdp = 0.5;
    this.fip = this.fdp = 0;
  }

  /** Recompute `sseOk` from CR0 and CR4 (SDM vol. 3A §2.5, §13.1: EM and !OSFXSR give #UD, TS gives #NM). */
  setSseUsable(cr0: number, cr4: number): void {
    this.sseOk[0] = (cr0 & (CR0_EM | CR0_TS)) === 0 && (cr4 & CR4_OSFXSR) !== 0 ? 1 : 0;
  }

  /** Power-up state (SDM vol. 3A §9.1.1 table 9-1): FCW 0040H, FSW 0, FTW 5555H (all registers +0.0). */
  reset(): void {
    this.regs.fill(0);
    this.top = 0;
    this.sw = 0;
    this.cw = 0x0040;
    this.tagValid = 0xff;
    this.fop = this.fip = this.fcs = this.fdp = this.fds = 0;
  }

  /** FNINIT state (SDM vol. 2 FINIT/FNINIT): FCW 037FH, FSW 0, all registers empty, pointers cleared. */
  init(): void {
    this.top = 0;
    this.sw = 0;
    this.cw = 0x037f;
    this.tagValid = 0;
    this.fop = this.fip = this.fcs = this.fdp = this.fds = 0;
  }

  /** The status word with TOP merged in. */
  statusWord(): number {
    return (this.sw & ~0x3800) | (this.top << 11);
  }

  setStatusWord(v: number): void {
    this.top = (v >> 11) & 7;
    this.sw = v & ~0x3800 & 0xffff;
  }

  /** The full tag word (2 bits per physical register: 00 valid, 01 zero, 10 special, 11 empty; SDM vol. 1 §8.1.7). */
  tagWord(): number {
    let tw = 0;
    for (let p = 0; p < 8; p++) tw |= this.tagOf(p) << (2 * p);
    return tw;
  }

  tagOf(p: number): number {
    if (!((this.tagValid >> p) & 1)) return 3;
    const dv = this.regsView;
    const o = p * F80;
    const exp = dv.getUint16(o + 8, true) & 0x7fff;
    const lo = dv.getUint32(o, true), hi = dv.getUint32(o + 4, true);
    if (exp === 0x7fff) return 2; // NaN, infinity
    if (exp === 0) return lo === 0 && hi === 0 ? 1 : 2; // zero, or denormal
    return hi & 0x80000000 ? 0 : 2; // normal, or unnormal (integer bit clear)
  }

  /** Load the full tag word: anything but 11 (empty) marks the register valid (SDM FLDENV). */
  setTagWord(tw: number): void {
    let v = 0;
    for (let p = 0; p < 8; p++) if (((tw >> (2 * p)) & 3) !== 3) v |= 1 << p;
    this.tagValid = v;
  }
}
