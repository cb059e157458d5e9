// Snapshot and restore across VMM processes on the soft engine (src/vmm/snapshot-run.ts): the counter guest
// (test/support/counter-guest.ts: a tick printed on COM1 at 100 Hz of guest time, poweroff at its limit) runs in one
// process; SIGUSR2 pauses it, writes the snapshot and ends that process with status 0; a new process restores the
// snapshot and the counter carries on from the saved instant, with no value missing or repeated, to its poweroff.
//
// This file booted the default Linux guest for the same round trip until session 11 (a boot is ~25-50 s of the suite's
// budget). What that boot showed on top is checked in the boot that test/vm-shutdown-guest.test.ts already does: a
// snapshot of the default guest at its shell restored in a new VMM process (`ringzero run --restore`), its shell
// answers, its uptime continues from the saved instant (no jump), and it powers off with status 0. The same path on
// KVM: test/kvm-snapshot.test.ts ('KVM across VMM processes').
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { counterKernel, config, counterLines, tmpDir, until } from './support/counter-guest.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

class Vmm {
  readonly child: ChildProcess;
  output = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/vmm/snapshot-run.ts'), ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: root });
    this.child.stdout!.setEncoding('latin1').on('data', (s: string) => { this.output += s; });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.stderr += s; });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

test('snapshot-run: SIGUSR2 snapshots the running soft guest and ends its process; a new process restores it and the counter carries on exactly', { timeout: 120_000 }, async () => {
  const dir = tmpDir();
  const limit = 0x100;
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config(counterKernel(limit))));
  const snapshot = path.join(dir, 'snap');
  try {
    const first = new Vmm(['boot', configFile, snapshot]);
    let before: number[];
    try {
      await until(() => counterLines(first.output).length >= 10 || first.child.exitCode !== null, 60_000, `ten ticks (stderr: ${first.stderr})`);
      first.child.kill('SIGUSR2');
      assert.equal(await first.exited, 0, `the first VMM exits 0 after the snapshot (stderr: ${first.stderr})`);
      before = counterLines(first.output);
    } finally {
      first.close();
    }
    assert.ok(fs.existsSync(path.join(snapshot, 'state.json')));
    assert.ok(before.length >= 10 && before[before.length - 1] < limit, `snapshotted mid-run: ${before.length} ticks`);
    assert.deepEqual(before, before.map((_, i) => i + 1));
    // Wall time passes between the two processes: the guest's time must not catch up on it (the counter would skip).
    await new Promise((resolve) => setTimeout(resolve, 500));

    const second = new Vmm(['restore', snapshot]);
    try {
      const watchdog = setTimeout(() => second.close(), 60_000);
      const status = await second.exited;
      clearTimeout(watchdog);
      assert.equal(status, 0, `the restored guest powers off at its limit (stderr: ${second.stderr})`);
    } finally {
      second.close();
    }
    const after = counterLines(second.output);
    assert.equal(after[0], before[before.length - 1] + 1, `the counter carries on: ...${before.slice(-2)} then ${after.slice(0, 2)}...`);
    assert.deepEqual([...before, ...after], Array.from({ length: limit }, (_, i) => i + 1), 'no tick missing or repeated, to the poweroff');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
