// Identify a process across daemon restarts: a pid alone can be reused, so the daemon records the pid together with
// the process's start time (field 22 of /proc/PID/stat, clock ticks since boot: proc(5)) and only treats a pid as its
// VMM while both match.

import fs from 'node:fs';
import { readProcStat } from '../sys/proc-stat.ts';

/** The start time of `pid` in clock ticks since boot, or undefined if there is no such process (or it is a zombie). */
export function processStartTime(pid: number): number | undefined {
  const fields = readProcStat(`/proc/${pid}/stat`)?.fields;
  if (fields === undefined) return undefined;
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : undefined;
}

/** Whether `pid` is still the process that started at `startTime`. */
export function isSameProcess(pid: number, startTime: number): boolean {
  return processStartTime(pid) === startTime;
}

/**
 * The live processes whose command line holds `flag` directly followed by `value` (two arguments of
 * /proc/PID/cmdline, which separates them with NULs: proc(5)), with their start times. Used to find a VMM by the
 * per-VM path it was given, when no record names its pid.
 */
export function processesWithArgument(flag: string, value: string): Array<{ pid: number; startTime: number; args: string[] }> {
  const found: Array<{ pid: number; startTime: number; args: string[] }> = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let args: string[];
    try {
      args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // ended meanwhile, or not ours to read
    }
    const at = args.indexOf(flag);
    if (at < 0 || args[at + 1] !== value) continue;
    const startTime = processStartTime(pid);
    if (startTime !== undefined) found.push({ pid, startTime, args: args.filter((a) => a !== '') });
  }
  return found;
}
