// Layout of the WebAssembly memory shared by the software CPU's wasm translator and the JavaScript CPU
// (GuestMemory.wasmMemory). Low RAM is at WASM_RAM_OFFSET (src/memory/guest-memory.ts); below it:
//   [HOT_COUNTS, +64 KiB)        unused (held tier 2's hot counters, removed in session 30)
//   [CODE_PAGES, +lowSize/4096)  the block cache's per-page "holds decoded code / armed" bytes (CodeCache.codePages)
//   [PAGE_GEN, +lowSize/1024)    the block cache's page generations (CodeCache.pageGen, Int32Array)
//   [DISPATCH, +4 MiB)           translated blocks by physical address for chaining inside wasm: 2^17 sets of two
//                                entries (ways) of (pa, page generation, function-table index, instruction count) as
//                                i32, set (pa ^ pa >>> 12) mod 2^17. (Direct-mapped, with 2^16 slots and the ~11k
//                                blocks a boot plus md5 translates, hot kernel blocks lost their slot to a newer
//                                translation: 2.4M of 5.8M calls into wasm came back through JavaScript for it; 0.7M
//                                with 2^18 slots, pairs of hot blocks sharing one; two ways keep such pairs.)
//   [STATE_BASE + k*STATE_STRIDE) vCPU k's state area, whose fields SoftCpu sees as typed-array views:
//     S_GPR  the general registers, 8 bytes each, little endian (register i at S_GPR + 8 * i: translated code
//            loads and stores one with a single i64 access; SoftCpu.gpr is an Int32Array view, halves at 2i, 2i+1)
//     S_LOP..S_LCY  the lazy-flag record while translated code runs (copied from/to SoftCpu's fields around a call)
//     S_HI   the high half of a 64-bit value read by the slow-path helper
//     S_RIP  RIP at the exit of translated code (f64); S_CHAIN, S_NBASE, S_R0, S_BLK: the dispatcher's position
//     S_SEG  segBase[6] (Float64Array)
//     S_XMM  the XMM registers, 16 bytes each, little endian (SoftCpu.xmm is a view of them)
//     S_INTRA region-internal block entries (statistics)
//     S_RASP, S_RAS the return-address stack (translate.ts Translator.rasPush/rasPop)
//     S_SSE  1 while SSE instructions may run (CR0.EM and CR0.TS clear, CR4.OSFXSR set): ./sse.ts's inline code
//            checks it and leaves the instruction to the JavaScript form when it is 0 (FpuState.sseOk)
//     S_EFL  SoftCpu.flags during a call (translated MOVS/STOS read DF there)
//     S_TLB  SoftCpu.wtlb: six banks of 4096 16-byte entries (tag: the page's linear address, i64; addend i32;
//            physical page number u32; a probe reads one cache line: ./tlb-probe.ts), bank (access << 1 | user);
//            TLB_BANK bytes apart (cpu.ts TLB_READ/WRITE/FETCH)
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';

export const HOT_COUNTS = 0;
export const CODE_PAGES = 64 * 1024;
export const PAGE_GEN = 1024 * 1024;
export const DISPATCH = 4 * 1024 * 1024;
/** log2 of the number of sets of the dispatch table (two 16-byte entries each: way 0, then way 1). */
export const DISPATCH_BITS = 17;
export const STATE_BASE = 8 * 1024 * 1024;

/**
 * Byte address of the DISPATCH set of physical address `pa`: set (pa ^ pa >>> 12) mod 2^DISPATCH_BITS, 32 bytes
 * each; its way 0 entry is there, way 1 16 bytes on. A block's entry may be in either way (WasmEngine.install moves
 * way 0's entry to way 1 to make room), so every lookup compares the pa of both. The JavaScript side
 * (SoftCpu.execBlock, WasmEngine's install and free, translate.ts exitStatic) uses this; the dispatcher (runtime.ts
 * buildDispatcher) emits the same hash in wasm.
 */
export function dispatchEntry(pa: number): number {
  return DISPATCH + (((pa ^ (pa >>> 12)) & ((1 << DISPATCH_BITS) - 1)) << 5);
}
/**
 * Bytes per vCPU state area: S_TLB + 6 * TLB_BANK = 394240 bytes, rounded up to a power of two. With WASM_RAM_OFFSET
 * (24 MiB) that leaves room for 32 state areas, as when the areas were 256 KiB (16 MiB offset): the banks got their
 * own physical pages (32 KiB each) and no longer fit in 256 KiB.
 */
export const STATE_STRIDE = 512 * 1024;
/** vCPUs that can have a state area below low RAM (32; more run without the translator). */
export const MAX_WASM_CPUS = (WASM_RAM_OFFSET - STATE_BASE) / STATE_STRIDE;

export const S_GPR = 0;
/** Byte offset of register r's 8-byte slot in the state area (its low half first: little endian). */
export const sGpr = (r: number): number => S_GPR + 8 * r;
export const S_LOP = 128;
export const S_LSZ = 132;
/** ld, ls, lr: each a 64-bit (lo, hi) pair, as setLazy's (dst, dstHi), (src, srcHi), (res, resHi). */
export const S_LD = 136;
export const S_LS = 144;
export const S_LR = 152;
export const S_LCY = 160;
export const S_HI = 164;
/** Set to 1 by the dispatcher before each block, to 0 by a helper after which chaining must stop (an event). */
export const S_CHAIN = 168;
/** Instructions the dispatcher ran before the current block, and the current block's start RIP (f64) and index. */
export const S_NBASE = 172;
export const S_RIP = 176;
export const S_R0 = 184;
export const S_BLK = 240;
/** Blocks the dispatcher entered straight from the previous one (added to the cache's chainHits after a call). */
export const S_CHAINS = 244;
/** Of those, blocks whose dispatch entry the previous block named (translate.ts exitStatic), and that entry. */
export const S_DIRECT = 248;
export const S_NEXT = 252;
export const S_SEG = 192;
/** XMM0-15 (256 bytes) and the "SSE usable" word (i32): see FpuState.sseOk (../ops/fpu-state.ts). */
export const S_XMM = 256;
export const S_SSE = 512;
/** Branches from a block of a region to another of the same function (translate.ts Region; statistics, like S_CHAINS). */
export const S_INTRA = 520;
/**
 * The return-address stack (translate.ts Translator.rasPush/rasPop): S_RASP counts pushes, in bytes (RAS_STRIDE per
 * push; the dispatcher zeroes it at each call; SoftCpu.invalidateFetch, i.e. every TLB flush and INVLPG, too), S_RAS
 * (after S_PHITS) holds RAS_N entries of RAS_STRIDE bytes, the top one at S_RAS + (S_RASP mod RAS_N * RAS_STRIDE)
 * (a push adds RAS_STRIDE first, then writes there; a pop reads there, then subtracts: the offset of the last push is
 * that of the value it left): the
 * return address (i64, linear), the (pa, page generation) key of its block (i64, as a DISPATCH entry's first two
 * words), the byte address of its DISPATCH set (i32) and translate.ts RET_BRANCH's token (i32; the two written by
 * one i64 store of a constant). A power-of-two stride makes the entry's offset one AND of
 * S_RASP (no multiply, no shift): 3 wasm operations fewer per CALL, 2 per RET.
 */
export const S_RASP = 524;
export const RAS_N = 16;
export const RAS_STRIDE = 32;
/** Empty vCPU state area `st`'s return-address stack (the JavaScript side; `i32` a view of the wasm memory): depth 0. */
export function clearRas(i32: Int32Array, st: number): void {
  i32[(st + S_RASP) >> 2] = 0;
}
/**
 * The (pa, page generation) key of the block whose dispatch set a block named in S_NEXT (i64, as a DISPATCH entry's
 * first two words; translate.ts NEXT_KEY): after the return-address stack.
 */
export const S_NKEY = 1008;
/** SoftCpu.flags (whole EFLAGS; translated MOVS/STOS read DF from it), stored with the lazy-flag record (runtime.ts giveFlags). */
export const S_EFL = 1016;
/** The first-level TLB (cpu.ts SoftCpu.wtlb): entry (bank, slot) at S_TLB + bank * TLB_BANK + slot * TLB_ENTRY. */
export const S_TLB = 1024;
/**
 * log2 of the bytes of one entry: its tag (i64, the page's linear address; -1 empty), the addend (i32, at +8) and
 * the physical page number (u32, at +12); ./tlb-probe.ts.
 */
export const TLB_ENTRY_SHIFT = 4;
/** Bytes of one bank (4096 entries). */
export const TLB_BANK = 4096 << TLB_ENTRY_SHIFT;
/** Byte distance from a read bank to the write bank of the same privilege (cpu.ts: BANK_WRITE - BANK_READ). */
export const TLB_WRITE_DELTA = 2 * TLB_BANK;
/** Byte distance from a read bank to the fetch bank of the same privilege. */
export const TLB_FETCH_DELTA = 4 * TLB_BANK;
/** Byte distance from the supervisor banks to the user banks. */
export const TLB_USER_DELTA = TLB_BANK;
/**
 * tlbSlot's multiplier of a page's 16 MiB window number. Odd, ~4096 / golden ratio: windows 1, 2, 3 apart put
 * the pages that share a slot ~0x9e3, 0x3c6, 0xda9 slots apart (XOR) rather than at the same offset.
 */
export const TLB_SLOT_MIX = 0x9e3;
/**
 * The first-level slot of page number `vpn`: its low 12 bits XOR (its 16 MiB window number times TLB_SLOT_MIX), of
 * its low 32 bits (translated code computes the same from an i64 address, ./tlb-probe.ts emitTlbSlot).
 * With the low 12 bits alone, pages 16 MiB apart shared a slot, and Linux's hot pages often are: the direct map keeps
 * RAM's layout, so two kernel pages at the same offset of different 16 MiB of RAM (in a shell loop, ~0xffff888005631000
 * and ~0xffff88800f631000, data of the task and of the per-CPU area at the top of RAM) displaced each other ~6 times
 * per iteration. XOR with the window number alone moved the partner only a few pages away (window numbers 5 and 0xf:
 * 0x631 <-> 0x63b), where hot data continued: the boot then made as many refills as before. The multiplication
 * sends neighbouring windows' partners far apart. Within one 16 MiB window the slots stay distinct; across a
 * window's end, the last page of window w and the next page share a slot when w * MIX = 0x30e mod 2048 (one window
 * end in 2048; cpu.ts tlbEdge keeps the second page out of translated code's view). (Adding the window's term instead of
 * XOR avoids those, but moved Linux's pages onto other slots: the syscall loop of bench/engines then made 11x the
 * second-level refills, a hot pair sharing a slot.)
 */
export function tlbSlot(vpn: number): number {
  const x = vpn | 0; // (ToInt32 of an exact integer: its low 32 bits)
  return (x ^ Math.imul(x >>> 12, TLB_SLOT_MIX)) & 0xfff;
}
/** End of the state area's fields. */
export const S_END = S_TLB + 6 * TLB_BANK;

/**
 * The privilege the dispatcher looks blocks up for (1: CPL 3, else 0): it stores its `user` argument here at each
 * call, and the replay helper changes it after an instruction that changed CPL in 64-bit mode (SYSCALL, SYSRET), so
 * the chain goes on in the new privilege's fetch-TLB bank (runtime.ts buildDispatcher, WasmEngine.replay). After the
 * TLB banks, with the statistics below.
 */
export const S_USER = S_END;
/**
 * RINGZERO_WASM_EXIT_STATS=1 only (translate.ts EXIT_STATS): the kind of exit the last block left by (translate.ts
 * X_*), stored by the block, and the dispatcher's counts per (kind, outcome) as i32 (runtime.ts buildDispatcher):
 * at S_XSTATS + (kind * 8 + outcome) * 4 (256 bytes).
 */
export const S_XKIND = S_USER + 4;
export const S_XSTATS = S_USER + 16;
/**
 * SoftCpu.kernelGsBase (f64: the IA32_KERNEL_GS_BASE MSR), in the state area so that translated SWAPGS swaps it with
 * the GS base (S_SEG + 5 * 8) without leaving wasm (translate.ts emitSwapgs).
 */
export const S_KGS = S_USER + 8;
/**
 * CPL during a call (i32), stored by the runtime at the call's start and wherever a helper changed it (runtime.ts
 * run, replay, sysCall): translated CLI, STI and SWAPGS do their work inline at CPL 0 and ask the helper `sy` else
 * (which raises the #GP(0) the SDM gives them).
 */
export const S_CPL = S_XSTATS + 256;
/**
 * 0 when the local APIC is known to have no maskable interrupt to give (the helper `sy` found none at an STI, and no
 * wake-up (SoftCpu.notifyEvent) nor event request came since), else 1: translated STI sets IF inline only at 0, as
 * ../ops/interrupt-flag.ts stiSetsIf does when nothing is pending (no shadow, no event check); at 1 it asks the
 * helper, which opens the shadow and ends the chain when an interrupt waits.
 */
export const S_PEND = S_CPL + 4;
/** 1 after translated CLI/STI changed S_EFL's IF: the runtime copies IF to SoftCpu.flags (runtime.ts syncIf). */
export const S_IFW = S_CPL + 8;

/**
 * Dispatcher entries that a block named (S_NEXT: a static exit or a predicted RET into a page's translated block in
 * another function), counted per target page, hashed (i32 at S_PHITS + 4 * ((pa >>> 12) & (PHITS_N - 1))): the
 * runtime reads and clears them every REGION_SCAN instructions and translates again, as one region, the blocks of a
 * page that keep chaining through the dispatcher (runtime.ts buildDispatcher, WasmEngine.reregion). 16 KiB, after
 * the words above.
 */
export const S_PHITS = S_USER + 512;
export const PHITS_N = 4096;
/** The return-address stack's entries (see S_RASP): 512 bytes after S_PHITS. */
export const S_RAS = S_PHITS + 4 * PHITS_N;

/** The views of a state area that the SSE state lives in (SoftCpu.xmm and FpuState.sseOk). */
export function sseViews(buffer: ArrayBuffer, st: number): { xmm: Uint8Array<ArrayBuffer>; sseOk: Int32Array<ArrayBuffer> } {
  return { xmm: new Uint8Array(buffer, st + S_XMM, 256), sseOk: new Int32Array(buffer, st + S_SSE, 1) };
}
/**
 * 1 (SYSCALL) or 2 (SYSRETQ) after translated code switched privilege inline (translate.ts emitSyscall): S_CPL,
 * S_USER, S_RIP, S_EFL and the registers hold the new state, but SoftCpu's CPL, CS and SS (JavaScript state) are
 * still the old ones; the runtime loads them (runtime.ts syncSys, from the kind and S_STAR_CS/S_STAR_RET) before any
 * helper or the call's end reads them. 0 otherwise.
 */
export const S_SYS = S_CPL + 12;
/**
 * The SYSCALL MSRs as translated SYSCALL/SYSRETQ read them (runtime.ts pushSysMsrs: copied from SoftCpu whenever its
 * MSR map or EFER changed, at a call's start and after a replay, the only place WRMSR runs): S_SCE 1 while EFER.SCE
 * is set (else the helper raises #UD), STAR[47:32] and STAR[63:48] (i32), SFMASK[31:0] (i32), LSTAR (f64, signed).
 * S_SYS_VER holds EFER at the copy (the MSR map's record is compared by identity on the JavaScript side).
 */
export const S_SCE = S_CPL + 16;
export const S_STAR_CS = S_CPL + 20;
export const S_STAR_RET = S_CPL + 24;
export const S_SFMASK = S_CPL + 28;
export const S_SYS_EFER = S_CPL + 32;
export const S_LSTAR = S_CPL + 40;
/**
 * 1 while CR4.TSD is set (RDTSC is then #GP(0) above CPL 0: translate.ts emitRdtsc asks the helper there), and CR4 at
 * the copy; kept with the MSRs above (runtime.ts pushSysState: MOV to CR4 is replayed).
 */
export const S_TSD = S_CPL + 48;
export const S_SYS_CR4 = S_CPL + 52;
/** Static exits that tail-called their target's translation (translate.ts Translator.tailExit; statistics, like S_INTRA). */
export const S_TAILS = S_CPL + 56;
/** S_CPL + 64 .. S_CPL + 92: free (held CALLRET's nested-call state, removed in session 30). */
/**
 * RINGZERO_WASM_EXIT_STATS=1 only: register write-backs executed (i32 counters) before memory-library calls and at
 * other flushes (helpers, exits), then memory-library calls made, ... (twelve i32: translate.ts Translator.wbCount;
 * below S_PHITS).
 */
export const S_WBSTATS = S_USER + 400;
