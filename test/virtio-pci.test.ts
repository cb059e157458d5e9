// The virtio modern PCI transport driven as Linux's virtio_pci_modern drives it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestBench, BAR0_ADDR, BAR2_ADDR } from './support/virtio-driver.ts';
import { VirtioRng } from '../src/devices/virtio/rng.ts';
import { VirtioConsole } from '../src/devices/virtio/console.ts';
import { VIRTIO_MSI_NO_VECTOR } from '../src/devices/virtio/pci.ts';
import { pciIntxGsi as hostIntxGsi } from '../src/devices/pci/host.ts';
import { pciIntxGsi as platformIntxGsi } from '../src/boot/platform.ts';
import type { ConsoleIo } from '../src/vmm/config.ts';

const nullConsole: ConsoleIo = { write() {}, onInput: () => () => {} };
const VERSION_1 = 1n << 32n, INDIRECT = 1n << 28n, EVENT_IDX = 1n << 29n;

test('identity: vendor 0x1AF4, device 0x1040 + type, revision 1, INTA, capabilities in a memory BAR', () => {
  const b = new TestBench(new VirtioRng());
  try {
    assert.equal(b.cfgRead(0, 2), 0x1af4);
    assert.equal(b.cfgRead(2, 2), 0x1044);
    assert.equal(b.cfgRead(8, 1), 1);
    assert.ok(b.cfgRead(0x2e, 2) >= 0x40, 'subsystem ID marks a non-transitional device');
    assert.equal(b.cfgRead(0x3d, 1), 1);
    assert.ok(b.cfgRead(6, 2) & 0x10, 'capability list');
    assert.equal(b.caps.common, BAR0_ADDR);
    assert.ok(b.caps.notify > BAR0_ADDR && b.caps.isr > BAR0_ADDR);
    assert.equal(b.caps.device, undefined, 'rng has no device configuration');
    assert.ok(b.caps.pciCfg !== undefined && b.caps.msix !== undefined);
    // BAR sizing reads back the size mask.
    b.cfgWrite(0x10, 4, 0xffffffff);
    assert.equal(b.cfgRead(0x10, 4), (~(0x4000 - 1)) >>> 0);
    b.cfgWrite(0x10, 4, BAR0_ADDR);
    // MSI-X: table size = queues + 1, table and PBA in BAR 2.
    assert.equal((b.cfgRead(b.caps.msix + 2, 2) & 0x7ff) + 1, 2);
    assert.equal(b.cfgRead(b.caps.msix + 4, 4), 0x000 | 2);
    assert.equal(b.cfgRead(b.caps.msix + 8, 4), 0x800 | 2);
  } finally { b.close(); }
});

test('INTx routing: the GSI a device asserts is the one the DSDT _PRT announces (platform.ts pciIntxGsi)', () => {
  for (let slot = 0; slot < 32; slot++) {
    for (let pin = 1; pin <= 4; pin++) assert.equal(hostIntxGsi(slot, pin), platformIntxGsi(slot, pin - 1), `slot ${slot} INT${'ABCD'[pin - 1]}#`);
  }
  for (const slot of [1, 5, 9, 31]) {
    const b = new TestBench(new VirtioRng(), slot);
    try {
      const gsi = platformIntxGsi(slot, 0);
      assert.equal(b.cfgRead(0x3c, 1), gsi, 'Interrupt Line');
      b.bringUp();
      b.fn.configChanged();
      assert.equal(b.irqs.levels.get(gsi), true, `slot ${slot} asserts GSI ${gsi}`);
    } finally { b.close(); }
  }
});

test('feature negotiation: VERSION_1 required, only offered bits accepted, FEATURES_OK handshake', () => {
  const b = new TestBench(new VirtioRng());
  try {
    const offered = b.deviceFeatures();
    assert.ok(offered & VERSION_1 && offered & INDIRECT && offered & EVENT_IDX);
    assert.equal(b.negotiate(offered & ~VERSION_1) & 8, 0, 'refused without VERSION_1');
    assert.equal(b.negotiate(offered | (1n << 40n)) & 8, 0, 'refused with an unoffered bit');
    assert.equal(b.negotiate(VERSION_1) & 8, 8, 'accepted: VERSION_1 alone');
    // Features are frozen after FEATURES_OK.
    b.writeDriverFeatures(VERSION_1 | INDIRECT);
    b.w(0x08, 4, 0);
    assert.equal(b.r(0x0c, 4), 0);
    // DRIVER_OK without FEATURES_OK is not taken.
    b.status = 0; b.status = 1 | 2 | 4;
    assert.equal(b.status & 4, 0);
  } finally { b.close(); }
});

test('queue registers: size, addresses (64-bit in two halves), notify offsets, select beyond num_queues', () => {
  const b = new TestBench(new VirtioConsole(nullConsole, { input: false }));
  try {
    b.negotiate();
    assert.equal(b.r(0x12, 2), 2, 'num_queues');
    b.w(0x16, 2, 1);
    assert.equal(b.r(0x18, 2), 64);
    assert.equal(b.r(0x1e, 2), 1, 'queue_notify_off');
    b.w(0x20, 4, 0x12345000); b.w(0x24, 4, 0x1);
    assert.equal(b.r(0x20, 4), 0x12345000);
    assert.equal(b.r(0x24, 4), 1);
    b.w(0x16, 2, 7);
    assert.equal(b.r(0x18, 2), 0, 'no queue 7: size 0');
    b.w(0x1c, 2, 1); // enabling a queue that does not exist does nothing
    assert.equal(b.status & 0x40, 0);
  } finally { b.close(); }
});

test('reset: writing 0 to device_status clears status, features, queues and vectors (§4.1.4.3.1)', () => {
  const b = new TestBench(new VirtioRng());
  try {
    b.bringUp({ msix: true });
    assert.equal(b.status, 15);
    b.w(0x16, 2, 0);
    assert.equal(b.r(0x1c, 2), 1);
    b.status = 0;
    assert.equal(b.status, 0);
    assert.equal(b.r(0x1c, 2), 0, 'queue disabled');
    assert.equal(b.r(0x1a, 2), VIRTIO_MSI_NO_VECTOR);
    assert.equal(b.r(0x10, 2), VIRTIO_MSI_NO_VECTOR);
    assert.equal(b.r(0x20, 4), 0);
    b.w(0x08, 4, 1);
    assert.equal(b.r(0x0c, 4), 0, 'driver features cleared');
    // And it comes up again.
    b.bringUp();
    assert.equal(b.status, 15);
  } finally { b.close(); }
});

test('INTx fallback: queue interrupt sets ISR bit 0, reading ISR clears it and lowers the line', () => {
  const b = new TestBench(new VirtioRng());
  try {
    b.bringUp();
    const buf = b.alloc(64);
    b.addChain(0, [[buf, 64, true]]);
    assert.deepEqual(b.used(0), [{ id: 0, len: 64 }]);
    assert.equal(b.intxLevel(), true);
    assert.equal(b.readIsr(), 1);
    assert.equal(b.intxLevel(), false);
    assert.equal(b.readIsr(), 0);
    // Config change: ISR bit 1.
    b.fn.configChanged();
    assert.equal(b.readIsr(), 2);
    // COMMAND.InterruptDisable gates the line.
    b.cfgWrite(0x04, 2, 0x6 | 0x400);
    b.fn.configChanged();
    assert.equal(b.intxLevel(), false);
  } finally { b.close(); }
});

test('MSI-X: per-queue and config vectors, vector masking sets the PBA bit and unmasking delivers', () => {
  const b = new TestBench(new VirtioRng());
  try {
    b.bringUp({ msix: true, features: VERSION_1 }); // no EVENT_IDX: every completion may interrupt
    assert.equal(b.r(0x10, 2), 0);
    b.w(0x16, 2, 0);
    assert.equal(b.r(0x1a, 2), 1);
    const buf = b.alloc(32);
    b.addChain(0, [[buf, 32, true]]);
    assert.deepEqual(b.irqs.msis, [{ address: 0xfee00000, data: 0x41 }]);
    assert.equal(b.intxLevel(), false, 'no INTx while MSI-X is on');
    b.fn.configChanged();
    assert.deepEqual(b.irqs.msis[1], { address: 0xfee00000, data: 0x40 });
    // Mask vector 1: the message is held as pending.
    b.mmio.write(BAR2_ADDR + 16 + 12, 4, 1);
    b.irqs.msis = [];
    b.addChain(0, [[buf, 32, true]]);
    assert.equal(b.irqs.msis.length, 0);
    assert.equal(b.mmio.read(BAR2_ADDR + 0x800, 4), 0b10);
    b.mmio.write(BAR2_ADDR + 16 + 12, 4, 0);
    assert.deepEqual(b.irqs.msis, [{ address: 0xfee00000, data: 0x41 }]);
    assert.equal(b.mmio.read(BAR2_ADDR + 0x800, 4), 0);
    // Function mask holds everything.
    const ctl = b.caps.msix + 2;
    b.cfgWrite(ctl, 2, 0x8000 | 0x4000);
    b.irqs.msis = [];
    b.addChain(0, [[buf, 32, true]]);
    assert.equal(b.irqs.msis.length, 0);
    b.cfgWrite(ctl, 2, 0x8000);
    assert.equal(b.irqs.msis.length, 1);
    // Bus mastering off: no message leaves the device.
    b.cfgWrite(0x04, 2, 0x2);
    b.irqs.msis = [];
    b.addChain(0, [[buf, 32, true]]);
    assert.equal(b.irqs.msis.length, 0);
    // A vector number past the table reads back as NO_VECTOR.
    b.w(0x10, 2, 9);
    assert.equal(b.r(0x10, 2), VIRTIO_MSI_NO_VECTOR);
  } finally { b.close(); }
});

test('VIRTIO_PCI_CAP_PCI_CFG window reaches the common configuration', () => {
  const b = new TestBench(new VirtioRng());
  try {
    const c = b.caps.pciCfg;
    b.cfgWrite(c + 4, 1, 0); // BAR 0
    b.cfgWrite(c + 8, 4, 0x12); // num_queues
    b.cfgWrite(c + 12, 4, 2);
    assert.equal(b.cfgRead(c + 16, 4) & 0xffff, 1);
    // A write through the window: device_status = ACKNOWLEDGE.
    b.cfgWrite(c + 8, 4, 0x14);
    b.cfgWrite(c + 12, 4, 1);
    b.cfgWrite(c + 16, 4, 1);
    assert.equal(b.status, 1);
  } finally { b.close(); }
});

test('EVENT_IDX: interrupts only when used.idx passes used_event; avail_event tracks consumption', () => {
  const b = new TestBench(new VirtioRng());
  try {
    b.bringUp({ msix: true });
    const { avail, used, size } = b.queues[0].layout;
    const buf = b.alloc(16);
    // used_event = 2: the driver wants to hear when the third buffer is used.
    b.u16(avail + 4 + 2 * size, 2);
    b.addChain(0, [[buf, 16, true]]);
    b.addChain(0, [[buf, 16, true]]);
    assert.equal(b.irqs.msis.length, 1, 'the first completion after enabling always signals');
    b.addChain(0, [[buf, 16, true]]);
    assert.equal(b.irqs.msis.length, 2, 'used.idx 3 passed used_event 2');
    assert.equal(b.mem.lowView.getUint16(used + 4 + 8 * size, true), 3, 'avail_event = next index the device will read');
    // Without EVENT_IDX, NO_INTERRUPT in avail.flags suppresses.
    b.bringUp({ msix: true, features: VERSION_1 });
    b.irqs.msis = [];
    b.u16(b.queues[0].layout.avail, 1);
    b.addChain(0, [[buf, 16, true]]);
    assert.equal(b.irqs.msis.length, 0);
    b.u16(b.queues[0].layout.avail, 0);
    b.addChain(0, [[buf, 16, true]]);
    assert.equal(b.irqs.msis.length, 1);
  } finally { b.close(); }
});

test('buffers made available before DRIVER_OK are consumed at DRIVER_OK, not before', () => {
  const b = new TestBench(new VirtioRng());
  try {
    b.negotiate();
    b.setupQueue(0);
    const buf = b.alloc(8);
    b.addChain(0, [[buf, 8, true]]);
    assert.deepEqual(b.used(0), []);
    b.driverOk();
    assert.deepEqual(b.used(0), [{ id: 0, len: 8 }]);
  } finally { b.close(); }
});
