// virtio-rng and virtio-console behaviour, and the devices a VmConfig asks for (attachVirtioDevices).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestBench } from './support/virtio-driver.ts';
import { VirtioRng } from '../src/devices/virtio/rng.ts';
import { VirtioConsole, CONSOLE_INPUT_LIMIT } from '../src/devices/virtio/console.ts';
import { attachVirtioDevices } from '../src/devices/virtio/index.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { MmioBus, PortBus } from '../src/devices/bus.ts';
import { PciHost } from '../src/devices/pci/host.ts';
import type { ConsoleIo, VmConfig } from '../src/vmm/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'ringzero-vdev-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function fakeConsole() {
  const out: number[] = [];
  let receiver: ((d: Uint8Array) => void) | undefined;
  const io: ConsoleIo = {
    write: (d) => out.push(...d),
    onInput: (r) => { receiver = r; return () => { receiver = undefined; }; },
  };
  return { io, out, type: (s: string) => receiver?.(Buffer.from(s, 'latin1')), hasReceiver: () => receiver !== undefined };
}

test('virtio-rng fills every writable buffer of a chain with random bytes', () => {
  const b = new TestBench(new VirtioRng());
  try {
    b.bringUp({ msix: true });
    const x = b.alloc(4096), y = b.alloc(100000);
    b.addChain(0, [[x, 4096, true], [y, 100000, true]]);
    assert.deepEqual(b.used(0), [{ id: 0, len: 104096 }]);
    const bytes = b.mem.read(x, 4096);
    // 4096 random bytes: all 256 values show up with overwhelming probability, and no long zero runs.
    assert.ok(new Set(bytes).size > 200);
    assert.ok(b.mem.read(y + 99000, 1000).some((v) => v !== 0), 'past the 64 KiB getRandomValues chunk');
    b.addChain(0, [[x, 4096, true]]);
    assert.notDeepEqual(b.mem.read(x, 4096), bytes, 'fresh bytes each time');
  } finally { b.close(); }
});

test('virtio-console: transmit goes to the console; input waits for receive buffers, then fills them', () => {
  const c = fakeConsole();
  const b = new TestBench(new VirtioConsole(c.io, { input: true }));
  try {
    b.bringUp({ msix: true });
    assert.ok(b.deviceFeatures() & (1n << 2n), 'EMERG_WRITE offered');
    const t = b.alloc(64);
    b.mem.write(t, Buffer.from('hello hvc0\n'));
    b.addChain(1, [[t, 11, false]]);
    assert.equal(Buffer.from(c.out).toString(), 'hello hvc0\n');
    assert.deepEqual(b.used(1), [{ id: 0, len: 0 }]);

    // Input before any receive buffer is kept.
    c.type('ls -l\n');
    const r1 = b.alloc(4), r2 = b.alloc(64);
    b.addChain(0, [[r1, 4, true]], false);
    b.addChain(0, [[r2, 64, true]], true);
    // Delivery is deferred to the event loop (the device may be in the middle of a vCPU exit).
    return new Promise<void>((resolve) => setImmediate(() => {
      assert.deepEqual(b.used(0), [{ id: 0, len: 4 }, { id: 1, len: 2 }]);
      assert.equal(Buffer.from(b.mem.read(r1, 4)).toString(), 'ls -');
      assert.equal(Buffer.from(b.mem.read(r2, 2)).toString(), 'l\n');
      // Emergency write through the configuration space.
      b.mmio.write(b.caps.device + 8, 4, 0x21);
      assert.equal(c.out[c.out.length - 1], 0x21);
      b.close();
      assert.equal(c.hasReceiver(), false, 'closing stops taking input');
      resolve();
    }));
  } catch (e) { b.close(); throw e; }
});

test('virtio-console input is bounded while the guest posts no buffers', () => {
  const c = fakeConsole();
  const b = new TestBench(new VirtioConsole(c.io, { input: true }));
  try {
    b.bringUp();
    for (let i = 0; i < 100; i++) c.type('x'.repeat(4096));
    const dev = b.fn.device as unknown as { pendingBytes: number };
    assert.equal(dev.pendingBytes, CONSOLE_INPUT_LIMIT);
  } finally { b.close(); }
});

test('attachVirtioDevices: disks first in slot order, then rng, then console; close releases them', () => {
  const mem = new GuestMemory(64 * MiB);
  const mmio = new MmioBus(), ports = new PortBus();
  const pci = new PciHost({ mmioBus: mmio, portBus: ports });
  const a = join(dir, 'a.img'), bPath = join(dir, 'b.img');
  writeFileSync(a, Buffer.alloc(4096));
  writeFileSync(bPath, Buffer.alloc(8192));
  const c = fakeConsole();
  const config = {
    engine: 'soft', kernel: '', cmdline: '', cpus: 1, memory: 64 * MiB, onReboot: 'exit',
    disks: [{ path: a, readonly: false }, { path: bPath, readonly: true, serial: 'B' }], rng: true, virtioConsole: true,
  } satisfies VmConfig;
  const v = attachVirtioDevices({ mem }, pci, config, c.io);
  try {
    const ids = [1, 2, 3, 4, 5].map((slot) => pci.configRead(0, slot, 0, 0, 4));
    assert.deepEqual(ids, [0x10421af4, 0x10421af4, 0x10441af4, 0x10431af4, 0xffffffff]);
    assert.ok(c.hasReceiver());
  } finally {
    v.close();
    mem.close();
  }
  assert.equal(c.hasReceiver(), false);
  // A missing image is an error at attach time, and nothing stays open.
  assert.throws(() => attachVirtioDevices({ mem }, new PciHost({ mmioBus: new MmioBus(), portBus: new PortBus() }), { ...config, disks: [{ path: a, readonly: false }, { path: join(dir, 'nope.img'), readonly: false }] }, c.io), /ENOENT/);
});
