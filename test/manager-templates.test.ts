// Templates and clones through a real daemon and the real CLI: `template create` from a shut-off VM whose disk is a
// real ext4 image; `clone --count N` makes linked clones (qcow2 overlays of the template's disk: tiny, qemu-img
// clean) or full copies, each with its own hostname and MAC on its kernel command line and in a NoCloud seed disk;
// bad input gets stable codes; a daemon SIGKILLed in the middle of a clone leaves every clone whole or absent; and
// one linked clone boots the real guest, which reads the template's files through the overlay, writes its own, and
// finds its identity on its command line and seed disk (RINGZERO_SKIP_BOOT_TEST=1 skips that boot locally).
import test, { before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { cli, Daemon, daemonFixture, snapshot, waitFor } from './support/manager-harness.ts';

const fx = daemonFixture('tpl');
const { dir, stateDir } = fx;
const volumesDir = path.join(stateDir, 'volumes');
const haveQemuImg = spawnSync('qemu-img', ['--version']).status === 0;
const haveDebugfs = spawnSync('debugfs', ['-V']).status === 0;
const image = findDefaultImage();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);
const goldDisk = path.join(dir, 'gold.ext4');

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const call = fx.call;

before(async () => {
  // The golden VM's data disk: a real ext4 file system with a file in it (mkfs.ext4 -d, no mount).
  const content = path.join(dir, 'content');
  fs.mkdirSync(content);
  fs.writeFileSync(path.join(content, 'hello.txt'), 'hello from the template\n');
  fs.writeFileSync(path.join(content, 'blob.bin'), crypto.randomBytes(4 * 2 ** 20));
  fs.closeSync(fs.openSync(goldDisk, 'w'));
  fs.truncateSync(goldDisk, 32 * 2 ** 20);
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-d', content, goldDisk], { encoding: 'utf8' });
  assert.equal(mkfs.status, 0, mkfs.stderr);
  await fx.ready;
  assert.equal((await call('POST', '/vms', { name: 'gold', engine: 'soft', memory: 192, disks: [{ path: goldDisk }] })).status, 201);
});
test('template create from a shut-off VM; linked and full clones with their own identity', async () => {
  let r = await cli(['template', 'create', 'base', '--from', 'gold'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /template 'base' created from VM 'gold' \(1 disk\)/);
  const template = (await call('GET', '/templates/base')).body;
  assert.equal(template.definition.memory, 192);
  assert.equal(template.disks.length, 1);
  const templateDisk = template.disks[0].path;
  assert.equal(sha(templateDisk), sha(goldDisk), 'the disk copied');
  assert.equal(fs.statSync(templateDisk).mode & 0o777, 0o444, 'read-only');
  const templateSha = sha(templateDisk);

  // An SSH key file as ssh-keygen writes it (a comment line, the key): the key is each clone's, in its seed.
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJm0c1oK0Jv1d0h2t8Zp9T3fQ8Yv7xW0a1b2c3d4e5f6 ops@example';
  const keyFile = path.join(dir, 'ops.pub');
  fs.writeFileSync(keyFile, `# the operators' key\n${key}\n`);
  r = await cli(['clone', '--from', 'base', '--count', '3', '--name-prefix', 'web', '--ssh-key', keyFile], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  const macs = [...r.stdout.matchAll(/VM '(web-\d)' defined \(linked clone\): hostname (\S+), MAC (\S+)/g)];
  assert.deepEqual(macs.map((m) => [m[1], m[2]]), [['web-1', 'web-1'], ['web-2', 'web-2'], ['web-3', 'web-3']]);
  assert.equal(new Set(macs.map((m) => m[3])).size, 3, 'three different MACs');
  for (const [, name, hostname, mac] of macs) {
    assert.match(mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    const vm = (await call('GET', `/vms/${name}`)).body;
    assert.equal(vm.state, 'shut off');
    assert.equal(vm.definition.memory, 192, 'the template\'s definition');
    assert.match(vm.definition.cmdline, new RegExp(`ringzero\\.hostname=${hostname} ringzero\\.mac=${mac}$`));
    assert.deepEqual(vm.definition.disks.map((d: { path: string }) => path.basename(d.path)), [`${name}-disk0.qcow2`, `${name}-seed.img`]);
    assert.equal(vm.definition.disks[1].readonly, true);
    assert.equal(vm.definition.disks[1].serial, 'cidata');
    const volume = (await call('GET', `/volumes/${name}-disk0.qcow2`)).body;
    assert.equal(volume.format, 'qcow2');
    assert.equal(volume.backingFile, '../templates/base/disk0.raw');
    assert.equal(volume.virtualSize, 32 * 2 ** 20);
    assert.ok(volume.actualSize < 1024 * 1024, `a linked clone is small (${volume.actualSize} bytes)`);
    if (haveQemuImg) assert.equal(spawnSync('qemu-img', ['check', volume.path]).status, 0);
    if (haveDebugfs) {
      const seed = path.join(volumesDir, `${name}-seed.img`);
      const label = spawnSync('debugfs', ['-R', 'stats', seed], { encoding: 'utf8' }).stdout;
      assert.match(label, /Filesystem volume name:\s+cidata/);
      const meta = spawnSync('debugfs', ['-R', 'cat /meta-data', seed], { encoding: 'utf8' }).stdout;
      assert.match(meta, new RegExp(`local-hostname: ${hostname}`));
      const network = spawnSync('debugfs', ['-R', 'cat /network-config', seed], { encoding: 'utf8' }).stdout;
      assert.match(network, new RegExp(`mac_address: "${mac}"`));
      // The identity's key: cloud-init reads user-data's ssh_authorized_keys, NoCloud's meta-data public-keys.
      const user = spawnSync('debugfs', ['-R', 'cat /user-data', seed], { encoding: 'utf8' }).stdout;
      assert.equal(user, `#cloud-config\nhostname: ${hostname}\nssh_authorized_keys:\n  - ${JSON.stringify(key)}\n`);
      assert.match(meta, new RegExp(`public-keys:\n  - ${JSON.stringify(key).replace(/[+.]/g, '\\$&')}\n`));
    }
  }
  assert.deepEqual((await call('GET', '/templates/base')).body.linkedVolumes, ['web-1-disk0.qcow2', 'web-2-disk0.qcow2', 'web-3-disk0.qcow2']);

  // The next clones take the next free numbers; a full copy is a standalone file equal to the template's disk.
  const full = await call('POST', '/templates/base/clone', { count: 1, namePrefix: 'web', full: true, seed: false });
  assert.equal(full.status, 201, JSON.stringify(full.body));
  assert.equal(full.body[0].name, 'web-4');
  const copy = (await call('GET', '/volumes/web-4-disk0.raw')).body;
  assert.equal(copy.format, 'raw');
  assert.equal(copy.backingFile, undefined);
  assert.equal(sha(copy.path), templateSha);
  assert.equal((await call('GET', '/vms/web-4')).body.definition.disks.length, 1, 'no seed disk asked for');

  // A template of a linked clone is flattened (it does not depend on the first template) and leaves the seed out.
  const flat = await call('POST', '/templates', { name: 'second', from: 'web-1' });
  assert.equal(flat.status, 201, JSON.stringify(flat.body));
  assert.equal(flat.body.disks.length, 1);
  assert.equal(flat.body.disks[0].format, 'qcow2');
  const flatInfo = (await call('GET', '/templates/second')).body.disks[0];
  if (haveQemuImg) {
    const info = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', flatInfo.path], { encoding: 'utf8' }).stdout);
    assert.equal(info['backing-filename'], undefined, 'standalone');
    const cmp = spawnSync('qemu-img', ['compare', flatInfo.path, templateDisk], { encoding: 'utf8' });
    assert.equal(cmp.status, 0, `same content: ${cmp.stdout}${cmp.stderr}`);
  }

  // The template cannot go while linked clones depend on it.
  r = await cli(['template', 'delete', 'base'], fx.daemon.socket);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /backs linked clone volume\(s\) web-1-disk0.qcow2, web-2-disk0.qcow2, web-3-disk0.qcow2.*\[conflict\]/);
  assert.equal((await call('DELETE', '/templates/second')).status, 204);
  assert.equal(sha(templateDisk), templateSha, 'the template\'s disk never changes');

  // A start-up script as the identity (--user-data): the seed's user-data is the file, byte for byte.
  const script = '#!/bin/sh\necho "started $(hostname)" > /dev/console\n';
  const scriptFile = path.join(dir, 'start.sh');
  fs.writeFileSync(scriptFile, script);
  r = await cli(['clone', '--from', 'base', '--count', '1', '--name-prefix', 'job', '--full', '--user-data', scriptFile], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  if (haveDebugfs) {
    assert.equal(spawnSync('debugfs', ['-R', 'cat /user-data', path.join(volumesDir, 'job-1-seed.img')], { encoding: 'utf8' }).stdout, script);
  }
  assert.equal((await call('DELETE', '/vms/job-1')).status, 204);
  for (const volume of ['job-1-disk0.raw', 'job-1-seed.img']) assert.equal((await call('DELETE', `/volumes/${volume}`)).status, 204, volume);
});

test('bad input: stable codes, nothing changed', async () => {
  const before = snapshot(stateDir);
  const cases: Array<[string, string, unknown, number, string, RegExp]> = [
    ['POST', '/templates', { name: 'base', from: 'gold' }, 409, 'conflict', /already exists/],
    ['POST', '/templates', { name: 'x', from: 'nobody' }, 404, 'not_found', /no VM named 'nobody'/],
    ['POST', '/templates', { name: 'bad.name', from: 'gold' }, 400, 'invalid', /name must match/],
    ['POST', '/templates', { name: 'x' }, 400, 'invalid', /must have required property 'from'/],
    ['POST', '/templates/nope/clone', {}, 404, 'not_found', /no template named 'nope'/],
    ['POST', '/templates/base/clone', { count: 0 }, 400, 'invalid', /count must be >= 1/],
    ['POST', '/templates/base/clone', { count: 101 }, 400, 'invalid', /count must be <= 100/],
    ['POST', '/templates/base/clone', { namePrefix: '../x' }, 400, 'invalid', /namePrefix must match/],
    ['POST', '/templates/base/clone', { sshKeys: ['a\nb'] }, 400, 'invalid', /sshKeys\/0 must match/],
    ['POST', '/templates/base/clone', { speed: 'fast' }, 400, 'invalid', /unknown field 'speed'/],
    ['DELETE', '/templates/nope', undefined, 404, 'not_found', /no template named/],
  ];
  for (const [method, url, body, status, code, message] of cases) {
    const r = await call(method, url, body);
    assert.equal(r.status, status, `${method} ${url} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, code);
    assert.match(r.body.error.message, message);
  }
  const r = await cli(['clone', '--from', 'base', '--count', 'many'], fx.daemon.socket);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid --count 'many'/);
  assert.deepEqual(snapshot(stateDir), before);
});

test('daemon SIGKILLed in the middle of a clone: after a restart every clone is whole or absent, and cloning works again', async () => {
  const vmsBefore = (await call('GET', '/vms')).body.map((v: { name: string }) => v.name);
  await fx.daemon.stop();
  fx.daemon = await Daemon.start(stateDir, [], { RINGZERO_TEST_CRASH_AT: 'clone-mid' });
  await assert.rejects(call('POST', '/templates/base/clone', { count: 4, namePrefix: 'crash' }), 'the daemon dies mid-clone');
  assert.equal((await fx.daemon.exited).signal, 'SIGKILL');
  // The crash came after the second clone's volumes were made and before its definition.
  assert.ok(fs.existsSync(path.join(volumesDir, 'crash-2-disk0.qcow2')));
  assert.ok(!fs.existsSync(path.join(stateDir, 'vms', 'crash-2.json')));
  assert.ok(fs.readdirSync(path.join(stateDir, 'templates')).some((f) => f.startsWith('.clone-')), 'the journal is there');

  fx.daemon = await Daemon.start(stateDir);
  const vms = (await call('GET', '/vms')).body.map((v: { name: string }) => v.name);
  assert.deepEqual(vms.filter((n: string) => !vmsBefore.includes(n)), ['crash-1'], 'the clone defined before the crash stays');
  for (const vm of (await call('GET', '/vms')).body as Array<{ definition: { disks: Array<{ path: string }> } }>) {
    for (const disk of vm.definition.disks) assert.ok(fs.existsSync(disk.path), `every defined disk exists: ${disk.path}`);
  }
  const volumes = fs.readdirSync(volumesDir);
  assert.ok(!volumes.some((f) => f.startsWith('crash-2') || f.startsWith('crash-3') || f.startsWith('.')), `no orphans or temporaries: ${volumes}`);
  assert.ok(!fs.readdirSync(path.join(stateDir, 'templates')).some((f) => f.startsWith('.')), 'journal gone');
  const again = await call('POST', '/templates/base/clone', { count: 2, namePrefix: 'crash' });
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.deepEqual(again.body.map((c: { name: string }) => c.name), ['crash-2', 'crash-3']);
});

test('a linked clone boots: the guest reads the template\'s files through the overlay, writes its own, sees its identity', {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1' : !image ? 'no default image: run `bin/ringzero image build`' : false,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, async () => {
  const vm = (await call('GET', '/vms/web-2')).body;
  const mac = /ringzero\.mac=(\S+)/.exec(vm.definition.cmdline)![1];
  const templateDisk = (await call('GET', '/templates/base')).body.disks[0].path;
  const templateSha = sha(templateDisk);
  assert.equal((await cli(['start', 'web-2'], fx.daemon.socket)).status, 0);
  const steps = [
    'mkdir -p /mnt /seed',
    'mount -t ext4 /dev/vda /mnt',
    'echo "TPL:$(cat /mnt/hello.txt)"',
    'echo written-by-web-2 > /mnt/mine.txt; sync',
    'mount -t ext4 -o ro /dev/vdb /seed',
    'echo "SEED:$(grep local-hostname /seed/meta-data)"',
    'echo "CMD:$(cat /proc/cmdline)"',
    'umount /mnt; umount /seed; poweroff -f',
  ];
  let step = -1;
  let seen = 0;
  const viewer = await cli(['console', 'web-2'], fx.daemon.socket, [], BOOT_TIMEOUT_MS, (all, child) => {
    const prompts = all.split(GUEST_PROMPT).length - 1;
    if (prompts > seen && step + 1 < steps.length) {
      seen = prompts;
      step++;
      child.stdin!.write(`${steps[step]}\n`);
    }
  });
  const text = viewer.stdout.replace(/\r/g, '');
  assert.match(text, /\nTPL:hello from the template\n/, text.slice(-3000));
  assert.match(text, /\nSEED:local-hostname: web-2\n/, text.slice(-3000));
  assert.match(text, new RegExp(`\\nCMD:.*ringzero\\.hostname=web-2 ringzero\\.mac=${mac}`), text.slice(-3000));
  await waitFor('shut off', async () => (await call('GET', '/vms/web-2')).body.state === 'shut off', 30_000);

  const overlay = path.join(volumesDir, 'web-2-disk0.qcow2');
  assert.equal(sha(templateDisk), templateSha, 'the guest\'s writes went to the overlay, not the template');
  if (haveQemuImg) {
    const check = spawnSync('qemu-img', ['check', overlay], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    if (haveDebugfs) {
      const raw = path.join(dir, 'web-2.raw');
      assert.equal(spawnSync('qemu-img', ['convert', '-O', 'raw', overlay, raw]).status, 0);
      assert.equal(spawnSync('debugfs', ['-R', 'cat /mine.txt', raw], { encoding: 'utf8' }).stdout, 'written-by-web-2\n');
      assert.equal(spawnSync('debugfs', ['-R', 'cat /hello.txt', raw], { encoding: 'utf8' }).stdout, 'hello from the template\n');
    }
  }
  // The other clones never saw it.
  if (haveDebugfs && haveQemuImg) {
    const raw = path.join(dir, 'web-1.raw');
    spawnSync('qemu-img', ['convert', '-O', 'raw', path.join(volumesDir, 'web-1-disk0.qcow2'), raw]);
    assert.doesNotMatch(spawnSync('debugfs', ['-R', 'ls /', raw], { encoding: 'utf8' }).stdout, /mine\.txt/);
  }
});
