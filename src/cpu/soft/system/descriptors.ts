// Segment descriptors: reading them from the GDT/LDT, decoding them into the CPU's hidden segment state, and the
// small helpers shared by segment loads, far transfers, interrupt delivery and the descriptor-table instructions.
// Layouts: Intel SDM vol. 3A §3.4.5 (code/data descriptors), §3.5 (system descriptors), §7.2.3 (64-bit TSS
// descriptor, 16 bytes), §6.14.1 (64-bit IDT gates).

import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';

/**
 * The descriptor most recently read by `readDescriptor` (one shared scratch, copied to locals by callers that
 * need two at once). `lo`/`hi` are the two dwords as int32; `addr` is the linear address of the entry.
 */
export const desc = { lo: 0, hi: 0, addr: 0 };

/** Wrap a linear address computed from a descriptor-table base: 64-bit when IA-32e is active, else 32-bit. */
export function tableLinear(cpu: SoftCpu, base: number, offset: number): number {
  const lin = base + offset;
  return cpu.efer & C.EFER_LMA ? lin : lin >>> 0;
}

/**
 * Read the 8-byte descriptor named by `selector` from the GDT (TI=0) or LDT (TI=1) into `desc`.
 * Returns false when the selector's index is beyond the table limit (or the LDT is unusable); the caller decides
 * which exception that is. Paging faults on the table itself propagate.
 */
export function readDescriptor(cpu: SoftCpu, selector: number): boolean {
  const index = selector & 0xfff8;
  let base: number, limit: number;
  if (selector & 4) {
    if ((cpu.ldtrSel & 0xfffc) === 0 || cpu.ldtrAttr & C.SEG_UNUSABLE) return false;
    base = cpu.ldtrBase; limit = cpu.ldtrLimit;
  } else {
    base = cpu.gdtrBase; limit = cpu.gdtrLimit;
  }
  if (index + 7 > limit) return false;
  const addr = tableLinear(cpu, base, index);
  desc.lo = cpu.readSys(addr, 4);
  desc.hi = cpu.readSys(tableLinear(cpu, base, index + 4), 4);
  desc.addr = addr;
  return true;
}

/**
 * The upper 8 bytes of a 16-byte system descriptor (64-bit TSS/LDT in IA-32e mode) at `addr + 8`: returns the
 * high 32 bits of the base, or -1 when the entry would lie beyond the GDT limit.
 */
export function readDescriptorHighBase(cpu: SoftCpu, selector: number): number {
  const index = selector & 0xfff8;
  if (index + 15 > cpu.gdtrLimit) return -1;
  return cpu.readSys(tableLinear(cpu, cpu.gdtrBase, index + 8), 4);
}

/** Attribute word (constants.ts layout: byte 5 in bits 0-7, flags nibble in bits 12-15) of a descriptor. */
export function descAttr(hi: number): number {
  return ((hi >>> 8) & 0xff) | ((hi >>> 8) & 0xf000);
}

/** Base address (32 bits) of a descriptor. */
export function descBase(lo: number, hi: number): number {
  return ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0;
}

/** Byte-granular limit of a descriptor (scaled by G, SDM §3.4.5). */
export function descLimit(lo: number, hi: number): number {
  const raw = (lo & 0xffff) | (hi & 0xf0000);
  return hi & (1 << 23) ? raw * 4096 + 0xfff : raw;
}

export function descDpl(hi: number): number {
  return (hi >>> 13) & 3;
}

export function descPresent(hi: number): boolean {
  return (hi & (1 << 15)) !== 0;
}

/** Type field (bits 8-11 of the high dword) and S bit (bit 12): code/data when S=1. */
export function descType(hi: number): number {
  return (hi >>> 8) & 0xf;
}

export function descIsCodeData(hi: number): boolean {
  return (hi & (1 << 12)) !== 0;
}

export function descIsCode(hi: number): boolean {
  return (hi & (1 << 12)) !== 0 && (hi & (1 << 11)) !== 0;
}

/** Set the accessed bit of the code/data descriptor at `addr` in memory if it is clear (SDM §3.4.5.1). */
export function markAccessed(cpu: SoftCpu, addr: number, hi: number): number {
  if (hi & (1 << 8)) return hi;
  const nhi = hi | (1 << 8);
  cpu.writeSys(cpu.efer & C.EFER_LMA ? addr + 4 : (addr + 4) >>> 0, 4, nhi);
  return nhi;
}

/** Load a segment register's hidden state from a (checked) code/data descriptor. */
export function loadFromDescriptor(cpu: SoftCpu, seg: number, selector: number, lo: number, hi: number): void {
  cpu.loadSegmentRaw(seg, selector, descBase(lo, hi), descLimit(lo, hi), descAttr(hi));
}

/**
 * A null selector in a data segment register: usable only to be reloaded. Intel clears the base (Linux's
 * X86_BUG_NULL_SEG describes AMD parts that keep it); FS/GS bases set later through MSRs are unaffected.
 */
export function loadNullSegment(cpu: SoftCpu, seg: number, selector: number): void {
  cpu.loadSegmentRaw(seg, selector & 0xffff, 0, 0, C.SEG_UNUSABLE);
}

/** Hidden state of a flat 64-bit (or 32-bit) code segment at privilege `dpl`, as SYSCALL/SYSENTER load it. */
export function flatCodeAttr(dpl: number, long: boolean): number {
  return C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | C.SEG_TYPE_READABLE | C.SEG_TYPE_ACCESSED | C.SEG_G |
    (dpl << C.SEG_DPL_SHIFT) | (long ? C.SEG_L : C.SEG_DB);
}

export function flatDataAttr(dpl: number): number {
  return C.SEG_P | C.SEG_S | C.SEG_TYPE_WRITABLE | C.SEG_TYPE_ACCESSED | C.SEG_G | C.SEG_DB | (dpl << C.SEG_DPL_SHIFT);
}

/** Register state that a multi-step system operation may change, so a fault partway can put it back. */
export class CpuSnapshot {
  private readonly sel = new Int32Array(6);
  private readonly base = new Float64Array(6);
  private readonly limit = new Float64Array(6);
  private readonly attr = new Int32Array(6);
  private rspLo = 0;
  private rspHi = 0;
  private rip = 0;
  private flags = 0;
  private cpl = 0;

  save(cpu: SoftCpu): void {
    for (let s = 0; s < 6; s++) {
      this.sel[s] = cpu.segSel[s]; this.base[s] = cpu.segBase[s];
      this.limit[s] = cpu.segLimit[s]; this.attr[s] = cpu.segAttr[s];
    }
    this.rspLo = cpu.gpr[8]; this.rspHi = cpu.gpr[9];
    this.rip = cpu.rip;
    this.flags = cpu.getFlags();
    this.cpl = cpu.cpl;
  }

  restore(cpu: SoftCpu): void {
    cpu.setFlagsValue(this.flags);
    for (let s = 0; s < 6; s++) cpu.loadSegmentRaw(s, this.sel[s], this.base[s], this.limit[s], this.attr[s]);
    cpu.gpr[8] = this.rspLo; cpu.gpr[9] = this.rspHi;
    cpu.rip = this.rip;
    cpu.cpl = this.cpl;
    cpu.updateMode();
  }
}

const snapshots = new WeakMap<SoftCpu, CpuSnapshot>();

/** This CPU's snapshot (one per CPU: its users never nest — each restores before its fault leaves it). */
export function snapshotOf(cpu: SoftCpu): CpuSnapshot {
  let s = snapshots.get(cpu);
  if (!s) { s = new CpuSnapshot(); snapshots.set(cpu, s); }
  return s;
}

/** Is IA-32e mode active (EFER.LMA)? */
export function longModeActive(cpu: SoftCpu): boolean {
  return (cpu.efer & C.EFER_LMA) !== 0;
}

/** Canonical 48-bit linear address check for a signed-number address (SDM vol. 3A §3.3.7.1). */
export function isCanonical(lin: number): boolean {
  return lin >= -C.TWO47 && lin < C.TWO47;
}
