// A VMM process (ringzero or QEMU) driven over its serial console on stdin/stdout, for the benches that start,
// snapshot and migrate whole VMs (bench/snapshot, bench/migrate). Each runs in its own process group, so one kill
// ends it and its children; `killAllVmms()` ends every one still running (call it from the bench's exit handler).
import { spawn, type ChildProcess } from 'node:child_process';
import { GUEST_PROMPT } from '../../src/image/build.ts';
import type { Spare } from '../../src/manager/pool.ts';

const running = new Set<ChildProcess>();

function killGroup(child: ChildProcess): void {
  try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
}

export function killAllVmms(): void {
  for (const child of running) killGroup(child);
}

export class VmmProcess {
  readonly child: ChildProcess;
  out = '';
  err = '';
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  /** `timeoutMs` bounds each wait; `env` is added to this process's. A VMM that exits with a failure status has its stderr's tail printed. */
  /** `child`: a process already started (with piped stdio, in a process group of its own), e.g. a spare VMM (src/vmm/spare.ts). */
  constructor(cmd: string, args: string[], private readonly timeoutMs: number, env?: Record<string, string>, child?: ChildProcess) {
    this.child = child ?? spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, ...(env ? { env: { ...process.env, ...env } } : {}) });
    running.add(this.child);
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => { this.out += s; this.wake(); });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.err += s; this.wake(); });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => {
      running.delete(this.child);
      if (code !== null && code !== 0) process.stderr.write(`${cmd} exited ${code}: ${this.err.slice(-1000)}\n`);
      this.wake();
      resolve(code);
    }));
    this.child.stdin!.on('error', () => {});
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `test()` holds (checked on every output and at least every 100 ms). */
  async waitFor(test: () => boolean, what: string, ms = this.timeoutMs): Promise<void> {
    const deadline = performance.now() + ms;
    while (!test()) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`VMM exited before ${what}:\n${this.out.slice(-1500)}\n${this.err.slice(-1500)}`);
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${this.out.slice(-1500)}\n${this.err.slice(-1500)}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 100); });
    }
  }

  /** Wait until the console output from `from` on contains `text`. */
  waitForOutput(text: string, from = 0, ms = this.timeoutMs): Promise<void> {
    return this.waitFor(() => this.out.includes(text, from), `'${text}'`, ms);
  }

  type(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Press Enter every 20 ms until the shell prints its prompt again (within `ms`): the guest runs and answers. */
  async pingPrompt(ms = this.timeoutMs): Promise<void> {
    const from = this.out.length;
    const timer = setInterval(() => this.child.stdin!.write('\n'), 20);
    this.child.stdin!.write('\n');
    try { await this.waitForOutput(GUEST_PROMPT, from, ms); } finally { clearInterval(timer); }
  }

  async kill(): Promise<void> {
    killGroup(this.child);
    await this.exited;
  }
}

/**
 * Wait until spare VMM `spare` (`ringzero vmm-spare`, as the daemon's --vmm-pool keeps them: bench/migrate,
 * bench/restore-hot, bench/snapshot) is ready to be handed a command line; `err()` is its stderr so far, for the error
 * when it ended instead. Returns its warm-up and the wait, for the bench's line.
 */
export async function spareReady(spare: Spare, err: () => string): Promise<string> {
  const t = performance.now();
  await spare.until('ready');
  if (!spare.alive) throw new Error(`the spare VMM ended: ${err()}`);
  const w = spare.warmUp;
  const warm = w ? `${w.ms} ms of CPU in ${w.wallMs} ms, ${(w.instructions / 1e6).toFixed(1)}M instructions` : `none${spare.why !== undefined ? ` (${spare.why})` : ''}`;
  return `warm-up ${warm}, ready after ${((performance.now() - t) / 1000).toFixed(1)} s`;
}
