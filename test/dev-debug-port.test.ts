import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortBus } from '../src/devices/bus.ts';
import { DebugPort } from '../src/devices/debug-port.ts';

test('port 0xE9 collects bytes into one sink call; port 0x80 is ignored', async () => {
  const out: Uint8Array[] = [];
  const dev = new DebugPort((b) => out.push(b));
  const bus = new PortBus();
  dev.register(bus);
  assert.equal(bus.read(0xe9, 1), 0xe9);
  for (const c of Buffer.from('boot ok\n')) bus.write(0xe9, 1, c);
  bus.write(0x80, 1, 0x42);
  assert.equal(dev.lastPostCode, 0x42);
  assert.equal(out.length, 0);
  await Promise.resolve();
  assert.equal(out.length, 1);
  assert.equal(Buffer.from(out[0]).toString(), 'boot ok\n');
});
