// The inline software-TLB probe that translated code emits before touching guest RAM directly: shared by the memory
// library (./runtime.ts buildMemlib), the inline accesses of self-looping blocks (./translate.ts Translator.probe) and
// the 16-byte SSE operands (./sse.ts), so the three agree on what a hit is.
import { Op, Body, I32, I64 } from './emit.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
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
  b.i32(0xfff).op(Op.i32And);
  // (a byte never crosses the page end)
  if (size > 1) b.tee(l.off).i32(4096 - size).op(Op.i32GtU).brIf(slow);
  else b.set(l.off);
  emitTlbLookup(b, tag, a, l, slow);
  b.tee(l.pa).i64(ramSize - size).op(Op.i64GtU).brIf(slow);
  if (write) emitCodePageCheck(b, l, slow);
}

/**
 * The part of both probes after the page-offset check (local `off` set): branch to `slow` unless the page of the
 * linear address in `a` hits the TLB bank `tag`; on a hit leave the RAM offset (i64: the entry's physical page + off)
 * on the stack.
 */
function emitTlbLookup(b: Body, tag: number, a: number, l: ProbeLocals, slow: number): void {
  // (ti: the entry's address, tag then physical page number: both in one 16-byte entry, layout.ts S_TLB)
  b.get(a).i64(12).op(Op.i64ShrS).tee(l.vpn).op(Op.i32WrapI64);
  emitTlbSlot(b, l.ti);
  b.get(tag).op(Op.i32Add).tee(l.ti).mem(Op.f64Load, 3, 0);
  b.get(l.vpn).op(Op.f64ConvertI64s).op(Op.f64Ne).brIf(slow);
  b.get(l.ti).mem(Op.i64Load32u, 2, 8).i64(12).op(Op.i64Shl);
  b.get(l.off).op(Op.i64ExtendI32u).op(Op.i64Add);
}

/** A write's last check: branch to `slow` when the page at RAM offset `pa` holds decoded code (CodeCache.codePages). */
function emitCodePageCheck(b: Body, l: ProbeLocals, slow: number): void {
  b.get(l.pa).i64(12).op(Op.i64ShrU).op(Op.i32WrapI64).mem(Op.i32Load8u, 0, L.CODE_PAGES).brIf(slow);
}

/**
 * The probe above for a run of `n` bytes (i32 local, 1..4096) at the linear address in `a`: branch to `slow` unless
 * the whole run lies inside one page, hits the TLB bank `tag`, ends inside low RAM and, for a `write`, is in a page
 * without decoded code. One page, so one TLB entry and one code-page byte answer for every byte of it. On a hit
 * local `pa` holds the run's first RAM offset. (Translator.bulkString: REP MOVS/STOS as one memory.copy/fill.)
 */
export function emitTlbProbeRun(b: Body, tag: number, a: number, l: ProbeLocals, n: number, ramSize: number,
  write: boolean, slow: number): void {
  b.get(a).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).tee(l.off).get(n).op(Op.i32Add).i32(4096).op(Op.i32GtU).brIf(slow);
  emitTlbLookup(b, tag, a, l, slow);
  b.tee(l.pa).get(n).op(Op.i64ExtendI32u).op(Op.i64Add).i64(ramSize).op(Op.i64GtU).brIf(slow);
  if (write) emitCodePageCheck(b, l, slow);
}

/**
 * The access of `size` bytes to guest RAM after a probe hit: the RAM offset (i32) is on the stack, and for a `write`
 * the i64 value above it; a load leaves the value zero-extended to i64.
 */
export function emitRamAccess(b: Body, size: number, write: boolean): void {
  if (write) b.mem(size === 1 ? Op.i64Store8 : size === 2 ? Op.i64Store16 : size === 4 ? Op.i64Store32 : Op.i64Store, 0, WASM_RAM_OFFSET);
  else b.mem(size === 1 ? Op.i64Load8u : size === 2 ? Op.i64Load16u : size === 4 ? Op.i64Load32u : Op.i64Load, 0, WASM_RAM_OFFSET);
}

/** The parameters of a memory function: ld (st, tag bank, lin, pos) -> i64; st (st, tag bank, lin, value, pos). */
export const LD_PARAMS = [I32, I32, I64, I32], ST_PARAMS = [I32, I32, I64, I64, I32];

/**
 * The body of memory function ld`size` or st`size` (`write`): the probe above with a direct access to guest RAM on a
 * hit, else the helper `rd`/`wr` (function indices `fRd`, `fWr` of the module it goes in: SoftCpu.readLin/writeLin,
 * which may throw the fault), whose 64-bit load result's high half comes back in S_HI.
 */
export function memFnBody(size: number, write: boolean, ramSize: number, fRd: number, fWr: number): Body {
  const b = new Body(write ? 5 : 4);
  const st = 0, tag = 1, a = 2, w = 3, pos = write ? 4 : 3;
  const off = b.local(I32), ti = b.local(I32), vpn = b.local(I64), p = b.local(I64);
  const slow = b.open(Op.block);
  emitTlbProbe(b, tag, a, { off, ti, vpn, pa: p }, size, ramSize, write, slow);
  b.get(p).op(Op.i32WrapI64);
  if (write) b.get(w);
  emitRamAccess(b, size, write);
  b.op(Op.return);
  b.close();
  b.get(a).op(Op.f64ConvertI64s).i32(size);
  if (write) {
    b.get(w).op(Op.i32WrapI64).get(w).i64(32).op(Op.i64ShrU).op(Op.i32WrapI64).get(pos).call(fWr);
  } else {
    b.get(pos).call(fRd).op(Op.i64ExtendI32u);
    if (size === 8) b.get(st).mem(Op.i64Load32u, 2, L.S_HI).i64(32).op(Op.i64Shl).op(Op.i64Or);
  }
  return b;
}
