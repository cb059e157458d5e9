// The VMM side of graceful shutdown and snapshots, in one process: a Machine running a synthetic guest that waits for
// the ACPI power button powers off when the control socket's "shutdown" presses it; "snapshot" writes a snapshot the
// machine runs on from, refuses bad directories; Machine.restore takes the control socket asked for now, not the saved
// one. And `ringzero run --restore` usage errors: one line, status 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Machine } from '../src/vmm/machine.ts';
import { controlRequest } from '../src/vmm/control.ts';
import type { ConsoleIo, VmConfig } from '../src/vmm/config.ts';
import { bin, guestKernel, tempDir, waitFor } from './support/manager-harness.ts';
import { stopMachine } from './support/counter-guest.ts';

function capture(): ConsoleIo & { text: () => string } {
  let out = '';
  return {
    write: (data) => { out += Buffer.from(data).toString('latin1'); },
    onInput: () => () => {},
    text: () => out,
  };
}

function config(kernel: string, controlSocket: string): VmConfig {
  return { engine: 'soft', kernel, cmdline: '', cpus: 1, memory: 64 * 2 ** 20, onReboot: 'exit', controlSocket };
}

test('control socket: "shutdown" presses the power button; a guest that enabled it powers off', async () => {
  const dir = tempDir('btn');
  try {
    const socket = path.join(dir, 'ctl');
    const io = capture();
    const machine = new Machine(config(guestKernel(dir, 'button'), socket), io);
    machine.loadKernel();
    const running = machine.run();
    try {
      await waitFor('the banner', () => io.text().includes('ringzero test guest: button\n'), 10_000);
      // The guest sets PWRBTN_EN right after its banner: press until it says it listens.
      let answer: Record<string, unknown> = {};
      await waitFor('the guest to listen', async () => (answer = await controlRequest(socket, { cmd: 'shutdown' })).listening === true, 10_000);
      assert.equal(answer.ok, true);
      assert.deepEqual(await running, { kind: 'poweroff' });
    } finally {
      await stopMachine(machine, running);
    }
    assert.ok(!fs.existsSync(socket), 'close() removes the socket');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('control socket: "snapshot" writes a snapshot and the VM runs on; bad dirs are refused; restore takes the new socket', async () => {
  const dir = tempDir('csnap');
  try {
    const socket = path.join(dir, 'ctl');
    const io = capture();
    const machine = new Machine(config(guestKernel(dir, 'echo'), socket), io);
    machine.loadKernel();
    const running = machine.run();
    const snap = path.join(dir, 'snap');
    try {
      await waitFor('the banner', () => io.text().includes('ready\n'), 10_000);
      // The echo guest never enables the button: the press is answered, and nothing happens.
      assert.deepEqual(await controlRequest(socket, { cmd: 'shutdown' }), { ok: true, listening: false });
      for (const bad of [{ cmd: 'snapshot' }, { cmd: 'snapshot', dir: 'relative/dir' }, { cmd: 'snapshot', dir: 7 }]) {
        const answer = await controlRequest(socket, bad);
        assert.equal(answer.ok, false, JSON.stringify(bad));
        assert.match(String(answer.error), /absolute path/);
      }
      const proc = await controlRequest(socket, { cmd: 'snapshot', dir: '/proc/ringzero-none/snap' });
      assert.deepEqual(proc, { ok: false, error: 'snapshot "dir" cannot be under /proc or /sys' });
      // Under a regular file: the writer cannot make its directory (and leaves nothing).
      fs.writeFileSync(path.join(dir, 'file'), '');
      const unwritable = await controlRequest(socket, { cmd: 'snapshot', dir: path.join(dir, 'file', 'snap') }, 30_000);
      assert.equal(unwritable.ok, false);
      assert.match(String(unwritable.error), /^snapshot failed: /);
      assert.deepEqual(await controlRequest(socket, { cmd: 'snapshot', dir: snap }, 30_000), { ok: true, dir: snap });
      assert.ok(fs.existsSync(path.join(snap, 'state.json')));
      assert.equal(machine.paused, false, 'resumed after the snapshot');
      assert.equal(machine.exitRequested, undefined);
    } finally {
      await stopMachine(machine, running);
    }

    // Restored: the control socket is the one asked for now (the saved path belonged to the old process).
    const socket2 = path.join(dir, 'ctl2');
    const restored = Machine.restore(snap, capture(), { controlSocket: socket2 });
    try {
      assert.equal(restored.config.controlSocket, socket2);
      await waitFor('the new control socket', () => fs.existsSync(socket2), 5000);
      assert.ok(!fs.existsSync(socket), 'the saved path is not served again');
      assert.deepEqual(await controlRequest(socket2, { cmd: 'shutdown' }), { ok: true, listening: false });
    } finally {
      restored.close();
    }
    const none = Machine.restore(snap, capture());
    try {
      assert.equal(none.config.controlSocket, undefined, 'no socket unless asked for');
    } finally {
      none.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('run --restore: a missing snapshot or a machine option with it is one line and status 2', () => {
  const dir = tempDir('rargs');
  try {
    const run = (args: string[]) => spawnSync(process.execPath, [bin, 'run', ...args], { encoding: 'utf8', timeout: 30_000 });
    const cases: Array<[string[], RegExp]> = [
      [['--restore', path.join(dir, 'none')], /is not a snapshot directory \(no state\.json\)/],
      [['--restore', dir, '--memory', '1G'], /--restore takes the machine from the snapshot: --memory cannot be given with it/],
      [['--restore', dir, '--kernel', '/x'], /--kernel cannot be given/],
      [['--restore', dir, '--no-translate'], /--no-translate cannot be given/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, message);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
