// The daemon's pool of spare VMM processes (`ringzero daemon --vmm-pool N`, issue 7): N VMMs started ahead of need
// (`ringzero vmm-spare`, src/vmm/spare.ts), each of which warms V8 on the VMM's JavaScript by booting a scratch guest
// of the default image for a bounded amount of CPU at a low priority, then waits, idle. An incoming migration and a
// snapshot restore take a spare instead of spawning a new VMM (src/manager/manager.ts start): the spare is given the
// VMM's command line and runs it, so the guest's first moments at the destination run warm JavaScript, and the
// migration waits neither for a process start nor for a warm-up. A spare carries nothing of its scratch guest into
// the VM (src/vmm/spare.ts says what is kept: V8's compiled code only).
//
// The pool is refilled in the background after a take (REFILL_AFTER_TAKE_MS later: the taken VMM's first seconds
// come first) and after a spare dies (replaced at once, then with a growing delay while new spares keep dying before
// they are up). The daemon stopping kills its spares (and a daemon killed outright leaves none: a spare exits when
// its IPC channel to the daemon closes). Size 0 (the default): no spares, every VMM a new process, as before.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { WarmUpReport } from '../migration/warm-up.ts';
import type { SpareMessage, TakeMessage } from '../vmm/spare.ts';
import { readProcess } from './stats.ts';

/** Most spares a daemon keeps (each holds a Node process: ~100-200 MB resident once warm). */
export const MAX_POOL_SIZE = 8;
/** Default CPU (ms of its main thread) a spare's warm-up may take; its wall time at most WARM_UP_WALL_MS. */
export const DEFAULT_POOL_WARM_UP_MS = 1500;
const WARM_UP_WALL_MS = 180_000;
/** A spare's nice value (and its session's) until taken (RINGZERO_POOL_NICE, 0 to 19). */
const POOL_NICE = Math.min(19, Math.max(0, Number(process.env.RINGZERO_POOL_NICE ?? 10) | 0));
/** After a take, the pool waits this long before starting a new spare (the taken VMM's first seconds run first). */
const REFILL_AFTER_TAKE_MS = Number(process.env.RINGZERO_POOL_REFILL_MS ?? 5000);
/** How long a take waits for the spare's "taken" before it gives up on that spare. */
const TAKE_TIMEOUT_MS = 10_000;

export interface PoolOptions {
  size: number;
  /** CPU budget of each spare's warm-up (ms; 0: none, the spare only saves the process start). */
  warmUpMs: number;
  /** Where the spares' stderr goes until taken. */
  logFile: string;
  log(line: string): void;
}

export type SpareState = 'starting' | 'warming' | 'ready';

/** What GET /host/pool shows of one spare. */
export interface SpareView {
  pid: number;
  state: SpareState;
  startedAt: string;
  /** Its warm-up, once ended (null: none was possible, `why`). */
  warmUp?: WarmUpReport | null;
  why?: string;
  /** Resident set of the process (/proc/PID/status VmRSS). */
  residentBytes: number;
}

export interface PoolView {
  size: number;
  warmUpMs: number;
  nice: number;
  spares: SpareView[];
  /** Spares taken by a VMM start (incoming migration, restore), spares that died before being taken: since the daemon started. */
  taken: number;
  died: number;
  /** All spares' resident sets together. */
  residentBytes: number;
}

/** What a start took from the pool: the process, now the VM's VMM, and what it had done as a spare. */
export interface TakenSpare {
  child: ChildProcess;
  pid: number;
  /** Its state when taken: 'ready' (warmed up), 'warming' (its warm-up was cut short), 'starting' never (not taken). */
  state: SpareState;
  warmUp?: WarmUpReport | null;
}

/** One spare VMM process, spawned with an IPC channel (also used by bench/restore-hot --pool, with its own stdio). */
export class Spare {
  state: SpareState = 'starting';
  readonly startedAt = new Date().toISOString();
  warmUp?: WarmUpReport | null;
  why?: string;
  private taking = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.on('message', (m: SpareMessage) => {
      if (m?.kind === 'up' && this.state === 'starting') this.state = 'warming';
      else if (m?.kind === 'warm') {
        this.state = 'ready';
        this.warmUp = m.report;
        if (m.why !== undefined) this.why = m.why;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    // (the channel's own errors, say a send to a spare that just died: its exit says the rest)
    child.on('error', () => {});
  }

  /**
   * Start `ringzero vmm-spare` as `command` runs ringzero; `stdio` for fds 0-2 (the IPC channel is added as fd 3).
   * Detached: a session of its own, as the daemon starts every VMM (its autogroup is then its own: sched(7)).
   */
  static spawn(command: { file: string; args: string[] }, opts: { warmUpMs: number; nice?: number; wallMs?: number; stdio: Array<'ignore' | 'pipe' | number>; env?: NodeJS.ProcessEnv; detached?: boolean }): Spare {
    const child = spawn(command.file, [...command.args, 'vmm-spare', '--warm-up-ms', String(opts.warmUpMs), '--warm-up-wall-ms', String(opts.wallMs ?? WARM_UP_WALL_MS), '--nice', String(opts.nice ?? POOL_NICE)], {
      detached: opts.detached ?? true, stdio: [...opts.stdio, 'ipc'], cwd: '/', ...(opts.env ? { env: opts.env } : {}),
    });
    return new Spare(child);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves when the spare's state is `state` or later (or it died: check alive). */
  async until(state: SpareState): Promise<void> {
    const order: SpareState[] = ['starting', 'warming', 'ready'];
    let dead = false;
    void this.exited.then(() => { dead = true; for (const w of this.waiters.splice(0)) w(); });
    while (!dead && order.indexOf(this.state) < order.indexOf(state)) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Hand it `ringzero ...argv` (stderr appended to `log` when given); resolves once it runs it, rejects if it cannot. */
  take(argv: string[], log?: string, timeoutMs = TAKE_TIMEOUT_MS): Promise<void> {
    if (this.taking || !this.alive || this.state === 'starting') return Promise.reject(new Error(`spare VMM ${this.pid} cannot be taken (${this.alive ? this.state : 'gone'})`));
    this.taking = true;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`spare VMM ${this.pid} did not answer its take within ${timeoutMs} ms`)), timeoutMs);
      const onMessage = (m: SpareMessage) => { if (m?.kind === 'taken') done(); };
      const onExit = () => done(new Error(`spare VMM ${this.pid} ended as it was taken`));
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
        if (error) reject(error); else resolve();
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      try {
        this.child.send({ kind: 'take', argv, ...(log !== undefined ? { log } : {}) } satisfies TakeMessage);
      } catch (error) {
        done(error as Error);
      }
    });
  }

  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}

export class VmmPool {
  private readonly spares: Spare[] = [];
  private closed = false;
  private refillTimer: NodeJS.Timeout | undefined;
  /** Spares in a row that died before they were up: the next start waits longer (up to a minute). */
  private failures = 0;
  private taken = 0;
  private died = 0;

  constructor(private readonly command: { file: string; args: string[] }, private readonly options: PoolOptions) {}

  get size(): number {
    return this.options.size;
  }

  open(): void {
    if (this.options.size > 0) this.refill(0);
  }

  /**
   * Take the warmest spare for `ringzero ...argv` (its stderr appended to `log`); undefined when none is there to take.
   * `claim` is called with the spare chosen before it is handed the command line: the daemon writes down there that
   * the process is the VM's VMM, since that process's own command line (`vmm-spare ...`) will never name the VM, and
   * a daemon killed after the hand-off must find its VMM by that record alone. (A spare claimed but never handed
   * anything exits when its channel closes with the daemon.) It may be called again for the next spare when one fails.
   */
  async take(argv: string[], log: string, claim?: (spare: TakenSpare) => void): Promise<TakenSpare | undefined> {
    for (;;) {
      // (a warmed spare first, else one still warming up: its process start is saved all the same)
      const spare = this.spares.find((s) => s.alive && s.state === 'ready') ?? this.spares.find((s) => s.alive && s.state === 'warming');
      if (!spare) return undefined;
      this.spares.splice(this.spares.indexOf(spare), 1);
      const state = spare.state;
      this.refill(REFILL_AFTER_TAKE_MS);
      try {
        claim?.({ child: spare.child, pid: spare.pid, state, warmUp: spare.warmUp });
        await spare.take(argv, log);
      } catch (error) {
        this.options.log(`VMM pool: ${(error as Error).message}: ended, another one tried`);
        spare.kill();
        continue;
      }
      this.taken++;
      // (the VMM's exit is its VM's from now on: the manager listens for it)
      spare.child.removeAllListeners('message');
      return { child: spare.child, pid: spare.pid, state, warmUp: spare.warmUp };
    }
  }

  view(): PoolView {
    const spares = this.spares.filter((s) => s.alive).map((s): SpareView => ({
      pid: s.pid, state: s.state, startedAt: s.startedAt, residentBytes: readProcess(s.pid)?.residentBytes ?? 0,
      ...(s.warmUp !== undefined ? { warmUp: s.warmUp } : {}), ...(s.why !== undefined ? { why: s.why } : {}),
    }));
    return {
      size: this.options.size, warmUpMs: this.options.warmUpMs, nice: POOL_NICE, spares, taken: this.taken, died: this.died,
      residentBytes: spares.reduce((a, s) => a + s.residentBytes, 0),
    };
  }

  /** Kill every spare (the daemon is stopping). */
  close(): void {
    this.closed = true;
    clearTimeout(this.refillTimer);
    for (const s of this.spares.splice(0)) s.kill();
  }

  /** Start spares up to the pool's size after `delayMs` (one timer: a later call keeps the earlier deadline). */
  private refill(delayMs: number): void {
    if (this.closed || this.refillTimer !== undefined) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      while (!this.closed && this.spares.length < this.options.size) this.startOne();
    }, delayMs);
    this.refillTimer.unref();
  }

  private startOne(): void {
    let logFd: number | undefined;
    let spare: Spare;
    try {
      logFd = fs.openSync(this.options.logFile, 'a', 0o600);
      spare = Spare.spawn(this.command, { warmUpMs: this.options.warmUpMs, stdio: ['ignore', 'ignore', logFd] });
    } catch (error) {
      this.options.log(`VMM pool: cannot start a spare: ${(error as Error).message}`);
      this.failures++;
      this.refill(this.backoff());
      return;
    } finally {
      if (logFd !== undefined) fs.closeSync(logFd);
    }
    if (spare.child.pid === undefined) {
      this.failures++;
      spare.child.once('error', (error) => this.options.log(`VMM pool: cannot start a spare: ${error.message}`));
      this.refill(this.backoff());
      return;
    }
    spare.child.unref();
    // (the IPC channel must not keep the daemon's event loop alive either)
    (spare.child.channel as { unref?: () => void } | undefined)?.unref?.();
    this.spares.push(spare);
    void spare.until('warming').then(() => { if (spare.alive) this.failures = 0; });
    void spare.exited.then(({ code, signal }) => {
      const i = this.spares.indexOf(spare);
      if (i < 0) return; // taken (its exit is the VM's), or the pool closed
      this.spares.splice(i, 1);
      this.died++;
      if (spare.state === 'starting') this.failures++;
      this.options.log(`VMM pool: spare ${spare.pid} ended (${signal ?? `status ${code}`}) while ${spare.state}: replaced${this.failures > 0 ? ` in ${this.backoff() / 1000} s` : ''}`);
      this.refill(this.failures > 0 ? this.backoff() : 0);
    });
  }

  private backoff(): number {
    return Math.min(60_000, 1000 * 2 ** Math.max(0, this.failures - 1));
  }
}

/** Why `value` is not a pool size (an integer from 0 to MAX_POOL_SIZE), or undefined. */
export function poolSizeError(value: number): string | undefined {
  return Number.isInteger(value) && value >= 0 && value <= MAX_POOL_SIZE ? undefined : `must be an integer from 0 to ${MAX_POOL_SIZE}`;
}
