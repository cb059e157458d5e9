// Disk snapshots and backups through a real daemon, the real CLI and the REST API:
// - without booting: external disk snapshots of a shut-off VM (overlay chain, revert, delete refused while it has
//   dependants, delete of an abandoned branch), input validation and error codes, the OpenAPI paths;
// - one real guest (the default image on the soft engine) on a qcow2 pool disk holding ext4: a marker file written,
//   a disk snapshot taken while it runs (writes then go to the overlay: the frozen image's bytes do not change, qemu-img
//   shows the backing chain and `check` is clean), a backup taken while it runs (the pause measured and printed), a
//   second marker written after, the backup restored as a new VM: the first marker is there, the second is not, and
//   the restored guest carries on (its shell answers); a damaged backup is refused before anything is written.
//   As root with /dev/net/tun, that guest has a network card on a real TAP (made with `ip tuntap`) and an address: the
//   clone is refused without one --nic per card, and restored with its own TAP it gets a new MAC in its definition
//   while the original still runs and is defined, and the host pings the guest's saved address through the clone's TAP.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { copyImage, createQcow2 } from '../src/storage/qcow2.ts';
import { VirtioBlock } from '../src/devices/virtio/blk.ts';
import { parseDiskSwitches, switchDisks } from '../src/vmm/disk-switch.ts';
import { api, cli, Daemon, guestConsole, guestKernel, killRecordedVmms, tempDir, waitFor } from './support/manager-harness.ts';

const dir = tempDir('backup');
const stateDir = path.join(dir, 'state');
const volumesDir = path.join(stateDir, 'volumes');
let daemon: Daemon;
const haveQemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const image = findDefaultImage();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);
/** One shell command in the guest: generous, since a shared 2-core host can give a software-engine guest a tenth of a CPU. */
const STEP_TIMEOUT_MS = 300_000;

/** Real TAPs for the guest with a network card: root, /dev/net/tun, iproute2 and a ping (iputils or busybox). */
function tapProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (!fs.existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  if (spawnSync('ip', ['-V']).status !== 0) return 'no ip';
  if (spawnSync(pingCommand()[0], [...pingCommand().slice(1), '-c', '1', '-W', '1', '127.0.0.1']).status !== 0) return 'no ping';
  return undefined;
}
function pingCommand(): string[] {
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) if (fs.existsSync(`${d}/ping`)) return [`${d}/ping`];
  return ['busybox', 'ping'];
}
const tapSkip = tapProblem();
// (names and a subnet of this process's own, so two runs of this test on one host do not meet)
const tapSrc = `rzbk${process.pid}s`.slice(-15), tapClone = `rzbk${process.pid}c`.slice(-15);
const subnet = `10.${200 + (process.pid % 50)}.${(process.pid >> 6) % 250}`;

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const call = (method: string, url: string, body?: unknown) => api({ socket: daemon.socket }, method, url, body);

before(async () => {
  daemon = await Daemon.start(stateDir);
});
after(async () => {
  killRecordedVmms(stateDir);
  await daemon.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  if (!tapSkip) for (const tap of [tapSrc, tapClone]) spawnSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
});

test('disk snapshots of a shut-off VM: overlay chain, revert, delete refused with dependants, abandoned branch removed; validation', async () => {
  createQcow2(path.join(volumesDir, 'cold.qcow2'), { size: 8 * 2 ** 20 });
  const kernel = guestKernel(dir, 'idle');
  assert.equal((await call('POST', '/vms', { name: 'cold', kernel, memory: 64, disks: [{ path: path.join(volumesDir, 'cold.qcow2') }] })).status, 201);

  let r = await cli(['snapshot', 'create', 'cold', '--name', 'a', '--disk-only'], daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /VM 'cold': disk snapshot 'a' created\n {2}vda: cold\.qcow2 frozen, writes go to cold-vda-a\.qcow2\n/);
  r = await cli(['snapshot', 'create', 'cold', 'b', '--disk-only'], daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  const disk = async (): Promise<string> => path.basename((await call('GET', '/vms/cold')).body.definition.disks[0].path);
  assert.equal(await disk(), 'cold-vda-b.qcow2');
  assert.equal((await call('GET', '/volumes/cold-vda-b.qcow2')).body.backingFile, 'cold-vda-a.qcow2');
  const list = (await call('GET', '/vms/cold/disk-snapshots')).body;
  assert.deepEqual(list.map((s: { name: string; live: boolean }) => [s.name, s.live]), [['a', false], ['b', false]]);
  r = await cli(['snapshot', 'list', 'cold', '--disk-only'], daemon.socket);
  assert.match(r.stdout, /^NAME +CREATED +LIVE +DISKS\na +\S+ +no +cold\.qcow2\nb +\S+ +no +cold-vda-a\.qcow2\n$/);

  // Both frozen images are in the disk's chain: neither can go.
  r = await cli(['snapshot', 'delete', 'cold', 'a', '--disk-only'], daemon.socket);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /disk snapshot 'a' of VM 'cold' has dependants.*\[conflict\]/);
  // Revert to a: a fresh overlay of cold.qcow2; the discarded top (cold-vda-b) is removed, b's frozen image stays.
  r = await cli(['snapshot', 'revert', 'cold', 'a'], daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(await disk(), /^cold-vda-a-r[0-9a-z]+\.qcow2$/);
  assert.equal((await call('GET', `/volumes/${await disk()}`)).body.backingFile, 'cold.qcow2');
  assert.ok(!fs.existsSync(path.join(volumesDir, 'cold-vda-b.qcow2')));
  assert.ok(fs.existsSync(path.join(volumesDir, 'cold-vda-a.qcow2')), 'b froze it');
  // b is on an abandoned branch now: deleting it removes its files; a still has dependants.
  assert.equal((await call('DELETE', '/vms/cold/disk-snapshots/b')).status, 204);
  assert.ok(!fs.existsSync(path.join(volumesDir, 'cold-vda-a.qcow2')));
  assert.equal((await call('DELETE', '/vms/cold/disk-snapshots/a')).body.error.code, 'conflict');
  assert.ok(fs.existsSync(path.join(volumesDir, 'cold.qcow2')), 'the original volume is never removed');
  if (haveQemuImg) {
    const info = spawnSync('qemu-img', ['info', '--backing-chain', path.join(volumesDir, await disk())], { encoding: 'utf8' });
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /backing file: cold\.qcow2/);
  }

  // Validation and stable codes.
  const cases: Array<[string, string, unknown, number, string]> = [
    ['POST', '/vms/cold/disk-snapshots', { name: 'bad.name' }, 400, 'invalid'],
    ['POST', '/vms/cold/disk-snapshots', { name: 'a' }, 409, 'conflict'],
    ['POST', '/vms/nope/disk-snapshots', {}, 404, 'not_found'],
    ['GET', '/vms/cold/disk-snapshots/zz', undefined, 404, 'not_found'],
    ['POST', '/vms/cold/backups', {}, 409, 'conflict'],
    ['POST', '/vms/cold/backups', { to: 'relative' }, 400, 'invalid'],
    ['POST', '/backups', { vm: 'cold', extra: 1 }, 400, 'invalid'],
    ['POST', '/backups', {}, 400, 'invalid'],
    ['GET', '/backups/bk-nothing', undefined, 404, 'not_found'],
    ['POST', '/backups/bk-nothing/restore', {}, 404, 'not_found'],
    ['POST', '/backups/bk-nothing/restore', { as: '-bad' }, 400, 'invalid'],
  ];
  for (const [method, url, body, status, code] of cases) {
    const res = await call(method, url, body);
    assert.equal(res.status, status, `${method} ${url} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, code, `${method} ${url}`);
  }
  // A disk outside the pool.
  const outside = path.join(dir, 'outside.qcow2');
  createQcow2(outside, { size: 2 ** 20 });
  assert.equal((await call('POST', '/vms', { name: 'out', kernel, memory: 64, disks: [{ path: outside }] })).status, 201);
  const res = await call('POST', '/vms/out/disk-snapshots', {});
  assert.equal(res.status, 400);
  assert.match(res.body.error.message, /not in the storage pool/);
  r = await cli(['backup', 'bad/name'], daemon.socket);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid VM name/);

  const doc = (await call('GET', '/openapi.json')).body;
  for (const p of ['/vms/{name}/disk-snapshots', '/vms/{name}/disk-snapshots/{snap}', '/vms/{name}/disk-snapshots/{snap}/revert', '/vms/{name}/backups', '/backups', '/backups/{id}', '/backups/{id}/restore']) {
    assert.ok(doc.paths[p], `OpenAPI has ${p}`);
  }
  assert.ok(doc.components.schemas.Backup && doc.components.schemas.DiskSnapshot);
  // Undefining the VM drops its disk snapshot records; the images stay as volumes.
  const top = await disk();
  assert.equal((await call('DELETE', '/vms/cold')).status, 204);
  assert.ok(!fs.existsSync(path.join(stateDir, 'disk-snapshots', 'cold')));
  assert.ok(fs.existsSync(path.join(volumesDir, top)) && fs.existsSync(path.join(volumesDir, 'cold.qcow2')));
});

test('the VMM\'s disk-snapshot switch: all disks or none, overlays of the right images only, the config names the overlay', async () => {
  const work = path.join(dir, 'switch');
  fs.mkdirSync(work);
  const a = path.join(work, 'a.qcow2'), b = path.join(work, 'b.qcow2');
  createQcow2(a, { size: 2 ** 20 });
  createQcow2(b, { size: 2 ** 20 });
  const blkA = new VirtioBlock({ path: a }), blkB = new VirtioBlock({ path: b });
  const machine = { virtio: { functions: [{ device: blkA }, { device: blkB }] }, config: { disks: [{ path: a }, { path: b }] }, paused: true };
  try {
    const ovA = path.join(work, 'ovA.qcow2'), ovWrong = path.join(work, 'ovWrong.qcow2');
    createQcow2(ovA, { size: 2 ** 20, backingFile: 'a.qcow2', backingFormat: 'qcow2' });
    createQcow2(ovWrong, { size: 2 ** 20, backingFile: 'a.qcow2', backingFormat: 'qcow2' });
    // Disk 1's "overlay" is one of disk 0's image: nothing switches.
    await assert.rejects(switchDisks(machine, [{ index: 0, overlay: ovA }, { index: 1, overlay: ovWrong }]), /is not an overlay of disk 1/);
    assert.deepEqual(machine.config.disks.map((d) => d.path), [a, b]);
    await assert.rejects(switchDisks(machine, [{ index: 0, overlay: path.join(work, 'missing.qcow2') }]), /cannot open/);
    assert.deepEqual(await switchDisks(machine, [{ index: 0, overlay: ovA }]), {}, 'a paused VM stays paused: no pause measured');
    assert.deepEqual(machine.config.disks.map((d) => d.path), [ovA, b]);
    // Validation of the request.
    assert.match(parseDiskSwitches([], 2) as string, /needs "disks"/);
    assert.match(parseDiskSwitches([{ index: 2, overlay: '/x' }], 2) as string, /from 0 to 1/);
    assert.match(parseDiskSwitches([{ index: 0, overlay: 'rel' }], 2) as string, /absolute/);
    assert.match(parseDiskSwitches([{ index: 0, overlay: '/x' }, { index: 0, overlay: '/y' }], 2) as string, /twice/);
  } finally {
    blkA.close();
    blkB.close();
  }
});

test('backup --to DIR of a small synthetic guest, listed through its reference; restore into the same VM once it is shut off', async () => {
  const kernel = guestKernel(dir, 'echo');
  const disk = path.join(volumesDir, 'echo.qcow2');
  createQcow2(disk, { size: 2 ** 20 });
  assert.equal((await call('POST', '/vms', { name: 'echo', kernel, memory: 64, disks: [{ path: disk }] })).status, 201);
  assert.equal((await cli(['start', 'echo'], daemon.socket)).status, 0);
  const con = await guestConsole((await call('GET', '/vms/echo')).body.consoleSocket, STEP_TIMEOUT_MS);
  await waitFor('the banner', () => con.output().includes('ringzero test guest: ready'));
  con.socket.write('a');
  await waitFor('the echo of a', () => con.output().includes('ready\na'));
  const elsewhere = path.join(dir, 'elsewhere');
  let r = await cli(['backup', 'echo', '--to', elsewhere], daemon.socket, [], 120_000);
  assert.equal(r.status, 0, r.stderr);
  const id = /backup '(bk-[0-9a-f-]+)'/.exec(r.stdout)![1];
  assert.match(r.stdout, new RegExp(`in ${elsewhere}/${id}\n {2}guest paused [0-9.]+ ms`));
  const manifest = JSON.parse(fs.readFileSync(path.join(elsewhere, id, 'manifest.json'), 'utf8'));
  assert.equal(manifest.format, 'ringzero-backup');
  assert.deepEqual(manifest.disks.map((d: { file: string }) => d.file), ['disk0.qcow2']);
  assert.ok(manifest.state.some((f: { file: string }) => f.file === 'state/state.json'));
  r = await cli(['backup', 'list', '--vm', 'echo', '--json'], daemon.socket);
  assert.deepEqual(JSON.parse(r.stdout).map((b: { id: string; path: string }) => [b.id, b.path]), [[id, path.join(elsewhere, id)]]);
  // Running: restoring into it is refused; as itself under --as too.
  assert.equal((await call('POST', `/backups/${id}/restore`, {})).body.error.code, 'conflict');
  assert.equal((await call('POST', `/backups/${id}/restore`, { as: 'echo' })).body.error.code, 'conflict');
  con.socket.write('b');
  await waitFor('the echo of b', () => con.output().includes('ready\nab'));
  con.socket.destroy();
  assert.equal((await call('POST', '/vms/echo/destroy')).status, 200);
  r = await cli(['restore', id], daemon.socket, [], 120_000);
  assert.equal(r.status, 0, r.stderr);
  const vm = (await call('GET', '/vms/echo')).body;
  assert.equal(vm.state, 'running');
  assert.equal(vm.restoredFrom, id);
  assert.equal(path.basename(vm.definition.disks[0].path), `echo-vda-from-${id}.qcow2`);
  // The guest carries on from the backup's instant: it echoes again (the 'b' typed after the backup is not in its past).
  const con2 = await guestConsole(vm.consoleSocket, STEP_TIMEOUT_MS);
  con2.socket.write('c');
  await waitFor('the echo of c', () => con2.output().endsWith('c'));
  con2.socket.destroy();
  assert.equal((await call('POST', '/vms/echo/destroy')).status, 200);

  // The manifest is checksummed too (sha256 over itself without that field): a damaged one, still valid JSON (here
  // the definition a restore would define the VM from), is refused before anything is written; so is another format
  // version, with both versions named.
  const manifestFile = path.join(elsewhere, id, 'manifest.json');
  const good = fs.readFileSync(manifestFile, 'utf8');
  assert.match(JSON.parse(good).sha256, /^[0-9a-f]{64}$/);
  const volumesBefore = fs.readdirSync(volumesDir).sort();
  fs.writeFileSync(manifestFile, good.replace('"memory": 64,', '"memory": 65,'));
  assert.notEqual(fs.readFileSync(manifestFile, 'utf8'), good, 'the definition in the manifest was changed');
  const damaged = await call('POST', `/backups/${id}/restore`, { as: 'echo2' });
  assert.equal(damaged.status, 422, JSON.stringify(damaged.body));
  assert.equal(damaged.body.error.code, 'corrupt');
  assert.match(damaged.body.error.message, /manifest\.json does not match its SHA-256/);
  assert.equal((await call('GET', '/vms/echo2')).status, 404, 'no VM defined');
  assert.deepEqual(fs.readdirSync(volumesDir).sort(), volumesBefore, 'no disk copied');
  const other = JSON.parse(good);
  other.version = 2;
  fs.writeFileSync(manifestFile, JSON.stringify(other));
  const newer = await call('POST', `/backups/${id}/restore`, { as: 'echo2' });
  assert.equal(newer.body.error.code, 'unsupported', JSON.stringify(newer.body));
  assert.match(newer.body.error.message, /has format version 2; this ringzero reads version 1/);
  fs.writeFileSync(manifestFile, good);
  assert.equal((await call('GET', `/backups/${id}`)).status, 200, 'whole again');
});


/** The highest n of the SEQnnnnnnnnQ markers in a (sparse) memory image. */
function maxMarker(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(16 << 20);
    let max = 0, at = 0;
    for (;;) {
      // (chunks overlap by a marker's length, so one across a boundary is seen)
      const n = fs.readSync(fd, chunk, 0, chunk.length, at);
      if (n <= 0) break;
      for (const m of chunk.subarray(0, n).toString('latin1').matchAll(/SEQ(\d{8})Q/g)) max = Math.max(max, Number(m[1]));
      if (n < chunk.length) break;
      at += n - 12;
    }
    return max;
  } finally {
    fs.closeSync(fd);
  }
}

test('a running guest on a qcow2 pool disk: disk snapshot live, backup live (pause measured), restore as a new VM from the saved instant', {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 8 * STEP_TIMEOUT_MS,
}, async () => {
  // An ext4 file system in a qcow2 pool volume.
  const raw = path.join(dir, 'data.ext4');
  fs.closeSync(fs.openSync(raw, 'w'));
  fs.truncateSync(raw, 32 * 2 ** 20);
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', raw], { encoding: 'utf8' });
  assert.equal(mkfs.status, 0, mkfs.stderr);
  const base = path.join(volumesDir, 'data.qcow2');
  copyImage(raw, base, 'qcow2', 'raw');
  // A network card on a real TAP (the host side up, no address: the host reaches the guest's address only through the
  // clone's TAP below).
  if (tapSkip) process.stdout.write(`# no network card (${tapSkip}): clone-from-backup with --nic not checked\n`);
  else {
    for (const tap of [tapSrc, tapClone]) spawnSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
    for (const tap of [tapSrc, tapClone]) {
      for (const args of [['tuntap', 'add', 'dev', tap, 'mode', 'tap'], ['link', 'set', tap, 'up']]) {
        const made = spawnSync('ip', args, { encoding: 'utf8' });
        assert.equal(made.status, 0, `ip ${args.join(' ')}: ${made.stderr}`);
      }
    }
  }
  const nics = tapSkip ? {} : { nics: [{ tap: tapSrc }] };
  assert.equal((await call('POST', '/vms', { name: 'src', engine: 'soft', memory: 128, disks: [{ path: base }], ...nics })).status, 201);
  assert.equal((await cli(['start', 'src'], daemon.socket, [], 60_000)).status, 0);
  const vm = (await call('GET', '/vms/src')).body;
  const con = await guestConsole(vm.consoleSocket, STEP_TIMEOUT_MS);
  let passed = false;
  after(() => {
    // What the VMMs said, when something went wrong.
    if (passed) return;
    for (const name of ['src', 'copy']) {
      const log = path.join(stateDir, 'logs', `${name}.log`);
      if (fs.existsSync(log)) process.stdout.write(`# ${name}.log: ${fs.readFileSync(log, 'utf8').slice(-1500).replace(/\n/g, '\n# ')}\n`);
    }
  });
  await waitFor('the shell prompt', () => con.output().includes(GUEST_PROMPT), BOOT_TIMEOUT_MS);
  await con.run('mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo first-marker > /mnt/m1 && sync', 'MARK1');
  if (!tapSkip) await con.run(`ip addr add ${subnet}.2/24 dev eth0 && ip link set eth0 up && echo UP`, 'NETUP');

  // Disk snapshot while it runs: data.qcow2 is frozen, the overlay takes the writes.
  let r = await cli(['snapshot', 'create', 'src', '--name', 'live1', '--disk-only'], daemon.socket, [], 60_000);
  assert.equal(r.status, 0, r.stderr);
  const pause1 = /guest paused ([0-9.]+) ms/.exec(r.stdout);
  assert.ok(pause1, r.stdout);
  const overlay1 = path.join(volumesDir, 'src-vda-live1.qcow2');
  assert.equal((await call('GET', '/vms/src')).body.definition.disks[0].path, overlay1);
  const baseSha = sha(base);
  await con.run('dd if=/dev/zero of=/mnt/noise bs=64k count=8 2>/dev/null && echo after-snapshot > /mnt/m0 && sync', 'MARK0');
  assert.equal(sha(base), baseSha, 'the frozen image did not change: the writes went to the overlay');
  assert.ok(fs.statSync(overlay1).size > 512 * 1024, 'the overlay holds the new data');
  if (haveQemuImg) {
    const check = spawnSync('qemu-img', ['check', '-U', base], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  }

  // The instant itself, exactly: a sequencer writes SEQnnnnnnnnQ, n = 1, 2, 3, ..., first into a file in RAM (tmpfs:
  // /tmp/seq0 and /tmp/seq1 in turn, so the one before stays whole while the next is written), then into one block of
  // /mnt/seq with O_DIRECT (past the page cache: on the disk when dd returns, and n+1 is formed only after that). So at
  // any instant, with M the highest n in RAM, the disk holds M or M-1. Both are read from the backup's own files on the
  // host below: memory and disks from two instants would differ by more.
  await con.run('dd if=/dev/zero of=/mnt/seq bs=4096 count=1 conv=fsync 2>/dev/null && sync', 'SEQFILE');
  await con.run('(n=0; while [ ! -e /tmp/bgstop ]; do n=$((n+1)); echo "SEQ$(printf %08d $n)Q" >/tmp/seq$((n%2)); dd if=/tmp/seq$((n%2)) of=/mnt/seq bs=4096 count=1 conv=sync,notrunc oflag=direct 2>/dev/null; done) & echo $! >/tmp/seq.pid', 'SEQUENCER');
  await waitFor('the sequencer to count', async () => [...(await con.run('cat /tmp/seq0 /tmp/seq1 2>/dev/null', 'SEQNOW')).matchAll(/SEQ(\d{8})Q/g)].some((m) => Number(m[1]) >= 3), STEP_TIMEOUT_MS);
  // Data the guest wrote without syncing, just before the backup: in its page cache (dirty pages are written back after
  // 30 s), likely not on the disk yet. Memory and disks at one instant means the restored guest has it, and once it
  // syncs and drops its caches, reads it back from its own disk.
  // And a writer that goes on through the backup, rewriting files of changing sizes (blocks allocated and freed, never
  // synced): once the clone has stopped it and unmounted, e2fsck finds the clone's disk clean (checked below). (That
  // alone would not show a skew: with the 12 s between the memory snapshot and the disk switch that a deliberately
  // broken backup had, e2fsck still found the disk clean, ext4's journal covering it; the sequencer above did not.)
  const unsynced = /\n([0-9a-f]{32})\n/.exec(await con.run('dd if=/dev/urandom of=/mnt/u1 bs=64k count=16 2>/dev/null; md5sum </mnt/u1 | cut -c1-32', 'UNSYNCED'))?.[1];
  assert.ok(unsynced, 'the md5 of the unsynced file');
  await con.run('(i=0; while [ ! -e /tmp/bgstop ]; do dd if=/dev/urandom of=/mnt/bg$((i%8)) bs=4k count=$((i%16+1)) 2>/dev/null; i=$((i+1)); done) & echo $! >/tmp/bg.pid', 'WRITER');
  const stopWriter = (c: typeof con) => c.run('touch /tmp/bgstop; while [ -e /proc/$(cat /tmp/bg.pid) ] || [ -e /proc/$(cat /tmp/seq.pid) ]; do sleep 0.1; done; ls /mnt | grep -c "^bg"', 'STOPPED');

  // Backup while it runs.
  const started = Date.now();
  r = await cli(['backup', 'src'], daemon.socket, [], 300_000);
  assert.equal(r.status, 0, r.stderr);
  const id = /backup '(bk-[0-9a-f-]+)'/.exec(r.stdout)?.[1];
  assert.ok(id, r.stdout);
  const pausedMs = Number(/guest paused ([0-9.]+) ms/.exec(r.stdout)![1]);
  process.stdout.write(`# disk snapshot pause ${pause1![1]} ms; backup pause ${pausedMs} ms; backup total ${Date.now() - started} ms\n`);
  assert.ok(pausedMs > 0 && pausedMs < 30_000, `paused ${pausedMs} ms`);
  await con.run('echo second-marker > /mnt/m2 && sync', 'MARK2');
  assert.match(await stopWriter(con), /\n[1-8]\n/, 'the writer wrote files');
  // The guest ran on during and after the backup; it is on a new overlay now, and the one before is a clean,
  // closed backing file.
  const overlay2 = (await call('GET', '/vms/src')).body.definition.disks[0].path;
  assert.equal(path.basename(overlay2), `src-vda-${id}.qcow2`);
  if (haveQemuImg) {
    const info = spawnSync('qemu-img', ['info', '-U', '--backing-chain', overlay2], { encoding: 'utf8' });
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /backing file: src-vda-live1\.qcow2[\s\S]*backing file: data\.qcow2/);
    const check = spawnSync('qemu-img', ['check', '-U', overlay1], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  }
  const backup = (await call('GET', `/backups/${id}`)).body;
  assert.equal(backup.vm, 'src');
  assert.equal(backup.disks.length, 1);
  for (const f of [...backup.state, ...backup.disks]) assert.equal(sha(path.join(backup.path, f.file)), f.sha256, f.file);
  // (what the backup's disk alone held of the unsynced file: printed, since writeback may or may not have reached it)
  const flat = path.join(dir, 'backup-vda.raw');
  copyImage(path.join(backup.path, backup.disks[0].file), flat, 'raw', 'qcow2');
  const onDisk = spawnSync('debugfs', ['-R', 'cat /u1', flat]);
  const onDiskMd5 = onDisk.status === 0 && onDisk.stdout.length > 0 ? crypto.createHash('md5').update(onDisk.stdout).digest('hex') : 'absent';
  const seqOnDisk = spawnSync('debugfs', ['-R', 'cat /seq', flat]);
  fs.rmSync(flat, { force: true });
  const onDiskSeq = /^SEQ(\d{8})Q/.exec(seqOnDisk.stdout.toString('latin1'));
  assert.ok(onDiskSeq, `the sequencer's block on the backup's disk: ${JSON.stringify(seqOnDisk.stdout.toString('latin1').slice(0, 16))} ${seqOnDisk.stderr}`);
  const memoryFile = path.join(backup.path, backup.state.find((f: { file: string }) => path.basename(f.file) === 'memory').file);
  const inMemory = maxMarker(memoryFile);
  process.stdout.write(`# the sequencer at the backup's instant: SEQ${inMemory} the highest in the memory image, SEQ${Number(onDiskSeq[1])} on the disk\n`);
  assert.ok(inMemory > 0 && [inMemory, inMemory - 1].includes(Number(onDiskSeq[1])), `memory and disk from one instant: the memory image's highest SEQ${inMemory}, the disk's SEQ${Number(onDiskSeq[1])}`);
  process.stdout.write(`# the unsynced file at the backup's instant: ${onDiskMd5 === unsynced ? 'already on the backup\'s disk' : `not on the backup's disk (${onDisk.status === 0 ? `debugfs: ${onDiskMd5 === 'absent' ? 'empty or absent' : 'other content'}` : 'no debugfs'}): in the memory image only`}\n`);
  r = await cli(['backup', 'list'], daemon.socket);
  assert.match(r.stdout, new RegExp(`\\n${id} +src `));

  // A clone of a VM with a network card needs its own TAP, one --nic per card: without, or with two, it is refused
  // ('invalid', nothing defined); so is a --nic that names the original's TAP or MAC, and a bad one (the schema).
  const srcDefinition = (await call('GET', '/vms/src')).body.definition;
  const srcMac = tapSkip ? undefined : srcDefinition.nics[0].mac;
  let restoreArgs = ['restore', id!, '--as', 'copy'];
  if (!tapSkip) {
    for (const [body, code, message] of [
      [{ as: 'copy' }, 'invalid', /has 1 network card\(s\) and 0 were given/],
      [{ as: 'copy', nics: [{ tap: tapClone }, { tap: 'rzother0' }] }, 'invalid', /has 1 network card\(s\) and 2 were given/],
      [{ as: 'copy', nics: [{ tap: tapSrc }] }, 'invalid', /the backed-up VM's: a clone gets its own TAP/],
      [{ as: 'copy', nics: [{ tap: tapClone, mac: srcMac.toUpperCase() }] }, 'conflict', /is the backed-up guest's/],
      [{ as: 'copy', nics: [{ tap: 'no/slash' }] }, 'invalid', /nics\/0\/tap must match pattern/],
      [{ nics: [{ tap: tapClone }] }, 'invalid', /give them with as/],
    ] as const) {
      const refused = await call('POST', `/backups/${id}/restore`, body);
      assert.equal(refused.body.error?.code, code, JSON.stringify([body, refused.body]));
      assert.match(refused.body.error.message, message);
    }
    r = await cli(['restore', id!, '--as', 'copy', '--nic', `tap=${tapClone}`, '--nic', 'tap=rzother0'], daemon.socket, [], 60_000);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /has 1 network card\(s\) and 2 were given/);
    r = await cli(['restore', id!, '--as', 'copy', '--nic', 'tap=x,mac=01:00:00:00:00:01'], daemon.socket, [], 60_000);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /multicast/);
    assert.equal((await call('GET', '/vms/copy')).status, 404, 'nothing defined by the refused restores');
    restoreArgs = [...restoreArgs, '--nic', `tap=${tapClone}`];
  }

  // Restore as a new VM: the saved instant (first marker, not the second), and the guest answers.
  r = await cli(restoreArgs, daemon.socket, [], 120_000);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`VM 'copy' restored from backup '${id}' \\(running`));
  const copy = (await call('GET', '/vms/copy')).body;
  assert.equal(copy.state, 'running');
  if (!tapSkip) {
    // Its own TAP and a new MAC in its definition; the original is still defined (and running) with its own.
    assert.equal(copy.definition.nics.length, 1);
    assert.equal(copy.definition.nics[0].tap, tapClone);
    assert.match(copy.definition.nics[0].mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.notEqual(copy.definition.nics[0].mac, srcMac);
    const original = (await call('GET', '/vms/src')).body;
    assert.equal(original.state, 'running');
    assert.deepEqual(original.definition.nics, [{ tap: tapSrc, mac: srcMac }]);
    assert.match(r.stdout, new RegExp(`eth0: TAP ${tapClone}, MAC ${copy.definition.nics[0].mac} from its next boot`));
    // Traffic through the clone's TAP: the host (its address on that TAP only) pings the guest's saved address.
    const ip = spawnSync('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', tapClone], { encoding: 'utf8' });
    assert.equal(ip.status, 0, ip.stderr);
    const rxBefore = Number(fs.readFileSync(`/sys/class/net/${tapClone}/statistics/rx_packets`, 'utf8'));
    let answered = false;
    for (let i = 0; i < 5 && !answered; i++) answered = spawnSync(pingCommand()[0], [...pingCommand().slice(1), '-c', '1', '-W', '5', `${subnet}.2`]).status === 0;
    assert.ok(answered, `the clone's guest answers ${subnet}.2 through TAP ${tapClone}`);
    assert.ok(Number(fs.readFileSync(`/sys/class/net/${tapClone}/statistics/rx_packets`, 'utf8')) > rxBefore, 'the reply came in on the clone\'s TAP');
  }
  assert.equal(path.basename(copy.definition.disks[0].path), `copy-vda-from-${id}.qcow2`);
  assert.notEqual(copy.definition.disks[0].path, overlay2);
  const con2 = await guestConsole(copy.consoleSocket, STEP_TIMEOUT_MS);
  const seen = await con2.run('cat /mnt/m1 /mnt/m0; ls /mnt/m2 2>/dev/null || echo "NO""M2"', 'ALIVE');
  assert.match(seen, /\nfirst-marker\nafter-snapshot\nNOM2\n/, seen);
  const reread = await con2.run('sync && echo 3 >/proc/sys/vm/drop_caches && md5sum </mnt/u1 | cut -c1-32', 'REREAD');
  assert.match(reread, new RegExp(`\\n${unsynced}\\n`), 'the data in the page cache at the backup\'s instant, written to the clone\'s disk and read back');
  // What the restored guest writes goes to its own disk only.
  await con2.run('echo copy-only > /mnt/m3 && sync', 'MARK3');
  const own = await con.run('ls /mnt/m3 2>/dev/null || echo "NO""M3"', 'DONE');
  assert.match(own, /\nNOM3\n/);
  // The clone's writer (restored running) stopped, its file system unmounted: e2fsck finds the clone's disk clean.
  await stopWriter(con2);
  await con2.run('sync && umount /mnt', 'UNMOUNTED');
  const cloneRaw = path.join(dir, 'clone-vda.raw');
  copyImage(copy.definition.disks[0].path, cloneRaw, 'raw');
  const fsck = spawnSync('e2fsck', ['-f', '-n', cloneRaw], { encoding: 'utf8' });
  fs.rmSync(cloneRaw, { force: true });
  assert.equal(fsck.status, 0, `e2fsck of the clone's disk: ${fsck.stdout}${fsck.stderr}`);

  // A damaged backup is refused before anything is written.
  const diskFile = path.join(backup.path, backup.disks[0].file);
  const fd = fs.openSync(diskFile, 'r+');
  fs.writeSync(fd, Buffer.from('x'), 0, 1, fs.fstatSync(fd).size - 1);
  fs.closeSync(fd);
  const bad = await call('POST', `/backups/${id}/restore`, { as: 'copy2', ...(tapSkip ? {} : { nics: [{ tap: 'rzbkcopy2' }] }) });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.error.code, 'corrupt');
  assert.equal((await call('GET', '/vms/copy2')).status, 404);

  con.socket.destroy();
  con2.socket.destroy();
  assert.equal((await call('POST', '/vms/copy/destroy')).status, 200);
  assert.equal((await call('POST', '/vms/src/destroy')).status, 200);
  passed = true;
});
