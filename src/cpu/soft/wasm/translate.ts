// The WebAssembly translator of the software CPU (issue 4; opt-in with RINGZERO_JIT=wasm).
//
// Why: the JavaScript translator (../jit/translate.ts) gains little on the Linux boot because every generated
// function costs V8 milliseconds of optimizing compilation before it is fast, so only very hot blocks repay it.
// WebAssembly is compiled by V8's baseline compiler (Liftoff) straight to machine code, cheaply, so blocks can be
// translated after a few hundred replays.
//
// How: guest low RAM, the vCPU's registers (SoftCpu.gpr), its software TLB (SoftCpu.wtlb), segment bases and the
// block cache's code-page bytes and page generations live in one WebAssembly.Memory (./layout.ts; GuestMemory maps
// the RAM memfd into it), so translated code reads and writes them with plain loads and stores. A cached 64-bit
// block of the block cache (../code-cache.ts) becomes one wasm function (st, r0, left, user, k) -> instructions run;
// hot blocks are queued and translated WASM_BATCH per module (a module has a fixed cost of its own):
// - the fast forms of ../fast-forms.ts (MOV, LEA, ALU incl. 8-bit, INC/DEC, SHL/SHR/SAR by a constant,
//   MOVZX/MOVSXD, CMOVcc, SETcc, NOP, PUSH/POP, Jcc/JMP/CALL/RET, and of the session-11 forms MOVSX, NOT/NEG reg,
//   ADC/SBB, INC/DEC/PUSH memory, indirect CALL/JMP, IMUL, shifts by CL, BT*, CMPXCHG/XADD memory, 16-bit ALU/MOV,
//   CWDE/CDQ..., BSWAP, PUSH imm, PUSHF, SETcc memory, LEAVE; session 12: MUL/IMUL/DIV/IDIV rAX, MOVS/STOS with
//   and without REP; session 13: CMPXCHG m8, CMPXCHG16B, byte shifts by 1..7, NOT/NEG memory, and LOCK on the
//   read-modify-write memory forms; session 14: 16-bit ROL/ROR/shifts by a constant, SHLD/SHRD by CL, ADC/SBB rAX,imm)
//   are emitted with their operands as constants; a Jcc straddling its page's end, not taken, leaves inline
//   (Translator.straddlingBranch); RDTSC/RDTSCP, SWAPGS, CLD/STD and
//   MOV r/m,Sreg call the small helper `sy` (their state is JavaScript's) instead of a replay;
// - guest registers are cached in locals within a block (Translator.rc/rs: loaded on first use, written back before
//   the memory library, a helper or an exit; a self-looping block keeps them across iterations and probes the TLB
//   inline, calling the memory library (and writing registers back) only on a miss);
// - a memory operand calls the shared memory library (buildMemlib: TLB probe (./tlb-probe.ts: pages of low RAM
//   only), for stores the code-page byte, then the access; a miss, MMIO, a page-crossing access or a store into a page holding code calls the
//   helper `rd`/`wr`, which runs SoftCpu.readLin/writeLin and may throw the CPU fault through the wasm frames);
//   when that raised an event (self-modifying code, MMIO side effects) the block ends after the instruction;
//   code translated once user code runs (./runtime.ts INLINE_LATE) probes the TLB inline at every memory operand
//   (EmitOpts.inline);
// - the lazy-flag record of a producer is kept in locals, so a following Jcc/SETcc/CMOVcc/INC/DEC of the same block
//   evaluates its condition inline, and stored to the state area only where something can read it, as the dirty
//   registers (Translator.produced, commitFlags: before the memory library, a helper or an exit); for flags from before
//   the block (the runtime copies the CPU's record into the state area at each call) the block asks the flag
//   library (buildFlaglib: one shared wasm function) for their bits once, then evaluates conditions inline;
// - every other instruction (rotates, anything without a fast form) is replayed through the helper `rp`, which
//   runs its closure/handler exactly as SoftCpu.runBlock does, and the block ends if that changed RIP's course or
//   raised an event;
// - blocks of one page translated in one batch that branch to each other form a region: one function with a
//   br_table on the entered block, where a static exit to another of them is a branch, not a return to the
//   dispatcher (Region, translateRegion; RINGZERO_WASM_REGIONS=0: off); a later batch takes the translated blocks of
//   its pages that branch with its blocks along, translated again into its regions (runtime.ts WasmEngine.reform);
// - a CALL pushes its return address and that address's block (same page only) on a small return-address stack in
//   the state area; a RET that pops the same address names that block's dispatch entry to the dispatcher (S_NEXT), as
//   a static exit does, instead of the fetch-TLB probe and table lookup (Translator.rasPush/rasPop; the stack lives
//   for one dispatcher call and is emptied by every TLB flush and INVLPG; RINGZERO_WASM_RAS=0: off);
// - a block whose final direct branch targets its own start loops inside the function; and a dispatcher
//   (./runtime.ts buildDispatcher) follows RIP from block to block through the fetch TLB and a table of translated blocks in
//   the wasm memory, so chains of translated blocks never return to JavaScript (at most CHAIN_LIMIT instructions
//   per call and never past the caller's budget; nothing else can raise an event meanwhile, since the only
//   JavaScript that runs during a call is the helpers, which stop the chain when they raised one).
//
// Exactness, as the interpreter and ../jit/translate.ts: `cpu.instructions` counts every instruction executed,
// the faulting one included; a fault leaves `ripStart` at the faulting instruction and every earlier instruction
// committed (dirty registers and a deferred flag record are stored before every memory-library call, helper and
// exit; the caller copies the state area's flag record back). Helpers learn the faulting instruction from their
// `pos` argument (index << POS_IX | loop count).
import type { Block, BlockEntry } from '../code-cache.ts';
import { CHAIN_LIMIT } from '../code-cache.ts';
import { Form, FORM_COUNT, SY_SYSCALL, SY_SYSRETQ, SY_TSC } from '../fast-forms.ts';
import { FLAGS_IMPLEMENTED, SYSRET_FLAGS } from '../constants.ts';
import { Body, ModuleBuilder, Op, I32, I64, F64 } from './emit.ts';
import * as layout from './layout.ts';
import { emitTlbProbe, emitTlbProbeRun, emitTlbSlot, emitTlbKey, emitRamAccess, LD_PARAMS, ST_PARAMS } from './tlb-probe.ts';
import { emitSse } from './sse.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
import { DUMP_FILE, dumpFunction } from './dump.ts';
/** The layout constants as a plain object (under tsx a namespace import reads each one through a getter call). */
const L = { ...layout };

/** A translated block: the wasm function and the byte offset of each instruction in the block. */
export interface WasmCode {
  fn: (st: number, r0: number, left: number, user: number, k: number) => number;
  offs: number[];
  /**
   * Its dispatch word (the DISPATCH entry's third i32, S_BLK): the function-table index of the function holding
   * the block (the dispatcher calls it from there), | the block's number in that function's region << K_SHIFT
   * (0 for a block translated alone), which the function is called with as `k`.
   */
  idx: number;
}

/**
 * A helper's `pos` argument (Translator.pos): the instructions the function ran before the current pass in bits 0-14
 * (POS_N: below CHAIN_LIMIT + MAX_BLOCK, or a self-loop's LOOP_LIMIT + MAX_BLOCK), the instruction's index in its
 * block in bits 15-19 (POS_IX; MAX_BLOCK 32) and the region member from bit POS_MEMBER (below 2^12: REGION_MAX,
 * K_SHIFT). The count in the low bits makes it `n | constant`: three wasm operations at each helper call of a region
 * or self-loop, where n << 5 | index took five (~4-6% of all operations emitted were pos arguments).
 */
export const POS_MEMBER = 20, POS_N = 0x7fff, POS_IX = 15;
/** The instruction's index in its block, and the instructions run before its pass, of a helper's `pos`. */
export function posIx(pos: number): number { return (pos >>> POS_IX) & 31; }
export function posN(pos: number): number { return pos & POS_N; }
/** Bits of a dispatch word below the region member number (function-table indices stay below 2^K_SHIFT). */
export const K_SHIFT = 20;
/**
 * Blocks of one region at most (one wasm function). The cap rarely applies (boot + md5: ~2300-2900 regions);
 * 64 and 4 measured within noise of 16 (main-thread CPU 11.3 / 11.9 vs 11.7 s, 4 rounds). 32 since session 19, once a
 * group over the cap was cut between its loops (cutGroup): boot + md5 of 32 MiB, 16 vs 32 side by side (--stats),
 * dispatcher-named same-page entries 5.28M/5.02M -> 2.78M/2.70M, direct block-to-block entries 14.0M -> 11.6M,
 * code 15.2-15.4 MiB either way; the md5's main-thread CPU 3.23/3.12 and 4.00/3.47 s (two concurrent pairs, host
 * load 18-35), to the prompt 12.69/12.96 and 16.03/15.22 s. RINGZERO_WASM_REGION_MAX sets it (A/B).
 */
export const REGION_MAX = Number(process.env.RINGZERO_WASM_REGION_MAX ?? 32);
/**
 * Blocks of one page translated in one batch that branch to each other share a function (RINGZERO_WASM_REGIONS=0:
 * off). Boot + md5 of 16 MiB, main-thread CPU of the VMM process, 5 interleaved rounds on a loaded host: 12.55 s
 * without, 11.20 s with (lower in every round); ~43M of the ~77M block entries become branches inside a region.
 * Tried and not kept then (before registers were one i64 slot each: a load cost 7 operations): registers cached in
 * locals across a region's forward branches (each block's br_table entry loading those its forward branches keep; all
 * kept clean): 12.02 s, slower than without it in 3 of 5 rounds (branch wip-region-regs of worktree h-dispatch).
 * Session 24: REGION_REGS, over every branch of a region, backward ones too (off, no gain; removed in session 30).
 */
export const REGIONS = process.env.RINGZERO_WASM_REGIONS !== '0';
/**
 * Regions also join blocks of other pages of the batch that a static exit reaches by linear address (the address
 * each block was queued at): Region, Translator.crossBranch (RINGZERO_WASM_CROSS_PAGE=0: off).
 */
const CROSS_PAGE = process.env.RINGZERO_WASM_CROSS_PAGE !== '0';

/**
 * A region being emitted: blocks of one physical page and page generation, in one wasm function
 * (st, r0, left, user, k). The function starts with a br_table on k (the block it is entered at, from the dispatch
 * word) into the code of member k; a static exit (exitStatic) to another member's address branches there directly
 * (forward: to the end of the label block that precedes its code; backward: k = target, back to the br_table)
 * instead of returning to the dispatcher, when the dispatcher would have entered it: the chain is still on (S_CHAIN:
 * a helper that raised an event, e.g. a store into this page, cleared it), the instructions of this call stay below
 * the dispatcher's limit (min(left, CHAIN_LIMIT - S_NBASE)) and the target fits the budget. r0 (param) and r0i then
 * move to the target's start (same page, same linear mapping: the dispatcher's direct entry assumes the same).
 * Helpers learn the member from pos (k << POS_MEMBER | index << POS_IX | instructions of this call before the pass); the runtime
 * finds it in its list of the function's blocks (WasmEngine.blocks) and its RIP from S_R0 (the entry block's) and
 * the pa difference.
 */
interface Region {
  members: Block[];
  /** Member number of each member's physical address. */
  at: Map<number, number>;
  /**
   * The linear address each member was queued at (RIP then: WasmEngine.exec), and the member number of each such
   * address: a static exit to another page branches to the member queued at its linear address (see exitStatic).
   * Empty without them (tests building regions directly).
   */
  lins: number[];
  atLin: Map<number, number>;
  /** The label whose end starts member j's code (label j innermost), and the loop around the br_table. */
  labels: number[];
  disp: number;
  /** The member being emitted. */
  cur: number;
  /** Locals: the dispatcher's instruction limit for this call, and the count of internal branches (statistics). */
  climit: number;
  intra: number;
  /** Per member, flagsDead from its start (Translator.memberDead; filled as asked). */
  dead: boolean[];
  /**
   * REGION_LIM: local, the highest count after which a branch enters any member: min(climit - 1, left - the largest
   * member's instruction count), so one compare stands for the dispatcher's two (its limit, the target's fit in
   * the budget). Only a member smaller than the largest, in the last few instructions of the budget, then leaves
   * where it could have branched: the dispatcher enters it (or stops at the same limit) as it would have; -1: off.
   */
  lim: number;
}

/** Most instructions one call of a self-looping block executes. */
const LOOP_LIMIT = 1024;
/**
 * REP MOVS/STOS with more elements than this are replayed (the JavaScript fast paths copy or fill a page run with
 * one TypedArray call) instead of looping here one element at a time through the memory library (two calls per
 * MOVS element): Linux copies socket buffers and pages to and from user memory with `rep movsq` of hundreds of
 * elements (copy_user_generic_string), which cost more in the loop than the helper's round trip. bench/io, soft
 * engine, MiB per CPU-second, 1024 vs 32 alternately (two pairs, busy host): tcp 20.1/24.0 -> 31.6/31.6, tcpout
 * 26.0/24.0 -> 39.3/30.0, sequential write 15.5/13.1 -> 15.4/16.3.
 */
const STRING_INLINE_MAX = 32;
/** REP MOVS/STOS as one memory.copy/fill per page run (Translator.bulkString; RINGZERO_WASM_BULK_STRING=0: off). */
const BULK_STRING = process.env.RINGZERO_WASM_BULK_STRING !== '0';
/**
 * Most page runs one execution of a REP MOVS/STOS copies or fills in wasm (Translator.bulkString); what is left
 * then goes on through the replay (the interpreter also bounds one execution: SLOW_CHUNK elements, 256 KiB).
 */
const BULK_PASSES = 16;
// Lazy-flag kinds (../cpu.ts Lazy) and ALU operations (as in ../fast-forms.ts).
const L_ADD = 1, L_ADC = 2, L_SUB = 3, L_SBB = 4, L_LOGIC = 5, L_INC = 6, L_DEC = 7;
/**
 * RINGZERO_WASM_NO_RES=0: off. A translated ADD or SUB record (CMP, NEG, XADD, CMPXCHG too) goes to the state area
 * without its result: r is d + s / d - s in the bits its size keeps (every producer computes it so, Translator.alu),
 * and the readers of a record of a plain kind (not SYNCED: a translated producer's) work it out, the flag library
 * (buildFlaglib) and the runtime's copy to the CPU (runtime.ts syncToCpu). Records are stored at every exit and
 * before every memory-library call: ~4.5% of the wasm operations emitted were ADD/SUB records, 12 each, now 9.
 */
export const NO_RES = process.env.RINGZERO_WASM_NO_RES !== '0';
/** Record kind of translated code only: the arithmetic flags are explicit EFLAGS bits in S_LD (after a shift). */
export const EXPLICIT = -2;
const ADD = 0, OR = 1, AND = 4, SUB = 5, XOR = 6, CMP = 7, TEST = 8;
const KIND = [L_ADD, L_LOGIC, 0, 0, L_LOGIC, L_SUB, L_LOGIC, L_SUB, L_LOGIC];
void AND;

const TWO47 = 140737488355328;
/** The extreme i64 values (BigInt constants made once, not per emission). */
const I64_MIN = -(2n ** 63n), I64_MAX = 2n ** 63n - 1n;
/** CF PF AF ZF SF OF (SDM vol. 1 §3.4.3.1). */
export const ARITH = 0x8d5;
/** RF (bit 16) and VM (bit 17) of RFLAGS (SDM vol. 1 §3.4.3). */
export const RF = 1 << 16, VM = 1 << 17;
/** IF (bit 9). */
export const IF = 1 << 9;
/**
 * A privilege change in 64-bit mode (SYSCALL, SYSRET) lets the dispatcher go on in the new privilege (runtime.ts
 * replay); RINGZERO_WASM_PRIV_CHAIN=0: the chain stops there, and translated SYSCALL/SYSRETQ always call the helper.
 */
export const PRIV_CHAIN = process.env.RINGZERO_WASM_PRIV_CHAIN !== '0';
// (0xFC 6 / 0xFC 7: i64.trunc_sat_f64_s / _u, the saturating truncations of Core spec §5.4.5.)

// Function indices of the imports (declared in this order).
const F_RD = 0, F_WR = 1, F_RP = 2, F_CC = 3, F_GP = 4, F_FL = 5, F_SY = 6;
void F_CC; // (the helper `cc` stays imported for the index order; conditions use the flag library)
/** The flag library's `fa` (buildFlaglib), imported after the helpers; then the memory library's ld1..ld8, st1..st8. */
const F_FA = 7, F_LD = 8, F_ST = 12, F_TAIL = 16;
/**
 * S_LOP of a record that is also in the CPU's lazy fields (the runtime copies SoftCpu's record into the state area
 * with this added at the start of a call, and after a helper that may have changed it): the kind is S_LOP - SYNCED
 * (0: SoftCpu.flags' arithmetic bits in S_LD). Translated producers store their plain kind (below SYNCED), which
 * tells the runtime that the record must go back to the CPU.
 */
export const SYNCED = 16;
const LOG2 = [0, 0, 1, 0, 2, 0, 0, 0, 3];
/** Static exits chain straight into the next translated block of the same page (RINGZERO_WASM_DIRECT=0: off). */
const DIRECT_CHAIN = process.env.RINGZERO_WASM_DIRECT !== '0';
/** CALL/RET keep a return-address stack that names a RET's successor to the dispatcher (RINGZERO_WASM_RAS=0: off). */
let RAS = process.env.RINGZERO_WASM_RAS !== '0';
/** Switch RAS (tests; between translations); returns the old value. */
export function setRas(on: boolean): boolean { const old = RAS; RAS = on; return old; }
/**
 * RAS in user code too (blocks queued at lower-half linear addresses; RINGZERO_WASM_RAS_USER=0: kernel code only). Each CALL pushes (~24 wasm operations) and each RET pops (~34) to save the dispatcher's fetch-TLB probe and
 * table lookup at the RET's successor; with tail calls off (runtime.ts TAIL), RAS off everywhere, paired against on
 * (same build, load ~24, 3 runs): ash wall 0.93x (0.88-0.94), md5 0.95x (0.91-0.96), guest thread 0.93x / 0.95x.
 * Off in user code only, against on (load ~15-24, 3 runs): ash 0.97x (0.94-0.98), thread 0.96x (0.95-0.97); md5 0.97x
 * (0.79-1.05), thread 0.97x; syscalls 0.93x (0.92-1.01), thread 1.04x (0.96-1.06); boot 0.97x (one pair), thread 1.01x.
 * With tail calls on (the default again) on a quiet host, off against on: md5 0.92x (0.91-1.06) then 1.09x
 * (0.93-1.11), ash 1.03x (0.99-1.10) then 1.01x (0.91-1.03), syscalls 0.96x, boot 0.99x: no gain, so on.
 */
let RAS_USER = process.env.RINGZERO_WASM_RAS_USER !== '0';
/** Switch RAS_USER (tests; between translations); returns the old value. */
export function setRasUser(on: boolean): boolean { const old = RAS_USER; RAS_USER = on; return old; }
/**
 * In a self-looping block, memory accesses probe the TLB inline and call the memory library only on a miss
 * (RINGZERO_WASM_INLINE_MEM=0: off). Only there: inlined everywhere, the code of the Linux boot grew from 8.8 to 15.3
 * MiB and the boot + md5 + ash run took 20% more CPU (its blocks run too few times each to repay the size), while
 * bench/cpu's memory loop ran 1.6-2x faster.
 * Tried and not kept (session 19, branch s19-mem-mru): remembering the page the memory library last hit, per kind
 * (loads, stores through RSP/RBP/PUSH, other stores), in the state area for one dispatcher call (forgotten after
 * every helper call and privilege switch). Boot + ash 30k counted 72% of the library's accesses on that page (loads
 * 45%, other stores 68%, stack stores 91%). (a) Checked inline before the call, registers written back first: code
 * 14.4 -> 17.0 MiB, md5 32 MiB 3.64/4.78 and 3.26/4.26 s main-thread CPU, ash loop within noise, boot +1-3%;
 * (b) with the write-back only on the call's path: code 22.4 MiB, slower on all three; (c) inline for stack
 * accesses only: 15.8 MiB, ash 5.03/4.49, 5.03/5.28 s; (d) inside the library before its probe (no code growth):
 * ash 5.03/4.58, 5.03/4.98, 5.51/5.62, 4.41/4.15, 4.36/4.62 s, md5 4.85/3.82, 3.17/3.31 s, boot unchanged. Side-by-
 * side pairs on a loaded host (load 15-27): no clear gain in any.
 * Tried and not kept (session 21, branch s21-inline-again): inline probes (EmitOpts.inline) in every function holding
 * a block translated again (WasmEngine.reform's pulls and reregion's pages), as a free second tier. Boot + ash 30k
 * (RINGZERO_WASM_EXIT_STATS=1): library calls 211.5M -> 111.0M (the loop's 4170 -> 820 per iteration), write-backs
 * before them 211.6M -> 119.8M but at other flushes 188.9M -> 256.1M (registers stay dirty past inline hits), code
 * 20.1 -> 27.7 MiB (the boot's ~4400 blocks formed again). Slower at load 17-32: ash command main-thread CPU
 * 5.04/5.48 and 3.10/5.78 s (off/on), CPU to the prompt 12.81/13.16 and 9.41/13.15 s, a second ash 20k in the same
 * VMM (after tier-up) 2.43/4.49 s. Reregion's pages alone (~280 blocks) missed the loop's functions (library calls
 * 211.5M -> 205.6M).
 */
const INLINE_MEM = process.env.RINGZERO_WASM_INLINE_MEM !== '0';
/**
 * RINGZERO_WASM_INLINE_ALL=1 (off by default): every memory access of every function probes the TLB inline, as a
 * loop's do, calling the memory library (with the dirty registers written back first) only on a miss. Why the calls
 * were made (session 28, bench/syscall-counts with RINGZERO_WASM_SITE_STATS, per ash loop iteration / per syscall):
 * 2540 / 135 library calls, of which 0.055 / 0.003 took the library's slow path (no TLB misses, MMIO, page ends to
 * speak of): all were tier-1 accesses outside loops, i.e. this policy, spread over hundreds of sites each run 1-21
 * times per iteration (ash: 1982 in region members, 482 in one-block functions; MOV loads 752 + 99 (32-bit), MOV
 * stores 323 + 79, CALL pushes 159, ALU loads 127, RET pops 109, byte CMP/ALU with memory 109, MOVZX 100, MOV byte
 * loads 91, JMP through memory 57, fs: 205; syscall: MOV loads 58 + 11, CALL 13, RET 10, gs: 27). With it: 10 / 0
 * library calls; write-backs 6430 -> 5799 / 358 -> 312 (registers stay dirty past the inline hits, so a later exit
 * writes back what the calls did, once). Paired against base28 (bench/engines --paired, 3 runs, loaded host): ash
 * 0.92x wall (0.89-0.96), guest thread 0.89x; syscall 0.88x (0.85-0.94); md5 1.04x (0.97-1.07, thread 0.97x); but
 * the boot 1.25x wall, process CPU 1.18x (guest thread 1.03x): the boot's code 10.2 -> 13.7 MB. Again with branch
 * hints (d049402; against the same build off, 3 runs, load ~25): ash 0.90x wall (0.88-0.90), syscall 0.89x
 * (0.85-0.91), md5 1.00x (0.92-1.07), boot 1.14x wall (1.11-1.17), process CPU 1.16x, guest thread 0.99-1.03x:
 * the boot pays in compiling (static wasm operations per guest instruction 39.2 -> 53.9: an inline load is ~53
 * operations more than a call, its probe ~37 of them). runtime.ts INLINE_LATE limits it to code translated after the
 * kernel's boot.
 */
let INLINE_ALL = process.env.RINGZERO_WASM_INLINE_ALL === '1';
export function setInlineAll(on: boolean): boolean { const old = INLINE_ALL; INLINE_ALL = on; return old; }
/**
 * An inline load whose block loaded through an inline probe before (straight-line, no helper call since) first
 * compares its page with that probe's and, when equal, reads RAM through the page's remembered addend: 10-14 wasm
 * operations instead of the probe's ~30 (the slot hash, the TLB tag and addend loads).
 * The mapping cannot have changed in between: only helpers (INVLPG, MOV CR3, ...) change it, and a helper call makes
 * the page stale (Translator.lpAt). A probe that misses leaves LP_NONE (no page address: its low 12 bits are not
 * zero). busybox md5sum's block function reads its message block X[] 64 times per 64 bytes.
 * RINGZERO_WASM_LAST_PAGE=0: off.
 */
let LAST_PAGE = process.env.RINGZERO_WASM_LAST_PAGE !== '0';
/**
 * RINGZERO_WASM_LP_LATER=0: off. An inline load keeps its probe's page and addend for LAST_PAGE (two tees, and the
 * page reset on its slow path) only when a later instruction of its block loads through the same base register
 * (Translator.lpLater): ~4 wasm operations fewer per inline load that nothing after it could use.
 */
const LP_LATER = process.env.RINGZERO_WASM_LP_LATER !== '0';
/**
 * A table by form, true for `forms`: a packed array with an entry for every form (FORM_COUNT), so that a look-up of any
 * form is an in-bounds load of a boolean. (Filled by index, the tables were holey and as long as their last form set:
 * a look-up past it read `undefined` out of bounds, a deopt of emitCode, the translator's largest function, session 34.)
 */
function formSet(forms: Form[]): boolean[] {
  const t: boolean[] = [];
  for (let f = 0; f < FORM_COUNT; f++) t.push(false);
  for (const f of forms) t[f] = true;
  return t;
}
/** The forms whose memory operand (base/index/disp) may be read through Translator.load (LP_LATER). */
const LOAD_FORMS = formSet([Form.MovLoad64, Form.MovLoad32, Form.MovLoad16, Form.AluRM, Form.AluMR, Form.AluMI, Form.IncDecM,
  Form.MovzxMem, Form.MovsxdMem, Form.MovsxM, Form.Alu8RM, Form.Alu8MR, Form.Alu8MI, Form.Mov8RM, Form.CmovRM,
  Form.NotNegM, Form.MulDivM, Form.ImulRM, Form.ImulRMI, Form.AdcRM, Form.AdcMR, Form.AdcMI, Form.CallInd, Form.JmpInd,
  Form.CmpxchgM, Form.XaddM, Form.SetccM, Form.BtMI, Form.BtMR, Form.Alu16RM, Form.Alu16MR, Form.Alu16MI, Form.PushM,
  Form.BitScanM, Form.XchgM, Form.Cmpxchg8M, Form.Shift16M, Form.ShiftMCl, Form.PopcntM]);
/**
 * RINGZERO_WASM_EAGER_WB=0: off. A dirty register that no later instruction of its block writes (writesOf) is
 * written back right after the instruction that last wrote it (Translator.eagerWb), not at each later write-back point
 * (every inline access's slow path, side exit, chain check's exit and the block's exits each wrote it back): the same
 * one store on each path through the block (every way out of it writes back every dirty register),
 * fewer copies of it in the code. Not in a self-looping block (registers stay dirty across its passes).
 */
const EAGER_WB = process.env.RINGZERO_WASM_EAGER_WB !== '0';
/**
 * RINGZERO_WASM_EAGER_FL=0: off. A deferred flag record that no later instruction of its block replaces
 * (NO_FLAGS: the forms that never produce one) is stored right after the instruction, not at each later write-back
 * point (memory-library slow paths, side exits, the block's exits): the same one store on each way out, unless a way
 * out is a branch to a region member that overwrites the flags (edgeDead: the record is not stored there), where it
 * is not done. Not in self-looping blocks. bench/form-ops (boot + syscall capture): tier 1 31.69 -> 31.06 operations
 * per guest instruction, inline 43.28 -> 42.13 (11.79 MB of modules, from 12.26). Session 30, on against off in one
 * build (bench/engines --paired --runs 3, load ~6-13): boot 0.94x wall (one pair), process CPU 0.99x; md5 0.97x
 * (0.96-1.03), thread 0.97x; ash 0.98x (0.96-1.03), thread 1.00x; syscalls 0.97x (0.94-1.13), thread 0.99x.
 */
const EAGER_FL = process.env.RINGZERO_WASM_EAGER_FL !== '0';
/** EAGER_FL: the forms that never produce a flag record (moves, loads and stores, stack, jumps, CMOV/SETcc). */
const NO_FLAGS = formSet([Form.MovRR64, Form.MovRR32, Form.MovStore64, Form.MovStore32, Form.MovStore16, Form.MovLoad64,
  Form.MovLoad32, Form.MovLoad16, Form.MovImmReg, Form.MovImmMem64, Form.MovImmMem32, Form.MovImm16M, Form.Lea,
  Form.Jcc, Form.Jmp, Form.Call, Form.Ret, Form.Push, Form.Pop, Form.MovzxReg8, Form.MovzxReg16, Form.MovzxMem,
  Form.MovsxdReg, Form.MovsxdMem, Form.MovsxR8, Form.MovsxR16, Form.MovsxM, Form.Mov8RR, Form.Mov8RM, Form.Mov8MR,
  Form.Mov8RI, Form.Mov8MI, Form.CmovRR, Form.CmovRM, Form.Setcc, Form.SetccM, Form.Nop, Form.CallInd, Form.JmpInd,
  Form.PushImm, Form.Pushf, Form.PushM, Form.Cdq, Form.Bswap, Form.XchgRR, Form.XchgM, Form.Leave]);
/** Switch LAST_PAGE (tests); returns the old setting. */
export function setLastPage(on: boolean): boolean { const old = LAST_PAGE; LAST_PAGE = on; return old; }
const LP_NONE = 1n;
/**
 * The same in the blocks of a region that lie on a loop of its branches (translateRegion, onCycles; a loop body
 * longer than MAX_BLOCK is several blocks, none of them self-looping). RINGZERO_WASM_LOOP_INLINE=0: off.
 */
let LOOP_INLINE = process.env.RINGZERO_WASM_LOOP_INLINE !== '0';
/**
 * The same in a region member whose instructions run into the first block of such a loop (the loop's start is one of
 * its instruction boundaries, not its start): the block cache's blocks end at 32 instructions or a branch, not at a
 * loop's start, so the blocks before busybox md5's four round loops each hold the first pass of a loop, and called
 * the memory library for each of its accesses: ~58 calls per 64-byte block, 61M of the 84M library calls of
 * bench/engines' md5 command (RINGZERO_WASM_SITE_STATS). Measured (session 27): bench/md5-loop 2 x 2 pinned pairs
 * 450/360, 450/360, 420/330, 420/320 ms; bench/engines --paired, 3 runs against session 27's start (loaded host):
 * md5 wall 0.915x (0.895-0.929), guest thread 0.867x, ash 0.996x (0.96-1.06); the boot's code +0.35%.
 * RINGZERO_WASM_LOOP_ENTRY=0: off.
 */
let LOOP_ENTRY = process.env.RINGZERO_WASM_LOOP_ENTRY !== '0';
/** Switch LOOP_ENTRY (tests); returns the old setting. */
export function setLoopEntry(on: boolean): boolean { const old = LOOP_ENTRY; LOOP_ENTRY = on; return old; }
/**
 * A block whose loop back edge is a Jcc/JMP in its middle that goes to its own start (the block cache's blocks go on
 * past a conditional branch, so a loop body that ends in one before the instructions after the loop does not end its
 * block: busybox's strcspn `movzx ecx,[rsi] / add rsi,1 / mov byte [rdx+rcx],1 / test cl,cl / jne top` then `movzx
 * ecx,[rbx]`...) was neither a self-looping block (Translator.selfLoop: its LAST instruction branches to its start)
 * nor on a cycle of a region (pageTargets leaves a block's own start out): every pass called the memory library for
 * each access and left through an exit. With SELF_EDGE such an edge puts the block on a cycle (onCycles: inline
 * probes), and a block that is alone in its batch's grouping is translated as a region of one (runtime.ts
 * flushBatch), so the edge is a branch inside its function. The ash loop of bench/engines: 280 of its ~2690
 * memory-library calls per iteration were that strcspn loop's (RINGZERO_WASM_SITE_STATS). RINGZERO_WASM_SELF_EDGE=0: off.
 */
let SELF_EDGE = process.env.RINGZERO_WASM_SELF_EDGE !== '0';
/** Switch SELF_EDGE (tests); returns the old setting. */
export function setSelfEdge(on: boolean): boolean { const old = SELF_EDGE; SELF_EDGE = on; return old; }
/**
 * SELF_EDGE: whether an instruction of `block` before its last is a direct Jcc/JMP to the block's own start (a
 * last one that does is a self-loop, which translateBody turns into a wasm loop).
 */
export function midSelfEdge(block: Block): boolean {
  if (!SELF_EDGE) return false;
  const offs = blockOffsets(block);
  return offs !== null && midSelfEdgeAt(block, offs);
}
/** midSelfEdge of a block worth translating, its instructions at block offsets `offs` (blockOffsets). */
function midSelfEdgeAt(block: Block, offs: number[]): boolean {
  if (!SELF_EDGE) return false;
  const es = block.entries;
  for (let i = 0; i < es.length - 1; i++) {
    const e = es[i];
    if ((e.form === Form.Jcc || e.form === Form.Jmp) && e.len > 0 && offs[i] + e.len + e.disp === 0) return true;
  }
  return false;
}

/** Switch LOOP_INLINE (tests of the memory library's own fast path); returns the old setting. */
export function setLoopInline(on: boolean): boolean { const old = LOOP_INLINE; LOOP_INLINE = on; return old; }
/** A block-ending Jcc writes dirty registers back before its branch, not at each of its exits (RINGZERO_WASM_JCC_FLUSH=0: off). */
const JCC_FLUSH = process.env.RINGZERO_WASM_JCC_FLUSH !== '0';
/**
 * RINGZERO_WASM_HOIST_FLUSH=0: off. A side exit (a Jcc before the block's end) and the chain check after a memory
 * instruction (exitIfSlow) each write the dirty registers and a deferred flag record back on their leaving path. When
 * the path that goes on certainly writes them back too, at the next memory-library call, before anything changes them
 * (hoistMask), they are written back once before the branch instead: the same stores run on each path (earlier on
 * the one that goes on), and the leaving path's copy of them is gone from the code.
 */
let HOIST_FLUSH = process.env.RINGZERO_WASM_HOIST_FLUSH !== '0';
/** Switch HOIST_FLUSH (its tests); returns the old value. */
export function setHoistFlush(on: boolean): boolean { const old = HOIST_FLUSH; HOIST_FLUSH = on; return old; }
/**
 * RINGZERO_WASM_ZX=0: off. The translator knows which cached registers hold a zero-extended 32-bit value (Translator.zx:
 * the last write was a 32-bit one, SDM vol. 1 §3.4.1.1), so a 32-bit read of them needs no mask; and a logic
 * operation's result (AND/OR/XOR/TEST of two zero-extended operands) is not masked again.
 */
let ZX = process.env.RINGZERO_WASM_ZX !== '0';
/** Switch ZX (its tests); returns the old value. */
export function setZx(on: boolean): boolean { const old = ZX; ZX = on; return old; }
/** How many branches had write-backs hoisted before them (tests check that their programs exercise it). */
export const hoistStats = { n: 0 };
/**
 * After a memory instruction, the exit taken when its slow path stopped the chain leaves S_RIP as the helper set it
 * (the next instruction's RIP, runtime.ts WasmEngine.stopAfter) instead of storing it: 5 operations less per memory
 * instruction that is not its block's last (RINGZERO_WASM_SLOW_RIP=0: stored here, as before).
 */
const SLOW_RIP = process.env.RINGZERO_WASM_SLOW_RIP !== '0';
/**
 * A block that names its successor's dispatch entry (exitStatic, rasPop) stores the entry's set (S_NEXT) and the
 * (pa, generation) key the successor must have (S_NKEY); the dispatcher finds the way of the set holding that key
 * (runtime.ts buildDispatcher), once, where every block exit compared both ways itself: 6 wasm operations per static
 * exit instead of 16 (RINGZERO_WASM_NEXT_KEY=0: the block compares, as before).
 */
export const NEXT_KEY = process.env.RINGZERO_WASM_NEXT_KEY !== '0';
/**
 * A function keeps the RIP of the block being run in one form only, the i64 local r0i (the f64 parameter r0 is read
 * once, by the prologue): a branch between a region's blocks (exitStatic, crossBranch) adds its offset to r0i alone,
 * where it updated both locals before (4 wasm operations less per branch: boot + ash loop 30k ran 88.5M of them), and
 * the places that need RIP as an f64 (S_RIP at an exit, S_R0, a tail call's r0) convert r0i + offset (one operation
 * more each: ~52M exits). Exact: RIP is canonical, |r0i| < 2^47 < 2^53, so f64.convert_i64_s of it and of r0i + offset
 * is the same double as the f64 sums were. RINGZERO_WASM_R0_ONE=0: both locals, as before.
 */
export let R0_ONE = process.env.RINGZERO_WASM_R0_ONE !== '0';
/** Switch R0_ONE (tests); returns the old value. */
export function setR0One(on: boolean): boolean { const old = R0_ONE; R0_ONE = on; return old; }
/**
 * RINGZERO_WASM_EXIT_STATS=1: every exit stores its kind (X_*) in the state area (layout.ts S_XKIND) and the
 * dispatcher counts, per kind, how the next block was entered or why the call ended (--stats prints them).
 * Statistics for tuning only: off, the generated code is unchanged.
 */
export const EXIT_STATS = process.env.RINGZERO_WASM_EXIT_STATS === '1';
/**
 * Translated code counts its branches between a region's blocks (local `intra`, added to S_INTRA when the function
 * leaves) and its tail calls (S_TAILS), for --stats ("entries between their blocks", "by tail calls", the code
 * cache's chained entries) and tests: with EXIT_STATS or RINGZERO_WASM_COUNT_CHAINS=1 only. Nothing else reads them;
 * off, they cost no operations: boot + ash loop 30k ran 86M region branches (4 wasm operations each), ~40M region
 * function returns (6 each) and 21M tail calls (6 each, 12 from a region), ~0.8 wasm operations per guest instruction.
 */
export let COUNT_CHAINS = EXIT_STATS || process.env.RINGZERO_WASM_COUNT_CHAINS === '1';
/** Switch COUNT_CHAINS (tests that check those counts); returns the old value. */
export function setCountChains(on: boolean): boolean { const old = COUNT_CHAINS; COUNT_CHAINS = on; return old; }
/**
 * A RET whose return address the return-address stack predicted, into a block of the region function it runs in,
 * branches there (br_table on the member) instead of leaving for the dispatcher (RINGZERO_WASM_RET_BRANCH=1: on).
 * Each region function gets an id never given again (regionIds); a CALL of a region pushes with its return address
 * the id and the member holding its return block (S_RAS + 20, an i32: id << 12 | member; 0 elsewhere, and when no member of the
 * CALL's page and generation starts there), and a RET whose popped address matches the entry and whose id is its own
 * function's goes to that member when the dispatcher would have entered it: chain on, count within the region's limit
 * (Region.lim). Exact as a same-page region branch: the return block is the CALL block's page and generation under
 * the mapping the CALL ran with (the stack is emptied at every dispatcher call and every TLB flush or INVLPG, and
 * the chain, set only where the stack is emptied, is cleared by every invalidation during the call), so it was current
 * when the CALL ran and still is; r0 moves to the return address, S_R0 and S_BLK's member follow it (the RET may run in
 * a member of another page: WasmEngine.current's pa difference holds within one page). Only with REGION_LIM, and in
 * user code only (blocks queued at lower-half addresses: what CALLEES and IND_JOIN join; the kernel's CALLs still
 * store a zero token, so that no RET finds an older one in their stack entry). RINGZERO_WASM_RET_BRANCH=0: off.
 * On by default since session 30 with CALLEES and IND_JOIN: quiet host, `bench/engines --paired --runs 3`, the three
 * on against off (CALLEE_COPIES 1): ash 0.91x wall (0.90-0.99; guest thread 0.89x), md5 1.00x and 1.02x (thread
 * 0.96x, 0.99x), syscalls 1.04x (0.95-1.20) and 0.96x (0.91-1.00), boot 1.00x (one pair).
 */
export let RET_BRANCH = process.env.RINGZERO_WASM_RET_BRANCH !== '0';
/** Switch RET_BRANCH (its tests; between translations); returns the old value. */
export function setRetBranch(on: boolean): boolean { const old = RET_BRANCH; RET_BRANCH = on; return old; }
/**
 * Session 34 (TurboFan's work per translated byte, bench/wasm-tf): the br_table loop of a region none of whose
 * members lies on a cycle of its branches (onCycles) holds an empty loop in the br_table's default target, a path
 * that never runs (k is always a member). V8 peels (and may unroll) only a loop that holds no other loop
 * (FindSmallInnermostWasmLoop), so TurboFan no longer copies such a small region's whole body for a first pass that
 * gains nothing there: without a cycle each member runs at most once per call. The regions of real loops (md5's
 * rounds, onCycles) keep theirs (RINGZERO_WASM_REGION_NEST=1; =all: every region). The capture's first 150
 * batches, every function compiled alone (single-threaded, min of 5, A/B alternated in one process): TurboFan CPU
 * 0.961x (every region: 0.952x, zone 1833 -> 1683 MiB: WasmOptimization 358 -> 268, loop peeling 63 -> 35 MiB),
 * machine code +0.8% (the unused empty loops' stack checks). With GP_SHARE, the whole capture (its 2000 largest
 * functions): 0.969x, bench/wasm-tf's zone 4696 -> 4425 MiB.
 */
// Off by default (the lead, session 34): paired against base34 on a loaded host (load 8-11, 3 runs) with GP_SHARE,
// boot 0.96x wall but md5 1.04x and syscalls 1.14x (0.86-1.15): not resolved as no slower; =1 turns it on.
export let REGION_NEST: 0 | 1 | 2 = process.env.RINGZERO_WASM_REGION_NEST === '1' ? 1 : process.env.RINGZERO_WASM_REGION_NEST === 'all' ? 2 : 0;
/** Set REGION_NEST (0 off, 1 regions without a cycle, 2 every region); returns the old value. */
export function setRegionNest(v: 0 | 1 | 2): 0 | 1 | 2 { const old = REGION_NEST; REGION_NEST = v; return old; }
/**
 * Session 34: a #GP(0) check (gpIf) that needs no write-back (no dirty register, no deferred flag record) branches
 * with its helper position to one shared `call gp` at the function's end (label Translator.gpL, a block whose branches
 * carry the position) instead of having its own: TurboFan's register allocator pays for every call, most of all in
 * deferred code (fixed ranges are split at each deferred block), and 1134 of 1235 such checks (CALL and JMP targets
 * leaving the page, the first 80 batches of a boot) wrote nothing back. The check costs the hot path the same
 * compare and branch; the position (n | constant) is computed on the branch's edge. bench/wasm-tf-ab on the
 * capture's first 150 batches: TurboFan CPU 0.967x on the 80 largest functions, 0.987x on all (a bound, the checks
 * without any call: 0.939x on the 80). Off by default, as REGION_NEST (the same pairs); RINGZERO_WASM_GP_SHARE=1: on.
 */
export let GP_SHARE = process.env.RINGZERO_WASM_GP_SHARE === '1';
export function setGpShare(on: boolean): boolean { const old = GP_SHARE; GP_SHARE = on; return old; }
/** The last id given to a region function (RET_BRANCH; ids are never reused, so a stale stack entry never matches). */
let regionIds = 0;
/**
 * The most ids given (the token is an i32, id << 12 | member): after 2^20 - 1 region translations, new regions get
 * none and make no RET branches (a boot and an hour of shell loops translate a few thousand regions).
 */
const FID_MAX = 0xfffff;
/**
 * An indirect JMP or CALL whose last run in the JavaScript tier went to a block queued at that linear address
 * (Block.lastRip: a PLT slot's `jmp [rip+GOT]`, static glibc's calls of its string functions, always goes to the same
 * place) counts as a branch to it for groupRegions, runtime.ts CALLEES pulls that block in as it does a CALL's
 * target, and when that block is a member of the region the exit branches there while the target is that address
 * (Translator.indBranch: the checks of crossBranch; RINGZERO_WASM_IND_JOIN=0: off; on with RET_BRANCH, whose comment
 * has the figures). User code only (blocks queued at
 * lower-half addresses), as CALLEES: the kernel's code and its boot stay as they were.
 */
export let IND_JOIN = process.env.RINGZERO_WASM_IND_JOIN !== '0';
/** Switch IND_JOIN (its tests; between translations); returns the old value. */
export function setIndJoin(on: boolean): boolean { const old = IND_JOIN; IND_JOIN = on; return old; }
/** IND_JOIN: the linear address `block`'s indirect JMP or CALL went to last (0: none, or not such a block). */
export function indTarget(block: Block): number {
  if (!IND_JOIN || block.lastRip === 0) return 0;
  const last = block.entries[block.entries.length - 1];
  return last !== undefined && (last.form === Form.JmpInd || last.form === Form.CallInd) ? block.lastRip : 0;
}
/**
 * RINGZERO_WASM_SITE_STATS=FILE: every memory-library call site counts its calls (an i32 per site, in the state area
 * of the last vCPU slot, layout.ts MAX_WASM_CPUS - 1, which then holds no vCPU: its 512 KiB give SITE_MAX sites; later
 * sites share the last counter) and the runtime writes the counts by site (linear RIP of the instruction, physical
 * address, ld/st and size, CPL of the translation unknown) to FILE when --stats prints (runtime.ts writeSiteStats). For
 * finding the guest instructions whose accesses go through the library (the ash loop: ~4170 calls per iteration).
 * Statistics for tuning only: off, the generated code is unchanged.
 */
export const SITE_STATS = process.env.RINGZERO_WASM_SITE_STATS ?? '';
/**
 * RINGZERO_WASM_SITE_EXITS=1 (with SITE_STATS): the exits of translated functions count by site too, in the same file
 * ('x.KIND': a way out to the dispatcher, X_NAMES; 't.KIND': a tail call; 'b': a branch between a region's members),
 * for finding which guest branches leave their function most (ash: ~530 same-page exits per loop iteration).
 */
export const SITE_EXITS = SITE_STATS !== '' && process.env.RINGZERO_WASM_SITE_EXITS === '1';
/** RINGZERO_WASM_SITE_USER=1 (with SITE_STATS): only sites of user-mode code (lower-half RIP) count (the boot's kernel sites fill SITE_MAX). */
const SITE_USER = process.env.RINGZERO_WASM_SITE_USER === '1';
/**
 * RINGZERO_WASM_NAMES=1: every translated module names its functions (the name section, ./emit.ts ModuleBuilder.func)
 * after the guest address of their first block (runtime.ts fnName), so that a host profile (node --perf-basic-prof
 * and perf) attributes wasm time to guest code; off by default (a few bytes per function). The shared modules (memory
 * library, flag library, helper trampolines, dispatcher) are always named (rz.mem.ld8, rz.dispatch, ...).
 */
export const WASM_NAMES = process.env.RINGZERO_WASM_NAMES === '1';
export const SITE_BASE = layout.STATE_BASE + (layout.MAX_WASM_CPUS - 1) * layout.STATE_STRIDE;
export const SITE_MAX = layout.STATE_STRIDE >> 2;
/** SITE_STATS: per site index, the instruction's linear RIP (undefined: not known), physical address and access. */
export const siteInfo: { lin: number | undefined; pa: number; kind: string }[] = [];
/**
 * Exit kinds: a static exit into this page (direct entry named) / into another page / to a region member the
 * region could not branch to (chain off, limit), an indirect JMP/CALL, a RET, a leave after a helper (replay, slow
 * access event, STI), a self-loop's exit, anything else.
 */
export const X_SAME = 0, X_CROSS = 1, X_REGION = 2, X_IND = 3, X_RET = 4, X_HELPER = 5, X_LOOP = 6, X_OTHER = 7;
export const X_NAMES = ['same-page', 'cross-page', 'region-miss', 'indirect', 'ret', 'helper', 'self-loop', 'other'];

/**
 * How a function is emitted. By default memory operands call the shared memory library (inline probes only in
 * loops); `inline` (runtime.ts INLINE_LATE: code translated once user code runs): every memory operand probes the TLB
 * inline and accesses RAM itself on a hit, calling the library (and writing dirty registers back) only on a miss, as
 * loops do. `tail`: what static exits may tail-call (runtime.ts TAIL).
 */
export interface EmitOpts { inline: boolean; tail?: TailCtx | null }
export const TIER1: EmitOpts = { inline: false };

/** An installed translation a static exit may tail-call (TailCtx.find): its dispatch word, function, instructions. */
export interface TailTarget {
  word: number; fn: WasmCode['fn']; n: number; pa: number; gen: number;
}
/**
 * The translations a batch's static exits may tail-call (Translator.tailExit): found by physical address (same
 * page, of the caller's page generation) or by the linear address they were queued at (another page), and the
 * functions the batch's module imports for them (module `t`, f0, f1, ...: function indices F_TAIL + i).
 */
export interface TailCtx {
  find(pa: number, gen: number): TailTarget | null;
  findLin(lin: number): TailTarget | null;
  fns: WasmCode['fn'][];
  index: Map<WasmCode['fn'], number>;
}

/** The type index of translated functions in their modules (buildModule declares it first). */
const BLOCK_TYPE = 0;

/** Translation of one block (or a region's blocks, one after the other) into one function body. */
class Translator {
  /**
   * (a scratch body inside WasmEngine.flush's withScratch: encoded into its module before the scope ends). A Body, not
   * a subclass of it (TBody until session 34, which counted open blocks and calls, now Body's nest and calls): with
   * one class, Body's small methods, inlined everywhere, see one hidden class; with two, code optimized on one was
   * deoptimized for "wrong map" when the other came (translated bodies and runtime.ts's helper module bodies).
   */
  readonly b: Body;
  // params
  readonly st = 0; readonly r0 = 1; readonly left = 2; readonly user = 3; readonly k = 4;
  /** Set while emitting the members of a region. */
  region: Region | null = null;
  // locals
  readonly n: number; readonly xc: number; readonly rtag: number; readonly wtag: number;
  readonly r0i: number; readonly a: number; readonly v: number;
  readonly w: number; readonly t: number; readonly ld: number;
  readonly ls: number; readonly lr: number; readonly lcy: number; readonly tf: number; readonly c32: number;
  readonly fl: number;
  readonly x1: number; readonly x2: number; readonly t32: number; readonly t64: number;
  /** The inline memory probe's TLB entry address. */
  readonly pTi: number;
  /**
   * The register cache: guest register r's 64-bit value in local rc[r] (-1: none yet) with status rs[r]: 0 not
   * cached, 1 the same as the state area, 2 newer than the state area (dirty). Only straight-line code (at depth
   * `base`, outside every if/loop the translator opens inside an instruction) loads into the cache or makes a
   * register dirty; code inside a branch or loop reads the cache or the state area and writes both (its status then
   * stays right on every path). Dirty registers are written back (flush) before anything that may fault or look
   * at the state area (memory library, helpers) and at every exit; a replay or the SSE hook forgets the cache.
   */
  // (the per-register tables as literals: packed arrays cloned from a boilerplate, cheaper than new Array(n).fill(v)
  // per Translator, one or more per translated block)
  readonly rc: number[] = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
  readonly rs: number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  /** Bit r set exactly when rs[r] is 2 (flush, called before every access, helper and exit, skips a clean cache). */
  dirty = 0;
  /**
   * ZX: bit r set when rc[r] is cached (rs[r] !== 0) and holds a 32-bit value zero-extended (the last write to r in
   * this block's straight-line code was a 32-bit one); cleared by every other write and reload of the local.
   */
  zx = 0;
  base = 1;
  /** Set while ./sse.ts emits (it reads registers from the state area itself): the cache is neither filled nor dirtied. */
  noCache = false;
  /** What produced the flag locals (null: unknown here, the state area holds the record). */
  kind = 0;
  size = 0;
  known = false;
  /**
   * The flag locals hold a record (kind, size) that the state area does not have yet (see produced): it is stored
   * where something can read it (commitFlags, from flush: before the memory library, a helper, an exit). Only
   * straight-line code defers; inside a branch or loop a producer stores through. Never set while !known.
   */
  fdirty = false;
  /**
   * A ROL/ROR by a constant whose flags are not computed yet (0: none, 1: ROL, 2: ROR; emitShiftImm): the flags are
   * the known record's (kind, size, untouched in the flag locals) with CF and OF replaced by those of the rotated
   * value in local `rv` (rotSize bytes); SDM vol. 2B ROL/ROR: CF and OF only, the others unchanged. md5's rotates
   * are followed by a load (whose fault would see the flags) or end a region member, and the next ADD overwrites
   * them: the flags are worked out only where something can see them (settleRot; commitFlags inside a branch, such
   * as a memory access's slow path or an exit, stores them without changing the locals). Only straight-line code
   * that never touches the flag locals before its producer's last step runs while one is pending (ROT_KEEP); emitCode
   * settles it before any other form. Always with fdirty (the state area does not have those flags).
   */
  rot = 0;
  rotSize = 4;
  /**
   * The known record is an INC/DEC (fdirty, straight-line level) whose carry-in (local lcy: CF before it, which
   * INC/DEC keep; SDM vol. 2A INC/DEC) is not worked out yet: it is the CF of the record the state area still holds
   * (the block did not know the flags there, or an INC/DEC before it was just as lazy). The flag library computes it
   * only where something reads CF (cond, materialize) or stores the record (storeFlags, on that path only): a loop
   * whose INC/DEC at the top had its CF recomputed on every pass now does it only when the flags leave before the
   * next producer. Never with rot (a rotate first works out the carry: storeRot overwrites S_LOP before reading).
   */
  cfLazy = false;
  readonly rv: number;
  /**
   * An inline probe's slow path (the memory library, which may stop the chain) ran since the last exitIfSlow check
   * (local, i32 0/1), and how many such slow paths the current instruction has / the body's call count at its start:
   * when its calls are all such slow paths, exitIfSlow reads S_CHAIN only after one of them ran, not on every TLB hit.
   */
  readonly slowL: number;
  /**
   * A stack run (stackRun): whether its one probe hit (i32 0/1) and the RAM offset of its lowest byte (i32); per
   * instruction index of the block, the byte offset of that instruction's stack access from it (runOff, valid below
   * runEnd), and the current access's (runCur, -1: none; load/store take it).
   */
  readonly runOk: number; readonly runPa: number;
  runOff: number[] = [];
  runEnd = 0;
  runCur = -1;
  insSlow = 0;
  insCalls = 0;
  /**
   * SLOW_WB: slowL may be 1 where the code being emitted runs (set by an earlier instruction's slow path that no
   * flagged exitIfSlow cleared: an unflagged check, another region member, the loop's previous pass). While it is
   * not, a flagged check's slowL says that a slow path of the current instruction ran.
   */
  slowMaybe = false;
  /**
   * SLOW_WB: the current instruction's first inline slow path ran its flush (every dirty register and a deferred flag
   * record written back on that path) with slowL 0 before it; since then the registers in slowMod were written
   * (set64, setFrom) and, when slowFl, the flags were produced again. On every path where a slow path of the
   * instruction ran, the state area holds all the others: a flagged exitIfSlow writes back only these.
   */
  slowTrack = false;
  slowMod = 0;
  slowFl = false;
  /**
   * Per base register of the address (slot 16: none; ea sets aKey), the page of the last inline load probe through it
   * (LAST_PAGE): its linear address (i64 local; LP_NONE after a probe that missed) and its TLB entry's addend (i32
   * local, ./tlb-probe.ts), -1 until used. lpAt: the body's call count while those locals hold what this block's straight-line
   * code last set (-1: not since the block started); any call other than the memory library's (a helper may change
   * the paging state) makes them stale. The slot only picks which page to compare with: any slot is correct.
   */
  readonly lpVpn: number[] = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
  readonly lpBase: number[] = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
  readonly lpAt: number[] = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
  aKey = 16;
  /**
   * LP_LATER: whether an instruction after the current one in its block loads through base slot `key` (a form of
   * LOAD_FORMS, its base register or 16: none), so that a LAST_PAGE probe of the current one may serve it.
   */
  lpLater(key: number): boolean {
    const es = this.block.entries;
    for (let j = this.ix + 1; j < es.length; j++) {
      const e = es[j];
      if (LOAD_FORMS[e.form] && (e.base >= 0 ? e.base : 16) === key) return true;
    }
    return false;
  }
  /**
   * EAGER_WB, after an instruction: write back now the dirty registers that no later instruction of the block writes
   * (not in `later`), at straight-line level, and mark them clean.
   */
  eagerWb(later: number): void {
    if ((this.dirty & ~later) === 0 || this.nested()) return;
    const c = this.wbCtx; this.wbCtx = 10;
    this.flush(false, later);
    this.wbCtx = c;
  }
  /** After a memory-library call emitted with the body's call count `before`: the slots valid then stay valid. */
  lpKeep(before: number): void {
    for (let i = 0; i < 17; i++) if (this.lpAt[i] === before) this.lpAt[i] = this.b.calls;
  }
  selfLoop = false;
  /** The region member being emitted lies on a cycle of the region's branches (a loop split over blocks): inline probes. */
  loopMember = false;
  /** RINGZERO_WASM_DUMP: [label, code start, code end] of each instruction emitted (./dump.ts), else null. */
  marks: [string, number, number][] | null = DUMP_FILE ? [] : null;
  out = -1;
  /** GP_SHARE: the label of the block around `out` whose end calls the #GP helper with the position it carries (-1: none). */
  gpL = -1;
  top = -1;
  ix = 0;
  /** emitCode: the current instruction accessed memory (an exitIfSlow check follows it) / was replayed (no exit after it). */
  insMem = false;
  insReplayed = false;

  constructor(public block: Block, public offs: number[], readonly opts: EmitOpts = TIER1) {
    const b = this.b = new Body(5, true);
    this.n = b.local(I32); this.xc = b.local(I32); this.rtag = b.local(I32); this.wtag = b.local(I32);
    this.lcy = b.local(I32); this.fl = b.local(I32);
    this.c32 = b.local(I32);
    this.r0i = b.local(I64); this.a = b.local(I64); this.v = b.local(I64); this.w = b.local(I64); this.t = b.local(I64);
    this.ld = b.local(I64); this.ls = b.local(I64); this.lr = b.local(I64);
    this.tf = b.local(F64);
    this.x1 = b.local(I64); this.x2 = b.local(I64); this.t32 = b.local(I32); this.t64 = b.local(I64);
    this.pTi = b.local(I32);
    this.rv = b.local(I64);
    this.slowL = b.local(I32);
    this.runOk = b.local(I32); this.runPa = b.local(I32);
  }

  /** Inside a branch or loop of the current instruction (or the SSE hook): no cache state changes. */
  nested(): boolean { return this.noCache || this.b.nest > this.base; }

  /** The cache local of register r. */
  rl(r: number): number {
    if (this.rc[r] < 0) this.rc[r] = this.b.local(I64);
    return this.rc[r];
  }

  /**
   * Write the dirty registers and a deferred flag record back to the state area (at straight-line level they become
   * clean). Tried and not kept (session 15, branch s15-flags-guard2): no write-back before a memory-library call,
   * but a try/catch_all around it whose handler writes them back and rethrows (only a fault needs them there):
   * fewer stores on every path, but registers then stay dirty to every exit, so the code grew by 20-30% (45.4 ->
   * 61.5 wasm operations per guest instruction) and boot + ash 100k / md5 32 MiB took more CPU (35.0 -> 39.1 s and
   * 18.8 -> 21.9 s in one interleaved round, main thread 27.5 -> 29.5 and 12.4 -> 13.3 s).
   * Tried again and not kept (session 20, branch s20-wb-defer): the same with small code, as TCG restores state on a
   * fault: each call site sets an i32 local to the mask of cached registers (when it changes), the slow path's
   * fault (S_MEMFAULT) or event exit goes to one write-back by mask per function, and a helper throws the fault
   * again. Boot + ash 30k (873M instructions, EXIT_STATS): write-backs 404M (215M before library calls) -> 319M
   * (most move to the block exits, which write back every dirty register), code -1%; but V8 compiles code under a
   * try/catch_all slower: main-thread CPU on/off side by side (load 15-35), try around the function: ash 5.36/4.84
   * and 5.57/4.65 s, md5 32 MiB 4.10/3.34 s (the try alone, nothing deferred: md5 3.62/3.02 s); try around each
   * call: md5 3.24/2.99, ash 5.31/4.62 s. With a status check after each call instead of a try (the slow path
   * returns, S_MEMFAULT set): md5 3.17/3.16, 3.10/3.35 s, ash 6.60/6.77, 6.08/5.82 s, but to the prompt 13.51/13.18,
   * 12.77/12.51, 11.99/11.03, 13.04/12.03 s (boot +2..+9%): the write-backs saved are paid back at the exits and
   * in the checks.
   */
  flush(flags = true, except = 0): void {
    if (flags) this.commitFlags();
    const m0 = this.dirty & ~except;
    if (m0 === 0) return;
    const keep = this.nested();
    for (let r = 0, m = m0; m !== 0; r++, m >>>= 1) {
      if ((m & 1) === 0) continue;
      this.writeBack(r, this.rc[r]);
      if (!keep) this.rs[r] = 1;
    }
    if (!keep) this.dirty &= except;
  }


  /**
   * A branch into region member j (a constant; null: the member index held in t32): S_BLK's member bits name it, as
   * the dispatcher's entry would set them, and the branch is counted (COUNT_CHAINS).
   */
  enterMember(j: number | null): void {
    const b = this.b, R = this.region!;
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L.S_BLK).i32((1 << K_SHIFT) - 1).op(Op.i32And);
    if (j === null) b.get(this.t32).i32(K_SHIFT).op(Op.i32Shl); else b.i32(j << K_SHIFT);
    b.op(Op.i32Or).mem(Op.i32Store, 2, L.S_BLK);
    if (COUNT_CHAINS) b.get(R.intra).i32(1).op(Op.i32Add).set(R.intra);
  }
  /** A branch to member j of the region through its br_table (k = j): backward branches, and IND_JOIN's. */
  branchViaTable(j: number): void {
    this.b.i32(j).set(this.k).br(this.region!.disp);
  }

  /**
   * Store the i64 local `l` into register r's 8-byte slot in the state area (layout.ts S_GPR): one i64.store, 3
   * operations (when the halves were two arrays it took two i64.store32 and a shift, 8).
   */
  writeBack(r: number, l: number): void {
    if (EXIT_STATS) this.wbCount(this.wbCtx);
    this.b.get(this.st).get(l).mem(Op.i64Store, 3, L.sGpr(r));
  }

  /** SITE_STATS: count this memory-library call at a new site of the current instruction. */
  siteCount(kind: string): void {
    const l = this.curLin(), off = this.offs[this.ix] ?? 0;
    if (SITE_USER && !userLinear(l)) return;
    const i = Math.min(siteInfo.length, SITE_MAX - 1);
    // (the kind gets the instruction's form number (fast-forms.ts Form) and where the site is: f function of one block,
    // r region member, l on a loop (inline probes))
    const e = this.block.entries[this.ix];
    const where = this.selfLoop || this.loopMember ? 'l' : this.region !== null ? 'r' : 'f';
    siteInfo.push({ lin: l === undefined ? undefined : l + off, pa: this.block.pa + off, kind: `${kind} form=${e?.form ?? -1} ${where} seg=${e?.seg ?? -1}` });
    this.b.i32(0).i32(0).mem(Op.i32Load, 2, SITE_BASE + 4 * i).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, SITE_BASE + 4 * i);
  }

  /**
   * EXIT_STATS: the counter writeBack bumps (layout.ts S_WBSTATS: 0 before a memory-library call, 1 other (helpers,
   * replays, slow paths), 3 before a branch to a region member, 8 at a way out of the function (leave, a tail call), 9
   * a block-ending Jcc's write-back when neither target is a region member, 10 hoisted before a side exit
   * (hoistFlush), 11 at a self-loop's back edge); 2 counts library calls, 4 register loads into the cache, 5 reads of
   * an uncached register from the state area, 6 loads at a region member's dispatcher entry, 7 loads on a branch to a
   * member. Per system call of bench/syscall-counts (~700 guest instructions, session 27): 0: 54, 1: 39, 3: 50-54,
   * 8: 108, 9: 4, 10: 100; so most write-backs are where something outside the function can read the registers (a
   * memory-library call, 135 per system call, whose miss may fault; ~50 ways out), or hoisted to before one.
   */
  wbCtx = 1;
  wbCount(k: number): void {
    this.bump(L.S_WBSTATS + 4 * k);
  }
  /** Add 1 to the state area's i32 counter at `off`. */
  bump(off: number): void {
    this.b.get(this.st).get(this.st).mem(Op.i32Load, 2, off).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, off);
  }
  /**
   * A tail call's counts: the chain counters (COUNT_CHAINS: tails, and the region's branches so far), its site
   * (SITE_EXITS, 't.KIND') and exit kind `kind` (EXIT_STATS: slot 5, tail calls; slot 6 with `linked`, through a link).
   */
  countTail(kind: number, linked = false): void {
    const b = this.b, R = this.region;
    if (COUNT_CHAINS) this.bump(L.S_TAILS);
    if (COUNT_CHAINS && R !== null) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L.S_INTRA).get(R.intra).op(Op.i32Add).mem(Op.i32Store, 2, L.S_INTRA);
    if (SITE_EXITS) this.siteCount('t.' + X_NAMES[kind]);
    if (EXIT_STATS) {
      const o = L.S_XSTATS + 4 * (kind * 8 + 5);
      this.bump(o);
      if (linked) this.bump(o + 4);
    }
  }

  /** Forget the cache (after a replay, which may have changed any register in the state area). */
  forget(): void { this.rs.fill(0); this.dirty = 0; this.zx = 0; this.slowTrack = false; }
  /** Forget register r (a helper wrote it in the state area). */
  drop(r: number): void { this.rs[r] = 0; this.dirty &= ~(1 << r); this.zx &= ~(1 << r); this.slowTrack = false; }

  /** Registers kept in locals across a self-loop (null: none; the loop's top starts with an empty cache). */
  loopPre: number[] | null = null;
  loopDirty: number[] = [];
  /** The registers dirty at the self-loop's back edge (recorded by the first emission). */
  readonly backDirty: boolean[] = [false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false];

  /**
   * At a self-loop's back edge: make the registers match what the loop's top assumes. Without loopPre, everything
   * is written back (the top starts empty). With it, each kept register must be in its local (reloaded if a replay
   * forgot it) and written back unless the top takes it as dirty; any other dirty register is written back.
   */
  backEdge(): void {
    const b = this.b;
    this.commitFlags(); // (the loop's top starts without knowing the flags: it reads the state area's record)
    for (let r = 0; r < 16; r++) this.backDirty[r] = this.rs[r] === 2;
    const pre = this.loopPre;
    this.wbCtx = 11;
    if (pre === null) { this.flush(); this.wbCtx = 1; return; }
    for (let r = 0; r < 16; r++) {
      const kept = pre.includes(r);
      if (kept && this.rs[r] === 0) {
        b.get(this.st).mem(Op.i64Load, 3, L.sGpr(r)).set(this.rl(r));
      } else if (this.rs[r] === 2 && !(kept && this.loopDirty.includes(r))) {
        this.writeBack(r, this.rc[r]);
      }
    }
    this.wbCtx = 1;
  }

  /**
   * A Jcc or JMP (rel8, rel32) that straddles the end of the page (the block's last instruction: SoftCpu.recordBlock
   * gives it no form, since its displacement lies partly in the next page, which this block's page generation does not
   * cover). When the next page is in this privilege's fetch TLB bank and in RAM (so fetching the instruction's bytes
   * could not fault nor reach a device), it runs here: not taken, on to the instruction after it (`fallOff`, in the
   * next page); taken, the displacement is read from RAM as the fetch would read it (its bytes in this page, which the
   * block's page generation covers, and in the next page through that TLB entry), the target checked for canonical
   * form (#GP(0)) and left to the dispatcher. Otherwise the caller replays it. Linux has a `ja rel32` at a page end in
   * psi_group_change (about 10 per 4 KiB random read, 40% taken), a `jbe` in tcp_v4_rcv, `jmp rel8` in
   * pick_next_task_fair and `jmp rel32` in internal_get_user_pages_fast.
   */
  straddlingBranch(e: BlockEntry, o: number, i: number): void {
    const b = this.b, jcc = e.opcode !== 0xeb && e.opcode !== 0xe9;
    const immLen = e.opcode === 0xeb || (e.opcode >= 0x70 && e.opcode <= 0x7f) ? 1 : 4;
    const fallOff = o + e.opLen + immLen;
    // the fetch TLB entry of the next page (its tag is the page's address, as the dispatcher's probe; only pages of
    // low RAM have one): c32 = in it; w = its physical page base
    const check = () => {
      b.get(this.r0i).i64(fallOff).op(Op.i64Add).i64(-4096).op(Op.i64And).set(this.t);
      this.fetchEntry(this.t, this.c32);
      // (its physical page number, a u32 at +12, ./tlb-probe.ts)
      b.mem(Op.i64Load32u, 2, L.TLB_FETCH_DELTA + 12).i64(12).op(Op.i64Shl).set(this.w);
      b.get(this.c32).mem(Op.i64Load, 3, L.TLB_FETCH_DELTA).get(this.t).op(Op.i64Eq).set(this.c32);
    };
    const taken = () => {
      b.get(this.c32).open(Op.if);
      // the displacement, byte by byte (little-endian), then sign-extended
      const start = (this.block.pa & 0xfff) + o + e.opLen;
      for (let k = 0; k < immLen; k++) {
        const at = start + k;
        if (at < 4096) b.i32(this.block.pa - (this.block.pa & 0xfff) + at);
        else b.get(this.w).i64(at - 4096).op(Op.i64Add).op(Op.i32WrapI64);
        b.mem(Op.i32Load8u, 0, WASM_RAM_OFFSET);
        if (k > 0) b.i32(8 * k).op(Op.i32Shl).op(Op.i32Or);
      }
      if (immLen === 1) b.i32(24).op(Op.i32Shl).i32(24).op(Op.i32ShrS);
      b.op(0xb7 /* f64.convert_i32_s */); this.r0f(fallOff); b.op(Op.f64Add);
      this.checkCanonicalF64();
      b.get(this.st).get(this.tf).mem(Op.f64Store, 3, L.S_RIP);
      b.i32(i + 1).set(this.xc); this.leave();
      b.close();
    };
    if (jcc) {
      this.cond(e.opcode & 15);
      b.op(Op.i32Eqz).open(Op.if);
      check();
      b.get(this.c32).open(Op.if);
      this.exitStatic(i + 1, fallOff);
      b.close();
      b.else();
      check();
      taken();
      b.close();
    } else {
      check();
      taken();
    }
  }

  /**
   * Before the block's last instruction when it straddles the page end (Block.pfn2: its bytes are partly in another
   * physical page, which the block's page generation does not cover): unless this privilege's fetch TLB bank maps the
   * next linear page to that page (first-level tag, then physical page, as crossBranch probes) and that page still has
   * the generation the block was recorded with, the instruction is replayed (its guard, SoftCpu straddleGuard, then
   * interprets it: live bytes, and the fetch's #PF if the page is gone) and the block ends. Only such blocks emit this.
   */
  straddleCheck(i: number): void {
    const b = this.b, blk = this.block;
    this.fetchMapsTo(4096 - (blk.pa & 0xfff), blk.pfn2, blk.gen2);
    b.op(Op.i32Eqz).open(Op.if);
    // (inside the branch flush() keeps the cache state; the replay may change any register, so no write-back after it)
    this.flush(); this.pos(); b.call(F_RP).op(Op.drop);
    this.xk(X_HELPER); b.i32(i + 1).set(this.xc).br(this.out);
    b.close();
  }

  /**
   * Push (i32) the address, less TLB_FETCH_DELTA, of this privilege's fetch-bank TLB entry for the page address in i64
   * local `page` (rtag, the prologue's read bank, plus its slot), also set in i32 local `into`.
   */
  fetchEntry(page: number, into: number): void {
    emitTlbSlot(this.b, page);
    this.b.get(this.rtag).op(Op.i32Add).tee(into);
  }

  /**
   * Push (i32) whether this privilege's fetch-TLB bank maps the linear page of r0 + `ripOff` to physical page `pfn`
   * (first-level tag, then the physical page: ./tlb-probe.ts's probe, on the fetch bank) and that page still has
   * generation `gen`: what the dispatcher's lookup would require to enter code there (straddleCheck, crossBranch).
   * Uses t64 and t32.
   */
  fetchMapsTo(ripOff: number, pfn: number, gen: number): void {
    const b = this.b;
    b.get(this.r0i).i64(ripOff).op(Op.i64Add).i64(-4096).op(Op.i64And).set(this.t64);
    // (t32: the fetch-bank entry's address less TLB_FETCH_DELTA: its tag, then its physical page number at +12, ./tlb-probe.ts)
    this.fetchEntry(this.t64, this.t32);
    b.mem(Op.i64Load, 3, L.TLB_FETCH_DELTA).get(this.t64).op(Op.i64Eq);
    b.get(this.t32).mem(Op.i32Load, 2, L.TLB_FETCH_DELTA + 12).i32(pfn).op(Op.i32Eq).op(Op.i32And);
    b.i32(0).mem(Op.i32Load, 2, L.PAGE_GEN + 4 * pfn).i32(gen).op(Op.i32Eq).op(Op.i32And);
  }

  /**
   * HOIST_FLUSH, at straight-line level before a branch that leaves after instruction i (a side exit, exitIfSlow):
   * write back now what the code after instruction i writes back anyway before it changes it (hoistMask).
   */
  hoistFlush(i: number): void {
    if (!HOIST_FLUSH || this.nested()) return;
    const h = hoistMask(this, i);
    if (h < 0) return;
    const regs = h & 0xffff, flags = (h & 0x10000) !== 0;
    if ((flags && this.fdirty) || (this.dirty & regs) !== 0) hoistStats.n++;
    if (flags) this.commitFlags();
    if ((this.dirty & regs) !== 0) { this.wbCtx = 10; this.flush(false, ~regs); this.wbCtx = 1; }
  }

  /**
   * Where S_CHAIN is known to be 1 (CHAIN_KNOWN): the body's call count while it is (-1: not known). Only a helper
   * clears it, and a call into translated code (the dispatcher, a tail call, a region branch) happens only while it
   * is 1; so at a block's start (not a self-loop's top: its back edge does not check) it is 1 until the next call,
   * and again after exitIfSlow, which leaves when it is 0 (a flagged one: when the instruction's calls, all slow
   * paths, ran; else none ran and it is what it was).
   */
  chainAt = -1;
  /**
   * Push (i32) S_CHAIN and-ed with what the caller pushes between chainOn and chainAnd(the value chainOn returned), or
   * only the latter where S_CHAIN is known to be 1. (Two calls rather than one with a callback: a closure made per
   * call keeps its optimized code only while a closure of it lives, so TurboFan compiled the callbacks again after
   * each major GC, session 34.)
   */
  chainOn(): boolean {
    const b = this.b;
    if (CHAIN_KNOWN && this.chainAt === b.calls) return false;
    b.get(this.st).mem(Op.i32Load, 2, L.S_CHAIN);
    return true;
  }
  /** The end of chainOn. */
  chainAnd(pushed: boolean): void {
    if (pushed) this.b.op(Op.i32And);
  }

  /**
   * Push (i32) whether a branch to a region member of `n` instructions goes on, the count with this block's done in
   * c32: the chain on (chainOn), the count below the dispatcher's limit and the member within the budget (Region.lim).
   */
  regionFits(n: number): void {
    const b = this.b, R = this.region!;
    if (R.lim >= 0) { const ch = this.chainOn(); b.get(this.c32).get(R.lim).op(Op.i32LeS); this.chainAnd(ch); return; }
    const ch = this.chainOn();
    b.get(this.c32).get(R.climit).op(Op.i32LtS);
    this.chainAnd(ch);
    b.get(this.c32).i32(n).op(Op.i32Add).get(this.left).op(Op.i32LeS).op(Op.i32And);
  }

  /** Leave the block (after `xc` was set): dirty registers written back first. */
  leave(): void { const c = this.wbCtx; if (c === 1) this.wbCtx = 8; this.flush(); this.wbCtx = c; this.b.br(this.out); }

  /** RINGZERO_WASM_EXIT_STATS=1: note the kind of the exit that follows (X_*). */
  xk(kind: number): void {
    if (EXIT_STATS) this.b.get(this.st).i32(kind).mem(Op.i32Store, 2, L.S_XKIND);
    if (SITE_EXITS) this.siteCount('x.' + X_NAMES[kind]);
  }

  // ---- registers (8-byte slots in the state area: layout.ts S_GPR)

  /** Push the 64-bit value of register r (i64). */
  r64(r: number): void {
    const b = this.b;
    if (this.rs[r] !== 0) { b.get(this.rc[r]); return; }
    if (EXIT_STATS) this.wbCount(this.nested() ? 5 : 4);
    b.get(this.st).mem(Op.i64Load, 3, L.sGpr(r));
    if (!this.nested()) { b.tee(this.rl(r)); this.rs[r] = 1; this.zx &= ~(1 << r); }
  }
  /** Push the low 32 bits of register r (i32). */
  r32(r: number): void {
    if (this.rs[r] !== 0) { this.b.get(this.rc[r]).op(Op.i32WrapI64); return; }
    if (EXIT_STATS) this.wbCount(5);
    this.b.get(this.st).mem(Op.i32Load, 2, L.sGpr(r));
  }
  /**
   * Load `size` bytes at `a` into register r, zero-extended (`zx32`: a 32-bit result, as set32 makes it): at
   * straight-line level straight into r's cache local on every path of the access (RINGZERO_WASM_LOAD_REG=0: through
   * local v, as load then set64). r's old value stays in its local until the access is done: a slow path's
   * write-backs and fault see it.
   */
  loadReg(r: number, size: number, zx32: boolean, addr = ADDR_A): void {
    if (!LOAD_REG || this.nested()) {
      this.load(size, undefined, this.v, addr);
      if (zx32) this.set32(r, () => this.b.get(this.v).op(Op.i32WrapI64)); else this.set64(r, this.v);
      return;
    }
    this.load(size, undefined, this.rl(r), addr);
    this.rs[r] = 2; this.dirty |= 1 << r; this.slowMod |= 1 << r;
    if (ZX && zx32) this.zx |= 1 << r; else this.zx &= ~(1 << r);
  }
  /**
   * A push of local w (PUSH, CALL, PUSH imm/memory): RSP - 8 is the address, and RSP changes after the store (which
   * may fault: RSP unchanged then). In a stack run the access needs the address only on its slow path (its hit
   * goes to the run's RAM offset), and RSP's local, cached by the run, moves by 8 (RUN_RSP).
   */
  pushStore(check?: { hit: (slow: number) => void; slow: () => void }): void {
    const b = this.b, run = RUN_RSP && this.runCur >= 0;
    if (!run) { this.pushAddr(ADDR_PUSH); b.set(this.a); this.store(8, check); this.set64(4, this.a); return; }
    this.store(8, check, ADDR_PUSH);
    // (setFrom(4, RSP - 8), without a closure: see pick)
    this.setFromStart(4);
    this.pushAddr(ADDR_PUSH);
    this.setFromEnd(4);
  }
  /**
   * Push an access's address for load/store/loadReg's `addr` (ADDR_A: none, it is in local a): RSP (ADDR_RSP, a POP's
   * or RET's), RSP - 8 (ADDR_PUSH, a push's). (A kind rather than a callback: see pick.)
   */
  pushAddr(kind: number): void {
    this.r64(4);
    if (kind === ADDR_PUSH) this.b.i64(8).op(Op.i64Sub);
  }
  /** Store i64 local `l` into register r. */
  set64(r: number, l: number): void {
    const b = this.b;
    this.zx &= ~(1 << r); this.slowMod |= 1 << r;
    if (!this.nested()) { b.get(l).set(this.rl(r)); this.rs[r] = 2; this.dirty |= 1 << r; return; }
    this.writeBack(r, l);
    if (this.rs[r] !== 0) b.get(l).set(this.rc[r]);
  }
  /**
   * Store the i64 produced by `emit` into register r: at straight-line level straight into its cache local (no
   * temporary: Liftoff, which runs most translated code, compiles every local.get/set as a move).
   */
  setFrom(r: number, emit: () => void): void {
    this.setFromStart(r);
    emit();
    this.setFromEnd(r);
  }
  /** setFrom in two halves, the caller emitting the value between them (no closure: see pick). */
  setFromStart(r: number): void {
    this.zx &= ~(1 << r); this.slowMod |= 1 << r;
  }
  setFromEnd(r: number): void {
    const b = this.b;
    if (!this.nested()) { b.set(this.rl(r)); this.rs[r] = 2; this.dirty |= 1 << r; return; }
    b.set(this.t64);
    this.set64(r, this.t64);
  }
  /** Store the i32 produced by `emit` into the low half of r and zero the high half. */
  set32(r: number, emit: () => void): void {
    this.setFrom(r, () => { emit(); this.b.op(Op.i64ExtendI32u); });
    if (ZX && !this.nested()) this.zx |= 1 << r;
  }
  /** Push byte register (r, bit position sh) zero-extended (i32). */
  r8(r: number, sh: number): void {
    this.r32(r);
    if (sh) this.b.i32(sh).op(Op.i32ShrU);
    this.b.i32(255).op(Op.i32And);
  }
  /** Write the low byte of the i32 produced by `emit` into byte register (r, sh). */
  set8(r: number, sh: number, emit: () => void): void {
    this.setLow(r, 0xff << sh, () => { emit(); this.b.i32(255).op(Op.i32And); if (sh) this.b.i32(sh).op(Op.i32Shl); });
  }
  /** Replace the bits `mask` of register r's low half by the i32 produced by `emit` (already in place, masked). */
  setLow(r: number, mask: number, emit: () => void): void {
    const b = this.b;
    emit(); b.set(this.t32); // (emit may read r itself, or use c32)
    this.r64(r); b.i64(-(mask >>> 0) - 1).op(Op.i64And);
    b.get(this.t32).op(Op.i64ExtendI32u).op(Op.i64Or).set(this.t64);
    this.set64(r, this.t64);
  }

  /** Push the `pos` argument of a helper for the current instruction (k << POS_MEMBER | index << POS_IX | n). */
  pos(): void {
    const b = this.b;
    // (n | 0 is n: member 0's first instruction)
    const c = this.region !== null ? (this.region.cur << POS_MEMBER) | (this.ix << POS_IX) : this.ix << POS_IX;
    if (this.region !== null || this.selfLoop) { b.get(this.n); if (c !== 0) b.i32(c).op(Op.i32Or); }
    else b.i32(c);
  }

  // ---- memory

  /** Effective address of e's memory operand into local `a` (64-bit address size); `next` = offset of the next instruction. */
  ea(e: BlockEntry, next: number): void {
    const b = this.b;
    let terms = 0;
    this.aKey = e.base >= 0 ? e.base : 16;
    if (e.base >= 0) { this.r64(e.base); terms++; }
    else if (e.base === -2) { b.get(this.r0i).i64(next).op(Op.i64Add); terms++; }
    if (e.index >= 0) {
      this.r64(e.index);
      if (e.scale > 1) b.i64(Math.log2(e.scale)).op(Op.i64Shl);
      if (terms) b.op(Op.i64Add);
      terms++;
    }
    if (e.disp !== 0 || terms === 0) {
      b.i64(e.disp);
      if (terms) b.op(Op.i64Add);
    }
    if (e.seg >= 0) {
      // FS/GS base (signed canonical number, ../system/msr.ts) + offset, modulo 2^64.
      b.get(this.st).mem(Op.f64Load, 3, L.S_SEG + 8 * e.seg).op(0xfc, 6).op(Op.i64Add);
    }
    b.set(this.a);
  }

  /**
   * The memory library's fast path inline (RINGZERO_WASM_INLINE_MEM=0: off): `a` within one page, its TLB tag in the
   * bank `tag` (this privilege, read or write), the physical address in low RAM, and for a store a page without
   * decoded code; on a hit the access is done here (leaves the block `hit` with the access emitted by `access`),
   * else the code after it runs the library call, whose slow path may fault. Only that path can fault or run
   * JavaScript, so dirty cached registers are written back there alone (Translator.flush inside the branch).
   */
  probe(size: number, tag: number, write: boolean, access: () => void, pre?: (slow: number) => void): void {
    const b = this.b;
    const hit = b.open(Op.block);
    const slow = b.open(Op.block);
    pre?.(slow);
    emitTlbProbe(b, tag, this.a, { ti: this.pTi }, size, write, slow);
    access();
    b.br(hit);
    b.close();
  }

  /**
   * An access of a stack run (stackRun) whose probe hit: done by the code the caller emits next, at the run's RAM
   * offset, up to runAccessEnd (which leaves the block `hit`; the returned label is the slow path); else the code after
   * it calls the memory library, as after a probe() miss, so that a run that did not fit one mapped page faults at
   * exactly the instruction and with the state the interpreter's would.
   */
  runAccess(): number {
    const b = this.b;
    b.open(Op.block);
    const slow = b.open(Op.block);
    b.get(this.runOk).op(Op.i32Eqz).hint(false).brIf(slow);
    return slow;
  }
  /**
   * The end of runAccess (`slow` its label): the access was emitted between the two (not by a callback, as chainOn).
   * The hit label is the one opened just before `slow` (Body.open numbers labels in order).
   */
  runAccessEnd(slow: number): void {
    this.b.br(slow - 1);
    this.b.close();
  }

  /**
   * SLOW_WB, before an inline access of the current instruction opens its blocks: at its first slow path, when slowL
   * may be stale here (slowMaybe), clear it at straight-line level first, so that a flagged exitIfSlow's slowL means
   * this instruction's slow path ran (slowTrack).
   */
  slowStart(): void {
    if (this.insSlow !== 0) return;
    this.slowTrack = false;
    // (the block's last instruction has no exitIfSlow after it)
    if (!SLOW_WB || this.nested() || this.ix === this.block.entries.length - 1) return;
    // (SLOW_EV: slowL is 0 wherever the code goes on, nothing to clear)
    if (this.slowMaybe && !SLOW_EV) this.b.i32(0).set(this.slowL);
    this.slowMaybe = false;
    this.slowTrack = true;
  }
  /**
   * At the end of an inline access's slow path: slowL = 1 (SLOW_EV: only when the library stopped the chain, S_CHAIN
   * 0, so that a flagged exitIfSlow leaves on slowL alone; and not in the block's last instruction, which none reads).
   */
  slowSet(): void {
    // (SLOW_EV: the block's last instruction has no exitIfSlow; its exit or branch reads S_CHAIN after the call)
    if (SLOW_EV && this.ix === this.block.entries.length - 1) return;
    if (SLOW_EV) this.b.get(this.st).mem(Op.i32Load, 2, L.S_CHAIN).op(Op.i32Eqz).set(this.slowL);
    else this.b.i32(1).set(this.slowL);
  }
  /** SLOW_WB, in the slow path after its flush: the first one starts slowMod and slowFl. */
  slowFlushed(): void {
    if (this.insSlow === 0) { this.slowMod = 0; this.slowFl = false; }
  }

  /**
   * Load `size` bytes at `a` into local `v` (zero-extended): inline on a TLB hit, else through the memory library.
   * `check` (a RET's canonical check): `hit` runs on the inline path after the load and may branch to the label it
   * gets (the slow path, which loads again through the library), `slow` after the library's load, where the
   * registers were written back.
   */
  load(size: number, check?: { hit: (slow: number) => void; slow: () => void }, dst = this.v, addr = ADDR_A): void {
    const b = this.b;
    const run = this.runCur; this.runCur = -1;
    // (`addr` pushes the address: into local a at once, or in a stack run's access only on its slow path, as the
    // library's argument)
    if (addr !== ADDR_A && run < 0) { this.pushAddr(addr); b.set(this.a); }
    const inline = run >= 0 || this.memInline();
    if (inline) this.slowStart();
    const before = b.calls;
    const key = this.aKey;
    const keep = this.lpAt[key] === before;
    const lp = LAST_PAGE && inline && run < 0;
    // (LP_LATER: this probe's page and addend are kept only when a later load of the block may compare with them)
    const feed = lp && (!LP_LATER || this.lpLater(key));
    if (lp && (keep || feed) && this.lpVpn[key] < 0) { this.lpVpn[key] = b.local(I64); this.lpBase[key] = b.local(I32); }
    const lpVpn = this.lpVpn[key], lpBase = this.lpBase[key];
    if (run >= 0) {
      const slow = this.runAccess();
      b.get(this.runPa);
      b.mem(size === 4 ? Op.i64Load32u : Op.i64Load, 0, WASM_RAM_OFFSET + run).set(dst);
      check?.hit(slow);
      this.runAccessEnd(slow);
    } else if (inline) {
      const hit = b.open(Op.block);
      const slow = b.open(Op.block);
      if (lp && keep) {
        // the page of the last probe again: its addend without the TLB lookup, when the last byte's page is that
        // page (emitTlbKey) and the first byte is not below it (an access crossing into it); unsigned: that page
        // came from a hit, so it is neither page 0 nor past 2^63 (cpu.ts tlbEdge)
        const other = b.open(Op.block);
        emitTlbKey(b, this.a, size);
        b.get(lpVpn).op(Op.i64Ne).brIf(other);
        if (size > 1) b.get(this.a).get(lpVpn).op(Op.i64LtU).brIf(other);
        b.get(this.a).op(Op.i32WrapI64).get(lpBase).op(Op.i32Add);
        emitRamAccess(b, size, false);
        b.set(dst);
        check?.hit(slow);
        b.br(hit);
        b.close();
      }
      emitTlbProbe(b, this.rtag, this.a, feed ? { ti: this.pTi, key: lpVpn, add: lpBase } : { ti: this.pTi }, size, false, slow);
      emitRamAccess(b, size, false);
      b.set(dst);
      check?.hit(slow);
      b.br(hit);
      b.close();
    }
    if (EXIT_STATS) this.wbCount(2);
    this.wbCtx = 0; this.flush(); this.wbCtx = 1;
    if (inline) this.slowFlushed();
    b.get(this.st).get(this.rtag);
    if (addr !== ADDR_A && run >= 0) this.pushAddr(addr); else b.get(this.a);
    this.pos();
    if (SITE_STATS) this.siteCount('ld' + size + (inline ? (run >= 0 ? 'r' : 'i') : ''));
    b.call(F_LD + LOG2[size]).set(dst);
    check?.slow();
    if (feed) b.i64(LP_NONE).set(lpVpn);
    if (inline) { this.slowSet(); this.insSlow++; b.close(); }
    // (set on every path of a straight-line load: usable by the block's later loads)
    this.lpKeep(before);
    if (feed && !this.nested()) this.lpAt[key] = b.calls;
  }

  /**
   * Store the low `size` bytes of local `w` at `a`: inline on a TLB hit, else through the memory library. `check` (a
   * CALL's target check, which comes before its push): `hit` runs on the inline path before the store and may
   * branch to the label it gets (the slow path), `slow` in the slow path before the library's store, where the
   * registers were written back.
   */
  store(size: number, check?: { hit: (slow: number) => void; slow: () => void }, addr = ADDR_A): void {
    const b = this.b;
    const run = this.runCur; this.runCur = -1;
    if (addr !== ADDR_A && run < 0) { this.pushAddr(addr); b.set(this.a); } // (as load's)
    const inline = run >= 0 || this.memInline();
    if (inline) this.slowStart();
    if (run >= 0) {
      const slow = this.runAccess();
      check?.hit(slow);
      b.get(this.runPa).get(this.w);
      b.mem(size === 4 ? Op.i64Store32 : Op.i64Store, 0, WASM_RAM_OFFSET + run);
      this.runAccessEnd(slow);
    } else if (inline) {
      this.probe(size, this.wtag, true, () => {
        b.get(this.w);
        emitRamAccess(b, size, true);
      }, check?.hit);
    }
    if (EXIT_STATS) this.wbCount(2);
    this.wbCtx = 0; this.flush(); this.wbCtx = 1;
    if (inline) this.slowFlushed();
    check?.slow();
    b.get(this.st).get(this.wtag);
    if (addr !== ADDR_A && run >= 0) this.pushAddr(addr); else b.get(this.a);
    b.get(this.w); this.pos();
    const before = b.calls;
    if (SITE_STATS) this.siteCount('st' + size + (inline ? (run >= 0 ? 'r' : 'i') : ''));
    b.call(F_ST + LOG2[size]);
    if (inline) { this.slowSet(); this.insSlow++; b.close(); }
    // (the memory library leaves the paging state as it was: the loads' pages stay usable)
    this.lpKeep(before);
  }

  // ---- exits

  /** Leave with `count` instructions of this pass done and RIP = r0 + `ripOff`. */
  exitConst(count: number, ripOff: number, kind = X_OTHER): void {
    const b = this.b;
    this.xk(kind);
    b.get(this.st); this.r0f(ripOff);
    b.mem(Op.f64Store, 3, L.S_RIP);
    b.i32(count).set(this.xc); this.leave();
  }

  /** Push r0 + `off` (the RIP of the block being run, plus an offset) as an f64 (R0_ONE: from r0i). */
  r0f(off = 0): void {
    const b = this.b;
    if (R0_ONE) { b.get(this.r0i); if (off !== 0) b.i64(off).op(Op.i64Add); b.op(Op.f64ConvertI64s); }
    else { b.get(this.r0); if (off !== 0) b.f64(off).op(Op.f64Add); }
  }

  /** Move r0 (and r0i) on by `off`: a branch between a region's blocks. */
  r0move(off: number): void {
    const b = this.b;
    if (off === 0) return;
    if (!R0_ONE) b.get(this.r0).f64(off).op(Op.f64Add).set(this.r0);
    b.get(this.r0i).i64(off).op(Op.i64Add).set(this.r0i);
  }

  /**
   * Emit the first two words of a DISPATCH entry for the block at `tpa` in this block's page (so of this block's page
   * generation) as one i64.const: pa in the low half, the generation in the high half.
   */
  entryKey(tpa: number): void {
    this.b.i64hl(this.block.gen, tpa);
  }

  /**
   * Leave with `count` instructions of this pass done towards the static target r0 + `ripOff` (a direct branch, the
   * fall-through), telling the dispatcher where the target's translated block is when it lies in this block's
   * physical page: its physical address is then this block's + ripOff under the same translation (RIP's page did
   * not change, and nothing that changes the mapping or the mode is a fast form), and its page generation must be
   * this block's (current while this block runs: an invalidation stops the chain through S_CHAIN). Its dispatch
   * entry is at a constant address, so the block checks (pa, generation) with one 64-bit compare and leaves the
   * entry's address in S_NEXT: the dispatcher then skips the fetch-TLB probe and the table lookup.
   * (A tail call into the successor, measured first, made the boot slower: see the commit message.)
   */
  exitStatic(count: number, ripOff: number): void {
    const b = this.b, pa = this.block.pa, tpa = pa + ripOff;
    const R = this.region, to = this.regionTargetOf(ripOff);
    if (to >= 0 && (to & 1) !== 0) { this.crossBranch(count, ripOff, to >> 1); return; }
    if (R !== null && to >= 0) {
      // to another block of this region (or this one's start): a branch when the dispatcher would enter it (a
      // deferred flag record is stored on that path only when j can see it: flagsDead; the exit below stores it)
      const j = to >> 1;
      this.wbCtx = 3; this.flush(!(EDGE_DEAD && this.memberDead(j))); this.wbCtx = 1;
      b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
      this.regionFits(R.members[j].n);
      b.hint(true).open(Op.if);
      b.get(this.c32).set(this.n);
      this.r0move(ripOff);
      if (COUNT_CHAINS) b.get(R.intra).i32(1).op(Op.i32Add).set(R.intra);
      if (SITE_EXITS) this.siteCount('b');
      if (j > R.cur) b.br(R.labels[j]);
      else this.branchViaTable(j);
      b.close();
      this.exitConst(count, ripOff, X_REGION);
      return;
    }
    if (this.opts.tail) this.tailExit(count, ripOff);
    if (DIRECT_CHAIN && ripOff !== 0 && (tpa >>> 12) === (pa >>> 12) && tpa >= 0) {
      const e = L.dispatchEntry(tpa);
      if (NEXT_KEY) {
        // (the set and the key: the dispatcher finds the way that holds it, else looks the target up)
        b.get(this.st).i32(e).mem(Op.i32Store, 2, L.S_NEXT);
        b.get(this.st); this.entryKey(tpa); b.mem(Op.i64Store, 3, L.S_NKEY);
      } else {
        // (in either way of the set; S_NEXT = 0 when in neither: the dispatcher looks the target up)
        b.get(this.st).i32(e).i32(e + 16).i32(0);
        b.i32(0).mem(Op.i64Load, 3, e + 16); this.entryKey(tpa); b.op(Op.i64Eq).op(Op.select);
        b.i32(0).mem(Op.i64Load, 3, e); this.entryKey(tpa); b.op(Op.i64Eq).op(Op.select);
        b.mem(Op.i32Store, 2, L.S_NEXT);
      }
    }
    this.exitConst(count, ripOff, (tpa >>> 12) === (pa >>> 12) && tpa >= 0 ? X_SAME : X_CROSS);
  }

  /**
   * Whether a static exit to r0 + `ripOff` branches (when it branches, not when it leaves) to a region member that
   * overwrites every arithmetic flag before anything can see them (flagsDead from its start), as exitStatic and
   * crossBranch decide: then the flags need not be stored on that path.
   */
  /** flagsDead(member j, -1) of the current region, worked out once per member (Region.dead). */
  memberDead(j: number): boolean {
    const R = this.region!;
    let d = R.dead[j];
    if (d === undefined) R.dead[j] = d = flagsDead(R.members[j], -1);
    return d;
  }
  edgeDead(ripOff: number): boolean {
    const to = EDGE_DEAD ? this.regionTargetOf(ripOff) : -1;
    return to >= 0 && this.memberDead(to >> 1);
  }

  /**
   * The region member a static exit to r0 + `ripOff` branches to when it branches (exitStatic): one on another page
   * found by linear address (`cross`: crossBranch), else one at the target's physical address on this block's page;
   * -1 when the exit leaves the function. Packed, no object (edgeDead asks for many exits): j * 2 + 1 when `cross`,
   * else j * 2.
   */
  regionTargetOf(ripOff: number): number {
    const R = this.region;
    if (R === null) return -1;
    const pa = this.block.pa, tpa = pa + ripOff;
    if (CROSS_PAGE && (tpa >>> 12) !== (pa >>> 12) && R.lins.length > 0) {
      const jl = R.atLin.get(R.lins[R.cur] + ripOff);
      if (jl !== undefined && jl !== R.cur && (R.members[jl].pa >>> 12) !== (pa >>> 12)) return jl * 2 + 1;
    }
    const j = R.at.get(tpa);
    return j !== undefined && (tpa >>> 12) === (pa >>> 12) ? j * 2 : -1;
  }

  /** The linear address the block being emitted was queued at (a region member's, or translateBody's), if known. */
  lin: number | undefined = undefined;
  curLin(): number | undefined {
    const R = this.region;
    return R === null ? this.lin : R.lins.length > 0 ? R.lins[R.cur] : undefined;
  }

  /**
   * The translation at r0 + `ripOff` that a static exit may enter directly (tailExit): in this block's page
   * by physical address and this block's generation (`same`), else by its linear address; null: none.
   */
  targetAt(ripOff: number, ctx: TailCtx): { t: TailTarget | null; same: boolean } {
    const tpa = this.block.pa + ripOff;
    const same = (tpa >>> 12) === (this.block.pa >>> 12) && tpa >= 0;
    if (same) return { t: ctx.find(tpa, this.block.gen), same };
    const lin = this.curLin();
    return { t: lin !== undefined ? ctx.findLin(lin + ripOff) : null, same };
  }

  /**
   * A static exit to r0 + `ripOff` whose target was already translated and installed when this batch was built
   * (EmitOpts.tail: in this block's page with its page generation, else the block queued at that linear address):
   * a tail call (return_call, wasm tail calls) into that translation when the dispatcher would have entered it.
   * Checked as the dispatcher would: the chain is still on (S_CHAIN), its instruction count (S_NBASE + this call's)
   * below CHAIN_LIMIT, the target fits the budget; another page must also be mapped by this privilege's fetch-TLB
   * bank to the target's physical page and still have its generation (fetchMapsTo, as crossBranch); in this block's
   * page its generation is this block's, current while this block runs. Then S_NBASE, S_R0 and S_BLK move to the
   * target as the dispatcher moves them, and the target returns the instructions it ran to the dispatcher, which
   * adds them to S_NBASE. The function called is the translation found at build time, which stays right for that
   * code: the runtime never reuses its function-table index (S_BLK's helpers look the blocks up there; WasmEngine
   * pinned) and the checks above fail once its page changed. Else (or no target) the exit goes on as before.
   */
  tailExit(count: number, ripOff: number): boolean {
    const b = this.b, tpa = this.block.pa + ripOff;
    const { t, same } = this.targetAt(ripOff, this.opts.tail!);
    if (t === null) return false;
    const tt = t;
    this.wbCtx = 8; this.flush(); this.wbCtx = 1;
    this.tailTo(tt, count, same ? X_SAME : X_CROSS, same ? tpa : -1, () => {
      if (!same) { this.fetchMapsTo(ripOff, tt.pa >>> 12, tt.gen); b.op(Op.i32And); }
    }, () => {
      this.r0f(ripOff);
    });
    return true;
  }


  /** tailTo's local (-1 until its first tail call): S_NBASE plus the call's count. */
  nb = -1;

  /**
   * The tail call of tailExit into installed translation `t` (dirty registers already written back):
   * when the chain is on, the call's instruction count with `count` more stays below CHAIN_LIMIT and t fits the
   * budget, and what `cond` pushes (i32s and-ed to those; may push nothing) holds, S_NBASE, S_R0 and S_BLK move to
   * t (its RIP, an f64, pushed by `rip`) and t is called with return_call; else the code goes on after it. `kind` is
   * the exit kind counted (EXIT_STATS) and `samePa` t's physical address when it lies in this block's page (-1 else).
   */
  tailTo(t: TailTarget, count: number, kind: number, samePa: number, cond: () => void, rip: () => void): void {
    const b = this.b, ctx = this.opts.tail!;
    let fi = ctx.index.get(t.fn) ?? -1;
    if (fi < 0) { fi = ctx.fns.push(t.fn) - 1; ctx.index.set(t.fn, fi); }
    // (S_NBASE + this call's count: read once, kept in local nb for the call's store)
    if (this.nb < 0) this.nb = b.local(I32);
    b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
    const ch = this.chainOn();
    b.get(this.st).mem(Op.i32Load, 2, L.S_NBASE).get(this.c32).op(Op.i32Add).tee(this.nb).i32(CHAIN_LIMIT).op(Op.i32LtS);
    this.chainAnd(ch);
    b.get(this.c32).i32(t.n).op(Op.i32Add).get(this.left).op(Op.i32LeS).op(Op.i32And);
    cond();
    b.hint(true).open(Op.if);
    b.get(this.st).get(this.nb).mem(Op.i32Store, 2, L.S_NBASE);
    b.get(this.st);
    rip();
    b.tee(this.tf).mem(Op.f64Store, 3, L.S_R0);
    b.get(this.st).i32(t.word).mem(Op.i32Store, 2, L.S_BLK);
    if (samePa >= 0) {
      // (the page's entries for reregion, as the dispatcher counts a named entry: only those of one page)
      const ph = L.S_PHITS + 4 * ((samePa >>> 12) & (L.PHITS_N - 1));
      this.bump(ph);
    }
    this.countTail(kind);
    b.get(this.st).get(this.tf).get(this.left).get(this.c32).op(Op.i32Sub).get(this.user).i32(t.word >>> K_SHIFT);
    b.returnCall(F_TAIL + fi);
    b.close();
  }

  /**
   * IND_JOIN, at an indirect JMP or CALL (target in `v`, registers and flags written back, `count` instructions of
   * this pass done): when the region has a member queued at the address the block's last run went to (indTarget),
   * branch there while the target is that address and the dispatcher would have entered it there (crossBranch's
   * checks: chain, limit, budget, this privilege's fetch TLB mapping that linear page to the member's physical page,
   * of its generation); else go on to the exit.
   */
  indBranch(count: number): void {
    const R = this.region, lin = indTarget(this.block);
    if (R === null || lin === 0 || R.lins.length === 0 || this.nested() || !userLinear(this.curLin())) return;
    const j = R.atLin.get(lin);
    if (j === undefined) return;
    const b = this.b, m = R.members[j];
    this.flush();
    b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
    b.get(this.v).i64(lin).op(Op.i64Eq);
    this.regionFits(m.n); b.op(Op.i32And);
    this.fetchMapsAt(Math.floor(lin / 4096), m.pa >>> 12, m.gen); b.op(Op.i32And);
    b.hint(true).open(Op.if);
    b.get(this.c32).set(this.n);
    b.i64(lin).set(this.r0i);
    if (!R0_ONE) b.f64(lin).set(this.r0);
    b.get(this.st).f64(lin).mem(Op.f64Store, 3, L.S_R0);
    this.enterMember(j);
    if (SITE_EXITS) this.siteCount('b.ind');
    this.branchViaTable(j);
    b.close();
  }

  /** fetchMapsTo for the linear page number `vpn` (a constant). Uses t32. */
  fetchMapsAt(vpn: number, pfn: number, gen: number): void {
    const b = this.b;
    b.i32(L.tlbSlot(vpn) << L.TLB_ENTRY_SHIFT);
    b.get(this.rtag).op(Op.i32Add).tee(this.t32);
    b.mem(Op.i64Load, 3, L.TLB_FETCH_DELTA).i64(BigInt(vpn) << 12n).op(Op.i64Eq);
    b.get(this.t32).mem(Op.i32Load, 2, L.TLB_FETCH_DELTA + 12).i32(pfn).op(Op.i32Eq).op(Op.i32And);
    b.i32(0).mem(Op.i32Load, 2, L.PAGE_GEN + 4 * pfn).i32(gen).op(Op.i32Eq).op(Op.i32And);
  }

  /**
   * A static exit to member j of the region in another physical page (a CALL, JMP, Jcc or fall-through into the
   * page): a branch when the dispatcher would have entered j and would have found it there. Besides the checks of a
   * same-page branch (chain on, instruction limit, budget), j's page generation must still be the one it was
   * translated with (the current block's being current tells nothing about another page), and the fetch-TLB bank of
   * this privilege must map the target's linear address (r0 + ripOff: the block may run under another mapping than
   * the one it was queued under) to j's physical page, as the dispatcher's lookup requires (first-level tag, then
   * the physical page; ./tlb-probe.ts's probe, on the fetch bank). Then r0 moves to the target, and S_R0 and the
   * member bits of S_BLK follow it (WasmEngine.current finds a helper's RIP from the entered block's RIP plus a pa
   * difference, which holds within one page only). Else it leaves through the dispatcher as before.
   */
  crossBranch(count: number, ripOff: number, j: number): void {
    const b = this.b, R = this.region!, m = R.members[j];
    this.wbCtx = 3; this.flush(!(EDGE_DEAD && this.memberDead(j))); this.wbCtx = 1; // (as exitStatic's branch)
    b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
    this.regionFits(m.n);
    this.fetchMapsTo(ripOff, m.pa >>> 12, m.gen);
    b.op(Op.i32And);
    b.open(Op.if);
    b.get(this.c32).set(this.n);
    this.r0move(ripOff);
    b.get(this.st); this.r0f(); b.mem(Op.f64Store, 3, L.S_R0);
    this.enterMember(j);
    if (j > R.cur) b.br(R.labels[j]);
    else this.branchViaTable(j);
    b.close();
    this.exitConst(count, ripOff, X_REGION);
  }

  /** Whether this block's CALLs and RETs keep the return-address stack (RAS; RAS_USER: in user code too). */
  rasOn(): boolean {
    return RAS && (RAS_USER || !userLinear(this.curLin()));
  }

  /**
   * A CALL (after its push, which may fault) records its return address r0 + `next` on the return-address stack
   * (layout.ts S_RAS) with where that address's block is: in this block's page (nothing else is known statically) it
   * is this block's pa + next under the mapping this block runs with, of this block's page generation; its DISPATCH
   * set is a constant. A return address in another page gets a non-canonical address (no RET can match it) to keep
   * the stack in step. The stack is a prediction only: rasPop checks it against the popped address, and it lives
   * for one dispatcher call (cpl and mode fixed), emptied on every TLB flush or INVLPG (SoftCpu.invalidateFetch), so
   * the linear-to-physical mapping the CALL's block ran with is still the one the fetch TLB holds.
   */
  rasPush(next: number, ret: number): void {
    if (!this.rasOn()) return;
    const b = this.b, pa = this.block.pa, tpa = pa + next, same = (tpa >>> 12) === (pa >>> 12);
    // (S_RASP counts in bytes and is moved first: the entry's offset is one AND of the new value, as a RET takes it
    // of the value it finds, layout.ts S_RASP)
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L.S_RASP).i32(L.RAS_STRIDE).op(Op.i32Add).tee(this.t32).mem(Op.i32Store, 2, L.S_RASP);
    b.get(this.t32).i32(L.RAS_N * L.RAS_STRIDE - 1).op(Op.i32And).get(this.st).op(Op.i32Add).tee(this.c32);
    // (local `ret` holds the return address r0 + next, the value the CALL pushed; an entry for another page holds a
    // non-canonical address, which no RET matches, so nothing else of it is ever read)
    if (same) b.get(ret).mem(Op.i64Store, 3, L.S_RAS);
    else b.i64(1n << 62n).mem(Op.i64Store, 3, L.S_RAS);
    if (same) {
      b.get(this.c32); this.entryKey(tpa); b.mem(Op.i64Store, 3, L.S_RAS + 8);
      // (the DISPATCH set and the RET_BRANCH token, both constants: one i64 store; the token is written at every
      // push that a RET can match, 0 where RET_BRANCH does not apply, so no RET reads an older push's)
      const tok = RET_BRANCH ? this.retToken(tpa) : 0;
      b.get(this.c32).i64hl(tok, L.dispatchEntry(tpa)).mem(Op.i64Store, 3, L.S_RAS + 16);
    }
  }

  /**
   * RET_BRANCH: the token a CALL pushes for its return block at physical address `tpa` (in the CALL block's page):
   * this function's id << 12 | the member starting there, when one of this page and generation does; else 0.
   */
  retToken(tpa: number): number {
    const R = this.region;
    if (R === null || this.fid === 0 || !userLinear(this.curLin())) return 0;
    const j = R.at.get(tpa);
    if (j === undefined || j >= 0x1000 || R.members[j].gen !== this.block.gen || (R.members[j].pa >>> 12) !== (tpa >>> 12)) return 0;
    return (this.fid * 0x1000 + j) >>> 0;
  }

  /** RET_BRANCH applies to this function's RETs (see RET_BRANCH). */
  retBranches(): boolean {
    return RET_BRANCH && this.fid !== 0 && this.rasOn() && this.region !== null && this.region.lim >= 0 &&
      userLinear(this.curLin());
  }

  /**
   * RET_BRANCH, inside rasPop's hit (c32: the stack entry, `v` the return address; registers and flags written back):
   * when the entry's token names this function, and the chain is on and `count` more instructions keep the call
   * within the region's limit, branch to the member the token names at the return address (see RET_BRANCH); else
   * go on (rasPop names the dispatch entry to the dispatcher, as without).
   */
  retBranch(count: number): void {
    const b = this.b, R = this.region!;
    if (this.rbk < 0) { this.rbk = b.local(I32); this.rbn = b.local(I32); }
    b.get(this.n).i32(count).op(Op.i32Add).set(this.rbn);
    b.get(this.c32).mem(Op.i32Load, 2, L.S_RAS + 20).tee(this.rbk).i32(12).op(Op.i32ShrU).i32(this.fid).op(Op.i32Eq);
    const ch = this.chainOn();
    b.get(this.rbn).get(R.lim).op(Op.i32LeS);
    this.chainAnd(ch);
    b.op(Op.i32And);
    b.hint(true).open(Op.if);
    b.get(this.rbn).set(this.n);
    b.get(this.v).set(this.r0i);
    if (!R0_ONE) b.get(this.v).op(Op.f64ConvertI64s).set(this.r0);
    // (the runtime's anchor: the return block may be in another page than the RET's, crossBranch)
    b.get(this.st); this.r0f(); b.mem(Op.f64Store, 3, L.S_R0);
    b.get(this.rbk).i32(0xfff).op(Op.i32And).set(this.t32);
    this.enterMember(null);
    if (SITE_EXITS) this.siteCount('b.ret');
    // (k < members: the br_table's entry for member k)
    b.get(this.t32).set(this.k).br(R.disp);
    b.close();
  }

  /**
   * A RET whose target (local `v`, canonical, already in S_RIP) is the return address on top of the stack (popped
   * either way) names that block's dispatch entry in S_NEXT when the entry holds its (pa, generation), as exitStatic
   * does: the dispatcher then enters it without the fetch-TLB probe, the lookup and the generation check.
   */
  rasPop(retCount = -1): void {
    if (!this.rasOn()) return;
    const b = this.b;
    // (S_RASP is never negative: set to 0 or restored by the runtime, RAS_STRIDE less only here when not 0; so "not 0"
    // is "more than 0", two wasm operations fewer)
    b.get(this.st).mem(Op.i32Load, 2, L.S_RASP).tee(this.t32).hint(true).open(Op.if);
    b.get(this.st).get(this.t32).i32(L.RAS_STRIDE).op(Op.i32Sub).mem(Op.i32Store, 2, L.S_RASP);
    b.get(this.t32).i32(L.RAS_N * L.RAS_STRIDE - 1).op(Op.i32And).get(this.st).op(Op.i32Add).tee(this.c32);
    b.mem(Op.i64Load, 3, L.S_RAS).get(this.v).op(Op.i64Eq).hint(true).open(Op.if);
    if (retCount >= 0 && this.retBranches()) this.retBranch(retCount);
    if (NEXT_KEY) {
      b.get(this.st).get(this.c32).mem(Op.i32Load, 2, L.S_RAS + 16).mem(Op.i32Store, 2, L.S_NEXT);
      b.get(this.st).get(this.c32).mem(Op.i64Load, 3, L.S_RAS + 8).mem(Op.i64Store, 3, L.S_NKEY);
      b.close();
      b.close();
      return;
    }
    b.get(this.c32).mem(Op.i32Load, 2, L.S_RAS + 16).set(this.t32);
    b.get(this.c32).mem(Op.i64Load, 3, L.S_RAS + 8).set(this.t);
    b.get(this.st);
    b.get(this.t32).get(this.t32).i32(16).op(Op.i32Add).i32(0);
    b.get(this.t32).mem(Op.i64Load, 3, 16).get(this.t).op(Op.i64Eq).op(Op.select);
    b.get(this.t32).mem(Op.i64Load, 3, 0).get(this.t).op(Op.i64Eq).op(Op.select);
    b.mem(Op.i32Store, 2, L.S_NEXT);
    b.close();
    b.close();
  }

  /** RET_BRANCH: this region function's id (0: none, not a region or off) and the RET branch's locals (token, count). */
  fid = 0;
  rbk = -1; rbn = -1;

  /**
   * After a memory instruction: leave right after it when its slow path raised an event (the helper then cleared
   * S_CHAIN: a store into a code page, an MMIO side effect), so the event is seen at the next boundary.
   */
  exitIfSlow(count: number, ripOff: number): void {
    const b = this.b;
    // (only helpers clear S_CHAIN, on the main thread: after inline probes whose slow paths did not run, it is 1 still)
    const flagged = SLOW_FLAG && this.insSlow > 0 && b.calls - this.insCalls === this.insSlow;
    // (SLOW_EV: slowL says that a slow path of this instruction stopped the chain, so it leaves on slowL alone and
    // never goes on with slowL 1)
    if (flagged && !SLOW_EV) { b.get(this.slowL).hint(false).open(Op.if); b.i32(0).set(this.slowL); }
    if (flagged && SLOW_EV) b.get(this.slowL);
    else b.get(this.st).mem(Op.i32Load, 2, L.S_CHAIN).op(Op.i32Eqz);
    b.hint(false).open(Op.if);
    if (SLOW_RIP) {
      // (the helper that stopped the chain stored the next instruction's RIP: runtime.ts WasmEngine.stopAfter)
      this.xk(X_HELPER);
      b.i32(count).set(this.xc);
      // (SLOW_WB: only here did a slow path run, whose flush wrote back all but what the instruction changed after it)
      if (flagged && this.slowTrack) { this.flush(this.slowFl, ~this.slowMod); b.br(this.out); } else this.leave();
    } else this.exitConst(count, ripOff, X_HELPER);
    b.close();
    if (flagged && !SLOW_EV) b.close();
    if (flagged) { if (!this.nested()) this.slowMaybe = false; } else if (this.insSlow > 0) this.slowMaybe = true;
    this.chainAt = !flagged || this.chainAt === this.insCalls ? b.calls : -1;
  }

  /**
   * #GP(0) unless the static branch target r0 + `ripOff` is canonical. Nothing to check when it lies in the page of
   * the block's start (its page offset is the block's pa's): RIP there was fetched, so that page is canonical, and
   * canonical addresses are whole pages (SDM vol. 1 §3.3.7.1).
   */
  checkTarget(ripOff: number): void {
    if (!this.targetOff(ripOff)) return;
    this.gpIf(() => this.targetFar(ripOff), true);
  }
  /** Whether the static target r0 + `ripOff` needs checkTarget's check: it leaves the page of the block's start. */
  targetOff(ripOff: number): boolean {
    const o = (this.block.pa & 0xfff) + ripOff;
    return o < 0 || o >= 4096;
  }
  /** Whether this function's memory accesses probe the TLB inline (not counting stack runs). */
  memInline(): boolean {
    return INLINE_MEM && (this.selfLoop || this.loopMember || this.opts.inline || INLINE_ALL);
  }
  /** Whether the current instruction's next memory access probes inline (load, store), not the library alone. */
  accessInline(): boolean {
    return this.runCur >= 0 || this.memInline();
  }
  /**
   * FOLD_CHECKS: whether a check's own #GP path would write back enough (dirty registers, a deferred flag record) to
   * pay for the check on the access's slow path too (~20 operations against ~13 plus the write-backs).
   */
  foldWorth(): boolean {
    let n = 0;
    for (let m = this.dirty; m !== 0; m &= m - 1) n++;
    return 3 * n + (this.fdirty ? 9 : 0) > 8;
  }

  /** Push (i32) whether r0 + `ripOff` is not canonical (checkTarget). */
  targetFar(ripOff: number): void {
    // r0 was fetched, so it is canonical: a forward target can only pass the top of the lower half (2^47), a
    // backward one only fall below the bottom of the upper half (-2^47); one comparison each
    const b = this.b;
    if (R0_ONE) {
      // (r0 + ripOff >= 2^47 as r0 >= 2^47 - ripOff: no overflow either way, r0 canonical and |ripOff| < 2^32)
      b.get(this.r0i);
      if (ripOff >= 0) b.i64(TWO47 - ripOff).op(Op.i64GeS); else b.i64(-TWO47 - ripOff).op(Op.i64LtS);
      return;
    }
    b.get(this.r0).f64(ripOff).op(Op.f64Add);
    if (ripOff >= 0) b.f64(TWO47).op(Op.f64Ge); else b.f64(-TWO47).op(Op.f64Lt);
  }
  /** Push (i32) whether the i64 local `l` is not canonical: bits 63..47 not all equal (SDM vol. 1 §3.3.7.1). */
  nonCanonical(l: number): void {
    // (l + 2^47 is below 2^48, unsigned, exactly for the canonical addresses)
    this.b.get(l).i64(TWO47).op(Op.i64Add).i64(2 ** 48).op(Op.i64GeU);
  }
  /**
   * #GP(0) through the helper when `cond` pushes 1, the dirty registers written back on that path first when `flush`
   * (false where they are in the state area already: a memory access's slow path after its write-backs, FOLD_CHECKS).
   */
  gpIf(cond: () => void, flush: boolean): void {
    const b = this.b;
    if (this.gpL >= 0 && (!flush || (!this.fdirty && this.dirty === 0))) {
      // (GP_SHARE: the position stays on the stack when the branch is not taken)
      this.pos(); cond(); b.hint(false).brIf(this.gpL).op(Op.drop);
      return;
    }
    cond();
    b.hint(false).open(Op.if);
    if (flush) this.flush();
    this.pos(); b.call(F_GP).op(Op.unreachable); b.close();
  }

  /** #GP(0) through the helper unless the i64 local `l` is canonical: bits 63..47 all equal (SDM vol. 1 §3.3.7.1). */
  checkCanonicalI64(l: number): void {
    this.gpIf(() => this.nonCanonical(l), true);
  }

  /** #GP(0) through the helper unless the f64 on the stack is canonical (SDM vol. 1 §3.3.7.1). */
  checkCanonicalF64(): void {
    const b = this.b;
    this.gpIf(() => { b.tee(this.tf).f64(-TWO47).op(Op.f64Lt).get(this.tf).f64(TWO47).op(Op.f64Ge).op(Op.i32Or); }, true);
  }

  // ---- lazy flags

  /**
   * The flag locals now hold the record produced by (kind, size). At straight-line level it stays there (fdirty)
   * until something can read the state area's copy: the next producer of the block usually replaces it first (the
   * flags of `sub; test; jne` are stored once, at the exit), and a condition of the block reads the locals. Inside a
   * branch or loop it is stored at once (the other path may not produce: see the callers that produce there).
   * Rule for every form: while the record is deferred, the flag locals (ld, ls, lr, lcy) change only in the
   * producer's final step, never before a memory access or helper call of the same instruction that may fault or
   * read the flags (the fault must find the record from before). A form that computes into them earlier (ADC/SBB,
   * INC/DEC of memory, CMPXCHG, XADD, 16-bit ALU to memory, DIV) calls commitFlags first: a self-loop's inline
   * memory probe stores the record on its slow path only, where the record stays deferred.
   */
  produced(kind: number, size: number): void {
    this.rot = 0; // (a whole new record: a pending rotate's flags are overwritten)
    this.cfLazy = false; this.slowFl = true;
    this.known = true; this.kind = kind; this.size = size;
    if (this.nested()) this.storeFlags(); else this.fdirty = true;
  }

  /**
   * Store the known record into the state area, only the fields its kind's flags are computed from (SoftCpu.computeArith,
   * the flag library): S_LOP and S_LSZ as one i64 (adjacent, layout.ts), then d and s for ADD/ADC/SUB/SBB, r for
   * all but ADD and SUB (NO_RES: r is d + s or d - s there, which the readers of a record of a plain kind work out),
   * the carry-in for ADC/SBB/INC/DEC; EXPLICIT: the bits in S_LD.
   */
  storeFlags(): void {
    const b = this.b, k = this.kind;
    // (before any field is stored: the flag library reads the record there)
    if (this.cfLazy) this.resolveCf();
    if (k === EXPLICIT) {
      b.get(this.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
      b.get(this.st).get(this.ld).mem(Op.i64Store, 3, L.S_LD);
      return;
    }
    b.get(this.st).i64hl(this.size, k).mem(Op.i64Store, 3, L.S_LOP);
    if (k !== L_LOGIC && k !== L_INC && k !== L_DEC) {
      b.get(this.st).get(this.ld).mem(Op.i64Store, 3, L.S_LD);
      b.get(this.st).get(this.ls).mem(Op.i64Store, 3, L.S_LS);
    }
    if (!(NO_RES && (k === L_ADD || k === L_SUB))) b.get(this.st).get(this.lr).mem(Op.i64Store, 3, L.S_LR);
    if (k === L_INC || k === L_DEC || k === L_ADC || k === L_SBB) b.get(this.st).get(this.lcy).mem(Op.i32Store, 2, L.S_LCY);
  }

  /** Store a deferred flag record (produced) into the state area; at straight-line level it is then clean. */
  commitFlags(): void {
    if (!this.fdirty) return;
    if (this.rot !== 0) {
      if (this.nested()) { this.storeRot(); return; }
      this.settleRot();
    }
    this.storeFlags();
    if (!this.nested()) this.fdirty = false;
  }

  /** Push flag local `l` at the producer's size: i64 for size 8, else i32 (signed: sign-extended for size 1). */
  fv(l: number, signed: boolean): void {
    const b = this.b;
    b.get(l);
    if (this.size !== 8) {
      b.op(Op.i32WrapI64);
      if (signed && this.size === 1) b.op(Op.i32Extend8s);
    }
  }

  /**
   * cfLazy: the carry-in of the deferred INC/DEC record into local lcy, from the state area's record (CF, bit 0 of
   * the flag library's `fa`, which only reads the record: it is called without counting as a call that may change
   * the paging state or stop the chain, Body.calls). Inside a branch only that path has it: it stays lazy.
   */
  resolveCf(): void {
    const b = this.b;
    b.get(this.st).callUncounted(F_FA).i32(1).op(Op.i32And).set(this.lcy);
    if (!this.nested()) this.cfLazy = false;
  }

  /** Push condition `cc` (Jcc encoding) as an i32 0/1. */
  cond(cc: number): void {
    const b = this.b;
    this.settleRot();
    // (B and BE read CF; INC/DEC records evaluate the others inline without it)
    if (this.cfLazy && ((cc >> 1) === 1 || (cc >> 1) === 3)) this.resolveCf();
    if (!this.known || !this.condStatic(cc >> 1)) {
      // flags from before the block (or a record kind not inlined: 16-bit, INC/DEC of a byte): their bits from the
      // flag library, then every later condition of the block is inline
      this.loadFlags();
      this.condStatic(cc >> 1);
    }
    if (cc & 1) b.op(Op.i32Eqz);
  }

  /**
   * The arithmetic flags of the state area's record (whoever produced it) as EXPLICIT bits into local `ld`, through
   * the flag library's `fa`; the block knows its flags from here (the state area keeps the record it had: same flags).
   */
  loadFlags(): void {
    this.settleRot();
    this.commitFlags(); // (a known record the block cannot evaluate inline)
    this.b.get(this.st).call(F_FA).op(Op.i64ExtendI32u).set(this.ld);
    this.known = true; this.kind = EXPLICIT;
  }

  condStatic(c: number): boolean {
    // (no closures: the flag terms are the methods below, which read the record's kind and size; this runs for every
    // conditional branch, SETcc and CMOVcc)
    const b = this.b, k = this.kind, w = this.size === 8;
    if (k === EXPLICIT) {
      // The arithmetic flags as EFLAGS bits in ld (SDM vol. 1 §3.4.3.1: CF 0, PF 2, ZF 6, SF 7, OF 11).
      switch (c) {
        case 0: this.xBit(11); break;
        case 1: this.xBit(0); break;
        case 2: this.xBit(6); break;
        case 3: b.get(this.ld).op(Op.i32WrapI64).i32(0x41).op(Op.i32And).i32(0).op(Op.i32Ne); break;
        case 4: this.xBit(7); break;
        case 5: this.xBit(2); break;
        case 6: this.xBit(7); this.xBit(11); b.op(Op.i32Xor); break;
        default: this.xBit(6); this.xBit(7); this.xBit(11); b.op(Op.i32Xor).op(Op.i32Or);
      }
      return true;
    }
    if (k === L_INC || k === L_DEC) {
      if (this.size === 2) return false;
    } else if (k !== L_LOGIC && k !== L_SUB && k !== L_SBB && k !== L_ADD && k !== L_ADC) return false;
    switch (c) {
      case 0: this.cO(); break;
      case 1: this.cB(); break;
      case 2: this.cZ(); break;
      case 3:
        if (k === L_SUB) { this.fv(this.ld, false); this.fv(this.ls, false); b.op(w ? Op.i64LeU : Op.i32LeU); } else { this.cB(); this.cZ(); b.op(Op.i32Or); }
        break;
      case 4: this.cS(); break;
      case 5: this.cP(); break;
      case 6:
        if (k === L_SUB) { this.fv(this.ld, true); this.fv(this.ls, true); b.op(w ? Op.i64LtS : Op.i32LtS); } else { this.cS(); this.cO(); b.op(Op.i32Xor); }
        break;
      default:
        if (k === L_SUB) { this.fv(this.ld, true); this.fv(this.ls, true); b.op(w ? Op.i64LeS : Op.i32LeS); } else { this.cZ(); this.cS(); this.cO(); b.op(Op.i32Xor).op(Op.i32Or); }
    }
    return true;
  }
  /** condStatic, EXPLICIT: EFLAGS bit n of ld as an i32 0/1. */
  private xBit(n: number): void {
    const b = this.b;
    b.get(this.ld).op(Op.i32WrapI64); if (n) b.i32(n).op(Op.i32ShrU); b.i32(1).op(Op.i32And);
  }
  /** condStatic's ZF of the known record. */
  private cZ(): void { this.fv(this.lr, false); this.b.op(this.size === 8 ? Op.i64Eqz : Op.i32Eqz); }
  /** condStatic's SF. */
  private cS(): void {
    const b = this.b, w = this.size === 8;
    this.fv(this.lr, true); if (w) b.i64(0); else b.i32(0); b.op(w ? Op.i64LtS : Op.i32LtS);
  }
  /** condStatic's PF. */
  private cP(): void { this.b.get(this.lr).op(Op.i32WrapI64).i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz); }
  /** condStatic's OF (a kind condStatic handles). */
  private cO(): void {
    const b = this.b, k = this.kind, w = this.size === 8;
    const lt = w ? Op.i64LtS : Op.i32LtS, xor = w ? Op.i64Xor : Op.i32Xor, and = w ? Op.i64And : Op.i32And;
    if (k === L_LOGIC) {
      b.i32(0);
    } else if (k === L_SUB || k === L_SBB) {
      this.fv(this.ld, true); this.fv(this.ls, true); b.op(xor); this.fv(this.ld, true); this.fv(this.lr, true); b.op(xor).op(and); if (w) b.i64(0); else b.i32(0); b.op(lt);
    } else if (k === L_ADD || k === L_ADC) {
      this.fv(this.ld, true); this.fv(this.lr, true); b.op(xor); this.fv(this.ls, true); this.fv(this.lr, true); b.op(xor).op(and); if (w) b.i64(0); else b.i32(0); b.op(lt);
    } else {
      // OF after INC/DEC: the result is the size's most negative number after INC, its most positive after DEC (a
      // byte's compared sign-extended, as fv gives it)
      const one = this.size === 1;
      this.fv(this.lr, true);
      if (w) b.i64(k === L_INC ? I64_MIN : I64_MAX); else b.i32(k === L_INC ? (one ? -128 : -2147483648) : (one ? 127 : 2147483647));
      b.op(w ? Op.i64Eq : Op.i32Eq);
    }
  }
  /** condStatic's CF (a kind condStatic handles). */
  private cB(): void {
    const b = this.b, k = this.kind, w = this.size === 8;
    const ltu = w ? Op.i64LtU : Op.i32LtU, leu = w ? Op.i64LeU : Op.i32LeU;
    if (k === L_LOGIC) {
      b.i32(0);
    } else if (k === L_SUB) {
      this.fv(this.ld, false); this.fv(this.ls, false); b.op(ltu);
    } else if (k === L_SBB) {
      // SBB (as SoftCpu.computeArith): borrow iff d < s, or d <= s with a carry-in
      this.fv(this.ld, false); this.fv(this.ls, false); b.op(leu); this.fv(this.ld, false); this.fv(this.ls, false); b.op(ltu); b.get(this.lcy).op(Op.select);
    } else if (k === L_ADD) {
      this.fv(this.lr, false); this.fv(this.ld, false); b.op(ltu);
    } else if (k === L_ADC) {
      // ADC: carry iff r < d, or r <= d with a carry-in
      this.fv(this.lr, false); this.fv(this.ld, false); b.op(leu); this.fv(this.lr, false); this.fv(this.ld, false); b.op(ltu); b.get(this.lcy).op(Op.select);
    } else {
      b.get(this.lcy).i32(0).op(Op.i32Ne);
    }
  }

  /**
   * The six arithmetic flags of the known record as EFLAGS bits into local `fl` (as SoftCpu.computeArith: AF from
   * bit 4 of d^s^r, INC/DEC from the result's low nibble, 0 after logic). False (nothing emitted) when not possible.
   */
  materialize(): boolean {
    this.settleRot();
    if (this.cfLazy) this.resolveCf();
    const b = this.b, k = this.kind;
    if (k === EXPLICIT) { b.get(this.ld).op(Op.i32WrapI64).set(this.fl); return true; }
    if ((k === L_INC || k === L_DEC) && this.size === 2) return false;
    if (k !== L_ADD && k !== L_SUB && k !== L_ADC && k !== L_SBB && k !== L_LOGIC && k !== L_INC && k !== L_DEC) return false;
    this.condStatic(1); this.condStatic(5); b.i32(2).op(Op.i32Shl).op(Op.i32Or); this.condStatic(2); b.i32(6).op(Op.i32Shl).op(Op.i32Or);
    this.condStatic(4); b.i32(7).op(Op.i32Shl).op(Op.i32Or); this.condStatic(0); b.i32(11).op(Op.i32Shl).op(Op.i32Or);
    if (k === L_ADD || k === L_SUB || k === L_ADC || k === L_SBB) {
      b.get(this.ld).get(this.ls).op(Op.i64Xor).get(this.lr).op(Op.i64Xor).op(Op.i32WrapI64).i32(0x10).op(Op.i32And).op(Op.i32Or);
    } else if (k === L_INC || k === L_DEC) {
      b.get(this.lr).op(Op.i32WrapI64).i32(0xf).op(Op.i32And).i32(k === L_INC ? 0 : 0xf).op(Op.i32Eq).i32(4).op(Op.i32Shl).op(Op.i32Or);
    }
    b.set(this.fl);
    return true;
  }

  /** Whether materialize() can work out the known record's flags inline (else the flag library must). */
  canMaterialize(): boolean {
    const k = this.kind;
    if (!this.known) return false;
    if (k === EXPLICIT) return true;
    if ((k === L_INC || k === L_DEC) && this.size === 2) return false;
    return k === L_ADD || k === L_SUB || k === L_ADC || k === L_SBB || k === L_LOGIC || k === L_INC || k === L_DEC;
  }

  /**
   * Push the flags after the pending rotate (rot) as EFLAGS bits (i32): the known record's (into local fl) with CF
   * and OF from rv. ROL: CF = bit 0 of the result, OF = top bit ^ CF; ROR: CF = top bit, OF = top two bits' xor.
   */
  rotFlags(): void {
    const b = this.b, rol = this.rot === 1, w = this.rotSize === 8, top = w ? 63 : 31;
    const r = this.rot; this.rot = 0;
    this.materialize();
    this.rot = r;
    // (rv holds the 32-bit result zero-extended for size 4: i64 shifts by the top bit's position work for both)
    if (rol) {
      b.get(this.rv).op(Op.i32WrapI64).i32(1).op(Op.i32And); // CF
      b.get(this.rv).i64(top).op(Op.i64ShrU).get(this.rv).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And); // OF
    } else {
      b.get(this.rv).i64(top).op(Op.i64ShrU).op(Op.i32WrapI64); // CF
      b.get(this.rv).i64(top).op(Op.i64ShrU).get(this.rv).i64(top - 1).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
    }
    b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(this.fl).i32(~0x801).op(Op.i32And).op(Op.i32Or);
  }

  /** The pending rotate's flags become the known record (EXPLICIT, still deferred): at straight-line level only. */
  settleRot(): void {
    if (this.rot === 0) return;
    if (this.nested()) throw new Error('translate: a pending rotate settled inside a branch');
    this.rotFlags();
    this.b.op(Op.i64ExtendI32u).set(this.ld);
    this.rot = 0;
    this.known = true; this.kind = EXPLICIT; this.size = this.rotSize; this.fdirty = true;
  }

  /** Inside a branch (a slow path, an exit): store the pending rotate's flags, leaving the locals and the state as they are. */
  storeRot(): void {
    const b = this.b;
    b.get(this.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
    b.get(this.st); this.rotFlags(); b.op(Op.i64ExtendI32u).mem(Op.i64Store, 3, L.S_LD);
  }

  /** The arithmetic flags before this instruction into local `fl`: inline when known here, else the helper `fl`. */
  oldFlags(): void {
    if (this.known && this.materialize()) return;
    this.loadFlags();
    this.materialize();
  }

  /** Commit EXPLICIT flags: the i32 on the stack holds the six arithmetic flags as EFLAGS bits. */
  explicit(size: number): void {
    this.b.op(Op.i64ExtendI32u).set(this.ld);
    this.produced(EXPLICIT, size);
  }

  /**
   * SHL/SAL/SHR/SAR (op 4-7) by n (1..bits-1) of the 8- or 16-bit value (zero-extended i32) on the stack, as
   * ../ops/alu-shift.ts shift32 at size 1 or 2: leaves the result in local v and the six flags on the stack for
   * explicit() (AF set; OF: SHL top bit ^ CF, SHR the result's two top bits, SAR 0).
   */
  narrowShiftImm(op: number, n: number, bits: 8 | 16): void {
    const b = this.b, T = this, shl = op === 4 || op === 6, sar = op === 7, top = bits - 1, mask = bits === 8 ? 0xff : 0xffff;
    if (sar) b.i32(32 - bits).op(Op.i32Shl).i32(32 - bits).op(Op.i32ShrS);
    b.op(Op.i64ExtendI32s).set(T.t);
    b.get(T.t).i64(n).op(shl ? Op.i64Shl : sar ? Op.i64ShrS : Op.i64ShrU).i64(mask).op(Op.i64And).set(T.v);
    b.get(T.t).i64(shl ? bits - n : n - 1).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32); // CF
    b.get(T.c32);
    if (shl) b.get(T.v).i64(top).op(Op.i64ShrU).op(Op.i32WrapI64).get(T.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
    else if (!sar) b.get(T.v).i64(top).op(Op.i64ShrU).get(T.v).i64(top - 1).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
    b.get(T.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or); // ZF
    b.get(T.v).op(Op.i32WrapI64);
    if (bits === 16) b.i32(8).op(Op.i32ShrU);
    b.i32(0x80).op(Op.i32And).op(Op.i32Or); // SF
    b.get(T.v).op(Op.i32WrapI64);
    if (bits === 16) b.i32(255).op(Op.i32And);
    b.op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).op(Op.i32Or); // PF
    b.i32(16).op(Op.i32Or); // AF
  }

  /**
   * A shift of register r by CL (ShiftCl, ShiftDoubleCl): the count masked to 5 bits (6 for size 8) goes to local ls;
   * a count of 0 changes no flag and only clears a 32-bit register's upper half, any other runs `shift` (shiftBits
   * with n < 0). The flags before are materialized first when known here, so both paths leave an EXPLICIT record in
   * ld; otherwise the state area keeps the record on the count-0 path and the block stops knowing the flags.
   */
  shiftByCl(r: number, size: number, shift: () => void): void {
    const b = this.b, T = this;
    const had = T.known && T.materialize();
    // (both paths store their record through, being inside a branch; without `had` the count-0 path keeps the
    // record from before, which must then be in the state area)
    if (!had) T.commitFlags();
    T.r32(1); b.i32(size === 8 ? 63 : 31).op(Op.i32And).op(Op.i64ExtendI32u).tee(T.ls).op(Op.i64Eqz);
    b.open(Op.if);
    if (size === 4 && r >= 0) T.set32(r, () => T.r32(r));
    if (had) {
      b.get(T.fl).op(Op.i64ExtendI32u).set(T.ld);
      T.produced(EXPLICIT, size);
    }
    b.else();
    shift();
    b.close();
    T.fdirty = false; T.cfLazy = false;
    if (had) { T.known = true; T.kind = EXPLICIT; T.size = size; } else T.known = false;
  }

  /**
   * SHL/SAL/SHR/SAR (op 4-7) of register r by n (1..bits-1; n < 0: the count, non-zero, is the i64 in local ls), as
   * ../ops/alu-shift.ts shift32/shift64: all six arithmetic flags are written explicitly (AF set, OF from the
   * result's top bits): the record becomes EXPLICIT with those bits. With a source register `src` (constant n): SHLD
   * (op 4) / SHRD (op 5), the vacated bits filled from src; the flags follow the same formulas on the result
   * (../ops/alu-shift.ts doubleShift for sizes 4 and 8).
   */
  shiftBits(r: number, op: number, size: number, n: number, src = -1, flagsTo = -1): void {
    const b = this.b, T = this, w = size === 8, bits = w ? 64 : 32;
    const sar = op === 7, shl = op === 4 || op === 6;
    // the count: the constant n, or (n < 0) the i64 in local ls
    const N64 = () => { if (n >= 0) b.i64(n); else b.get(T.ls); };
    const N32 = () => { if (n >= 0) b.i32(n); else b.get(T.ls).op(Op.i32WrapI64); };
    const CFSH = () => { if (n >= 0) b.i64(shl ? bits - n : n - 1); else if (shl) b.i64(bits).get(T.ls).op(Op.i64Sub); else b.get(T.ls).i64(1).op(Op.i64Sub); };
    if (w) {
      if (r >= 0) T.r64(r); else b.get(T.v);
      b.set(T.t);
      b.get(T.t); N64(); b.op(shl ? Op.i64Shl : sar ? Op.i64ShrS : Op.i64ShrU).set(T.v);
      if (src >= 0) { b.get(T.v); T.r64(src); if (n >= 0) b.i64(bits - n); else b.i64(bits).get(T.ls).op(Op.i64Sub); b.op(shl ? Op.i64ShrU : Op.i64Shl).op(Op.i64Or).set(T.v); }
      b.get(T.t); CFSH(); b.op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32); // CF
      b.get(T.c32);
      if (shl) b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
      else if (!sar) b.get(T.v).i64(63).op(Op.i64ShrU).get(T.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).i32(7).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).op(Op.i32WrapI64);
    } else {
      if (r >= 0) T.r32(r); else b.get(T.v).op(Op.i32WrapI64);
      b.op(Op.i64ExtendI32u).set(T.t);
      b.get(T.t).op(Op.i32WrapI64); N32(); b.op(shl ? Op.i32Shl : sar ? Op.i32ShrS : Op.i32ShrU).op(Op.i64ExtendI32u).set(T.v);
      if (src >= 0) { b.get(T.v); T.r32(src); if (n >= 0) b.i32(bits - n); else b.i32(bits).get(T.ls).op(Op.i32WrapI64).op(Op.i32Sub); b.op(shl ? Op.i32ShrU : Op.i32Shl).op(Op.i64ExtendI32u).op(Op.i64Or).set(T.v); }
      b.get(T.t); CFSH(); b.op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32); // CF
      b.get(T.c32);
      if (shl) b.get(T.v).i64(31).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).get(T.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
      else if (!sar) b.get(T.v).i64(31).op(Op.i64ShrU).get(T.v).i64(30).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).op(Op.i32WrapI64).op(Op.i32Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
      b.get(T.v).i64(24).op(Op.i64ShrU).op(Op.i32WrapI64).i32(0x80).op(Op.i32And).op(Op.i32Or);
      b.get(T.v).op(Op.i32WrapI64);
    }
    // PF: even parity of the low byte; AF set
    b.i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).op(Op.i32Or);
    b.i32(16).op(Op.i32Or);
    if (flagsTo >= 0) { b.set(flagsTo); return; }
    b.op(Op.i64ExtendI32u).set(T.ld);
    if (w) T.set64(r, T.v); else T.set32(r, () => b.get(T.v).op(Op.i32WrapI64));
    T.produced(EXPLICIT, size);
  }

  // ---- string instructions

  /**
   * MOVS (A4/A5) and STOS (AA/AB) with a 64-bit address size, with or without REP (a block's last instruction: the
   * block cache ends blocks at string instructions), as ../ops/flow-string.ts does them element by element: MOVS
   * reads [rSI] (DS, or an FS/GS override's base) then writes [rDI], STOS writes rAX's low bytes to [rDI]; then rSI/rDI
   * move by the element size (backwards when EFLAGS.DF, which the runtime keeps in S_EFL) and, under REP, rCX counts
   * down, all stored after each element, so a fault leaves them exact for the elements done. The interpreter runs a
   * repeated instruction with at most SLOW_CHUNK (1024) elements (and 256 KiB) as one execution, whatever path it
   * takes, so counts up to STRING_INLINE_MAX run here to the end as one instruction; larger ones are replayed through
   * the helper (the JavaScript fast paths: TypedArray copies a page run at a time, re-executing the instruction per
   * chunk). False: not such an instruction.
   */
  stringOp(e: BlockEntry, i: number): boolean {
    const op = e.opcode;
    if (!stringRuns(e)) return false;
    const b = this.b, T = this, size = op & 1 ? e.opsize : 1, movs = op <= 0xa5;
    // step: -size when DF (bit 10), else size
    b.i64(-size).i64(size).get(T.st).mem(Op.i32Load, 2, L.S_EFL).i32(1 << 10).op(Op.i32And).op(Op.select).set(T.t);
    let done = -1, loop = -1, fin = -1;
    // one element: load (MOVS) and store through the TLB probes or the memory library, rSI/rDI stepped, rCX counted
    const element = (): void => {
      if (movs) {
        T.r64(6);
        if (e.segOverride === 4 || e.segOverride === 5) b.get(T.st).mem(Op.f64Load, 3, L.S_SEG + 8 * e.segOverride).op(0xfc, 6).op(Op.i64Add);
        b.set(T.a);
        T.load(size);
        b.get(T.v).set(T.w);
      } else { T.r64(0); b.set(T.w); }
      T.r64(7); b.set(T.a);
      T.store(size);
      b.get(T.a).get(T.t).op(Op.i64Add).set(T.a); T.set64(7, T.a);
      if (movs) { T.r64(6); b.get(T.t).op(Op.i64Add).set(T.a); T.set64(6, T.a); }
      if (e.rep !== 0) { b.get(T.x1).i64(1).op(Op.i64Sub).set(T.x1); T.set64(1, T.x1); }
    };
    if (e.rep !== 0) {
      T.r64(1); b.set(T.x1);
      fin = b.open(Op.block);
      if (BULK_STRING) T.bulkString(e, size, movs, fin);
      b.get(T.x1).i64(STRING_INLINE_MAX).op(Op.i64GtU).open(Op.if);
      T.flush(); T.pos(); b.call(F_RP).op(Op.drop);
      T.xk(X_HELPER); b.i32(i + 1).set(T.xc).br(T.out); // (flushed before the replay, which may change any register)
      b.close();
      done = b.open(Op.block); loop = b.open(Op.loop);
      b.get(T.x1).op(Op.i64Eqz).brIf(done);
    }
    element();
    if (e.rep !== 0) {
      b.br(loop);
      b.close(); b.close();
      b.close(); // fin
    }
    // (a block's last instruction without a fast form has e.len 0: a string instruction is its prefixes and opcode)
    T.exitStatic(i + 1, T.offs[i] + e.opLen);
    return true;
  }

  /**
   * REP MOVS/STOS (BULK_STRING) forwards (DF clear) as bulk-memory instructions, one per page run: each pass takes
   * the whole elements up to the nearer page end (of the destination, and of the source for MOVS), at most rCX of
   * them, and copies or fills them when both runs hit the TLB, lie in low RAM and the destination page holds no
   * decoded code (./tlb-probe.ts emitTlbProbeRun); for MOVS the destination must not start inside the source run
   * after its first byte (a forward element copy then reads bytes it wrote, which memory.copy, a memmove, does not:
   * `rep movsb` with rDI = rSI + 1 replicates a byte), and STOS needs rAX's low `size` bytes all equal (memory.fill
   * writes one byte value). After each pass rSI/rDI move by its bytes and rCX counts its elements down (stored: the
   * state is then that of the elements done, as after an interrupt between iterations, SDM vol. 2B REP), and the
   * next pass starts; rCX = 0 branches to `fin`. Anything else (a miss, an element straddling a page end, more than
   * BULK_PASSES passes) falls through to the element loop or the replay, which go on from the registers as they are.
   * Nothing can fault inside a pass once its probes hit. busybox's md5sum copies each 64-byte block with `rep movsb`,
   * and Linux's copy_user_generic_string copies pipe and socket buffers with `rep movsq`: user buffers rarely start
   * on a page boundary, so a 4 KiB copy usually spans two pages of one side (each such copy was a replay when this
   * took one page only).
   */
  bulkString(e: BlockEntry, size: number, movs: boolean, fin: number): void {
    const b = this.b, T = this, lg = LOG2[size];
    const n = b.local(I32), passes = b.local(I32), dpa = b.local(I32), sa = movs ? b.local(I64) : -1;
    const spa = movs ? b.local(I32) : -1;
    const pl = { ti: T.pTi };
    const slow = b.open(Op.block);
    b.get(T.t).i64(0).op(Op.i64LtS).brIf(slow); // DF set
    if (!movs && size > 1) {
      // rAX's low bytes all AL: (rAX & mask) == AL * 0x01..01
      T.r64(0);
      if (size < 8) b.i64(size === 2 ? 0xffffn : 0xffffffffn).op(Op.i64And);
      T.r64(0); b.i64(0xffn).op(Op.i64And).i64(size === 2 ? 0x0101n : size === 4 ? 0x01010101n : 0x0101010101010101n).op(0x7e /* i64.mul */);
      b.op(Op.i64Ne).brIf(slow);
    }
    b.i32(BULK_PASSES).set(passes);
    const top = b.open(Op.loop);
    b.get(T.x1).op(Op.i64Eqz).brIf(fin);
    b.get(passes).op(Op.i32Eqz).brIf(slow);
    // n: bytes to the destination's page end, and the source's for MOVS, in whole elements, at most rCX of them
    T.r64(7); b.set(T.a);
    b.i32(4096).get(T.a).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).op(Op.i32Sub).set(n);
    if (movs) {
      T.r64(6);
      if (e.segOverride === 4 || e.segOverride === 5) b.get(T.st).mem(Op.f64Load, 3, L.S_SEG + 8 * e.segOverride).op(0xfc, 6).op(Op.i64Add);
      b.set(sa);
      b.i32(4096).get(sa).op(Op.i32WrapI64).i32(0xfff).op(Op.i32And).op(Op.i32Sub).tee(T.c32);
      b.get(n).get(T.c32).get(n).op(Op.i32LtU).op(Op.select).set(n);
    }
    if (size > 1) b.get(n).i32(-size).op(Op.i32And).set(n);
    b.get(T.x1).get(n).i32(lg).op(Op.i32ShrU).op(Op.i64ExtendI32u).op(Op.i64LtU).open(Op.if);
    b.get(T.x1).op(Op.i32WrapI64).i32(lg).op(Op.i32Shl).set(n);
    b.close();
    b.get(n).op(Op.i32Eqz).brIf(slow); // (an element straddles a page end)
    emitTlbProbeRun(b, T.wtag, T.a, pl, n, true, slow);
    b.set(dpa);
    if (movs) {
      b.get(sa).set(T.a);
      emitTlbProbeRun(b, T.rtag, T.a, pl, n, false, slow);
      b.set(spa);
      // (spa < dpa < spa + n: overlapping forwards; RAM offsets, so no i32 overflow)
      b.get(dpa).get(spa).op(Op.i32GtU).get(dpa).get(spa).get(n).op(Op.i32Add).op(Op.i32LtU).op(Op.i32And).brIf(slow);
      b.get(dpa).i32(WASM_RAM_OFFSET).op(Op.i32Add);
      b.get(spa).i32(WASM_RAM_OFFSET).op(Op.i32Add);
      b.get(n).op(0xfc, 10).op(0, 0); // memory.copy (Core spec §5.4.6: 0xFC 10, two memory indices)
      T.r64(6); b.get(n).op(Op.i64ExtendI32u).op(Op.i64Add).set(T.v); T.set64(6, T.v);
    } else {
      b.get(dpa).i32(WASM_RAM_OFFSET).op(Op.i32Add);
      T.r32(0); b.i32(255).op(Op.i32And);
      b.get(n).op(0xfc, 11).op(0); // memory.fill (0xFC 11, one memory index)
    }
    T.r64(7); b.get(n).op(Op.i64ExtendI32u).op(Op.i64Add).set(T.v); T.set64(7, T.v);
    b.get(T.x1).get(n).i32(lg).op(Op.i32ShrU).op(Op.i64ExtendI32u).op(Op.i64Sub).set(T.x1); T.set64(1, T.x1);
    b.get(passes).i32(1).op(Op.i32Sub).set(passes);
    b.br(top);
    b.close(); // top
    b.close(); // slow
  }

  // ---- ALU

  /** lr = ld op ls at `size` (4: the locals hold zero-extended 32-bit values; 1: bytes). */
  alu(op: number, size: number): void {
    const b = this.b;
    // (the callers leave the operands on the stack as they set ld and ls with local.tee: 2 operations fewer than
    // local.set of each and local.get of both here)
    switch (op) {
      case ADD: b.op(Op.i64Add); break;
      case SUB: case CMP: b.op(Op.i64Sub); break;
      case OR: b.op(Op.i64Or); break;
      case XOR: b.op(Op.i64Xor); break;
      default: b.op(Op.i64And);
    }
    // (AND/OR/XOR of operands zero-extended from `size` is zero-extended already: ZX)
    const logic = ZX && (op === OR || op === AND || op === XOR || op === TEST);
    if (size === 4 && !logic) b.i64(0xffffffffn).op(Op.i64And);
    else if (size === 1 && !logic) b.i64(0xffn).op(Op.i64And);
    b.set(this.lr);
  }

  /** Push register r's value at size (4: zero-extended) as i64. */
  regVal(r: number, size: number): void {
    if (size === 8) this.r64(r);
    else if (this.rs[r] !== 0) {
      this.b.get(this.rc[r]);
      if (((this.zx >>> r) & 1) === 0) this.b.i64(0xffffffff).op(Op.i64And);
    }
    else { if (EXIT_STATS) this.wbCount(5); this.b.get(this.st).mem(Op.i64Load32u, 2, L.sGpr(r)); }
  }

  /** Write lr into register r at size (4: lr already holds the zero-extended 32-bit result). */
  writeLr(r: number, size: number): void {
    this.set64(r, this.lr);
    if (ZX && size === 4 && !this.nested()) this.zx |= 1 << r;
  }
}

/** A 64-bit immediate (lo, hi) as an exact number when it is one, else a bigint. */
const imm64 = (lo: number, hi: number): number | bigint =>
  (hi === 0 || (hi === -1 && lo < 0)) ? (hi === 0 ? lo >>> 0 : lo) : (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);

/** Translate one block into a function body; null if it has nothing worth translating. */
export function translateBody(block: Block, lin?: number, opts: EmitOpts = TIER1): { body: Body; offs: number[] } | null {
  const offs = blockOffsets(block);
  if (offs === null) return null;
  const first = emitBlock(block, offs, null, opts, lin);
  if (!first.selfLoop) { dump(first, [block], lin === undefined ? [] : [lin]); return { body: first.b, offs }; }
  // A block that loops on itself is emitted again with the registers its first version cached loaded before the
  // loop, so they stay in locals across iterations: at the loop's top they are cached, and dirty when the first
  // version's back edge had them dirty (stores then happen at memory accesses and exits, not per iteration).
  const pre: number[] = [], dirty: number[] = [];
  for (let r = 0; r < 16; r++) if (first.rc[r] >= 0) { pre.push(r); if (first.backDirty[r]) dirty.push(r); }
  const T = emitBlock(block, offs, { pre, dirty }, opts, lin);
  dump(T, [block], lin === undefined ? [] : [lin]);
  return { body: T.b, offs };
}

/** RINGZERO_WASM_DUMP: the function T emitted, with its instructions' guest addresses (./dump.ts). */
function dump(T: Translator, blocks: Block[], lins: number[]): void {
  if (T.marks === null) return;
  const hex = (v: number) => (v < 0 ? '-' + (-v).toString(16) : v.toString(16));
  const title = blocks.map((bl, j) => `pa ${hex(bl.pa)}${lins[j] !== undefined ? ' lin ' + hex(lins[j]) : ''}`).join(', ');
  dumpFunction(title, T.b.code(), T.marks);
}

/** Prologue of a block or region function: the TLB bank addresses for this privilege, r0 as an integer. */
function prologue(T: Translator): void {
  const b = T.b;
  b.get(T.st).i32(L.S_TLB).op(Op.i32Add).get(T.user).i32(L.TLB_USER_DELTA).op(0x6c /* i32.mul */).op(Op.i32Add).tee(T.rtag);
  b.i32(L.TLB_WRITE_DELTA).op(Op.i32Add).set(T.wtag);
  b.get(T.r0).op(0xfc, 6).set(T.r0i);
}

/** One emission of a block's function body; `loop`: the registers to keep in locals across a self-loop. */
function emitBlock(block: Block, offs: number[], loop: { pre: number[]; dirty: number[] } | null, opts: EmitOpts, lin?: number): Translator {
  const T = new Translator(block, offs, opts);
  T.lin = lin;
  const b = T.b;
  prologue(T);
  gpOpen(T);
  T.out = b.open(Op.block);
  emitCode(T, block, offs, loop);
  b.close();
  epilogue(T);
  gpClose(T);
  return T;
}

/** GP_SHARE: open the block whose branches carry a #GP helper position (before `out`). */
function gpOpen(T: Translator): void {
  if (GP_SHARE) T.gpL = T.b.openTyped(Op.block, I32);
}

/** GP_SHARE, after the epilogue: return its result; the shared #GP path (position on the stack) follows. */
function gpClose(T: Translator): void {
  if (T.gpL < 0) return;
  T.b.op(Op.return);
  // (openTyped is not counted in Body.nest, so that straight-line code stays at depth `base`)
  T.b.nest++;
  T.b.close();
  T.gpL = -1;
  T.b.call(F_GP).op(Op.unreachable);
}

/** The function's result: the instructions this call ran (n + xc). */
function epilogue(T: Translator): void {
  T.b.get(T.n).get(T.xc).op(Op.i32Add);
}

/** The self-loop register sets of a block (its first emission's cache), or null when it does not loop on itself. */
function loopRegs(block: Block, offs: number[], opts: EmitOpts): { pre: number[]; dirty: number[] } | null {
  const es = block.entries, last = es[es.length - 1];
  if (!((last.form === Form.Jcc || last.form === Form.Jmp) && last.len > 0 && offs[es.length - 1] + last.len + last.disp === 0)) return null;
  // (a discarded emission: no tail-call imports for it)
  const first = emitBlock(block, offs, null, { ...opts, tail: null });
  const pre: number[] = [], dirty: number[] = [];
  for (let r = 0; r < 16; r++) if (first.rc[r] >= 0) { pre.push(r); if (first.backDirty[r]) dirty.push(r); }
  return { pre, dirty };
}

/**
 * Lone MOV CRn,r / IRET / group-15 blocks translated (blockOffsets; RINGZERO_WASM_LONE_SYS=0: off, as before, to
 * compare).
 */
const LONE_SYS = process.env.RINGZERO_WASM_LONE_SYS !== '0';

/** Byte offset of each instruction of a block; null when the block has nothing worth translating. */
function blockOffsets(block: Block): number[] | null {
  const es = block.entries;
  // (SYSCALL 0F 05 and SYSRET 0F 07 are replayed, but in wasm the chain goes on across them: a lone SYSRETQ block,
  // which ends every system call of Linux's fast return path, keeps the return to user code inside wasm; so does a
  // lone MOV Sreg,r/m (8E ends its block), which is replayed: __switch_to's `mov fs,eax`, once per context switch,
  // returned to JavaScript there ~1.4 times per 4 KiB random read of bench/io; a lone MOVS/STOS, the target of a
  // loop's branch, runs in wasm too: Translator.stringOp; and, replayed, a lone MOV CRn,r (0F 22), IRET (CF) and
  // group 15 (0F AE: FXRSTOR...), each a block of its own once per Linux context switch: load_new_mm_cr3's
  // `mov cr3,rdi` (reached by a jmp), native_irq_return_iret's `iretq`, restore_fpregs_from_fpstate's `fxrstor64`,
  // ~3 returns to JavaScript per switch of a `dd | cat` pipe before (RINGZERO_WASM_EXIT_STATS by RIP))
  // (one loop for both, the check's field decoding skipped once an entry qualifies: called several times per block
  // per batch, by groupRegions, WasmEngine.reform's pageTargets and the translation)
  // (every field and comparison of the check is evaluated for each entry looked at, and the opcodes come from a
  // table: TurboFan inlines this function into groupRegions, midSelfEdge, translateBody..., and a comparison or field
  // load first reached on a rare path (the first lone SYSRET or string block of a batch after they were optimized) had
  // no type feedback and deoptimized each of them: groupRegions was compiled 4 times a boot)
  const offs: number[] = [];
  let off = 0, worth = false;
  for (let i = 0; i < es.length; i++) {
    const e = es[i];
    offs.push(off); off += e.len;
    if (worth) continue;
    const f = e.form, w = WORTH_OP[e.opcode], lowOp = e.op < 4, wide = e.adsize === 8;
    const byForm = f !== Form.None, shift = f === Form.ShiftImm, lone = w === 1, str = w === 2;
    worth = (byForm && !(shift && lowOp)) || lone || (str && wide);
  }
  return worth ? offs : null;
}

/**
 * blockOffsets' opcodes worth a lone translation (1: SYSCALL, SYSRET, MOV Sreg and with LONE_SYS MOV CRn, IRET,
 * group 15; 2: MOVS/STOS, when their addressing is 64-bit), indexed by the decoder's opcode (below 0x4000,
 * BlockEntry.dec2; 0x100 | second byte for 0F xx).
 */
const WORTH_OP = (() => {
  const t = new Uint8Array(0x4000);
  for (const o of [0x105, 0x107, 0x8e]) t[o] = 1;
  if (LONE_SYS) for (const o of [0x122, 0xcf, 0x1ae]) t[o] = 1;
  for (const o of [0xa4, 0xa5, 0xaa, 0xab]) t[o] = 2;
  return t;
})();

/**
 * The physical addresses in `block`'s own page that its static exits reach (direct JMP/Jcc/CALL targets, the
 * fall-through of its last instruction): the edges groupRegions joins blocks of one page by (WasmEngine.flush uses
 * them to find the translated blocks of a batch's pages worth translating again with it, as one region).
 */
export function pageTargets(block: Block): number[] {
  // (one literal array filled by push, rather than [] or the result of map and filter: those arrays have different
  // hidden classes (elements kinds), and WasmEngine.reform, which reads these, was deoptimized for "wrong map" on
  // each new one, ~0.3 s of background TurboFan compile each time)
  const out: number[] = [];
  const offs = blockOffsets(block);
  if (offs === null) return out;
  const pa = block.pa;
  for (const t of staticExits(block, offs)) {
    const x = pa + t;
    if ((x >>> 12) === (pa >>> 12) && x !== pa) out.push(x);
  }
  return out;
}

/**
 * Where block `b` (its instructions at block offsets `offs`) goes by a static exit, as offsets from its start: the
 * targets of its direct Jcc/JMP/CALL, and the fall-through after its last instruction unless that is a JMP.
 */
function staticExits(b: Block, offs: number[]): number[] {
  const es = b.entries, out: number[] = [];
  for (let i = 0; i < es.length; i++) {
    const e = es[i], next = offs[i] + e.len;
    if ((e.form === Form.Jcc || e.form === Form.Jmp || e.form === Form.Call) && e.len > 0) out.push(next + e.disp);
    if (i === es.length - 1 && e.len > 0 && e.form !== Form.Jmp) out.push(next);
  }
  return out;
}

/**
 * The static exits of `block` that leave its physical page (CALL, JMP, Jcc, fall-through), as offsets from its start:
 * linear targets relative to the address it was queued at (runtime.ts reregion's CALLEES).
 */
export function crossTargets(block: Block): number[] {
  const out: number[] = [];
  const offs = blockOffsets(block);
  if (offs === null) return out;
  const pa = block.pa;
  for (const t of staticExits(block, offs)) if (((pa + t) >>> 12) !== (pa >>> 12)) out.push(t);
  return out;
}

/**
 * Whether a block queued at linear address `l` is user code: the lower canonical half (below 2^47; Linux's user space),
 * as runtime.ts keeps its linear addresses (undefined: not known, taken for the kernel's).
 */
export function userLinear(l: number | undefined): boolean {
  // (both comparisons made on every call, a missing address as -1: see blockOffsets on inlined rare paths)
  const v = l ?? -1, low = v < 2 ** 47, pos = v >= 0;
  return pos && low;
}

/** The instruction is one Translator.stringOp runs in wasm: (REP) MOVS/STOS with 64-bit addressing. */
function stringRuns(e: BlockEntry): boolean {
  const op = e.opcode;
  return (op === 0xa4 || op === 0xa5 || op === 0xaa || op === 0xab) && e.adsize === 8;
}

/**
 * Group blocks of one batch into regions (see Region): blocks of one page and generation, joined when one has a
 * static branch or fall-through to another's address; groups of one block, and the blocks with nothing worth
 * translating, stay alone. At most REGION_MAX blocks per region, and at most `maxInstr` guest instructions (cutGroup;
 * with `firstOnly` only in groups none of whose blocks was translated before).
 */
export function groupRegions(blocks: Block[], lins?: Map<Block, number>, maxInstr = Infinity, wholeLoops = false, firstOnly = false): Block[][] {
  if (!REGIONS) { const one: Block[][] = []; for (const b of blocks) one.push([b]); return one; }
  // (union-find over the blocks' indices, in typed arrays: the Maps of blocks it used cost ~8% of a batch's build)
  const n = blocks.length, parent = new Int32Array(n), offs: (number[] | null)[] = new Array(n);
  // (the edges that joined blocks, i -> j, kept for cutting a group over REGION_MAX: cutGroup)
  const edges: number[][] = [];
  const byPa = new Map<number, number>(), byLin = new Map<number, number>(), lin: (number | undefined)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const b = blocks[i];
    parent[i] = i;
    offs[i] = blockOffsets(b);
    if (!byPa.has(b.pa)) byPa.set(b.pa, i);
    const l = lin[i] = CROSS_PAGE ? lins?.get(b) : undefined;
    if (l !== undefined && !byLin.has(l)) byLin.set(l, i);
  }
  for (let i = 0; i < n; i++) {
    const b = blocks[i], o = offs[i];
    if (o === null || byPa.get(b.pa) !== i) continue;
    const bl = lin[i];
    // (staticExits(b, o) in place, in its order: no array per block)
    const es = b.entries;
    for (let x = 0; x < es.length; x++) {
      const e = es[x], next = o[x] + e.len;
      if ((e.form === Form.Jcc || e.form === Form.Jmp || e.form === Form.Call) && e.len > 0) joinExit(blocks, lin, byLin, byPa, offs, parent, edges, i, next + e.disp);
      if (x === es.length - 1 && e.len > 0 && e.form !== Form.Jmp) joinExit(blocks, lin, byLin, byPa, offs, parent, edges, i, next);
    }
    // (IND_JOIN: an indirect JMP or CALL and the block queued where it went last, Translator.indBranch)
    const it = bl !== undefined && userLinear(bl) ? indTarget(b) : 0;
    const j = it !== 0 ? byLin.get(it) : undefined;
    if (j !== undefined && j !== i && byPa.get(blocks[j].pa) === j && offs[j] !== null) {
      const ra = findRoot(parent, i), rb = findRoot(parent, j);
      if (ra !== rb) parent[ra] = rb;
      (edges[i] ??= []).push(j);
    }
  }
  const groupOf: (number[] | undefined)[] = new Array(n), groups: number[][] = [];
  for (let i = 0; i < n; i++) {
    const r = findRoot(parent, i);
    let g = groupOf[r];
    if (g === undefined) { groupOf[r] = g = []; groups.push(g); }
    g.push(i);
  }
  const out: Block[][] = [];
  for (const g of groups) {
    // (firstOnly: maxInstr caps only groups of first translations; a group holding a block translated before
    // (reregion's pages, reform's pulls: code that proved hot) keeps REGION_MAX alone)
    let cap = maxInstr;
    if (firstOnly && maxInstr !== Infinity) for (const i of g) if (blocks[i].wasm !== null) { cap = Infinity; break; }
    if (g.length <= REGION_MAX && (cap === Infinity || instrOf(g, blocks) <= cap)) out.push(pick(g, blocks));
    else for (const part of cutGroup(g, blocks, edges, cap, wholeLoops)) out.push(pick(part, blocks));
  }
  return out;
}

/**
 * groupRegions: block i's static exit to its start + t, joined with the block there, if any (a module function, not a
 * closure made per call: see pick).
 */
function joinExit(blocks: Block[], lin: (number | undefined)[], byLin: Map<number, number>, byPa: Map<number, number>,
  offs: (number[] | null)[], parent: Int32Array, edges: number[][], i: number, t: number): void {
  const b = blocks[i], bl = lin[i];
  const tpa = b.pa + t;
  if ((tpa >>> 12) !== (b.pa >>> 12) && bl !== undefined) {
    // (into another page: the block queued at the target's linear address, Translator.crossBranch)
    const j = byLin.get(bl + t);
    if (j === undefined || j === i) return;
    const x = blocks[j];
    if (byPa.get(x.pa) !== j || (x.pa >>> 12) === (b.pa >>> 12) || offs[j] === null) return;
    const ra = findRoot(parent, i), rb = findRoot(parent, j);
    if (ra !== rb) parent[ra] = rb;
    (edges[i] ??= []).push(j);
    return;
  }
  const j = byPa.get(tpa);
  if (j === undefined || j === i || (tpa >>> 12) !== (b.pa >>> 12) || blocks[j].gen !== b.gen || offs[j] === null) return;
  const ra = findRoot(parent, i), rb = findRoot(parent, j);
  if (ra !== rb) parent[ra] = rb;
  (edges[i] ??= []).push(j);
}

/** cutGroup's sorts: the blocks their indices refer to, set around the sort. */
let sortBlocks: Block[] = [];
/** Block indices by physical address (sortBlocks). */
function byPaOf(x: number, y: number): number { return sortBlocks[x].pa - sortBlocks[y].pa; }
/** Lists of block indices by their first block's physical address (sortBlocks). */
function byFirstPaOf(x: number[], y: number[]): number { return sortBlocks[x[0]].pa - sortBlocks[y[0]].pa; }

/** The root of x in the union-find forest `parent` (groupRegions), with path compression of x's own link. */
function findRoot(parent: Int32Array, x: number): number {
  let r = x;
  while (parent[r] !== r) r = parent[r];
  parent[x] = r;
  return r;
}

/**
 * blocks[i] for each index i of g, in order. (A loop filling a literal array, not `g.map(...)`, here and in the
 * translator's other per-batch code, session 34: Array.prototype.map's result is a packed array when the builtin runs
 * it but a holey one when TurboFan inlines the call into an optimized caller, so the region member lists changed
 * their elements kind once groupRegions was optimized, and translateRegion, exitStatic, regionTarget and edgeDead,
 * optimized on the other kind, were deoptimized for "wrong map". And the callbacks: a closure made per call keeps its
 * optimized code only while a closure of it is alive, so those of the per-batch functions were compiled by TurboFan
 * again after each major GC (2-3 times per boot each, without a deopt).)
 */
function pick(g: number[], blocks: Block[]): Block[] {
  const out: Block[] = [];
  for (let k = 0; k < g.length; k++) out.push(blocks[g[k]]);
  return out;
}

/** The guest instructions of the blocks at indices `g` of `blocks` (groupRegions' and cutGroup's instruction caps). */
function instrOf(g: number[], blocks: Block[]): number {
  let k = 0;
  for (const i of g) k += blocks[i].n;
  return k;
}

/**
 * Cut a group of blocks (indices into `blocks`) over REGION_MAX into regions of at most REGION_MAX without splitting
 * a loop: the group's strongly connected components (over `edges`, the static exits that joined it; Tarjan's
 * algorithm) are packed whole, in address order of their first blocks, into consecutive parts, and only a component
 * over the cap is itself cut in address order. A loop cut in two goes through the dispatcher twice per iteration,
 * and its blocks, then on no cycle of their region, do not probe the TLB inline (onCycles): busybox md5sum's
 * transform (18 blocks in address order: its fourth round's loop was split by the cut, 8 dispatcher entries per
 * 64-byte block).
 */
function cutGroup(g: number[], blocks: Block[], edges: number[][], maxInstr = Infinity, wholeLoops = false): number[][] {
  const inG = new Map<number, number>();
  g.forEach((i, k) => inG.set(i, k));
  const m = g.length, index = new Int32Array(m).fill(-1), low = new Int32Array(m), onStack = new Uint8Array(m);
  const stack: number[] = [], comps: number[][] = [];
  let next = 0;
  const visit = (v: number): void => {
    index[v] = low[v] = next++;
    stack.push(v); onStack[v] = 1;
    for (const j of edges[g[v]] ?? []) {
      const w = inG.get(j);
      if (w === undefined) continue;
      if (index[w] < 0) { visit(w); low[v] = Math.min(low[v], low[w]); } else if (onStack[w]) low[v] = Math.min(low[v], index[w]);
    }
    if (low[v] !== index[v]) return;
    const c: number[] = [];
    let w: number;
    do { w = stack.pop()!; onStack[w] = 0; c.push(g[w]); } while (w !== v);
    comps.push(c);
  };
  for (let v = 0; v < m; v++) if (index[v] < 0) visit(v);
  // (module comparators over sortBlocks, not closures made per call: see pick)
  sortBlocks = blocks;
  for (const c of comps) c.sort(byPaOf);
  comps.sort(byFirstPaOf);
  sortBlocks = [];
  const parts: number[][] = [];
  let cur: number[] = [], curN = 0;
  for (const c of comps) {
    const cn = instrOf(c, blocks);
    // (wholeLoops: a loop of up to REGION_MAX blocks over the instruction cap goes whole into a part of its own)
    if (wholeLoops && c.length > 1 && c.length <= REGION_MAX && cn > maxInstr) {
      if (cur.length > 0) { parts.push(cur); cur = []; curN = 0; }
      parts.push(c);
      continue;
    }
    if (c.length > REGION_MAX || cn > maxInstr) {
      if (cur.length > 0) { parts.push(cur); cur = []; curN = 0; }
      // (a component over a cap: cut in address order, each part within both caps)
      let part: number[] = [], pn = 0;
      for (const i of c) {
        if (part.length > 0 && (part.length >= REGION_MAX || pn + blocks[i].n > maxInstr)) { parts.push(part); part = []; pn = 0; }
        part.push(i); pn += blocks[i].n;
      }
      if (part.length > 0) parts.push(part);
      continue;
    }
    if (cur.length > 0 && (cur.length + c.length > REGION_MAX || curN + cn > maxInstr)) { parts.push(cur); cur = []; curN = 0; }
    cur.push(...c); curN += cn;
  }
  if (cur.length > 0) parts.push(cur);
  return parts;
}

/**
 * Translate a region's blocks (groupRegions; at least two) into one function body (see Region); null if none of
 * them is worth translating (then each is translated alone, or not).
 */
export function translateRegion(members: Block[], lins?: Map<Block, number>, opts: EmitOpts = TIER1): { body: Body; offs: number[][] } | null {
  const offsList: number[][] = [];
  for (const m of members) { const o = blockOffsets(m); if (o === null) return null; offsList.push(o); }
  const loops: ({ pre: number[]; dirty: number[] } | null)[] = [];
  for (let j = 0; j < members.length; j++) loops.push(loopRegs(members[j], offsList[j], opts));
  const T = new Translator(members[0], offsList[0], opts);
  const b = T.b;
  prologue(T);
  // (tried, session 27: a member that a later member branches back to took as dirty on entry those of its entry
  // registers some member writes (it is emitted before any branch to it, so it takes none dirty and each pass's back
  // edge writes them back): ash loop write-backs before region branches 1819 -> 2073 per iteration of ~15k guest
  // instructions, as the loops run few passes per entry and every other way in then writes back clean registers)
  const R: Region = {
    members, at: new Map(), lins: [], atLin: new Map(), labels: [], dead: [], disp: -1, cur: 0, climit: b.local(I32), intra: b.local(I32), lim: REGION_LIM ? b.local(I32) : -1,
  };
  for (let j = 0; j < members.length; j++) R.at.set(members[j].pa, j);
  let allLin = lins !== undefined;
  for (let j = 0; allLin && j < members.length; j++) allLin = lins!.has(members[j]);
  if (allLin) {
    for (let j = 0; j < members.length; j++) { const l = lins!.get(members[j])!; R.lins.push(l); if (!R.atLin.has(l)) R.atLin.set(l, j); }
  }
  // the dispatcher's limit: it goes on while its count (S_NBASE before this call) is below min(its left, CHAIN_LIMIT)
  b.i32(CHAIN_LIMIT).get(T.st).mem(Op.i32Load, 2, L.S_NBASE).op(Op.i32Sub).set(R.climit);
  b.get(T.left).get(R.climit).get(T.left).get(R.climit).op(Op.i32LtS).op(Op.select).set(R.climit);
  if (R.lim >= 0) {
    let nMax = -Infinity;
    for (const m of members) nMax = Math.max(nMax, m.n);
    b.get(R.climit).i32(1).op(Op.i32Sub).get(T.left).i32(nMax).op(Op.i32Sub).tee(R.lim);
    b.get(R.climit).i32(1).op(Op.i32Sub).get(R.lim).op(Op.i32LtS).op(Op.select).set(R.lim);
  }
  gpOpen(T);
  T.out = b.open(Op.block);
  R.disp = b.open(Op.loop);
  for (let j = members.length - 1; j >= 0; j--) {
    R.labels[j] = b.open(Op.block);
  }
  const cyc = LOOP_INLINE || REGION_NEST === 1 ? onCycles(members, R.at, offsList) : null;
  if (REGION_NEST === 2 || (REGION_NEST === 1 && !cyc!.includes(true))) {
    // (the default target: never taken; its empty loop keeps V8 from peeling the region's loop, see REGION_NEST)
    const none = b.open(Op.block);
    b.get(T.k).brTable(R.labels, none);
    b.close();
    b.open(Op.loop); b.close();
    b.op(Op.unreachable);
  } else b.get(T.k).brTable(R.labels, R.labels[0]);
  T.region = R;
  // (ids fit the token's 20 bits, see RET_BRANCH: past them, regions make no RET branches)
  if (RET_BRANCH && R.lim >= 0 && regionIds < FID_MAX) T.fid = ++regionIds;
  for (let j = 0; j < members.length; j++) {
    b.close();
    R.cur = j;
    T.loopMember = LOOP_INLINE && cyc![j];
    emitCode(T, members[j], offsList[j], loops[j]);
    b.op(Op.unreachable);
  }
  T.loopMember = false;
  b.close();
  b.close();
  if (COUNT_CHAINS) b.get(T.st).get(T.st).mem(Op.i32Load, 2, L.S_INTRA).get(R.intra).op(Op.i32Add).mem(Op.i32Store, 2, L.S_INTRA);
  epilogue(T);
  gpClose(T);
  dump(T, members, R.lins);
  return { body: b, offs: offsList };
}

/**
 * EAGER_WB: the registers instruction e may write (any part of them), over-approximated: every register for a form
 * not listed (replays, SSE, system forms). Only the cost of EAGER_WB depends on it (a register written again after
 * its eager write-back is dirty again, and written back again, as the register cache tracks it): never correctness.
 */
/** Bit r of register r (writesOf); 0 for none (-1) or a register field past 15. */
function regBit(r: number): number { return r >= 0 && r < 16 ? 1 << r : 0; }
function writesOf(e: BlockEntry): number {
  const m = regBit;
  switch (e.form) {
    case Form.MovRR64: case Form.MovRR32: case Form.AluRR: case Form.Alu8RR: case Form.Alu16RR: case Form.Mov8RR:
    case Form.CmovRR: case Form.ShiftDoubleRI: case Form.AdcRR: case Form.ImulRR: case Form.AluRI: case Form.AluRM:
    case Form.Alu8RI: case Form.Alu8RM: case Form.Alu16RI: case Form.Alu16RM: case Form.IncDec: case Form.IncDec8:
    case Form.ShiftImm: case Form.Shift8Imm: case Form.Shift16Imm: case Form.NotNegR: case Form.Bswap: case Form.BtRI:
    case Form.BtRR: case Form.Mov8RI: case Form.Mov8RM: case Form.Setcc: case Form.CmovRM: case Form.AdcRI: case Form.AdcRM:
    case Form.ImulRM: case Form.ShiftCl: case Form.ShiftDoubleCl: case Form.ImulRRI: case Form.ImulRMI: case Form.PopcntR:
    case Form.PopcntM:
      return m(e.b);
    case Form.MovLoad64: case Form.MovLoad32: case Form.MovLoad16: case Form.MovImmReg: case Form.Lea: case Form.MovzxMem:
    case Form.MovsxdMem: case Form.MovsxM: case Form.MovzxReg8: case Form.MovzxReg16: case Form.MovsxdReg:
    case Form.MovsxR8: case Form.MovsxR16: case Form.XaddM: case Form.XchgM:
      return m(e.a);
    case Form.XchgRR: case Form.BitScanR: case Form.BitScanM: return m(e.a) | m(e.b);
    case Form.Push: case Form.Call: case Form.Ret: case Form.PushImm: case Form.Pushf: case Form.PushM: case Form.CallInd:
      return 1 << 4;
    case Form.Pop: return (1 << 4) | m(e.a);
    case Form.Leave: return (1 << 4) | (1 << 5);
    case Form.Cdq: case Form.MulDivR: case Form.MulDivM: return 1 | (1 << 2);
    case Form.CmpxchgM: case Form.Cmpxchg8M: return 1;
    case Form.MovStore64: case Form.MovStore32: case Form.MovStore16: case Form.MovImmMem64: case Form.MovImmMem32:
    case Form.MovImm16M: case Form.Mov8MR: case Form.Mov8MI: case Form.AluMR: case Form.AluMI: case Form.Alu8MR:
    case Form.Alu8MI: case Form.Alu16MR: case Form.Alu16MI: case Form.AdcMR: case Form.AdcMI: case Form.IncDecM:
    case Form.NotNegM: case Form.SetccM: case Form.BtMI: case Form.BtMR: case Form.Shift16M: case Form.ShiftMCl:
    case Form.Jcc: case Form.Jmp: case Form.JmpInd: case Form.Nop: case Form.Cli: case Form.Sti: case Form.Cld: case Form.Std:
      return 0;
    default: return 0xffff;
  }
}


/**
 * Which members of a region lie on a cycle of its same-page static branches (pageTargets): the blocks of a loop
 * whose body is longer than one block (MAX_BLOCK), such as busybox md5's four 44-48-instruction round loops.
 */
function onCycles(members: Block[], at: Map<number, number>, offsList: number[][]): boolean[] {
  const n = members.length;
  if (n > 32) return onCyclesBy(members, at, offsList);
  // (up to 32 members: each one's successors as a bit mask, closed transitively (Warshall); a member is on a cycle
  // when it reaches itself, as the walk of onCyclesBy finds; no arrays or closures per member)
  const reach = CYC_REACH;
  for (let j = 0; j < n; j++) {
    // (pageTargets of member j, read in place: its static exits into its own page, not to its own start)
    const b = members[j], offs = offsList[j], pa = b.pa, es = b.entries;
    let m = 0;
    for (let i = 0; i < es.length; i++) {
      const e = es[i], next = offs[i] + e.len;
      if ((e.form === Form.Jcc || e.form === Form.Jmp || e.form === Form.Call) && e.len > 0) {
        const x = pa + next + e.disp;
        if ((x >>> 12) === (pa >>> 12) && x !== pa) { const k = at.get(x); if (k !== undefined) m |= 1 << k; }
      }
      if (i === es.length - 1 && e.len > 0 && e.form !== Form.Jmp) {
        const x = pa + next;
        if ((x >>> 12) === (pa >>> 12) && x !== pa) { const k = at.get(x); if (k !== undefined) m |= 1 << k; }
      }
    }
    reach[j] = m;
  }
  for (let k = 0; k < n; k++) {
    const bk = 1 << k, rk = reach[k];
    for (let i = 0; i < n; i++) if ((reach[i] & bk) !== 0) reach[i] |= rk;
  }
  const cyc: boolean[] = [];
  let any = false;
  for (let j = 0; j < n; j++) { const c = midSelfEdgeAt(members[j], offsList[j]) || (reach[j] & (1 << j)) !== 0; cyc.push(c); any ||= c; }
  if (!LOOP_ENTRY || !any) return cyc;
  return loopEntries(members, cyc, offsList);
}
const CYC_REACH = new Int32Array(32);

/** onCycles by a walk from each member (more than 32 members). */
function onCyclesBy(members: Block[], at: Map<number, number>, offsList: number[][]): boolean[] {
  const succ = members.map((m) => { const out: number[] = []; for (const t of pageTargets(m)) { const j = at.get(t); if (j !== undefined) out.push(j); } return out; });
  const cyc = members.map((m, j) => {
    if (midSelfEdge(m)) return true;
    const seen = new Uint8Array(members.length), stack = [...succ[j]];
    while (stack.length > 0) {
      const k = stack.pop()!;
      if (k === j) return true;
      if (seen[k]) continue;
      seen[k] = 1;
      for (const x of succ[k]) stack.push(x);
    }
    return false;
  });
  if (!LOOP_ENTRY) return cyc;
  return loopEntries(members, cyc, offsList);
}

/**
 * LOOP_ENTRY: a member that runs into a loop's first block, at one of its instruction boundaries, runs that loop's
 * first pass: it probes inline too (`cyc`: the members on a cycle; updated in place and returned).
 */
function loopEntries(members: Block[], cyc: boolean[], offsList: number[][]): boolean[] {
  const onCyc = new Set<number>();
  for (let j = 0; j < members.length; j++) if (cyc[j]) onCyc.add(members[j].pa);
  if (onCyc.size === 0) return cyc;
  for (let j = 0; j < members.length; j++) {
    if (cyc[j]) continue;
    const m = members[j], offs = offsList[j];
    for (let i = 0; i < offs.length; i++) if (offs[i] > 0 && onCyc.has(m.pa + offs[i])) { cyc[j] = true; break; }
  }
  return cyc;
}

/**
 * HOIST_FLUSH: what the instructions after instruction i of T's block certainly write back to the state area at
 * straight-line level before they change it: null when they reach no such point, else the registers (bit r) and
 * whether the deferred flag record (flags) is committed there. The point is a memory form whose access calls the
 * memory library, which writes every dirty register and the record back before anything else it does (Translator.
 * load/store: no inline probe in this function, no stack run: no RSP base); only register-only forms that cannot
 * fault nor call out come before it (their destinations, a superset, and a flag producer are left out).
 * Packed as a number (no object per memory instruction): -1 for null, else regs | 0x10000 when flags.
 */
function hoistMask(T: Translator, i: number): number {
  if (T.memInline()) return -1;
  const es = T.block.entries;
  let written = 0, flags = true;
  for (let j = i + 1; j < es.length; j++) {
    const e = es[j], f = e.form;
    if (j === es.length - 1 && T.block.pfn2 >= 0) return -1;
    switch (f) {
      case Form.MovLoad64: case Form.MovLoad32: case Form.MovStore64: case Form.MovStore32: case Form.MovImmMem64:
      case Form.MovImmMem32: case Form.MovzxMem: case Form.MovsxdMem: case Form.MovsxM: case Form.Mov8RM: case Form.Mov8MR:
      case Form.Mov8MI: case Form.AluRM: case Form.AluMR: case Form.AluMI: case Form.Alu8RM: case Form.Alu8MR:
      case Form.Alu8MI: case Form.MovLoad16: case Form.MovStore16:
        if (e.base === 4 || (e.form === Form.AluRM || e.form === Form.AluMR || e.form === Form.AluMI ? KIND[e.op] === 0 : false)) return -1;
        return (0xffff & ~written) | ((flags) ? 0x10000 : 0);
      case Form.AluRR: case Form.AluRI: case Form.Alu8RR: case Form.Alu8RI:
        if (KIND[e.op] === 0) return -1;
        flags = false;
        break;
      case Form.MovRR64: case Form.MovRR32: case Form.MovImmReg: case Form.Lea: case Form.MovzxReg8: case Form.MovzxReg16:
      case Form.MovsxdReg: case Form.MovsxR8: case Form.MovsxR16: case Form.Mov8RR: case Form.Mov8RI: case Form.Bswap:
      case Form.Cdq: case Form.XchgRR: case Form.Nop:
        break;
      case Form.Jcc: case Form.Jmp: {
        // the block's last instruction (a Jcc before it is a side exit: stop), not a self-loop's back edge: a Jcc
        // writes everything back before its branch (JCC_FLUSH), a JMP at its exit (exitStatic); a deferred flag
        // record stays in the locals on a branch to a region member that cannot see it (edgeDead)
        const last = es.length - 1;
        if (j !== last || T.selfLoop || e.len === 0) return -1;
        const next = T.offs[j] + e.len, target = next + e.disp;
        if (f === Form.Jcc) {
          if (!JCC_FLUSH) return -1;
          return (0xffff & ~written) | ((flags && !(T.edgeDead(target) && T.edgeDead(next))) ? 0x10000 : 0);
        }
        return (0xffff & ~written) | ((flags && !T.edgeDead(target)) ? 0x10000 : 0);
      }
      default:
        // (a form without an emitter of its own: emitOther writes everything back first; not a page-straddling
        // branch, which reads the flags before its replay)
        if (EMIT[f] === undefined && !(j === es.length - 1 && e.len === 0)) return (0xffff & ~written) | ((flags) ? 0x10000 : 0);
        return -1;
    }
    // (the destination is e.a or e.b by form; CWDE/CDQ write RAX/RDX: a superset of both fields and those two)
    written |= (e.a >= 0 && e.a < 16 ? 1 << e.a : 0) | (e.b >= 0 && e.b < 16 ? 1 << e.b : 0) | (f === Form.Cdq ? 5 : 0);
    if (j === es.length - 1) {
      // the block's last instruction, a register form: its exit (exitStatic) writes everything back, a deferred flag
      // record not on a branch to a region member that cannot see it
      return (0xffff & ~written) | ((flags && !T.edgeDead(T.offs[j] + e.len)) ? 0x10000 : 0);
    }
  }
  return -1;
}

/**
 * Whether the arithmetic flags that instruction i of `es` leaves are dead: a later instruction of the block writes
 * all six (a register ALU form, NEG, SHL/SHR/SAR by a constant) before anything could see them: only instructions
 * that neither read the flags nor can fault nor call a helper may come between (register MOV/LEA/MOVZX/MOVSX,
 * BSWAP, CDQ, XCHG, NOT, NOP). A block's exit, a memory access (whose fault would see them) or any other form
 * makes them live. Then ROL/ROR, which keep the other flags from before, compute none (md5's rounds: `rol esi,7 /
 * mov eax,ecx / add esi,ecx`): the flag locals keep the record from before, which nothing reads either.
 */
function flagsDead(block: Block, i: number): boolean {
  const es = block.entries;
  for (let j = i + 1; j < es.length; j++) {
    const e = es[j], f = e.form;
    // (the block's last instruction without a fast form is replayed; one straddling the page end may be replayed
    // too, Translator.straddleCheck, and its fetch may fault: either sees the flags before it)
    if (j === es.length - 1 && (e.len === 0 || block.pfn2 >= 0)) return false;
    switch (f) {
      case Form.AluRR: case Form.AluRI: case Form.Alu8RR: case Form.Alu8RI: case Form.Alu16RR: case Form.Alu16RI:
        if (KIND[e.op] !== 0) return true;
        return false;
      case Form.NotNegR: if (e.op === 1) return true; break;
      case Form.ShiftImm: case Form.Shift8Imm: case Form.Shift16Imm:
        if (e.op >= 4) return true;
        // (ROL/ROR by a constant keep the other flags and cannot fault: their flags are dead when the later ones
        // are; emitShiftImm's only, the others' rotates are replayed)
        if (e.op <= 1 && f === Form.ShiftImm) break;
        return false;
      case Form.MovRR64: case Form.MovRR32: case Form.MovImmReg: case Form.Lea: case Form.MovzxReg8: case Form.MovzxReg16:
      case Form.MovsxdReg: case Form.MovsxR8: case Form.MovsxR16: case Form.Mov8RR: case Form.Mov8RI: case Form.Bswap:
      case Form.Cdq: case Form.XchgRR: case Form.Nop:
        break;
      default: return false;
    }
  }
  return false;
}

/**
 * emitCode's instruction i replayed through the helper (closure or handler, as SoftCpu.runBlock); it stores RIP and
 * says whether to leave.
 */
function replay(T: Translator, i: number): void {
  const b = T.b;
  T.insReplayed = true;
  T.flush();
  T.pos(); b.call(F_RP);
  T.forget();
  b.open(Op.if); T.xk(X_HELPER); b.i32(i + 1).set(T.xc).br(T.out); b.close();
  T.known = false; T.fdirty = false; T.cfLazy = false;
  if (i === T.block.entries.length - 1) b.op(Op.unreachable); // (the helper always says leave after the last instruction)
}

/** emitCode's instruction e has a memory operand: its address into T.a (and an exitIfSlow check after it). */
function memOp(T: Translator, e: BlockEntry, next: number): void {
  T.insMem = true;
  T.ea(e, next);
}

/**
 * The code of one block into T's body (alone: inside its function's exit block; in a region: after its label):
 * every path leaves (T.out) or branches to another member.
 */
function emitCode(T: Translator, block: Block, offs: number[], loop: { pre: number[]; dirty: number[] } | null): void {
  const es = block.entries;
  const N = es.length;
  const b = T.b;
  T.block = block; T.offs = offs;
  T.rs.fill(0); T.dirty = 0; T.zx = 0; T.known = false; T.fdirty = false; T.cfLazy = false; T.rot = 0; T.kind = 0; T.size = 0; T.ix = 0;
  T.loopPre = null; T.loopDirty = []; T.backDirty.fill(false);
  T.runEnd = 0; T.runCur = -1; T.lpAt.fill(-1);
  // (a region member or a loop's top is reached from code that may have left slowL set)
  T.slowMaybe = T.slowMaybe || T.region !== null;
  const last = es[N - 1];
  const lastNext = offs[N - 1] + last.len;
  T.selfLoop = (last.form === Form.Jcc || last.form === Form.Jmp) && last.len > 0 && lastNext + last.disp === 0;
  if (T.selfLoop && loop !== null) {
    T.base = b.nest;
    for (const r of loop.pre) { T.r64(r); b.op(Op.drop); }
    T.loopPre = loop.pre;
    T.loopDirty = loop.dirty;
  }
  // (slowL at the loop's top: unknown)
  if (T.selfLoop) { T.top = b.open(Op.loop); T.slowMaybe = true; }
  T.chainAt = T.selfLoop ? -1 : b.calls;
  T.base = b.nest;
  if (T.loopPre !== null) for (const r of T.loopPre) { T.rs[r] = T.loopDirty.includes(r) ? 2 : 1; if (T.rs[r] === 2) T.dirty |= 1 << r; }
  // (EAGER_WB: per instruction index, the registers it or a later instruction of the block may write)
  // (both tables in reused typed arrays, EAGER_TABLES: no emitCode runs inside another)
  if (EAGER_TABLES.length < N + 1) EAGER_TABLES = new Int32Array(Math.max(N + 1, EAGER_TABLES.length * 2));
  let eager: Int32Array | null = null;
  if (EAGER_WB && !T.selfLoop) {
    eager = EAGER_TABLES;
    eager[N] = 0;
    for (let i = N - 1; i >= 0; i--) eager[i] = eager[i + 1] | writesOf(es[i]);
  }
  // (EAGER_FL: per instruction index, whether it or a later instruction of the block may produce flags; null: off
  // here, when a way out of the block may skip storing the flags, a branch to a region member that overwrites them)
  let eagerFl: Uint8Array | null = null;
  if (EAGER_FL && !T.selfLoop) {
    const lastNext = offs[N - 1] + last.len, lf = last.form;
    // (the block's ways out in this order, the first that reaches a member which overwrites the flags ends the look)
    let dead = lf === Form.Jcc ? T.edgeDead(lastNext + last.disp) || T.edgeDead(lastNext)
      : lf === Form.Jmp || lf === Form.Call ? T.edgeDead(lastNext + last.disp)
      : lf === Form.Ret || lf === Form.CallInd || lf === Form.JmpInd ? false : T.edgeDead(lastNext);
    // (and every side exit: a Jcc before the block's end)
    for (let j = 0; j < N - 1 && !dead; j++) if (es[j].form === Form.Jcc) dead = T.edgeDead(offs[j] + es[j].len + es[j].disp);
    if (!dead) {
      if (EAGER_FLAGS.length < N + 1) EAGER_FLAGS = new Uint8Array(Math.max(N + 1, EAGER_FLAGS.length * 2));
      eagerFl = EAGER_FLAGS;
      eagerFl[N] = 0;
      for (let i = N - 1; i >= 0; i--) eagerFl[i] = eagerFl[i + 1] !== 0 || !NO_FLAGS[es[i].form] ? 1 : 0;
    }
  }
  for (let i = 0; i < N; i++) {
    const e = es[i];
    const o = offs[i];
    const next = o + e.len;
    const isLast = i === N - 1;
    const f = e.form;
    T.ix = i;
    const mark = b.length;
    T.insMem = false; T.insReplayed = false; T.insSlow = 0; T.insCalls = b.calls; T.slowTrack = false;
    if (T.rot !== 0 && !ROT_KEEP[f]) T.settleRot();
    if (isLast && block.pfn2 >= 0 && f !== Form.None) T.straddleCheck(i);
    if (f === Form.None && isLast && e.len === 0 && !e.p66 && e.rep === 0 && (e.opcode === 0xeb || e.opcode === 0xe9 ||
      (e.opcode >= 0x70 && e.opcode <= 0x7f) || (e.opcode >= 0x180 && e.opcode <= 0x18f))) {
      T.straddlingBranch(e, o, i);
      replay(T, i);
      continue;
    }
    if (STACK_RUN && i >= T.runEnd) stackRun(T, es, i);
    T.runCur = i < T.runEnd ? T.runOff[i] : -1;
    (EMIT[f] ?? emitOther)(T, e, i, next);
    T.runCur = -1;
    if (eager !== null && !isLast && !T.insReplayed) T.eagerWb(eager[i + 1]);
    if (eagerFl !== null && !isLast && eagerFl[i + 1] === 0 && T.fdirty && !T.nested()) T.commitFlags();
    if (T.insMem && !isLast) { if (!T.insReplayed) T.hoistFlush(i); T.exitIfSlow(i + 1, next); }
    else if (T.insSlow > 0) T.slowMaybe = true;
    if (isLast && !T.insReplayed && f !== Form.Jcc && f !== Form.Jmp && f !== Form.Call && f !== Form.Ret && f !== Form.CallInd && f !== Form.JmpInd) {
      T.exitStatic(i + 1, next);
    }
    if (T.marks !== null) T.marks.push([`${T.region !== null ? 'm' + T.region.cur + ' ' : ''}+${o.toString(16)} op ${e.opcode.toString(16)} form ${f}`, mark, b.length]);
  }
  if (T.selfLoop) b.close();
}

/** emitCode's EAGER_WB and EAGER_FL tables (grown to the longest block). */
let EAGER_TABLES = new Int32Array(64);
let EAGER_FLAGS = new Uint8Array(64);

/**
 * RINGZERO_WASM_STACK_RUN=0: off. A run of stack accesses in one block (PUSH/POP, PUSH imm, PUSHF, PUSH memory, a
 * closing CALL or RET, 32/64-bit MOVs to and from [RSP+disp], with ADD/SUB/LEA of RSP by a constant, register-only
 * MOV/LEA/ALU forms and MOV/ALU loads from elsewhere through the memory library that leave RSP alone between them) probes the TLB once, for the bytes of all its accesses (their offsets
 * from RSP at the run's start are known when it is translated): when they lie in one page that the TLB maps for this
 * privilege (the write bank, and a page without decoded code, when the run stores: the memory library's store
 * obligations, CodeCache.codePages, which also routes the first store into a page while the dirty log is armed), each
 * access goes straight to RAM; else every access calls the memory library as before, so a fault comes from the same
 * instruction with the same state as in the interpreter. Linux's system call entry pushes 20 registers and its exit
 * pops 14 (PUSH_AND_CLEAR_REGS, POP_REGS), each a memory-library call with the dirty registers written back first.
 * Nothing in a run between the probe and an access can change the TLB, the page tables or the code pages: its
 * instructions touch only registers and the run's own bytes (a write to a page with decoded code is a miss).
 */
const STACK_RUN = process.env.RINGZERO_WASM_STACK_RUN !== '0';
/**
 * A CALL's push or a RET's pop with no other stack access before it in its block is a run of its own (one inline
 * probe, else the memory library as before): each such CALL and RET touched the stack through a library call (with
 * the dirty registers written back first). In the ash loop ~135 CALL pushes and ~101 RET pops per iteration of its
 * ~2110 user-mode library calls (RINGZERO_WASM_SITE_STATS, busybox's bytes at each site). Measured (EXIT_STATS, each
 * build's own boot subtracted): the boot's library calls 56.7M -> 41.5M, the ash loop's ~2190 -> ~2030 per iteration;
 * code +3% on the boot. Not done (session 23, measured with PREDICT, since removed): no time gain on the ash or syscall
 * loops, the boot 6-7% slower.
 */

/**
 * The stack run starting at instruction i of `es` (stackRun's forms above, at least two accesses; see STACK_RUN):
 * records each access's byte offset from the run's lowest byte (T.runOff) and the run's end (T.runEnd), and emits
 * the run's probe (T.runOk, T.runPa). Nothing when instruction i starts no such run.
 */
function stackRun(T: Translator, es: BlockEntry[], i: number): void {
  T.runEnd = i + 1; T.runOff[i] = -1;
  // (called at nearly every instruction: no closures or arrays of its own, RUN_AT is reused; an instruction that
  // starts no run is told apart before anything else is set up)
  let d = 0, lo = 0, hi = 0, n = 0, write = false, j = i;
  if (RUN_AT.length < es.length) RUN_AT = new Float64Array(Math.max(es.length, RUN_AT.length * 2));
  const at = RUN_AT; // (each instruction's access offset from RSP at the run's start, NaN: none)
  for (; j < es.length; j++) {
    const e = es[j], f = e.form;
    at[j] = NaN;
    // (an access: its offset from RSP at the run's start, its size, whether it stores, and RSP's change after it)
    let off = 0, size = 0, st = false, dd = 0;
    if (f === Form.Push || f === Form.PushImm || f === Form.Pushf || f === Form.Call || f === Form.PushM) {
      off = d - 8; size = 8; st = true; dd = -8;
    } else if ((f === Form.Pop && e.a !== 4) || f === Form.Ret) {
      off = d; size = 8; dd = 8;
    } else if ((f === Form.MovStore64 || f === Form.MovStore32 || f === Form.MovImmMem64 || f === Form.MovImmMem32) && e.base === 4 && e.index < 0 && e.seg < 0) {
      off = d + e.disp; size = f === Form.MovStore64 || f === Form.MovImmMem64 ? 8 : 4; st = true;
    } else if ((f === Form.MovLoad64 || f === Form.MovLoad32) && e.base === 4 && e.index < 0 && e.seg < 0 && e.a !== 4) {
      off = d + e.disp; size = f === Form.MovLoad64 ? 8 : 4;
    } else if (n === 0) {
      break; // (a run starts at an access)
    } else if (((f === Form.MovLoad64 || f === Form.MovLoad32) && e.a !== 4) || (f === Form.AluRM && (e.b !== 4 || e.op >= CMP))) {
      // (a load elsewhere, through the memory library: the canary `mov rax,gs:[0x28]` between a prologue's pushes and
      // its `mov [rsp+d],rax`, current->... loads; it leaves RSP, the TLB's mappings, the page tables and the code
      // pages alone; a fault in it exits with the run's earlier accesses done, as in the interpreter)
    } else if (f === Form.AluRI && e.b === 4 && e.size === 8 && (e.op === ADD || e.op === SUB) && e.immHi === ((e.imm | 0) >> 31)) {
      d += e.op === ADD ? (e.imm | 0) : -(e.imm | 0);
    } else if (f === Form.Lea && e.a === 4 && e.base === 4 && e.index < 0 && e.immHi === 8) {
      d += e.disp;
    } else if (f === Form.Nop || ((f === Form.MovRR64 || f === Form.MovRR32 || f === Form.AluRR || f === Form.AluRI) && (e.b !== 4 || e.op >= CMP && f !== Form.MovRR64 && f !== Form.MovRR32)) ||
      ((f === Form.MovImmReg || f === Form.Lea) && e.a !== 4)) {
      // (register-only, no call, RSP unchanged)
    } else break;
    if (size !== 0) {
      const l = n === 0 ? off : Math.min(lo, off), h = n === 0 ? off + size : Math.max(hi, off + size);
      if (h - l > 4096) break;
      lo = l; hi = h; n++; write ||= st; at[j] = off;
      d += dd;
    }
    if (f === Form.Call || f === Form.Ret) { j++; break; }
  }
  // (one access is no run: a lone CALL push or RET pop as a run of its own (session 23's STACK_ONE, removed) cut
  // library calls but not time, and made the boot 6-7% slower)
  if (n < 2) return;
  const b = T.b;
  for (let k = i; k < j; k++) T.runOff[k] = Number.isNaN(at[k]) ? -1 : at[k] - lo;
  T.runEnd = j;
  T.r64(4);
  if (lo !== 0) b.i64(lo).op(Op.i64Add);
  b.set(T.a);
  b.i32(0).set(T.runOk);
  const slow = b.open(Op.block);
  // (the run's bytes as one access of hi - lo bytes, at most a page: its length a constant, checked as one access is)
  emitTlbProbe(b, write ? T.wtag : T.rtag, T.a, { ti: T.pTi }, hi - lo, write, slow);
  b.set(T.runPa);
  b.i32(1).set(T.runOk);
  b.close();
}

/** stackRun's offsets per instruction of a block (grown to the longest block). */
let RUN_AT = new Float64Array(64);

/**
 * The emitter of each form (emitCode): a new form gets its own function below and a line here. Each is kept small
 * (V8 optimizes a function after a number of ticks that grows with its bytecode size and restarts when its type
 * feedback changes: the single function these were the cases of never got optimized during a boot).
 * An emitter writes instruction e (index i of T.block; the next instruction at block offset `next`) into T.b;
 * memOp/replay mark it for emitCode, which adds the exits after it.
 */
type Emitter = (T: Translator, e: BlockEntry, i: number, next: number) => void;
/**
 * RINGZERO_WASM_ROT_LAZY=0: ROL/ROR by a constant compute their flags at once (Translator.rot). The forms that may
 * run while a rotate's flags are pending: plain moves, loads and stores, LEA, the ALU forms, shifts by a constant and
 * JMP (they touch the flag locals only in their producer's last step, and reach the state area's flags only through
 * flush, so commitFlags, or backEdge's commitFlags); before any other emitCode settles the flags into an EXPLICIT
 * record first.
 */
const ROT_LAZY = process.env.RINGZERO_WASM_ROT_LAZY !== '0';
/**
 * RINGZERO_WASM_EDGE_DEAD=0: a branch to another region member stores a deferred flag record even when that member
 * overwrites all the flags before anything sees them (Translator.edgeDead; its leaving path stores it either way).
 */
const EDGE_DEAD = process.env.RINGZERO_WASM_EDGE_DEAD !== '0';
/** RINGZERO_WASM_SLOW_FLAG=0: exitIfSlow reads S_CHAIN after every memory instruction (Translator.slowL). */
/**
 * RINGZERO_WASM_SLOW_EV=0: off. An inline access's slow path sets slowL only when the library stopped the chain
 * (S_CHAIN read there, after the call: only a helper clears it, and every check after a helper leaves when it is 0, so
 * slowL is never 1 where the code goes on), and a flagged exitIfSlow is `if slowL: leave` instead of `if slowL: clear
 * slowL; if !S_CHAIN: leave` (~5 wasm operations fewer per inline memory instruction, the S_CHAIN load moved to the
 * slow path).
 */
const SLOW_EV = process.env.RINGZERO_WASM_SLOW_EV !== '0';
const SLOW_FLAG = process.env.RINGZERO_WASM_SLOW_FLAG !== '0';
/**
 * RINGZERO_WASM_SLOW_WB=0: the exit after an inline access's slow path (exitIfSlow, when the chain stopped) writes
 * back every dirty register and the flags again, though that slow path wrote them all back before its library call
 * (Translator.slowTrack: only what the instruction changed after it).
 */
const SLOW_WB = process.env.RINGZERO_WASM_SLOW_WB !== '0';
/**
 * RINGZERO_WASM_FOLD_CHECKS=0: a RET's canonical check and a CALL's target check each write the registers back on
 * their own #GP path; folded (on), the inline access's failing check takes the access's slow path, whose write-backs
 * the #GP then uses (one copy of them per instruction).
 */
const FOLD_CHECKS = process.env.RINGZERO_WASM_FOLD_CHECKS !== '0';
/** RINGZERO_WASM_CHAIN_KNOWN=0: every branch to a region member and tail call reads S_CHAIN (Translator.chainAt). */
const CHAIN_KNOWN = process.env.RINGZERO_WASM_CHAIN_KNOWN !== '0';
/** RINGZERO_WASM_LOAD_REG=0: loads into a register go through local v (Translator.loadReg). */
const LOAD_REG = process.env.RINGZERO_WASM_LOAD_REG !== '0';
/** RINGZERO_WASM_REGION_LIM=0: a branch to a region member compares its count twice (Region.lim). */
const REGION_LIM = process.env.RINGZERO_WASM_REGION_LIM !== '0';
/** RINGZERO_WASM_RUN_RSP=0: a stack run's PUSH/POP set local a to its address on every path (Translator.pushStore). */
const RUN_RSP = process.env.RINGZERO_WASM_RUN_RSP !== '0';
/** Translator.pushAddr's kinds: the address is in local a already; RSP; RSP - 8. */
const ADDR_A = 0, ADDR_RSP = 1, ADDR_PUSH = 2;
/** RINGZERO_WASM_CF_LAZY=0: INC/DEC work out their carry-in at once (Translator.cfLazy). */
const CF_LAZY = process.env.RINGZERO_WASM_CF_LAZY !== '0';
const ROT_KEEP = formSet([Form.MovRR64, Form.MovRR32, Form.MovStore64, Form.MovStore32, Form.MovLoad64, Form.MovLoad32,
  Form.MovImmReg, Form.MovImmMem64, Form.MovImmMem32, Form.Lea, Form.AluRR, Form.AluRI, Form.AluRM, Form.AluMR,
  Form.AluMI, Form.ShiftImm, Form.MovzxReg8, Form.MovzxReg16, Form.MovzxMem, Form.MovsxdReg, Form.MovsxdMem,
  Form.MovsxR8, Form.MovsxR16, Form.MovsxM, Form.Mov8RR, Form.Mov8RI, Form.Mov8RM, Form.Mov8MR, Form.Mov8MI,
  Form.Alu8RR, Form.Alu8RI, Form.Alu8RM, Form.Alu8MR, Form.Alu8MI, Form.NotNegR, Form.Push, Form.Pop,
  Form.Bswap, Form.Cdq, Form.XchgRR, Form.Nop, Form.Jmp]);

const EMIT: Emitter[] = [];
function on(fn: Emitter, ...forms: Form[]): void { for (const f of forms) EMIT[f] = fn; }
on(emitMovRR64, Form.MovRR64);
on(emitMovRR32, Form.MovRR32);
on(emitMovStore64, Form.MovStore64);
on(emitMovStore32, Form.MovStore32);
on(emitMovLoad64, Form.MovLoad64);
on(emitMovLoad32, Form.MovLoad32);
on(emitMovImmReg, Form.MovImmReg);
on(emitMovImmMem64, Form.MovImmMem64);
on(emitMovImmMem32, Form.MovImmMem32);
on(emitLea, Form.Lea);
on(emitAluRR, Form.AluRR, Form.AluRI, Form.AluRM);
on(emitAluMR, Form.AluMR, Form.AluMI);
on(emitIncDec, Form.IncDec);
on(emitIncDec8, Form.IncDec8);
on(emitShiftImm, Form.ShiftImm);
on(emitShiftCl, Form.ShiftCl);
on(emitBtRI, Form.BtRI, Form.BtRR, Form.BtMI, Form.BtMR);
on(emitAlu16RR, Form.Alu16RR, Form.Alu16RI, Form.Alu16RM, Form.Alu16MR, Form.Alu16MI);
on(emitMovStore16, Form.MovStore16);
on(emitMovLoad16, Form.MovLoad16);
on(emitCmpxchgM, Form.CmpxchgM);
on(emitCmpxchg8M, Form.Cmpxchg8M);
on(emitRdtsc, Form.Rdtsc, Form.Rdtscp);
on(emitSwapgs, Form.Swapgs);
on(emitCld, Form.Cld, Form.Std);
on(emitMovSregR, Form.MovSregR, Form.MovSregM);
on(emitCmpxchg16bM, Form.Cmpxchg16bM);
on(emitShift8Imm, Form.Shift8Imm);
on(emitShift16Imm, Form.Shift16Imm);
on(emitShift16M, Form.Shift16M);
on(emitShiftMCl, Form.ShiftMCl);
on(emitMovImm16M, Form.MovImm16M);
on(emitPopcnt, Form.PopcntR, Form.PopcntM);
on(emitShiftDoubleCl, Form.ShiftDoubleCl);
on(emitXchgRR, Form.XchgRR);
on(emitXchgM, Form.XchgM);
on(emitXaddM, Form.XaddM);
on(emitShiftDoubleRI, Form.ShiftDoubleRI);
on(emitCdq, Form.Cdq);
on(emitBswap, Form.Bswap);
on(emitPushf, Form.Pushf);
on(emitCli, Form.Cli, Form.Sti);
on(emitPushImm, Form.PushImm);
on(emitSetccM, Form.SetccM);
on(emitLeave, Form.Leave);
on(emitPush, Form.Push, Form.Call);
on(emitPop, Form.Pop, Form.Ret);
on(emitMovzxReg8, Form.MovzxReg8);
on(emitMovzxReg16, Form.MovzxReg16);
on(emitMovzxMem, Form.MovzxMem);
on(emitMovsxdReg, Form.MovsxdReg);
on(emitMovsxdMem, Form.MovsxdMem);
on(emitAlu8RR, Form.Alu8RR, Form.Alu8RI, Form.Alu8RM);
on(emitAlu8MR, Form.Alu8MR, Form.Alu8MI);
on(emitMov8RR, Form.Mov8RR);
on(emitMov8RI, Form.Mov8RI);
on(emitMov8RM, Form.Mov8RM);
on(emitMov8MR, Form.Mov8MR);
on(emitMov8MI, Form.Mov8MI);
on(emitCmovRR, Form.CmovRR, Form.CmovRM);
on(emitSetcc, Form.Setcc);
on(emitNop, Form.Nop);
on(emitAdcRR, Form.AdcRR, Form.AdcRM, Form.AdcRI, Form.AdcMR, Form.AdcMI);
on(emitIncDecM, Form.IncDecM);
on(emitImulRR, Form.ImulRR, Form.ImulRM, Form.ImulRRI, Form.ImulRMI);
on(emitMulDivR, Form.MulDivR, Form.MulDivM);
on(emitPushM, Form.PushM);
on(emitMovsxR8, Form.MovsxR8, Form.MovsxR16, Form.MovsxM);
on(emitNotNegR, Form.NotNegR);
on(emitNotNegM, Form.NotNegM);
on(emitCallInd, Form.CallInd, Form.JmpInd);
on(emitJcc, Form.Jcc, Form.Jmp);
on(emitSyscall, Form.Syscall, Form.Sysret);

function emitMovRR64(T: Translator, e: BlockEntry, i: number, next: number): void {
  T.setFrom(e.b, () => T.r64(e.a));
}

function emitMovRR32(T: Translator, e: BlockEntry, i: number, next: number): void {
  T.set32(e.b, () => T.r32(e.a));
}

function emitMovStore64(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.r64(e.a); b.set(T.w); T.store(8);
}

function emitMovStore32(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.regVal(e.a, 4); b.set(T.w); T.store(4);
}

function emitMovLoad64(T: Translator, e: BlockEntry, i: number, next: number): void {
  memOp(T, e, next); T.loadReg(e.a, 8, false);
}

function emitMovLoad32(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.loadReg(e.a, 4, true);
}

function emitMovImmReg(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  T.setFrom(e.a, () => b.i64(imm64(e.imm, e.immHi)));
}

function emitMovImmMem64(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); b.i64(imm64(e.imm, e.immHi)).set(T.w); T.store(8);
}

function emitMovImmMem32(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); b.i64(e.imm >>> 0).set(T.w); T.store(4);
}

function emitLea(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // base + (index << e.size) + disp modulo 2^64; e.immHi is the operand size (4: zero-extended).
  let terms = 0;
  if (e.base >= 0) { T.r64(e.base); terms++; }
  else if (e.base === -2) { b.get(T.r0i).i64(next).op(Op.i64Add); terms++; }
  if (e.index >= 0) { T.r64(e.index); if (e.size) b.i64(e.size).op(Op.i64Shl); if (terms) b.op(Op.i64Add); terms++; }
  if (e.disp !== 0 || terms === 0) { b.i64(e.disp); if (terms) b.op(Op.i64Add); }
  b.set(T.t);
  if (e.immHi === 8) T.set64(e.a, T.t); else T.set32(e.a, () => b.get(T.t).op(Op.i32WrapI64));
}

function emitAluRR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  const op = e.op, size = e.size, rd = e.b;
  if (f === Form.AluRM) { memOp(T, e, next); T.load(size); }
  T.regVal(rd, size); b.tee(T.ld);
  if (f === Form.AluRR) T.regVal(e.a, size);
  else if (f === Form.AluRI) b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
  else b.get(T.v);
  b.tee(T.ls);
  T.alu(op, size);
  if (op < CMP) T.writeLr(rd, size);
  T.produced(KIND[op], size);
}

function emitAluMR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, size = e.size;
  memOp(T, e, next); T.load(size);
  aluMem(T, e.op, size, () => {
    if (e.form === Form.AluMR) T.regVal(e.a, size); else b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
  });
}

/**
 * ALU op `op` of the memory operand just loaded (local v) with the i64 `operand` pushes, at `size` (AluMR/AluMI and
 * their byte forms): the result stored back, then the flag record. The store may fault after the load: the record is
 * produced only after it. CMP/TEST store nothing, so nothing can fault after the load: their record goes straight
 * into the flag locals (HOIST_FLUSH).
 */
function aluMem(T: Translator, op: number, size: number, operand: () => void): void {
  const b = T.b;
  if (op >= CMP && HOIST_FLUSH) {
    b.get(T.v).tee(T.ld);
    operand(); b.tee(T.ls);
    T.alu(op, size);
    T.produced(KIND[op], size);
    return;
  }
  operand(); b.set(T.t);
  // w = v op t (as alu(), into w)
  b.get(T.v).get(T.t);
  b.op(op === ADD ? Op.i64Add : op === SUB || op === CMP ? Op.i64Sub : op === OR ? Op.i64Or : op === XOR ? Op.i64Xor : Op.i64And);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  else if (size === 1) b.i64(0xffn).op(Op.i64And);
  b.set(T.w);
  if (op < CMP) T.store(size);
  b.get(T.v).set(T.ld).get(T.t).set(T.ls).get(T.w).set(T.lr);
  T.produced(KIND[op], size);
}

function emitIncDec(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  const r = e.b, dec = e.op === 1, size = e.size;
  // CF is preserved: the record keeps the old CF (../ops/alu.ts), worked out where seen (cfLazy)
  const lazy = incDecLazy(T);
  if (!lazy) { T.cond(2); b.set(T.lcy); }
  T.regVal(r, size); b.set(T.ld);
  b.i64(1).set(T.ls);
  b.get(T.ld).i64(1).op(dec ? Op.i64Sub : Op.i64Add);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T.lr);
  T.writeLr(r, size);
  T.produced(dec ? L_DEC : L_INC, size);
  T.cfLazy = lazy;
}

/**
 * Whether an INC/DEC leaves its carry-in lazy (Translator.cfLazy): at straight-line level when the state area holds
 * the record before it (the block does not know the flags) or an INC/DEC before it is lazy already. RINGZERO_WASM_CF_LAZY=0: never.
 */
function incDecLazy(T: Translator): boolean {
  return CF_LAZY && !T.nested() && T.rot === 0 && (!T.known || T.cfLazy);
}

function emitIncDec8(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, dec = e.op === 1;
  // (INC/DEC r8, FE /0 /1: CF kept as in emitIncDec; the record's operands and result masked to the byte, as the
  // inline flag evaluation of a byte record reads them)
  const lazy = incDecLazy(T);
  if (!lazy) { T.cond(2); b.set(T.lcy); }
  T.r8(e.b, e.bsh); b.op(Op.i64ExtendI32u).set(T.ld);
  b.i64(1).set(T.ls);
  b.get(T.ld).i64(1).op(dec ? Op.i64Sub : Op.i64Add).i64(0xffn).op(Op.i64And).set(T.lr);
  T.set8(e.b, e.bsh, () => b.get(T.lr).op(Op.i32WrapI64));
  T.produced(dec ? L_DEC : L_INC, 1);
  T.cfLazy = lazy;
}

function emitShiftImm(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  if (e.op === 0 || e.op === 1) {
    const r = e.b, n = e.imm, w = e.size === 8;
    if (flagsDead(T.block, i)) {
      // (its flags are dead: the rotate alone)
      if (w) { T.r64(r); b.i64(n).op(e.op === 0 ? 0x89 /* i64.rotl */ : 0x8a /* i64.rotr */).set(T.v); T.set64(r, T.v); }
      else T.set32(r, () => { T.r32(r); b.i32(n).op(e.op === 0 ? 0x77 /* i32.rotl */ : 0x78 /* i32.rotr */); });
      return;
    }
    if (ROT_LAZY && !T.nested() && (T.rot !== 0 || T.canMaterialize())) {
      if (T.cfLazy) T.resolveCf(); // (storeRot overwrites S_LOP before it evaluates the record)
      // (the flags worked out only where seen: Translator.rot; a second rotate while one is pending replaces its
      // CF and OF, the other flags staying those of the record before both)
      if (w) T.setFrom(r, () => { T.r64(r); b.i64(n).op(e.op === 0 ? 0x89 /* i64.rotl */ : 0x8a /* i64.rotr */).tee(T.rv); });
      else T.setFrom(r, () => { T.r32(r); b.i32(n).op(e.op === 0 ? 0x77 /* i32.rotl */ : 0x78 /* i32.rotr */).op(Op.i64ExtendI32u).tee(T.rv); });
      T.rot = e.op === 0 ? 1 : 2; T.rotSize = e.size; T.fdirty = true; T.slowFl = true;
      return;
    }
    // ROL/ROR write CF and OF over the other flags (those before: inline when known here, else the helper)
    T.oldFlags();
    if (w) {
      T.r64(r); b.i64(n).op(e.op === 0 ? 0x89 /* i64.rotl */ : 0x8a /* i64.rotr */).set(T.v);
      if (e.op === 0) {
        b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32); // CF
        b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T.c32).op(Op.i32Xor);
      } else {
        b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64); // CF
        b.get(T.v).i64(63).op(Op.i64ShrU).get(T.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
      }
    } else {
      T.r32(r); b.i32(n).op(e.op === 0 ? 0x77 /* i32.rotl */ : 0x78 /* i32.rotr */).op(Op.i64ExtendI32u).set(T.v);
      if (e.op === 0) {
        b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32);
        b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T.c32).op(Op.i32Xor);
      } else {
        b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU);
        b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T.v).op(Op.i32WrapI64).i32(30).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
      }
    }
    // stack: CF, OF -> flags = (old & ~(CF|OF)) | CF | OF << 11
    b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T.fl).i32(~0x801).op(Op.i32And).op(Op.i32Or).op(Op.i64ExtendI32u).set(T.ld);
    if (w) T.set64(r, T.v); else T.set32(r, () => b.get(T.v).op(Op.i32WrapI64));
    T.produced(EXPLICIT, e.size);
    return;
  }
  if (e.op < 4) { replay(T, i); return; } // RCL/RCR: replayed
  // SHL/SAL/SHR/SAR by a constant
  T.shiftBits(e.b, e.op, e.size, e.imm);
}

function emitShiftCl(T: Translator, e: BlockEntry, i: number, next: number): void {
  // SHL/SAL/SHR/SAR register by CL (D3 /4-/7), as ../fast-forms.ts shiftRegCl (shiftByCl); ROL/ROR: emitRotateCl;
  // RCL/RCR replayed
  if (e.op <= 1) { emitRotateCl(T, e); return; }
  if (e.op < 4) { replay(T, i); return; }
  T.shiftByCl(e.b, e.size, () => T.shiftBits(e.b, e.op, e.size, -1));
}

/**
 * ROL/ROR of register e.b by CL (D3 /0 /1, sizes 4 and 8), as ../ops/alu-shift.ts shift32/shift64 under
 * ../fast-forms.ts shiftRegCl: the count is CL masked to 5 bits (6 for size 8); 0 changes no flag and only clears a
 * 32-bit register's upper half; else the rotate, with CF and OF written over the flags before (ROL: CF = bit 0 of the
 * result, OF = its top bit ^ CF; ROR: CF = the top bit, OF = the two top bits' XOR, for every count, as the
 * interpreter). Both paths leave the flags as EXPLICIT bits in ld. Linux: `rol eax,cl` in __hrtimer_run_queues and
 * __update_load_avg_se (RINGZERO_WASM_PROFILE, ~0.4 replays per 4 KiB random read of bench/io).
 */
function emitRotateCl(T: Translator, e: BlockEntry): void {
  const b = T.b, r = e.b, w = e.size === 8, rol = e.op === 0;
  T.oldFlags(); // (fl: the flags before, inline when known here, else from the flag library)
  T.r32(1); b.i32(w ? 63 : 31).op(Op.i32And).op(Op.i64ExtendI32u).tee(T.x1).op(Op.i64Eqz);
  b.open(Op.if);
  if (!w) T.set32(r, () => T.r32(r));
  b.get(T.fl).op(Op.i64ExtendI32u).set(T.ld);
  b.else();
  if (w) {
    T.r64(r); b.get(T.x1).op(rol ? 0x89 /* i64.rotl */ : 0x8a /* i64.rotr */).set(T.v);
    if (rol) {
      b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32); // CF
      b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T.c32).op(Op.i32Xor);
    } else {
      b.get(T.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64); // CF
      b.get(T.v).i64(63).op(Op.i64ShrU).get(T.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
    }
  } else {
    T.r32(r); b.get(T.x1).op(Op.i32WrapI64).op(rol ? 0x77 /* i32.rotl */ : 0x78 /* i32.rotr */).op(Op.i64ExtendI32u).set(T.v);
    if (rol) {
      b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32);
      b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T.c32).op(Op.i32Xor);
    } else {
      b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU);
      b.get(T.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T.v).op(Op.i32WrapI64).i32(30).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
    }
  }
  // stack: CF, OF -> flags = (old & ~(CF|OF)) | CF | OF << 11
  b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T.fl).i32(~0x801).op(Op.i32And).op(Op.i32Or).op(Op.i64ExtendI32u).set(T.ld);
  if (w) T.set64(r, T.v); else T.set32(r, () => b.get(T.v).op(Op.i32WrapI64));
  b.close();
  T.produced(EXPLICIT, e.size);
}

function emitBtRI(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // BT/BTS/BTR/BTC (e.op 0-3) as ../fast-forms.ts btReg/btMem: CF = the bit, the other flags kept (EXPLICIT);
  // the memory forms read, then write back (BTS/BTR/BTC) before the flags change. BtMR's signed bit offset
  // also moves the address by floor(offset / width) operands.
  const size = e.size, kind = e.op, toMem = f === Form.BtMI || f === Form.BtMR;
  const mask = size * 8 - 1;
  if (toMem) {
    memOp(T, e, next);
    if (f === Form.BtMR) {
      b.get(T.a);
      if (size === 8) { T.r64(e.a); b.i64(6).op(Op.i64ShrS).i64(3).op(Op.i64Shl); }
      else { T.r32(e.a); b.i32(5).op(Op.i32ShrS).op(Op.i64ExtendI32s).i64(2).op(Op.i64Shl); }
      b.op(Op.i64Add).set(T.a);
    }
    T.load(size);
  } else { T.regVal(e.b, size); b.set(T.v); }
  // bit number into t
  if (f === Form.BtRI || f === Form.BtMI) b.i64(e.imm & mask);
  else { T.r32(e.a); b.i32(mask).op(Op.i32And).op(Op.i64ExtendI32u); }
  b.set(T.t);
  T.oldFlags();
  b.get(T.v).get(T.t).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T.c32);
  if (kind !== 0) {
    b.get(T.v).i64(1).get(T.t).op(Op.i64Shl);
    if (kind === 2) b.i64(-1).op(Op.i64Xor);
    b.op(kind === 1 ? Op.i64Or : kind === 2 ? Op.i64And : Op.i64Xor).set(T.w);
    if (toMem) T.store(size);
    else if (size === 8) T.set64(e.b, T.w);
    else T.set32(e.b, () => b.get(T.w).op(Op.i32WrapI64));
  }
  b.get(T.fl).i32(~1).op(Op.i32And).get(T.c32).op(Op.i32Or);
  T.explicit(size);
}

function emitAlu16RR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // 16-bit ALU (66h) as ../fast-forms.ts alu16Reg/alu16Mem: the record holds the zero-extended operands and
  // the unmasked int32 result (its high half 0), as the JS form leaves it; a register destination keeps bits
  // 16-63. Conditions on a 16-bit record are not inlined: the block stops knowing the flags after it.
  const op = e.op, toMem = f === Form.Alu16MR || f === Form.Alu16MI;
  const r16 = (r: number) => { T.r32(r); b.i32(0xffff).op(Op.i32And).op(Op.i64ExtendI32u); };
  if (toMem) T.commitFlags(); // (as CmpxchgM)
  if (toMem || f === Form.Alu16RM) { memOp(T, e, next); T.load(2); }
  if (toMem) b.get(T.v); else r16(e.b);
  b.tee(T.ld);
  if (f === Form.Alu16RR || f === Form.Alu16MR) r16(e.a);
  else if (f === Form.Alu16RM) b.get(T.v);
  else b.i64(e.imm & 0xffff);
  b.tee(T.ls);
  T.alu(op, 4);
  if (op < CMP) {
    if (toMem) { b.get(T.lr).set(T.w); T.store(2); }
    else T.setLow(e.b, 0xffff, () => b.get(T.lr).op(Op.i32WrapI64).i32(0xffff).op(Op.i32And));
  }
  T.produced(KIND[op], 2);
  T.commitFlags(); // (the block stops knowing the flags: the state area must hold them)
  T.known = false;
}

function emitMovStore16(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.r32(e.a); b.op(Op.i64ExtendI32u).set(T.w); T.store(2);
}

function emitMovImm16M(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); b.i64(e.imm & 0xffff).set(T.w); T.store(2);
}

function emitPopcnt(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, size = e.size;
  // POPCNT (F3 0F B8) as ../fast-forms.ts popcntTo: the source (a load may fault before anything changes), its count
  // of set bits zero-extended into e.b, then the EXPLICIT record: ZF (bit 6) when the source is 0, the others clear
  if (e.form === Form.PopcntM) { memOp(T, e, next); T.load(size); } else { T.regVal(e.a, size); b.set(T.v); }
  b.get(T.v).op(Op.i64Popcnt).set(T.v);
  T.set64(e.b, T.v);
  b.get(T.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl);
  T.explicit(size);
}

function emitMovLoad16(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.load(2);
  T.setLow(e.a, 0xffff, () => b.get(T.v).op(Op.i32WrapI64));
}

function emitCmpxchgM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // CMPXCHG memory, e.a (0F B1, no LOCK) as ../fast-forms.ts cmpxchgM: flags of CMP rAX, DEST; equal: DEST = e.a,
  // else DEST is written back with its own value and rAX = DEST (after the store, which may fault)
  const size = e.size;
  T.commitFlags(); // (the flag locals change between the load and the store, which may fault: see clobbers)
  memOp(T, e, next); T.load(size);
  T.regVal(0, size); b.tee(T.ld);
  b.get(T.v).tee(T.ls);
  T.alu(SUB, size);
  T.regVal(e.a, size); b.get(T.v); b.get(T.lr).op(Op.i64Eqz).op(Op.select).set(T.w);
  T.store(size);
  b.get(T.lr).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
  if (size === 8) T.set64(0, T.v); else T.set32(0, () => b.get(T.v).op(Op.i32WrapI64));
  b.close();
  T.produced(L_SUB, size);
}

function emitCmpxchg8M(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // CMPXCHG m8, r8 (0F B0; LOCK too) as ../fast-forms.ts cmpxchg8M: flags of CMP AL, DEST; equal: DEST = the
  // byte register, else DEST written back with its own value, then AL = DEST
  T.commitFlags(); // (as CmpxchgM)
  memOp(T, e, next); T.load(1);
  T.r8(0, 0); b.op(Op.i64ExtendI32u).tee(T.ld);
  b.get(T.v).tee(T.ls);
  T.alu(SUB, 1);
  T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u); b.get(T.v); b.get(T.lr).op(Op.i64Eqz).op(Op.select).set(T.w);
  T.store(1);
  b.get(T.lr).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
  T.set8(0, 0, () => b.get(T.v).op(Op.i32WrapI64));
  b.close();
  T.produced(L_SUB, 1);
}

function emitRdtsc(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  if (f === Form.Rdtsc) {
    // RDTSC (../system/control.ts rdtsc; no flag changes): the TSC is host time (the VM clock), so JavaScript's, but
    // its value only: the helper `sy` (kind SY_TSC) returns its low half and stores the high half in S_HI, without
    // the registers going to the state area first; EAX and EDX (upper halves zeroed) then get them here. The #GP(0)
    // of CR4.TSD above CPL 0 (S_TSD, S_CPL) goes through the helper's kind 2 (registers written back: it faults).
    // (Linux reads it on every system call's return: the kernel stack offset, choose_random_kstack_offset.)
    b.get(T.st).mem(Op.i32Load, 2, L.S_TSD).get(T.st).mem(Op.i32Load, 2, L.S_CPL).i32(0).op(Op.i32Ne).op(Op.i32And).hint(false).open(Op.if);
    T.flush(); b.i32(2); T.pos(); b.call(F_SY).op(Op.drop);
    b.close();
    b.i32(SY_TSC); T.pos(); b.call(F_SY).set(T.t32);
    T.set32(0, () => b.get(T.t32));
    T.set32(2, () => b.get(T.st).mem(Op.i32Load, 2, L.S_HI));
    return;
  }
  // RDTSCP through the helper `sy` (kind 3: the TSC, CR4/CPL and TSC_AUX are JavaScript state), which writes RAX,
  // RDX and RCX in the state area; no flag changes. Registers are written back first (it may raise #GP), and the
  // cache forgets the ones it wrote.
  T.flush(); b.i32(3); T.pos(); b.call(F_SY).op(Op.drop);
  T.drop(0); T.drop(2); T.drop(1);
}

/**
 * SYSCALL / SYSRETQ (always a block's last instruction), twice per Linux system call. Their common case runs inline
 * (SDM vol. 2B SYSCALL, SYSRET "Operation", 64-bit mode, as ../system/fastcall.ts): the general registers, RIP,
 * RFLAGS (S_EFL and the flag record) and the privilege the dispatcher and the next blocks use (S_CPL, S_USER) change
 * here; CS, SS and SoftCpu.cpl, JavaScript state, follow at the runtime's next look (S_SYS, runtime.ts syncSys). The
 * MSRs come from the state area (S_SCE, S_STAR_*, S_SFMASK, S_LSTAR: runtime.ts pushSysMsrs).
 * - SYSCALL inline when EFER.SCE is set and the masked RFLAGS has IF clear (Linux's SFMASK clears it; an IF left set
 *   makes SoftCpu.setFlagsValue ask for an event check, which the helper does): RCX = next RIP, R11 = RFLAGS with RF
 *   clear, RFLAGS &= ~SFMASK (and RF), CPL 0, RIP = LSTAR.
 * - SYSRETQ inline when EFER.SCE is set, CPL is 0, RCX is canonical (else #UD, #GP(0): the helper raises them) and
 *   either R11 leaves IF clear or the local APIC is known to have nothing to give (S_PEND = 0: the event check
 *   SoftCpu.setFlagsValue asks for would find nothing, ../ops/interrupt-flag.ts settleRestoredIf): RFLAGS = R11 &
 *   0x3c7fd7 | 2 (as setFlagsValue keeps it), CPL 3, RIP = RCX.
 * Anything else goes through the helper `sy` (kinds SY_SYSCALL, SY_SYSRETQ), registers and the flag record written
 * back first, S_RIP = the next instruction's RIP, which the helper replaces with the target. Either way the block then
 * leaves and the dispatcher goes on in the new privilege (S_USER), looking the new RIP up in that fetch-TLB bank;
 * return-address predictions made in the old one are dropped (S_RASP). (RINGZERO_WASM_PRIV_CHAIN=0: always the
 * helper, which then ends the chain.)
 */
function emitSyscall(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, call = e.form === Form.Syscall;
  T.insReplayed = true; // (it leaves here: no exit after it)
  if (call && PRIV_CHAIN) T.oldFlags(); // (the arithmetic flags into local fl, before the write-back)
  T.flush();
  b.get(T.st); T.r0f(next); b.mem(Op.f64Store, 3, L.S_RIP);
  // the new privilege: S_CPL, S_USER, no return-address predictions, CS/SS and SoftCpu.cpl to load (S_SYS)
  const switchTo = (cpl: number) => {
    b.get(T.st).i32(cpl).mem(Op.i32Store, 2, L.S_CPL);
    b.get(T.st).i32(cpl === 3 ? 1 : 0).mem(Op.i32Store, 2, L.S_USER);
    b.get(T.st).i32(0).mem(Op.i32Store, 2, L.S_RASP);
    b.get(T.st).i32(call ? 1 : 2).mem(Op.i32Store, 2, L.S_SYS);
  };
  // RFLAGS (local c32) into S_EFL and as the flag record (EXPLICIT: its arithmetic bits in S_LD)
  const setFlags = () => {
    b.get(T.st).get(T.c32).mem(Op.i32Store, 2, L.S_EFL);
    b.get(T.st).i32(EXPLICIT).mem(Op.i32Store, 2, L.S_LOP);
    b.get(T.st).get(T.c32).i32(ARITH).op(Op.i32And).op(Op.i64ExtendI32u).mem(Op.i64Store, 3, L.S_LD);
  };
  if (PRIV_CHAIN && call) {
    // fl = RFLAGS as SoftCpu.getFlags (S_EFL holds SoftCpu.flags; bit 1 always set), RF clear; c32 = the new RFLAGS
    b.get(T.st).mem(Op.i32Load, 2, L.S_EFL).i32(~(ARITH | RF)).op(Op.i32And).get(T.fl).op(Op.i32Or).i32(2).op(Op.i32Or).set(T.fl);
    b.get(T.fl).get(T.st).mem(Op.i32Load, 2, L.S_SFMASK).i32(-1).op(Op.i32Xor).op(Op.i32And).i32(2).op(Op.i32Or);
    b.i32(FLAGS_IMPLEMENTED).op(Op.i32And).set(T.c32);
    b.get(T.st).mem(Op.i32Load, 2, L.S_SCE).get(T.c32).i32(IF).op(Op.i32And).op(Op.i32Eqz).op(Op.i32And).hint(true).open(Op.if);
    b.get(T.r0i).i64(next).op(Op.i64Add).set(T.t64);
    T.writeBack(1, T.t64); // RCX = the next instruction's RIP
    b.get(T.st).get(T.fl).op(Op.i64ExtendI32u).mem(Op.i64Store, 3, L.sGpr(11)); // R11 = RFLAGS (zero-extended)
    setFlags();
    b.get(T.st).get(T.st).mem(Op.f64Load, 3, L.S_LSTAR).mem(Op.f64Store, 3, L.S_RIP);
    switchTo(0);
    b.else();
  } else if (PRIV_CHAIN) {
    // t64 = RCX, c32 = the new RFLAGS from R11
    T.r64(1); b.set(T.t64);
    T.r32(11); b.i32(SYSRET_FLAGS & FLAGS_IMPLEMENTED).op(Op.i32And).i32(2).op(Op.i32Or).set(T.c32);
    b.get(T.st).mem(Op.i32Load, 2, L.S_SCE);
    b.get(T.st).mem(Op.i32Load, 2, L.S_CPL).op(Op.i32Eqz).op(Op.i32And);
    b.get(T.t64).i64(16).op(Op.i64Shl).i64(16).op(Op.i64ShrS).get(T.t64).op(Op.i64Eq).op(Op.i32And); // canonical
    // (not when R11 sets IF while S_PEND is 1: IF's bit shifted down to bit 0, S_PEND's)
    b.get(T.c32).i32(9).op(Op.i32ShrU).get(T.st).mem(Op.i32Load, 2, L.S_PEND).op(Op.i32And).i32(1).op(Op.i32And).op(Op.i32Eqz).op(Op.i32And);
    b.hint(true).open(Op.if);
    setFlags();
    b.get(T.st).get(T.t64).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L.S_RIP);
    switchTo(3);
    b.else();
  }
  b.i32(call ? SY_SYSCALL : SY_SYSRETQ); T.pos(); b.call(F_SY).op(Op.drop);
  if (PRIV_CHAIN) b.close();
  T.forget(); T.known = false; T.fdirty = false;
  T.xk(X_HELPER); b.i32(i + 1).set(T.xc).br(T.out);
}

function emitSwapgs(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // SWAPGS (../system/gs-tsc.ts swapgs; translated code is 64-bit, so no #UD): at CPL 0 (S_CPL) the GS base
  // (S_SEG, which memory operands read at each access) and IA32_KERNEL_GS_BASE (S_KGS, SoftCpu.kernelGsBase) swap
  // inline; above it the helper `sy` (kind 4) raises #GP(0). Twice per Linux system call (entry and exit).
  T.flush();
  const gs = L.S_SEG + 8 * 5;
  b.get(T.st).mem(Op.i32Load, 2, L.S_CPL).op(Op.i32Eqz).hint(true).open(Op.if);
  b.get(T.st).mem(Op.f64Load, 3, gs).set(T.tf);
  b.get(T.st).get(T.st).mem(Op.f64Load, 3, L.S_KGS).mem(Op.f64Store, 3, gs);
  b.get(T.st).get(T.tf).mem(Op.f64Store, 3, L.S_KGS);
  b.else();
  b.i32(4); T.pos(); b.call(F_SY).op(Op.drop);
  b.close();
}

function emitCld(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // CLD/STD through the helper `sy` (kinds 5/6): it changes SoftCpu.flags' DF and the state area's copy
  // (S_EFL), which the translated MOVS/STOS that follow read; it cannot fault
  b.i32(f === Form.Cld ? 5 : 6); T.pos(); b.call(F_SY).op(Op.drop);
}

function emitMovSregR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // MOV r/m, Sreg (8C): the selector from the helper `sy` (kind 8 + register; it cannot fault)
  const sel = () => { b.i32(8 + e.op); T.pos(); b.call(F_SY); };
  if (f === Form.MovSregM) { memOp(T, e, next); sel(); b.op(Op.i64ExtendI32u).set(T.w); T.store(2); }
  else if (e.size === 2) T.setLow(e.b, 0xffff, sel);
  else T.set32(e.b, sel);
}

function emitCmpxchg16bM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // CMPXCHG16B m128 (LOCK too) as ../fast-forms.ts cmpxchg16bM: #GP(0) unless 16-byte aligned, both halves read,
  // compared with RDX:RAX; equal: RCX:RBX stored, else the halves stored back and loaded into RDX:RAX; then
  // ZF = equal over the flags from before (EXPLICIT record)
  T.oldFlags();
  memOp(T, e, next);
  T.gpIf(() => { b.get(T.a).op(Op.i32WrapI64).i32(15).op(Op.i32And); }, true);
  T.load(8); b.get(T.v).set(T.x1);
  b.get(T.a).i64(8).op(Op.i64Add).set(T.a);
  T.load(8); b.get(T.v).set(T.x2);
  b.get(T.x1); T.r64(0); b.op(Op.i64Eq);
  b.get(T.x2); T.r64(2); b.op(Op.i64Eq);
  b.op(Op.i32And).set(T.c32);
  b.get(T.a).i64(8).op(Op.i64Sub).set(T.a);
  T.r64(3); b.get(T.x1).get(T.c32).op(Op.select).set(T.w);
  T.store(8);
  b.get(T.a).i64(8).op(Op.i64Add).set(T.a);
  T.r64(1); b.get(T.x2).get(T.c32).op(Op.select).set(T.w);
  T.store(8);
  b.get(T.c32).op(Op.i32Eqz).open(Op.if);
  T.set64(0, T.x1); T.set64(2, T.x2);
  b.close();
  b.get(T.fl).i32(~0x40).op(Op.i32And).get(T.c32).i32(6).op(Op.i32Shl).op(Op.i32Or);
  T.explicit(8);
}

function emitShift8Imm(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // SHL/SAL/SHR/SAR of a byte register by 1..7 (C0/D0; rotates replayed) as ../ops/alu-shift.ts shift32 at
  // size 1: all six flags explicit (AF set; OF: SHL top bit ^ CF, SHR bits 7 ^ 6 of the result, SAR 0)
  if (e.op < 4) { replay(T, i); return; }
  T.r8(e.b, e.bsh);
  T.narrowShiftImm(e.op, e.imm, 8);
  T.explicit(1);
  T.set8(e.b, e.bsh, () => b.get(T.v).op(Op.i32WrapI64));
}

function emitShift16Imm(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // ROL/ROR/SHL/SAL/SHR/SAR of a 16-bit register by 1..15 (66 C1/D1 /0 /1 /4-/7) as ../ops/alu-shift.ts shift32
  // at size 2; bits 16-63 kept. ROL/ROR (ntohs/htons: `rol r16,8`) write CF and OF over the flags before (as
  // ShiftImm's rotates): ROL CF = bit 0 of the result, OF = bit 15 ^ CF; ROR CF = bit 15, OF = bits 15 ^ 14.
  const n = e.imm;
  if (e.op < 2) {
    T.oldFlags();
    T.r32(e.b); b.i32(0xffff).op(Op.i32And).set(T.c32);
    b.get(T.c32).i32(e.op === 0 ? n : 16 - n).op(Op.i32Shl).get(T.c32).i32(e.op === 0 ? 16 - n : n).op(Op.i32ShrU).op(Op.i32Or);
    b.i32(0xffff).op(Op.i32And).op(Op.i64ExtendI32u).set(T.v);
    if (e.op === 0) {
      b.get(T.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T.c32); // CF
      b.get(T.v).op(Op.i32WrapI64).i32(15).op(Op.i32ShrU).get(T.c32).op(Op.i32Xor);
    } else {
      b.get(T.v).op(Op.i32WrapI64).i32(15).op(Op.i32ShrU); // CF
      b.get(T.v).op(Op.i32WrapI64).i32(15).op(Op.i32ShrU).get(T.v).op(Op.i32WrapI64).i32(14).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
    }
    // stack: CF, OF -> flags = (old & ~(CF|OF)) | CF | OF << 11
    b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T.fl).i32(~0x801).op(Op.i32And).op(Op.i32Or);
    T.explicit(2);
    T.setLow(e.b, 0xffff, () => b.get(T.v).op(Op.i32WrapI64));
    return;
  }
  // SHL/SAL/SHR/SAR: all six flags explicit (AF set; OF: SHL top bit ^ CF, SHR bits 15 ^ 14 of the result, SAR 0)
  T.r32(e.b); b.i32(0xffff).op(Op.i32And);
  T.narrowShiftImm(e.op, n, 16);
  T.explicit(2);
  T.setLow(e.b, 0xffff, () => b.get(T.v).op(Op.i32WrapI64));
}

function emitShift16M(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // SHL/SAL/SHR/SAR of a 16-bit memory operand by 1..15 (66 C1/D1 /4-/7) as ../fast-forms.ts shift16M: the read,
  // the result (in v) and its six flags (in a local: the store's code has blocks, which take no operands here), the
  // write, then the EXPLICIT record: a faulting write leaves the flags from before (ld is untouched until then)
  memOp(T, e, next); T.load(2);
  b.get(T.v).op(Op.i32WrapI64);
  T.narrowShiftImm(e.op, e.imm, 16);
  const fl = b.local(I32);
  b.set(fl);
  b.get(T.v).set(T.w);
  T.store(2);
  b.get(fl);
  T.explicit(2);
}

function emitShiftMCl(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, size = e.size;
  // SHL/SAL/SHR/SAR of a 4/8-byte memory operand by CL (D3 /4-/7) as ../fast-forms.ts shiftMCl: the read (its fault
  // finds the record from before), then the record stored (the count goes to ls, and the write below may fault),
  // then shiftByCl: count 0 changes nothing; else the result (v) and flags (a local) as shiftBits from the loaded
  // operand (r = -1), the write, then the EXPLICIT record
  memOp(T, e, next); T.load(size);
  T.commitFlags();
  T.shiftByCl(-1, size, () => {
    const fl = b.local(I32);
    T.shiftBits(-1, e.op, size, -1, -1, fl);
    b.get(T.v).set(T.w);
    T.store(size);
    b.get(fl);
    T.explicit(size);
  });
}

function emitShiftDoubleCl(T: Translator, e: BlockEntry, i: number, next: number): void {
  // SHLD/SHRD e.b, e.a, CL (0F A5/AD, register destination), as ShiftCl: a masked count of 0 changes no flag and
  // only clears a 32-bit destination's upper half; else as ShiftDoubleRI with the count in ls
  T.shiftByCl(e.b, e.size, () => T.shiftBits(e.b, e.op === 0 ? 4 : 5, e.size, -1, e.a));
}

function emitXchgRR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // XCHG e.a, e.b (87, register): swap (32-bit: both zero-extended)
  const size = e.size;
  T.regVal(e.a, size); b.set(T.x1);
  T.regVal(e.b, size); b.set(T.x2);
  T.set64(e.a, T.x2); T.set64(e.b, T.x1);
}

function emitXchgM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // XCHG memory, e.a (87): the read, the write of e.a, then e.a = the old value (as ../fast-forms.ts xchgM)
  const size = e.size;
  memOp(T, e, next); T.load(size);
  T.regVal(e.a, size); b.set(T.w);
  T.store(size);
  T.set64(e.a, T.v);
}

function emitXaddM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // XADD memory, e.a (0F C1, no LOCK) as xaddM: DEST = DEST + SRC stored first, then SRC = old DEST; flags of ADD
  const size = e.size;
  T.commitFlags(); // (as CmpxchgM)
  memOp(T, e, next); T.load(size);
  b.get(T.v).tee(T.ld);
  T.regVal(e.a, size); b.tee(T.ls);
  T.alu(ADD, size);
  b.get(T.lr).set(T.w);
  T.store(size);
  if (size === 8) T.set64(e.a, T.v); else T.set32(e.a, () => b.get(T.v).op(Op.i32WrapI64));
  T.produced(L_ADD, size);
}

function emitShiftDoubleRI(T: Translator, e: BlockEntry, i: number, next: number): void {
  // SHLD/SHRD e.b, e.a, imm (0F A4/AC; masked count 1..bits-1): e.op 0 SHLD, 1 SHRD
  T.shiftBits(e.b, e.op === 0 ? 4 : 5, e.size, e.imm, e.a);
}

function emitCdq(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // 98 CWDE/CDQE, 99 CDQ/CQO, as ../fast-forms.ts cdq
  if (e.op === 0) {
    if (e.size === 8) { T.r32(0); b.op(Op.i64ExtendI32s).set(T.x2); T.set64(0, T.x2); }
    else T.set32(0, () => { T.r32(0); b.op(Op.i32Extend16s); });
  } else if (e.size === 8) {
    T.r64(0); b.i64(63).op(Op.i64ShrS).set(T.x2); T.set64(2, T.x2);
  } else T.set32(2, () => { T.r32(0); b.i32(31).op(Op.i32ShrS); });
}

function emitBswap(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // 0F C8+r: bswap32(v) = rotl(v & 0x00ff00ff, 24) | rotl(v & 0xff00ff00, 8); 64-bit: the halves swap too
  const r = e.b;
  const bs = () => { b.tee(T.c32).i32(0x00ff00ff).op(Op.i32And).i32(24).op(0x77).get(T.c32).i32(0xff00ff00 | 0).op(Op.i32And).i32(8).op(0x77).op(Op.i32Or); };
  if (e.size === 8) {
    T.r64(r); b.set(T.x2);
    b.get(T.x2).op(Op.i32WrapI64); bs(); b.op(Op.i64ExtendI32u).i64(32).op(Op.i64Shl);
    b.get(T.x2).i64(32).op(Op.i64ShrU).op(Op.i32WrapI64); bs(); b.op(Op.i64ExtendI32u).op(Op.i64Or).set(T.x2);
    T.set64(r, T.x2);
  } else T.set32(r, () => { T.r32(r); bs(); });
}

function emitPushf(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // 9C (64-bit operand) as ../fast-forms.ts pushf (SoftCpu.getFlags with VM and RF cleared): the arithmetic flags
  // from the flag locals, or the flag library when the block does not know them, the other bits from S_EFL (SoftCpu.flags
  // during a call: the runtime stores it there at the call's start and after every helper that changes it, translated
  // CLI/STI/SYSCALL/SYSRETQ change it there), bit 1 set; then the push. (Linux: local_irq_save, spin_lock_irqsave.)
  T.insMem = true;
  T.oldFlags();
  b.get(T.st).mem(Op.i32Load, 2, L.S_EFL).i32(~(ARITH | RF | VM)).op(Op.i32And).get(T.fl).op(Op.i32Or).i32(2).op(Op.i32Or);
  b.op(Op.i64ExtendI32u).set(T.w);
  T.pushStore();
}

function emitCli(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // CLI/STI (../fast-forms.ts cli/sti) inline at CPL 0 (S_CPL; CPL <= IOPL always holds there): IF in S_EFL, and
  // S_IFW tells the runtime to copy it to SoftCpu.flags (runtime.ts syncIf). STI inline only while the local APIC
  // is known to have nothing to give (S_PEND = 0): then it opens no shadow and asks for no event check, as
  // ../ops/interrupt-flag.ts stiSetsIf. Else the helper `sy` (kind 0/1: #GP(0) when CPL > IOPL; STI that set IF
  // with an interrupt waiting: leave after it, and the interrupt is taken after the next instruction).
  T.flush();
  b.get(T.st).mem(Op.i32Load, 2, L.S_CPL);
  if (f === Form.Sti) b.get(T.st).mem(Op.i32Load, 2, L.S_PEND).op(Op.i32Or);
  b.op(Op.i32Eqz).open(Op.if);
  b.get(T.st).get(T.st).mem(Op.i32Load, 2, L.S_EFL);
  if (f === Form.Cli) b.i32(~(1 << 9)).op(Op.i32And); else b.i32(1 << 9).op(Op.i32Or);
  b.mem(Op.i32Store, 2, L.S_EFL);
  b.get(T.st).i32(1).mem(Op.i32Store, 2, L.S_IFW);
  b.else();
  b.i32(f === Form.Cli ? 0 : 1); T.pos(); b.call(F_SY);
  if (f === Form.Cli) b.op(Op.drop);
  else { b.open(Op.if); T.exitConst(i + 1, next, X_HELPER); b.close(); }
  b.close();
}

function emitPushImm(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // 68 / 6A: the sign-extended immediate, pushed as PUSH reg
  T.insMem = true;
  b.i64(imm64(e.imm, e.immHi)).set(T.w);
  T.pushStore();
}

function emitSetccM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // 0F 90-9F to memory: the condition, then the byte store
  memOp(T, e, next); T.cond(e.op); b.op(Op.i64ExtendI32u).set(T.w); T.store(1);
}

function emitLeave(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // C9: RBP = [RBP] (the read faults first), RSP = old RBP + 8
  T.insMem = true;
  T.r64(5); b.set(T.a);
  T.load(8);
  b.get(T.a).i64(8).op(Op.i64Add).set(T.t);
  T.set64(4, T.t);
  T.set64(5, T.v);
}

function emitPush(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // (a CALL's target check, before its push may fault: SDM vol. 2A CALL; where it is needed, on the push's inline
  // path a failing target takes the slow path, whose write-backs #GP then uses)
  let check: { hit: (slow: number) => void; slow: () => void } | undefined;
  if (f === Form.Call) {
    const ripOff = next + e.disp;
    if (FOLD_CHECKS && T.targetOff(ripOff) && T.foldWorth()) {
      if (T.accessInline()) check = { hit: (slow) => { T.targetFar(ripOff); b.hint(false).brIf(slow); }, slow: () => T.gpIf(() => T.targetFar(ripOff), false) };
      else { T.flush(); T.checkTarget(ripOff); } // (the library's write-backs, done first: the check's #GP uses them)
    } else T.checkTarget(ripOff);
    b.get(T.r0i).i64(next).op(Op.i64Add).set(T.w);
  } else { T.r64(e.a); b.set(T.w); }
  T.insMem = true;
  T.pushStore(check);
  if (f === Form.Call) { T.rasPush(next, T.w); T.exitStatic(i + 1, next + e.disp); }
}

/** emitPop: RSP += 8 (from RSP's local in a stack run, RUN_RSP; else from the address in local a). No closure: see pick. */
function popRsp(T: Translator, run: boolean): void {
  const b = T.b;
  T.setFromStart(4);
  if (run) T.r64(4); else b.get(T.a);
  b.i64(8).op(Op.i64Add);
  T.setFromEnd(4);
}

function emitPop(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  T.insMem = true;
  // (RSP is the address; in a stack run only the access's slow path needs it in local a: RUN_RSP, as pushStore)
  const run = RUN_RSP && T.runCur >= 0 && e.a !== 4;
  if (!run) { T.r64(4); b.set(T.a); }
  const at = run ? ADDR_RSP : ADDR_A;
  if (f === Form.Ret && FOLD_CHECKS && T.accessInline() && T.foldWorth()) {
    // (#GP(0) unless the return address is canonical, with RSP unchanged: SDM vol. 2B RET; on the inline path a
    // failing address takes the slow path, whose write-backs #GP then uses)
    T.load(8, { hit: (slow) => { T.nonCanonical(T.v); b.hint(false).brIf(slow); }, slow: () => T.gpIf(() => T.nonCanonical(T.v), false) }, T.v, at);
  } else if (f === Form.Pop && e.a !== 4) {
    // (POP r: straight into r's local; RSP after it, the read done)
    T.loadReg(e.a, 8, false, at);
    popRsp(T, run);
    return;
  } else {
    T.load(8, undefined, T.v, at);
    if (f === Form.Ret) T.checkCanonicalI64(T.v);
  }
  popRsp(T, run);
  if (f === Form.Ret) {
    b.get(T.st).get(T.v).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L.S_RIP);
    // (RET_BRANCH: registers and flags written back here, at straight-line level, for the branch and the exit alike)
    if (T.retBranches()) T.flush();
    T.rasPop(i + 1);
    T.xk(X_RET); b.i32(i + 1).set(T.xc); T.leave();
  } else T.set64(e.a, T.v);
}

function emitMovzxReg8(T: Translator, e: BlockEntry, i: number, next: number): void {
  T.set32(e.a, () => T.r8(e.b, e.imm));
}

function emitMovzxReg16(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  T.set32(e.a, () => { T.r32(e.b); b.i32(0xffff).op(Op.i32And); });
}

function emitMovzxMem(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.loadReg(e.a, e.size, true);
}

function emitMovsxdReg(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  T.r32(e.b); b.op(Op.i64ExtendI32s).set(T.t); T.set64(e.a, T.t);
}

function emitMovsxdMem(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.load(4); b.get(T.v).op(Op.i32WrapI64).op(Op.i64ExtendI32s).set(T.t); T.set64(e.a, T.t);
}

function emitAlu8RR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  const op = e.op;
  if (f === Form.Alu8RM) { memOp(T, e, next); T.load(1); }
  T.r8(e.b, e.bsh); b.op(Op.i64ExtendI32u).tee(T.ld);
  if (f === Form.Alu8RM) b.get(T.v);
  else if (f === Form.Alu8RR) { T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u); }
  else b.i64(e.imm & 0xff);
  b.tee(T.ls);
  T.alu(op, 1);
  if (op < CMP) T.set8(e.b, e.bsh, () => b.get(T.lr).op(Op.i32WrapI64));
  T.produced(KIND[op], 1);
}

function emitAlu8MR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.load(1);
  aluMem(T, e.op, 1, () => {
    if (e.form === Form.Alu8MR) { T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u); } else b.i64(e.imm & 0xff);
  });
}

function emitMov8RR(T: Translator, e: BlockEntry, i: number, next: number): void {
  T.set8(e.b, e.bsh, () => T.r8(e.a, e.ash));
}

function emitMov8RI(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  T.set8(e.b, e.bsh, () => b.i32(e.imm));
}

function emitMov8RM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.load(1); T.set8(e.b, e.bsh, () => b.get(T.v).op(Op.i32WrapI64));
}

function emitMov8MR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); T.r8(e.a, e.ash); b.op(Op.i64ExtendI32u).set(T.w); T.store(1);
}

function emitMov8MI(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  memOp(T, e, next); b.i64(e.imm & 0xff).set(T.w); T.store(1);
}

function emitCmovRR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  const size = e.size;
  if (f === Form.CmovRM) { memOp(T, e, next); T.load(size); } else { T.regVal(e.a, size); b.set(T.v); }
  T.cond(e.op);
  if (size === 8) {
    b.open(Op.if); T.set64(e.b, T.v); b.close();
  } else {
    // a 32-bit destination is zero-extended whatever the condition
    b.set(T.c32);
    T.set32(e.b, () => { b.get(T.v).op(Op.i32WrapI64); T.r32(e.b); b.get(T.c32).op(Op.select); });
  }
}

function emitSetcc(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  T.cond(e.op); b.set(T.c32); T.set8(e.b, e.bsh, () => b.get(T.c32));
}

function emitNop(T: Translator, e: BlockEntry, i: number, next: number): void {
}

function emitAdcRR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // ADC/SBB (e.op 2/3): the carry-in is CF before (inline when known here, else the helper); the record is
  // Adc/Sbb with lazyCarry = carry-in (../fast-forms.ts adcFlags). A memory destination is stored before the
  // record is committed (the store may fault after the load).
  const sbb = e.op === 3, size = e.size, toMem = f === Form.AdcMR || f === Form.AdcMI;
  // (the flag locals change before the memory access, whose fault must find the record from before: stored first)
  if (f !== Form.AdcRR && f !== Form.AdcRI) T.commitFlags();
  T.cond(2); b.set(T.lcy);
  if (toMem) { memOp(T, e, next); T.load(size); b.get(T.v).set(T.ld); }
  else { T.regVal(e.b, size); b.set(T.ld); }
  if (f === Form.AdcRM) { memOp(T, e, next); T.load(size); b.get(T.v); }
  else if (f === Form.AdcRR || f === Form.AdcMR) T.regVal(e.a, size);
  else b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
  b.set(T.ls);
  const op = sbb ? Op.i64Sub : Op.i64Add;
  b.get(T.ld).get(T.ls).op(op).get(T.lcy).op(Op.i64ExtendI32u).op(op);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T.lr);
  if (toMem) { b.get(T.lr).set(T.w); T.store(size); } else T.writeLr(e.b, size);
  T.produced(sbb ? L_SBB : L_ADC, size);
}

function emitIncDecM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // INC/DEC of memory (FF /0 /1, FE /0 /1): CF kept (the record's lazyCarry = CF before); the store may fault after
  // the load. A byte's result is masked (the inline flag evaluation of a byte record reads it so).
  const dec = e.op === 1, size = e.size;
  T.commitFlags(); // (lcy changes before the access, whose fault must find the record from before)
  const lazy = incDecLazy(T);
  if (!lazy) { T.cond(2); b.set(T.lcy); }
  memOp(T, e, next); T.load(size);
  b.get(T.v).set(T.ld).i64(1).set(T.ls);
  b.get(T.v).i64(1).op(dec ? Op.i64Sub : Op.i64Add);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  else if (size === 1) b.i64(0xffn).op(Op.i64And);
  b.tee(T.lr).set(T.w);
  T.store(size);
  T.produced(dec ? L_DEC : L_INC, size);
  T.cfLazy = lazy;
}

function emitImulRR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // IMUL (0F AF, 69, 6B) as ../ops/alu-muldiv.ts imulTrunc: the truncated product into e.b; CF = OF = the
  // signed product does not fit; SF ZF AF PF as before (the JS form keeps them): EXPLICIT record.
  // Operands sign-extended into ld (multiplicand) and ls (multiplier), product in lr.
  const size = e.size, w = size === 8;
  const sx = () => { if (!w) b.op(Op.i32WrapI64).op(Op.i64ExtendI32s); };
  const reg = (r: number) => { if (w) T.r64(r); else { T.r32(r); b.op(Op.i64ExtendI32s); } };
  if (f === Form.ImulRM || f === Form.ImulRMI) { memOp(T, e, next); T.load(size); }
  T.oldFlags(); // (before ld/ls, which may hold the record it reads)
  if (f === Form.ImulRR) { reg(e.b); b.set(T.ld); reg(e.a); b.set(T.ls); }
  else if (f === Form.ImulRM) { reg(e.b); b.set(T.ld); b.get(T.v); sx(); b.set(T.ls); }
  else if (f === Form.ImulRRI) { reg(e.a); b.set(T.ld); b.i64(imm64(e.imm, e.immHi)).set(T.ls); }
  else { b.get(T.v); sx(); b.set(T.ld); b.i64(imm64(e.imm, e.immHi)).set(T.ls); }
  b.get(T.ld).get(T.ls).op(0x7e /* i64.mul */).set(T.lr);
  if (!w) {
    b.get(T.lr).get(T.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne).set(T.c32);
  } else {
    // overflow iff a != 0 and p / a != b (a = -1: iff b = -2^63, whose division would trap)
    b.i32(0).set(T.c32);
    b.get(T.ld).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
    b.get(T.ld).i64(-1).op(Op.i64Eq).open(Op.if);
    b.get(T.ls).i64(I64_MIN).op(Op.i64Eq).set(T.c32);
    b.else();
    b.get(T.lr).get(T.ld).op(0x7f /* i64.div_s */).get(T.ls).op(Op.i64Ne).set(T.c32);
    b.close();
    b.close();
  }
  if (w) T.set64(e.b, T.lr); else T.set32(e.b, () => b.get(T.lr).op(Op.i32WrapI64));
  b.get(T.fl).i32(~0x801).op(Op.i32And).get(T.c32).i32(0x801).op(0x6c /* i32.mul */).op(Op.i32Or);
  T.explicit(size);
}

function emitMulDivR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // MUL/IMUL/DIV/IDIV rAX by r/m (F7 /4-/7, sizes 4 and 8) as ../ops/alu-muldiv.ts: MUL/IMUL write rDX:rAX,
  // CF = OF = the high half is not the extension of the low one, SF ZF AF PF kept; DIV/IDIV write the quotient
  // to rAX and the remainder to rDX, clear SF ZF PF, set AF, keep CF OF (EXPLICIT record). A zero divisor, a
  // quotient that does not fit (#DE) and a 64-bit dividend wider than 64 bits are replayed through the helper
  // instead (the handler raises #DE exactly; the block leaves if the helper says so).
  const size = e.size, w = size === 8, op = e.op, M = 0xffffffffn;
  const signed = op === 5 || op === 7;
  if (f === Form.MulDivM) { memOp(T, e, next); T.load(size); } else { T.regVal(e.b, size); b.set(T.v); }
  T.oldFlags(); // (before ld/ls, which may hold the record it reads)
  // (DIV/IDIV replay the hard cases, which read the record from before: stored before ld/ls change)
  if (op >= 6) T.commitFlags();
  // ld = rAX, ls = the operand (size 4: zero- or sign-extended)
  if (w) { T.r64(0); b.set(T.ld); b.get(T.v).set(T.ls); }
  else {
    T.r32(0); b.op(signed ? Op.i64ExtendI32s : Op.i64ExtendI32u).set(T.ld);
    b.get(T.v).op(Op.i32WrapI64).op(signed ? Op.i64ExtendI32s : Op.i64ExtendI32u).set(T.ls);
  }
  const wr = (r: number, l: number) => { if (w) T.set64(r, l); else T.set32(r, () => b.get(l).op(Op.i32WrapI64)); };
  if (op === 4 || op === 5) {
    b.get(T.ld).get(T.ls).op(0x7e /* i64.mul */).set(T.lr); // the product (size 4), its low half (size 8)
    if (!w) {
      b.get(T.lr).i64(32).op(Op.i64ShrU).set(T.t); // EDX
      if (signed) b.get(T.lr).get(T.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne);
      else b.get(T.t).op(Op.i64Eqz).op(Op.i32Eqz);
    } else {
      // the high 64 bits of the 128-bit product from 32-bit pieces (no 64x64->128 multiply in wasm)
      const lo32 = (l: number) => { b.get(l).i64(M).op(Op.i64And); };
      const hi32 = (l: number) => { b.get(l).i64(32).op(Op.i64ShrU); };
      lo32(T.ld); hi32(T.ls); b.op(0x7e).set(T.x1);
      hi32(T.ld); lo32(T.ls); b.op(0x7e).set(T.x2);
      lo32(T.ld); lo32(T.ls); b.op(0x7e).i64(32).op(Op.i64ShrU);
      b.get(T.x1).i64(M).op(Op.i64And).op(Op.i64Add).get(T.x2).i64(M).op(Op.i64And).op(Op.i64Add).set(T.w); // mid
      hi32(T.ld); hi32(T.ls); b.op(0x7e);
      b.get(T.x1).i64(32).op(Op.i64ShrU).op(Op.i64Add).get(T.x2).i64(32).op(Op.i64ShrU).op(Op.i64Add);
      b.get(T.w).i64(32).op(Op.i64ShrU).op(Op.i64Add);
      if (signed) {
        // signed high half: minus the other operand for each negative one
        b.get(T.ls).i64(0).get(T.ld).i64(0).op(Op.i64LtS).op(Op.select).op(Op.i64Sub);
        b.get(T.ld).i64(0).get(T.ls).i64(0).op(Op.i64LtS).op(Op.select).op(Op.i64Sub);
      }
      b.set(T.t);
      if (signed) b.get(T.t).get(T.lr).i64(63).op(Op.i64ShrS).op(Op.i64Ne);
      else b.get(T.t).op(Op.i64Eqz).op(Op.i32Eqz);
    }
    b.set(T.c32);
    wr(0, T.lr); wr(2, T.t);
    b.get(T.fl).i32(~0x801).op(Op.i32And).get(T.c32).i32(0x801).op(0x6c /* i32.mul */).op(Op.i32Or);
    T.explicit(size);
    return;
  }
  // DIV / IDIV: n = the dividend into t (size 8: rAX, when rDX is its extension), the divisor in ls
  const done = b.open(Op.block), hard = b.open(Op.block);
  b.get(T.ls).op(Op.i64Eqz).hint(false).brIf(hard);
  if (w) {
    T.r64(2); b.set(T.x1);
    if (signed) b.get(T.x1).get(T.ld).i64(63).op(Op.i64ShrS).op(Op.i64Ne).brIf(hard);
    else b.get(T.x1).op(Op.i64Eqz).op(Op.i32Eqz).brIf(hard);
    b.get(T.ld).set(T.t);
  } else {
    T.regVal(2, 4); b.i64(32).op(Op.i64Shl);
    T.regVal(0, 4); b.op(Op.i64Or).set(T.t);
    // DIV: the quotient fits iff EDX < the divisor
    if (!signed) b.get(T.t).i64(32).op(Op.i64ShrU).get(T.ls).op(Op.i64GeU).brIf(hard);
  }
  if (signed) {
    // -2^63 / -1 traps in wasm (and its quotient never fits)
    b.get(T.t).i64(I64_MIN).op(Op.i64Eq).get(T.ls).i64(-1).op(Op.i64Eq).op(Op.i32And).brIf(hard);
  }
  b.get(T.t).get(T.ls).op(signed ? 0x7f /* i64.div_s */ : 0x80 /* i64.div_u */).set(T.lr);
  b.get(T.t).get(T.ls).op(signed ? 0x81 /* i64.rem_s */ : 0x82 /* i64.rem_u */).set(T.x2);
  if (!w && signed) b.get(T.lr).get(T.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne).brIf(hard);
  wr(0, T.lr); wr(2, T.x2);
  b.get(T.fl).i32(~0xd4).op(Op.i32And).i32(0x10).op(Op.i32Or);
  T.explicit(size);
  b.br(done);
  b.close();
  T.flush(); T.pos(); b.call(F_RP);
  b.open(Op.if); T.xk(X_HELPER); b.i32(i + 1).set(T.xc).br(T.out); b.close();
  b.close();
  T.known = false; T.fdirty = false; // (either path left the state area's record right: EXPLICIT stored through, or the CPU's after the replay)
  // (both paths left rAX and rDX in the state area: written through inside the branch, or by the replay)
  T.drop(0); T.drop(2);
}

function emitPushM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // PUSH memory64 (FF /6): the read (at the address before RSP moves, through the memory library even in a stack
  // run: the run's offset is the push's), then the push
  const run = T.runCur; T.runCur = -1;
  memOp(T, e, next); T.load(8);
  T.runCur = run;
  b.get(T.v).set(T.w);
  T.pushStore();
}

function emitMovsxR8(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // MOVSX (0F BE/BF) into e.a of e.op bytes (4: zero-extended to 64 bits), as ../fast-forms.ts movsxTo
  if (f === Form.MovsxM) { memOp(T, e, next); T.load(e.size); b.get(T.v).op(Op.i32WrapI64); }
  else { T.r32(e.b); if (f === Form.MovsxR8 && e.imm) b.i32(e.imm).op(Op.i32ShrU); }
  b.op(f === Form.MovsxR16 || (f === Form.MovsxM && e.size === 2) ? Op.i32Extend16s : Op.i32Extend8s).set(T.c32);
  if (e.op === 8) { b.get(T.c32).op(Op.i64ExtendI32s).set(T.t); T.set64(e.a, T.t); }
  else T.set32(e.a, () => b.get(T.c32));
}

function emitNotNegR(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // NOT (no flags) / NEG (record Sub 0 - v), F7 /2 /3
  // (NOT computes in `w`: the flag locals may hold the record of an earlier producer of this block)
  const r = e.b, size = e.size;
  if (e.op === 0) {
    T.regVal(r, size); b.i64(-1).op(Op.i64Xor);
    if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
    b.set(T.w);
    if (size === 8) T.set64(r, T.w); else T.set32(r, () => b.get(T.w).op(Op.i32WrapI64));
    return;
  }
  T.regVal(r, size); b.set(T.ls);
  b.i64(0).get(T.ls).op(Op.i64Sub);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T.lr);
  T.writeLr(r, size);
  b.i64(0).set(T.ld); T.produced(L_SUB, size);
}

function emitNotNegM(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b;
  // NOT/NEG of memory (F7 /2 /3; LOCK too) as ../fast-forms.ts notNegM: the read, the write, then (NEG) the
  // record Sub 0 - v (NOT changes no flag: it computes in `w`, leaving the flag locals alone)
  const size = e.size;
  memOp(T, e, next); T.load(size);
  if (e.op === 0) b.get(T.v).i64(-1).op(Op.i64Xor);
  else b.i64(0).get(T.v).op(Op.i64Sub);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T.w);
  T.store(size);
  if (e.op === 1) { b.i64(0).set(T.ld); b.get(T.v).set(T.ls); b.get(T.w).set(T.lr); T.produced(L_SUB, size); }
}

function emitCallInd(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form;
  // Indirect near CALL/JMP (FF /2 /4, always a block's last): the target (register, or 8 bytes of memory),
  // #GP(0) unless canonical, then for CALL the push of the return address; RIP leaves through S_RIP.
  if (e.base === -3) { T.r64(e.b); b.set(T.v); } else { memOp(T, e, next); T.load(8); }
  T.checkCanonicalI64(T.v);
  if (f === Form.CallInd) {
    T.insMem = true;
    b.get(T.r0i).i64(next).op(Op.i64Add).set(T.w);
    T.r64(4); b.i64(8).op(Op.i64Sub).set(T.a);
    T.store(8);
    T.set64(4, T.a);
    T.rasPush(next, T.w);
  }
  b.get(T.st).get(T.v).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L.S_RIP);
  T.indBranch(i + 1);
  T.xk(X_IND); b.i32(i + 1).set(T.xc); T.leave();
}

function emitJcc(T: Translator, e: BlockEntry, i: number, next: number): void {
  const b = T.b, f = e.form, N = T.block.entries.length;
  const target = next + e.disp;
  // A Jcc that ends a block leaves on both paths (or branches within its region), and each exit writes the dirty
  // registers and a deferred flag record back: written back once before the branch instead, the code holds one copy
  // (the condition reads the flag locals, which stay known). A self-loop's back edge keeps registers in locals.
  // (a deferred flag record stays in the locals when both targets are region members that cannot see it: edgeDead)
  if (f === Form.Jcc && i === N - 1 && !T.selfLoop && JCC_FLUSH) {
    T.wbCtx = T.regionTargetOf(target) >= 0 || T.regionTargetOf(next) >= 0 ? 3 : 9;
    T.flush(!(T.edgeDead(target) && T.edgeDead(next)));
    T.wbCtx = 1;
  }
  if (f === Form.Jcc && i < N - 1) T.hoistFlush(i);
  if (f === Form.Jcc) { T.cond(e.a); b.open(Op.if); }
  T.checkTarget(target);
  if (T.selfLoop && i === N - 1) {
    b.get(T.n).i32(N).op(Op.i32Add).tee(T.n).i32(N).op(Op.i32Add).tee(T.c32).get(T.left).op(Op.i32LeS);
    b.get(T.c32).i32(LOOP_LIMIT).op(Op.i32LeS).op(Op.i32And);
    T.backEdge();
    b.brIf(T.top);
    T.exitConst(0, 0, X_LOOP);
  } else T.exitStatic(i + 1, target);
  // (a Jcc before the block's end, recorded falling through (SoftCpu.fellThrough), is a side exit: not taken, go on)
  if (f === Form.Jcc) { b.close(); if (i === N - 1) T.exitStatic(i + 1, next); }
}

/** Forms without an emitter of their own: SSE (./sse.ts), MOVS/STOS, or replayed. */
function emitOther(T: Translator, e: BlockEntry, i: number, next: number): void {
    // SSE forms (./sse.ts): 0 = no wasm code there, 2 = emitted with a memory-library access
    // (./sse.ts reads registers from the state area and may replay: the cache is written back and forgotten)
    T.flush(); T.noCache = true;
    const k = emitSse(T, e, i, next);
    T.noCache = false; T.forget();
    if (k === 0) {
      // MOVS/STOS (REP too): they end their block and leave through their own exit (e.len is 0 there)
      if (T.stringOp(e, i)) { T.insMem = true; T.insReplayed = true; } else replay(T, i);
    } else if (k === 2) T.insMem = true;
}

/**
 * One module holding the given block functions, exported as f0, f1, ...; they import the helpers, the flag library,
 * the memory library and (`tails`) the translations their exits tail-call; `names`: their names in the name section.
 */
export function buildModule(bodies: Body[], tails = 0, names?: readonly string[]): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  // (the functions' type first: type index BLOCK_TYPE)
  const t = m.type([I32, F64, I32, I32, I32], [I32]);
  m.importMemory('e', 'm');
  m.importFunc('e', 'rd', m.type([F64, I32, I32], [I32]));
  m.importFunc('e', 'wr', m.type([F64, I32, I32, I32, I32], []));
  m.importFunc('e', 'rp', m.type([I32], [I32]));
  m.importFunc('e', 'cc', m.type([I32], [I32]));
  m.importFunc('e', 'gp', m.type([I32], []));
  m.importFunc('e', 'fl', m.type([I32], [I32]));
  m.importFunc('e', 'sy', m.type([I32, I32], [I32]));
  const ldT = m.type(LD_PARAMS, [I64]);
  const stT = m.type(ST_PARAMS, []);
  m.importFunc('e', 'fa', m.type([I32], [I32]));
  for (const n of [1, 2, 4, 8]) m.importFunc('e', 'ld' + n, ldT);
  for (const n of [1, 2, 4, 8]) m.importFunc('e', 'st' + n, stT);
  // (the translations tail exits call, TailCtx.fns: function indices F_TAIL + i, after the memory library's)
  for (let i = 0; i < tails; i++) m.importFunc('t', 'f' + i, t);
  for (let i = 0; i < bodies.length; i++) m.func(t, bodies[i], 'f' + i, names?.[i]);
  return m.encode();
}

/** The module of one block (tests and measurements). */
export function buildBlock(block: Block): { bytes: Uint8Array<ArrayBuffer>; offs: number[] } | null {
  const t = translateBody(block);
  return t === null ? null : { bytes: buildModule([t.body]), offs: t.offs };
}

/**
 * The flag library: `fa(st) -> i32`, the six arithmetic flags (EFLAGS bits, SDM vol. 1 §3.4.3.1) of the lazy-flag
 * record in the state area, as SoftCpu.computeArith computes them, whoever produced the record: a translated
 * producer (plain kind, or EXPLICIT bits in S_LD) or the CPU (kind + SYNCED; kind 0 = SoftCpu.flags in S_LD). A
 * block asks it once for flags produced before the block, then evaluates every condition inline from the bits
 * (Translator.loadFlags). The operands are shifted to the top of an i64 (by 64 - 8 * size), so one formula serves
 * every size: ZF/SF/CF/OF compare the shifted values (the bits above the size, which the JavaScript forms may leave
 * in an int32, fall off), PF and AF read the unshifted low bits. A record of no known kind (S_LOP = -1: the record
 * is only in the CPU's fields) asks the helper `fl` (imported), as before.
 */
export function buildFlaglib(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importFunc('e', 'fl', m.type([I32], [I32]));
  const b = new Body(1);
  const st = 0;
  const k = b.local(I32), f = b.local(I32), cy = b.local(I32), lr = b.local(I32);
  const sh = b.local(I64), d = b.local(I64), s = b.local(I64), r = b.local(I64), plain = b.local(I32), rr = b.local(I64);
  b.get(st).mem(Op.i32Load, 2, L.S_LOP).tee(k).i32(SYNCED).op(Op.i32LtS).tee(plain).op(Op.i32Eqz).open(Op.if);
  b.get(k).i32(SYNCED).op(Op.i32Sub).set(k);
  b.close();
  // explicit bits: EXPLICIT (translated shifts, IMUL, BT, ...) or the CPU's settled flags
  b.get(k).op(Op.i32Eqz).get(k).i32(EXPLICIT).op(Op.i32Eq).op(Op.i32Or).open(Op.if);
  b.get(st).mem(Op.i32Load, 2, L.S_LD).i32(ARITH).op(Op.i32And).op(Op.return);
  b.close();
  b.get(k).i32(1).op(Op.i32Sub).i32(L_DEC).op(Op.i32GeU).open(Op.if);
  b.i32(0).call(0).op(Op.return);
  b.close();
  b.i64(64).get(st).mem(Op.i64Load32u, 2, L.S_LSZ).i64(3).op(Op.i64Shl).op(Op.i64Sub).set(sh);
  b.get(st).mem(Op.i64Load, 3, L.S_LD).get(sh).op(Op.i64Shl).set(d);
  b.get(st).mem(Op.i64Load, 3, L.S_LS).get(sh).op(Op.i64Shl).set(s);
  // (NO_RES: a translated ADD/SUB record has no r stored: d + s / d - s, exact in the bits of its size)
  b.get(st).mem(Op.i64Load, 3, L.S_LR);
  if (NO_RES) {
    b.get(st).mem(Op.i64Load, 3, L.S_LD).get(st).mem(Op.i64Load, 3, L.S_LS).op(Op.i64Add);
    b.get(st).mem(Op.i64Load, 3, L.S_LD).get(st).mem(Op.i64Load, 3, L.S_LS).op(Op.i64Sub);
    b.get(k).i32(L_ADD).op(Op.i32Eq).op(Op.select);
    // (select: S_LR unless a plain ADD/SUB record)
    b.get(k).i32(L_ADD).op(Op.i32Eq).get(k).i32(L_SUB).op(Op.i32Eq).op(Op.i32Or).get(plain).op(Op.i32And).op(Op.i32Eqz);
    b.op(Op.select);
  }
  b.tee(rr).get(sh).op(Op.i64Shl).set(r);
  b.get(rr).op(Op.i32WrapI64).set(lr);
  // PF (even parity of the low byte), ZF, SF
  b.get(lr).i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl);
  b.get(r).op(Op.i64Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
  b.get(r).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).i32(7).op(Op.i32Shl).op(Op.i32Or).set(f);
  b.get(k).i32(L_LOGIC).op(Op.i32Eq).open(Op.if);
  b.get(f).op(Op.return);
  b.close();
  b.get(st).mem(Op.i32Load, 2, L.S_LCY).i32(0).op(Op.i32Ne).set(cy);
  b.get(k).i32(L_INC).op(Op.i32GeU).open(Op.if);
  // INC/DEC: CF kept (lazyCarry); OF: the result is the most negative (INC) / most positive (DEC) value; AF: the
  // low nibble wrapped
  b.get(f).get(cy).op(Op.i32Or).set(f);
  b.get(k).i32(L_INC).op(Op.i32Eq).open(Op.if);
  b.get(f).get(r).i64(I64_MIN).op(Op.i64Eq).i32(11).op(Op.i32Shl).op(Op.i32Or);
  b.get(lr).i32(15).op(Op.i32And).op(Op.i32Eqz).i32(4).op(Op.i32Shl).op(Op.i32Or).op(Op.return);
  b.close();
  b.get(f).get(r).i64(1).get(sh).op(Op.i64Shl).op(Op.i64Add).i64(I64_MIN).op(Op.i64Eq).i32(11).op(Op.i32Shl).op(Op.i32Or);
  b.get(lr).i32(15).op(Op.i32And).i32(15).op(Op.i32Eq).i32(4).op(Op.i32Shl).op(Op.i32Or).op(Op.return);
  b.close();
  // AF: bit 4 of d ^ s ^ r
  b.get(f).get(st).mem(Op.i32Load, 2, L.S_LD).get(st).mem(Op.i32Load, 2, L.S_LS).op(Op.i32Xor).get(lr).op(Op.i32Xor);
  b.i32(0x10).op(Op.i32And).op(Op.i32Or).set(f);
  b.get(k).i32(L_ADC).op(Op.i32LeU).open(Op.if);
  // ADD/ADC: carry iff r < d, or r <= d with a carry-in; OF iff both operands' signs differ from the result's
  b.get(f);
  b.get(r).get(d).op(Op.i64LeU).get(r).get(d).op(Op.i64LtU).get(cy).get(k).i32(L_ADC).op(Op.i32Eq).op(Op.i32And).op(Op.select);
  b.op(Op.i32Or);
  b.get(d).get(r).op(Op.i64Xor).get(s).get(r).op(Op.i64Xor).op(Op.i64And).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).i32(11).op(Op.i32Shl);
  b.op(Op.i32Or).op(Op.return);
  b.close();
  // SUB/SBB: borrow iff d < s, or d <= s with a carry-in; OF iff the operands' signs differ and the result's is s's
  b.get(f);
  b.get(d).get(s).op(Op.i64LeU).get(d).get(s).op(Op.i64LtU).get(cy).get(k).i32(L_SBB).op(Op.i32Eq).op(Op.i32And).op(Op.select);
  b.op(Op.i32Or);
  b.get(d).get(s).op(Op.i64Xor).get(d).get(r).op(Op.i64Xor).op(Op.i64And).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).i32(11).op(Op.i32Shl);
  b.op(Op.i32Or);
  m.func(m.type([I32], [I32]), b, 'fa', 'rz.flag.fa');
  return m.encode();
}
