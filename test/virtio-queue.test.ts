// The split virtqueue parser on its own (descriptor tables written straight into a GuestMemory), and a
// bounded fuzz run over it: random tables and rings for a few seconds, with the seed printed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { SplitQueue, VirtqueueError, gather, scatter, splitBuffers, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE, VIRTQ_DESC_F_INDIRECT as INDIRECT } from '../src/devices/virtio/queue.ts';

const mem = new GuestMemory(64 * MiB);
after(() => mem.close());
const v = mem.lowView;
const DESC = 0x1000, AVAIL = 0x3000, USED = 0x4000;

function desc(table: number, i: number, addr: number, len: number, flags: number, next = 0): void {
  v.setUint32(table + 16 * i, addr % 2 ** 32, true);
  v.setUint32(table + 16 * i + 4, Math.floor(addr / 2 ** 32), true);
  v.setUint32(table + 16 * i + 8, len, true);
  v.setUint16(table + 16 * i + 12, flags, true);
  v.setUint16(table + 16 * i + 14, next, true);
}

function fresh(size = 8, features = { indirect: true, eventIdx: false }): SplitQueue {
  mem.low.fill(0, 0, 0x10000);
  return new SplitQueue(mem, { size, desc: DESC, avail: AVAIL, used: USED }, features);
}

function offer(q: SplitQueue, ...heads: number[]): void {
  let idx = v.getUint16(AVAIL + 2, true);
  for (const h of heads) {
    v.setUint16(AVAIL + 4 + 2 * (idx % q.size), h, true);
    idx = (idx + 1) & 0xffff;
  }
  v.setUint16(AVAIL + 2, idx, true);
}

test('a chain: readable then writable buffers, views into guest RAM, used ring filled in order', () => {
  const q = fresh();
  desc(DESC, 2, 0x10000, 16, NEXT, 5);
  desc(DESC, 5, 0x20000, 100, NEXT | WRITE, 1);
  desc(DESC, 1, 0x30000, 1, WRITE);
  offer(q, 2);
  const c = q.pop()!;
  assert.equal(c.head, 2);
  assert.deepEqual(c.readable.map((b) => b.length), [16]);
  assert.deepEqual(c.writable.map((b) => b.length), [100, 1]);
  assert.equal(c.readableBytes, 16);
  assert.equal(c.writableBytes, 101);
  c.writable[1][0] = 0x99;
  assert.equal(mem.low[0x30000], 0x99, 'no copy');
  assert.equal(q.pop(), undefined);
  q.push(2, 101);
  assert.equal(v.getUint16(USED + 2, true), 1);
  assert.equal(v.getUint32(USED + 4, true), 2);
  assert.equal(v.getUint32(USED + 8, true), 101);
});

test('the chains counter follows pop and unpop (stats: chains per notification)', () => {
  mem.low.fill(0, 0, 0x10000);
  const counters = { chains: 0 };
  const q = new SplitQueue(mem, { size: 8, desc: DESC, avail: AVAIL, used: USED }, { indirect: true, eventIdx: false }, counters);
  for (const h of [0, 1, 2]) desc(DESC, h, 0x10000 + 0x100 * h, 16, WRITE);
  offer(q, 0, 1, 2);
  q.pop();
  q.pop();
  assert.equal(counters.chains, 2);
  q.unpop(2); // put back unused: not taken
  assert.equal(counters.chains, 0);
  while (q.pop()) { /* all three */ }
  assert.equal(counters.chains, 3);
});

test('indirect table; ring indices wrap at 2^16', () => {
  const q = fresh(4);
  const table = 0x8000;
  desc(table, 0, 0x10000, 16, NEXT, 1);
  desc(table, 1, 0x11000, 8, WRITE);
  desc(DESC, 3, table, 32, INDIRECT);
  // Start both sides near the wrap: the device follows avail.idx from 0, so feed 65534 empty rounds cheaply.
  for (let i = 0; i < 70000; i += 4) {
    offer(q, 3, 3, 3, 3);
    for (let k = 0; k < 4; k++) {
      const c = q.pop()!;
      assert.equal(c.readableBytes + c.writableBytes, 24);
      q.push(c.head, 8);
    }
  }
  assert.equal(v.getUint16(USED + 2, true), 70000 & 0xffff);
});

test('malformed chains are VirtqueueErrors', () => {
  const cases: [string, (q: SplitQueue) => void, { indirect: boolean; eventIdx: boolean }?][] = [
    ['loop', (q) => { desc(DESC, 0, 0x10000, 4, NEXT, 1); desc(DESC, 1, 0x10000, 4, NEXT, 0); offer(q, 0); }],
    ['self loop', (q) => { desc(DESC, 0, 0x10000, 4, NEXT, 0); offer(q, 0); }],
    ['next out of table', (q) => { desc(DESC, 0, 0x10000, 4, NEXT, 8); offer(q, 0); }],
    ['head out of table', (q) => { offer(q, 9); }],
    ['avail.idx far ahead', (q) => { v.setUint16(AVAIL + 2, 9, true); }],
    ['buffer past RAM', (q) => { desc(DESC, 0, 64 * MiB - 4, 8, 0); offer(q, 0); }],
    ['buffer in the MMIO hole', (q) => { desc(DESC, 0, 0xc000_0000, 8, 0); offer(q, 0); }],
    ['buffer at 2^64-1', (q) => { desc(DESC, 0, 2 ** 64 - 2 ** 12, 8, 0); offer(q, 0); }],
    ['readable after writable', (q) => { desc(DESC, 0, 0x10000, 4, NEXT | WRITE, 1); desc(DESC, 1, 0x10000, 4, 0); offer(q, 0); }],
    ['indirect not negotiated', (q) => { desc(DESC, 0, 0x8000, 16, INDIRECT); offer(q, 0); }, { indirect: false, eventIdx: false }],
    ['indirect with NEXT', (q) => { desc(DESC, 0, 0x8000, 16, INDIRECT | NEXT, 1); offer(q, 0); }],
    ['indirect length not a multiple of 16', (q) => { desc(DESC, 0, 0x8000, 20, INDIRECT); offer(q, 0); }],
    ['indirect length 0', (q) => { desc(DESC, 0, 0x8000, 0, INDIRECT); offer(q, 0); }],
    ['nested indirect', (q) => { desc(0x8000, 0, 0x9000, 16, INDIRECT); desc(DESC, 0, 0x8000, 16, INDIRECT); offer(q, 0); }],
    ['indirect table loop', (q) => { desc(0x8000, 0, 0x10000, 4, NEXT, 1); desc(0x8000, 1, 0x10000, 4, NEXT, 0); desc(DESC, 0, 0x8000, 32, INDIRECT); offer(q, 0); }],
    ['indirect table outside RAM', (q) => { desc(DESC, 0, 0xfee0_0000, 32, INDIRECT); offer(q, 0); }],
    ['indirect after a direct descriptor', (q) => { desc(DESC, 0, 0x10000, 4, NEXT, 1); desc(DESC, 1, 0x8000, 16, INDIRECT); desc(0x8000, 0, 0x10000, 4, 0); offer(q, 0); }],
    ['chain over 4 GiB', (q) => { for (let i = 0; i < 3; i++) desc(DESC, i, 0x10000, 0, NEXT, i + 1); desc(DESC, 0, 0, 0xffffffff, NEXT | WRITE, 1); desc(DESC, 1, 0, 0xffffffff, WRITE); offer(q, 0); }],
  ];
  for (const [name, setup, features] of cases) {
    const q = fresh(8, features);
    setup(q);
    assert.throws(() => { q.pop(); }, VirtqueueError, name);
  }
});

test('zero-length buffers are legal and empty', () => {
  const q = fresh();
  desc(DESC, 0, 0xffff_ffff_f000, 0, NEXT, 1); // the address of an empty buffer does not matter
  desc(DESC, 1, 0x10000, 4, WRITE);
  offer(q, 0);
  const c = q.pop()!;
  assert.equal(c.readable[0].length, 0);
  assert.equal(c.writableBytes, 4);
});

test('ring layout checks: size, alignment and RAM', () => {
  const bad: [number, number, number, number][] = [
    [0, DESC, AVAIL, USED], [6, DESC, AVAIL, USED], [65536, DESC, AVAIL, USED],
    [8, DESC + 8, AVAIL, USED], [8, DESC, AVAIL + 1, USED], [8, DESC, AVAIL, USED + 2],
    [8, 0xc000_0000, AVAIL, USED], [8, DESC, 64 * MiB - 8, USED], [8, DESC, AVAIL, 2 ** 52],
  ];
  for (const [size, d, a, u] of bad) {
    assert.throws(() => new SplitQueue(mem, { size, desc: d, avail: a, used: u }, { indirect: true, eventIdx: true }), VirtqueueError, `${size} ${d} ${a} ${u}`);
  }
});

test('EVENT_IDX arithmetic across the 16-bit wrap', () => {
  const q = fresh(4, { indirect: false, eventIdx: true });
  desc(DESC, 0, 0x10000, 4, WRITE);
  let interrupts = 0;
  for (let i = 0; i < 70000; i++) {
    offer(q, 0);
    q.push(q.pop()!.head, 4);
    // The driver asks to hear about every 1000th completion.
    v.setUint16(AVAIL + 4 + 2 * 4, (Math.floor(i / 1000) * 1000 + 999) & 0xffff, true);
    if (q.needsInterrupt()) interrupts++;
  }
  assert.ok(interrupts >= 69 && interrupts <= 71, `${interrupts} interrupts`);
});

test('gather, scatter and splitBuffers over buffer boundaries', () => {
  const a = new Uint8Array([1, 2, 3]), b = new Uint8Array([4, 5]), c = new Uint8Array([6]);
  const out = new Uint8Array(4);
  assert.equal(gather([a, b, c], 2, out), 4);
  assert.deepEqual([...out], [3, 4, 5, 6]);
  assert.equal(scatter([a, b, c], 1, Uint8Array.of(9, 9, 9)), 3);
  assert.deepEqual([...a, ...b], [1, 9, 9, 9, 5]);
  const [x, y] = splitBuffers([a, b, c], 4);
  assert.deepEqual(x.map((q) => q.length), [3, 1]);
  assert.deepEqual(y.map((q) => q.length), [1, 1]);
});

/** mulberry32: a small seeded PRNG, so a failing fuzz run can be replayed with RINGZERO_FUZZ_SEED. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

test('fuzz: random descriptor tables and rings never escape as anything but VirtqueueError', (t) => {
  const seed = Number(process.env.RINGZERO_FUZZ_SEED ?? Date.now() % 2 ** 32);
  const seconds = Number(process.env.RINGZERO_FUZZ_SECONDS ?? 3);
  t.diagnostic(`seed ${seed} (replay: RINGZERO_FUZZ_SEED=${seed}), ${seconds} s`);
  process.stdout.write(`# virtio queue fuzz seed ${seed}\n`);
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const addrs = [() => int(0x40000), () => 64 * MiB - int(64), () => 0xc000_0000 + int(0x1000), () => 0xffff_f000 + int(0x2000),
    () => 2 ** 32 + int(4096), () => int(2 ** 32) * 2 ** 20, () => 0x8000 + 16 * int(16)];
  const deadline = Date.now() + seconds * 1000;
  let rounds = 0, chains = 0, errors = 0;
  while (Date.now() < deadline) {
    rounds++;
    const size = 1 << int(9);
    const features = { indirect: rnd() < 0.7, eventIdx: rnd() < 0.5 };
    mem.low.fill(0, 0, 0x40000);
    let q: SplitQueue;
    try {
      q = new SplitQueue(mem, { size, desc: DESC, avail: 0x20000, used: 0x30000 }, features);
    } catch (e) {
      assert.ok(e instanceof VirtqueueError);
      continue;
    }
    // Random direct table and a random indirect table at 0x8000.
    for (let i = 0; i < size; i++) desc(DESC, i, addrs[int(addrs.length)](), rnd() < 0.2 ? 0 : int(rnd() < 0.9 ? 4096 : 2 ** 32), int(8), rnd() < 0.8 ? int(size) : int(0x10000));
    for (let i = 0; i < 16; i++) desc(0x8000, i, addrs[int(addrs.length)](), int(4096), int(8), int(20));
    const n = rnd() < 0.9 ? int(size + 1) : int(0x10000);
    for (let i = 0; i < size; i++) v.setUint16(0x20000 + 4 + 2 * i, rnd() < 0.9 ? int(size) : int(0x10000), true);
    v.setUint16(0x20000 + 2, n, true);
    for (let k = 0; k < size + 2; k++) {
      let c;
      try {
        c = q.pop();
      } catch (e) {
        if (!(e instanceof VirtqueueError)) throw new Error(`seed ${seed}: ${String(e)}`);
        errors++;
        break;
      }
      if (!c) break;
      chains++;
      // Whatever came out lies in RAM and respects the bounds.
      assert.ok(c.readable.length + c.writable.length <= Math.max(size, 16), `seed ${seed}`);
      for (const b of [...c.readable, ...c.writable]) assert.ok(b.length === 0 || b.buffer === mem.low.buffer || b.buffer === mem.regions[1]?.bytes.buffer, `seed ${seed}`);
      q.push(c.head, int(100));
      q.needsInterrupt();
      q.enableNotification();
    }
  }
  t.diagnostic(`${rounds} tables, ${chains} chains taken, ${errors} rejected`);
  assert.ok(rounds > 10);
});
