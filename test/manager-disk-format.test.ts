// Disk formats stated instead of probed: `ringzero run --disk FILE,format=raw|qcow2` and `format` in a VM
// definition (what the guest then sees, and the magic in sector 0, are checked with a real guest in
// test/manager-nics.test.ts). Here, with the real CLI and a real daemon: bad formats refused; format=qcow2 on a
// file that is not qcow2 refused before any VMM starts (not_qcow2); the VMM gets format=; `info` shows it; a disk
// snapshot of a disk stated raw leaves the definition stating qcow2 for the overlay that replaced it.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createQcow2 } from '../src/storage/qcow2.ts';
import { ringzero } from './support/ringzero-cli.ts';
import { api, cli, Daemon, guestKernel, killRecordedVmms, snapshot, tempDir } from './support/manager-harness.ts';

let dir: string;
let stateDir: string;
let daemon: Daemon;
let idleKernel: string;
let rawFile: string;
let qcowFile: string;

before(async () => {
  dir = tempDir('fmt');
  stateDir = path.join(dir, 'state');
  idleKernel = guestKernel(dir, 'idle');
  rawFile = path.join(dir, 'plain.img');
  fs.writeFileSync(rawFile, Buffer.alloc(2 ** 20));
  qcowFile = path.join(dir, 'image.qcow2');
  createQcow2(qcowFile, { size: 8 * 2 ** 20 });
  daemon = await Daemon.start(stateDir);
});

after(async () => {
  killRecordedVmms(stateDir);
  await daemon?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, url: string, body?: unknown) => api({ socket: daemon.socket }, method, url, body);

/** `ringzero run ARGS` (test/support/ringzero-cli.ts). */
async function run(...args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await ringzero(['run', ...args]);
  return { code: r.status, stderr: r.stderr };
}

test('ringzero run --disk ...,format=: an unknown format and format=qcow2 on a raw file end with status 2 and one line', async () => {
  const unknown = await run('--kernel', idleKernel, '--disk', `${rawFile},format=vmdk`);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stderr, `ringzero: invalid format 'vmdk' in --disk '${rawFile},format=vmdk': raw or qcow2\n`);
  const notQcow = await run('--kernel', idleKernel, '--disk', `${rawFile},format=qcow2`);
  assert.equal(notQcow.code, 2);
  assert.match(notQcow.stderr, /^ringzero: disk image '.*plain\.img' is not a qcow2 image \(no qcow2 header\): use format=raw, or leave format= out to probe\n$/);
  const twice = await run('--kernel', idleKernel, '--disk', `${rawFile},format=raw,format=qcow2`);
  assert.equal(twice.code, 2);
  assert.match(twice.stderr, /gives two formats/);
});

test('definitions: format is validated, passed to the VMM as format=, shown by info; qcow2 that is not is refused at start', async () => {
  const before = snapshot(stateDir);
  const bad = await call('POST', '/vms', { name: 'f', kernel: idleKernel, memory: 64, disks: [{ path: rawFile, format: 'vmdk' }] });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'invalid');
  assert.match(bad.body.error.message, /format/);
  assert.deepEqual(snapshot(stateDir), before);

  // A raw file stated qcow2: defined (the file may change before a start), refused at start with not_qcow2.
  assert.equal((await call('POST', '/vms', { name: 'wrong', kernel: idleKernel, memory: 64, disks: [{ path: rawFile, format: 'qcow2' }] })).status, 201);
  const refused = await cli(['start', 'wrong'], daemon.socket);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /is defined as qcow2 but has no qcow2 header \[not_qcow2\]/);
  const wrong = (await call('GET', '/vms/wrong')).body;
  assert.equal(wrong.state, 'shut off');
  assert.equal(fs.existsSync(path.join(stateDir, 'logs', 'wrong.log')), false, 'no VMM was started');

  // A qcow2 file stated raw: the VMM gets format=raw (no probe).
  assert.equal((await call('POST', '/vms', { name: 'f', kernel: idleKernel, memory: 64, disks: [{ path: qcowFile, format: 'raw', readonly: true }, { path: rawFile }] })).status, 201);
  const started = await cli(['start', 'f'], daemon.socket);
  assert.equal(started.status, 0, started.stderr);
  const pid = (await call('GET', '/vms/f')).body.pid;
  const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.deepEqual(args.flatMap((arg, i) => (arg === '--disk' ? [args[i + 1]] : [])), [`${qcowFile},readonly,format=raw`, rawFile]);
  const info = await cli(['info', 'f'], daemon.socket);
  assert.match(info.stdout, new RegExp(`Disks:\\s+${qcowFile} raw \\(ro\\), ${rawFile}\\n`));
  assert.equal((await cli(['destroy', 'f'], daemon.socket)).status, 0);
});

test('a disk snapshot of a disk stated raw: the definition then states qcow2 for its overlay', async () => {
  const volume = await call('POST', '/volumes', { name: 'data.raw', format: 'raw', size: 2 ** 20 });
  assert.equal(volume.status, 201, JSON.stringify(volume.body));
  assert.equal((await call('POST', '/vms', { name: 's', kernel: idleKernel, memory: 64, disks: [{ path: volume.body.path, format: 'raw' }] })).status, 201);
  const snap = await call('POST', '/vms/s/disk-snapshots', { name: 'one' });
  assert.equal(snap.status, 201, JSON.stringify(snap.body));
  const disk = (await call('GET', '/vms/s')).body.definition.disks[0];
  assert.notEqual(disk.path, volume.body.path);
  assert.equal(disk.format, 'qcow2', 'the overlay is qcow2: a stated raw would hand the guest its header');
  const started = await cli(['start', 's'], daemon.socket);
  assert.equal(started.status, 0, started.stderr);
  assert.equal((await cli(['destroy', 's'], daemon.socket)).status, 0);
});
