import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VmClock } from '../src/vmm/clock.ts';
import { PortBus } from '../src/devices/bus.ts';
import { Pit, PIT_HZ, nsToTicks, ticksToNs } from '../src/devices/pit.ts';

class FakeClock extends VmClock {
  t = 0;
  override now(): number { return this.t; }
  advance(ns: number): number { this.t += ns; return this.runDue(); }
}

function setup(start = 0) {
  const clock = new FakeClock();
  clock.t = start;
  let pulses = 0;
  const pit = new Pit(clock, { set: () => {}, pulse: () => pulses++ });
  const bus = new PortBus();
  pit.register(bus);
  const inb = (p: number): number => bus.read(p, 1);
  const outb = (p: number, v: number): void => bus.write(p, 1, v);
  return { clock, pit, inb, outb, pulses: () => pulses };
}

test('tick conversion is exact over long times', () => {
  assert.equal(nsToTicks(1e9), PIT_HZ);
  assert.equal(nsToTicks(3600e9 + 1e9), 3601 * PIT_HZ);
  for (const t of [1, 4773, PIT_HZ - 1, PIT_HZ * 5000 + 17]) assert.equal(nsToTicks(ticksToNs(t)), t);
  assert.equal(nsToTicks(ticksToNs(100) - 1), 99);
});

test('pit_calibrate_tsc: OUT2 rises after the 10 ms latch in mode 0 with the gate from port 0x61', () => {
  const { clock, inb, outb } = setup(123_456_789);
  const latch = Math.floor(PIT_HZ / (1000 / 10));
  outb(0x61, (inb(0x61) & ~0x02) | 0x01);
  outb(0x43, 0xb0);
  outb(0x42, latch & 0xff);
  outb(0x42, latch >> 8);
  const start = clock.t;
  let loops = 0;
  while ((inb(0x61) & 0x20) === 0) { clock.advance(1000); loops++; if (loops > 100000) break; }
  const elapsed = clock.t - start;
  assert.ok(Math.abs(elapsed - 10e6) <= 1000, `OUT2 after ${elapsed} ns`);
  assert.ok(loops >= 1000, 'enough polls for loopmin');
});

test('quick_pit_calibrate: the live MSB counts down at 1.193182 MHz', () => {
  const { clock, inb, outb } = setup(5e9);
  outb(0x61, (inb(0x61) & ~0x02) | 0x01);
  outb(0x43, 0xb0);
  outb(0x42, 0xff); outb(0x42, 0xff);
  const readMsb = (): number => { inb(0x42); return inb(0x42); };
  assert.equal(readMsb(), 0xff);
  // 256 ticks per MSB step.
  clock.advance(ticksToNs(256 * 10 + 5));
  assert.equal(readMsb(), 0xff - 10);
  clock.advance(ticksToNs(256 * 100));
  assert.equal(readMsb(), 0xff - 110);
});

test('gate low holds channel 2 in mode 0; refresh bit toggles', () => {
  const { clock, inb, outb } = setup();
  outb(0x61, 0);
  outb(0x43, 0xb0);
  outb(0x42, 100); outb(0x42, 0);
  clock.advance(1e6);
  assert.equal(inb(0x61) & 0x20, 0, 'no count while the gate is low');
  outb(0x61, 1);
  clock.advance(ticksToNs(99));
  assert.equal(inb(0x61) & 0x20, 0);
  clock.advance(ticksToNs(1) + 1000);
  assert.equal(inb(0x61) & 0x20, 0x20);
  const seen = new Set<number>();
  for (let i = 0; i < 8; i++) { seen.add(inb(0x61) & 0x10); clock.advance(7000); }
  assert.deepEqual([...seen].sort(), [0, 0x10]);
});

test('channel 0 mode 2 periodic at HZ=250 gives 250 IRQ0 per second', () => {
  const { clock, outb, pulses } = setup(42);
  const latch = Math.floor((PIT_HZ + 125) / 250);
  outb(0x43, 0x34);
  outb(0x40, latch & 0xff); outb(0x40, latch >> 8);
  for (let i = 0; i < 1000; i++) clock.advance(1e6);
  assert.ok(Math.abs(pulses() - 250) <= 1, `${pulses()} interrupts`);
  // Shutdown as Linux does: mode 0, count 0 -> one interrupt after 65536 ticks.
  outb(0x43, 0x30); outb(0x40, 0); outb(0x40, 0);
  const before = pulses();
  clock.advance(ticksToNs(65535));
  assert.equal(pulses(), before);
  clock.advance(ticksToNs(2));
  assert.equal(pulses(), before + 1);
  clock.advance(1e9);
  assert.equal(pulses(), before + 1);
});

test('channel 0 mode 4 one-shot fires once at the programmed time', () => {
  const { clock, outb, pulses } = setup();
  outb(0x43, 0x38);
  outb(0x40, 0x10); outb(0x40, 0x27); // 10000 ticks = 8.38 ms
  clock.advance(8_300_000);
  assert.equal(pulses(), 0);
  clock.advance(100_000);
  assert.equal(pulses(), 1);
  clock.advance(100e6);
  assert.equal(pulses(), 1);
});

test('counter latch and read-back commands', () => {
  const { clock, inb, outb } = setup();
  outb(0x43, 0x34);
  outb(0x40, 0x00); outb(0x40, 0x10); // 4096
  clock.advance(ticksToNs(96));
  outb(0x43, 0x00); // latch channel 0
  clock.advance(ticksToNs(1000));
  assert.equal(inb(0x40) | (inb(0x40) << 8), 4000);
  // Read-back: status and count of channel 0.
  outb(0x43, 0xc2);
  const status = inb(0x40);
  assert.equal(status & 0x3f, 0x34, 'rw=3, mode 2, binary');
  assert.equal(status & 0x40, 0, 'count loaded');
  assert.equal(inb(0x40) | (inb(0x40) << 8), 3000);
  // LSB-only access mode on channel 1.
  outb(0x43, 0x54); // ch1, LSB only, mode 2
  outb(0x41, 200);
  clock.advance(ticksToNs(50));
  assert.equal(inb(0x41), 150);
});
