// Integration: boot Debian's stock cloud kernel with the default initramfs on the software engine through
// the real CLI (`bin/ringzero run`, serial console in pipe mode), type commands at the shell and check the
// answers: the kernel release, the number of CPUs, the guest's clock against the host's, and a clean
// power-off with exit status 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT, INIT_OK_LINE } from '../src/image/build.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'ringzero');
const image = findDefaultImage();

/** RINGZERO_SKIP_BOOT_TEST=1 skips this test (minutes on a software CPU) for quick local runs; CI always runs it. */
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);

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

test('boots the default guest to a shell on the soft engine and powers off', { skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false, timeout: BOOT_TIMEOUT_MS + 120_000 }, async () => {
  const child = spawn(bin, ['run', '--engine', 'soft', '--cpus', '2', '--memory', '256M'], { stdio: ['pipe', 'pipe', 'pipe'] });
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

    // The markers are spelt so the echoed command line itself cannot match them, and each answer must end its
    // line: console output arrives in chunks, and a number cut in two must not match.
    from = type('echo RZ-CPUS: $(grep -c ^processor /proc/cpuinfo)');
    const cpus = await con.waitFor(/\nRZ-CPUS: (\d+)\r?\n/, 60_000, from);
    assert.equal(Number(cpus[1]), 2, 'the guest brings up both vCPUs');

    from = type('echo RZ-DATE: $(date +%s)');
    const date = await con.waitFor(/\nRZ-DATE: (\d+)\r?\n/, 60_000, from);
    const skew = Math.abs(Number(date[1]) - Date.now() / 1000);
    if (skew > 2) {
      // Keep the evidence: what the guest's timekeeping said about its clocks.
      from = type('dmesg | grep -i -E "clock|rtc|tsc" ; cat /proc/uptime; echo RZ-DIAG-DONE');
      await con.waitFor(/\nRZ-DIAG-DONE/, 60_000, from).catch(() => undefined);
      assert.fail(`guest clock within 2 s of the host's (off by ${skew.toFixed(1)} s); guest said:\n${con.output.slice(from)}`);
    }

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
