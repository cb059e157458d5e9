// V8's wasm tier-up budget per translated module (issue 4). V8 11.3 runs a new wasm function in Liftoff's code and
// compiles it again with TurboFan (on its background threads) once the function has spent a budget of roughly
// "bytes of wasm executed". That budget is one process-wide flag (--wasm-tiering-budget; bin/ringzero sets 9000000),
// read when the module is compiled: V8 fills the module's per-function budget array from the flag as it creates the
// NativeModule (synchronous `new WebAssembly.Module` creates it on the calling thread before it returns), and
// Liftoff's code caps one budget check at a quarter of the flag read at compile time. The flag's value at
// instantiation does not matter. Checked on Node 20.20 (V8 11.3.244) with a one-loop module (%IsLiftoffFunction after
// N calls): compiled under a budget of 100 it tiered up within 20 calls, instantiated under 100 but compiled under the
// default 1800000 it needed the default's ~200; compiled under 1e9 it stayed in Liftoff after 20000 calls.
//
// So setting the flag around a module's compile gives that module's functions their own budget, and the translator
// knows what V8 does not: which functions are first translations (blocks that reached WASM_HOT replays once) and which
// hold blocks translated before (re-formed into a later batch's region, or re-regioned because the dispatcher kept
// entering their page). runtime.ts TIER_BUDGETS (RINGZERO_WASM_TIER_BUDGET) gives each kind its own budget; it is off
// by default: the policies tried did not gain (numbers there).
//
// The flag is process-wide and other code reads it meanwhile, so every change is restored right after the compile,
// and changes are serialised by a lock word shared with the compile thread and bin/ringzero: bin/ringzero writes a V8
// code cache (createCachedData) whose flag hash must be the process's start flags, or the next process rejects it;
// it takes the lock while it writes (`globalThis[Symbol.for('ringzero.v8FlagLock')]`, an Int32Array over a
// SharedArrayBuffer: 0 free, 1 a compile under a changed flag, 2 the cache writer).
import v8 from 'node:v8';

/**
 * RINGZERO_WASM_TIER_BUDGET: 'cold,hot,lib' budgets (V8's bytes-executed units; an empty field: the start value), or
 * '0' for the one global flag (every module under the start value: the default, see runtime.ts TIER_BUDGETS). Only
 * on V8 11.3 (Node 20), where it was measured.
 */
export interface TierBudgets { cold: number; hot: number; lib: number }

export const V8_11_3 = process.versions.v8.startsWith('11.3.');

/** V8 11.3's default --wasm-tiering-budget (node --v8-options). */
const V8_DEFAULT_BUDGET = 1_800_000;

/** The budgets of `spec` (RINGZERO_WASM_TIER_BUDGET's syntax), null when off; `start` fills an empty field. */
export function parseBudgets(spec: string | undefined, start: number, dflt: TierBudgets | null): TierBudgets | null {
  if (spec === undefined || spec === '') return dflt;
  if (spec === '0' || spec === 'off') return null;
  const [cold, hot, lib] = spec.split(',').map((s) => (s === undefined || s.trim() === '' ? start : Number(s)));
  const ok = (n: number | undefined): n is number => n !== undefined && Number.isInteger(n) && n > 0;
  if (!ok(cold)) return null;
  return { cold, hot: ok(hot) ? hot : start, lib: ok(lib) ? lib : start };
}

/** RINGZERO_WASM_LATE_BUDGET's value (runtime.ts LATE_BUDGET): a positive integer as given, anything else (unset, empty, 0) off. */
export function lateBudget(spec: string | undefined): number {
  if (spec === undefined || spec.trim() === '') return 0;
  const n = Number(spec);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/**
 * The --wasm-tiering-budget this process started with: the last one among the flags bin/ringzero set
 * (`globalThis[Symbol.for('ringzero.v8Flags')]`) and node's own command line, else V8's default.
 */
export function startBudget(): number {
  const set = (globalThis as Record<symbol, unknown>)[Symbol.for('ringzero.v8Flags')];
  const flags = [...process.execArgv, ...(typeof set === 'string' ? set.split(/\s+/) : [])];
  let n = V8_DEFAULT_BUDGET;
  for (const f of flags) {
    const m = /^--wasm[-_]tiering[-_]budget=(\d+)$/.exec(f);
    if (m !== null) n = Number(m[1]);
  }
  return n;
}

/** The lock word (see the file comment): bin/ringzero's when it made one, else this process's own. */
export function flagLock(): Int32Array {
  const key = Symbol.for('ringzero.v8FlagLock'), g = globalThis as Record<symbol, unknown>;
  if (!(g[key] instanceof Int32Array)) g[key] = new Int32Array(new SharedArrayBuffer(4));
  return g[key] as Int32Array;
}

/**
 * Run `f` (a synchronous compile) with the flag at `budget`, then set it back to `start`. When `budget` is `start`,
 * or the lock is held elsewhere for longer than `waitMs` (0: do not wait; the compile thread never waits), `f` runs
 * under the flag as it is.
 */
export function withBudget<T>(lock: Int32Array, budget: number, start: number, waitMs: number, f: () => T): T {
  if (budget === start) return f();
  const until = waitMs > 0 ? performance.now() + waitMs : 0;
  for (;;) {
    const v = Atomics.compareExchange(lock, 0, 0, 1);
    if (v === 0) break;
    const left = until - performance.now();
    if (left <= 0) return f();
    Atomics.wait(lock, 0, v, left);
  }
  try {
    v8.setFlagsFromString(`--wasm-tiering-budget=${budget}`);
    return f();
  } finally {
    v8.setFlagsFromString(`--wasm-tiering-budget=${start}`);
    Atomics.store(lock, 0, 0);
    Atomics.notify(lock, 0);
  }
}

/** Whether the process started with `flag` among bin/ringzero's V8 flags or node's own command line. */
function startedWith(flag: string): boolean {
  const set = (globalThis as Record<symbol, unknown>)[Symbol.for('ringzero.v8Flags')];
  return [...process.execArgv, ...(typeof set === 'string' ? set.split(/\s+/) : [])].includes(flag);
}

let bootFlagsEnded = false;

/**
 * RINGZERO_V8_MIDTIER=boot: the guest's boot is over (runtime.ts: the first batch flushed from user code), so
 * TurboFan's register allocation goes back to its linear-scan allocator for the code compiled from now on (the shell's
 * and the programs' code, the kernel paths they make hot that were not compiled before). The change stays for the rest
 * of the run: it is published as `globalThis[Symbol.for('ringzero.v8FlagsChanged')]` ({ start, now }) so that
 * bin/ringzero's code-cache writer sets the start value back while it writes (the cache's flag hash). Once per
 * process; a no-op unless bin/ringzero started the process with the flag for the boot.
 * Why (session 29, bench/boot-threads, one boot to the prompt each at host load ~15): V8's four workers use more CPU
 * than the guest thread (7.1-7.3 s against 5.1-5.3 s), most of it TurboFan, and of TurboFan's wasm compile time 78% is
 * the 196 functions of 8-32 KiB bodies (--trace-wasm-compilation-times: 809 tier-ups, 4.8 MB of bodies), where the
 * linear-scan register allocator (LiveRange::*, LinearScanAllocator::*) is a large part of the profile. Mid-tier for
 * the whole run (RINGZERO_V8_MIDTIER=1): workers 7.2 -> 5.3-5.6 s, guest thread the same, but the programs' hot code
 * is slower (bench/engines --paired --bins base29,mid, 2 runs, load ~20, B/A wall: boot 0.89x (process CPU 0.87x),
 * md5 1.15x, ash 1.34x, syscalls 1.25x). For the boot only (=boot; 2 series of 2 runs, load 11-20): boot 0.94x/0.98x
 * wall, process CPU 0.94x/0.88x, guest thread 1.05x/0.97x; md5 1.00-1.07x wall (guest thread 0.97-1.09x), ash
 * 0.92x/0.94x, syscalls 0.99-1.06x (guest thread 1.01-1.05x): the kernel code TurboFan compiled during the boot keeps
 * the mid-tier allocation. Two more series: boot 0.92x/0.93x wall and process CPU; md5 1.04x/0.94x, ash 1.00x/0.95x,
 * syscalls 1.08x/1.09x. Unpinned at load 1-2, 3 boots each alternating: process CPU -7%, wall ratio against TCG
 * within the noise (2.66-2.92x off, 2.67-2.83x on). Off by default (bin/ringzero): the syscall loop loses ~5%.
 */
export function endBootFlags(): void {
  if (bootFlagsEnded) return;
  bootFlagsEnded = true;
  if (process.env.RINGZERO_V8_MIDTIER !== 'boot' || !startedWith('--turbo-force-mid-tier-regalloc')) return;
  const lock = flagLock();
  // (the lock: not while the cache writer or a compile under a changed budget holds the flags; at most 200 ms)
  const until = performance.now() + 200;
  let held = false;
  for (;;) {
    const v = Atomics.compareExchange(lock, 0, 0, 1);
    if (v === 0) { held = true; break; }
    const left = until - performance.now();
    if (left <= 0) break;
    Atomics.wait(lock, 0, v, left);
  }
  try {
    v8.setFlagsFromString('--no-turbo-force-mid-tier-regalloc');
    (globalThis as Record<symbol, unknown>)[Symbol.for('ringzero.v8FlagsChanged')] = { start: '--turbo-force-mid-tier-regalloc', now: '--no-turbo-force-mid-tier-regalloc' };
  } finally {
    if (held) {
      Atomics.store(lock, 0, 0);
      Atomics.notify(lock, 0);
    }
  }
}
