// VM snapshots and backups of KVM VMs through a real daemon (issue 7): the counter guest (test/support/counter-guest:
// the 8259 + 8254 at 100 Hz, a counter on COM1 every tick) runs on the KVM engine in its own VMM process. On kvm_pvm
// the daemon runs with RINGZERO_ALLOW_PVM=1 (the VMMs inherit it): the guest is a small program, which PVM runs.
// Snapshot create/restore and a backup restored as a new VM must carry the counter on from the saved instant, on KVM:
// no value lost or repeated. Skipped without a usable /dev/kvm.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { api, cli, Daemon, guestConsole, killRecordedVmms, tempDir, waitFor, type GuestConsole } from './support/manager-harness.ts';
import { counterKernel, counterLines, consecutive } from './support/counter-guest.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { controlRequest } from '../src/vmm/control.ts';

const host = detectKvm();
const skip = host.verdict === 'none' ? `no usable KVM: ${host.reason}` : false;

let dir: string;
let stateDir: string;
let daemon: Daemon;
const consoles: GuestConsole[] = [];

before(async () => {
  if (skip) return;
  dir = tempDir('kvm-backup');
  stateDir = path.join(dir, 'state');
  daemon = await Daemon.start(stateDir, [], host.verdict === 'pvm' ? { RINGZERO_ALLOW_PVM: '1' } : {});
});

after(async () => {
  if (skip) return;
  for (const c of consoles) c.socket.destroy();
  killRecordedVmms(stateDir);
  await daemon?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, url: string, body?: unknown) => api({ socket: daemon.socket }, method, url, body);

/**
 * The counter values a VM's console shows. A restored VM's first line is left out: the saved instant can fall between
 * the OUTs of one line, so the restored guest prints only its tail ("eb" of "01eb" reads as 0xeb).
 */
async function attach(name: string, restored = false): Promise<() => number[]> {
  const vm = (await call('GET', `/vms/${name}`)).body;
  const c = await guestConsole(vm.consoleSocket);
  consoles.push(c);
  return () => counterLines(c.output()).slice(restored ? 1 : 0);
}

test('a KVM VM: snapshot, restore, backup and a clone from the backup carry its counter on', { skip, timeout: 240_000 }, async () => {
  // A disk in the pool too, so that the backup's disk switch (qcow2 overlay at the backup's instant) runs on KVM.
  const disk = path.join(stateDir, 'volumes', 'kctr.raw');
  fs.mkdirSync(path.dirname(disk), { recursive: true });
  fs.writeFileSync(disk, Buffer.alloc(1 << 20, 0x5a));
  const defined = await call('POST', '/vms', { name: 'kctr', engine: 'kvm', memory: 64, kernel: counterKernel(0xffff), cmdline: 'console=ttyS0', onReboot: 'exit', disks: [{ path: disk }] });
  assert.equal(defined.status, 201, JSON.stringify(defined.body));
  const started = await call('POST', '/vms/kctr/start');
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const ticks = await attach('kctr');
  await waitFor('ticks on KVM', () => ticks().length >= 5, 60_000);
  const status = await cli(['info', 'kctr'], daemon.socket);
  assert.match(status.stdout, /Engine:\s+kvm/);

  // A snapshot while it runs, then destroyed and restored: the counter goes on from the snapshot's value.
  const snap = await cli(['snapshot', 'create', 'kctr', 's1'], daemon.socket);
  assert.equal(snap.status, 0, snap.stderr);
  const s1 = (await call('GET', '/vms/kctr/snapshots/s1')).body;
  assert.equal(s1.engine, 'kvm', JSON.stringify(s1));
  await waitFor('ticks after the snapshot', () => ticks().length >= 10, 60_000);
  assert.equal((await call('POST', '/vms/kctr/destroy')).status, 200);
  const restored = await call('POST', '/vms/kctr/snapshots/s1/restore');
  assert.equal(restored.status, 200, JSON.stringify(restored.body));
  const again = await attach('kctr', true);
  await waitFor('ticks after the restore', () => again().length >= 5, 60_000);
  consecutive(again(), 'after the restore');
  assert.ok(again()[0] <= ticks()[ticks().length - 1], `the restore goes back to the snapshot's instant: ${again()[0]} after ${ticks().slice(-1)}`);

  // A backup of the running KVM VM, restored as a new VM: it carries on from the backup's instant, on KVM.
  const low = again().slice(-1)[0];
  const backup = await call('POST', '/backups', { vm: 'kctr' });
  assert.equal(backup.status, 201, JSON.stringify(backup.body));
  const high = again().slice(-1)[0];
  await waitFor('ticks after the backup', () => again().length >= 10, 60_000);
  consecutive(again(), 'across the backup\'s pause');
  assert.equal(backup.body.disks.length, 1);
  assert.match((await call('GET', '/vms/kctr')).body.definition.disks[0].path, /kctr-vda-bk-.*\.qcow2$/, 'the running VM switched to its overlay');
  const clone = await call('POST', `/backups/${backup.body.id}/restore`, { as: 'kclone' });
  assert.equal(clone.status, 200, JSON.stringify(clone.body));
  assert.equal(clone.body.definition.engine, 'kvm');
  const cloned = await attach('kclone', true);
  await waitFor('ticks of the clone', () => cloned().length >= 5, 60_000);
  consecutive(cloned(), 'the clone');
  for (const name of ['kctr', 'kclone']) {
    const status = await controlRequest(path.join(stateDir, 'run', `${name}.ctl`), { cmd: 'status' });
    assert.equal(status.engine, 'kvm', `${name}'s VMM runs the KVM engine: ${JSON.stringify(status)}`);
  }
  // The backup's instant is between the request and its answer: the clone's first whole line comes after one seen
  // then, and at most two after the last whole line seen at the answer (the instant may split the line after it).
  assert.ok(cloned()[0] > low && cloned()[0] <= high + 2, `the clone starts from the backup's instant: ${cloned()[0]} (seen ${low} before the backup, ${high} after)`);
});
