// A migration's destination gives its main thread the CPU first for its first seconds (issue 7).
//
// Why: the guest runs on the VMM's main thread. In a destination's first second V8's background threads compile what
// the new process has not compiled yet: TurboFan tiers up the translated wasm functions the guest now runs (the hot
// list's modules were compiled by Liftoff during the pre-copy) and optimizes the emulator's JavaScript, whose run loop
// never ran in that process before (README "Live migration", session 20: 41 wasm functions tiered up, 8.1 s of compile
// threads' wall time, ~35 JavaScript functions). On a small loaded host those threads take the cores from the guest:
// the main thread got 68-141 ms of CPU in that second while the process used 240-510 ms, and the guest's ticker came
// late (its interval across the switch-over 16-830 ms against downtimes of 22-601 ms).
//
// What: every other thread of the process runs at nice 19 for RESUME_NICE_S seconds after the resume, then at its
// own priority again: the compiles wait while the guest's thread can run, and still happen (later, or meanwhile on an
// idle core). Only where the priority can be given back (raising a thread's priority again needs CAP_SYS_NICE or
// RLIMIT_NICE: probed on one thread first); threads started later keep theirs. Linux applies nice per thread
// (setpriority(2) with PRIO_PROCESS and a thread ID; sched(7), "the nice value is a per-thread attribute").
import fs from 'node:fs';
import { libc } from '../sys/libc.ts';

/** Seconds the other threads stay lowered after the resume (RINGZERO_RESUME_NICE_S; 0: not at all). */
export const RESUME_NICE_S = Number(process.env.RINGZERO_RESUME_NICE_S || 3);
const NICE = 19;
const PRIO_PROCESS = 0;

let fns: { set: (which: number, who: number, prio: number) => number; get: (which: number, who: number) => number } | undefined;

/**
 * Lower every thread of this process but the calling (main) one to nice 19 for `seconds`, then put each back. Returns
 * how many were lowered (0: not done, e.g. without the privilege to put them back).
 */
export function favourMainThread(seconds = RESUME_NICE_S): number {
  if (!(seconds > 0)) return 0;
  let tids: number[];
  try {
    fns ??= {
      set: libc.func('int setpriority(int which, int who, int prio)') as (which: number, who: number, prio: number) => number,
      get: libc.func('int getpriority(int which, int who)') as (which: number, who: number) => number,
    };
    tids = fs.readdirSync('/proc/self/task').map(Number).filter((t) => t !== process.pid);
  } catch {
    return 0;
  }
  if (tids.length === 0) return 0;
  const { set, get } = fns;
  // (getpriority returns the nice value itself: -1 is a valid one, and an error here only means the thread is gone)
  const was = tids.map((t) => get(PRIO_PROCESS, t));
  const probe = tids[0], probeWas = was[0];
  if (probeWas >= NICE) return 0;
  if (set(PRIO_PROCESS, probe, probeWas + 1) !== 0) return 0;
  if (set(PRIO_PROCESS, probe, probeWas) !== 0) return 0;
  let lowered = 0;
  for (let i = 0; i < tids.length; i++) if (was[i] < NICE && set(PRIO_PROCESS, tids[i], NICE) === 0) lowered++;
  setTimeout(() => { for (let i = 0; i < tids.length; i++) if (was[i] < NICE) set(PRIO_PROCESS, tids[i], was[i]); }, seconds * 1000).unref();
  return lowered;
}
