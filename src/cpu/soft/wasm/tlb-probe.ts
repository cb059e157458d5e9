// The inline software-TLB probe that translated code emits before touching guest RAM directly: shared by the memory
// library (./runtime.ts buildMemlib), the inline accesses of self-looping blocks (./translate.ts Translator.probe) and
// the 16-byte SSE operands (./sse.ts), so the three agree on what a hit is.
import { Op, type Body } from './emit.ts';
import * as layout from './layout.ts';
/** The layout constants as a plain object (under tsx a namespace import reads each one through a getter call). */
const L = { ...layout };

/**
 * Replace the page number's low 32 bits (i32, on the stack) by the byte offset of its entry inside a bank: its slot
 * (cpu.ts tlbSlot: the low 12 bits XOR the next 12 times TLB_SLOT_MIX) << TLB_ENTRY_SHIFT. `tmp`: an i32 local it may clobber. Every
 * inline probe of the first-level TLB computes its slot here.
 */
export function emitTlbSlot(b: Body, tmp: number): void {
  b.tee(tmp).get(tmp).i32(12).op(Op.i32ShrU).i32(L.TLB_SLOT_MIX).op(0x6c /* i32.mul */).op(Op.i32Xor);
  b.i32(0xfff).op(Op.i32And).i32(L.TLB_ENTRY_SHIFT).op(Op.i32Shl);
}

/** Locals the probe uses: page offset (i32), TLB entry (i32, its address), page number (i64), RAM offset (i64). */
export interface ProbeLocals { off: number; ti: number; vpn: number; pa: number }

/**
 * Emit the probe of a `size`-byte access at the linear address in local `a` (i64): branch to `slow` unless it is
 * aligned to `align` bytes (when given), lies inside one page, hits the first-level TLB bank whose address is in
 * local `tag` (this privilege, read or write bank), falls in low RAM (`ramSize`) and, for a `write`, is not in a page
 * holding decoded code (CodeCache.codePages: the slow path notes the write). On a hit local `pa` holds the RAM offset.
 */
export function emitTlbProbe(b: Body, tag: number, a: number, l: ProbeLocals, size: number, ramSize: number,
  write: boolean, slow: number, align = 0): void {
  b.get(a).op(Op.i32WrapI64);
  if (align !== 0) b.tee(l.off).i32(align - 1).op(Op.i32And).brIf(slow).get(l.off);
  b.i32(0xfff).op(Op.i32And).tee(l.off).i32(4096 - size).op(Op.i32GtU).brIf(slow);
  // (ti: the entry's address, tag then physical page number: both in one 16-byte entry, layout.ts S_TLB)
  b.get(a).i64(12).op(Op.i64ShrS).tee(l.vpn).op(Op.i32WrapI64);
  emitTlbSlot(b, l.ti);
  b.get(tag).op(Op.i32Add).tee(l.ti).mem(Op.f64Load, 3, 0);
  b.get(l.vpn).op(Op.f64ConvertI64s).op(Op.f64Ne).brIf(slow);
  b.get(l.ti).mem(Op.i64Load32u, 2, 8).i64(12).op(Op.i64Shl);
  b.get(l.off).op(Op.i64ExtendI32u).op(Op.i64Add).tee(l.pa).i64(ramSize - size).op(Op.i64GtU).brIf(slow);
  if (write) b.get(l.pa).i64(12).op(Op.i64ShrU).op(Op.i32WrapI64).mem(Op.i32Load8u, 0, L.CODE_PAGES).brIf(slow);
}
