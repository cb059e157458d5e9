// Drives a real guest through the real CLI: spawns `bin/ringzero run ...` with its serial console on a pipe,
// waits for console output and types command lines. Used by the integration tests that boot Linux.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_PROMPT, INIT_OK_LINE } from '../../src/image/build.ts';
import { makeBzImage } from '../../src/boot/synthetic.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RINGZERO_BIN = path.join(root, 'bin', 'ringzero');
/** How long a boot to the shell may take (a software CPU on a busy machine: minutes). */
export const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);

export class GuestSession {
  readonly child: ChildProcess;
  output = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private waiters: { pattern: RegExp; from: number; resolve: (m: RegExpMatchArray) => void; fail: (e: Error) => void }[] = [];

  /**
   * `args` follow `ringzero run`. RINGZERO_BOOT_TEST_ECHO=1 copies the console to stderr. `spawnAs` runs another
   * VMM on the same console instead (the benches drive QEMU with it): `args` are then that command's, and it gets
   * its own process group, which close() kills as a whole, with `spawnAs.env` added to its environment. RINGZERO_VMM_CPU_PROF=DIR runs ringzero under
   * `node --cpu-prof` (200 µs samples), its profile written to DIR when it exits: Node 20 refuses --cpu-prof in
   * NODE_OPTIONS, so a bench's VMM cannot be profiled through the environment alone.
   */
  constructor(args: string[], private readonly spawnAs?: { command: string; env?: Record<string, string> }) {
    const profDir = process.env.RINGZERO_VMM_CPU_PROF;
    this.child = spawnAs
      ? spawn(spawnAs.command, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, ...(spawnAs.env ? { env: { ...process.env, ...spawnAs.env } } : {}) })
      : profDir
        ? spawn(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '200', `--cpu-prof-dir=${profDir}`, RINGZERO_BIN, 'run', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
        : spawn(RINGZERO_BIN, ['run', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin!.on('error', () => { /* the VMM exited; the exit handler reports it */ });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => this.feed(s));
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.stderr += s; });
    // 'exit' can come before the last console bytes are read from the pipe (a CI run lost the source's last counter
    // line of a migration that way), so the session ends when stdout has ended too (at most 2 s later: a process
    // the VMM started could hold the pipe open).
    const stdoutEnded = new Promise<void>((resolve) => { this.child.stdout!.once('end', resolve).once('close', resolve); });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => {
      void Promise.race([stdoutEnded, new Promise<void>((r) => setTimeout(r, 2000))]).then(() => {
        // Nothing more will be written: fail every wait at once instead of at its timeout.
        for (const w of this.waiters) w.fail(new Error(`ringzero exited (status ${code}) while waiting for ${w.pattern}; console:\n${this.output.slice(-3000)}\nstderr:\n${this.stderr.slice(-2000)}`));
        this.waiters = [];
        this.done = true;
        resolve(code);
      });
    }));
  }

  private done = false;

  private feed(s: string): void {
    this.output += s;
    if (process.env.RINGZERO_BOOT_TEST_ECHO) process.stderr.write(s);
    this.waiters = this.waiters.filter((w) => {
      const m = this.output.slice(w.from).match(w.pattern);
      if (m) w.resolve(m);
      return !m;
    });
  }

  /** Wait for `pattern` in the output written after offset `from` (so earlier output, e.g. the boot log, cannot match). */
  waitFor(pattern: RegExp, ms = 60_000, from = 0): Promise<RegExpMatchArray> {
    const m = this.output.slice(from).match(pattern);
    if (m) return Promise.resolve(m);
    if (this.done) return Promise.reject(new Error(`ringzero has exited; ${pattern} never came; console:\n${this.output.slice(-3000)}`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; console so far:\n${this.output.slice(-3000)}\nstderr:\n${this.stderr.slice(-1000)}`)), ms);
      this.waiters.push({ pattern, from, resolve: (x) => { clearTimeout(t); resolve(x); }, fail: (e) => { clearTimeout(t); reject(e); } });
    });
  }

  /** Wait for /init's line and the shell prompt. */
  async waitForShell(): Promise<void> {
    await this.waitFor(new RegExp(escapeRegExp(INIT_OK_LINE)), BOOT_TIMEOUT_MS);
    await this.waitFor(new RegExp(escapeRegExp(GUEST_PROMPT)), 60_000);
  }

  /** Type a command line; returns the console offset from which its answer is awaited. */
  type(line: string): number {
    const from = this.output.length;
    this.child.stdin!.write(line + '\n');
    return from;
  }

  /**
   * Run `command` in the guest's shell and return its output, captured as `RZ-<tag>: <output>` on one line.
   * The marker is spelt so the echoed command line cannot match it, and the answer must end its line: console
   * output arrives in chunks, and a number cut in two must not match.
   */
  async ask(tag: string, command: string, ms = 60_000): Promise<string> {
    const from = this.type(`echo RZ-${tag}: $(${command})`);
    const m = await this.waitFor(new RegExp(`\\nRZ-${escapeRegExp(tag)}: ([^\\r\\n]*)\\r?\\n`), ms, from);
    return m[1];
  }

  /**
   * Wait for the VMM to exit; 'timeout' if it does not within `ms`. The timer is cleared once the VMM has exited: left
   * pending, it kept the test file's process alive for the rest of `ms` after its last test (node --test waits for the
   * event loop to drain), up to a minute of a concurrency slot per boot test file.
   */
  waitForExit(ms = 60_000): Promise<number | null | 'timeout'> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), ms); });
    return Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer));
  }

  /** Kill the VMM (always call in `finally`); RINGZERO_BOOT_TEST_LOG=FILE keeps the console. */
  close(): void {
    if (process.env.RINGZERO_BOOT_TEST_LOG) writeFileSync(process.env.RINGZERO_BOOT_TEST_LOG, this.output);
    if (this.spawnAs) {
      try { process.kill(-this.child.pid!, 'SIGKILL'); } catch { /* already gone */ }
    } else {
      this.child.kill('SIGKILL');
    }
  }
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The acceptance scenario of the boot tests (issues 2 and 3): boot the default guest with 2 vCPUs on `engine`,
 * check the kernel release, the CPU count and the guest clock against the host's, then `poweroff -f` must end
 * ringzero with status 0. Throws (an assertion error) on the first mismatch.
 */
export async function bootToShellScenario(engine: 'soft' | 'kvm', check: {
  match(actual: string, re: RegExp, message?: string): void;
  equal(actual: unknown, expected: unknown, message?: string): void;
  fail(message: string): never;
}): Promise<void> {
  const guest = new GuestSession(['--engine', engine, '--cpus', '2', '--memory', '256M']);
  try {
    await guest.waitForShell();
    check.match(await guest.ask('UNAME', 'uname -r'), /^6\.1\.\d+.*cloud-amd64$/);
    check.equal(Number(await guest.ask('CPUS', 'grep -c ^processor /proc/cpuinfo')), 2, 'the guest brings up both vCPUs');
    const date = Number(await guest.ask('DATE', 'date +%s'));
    const skew = Math.abs(date - Date.now() / 1000);
    if (skew > 2) {
      // Keep the evidence: what the guest's timekeeping said about its clocks.
      const diag = await guest.ask('DIAG', 'dmesg | grep -i -E "clock|rtc|tsc" | tr "\\n" "|"; cat /proc/uptime').catch(() => '');
      check.fail(`guest clock within 2 s of the host's (off by ${skew.toFixed(1)} s); guest said: ${diag}`);
    }
    guest.type('poweroff -f');
    check.equal(await guest.waitForExit(), 0, `ringzero exits with status 0 after poweroff (stderr: ${guest.stderr.slice(-500)})`);
  } finally {
    guest.close();
  }
}

/**
 * Write a tiny bzImage to `file` (src/boot/synthetic.ts makeBzImage) whose 64-bit entry runs `codeHex`: its
 * 4 KiB payload is HLT (0xf4) but for the code at offset 0x200, where the entry jumps. Returns `file`.
 */
export function writeTinyKernel(file: string, codeHex: string): string {
  const payload = new Uint8Array(4096).fill(0xf4);
  payload.set(Buffer.from(codeHex, 'hex'), 0x200);
  writeFileSync(file, makeBzImage({ payload }));
  return file;
}
