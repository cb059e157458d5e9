// A guest driven over its console for a bench: test/support/guest.ts's GuestSession (ringzero, or QEMU in its own
// process group), registered for clean-up, with commands timed between console markers.
//
// Timing: `timed()` types one line `echo <begin marker> <guest uptime>; COMMAND; echo <end marker> $? <uptime>`.
// The figure is host-side, from the moment the begin marker's line arrives on the console to the moment the end
// marker's does, so boot time and typing are excluded and the same clock measures every VMM (a guest's own clock
// could be off on an emulated CPU). The guest's /proc/uptime at both markers is kept as a cross-check (10 ms
// resolution), and so is the CPU time the VMM process used between the markers (/proc/PID/stat utime + stime, all
// its threads), which a busy host disturbs far less than wall time. The markers are spelt with "" in the typed line so the echo of the command line cannot match them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { GuestSession, escapeRegExp } from '../../test/support/guest.ts';
import { GUEST_PROMPT, INIT_OK_LINE } from '../../src/image/build.ts';
import { readProcStat, statCpuSeconds } from '../../src/sys/proc-stat.ts';
import { onCleanup, QEMU, RINGZERO, requireFreshBundle } from './common.ts';

export interface TimedResult {
  /** Host milliseconds between the begin and end markers. */
  hostMs: number;
  /** Guest seconds between the markers by its /proc/uptime. */
  guestS: number;
  /** CPU seconds (user + system, every thread) the VMM process used between the markers. */
  cpuS: number;
  /**
   * CPU seconds of the VMM's guest thread between the markers (ringzero's main thread, QEMU's "CPU 0/TCG" thread;
   * /proc/PID/task/TID/schedstat, nanoseconds), or NaN when that thread is not known (QEMU without
   * `-name ...,debug-threads=on`, which names its threads).
   */
  threadS: number;
  /**
   * Seconds the guest thread spent runnable but waiting for a host CPU between the markers (schedstat's second
   * field): what is left of the wall time beyond this and threadS, the thread was blocked or asleep.
   */
  threadWaitS: number;
  /** performance.now() when each marker's line arrived. */
  beginAt: number;
  endAt: number;
  /** The command's exit status (of the last command of a pipeline). */
  status: number;
  /**
   * With `guestCpu`: the guest's own CPU time between the markers by its /proc/stat "cpu" line (USER_HZ ticks,
   * proc(5)): busy (user, nice, system, irq, softirq) and idle (idle + iowait: the vCPU halted, waiting for a device
   * or a timer). Read with the shell's builtin `read`, so no extra process runs in the guest.
   */
  guestCpu?: { busy: number; idle: number; iowait: number };
  /** With `probe`: what it answered when called right after the begin marker's line arrived, and after the end's. */
  probed?: { begin: Promise<unknown>; end: Promise<unknown> };
  /** What the command printed between the markers (CR LF as LF). */
  output: string;
}

/** Busy and idle ticks between two /proc/stat "cpu" lines (their numbers only: user nice system idle iowait irq softirq steal). */
function guestCpuDelta(a: string | undefined, b: string | undefined): { busy: number; idle: number; iowait: number } | undefined {
  const f = (s: string | undefined) => (s ?? '').trim().split(/ +/).filter(Boolean).map(Number);
  const x = f(a), y = f(b);
  if (x.length < 7 || y.length < 7) return undefined;
  const d = (i: number) => y[i] - x[i];
  return { busy: d(0) + d(1) + d(2) + d(5) + d(6), idle: d(3), iowait: d(4) };
}

export class BenchGuest {
  readonly session: GuestSession;
  readonly started = performance.now();
  private readonly unregister: () => void;

  private constructor(readonly label: string, args: string[], private readonly qemu: boolean, bin?: string, env?: Record<string, string>) {
    if (!qemu) requireFreshBundle(bin ?? RINGZERO);
    this.session = qemu ? new GuestSession(args, { command: QEMU })
      : bin !== undefined ? new GuestSession(['run', ...args], { command: bin, env }) : new GuestSession(args);
    this.unregister = onCleanup(() => this.session.close());
  }

  /** `ringzero run ARGS`. */
  static ringzero(label: string, args: string[]): BenchGuest {
    return new BenchGuest(label, args, false);
  }

  /** `BIN run ARGS`: another checkout's bin/ringzero (A/B comparisons), in its own process group; `env` added to its environment. */
  static ringzeroAt(label: string, bin: string, args: string[], env?: Record<string, string>): BenchGuest {
    return new BenchGuest(label, args, false, bin, env);
  }

  /** `qemu-system-x86_64 ARGS`, in its own process group. */
  static qemu(label: string, args: string[]): BenchGuest {
    return new BenchGuest(label, args, true);
  }

  get output(): string { return this.session.output; }

  /**
   * Wait for /init's line and the prompt; returns ms since spawn. `ms` bounds the boot (default: the benches'
   * RINGZERO_BENCH_BOOT_TIMEOUT_MS or 30 minutes: a software CPU on a host shared with other work can be very slow).
   */
  async waitForShell(ms = Number(process.env.RINGZERO_BENCH_BOOT_TIMEOUT_MS ?? 1_800_000)): Promise<number> {
    await this.session.waitFor(new RegExp(escapeRegExp(INIT_OK_LINE)), ms);
    await this.session.waitFor(new RegExp(escapeRegExp(GUEST_PROMPT)), ms);
    return performance.now() - this.started;
  }

  /** Run `command` and return its output (GuestSession.ask: one line). */
  ask(tag: string, command: string, ms?: number): Promise<string> {
    return this.session.ask(tag, command, ms);
  }

  /** Run `command` between console markers (see the top of this file). */
  async timed(tag: string, command: string, ms: number, opts: { guestCpu?: boolean; probe?: () => Promise<unknown> } = {}): Promise<TimedResult> {
    const t = tag.replace(/[^A-Za-z0-9]/g, '');
    const begin = `RZ""-B-${t}`;
    const end = `RZ""-E-${t}`;
    // (guestCpu: /proc/stat's first line, "cpu  user nice system idle iowait irq softirq steal ...", through the
    // builtin `read` and echoed after the uptime, without its "cpu")
    const st = opts.guestCpu ? 'read -r RZS </proc/stat; ' : '';
    const sv = opts.guestCpu ? ' ${RZS#cpu}' : '';
    // (the command's status is taken before the second `read`, whose own status $? would otherwise report)
    const from = this.session.type(opts.guestCpu
      ? `${st}echo ${begin} $(cut -d' ' -f1 /proc/uptime)${sv}; ${command}; RZX=$?; ${st}echo ${end} $RZX $(cut -d' ' -f1 /proc/uptime)${sv}`
      : `echo ${begin} $(cut -d' ' -f1 /proc/uptime); ${command}; echo ${end} $? $(cut -d' ' -f1 /proc/uptime)`);
    const mb = await this.session.waitFor(new RegExp(`\\nRZ-B-${t} ([0-9.]+)((?: +\\d+)*)\\r?\\n`), ms, from);
    const t0 = performance.now();
    const cpu0 = this.cpuSeconds();
    const thread0 = this.threadCpuSeconds();
    const wait0 = this.threadCpuSeconds(1);
    const probedBegin = opts.probe?.();
    const afterBegin = from + mb.index! + mb[0].length;
    const me = await this.session.waitFor(new RegExp(`\\nRZ-E-${t} (\\d+) ([0-9.]+)((?: +\\d+)*)\\r?\\n`), ms, afterBegin - 1);
    const t1 = performance.now();
    const cpuS = this.cpuSeconds() - cpu0;
    const threadS = this.threadCpuSeconds() - thread0;
    const threadWaitS = this.threadCpuSeconds(1) - wait0;
    const probedEnd = opts.probe?.();
    const hostMs = t1 - t0;
    const endAt = afterBegin - 1 + me.index!;
    return {
      hostMs,
      beginAt: t0,
      endAt: t1,
      guestS: Number(me[2]) - Number(mb[1]),
      cpuS,
      threadS,
      threadWaitS,
      status: Number(me[1]),
      ...(opts.guestCpu ? { guestCpu: guestCpuDelta(mb[2], me[3]) } : {}),
      ...(probedBegin && probedEnd ? { probed: { begin: probedBegin, end: probedEnd } } : {}),
      output: this.session.output.slice(afterBegin, endAt + 1).replace(/\r\n/g, '\n'),
    };
  }

  /** CPU seconds the VMM process has used so far (proc(5): fields 14 and 15 of /proc/PID/stat, in clock ticks). */
  cpuSeconds(): number {
    const stat = readProcStat(`/proc/${this.session.child.pid}/stat`);
    return stat === undefined ? NaN : statCpuSeconds(stat);
  }

  private guestTid: number | undefined;

  /**
   * The thread that runs the guest's vCPU 0: ringzero's main thread (the soft engine runs vCPU 0 there), QEMU's
   * thread named "CPU 0/TCG" (named only under `-name ...,debug-threads=on`); undefined when not found (yet).
   */
  guestThread(): number | undefined {
    if (this.guestTid !== undefined) return this.guestTid;
    const pid = this.session.child.pid;
    if (pid === undefined) return undefined;
    if (!this.qemu) return (this.guestTid = pid);
    try {
      const found = fs.readdirSync(`/proc/${pid}/task`).find((t) => fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').startsWith('CPU 0/'));
      if (found !== undefined) this.guestTid = Number(found);
    } catch { /* gone */ }
    return this.guestTid;
  }

  /**
   * CPU seconds the guest thread has used so far (sched stats: the first field is ns on the CPU; `field` 1: ns spent
   * waiting on a run queue), or NaN.
   */
  threadCpuSeconds(field = 0): number {
    const tid = this.guestThread();
    if (tid === undefined) return NaN;
    try {
      return Number(fs.readFileSync(`/proc/${this.session.child.pid}/task/${tid}/schedstat`, 'utf8').split(' ')[field]) / 1e9;
    } catch {
      return NaN;
    }
  }

  /**
   * Pin every thread of the VMM process to host CPU `cpu` (sched_setaffinity through `taskset -a -p`; threads
   * started later inherit the mask of the thread that starts them). bench/engines --paired gives each of two VMMs
   * one CPU of their own and swaps them: see its header.
   */
  pin(cpu: number): void {
    const pid = this.session.child.pid!;
    const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${this.label}: taskset -a -p -c ${cpu} ${pid}: ${r.stderr || r.error}`);
  }

  /** Type `poweroff -f` and wait for the VMM to exit; returns ms from typing to exit, or throws on a timeout. */
  async poweroff(ms = 120_000): Promise<number> {
    const t0 = performance.now();
    this.session.type('poweroff -f');
    // Not GuestSession.waitForExit: its timer would keep the bench alive for `ms` after the VMM has gone.
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([this.session.exited,
      new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); })]);
    clearTimeout(timer);
    if (code === 'timeout') throw new Error(`${this.label}: still running ${ms / 1000} s after poweroff -f`);
    return performance.now() - t0;
  }

  /** Kill the VMM (idempotent). */
  close(): void {
    this.session.close();
    this.unregister();
  }
}

export { GUEST_PROMPT, escapeRegExp };
