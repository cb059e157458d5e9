// End to end, by hand (minutes on the software CPU, so off by default): RINGZERO_BOOT_TEST=1 boots the
// default guest through the real CLI with `--disk IMG,serial=... --rng` and checks from inside it that
// /dev/vda exists with the right size and serial, dd writes and reads it (the write lands in the host file
// at the same offset), and the kernel's hw_random source is virtio.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT, INIT_OK_LINE } from '../src/image/build.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'ringzero');
const image = findDefaultImage();
const enabled = process.env.RINGZERO_BOOT_TEST === '1';
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);

class Console {
  output = '';
  private waiters: { pattern: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];
  feed(s: string): void {
    this.output += s;
    if (process.env.RINGZERO_BOOT_TEST_ECHO) process.stderr.write(s);
    this.waiters = this.waiters.filter((w) => {
      const m = this.output.slice(w.from).match(w.pattern);
      if (m) w.resolve(m);
      return !m;
    });
  }
  waitFor(pattern: RegExp, ms: number, from = 0): Promise<RegExpMatchArray> {
    const m = this.output.slice(from).match(pattern);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; console so far:\n${this.output.slice(-3000)}`)), ms);
      this.waiters.push({ pattern, from, resolve: (x) => { clearTimeout(t); resolve(x); } });
    });
  }
}

test('the guest sees virtio-blk (/dev/vda: size, serial, dd both ways) and virtio-rng', {
  skip: !enabled ? 'set RINGZERO_BOOT_TEST=1 (boots Linux on the software CPU: minutes)' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 180_000,
}, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ringzero-vguest-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'disk.img');
  const sectors = 16 * 2048; // 16 MiB
  const content = Buffer.alloc(sectors * 512);
  content.write('RZ-HOST-MARK', 2 * 512, 'latin1');
  writeFileSync(disk, content);

  const child = spawn(bin, ['run', '--engine', 'soft', '--cpus', '2', '--memory', '256M', '--disk', `${disk},serial=rzdisk0`, '--rng'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const con = new Console();
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => con.feed(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const type = (line: string) => { const from = con.output.length; child.stdin.write(line + '\n'); return from; };
  try {
    await con.waitFor(new RegExp(INIT_OK_LINE), BOOT_TIMEOUT_MS);
    await con.waitFor(new RegExp(GUEST_PROMPT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 60_000);

    let from = type('echo RZ-SIZE: $(cat /sys/block/vda/size)');
    assert.equal(Number((await con.waitFor(/\nRZ-SIZE: (\d+)\r?\n/, 60_000, from))[1]), sectors);
    from = type('echo RZ-SERIAL: $(cat /sys/block/vda/serial)');
    assert.equal((await con.waitFor(/\nRZ-SERIAL: (\S+)\r?\n/, 60_000, from))[1], 'rzdisk0');

    from = type('echo RZ-READ: $(dd if=/dev/vda bs=512 skip=2 count=1 2>/dev/null | head -c 12)');
    assert.equal((await con.waitFor(/\nRZ-READ: (\S+)\r?\n/, 60_000, from))[1], 'RZ-HOST-MARK');

    from = type('echo guest-wrote-this | dd of=/dev/vda bs=512 seek=7 conv=sync,fsync 2>/dev/null; echo RZ-DD: $?');
    assert.equal((await con.waitFor(/\nRZ-DD: (\d+)\r?\n/, 60_000, from))[1], '0');
    // Right after the fsync the host file has it, before any poweroff.
    assert.equal(readFileSync(disk).subarray(7 * 512, 7 * 512 + 16).toString('latin1'), 'guest-wrote-this');
    from = type('echo RZ-BACK: $(dd if=/dev/vda bs=512 skip=7 count=1 2>/dev/null | head -c 16)');
    assert.equal((await con.waitFor(/\nRZ-BACK: (\S+)\r?\n/, 60_000, from))[1], 'guest-wrote-this');

    from = type('echo RZ-RNG: $(cat /sys/class/misc/hw_random/rng_current)');
    assert.match((await con.waitFor(/\nRZ-RNG: (\S+)\r?\n/, 60_000, from))[1], /^virtio_rng/);
    from = type('echo RZ-RAND: $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | md5sum)');
    assert.match((await con.waitFor(/\nRZ-RAND: ([0-9a-f]{32})/, 60_000, from))[1], /^[0-9a-f]{32}$/);
    from = type('echo RZ-IRQ: $(grep -c virtio /proc/interrupts)');
    const irqs = Number((await con.waitFor(/\nRZ-IRQ: (\d+)\r?\n/, 60_000, from))[1]);
    assert.ok(irqs >= 2, `virtio interrupts listed in /proc/interrupts: ${irqs}`);

    type('poweroff -f');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
    assert.equal(code, 0, `exit status 0 after poweroff (stderr: ${stderr.slice(-500)})`);
  } finally {
    if (process.env.RINGZERO_BOOT_TEST_LOG) writeFileSync(process.env.RINGZERO_BOOT_TEST_LOG, con.output);
    child.kill('SIGKILL');
  }
});
