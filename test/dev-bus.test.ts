// The port and MMIO buses' per-device access counts (Machine.stats exits.byDevice; bench/io tells the serial
// console's port I/O apart with them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortBus, MmioBus, type PortDevice, type MmioDevice } from '../src/devices/bus.ts';

test('PortBus and MmioBus count accesses per registered name; unclaimed ones only in the total', () => {
  const ports = new PortBus();
  const seen: number[] = [];
  const dev: PortDevice = { ioRead: (p) => p & 0xff, ioWrite: (p) => { seen.push(p); } };
  ports.register(0x3f8, 8, dev, 'serial@0x3f8');
  ports.register(0x40, 4, dev, 'pit');
  ports.register(0x61, 1, dev, 'pit');
  for (let i = 0; i < 5; i++) ports.write(0x3f8 + i, 1, 0x41);
  assert.equal(ports.read(0x3fd, 1), 0xfd);
  ports.read(0x43, 1);
  ports.write(0x61, 1, 0);
  assert.equal(ports.read(0x80, 1), 0xff, 'unclaimed port reads all ones');
  ports.write(0x80, 1, 0);
  assert.deepEqual(ports.accessesByDevice(), { 'serial@0x3f8': 6, pit: 2 });
  assert.equal(ports.accesses, 10);
  assert.deepEqual(seen, [0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x61]);

  const mmio = new MmioBus();
  const m: MmioDevice = { mmioRead: (o) => o, mmioWrite: () => {} };
  mmio.register(0xfec00000, 0x1000, m, 'ioapic');
  mmio.register(0xe0000000, 0x1000, m, 'pci-ecam');
  mmio.write(0xfec00000, 4, 1);
  assert.equal(mmio.read(0xfec00010, 4), 0x10);
  mmio.read(0xe0000004, 4);
  assert.equal(mmio.read(0x10000000, 4), 0xffffffff);
  assert.deepEqual(mmio.accessesByDevice(), { ioapic: 2, 'pci-ecam': 1 });
  assert.equal(mmio.accesses, 4);
});
