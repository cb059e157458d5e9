// The daemon killed with SIGKILL in the middle of a define (or an edit) leaves the state directory consistent:
// every definition there is whole and valid, the VM being defined either exists wholly or not at all, and the next
// daemon removes the temporary files and carries on. RINGZERO_TEST_CRASH_AT=after-tmp makes the daemon kill itself
// at the worst instant of an atomic write: the temporary file written and synced, not yet renamed.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { api, Daemon, tempDir } from './support/manager-harness.ts';

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
