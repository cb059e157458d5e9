// Integration on the KVM engine: the scenario of test/vm-boot.test.ts (Debian's cloud kernel with the default
// initramfs through the real CLI, `--engine kvm --cpus 2`, commands typed at the shell: kernel release, CPU count,
// the guest clock against the host's, then `poweroff -f` and status 0). It needs hardware KVM (vmx/svm with
// kvm_intel/kvm_amd): on kvm_pvm an unmodified kernel would run in KVM's instruction emulator and never get far, and
// without /dev/kvm there is nothing to run on. There it is skipped with one loud line naming the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT, INIT_OK_LINE } from '../src/image/build.ts';
import { detectKvm } from '../src/kvm/host.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'ringzero');
const image = findDefaultImage();
const kvm = detectKvm();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 120_000);

const skip = kvm.verdict !== 'hardware'
  ? `no hardware KVM (${kvm.verdict === 'pvm' ? 'kvm_pvm' : 'no usable /dev/kvm'}): ${kvm.reason}`
  : !image ? 'no default image: run `bin/ringzero image build`' : false;
if (skip) process.stderr.write(`*** vm-boot-kvm: Linux boot on the KVM engine SKIPPED: ${skip}\n`);

class Console {
  output = '';
  private waiters: { pattern: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];
  feed(s: string): void {
    this.output += s;
    this.waiters = this.waiters.filter((w) => {
      const m = this.output.slice(w.from).match(w.pattern);
      if (m) w.resolve(m);
      return !m;
    });
  }
  /** Wait for `pattern` in the output written after offset `from` (so the boot log cannot match). */
  waitFor(pattern: RegExp, ms: number, from = 0): Promise<RegExpMatchArray> {
    const m = this.output.slice(from).match(pattern);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; console so far:\n${this.output.slice(-3000)}`)), ms);
      this.waiters.push({ pattern, from, resolve: (x) => { clearTimeout(t); resolve(x); } });
    });
  }
}

test('boots the default guest to a shell on the KVM engine and powers off', { skip, timeout: BOOT_TIMEOUT_MS + 120_000 }, async () => {
  const child = spawn(bin, ['run', '--engine', 'kvm', '--cpus', '2', '--memory', '256M'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const con = new Console();
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => con.feed(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  /** Type a command line; returns the console offset from which its answer is awaited. */
  const type = (line: string) => { const from = con.output.length; child.stdin.write(line + '\n'); return from; };
  try {
    await con.waitFor(new RegExp(INIT_OK_LINE), BOOT_TIMEOUT_MS);
    await con.waitFor(new RegExp(escape(GUEST_PROMPT)), 60_000);

    let from = type('uname -r; echo UNAME-DONE');
    const uname = await con.waitFor(/\n(\d+\.\d+\.\d+[^\s]*cloud-amd64)\s*\r?\nUNAME-DONE/, 60_000, from);
    assert.match(uname[1], /^6\.1\./);

    // The markers are spelt so the echoed command line itself cannot match them.
    from = type('echo RZ-CPUS: $(grep -c ^processor /proc/cpuinfo)');
    const cpus = await con.waitFor(/\nRZ-CPUS: (\d+)/, 60_000, from);
    assert.equal(Number(cpus[1]), 2, 'the guest brings up both vCPUs');

    from = type('echo RZ-DATE: $(date +%s)');
    const date = await con.waitFor(/\nRZ-DATE: (\d+)/, 60_000, from);
    const skew = Math.abs(Number(date[1]) - Date.now() / 1000);
    assert.ok(skew <= 2, `guest clock within 2 s of the host's (off by ${skew.toFixed(1)} s)`);

    type('poweroff -f');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
    assert.equal(code, 0, `ringzero exits with status 0 after poweroff (stderr: ${stderr.slice(-500)})`);
  } finally {
    child.kill('SIGKILL');
  }
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
