// A spare VMM process (`ringzero vmm-spare`, issue 7): started ahead of need by the daemon's pool
// (src/manager/pool.ts) or a benchmark, it warms V8 on the VMM's own JavaScript and then waits, idle, until it is
// given the command line of a real VMM (`run --incoming ...`, `run --restore ...`), which it then runs in place of a
// new process.
//
// Why: a migration's destination VMM is a new process, whose JavaScript (the interpreter, the block cache, the wasm
// runtime's glue, page walks, interrupt delivery, the device models) V8 has not compiled: the guest's first ~100 ms
// there run ~10-50 times slower than at the source (README, issue 7, sessions 24-25). src/migration/warm-up.ts warms
// a destination by booting a scratch guest, but inside the migration, which it lengthens by seconds. A spare does the
// same ahead of time, at a low priority, so a migration (or a restore) that takes it starts warm and waits for nothing.
//
// What carries over from the scratch guest into the VM the spare is given: nothing of the scratch guest's state. Its
// Machine (RAM in a memfd of its own, devices, vCPU, translator with its code cache and compiled wasm) is closed
// before the real VM's Machine is built, and the real Machine is built from scratch by the same code as in a new
// process (src/cli/main.ts `run`). What stays is the process's V8 state: the JavaScript compiled (and its type
// feedback), the bundle's code cache, the wasm compile thread. The translator keeps no cache across machines that
// is keyed by guest content; translations are the closed Machine's and are dropped with it.
//
// The conversation, over the Node IPC channel the parent opens (child_process.spawn's 'ipc' stdio):
//   spare -> parent {kind: 'up', pid}                              its modules loaded, ready to be taken
//   spare -> parent {kind: 'warm', report: WarmUpReport | null}    its warm-up ended (null: none was possible)
//   parent -> spare {kind: 'take', argv: string[], log?: string}   become the VMM of `ringzero ...argv`; with log, its
//                                                                  stderr (fd 2) appended to that file from now on
//   spare -> parent {kind: 'taken'}                                then the spare leaves the channel
// A spare whose channel closes before it is taken (its parent ended, or dropped it) exits: a daemon killed with
// SIGKILL leaves no spare behind. A taken spare no longer depends on its parent (a VMM outlives its daemon).
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { warmUp, type WarmUpReport } from '../migration/warm-up.ts';
import { DEFAULT_CMDLINE, type VmConfig } from './config.ts';
import { libc } from '../sys/libc.ts';
import { flagLock } from '../cpu/soft/wasm/tier-budget.ts';
import { ownAutogroupNice, threadNice, setAutogroupNice } from './resume-priority.ts';

/** The CLI command a spare runs as (hidden from --help: only the pool and benchmarks start it). */
export const SPARE_COMMAND = 'vmm-spare';

export type SpareMessage =
  | { kind: 'up'; pid: number }
  | { kind: 'warm'; report: WarmUpReport | null; why?: string }
  | { kind: 'taken' };
export interface TakeMessage { kind: 'take'; argv: string[]; log?: string }

export interface SpareOptions {
  /** Main-thread CPU (ms) its warm-up may take (0: none). */
  warmUpMs: number;
  /** Wall time (ms) of the warm-up at most (a low priority on a loaded host stretches its CPU). */
  wallMs: number;
  /** Its priority while a spare (a nice value, 0 to 19; 0: none), given back when it is taken. */
  nice: number;
}


/** The scratch guest a spare warms up on: the default image (the guest most VMs run), one vCPU, 256 MiB. */
async function scratchConfig(): Promise<VmConfig | undefined> {
  const { findDefaultImage } = await import('../image/build.ts');
  const image = findDefaultImage();
  if (!image) return undefined;
  return { engine: 'soft', kernel: image.kernel, initrd: image.initrd, cmdline: DEFAULT_CMDLINE, cpus: 1, memory: 256 * 2 ** 20, onReboot: 'exit' };
}

/**
 * This process's priority while it is a spare: every thread `nice` steps lower than its own (the main thread from 0 to
 * `nice`) and its session's autogroup at `nice` too (with autogroups on, the CPU is shared between sessions first:
 * sched(7)), only where it can be given back (raising a priority again needs CAP_SYS_NICE or RLIMIT_NICE: probed on the
 * main thread first). Returns what puts it back. Shifted rather than set, both ways, because a thread may keep its own
 * offset from the thread that started it: the wasm compile thread sets itself 5 steps above its starter
 * (cpu/soft/wasm/compile-worker.ts), so one started during the warm-up is at nice 5 and goes back to -5.
 */
function lowerPriority(nice: number): () => void {
  if (!(nice > 0)) return () => {};
  const { set, get } = threadNice;
  const was = get(0);
  const delta = nice - was;
  if (delta <= 0 || set(0, was + 1) !== 0 || set(0, was) !== 0) return () => {};
  const clamp = (n: number) => Math.min(19, Math.max(-20, n));
  const tids = () => { try { return fs.readdirSync('/proc/self/task').map(Number); } catch { return [process.pid]; } };
  for (const t of tids()) set(t, clamp(get(t) + delta));
  // (only a session of its own: the daemon starts spares detached, as it starts every VMM)
  const group = ownAutogroupNice();
  const groupWas = group !== undefined && group < nice && setAutogroupNice(nice) ? group : undefined;
  return () => {
    // (every thread, those started since included: they inherited the lowered value, or an offset from it)
    for (const t of tids()) set(t, clamp(get(t) - delta));
    if (groupWas !== undefined) setAutogroupNice(groupWas); // (false: gone with the session)
  };
}

/**
 * A full garbage collection now (RINGZERO_SPARE_GC=0: none). Why: the warm-up leaves its scratch machine's garbage (the
 * translator's blocks and modules, the devices, buffers) in a heap grown to ~100 MB; left there, V8 collects it when
 * allocation next pushes the old generation over its limit, which in a taken spare is the migration's own allocation,
 * possibly in its switch-over. Measured before this (bench/migrate --pool abba, idle, load 13-18): the downtime into a
 * spare 24-35 ms (4 hops) against 11-25 ms into a new process. There is no gc() without --expose-gc, so the flag is
 * set for a moment to make a context that has one, then set back (V8's flag hash, which bin/ringzero's code cache must
 * match, is then the start flags' again), under the flag lock bin/ringzero's cache writer takes (wasm/tier-budget.ts).
 */
let gcFn: (() => void) | undefined;
function collectGarbage(): void {
  if (process.env.RINGZERO_SPARE_GC === '0') return;
  if (!gcFn) {
    const lock = flagLock();
    for (let v; (v = Atomics.compareExchange(lock, 0, 0, 1)) !== 0;) Atomics.wait(lock, 0, v, 50);
    try {
      v8.setFlagsFromString('--expose-gc');
      gcFn = vm.runInNewContext('gc') as () => void;
    } finally {
      v8.setFlagsFromString('--no-expose-gc');
      Atomics.store(lock, 0, 0);
      Atomics.notify(lock, 0);
    }
  }
  gcFn();
}

/** fd 2 appended to `file` from now on (dup2(2)): the VMM's log is its stderr, as for a VMM the daemon spawns. */
function stderrTo(file: string): void {
  const fd = fs.openSync(file, 'a', 0o600);
  try {
    const dup2 = libc.func('int dup2(int oldfd, int newfd)') as (a: number, b: number) => number;
    if (dup2(fd, 2) < 0) throw new Error(`dup2 onto stderr failed for ${file}`);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Be a spare until taken, then run `ringzero ...argv` through `run` (src/cli/main.ts main) and return its status.
 * Without an IPC channel (not started by a pool) it refuses.
 */
export async function runSpare(opts: SpareOptions, run: (argv: string[]) => Promise<number>): Promise<number> {
  if (typeof process.send !== 'function') throw new Error(`${SPARE_COMMAND} is started by the daemon's VMM pool (through an IPC channel), not by hand`);
  // (a closed channel is not an error here: untaken, the spare exits on 'disconnect'; taken, it is the VM's VMM now,
  // and its daemon, killed just after the hand-off, finds it by the record it wrote before: src/manager/manager.ts)
  const send = (m: SpareMessage) => new Promise<void>((resolve) => {
    if (!process.connected) { resolve(); return; }
    try { process.send!(m, undefined, {}, () => resolve()); } catch { resolve(); }
  });
  const restore = lowerPriority(opts.nice);
  let stopWarmUp: (() => void) | undefined;
  // (the parent gone before it took this spare: nothing will; a taken spare has left the channel itself. Taken as the
  // message arrives: a parent killed right after sending it closes the channel at once, and the spare runs the VM.)
  let isTaken = false;
  const taken = new Promise<TakeMessage>((resolve) => {
    process.on('message', (m: TakeMessage) => { if (m?.kind === 'take' && Array.isArray(m.argv)) { isTaken = true; resolve(m); } });
  });
  process.on('disconnect', () => { if (!isTaken) process.exit(0); });
  await send({ kind: 'up', pid: process.pid });
  const config = opts.warmUpMs > 0 ? await scratchConfig() : undefined;
  if (config) {
    const w = warmUp(config, undefined, { ms: opts.warmUpMs, wallMs: opts.wallMs });
    stopWarmUp = w.stop;
    // (taken meanwhile: the take goes on at once, the warm-up stopped below)
    if (await Promise.race([w.released.then(() => true), taken.then(() => false)])) {
      stopWarmUp = undefined;
      collectGarbage();
      const r = w.report;
      await send({ kind: 'warm', report: { ...r, ms: Math.round(r.ms), wallMs: Math.round(r.wallMs) } });
    }
  } else {
    await send({ kind: 'warm', report: null, why: opts.warmUpMs > 0 ? 'no default image built' : 'warm-up off' });
  }
  const take = await taken;
  // (a warm-up still running ends before its next step; its scratch machine is closed once its compiles are done)
  stopWarmUp?.();
  if (take.log !== undefined) stderrTo(take.log);
  restore();
  await send({ kind: 'taken' });
  process.removeAllListeners('message');
  if (process.connected) process.disconnect();
  return run(take.argv);
}
