// Block commit (`ringzero blockcommit NAME DISK`, POST /vms/{name}/disks/{disk}/commit) through a real daemon and the
// real CLI, with synthetic guests (their disks are written by the test while the VM is shut off):
// - offline: a chain data <- s1 overlay <- s2 overlay (two disk snapshots) is committed twice, down to data.qcow2
//   alone; after each step the disk reads what it read before (every byte compared), `qemu-img check` finds no error,
//   the snapshots that froze the written image are dropped, and --delete removes the committed overlay;
// - refusals: a disk without a backing file, a backing file that another volume or VM also reads, a template's
//   disk, an unknown disk, a bad disk name;
// - --base (virsh blockcommit --base): a three-overlay chain committed into an intermediate image offline, then live
//   into the bottom one; an image outside the chain, the disk itself, an image between that another volume reads are
//   refused; the same commit as `qemu-img commit -b` (compared with qemu-img compare);
// - online: a running VM's VMM commits paused and switches the disk to the backing image (its open files show it);
//   the data and `qemu-img check` are checked once it is shut off; backups' overlays are committed away live;
// - the VMM's two passes (in one process, a virtio-blk device over a real overlay): what the guest writes, zeroes or
//   discards while the first pass copies is copied again, paused, in the second; failures leave the overlay in place;
// - a real guest (RINGZERO_SKIP_BOOT_TEST=1 skips it locally): it writes before and after a live disk snapshot, the
//   disk is committed live, and the guest reads both back from the disk and writes on, into the base image.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { commitOverlay, createQcow2, openImage } from '../src/storage/qcow2.ts';
import { VirtioBlock } from '../src/devices/virtio/blk.ts';
import { commitDisk } from '../src/vmm/disk-switch.ts';
import { cli, daemonFixture, guestConsole, guestKernel, waitFor } from './support/manager-harness.ts';

const haveQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;
const SIZE = 4 * 2 ** 20;
const image = findDefaultImage();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);

const fx = daemonFixture('commit');
const { dir, stateDir } = fx;
const idleKernel = guestKernel(dir, 'idle');

const call = fx.call;
const vol = (name: string) => path.join(stateDir, 'volumes', name);

/** The whole disk as the guest would read it (through the backing chain). */
function readDisk(file: string): Buffer {
  const image = openImage(file, { readonly: true });
  try {
    const out = Buffer.alloc(image.size);
    image.read(0, out);
    return out;
  } finally {
    image.close();
  }
}

/** Write `pattern` bytes at `offset` (a shut-off VM's disk). */
function writeDisk(file: string, offset: number, length: number, pattern: number): void {
  const image = openImage(file);
  try {
    image.write(offset, Buffer.alloc(length, pattern));
  } finally {
    image.close();
  }
}

function zeroDisk(file: string, offset: number, length: number): void {
  const image = openImage(file);
  try {
    image.writeZeroes(offset, length);
  } finally {
    image.close();
  }
}

function qemuCheck(file: string): void {
  if (!haveQemuImg) return;
  const r = spawnSync('qemu-img', ['check', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `qemu-img check ${file}: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /No errors were found on the image/);
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

test('offline: a two-overlay chain committed twice, data and qemu-img check after each, snapshots dropped, --delete', async () => {
  assert.equal((await call('POST', '/volumes', { name: 'data.qcow2', size: SIZE })).status, 201);
  writeDisk(vol('data.qcow2'), 0, SIZE, 0xa1);
  assert.equal((await call('POST', '/vms', { name: 'c', kernel: idleKernel, memory: 64, disks: [{ path: vol('data.qcow2') }] })).status, 201);
  assert.equal((await cli(['snapshot', 'create', 'c', 's1', '--disk-only'], fx.daemon.socket)).status, 0);
  const s1 = (await call('GET', '/vms/c')).body.definition.disks[0].path;
  writeDisk(s1, 100_000, 300_000, 0xb2); // not cluster-aligned: partial clusters copied whole
  zeroDisk(s1, 2 * 2 ** 20, 3 * 65536); // zero clusters over data
  assert.equal((await cli(['snapshot', 'create', 'c', 's2', '--disk-only'], fx.daemon.socket)).status, 0);
  const s2 = (await call('GET', '/vms/c')).body.definition.disks[0].path;
  writeDisk(s2, 200_000, 70_000, 0xc3);
  writeDisk(s2, SIZE - 512, 512, 0xc4);
  const expected = readDisk(s2);
  const baseBefore = sha(readDisk(vol('data.qcow2')));

  const refused = await cli(['snapshot', 'delete', 'c', 's1', '--disk-only'], fx.daemon.socket);
  assert.match(refused.stderr, /has dependants.*ringzero blockcommit/);

  // s2's overlay into s1's: the chain is data <- s1.
  const first = await cli(['blockcommit', 'c', 'vda', '--delete'], fx.daemon.socket);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, new RegExp(`^VM 'c': vda committed ${path.basename(s2)} into ${path.basename(s1)} \\(0\\.\\d+M written, 0\\.0M zeroed\\); the disk is now ${path.basename(s1)}, ${path.basename(s2)} deleted\\n`));
  assert.match(first.stdout, /disk snapshot\(s\) s2 dropped/);
  assert.equal((await call('GET', '/vms/c')).body.definition.disks[0].path, s1);
  assert.ok(!fs.existsSync(s2), '--delete removed the committed overlay');
  assert.equal(sha(readDisk(s1)), sha(expected), 'the disk reads what it read before');
  assert.equal(sha(readDisk(vol('data.qcow2'))), baseBefore, 'the image below was not touched');
  qemuCheck(s1);
  assert.deepEqual((await call('GET', '/vms/c/disk-snapshots')).body.map((s: { name: string }) => s.name), ['s1']);

  // s1's overlay into data.qcow2 (through the API): the disk is the original volume again.
  const second = await call('POST', '/vms/c/disks/0/commit', { delete: true });
  assert.equal(second.status, 200, JSON.stringify(second.body));
  assert.equal(second.body.into, vol('data.qcow2'));
  assert.equal(second.body.live, false);
  assert.ok(second.body.zeroBytes >= 3 * 65536, 'the zero clusters were committed as zeros');
  assert.deepEqual(second.body.droppedSnapshots, ['s1']);
  assert.equal(second.body.removed, true);
  assert.equal((await call('GET', '/vms/c')).body.definition.disks[0].path, vol('data.qcow2'));
  assert.equal(sha(readDisk(vol('data.qcow2'))), sha(expected));
  assert.deepEqual([...readDisk(vol('data.qcow2')).subarray(2 * 2 ** 20, 2 * 2 ** 20 + 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
  qemuCheck(vol('data.qcow2'));
  assert.deepEqual((await call('GET', '/vms/c/disk-snapshots')).body, []);
  assert.deepEqual(fs.readdirSync(path.join(stateDir, 'volumes')).filter((f) => !f.startsWith('.')), ['data.qcow2']);
});

test('refusals: no backing file, a backing file others read, a template\'s disk, an unknown or malformed disk', async () => {
  const noBacking = await call('POST', '/vms/c/disks/vda/commit');
  assert.equal(noBacking.status, 400);
  assert.match(noBacking.body.error.message, /has no backing file/);
  assert.equal((await call('POST', '/vms/c/disks/vdc/commit')).body.error.code, 'not_found');
  const malformed = await cli(['blockcommit', 'c', 'sda'], fx.daemon.socket);
  assert.equal(malformed.status, 2);
  assert.match(malformed.stderr, /invalid disk 'sda'/);

  // Another volume is an overlay of data.qcow2 too: committing into it would change what that volume reads.
  assert.equal((await call('POST', '/volumes', { name: 'other.qcow2', backing: 'data.qcow2' })).status, 201);
  assert.equal((await cli(['snapshot', 'create', 'c', 's3', '--disk-only'], fx.daemon.socket)).status, 0);
  const before = (await call('GET', '/vms/c')).body.definition;
  const shared = await cli(['blockcommit', 'c', 'vda'], fx.daemon.socket);
  assert.equal(shared.status, 1);
  assert.match(shared.stderr, /is also the backing file of volume\(s\) other\.qcow2.*\[conflict\]/);
  assert.deepEqual((await call('GET', '/vms/c')).body.definition, before, 'nothing changed');
  assert.equal((await call('DELETE', '/volumes/other.qcow2')).status, 204);

  // A linked clone's disk is an overlay of a template's disk, which many clones read.
  assert.equal((await call('POST', '/templates', { name: 't', from: 'c' })).status, 201);
  assert.equal((await call('POST', '/templates/t/clone', { count: 1, namePrefix: 'k', seed: false })).status, 201);
  const template = await call('POST', '/vms/k-1/disks/vda/commit');
  assert.equal(template.status, 409);
  assert.match(template.body.error.message, /not a volume of the pool/);
});

test('online: the running VM\'s VMM commits paused and switches its disk to the backing image', async () => {
  // c's disk is s3's overlay over data.qcow2; write into the overlay while shut off, then start.
  const overlay = (await call('GET', '/vms/c')).body.definition.disks[0].path;
  writeDisk(overlay, 65536, 3 * 65536 + 100, 0xd5);
  const expected = sha(readDisk(overlay));
  assert.equal((await cli(['start', 'c'], fx.daemon.socket)).status, 0);
  const pid = (await call('GET', '/vms/c')).body.pid;
  const openFiles = () => fs.readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } });
  assert.ok(openFiles().includes(overlay), 'the VMM has the overlay open');

  const r = await cli(['blockcommit', 'c', 'vda'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`vda committed ${path.basename(overlay)} into data\\.qcow2 \\(0\\.3M written, 0\\.0M zeroed\\), guest paused [\\d.]+ ms; the disk is now data\\.qcow2\\n`));
  assert.match(r.stdout, /disk snapshot\(s\) s3 dropped/);
  const vm = (await call('GET', '/vms/c')).body;
  assert.equal(vm.state, 'running');
  assert.equal(vm.pid, pid, 'the same VMM');
  assert.equal(vm.definition.disks[0].path, vol('data.qcow2'));
  assert.ok(!openFiles().includes(overlay), 'the VMM closed the overlay');
  assert.ok(openFiles().includes(vol('data.qcow2')), 'and writes to the backing image now');
  assert.equal((await cli(['destroy', 'c'], fx.daemon.socket)).status, 0);
  assert.equal(sha(readDisk(vol('data.qcow2'))), expected);
  qemuCheck(vol('data.qcow2'));
});

test('backups lengthen the chain by one image each; blockcommit on the running VM shortens it back', async () => {
  assert.equal((await call('POST', '/volumes', { name: 'b.qcow2', size: 2 ** 20 })).status, 201);
  writeDisk(vol('b.qcow2'), 0, 2 ** 20, 0x61);
  assert.equal((await call('POST', '/vms', { name: 'bk', kernel: idleKernel, memory: 64, disks: [{ path: vol('b.qcow2') }] })).status, 201);
  const chain = async () => {
    const disk = (await call('GET', '/vms/bk')).body.definition.disks[0].path as string;
    const names = [path.basename(disk)];
    for (let info = (await call('GET', `/volumes/${path.basename(disk)}`)).body; info.backingPath; info = (await call('GET', `/volumes/${path.basename(info.backingPath)}`)).body) {
      names.push(path.basename(info.backingPath));
    }
    return names;
  };
  // Two backups, with writes between them (made while the VM is shut off: the synthetic guest writes nothing).
  for (const pattern of [0x62, 0x63]) {
    assert.equal((await cli(['start', 'bk'], fx.daemon.socket)).status, 0);
    const r = await cli(['backup', 'bk', '--to', path.join(dir, 'backups')], fx.daemon.socket, [], 120_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((await cli(['destroy', 'bk'], fx.daemon.socket)).status, 0);
    writeDisk((await call('GET', '/vms/bk')).body.definition.disks[0].path, pattern === 0x62 ? 0 : 500_000, 100_000, pattern);
  }
  assert.equal((await chain()).length, 3, `two backups: three images (${(await chain()).join(' <- ')})`);
  const expected = sha(readDisk((await call('GET', '/vms/bk')).body.definition.disks[0].path));

  assert.equal((await cli(['start', 'bk'], fx.daemon.socket)).status, 0);
  for (const left of [2, 1]) {
    const r = await cli(['blockcommit', 'bk', 'vda', '--delete'], fx.daemon.socket);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /guest paused/);
    assert.equal((await chain()).length, left);
  }
  assert.deepEqual(await chain(), ['b.qcow2']);
  assert.equal((await call('GET', '/vms/bk')).body.state, 'running');
  assert.equal((await cli(['destroy', 'bk'], fx.daemon.socket)).status, 0);
  assert.equal(sha(readDisk(vol('b.qcow2'))), expected);
  qemuCheck(vol('b.qcow2'));
  // The backups are self-contained: they are still listed whole.
  const listed = await cli(['backup', 'list', '--vm', 'bk', '--json'], fx.daemon.socket);
  assert.equal(JSON.parse(listed.stdout).length, 2);
});

test('--base: a three-overlay chain committed into an intermediate image, then live into the bottom; refusals; qemu-img check clean', async () => {
  assert.equal((await call('POST', '/volumes', { name: 'm.qcow2', size: SIZE })).status, 201);
  writeDisk(vol('m.qcow2'), 0, SIZE, 0x41);
  assert.equal((await call('POST', '/vms', { name: 'm', kernel: idleKernel, memory: 64, disks: [{ path: vol('m.qcow2') }] })).status, 201);
  const diskOf = async () => (await call('GET', '/vms/m')).body.definition.disks[0].path as string;
  // m.qcow2 <- o1 <- o2 <- o3, each overlay written over the one below (overlapping ranges, zeros over data).
  const overlays: string[] = [];
  for (const [snap, offset, length, value] of [['s1', 0, 500_000, 0x51], ['s2', 300_000, 400_000, 0x52], ['s3', 650_000, 100_000, 0x53]] as const) {
    assert.equal((await cli(['snapshot', 'create', 'm', snap, '--disk-only'], fx.daemon.socket)).status, 0);
    overlays.push(await diskOf());
    writeDisk(overlays[overlays.length - 1], offset, length, value);
  }
  const [o1, o2, o3] = overlays;
  zeroDisk(o2, 0, 65536); // a zero cluster in the middle image over o1's data
  writeDisk(o3, 30_000, 10, 0x54); // and data of the top image over that zero cluster
  const expected = readDisk(o3);
  const bottom = sha(readDisk(vol('m.qcow2')));
  const chainNames = [o3, o2, o1, vol('m.qcow2')].map((f) => path.basename(f)).join(' -> ');

  // Refusals, nothing changed: an image outside the chain, the disk itself, a relative path, and an image between
  // that another volume reads through.
  assert.equal((await call('POST', '/volumes', { name: 'x.qcow2', size: SIZE })).status, 201);
  const outside = await cli(['blockcommit', 'm', 'vda', '--base', 'x.qcow2'], fx.daemon.socket);
  assert.equal(outside.status, 1);
  assert.equal(outside.stderr.trim(), `ringzero: 'x.qcow2' is not in the backing chain of disk vda of VM 'm' (chain: ${chainNames}) [invalid]`);
  const itself = await call('POST', '/vms/m/disks/vda/commit', { base: o3 });
  assert.equal(itself.status, 400);
  assert.match(itself.body.error.message, /is disk vda itself: nothing is above it/);
  const relative = await cli(['blockcommit', 'm', 'vda', '--base', 'volumes/m.qcow2'], fx.daemon.socket);
  assert.equal(relative.status, 2);
  assert.match(relative.stderr, /invalid --base 'volumes\/m\.qcow2': a pool volume's name or an absolute path/);
  assert.equal((await call('POST', '/volumes', { name: 'side.qcow2', backing: path.basename(o1) })).status, 201);
  const sideReader = await cli(['blockcommit', 'm', 'vda', '--base', 'm.qcow2'], fx.daemon.socket);
  assert.equal(sideReader.status, 1);
  assert.match(sideReader.stderr, new RegExp(`'${path.basename(o1)}' is also the backing file of volume\\(s\\) side\\.qcow2: committing into 'm\\.qcow2' below it would change what they read \\[conflict\\]`));
  assert.equal((await call('DELETE', '/volumes/side.qcow2')).status, 204);
  assert.equal((await call('DELETE', '/volumes/x.qcow2')).status, 204);
  assert.equal(await diskOf(), o3, 'nothing changed');
  assert.equal(sha(readDisk(o3)), sha(expected));

  // Offline, o3 and o2 into o1 (named as a volume): the disk is o1, it reads what o3 read, m.qcow2 is untouched.
  const r = await cli(['blockcommit', 'm', 'vda', '--base', path.basename(o1), '--delete'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^VM 'm': vda committed ${path.basename(o3)}, ${path.basename(o2)} into ${path.basename(o1)} \\([\\d.]+M written, 0\\.1M zeroed\\); the disk is now ${path.basename(o1)}, ${path.basename(o3)}, ${path.basename(o2)} deleted\\n`));
  // s2 froze o1 (written into) and s3 froze o2 (between): both dropped; s1 froze m.qcow2, below: kept.
  assert.match(r.stdout, /disk snapshot\(s\) s2, s3 dropped/);
  assert.deepEqual((await call('GET', '/vms/m/disk-snapshots')).body.map((x: { name: string }) => x.name), ['s1']);
  assert.equal(await diskOf(), o1);
  assert.ok(!fs.existsSync(o2) && !fs.existsSync(o3));
  assert.equal(sha(readDisk(o1)), sha(expected), 'the disk reads what it read before');
  assert.equal(sha(readDisk(vol('m.qcow2'))), bottom, 'the image below the base was not touched');
  qemuCheck(o1);
  if (haveQemuImg) {
    const info = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', o1], { encoding: 'utf8' }).stdout);
    assert.equal(path.basename(info['backing-filename']), 'm.qcow2', 'o1 still has m.qcow2 under it');
  }

  // Live: one more overlay (o4 over o1), then the running VM's disk committed through o4 and o1 into m.qcow2 (named
  // by its path). The VMM does it, paused for what the guest wrote during the copy, and switches to m.qcow2.
  assert.equal((await cli(['snapshot', 'create', 'm', 's4', '--disk-only'], fx.daemon.socket)).status, 0);
  const o4 = await diskOf();
  writeDisk(o4, 20_000, 70_000, 0x55); // over what o1 holds: o4 must land last
  writeDisk(o4, SIZE - 70_000, 70_000, 0x56);
  const expectedLive = sha(readDisk(o4));
  assert.equal((await cli(['start', 'm'], fx.daemon.socket)).status, 0);
  const pid = (await call('GET', '/vms/m')).body.pid;
  const live = await call('POST', '/vms/m/disks/vda/commit', { base: vol('m.qcow2') });
  assert.equal(live.status, 200, JSON.stringify(live.body));
  assert.equal(live.body.live, true);
  assert.equal(live.body.into, vol('m.qcow2'));
  assert.deepEqual(live.body.intermediates, [o1]);
  assert.equal(typeof live.body.pausedMs, 'number');
  assert.deepEqual(live.body.removedFiles, []);
  assert.deepEqual(live.body.droppedSnapshots.sort(), ['s1', 's4']);
  const vm = (await call('GET', '/vms/m')).body;
  assert.equal(vm.pid, pid, 'the same VMM');
  assert.equal(vm.definition.disks[0].path, vol('m.qcow2'));
  const openFiles = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } });
  assert.ok(openFiles.includes(vol('m.qcow2')) && !openFiles.includes(o4) && !openFiles.includes(o1), 'the VMM writes to m.qcow2 alone now');
  assert.equal((await cli(['destroy', 'm'], fx.daemon.socket)).status, 0);
  assert.equal(sha(readDisk(vol('m.qcow2'))), expectedLive);
  qemuCheck(vol('m.qcow2'));
  assert.equal((await call('DELETE', '/vms/m')).status, 204);
});

test('commitOverlay with a base writes what `qemu-img commit -b` writes', { skip: haveQemuImg ? false : 'no qemu-img' }, () => {
  const work = path.join(dir, 'qemu-base');
  fs.mkdirSync(work);
  const build = (where: string) => {
    fs.mkdirSync(where);
    const f = (n: string) => path.join(where, n);
    createQcow2(f('a.qcow2'), { size: SIZE });
    writeDisk(f('a.qcow2'), 0, SIZE, 0x11);
    createQcow2(f('b.qcow2'), { size: SIZE, backingFile: 'a.qcow2', backingFormat: 'qcow2' });
    writeDisk(f('b.qcow2'), 100_000, 900_000, 0x22);
    zeroDisk(f('b.qcow2'), 2 ** 20, 2 * 65536);
    createQcow2(f('c.qcow2'), { size: SIZE, backingFile: 'b.qcow2', backingFormat: 'qcow2' });
    writeDisk(f('c.qcow2'), 2 ** 20 + 5000, 10_000, 0x33);
    createQcow2(f('d.qcow2'), { size: SIZE, backingFile: 'c.qcow2', backingFormat: 'qcow2' });
    writeDisk(f('d.qcow2'), 500_000, 1_000, 0x44);
    writeDisk(f('d.qcow2'), 2 ** 20 + 8000, 1_000, 0x45); // over c's data, and b's zeros below
    return f;
  };
  const ours = build(path.join(work, 'ours')), theirs = build(path.join(work, 'theirs'));
  const expected = sha(readDisk(ours('d.qcow2')));
  const result = commitOverlay(ours('d.qcow2'), ours('b.qcow2'));
  assert.deepEqual(result.intermediates, [ours('c.qcow2')]);
  assert.equal(result.backingPath, ours('b.qcow2'));
  const q = spawnSync('qemu-img', ['commit', '-q', '-d', '-b', theirs('b.qcow2'), theirs('d.qcow2')], { encoding: 'utf8' });
  assert.equal(q.status, 0, q.stderr);
  assert.equal(sha(readDisk(ours('b.qcow2'))), expected, 'b reads what d read');
  assert.equal(sha(readDisk(ours('b.qcow2'))), sha(readDisk(theirs('b.qcow2'))), 'as qemu-img made it');
  assert.equal(sha(readDisk(ours('a.qcow2'))), sha(readDisk(theirs('a.qcow2'))), 'a untouched, as by qemu-img');
  qemuCheck(ours('b.qcow2'));
  const compare = spawnSync('qemu-img', ['compare', ours('b.qcow2'), theirs('b.qcow2')], { encoding: 'utf8' });
  assert.equal(compare.status, 0, compare.stdout + compare.stderr);
  // A base that is not in the chain is refused before anything is written.
  const before = sha(readDisk(ours('a.qcow2')));
  assert.throws(() => commitOverlay(ours('d.qcow2'), theirs('a.qcow2')), /is not in the backing chain/);
  assert.equal(sha(readDisk(ours('a.qcow2'))), before);
});

test('the VMM\'s commit: writes during the first pass are copied again while paused; the disk then is the backing image', async () => {
  const work = path.join(dir, 'passes');
  fs.mkdirSync(work);
  const base = path.join(work, 'base.qcow2'), top = path.join(work, 'top.qcow2');
  createQcow2(base, { size: 8 * 2 ** 20 });
  writeDisk(base, 0, 8 * 2 ** 20, 0x10);
  createQcow2(top, { size: 8 * 2 ** 20, backingFile: 'base.qcow2', backingFormat: 'qcow2' });
  writeDisk(top, 0, 4 * 2 ** 20, 0x20); // four 1 MiB chunks to copy in the first pass
  const blk = new VirtioBlock({ path: top });
  let paused = false;
  const machine = {
    virtio: { functions: [{ device: blk }] }, config: { disks: [{ path: top } as { path: string; format?: 'raw' | 'qcow2' }] },
    get paused() { return paused; },
    pause: async () => { paused = true; },
    resume: () => { paused = false; },
  };
  // What the guest does while the first pass runs (after the first chunk): rewrite copied data, write where the
  // overlay held nothing, zero part of a chunk not copied yet; the expected disk gets the same.
  const expected = readDisk(top);
  let chunks = 0;
  const result = await commitDisk(machine, 0, {
    betweenChunks: (guest) => {
      assert.equal(paused, false, 'the first pass runs with the guest running');
      if (chunks++ !== 0) return;
      for (const [offset, length, value] of [[1000, 5000, 0x31], [6 * 2 ** 20 + 7, 70_000, 0x32]] as const) {
        guest.write(offset, Buffer.alloc(length, value));
        expected.fill(value, offset, offset + length);
      }
      guest.writeZeroes(3 * 2 ** 20, 65536);
      expected.fill(0, 3 * 2 ** 20, 3 * 2 ** 20 + 65536);
    },
  });
  assert.equal(chunks, 4);
  assert.equal(paused, false, 'resumed');
  assert.equal(result.dataBytes, 4 * 2 ** 20);
  // Pass 2 copied the granules the guest touched: 1 at 0, 2 at 6 MiB (70 000 bytes across a 64 KiB boundary), 1 at 3 MiB.
  assert.equal(result.pausedBytes, 4 * 65536);
  assert.ok(typeof result.pausedMs === 'number');
  assert.equal(machine.config.disks[0].path, base, 'the disk is the backing image now');
  // The guest goes on writing through the device's new backend: the backing image.
  blk.close();
  assert.equal(sha(readDisk(base)), sha(expected));
  qemuCheck(base);

  // A read-only disk and a disk that is not there are refused.
  const small = path.join(work, 'small.qcow2'), ov = path.join(work, 'ov.qcow2');
  createQcow2(small, { size: 2 ** 20 });
  createQcow2(ov, { size: 2 ** 20, backingFile: 'small.qcow2', backingFormat: 'qcow2' });
  const blk2 = new VirtioBlock({ path: ov });
  const other = { virtio: { functions: [{ device: blk2 }] }, config: { disks: [{ path: ov, readonly: true }] }, paused: true };
  await assert.rejects(commitDisk(other, 0), /read-only/);
  await assert.rejects(commitDisk(other, 1), /no disk 1/);
  blk2.close();
});


const md5Of = (buffer: Buffer) => crypto.createHash('md5').update(buffer).digest('hex');

test('a real guest: writes before and after a live disk snapshot, live blockcommit, the guest reads both back and writes on into the base', {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 600_000,
}, async (t) => {
  assert.equal((await call('POST', '/volumes', { name: 'g.qcow2', size: 32 * 2 ** 20 })).status, 201);
  assert.equal((await call('POST', '/vms', { name: 'g', engine: 'soft', memory: 128, disks: [{ path: vol('g.qcow2') }] })).status, 201);
  assert.equal((await cli(['start', 'g'], fx.daemon.socket, [], 60_000)).status, 0);
  const con = await guestConsole((await call('GET', '/vms/g')).body.consoleSocket);
  const md5 = (out: string) => /^([0-9a-f]{32})\b/m.exec(out)?.[1];
  try {
    await waitFor('the guest shell', () => con.output().includes(GUEST_PROMPT), BOOT_TIMEOUT_MS);
    // 1 MiB at 0 (into g.qcow2), then a live disk snapshot, then 1 MiB at 2 MiB (into the overlay).
    const a = md5(await con.run('dd if=/dev/urandom of=/tmp/a bs=64k count=16 2>/dev/null; dd if=/tmp/a of=/dev/vda bs=64k conv=fsync 2>/dev/null; md5sum /tmp/a', 'WA'));
    const snap = await cli(['snapshot', 'create', 'g', 's1', '--disk-only'], fx.daemon.socket, [], 120_000);
    assert.equal(snap.status, 0, snap.stderr);
    const b = md5(await con.run('dd if=/dev/urandom of=/tmp/b bs=64k count=16 2>/dev/null; dd if=/tmp/b of=/dev/vda bs=64k seek=32 conv=fsync 2>/dev/null; md5sum /tmp/b', 'WB'));
    const overlay = (await call('GET', '/vms/g')).body.definition.disks[0].path;
    assert.notEqual(overlay, vol('g.qcow2'));

    const commit = await cli(['blockcommit', 'g', 'vda', '--delete'], fx.daemon.socket, [], 120_000);
    assert.equal(commit.status, 0, commit.stderr);
    assert.match(commit.stdout, /into g\.qcow2 \(1\.0M written.*guest paused/);
    t.diagnostic(commit.stdout.trim());
    assert.ok(!fs.existsSync(overlay));
    // The guest reads both from the disk (not its page cache), then writes 1 MiB at 4 MiB: into g.qcow2 now.
    const back = await con.run('echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=64k count=16 2>/dev/null | md5sum; dd if=/dev/vda bs=64k skip=32 count=16 2>/dev/null | md5sum', 'RB');
    const sums = [...back.matchAll(/^([0-9a-f]{32})\b/gm)].map((m) => m[1]);
    assert.deepEqual(sums, [a, b], back);
    const c = md5(await con.run('dd if=/dev/urandom of=/tmp/c bs=64k count=16 2>/dev/null; dd if=/tmp/c of=/dev/vda bs=64k seek=64 conv=fsync 2>/dev/null; md5sum /tmp/c', 'WC'));
    // Powered off from inside: the VMM closes the image (a destroyed one would leave its reserved clusters as leaks).
    con.socket.write('poweroff -f\n');
    await waitFor('shut off', async () => (await call('GET', '/vms/g')).body.state === 'shut off', 60_000);
    const disk = readDisk(vol('g.qcow2'));
    assert.deepEqual([0, 2, 4].map((mib) => md5Of(disk.subarray(mib * 2 ** 20, (mib + 1) * 2 ** 20))), [a, b, c]);
    qemuCheck(vol('g.qcow2'));
  } finally {
    con.socket.destroy();
    await call('POST', '/vms/g/destroy');
  }
});
