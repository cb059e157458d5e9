import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VmClock } from '../src/vmm/clock.ts';
import { PortBus } from '../src/devices/bus.ts';
import { Rtc } from '../src/devices/rtc.ts';

class FakeClock extends VmClock {
  t = 0;
  override now(): number { return this.t; }
  advance(ns: number): number { this.t += ns; return this.runDue(); }
}

function setup(startTimeMs?: number, memoryBytes = 256 * 1024 * 1024) {
  const clock = new FakeClock();
  let level = false;
  let rises = 0;
  const rtc = new Rtc(clock, { set: (h) => { if (h && !level) rises++; level = h; }, pulse: () => {} }, { memoryBytes, startTimeMs });
  const bus = new PortBus();
  rtc.register(bus);
  const read = (i: number): number => { bus.write(0x70, 1, 0x80 | i); return bus.read(0x71, 1); };
  const write = (i: number, v: number): void => { bus.write(0x70, 1, i); bus.write(0x71, 1, v); };
  return { clock, rtc, read, write, irq: () => level, rises: () => rises };
}

const bcd = (v: number): number => (v >> 4) * 10 + (v & 0xf);

/** Read like Linux's mc146818_get_time: wait out UIP, read, check UIP and seconds again. */
function readTime(read: (i: number) => number, binary: boolean): Date {
  const conv = binary ? (v: number): number => v : bcd;
  for (;;) {
    const s0 = read(0);
    if (read(0x0a) & 0x80) continue;
    const t = [read(0), read(2), read(4), read(7), read(8), read(9), read(0x32)].map(conv);
    if (read(0x0a) & 0x80 || conv(s0) !== t[0]) continue;
    return new Date(Date.UTC(t[6] * 100 + t[5], t[4] - 1, t[3], t[2], t[1], t[0]));
  }
}

test('time in BCD and binary matches host UTC, and advances with the VM clock', () => {
  const { clock, read, write } = setup();
  const host = Date.now();
  assert.ok(Math.abs(readTime(read, false).getTime() - host) < 2000);
  assert.equal(read(0x0d), 0x80, 'valid RAM and time');
  write(0x0b, 0x06); // binary, 24 h
  assert.ok(Math.abs(readTime(read, true).getTime() - host) < 2000);
  clock.advance(3600e9);
  assert.ok(Math.abs(readTime(read, true).getTime() - (host + 3600e3)) < 2000);
});

test('12-hour format, day of week, century', () => {
  const start = Date.UTC(2024, 1, 29, 15, 4, 5); // Thursday 29 Feb 2024 15:04:05
  const { read, write } = setup(start);
  assert.equal(read(0x04), 0x15);
  assert.equal(read(0x06), 5, 'Thursday is day 5 (Sunday = 1)');
  assert.equal(read(0x07), 0x29);
  assert.equal(read(0x08), 0x02);
  assert.equal(read(0x09), 0x24);
  assert.equal(read(0x32), 0x20);
  write(0x0b, 0x00); // BCD, 12 h
  assert.equal(read(0x04), 0x83, '3 PM');
});

test('guest sets the time with SET and it keeps running from there', () => {
  const { clock, read, write } = setup(Date.UTC(2020, 0, 1));
  write(0x0b, 0x82); // SET, BCD, 24h
  const frozen = read(0);
  clock.advance(5e9);
  assert.equal(read(0), frozen, 'registers hold still while SET');
  write(0x00, 0x30); write(0x02, 0x59); write(0x04, 0x23);
  write(0x07, 0x31); write(0x08, 0x12); write(0x09, 0x99); write(0x32, 0x19);
  write(0x0b, 0x02);
  assert.equal(readTime(read, false).getTime(), Date.UTC(1999, 11, 31, 23, 59, 30));
  clock.advance(31e9);
  assert.equal(readTime(read, false).getTime(), Date.UTC(2000, 0, 1, 0, 0, 1));
  // A plain write of the minutes without SET moves the clock too.
  write(0x02, 0x10);
  assert.equal(read(0x02), 0x10);
});

test('UIP is set shortly before each update', () => {
  const { clock, read } = setup(Date.UTC(2021, 5, 1));
  clock.advance(500e6);
  assert.equal(read(0x0a) & 0x80, 0);
  clock.advance(400e6);
  assert.equal(read(0x0a) & 0x80, 0);
  clock.advance(99.9e6);
  assert.equal(read(0x0a) & 0x80, 0x80);
  assert.equal(read(0x0a) & 0x7f, 0x26);
});

test('periodic interrupt at the programmed rate; reading C clears it', () => {
  const { clock, read, write, irq, rises } = setup();
  write(0x0a, 0x2f); // 2 Hz
  write(0x0b, 0x42); // PIE
  let count = 0;
  for (let i = 0; i < 100; i++) {
    clock.advance(10e6);
    if (irq()) { assert.equal(read(0x0c) & 0xc0, 0xc0); count++; assert.equal(irq(), false); }
  }
  assert.equal(count, 2);
  assert.equal(rises(), 2);
  write(0x0b, 0x02);
  clock.advance(2e9);
  assert.equal(irq(), false);
});

test('update-ended and alarm interrupts', () => {
  const { clock, read, write, irq } = setup(Date.UTC(2022, 2, 3, 4, 5, 6, 500));
  write(0x0b, 0x12); // UIE
  clock.advance(400e6);
  assert.equal(irq(), false);
  clock.advance(100e6);
  assert.equal(irq(), true);
  assert.equal(read(0x0c), 0x90);
  // Alarm at 04:05:10, don't-care hours.
  write(0x01, 0x10); write(0x03, 0x05); write(0x05, 0xc0);
  write(0x0b, 0x22); // AIE only
  read(0x0c);
  clock.advance(2e9);
  assert.equal(irq(), false);
  clock.advance(1e9);
  assert.equal(irq(), true);
  assert.equal(read(0x0c) & 0xa0, 0xa0);
});

test('CMOS memory size bytes', () => {
  const { read } = setup(undefined, 4 * 1024 * 1024 * 1024);
  const w = (i: number): number => read(i) | (read(i + 1) << 8);
  assert.equal(w(0x15), 640);
  assert.equal(w(0x17), 0xffff);
  assert.equal(w(0x30), 0xffff);
  assert.equal(w(0x34), (3 * 1024 - 16) * 16);
  assert.equal(read(0x5b) | (read(0x5c) << 8) | (read(0x5d) << 16), 16384);
  const small = setup(undefined, 64 * 1024 * 1024);
  assert.equal(small.read(0x17) | (small.read(0x18) << 8), 63 * 1024);
  assert.equal(small.read(0x5b), 0);
});
