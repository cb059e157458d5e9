// `ringzero run --net tap=NAME[,mac=..] --vsock CID[,path=..] --balloon --control-socket PATH`: parsing, checks
// (one line, status 2 through the real CLI), the VmConfig, the devices attachVirtioDevices plugs in, and the
// control socket steering the balloon (`ringzero balloon`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostInfo } from '../src/cli/host.ts';
import { buildVmConfig, DEFAULT_CMDLINE, type RunOptions } from '../src/cli/run-config.ts';
import { parseNetSpec, parseVsockSpec, UsageError } from '../src/cli/validate.ts';
import { attachVirtioDevices } from '../src/devices/virtio/index.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { MmioBus, PortBus } from '../src/devices/bus.ts';
import { PciHost } from '../src/devices/pci/host.ts';
import { ControlServer, controlRequest } from '../src/vmm/control.ts';
import { VirtioBalloon } from '../src/devices/virtio/balloon.ts';
import { TestBench } from './support/virtio-driver.ts';
import { ringzero } from './support/ringzero-cli.ts';
import type { VmConfig } from '../src/vmm/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'ringzero-netcli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const kernel = join(dir, 'bzImage');
{
  // The smallest bzImage header the loader's checks accept (as in test/virtio-cli.test.ts).
  const image = Buffer.alloc(4096);
  image[0x1f1] = 1; image.writeUInt32LE(0x10, 0x1f4); image.writeUInt16LE(0xaa55, 0x1fe); image[0x201] = 0x6a;
  image.write('HdrS', 0x202, 'latin1'); image.writeUInt16LE(0x020f, 0x206); image[0x211] = 1;
  image.writeUInt32LE(0x200000, 0x230); image[0x234] = 1; image.writeUInt16LE(1, 0x236);
  image.writeBigUInt64LE(0x1000000n, 0x258); image.writeUInt32LE(0x100000, 0x260);
  writeFileSync(kernel, image);
}
const SOFT_HOST: HostInfo = {
  cpuModel: 'x', cpuVendor: 'x', logicalCpus: 2, virtualizationFlag: undefined, underHypervisor: true,
  kvmDevice: 'usable', kvmModules: ['kvm', 'kvm_pvm'],
};
const build = (change: Partial<RunOptions>) => buildVmConfig({ engine: 'soft', kernel, cmdline: DEFAULT_CMDLINE, cpus: '1', memory: '256M', onReboot: 'exit', ...change }, SOFT_HOST, () => {});
const isRoot = process.getuid?.() === 0;

test('--net: TAP name, MAC given or derived from the name (stable, unicast, locally administered)', { skip: !isRoot && 'a TAP that does not exist yet is only accepted for root' }, () => {
  assert.deepEqual(parseNetSpec('tap=rzx0,mac=52:54:00:AB:CD:EF'), { tap: 'rzx0', mac: '52:54:00:ab:cd:ef' });
  const derived = parseNetSpec('tap=rzx0').mac;
  assert.equal(parseNetSpec('tap=rzx0').mac, derived, 'the same TAP gives the same MAC');
  assert.notEqual(parseNetSpec('tap=rzx1').mac, derived);
  assert.equal(parseInt(derived.slice(0, 2), 16) & 3, 2, 'locally administered unicast');
  const config = build({ net: ['tap=rzx0', 'tap=rzx1,mac=02:00:00:00:00:09'], vsock: `7,path=${join(dir, 'v.sock')}`, balloon: true, controlSocket: join(dir, 'c.sock') });
  assert.deepEqual(config.nets?.map((n) => n.tap), ['rzx0', 'rzx1']);
  assert.deepEqual(config.vsock, { cid: 7, path: join(dir, 'v.sock') });
  assert.equal(config.balloon, true);
  assert.equal(config.controlSocket, join(dir, 'c.sock'));
  const plain = build({});
  assert.equal('nets' in plain || 'vsock' in plain || 'balloon' in plain || 'controlSocket' in plain, false, 'a plain VM config is unchanged');
});

test('bad --net, --vsock and --control-socket values are usage errors', () => {
  const bad: [Partial<RunOptions>, RegExp][] = [
    [{ net: ['rz0'] }, /unknown --net option 'rz0'/],
    [{ net: ['tap='] }, /invalid TAP name ''/],
    [{ net: ['tap=a/b'] }, /invalid TAP name/],
    [{ net: ['tap=abcdefghijklmnop'] }, /invalid TAP name/],
    [{ net: ['tap=rz0,mac=52:54:00:12:34'] }, /invalid MAC/],
    [{ net: ['tap=rz0,mac=01:00:5e:00:00:01'] }, /multicast/],
    [{ net: ['tap=rz0,mac=00:00:00:00:00:00'] }, /all zeros/],
    [{ net: ['tap=rz0,speed=10'] }, /unknown --net option 'speed=10'/],
    [{ net: ['tap=rz0,tap=rz1'] }, /tap= is given twice in --net/],
    [{ net: ['tap=rz0,mac=52:54:00:12:34:56,mac=52:54:00:12:34:57'] }, /mac= is given twice in --net/],
    [{ net: ['tap=lo'] }, /'lo' is not a TAP device/],
    [{ vsock: '2' }, /reserved/],
    [{ vsock: '4294967295' }, /reserved/],
    [{ vsock: '-3' }, /invalid --vsock/],
    [{ vsock: '3,port=5' }, /unknown --vsock option/],
    [{ vsock: `3,path=${join(dir, 'x'.repeat(100))}` }, /too long/],
    [{ vsock: '3,path=/no/such/dir/v.sock' }, /does not exist/],
    [{ vsock: `3,path=${kernel}` }, /exists and is not a socket/],
    [{ controlSocket: kernel }, /exists and is not a socket/],
    [{ vsock: `3,path=${join(dir, 's')}`, controlSocket: join(dir, 's') }, /both/],
  ];
  if (isRoot) bad.push([{ net: ['tap=rz0', 'tap=rz0'] }, /given twice/], [{ net: ['tap=rz0,mac=02:00:00:00:00:01', 'tap=rz1,mac=02:00:00:00:00:01'] }, /MAC .* given twice/],
    [{ net: ['tap=a', 'tap=b', 'tap=c', 'tap=d', 'tap=e'] }, /too many --net/]);
  for (const [change, message] of bad) {
    assert.throws(() => build(change), (e: unknown) => e instanceof UsageError && message.test(e.message) && !e.message.includes('\n'), JSON.stringify(change));
  }
  assert.throws(() => parseVsockSpec('abc'), UsageError);
});

test('through the real CLI: one line on stderr and status 2', async () => {
  for (const args of [['--net', 'tap=bad/name'], ['--vsock', '1'], ['--control-socket', kernel]]) {
    const r = await ringzero(['run', '--kernel', kernel, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^ringzero: /);
  }
  const r = await ringzero(['balloon', '--control-socket', join(dir, 'none.sock'), '12x']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /invalid balloon size '12x'/);
});

test('attachVirtioDevices: net (a real TAP when root), vsock and balloon after the other devices; close releases all', { skip: !isRoot && 'needs root for a TAP' }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const pci = new PciHost({ mmioBus: new MmioBus(), portBus: new PortBus(), router: { line: () => ({ set() {}, pulse() {} }) } as never, deliverMsi: () => {} });
  const tap = `rzc${process.pid % 100000}`;
  const config = {
    engine: 'soft', kernel, cmdline: '', cpus: 1, memory: 64 * MiB, onReboot: 'exit', rng: true,
    nets: [{ tap, mac: '02:00:00:00:00:05' }], vsock: { cid: 9, path: join(dir, 'a.sock') }, balloon: true, controlSocket: join(dir, 'ctl.sock'),
  } satisfies VmConfig;
  const devices = attachVirtioDevices({ mem }, pci, config, { write() {}, onInput: () => () => {} });
  try {
    assert.deepEqual(devices.functions.map((f) => f.device.deviceType), [4, 1, 19, 5], 'rng, net, vsock, balloon');
    assert.ok(existsSync(`/sys/class/net/${tap}`), 'the TAP exists while the VM runs');
    await devices.control!.listening();
    assert.equal(statSync(join(dir, 'ctl.sock')).mode & 0o777, 0o600, 'control socket only for its user');
    const answer = await controlRequest(join(dir, 'ctl.sock'), { cmd: 'balloon-set', bytes: 8 * MiB });
    assert.equal(answer.ok, true);
    assert.equal(devices.balloon!.stats().targetPages, 2048);
  } finally {
    devices.close();
    mem.close();
  }
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(existsSync(`/sys/class/net/${tap}`), false, 'the TAP it created is gone with it');
  assert.equal(existsSync(join(dir, 'a.sock')) || existsSync(join(dir, 'ctl.sock')), false, 'sockets removed');
});

test('control socket: JSON lines in order, errors as answers, never a crash', async () => {
  const balloon = new VirtioBalloon(() => {});
  const b = new TestBench(balloon);
  const path = join(dir, 'ctl2.sock');
  const server = new ControlServer(path, { balloon }, () => {});
  try {
    b.bringUp({ msix: true });
    await server.listening();
    assert.deepEqual(await controlRequest(path, { cmd: 'balloon-set', pages: 100 }).then((a) => [a.ok, a.targetPages]), [true, 100]);
    assert.equal(b.mmio.read(b.caps.device, 4), 100, 'the guest sees num_pages');
    const stats = await controlRequest(path, { cmd: 'balloon-stats' });
    assert.equal(stats.ok, true);
    assert.equal(stats.targetPages, 100);
    for (const [request, message] of [
      [{ cmd: 'balloon-set', pages: -1 }, /needs "pages"/], [{ cmd: 'balloon-set', bytes: 4097 }, /needs "pages"/],
      [{ cmd: 'balloon-set', pages: 2 ** 40 }, /needs "pages"/], [{ cmd: 'frobnicate' }, /unknown cmd/], [{}, /unknown cmd/],
      [{ cmd: 'reboot' }, /no machine to reboot/],
    ] as const) {
      const a = await controlRequest(path, request);
      assert.equal(a.ok, false);
      assert.match(String(a.error), message);
    }
    assert.match(String((await server.handle('{not json')).error), /not JSON/);
    assert.match(String((await server.handle('[1]')).error), /unknown cmd/);
    const noBalloon = new ControlServer(join(dir, 'ctl3.sock'), {}, () => {});
    assert.match(String((await noBalloon.handle('{"cmd":"balloon-stats"}')).error), /no balloon/);
    noBalloon.close();
  } finally {
    server.close();
    b.close();
  }
});
