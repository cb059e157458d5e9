import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortBus } from '../src/devices/bus.ts';
import { Serial16550 } from '../src/devices/serial.ts';

const B = 0x3f8;
const RX = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

function setup() {
  const levels: boolean[] = [];
  let level = false;
  const out: Uint8Array[] = [];
  const uart = new Serial16550({ set: (h) => { level = h; levels.push(h); }, pulse: () => {} }, (b) => out.push(b));
  const bus = new PortBus();
  uart.register(bus);
  const inb = (r: number): number => bus.read(B + r, 1);
  const outb = (r: number, v: number): void => bus.write(B + r, 1, v);
  return { uart, bus, inb, outb, out, levels, irq: () => level };
}

/**
 * The probe of drivers/tty/serial/8250/8250_port.c autoconfig() and autoconfig_16550a(), in order.
 * Returns the type name the driver would pick.
 */
function autoconfig(inb: (r: number) => number, outb: (r: number, v: number) => void): string {
  // Scratch test of IER.
  let scratch = inb(IER);
  outb(IER, 0);
  const scratch2 = inb(IER) & 0x0f;
  outb(IER, 0x0f);
  const scratch3 = inb(IER) & 0x0f;
  outb(IER, scratch);
  if (scratch2 !== 0 || scratch3 !== 0x0f) return 'none (IER test)';
  const saveMcr = inb(MCR);
  const saveLcr = inb(LCR);
  // LOOP test.
  outb(MCR, 0x10 | 0x0a);
  const status1 = inb(MSR) & 0xf0;
  outb(MCR, saveMcr);
  if (status1 !== 0x90) return `none (LOOP test ${status1.toString(16)})`;
  outb(LCR, 0xbf); outb(2, 0); outb(LCR, 0);
  outb(FCR, 0x01);
  scratch = inb(IIR) >> 6;
  if (scratch === 0) return '8250/16450';
  if (scratch === 1) return 'unknown';
  if (scratch === 2) return '16550';
  // autoconfig_16550a: EFR probes with LCR=0x80 and LCR=0xBF must not read 0.
  outb(LCR, 0x80);
  if (inb(2) === 0) return '16650';
  outb(LCR, 0xbf);
  if (inb(2) === 0) return '16650V2';
  // National SuperIO probe: EXCR1 via LCR=0xE0 must not track MCR's LOOP bit.
  outb(LCR, 0);
  const mcr1 = inb(MCR);
  outb(LCR, 0xe0);
  let st2 = inb(2);
  if (!((st2 ^ mcr1) & 0x10)) {
    outb(LCR, 0); outb(MCR, mcr1 ^ 0x10); outb(LCR, 0xe0);
    st2 = inb(2);
    outb(LCR, 0); outb(MCR, mcr1);
    if ((st2 ^ mcr1) & 0x10) return 'NS16550A';
  }
  // TI16750 probe.
  outb(LCR, 0); outb(FCR, 0x21);
  const s1 = inb(IIR) >> 5;
  outb(FCR, 0x01); outb(LCR, 0x80); outb(FCR, 0x21);
  const s2 = inb(IIR) >> 5;
  outb(FCR, 0x01); outb(LCR, 0);
  if (s1 === 6 && s2 === 7) return '16750';
  // XScale UUE bit.
  const iersave = inb(IER);
  outb(IER, iersave & ~0x40);
  if (!(inb(IER) & 0x40)) {
    outb(IER, iersave | 0x40);
    if (inb(IER) & 0x40) return 'XScale';
  }
  outb(IER, iersave);
  outb(LCR, saveLcr);
  // Reset.
  outb(MCR, saveMcr);
  outb(FCR, 0x01); outb(FCR, 0x07); outb(FCR, 0);
  inb(RX);
  outb(IER, 0);
  return '16550A';
}

test('Linux 8250 autoconfig identifies a 16550A', () => {
  const { inb, outb } = setup();
  assert.equal(autoconfig(inb, outb), '16550A');
  // Probing twice works too (registers were restored).
  assert.equal(autoconfig(inb, outb), '16550A');
});

test('startup: LSR is not 0xFF, THRE interrupt re-asserts, TX interrupt seen', () => {
  const { inb, outb, irq } = setup();
  autoconfig(inb, outb);
  // serial8250_do_startup: clear FIFOs and interrupt registers.
  outb(FCR, 0x01); outb(FCR, 0x07); outb(FCR, 0);
  inb(LSR); inb(RX); inb(IIR); inb(MSR);
  assert.notEqual(inb(LSR), 0xff);
  // UART_BUG_THRE test.
  outb(IER, 0x02);
  const iir1 = inb(IIR);
  outb(IER, 0);
  outb(IER, 0x02);
  const iir = inb(IIR);
  outb(IER, 0);
  assert.equal(iir1 & 1, 0, 'THRE interrupt after enabling');
  assert.equal(iir & 1, 0, 'THRE re-asserted after re-enabling');
  // 8 data bits, DLAB divisor 1 (115200), then OUT2 and the TXEN test.
  outb(LCR, 0x80); outb(0, 1); outb(1, 0); outb(LCR, 0x03);
  outb(MCR, 0x0b);
  outb(IER, 0x02);
  assert.equal(irq(), true, 'IRQ line raised with OUT2');
  const lsr = inb(LSR);
  const iir2 = inb(IIR);
  outb(IER, 0);
  assert.equal(lsr & 0x60, 0x60);
  assert.equal(iir2 & 0x0f, 0x02);
  assert.equal(irq(), false);
  // Divisor latch reads back.
  outb(LCR, 0x83);
  assert.equal(inb(0) | (inb(1) << 8), 1);
  outb(LCR, 0x03);
  outb(SCR, 0x5a);
  assert.equal(inb(SCR), 0x5a);
});

test('output is batched and flushed on a microtask', async () => {
  const { outb, out, uart } = setup();
  for (const c of Buffer.from('hello, world\n')) outb(0, c);
  assert.equal(out.length, 0);
  await Promise.resolve();
  assert.equal(out.length, 1);
  assert.equal(Buffer.from(out[0]).toString(), 'hello, world\n');
  outb(0, 0x41);
  uart.flush();
  assert.equal(out.length, 2);
});

test('receive: data ready, RX and timeout interrupts, long paste is not lost', () => {
  const { inb, outb, uart, irq } = setup();
  outb(LCR, 0x03);
  outb(FCR, 0x81); // FIFO, trigger 8
  outb(MCR, 0x08);
  uart.receive(Buffer.from('ab'));
  assert.equal(inb(LSR) & 1, 1);
  assert.equal(irq(), false, 'RX interrupt not enabled yet');
  outb(IER, 0x01);
  assert.equal(irq(), true);
  assert.equal(inb(IIR), 0xcc, 'below trigger level: character timeout');
  assert.equal(inb(RX), 0x61);
  assert.equal(inb(RX), 0x62);
  assert.equal(inb(LSR) & 1, 0);
  assert.equal(irq(), false);
  const text = Buffer.alloc(1000);
  for (let i = 0; i < text.length; i++) text[i] = 0x20 + (i % 90);
  uart.receive(text);
  assert.equal(inb(IIR), 0xc4, 'at trigger level: received data available');
  const got: number[] = [];
  while (inb(LSR) & 1) got.push(inb(RX));
  assert.deepEqual(Buffer.from(got), text);
  assert.equal(inb(IIR), 0xc1);
});

test('loopback: transmitted bytes come back, modem lines follow MCR, no IRQ', () => {
  const { inb, outb, out, irq } = setup();
  outb(FCR, 0x01);
  outb(IER, 0x01);
  outb(MCR, 0x18);
  outb(0, 0x55);
  assert.equal(inb(RX), 0x55);
  assert.equal(irq(), false);
  outb(MCR, 0x13);
  assert.equal(inb(MSR) & 0xf0, 0x30);
  outb(MCR, 0x00);
  assert.equal(out.length, 0);
  assert.equal(inb(MSR) & 0xf0, 0xb0);
});

test('line status interrupt on overrun in loopback without FIFO', () => {
  const { inb, outb } = setup();
  outb(IER, 0x05);
  outb(MCR, 0x10);
  outb(0, 1); outb(0, 2);
  assert.equal(inb(IIR) & 0x0f, 0x06);
  assert.equal(inb(LSR) & 0x03, 0x03);
  assert.equal(inb(LSR) & 0x02, 0, 'OE clears on read');
  assert.equal(inb(RX), 2);
});
