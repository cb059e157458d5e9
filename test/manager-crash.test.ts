// The daemon killed with SIGKILL in the middle of a define (or an edit) leaves the state directory consistent:
// every definition there is whole and valid, the VM being defined either exists wholly or not at all, and the next
// daemon removes the temporary files and carries on. RINGZERO_TEST_CRASH_AT=after-tmp makes the daemon kill itself
// at the worst instant of an atomic write: the temporary file written and synced, not yet renamed. In the middle of
// a start (start-spawned: the VMM process made, its pid not yet recorded; start-recorded: recorded as starting, its
// console not yet served) the next daemon has the VM running with that one VMM, which answers on its console and is
// stopped as its own; also when the VMM was a spare of the pool, handed a restore. (A clone killed midway:
// test/manager-templates.test.ts.)
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { api, Daemon, guestConsole, guestKernel, processAlive, tempDir, waitFor } from './support/manager-harness.ts';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function stateDirOf(tag: string): string {
  const dir = tempDir(tag);
  dirs.push(dir);
  return path.join(dir, 'state');
}

test('SIGKILL between writing and renaming a new definition: the VM is not defined, and nothing is left behind', async () => {
  const stateDir = stateDirOf('crash-define');
  let daemon = await Daemon.start(stateDir);
  assert.equal((await api({ socket: daemon.socket }, 'POST', '/vms', { name: 'before', cpus: 2 })).status, 201);
  await daemon.stop();

  daemon = await Daemon.start(stateDir, [], { RINGZERO_TEST_CRASH_AT: 'after-tmp' });
  await assert.rejects(api({ socket: daemon.socket }, 'POST', '/vms', { name: 'torn', cpus: 3 }), 'the daemon dies mid-request');
  assert.equal((await daemon.exited).signal, 'SIGKILL');
  const leftovers = fs.readdirSync(path.join(stateDir, 'vms'));
  assert.ok(leftovers.some((f) => f.startsWith('.torn.json.tmp-')), `the crash happened mid-write: ${leftovers}`);
  assert.ok(!leftovers.includes('torn.json'));

  daemon = await Daemon.start(stateDir);
  try {
    const list = await api({ socket: daemon.socket }, 'GET', '/vms');
    assert.deepEqual(list.body.map((v: { name: string; definition: { cpus: number } }) => [v.name, v.definition.cpus]), [['before', 2]]);
    assert.deepEqual(fs.readdirSync(path.join(stateDir, 'vms')), ['before.json'], 'temporary files are removed');
    // The name is free: defining it again works.
    assert.equal((await api({ socket: daemon.socket }, 'POST', '/vms', { name: 'torn', cpus: 3 })).status, 201);
  } finally {
    await daemon.stop();
  }
});

test('SIGKILL in the middle of an edit leaves the old definition whole', async () => {
  const stateDir = stateDirOf('crash-edit');
  let daemon = await Daemon.start(stateDir);
  assert.equal((await api({ socket: daemon.socket }, 'POST', '/vms', { name: 'vm', memory: 128 })).status, 201);
  const original = fs.readFileSync(path.join(stateDir, 'vms', 'vm.json'), 'utf8');
  await daemon.stop();

  daemon = await Daemon.start(stateDir, [], { RINGZERO_TEST_CRASH_AT: 'after-tmp' });
  await assert.rejects(api({ socket: daemon.socket }, 'PUT', '/vms/vm', { name: 'vm', memory: 512 }));
  await daemon.exited;
  assert.equal(fs.readFileSync(path.join(stateDir, 'vms', 'vm.json'), 'utf8'), original);

  daemon = await Daemon.start(stateDir);
  try {
    assert.equal((await api({ socket: daemon.socket }, 'GET', '/vms/vm')).body.definition.memory, 128);
  } finally {
    await daemon.stop();
  }
});

test('SIGKILL at a random instant of a burst of defines: every definition left is whole and listed', async () => {
  const stateDir = stateDirOf('crash-burst');
  let daemon = await Daemon.start(stateDir);
  const requests = Array.from({ length: 40 }, (_, i) => api({ socket: daemon.socket }, 'POST', '/vms', { name: `vm${i}`, cpus: 1 + (i % 4) }).catch(() => undefined));
  await new Promise((resolve) => setTimeout(resolve, 5 + Math.floor(Math.random() * 40)));
  await daemon.stop('SIGKILL');
  const answered = (await Promise.all(requests)).filter((r) => r?.status === 201).length;

  daemon = await Daemon.start(stateDir);
  try {
    const files = fs.readdirSync(path.join(stateDir, 'vms'));
    assert.ok(files.every((f) => /^vm\d+\.json$/.test(f)), `only whole definitions remain: ${files}`);
    for (const file of files) {
      const definition = JSON.parse(fs.readFileSync(path.join(stateDir, 'vms', file), 'utf8'));
      assert.equal(`${definition.name}.json`, file);
      assert.equal(definition.cpus, 1 + (Number(definition.name.slice(2)) % 4));
    }
    const list = (await api({ socket: daemon.socket }, 'GET', '/vms')).body as Array<{ name: string }>;
    assert.equal(list.length, files.length);
    // Every define that was answered 201 was durable before the answer.
    assert.ok(list.length >= answered, `${list.length} listed, ${answered} acknowledged`);
  } finally {
    await daemon.stop();
  }
});

test('a second daemon on the same state directory is refused', async () => {
  const stateDir = stateDirOf('lock');
  const first = await Daemon.start(stateDir);
  try {
    await assert.rejects(Daemon.start(stateDir, ['--socket', path.join(path.dirname(stateDir), 'other.sock')]), /another daemon \(pid \d+\) owns the state directory/);
  } finally {
    await first.stop();
  }
});

/** Live processes whose command line names this control socket: the VMMs of that VM. */
function vmmsOf(controlSocket: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try { args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    const at = args.indexOf('--control-socket');
    if (at >= 0 && args[at + 1] === controlSocket && processAlive(Number(entry))) pids.push(Number(entry));
  }
  return pids;
}

for (const point of ['start-spawned', 'start-recorded'] as const) {
  test(`SIGKILL in the middle of a start (${point}): the next daemon has the VM running with its one VMM, console and stop included`, async () => {
    const stateDir = stateDirOf(`crash-${point}`);
    const kernel = guestKernel(path.dirname(stateDir), 'idle');
    const controlSocket = path.join(stateDir, 'run', 'vm.ctl');
    let daemon = await Daemon.start(stateDir);
    let vmms: number[] = [];
    try {
      assert.equal((await api({ socket: daemon.socket }, 'POST', '/vms', { name: 'vm', kernel, memory: 64 })).status, 201);
      await daemon.stop();

      daemon = await Daemon.start(stateDir, [], { RINGZERO_TEST_CRASH_AT: point });
      await assert.rejects(api({ socket: daemon.socket }, 'POST', '/vms/vm/start'), 'the daemon dies mid-start');
      assert.equal((await daemon.exited).signal, 'SIGKILL');
      vmms = vmmsOf(controlSocket);
      assert.equal(vmms.length, 1, `the VMM it spawned runs on: ${vmms}`);
      const record = fs.existsSync(path.join(stateDir, 'run', 'vm.json')) ? JSON.parse(fs.readFileSync(path.join(stateDir, 'run', 'vm.json'), 'utf8')) : undefined;
      if (point === 'start-spawned') assert.ok(record === undefined || record.state === 'shut off', `no record names it: ${JSON.stringify(record)}`);
      else assert.deepEqual([record.state, record.pid], ['starting', vmms[0]]);

      daemon = await Daemon.start(stateDir);
      const vm = (await api({ socket: daemon.socket }, 'GET', '/vms/vm')).body;
      assert.equal(vm.state, 'running', JSON.stringify(vm));
      assert.equal(vm.pid, vmms[0], 'the VMM that runs is the one the VM has');
      if (point === 'start-spawned') assert.match(daemon.stderr, /adopted VM 'vm' \(pid \d+\)/);
      // Its console, served by that VMM, reaches the guest through the daemon's path.
      await waitFor('the console socket', () => fs.existsSync(vm.consoleSocket));
      const console = await guestConsole(vm.consoleSocket);
      await waitFor('the guest\'s line', () => console.output().includes('ringzero test guest: idle\n'), 60_000);
      console.socket.destroy();
      // A second start is refused, not a second VMM on the same VM.
      assert.equal((await api({ socket: daemon.socket }, 'POST', '/vms/vm/start')).body.error.code, 'conflict');
      assert.deepEqual(vmmsOf(controlSocket), vmms);
      const destroyed = await api({ socket: daemon.socket }, 'POST', '/vms/vm/destroy');
      assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
      assert.equal(destroyed.body.state, 'shut off');
      assert.ok(!processAlive(vmms[0]), 'the adopted VMM is stopped as the daemon\'s own');
      assert.deepEqual(vmmsOf(controlSocket), []);
    } finally {
      await daemon.stop();
      for (const pid of vmms) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });
}

// A restore taken by a spare VMM of the pool (src/manager/pool.ts): the spare's command line is `vmm-spare ...` and
// never names the VM, so the daemon writes the record naming it before it hands the spare the VM. Killed right after
// the hand-off (start-spawned), the next daemon has the VM running in that process, whose console answers, and
// stops it as its own. (Before that record, the next daemon showed the VM shut off while the spare ran its guest, and
// a second start would have put a second VMM on the same disks.)
test('SIGKILL right after a restore is handed to a spare VMM: the next daemon has the VM running in the spare', async () => {
  const stateDir = stateDirOf('crash-spare');
  const kernel = guestKernel(path.dirname(stateDir), 'echo');
  const pool = ['--vmm-pool', '1', '--vmm-pool-warm-up-ms', '0'];
  let daemon = await Daemon.start(stateDir);
  let spare: number | undefined;
  try {
    const A = { socket: daemon.socket };
    assert.equal((await api(A, 'POST', '/vms', { name: 'vm', kernel, memory: 64 })).status, 201);
    assert.equal((await api(A, 'POST', '/vms/vm/start')).status, 200);
    const snap = await api(A, 'POST', '/vms/vm/snapshots', { name: 's1' });
    assert.equal(snap.status, 201, JSON.stringify(snap.body));
    assert.equal((await api(A, 'POST', '/vms/vm/destroy')).status, 200);
    await daemon.stop();

    daemon = await Daemon.start(stateDir, pool, { RINGZERO_TEST_CRASH_AT: 'start-spawned' });
    const B = { socket: daemon.socket };
    await waitFor('the spare to be up', async () => ['warming', 'ready'].includes((await api(B, 'GET', '/host/pool')).body.spares[0]?.state), 120_000);
    spare = (await api(B, 'GET', '/host/pool')).body.spares[0].pid as number;
    await assert.rejects(api(B, 'POST', '/vms/vm/snapshots/s1/restore'), 'the daemon dies mid-restore');
    assert.equal((await daemon.exited).signal, 'SIGKILL');
    assert.ok(processAlive(spare), 'the spare runs the VM on');
    assert.match(fs.readFileSync(`/proc/${spare}/cmdline`, 'utf8'), /vmm-spare/, 'its command line does not name the VM');
    const record = JSON.parse(fs.readFileSync(path.join(stateDir, 'run', 'vm.json'), 'utf8'));
    assert.deepEqual([record.state, record.pid, record.spare?.pid, record.restoredFrom], ['starting', spare, spare, 's1'], 'recorded before the hand-off');

    daemon = await Daemon.start(stateDir);
    const C = { socket: daemon.socket };
    const vm = (await api(C, 'GET', '/vms/vm')).body;
    assert.equal(vm.state, 'running', JSON.stringify(vm));
    assert.equal(vm.pid, spare, 'the VM is the spare\'s');
    await waitFor('the console socket', () => fs.existsSync(vm.consoleSocket));
    const console = await guestConsole(vm.consoleSocket);
    console.socket.write('after the crash\n');
    await waitFor('the restored guest to echo', () => console.output().includes('after the crash'), 60_000);
    console.socket.destroy();
    assert.equal((await api(C, 'POST', '/vms/vm/start')).body.error.code, 'conflict', 'no second VMM on the VM');
    const destroyed = await api(C, 'POST', '/vms/vm/destroy');
    assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
    assert.equal(destroyed.body.state, 'shut off');
    assert.ok(!processAlive(spare), 'the spare is stopped as the daemon\'s own VMM');
  } finally {
    await daemon.stop();
    if (spare !== undefined) try { process.kill(spare, 'SIGKILL'); } catch { /* gone */ }
  }
});
