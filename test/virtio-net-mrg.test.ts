// virtio-net's mergeable receive buffers (VIRTIO_NET_F_MRG_RXBUF, virtio 1.2 §5.1.6.3-§5.1.6.4), driven through the
// queues as a driver would: a frame spread over small buffers (num_buffers in the first one's header, every buffer
// but the last filled, all of them published together), the ring running out mid-frame (nothing published, the
// frame waits in the device, avail_event asks for the next buffer, the frame lands when it comes), a frame larger
// than the whole ring (dropped, buffers kept), and a hostile driver: chains shorter than the header, zero-length
// buffers, device-readable buffers, a reset while a frame waits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestBench } from './support/virtio-driver.ts';
import {
  VirtioNet, NET_HDR_BYTES, RX_QUEUE, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF, parseMac, type NetBackend,
} from '../src/devices/virtio/net.ts';
import { VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX } from '../src/devices/virtio/device.ts';

const MAC = parseMac('52:54:00:12:34:56')!;
const NEEDS_RESET = 0x40;
const bit = (n: bigint) => 1n << n;
const MRG = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MRG_RXBUF);

class FakeBackend implements NetBackend {
  inbound: Uint8Array[] = [];
  waiting: (() => void) | undefined;
  read(into: Uint8Array): number | undefined {
    const f = this.inbound.shift();
    if (!f) return undefined;
    into.set(f);
    return f.length;
  }
  write(): boolean { return true; }
  whenReadable(cb: () => void): void { this.waiting = cb; }
  close(): void {}
  /** The host sends an Ethernet frame of `bytes` (a zero header in front); returns the frame (without header). */
  deliver(bytes: number, seed = 1): Uint8Array {
    const f = new Uint8Array(NET_HDR_BYTES + bytes);
    for (let i = 0; i < bytes; i++) f[NET_HDR_BYTES + i] = (i * 13 + seed) & 0xff;
    this.inbound.push(f);
    const cb = this.waiting;
    this.waiting = undefined;
    cb?.();
    return f.subarray(NET_HDR_BYTES);
  }
}

const tick = () => new Promise<void>((r) => setImmediate(r));

function setup(sizes?: number[]) {
  const backend = new FakeBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  b.bringUp({ msix: true, features: MRG, sizes });
  /** Post one receive buffer of `bytes` (one descriptor, as Linux's mergeable mode does); its address. */
  const post = (bytes: number, kick = true) => {
    const at = b.alloc(Math.max(bytes, 1));
    b.addChain(RX_QUEUE, [[at, bytes, true]], kick);
    return { at, bytes };
  };
  return { backend, net, b, post };
}

/** Reassemble what the used elements say: the header of the first buffer, then the frame. */
function reassemble(b: TestBench, used: { id: number; len: number }[], bufs: Map<number, number>): { hdr: Uint8Array; frame: Uint8Array } {
  const parts = used.map((u) => b.mem.read(bufs.get(u.id)!, u.len));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { all.set(p, o); o += p.length; }
  return { hdr: all.subarray(0, NET_HDR_BYTES), frame: all.subarray(NET_HDR_BYTES) };
}

test('MRG_RXBUF: a frame spread over small buffers, num_buffers in the first header, all but the last filled', async () => {
  const { backend, net, b, post } = setup();
  try {
    const bufs = new Map<number, number>();
    for (let i = 0; i < 8; i++) { const { at } = post(1000); bufs.set(i, at); }
    b.irqs.msis = [];
    const frame = backend.deliver(5000);
    await tick();
    const used = b.used(RX_QUEUE);
    // 12 + 5000 bytes: five full buffers of 1000 and 12 bytes in the sixth.
    assert.deepEqual(used.map((u) => u.len), [1000, 1000, 1000, 1000, 1000, 12]);
    assert.deepEqual(used.map((u) => u.id), [0, 1, 2, 3, 4, 5], 'in ring order');
    const { hdr, frame: got } = reassemble(b, used, bufs);
    assert.deepEqual(Array.from(hdr), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0], 'flags 0, GSO none, num_buffers 6');
    assert.deepEqual(got, frame);
    assert.equal(b.irqs.msis.filter((m) => m.data === 0x41).length, 1, 'one interrupt for the frame');
    // A small frame takes one buffer (num_buffers 1); one that fills its buffer exactly takes no extra one.
    const small = backend.deliver(60, 2);
    await tick();
    let u = b.used(RX_QUEUE);
    assert.deepEqual(u.map((x) => [x.id, x.len]), [[6, 72]]);
    assert.equal(b.mem.read(bufs.get(6)! + 10, 1)[0], 1);
    assert.deepEqual(b.mem.read(bufs.get(6)! + NET_HDR_BYTES, 60), small);
    backend.deliver(1000 - NET_HDR_BYTES, 3);
    await tick();
    u = b.used(RX_QUEUE);
    assert.deepEqual(u.map((x) => [x.id, x.len]), [[7, 1000]]);
    assert.equal(b.mem.read(bufs.get(7)! + 10, 1)[0], 1);
    assert.equal(net.counters.rxFrames, 3);
    assert.equal(net.counters.rxDropped, 0);
    // A buffer made of several descriptors is one buffer: filled across its descriptors.
    const p1 = b.alloc(8), p2 = b.alloc(100), p3 = b.alloc(2000);
    b.addChain(RX_QUEUE, [[p1, 8, true], [p2, 100, true]]); // 108 bytes, the header split over two descriptors
    b.addChain(RX_QUEUE, [[p3, 2000, true]]);
    const f2 = backend.deliver(300, 4);
    await tick();
    u = b.used(RX_QUEUE);
    assert.deepEqual(u.map((x) => x.len), [108, 204]);
    const joined = new Uint8Array([...b.mem.read(p1, 8), ...b.mem.read(p2, 100), ...b.mem.read(p3, 204)]);
    assert.deepEqual(joined.subarray(10, 12), Uint8Array.of(2, 0), 'num_buffers written across the descriptor boundary');
    assert.deepEqual(joined.subarray(NET_HDR_BYTES), f2);
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('MRG_RXBUF: out of buffers mid-frame, nothing is published; the frame lands when the driver posts more', async () => {
  const { backend, net, b, post } = setup();
  try {
    const bufs = new Map<number, number>();
    for (let i = 0; i < 2; i++) bufs.set(i, post(1000).at);
    const frame = backend.deliver(5000);
    const next = backend.deliver(100, 9);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE), [], 'no buffer used for a frame that does not fit yet');
    assert.equal(backend.inbound.length, 1, 'the frame after it stays in the backend');
    // EVENT_IDX: avail_event is the driver's current avail.idx, so its next buffer notifies (§2.7.10).
    const layout = b.queues[RX_QUEUE].layout;
    assert.equal(b.mem.lowView.getUint16(layout.used + 4 + 8 * layout.size, true), 2, 'avail_event');
    // Three more are still not enough (12 + 5000 > 5000): still nothing.
    for (let i = 2; i < 5; i++) bufs.set(i, post(1000).at);
    assert.deepEqual(b.used(RX_QUEUE), []);
    assert.equal(b.mem.lowView.getUint16(layout.used + 4 + 8 * layout.size, true), 5);
    for (let i = 5; i < 8; i++) bufs.set(i, post(1000).at);
    await tick();
    const used = b.used(RX_QUEUE);
    assert.deepEqual(used.map((u) => u.len), [1000, 1000, 1000, 1000, 1000, 12, 112]);
    const { hdr, frame: got } = reassemble(b, used.slice(0, 6), bufs);
    assert.equal(hdr[10], 6);
    assert.deepEqual(got, frame);
    assert.deepEqual(b.mem.read(bufs.get(6)! + NET_HDR_BYTES, 100), next, 'the next frame follows in order');
    assert.equal(net.counters.rxFrames, 2);
    assert.equal(net.counters.rxDropped, 0);
  } finally { b.close(); }
});

test('MRG_RXBUF: a frame larger than the whole ring is dropped, the buffers stay for the next frame', async () => {
  const { backend, net, b, post } = setup([8, 256]);
  try {
    const bufs = new Map<number, number>();
    for (let i = 0; i < 8; i++) bufs.set(i, post(100).at);
    backend.deliver(1000);
    const next = backend.deliver(60, 5);
    await tick();
    const used = b.used(RX_QUEUE);
    assert.deepEqual(used.map((u) => [u.id, u.len]), [[0, 72]], 'the big frame used nothing; the small one the first buffer');
    assert.deepEqual(b.mem.read(bufs.get(0)! + NET_HDR_BYTES, 60), next);
    assert.equal(net.counters.rxDropped, 1);
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('MRG_RXBUF, hostile driver: chains shorter than the header and zero-length buffers lose the frame, not the device', async () => {
  const { backend, net, b, post } = setup();
  try {
    // First buffer shorter than the 12-byte header (§5.1.6.3.1): frame dropped, the chain used and empty.
    post(8);
    backend.deliver(60);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [0]);
    // A zero-length buffer in the middle of a frame: every chain taken for the frame comes back empty.
    post(1000);
    post(0);
    backend.deliver(3000, 2);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [0, 0]);
    assert.equal(net.counters.rxDropped, 2);
    assert.equal(b.status & NEEDS_RESET, 0, 'short buffers are the driver\'s loss, not a reset');
    // The device goes on: a good buffer takes the next frame whole.
    const at = post(2000).at;
    const f = backend.deliver(1500, 3);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + 1500]);
    assert.deepEqual(b.mem.read(at + NET_HDR_BYTES, 1500), f);
    assert.equal(b.mem.read(at + 10, 1)[0], 1);
    // A device-readable buffer in the middle of a frame breaks the ring's rules: DEVICE_NEEDS_RESET.
    post(1000);
    const r = b.alloc(1000);
    b.addChain(RX_QUEUE, [[r, 1000, false]]);
    backend.deliver(1500, 4);
    await tick();
    assert.ok(b.status & NEEDS_RESET, `needs reset (${b.fn.lastError})`);
  } finally { b.close(); }
});

test('MRG_RXBUF: a reset while a frame waits for buffers drops it; the next driver starts clean', async () => {
  const { backend, net, b, post } = setup();
  try {
    post(1000);
    backend.deliver(5000);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE), []);
    b.bringUp({ msix: true, features: MRG });
    const at = post(2000).at;
    const f = backend.deliver(700, 6);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + 700], 'the new frame, not the old one');
    assert.deepEqual(b.mem.read(at + NET_HDR_BYTES, 700), f);
    assert.equal(net.counters.rxFrames, 1);
  } finally { b.close(); }
});

test('MRG_RXBUF without EVENT_IDX: waiting for buffers clears NO_NOTIFY so the next post notifies', async () => {
  const backend = new FakeBackend();
  const b = new TestBench(new VirtioNet(backend, MAC));
  try {
    b.bringUp({ msix: true, features: MRG & ~bit(VIRTIO_F_EVENT_IDX) });
    const layout = b.queues[RX_QUEUE].layout;
    b.u16(layout.used, 1); // pretend the device had asked for no notifications
    const at1 = b.alloc(1000);
    b.addChain(RX_QUEUE, [[at1, 1000, true]]);
    backend.deliver(1500);
    await tick();
    assert.equal(b.mem.lowView.getUint16(layout.used, true) & 1, 0, 'used.flags NO_NOTIFY clear');
    const at2 = b.alloc(1000);
    b.addChain(RX_QUEUE, [[at2, 1000, true]]);
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [1000, 512]);
  } finally { b.close(); }
});

test('MRG_RXBUF, randomized: any mix of buffer sizes (short, empty, split over descriptors) and frame sizes keeps every invariant', async () => {
  // A seeded generator, so a failure repeats.
  let seed = 0x2545f491;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return (seed >>> 8) % n; };
  const QSIZE = 64;
  const { backend, net, b } = setup([QSIZE, 256]);
  try {
    const chains = new Map<number, { bufs: [number, number][]; descs: number }>();
    let outstanding = 0; // descriptors held by the device
    const post = (): boolean => {
      const n = 1 + rand(3);
      if (outstanding + n > QSIZE) return false;
      const bufs: [number, number][] = [];
      for (let i = 0; i < n; i++) {
        const r = rand(20);
        const len = r === 0 ? 0 : r === 1 ? rand(12) : 12 + rand(3000);
        bufs.push([b.alloc(Math.max(len, 1)), len]);
      }
      const head = b.addChain(RX_QUEUE, bufs.map(([a, l]) => [a, l, true] as [number, number, boolean]));
      chains.set(head, { bufs, descs: n });
      outstanding += n;
      return true;
    };
    const sent: Uint8Array[] = [];
    const got: Uint8Array[] = [];
    let pendingFrame: { parts: Uint8Array[]; capacities: number[]; need: number } | undefined;
    const collect = () => {
      for (const u of b.used(RX_QUEUE)) {
        const c = chains.get(u.id)!;
        const capacity = c.bufs.reduce((s, [, l]) => s + l, 0);
        assert.ok(u.len <= capacity, `used length ${u.len} within the chain's ${capacity} bytes`);
        const bytes = new Uint8Array(u.len);
        let o = 0;
        for (const [a, l] of c.bufs) { const k = Math.min(l, u.len - o); bytes.set(b.mem.read(a, k), o); o += k; }
        chains.delete(u.id);
        outstanding -= c.descs;
        if (pendingFrame) {
          assert.ok(u.len > 0, 'no empty buffer inside a delivered frame');
          pendingFrame.parts.push(bytes);
          pendingFrame.capacities.push(capacity);
          if (pendingFrame.parts.length === pendingFrame.need) {
            const parts = pendingFrame.parts;
            // §5.1.6.4.2: every buffer but the last is filled to its capacity.
            parts.slice(0, -1).forEach((p, i) => assert.equal(p.length, pendingFrame!.capacities[i], 'all but the last buffer filled'));
            const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
            let at = 0;
            for (const p of parts) { all.set(p, at); at += p.length; }
            got.push(all.subarray(NET_HDR_BYTES));
            pendingFrame = undefined;
          }
          continue;
        }
        if (u.len === 0) continue; // a chain returned empty: a refused frame
        assert.ok(u.len >= NET_HDR_BYTES, 'a frame starts with a whole header');
        const need = bytes[10] | (bytes[11] << 8);
        assert.ok(need >= 1, 'num_buffers at least 1');
        pendingFrame = { parts: [bytes], capacities: [capacity], need };
        if (need === 1) { got.push(bytes.subarray(NET_HDR_BYTES)); pendingFrame = undefined; }
      }
    };
    for (let i = 0; i < 200; i++) {
      for (let k = rand(6); k > 0; k--) post();
      sent.push(backend.deliver(14 + rand(i % 10 === 0 ? 60000 : 4000), i));
      await tick();
      collect();
      assert.equal(pendingFrame, undefined, 'a frame\'s buffers are all published together');
    }
    // Enough room for whatever still waits, then everything must be accounted for.
    for (let k = 0; k < 40; k++) {
      if (outstanding + 1 > QSIZE) break;
      const at = b.alloc(4096);
      const head = b.addChain(RX_QUEUE, [[at, 4096, true]]);
      chains.set(head, { bufs: [[at, 4096]], descs: 1 });
      outstanding++;
      await tick();
      collect();
    }
    assert.equal(b.status & NEEDS_RESET, 0);
    assert.equal(net.counters.rxFrames, got.length);
    assert.equal(net.counters.rxFrames + net.counters.rxDropped, sent.length, 'every frame delivered or counted as dropped');
    // Delivered frames are the sent ones, in order, byte for byte.
    let j = 0;
    for (const g of got) {
      while (j < sent.length && (sent[j].length !== g.length || !sent[j].every((x, i) => x === g[i]))) j++;
      assert.ok(j < sent.length, 'a delivered frame matches the next sent one');
      j++;
    }
    assert.ok(got.length > 100 && net.counters.rxDropped > 0, `most frames delivered, some refused (${got.length} of ${sent.length}, ${net.counters.rxDropped} dropped)`);
  } finally { b.close(); }
});
