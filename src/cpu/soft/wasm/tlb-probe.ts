// The inline software-TLB probe that translated code emits before touching guest RAM directly: shared by the memory
// library (./runtime.ts buildMemlib), the inline accesses of self-looping blocks (./translate.ts Translator.probe) and
// the 16-byte SSE operands (./sse.ts), so the three agree on what a hit is.
import { Op, Body, I32, I64 } from './emit.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
import * as layout from './layout.ts';
/** The layout constants as a plain object (under tsx a namespace import reads each one through a getter call). */
const L = { ...layout };

/**
 * Push (i32) the byte offset inside a bank of the entry of the page holding the address in i64 local `a`: its slot
 * (layout.ts tlbSlot: the page number's low 12 bits XOR the next 12 times TLB_SLOT_MIX) << TLB_ENTRY_SHIFT, computed
 * as (low half of a >> 8) XOR (low half of a >> 24) * (TLB_SLOT_MIX << 4), masked to bits 4-15: the same bits
 * (a >> 8 holds the page number shifted left by 4 in those bits, the bits below are masked off, and the product's
 * bits 4-15 depend only on the low 12 bits of the window number), without the shift back. Every inline probe of the
 * first-level TLB computes its slot here.
 */
export function emitTlbSlot(b: Body, a: number): void {
  b.get(a).i64(8).op(Op.i64ShrU).op(Op.i32WrapI64);
  b.get(a).i64(24).op(Op.i64ShrU).op(Op.i32WrapI64).i32(L.TLB_SLOT_MIX << L.TLB_ENTRY_SHIFT).op(0x6c /* i32.mul */).op(Op.i32Xor);
  b.i32(0xfff << L.TLB_ENTRY_SHIFT).op(Op.i32And);
}

/**
 * The entry layout the probes read (layout.ts S_TLB; cpu.ts SoftCpu.fillTlb writes it): at +0 the tag, the linear
 * address of the page's first byte (i64; -1 when empty: its low 12 bits are never all zero, so no address matches
 * it), at +8 the addend (i32: the page's RAM offset less the tag, modulo 2^32, so that the RAM offset of an address
 * in the page is its low 32 bits plus the addend) and at +12 the physical page number (u32). Only pages of low RAM
 * lying entirely inside it get an entry (MMIO, the LAPIC page and high RAM miss and take the slow path, which
 * decides), so a hit needs no RAM-size check. A hit costs: slot hash, tag load, compare, addend load, add.
 */
/**
 * Locals the probe uses: the entry's address (i32); optional: an i64 that gets the page address it compared (`key`)
 * and an i32 that gets the entry's addend on a hit (`add`), for Translator.load's LAST_PAGE.
 */
export interface ProbeLocals { ti: number; key?: number; add?: number }

/**
 * Push the i64 an access of `size` bytes at the linear address in local `a` compares with an entry's tag: the page
 * address of its last byte, or with `align`, of its first byte with the alignment bits kept. An access that crosses
 * its page's end (or is misaligned) then names another page than its first byte's and misses, so there is no
 * separate page-end check: the entry probed is the first byte's page's slot, which never holds the next page (a
 * page sharing its predecessor's slot gets no entry, cpu.ts tlbEdge). The two places where the last byte's page is mapped though the first byte's is not (an
 * access from the top of the address space that wraps to linear page 0, and one from the last non-canonical page
 * into the first canonical page of the upper half) are pages that never get an entry (cpu.ts tlbEdge).
 */
export function emitTlbKey(b: Body, a: number, size: number, align = 0): void {
  b.get(a);
  if (align !== 0) { b.i64(-4096 | (align - 1)).op(Op.i64And); return; }
  if (size > 1) b.i64(size - 1).op(Op.i64Add);
  b.i64(-4096).op(Op.i64And);
}

/**
 * Emit the probe of a `size`-byte access at the linear address in local `a` (i64): branch to `slow` unless it is
 * aligned to `align` bytes (when given), lies inside one page, hits the first-level TLB bank whose address is in
 * local `tag` (this privilege, read or write bank) and, for a `write`, is not in a page holding decoded code
 * (CodeCache.codePages: the slow path notes the write, and marks the page in the dirty-page log). On a hit the RAM
 * offset (i32) is left on the stack (a load or store at WASM_RAM_OFFSET + it touches the guest's bytes).
 */
export function emitTlbProbe(b: Body, tag: number, a: number, l: ProbeLocals, size: number,
  write: boolean, slow: number, align = 0): void {
  emitTlbEntry(b, tag, a, l);
  emitTlbKey(b, a, size, align);
  if (l.key !== undefined) b.tee(l.key);
  b.op(Op.i64Ne).hint(false).brIf(slow);
  if (write) emitCodePageCheck(b, l, slow);
  emitRamOffset(b, a, l);
}

/** Compute the entry's address of the page of `a` in bank `tag` into l.ti and push its tag (i64). */
function emitTlbEntry(b: Body, tag: number, a: number, l: ProbeLocals): void {
  emitTlbSlot(b, a);
  b.get(tag).op(Op.i32Add).tee(l.ti).mem(Op.i64Load, 3, 0);
}

/** Push the RAM offset (i32) of the address in `a` through the entry at l.ti (its addend). */
function emitRamOffset(b: Body, a: number, l: ProbeLocals): void {
  b.get(a).op(Op.i32WrapI64).get(l.ti).mem(Op.i32Load, 2, 8);
  if (l.add !== undefined) b.tee(l.add);
  b.op(Op.i32Add);
}

/** A write's last check: branch to `slow` when the entry's physical page holds decoded code (CodeCache.codePages). */
function emitCodePageCheck(b: Body, l: ProbeLocals, slow: number): void {
  b.get(l.ti).mem(Op.i32Load, 2, 12).mem(Op.i32Load8u, 0, L.CODE_PAGES).hint(false).brIf(slow);
}

/**
 * The probe above for a run of `n` bytes (i32 local, 1..4096) at the linear address in `a`: branch to `slow` unless
 * the whole run lies inside one page (its last byte's page is its first's), hits the TLB bank `tag` and, for a
 * `write`, is in a page without decoded code. One page, so one TLB entry and one code-page byte answer for every
 * byte of it. On a hit the run's first RAM offset (i32) is on the stack. (Translator.bulkString: REP MOVS/STOS as
 * one memory.copy/fill; stackRun.)
 */
export function emitTlbProbeRun(b: Body, tag: number, a: number, l: ProbeLocals, n: number,
  write: boolean, slow: number): void {
  emitTlbEntry(b, tag, a, l);
  b.get(a).get(n).i32(-1).op(Op.i32Add).op(Op.i64ExtendI32u).op(Op.i64Add).i64(-4096).op(Op.i64And);
  b.op(Op.i64Ne).hint(false).brIf(slow);
  if (write) emitCodePageCheck(b, l, slow);
  emitRamOffset(b, a, l);
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
export function memFnBody(size: number, write: boolean, fRd: number, fWr: number): Body {
  const b = new Body(write ? 5 : 4);
  const st = 0, tag = 1, a = 2, w = 3, pos = write ? 4 : 3;
  const ti = b.local(I32);
  const slow = b.open(Op.block);
  emitTlbProbe(b, tag, a, { ti }, size, write, slow);
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
