// The WebAssembly translator's runtime (issue 4): the dispatcher that chains translated blocks inside wasm, the
// shared memory library and helper trampolines, and WasmEngine, which queues hot blocks, builds their modules with
// ./translate.ts, compiles and installs them, runs them for SoftCpu (exec) and serves the helpers translated code
// calls (rd/wr slow accesses, rp replays, cc/fl conditions, sy CLI/STI, gp). ./translate.ts explains the design.
import type { SoftCpu } from '../cpu.ts';
import { CPU_FAULT } from '../fault.ts';
import type { Block, BlockEntry, CodeCache } from '../code-cache.ts';
import { JIT_THRESHOLD, CHAIN_LIMIT, replayHandler } from '../code-cache.ts';
import type { GuestMemory } from '../../../memory/guest-memory.ts';
import { WASM_RAM_OFFSET } from '../../../memory/guest-memory.ts';
import { Body, ModuleBuilder, Op, I32, I64, F64, withScratch } from './emit.ts';
import * as layout from './layout.ts';
import { emitTlbSlot, memFnBody, LD_PARAMS, ST_PARAMS } from './tlb-probe.ts';
import { execSy, SY_SYSCALL, SY_TSC } from '../fast-forms.ts';
import { readTsc } from '../system/control.ts';
import { stiSetsIf } from '../ops/interrupt-flag.ts';
import { translateBody, translateRegion, groupRegions, midSelfEdge, pageTargets, crossTargets, buildModule, buildFlaglib, type WasmCode, type EmitOpts, type TailCtx, type TailTarget, WASM_NAMES, EXIT_STATS, SITE_STATS, SITE_BASE, SITE_MAX, siteInfo, NEXT_KEY, X_NAMES, EXPLICIT, SYNCED, ARITH, RF, VM, IF, K_SHIFT, PRIV_CHAIN, POS_MEMBER, posIx, posN, NO_RES, COUNT_CHAINS, userLinear, indTarget } from './translate.ts';
import { syscallMsrs, syscallSegments64, sysretSegments64, type SyscallMsrs } from '../system/fastcall.ts';
import { EFER_SCE, CR4_TSD } from '../constants.ts';
import { appendFileSync, writeFileSync } from 'node:fs';
import { compileOffThread } from './compile-thread.ts';
import { parseBudgets, lateBudget, startBudget, flagLock, withBudget, endBootFlags, V8_11_3, type TierBudgets } from './tier-budget.ts';
/** The layout constants as a plain object (under tsx a namespace import reads each one through a getter call). */
const L = { ...layout };

/**
 * Replays of a cached block before it is translated (RINGZERO_WASM_HOT; never above RINGZERO_JIT_HOT). 40 since
 * session 18, once the build cost less (bench/wasm-build.ts): Linux boots to the prompt in 5 side-by-side pairs
 * (load 25-33), main-thread CPU 100 vs 40: 14.66/14.14, 14.80/13.98, 14.43/14.08, 12.80/12.62, 14.66/13.71 s
 * (-3.9% on average, lower in every pair); process CPU +0.6..+1.2 s (19.5k blocks translated instead of 14.0k, 14.1
 * instead of 10.2 MiB of code: more compiling on V8's background threads). At 30 in session 17, before: no gain.
 */
const WASM_HOT = Number(process.env.RINGZERO_WASM_HOT ?? 40);
/**
 * Blocks per translated module (RINGZERO_WASM_BATCH), and the replays a queued block may wait meanwhile. 128 rather
 * than 32: most batches then close on the wait (blocks that became hot together), half as many modules, more blocks
 * of one page in one batch and so in one region (translate.ts groupRegions). Session 16, the VMM's main-thread CPU,
 * 32 vs 128 side by side on a loaded host: boot + ash loop 100k 27.8/21.8, 28.7/23.2, 31.0/25.5 s (region-internal
 * entries 97-145M -> 157M, dispatcher entries 118-160M -> 107M); boot alone 8.5/8.0, 9.3/9.0 s.
 */
const WASM_BATCH = Number(process.env.RINGZERO_WASM_BATCH ?? 128);
const WASM_BATCH_WAIT = Number(process.env.RINGZERO_WASM_BATCH_WAIT ?? 400);
/**
 * WASM_HOT and WASM_BATCH_WAIT for kernel code after the boot (RINGZERO_WASM_KERNEL_HOT, RINGZERO_WASM_KERNEL_WAIT;
 * 0: as WASM_HOT / WASM_BATCH_WAIT): blocks replayed at CPL 0 once a batch was flushed from user code (/init runs).
 * The kernel's I/O paths that the boot never ran (bench/io's O_DIRECT read: blkdev_direct_IO, the page pinning, the
 * virtio ring) are wide and repeat once per request, so at 40 replays they reach wasm only after ~40 requests and,
 * queued, wait for a batch that their own replays (one per request) never close: session 28's cold 32 MiB read pass
 * ran 21.8k instructions per MiB in JavaScript (11.1k warming, 8.3k queued), against ~1k warm.
 * Off by default (session 29, loaded host): KERNEL_HOT=8 KERNEL_WAIT=40 halves the instructions run in JavaScript in
 * every pass of bench/io-passes (32 MiB passes 1/2/3: 20.7-23.7k/3.1-3.8k/1.8k -> 11.0-12.6k/1.5-1.8k/1.0k per MiB;
 * 41 instead of 27 blocks translated per MiB in pass 1, about as many over the three passes), and in a CPU profile of
 * pass 1 the JavaScript tier's replays went from 17.7% to 4.1% of the guest thread and the translator's flushes from
 * 10.1% to 11.3%; the guest thread's CPU per pass did not move beyond the host's noise (+-30% between runs), and
 * bench/engines --paired against the same build without it (2 runs): md5 1.06x/0.85x, ash 0.97x/1.06x, syscall
 * 1.02x/1.17x wall.
 */
const KERNEL_HOT = Number(process.env.RINGZERO_WASM_KERNEL_HOT ?? 0);
/**
 * Kernel code first translated after the boot (a batch flushed at CPL 0 once one was flushed from user code): its
 * regions hold at most this many guest instructions (RINGZERO_WASM_KERNEL_REGION; 0: off, only REGION_MAX blocks).
 * Why (session 30, s30-cold): in bench/io's TCP pass (the first run of the socket paths after the boot) V8's workers
 * took ~2x the guest thread's CPU, TurboFan tier-ups of the functions translated in that pass
 * (--trace-wasm-compilation-times, pass 1 of 16 MiB host -> guest: 72 TurboFan compiles, 758 KB of bodies; 49 of them,
 * 649 KB and 92% of the compile time, in modules made in the pass; the 14 bodies >= 16 KiB 69% of it). TurboFan's
 * time per byte grows with the body (the boot's compiles: 1.6 ms/KB under 2 KiB, 3 ms/KB at 4-8 KiB, 7 ms/KB over
 * 16 KiB, mostly register allocation), and inline TLB probes (INLINE_LATE) make late functions larger.
 * Off by default (loaded host, README's session 30 s30-cold): at 64 the pass's TurboFan compiles no body >= 16 KiB and
 * its work weighted by size fell 3.7 -> 1.9 s host -> guest (guest -> host 1.9 -> 1.9 s), the bytes compiled moved
 * +-25%; bench/engines --paired against off, with KERNEL_HOT=8 KERNEL_WAIT=40 (3 runs): boot 1.01x, md5 1.03x, ash
 * 1.01x, syscall 0.99x wall. A tier-up budget by function size for these modules (KERNEL_TIER_SIZE=4096, removed)
 * moved pass 1's TurboFan into pass 2 rather than saving it.
 */
const KERNEL_REGION = Number(process.env.RINGZERO_WASM_KERNEL_REGION ?? 0);
/**
 * The same instruction cap for the regions flushed while the guest boots (RINGZERO_WASM_BOOT_REGION; 0: off): batches
 * flushed at CPL 0 before the first flush from user code (the boot). Why (session 30, s30-boot): the
 * boot's V8 workers use more CPU than its guest thread, TurboFan tiering up ~790 functions (4.5 MB of bodies) to the
 * poweroff, 73% of their summed compile time in the ~175 bodies of 8-32 KiB (compile ms per KiB 1.9 at 1-4 KiB, 3.9 at
 * 4-8, 6.0 at 8-16, 8.9 at 16-32: one boot, --trace-wasm-compilation-times, loaded host): the same code in smaller
 * functions costs the workers less, for more block-to-block transfers. One boot each to the poweroff, side by side
 * (load ~12), off / 48 / 96: TurboFan compiles 768/1068/884, bodies 4.28/3.71/4.10 MB, summed compile ms 21.0/14.3/18.8
 * s, V8 workers' CPU 7.05/6.52/6.77 s, guest thread 5.36/5.61/5.56 s (direct block entries 10.0M/11.9M/10.9M). A cap of
 * 8 blocks instead (loops kept whole; branch s30-boot-blockcap): workers 7.13 -> 6.26 s, guest thread 5.21 -> 5.54 s,
 * and bench/engines --paired against base30 (3 runs, load ~14) boot wall 1.04x/0.82x/0.95x, process CPU
 * 0.98x/0.93x/0.92x, guest thread 1.02x/0.99x/1.00x, md5 1.01x, ash 0.96x, syscalls 1.04x wall (threads 0.95-1.00x).
 * A loop (a strongly connected group of up to REGION_MAX blocks) over the cap stays whole, in a region of its own
 * (groupRegions wholeLoops): cut in address order as KERNEL_REGION cuts, BOOT_REGION=48 paired against off (same
 * build, 3 runs, load ~15) gave boot wall 0.95x/0.97x/1.03x, process CPU 0.97x/0.96x/1.01x, but guest thread
 * 1.06x/1.05x/1.08x (hot boot loops leaving their function every pass), md5 0.99x, ash 0.93x, syscalls 1.12x wall
 * (thread 1.04x). Loops whole, one boot each side by side (load ~20), off/48/24: workers' CPU 7.84/7.23/6.88 s,
 * guest thread 6.76/7.20/7.55 s, TurboFan compiles 794/1089/1214 of 4.46/3.83/3.18 MB. Paired, 48 (loops whole)
 * against off (same build, 3 runs, load ~15): boot wall 0.88x/0.96x/1.00x, process CPU 0.92x/0.93x/1.00x, guest thread
 * 1.03x/1.02x/1.13x; md5 1.04x wall (guest thread 1.11x), ash 1.05x, syscalls 1.00x: the programs' kernel paths
 * translated during the boot stay in small regions (reregion counts dispatcher entries, not their tail calls). Off.
 */
let BOOT_REGION = Number(process.env.RINGZERO_WASM_BOOT_REGION ?? 0);
/** Tests: set BOOT_REGION (0: off) for batches flushed after; returns the old value. */
export function setBootRegion(n: number): number { const old = BOOT_REGION; BOOT_REGION = n; return old; }
/**
 * With KERNEL_REGION: a loop (strongly connected group of up to REGION_MAX blocks) over the cap stays whole, in a region
 * of its own (RINGZERO_WASM_KERNEL_WHOLE=0: cut as any group; s30-boot's BOOT_REGION found cut loops slower), and
 * groups holding a block translated before (reregion's pages: code that proved hot) are not capped
 * (RINGZERO_WASM_KERNEL_FIRST=0: capped too), so a page the dispatcher keeps entering gets its full regions back.
 */
const KERNEL_WHOLE = process.env.RINGZERO_WASM_KERNEL_WHOLE !== '0';
const KERNEL_FIRST = process.env.RINGZERO_WASM_KERNEL_FIRST !== '0';
const KERNEL_WAIT = Number(process.env.RINGZERO_WASM_KERNEL_WAIT ?? 0);
/**
 * Static exits to a block translated and installed before their batch was built tail-call its function
 * (translate.ts Translator.tailExit; RINGZERO_WASM_TAIL=0: off).
 * On by default again at session 28's end: on a quiet host (paired, same build, off against on) syscalls 1.11x
 * (1.07-1.11, 2 runs), boot 1.04x (one pair), md5 1.00x, 1.03x, 1.18x, ash 0.98x, 1.02x, 0.97x wall: off is slower
 * where the loaded host had said faster. Measured there before: on, the ash loop of bench/engines made ~295 tail calls per iteration of ~14.8k
 * guest instructions (~245 into other pages, each after a fetch-TLB check of its own), and the dispatcher ~410
 * entries; off, ~700 dispatcher entries, yet paired (bench/engines --paired, same build, on against off, load ~20, 3
 * runs) ash wall 0.95x (0.94-0.97) and md5 0.96x (0.93-1.03) with it off, guest thread 0.95x and 0.94x; 4 runs: boot
 * 0.96x (0.94-0.96, 2 pairs), syscalls 0.96x (0.93-0.98), thread 1.00x and 0.98x (every exit with a target gets the
 * tail call's guard, ~40 wasm operations: larger functions, for V8 to tier up too). A RET's tail call through the
 * function table (RET_TAIL, removed in session 30) was slower still (ash 1.17x and 1.09x, md5 1.09x in 2 pairs: every
 * module then imports the table, and a Table.set updates every importing instance).
 */
let TAIL = process.env.RINGZERO_WASM_TAIL !== '0';
/** Switch TAIL (tests of tail calls); returns the old value. */
export function setTail(on: boolean): boolean { const old = TAIL; TAIL = on; return old; }
/**
 * Function-table indices kept for good because a tail call may still enter their dead function (WasmEngine.kept)
 * at most: past this, batches make no new tail calls (a guest that keeps loading new code at new addresses would
 * otherwise grow the table and keep dead modules alive without bound).
 */
const TAIL_KEPT_MAX = Number(process.env.RINGZERO_WASM_TAIL_KEPT_MAX ?? 4096);
/** Modules are compiled in the background (RINGZERO_WASM_ASYNC=0: on the main thread); see WasmEngine.flush. */
let ASYNC = process.env.RINGZERO_WASM_ASYNC !== '0';
/** Switch ASYNC (tests that translate after a warm-up, synchronously: no event loop turns meanwhile); returns the old value. */
export function setAsync(on: boolean): boolean { const old = ASYNC; ASYNC = on; return old; }
/** Replays of a batch's blocks after which its module is compiled synchronously (the event loop is not turning). */
const ASYNC_WAIT = Number(process.env.RINGZERO_WASM_ASYNC_WAIT ?? 10000);
/**
 * Block.runs of a block whose module is being compiled: IN_FLIGHT - k, k its batch's index in WasmEngine.flying (so
 * a replay finds its batch without a Map lookup: those were ~0.4% of the boot's main thread).
 */
const IN_FLIGHT = -2;
/** Translated blocks entered from JavaScript get their dispatch entry back (WasmEngine.exec; RINGZERO_WASM_REINSTALL=0: off). */
const REINSTALL = process.env.RINGZERO_WASM_REINSTALL !== '0';
/**
 * RINGZERO_WASM_INLINE_LATE (on; =0 turns it off): the same for every function translated after the first batch flushed
 * from user code (the kernel's own boot, ~90% of a boot's instructions and most of its code, keeps the library calls;
 * translate.ts INLINE_ALL does it everywhere). Session 28: memory-library calls per ash loop iteration 1758 -> 26, per
 * syscall 135 -> 11.6; the boot's code 10.2 -> 12.1 MB (INLINE_ALL: 13.7 MB). Paired against the same build off
 * (bench/engines --paired, 3 runs, host load ~25): ash 0.93x wall (0.89-0.95), guest thread 0.89x; syscall 0.91x
 * (0.83-0.91), thread 0.88x; md5 0.93x (0.92-1.08), thread 0.90x; boot 1.04x wall (0.92-1.05), process CPU 1.07x
 * (1.03-1.08: the compile thread's), guest thread 1.00x. Quiet host at the session's end, paired against off (3 runs):
 * md5 0.95x (0.94-1.01), ash 0.89x (0.88-0.94), syscall 0.85x (0.79-0.96), boot 1.05x wall (one pair; process CPU
 * 1.06x, guest thread 1.00x): on by default.
 */
const INLINE_LATE = process.env.RINGZERO_WASM_INLINE_LATE !== '0';


/** The --wasm-tiering-budget every module is compiled under unless it has its own (./tier-budget.ts). */
const START_BUDGET = startBudget();
/**
 * V8's tier-up budget per module (./tier-budget.ts), RINGZERO_WASM_TIER_BUDGET='cold,hot,lib' (an empty field: the
 * start value): a flushed batch's functions of first translations go into one module compiled under `cold`, those
 * holding a block translated before (REFORM, reregion) into a second one under `hot` (splitByBudget), the shared libraries (memory, flags, dispatcher, trampolines) `lib`. Unset or '0': every module under
 * the start value (bin/ringzero's 9000000), as before.
 * Off by default: no policy tried gained (session 22, host load 20-32 from other sessions, bench/engines --paired
 * against main, each VMM pinned with its threads to one CPU). One boot each with --trace-wasm-compilation-times:
 * - TurboFan compiles to the prompt, global budget (no per-module policy) 9M/36M/90M/360M: 850/546/381/202: the
 *   boot's wasm is hot over a long tail, not a few loops plus cold code. Off, TurboFan compiled 24% of the functions
 *   of first translations (292 of 1229 attributed) and 59% of those holding re-translated blocks (204 of 348, ~10 KB
 *   each: most of TurboFan's bytes).
 * - '90000000' (first translations at 10x, the rest as before): TurboFan compiles to the prompt 846 -> 543, bodies
 *   7.83 -> 6.21 MB; modules 255 -> 439 (a batch with both kinds makes two). Paired against main (2 runs): boot
 *   process CPU 24.95/27.06, 25.85/25.69 s (no gain); guest-thread CPU md5 1.13x/1.00x, ash loop 1.61x/1.14x (its
 *   code, first translations, stays in Liftoff ten times as long), syscalls 0.92x/1.00x.
 * - the same plus promotion (reregion's dispatcher page counts at >= 2000 per scan translating a page's cold
 *   functions again under `hot`): boot process CPU 1.15x/1.07x, md5 1.20x/1.17x, ash 1.24x/1.09x, syscalls
 *   1.07x/1.07x: all slower (more translating on the main thread, and the hot code waits for its promotion).
 * - '9000000,1800000' (first translations as before, re-translated functions tier up 5x sooner), paired against off
 *   (2 runs, load ~20): boot process CPU 25.31/17.45, 23.74/21.87 s; guest-thread CPU md5 1.30x/0.99x, ash loop
 *   1.16x/1.13x, syscalls 1.02x/0.92x: no gain either. Both split arms were ~13% slower on the ash loop: whether
 *   the split itself (more, smaller modules) costs there is not known yet.
 * What is left to try with this lever: a budget from how fast a block became hot (instructions between its first
 * replay and its translation) rather than from whether it was translated before.
 */
const TIER_BUDGETS: TierBudgets | null = V8_11_3 ? parseBudgets(process.env.RINGZERO_WASM_TIER_BUDGET, START_BUDGET, null) : null;
/**
 * RINGZERO_WASM_LATE_BUDGET=N (off unless set; e.g. 1800000, V8's own): modules flushed once user code runs (sawUser:
 * the kernel has started /init) are compiled under tier-up budget N instead of the start value (bin/ringzero's
 * 9000000, five times V8's, which the boot's briefly run code pays off with), so code that turns hot after the boot
 * (a shell loop, a system call path, the kernel paths an I/O test runs for the first time) could leave Liftoff's code
 * sooner; the boot's own modules keep the start value. Measured (session 39, N = 1800000, same build, on against off;
 * the programs' guest-thread CPU fell into a fast and a slow mode from run to run, ash ~6 s or ~9 s, syscalls ~0.7 s or
 * ~1.1 s, whatever the setting):
 * - bench/engines --runs 1 --only translate,qemu, 8 pairs (loaded host, each order): guest-thread CPU lower with it
 *   for the ash loop in 6 of 8, for syscalls in 4 of 8, md5 in 4 of 8; wall against TCG, medians of the first 6
 *   pairs: ash 1.95x -> 1.49x, syscalls 1.88x -> 1.69x, md5 0.93x -> 0.95x, boot 2.09x -> 2.02x; the last 2 pairs
 *   (quieter): syscalls 0.75/0.70 s off against 1.07/0.95 s on. On a quiet host, five runs with it against five
 *   without earlier the same day: guest-thread CPU medians ash 5.96 against 6.00 s, syscalls 0.74 against 0.72 s.
 * - bench/net-passes (16 MiB, 2 runs): the first passes' guest-thread CPU lower in 4 of 4 (TCP host -> guest 460/545
 *   against 613/647 ms, guest -> host 281/540 against 485/587 ms), MB/s higher in 4 of 4.
 * - bench/io alternating (3 pairs, noisy host): within its noise (O_DIRECT read lower in 3 of 3: 354/270/343 against
 *   594/311/415 MB/s; TCP host -> guest 30/35/42 against 42/26/32 MB/s).
 * No gain beyond the runs' bimodal noise, so off; a quieter host, or a measure that separates the two modes, may show
 * what it does for the first passes.
 */
const LATE_BUDGET = V8_11_3 ? lateBudget(process.env.RINGZERO_WASM_LATE_BUDGET) : 0;
/** The tier-up budget of a module of a flushed batch: `late` once the boot is over (0: off), else the batch's own. */
export function moduleBudget(batchBudget: number, afterBoot: boolean, late: number): number {
  return late > 0 && afterBoot ? late : batchBudget;
}
/**
 * A flushed batch's functions (`hot[i]`: function i holds a block translated before) as the modules to build: the
 * cold ones in one under `cold`, the hot ones in another under `hot` (one module when either is empty, or the two
 * budgets are equal, or there are none: the start value).
 */
export function splitByBudget(b: TierBudgets | null, hot: boolean[]): { budget: number; fns: number[] }[] {
  const all: number[] = [], h: number[] = [], c: number[] = [];
  for (let i = 0; i < hot.length; i++) { all.push(i); (hot[i] ? h : c).push(i); }
  if (b === null) return [{ budget: START_BUDGET, fns: all }];
  if (h.length === 0 || b.hot === b.cold) return [{ budget: b.cold, fns: all }];
  if (c.length === 0) return [{ budget: b.hot, fns: all }];
  return [{ budget: b.cold, fns: c }, { budget: b.hot, fns: h }];
}
/**
 * V8's tier-up budget by function size (RINGZERO_WASM_TIER_SIZE=UNIT bytes, 0: off; RINGZERO_WASM_TIER_SIZE_MAX):
 * V8 11.3 tiers a function up once it has executed a budget of bytes, the same for every function, but TurboFan's cost
 * grows with the function's size, and the boot's large region functions are most of it: to the prompt (session 23,
 * --trace-wasm-compilation-times), 364 of 869 TurboFan compiles were of bodies over 8 KiB, 6.2 of their 8.1 MB, and
 * of the functions matched to their batch, bodies over 16 KiB were tiered up 83% of the time (108 of 130), those under
 * 1 KiB 10% (55 of 549). Tiering up pays
 * back once the code has run in Liftoff about as long as its compile takes (the ski-rental rule), so a function's
 * budget grows with its size: a body of at least UNIT bytes gets 4 times the start budget, one of at least 4 UNIT 16
 * times..., at most MAX times (powers of 4: a batch makes at most a few modules; tier-budget.ts: one module, one budget).
 * Measured (session 23, host load 13-37, bench/engines --paired --bins against a24078d, each VMM pinned with all its
 * threads to one CPU, so its background compiles take the guest thread's CPU):
 * - UNIT 4096, MAX 16: TurboFan to the prompt 863 compiles / 8.09 MB of bodies -> 658 / 5.39 MB; boot (3 pairs) wall
 *   0.93x (0.91-0.97), process CPU 0.91x (0.85-0.93), guest thread 1.02x; but md5 1.27x/1.05x wall (1.31x/1.06x guest
 *   thread; presumably the pipe's kernel paths, large functions each run briefly per context switch, which then need
 *   16 times as many switches before TurboFan), ash 0.82x/1.05x, syscalls 1.01x/0.99x (2 pairs). UNIT 2048, MAX 64: 523 / 4.43 MB.
 * - UNIT 8192, MAX 4: 789 / 6.95 MB; md5 0.91x/0.86x wall (0.99x/0.86x guest thread, 2 pairs), boot 0.98x/1.10x wall,
 *   0.98x/1.10x process CPU (2 pairs): no gain.
 * So off by default: the budget is still fixed when the module is compiled, and the large kernel functions that the
 * boot runs briefly are the ones a program (md5's pipe) later runs hot. What would fit: compiling a module's bytes
 * again under the start budget once our own counters show its functions hot (no translation on the main thread).
 */
const TIER_SIZE = V8_11_3 ? Number(process.env.RINGZERO_WASM_TIER_SIZE ?? 0) : 0;
const TIER_SIZE_MAX = Number(process.env.RINGZERO_WASM_TIER_SIZE_MAX ?? 16);
/** A flushed batch's functions (body sizes `sizes`) as modules by budget (TIER_SIZE): one per size class. */
export function splitBySize(unit: number, maxK: number, start: number, sizes: number[]): { budget: number; fns: number[] }[] {
  const parts = new Map<number, number[]>();
  for (let i = 0; i < sizes.length; i++) {
    let k = 1;
    if (unit > 0) while (k * 4 <= maxK && sizes[i] >= unit * k) k *= 4;
    const fns = parts.get(k);
    if (fns === undefined) parts.set(k, [i]); else fns.push(i);
  }
  return [...parts].sort((a, b) => a[0] - b[0]).map(([k, fns]) => ({ budget: start * k, fns }));
}
/** Run a synchronous compile on this thread under `budget` (waiting up to 200 ms for the compile thread's own). */
function underBudget<T>(budget: number, f: () => T): T {
  return budget === START_BUDGET ? f() : withBudget(flagLock(), budget, START_BUDGET, 200, f);
}

/** A translated function (by function-table index): its blocks' queue addresses. */
interface FnInfo {
  /** The linear address each block was queued at (regions: translateRegion's lins), if known. */
  lins: (number | undefined)[];
}

interface Done { blocks: Block[]; offs: number[][]; info: FnInfo }

/** A module being compiled: its bytes, its blocks, the cache whose generations decide whether they are installed. */
interface Batch {
  bytes: Uint8Array<ArrayBuffer>;
  /** The functions its tail exits call (imports t.f0, t.f1, ...: translate.ts TailCtx). */
  tails: WasmCode['fn'][];
  /** Per function of the module: its blocks (one, or a region's) and their instruction offsets, and its FnInfo. */
  done: Done[];
  cache: CodeCache;
  installed: boolean;
  waits: number;
  /** Its index in WasmEngine.flying while it compiles in the background, else -1. */
  slot: number;
  /** Compiled in the background (counted in WasmEngine.compiling until installed or given up). */
  async: boolean;
  /** V8's tier-up budget it is compiled under (./tier-budget.ts). */
  budget: number;
  /** When it was flushed (ms, and the flushing vCPU's instruction count): RINGZERO_TIER_STATS. */
  t0: number;
  i0: number;
  cpu: SoftCpu;
}

/**
 * The dispatcher: runs the block at function-table index `idx`, then, while the block left without an event
 * (S_CHAIN still 1), the budget allows and the next RIP's page is in the fetch TLB (this privilege) and holds a
 * translated block of the current page generation that fits the budget, runs that one too, without returning to
 * JavaScript. (run, like SoftCpu.runChain, stops after CHAIN_LIMIT instructions.)
 * (st, r0, left, user, idx) -> instructions executed; S_RIP holds the final RIP. `idx` and the dispatch entries hold
 * dispatch words (translate.ts WasmCode.idx): the function-table index | the block's number in its region << K_SHIFT,
 * which the function is called with as its `k`.
 *
 * Per block entry it stores only what a helper or a fault needs to name the current instruction (S_NBASE, S_R0,
 * S_BLK: WasmEngine.replay and run's fault path); S_CHAIN is set once per call (a helper clears it only to end the
 * call, and the dispatcher then leaves right after that block), and the chain counters (S_CHAINS, S_DIRECT) are
 * kept in locals and added to the state area when the call returns (a call left by a fault loses its counts:
 * statistics only).
 */
function buildDispatcher(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importTable('e', 't');
  // (ENTRY_SITES: function 0, (target RIP, exit kind, 0 named / 1 looked up, the dispatch word that left) -> nothing)
  if (ENTRY_SITES !== '') m.importFunc('e', 'x', m.type([F64, I32, I32, I32, I32], []));
  const blockType = m.type([I32, F64, I32, I32, I32], [I32]);
  m.func(blockType, dispatcherBody(blockType), 'run', 'rz.dispatch');
  return m.encode();
}

/** The body of the dispatcher. */
function dispatcherBody(blockType: number): Body {
  const b = new Body(5);
  const st = 0, r0 = 1, left = 2, user = 3, idx = 4;
  const n = b.local(I32), limit = b.local(I32), ti = b.local(I32), pa = b.local(I32), e = b.local(I32);
  const chains = b.local(I32), direct = b.local(I32);
  const ripi = b.local(I64), p = b.local(I64);
  // RINGZERO_WASM_EXIT_STATS=1: per exit kind of the block that just ran (S_XKIND, translate.ts X_*), count how the
  // next was entered (0 named directly, 1 looked up) or why the call ended (2 limit or chain off, 3 fetch-TLB miss
  // or not RAM, 4 no current entry or over budget): labels `lim`, `fTlb`, `fEnt` count and leave; else all are `out`.
  const stats = EXIT_STATS;
  const xs = stats ? b.local(I32) : -1;
  const bump = (o: number) => {
    if (stats) b.get(xs).get(xs).mem(Op.i32Load, 2, L.S_XSTATS + 4 * o).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L.S_XSTATS + 4 * o);
    // (ENTRY_SITES: each entry by target, kind and the function left, WasmEngine.entrySite; the block's RIP is in r0)
    if (stats && ENTRY_SITES !== '' && o < 2) b.get(r0).get(st).mem(Op.i32Load, 2, L.S_XKIND).i32(o).get(st).mem(Op.i32Load, 2, L.S_BLK).get(idx).call(0);
  };
  b.get(left).i32(CHAIN_LIMIT).get(left).i32(CHAIN_LIMIT).op(Op.i32LtS).op(Op.select).set(limit);
  b.get(st).i32(1).mem(Op.i32Store, 2, L.S_CHAIN);
  // (return-address predictions hold for one call: its privilege and mode, translate.ts Translator.rasPush)
  b.get(st).i32(0).mem(Op.i32Store, 2, L.S_RASP);
  // (the privilege of the lookups: a replayed SYSCALL or SYSRET changes it during the call, WasmEngine.replay)
  b.get(st).get(user).mem(Op.i32Store, 2, L.S_USER);
  const out = b.open(Op.block);
  const fEnt = stats ? b.open(Op.block) : out;
  const fTlb = stats ? b.open(Op.block) : out;
  const lim = stats ? b.open(Op.block) : out;
  const top = b.open(Op.loop);
  b.get(st).get(n).mem(Op.i32Store, 2, L.S_NBASE);
  b.get(st).get(r0).mem(Op.f64Store, 3, L.S_R0);
  b.get(st).get(idx).mem(Op.i32Store, 2, L.S_BLK);
  // (idx is a dispatch word: function-table index | region member << K_SHIFT, translate.ts WasmCode.idx)
  b.get(st).get(r0).get(left).get(n).op(Op.i32Sub).get(user).get(idx).i32(K_SHIFT).op(Op.i32ShrU);
  b.get(idx).i32((1 << K_SHIFT) - 1).op(Op.i32And);
  b.op(0x11, blockType).op(0x00); // call_indirect type, table 0
  // (S_NBASE, not n: a block that tail-called another (translate.ts Translator.tailExit) added its count there)
  b.get(st).mem(Op.i32Load, 2, L.S_NBASE).op(Op.i32Add).set(n);
  if (stats) b.get(st).get(st).mem(Op.i32Load, 2, L.S_XKIND).i32(5).op(Op.i32Shl).op(Op.i32Add).set(xs);
  // (S_NEXT is taken and cleared before anything can leave: a stale one would name the wrong block)
  b.get(st).mem(Op.i32Load, 2, L.S_NEXT).set(e);
  b.get(st).i32(0).mem(Op.i32Store, 2, L.S_NEXT);
  // (HINTS: the ways out of the loop are the cold side, emit.ts Body.hint)
  b.get(n).get(limit).op(Op.i32GeS).hint(false).brIf(lim);
  b.get(st).mem(Op.i32Load, 2, L.S_CHAIN).op(Op.i32Eqz).hint(false).brIf(lim);
  // the block named its successor's dispatch entry (exitStatic): no TLB probe, no lookup
  const probe = b.open(Op.block);
  b.get(e).op(Op.i32Eqz).brIf(probe);
  if (NEXT_KEY) {
    // (S_NEXT names the set and S_NKEY the key: way 0, else way 1, else the lookup below, which then misses too)
    b.get(st).mem(Op.i64Load, 3, L.S_NKEY).set(p);
    b.get(e).mem(Op.i64Load, 3, 0).get(p).op(Op.i64Ne).hint(false).open(Op.if);
    b.get(e).i32(16).op(Op.i32Add).tee(e).mem(Op.i64Load, 3, 0).get(p).op(Op.i64Ne).brIf(probe);
    b.close();
  }
  b.get(st).mem(Op.f64Load, 3, L.S_RIP).set(r0);
  b.get(e).mem(Op.i32Load, 2, 12).get(left).get(n).op(Op.i32Sub).op(Op.i32GtS).hint(false).brIf(fEnt);
  b.get(e).mem(Op.i32Load, 2, 8).tee(idx).op(Op.i32Eqz).hint(false).brIf(fEnt);
  b.get(direct).i32(1).op(Op.i32Add).set(direct);
  // (per target page, hashed: WasmEngine.reregion joins a page's blocks that keep coming through here; `pa` is free)
  b.get(st).get(e).mem(Op.i32Load, 2, 0).i32(12).op(Op.i32ShrU).i32(L.PHITS_N - 1).op(Op.i32And).i32(2).op(Op.i32Shl).op(Op.i32Add).tee(pa);
  b.get(pa).mem(Op.i32Load, 2, L.S_PHITS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L.S_PHITS);
  bump(0);
  b.br(top);
  b.close();
  // next RIP -> physical address through the fetch TLB bank of this privilege (which the last block may have changed)
  b.get(st).mem(Op.i32Load, 2, L.S_USER).set(user);
  b.get(st).mem(Op.f64Load, 3, L.S_RIP).tee(r0).op(0xfc, 6).set(ripi);
  // (ti: the entry's address less S_TLB + TLB_FETCH_DELTA, which the loads' offsets add; tag: the page's linear
  // address, and only pages of low RAM have an entry, ./tlb-probe.ts: RIP's RAM offset is its low half + the addend)
  emitTlbSlot(b, ripi);
  b.get(st).op(Op.i32Add).get(user).i32(L.TLB_USER_DELTA).op(0x6c).op(Op.i32Add).tee(ti).mem(Op.i64Load, 3, L.S_TLB + L.TLB_FETCH_DELTA);
  b.get(ripi).i64(-4096).op(Op.i64And).op(Op.i64Ne).hint(false).brIf(fTlb);
  b.get(ripi).op(Op.i32WrapI64).get(ti).mem(Op.i32Load, 2, L.S_TLB + L.TLB_FETCH_DELTA + 8).op(Op.i32Add).set(pa);
  // the entry of that address: way 0 of its set (layout.ts dispatchEntry), else way 1
  b.get(pa).get(pa).i32(12).op(Op.i32ShrU).op(Op.i32Xor).i32((1 << L.DISPATCH_BITS) - 1).op(Op.i32And).i32(5).op(Op.i32Shl).set(e);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH).get(pa).op(Op.i32Ne).open(Op.if);
  b.get(e).i32(16).op(Op.i32Add).tee(e).mem(Op.i32Load, 2, L.DISPATCH).get(pa).op(Op.i32Ne).brIf(fEnt);
  b.close();
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH + 4);
  b.get(pa).i32(12).op(Op.i32ShrU).i32(2).op(Op.i32Shl).mem(Op.i32Load, 2, L.PAGE_GEN).op(Op.i32Ne).hint(false).brIf(fEnt);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH + 12).get(left).get(n).op(Op.i32Sub).op(Op.i32GtS).hint(false).brIf(fEnt);
  b.get(e).mem(Op.i32Load, 2, L.DISPATCH + 8).tee(idx).op(Op.i32Eqz).hint(false).brIf(fEnt);
  b.get(chains).i32(1).op(Op.i32Add).set(chains);
  bump(1);
  b.br(top);
  b.close();
  if (stats) {
    b.close(); bump(2); b.br(out);
    b.close(); bump(3); b.br(out);
    b.close(); bump(4);
  }
  b.close();
  b.get(st).get(st).mem(Op.i32Load, 2, L.S_CHAINS).get(chains).op(Op.i32Add).mem(Op.i32Store, 2, L.S_CHAINS);
  b.get(st).get(st).mem(Op.i32Load, 2, L.S_DIRECT).get(direct).op(Op.i32Add).mem(Op.i32Store, 2, L.S_DIRECT);
  b.get(n);
  return b;
}

/**
 * The memory library: ld1/2/4/8 (st, tag bank address, lin, pos) -> i64 zero-extended and st1/2/4/8 (st, tag bank,
 * lin, value, pos). The inline TLB probe (integer tag compare, for stores the code-page byte) with a direct
 * access to guest RAM on a hit, else the rd/wr helper (SoftCpu.readLin/writeLin, which may throw the fault). Shared
 * by every block: translated code stays small and these few hot functions get V8's optimizing tier.
 */
function buildMemlib(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  m.importMemory('e', 'm');
  m.importFunc('e', 'rd', m.type([F64, I32, I32], [I32]));
  m.importFunc('e', 'wr', m.type([F64, I32, I32, I32, I32], []));
  const ldT = m.type(LD_PARAMS, [I64]), stT = m.type(ST_PARAMS, []);
  for (const write of [false, true]) {
    for (const size of [1, 2, 4, 8]) m.func(write ? stT : ldT, memFnBody(size, write, 0, 1), (write ? 'st' : 'ld') + size, 'rz.mem.' + (write ? 'st' : 'ld') + size);
  }
  return m.encode();
}

/** The helper trampolines: each imported JavaScript helper re-exported as a wasm function of the same type. */
function buildTrampolines(): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  const sigs: [string, number[], number[]][] = [
    ['rd', [F64, I32, I32], [I32]], ['wr', [F64, I32, I32, I32, I32], []], ['rp', [I32], [I32]], ['cc', [I32], [I32]], ['gp', [I32], []],
    ['fl', [I32], [I32]], ['sy', [I32, I32], [I32]],
  ];
  const types = sigs.map(([, p, r]) => m.type(p, r));
  sigs.forEach(([name], i) => m.importFunc('e', name, types[i]));
  sigs.forEach(([name, params], i) => {
    const b = new Body(params.length);
    for (let k = 0; k < params.length; k++) b.get(k);
    b.call(i);
    m.func(types[i], b, name, 'rz.helper.' + name);
  });
  return m.encode();
}

/**
 * RINGZERO_WASM_NAMES=1: the name of a translated function in its module's name section (translate.ts WASM_NAMES):
 * "rz.g" and the linear address its (first) block was queued at, in hex, else "rz.p" and its physical address.
 */
function fnName(d: Batch['done'][number]): string {
  const lin = d.info.lins[0];
  if (d.blocks.length === 0) return 'rz.leave';
  return lin !== undefined ? 'rz.g' + BigInt.asUintN(64, BigInt(lin)).toString(16) : 'rz.p' + d.blocks[0].pa.toString(16);
}

/** The first block of a batch's functions (a stub has none), for error reports. */
function firstBlock(done: readonly { blocks: Block[] }[]): Block {
  return (done.find((d) => d.blocks.length > 0) ?? done[0]).blocks[0];
}

/** Replay entry `e` at `rip` through its closure or handler (as SoftCpu.runBlock). */
function replayEntry(c: SoftCpu, e: BlockEntry, rip: number): void {
  const fast = e.fast;
  if (fast !== null) {
    c.rip = rip + e.len;
    fast(c, e);
    return;
  }
  replayHandler(c, e, rip);
}

export interface WasmStats {
  /** Blocks translated to wasm, and the modules holding them. */
  compiled: number;
  modules: number;
  /** Bytes of wasm generated and milliseconds spent building + compiling modules. */
  bytes: number;
  compileMs: number;
  /** Of compileMs, the part spent generating the bytes (the rest is V8's compile and instantiation). */
  buildMs: number;
  /** Calls into translated code, and of those the ones SoftCpu.execBlock made straight from the dispatch table. */
  calls: number;
  tableCalls: number;
  /** Calls from translated code into the helpers, by kind. */
  replays: number;
  conds: number;
  slow: number;
  /** Chained block entries whose dispatch entry the previous block named (exitStatic). */
  direct: number;
  /** Block entries by a tail call from the previous block's static exit (translate.ts Translator.tailExit). */
  tails: number;
  /** Modules compiled in the background, of those compiled synchronously after ASYNC_WAIT, blocks not installed because their page was written meanwhile. */
  asyncModules: number;
  syncFallbacks: number;
  stale: number;
  /** Dispatch entries of translated blocks put back when JavaScript entered them (exec, REINSTALL). */
  reinstalled: number;
  /** Dead translations whose function-table index was reclaimed. */
  freed: number;
  /** Regions (functions of several blocks, translate.ts Region), their blocks, and branches between their blocks. */
  regions: number;
  regionBlocks: number;
  intra: number;
  /** Translated blocks translated again with a later batch of their page (REFORM). */
  reformed: number;
  /** Translated blocks translated again with the other blocks of their page (WasmEngine.reregion). */
  reregioned: number;
  /** Translated blocks of other pages taken into a new batch as callees of its user blocks (CALLEES: pullCallees). */
  callees: number;
  /** Modules compiled under the `hot` tier-up budget (TIER_BUDGETS) while the policy is on, the rest under `cold`. */
  hotModules: number;
  /** Modules compiled under RINGZERO_WASM_LATE_BUDGET (flushed once the boot was over). */
  lateModules: number;
  /** Modules compiled under a budget raised for their functions' size (TIER_SIZE). */
  sizedModules: number;
  /**
   * Background modules installed, and the sums over them of the wall ms and of the guest instructions from their
   * flush to their install (how long a hot path waits for its code after it was queued).
   */
  installs: number;
  installWaitMs: number;
  installWaitInstr: number;
}

/** The wasm translator of one GuestMemory (shared by its vCPUs, which run on one thread). */
/**
 * RINGZERO_WASM_EXIT_STATS=1: the dispatcher's counters per exit kind (layout.ts S_XSTATS, 8 per kind): how the next
 * block was entered (named directly, looked up) or why the dispatcher left (limit or chain off, fetch-TLB miss, no
 * entry), and the tail calls the block made (translate.ts), of those the ones through a link (LINKS); xStat: the byte offset of kind `kind`'s counter `how`.
 */
const X_HOW = ['direct', 'lookup', 'limit', 'tlbMiss', 'noEntry', 'tail', 'link'];
const xStat = (kind: number, how: number): number => L.S_XSTATS + 4 * (kind * 8 + how);

/**
 * WasmEngine.tailCtx's look-ups (TailCtx): the translated blocks a batch's tail calls may enter. A class rather than
 * an object of closures made per batch: a closure's optimized code lives only as long as a closure of it, so TurboFan
 * compiled those again after each major GC (session 34, translate.ts pick).
 */
class TailLookup implements TailCtx {
  readonly fns: WasmCode['fn'][] = [];
  readonly index = new Map<WasmCode['fn'], number>();
  constructor(private readonly table: WebAssembly.Table, private readonly byPage: Map<number, Set<Block>>,
    private readonly byLin: Map<number, Block>, private readonly gen: Int32Array) {}
  private target(t: Block): TailTarget | null {
    const w = t.wasm;
    if (w === null || t.mode !== 8 || t.gen !== this.gen[t.pa >>> 12]) return null;
    const fn = this.table.get(w.idx & ((1 << K_SHIFT) - 1)) as unknown as WasmCode['fn'] | null;
    return fn === null ? null : { word: w.idx, fn, n: t.n, pa: t.pa, gen: t.gen };
  }
  find(pa: number, g: number): TailTarget | null {
    const set = this.byPage.get(pa >>> 12);
    if (set !== undefined) for (const t of set) if (t.pa === pa && t.gen === g) { const r = this.target(t); if (r !== null) return r; }
    return null;
  }
  findLin(lin: number): TailTarget | null {
    const t = this.byLin.get(lin);
    return t === undefined ? null : this.target(t);
  }
}

export class WasmEngine {
  /** Whether translated code counts region branches and tail calls (translate.ts COUNT_CHAINS): --stats says so. */
  readonly countsChains = COUNT_CHAINS;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  /** What block modules import: the helper trampolines, the memory and flag libraries (built by modules()). */
  private imports!: WebAssembly.Imports;
  /** The JavaScript helpers the trampolines call. */
  private readonly helpers: WebAssembly.Imports;
  readonly stats: WasmStats = { compiled: 0, modules: 0, bytes: 0, compileMs: 0, buildMs: 0, calls: 0, tableCalls: 0, replays: 0, conds: 0, slow: 0, direct: 0, tails: 0, asyncModules: 0, syncFallbacks: 0, stale: 0, reinstalled: 0, freed: 0, regions: 0, regionBlocks: 0, intra: 0, reformed: 0, reregioned: 0, callees: 0, hotModules: 0, lateModules: 0, sizedModules: 0, installs: 0, installWaitMs: 0, installWaitInstr: 0 };
  private nextState = 0;
  /** Translated functions by index (index 0 unused: an empty dispatch entry), and their blocks (a region's by member number). */
  private table!: WebAssembly.Table;
  private readonly blocks: (Block[] | null)[] = [null];
  private dispatch!: (st: number, r0: number, left: number, user: number, idx: number) => number;
  // The call in progress (helpers run inside it).
  private cur: SoftCpu | null = null;
  private curI0 = 0;
  private curPos = 0;
  private curSt = 0;

  constructor(readonly memory: WebAssembly.Memory) {
    this.i32 = new Int32Array(memory.buffer, 0, L.STATE_BASE / 4 + (L.MAX_WASM_CPUS * L.STATE_STRIDE) / 4);
    this.f64 = new Float64Array(memory.buffer, 0, this.i32.length / 2);
    this.helpers = {
      e: {
        m: memory,
        rd: (lin: number, size: number, pos: number): number => {
          this.curPos = pos;
          this.stats.slow++;
          const c = this.cur!;
          if (this.i32[(this.curSt + L.S_SYS) >> 2] !== 0) this.syncSys(c);
          const v = c.readLin(lin, size);
          if (size === 8) this.i32[(this.curSt + L.S_HI) >> 2] = c.hi;
          if (c.eventPending || c.stopRequested) this.stopAfter(pos);
          return v;
        },
        wr: (lin: number, size: number, lo: number, hi: number, pos: number): void => {
          this.curPos = pos;
          this.stats.slow++;
          const c = this.cur!;
          if (this.i32[(this.curSt + L.S_SYS) >> 2] !== 0) this.syncSys(c);
          c.writeLin(lin, size, lo, hi);
          if (c.eventPending || c.stopRequested) this.stopAfter(pos);
        },
        rp: (pos: number): number => this.replay(pos),
        cc: (cc: number): number => {
          this.stats.conds++;
          if (PROFILE) countHelper('cc');
          const c = this.cur!;
          this.takeFlags(c);
          return c.condition(cc) ? 1 : 0;
        },
        fl: (all: number): number => {
          // all = 0: the arithmetic flags before an instruction that keeps some of them (IMUL, BT, ROL), when the
          // block does not know them; 1: RFLAGS as PUSHF pushes it (VM and RF cleared, ../fast-forms.ts pushf)
          this.stats.conds++;
          if (PROFILE) countHelper('fl' + all);
          const c = this.cur!;
          this.takeFlags(c);
          return all ? c.getFlags() & ~(VM | RF) : (c.settleFlags(), c.flags & ARITH);
        },
        sy: (kind: number, pos: number): number => {
          // CLI (kind 0) / STI (1) as ../fast-forms.ts cli/sti: #GP(0) when CPL > IOPL; STI that sets IF blocks
          // interrupts for one more instruction and asks for an event check: the chain stops, the block leaves
          // (returns 1). IF and IOPL live in SoftCpu.flags whatever the lazy record holds.
          this.curPos = pos;
          this.stats.conds++;
          if (PROFILE) countHelper('sy' + kind);
          const c = this.cur!, st = this.curSt;
          if (kind === SY_TSC) {
            // (translated RDTSC: the value only, ../system/control.ts readTsc, which is below 2^53)
            // (the low half by subtraction: `t % 2^32` of a double is a call to fmod in V8's optimized code)
            const t = readTsc(c), hi = Math.floor(t / 4294967296);
            this.i32[(st + L.S_HI) >> 2] = hi;
            return (t - hi * 4294967296) | 0;
          }
          if (kind >= SY_SYSCALL) return this.sysCall(kind, pos);
          this.syncIf(c);
          // kinds >= 2 (RDTSC, RDTSCP, SWAPGS, a segment selector): ../fast-forms.ts execSy (h-forms)
          if (kind >= 2) {
            const r = execSy(c, kind);
            if (kind === 5 || kind === 6) this.i32[(st + L.S_EFL) >> 2] = c.flags; // CLD/STD: DF for MOVS/STOS
            return r;
          }
          // (translated CLI/STI come here above CPL 0, and STI when an interrupt may be pending: S_CPL, S_PEND)
          if (c.cpl > ((c.flags >> 12) & 3)) c.gp(0);
          if (kind === 0) { c.flags &= ~IF; this.i32[(st + L.S_EFL) >> 2] = c.flags; return 0; }
          const open = stiSetsIf(c);
          this.i32[(st + L.S_EFL) >> 2] = c.flags;
          if (!open) {
            // (no interrupt pending: no shadow, no event check, ../ops/interrupt-flag.ts); the next STIs of
            // translated code set IF inline until a wake-up or event request (S_PEND)
            const lapic = c.env.lapic;
            if (!c.eventPending && (lapic === undefined || !lapic.hasInterrupt())) this.i32[(st + L.S_PEND) >> 2] = 0;
            return 0;
          }
          this.stopChain();
          return 1;
        },
        gp: (pos: number): void => {
          this.curPos = pos;
          this.syncIf(this.cur!);
          this.cur!.gp(0);
        },
      },
    };
  }

  /**
   * Build the modules every translation uses, once, before the first is installed: not in the constructor, so that
   * a machine (a restored one above all: src/vmm/machine.ts Machine.restore) does not pay their ~5 ms of building
   * and compiling before its guest runs a single instruction; its first hot block does, a moment later.
   */
  private modules(): void {
    if (this.table !== undefined) return;
    const { memory } = this;
    // Block modules import the helpers as wasm functions (thin trampolines of one module that imports the JavaScript
    // ones): a wasm-to-wasm import needs no per-module wrapper code, which made instantiating a block module with
    // JavaScript imports cost about a millisecond.
    const lib = TIER_BUDGETS?.lib ?? START_BUDGET;
    const compile = (bytes: Uint8Array<ArrayBuffer>) => underBudget(lib, () => new WebAssembly.Module(bytes));
    const helpers = new WebAssembly.Instance(compile(buildTrampolines()), this.helpers);
    const memlib = new WebAssembly.Instance(compile(buildMemlib()), { e: { m: memory, ...helpers.exports } });
    this.table = new WebAssembly.Table({ element: 'anyfunc', initial: 1024 });
    const x = (rip: number, kind: number, how: number, w: number, to: number) => this.entrySite(rip, kind, how, w, to);
    const d = new WebAssembly.Instance(compile(buildDispatcher()), { e: { m: memory, t: this.table, ...(ENTRY_SITES !== '' ? { x } : {}) } });
    this.dispatch = d.exports.run as WasmEngine['dispatch'];
    // (the flag library: the arithmetic flags of the state area's record, for conditions on flags from before a block)
    const flaglib = new WebAssembly.Instance(compile(buildFlaglib()), { e: { m: memory, fl: helpers.exports.fl } });
    this.imports = { e: { m: memory, t: this.table, ...helpers.exports, ...memlib.exports, ...flaglib.exports } };
  }

  /** For `ringzero run --stats`. */
  statsLine(): string {
    const s = this.stats;
    return `${s.compiled} blocks translated in ${s.modules} modules (${(s.bytes / 1024).toFixed(0)} KiB of code, ${s.compileMs.toFixed(0)} ms on the main thread to build (${s.buildMs.toFixed(0)}) and compile; ` +
      `${s.asyncModules} compiled in the background, ${s.syncFallbacks} of them finished synchronously, ${s.stale} blocks stale when ready, ${s.freed} dead ones freed, ${s.reinstalled} dispatch entries put back), ` +
      `${s.calls} calls (${s.tableCalls} from the dispatch table), ${s.direct} direct block-to-block entries, ${COUNT_CHAINS ? s.tails : 'uncounted'} by tail calls (${this.kept.size} dead functions kept for them), ${s.regions} regions of ${s.regionBlocks} blocks with ${COUNT_CHAINS ? s.intra : 'uncounted (RINGZERO_WASM_COUNT_CHAINS=1)'} entries between their blocks (${s.reformed} blocks translated again into one, ${s.reregioned} with their page, ${s.callees} as callees of a new batch; ${s.hotModules} modules under the hot tier-up budget, ${s.lateModules} under the late one, ${s.sizedModules} under one raised for size), ` +
      `${s.replays + s.conds + s.slow} helper calls (${s.replays} replays, ${s.conds} conditions, ${s.slow} slow accesses)` +
      (TIER_STATS ? '; JS tier runs/instructions: ' + ['warming', 'queued', 'in flight', 'never', 'too long'].map((n, i) => `${n} ${this.tierRuns[i]}/${this.tierInstr[i]}`).join(', ') +
        `; async install latency ${(s.installWaitMs / Math.max(1, s.installs)).toFixed(1)} ms, ${(s.installWaitInstr / Math.max(1, s.installs) / 1e3).toFixed(0)}k instructions (mean of ${s.installs})` : '') +
      (SITE_STATS ? this.writeSiteStats() : '') +
      (EXIT_STATS ? '; exits by kind (entered direct/looked up, left at limit/TLB miss/no entry, tail calls): ' + this.exitStats() : '') +
      (PROFILE ? '; helpers by kind (sy: 0 CLI 1 STI 2 RDTSC 3 RDTSCP 4 SWAPGS 5 CLD 6 STD 8+ Sreg 16 SYSCALL 17 SYSRETQ 18 TSC): ' +
        [...helperKinds].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}:${n}`).join(' ') +
        '; replayed opcodes: ' + [...replayed].sort((a, b) => b[1] - a[1]).slice(0, 16).map(([o, n]) => `${o.toString(16)}:${n}`).join(' ') +
        '; replayed by RIP (rip/opcode:count): ' + [...replayedAt].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, n]) => { const [r, o] = k.split(':'); return `${BigInt.asUintN(64, BigInt(r)).toString(16)}/${(+o).toString(16)}:${n}`; }).join(' ') : '');
  }

  /**
   * RINGZERO_WASM_SITE_STATS=FILE: write the memory-library call counts by site to FILE, one line per site with calls,
   * most first: count, linear RIP (hex, '?' unknown), physical address (hex), access; returns the --stats words.
   */
  private siteSnaps = 0;
  private writeSiteStats(file = SITE_STATS): string {
    const I = this.i32, base = SITE_BASE >> 2, n = Math.min(siteInfo.length, SITE_MAX);
    const rows: [number, number][] = [];
    let total = 0;
    for (let i = 0; i < n; i++) { const k = I[base + i]; if (k !== 0) { rows.push([k, i]); total += k; } }
    rows.sort((x, y) => y[0] - x[0]);
    const hex = (v: number | undefined) => v === undefined ? '?' : BigInt.asUintN(64, BigInt(v)).toString(16);
    // (Translator.siteCount counts every site past SITE_MAX - 1 in the last slot: that row is all of them, not the site
    // that took the slot first; a syscall loop's run listed it as one RET in __x86_return_thunk, 8 calls per syscall)
    const over = siteInfo.length > SITE_MAX - 1 ? SITE_MAX - 1 : -1;
    writeFileSync(file, rows.map(([k, i]) => i === over ? `${k} ? ? (${siteInfo.length - over} sites past SITE_MAX, together)` : `${k} ${hex(siteInfo[i].lin)} ${hex(siteInfo[i].pa)} ${siteInfo[i].kind}`).join('\n') + '\n');
    return `; memory-library calls by site: ${total} at ${rows.length} of ${siteInfo.length} sites (${file})`;
  }

  /**
   * RINGZERO_WASM_EXIT_STATS=1: the register write-back and load counters (layout.ts S_WBSTATS) and the dispatcher's
   * counts per exit kind (`x.KIND.HOW`, as exitStats), summed over the vCPUs, by name (for the control socket's
   * `stats`, whose differences give a command's own counts: bench/syscall-counts.ts); else none.
   */
  exitCounters(): Record<string, number> {
    // (SITE_STATS: each control-socket `stats` also writes the counts so far to FILE.N, N counting from 1, so that two
    // of them give one command's calls by site)
    if (SITE_STATS) this.writeSiteStats(`${SITE_STATS}.${++this.siteSnaps}`);
    if (!EXIT_STATS) return {};
    if (ENTRY_SITES !== '') this.writeEntrySites();
    const names = ['wbLib', 'wbOther', 'libCalls', 'wbBranch', 'ldCache', 'ldUncached', 'ldEntry', 'ldBranch', 'wbExit', 'wbJcc', 'wbHoist', 'wbBack'];
    const out: Record<string, number> = {};
    names.forEach((n, k) => { out[n] = this.summed(L.S_WBSTATS + 4 * k); });
    // (the dispatcher's per exit kind counts, as exitStats)
    X_NAMES.forEach((name, k) => X_HOW.forEach((how, o) => { out[`x.${name}.${how}`] = this.summed(xStat(k, o)); }));
    // (the returns to JavaScript by RIP, the exit kind of the block that left, privilege and why (run's exitSites):
    // `ret.RIP/KIND/cplN/WHY`, so that a command's own returns are two snapshots' difference: bench/io-passes
    // RINGZERO_BENCH_STATS_DUMP)
    for (const [k, v] of tierSites) {
      const [why, r] = k.split(':');
      out[`tier.${['warming', 'queued', 'inFlight', 'never', 'tooLong'][+why]}.${BigInt.asUintN(64, BigInt(r)).toString(16)}`] = v;
    }
    for (const [k, v] of exitSites) {
      const [r, x, p, why] = k.split(':');
      out[`ret.${BigInt.asUintN(64, BigInt(r)).toString(16)}/${X_NAMES[+x]}/cpl${p}/${why}`] = v;
    }
    return out;
  }

  /** The u32 counter at byte offset `off` of the state area, summed over the vCPUs'. */
  private summed(off: number): number {
    let v = 0;
    for (let i = 0; i < this.nextState; i++) v += this.i32[(L.STATE_BASE + L.STATE_STRIDE * i + off) >> 2] >>> 0;
    return v;
  }

  /** ENTRY_SITES: dispatcher entries by `target RIP:exit kind:how:dispatch word left:dispatch word entered`. */
  private readonly entrySites = new Map<string, number>();
  private entryDumps = 0;
  private entrySite(rip: number, kind: number, how: number, w: number, to: number): void {
    const k = rip + ':' + kind + ':' + how + ':' + w + ':' + to;
    this.entrySites.set(k, (this.entrySites.get(k) ?? 0) + 1);
  }
  /**
   * ENTRY_SITES: the counts so far into FILE.N (N = 0, 1, ... per call: the control socket's `stats`, so that two
   * dumps' difference is a command's), one line per site, most first: count, target RIP (hex), exit kind, named or
   * looked up, and the linear address the function that left was queued at (hex, '?' unknown) with its member, the same for the
   * function entered, and both function-table indices.
   */
  private writeEntrySites(): void {
    const hex = (v: number | undefined) => v === undefined ? '?' : BigInt.asUintN(64, BigInt(v)).toString(16);
    const rows = [...this.entrySites].sort((a, b) => b[1] - a[1]).map(([k, n]) => {
      const [rip, kind, how, w, to] = k.split(':').map(Number);
      const f = this.info[w & ((1 << K_SHIFT) - 1)], g = this.info[to & ((1 << K_SHIFT) - 1)];
      return `${n} ${hex(rip)} ${X_NAMES[kind]} ${how === 0 ? 'named' : 'lookup'} ${hex(f?.lins[0])}/${w >>> K_SHIFT} ${hex(g?.lins[0])}/${to >>> K_SHIFT} ${w & ((1 << K_SHIFT) - 1)} ${to & ((1 << K_SHIFT) - 1)}`;
    });
    writeFileSync(`${ENTRY_SITES}.${this.entryDumps++}`, rows.join('\n') + '\n');
  }

  /** RINGZERO_WASM_EXIT_STATS=1: the dispatcher's counts per exit kind, summed over the vCPUs' state areas. */
  private exitStats(): string {
    const parts = X_NAMES.map((name, k) => `${name} ${X_HOW.map((_, o) => this.summed(xStat(k, o))).join('/')}`);
    const top = [...exitSites].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, v]) => { const [r, x, p, why] = k.split(':'); return `${BigInt.asUintN(64, BigInt(r)).toString(16)}/${X_NAMES[+x]}/cpl${p}/${why}:${v}`; });
    const wb = this.exitCounters();
    return parts.join(', ') + `; register write-backs before memory-library calls/at other flushes/before region branches ${wb.wbLib}/${wb.wbOther}/${wb.wbBranch}, library calls ${wb.libCalls}` +
      `; register loads into the cache ${wb.ldCache}, uncached reads ${wb.ldUncached}, at region entries ${wb.ldEntry}, on region branches ${wb.ldBranch}` +
      '; returns to JavaScript by RIP: ' + top.join(' ');
  }

  /** A state area for a new vCPU (byte offset), or -1 when there is no room. */
  allocState(): number {
    if (this.nextState >= L.MAX_WASM_CPUS - (SITE_STATS ? 1 : 0)) return -1;
    const st = L.STATE_BASE + L.STATE_STRIDE * this.nextState++;
    this.i32[(st + L.S_PEND) >> 2] = 1; // (nothing known of the local APIC yet)
    this.sysMsrs.push(null);
    return st;
  }

  /** RIP of the start of the block current() returned last (a double from the start: see SoftCpu's constructor). */
  private curR0 = 0.5;

  /**
   * The block of the current call that helper position `pos` (translate.ts Translator.pos: member << POS_MEMBER | index << POS_IX |
   * n) is in, with its start RIP into curR0: the dispatcher stored the entered dispatch word (S_BLK) and RIP
   * (S_R0); a region's member lies pa - entered pa further in the same page.
   */
  private current(st: number, pos: number): Block {
    const w = this.i32[(st + L.S_BLK) >> 2], list = this.blocks[w & ((1 << K_SHIFT) - 1)]!;
    const b = list[pos >>> POS_MEMBER];
    this.curR0 = this.f64[(st + L.S_R0) >> 3] + (b.pa - list[w >>> K_SHIFT].pa);
    return b;
  }

  /**
   * Instructions the current call ran before the instruction at helper position `pos`, and its index in its block
   * (translate.ts Translator.pos, posN and posIx, on top of the S_NBASE the function stored).
   */
  private ranBefore(st: number, pos: number): number { return this.i32[(st + L.S_NBASE) >> 2] + posN(pos) + posIx(pos); }

  private replay(pos: number): number {
    this.curPos = pos;
    this.stats.replays++;
    const c = this.cur!, st = this.curSt;
    const b = this.current(st, pos);
    const ix = posIx(pos), n = this.ranBefore(st, pos) - ix;
    const e = b.entries[ix];
    const rip = this.curR0 + b.wasm!.offs[ix];
    if (PROFILE) { replayed.set(e.opcode, (replayed.get(e.opcode) ?? 0) + 1); const k = rip + ':' + e.opcode; replayedAt.set(k, (replayedAt.get(k) ?? 0) + 1); }
    this.takeFlags(c);
    c.ripStart = rip;
    c.instructions = this.curI0 + n + ix + 1;
    const cpl = c.cpl;
    replayEntry(c, e, rip);
    this.pushSysState(c); // (WRMSR and MOV to CR4, the only instructions that change them, are replayed)
    this.giveFlags(c);
    this.f64[(st + L.S_RIP) >> 3] = c.rip;
    // The chain stops (back to JavaScript) after an event, a halt or stop, or a mode change (the dispatcher's table
    // holds 64-bit blocks only). A privilege change in 64-bit mode (SYSCALL, SYSRET; IRET too, though the IF it
    // restores usually asks for an event check) ends the block (its TLB bank addresses are the old privilege's)
    // and the chain goes on in the new privilege: S_USER tells the dispatcher which fetch-TLB bank to look the
    // next RIP up in and which the next block's accesses use; the return-address predictions, made in the old
    // one, are dropped (RINGZERO_WASM_PRIV_CHAIN=0: the chain stops there, as before). Otherwise a replayed
    // instruction that ends the block or changes RIP's course (an indirect jump or call, RET imm, a REP string
    // instruction, ...) only ends this block: the dispatcher goes on from the RIP it left, through the fetch TLB
    // (which a CR3 or paging change flushed) as after any other block.
    if (c.eventPending || c.stopRequested || c.halted || !c.mode64 || (c.cpl !== cpl && !PRIV_CHAIN)) {
      this.stopChain();
      return 1;
    }
    if (c.cpl !== cpl) {
      this.i32[(st + L.S_USER) >> 2] = c.cpl === 3 ? 1 : 0;
      this.i32[(st + L.S_CPL) >> 2] = c.cpl;
      L.clearRas(this.i32, st);
      return 1;
    }
    return ix === b.n - 1 || e.len === 0 || c.rip !== rip + e.len ? 1 : 0;
  }

  /**
   * The helper `sy` for SYSCALL and SYSRETQ (kinds SY_SYSCALL, SY_SYSRETQ; translate.ts, a block's last instruction):
   * what replay does for them without finding the entry and setting the decoder state. The block stored the next
   * instruction's RIP in S_RIP; the flag record moves to the CPU and back around ../system/fastcall.ts's semantics
   * (SYSCALL saves RFLAGS in R11, SYSRET loads it), then S_RIP gets the target. The call goes on in the new privilege
   * (S_USER, return-address predictions dropped) as after a replay; a fault propagates to run with curPos set.
   */
  private sysCall(kind: number, pos: number): number {
    this.curPos = pos;
    const c = this.cur!, st = this.curSt, I = this.i32;
    c.instructions = this.curI0 + this.ranBefore(st, pos) + 1;
    c.rip = this.f64[(st + L.S_RIP) >> 3];
    this.takeFlags(c);
    const cpl = c.cpl;
    execSy(c, kind);
    this.giveFlags(c);
    this.f64[(st + L.S_RIP) >> 3] = c.rip;
    if (c.eventPending || c.stopRequested || c.halted || !c.mode64 || (c.cpl !== cpl && !PRIV_CHAIN)) {
      this.stopChain();
    } else if (c.cpl !== cpl) {
      I[(st + L.S_USER) >> 2] = c.cpl === 3 ? 1 : 0;
      I[(st + L.S_CPL) >> 2] = c.cpl;
      L.clearRas(I, st);
    }
    return 1;
  }

  /**
   * Where the flag record is during a call: the state area always holds it, so translated code evaluates any
   * condition (the flag library, translate.ts buildFlaglib). S_LOP >= SYNCED: the CPU's lazy fields hold the same
   * record (copied in by giveFlags at the call's start and after a replay); a translated producer stores its plain
   * kind, and the record moves back to the CPU only then (takeFlags: before a helper that reads the CPU's flags, and
   * at the call's end). (NO_RECORD, -1: only in the CPU's fields; the flag library then asks the helper `fl`.)
   */
  private takeFlags(c: SoftCpu): void {
    this.syncIf(c);
    const I = this.i32, lop = (c.wasmState + L.S_LOP) >> 2;
    const k = I[lop];
    if (k >= SYNCED || k === NO_RECORD) return;
    if (k === EXPLICIT) { c.setArith(I[(c.wasmState + L.S_LD) >> 2]); I[lop] = SYNCED; return; }
    this.syncToCpu(c);
    I[lop] = k + SYNCED;
  }

  /**
   * After translated CLI/STI (S_IFW set): S_EFL's IF -> SoftCpu.flags, before JavaScript reads the flags (a helper,
   * the call's end or fault). The helpers that change SoftCpu.flags store it in S_EFL (giveFlags, `sy`).
   */
  private syncIf(c: SoftCpu): void {
    const I = this.i32, w = (c.wasmState + L.S_IFW) >> 2;
    if (I[(c.wasmState + L.S_SYS) >> 2] !== 0) this.syncSys(c);
    if (I[w] === 0) return;
    I[w] = 0;
    c.flags = (c.flags & ~IF) | (I[(c.wasmState + L.S_EFL) >> 2] & IF);
  }

  /**
   * After a translated SYSCALL or SYSRETQ switched privilege inline (S_SYS: 1 SYSCALL, 2 SYSRETQ; translate.ts
   * emitSyscall), before JavaScript reads CPL, CS, SS or RFLAGS (any helper, the call's end or fault): SoftCpu's CS
   * and SS become the flat segments the last of them loads (each loads both, whatever came before) from the STAR
   * fields it used (the state area's copy, which only a replayed WRMSR refreshes, after this ran), and SoftCpu.flags
   * the RFLAGS translated code holds (S_EFL: the instruction's, then any inline CLI/STI's IF; the arithmetic bits
   * follow with the flag record, takeFlags).
   */
  private syncSys(c: SoftCpu): void {
    const I = this.i32, st = c.wasmState;
    const kind = I[(st + L.S_SYS) >> 2];
    I[(st + L.S_SYS) >> 2] = 0;
    I[(st + L.S_IFW) >> 2] = 0;
    c.flags = I[(st + L.S_EFL) >> 2];
    // (the CS load drops the return-address predictions (SoftCpu.invalidateFetch, for a mapping change): this runs
    // later in the call, after the translated code made new ones in the new privilege, which stay right; the inline
    // switch itself dropped the old privilege's)
    c.rasKeep = true;
    try {
      if (kind === 1) syscallSegments64(c, I[(st + L.S_STAR_CS) >> 2]);
      else sysretSegments64(c, I[(st + L.S_STAR_RET) >> 2]);
    } finally { c.rasKeep = false; }
  }

  /** Per state area: the SYSCALL MSR record (../system/fastcall.ts syscallMsrs) last copied into it. */
  private readonly sysMsrs: (SyscallMsrs | null)[] = [];

  /**
   * The SYSCALL MSRs and EFER.SCE into the state area for translated SYSCALL/SYSRETQ (layout.ts S_SCE..S_LSTAR), and
   * CR4.TSD for translated RDTSC (S_TSD), when they changed: at a call's start and after a replay (WRMSR, MOV CR4).
   */
  private pushSysState(c: SoftCpu): void {
    const st = c.wasmState, ix = (st - L.STATE_BASE) / L.STATE_STRIDE, I = this.i32;
    const m = syscallMsrs(c);
    if (m === this.sysMsrs[ix] && c.efer === I[(st + L.S_SYS_EFER) >> 2] && c.cr4 === I[(st + L.S_SYS_CR4) >> 2]) return;
    this.sysMsrs[ix] = m;
    I[(st + L.S_SYS_CR4) >> 2] = c.cr4;
    I[(st + L.S_TSD) >> 2] = c.cr4 & CR4_TSD ? 1 : 0;
    I[(st + L.S_SYS_EFER) >> 2] = c.efer;
    I[(st + L.S_SCE) >> 2] = c.efer & EFER_SCE ? 1 : 0;
    I[(st + L.S_STAR_CS) >> 2] = m.callCs;
    I[(st + L.S_STAR_RET) >> 2] = m.retBase;
    I[(st + L.S_SFMASK) >> 2] = m.mask;
    this.f64[(st + L.S_LSTAR) >> 3] = m.lstarNum;
  }

  /**
   * A helper saw an event request (or a stop): the chain stops after this block, and translated STI asks the helper
   * again (S_PEND: the request may be an interrupt that IF masked).
   */
  private stopChain(): void {
    const st = this.curSt;
    this.i32[(st + L.S_CHAIN) >> 2] = 0;
    this.i32[(st + L.S_PEND) >> 2] = 1;
  }

  /**
   * A slow memory access at helper position `pos` saw an event request (or a stop): the chain stops, and S_RIP gets
   * the RIP of the instruction after the accessing one, where the block leaves right after it (translate.ts
   * Translator.exitIfSlow, which then stores no RIP itself). When that instruction ends its block, the block's own
   * exit stores S_RIP over this.
   */
  private stopAfter(pos: number): void {
    this.stopChain();
    const st = this.curSt, b = this.current(st, pos), ix = posIx(pos), offs = b.wasm!.offs;
    this.f64[(st + L.S_RIP) >> 3] = this.curR0 + (ix + 1 < offs.length ? offs[ix + 1] : offs[ix] + b.entries[ix].len);
  }

  /** The CPU's lazy-flag record -> the state area, marked as synced (S_LOP = kind + SYNCED; kind 0: the flags). */
  private giveFlags(c: SoftCpu): void {
    const I = this.i32, s = c.wasmState >> 2, op = c.lazyOp;
    I[s + (L.S_EFL >> 2)] = c.flags;
    if (op === 0) { I[s + (L.S_LOP >> 2)] = SYNCED; I[s + (L.S_LD >> 2)] = c.flags; return; }
    I[s + (L.S_LOP >> 2)] = op + SYNCED;
    I[s + (L.S_LSZ >> 2)] = c.lazySize;
    I[s + (L.S_LD >> 2)] = c.lazyDst; I[s + (L.S_LD >> 2) + 1] = c.lazyDstHi;
    I[s + (L.S_LS >> 2)] = c.lazySrc; I[s + (L.S_LS >> 2) + 1] = c.lazySrcHi;
    I[s + (L.S_LR >> 2)] = c.lazyRes; I[s + (L.S_LR >> 2) + 1] = c.lazyResHi;
    I[s + (L.S_LCY >> 2)] = c.lazyCarry;
  }

  /** State area's flag record -> the CPU's lazy fields. */
  private syncToCpu(c: SoftCpu): void {
    const I = this.i32, s = c.wasmState >> 2;
    c.lazyOp = I[s + (L.S_LOP >> 2)];
    c.lazySize = I[s + (L.S_LSZ >> 2)];
    c.lazyDst = I[s + (L.S_LD >> 2)]; c.lazyDstHi = I[s + (L.S_LD >> 2) + 1];
    c.lazySrc = I[s + (L.S_LS >> 2)]; c.lazySrcHi = I[s + (L.S_LS >> 2) + 1];
    c.lazyRes = I[s + (L.S_LR >> 2)]; c.lazyResHi = I[s + (L.S_LR >> 2) + 1];
    c.lazyCarry = I[s + (L.S_LCY >> 2)];
    // (translate.ts NO_RES: a translated ADD/SUB record comes without its result; the CPU's readers use the bits of
    // its size, and the high half at size 8 only)
    const op = c.lazyOp;
    if (NO_RES && (op === 1 || op === 3)) {
      const dl = c.lazyDst >>> 0, sl = c.lazySrc >>> 0, lo = op === 1 ? dl + sl : dl - sl;
      c.lazyRes = lo | 0;
      c.lazyResHi = c.lazySize !== 8 ? 0 : (op === 1 ? c.lazyDstHi + c.lazySrcHi + (lo > 0xffffffff ? 1 : 0) : c.lazyDstHi - c.lazySrcHi - (lo < 0 ? 1 : 0)) | 0;
    }
  }

  /** Hot blocks waiting to be translated together (one module per batch: a module costs ~0.3 ms of its own). */
  private pending: Block[] = [];
  /** The linear address (RIP) each pending block was queued at (regions join blocks of other pages by it). */
  private lins = new Map<Block, number>();
  /** A pending block was queued in user mode (INLINE_LATE before the first flush from user mode). */
  private pendingUser = false;

  /**
   * Translate the pending blocks into one module and install them (table, dispatch entries, Block.wasm). The module
   * is compiled on the compile thread (./compile-thread.ts: the main thread posts no compile tasks to V8's worker
   * pool) and installed when it comes back (the run loop
   * yields to the event loop every few milliseconds, machine.ts); meanwhile its blocks (runs = IN_FLIGHT) keep being
   * replayed. A block whose page was written meanwhile is not installed (its generation is stale). When the event
   * loop does not turn (a caller running the CPU synchronously: tests, bench/cpu) and one of the batch's blocks has
   * been replayed ASYNC_WAIT times, the module is compiled synchronously instead. Synchronous from the start with
   * RINGZERO_WASM_ASYNC=0 or a translation threshold of 0 (tests that want translated code at the first replay).
   */
  flush(c: SoftCpu): void {
    // (the batch's bodies are encoded into its module before flushBatch returns: their buffers are scratch, emit.ts)
    withScratch(() => this.flushBatch(c));
  }

  private flushBatch(c: SoftCpu): void {
    const blocks = this.pending, lins = this.lins, user = this.pendingUser;
    this.pending = [];
    this.lins = new Map();
    this.pendingUser = false;
    const t0 = performance.now();
    const bodies: Body[] = [], done: Batch['done'] = [];
    const live: Block[] = [];
    for (const block of blocks) {
      block.runs = -1;
      // (a block whose page was written while it waited in the queue is dead: skip it)
      if (block.gen === c.codeCache.pageGen[block.pa >>> 12]) live.push(block);
    }
    for (const block of live) { const l = lins.get(block); if (l !== undefined) this.linOf.set(block, l); }
    if (REFORM) this.reform(live, lins, c.codeCache);
    if (CALLEES && CALLEES_BATCH) this.pullCallees(live, lins, c.codeCache.pageGen);
    if (CAPTURE) captureBatch(live, lins);
    // (late kernel code: KERNEL_REGION)
    const lateKernel = this.sawUser && c.cpl === 0;
    const bootKernel = !this.sawUser && c.cpl === 0;
    const lateCap = lateKernel && KERNEL_REGION > 0;
    const groups = groupRegions(live, lins, lateCap ? KERNEL_REGION : bootKernel && BOOT_REGION > 0 ? BOOT_REGION : Infinity, bootKernel || (lateCap && KERNEL_WHOLE), lateCap && KERNEL_FIRST);
    if (c.cpl === 3 && !this.sawUser) { this.sawUser = true; endBootFlags(); if (KERNEL_HOT > 0) this.kernelLate(c); }
    const tail = TAIL && this.kept.size < TAIL_KEPT_MAX ? this.tailCtx(c.codeCache) : null;
    // (loops rather than callbacks in this per-batch code, and arrays filled by push: see translate.ts pick)
    for (const group of groups) {
      // (INLINE_LATE: user code queued in user mode too when its batch is flushed before the first flush from user
      // mode, filled while the kernel ran: without, such early user blocks (busybox's, which ash runs later) kept
      // library calls until their page was formed again, and the warm ash loop made 35-583 library calls per iteration
      // from boot to boot)
      let again = INLINE_LATE && this.sawUser;
      if (INLINE_LATE && !again && user) for (const b of group) if (userLinear(lins.get(b))) { again = true; break; }
      if (group.length > 1 || midSelfEdge(group[0])) {
        const opts: EmitOpts = { inline: again, tail };
        try {
          const t = translateRegion(group, lins, opts);
          if (t !== null) {
            const gl: (number | undefined)[] = [];
            for (const g of group) gl.push(lins.get(g));
            bodies.push(t.body); done.push({ blocks: group, offs: t.offs, info: { lins: gl } });
            this.stats.regions++; this.stats.regionBlocks += group.length;
            continue;
          }
        } catch (err) {
          this.report(group[0], err);
        }
      }
      for (const block of group) {
        const opts: EmitOpts = { inline: again, tail };
        try {
          const t = translateBody(block, lins.get(block), opts);
          if (t !== null) {
            bodies.push(t.body); done.push({ blocks: [block], offs: [t.offs], info: { lins: [lins.get(block)] } });
            continue;
          }
        } catch (err) {
          this.report(block, err);
        }
      }
    }
    if (bodies.length === 0) return;
    // (a function holding a block translated before, pulled in by reform or queued again by reregion, is hot)
    let tb = t0;
    const bySize = TIER_BUDGETS === null && TIER_SIZE > 0;
    const sizes: number[] = [], hot: boolean[] = [];
    if (bySize) for (const b of bodies) sizes.push(b.length);
    else for (const d of done) { let h = false; for (const b of d.blocks) if (b.wasm !== null) { h = true; break; } hot.push(h); }
    const parts = bySize ? splitBySize(TIER_SIZE, TIER_SIZE_MAX, START_BUDGET, sizes) : splitByBudget(TIER_BUDGETS, hot);
    for (const part of parts) {
      const pb: Body[] = [], pd: Batch['done'] = [];
      for (const i of part.fns) { pb.push(bodies[i]); pd.push(done[i]); }
      const budget = moduleBudget(part.budget, this.sawUser, LATE_BUDGET);
      if (budget !== part.budget) this.stats.lateModules++;
      this.launch(c, pb, pd, budget, tail, tb);
      tb = performance.now();
    }
  }

  /** Build one module of a flushed batch's functions and compile it (in the background unless ASYNC is off). */
  private launch(c: SoftCpu, bodies: Body[], done: Batch['done'], budget: number, tail: TailCtx | null, t0: number): void {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = buildModule(bodies, tail === null ? 0 : tail.fns.length, WASM_NAMES ? done.map(fnName) : undefined);
    } catch (err) {
      this.report(firstBlock(done), err);
      return;
    }
    const t1 = performance.now();
    this.stats.buildMs += t1 - t0;
    this.stats.compileMs += t1 - t0;
    this.stats.bytes += bytes.length;
    if (TIER_BUDGETS !== null && budget === TIER_BUDGETS.hot && budget !== TIER_BUDGETS.cold) this.stats.hotModules++;
    if (TIER_BUDGETS === null && TIER_SIZE > 0 && budget > START_BUDGET) this.stats.sizedModules++;
    if (tail !== null) for (const f of tail.fns) this.pinned.add(f);
    const batch: Batch = { bytes, tails: tail === null ? [] : tail.fns, done, cache: c.codeCache, installed: false, waits: 0, slot: -1, async: false, budget, t0: t1, i0: c.instructions, cpu: c };
    if (!ASYNC || Math.min(WASM_HOT, JIT_THRESHOLD) === 0) { this.compileNow(batch); return; }
    let k = this.flying.indexOf(null);
    if (k < 0) k = this.flying.push(null) - 1;
    this.flying[k] = batch;
    batch.slot = k;
    for (const d of done) for (const block of d.blocks) block.runs = IN_FLIGHT - k;
    this.stats.asyncModules++;
    batch.async = true;
    this.compiling++;
    compileOffThread(bytes, budget, START_BUDGET).then((mod) => { if (!batch.installed) this.install(batch, mod); },
      (err) => { if (!batch.installed) { this.release(batch); this.report(firstBlock(done), err); } });
  }

  /**
   * Queue block `b` for the next flush as if it had just become hot at linear address `lin` (undefined: unknown,
   * then it joins no region across pages): a migration's destination translating the source's hot blocks before its
   * guest runs (../hot-list.ts pretranslate).
   */
  enqueue(b: Block, lin: number | undefined): void {
    if (b.mode !== 8 || b.wasm !== null || b.runs < 0) return;
    this.pending.push(b);
    if (lin !== undefined) this.lins.set(b, lin);
  }

  /** The linear address `b` was queued for translation at (undefined: not known), for ../hot-list.ts. */
  linearOf(b: Block): number | undefined {
    return this.linOf.get(b);
  }

  /** Installed blocks by the linear address they were queued at (tail calls across pages; the last one installed). */
  private readonly byLin = new Map<number, Block>();
  /**
   * Functions some module's tail exits call (translate.ts Translator.tailExit): their function-table indices are
   * never reused (allocIndex), since a tail call names its target to the helpers by that index (S_BLK) for as long
   * as its caller lives.
   */
  private readonly pinned = new WeakSet<WasmCode['fn']>();
  /** Function-table indices kept for good (pinned functions found dead by allocIndex). */
  private readonly kept = new Set<number>();
  /** Translated blocks by physical page number (REFORM, reregion): added at install, pruned when looked at. */
  private readonly byPage = new Map<number, Set<Block>>();
  /** The linear address each block was queued at (for the regions it may join later), and its translations again (REFORM). */
  private readonly linOf = new WeakMap<Block, number>();
  private readonly reformed = new WeakMap<Block, number>();

  /**
   * Add to a batch (`live`) the translated blocks of its pages that branch to one of its blocks or that one of them
   * branches to (static exits, translate.ts pageTargets), and so on from those: translated again with the batch,
   * they form one region with its blocks (translate.ts groupRegions), so their transitions become branches inside a
   * function rather than trips through the dispatcher. A block's pages become hot at different times (the blocks of
   * a loop are queued in different batches, then chain through the dispatcher for good); each block is translated
   * again at most REFORM_MAX times, at most REFORM_PULL per batch. The old translation stays valid (same bytes, same
   * page generation) until its function-table index is reclaimed (allocIndex: superseded blocks count as dead there).
   */
  private reform(live: Block[], lins: Map<Block, number>, cache: CodeCache): void {
    const gen = cache.pageGen, inBatch = new Set(live), pages = new Set<number>();
    for (const b of live) if (b.mode === 8) pages.add(b.pa >>> 12);
    let pulled = 0;
    for (const p of pages) {
      const set = this.byPage.get(p);
      if (set === undefined) continue;
      for (const t of set) if (t.wasm === null || t.gen !== gen[p]) set.delete(t);
      if (set.size === 0) { this.byPage.delete(p); continue; }
      const pas = new Set<number>(), targets = new Set<number>();
      for (const b of live) {
        if ((b.pa >>> 12) !== p || b.gen !== gen[p]) continue;
        pas.add(b.pa);
        for (const x of pageTargets(b)) targets.add(x);
      }
      for (let grew = true; grew && pulled < REFORM_PULL;) {
        grew = false;
        for (const t of set) {
          if (pulled >= REFORM_PULL) break;
          if (inBatch.has(t) || t.runs !== -1 || t.mode !== 8) continue;
          const n = this.reformed.get(t) ?? 0;
          if (n >= REFORM_MAX) continue;
          const tt = pageTargets(t);
          if (!targets.has(t.pa) && !tt.some((x) => pas.has(x))) continue;
          inBatch.add(t); live.push(t); pulled++;
          this.reformed.set(t, n + 1);
          const l = this.linOf.get(t);
          if (l !== undefined) lins.set(t, l);
          pas.add(t.pa);
          for (const x of tt) targets.add(x);
          grew = true;
        }
      }
    }
    this.stats.reformed += pulled;
  }

  /** Instructions run in translated code since the last reregion scan, and the pages translated again by it. */
  private sinceRegion = 0;
  private regioned = new Map<number, { gen: number; n: number }>();

  /**
   * Every REGION_SCAN instructions: the pages whose translated blocks the dispatcher entered at least REGION_HITS
   * times from a block that named them (S_PHITS, counted by buildDispatcher: a static exit into another function of
   * the same page, or a RET whose return address the return-address stack predicted) get their translated blocks translated again together, in one batch, so that
   * groupRegions makes one region of those that branch to each other. reform does that only when a new batch has
   * blocks in the page; a loop whose blocks became hot in different batches, and whose page gets no new hot block
   * afterwards, chained through the dispatcher for good (busybox ash's `while` loop: 385-711 such entries per
   * iteration of ~14.8k instructions, varying from boot to boot with batch timing). A page is done at most
   * REGION_MAX_PER_PAGE times, and only while two of its blocks that branch to each other are in different
   * functions; at most REGION_PAGES pages per scan. Boot + ash loop of 60000, the loop's main-thread CPU, alternating
   * side-by-side pairs on a quiet host (RINGZERO_WASM_REREGION=0 / on, at d0a3146): 5.08/4.43, 4.64/4.63, 4.47/4.30,
   * 5.19/4.47, 4.66/4.65, 4.58/4.42 s (dispatcher-named entries 54-63M -> 42-49M in the first four); CPU to the prompt
   * unchanged (6.86/6.93, 6.91/6.92, 6.72/6.64, 7.22/7.03 s). Thresholds of 2000 and 10000 translated 4-8x as many
   * blocks again and were slower (each costs main-thread time to build).
   */
  private reregion(c: SoftCpu): void {
    this.sinceRegion = 0;
    const st = c.wasmState, I = this.i32, base = (st + L.S_PHITS) >> 2;
    // (user pages (USER_HITS) and the kernel's (REGION_HITS) have thresholds of their own: the page's hash counter
    // is kept with its count, and a page is hot when it reaches the threshold of its kind)
    const least = Math.min(REGION_HITS, USER_HITS);
    let hot: Map<number, number> | null = null;
    for (let i = 0; i < L.PHITS_N; i++) {
      if (I[base + i] >= least) (hot ??= new Map()).set(i, I[base + i]);
    }
    I.fill(0, base, base + L.PHITS_N);
    if (hot === null) return;
    const gen = c.codeCache.pageGen, mask = (1 << K_SHIFT) - 1;
    let pages = 0;
    for (const [p, set] of this.byPage) {
      const hits = hot.get(p & (L.PHITS_N - 1));
      if (hits === undefined) continue;
      // (a user page is hot at `least`, min(REGION_HITS, USER_HITS), which it reached to be here; a kernel page at REGION_HITS)
      const user = this.userPage(set);
      if (hits < REGION_HITS && !user) continue;
      // (counted per page generation: code loaded later into the same page starts again)
      const r = this.regioned.get(p), done = r !== undefined && r.gen === gen[p] ? r.n : 0;
      if (done >= REGION_MAX_PER_PAGE) continue;
      const blocks: Block[] = [], byPa = new Map<number, Block>();
      for (const t of set) {
        if (t.wasm === null || t.gen !== gen[p]) { set.delete(t); continue; }
        if (t.runs !== -1 || t.mode !== 8) continue;
        blocks.push(t); byPa.set(t.pa, t);
      }
      let split = false;
      for (const t of blocks) {
        for (const x of pageTargets(t)) {
          const o = byPa.get(x);
          if (o !== undefined && (o.wasm!.idx & mask) !== (t.wasm!.idx & mask)) { split = true; break; }
        }
        if (split) break;
      }
      // (CALLEES: the blocks of other pages this page's static exits reach, not yet in their caller's function)
      const pulled = CALLEES && user ? this.callees(blocks, gen) : null;
      if (pulled !== null && pulled.split) split = true;
      if (!split) continue;
      this.regioned.set(p, { gen: gen[p], n: done + 1 });
      if (pulled !== null) for (const t of pulled.blocks) if (!blocks.includes(t)) blocks.push(t);
      for (const t of blocks) {
        if (this.pending.includes(t)) continue;
        this.pending.push(t);
        const l = this.linOf.get(t);
        if (l !== undefined) this.lins.set(t, l);
      }
      this.stats.reregioned += blocks.length;
      if (++pages >= REGION_PAGES) break;
    }
    if (pages > 0) this.flush(c);
  }

  /**
   * CALLEES: the translated blocks of other pages that `blocks` (one page's, with their linear addresses) reach by a
   * static exit (a CALL's target, most often: a function of busybox or libc in another page), each with the blocks of
   * its page that it reaches in turn (its function's body, up to the RET), at most CALLEE_MAX in all, and whether one
   * of them is in another function than a block that reaches it (then the page is worth translating again with them:
   * translate.ts groupRegions joins them into the caller's region by linear address, the CALL becomes a branch
   * (crossBranch) and with RET_BRANCH the RET too).
   */
  private callees(blocks: Block[], gen: Int32Array, seen = new Set<Block>(blocks), may: (t: Block) => boolean = () => true): { blocks: Block[]; split: boolean } {
    const out: Block[] = [], mask = (1 << K_SHIFT) - 1;
    let split = false;
    const ok = (t: Block | undefined): t is Block => t !== undefined && t.wasm !== null && t.runs === -1 && t.mode === 8 && t.gen === gen[t.pa >>> 12] && may(t);
    for (const c of blocks) {
      if (out.length >= CALLEE_MAX) break;
      const l = this.linOf.get(c);
      if (l === undefined) continue;
      const offs = crossTargets(c);
      // (IND_JOIN: where its indirect JMP or CALL went last)
      const it = indTarget(c);
      if (it !== 0) offs.push(it - l);
      for (const off of offs) {
        const t = this.byLin.get(l + off);
        if (!ok(t) || seen.has(t) || this.linOf.get(t) !== l + off || !userLinear(l + off)) continue;
        if (c.wasm === null || (t.wasm!.idx & mask) !== (c.wasm.idx & mask)) split = true;
        // (the callee's blocks of its page that it reaches: breadth first, within CALLEE_MAX)
        const todo = [t];
        seen.add(t);
        while (todo.length > 0 && out.length < CALLEE_MAX) {
          const x = todo.shift()!;
          out.push(x);
          // (IND_JOIN: a PLT slot's `jmp [GOT]` leads on to the function it jumps to)
          const xt = indTarget(x), xl = this.linOf.get(x);
          if (xt !== 0 && xl !== undefined) {
            const z = this.byLin.get(xt);
            if (ok(z) && !seen.has(z) && this.linOf.get(z) === xt && userLinear(xt)) { seen.add(z); todo.push(z); }
          }
          const page = this.byPage.get(x.pa >>> 12);
          if (page === undefined) continue;
          for (const y of pageTargets(x)) {
            for (const z of page) {
              if (z.pa !== y || seen.has(z) || !ok(z) || z.gen !== x.gen || this.linOf.get(z) === undefined) continue;
              seen.add(z); todo.push(z);
              break;
            }
          }
        }
        if (out.length >= CALLEE_MAX) break;
      }
    }
    return { blocks: out, split };
  }

  /** Translations again of each block pulled in by pullCallees (at most CALLEE_COPIES). */
  private readonly copies = new WeakMap<Block, number>();

  /**
   * CALLEES, when a batch is built: its user blocks' static exits into other pages that reach a block translated
   * before (a function of busybox or libc called from the new code) bring that block and the blocks of its page it
   * reaches (callees) into the batch, at most CALLEE_MAX per batch and CALLEE_COPIES times each block, so that
   * groupRegions joins callers and callees into one region (by linear address) as when they are hot together.
   */
  private pullCallees(live: Block[], lins: Map<Block, number>, gen: Int32Array): void {
    const user: Block[] = [];
    for (const b of live) { const l = lins.get(b); if (l !== undefined && userLinear(l)) user.push(b); }
    if (user.length === 0) return;
    const got = this.callees(user, gen, new Set(live), (t) => (this.copies.get(t) ?? 0) < CALLEE_COPIES);
    for (const t of got.blocks) {
      live.push(t);
      this.stats.callees++;
      this.copies.set(t, (this.copies.get(t) ?? 0) + 1);
      const l = this.linOf.get(t);
      if (l !== undefined) lins.set(t, l);
    }
  }

  /** Whether the translated blocks of a page (a byPage set) were queued at user (lower-half) linear addresses. */
  private userPage(set: Set<Block>): boolean {
    for (const t of set) {
      const l = this.linOf.get(t);
      if (l !== undefined) return userLinear(l);
    }
    return false;
  }

  /** Batches being compiled in the background, by Batch.slot (null: a free slot). */
  private readonly flying: (Batch | null)[] = [];
  /**
   * Modules being compiled in the background (not installed nor given up yet). While there are any, the machine's run
   * loop turns the event loop more often (src/vmm/machine.ts): V8 finishes WebAssembly.compile in steps that run as
   * tasks on the main thread's event loop (two or three of them), so with the loop turning every 8 ms a module took
   * 20-30 ms to come back on the Linux boot (median; its compile is ~0.5 ms of CPU), and its blocks were replayed
   * 1.2M times meanwhile.
   */
  compiling = 0;

  private compileNow(batch: Batch): void {
    const t0 = performance.now();
    try {
      this.install(batch, underBudget(batch.budget, () => new WebAssembly.Module(batch.bytes)));
    } catch (err) {
      this.release(batch);
      this.report(firstBlock(batch.done), err);
    } finally {
      this.stats.compileMs += performance.now() - t0;
    }
  }

  /** Give up on a batch: its blocks are replayed for good. */
  private release(batch: Batch): void {
    if (batch.async && !batch.installed) this.compiling--;
    batch.installed = true;
    if (batch.slot >= 0) { this.flying[batch.slot] = null; batch.slot = -1; }
    for (const { blocks } of batch.done) for (const block of blocks) block.runs = -1;
  }

  /** Function-table indices of dead translations, for reuse. */
  private free: number[] = [];
  /** Per function-table index: its FnInfo (undefined: none there). */
  private readonly info: (FnInfo | undefined)[] = [undefined];

  /**
   * The translations a batch's exits may tail-call (translate.ts TailCtx): by physical address, the installed
   * translation of a block of that address and page generation (byPage); by linear address, the installed block last
   * queued at it (byLin) whose page generation is still current.
   */
  private tailCtx(cache: CodeCache): TailCtx {
    return new TailLookup(this.table, this.byPage, this.byLin, cache.pageGen);
  }

  /**
   * A function-table index for a new translation: a free one; else a new one while the table has room; else the
   * indices of translations whose page was written since (dead: every lookup compares the page generation first,
   * so nothing can enter them again) are reclaimed: their table entries, dispatch entries and Block.wasm are
   * dropped, so their modules can be collected; the table grows only when everything in it is alive.
   */
  private allocIndex(cache: CodeCache): number {
    let idx = this.free.pop();
    if (idx !== undefined) return idx;
    if (this.blocks.length < this.table.length) { this.blocks.push(null); this.info.push(undefined); return this.blocks.length - 1; }
    const gen = cache.pageGen;
    for (let i = 1; i < this.blocks.length; i++) {
      const list = this.blocks[i];
      // (a region's blocks of one page share its generation; a region spanning pages is dead when all its pages are)
      if (list === null || this.kept.has(i)) continue;
      let lives = false;
      for (let k = 0; k < list.length && !lives; k++) lives = livesIn(list[k], i, k, gen);
      if (lives) continue;
      const fn = this.table.get(i) as unknown as WasmCode['fn'] | null;
      // (a pinned function keeps its index and its blocks there: a tail call may still enter it, for its blocks
      // whose page was not written since, and helpers find them by that index)
      const pin = fn !== null && this.pinned.has(fn);
      if (pin) this.kept.add(i);
      else this.blocks[i] = null;
      this.table.set(i, null);
      this.info[i] = undefined;
      for (let k = 0; k < list.length; k++) {
        const b = list[k], w = i | (k << K_SHIFT);
        this.clearEntries(b.pa, w);
        if (b.wasm !== null && b.wasm.idx !== w) continue;
        b.wasm = null;
        // (else byLin keeps the dead block, and its entries, until another block is queued at its linear address)
        const l = this.linOf.get(b);
        if (l !== undefined && this.byLin.get(l) === b) this.byLin.delete(l);
        const key = b.pa * 16 + b.mode;
        if (cache.translated.get(key) === b) cache.translated.delete(key);
      }
      if (pin) continue;
      this.free.push(i);
      this.stats.freed++;
    }
    // (keep a quarter of the table free at least: a sweep per allocation when nearly everything is alive would cost)
    if (this.free.length < this.table.length >> 2) this.table.grow(this.table.length);
    idx = this.free.pop();
    if (idx !== undefined) return idx;
    this.blocks.push(null);
    this.info.push(undefined);
    return this.blocks.length - 1;
  }

  /** Live translations (function-table entries in use) and the table's size (tests, statistics). */
  tableUse(): { live: number; size: number } {
    this.modules();
    return { live: this.blocks.length - 1 - this.free.length, size: this.table.length };
  }

  private install(batch: Batch, mod: WebAssembly.Module): void {
    const t0 = performance.now();
    if (batch.async) { this.stats.installs++; this.stats.installWaitMs += t0 - batch.t0; this.stats.installWaitInstr += batch.cpu.instructions - batch.i0; }
    this.modules();
    this.release(batch);
    let imports = this.imports;
    if (batch.tails.length > 0) {
      const t: Record<string, WasmCode['fn']> = {};
      for (let i = 0; i < batch.tails.length; i++) t['f' + i] = batch.tails[i];
      imports = { e: this.imports.e, t: t as unknown as WebAssembly.ModuleImports };
    }
    const inst = new WebAssembly.Instance(mod, imports);
    this.stats.modules++;
    const cache = batch.cache;
    // (loops, not callbacks: see translate.ts pick)
    for (let i = 0; i < batch.done.length; i++) {
      const { blocks, offs, info } = batch.done[i];
      // (a region spanning pages is installed for its members whose page was not written meanwhile: its branches
      // into another page check that page's generation)
      let live = 0;
      for (const b of blocks) if (b.gen === cache.pageGen[b.pa >>> 12]) live++;
      this.stats.stale += blocks.length - live;
      if (live === 0) continue;
      const fn = inst.exports['f' + i] as WasmCode['fn'];
      const idx = this.allocIndex(cache);
      if (idx >= 1 << K_SHIFT) { this.blocks[idx] = null; this.free.push(idx); continue; }
      this.table.set(idx, fn as unknown as WebAssembly.ExportValue);
      this.blocks[idx] = blocks;
      this.info[idx] = info;
      for (let k = 0; k < blocks.length; k++) {
        const block = blocks[k];
        if (block.gen !== cache.pageGen[block.pa >>> 12]) continue;
        const w = idx | (k << K_SHIFT);
        this.setEntry(block, w, cache);
        block.wasm = { fn, offs: offs[k], idx: w };
        if (TAIL) { const l = this.linOf.get(block); if (l !== undefined) this.byLin.set(l, block); }
        if (REFORM || REREGION) {
          const p = block.pa >>> 12;
          let set = this.byPage.get(p);
          if (set === undefined) this.byPage.set(p, set = new Set());
          set.add(block);
        }
        this.stats.compiled++;
        cache.stats.compiled++;
        cache.translated.set(block.pa * 16 + block.mode, block);
      }
    }
    this.stats.compileMs += performance.now() - t0;
  }

  /**
   * The dispatch entry of `block`'s address (2-way set, layout.ts dispatchEntry): the way that holds the same
   * address, else a free or dead one (stale page generation), else way 0 after its entry moves to way 1 (whose
   * entry is dropped: the older of the two, or the one whose address was installed again last).
   */
  private setEntry(block: Block, idx: number, cache: CodeCache): void {
    const I = this.i32, pa = block.pa, s = L.dispatchEntry(pa) >> 2, gen = cache.pageGen;
    let e = s;
    if (I[s] !== pa) {
      const dead = (w: number) => I[w + 2] === 0 || I[w + 1] !== gen[I[w] >>> 12];
      if (I[s + 4] === pa || (!dead(s) && dead(s + 4))) e = s + 4;
      else if (!dead(s)) { I[s + 4] = I[s]; I[s + 5] = I[s + 1]; I[s + 6] = I[s + 2]; I[s + 7] = I[s + 3]; }
    }
    I[e] = pa; I[e + 1] = block.gen; I[e + 2] = idx; I[e + 3] = block.n;
  }

  /** Empty the dispatch entries of physical address `pa` that name dispatch word `w` (its function is going away). */
  private clearEntries(pa: number, w: number): void {
    const I = this.i32, s = L.dispatchEntry(pa) >> 2;
    for (let e = s; e <= s + 4; e += 4) if (I[e + 2] === w) { I[e] = 0; I[e + 1] = 0; I[e + 2] = 0; I[e + 3] = 0; }
  }

  private report(block: Block, err: unknown): void {
    if (reported) return;
    reported = true;
    process.stderr.write(`ringzero: wasm JIT: could not translate a block at ${block.pa.toString(16)}: ${(err as Error).message}\n`);
  }

  /**
   * Run block `b` (at most `room` instructions) in translated code, queueing it for translation once it is hot;
   * otherwise replay it. Returns the instructions executed; faults propagate as from SoftCpu.runBlock.
   */
  exec(c: SoftCpu, b: Block, room: number): number {
    const w = b.wasm;
    if (w === null) {
      if (b.runs >= 0 && b.mode === 8) {
        const late = this.kHot > 0 && c.cpl === 0;
        const hot = this.hotAt(c);
        const r = ++b.runs;
        if (r === hot + 1) { this.pending.push(b); this.lins.set(b, c.rip); if (c.cpl === 3) this.pendingUser = true; }
        // A batch is translated when it is full, or when one of its blocks keeps running meanwhile.
        if (r > hot && (this.pending.length >= (hot === 0 ? 1 : WASM_BATCH) || r > hot + (late ? this.kWait : WASM_BATCH_WAIT))) this.flush(c);
        if (b.wasm !== null && b.n <= room) return this.run(c, b.wasm.idx, room);
      } else if (b.runs <= IN_FLIGHT) {
        const batch = this.flying[IN_FLIGHT - b.runs];
        if (batch !== null && ++batch.waits > ASYNC_WAIT) {
          this.stats.syncFallbacks++;
          this.compileNow(batch);
          if (b.wasm !== null && b.n <= room) return this.run(c, b.wasm.idx, room);
        }
      }
      return TIER_STATS ? this.tierCount(c, b, room) : c.runBlock(b, room);
    }
    if (b.n > room) {
      // (SLICE_END: end the run slice here rather than replay the block's first instructions: SoftCpu.sliceEnd)
      if (c.sliceEnd) return room;
      return TIER_STATS ? this.tierCount(c, b, room) : c.runBlock(b, room);
    }
    // A translated block reached from JavaScript whose dispatch entry is gone (a third block of its 2-way set took
    // its way, or its entry was cleared with a function it was translated into before): put it back, or the
    // dispatcher returns to JavaScript before it on every pass. __alloc_pages+0x162 (a RET target) and
    // __switch_to+0x292 lost theirs on a Linux boot: ~2.5 returns per context switch of a `dd | cat` pipe.
    if (REINSTALL) {
      const I = this.i32, s = L.dispatchEntry(b.pa) >> 2;
      if (!(I[s] === b.pa && I[s + 2] === w.idx) && !(I[s + 4] === b.pa && I[s + 6] === w.idx)) { this.setEntry(b, w.idx, c.codeCache); this.stats.reinstalled++; }
    }
    return this.run(c, w.idx, room);
  }

  /** The replays after which a block is queued for translation: KERNEL_HOT for kernel code once the boot is over. */
  private hotAt(c: SoftCpu): number {
    return this.kHot > 0 && c.cpl === 0 ? this.kHot : Math.min(WASM_HOT, JIT_THRESHOLD);
  }

  /** INLINE_LATE: a batch was flushed from user code (the kernel's boot is over). */
  private sawUser = false;
  /** KERNEL_HOT and KERNEL_WAIT once the boot is over (kernelLate), else 0. */
  private kHot = 0;
  private kWait = WASM_BATCH_WAIT;

  /**
   * The boot is over: kernel blocks are queued at KERNEL_HOT replays from now on. A block still warming past that
   * count would never see its `runs` equal the threshold + 1 (exec queues it then): it is set back to the threshold, so
   * its next replay queues it.
   */
  private kernelLate(c: SoftCpu): void {
    const hot = Math.min(WASM_HOT, JIT_THRESHOLD);
    if (hot === 0 || KERNEL_HOT >= hot) return;
    this.kHot = KERNEL_HOT;
    this.kWait = KERNEL_WAIT > 0 ? KERNEL_WAIT : WASM_BATCH_WAIT;
    const clamp = (b: Block | undefined) => { if (b !== undefined && b.runs > KERNEL_HOT && b.runs <= hot) b.runs = KERNEL_HOT; };
    for (const b of c.codeCache.table) clamp(b);
    for (const b of c.codeCache.displaced.values()) clamp(b);
  }

  /**
   * RINGZERO_TIER_STATS=1: runs and instructions of blocks replayed in JavaScript, by why they were not in wasm:
   * 0 warming (runs <= WASM_HOT), 1 queued for a batch, 2 in flight (module compiling), 3 never (not 64-bit, not
   * translatable, or stale when ready), 4 translated but longer than the budget left.
   */
  readonly tierRuns = new Float64Array(5);
  readonly tierInstr = new Float64Array(5);
  private tierCount(c: SoftCpu, b: Block, room: number): number {
    const hot = this.hotAt(c);
    const s = b.wasm !== null ? 4 : b.runs <= IN_FLIGHT ? 2 : b.runs < 0 || b.mode !== 8 ? 3 : b.runs <= hot ? 0 : 1;
    // (with EXIT_STATS too: by the block's RIP, in exitCounters as `tier.WHY.RIP`)
    const key = EXIT_STATS ? s + ':' + c.rip : '';
    const k = c.runBlock(b, room);
    if (EXIT_STATS) tierSites.set(key, (tierSites.get(key) ?? 0) + k);
    this.tierRuns[s]++;
    this.tierInstr[s] += k;
    return k;
  }

  /**
   * Run the translated block at function-table index `idx` (the current RIP's block: SoftCpu.execBlock found it in
   * the dispatch table, of the current page generation and at most `room` instructions long) and the blocks the
   * dispatcher chains after it. Returns the instructions executed; faults propagate as from exec.
   */
  enter(c: SoftCpu, idx: number, room: number): number {
    this.stats.tableCalls++;
    return this.run(c, idx, room);
  }

  private run(c: SoftCpu, idx: number, room: number): number {
    const st = c.wasmState, I = this.i32;
    this.giveFlags(c);
    const r0 = c.rip, I0 = c.instructions;
    this.cur = c; this.curI0 = I0; this.curPos = 0; this.curSt = st;
    I[(st + L.S_CPL) >> 2] = c.cpl;
    if (c.eventPending) I[(st + L.S_PEND) >> 2] = 1;
    this.pushSysState(c);
    this.stats.calls++;
    let k: number;
    try {
      k = this.dispatch(st, r0, room, c.cpl === 3 ? 1 : 0, idx);
    } catch (err) {
      if (err === CPU_FAULT) {
        // The faulting block is the dispatcher's current one; nbase instructions ran before it.
        const b = this.current(st, this.curPos);
        const ran = this.ranBefore(st, this.curPos);
        c.instructions = I0 + ran + 1;
        c.ripStart = this.curR0 + b.wasm!.offs[posIx(this.curPos)];
        c.blockInstructions += ran;
        c.jitInstructions += ran;
      }
      this.takeFlags(c);
      this.cur = null;
      throw err;
    }
    this.takeFlags(c);
    this.cur = null;
    const chains = I[(st + L.S_CHAINS) >> 2], direct = I[(st + L.S_DIRECT) >> 2], intra = I[(st + L.S_INTRA) >> 2];
    const tails = I[(st + L.S_TAILS) >> 2];
    if (chains !== 0 || direct !== 0 || intra !== 0 || tails !== 0) {
      c.codeCache.stats.chainHits += chains + direct + intra + tails; this.stats.direct += direct; this.stats.intra += intra;
      this.stats.tails += tails;
      I[(st + L.S_CHAINS) >> 2] = 0; I[(st + L.S_DIRECT) >> 2] = 0; I[(st + L.S_INTRA) >> 2] = 0; I[(st + L.S_TAILS) >> 2] = 0;
    }
    c.rip = this.f64[(st + L.S_RIP) >> 3];
    if (EXIT_STATS) {
      // (why the call ended: an event or stop cleared S_CHAIN, the budget or CHAIN_LIMIT, else the next RIP had no
      // translated block the dispatcher could enter: not translated, a fetch-TLB miss, stale)
      const why = I[(st + L.S_CHAIN) >> 2] === 0 ? 'event' : k >= Math.min(room, CHAIN_LIMIT) ? 'limit' : 'miss';
      const key = c.rip + ':' + I[(st + L.S_XKIND) >> 2] + ':' + c.cpl + ':' + why;
      exitSites.set(key, (exitSites.get(key) ?? 0) + 1);
    }
    c.instructions = I0 + k;
    c.blockInstructions += k;
    c.jitInstructions += k;
    if ((this.sinceRegion += k) >= REGION_SCAN && REREGION) this.reregion(c);
    return k;
  }
}

let reported = false;
/** RINGZERO_WASM_PROFILE=1: count replayed instructions by opcode (shown by --stats). */
const PROFILE = process.env.RINGZERO_WASM_PROFILE === '1';
/** RINGZERO_TIER_STATS=1: WasmEngine.tierCount's counters (shown by --stats). */
const TIER_STATS = process.env.RINGZERO_TIER_STATS === '1';
/**
 * Batches pull in the translated blocks of their pages they branch with (WasmEngine.reform; RINGZERO_WASM_REFORM=1:
 * on). Off by default since session 24: the re-formed functions were ~61% of the TurboFan bytes V8 compiled on a
 * boot (hot code compiled and tiered up a second time), while reregion, which re-forms only the pages the dispatcher
 * keeps entering, gives the hot loops their regions anyway. One boot each (--trace-wasm-compilation-times, loaded
 * host): on/off 19.6k/15.3k blocks translated, TurboFan 848/772 functions, 7.7/4.8 MB of bodies. bench/engines
 * --paired --bins on,off at load 10-30, 3 pairs each: boot wall 0.84x (0.79-0.97), process CPU 0.84x (0.74-0.97),
 * main thread 0.96x; md5 0.98x, ash 0.99x, syscalls 1.00x (main thread). Boot + ash loop of 30000: dispatcher entries
 * 22.7M -> 27.5M, tail calls 19.1M -> 21.3M, region-internal branches 92.0M -> 85.8M. Pulling in only blocks
 * installed less than 2M (10M, 40M) instructions before: 2.4k (3.2k, 4.0k) re-formed, 6.1 (6.6, 7.2) MB TurboFan.
 */
let REFORM = process.env.RINGZERO_WASM_REFORM === '1';
/** Switch REFORM (tests of the dispatcher's own chaining, which regions would bypass); returns the old setting. */
export function setReform(on: boolean): boolean { const old = REFORM; REFORM = on; return old; }
/** Times one block is translated again that way, and blocks pulled into one batch at most. */
const REFORM_MAX = Number(process.env.RINGZERO_WASM_REFORM_MAX ?? 2);
const REFORM_PULL = Number(process.env.RINGZERO_WASM_REFORM_PULL ?? 32);
/**
 * RINGZERO_WASM_CAPTURE=FILE: every batch's blocks (after reform, before grouping) are appended to FILE, one JSON
 * line per batch, for bench/wasm-build.ts, which translates them again and again (the build's cost per block on the
 * main thread, measured without a boot). A block is written in full the first time, by number afterwards.
 */
const CAPTURE = process.env.RINGZERO_WASM_CAPTURE ?? '';
const captured = new WeakMap<Block, number>();
let capturedN = 0;
function captureBatch(live: Block[], lins: Map<Block, number>): void {
  const out = live.map((b) => {
    const l = lins.get(b);
    let id = captured.get(b);
    if (id !== undefined) return { id, l };
    captured.set(b, id = capturedN++);
    const es = b.entries.map((e) => {
      const r = e as unknown as Record<string, number>;
      return [r.pk, r.dec1, r.dec2, e.a, e.b, e.imm, e.immHi, e.op, e.base, e.index, e.disp];
    });
    return { id, l, pa: b.pa, mode: b.mode, gen: b.gen, pfn2: b.pfn2, gen2: b.gen2, es };
  });
  appendFileSync(CAPTURE, JSON.stringify(out) + '\n');
}

/**
 * WasmEngine.reregion (RINGZERO_WASM_REREGION=0: off): its scan interval in guest instructions run in translated
 * code, the dispatcher entries named into a page (per scan) that make it a candidate, the pages per scan and the
 * times one page is translated again that way.
 */
let REREGION = process.env.RINGZERO_WASM_REREGION !== '0';
let REGION_SCAN = Number(process.env.RINGZERO_WASM_REGION_SCAN ?? 4_000_000);
let REGION_HITS = Number(process.env.RINGZERO_WASM_REGION_HITS ?? 40000);
/**
 * The same threshold for pages of user code (blocks queued at lower-half linear addresses; RINGZERO_WASM_USER_HITS).
 * busybox ash's evaluator spreads its loop over many pages, each entered a few thousand times per scan: at 40000,
 * bench/engines' ash loop left its functions through the dispatcher ~292 times per iteration of ~14.8k guest
 * instructions into the same page (x.same-page.direct), and tail-called ~230 more (RINGZERO_WASM_SITE_EXITS: the
 * sites are spread over busybox, the most frequent index_in_strings' compare loop, ~104 per iteration); at 2000 39
 * and 55, memory-library calls 2512 -> 1738 (more blocks of loops in one region: inline probes). All pages at 2000
 * cost the boot ~25% more code (4454 blocks translated again with their page instead of 586; paired against base28,
 * load ~15: boot 1.07x, md5 1.06x, syscalls 1.03x wall), hence user pages only (745 blocks at the boot). Paired
 * against base28 (session 28, load ~15, 3 runs): ash wall 0.89x (0.87-0.92), guest thread 0.86x (0.84-0.89); md5
 * 1.03x (0.93-1.10), thread 0.99x; syscalls 0.96x (0.86-1.04); boot 1.03x (one pair). On the quiet host at the
 * session's end, against 40000: 2000 ash 0.84x (0.83-0.87) but md5 1.16x (0.95-1.28) and 1.12x (1.06-1.25, 4 runs:
 * its cold pass forms its pages again while it runs); 8000 ash 0.90x (0.88-0.92), md5 1.01x (0.91-1.02): 8000.
 */
let USER_HITS = Number(process.env.RINGZERO_WASM_USER_HITS ?? 8000);
const REGION_PAGES = Number(process.env.RINGZERO_WASM_REGION_PAGES ?? 4);
/**
 * RINGZERO_WASM_CALLEES=N (64 by default since session 30, with RET_BRANCH and IND_JOIN: translate.ts RET_BRANCH has
 * the quiet pairs; 0: off): a new batch's user blocks (WasmEngine.pullCallees), and a user page that reregion
 * translates again, take along up to N translated blocks of other pages that they reach by static exits (the functions
 * they call, translated before them: WasmEngine.callees), so that one region holds a caller and its callees: the CALL
 * is a branch (translate.ts crossBranch), and with RET_BRANCH the RET too. busybox ash spreads its loop over busybox's
 * and libc's functions in many pages, each called from several places, so callers got hot after their callees and
 * every call and return left the function. ash loop per iteration (bench/syscall-counts --ash --exit-stats, 20k, with
 * RET_BRANCH): dispatcher entries + tail calls 352 + 363 -> 271 + 263 (N = 64), region branches 1764 -> 1944; RETs
 * through the dispatcher 257 -> 231, cross-page tail calls 240 -> 178 (16: 306 + 311; 256 with 16 copies: 281 + 301).
 */
let CALLEE_MAX = Number(process.env.RINGZERO_WASM_CALLEES ?? 64);
let CALLEES = CALLEE_MAX > 0;
/**
 * CALLEES in new batches too (RINGZERO_WASM_CALLEES_BATCH, on; =0: only when reregion translates a hot user page
 * again, so the boot's user code, translated once and rarely hot, does not pay for the callees' second translations).
 * Session 29, quiet host, --paired 3 runs against CALLEES off (with RET_BRANCH and IND_JOIN): in new batches too, ash
 * 0.90x, md5 1.05x, boot 1.05x; reregion only, ash 1.00x (0.91-1.04), md5 0.95x, syscalls 0.96x, boot 0.99x. So the
 * ash loop's gain comes from the new batches, and so does the boot's cost.
 */
const CALLEES_BATCH = process.env.RINGZERO_WASM_CALLEES_BATCH !== '0';
/**
 * CALLEES: the times one block is translated again into a new batch's regions (RINGZERO_WASM_CALLEE_COPIES; session
 * 29: 4). Session 30 (bench/phase-counts, RET_BRANCH + CALLEES=64 + IND_JOIN): at 4 the boot took 342 copies, md5's
 * cold and warm runs 64 + 63 (each run's new batch took md5_process_block64's second page again: a new compile of
 * the hot loop), ash 350, syscalls 64 + 29; at 1: 186, 52 + 23, 219, 26 + 3, warm ash dispatcher entries + tail
 * calls per iteration 570-642 (4: 559-565; all off: 701). bench/engines --paired against base30 (host load 13-20,
 * 3 runs each): at 4 ash 0.94x wall (0.89-0.95; thread 0.90x), md5 1.05x (1.04-1.06; process CPU 1.04x, thread
 * 1.00x: the copies' compiles), syscalls 0.99x, boot 1.07x (one pair, process CPU 1.05x); at 1 (two runs of 3) ash
 * 0.97x (0.91-1.03) and 0.94x (0.89-0.96; thread 0.87x), md5 1.00x (0.93-1.13) and 1.00x (0.92-1.02), syscalls
 * 0.89x and 0.98x, boot 0.97x and 0.98x (process CPU 1.03x, 1.00x; one pair each).
 */
const CALLEE_COPIES = Number(process.env.RINGZERO_WASM_CALLEE_COPIES ?? 1);
/** Switch CALLEES and set its block count (tests); returns the old count (0: off). */
export function setCallees(n: number): number { const old = CALLEE_MAX; CALLEE_MAX = n; CALLEES = n > 0; return old; }
const REGION_MAX_PER_PAGE = Number(process.env.RINGZERO_WASM_REGION_PER_PAGE ?? 2);
/** Switch reregion and set its scan interval and thresholds (tests; user pages' as the others' unless given); returns the old switch. */
export function setReregion(on: boolean, scan = REGION_SCAN, hits?: number, userHits?: number): boolean {
  const old = REREGION;
  REREGION = on; REGION_SCAN = scan;
  if (hits !== undefined) REGION_HITS = hits;
  USER_HITS = userHits ?? hits ?? USER_HITS;
  return old;
}
/** reregion's switch, scan interval and thresholds (tests restore them). */
export function reregionSettings(): { on: boolean; scan: number; hits: number; userHits: number } {
  return { on: REREGION, scan: REGION_SCAN, hits: REGION_HITS, userHits: USER_HITS };
}
/**
 * Whether block `b`, member `k` of the function at table index `idx`, still runs there: its page not written since
 * (`gen`: CodeCache.pageGen) and not translated again elsewhere (REFORM into a later region).
 */
function livesIn(b: Block, idx: number, k: number, gen: Int32Array): boolean {
  return b.gen === gen[b.pa >>> 12] && b.wasm !== null && b.wasm.idx === (idx | (k << K_SHIFT));
}
const replayed = new Map<number, number>();
/** RINGZERO_WASM_PROFILE=1: replayed instructions by (RIP, opcode) (shown by --stats: the top sites). */
const replayedAt = new Map<string, number>();
/** RINGZERO_WASM_PROFILE=1: the helpers `cc`, `fl` (by argument) and `sy` (by kind) called, by name (statsLine). */
const helperKinds = new Map<string, number>();
function countHelper(k: string): void {
  helperKinds.set(k, (helperKinds.get(k) ?? 0) + 1);
}
/**
 * RINGZERO_WASM_ENTRY_SITES=FILE (with RINGZERO_WASM_EXIT_STATS=1; statistics only, slow: a call to JavaScript per
 * dispatcher entry): the dispatcher's entries by target RIP, exit kind and the function left, written to FILE.N at
 * each `stats` request (WasmEngine.writeEntrySites; bench/syscall-counts makes six, the last two around its command).
 */
const ENTRY_SITES = process.env.RINGZERO_WASM_EXIT_STATS === '1' ? process.env.RINGZERO_WASM_ENTRY_SITES ?? '' : '';
/** RINGZERO_WASM_EXIT_STATS=1: returns to JavaScript by (RIP, exit kind, CPL, why the call ended). */
const exitSites = new Map<string, number>();
/** RINGZERO_TIER_STATS=1 with EXIT_STATS: instructions run in JavaScript by why and block RIP (WasmEngine.tierCount). */
const tierSites = new Map<string, number>();
const NO_RECORD = -1;

const engines = new WeakMap<GuestMemory, WasmEngine>();

/**
 * Attach the wasm translator to a new vCPU of `mem`: its state area, whose views the CPU adopts for gpr, the
 * TLB and the segment bases. Null when `mem` has no wasm memory or there is no room for another state area.
 */
export function wasmStateFor(mem: GuestMemory): { engine: WasmEngine; st: number; gpr: Int32Array<ArrayBuffer>; tlb: Int32Array<ArrayBuffer>; segBase: Float64Array<ArrayBuffer>; kgs: Float64Array<ArrayBuffer> } | null {
  const wm = mem.wasmMemory;
  if (!wm) return null;
  let engine = engines.get(mem);
  if (!engine) { engine = new WasmEngine(wm); engines.set(mem, engine); }
  const st = engine.allocState();
  if (st < 0) return null;
  const buf = wm.buffer as ArrayBuffer;
  return {
    engine, st,
    gpr: new Int32Array(buf, st + L.S_GPR, 32),
    tlb: new Int32Array(buf, st + L.S_TLB, (6 * L.TLB_BANK) / 4).fill(-1),
    segBase: new Float64Array(buf, st + L.S_SEG, 6),
    kgs: new Float64Array(buf, st + L.S_KGS, 1),
  };
}
