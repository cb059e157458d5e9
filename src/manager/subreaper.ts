// The daemon as a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): a process that a VMM started and left behind
// when it died (a helper it forked, a shell's background job) is re-parented to the daemon instead of to init, so
// it stays under the daemon that owns the VM, and the daemon collects its exit status (without that, an orphan that
// ends stays a zombie wherever PID 1 does not reap: containers, microVM inits like this host's).
//
// Node reaps only the children it spawned itself (libuv waits for each of their pids; it never calls waitpid(-1)),
// so the daemon reaps the others: now and then, and on SIGCHLD, each child of this process that is a zombie and is
// not one of Node's is waited for by pid. Node's own children are told apart by hooking ChildProcess.prototype.spawn
// (spawn, exec, execFile and fork all go through it); spawnSync waits for its child before it returns, so its
// children are never seen here.
//
// What a subreaper cannot do: the VMMs of a daemon that was killed are re-parented to the daemon's own nearest
// subreaper or to init, not to the next daemon, which re-attaches to them by pid and start time
// (src/manager/manager.ts) and learns of their end by polling /proc.

import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { lastErrno, libc, errnoName } from '../sys/libc.ts';
import { readProcStat } from '../sys/proc-stat.ts';

/** <linux/prctl.h>: PR_SET_CHILD_SUBREAPER 36, PR_GET_CHILD_SUBREAPER 37 (Linux 3.4). */
const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;
/** <sys/wait.h> */
const WNOHANG = 1;

// prctl is variadic; on x86-64 (and arm64) the fixed-arity declaration passes the same registers.
const prctl = libc.func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)');
const prctlGet = libc.func('int prctl(int option, _Out_ int *arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)');
const waitpid = libc.func('int waitpid(int pid, _Out_ int *status, int options)');

/** Pids of the children Node spawned in this process (libuv reaps those). */
const nodeChildren = new Set<number>();
let hooked = false;

function hookSpawn(): void {
  if (hooked) return;
  hooked = true;
  const proto = ChildProcess.prototype as unknown as { spawn: (this: ChildProcess, ...args: unknown[]) => unknown };
  const original = proto.spawn;
  proto.spawn = function spawn(this: ChildProcess, ...args: unknown[]) {
    const result = original.apply(this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      nodeChildren.add(pid);
      this.once('exit', () => nodeChildren.delete(pid));
    }
    return result;
  };
}

/** Whether this process is a child subreaper. */
export function isSubreaper(): boolean {
  const flag = [0];
  return prctlGet(PR_GET_CHILD_SUBREAPER, flag, 0, 0, 0) === 0 && flag[0] !== 0;
}

/** The children of this process (every thread's: an orphan is re-parented to one of them). */
export function childPids(): number[] {
  const out = new Set<number>();
  let tasks: string[] = [];
  try { tasks = fs.readdirSync('/proc/self/task'); } catch { /* no procfs */ }
  let read = false;
  for (const task of tasks) {
    try {
      const text = fs.readFileSync(`/proc/self/task/${task}/children`, 'utf8');
      read = true;
      for (const pid of text.trim().split(/\s+/)) if (pid !== '') out.add(Number(pid));
    } catch {
      // a thread that ended, or a kernel without CONFIG_PROC_CHILDREN
    }
  }
  if (!read) {
    // Without /proc/PID/task/TID/children: every process whose parent (stat field 4) is this one.
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const fields = readProcStat(`/proc/${entry}/stat`)?.fields;
      if (fields && Number(fields[1]) === process.pid) out.add(Number(entry));
    }
  }
  return [...out];
}


export interface Reaped {
  pid: number;
  /** The raw wait status (exit code in bits 8-15, or the signal in bits 0-6). */
  status: number;
}

export class Subreaper {
  /** Whether prctl made this process a subreaper (false, with `error`, on a kernel that refused). */
  readonly enabled: boolean;
  readonly error?: string;
  /** Orphans reaped so far. */
  reaped = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly onSignal = () => this.reap();

  constructor(private readonly log: (line: string) => void = () => {}, intervalMs = 1000) {
    hookSpawn();
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) === 0) {
      this.enabled = true;
    } else {
      this.enabled = false;
      this.error = `prctl(PR_SET_CHILD_SUBREAPER) failed: ${errnoName(lastErrno())}`;
      log(this.error);
    }
    this.timer = setInterval(() => this.reap(), intervalMs);
    this.timer.unref();
    process.on('SIGCHLD', this.onSignal);
  }

  /** Wait for every zombie child that Node did not spawn; returns them. */
  reap(): Reaped[] {
    const out: Reaped[] = [];
    for (const pid of childPids()) {
      if (nodeChildren.has(pid)) continue;
      const fields = readProcStat(`/proc/${pid}/stat`)?.fields;
      if (fields?.[0] !== 'Z') continue;
      const status = [0];
      if (waitpid(pid, status, WNOHANG) === pid) {
        out.push({ pid, status: status[0] });
        this.reaped++;
        this.log(`reaped orphaned process ${pid} (${describeStatus(status[0])})`);
      }
    }
    return out;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    process.off('SIGCHLD', this.onSignal);
  }
}

function describeStatus(status: number): string {
  const signal = status & 0x7f;
  return signal === 0 ? `exit status ${(status >> 8) & 0xff}` : `killed by signal ${signal}`;
}

/**
 * For the subreaper test only: RINGZERO_TEST_VMM_ORPHAN=SECONDS starts each VMM through a shell that first leaves a
 * `sleep SECONDS` behind (a background job) and then execs the VMM in its place, so a VMM that is killed leaves an
 * orphan, as a VMM that forked a helper would.
 */
export function testOrphanCommand(ringzeroBin: string, nodeArgs: string[] = []): { file: string; args: string[] } | undefined {
  const seconds = process.env.RINGZERO_TEST_VMM_ORPHAN;
  if (seconds === undefined || !/^\d{1,3}$/.test(seconds)) return undefined;
  return { file: '/bin/sh', args: ['-c', `sleep ${seconds} & exec "$0" "$@"`, process.execPath, ...nodeArgs, ringzeroBin] };
}
