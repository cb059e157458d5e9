import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VmClock } from '../src/vmm/clock.ts';
import { MmioBus, PortBus } from '../src/devices/bus.ts';
import { createInterruptControllers, Lapic, IOAPIC_BASE } from '../src/devices/irq/index.ts';
import { Pit, PIT_HZ } from '../src/devices/pit.ts';
import { Serial16550 } from '../src/devices/serial.ts';

class FakeClock extends VmClock {
  t = 0;
  override now(): number { return this.t; }
  advance(ns: number): number { this.t += ns; return this.runDue(); }
}

function machine() {
  const clock = new FakeClock();
  const ports = new PortBus();
  const mmio = new MmioBus();
  const irq = createInterruptControllers(ports, mmio);
  let wakes = 0;
  const lapic = new Lapic({ clock, bus: irq.apicBus, apicId: 0, hooks: { wake: () => wakes++, init: () => {}, startup: () => {} } });
  const pit = new Pit(clock, irq.router.line(0));
  pit.register(ports);
  const serial = new Serial16550(irq.router.line(4), () => {});
  serial.register(ports);
  return { clock, ports, mmio, lapic, wakes: () => wakes, ...irq };
}

test('PIT IRQ0 reaches the CPU through the 8259 and LINT0 (early boot)', () => {
  const { clock, ports, lapic, wakes } = machine();
  ports.write(0x20, 1, 0x11); ports.write(0x21, 1, 0x30); ports.write(0x21, 1, 0x04); ports.write(0x21, 1, 0x01);
  ports.write(0xa0, 1, 0x11); ports.write(0xa1, 1, 0x38); ports.write(0xa1, 1, 0x02); ports.write(0xa1, 1, 0x01);
  ports.write(0x21, 1, 0xfa); // IRQ0 and cascade unmasked
  ports.write(0x43, 1, 0x34);
  const latch = Math.floor((PIT_HZ + 125) / 250);
  ports.write(0x40, 1, latch & 0xff); ports.write(0x40, 1, latch >> 8);
  let ticks = 0;
  for (let i = 0; i < 100; i++) {
    clock.advance(1e6);
    while (lapic.hasInterrupt()) {
      assert.equal(lapic.acknowledge(), 0x30);
      ports.write(0x20, 1, 0x20);
      ticks++;
    }
  }
  assert.ok(ticks >= 24 && ticks <= 26, `${ticks} ticks in 100 ms`);
  assert.ok(wakes() >= ticks);
});

test('after IOAPIC setup: timer on pin 2, serial on pin 4 (edge), LINT0 masked', () => {
  const { clock, ports, mmio, lapic } = machine();
  lapic.mmioWrite(0xf0, 4, 0x1ff);
  lapic.mmioWrite(0x350, 4, 0x10700);
  ports.write(0x21, 1, 0xff); ports.write(0xa1, 1, 0xff);
  const route = (pin: number, vector: number): void => {
    mmio.write(IOAPIC_BASE, 4, 0x11 + 2 * pin); mmio.write(IOAPIC_BASE + 0x10, 4, 0);
    mmio.write(IOAPIC_BASE, 4, 0x10 + 2 * pin); mmio.write(IOAPIC_BASE + 0x10, 4, vector);
  };
  route(2, 0xec);
  route(4, 0x24);
  ports.write(0x43, 1, 0x38); ports.write(0x40, 1, 0xff); ports.write(0x40, 1, 0x00); // one-shot 255 ticks
  clock.advance(300_000);
  assert.equal(lapic.acknowledge(), 0xec);
  lapic.mmioWrite(0xb0, 4, 0);
  // UART THRE interrupt with OUT2.
  ports.write(0x3fc, 1, 0x08);
  ports.write(0x3f9, 1, 0x02);
  assert.equal(lapic.acknowledge(), 0x24);
  assert.equal(ports.read(0x3fa, 1) & 0x0f, 0x02);
  lapic.mmioWrite(0xb0, 4, 0);
  ports.write(0x3f8, 1, 0x41); // THR write: THRE interrupt again, a new edge
  assert.equal(lapic.acknowledge(), 0x24);
});
