// A migration's destination, and a VMM restored from a snapshot, give their main thread the CPU first for their first
// seconds (issue 7).
//
// Why: the guest runs on the VMM's main thread. In a destination's first second V8's background threads compile what
// the new process has not compiled yet: TurboFan tiers up the translated wasm functions the guest now runs (the hot
// list's modules were compiled by Liftoff during the pre-copy) and optimizes the emulator's JavaScript, whose run loop
// never ran in that process before (README "Live migration", session 20: 41 wasm functions tiered up, 8.1 s of compile
// threads' wall time, ~35 JavaScript functions). On a small loaded host those threads take the cores from the guest:
// the main thread got 68-141 ms of CPU in that second while the process used 240-510 ms, and the guest's ticker came
// late (its interval across the switch-over 16-830 ms against downtimes of 22-601 ms).
//
// A restore starts as cold (README "Where a new-process restore's time goes"), so `run --restore` does the same.
//
// What: for RESUME_NICE_S seconds after the resume the main thread runs at RESUME_BOOST (nice -10) and, if asked
// (OTHERS_NICE), every other thread at a lower priority, then each at its own again. Session 20 lowered the others
// to nice 19 (the compiles wait while the guest's thread can run, and still happen later, or meanwhile on an idle
// core); session 21 found the boost better, and both together worse (OTHERS_NICE, RESUME_BOOST below). The others
// are lowered only where their priority can be given back (raising a thread's priority again needs CAP_SYS_NICE or
// RLIMIT_NICE: probed on one thread first); threads started later keep theirs (but the main thread's boost, which
// they inherit). Linux applies nice per thread (setpriority(2) with PRIO_PROCESS and a thread ID; sched(7), "the
// nice value is a per-thread attribute").
import fs from 'node:fs';
import os from 'node:os';

/** Seconds the main thread stays boosted (and the others lowered) after the resume (RINGZERO_RESUME_NICE_S; 0: not at all). */
export const RESUME_NICE_S = Number(process.env.RINGZERO_RESUME_NICE_S || 3);
/**
 * The nice value the calling (guest's) thread runs at meanwhile, when lower than its own (RINGZERO_RESUME_BOOST; 0:
 * its own). Session 21: at load ~23 on the 2-core host a destination's main thread got 60-90 ms of CPU in its first
 * second, its fair share among ~23 runnable threads, so lowering its own process's compile threads alone cannot give
 * it more: the other processes' threads are the rest of the queue. At -10 its CFS weight is ~9x a nice-0 thread's
 * (kernel/sched/core.c sched_prio_to_weight: 9548 against 1024) for these seconds, then it is back at its own.
 * bench/restore-hot --hops, six alternating pairs at load 22-32, both with the other threads at 19: the interval
 * across the switch-over on the guest's clock 82/275/189/139/88/196 ms against 220/630/838/229/201/568 ms (lower in
 * 6 of 6, median 164 against 399), the main thread's CPU in the first second median 136 against 77 ms. Needs
 * CAP_SYS_NICE (or RLIMIT_NICE) to go below 0: without it nothing is raised.
 */
export let RESUME_BOOST = Number(process.env.RINGZERO_RESUME_BOOST ?? -10);
/**
 * The other threads' nice value meanwhile (RINGZERO_RESUME_OTHERS_NICE, at most 19; default 0: threads at 0 or above
 * keep theirs). Session 20 set 19 (before the boost); with the boost it was worse than leaving them (session 21, three
 * alternating pairs at load 24-28, both with the main thread at -10: the interval across 208/108/130 ms at 19 against
 * 155/82/56 ms left alone, the destination's longest in its first 3 s 355/543/280 against 142/173/216 ms): starved
 * outright by a main thread at -10 that always has guest work, V8's compiles and GC helpers then come too late.
 */
export const OTHERS_NICE = Math.min(19, Number(process.env.RINGZERO_RESUME_OTHERS_NICE ?? 0));
/**
 * The nice value of this VMM's autogroup meanwhile (RINGZERO_RESUME_GROUP_BOOST; 0: left alone), when the VMM leads
 * its own session (the daemon starts each VMM detached, in its own session: src/manager/manager.ts). Why: with
 * autogroups on (CONFIG_SCHED_AUTOGROUP, /proc/sys/kernel/sched_autogroup_enabled; Debian's default) every session
 * is a scheduling group of its own, the CPU is shared between the groups first and a thread's nice value counts only
 * against the threads of its own group (sched(7), "The autogroup feature"). So the boost above lifts the guest's thread
 * over its own process's V8 threads and nothing else: against other sessions the VMM keeps one nice-0 group's share.
 * Measured (session 22, bench/restore-hot --hops, load 15-23, the destination's main thread from the resume to the
 * guest's first console output): 31-128 ms of wall time, of which 14-34 ms on a CPU, 10-94 ms waiting on the run
 * queue, under 1 ms blocked, with the thread already at -10. The group's nice value is set through
 * /proc/self/autogroup (lowering it needs CAP_SYS_NICE, as for a thread) and put back after the same seconds. Only
 * for a session of its own: a VMM started from a shell would otherwise raise the whole shell session.
 */
export let GROUP_BOOST = Number(process.env.RINGZERO_RESUME_GROUP_BOOST ?? -10);

/** The range of a resume boost given as a setting (nice values: sched(7); 0 is none, as for the variables above). */
export const MIN_RESUME_BOOST = -20, MAX_RESUME_BOOST = 0;

/** Why `value` is not a resume boost setting (an integer from -20 to 0), or undefined when it is one. */
export function resumeBoostError(value: unknown): string | undefined {
  return Number.isInteger(value) && (value as number) >= MIN_RESUME_BOOST && (value as number) <= MAX_RESUME_BOOST
    ? undefined : `must be an integer from ${MIN_RESUME_BOOST} to ${MAX_RESUME_BOOST} (a nice value; 0: no boost)`;
}

/**
 * This VMM's boosts at nice `nice` (`run --resume-boost`, a VM definition's `resumeBoost`): its main thread's after a
 * resume (RESUME_BOOST) and its session's through a switch-over and after a resume (GROUP_BOOST), both at once, over
 * what the environment said; 0 turns both off. The setting a user gives, where the variables stay the experiments'.
 */
export function setResumeBoost(nice: number): void {
  const why = resumeBoostError(nice);
  if (why) throw new RangeError(`the resume boost ${why}`);
  RESUME_BOOST = nice;
  GROUP_BOOST = nice;
}
/** What favourSession did last, for the VMMs' stats lines: the autogroup's nice value before and meanwhile. */
export let groupBoosted: { was: number; now: number } | undefined;
/** The holds on the session's boost (holdSession) and the group's own nice value to put back when none is left. */
let holds = 0;
let groupWas: number | undefined;
/** The value the group was set to by the first hold (a nested hold keeps it, whatever value it asked for). */
let groupNow: number | undefined;

/**
 * This VMM's autogroup at nice `nice` (see GROUP_BOOST) until the returned release() is called; holds nest (the
 * value goes back when the last is released). Undefined when not done: not a session of its own, no autogroups, no
 * privilege, or `nice` not below the group's own value.
 */
export function holdSession(nice = GROUP_BOOST): (() => void) | undefined {
  if (nice === 0) return undefined;
  if (holds === 0) {
    // (not a session of its own, no autogroups in this kernel, or no privilege to raise a group: left as it is)
    const now = ownAutogroupNice();
    if (now === undefined || nice >= now || !setAutogroupNice(nice)) return undefined;
    groupWas = now;
    groupNow = nice;
  }
  holds++;
  groupBoosted = { was: groupWas!, now: groupNow! };
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holds > 0) return;
    setAutogroupNice(groupWas!); // (false: the group is gone with its session)
  };
}

/**
 * The nice value of this process's autogroup (/proc/self/autogroup, sched(7)) when the process leads a session of its
 * own (a VMM the daemon started detached), else undefined: another process's session, or no autogroups here.
 */
export function ownAutogroupNice(): number | undefined {
  try {
    // (field 6 of /proc/self/stat is the session ID: proc(5); the command name before it may hold spaces)
    const session = Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[3]);
    if (session !== process.pid) return undefined;
    const m = /nice (-?\d+)/.exec(fs.readFileSync('/proc/self/autogroup', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** This session's autogroup at nice `nice`; false when refused (lowering it needs CAP_SYS_NICE) or gone. */
export function setAutogroupNice(nice: number): boolean {
  try {
    fs.writeFileSync('/proc/self/autogroup', String(nice));
    return true;
  } catch {
    return false;
  }
}

/** For `seconds`, this VMM's autogroup at nice `nice` (holdSession), then back. True if it was set. */
export function favourSession(seconds = RESUME_NICE_S, nice = GROUP_BOOST): boolean {
  if (!(seconds > 0)) return false;
  const release = holdSession(nice);
  if (!release) return false;
  setTimeout(release, seconds * 1000).unref();
  return true;
}

/**
 * RINGZERO_SWITCHOVER_BOOST (default 1; 0: off): both VMMs of a migration hold their session's boost (holdSession)
 * through the switch-over, from the source's "sync" (its guest stops next) until the source has its "resumed" and the
 * destination its first seconds (favourSession). The downtime is work on both sides (the last pages, the state, its
 * restore, two round trips), each a wake-up that a loaded host's other sessions delay.
 */
export const SWITCHOVER_BOOST = process.env.RINGZERO_SWITCHOVER_BOOST !== '0';

/**
 * A thread's nice value, read and set through Node's os.getPriority/os.setPriority (getpriority(2)/setpriority(2) with
 * PRIO_PROCESS: `who` a thread ID, 0 the calling thread), in the system calls' own terms: set returns 0, or -1 when
 * refused (no privilege to raise it, the thread gone); the value is clamped to -20..19 as the kernel clamps it (libuv
 * refuses one outside); get returns -1 when the thread is gone (also a valid nice value: callers take it as one).
 */
export interface PriorityCalls {
  set: (who: number, nice: number) => number;
  get: (who: number) => number;
}
export const threadNice: PriorityCalls = {
  set: (who, nice) => { try { os.setPriority(who, Math.max(-20, Math.min(19, nice))); return 0; } catch { return -1; } },
  get: (who) => { try { return os.getPriority(who); } catch { return -1; } },
};

/**
 * For `seconds`, run the calling (main) thread at nice `boost` and lower every other thread of this process to nice
 * `others` (those below it), then put each back. Returns how many were lowered (0 also when not done, e.g. without
 * the privilege to put them back).
 */
export function favourMainThread(seconds = RESUME_NICE_S, boost = RESUME_BOOST, others = OTHERS_NICE): number {
  const NICE = others;
  if (!(seconds > 0)) return 0;
  let tids: number[];
  try {
    tids = fs.readdirSync('/proc/self/task').map(Number).filter((t) => t !== process.pid);
  } catch {
    return 0;
  }
  const { set, get } = threadNice;
  // (getpriority returns the nice value itself: -1 is a valid one, and an error here only means the thread is gone)
  const was = tids.map((t) => get(t));
  // (lowered only if one of them can be given its priority back: probed on the first one below NICE)
  const probeAt = was.findIndex((w) => w < NICE);
  let lowered = 0;
  if (probeAt >= 0 && set(tids[probeAt], was[probeAt] + 1) === 0 && set(tids[probeAt], was[probeAt]) === 0) {
    for (let i = 0; i < tids.length; i++) if (was[i] < NICE && set(tids[i], NICE) === 0) lowered++;
  }
  // (the calling thread: its tid is the process's for Node's main thread; os.getPriority(0) is the caller's)
  const self = get(0);
  const boosted = boost < self && boost >= -20 && set(0, boost) === 0;
  setTimeout(() => {
    if (lowered > 0) for (let i = 0; i < tids.length; i++) if (was[i] < NICE) set(tids[i], was[i]);
    if (!boosted) return;
    set(0, self);
    // (a thread started meanwhile inherited the boost: it gets the caller's own priority too, and one that set itself
    // relative to the boost, as the wasm compile thread does (compile-worker.ts NICE), keeps that offset from it)
    try {
      for (const t of fs.readdirSync('/proc/self/task').map(Number)) {
        if (t === process.pid || tids.includes(t)) continue;
        const p = get(t);
        if (p <= boost) set(t, Math.min(19, self + p - boost));
      }
    } catch { /* no /proc: nothing started is known */ }
  }, seconds * 1000).unref();
  return lowered;
}
