// The migration verbs as a user runs them: `ringzero run --incoming tcp:HOST:PORT` and `ringzero migrate
// --control-socket PATH --to HOST:PORT`, between two VMM processes running the counter guest (no Linux boot), and
// their usage errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { counterKernel, tmpDir, counterLines } from './support/counter-guest.ts';
import { RINGZERO_BIN, ringzero as runCli, type RingzeroResult } from './support/ringzero-cli.ts';

/** The CLI, with the two minutes a migration may take. */
const ringzero = (args: string[]): Promise<RingzeroResult> => runCli(args, { timeoutMs: 120_000 });

class Vmm {
  readonly child: ChildProcess;
  out = '';
  err = '';
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    this.child = spawn(RINGZERO_BIN, ['run', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('latin1').on('data', (s: string) => { this.out += s; });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.err += s; });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }
  async until(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (this.child.exitCode !== null) throw new Error(`VMM exited (${this.child.exitCode}) waiting for ${what}: ${this.err}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${this.err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

test('run --incoming and migrate: the counter guest moves to another process and counts on', { timeout: 300_000 }, async () => {
  const dir = tmpDir();
  const ctl = path.join(dir, 'src.ctl');
  const source = new Vmm(['--engine', 'soft', '--memory', '64M', '--kernel', counterKernel(0xffff), '--control-socket', ctl]);
  const dest = new Vmm(['--incoming', 'tcp:127.0.0.1:0', '--control-socket', path.join(dir, 'dst.ctl')]);
  try {
    let port = 0;
    await dest.until(() => { const m = /incoming migration on 127\.0\.0\.1:(\d+)/.exec(dest.err); if (m) port = Number(m[1]); return port > 0; }, 'the destination to listen');
    await source.until(() => counterLines(source.out).length >= 5 && fs.existsSync(ctl), 'five ticks');
    // The VMM checks the hot-block parameter before anything starts (the CLI does too: below).
    const { controlRequest } = await import('../src/vmm/control.ts');
    for (const hotBlocks of [-1, 1.5, 65537, '8']) {
      const refused = await controlRequest(ctl, { cmd: 'migrate', to: `127.0.0.1:${port}`, hotBlocks });
      assert.deepEqual(refused, { ok: false, error: '"hotBlocks" must be an integer from 0 to 65536 (0: no hot-block list)' }, String(hotBlocks));
    }
    const r = await ringzero(['migrate', '--control-socket', ctl, '--to', `127.0.0.1:${port}`, '--downtime-ms', '50', '--verify', '--hot-blocks', '4']);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(result.phase, 'completed');
    assert.equal(typeof result.downtimeMs, 'number');
    assert.equal(await source.exited, 0, `the source VMM ends: ${source.err}`);
    assert.match(source.err, /migrated to 127\.0\.0\.1:\d+ \(downtime \d+ ms\): this VMM ends/);
    const before = counterLines(source.out);
    await dest.until(() => counterLines(dest.out).length >= 3, 'the destination to count');
    assert.equal(counterLines(dest.out)[0], before[before.length - 1] + 1, 'the counter continues');
    assert.match(dest.err, /migration received: the VM runs here/);
    // The destination's own control socket steers the VM now.
    const status = await ringzero(['balloon', '--control-socket', path.join(dir, 'dst.ctl')]);
    assert.match(status.stderr, /no balloon/);
  } finally {
    source.child.kill('SIGKILL');
    dest.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors: --incoming with machine options or a bad address, migrate without a VM or with a bad --to', async () => {
  const dir = tmpDir();
  try {
    let r = await ringzero(['run', '--incoming', 'tcp:127.0.0.1:4000', '--memory', '1G']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^ringzero: --incoming takes the machine from the migration source: --memory cannot be given with it\n$/);
    r = await ringzero(['run', '--incoming', 'unix:/tmp/x']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^ringzero: --incoming 'unix:\/tmp\/x' is not tcp:HOST:PORT\n$/);
    r = await ringzero(['run', '--incoming', 'tcp:127.0.0.1:4000', '--restore', dir]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--restore cannot be given with it/);
    // copy-storage's targets: only with --incoming, absolute, never an existing file.
    r = await ringzero(['run', '--disk-target', path.join(dir, 'a.raw'), '--kernel', '/nonexistent']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--disk-target is where an incoming migration copies a disk: it needs --incoming/);
    r = await ringzero(['run', '--incoming', 'tcp:127.0.0.1:4000', '--disk-target', 'rel.raw']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--disk-target 'rel\.raw' is not an absolute file path/);
    fs.writeFileSync(path.join(dir, 'taken.raw'), '');
    r = await ringzero(['run', '--incoming', 'tcp:127.0.0.1:4000', '--disk-target', path.join(dir, 'taken.raw')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /taken\.raw' already exists: the copy is made there, never over a file/);
    r = await ringzero(['migrate', '--control-socket', path.join(dir, 'none.ctl'), '--to', '127.0.0.1:4000', '--disk-target', 'vda=x']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--disk-target is for a daemon's VM \(NAME\)/);
    r = await ringzero(['migrate', '--control-socket', path.join(dir, 'none.ctl'), '--to', '127.0.0.1:4000']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /^ringzero: cannot reach the VM's control socket .*none\.ctl: ENOENT\n$/);
    r = await ringzero(['migrate', '--control-socket', path.join(dir, 'none.ctl'), '--to', '127.0.0.1:4000', '--downtime-ms', '0']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--downtime-ms '0' must be an integer from 1 to 600000/);
    for (const n of ['65537', '-1', 'x']) {
      r = await ringzero(['migrate', '--control-socket', path.join(dir, 'none.ctl'), '--to', '127.0.0.1:4000', `--hot-blocks=${n}`]);
      assert.equal(r.status, 2, n);
      assert.match(r.stderr, new RegExp(`--hot-blocks '${n}' must be an integer from 0 to 65536 \\(0: no hot-block list\\)`));
    }
    r = await ringzero(['migrate', 'web', '--to', '127.0.0.1:4000', '--hot-blocks', '70000', '--socket', path.join(dir, 'none.sock')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--hot-blocks '70000' must be an integer from 0 to 65536/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
