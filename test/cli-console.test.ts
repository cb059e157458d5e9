import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createHostConsole, EscapeFilter } from '../src/cli/console.ts';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const CTRL_A = 0x01;
const X = 0x78;

test('plain keys pass through, Ctrl-C included', () => {
  const filter = new EscapeFilter();
  assert.deepEqual(filter.feed(bytes(0x6c, 0x73, 0x0d, 0x03)), { forward: bytes(0x6c, 0x73, 0x0d, 0x03), quit: false });
});

test('Ctrl-A x quits and drops what follows', () => {
  const filter = new EscapeFilter();
  assert.deepEqual(filter.feed(bytes(0x61, CTRL_A, X, 0x62)), { forward: bytes(0x61), quit: true });
  assert.deepEqual(filter.feed(bytes(0x63)), { forward: bytes(), quit: true });
  assert.equal(new EscapeFilter().feed(bytes(CTRL_A, 0x58)).quit, true, 'capital X quits too');
});

test('Ctrl-A Ctrl-A sends one Ctrl-A', () => {
  const filter = new EscapeFilter();
  assert.deepEqual(filter.feed(bytes(CTRL_A, CTRL_A, 0x61)), { forward: bytes(CTRL_A, 0x61), quit: false });
  // Four in a row are two literal Ctrl-As, not an escape left pending.
  assert.deepEqual(filter.feed(bytes(CTRL_A, CTRL_A, CTRL_A, CTRL_A, X)), { forward: bytes(CTRL_A, CTRL_A, X), quit: false });
});

test('Ctrl-A then another key sends both', () => {
  assert.deepEqual(new EscapeFilter().feed(bytes(CTRL_A, 0x63)), { forward: bytes(CTRL_A, 0x63), quit: false });
});

test('the escape state survives across reads', () => {
  const filter = new EscapeFilter();
  assert.deepEqual(filter.feed(bytes(0x61, CTRL_A)), { forward: bytes(0x61), quit: false });
  assert.deepEqual(filter.feed(bytes(X)), { forward: bytes(), quit: true });
  const literal = new EscapeFilter();
  literal.feed(bytes(CTRL_A));
  assert.deepEqual(literal.feed(bytes(CTRL_A)), { forward: bytes(CTRL_A), quit: false });
});

test('pipe mode: bytes pass unchanged, early input is kept, end of input keeps the console open', async () => {
  const input = new PassThrough() as unknown as NodeJS.ReadStream;
  const output = new PassThrough() as unknown as NodeJS.WriteStream;
  let quit = false;
  const io = createHostConsole({ input, output, errors: output, onQuit: () => { quit = true; } });
  const received: number[] = [];
  input.write(Buffer.from([CTRL_A, X, 0x0a])); // before the guest listens: kept, and no escape on a pipe
  await new Promise((resolve) => setImmediate(resolve));
  const unregister = io.onInput((data) => received.push(...data));
  input.write(Buffer.from('ls\n'));
  input.end();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(received, [CTRL_A, X, 0x0a, ...Buffer.from('ls\n')]);
  assert.equal(quit, false);
  io.write(Buffer.from('guest says hi'));
  assert.equal((output as unknown as PassThrough).read()?.toString(), 'guest says hi');
  unregister();
  io.close();
  io.close();
});
