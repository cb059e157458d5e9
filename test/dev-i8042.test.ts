import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortBus } from '../src/devices/bus.ts';
import { I8042 } from '../src/devices/i8042.ts';

function setup() {
  const lv = { kbd: false, aux: false, kbdEdges: 0 };
  let resets = 0;
  const dev = new I8042({ set: (h) => { if (h && !lv.kbd) lv.kbdEdges++; lv.kbd = h; }, pulse: () => {} }, { set: (h) => { lv.aux = h; }, pulse: () => {} }, () => resets++);
  const bus = new PortBus();
  dev.register(bus);
  const inb = (p: number): number => bus.read(p, 1);
  const outb = (p: number, v: number): void => bus.write(p, 1, v);
  /** i8042_command: write the command (and parameter), collect `n` reply bytes by polling OBF. */
  const command = (cmd: number, param?: number, n = 0): number[] => {
    outb(0x64, cmd);
    if (param !== undefined) outb(0x60, param);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      assert.equal(inb(0x64) & 0x01, 1, `reply byte ${i} of command 0x${cmd.toString(16)}`);
      out.push(inb(0x60));
    }
    return out;
  };
  return { dev, inb, outb, command, lv, resets: () => resets };
}

test('Linux i8042 probe: flush, self test, CTR read/write, interface test', () => {
  const { inb, outb, command } = setup();
  assert.equal(inb(0x64) & 0x01, 0, 'nothing to flush');
  assert.deepEqual(command(0xaa, undefined, 1), [0x55]);
  const [ctr] = command(0x20, undefined, 1);
  assert.equal(ctr & 0x04, 0x04, 'system flag');
  command(0x60, (ctr & ~0x03) | 0x30); // disable ports and their IRQs
  assert.deepEqual(command(0x20, undefined, 1), [(ctr & ~0x03) | 0x30]);
  assert.deepEqual(command(0xab, undefined, 1), [0x00]);
  assert.equal(inb(0x64) & 0x04, 0x04);
  void outb;
});

test('AUX loopback raises IRQ12 with AUXDATA; writes to the absent mouse time out', () => {
  const { inb, outb, command, lv } = setup();
  command(0x60, 0x47 & ~0x20); // AUX enabled, both IRQs on
  outb(0x64, 0xd3); outb(0x60, 0xa5);
  assert.equal(lv.aux, true);
  assert.equal(lv.kbd, false);
  assert.equal(inb(0x64) & 0x21, 0x21);
  assert.equal(inb(0x60), 0xa5);
  assert.equal(lv.aux, false);
  // psmouse sends GETID through 0xD4.
  outb(0x64, 0xd4); outb(0x60, 0xf2);
  assert.equal(inb(0x64) & 0x61, 0x61, 'OBF, AUXDATA and timeout');
  assert.equal(inb(0x60), 0xfe);
  assert.equal(inb(0x64) & 0x01, 0);
  // Disable/enable AUX reflect in the CTR bit Linux checks.
  command(0xa7);
  assert.equal(command(0x20, undefined, 1)[0] & 0x20, 0x20);
  command(0xa8);
  assert.equal(command(0x20, undefined, 1)[0] & 0x20, 0);
  assert.deepEqual(command(0xa9, undefined, 1), [0x00]);
});

test('keyboard reset, identify, LEDs with IRQ1 per reply byte', () => {
  const { inb, outb, lv } = setup();
  outb(0x60, 0xff);
  assert.equal(lv.kbd, true);
  assert.equal(inb(0x60), 0xfa);
  assert.equal(lv.kbd, true, 'next byte raises the line again');
  assert.equal(inb(0x60), 0xaa);
  assert.equal(lv.kbd, false);
  assert.equal(lv.kbdEdges, 2, 'one rising edge per byte');
  outb(0x60, 0xf2);
  assert.deepEqual([inb(0x60), inb(0x60), inb(0x60)], [0xfa, 0xab, 0x41]);
  outb(0x60, 0xed);
  assert.equal(inb(0x60), 0xfa);
  outb(0x60, 0x07);
  assert.equal(inb(0x60), 0xfa);
  outb(0x60, 0xf0); inb(0x60); outb(0x60, 0x00);
  assert.deepEqual([inb(0x60), inb(0x60)], [0xfa, 0x02]);
  outb(0x60, 0x12);
  assert.equal(inb(0x60), 0xfe, 'unknown command: resend');
  assert.equal(inb(0x64) & 1, 0);
});

test('reset line: 0xFE pulse and output port write', () => {
  const { outb, command, resets } = setup();
  outb(0x64, 0xfe);
  assert.equal(resets(), 1);
  outb(0x64, 0xff);
  assert.equal(resets(), 1, '0xFF pulses nothing');
  const [port] = command(0xd0, undefined, 1);
  assert.equal(port & 0x03, 0x03);
  command(0xd1, 0x02);
  assert.equal(resets(), 2);
});
