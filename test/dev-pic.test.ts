import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortBus } from '../src/devices/bus.ts';
import { DualPic } from '../src/devices/irq/pic.ts';

/** Linux's init_8259A (arch/x86/kernel/i8259.c): ICW1-4 on both chips, vectors 0x30/0x38, then masks. */
function linuxInit(bus: PortBus, autoEoi = false): void {
  bus.write(0x21, 1, 0xff); bus.write(0xa1, 1, 0xff);
  bus.write(0x20, 1, 0x11); bus.write(0x21, 1, 0x30); bus.write(0x21, 1, 0x04); bus.write(0x21, 1, autoEoi ? 0x03 : 0x01);
  bus.write(0xa0, 1, 0x11); bus.write(0xa1, 1, 0x38); bus.write(0xa1, 1, 0x02); bus.write(0xa1, 1, 0x01);
}

function setup(): { bus: PortBus; pic: DualPic; outputs: boolean[] } {
  const outputs: boolean[] = [];
  const pic = new DualPic((l) => outputs.push(l));
  const bus = new PortBus();
  pic.register(bus);
  return { bus, pic, outputs };
}

test('init sequence sets vector bases and masks', () => {
  const { bus, pic } = setup();
  linuxInit(bus);
  assert.equal(pic.state('master').vectorBase, 0x30);
  assert.equal(pic.state('slave').vectorBase, 0x38);
  assert.equal(bus.read(0x21, 1), 0x00); // ICW1 cleared IMR
  bus.write(0x21, 1, 0xfb); bus.write(0xa1, 1, 0xff);
  assert.equal(bus.read(0x21, 1), 0xfb);
  assert.equal(bus.read(0xa1, 1), 0xff);
});

test('edge request, INTA, priority and non-specific EOI', () => {
  const { bus, pic, outputs } = setup();
  linuxInit(bus);
  pic.setIrq(4, true); pic.setIrq(4, false);
  assert.equal(pic.hasInterrupt(), true);
  assert.deepEqual(outputs, [true]);
  pic.setIrq(1, true); pic.setIrq(1, false);
  // IRQ1 has priority over IRQ4.
  assert.equal(pic.acknowledge(), 0x31);
  // IRQ4 is blocked by IRQ1 in service.
  assert.equal(pic.hasInterrupt(), false);
  bus.write(0x20, 1, 0x0b); // OCW3: read ISR
  assert.equal(bus.read(0x20, 1), 0x02);
  bus.write(0x20, 1, 0x20); // non-specific EOI
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(pic.acknowledge(), 0x34);
  bus.write(0x20, 1, 0x64); // specific EOI IRQ4
  assert.equal(bus.read(0x20, 1), 0); // ISR
  assert.equal(pic.hasInterrupt(), false);
  // A line held high does not re-request without a new edge.
  pic.setIrq(3, true);
  assert.equal(pic.acknowledge(), 0x33);
  bus.write(0x20, 1, 0x20);
  assert.equal(pic.hasInterrupt(), false);
});

test('slave interrupt cascades through IRQ2, EOI to both', () => {
  const { bus, pic } = setup();
  linuxInit(bus);
  pic.setIrq(8, true); // RTC
  assert.equal(pic.hasInterrupt(), true);
  assert.equal(pic.acknowledge(), 0x38);
  bus.write(0xa0, 1, 0x0b);
  assert.equal(bus.read(0xa0, 1), 0x01);
  bus.write(0x20, 1, 0x0b);
  assert.equal(bus.read(0x20, 1), 0x04);
  bus.write(0xa0, 1, 0x20); bus.write(0x20, 1, 0x20);
  assert.equal(bus.read(0x20, 1), 0);
  assert.equal(pic.hasInterrupt(), false);
});

test('masked IRQ stays in IRR and is delivered on unmask', () => {
  const { bus, pic } = setup();
  linuxInit(bus);
  bus.write(0x21, 1, 0x01);
  pic.setIrq(0, true); pic.setIrq(0, false);
  assert.equal(pic.hasInterrupt(), false);
  bus.write(0x20, 1, 0x0a); // read IRR
  assert.equal(bus.read(0x20, 1) & 1, 1);
  bus.write(0x21, 1, 0x00);
  assert.equal(pic.acknowledge(), 0x30);
});

test('spurious IRQ7 when the request vanished before INTA', () => {
  const { bus, pic } = setup();
  linuxInit(bus);
  bus.write(0x4d0, 1, 0x20); // IRQ5 level-triggered
  assert.equal(bus.read(0x4d0, 1), 0x20);
  pic.setIrq(5, true);
  assert.equal(pic.hasInterrupt(), true);
  pic.setIrq(5, false);
  assert.equal(pic.acknowledge(), 0x37);
  bus.write(0x20, 1, 0x0b);
  assert.equal(bus.read(0x20, 1), 0, 'spurious IRQ7 does not set ISR');
});

test('auto-EOI and poll mode', () => {
  const { bus, pic } = setup();
  linuxInit(bus, true);
  pic.setIrq(6, true); pic.setIrq(6, false);
  assert.equal(pic.acknowledge(), 0x36);
  bus.write(0x20, 1, 0x0b);
  assert.equal(bus.read(0x20, 1), 0);
  pic.setIrq(3, true); pic.setIrq(3, false);
  bus.write(0x20, 1, 0x0c); // OCW3 poll
  assert.equal(bus.read(0x20, 1), 0x83);
  assert.equal(pic.hasInterrupt(), false);
});

test('ELCR only accepts legal bits', () => {
  const { bus } = setup();
  bus.write(0x4d0, 1, 0xff); bus.write(0x4d1, 1, 0xff);
  assert.equal(bus.read(0x4d0, 1), 0xf8);
  assert.equal(bus.read(0x4d1, 1), 0xde);
});
