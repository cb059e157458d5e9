// Integration: boot the default guest (Debian's kernel + busybox initramfs) on the soft engine in one VMM process,
// type at its shell, snapshot it (SIGUSR2 to src/vmm/snapshot-run.ts) and let that process end; restore the snapshot
// in a new VMM process and type again: the same shell answers, and its uptime continues from where it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT, INIT_OK_LINE } from '../src/image/build.ts';
import { BOOT_TIMEOUT_MS, escapeRegExp } from './support/guest.ts';
import type { VmConfig } from '../src/vmm/config.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const image = findDefaultImage();
const enabled = process.env.RINGZERO_SKIP_BOOT_TEST !== '1' || process.env.CI === 'true';

class Vmm {
  readonly child: ChildProcess;
  output = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/vmm/snapshot-run.ts'), ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: root });
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => { this.output += s; });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.stderr += s; });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  async waitFor(pattern: RegExp, ms: number, from = 0): Promise<RegExpMatchArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.output.slice(from).match(pattern);
      if (m) return m;
      if (this.child.exitCode !== null) throw new Error(`VMM exited (${this.child.exitCode}) waiting for ${pattern}; console:\n${this.output.slice(-2000)}\nstderr:\n${this.stderr}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${pattern}; console:\n${this.output.slice(-2000)}\nstderr:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  type(line: string): number {
    const from = this.output.length;
    this.child.stdin!.write(line + '\n');
    return from;
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

test('a snapshot of the default guest at its shell restores in a new VMM process and the shell answers', {
  skip: !enabled ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 180_000,
}, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-snap-guest-'));
  const config: VmConfig = {
    engine: 'soft', kernel: image!.kernel, initrd: image!.initrd, cmdline: 'console=ttyS0 panic=-1',
    cpus: 1, memory: 256 * 1024 * 1024, onReboot: 'exit',
  };
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  const snapshot = path.join(dir, 'snap');

  const first = new Vmm(['boot', configFile, snapshot]);
  let uptimeBefore: number;
  try {
    await first.waitFor(new RegExp(escapeRegExp(INIT_OK_LINE)), BOOT_TIMEOUT_MS);
    await first.waitFor(new RegExp(escapeRegExp(GUEST_PROMPT)), 60_000);
    let from = first.type('echo before; cat /proc/uptime');
    const m = await first.waitFor(/\nbefore\r?\n(\d+\.\d+) /, 60_000, from);
    uptimeBefore = Number(m[1]);
    from = first.output.length;
    first.child.kill('SIGUSR2');
    assert.equal(await first.exited, 0, `the first VMM exits 0 after the snapshot (stderr: ${first.stderr})`);
  } finally {
    first.close();
  }
  assert.ok(fs.existsSync(path.join(snapshot, 'state.json')));

  const second = new Vmm(['restore', snapshot]);
  try {
    const from = second.type('echo after; cat /proc/uptime');
    const m = await second.waitFor(/\nafter\r?\n(\d+\.\d+) /, 60_000, from);
    const uptimeAfter = Number(m[1]);
    assert.ok(uptimeAfter >= uptimeBefore, `uptime continues: ${uptimeBefore} then ${uptimeAfter}`);
    assert.ok(uptimeAfter < uptimeBefore + 30, `no jump in guest time across the restore: ${uptimeBefore} then ${uptimeAfter}`);
    second.type('poweroff -f');
    const status = await Promise.race([second.exited, new Promise((r) => setTimeout(() => r('timeout'), 60_000))]);
    assert.equal(status, 0, `the restored VM powers off (stderr: ${second.stderr})`);
  } finally {
    second.close();
  }
});
