// Graceful shutdown and snapshots through a real daemon, with tiny synthetic guests in their own VMM processes:
// shutdown presses the ACPI power button (a guest that handles it powers off before the timeout; one that does not
// is destroyed after it); snapshot create/list/restore/delete through the CLI and HTTP, their conflicts and bad input,
// and a snapshot the VMM refuses leaves nothing behind.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { api, cli, Daemon, guestKernel, killRecordedVmms, processAlive, tempDir, waitFor } from './support/manager-harness.ts';

let dir: string;
let stateDir: string;
let daemon: Daemon;
let echoKernel: string;
let buttonKernel: string;

before(async () => {
  dir = tempDir('snap');
  stateDir = path.join(dir, 'state');
  echoKernel = guestKernel(dir, 'echo');
  buttonKernel = guestKernel(dir, 'button');
  daemon = await Daemon.start(stateDir);
});

after(async () => {
  killRecordedVmms(stateDir); // leave no VMM behind, whatever failed
  await daemon?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const socket = () => daemon.socket;
const vm = async (name: string) => (await api({ socket: socket() }, 'GET', `/vms/${name}`)).body;
const snapshotsOf = (name: string) => fs.existsSync(path.join(stateDir, 'snapshots', name)) ? fs.readdirSync(path.join(stateDir, 'snapshots', name)).sort() : [];

test('shutdown presses the power button: a guest that handles it powers off well before the timeout', async () => {
  assert.equal((await api({ socket: socket() }, 'POST', '/vms', { name: 'button', kernel: buttonKernel, memory: 64 })).status, 201);
  assert.equal((await cli(['start', 'button'], socket())).status, 0);
  const pid = (await vm('button')).pid;
  assert.ok(fs.existsSync(path.join(stateDir, 'run', 'button.ctl')), 'the VMM serves its control socket');
  // The guest enables PWRBTN_EN right after its banner; give it that moment.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const started = Date.now();
  const r = await cli(['shutdown', 'button', '--timeout', '60'], socket());
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /VM 'button' shut down/);
  assert.ok(Date.now() - started < 30_000, 'long before the timeout');
  const off = await vm('button');
  assert.equal(off.state, 'shut off');
  assert.equal(off.lastExit.reason, 'guest powered off');
  assert.equal(off.lastExit.exitCode, 0);
  assert.ok(!processAlive(pid));
  assert.ok(!fs.existsSync(path.join(stateDir, 'run', 'button.ctl')), 'the control socket is gone with the VMM');
});

test('shutdown of a guest that ignores the button destroys it after the timeout (HTTP: graceful false)', async () => {
  assert.equal((await api({ socket: socket() }, 'POST', '/vms', { name: 'deaf', kernel: echoKernel, memory: 64 })).status, 201);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/deaf/start')).status, 200);
  const r = await api({ socket: socket() }, 'POST', '/vms/deaf/shutdown', { timeout: 1 });
  assert.equal(r.status, 200);
  assert.equal(r.body.graceful, false);
  assert.equal(r.body.state, 'shut off');
  assert.equal(r.body.lastExit.reason, 'shutdown timed out: destroyed');
  await waitFor('the daemon to log why', () => /VM 'deaf': the guest has not enabled its power button/.test(daemon.stderr), 5000);
});

test('snapshot create, list, restore into the shut-off VM (the guest carries on), delete; conflicts and bad names', async () => {
  assert.equal((await api({ socket: socket() }, 'POST', '/vms', { name: 'e', kernel: echoKernel, memory: 64 })).status, 201);
  // Not running: nothing to snapshot.
  const early = await api({ socket: socket() }, 'POST', '/vms/e/snapshots', { name: 's1' });
  assert.equal(early.status, 409);
  assert.equal(early.body.error.code, 'conflict');
  assert.equal((await cli(['start', 'e'], socket())).status, 0);
  const pid = (await vm('e')).pid;

  const created = await cli(['snapshot', 'create', 'e', 's1'], socket(), [], 120_000);
  assert.equal(created.status, 0, created.stderr);
  assert.equal(created.stdout, "VM 'e': snapshot 's1' created\n");
  assert.deepEqual(snapshotsOf('e'), ['s1'], 'one complete directory, no temporary siblings');
  assert.ok(fs.existsSync(path.join(stateDir, 'snapshots', 'e', 's1', 'state.json')));
  const running = await vm('e');
  assert.equal(running.state, 'running', 'the VM runs on after the snapshot');
  assert.equal(running.pid, pid);

  // The same name again: conflict; a name with a dot or a slash: invalid (API) or a usage error (CLI, status 2).
  const again = await api({ socket: socket() }, 'POST', '/vms/e/snapshots', { name: 's1' });
  assert.equal(again.status, 409);
  const dotted = await api({ socket: socket() }, 'POST', '/vms/e/snapshots', { name: 's1.tmp-1-2' });
  assert.equal(dotted.status, 400);
  assert.equal(dotted.body.error.code, 'invalid');
  const unknownField = await api({ socket: socket() }, 'POST', '/vms/e/snapshots', { label: 'x' });
  assert.equal(unknownField.status, 400);
  const usage = await cli(['snapshot', 'create', 'e', '../x'], socket());
  assert.equal(usage.status, 2);
  assert.equal(usage.stderr.trim().split('\n').length, 1, usage.stderr);
  assert.match(usage.stderr, /^ringzero: invalid snapshot name '\.\.\/x'/);

  // A second snapshot with the default name; the list is oldest first.
  const second = await api({ socket: socket() }, 'POST', '/vms/e/snapshots');
  assert.equal(second.status, 201, JSON.stringify(second.body));
  assert.match(second.body.name, /^snap-\d{8}-\d{6}-\d{3}$/);
  const list = await api({ socket: socket() }, 'GET', '/vms/e/snapshots');
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.map((s: { name: string }) => s.name), ['s1', second.body.name]);
  assert.equal(list.body[0].memory, 64);
  assert.equal(list.body[0].vm, 'e');
  assert.ok(list.body[0].diskBytes < 64 * 2 ** 20, 'the memory image is sparse');
  const listed = await cli(['snapshot', 'list', 'e'], socket());
  assert.equal(listed.status, 0, listed.stderr);
  assert.match(listed.stdout, /^NAME\s+CREATED\s+MEMORY\s+ON DISK\ns1\s+\S+\s+64M/);

  // Restore needs the VM shut off.
  const busy = await api({ socket: socket() }, 'POST', '/vms/e/snapshots/s1/restore');
  assert.equal(busy.status, 409);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/e/destroy')).status, 200);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/e/snapshots/nope/restore')).status, 404);
  const restored = await cli(['snapshot', 'restore', 'e', 's1'], socket());
  assert.equal(restored.status, 0, restored.stderr);
  const back = await vm('e');
  assert.equal(back.state, 'running');
  assert.equal(back.restoredFrom, 's1');
  assert.notEqual(back.pid, pid);
  // The restored guest is the echo loop where it was: it echoes, and 'q' powers it off.
  const viewer = await cli(['console', 'e'], socket(), [{ afterMs: 1500, data: 'after restore\n' }, { afterMs: 1500, data: 'q' }]);
  assert.equal(viewer.status, 0, viewer.stderr);
  assert.match(viewer.stdout, /after restore\n/);
  await waitFor('shut off', async () => (await vm('e')).state === 'shut off');
  assert.equal((await vm('e')).lastExit.reason, 'guest powered off');

  // A VM with snapshots is not undefined by accident; deleting them frees it.
  const undefine = await api({ socket: socket() }, 'DELETE', '/vms/e');
  assert.equal(undefine.status, 409);
  assert.match(undefine.body.error.message, /has 2 snapshot\(s\)/);
  assert.equal((await cli(['snapshot', 'delete', 'e', 's1'], socket())).status, 0);
  assert.equal((await api({ socket: socket() }, 'DELETE', `/vms/e/snapshots/${second.body.name}`)).status, 204);
  const gone = await api({ socket: socket() }, 'DELETE', '/vms/e/snapshots/s1');
  assert.equal(gone.status, 404);
  assert.equal(gone.body.error.code, 'not_found');
  assert.deepEqual(snapshotsOf('e'), []);
  assert.equal((await api({ socket: socket() }, 'DELETE', '/vms/e')).status, 204);
});

test('restore --verify checks the memory image against its SHA-256: a damaged one is refused and the VM stays shut off; so is one written since the snapshot, without --verify', async () => {
  assert.equal((await api({ socket: socket() }, 'POST', '/vms', { name: 'ver', kernel: echoKernel, memory: 64 })).status, 201);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/ver/start')).status, 200);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/ver/snapshots', { name: 'good' })).status, 201);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/ver/destroy')).status, 200);
  // Whole: the verified restore runs, and the guest carries on (it echoes, 'q' powers it off).
  const verified = await cli(['snapshot', 'restore', 'ver', 'good', '--verify'], socket());
  assert.equal(verified.status, 0, verified.stderr);
  assert.equal((await vm('ver')).state, 'running');
  const viewer = await cli(['console', 'ver'], socket(), [{ afterMs: 1500, data: 'verified\n' }, { afterMs: 1500, data: 'q' }]);
  assert.match(viewer.stdout, /verified\n/);
  await waitFor('shut off', async () => (await vm('ver')).state === 'shut off');

  // One byte of guest RAM changed in the image (the guest's code at 1 MiB + 0x200): same size, so only the digest
  // tells. With --verify the VMM refuses it before anything runs; the start fails and says why.
  const memory = path.join(stateDir, 'snapshots', 'ver', 'good', 'memory');
  const fd = fs.openSync(memory, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, 0x100200);
  fs.writeSync(fd, Buffer.from([byte[0] ^ 0xff]), 0, 1, 0x100200);
  fs.closeSync(fd);
  const refused = await api({ socket: socket() }, 'POST', '/vms/ver/snapshots/good/restore', { verify: true });
  assert.equal(refused.status, 500, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'start_failed');
  assert.match(refused.body.error.message, /memory image does not match its SHA-256/);
  assert.equal((await vm('ver')).state, 'shut off');
  const cliRefused = await cli(['snapshot', 'restore', 'ver', 'good', '--verify'], socket());
  assert.equal(cliRefused.status, 1);
  assert.match(cliRefused.stderr, /does not match its SHA-256.*\[start_failed\]/);
  // Without --verify as well: the image was written after the snapshot (its modification time is not the one the
  // state recorded), so the VMM checks it all the same.
  const plainRefused = await api({ socket: socket() }, 'POST', '/vms/ver/snapshots/good/restore');
  assert.equal(plainRefused.body.error?.code, 'start_failed', JSON.stringify(plainRefused.body));
  assert.match(plainRefused.body.error.message, /memory image does not match its SHA-256 \(it was written or copied after the snapshot/);
  assert.equal((await vm('ver')).state, 'shut off');
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/ver/snapshots/good/restore', { verify: 'yes' })).body.error.code, 'invalid');
  // `run --verify` belongs to --restore.
  const usage = await cli(['run', '--verify'], socket());
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /--verify .* needs --restore/);

  assert.equal((await api({ socket: socket() }, 'DELETE', '/vms/ver/snapshots/good')).status, 204);
  assert.equal((await api({ socket: socket() }, 'DELETE', '/vms/ver')).status, 204);
});

test('a VM with a virtio device (rng) is snapshotted too (virtio state is in snapshot format 2)', async () => {
  assert.equal((await api({ socket: socket() }, 'POST', '/vms', { name: 'v', kernel: echoKernel, memory: 64, rng: true })).status, 201);
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/v/start')).status, 200);
  const r = await api({ socket: socket() }, 'POST', '/vms/v/snapshots', { name: 'x' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.deepEqual(snapshotsOf('v'), ['x'], 'one complete directory, no temporary siblings');
  assert.equal((await vm('v')).state, 'running', 'the VM runs on');
  assert.equal((await api({ socket: socket() }, 'POST', '/vms/v/destroy')).status, 200);
  assert.equal((await api({ socket: socket() }, 'DELETE', '/vms/v/snapshots/x')).status, 204);
});

test('the OpenAPI document has the snapshot paths and schema', async () => {
  const r = await api({ socket: socket() }, 'GET', '/openapi.json');
  for (const p of ['/vms/{name}/snapshots', '/vms/{name}/snapshots/{snap}', '/vms/{name}/snapshots/{snap}/restore']) assert.ok(r.body.paths[p], p);
  assert.ok(r.body.components.schemas.Snapshot.properties.createdAt);
  assert.ok(r.body.components.schemas.Error.properties.error.properties.code.enum.includes('snapshot_failed'));
});
