// /proc/PID/stat and /proc/PID/task/TID/stat (proc(5)), read in one place: the command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields after it start past the last ')'.
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: the unit of the times in /proc/PID/stat and /proc/stat. Linux exports 100 on every architecture (proc(5),
 *  "clock ticks (divide by sysconf(_SC_CLK_TCK))"; the kernel fixes USER_HZ at 100 for user space). */
export const CLOCK_TICKS = 100;

export interface ProcStat {
  /** Field 2, without its parentheses: the thread's or process's name. */
  comm: string;
  /** Field 3 (state) on: fields[0] is field 3, so field N is fields[N - 3]. */
  fields: string[];
}

/** The stat file at `path` (e.g. `/proc/123/stat`), split, or undefined if it cannot be read (the task is gone). */
export function readProcStat(path: string): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  return { comm: text.slice(text.indexOf('(') + 1, close), fields: text.slice(close + 2).split(' ') };
}

/**
 * The threads of process `pid` with their names (comm) and the CPU time each has run, in ns (the first field of
 * /proc/PID/task/TID/schedstat: exact, where stat's utime + stime count 10 ms ticks). Threads that end meanwhile, or
 * a process that has ended, are left out.
 */
export function threadRunTimes(pid: number): { tid: number; comm: string; ns: number }[] {
  const out: { tid: number; comm: string; ns: number }[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // the process ended
  }
  for (const t of tids) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
      out.push({ tid: Number(t), comm, ns });
    } catch { /* the thread ended */ }
  }
  return out;
}

/** User + system CPU seconds of a stat's task (fields 14 and 15, utime and stime, in clock ticks). */
export function statCpuSeconds(stat: ProcStat): number {
  return (Number(stat.fields[11]) + Number(stat.fields[12])) / CLOCK_TICKS;
}
