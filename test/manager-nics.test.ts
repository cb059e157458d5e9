// NICs and disk formats in VM definitions, through a real daemon and the real CLI:
// - `nics: [{tap, mac?}]` validated (TAP name, MAC format, multicast and zero MACs, a TAP or MAC twice, too many
//   cards, a MAC another VM has), each refusal with its code and nothing written; a default MAC derived from the VM
//   name and stored (the same again after undefine + define); `ringzero info` shows the cards; the VMM gets
//   `--net tap=..,mac=..`; a TAP a running VM has is refused to a second VM (conflict); clones of a template with a
//   card get their own TAP and MAC, and the first card's MAC is the one on their command line and in their seed.
// - A real guest (RINGZERO_SKIP_BOOT_TEST=1 skips it locally; needs root for the TAP): eth0 has the definition's
//   MAC; a qcow2 file defined with format raw is seen raw (its file size), the same file probed is seen as qcow2 (its
//   virtual size); a qcow2 magic written to sector 0 is refused on a probed raw disk and lands on one with format raw.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { createQcow2 } from '../src/storage/qcow2.ts';
import { defaultMac } from '../src/manager/nics.ts';
import { cli, daemonFixture, guestConsole, guestKernel, snapshot, waitFor } from './support/manager-harness.ts';

const image = findDefaultImage();
const BOOT_TIMEOUT_MS = Number(process.env.RINGZERO_BOOT_TIMEOUT_MS ?? 600_000);
const isRoot = process.getuid?.() === 0 && fs.existsSync('/dev/net/tun');
const haveMkfs = spawnSync('mkfs.ext4', ['-V'], { stdio: 'ignore' }).status === 0;
const haveDebugfs = spawnSync('debugfs', ['-V'], { stdio: 'ignore' }).status === 0;

/** TAP names used here: unique to this run, removed at the end whatever happened. */
const tapA = `rzn${process.pid % 100000}a`;
const tapB = `rzn${process.pid % 100000}b`;
const fx = daemonFixture('nics', { cleanup: () => { for (const tap of [tapA, tapB]) spawnSync('ip', ['link', 'del', tap], { stdio: 'ignore' }); } });
const { dir, stateDir } = fx;
const idleKernel = guestKernel(dir, 'idle');

const call = fx.call;

test('nics: bad cards are refused with a code and nothing is written; the default MAC is derived and stored', async () => {
  const before = snapshot(stateDir);
  const refused: Array<[unknown, string, RegExp]> = [
    [[{ tap: 'bad/name' }], 'invalid', /tap/],
    [[{ tap: 'a-name-longer-than15' }], 'invalid', /tap/],
    [[{ tap: '..' }], 'invalid', /tap/],
    [[{ tap: 'ok0', mac: '52:54:00:zz:00:01' }], 'invalid', /mac/],
    [[{ tap: 'ok0', mac: '01:00:5e:00:00:01' }], 'invalid', /multicast/],
    [[{ tap: 'ok0', mac: '00:00:00:00:00:00' }], 'invalid', /all zeros/],
    [[{ tap: 'ok0', mac: '52:54:00:00:00:01' }, { tap: 'ok1', mac: '52:54:00:00:00:01' }], 'invalid', /given twice/],
    [[{ tap: 'ok0' }, { tap: 'ok0' }], 'invalid', /named twice/],
    [[{ tap: 'ok0' }, { tap: 'ok1' }, { tap: 'ok2' }, { tap: 'ok3' }, { tap: 'ok4' }], 'invalid', /4/],
    [[{ tap: 'ok0', speed: 10 }], 'invalid', /unknown field 'speed'/],
  ];
  for (const [nics, code, message] of refused) {
    const r = await call('POST', '/vms', { name: 'n', kernel: idleKernel, memory: 64, nics });
    assert.equal(r.status, 400, JSON.stringify(nics));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.match(r.body.error.message, message);
  }
  assert.deepEqual(snapshot(stateDir), before, 'refused definitions wrote nothing');

  // The default MAC: 52:54:00 and three bytes of a hash of the name and position, stored in the definition.
  const defined = await call('POST', '/vms', { name: 'n1', kernel: idleKernel, memory: 64, nics: [{ tap: tapA }, { tap: tapB, mac: '52:54:00:AB:CD:EF' }] });
  assert.equal(defined.status, 201, JSON.stringify(defined.body));
  const mac0 = defined.body.definition.nics[0].mac;
  assert.equal(mac0, defaultMac('n1', 0));
  assert.match(mac0, /^52:54:00(:[0-9a-f]{2}){3}$/);
  assert.equal(defined.body.definition.nics[1].mac, '52:54:00:ab:cd:ef', 'lower-cased');
  const stored = JSON.parse(fs.readFileSync(path.join(stateDir, 'vms', 'n1.json'), 'utf8'));
  assert.deepEqual(stored.nics, [{ tap: tapA, mac: mac0 }, { tap: tapB, mac: '52:54:00:ab:cd:ef' }], 'the MAC is in the stored definition');
  // Deterministic: undefined and defined again, the same address.
  assert.equal((await call('DELETE', '/vms/n1')).status, 204);
  assert.equal((await call('POST', '/vms', { name: 'n1', kernel: idleKernel, memory: 64, nics: [{ tap: tapA }, { tap: tapB, mac: '52:54:00:ab:cd:ef' }] })).body.definition.nics[0].mac, mac0);
  // A MAC another VM has is a conflict; an edit keeps the VM's own.
  const clash = await call('POST', '/vms', { name: 'n2', kernel: idleKernel, memory: 64, nics: [{ tap: 'other0', mac: mac0 }] });
  assert.equal(clash.status, 409);
  assert.equal(clash.body.error.code, 'conflict');
  assert.match(clash.body.error.message, /VM 'n1'/);
  const edited = await call('PUT', '/vms/n1', { name: 'n1', kernel: idleKernel, memory: 96, nics: [{ tap: tapA, mac: mac0 }, { tap: tapB, mac: '52:54:00:ab:cd:ef' }] });
  assert.equal(edited.status, 200, JSON.stringify(edited.body));

  // `ringzero edit` shows the stored MACs and keeps them.
  const previousEditor = process.env.EDITOR;
  process.env.EDITOR = `sed -i 's/"memory": 96,/"memory": 128,/'`;
  try {
    const r = await cli(['edit', 'n1'], fx.daemon.socket);
    assert.equal(r.status, 0, r.stderr);
  } finally {
    if (previousEditor === undefined) delete process.env.EDITOR; else process.env.EDITOR = previousEditor;
  }
  const afterEdit = (await call('GET', '/vms/n1')).body.definition;
  assert.equal(afterEdit.memory, 128);
  assert.deepEqual(afterEdit.nics, stored.nics);
  const info = await cli(['info', 'n1'], fx.daemon.socket);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, new RegExp(`NICs:\\s+eth0 ${mac0} on TAP ${tapA}, eth1 52:54:00:ab:cd:ef on TAP ${tapB}\\n`));
});

test('a running VM gets --net tap=..,mac=..; its TAP is refused to a second VM; clones get their own TAP and MAC', { skip: !isRoot ? 'needs root and /dev/net/tun (the VMM creates the TAP)' : false }, async () => {
  const n1 = (await call('GET', '/vms/n1')).body;
  const started = await cli(['start', 'n1'], fx.daemon.socket);
  assert.equal(started.status, 0, started.stderr);
  const pid = (await call('GET', '/vms/n1')).body.pid;
  const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const nets = args.flatMap((arg, i) => (arg === '--net' ? [args[i + 1]] : []));
  assert.deepEqual(nets, [`tap=${tapA},mac=${n1.definition.nics[0].mac}`, `tap=${tapB},mac=52:54:00:ab:cd:ef`]);
  await waitFor(`TAP ${tapA}`, () => fs.existsSync(`/sys/class/net/${tapA}`), 10_000);

  assert.equal((await call('POST', '/vms', { name: 'n3', kernel: idleKernel, memory: 64, nics: [{ tap: tapA }] })).status, 201, 'a TAP may be named by two definitions');
  const busy = await cli(['start', 'n3'], fx.daemon.socket);
  assert.equal(busy.status, 1);
  assert.match(busy.stderr, new RegExp(`TAP '${tapA}' is in use by running VM 'n1'.*\\[conflict\\]`));
  assert.equal((await call('GET', '/vms/n3')).body.state, 'shut off');

  assert.equal((await cli(['destroy', 'n1'], fx.daemon.socket)).status, 0);
  // The VMM made the TAP; it goes with the VMM.
  await waitFor(`TAP ${tapA} gone`, () => !fs.existsSync(`/sys/class/net/${tapA}`), 10_000);
  assert.equal((await call('DELETE', '/vms/n3')).status, 204);

  // Clones: a template of n1 (two cards); each clone has its own TAPs and MACs, the first MAC on its command line.
  assert.equal((await call('POST', '/templates', { name: 'tn', from: 'n1' })).status, 201);
  const clones = await call('POST', '/templates/tn/clone', { count: 2, namePrefix: 'c', seed: haveMkfs });
  assert.equal(clones.status, 201, JSON.stringify(clones.body));
  const defs = await Promise.all(['c-1', 'c-2'].map(async (name) => (await call('GET', `/vms/${name}`)).body.definition));
  const allMacs = new Set([...n1.definition.nics, ...defs.flatMap((d) => d.nics)].map((n: { mac: string }) => n.mac));
  assert.equal(allMacs.size, 6, 'six different MACs: n1\'s two and two for each clone');
  const allTaps = new Set(defs.flatMap((d) => d.nics.map((n: { tap: string }) => n.tap)));
  assert.equal(allTaps.size, 4, 'each clone card on its own TAP');
  for (const [i, d] of defs.entries()) {
    assert.equal(clones.body[i].mac, d.nics[0].mac, 'the clone\'s identity is its first card\'s MAC');
    assert.match(d.cmdline, new RegExp(`ringzero\\.mac=${d.nics[0].mac}$`));
    for (const tap of d.nics.map((n: { tap: string }) => n.tap)) assert.ok(tap.length <= 15, tap);
    if (haveMkfs && haveDebugfs) {
      const seed = d.disks.at(-1).path;
      const network = spawnSync('debugfs', ['-R', 'cat /network-config', seed], { encoding: 'utf8' }).stdout;
      assert.match(network, new RegExp(`mac_address: "${d.nics[0].mac}"`));
    }
  }
  // Two clones run at once (different TAPs).
  for (const name of ['c-1', 'c-2']) {
    const r = await cli(['start', name], fx.daemon.socket);
    assert.equal(r.status, 0, r.stderr);
  }
  for (const name of ['c-1', 'c-2']) assert.equal((await cli(['destroy', name], fx.daemon.socket)).status, 0);
});


test('a real guest: eth0 has the definition\'s MAC; format raw vs probed; a qcow2 magic in sector 0', {
  skip: process.env.RINGZERO_SKIP_BOOT_TEST === '1' && process.env.CI !== 'true' ? 'RINGZERO_SKIP_BOOT_TEST=1'
    : !image ? 'no default image: run `bin/ringzero image build`' : !isRoot ? 'needs root and /dev/net/tun' : false,
  timeout: BOOT_TIMEOUT_MS + 300_000,
}, async () => {
  // vda: a qcow2 image with format raw (the guest sees the file's bytes); vdb: the same image probed (its virtual
  // size); vdc: a probed raw disk; vdd: a raw disk with format raw.
  const qcowA = path.join(dir, 'a.qcow2');
  const qcowB = path.join(dir, 'b.qcow2');
  for (const file of [qcowA, qcowB]) createQcow2(file, { size: 32 * 2 ** 20 });
  const rawC = path.join(dir, 'c.img');
  const rawD = path.join(dir, 'd.img');
  for (const file of [rawC, rawD]) fs.writeFileSync(file, Buffer.alloc(2 ** 20));
  const fileSectors = fs.statSync(qcowA).size / 512;
  const r = await call('POST', '/vms', {
    name: 'g', engine: 'soft', memory: 128, nics: [{ tap: tapA }],
    disks: [{ path: qcowA, format: 'raw' }, { path: qcowB }, { path: rawC }, { path: rawD, format: 'raw' }],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const mac = r.body.definition.nics[0].mac;
  const started = await cli(['start', 'g'], fx.daemon.socket, [], 60_000);
  assert.equal(started.status, 0, started.stderr);
  const vm = (await call('GET', '/vms/g')).body;
  const con = await guestConsole(vm.consoleSocket, 120_000);
  try {
    await waitFor('the guest shell', () => con.output().includes(GUEST_PROMPT), BOOT_TIMEOUT_MS);
    assert.equal(await con.lines('cat /sys/class/net/eth0/address', 'MACDONE'), mac);
    assert.equal(await con.lines('cat /sys/block/vda/size /sys/block/vdb/size', 'SIZEDONE'), `${fileSectors}\n${32 * 2048}`);
    // The magic through the page cache: the write-back of sector 0's page fails on the probed disk.
    const write = (dev: string) => `printf 'QFI\\373' > /tmp/m; dd if=/tmp/m of=/dev/${dev} conv=notrunc,fsync 2>/dev/null; echo rc=$?`;
    // (Kernel messages about the failed write may come between the lines: only the rc= line counts.)
    const rc = (text: string) => /^rc=(\d+)$/m.exec(text)?.[1];
    assert.notEqual(rc(await con.lines(write('vdc'), 'WROTEC')), '0', 'refused on the probed raw disk');
    assert.equal(rc(await con.lines(write('vdd'), 'WROTED')), '0', 'written on the raw disk with format raw');
  } finally {
    con.socket.destroy();
    await call('POST', '/vms/g/destroy');
  }
  assert.deepEqual([...fs.readFileSync(rawC).subarray(0, 4)], [0, 0, 0, 0], 'the probed raw disk kept its first sector');
  assert.equal(fs.readFileSync(rawD).readUInt32BE(0), 0x514649fb, 'the raw disk with format raw holds what the guest wrote');
});
