// Suspend/resume and resource control through a real daemon and the real CLI, on a synthetic guest that polls COM1
// (a busy vCPU: 100% of a host CPU while it runs) and echoes what it reads:
// - `ringzero suspend` stops its vCPU (its VMM's CPU time stands still, console input is not echoed, state 'paused'
//   in list/info/REST), `ringzero resume` continues it (the input typed meanwhile is echoed then);
// - `ringzero set --cpu-quota/--cpu-weight/--pin` changes the VMM's cgroup and thread affinity while it runs, and a
//   definition's cpuQuotaPercent is in force from the start (the busy guest then uses about that share of a CPU);
//   on a host without writable cgroups the CLI says so in one line instead.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { readProcess } from '../src/manager/stats.ts';
import { ResourceController, threadAffinity } from '../src/manager/resources.ts';
import { api, cli, Daemon, guestConsole, guestKernel, killRecordedVmms, tempDir, waitFor } from './support/manager-harness.ts';

let dir: string;
let stateDir: string;
let daemon: Daemon;
let kernel: string;

before(async () => {
  dir = tempDir('susp');
  stateDir = path.join(dir, 'state');
  kernel = guestKernel(dir, 'echo');
  daemon = await Daemon.start(stateDir);
});

after(async () => {
  killRecordedVmms(stateDir);
  await daemon?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const s = () => ({ socket: daemon.socket });

/** CPU seconds the process uses over `ms`. */
async function cpuOver(pid: number, ms: number): Promise<number> {
  const before = readProcess(pid)!.cpuSeconds;
  await new Promise((resolve) => setTimeout(resolve, ms));
  return readProcess(pid)!.cpuSeconds - before;
}

/** Guest instructions the VM runs over `ms` (its VMM's counters). */
async function instructionsOver(name: string, ms: number): Promise<number> {
  const count = async () => (await api(s(), 'GET', `/vms/${name}/stats`)).body.counters.instructions as number;
  const before = await count();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (await count()) - before;
}


test('suspend stops the vCPU and the echo; resume continues; state paused in list, info and REST', async () => {
  assert.equal((await api(s(), 'POST', '/vms', { name: 'echo', kernel, memory: 64 })).status, 201);
  assert.equal((await cli(['start', 'echo'], daemon.socket)).status, 0);
  const vm = (await api(s(), 'GET', '/vms/echo')).body;
  const con = await guestConsole(vm.consoleSocket);
  await waitFor('the guest\'s banner', () => con.output().includes('ringzero test guest: ready'));
  con.socket.write('a');
  await waitFor('the echo of a', () => con.output().includes('ready\na'));

  const suspended = await cli(['suspend', 'echo'], daemon.socket);
  assert.equal(suspended.status, 0, suspended.stderr);
  assert.match(suspended.stdout, /VM 'echo' suspended/);
  assert.equal((await api(s(), 'GET', '/vms/echo')).body.state, 'paused');
  assert.match((await cli(['list'], daemon.socket)).stdout, /^echo\s+paused\s/m);
  assert.match((await cli(['info', 'echo'], daemon.socket)).stdout, /^State:\s+paused$/m);
  // A paused busy guest runs no instruction and costs no CPU (the run loop parks; the VMM only serves its sockets).
  const pausedInstructions = await instructionsOver('echo', 1000);
  assert.equal(pausedInstructions, 0, 'a paused guest ran instructions');
  const pausedCpu = await cpuOver(vm.pid, 1500);
  assert.ok(pausedCpu < 0.15, `a paused VM used ${pausedCpu.toFixed(2)} CPU s in 1.5 s`);
  con.socket.write('b');
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.ok(!con.output().includes('ab'), 'a paused guest echoed its input');
  // Suspending twice is fine; shutdown wants a running VM.
  assert.equal((await api(s(), 'POST', '/vms/echo/suspend')).status, 200);
  const shut = await api(s(), 'POST', '/vms/echo/shutdown', { timeout: 1 });
  assert.equal(shut.status, 409);
  assert.equal(shut.body.error.code, 'conflict');

  const resumed = await cli(['resume', 'echo'], daemon.socket);
  assert.equal(resumed.status, 0, resumed.stderr);
  await waitFor('the echo of the input typed while paused', () => con.output().includes('ab'), 10_000);
  assert.equal((await api(s(), 'GET', '/vms/echo')).body.state, 'running');
  // (Counted in instructions, not CPU time: on a loaded host the resumed guest may get little CPU.)
  assert.ok(await instructionsOver('echo', 1000) > 0, 'the resumed guest runs');
  // Resuming a running VM is a no-op; an unknown VM is not_found; a shut-off one is a conflict.
  assert.equal((await api(s(), 'POST', '/vms/echo/resume')).status, 200);
  assert.equal((await api(s(), 'POST', '/vms/nope/suspend')).body.error.code, 'not_found');
  assert.equal((await api(s(), 'POST', '/vms', { name: 'off', kernel, memory: 64 })).status, 201);
  const offSuspend = await cli(['suspend', 'off'], daemon.socket);
  assert.equal(offSuspend.status, 1);
  assert.match(offSuspend.stderr, /shut off.*\[conflict\]/);
  con.socket.destroy();
  assert.equal((await api(s(), 'POST', '/vms/echo/destroy')).status, 200);
});

test('resource control: cgroup quota from the definition, set at run time, pinning; or a clear line without cgroups', async (t) => {
  const support = new ResourceController(stateDir).available();
  assert.equal((await api(s(), 'POST', '/vms', { name: 'capped', kernel, memory: 64, cpuQuotaPercent: 20 })).status, 201);
  // Bad input: a clear message, nothing changed.
  for (const [args, message] of [
    [['--cpu-quota', '0'], /invalid --cpu-quota '0'/],
    [['--cpu-weight', 'lots'], /invalid --cpu-weight 'lots'/],
    [['--pin', '0-'], /invalid --pin '0-'/],
    [[], /nothing to set/],
  ] as const) {
    const r = await cli(['set', 'capped', ...args], daemon.socket);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  }
  const tooMany = await api(s(), 'PATCH', '/vms/capped/resources', { cpuPinning: '0-4095' });
  assert.equal(tooMany.status, 400);
  assert.match(tooMany.body.error.message, /names CPU 4095/);

  assert.equal((await cli(['start', 'capped'], daemon.socket)).status, 0);
  const vm = (await api(s(), 'GET', '/vms/capped')).body;
  if (!support.ok) {
    assert.match(vm.resources.note, /cgroups/);
    const r = await cli(['set', 'capped', '--cpu-weight', '200'], daemon.socket);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /need cgroups: .+\[conflict\]/);
    t.diagnostic(`no cgroups here: ${support.reason}`);
  } else {
    const cgroup: string = vm.resources.cgroup;
    assert.ok(cgroup.startsWith(support.root), cgroup);
    assert.ok(fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').includes(String(vm.pid)), 'the VMM is in its cgroup');
    const quotaFile = () => (support.kind === 'v2' ? fs.readFileSync(path.join(cgroup, 'cpu.max'), 'utf8').trim()
      : fs.readFileSync(path.join(cgroup, 'cpu.cfs_quota_us'), 'utf8').trim());
    assert.equal(quotaFile(), support.kind === 'v2' ? '20000 100000' : '20000');
    // The busy guest gets about its 20% (CFS bandwidth control enforces it per 100 ms period).
    await new Promise((resolve) => setTimeout(resolve, 500));
    const capped = await cpuOver(vm.pid, 3000) / 3;
    t.diagnostic(`busy guest under a 20% quota: ${(100 * capped).toFixed(1)}% of a CPU`);
    assert.ok(capped < 0.3, `the VMM used ${(100 * capped).toFixed(1)}% of a CPU under a 20% quota`);

    const set = await cli(['set', 'capped', '--cpu-quota', '50', '--cpu-weight', '200', '--pin', '0'], daemon.socket);
    assert.equal(set.status, 0, set.stderr);
    assert.match(set.stdout, /CPU quota 50%, weight 200, memory max none, CPUs 0/);
    assert.equal(quotaFile(), support.kind === 'v2' ? '50000 100000' : '50000');
    const weight = support.kind === 'v2' ? fs.readFileSync(path.join(cgroup, 'cpu.weight'), 'utf8').trim() : fs.readFileSync(path.join(cgroup, 'cpu.shares'), 'utf8').trim();
    assert.equal(weight, support.kind === 'v2' ? '200' : '2048');
    for (const tid of fs.readdirSync(`/proc/${vm.pid}/task`)) assert.equal(threadAffinity(vm.pid, Number(tid)), '0', `thread ${tid}`);
    const info = await cli(['info', 'capped'], daemon.socket);
    assert.match(info.stdout, /^Resources:\s+quota 20%$/m); // the definition is unchanged without --config
    assert.match(info.stdout, /^In force:\s+CPU quota 50%, weight 200, memory max none, CPUs 0, cgroup /m);

    // A memory limit: memory.max (v2) or memory.limit_in_bytes in the v1 memory hierarchy, which the VMM then joins.
    const memSet = await cli(['set', 'capped', '--memory-max', '1G'], daemon.socket);
    assert.equal(memSet.status, 0, memSet.stderr);
    const memDir = support.kind === 'v2' ? cgroup : cgroup.replace(/\/cpu(,cpuacct)?\//, '/memory/');
    assert.equal(fs.readFileSync(path.join(memDir, support.kind === 'v2' ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8').trim(), String(2 ** 30));
    assert.ok(fs.readFileSync(path.join(memDir, 'cgroup.procs'), 'utf8').split('\n').includes(String(vm.pid)));

    // --config saves in the definition too; none removes a limit.
    assert.equal((await cli(['set', 'capped', '--cpu-quota', 'none', '--config'], daemon.socket)).status, 0);
    assert.equal(quotaFile(), support.kind === 'v2' ? 'max 100000' : '-1');
    assert.equal((await api(s(), 'GET', '/vms/capped')).body.definition.cpuQuotaPercent, undefined);
    assert.equal((await api(s(), 'POST', '/vms/capped/destroy')).status, 200);
    await waitFor('the cgroups removed', () => !fs.existsSync(cgroup) && !fs.existsSync(memDir), 5000);
  }
  // A shut-off VM: the values go to the definition.
  assert.equal((await cli(['set', 'capped', '--cpu-weight', '300'], daemon.socket)).status, 0);
  assert.equal((await api(s(), 'GET', '/vms/capped')).body.definition.cpuWeight, 300);
  assert.equal((await api(s(), 'GET', '/host/resources')).body.ok, support.ok);
});

test('statistics name each device and count halts (JSON and /metrics)', async () => {
  const idleKernel = guestKernel(dir, 'idle');
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, Buffer.alloc(1 << 20));
  assert.equal((await api(s(), 'POST', '/vms', { name: 'halted', kernel: idleKernel, memory: 64, disks: [{ path: disk }] })).status, 201);
  assert.equal((await api(s(), 'POST', '/vms/halted/start')).status, 200);
  // The idle guest halts with interrupts off: the run loop sleeps (and counts a halt) at least once a second.
  await waitFor('a halt counted', async () => ((await api(s(), 'GET', '/vms/halted/stats')).body.counters?.halts ?? 0) > 0, 10_000);
  const stats = (await api(s(), 'GET', '/vms/halted/stats')).body;
  assert.deepEqual(stats.counters.devices, [{ name: 'vda', kind: 'disk', readBytes: 0, writeBytes: 0 }]);
  const metrics = (await api(s(), 'GET', '/metrics')).body as string;
  assert.match(metrics, /^ringzero_vm_device_bytes_total\{vm="halted",device="vda",dir="read"\} 0$/m);
  assert.match(metrics, /^ringzero_vm_halts_total\{vm="halted"\} [1-9]\d*$/m);
  assert.equal((await api(s(), 'POST', '/vms/halted/destroy')).status, 200);
});

test('setmem: the balloon target through the daemon; info shows the balloon; clear errors', async () => {
  const idleKernel = guestKernel(dir, 'idle');
  assert.equal((await api(s(), 'POST', '/vms', { name: 'bal', kernel: idleKernel, memory: 128, balloon: true })).status, 201);
  assert.equal((await api(s(), 'POST', '/vms', { name: 'nobal', kernel: idleKernel, memory: 64 })).status, 201);
  const offSet = await cli(['setmem', 'bal', '96M'], daemon.socket);
  assert.equal(offSet.status, 1);
  assert.match(offSet.stderr, /shut off: the balloon works while it runs \[conflict\]/);
  assert.equal((await api(s(), 'POST', '/vms/bal/start')).status, 200);
  assert.equal((await api(s(), 'POST', '/vms/nobal/start')).status, 200);
  const set = await cli(['setmem', 'bal', '96M'], daemon.socket);
  assert.equal(set.status, 0, set.stderr);
  // The synthetic guest has no balloon driver: the target is set, nothing is inflated.
  assert.match(set.stdout, /VM 'bal': guest has 128 MiB of 128 MiB \(balloon target 32 MiB, inflated 0 MiB\)/);
  assert.match((await cli(['info', 'bal'], daemon.socket)).stdout, /^Balloon:\s+guest has 128 MiB of 128 MiB \(balloon target 32 MiB/m);
  const tooBig = await api(s(), 'PUT', '/vms/bal/balloon', { memory: 256 });
  assert.equal(tooBig.status, 400);
  assert.match(tooBig.body.error.message, /from 16 MiB to 128 MiB, not 256/);
  const none = await cli(['setmem', 'nobal', '32M'], daemon.socket);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /has no balloon: set "balloon": true/);
  for (const name of ['bal', 'nobal']) assert.equal((await api(s(), 'POST', `/vms/${name}/destroy`)).status, 200);
});

test('reboot: a guest that ignores the button is reset in place; onReboot exit is shutdown then start', async () => {
  const idleKernel = guestKernel(dir, 'idle');
  const buttonKernel = guestKernel(dir, 'button');
  assert.equal((await api(s(), 'POST', '/vms', { name: 'deaf', kernel: idleKernel, memory: 64 })).status, 201);
  assert.equal((await api(s(), 'POST', '/vms', { name: 'exiter', kernel: buttonKernel, memory: 64, onReboot: 'exit' })).status, 201);
  for (const name of ['deaf', 'exiter']) assert.equal((await api(s(), 'POST', `/vms/${name}/start`)).status, 200);
  const deaf = (await api(s(), 'GET', '/vms/deaf')).body;
  const con = await guestConsole(deaf.consoleSocket);
  await waitFor('the idle guest\'s banner', () => con.output().includes('test guest: idle'));
  const reset = await cli(['reboot', 'deaf'], daemon.socket);
  assert.equal(reset.status, 0, reset.stderr);
  assert.match(reset.stdout, /VM 'deaf' was reset \(its guest ignores the power button\)/);
  await waitFor('the banner of the second boot', () => con.output().split('test guest: idle').length === 3, 10_000);
  assert.equal((await api(s(), 'GET', '/vms/deaf')).body.pid, deaf.pid, 'reset in the same VMM process');
  con.socket.destroy();

  const before = (await api(s(), 'GET', '/vms/exiter')).body.pid;
  const restarted = await cli(['reboot', 'exiter', '--timeout', '20'], daemon.socket);
  assert.equal(restarted.status, 0, restarted.stderr);
  assert.match(restarted.stdout, /VM 'exiter' restarted/);
  const after = (await api(s(), 'GET', '/vms/exiter')).body;
  assert.equal(after.state, 'running');
  assert.notEqual(after.pid, before, 'a new VMM process');
  assert.equal(after.lastExit.reason, 'guest powered off', 'the first run ended gracefully through the button');
  // Paused VMs are not rebooted.
  assert.equal((await api(s(), 'POST', '/vms/deaf/suspend')).status, 200);
  const paused = await api(s(), 'POST', '/vms/deaf/reboot');
  assert.equal(paused.status, 409);
  assert.match(paused.body.error.message, /paused: resume it first/);
  for (const name of ['deaf', 'exiter']) assert.equal((await api(s(), 'POST', `/vms/${name}/destroy`)).status, 200);
});
