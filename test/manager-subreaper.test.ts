// The daemon as a child subreaper (src/manager/subreaper.ts), with a real daemon, the real CLI and synthetic guests:
// - a VMM that leaves a process behind when it is destroyed (RINGZERO_TEST_VMM_ORPHAN: the VMM is exec'd by a shell
//   that first started a `sleep` in the background): the orphan is re-parented to the daemon, not to init, and when
//   it ends the daemon reaps it (no zombie left), while Node's own children are left to Node;
// - a daemon killed with SIGKILL while a VM runs and started again: the VM ran on, `list` shows it running with the
//   same VMM, and `shutdown` through the new daemon stops it gracefully (the guest powers off on the ACPI button);
//   a guest that ignores the button is destroyed when `shutdown --timeout` is up.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { cli, Daemon, guestKernel, killRecordedVmms, processAlive, tempDir, waitFor } from './support/manager-harness.ts';
import { readProcStat } from '../src/sys/proc-stat.ts';

let dir: string;
let stateDir: string;
let daemon: Daemon;
let idleKernel: string;
let buttonKernel: string;

before(async () => {
  dir = tempDir('reap');
  stateDir = path.join(dir, 'state');
  idleKernel = guestKernel(dir, 'idle');
  buttonKernel = guestKernel(dir, 'button');
});

after(async () => {
  killRecordedVmms(stateDir);
  await daemon?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Field 4 (ppid) and field 3 (state) of /proc/PID/stat, or undefined once the process is gone. */
function stat(pid: number): { ppid: number; state: string } | undefined {
  const fields = readProcStat(`/proc/${pid}/stat`)?.fields;
  return fields === undefined ? undefined : { state: fields[0], ppid: Number(fields[1]) };
}

function childrenOf(pid: number): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).filter((p) => stat(p)?.ppid === pid);
}

const define = (name: string, kernel: string) => fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ name, kernel, memory: 64 }));

test('what a destroyed VMM leaves behind is re-parented to the daemon and reaped when it ends', async () => {
  // The orphan would live 60 s, and the test ends it itself once it has seen its new parent: a fixed life short enough
  // for the test to wait out was too short for start, list and destroy through three CLI processes on a loaded host
  // (3 s at load ~19, 6 s at load ~33 in a CI run: its parent read as gone).
  daemon = await Daemon.start(stateDir, [], { RINGZERO_TEST_VMM_ORPHAN: '60' });
  define('orphaner', idleKernel);
  assert.equal((await cli(['define', path.join(dir, 'orphaner.json')], daemon.socket)).status, 0);
  const started = await cli(['start', 'orphaner'], daemon.socket);
  assert.equal(started.status, 0, started.stderr);
  const list = await cli(['list', '--json'], daemon.socket);
  const vmm = JSON.parse(list.stdout).find((vm: { name: string }) => vm.name === 'orphaner').pid as number;
  assert.equal(stat(vmm)?.ppid, daemon.child.pid, 'the VMM is the daemon\'s child');
  const [sleeper] = childrenOf(vmm);
  assert.ok(sleeper !== undefined, 'the VMM has its background child');
  assert.match(fs.readFileSync(`/proc/${sleeper}/cmdline`, 'utf8'), /^sleep\x0060\x00$/);

  assert.equal((await cli(['destroy', 'orphaner'], daemon.socket)).status, 0);
  assert.ok(!processAlive(vmm));
  // Orphaned: its parent is now the daemon (a subreaper), not init.
  await waitFor('the orphan re-parented', () => stat(sleeper)?.ppid !== vmm, 5000);
  assert.equal(stat(sleeper)?.ppid, daemon.child.pid, 'the orphan\'s parent is the daemon');
  // It ends (SIGTERM); the daemon reaps it: no zombie stays behind.
  process.kill(sleeper, 'SIGTERM');
  await waitFor('the orphan reaped', () => stat(sleeper) === undefined, 20_000);
  await waitFor('the daemon to say it reaped it', () => new RegExp(`reaped orphaned process ${sleeper} \\(killed by signal 15\\)`).test(daemon.stderr), 5000);
  // The daemon's own children (the VMMs) are still Node's: a VM started again runs and is noticed when it ends.
  assert.equal((await cli(['start', 'orphaner'], daemon.socket)).status, 0);
  assert.equal((await cli(['destroy', 'orphaner'], daemon.socket)).status, 0);
  const info = await cli(['info', 'orphaner'], daemon.socket);
  assert.match(info.stdout, /State:\s+shut off/);
  assert.match(info.stdout, /Last exit:\s+destroyed/);
  await daemon.stop();
});

test('a daemon killed while a VM runs and started again: the VM ran on, list shows it, shutdown stops it gracefully', async () => {
  daemon = await Daemon.start(stateDir);
  define('button', buttonKernel);
  assert.equal((await cli(['define', path.join(dir, 'button.json')], daemon.socket)).status, 0);
  assert.equal((await cli(['start', 'button'], daemon.socket)).status, 0);
  const before = JSON.parse((await cli(['list', '--json'], daemon.socket)).stdout).find((vm: { name: string }) => vm.name === 'button');
  assert.equal(before.state, 'running');

  await daemon.stop('SIGKILL');
  assert.ok(processAlive(before.pid), 'the VM outlives its daemon');
  daemon = await Daemon.start(stateDir);
  // Said before its socket answered, but its stderr pipe may be read a moment after the connection that found it ready.
  await waitFor('the daemon to say it re-attached', () => new RegExp(`re-attached to VM 'button' \\(pid ${before.pid}\\)`).test(daemon.stderr), 5000);
  const list = await cli(['list'], daemon.socket);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`^button\\s+running\\s+1\\s+64M\\s+${before.pid}$`, 'm'));

  const shutdown = await cli(['shutdown', 'button', '--timeout', '30'], daemon.socket, [], 60_000);
  assert.equal(shutdown.status, 0, shutdown.stderr);
  assert.equal(shutdown.stdout, 'VM \'button\' shut down\n', 'graceful: the guest powered off on the button');
  assert.ok(!processAlive(before.pid));
  const info = await cli(['info', 'button'], daemon.socket);
  assert.match(info.stdout, /State:\s+shut off/);
  assert.match(info.stdout, /Last exit:\s+guest powered off/);

  // A guest that ignores the button: shutdown --timeout destroys it when the time is up.
  assert.equal((await cli(['start', 'orphaner'], daemon.socket)).status, 0);
  const deaf = await cli(['shutdown', 'orphaner', '--timeout', '1'], daemon.socket);
  assert.equal(deaf.status, 0, deaf.stderr);
  assert.equal(deaf.stdout, 'VM \'orphaner\' did not stop within the timeout: destroyed\n');
  assert.match((await cli(['info', 'orphaner'], daemon.socket)).stdout, /Last exit:\s+shutdown timed out: destroyed/);
});
