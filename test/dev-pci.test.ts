import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MmioBus, PortBus, type MmioDevice, type PortDevice } from '../src/devices/bus.ts';
import { PciHost, PCI_ECAM_BASE, pciIntxGsi } from '../src/devices/pci/host.ts';
import { PciFunction } from '../src/devices/pci/device.ts';
import { IrqRouter } from '../src/devices/irq/router.ts';

function setup() {
  const mmio = new MmioBus();
  const ports = new PortBus();
  const levels = new Map<number, boolean>();
  const router = { line: (gsi: number) => ({ set: (h: boolean) => levels.set(gsi, h), pulse: () => {} }) } as unknown as IrqRouter;
  const msis: [number, number][] = [];
  let resets = 0;
  const host = new PciHost({ mmioBus: mmio, portBus: ports, router, deliverMsi: (a, d) => msis.push([a, d]), onReset: () => resets++ });
  host.register(ports, mmio);
  const cfg = (slot: number, fn: number, reg: number): number => ((0x80000000 | (slot << 11) | (fn << 8) | reg) >>> 0);
  const read = (slot: number, fn: number, reg: number, size: 1 | 2 | 4 = 4): number => {
    ports.write(0xcf8, 4, cfg(slot, fn, reg & ~3));
    return ports.read(0xcfc + (reg & 3), size);
  };
  const write = (slot: number, fn: number, reg: number, value: number, size: 1 | 2 | 4 = 4): void => {
    ports.write(0xcf8, 4, cfg(slot, fn, reg & ~3));
    ports.write(0xcfc + (reg & 3), size, value);
  };
  return { mmio, ports, host, read, write, levels, msis, resets: () => resets };
}

class TestDevice extends PciFunction {
  readonly regs: MmioDevice = { mmioRead: (o) => 0x1000 + o, mmioWrite: () => {} };
  readonly io: PortDevice = { ioRead: (p) => p & 0xff, ioWrite: () => {} };
  mapped: (number | undefined)[] = [];
  constructor() {
    super({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000, revision: 1, interruptPin: 1, subsystemVendorId: 0x1af4, subsystemId: 1 });
    this.addBar(0, { kind: 'io', size: 0x20, device: this.io });
    this.addBar(1, { kind: 'memory32', size: 0x1000, device: this.regs, onMapped: (b) => this.mapped.push(b) });
    this.addBar(4, { kind: 'memory64', size: 0x4000, prefetchable: true });
    this.addCapability(0x09, [0x10, 0x01, 0x02, 0x03]);
    this.addCapability(0x11, [0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]);
  }
  raise(level: boolean): void { this.setIntx(level); }
  msi(): void { this.sendMsi(0xfee00000, 0x41); }
}

test('mechanism #1: Linux pci_check_type1 and the host bridge', () => {
  const { ports, read } = setup();
  ports.write(0xcfb, 1, 0x01);
  const tmp = ports.read(0xcf8, 4);
  ports.write(0xcf8, 4, 0x80000000);
  assert.equal(ports.read(0xcf8, 4), 0x80000000);
  ports.write(0xcf8, 4, tmp);
  assert.equal(read(0, 0, 0x0a, 2), 0x0600, 'class: host bridge');
  assert.equal(read(0, 0, 0), 0x00081b36);
  assert.equal(read(3, 0, 0), 0xffffffff, 'absent device');
  assert.equal(read(3, 0, 0, 2), 0xffff);
  // Disabled address register: all ones.
  ports.write(0xcf8, 4, 0);
  assert.equal(ports.read(0xcfc, 4), 0xffffffff);
});

test('ECAM and mechanism #1 see the same config space; byte and word access at any offset', () => {
  const { host, mmio, read, write } = setup();
  const dev = new TestDevice();
  host.addDevice(dev, 2);
  const ecam = (slot: number, reg: number): number => PCI_ECAM_BASE + (slot << 15) + reg;
  assert.equal(mmio.read(ecam(2, 0), 4), 0x10411af4);
  assert.equal(mmio.read(ecam(2, 2), 2), 0x1041);
  assert.equal(read(2, 0, 0x0b, 1), 0x02);
  assert.equal(read(2, 0, 0x09, 1), 0x00);
  write(2, 0, 0x3c, 0x0b, 1);
  assert.equal(mmio.read(ecam(2, 0x3c), 1), 0x0b);
  assert.equal(read(2, 0, 0x3d, 1), 1, 'INTA');
  assert.equal(mmio.read(ecam(2, 0x100), 4), 0xffffffff, 'beyond a 256-byte config space');
  assert.equal(mmio.read(PCI_ECAM_BASE + (1 << 20), 4), 0xffffffff, 'bus 1 is empty');
  // Read-only IDs.
  write(2, 0, 0, 0x12345678);
  assert.equal(read(2, 0, 0), 0x10411af4);
});

test('BAR sizing, placement and mapping follow COMMAND', () => {
  const { host, mmio, ports, read, write } = setup();
  const dev = new TestDevice();
  host.addDevice(dev, 2);
  const size = (reg: number): number => { const o = read(2, 0, reg); write(2, 0, reg, 0xffffffff); const s = read(2, 0, reg); write(2, 0, reg, o); return s; };
  assert.equal(size(0x10), 0xffffffe1, 'I/O BAR of 32 bytes');
  assert.equal(size(0x14), 0xfffff000, 'memory BAR of 4 KiB');
  assert.equal(size(0x20), 0xffffc00c, '64-bit prefetchable of 16 KiB');
  assert.equal(size(0x24), 0xffffffff, 'upper half');
  assert.equal(size(0x18), 0, 'unimplemented BAR');
  assert.equal(size(0x30), 0, 'no expansion ROM');
  write(2, 0, 0x10, 0xc040);
  write(2, 0, 0x14, 0xfebf1000);
  assert.equal(mmio.read(0xfebf1004, 4), 0xffffffff, 'not decoded before COMMAND.MEM');
  write(2, 0, 0x04, 0x0003, 2);
  assert.equal(mmio.read(0xfebf1004, 4), 0x1004);
  assert.equal(ports.read(0xc045, 1), 0x45);
  assert.deepEqual(dev.mapped, [0xfebf1000]);
  write(2, 0, 0x14, 0xfebf2000); // move while decoding
  assert.equal(mmio.read(0xfebf1004, 4), 0xffffffff);
  assert.equal(mmio.read(0xfebf2008, 4), 0x1008);
  write(2, 0, 0x04, 0x0001, 2); // memory decode off
  assert.equal(mmio.read(0xfebf2008, 4), 0xffffffff);
  assert.deepEqual(dev.mapped, [0xfebf1000, 0xfebf2000, undefined]);
  write(2, 0, 0x20, 0x0000000c); write(2, 0, 0x24, 0x1);
  assert.equal(dev.barAddress(4), 0x100000000);
});

test('capability list, status bit, INTx through the router with INTx disable, MSI needs bus mastering', () => {
  const { host, read, write, levels, msis } = setup();
  const dev = new TestDevice();
  host.addDevice(dev, 5);
  assert.equal(read(5, 0, 0x06, 2) & 0x10, 0x10);
  const first = read(5, 0, 0x34, 1);
  assert.equal(first, 0x40);
  assert.equal(read(5, 0, first, 1), 0x09);
  const second = read(5, 0, first + 1, 1);
  assert.equal(second, 0x48);
  assert.equal(read(5, 0, second, 1), 0x11);
  assert.equal(read(5, 0, second + 1, 1), 0);
  const gsi = pciIntxGsi(5, 1);
  assert.equal(read(5, 0, 0x3c, 1), gsi, 'interrupt line preset to the GSI');
  dev.raise(true);
  assert.equal(levels.get(gsi), true);
  assert.equal(read(5, 0, 0x06, 2) & 0x08, 0x08);
  write(5, 0, 0x04, 0x0400, 2);
  assert.equal(levels.get(gsi), false, 'INTx disable masks the line');
  write(5, 0, 0x04, 0x0000, 2);
  assert.equal(levels.get(gsi), true);
  dev.raise(false);
  assert.equal(levels.get(gsi), false);
  dev.msi();
  assert.equal(msis.length, 0);
  write(5, 0, 0x04, 0x0004, 2);
  dev.msi();
  assert.deepEqual(msis, [[0xfee00000, 0x41]]);
});

test('multi-function bit and the 0xCF9 reset control', () => {
  const { host, ports, read, resets } = setup();
  host.addDevice(new TestDevice(), 6, 0);
  assert.equal(read(6, 0, 0x0e, 1), 0x00);
  host.addDevice(new TestDevice(), 6, 1);
  assert.equal(read(6, 0, 0x0e, 1), 0x80);
  assert.equal(read(6, 0, 0x0c) >>> 16 & 0xff, 0x80);
  assert.throws(() => host.addDevice(new TestDevice(), 6, 1));
  ports.write(0xcf9, 1, 0x02);
  assert.equal(resets(), 0);
  ports.write(0xcf9, 1, 0x06);
  assert.equal(resets(), 1);
});
