// virtio-net through the Linux-like test driver: configuration (MAC, link status), features, frames both
// ways through a test backend, receive flow control (frames wait in the backend while no buffer is
// posted), and, when the test runs as root with /dev/net/tun, frames both ways through a real TAP device
// inside a network namespace created and deleted here (ARP answered by the host kernel).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { TestBench } from './support/virtio-driver.ts';
import {
  VirtioNet, NET_HDR_BYTES, RX_QUEUE, TX_QUEUE, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, parseMac, formatMac, type NetBackend,
} from '../src/devices/virtio/net.ts';
import { Tap } from '../src/net/tap.ts';

const MAC = parseMac('52:54:00:12:34:56')!;
const NEEDS_RESET = 0x40;

/** A backend whose host side the test plays. */
class FakeBackend implements NetBackend {
  inbound: Uint8Array[] = [];
  sent: Uint8Array[] = [];
  waiting: (() => void) | undefined;
  closed = false;
  read(into: Uint8Array): number | undefined {
    const f = this.inbound.shift();
    if (!f) return undefined;
    const n = Math.min(f.length, into.length);
    into.set(f.subarray(0, n));
    return n;
  }
  write(frame: Uint8Array): boolean { this.sent.push(Uint8Array.from(frame)); return true; }
  whenReadable(cb: () => void): void { this.waiting = cb; }
  close(): void { this.closed = true; }
  /** The host sends a frame (the 12-byte header, then the Ethernet frame). */
  deliver(frame: Uint8Array): void {
    const withHdr = new Uint8Array(NET_HDR_BYTES + frame.length);
    withHdr[0] = 0xff; // junk in the host's header: the device must not pass it to the guest
    withHdr.set(frame, NET_HDR_BYTES);
    this.inbound.push(withHdr);
    const cb = this.waiting;
    this.waiting = undefined;
    cb?.();
  }
}

/**
 * A backend that queues frames as the TAP's writer thread does (NetBackend.writeWith): the device fills the frame's
 * place in its queue directly. The place holds junk before each fill, and a frame the device abandons is not sent.
 */
class QueueBackend extends FakeBackend {
  private readonly slot = new Uint8Array(70000);
  fills = 0;
  override write(frame: Uint8Array): boolean { throw new Error(`write() of ${frame.length} bytes: the device should use writeWith`); }
  writeWith(length: number, fill: (into: Uint8Array) => boolean): boolean {
    this.slot.fill(0xee);
    this.fills++;
    const into = this.slot.subarray(0, length);
    if (!fill(into)) return false;
    this.sent.push(Uint8Array.from(into));
    return true;
  }
}

function ethFrame(dst: Uint8Array, src: Uint8Array, type: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0); f.set(src, 6);
  f[12] = type >> 8; f[13] = type & 0xff;
  f.set(payload, 14);
  return f;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

test('configuration: MAC, link up, features offered (mergeable buffers; no offloads without an offload backend)', () => {
  const backend = new FakeBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  try {
    const f = b.deviceFeatures();
    assert.ok(f & (1n << VIRTIO_NET_F_MAC));
    assert.ok(f & (1n << VIRTIO_NET_F_STATUS));
    assert.ok(f & (1n << VIRTIO_NET_F_MRG_RXBUF));
    for (const off of [VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM]) assert.equal(f & (1n << off), 0n);
    const mac = Array.from({ length: 6 }, (_, i) => b.mmio.read(b.caps.device + i, 1));
    assert.equal(formatMac(Uint8Array.from(mac)), '52:54:00:12:34:56');
    assert.equal(b.mmio.read(b.caps.device + 6, 2), 1, 'VIRTIO_NET_S_LINK_UP');
    b.bringUp({ msix: true });
    assert.equal(b.r(0x12, 2), 2, 'receiveq1 and transmitq1 only');
    b.irqs.msis = [];
    const gen = b.r(0x15, 1);
    net.setLinkUp(false);
    assert.equal(b.mmio.read(b.caps.device + 6, 2), 0);
    assert.notEqual(b.r(0x15, 1), gen, 'config generation moved');
    assert.ok(b.irqs.msis.some((m) => m.data === 0x40), 'configuration interrupt');
    net.setLinkUp(true);
    assert.equal(b.mmio.read(b.caps.device + 6, 2), 1);
  } finally { b.close(); }
  assert.ok(backend.closed, 'close() closes the backend');
});

for (const [kind, Backend] of [['', FakeBackend], [' (a queueing backend, filled in place)', QueueBackend]] as const) {
test(`transmit: header stripped and zeroed, frame reaches the backend whole, split over descriptors${kind}`, () => {
  const backend = new Backend();
  const b = new TestBench(new VirtioNet(backend, MAC));
  try {
    b.bringUp({ msix: true });
    const payload = Uint8Array.from({ length: 100 }, (_, i) => i);
    const frame = ethFrame(new Uint8Array(6).fill(0xff), MAC, 0x0806, payload);
    // Header and frame in one buffer.
    const one = b.alloc(NET_HDR_BYTES + frame.length);
    b.mem.write(one + NET_HDR_BYTES, frame);
    b.addChain(TX_QUEUE, [[one, NET_HDR_BYTES + frame.length, false]]);
    // Header alone, then the frame in two pieces.
    const h = b.alloc(NET_HDR_BYTES), p1 = b.alloc(20), p2 = b.alloc(frame.length - 20);
    b.mem.write(p1, frame.subarray(0, 20)); b.mem.write(p2, frame.subarray(20));
    b.addChain(TX_QUEUE, [[h, NET_HDR_BYTES, false], [p1, 20, false], [p2, frame.length - 20, false]]);
    assert.deepEqual(b.used(TX_QUEUE).map((u) => u.len), [0, 0]);
    assert.equal(backend.sent.length, 2);
    for (const s of backend.sent) {
      assert.ok(s.subarray(0, NET_HDR_BYTES).every((x) => x === 0), 'zero header to the host');
      assert.deepEqual(s.subarray(NET_HDR_BYTES), frame);
    }
    assert.equal(b.fn.device instanceof VirtioNet && b.fn.device.counters.txFrames, 2);
  } finally { b.close(); }
});

test(`transmit: runts, giants, checksum or GSO requests that were not negotiated are dropped, not sent${kind}`, () => {
  const backend = new Backend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true });
    const buf = b.alloc(NET_HDR_BYTES + 70000);
    b.addChain(TX_QUEUE, [[buf, NET_HDR_BYTES + 10, false]]); // shorter than an Ethernet header
    b.addChain(TX_QUEUE, [[buf, NET_HDR_BYTES + 65536, false]]); // beyond the largest frame
    b.mem.low[buf] = 1; // NEEDS_CSUM
    b.addChain(TX_QUEUE, [[buf, NET_HDR_BYTES + 60, false]]);
    b.mem.low[buf] = 0; b.mem.low[buf + 1] = 1; // GSO_TCPV4
    b.addChain(TX_QUEUE, [[buf, NET_HDR_BYTES + 60, false]]);
    assert.equal(b.used(TX_QUEUE).length, 4, 'every chain is returned');
    assert.equal(backend.sent.length, 0);
    assert.equal(net.counters.txDropped, 4);
    assert.equal(b.status & NEEDS_RESET, 0, 'bad frames are not a reset');
    if (backend instanceof QueueBackend) assert.equal(backend.fills, 3, 'all but the runt were filled (the header is checked in the copy), then abandoned');
  } finally { b.close(); }
});
}

test('receive without MRG_RXBUF: frames wait in the backend until buffers are posted, then fill them with a clean header', async () => {
  const backend = new FakeBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true, features: b.deviceFeatures() & ~(1n << VIRTIO_NET_F_MRG_RXBUF) });
    const f1 = ethFrame(MAC, Uint8Array.of(2, 0, 0, 0, 0, 1), 0x0800, new Uint8Array(46).fill(7));
    const f2 = ethFrame(MAC, Uint8Array.of(2, 0, 0, 0, 0, 1), 0x0800, new Uint8Array(1486).fill(9));
    backend.deliver(f1);
    backend.deliver(f2);
    await tick();
    assert.equal(backend.inbound.length, 2, 'nothing read while no receive buffer is posted');
    // Post two buffers the way Linux does without MRG_RXBUF: header and data in one writable buffer.
    const r1 = b.alloc(NET_HDR_BYTES + 1518), r2 = b.alloc(NET_HDR_BYTES + 1518);
    b.mem.low.fill(0xee, r1, r1 + NET_HDR_BYTES);
    b.addChain(RX_QUEUE, [[r1, NET_HDR_BYTES + 1518, true]]);
    b.addChain(RX_QUEUE, [[r2, NET_HDR_BYTES + 1518, true]]);
    const used = b.used(RX_QUEUE);
    assert.deepEqual(used.map((u) => u.len), [NET_HDR_BYTES + f1.length, NET_HDR_BYTES + f2.length]);
    assert.deepEqual(b.mem.read(r1, NET_HDR_BYTES), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0), 'flags 0, GSO none, num_buffers 1');
    assert.deepEqual(b.mem.read(r1 + NET_HDR_BYTES, f1.length), f1);
    assert.deepEqual(b.mem.read(r2 + NET_HDR_BYTES, f2.length), f2);
    assert.ok(b.irqs.msis.some((m) => m.data === 0x41), 'receive queue interrupt (vector 1)');
    // A buffer posted with nothing waiting: the device waits for the backend.
    const r3 = b.alloc(NET_HDR_BYTES + 1518);
    b.addChain(RX_QUEUE, [[r3, NET_HDR_BYTES + 1518, true]]);
    assert.equal(b.used(RX_QUEUE).length, 0);
    assert.ok(backend.waiting, 'waiting for the backend to become readable');
    backend.deliver(f1);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + f1.length]);
    // A frame larger than the buffer posted for it is dropped; the buffer comes back empty.
    const small = b.alloc(64);
    b.addChain(RX_QUEUE, [[small, 64, true]]);
    backend.deliver(f2);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [0]);
    assert.equal(net.counters.rxDropped, 1);
    assert.equal(net.counters.rxFrames, 3);
    // Link down: nothing is received.
    net.setLinkUp(false);
    b.addChain(RX_QUEUE, [[r3, NET_HDR_BYTES + 1518, true]]);
    backend.deliver(f1);
    await tick();
    assert.equal(b.used(RX_QUEUE).length, 0);
    net.setLinkUp(true);
    await tick();
    assert.equal(b.used(RX_QUEUE).length, 1);
  } finally { b.close(); }
});

test('a frame the host answers during the transmit write reaches the guest in the same notification', () => {
  // A host whose stack answers inside write(2), as a TAP's does (an ACK, or the segments an ACK released).
  class AnsweringBackend extends FakeBackend {
    override write(frame: Uint8Array): boolean {
      super.write(frame);
      this.inbound.push(Uint8Array.from(frame)); // echoed back, header and all (zero: nothing offloaded)
      return true;
    }
  }
  const backend = new AnsweringBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true });
    const rx = b.alloc(NET_HDR_BYTES + 1518);
    b.addChain(RX_QUEUE, [[rx, NET_HDR_BYTES + 1518, true]]);
    assert.equal(b.used(RX_QUEUE).length, 0, 'nothing to receive yet');
    const frame = ethFrame(MAC, Uint8Array.of(2, 0, 0, 0, 0, 1), 0x0800, new Uint8Array(46).fill(5));
    const tx = b.alloc(NET_HDR_BYTES + frame.length);
    b.mem.write(tx + NET_HDR_BYTES, frame);
    b.irqs.msis = [];
    b.addChain(TX_QUEUE, [[tx, NET_HDR_BYTES + frame.length, false]]);
    // No tick(): the answer was taken inside the transmit notification, not by the backend's readiness callback.
    assert.deepEqual(b.used(TX_QUEUE).map((u) => u.len), [0]);
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + frame.length]);
    assert.deepEqual(b.mem.read(rx + NET_HDR_BYTES, frame.length), frame);
    assert.ok(b.irqs.msis.some((m) => m.data === 0x41), 'receive queue interrupt (vector 1)');
    assert.equal(backend.inbound.length, 0);
    assert.deepEqual(net.counters, { rxFrames: 1, rxBytes: frame.length, rxDropped: 0, txFrames: 1, txBytes: frame.length, txDropped: 0 });
  } finally { b.close(); }
});

test('RINGZERO_NET_TX_IRQ=defer: a small frame\'s completion is published at once, its interrupt goes with the next notify or the next event-loop turn', async () => {
  const backend = new FakeBackend();
  const net = new VirtioNet(backend, MAC, undefined, 'defer');
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true }); // EVENT_IDX negotiated; the transmit queue (1) on vector 2 (MSI data 0x42)
    const txIrqs = () => b.irqs.msis.filter((m) => m.data === 0x42).length;
    const frame = ethFrame(new Uint8Array(6).fill(0xff), MAC, 0x0806, new Uint8Array(46).fill(7));
    const send = () => {
      const at = b.alloc(NET_HDR_BYTES + frame.length);
      b.mem.write(at + NET_HDR_BYTES, frame);
      b.addChain(TX_QUEUE, [[at, NET_HDR_BYTES + frame.length, false]]);
    };
    b.irqs.msis = [];
    send();
    assert.equal(backend.sent.length, 1, 'transmitted inside the notify');
    assert.equal(b.used(TX_QUEUE).length, 1, 'and published: the driver can free it without an interrupt');
    assert.equal(txIrqs(), 0, 'its interrupt waits');
    send();
    assert.equal(txIrqs(), 1, 'the next notify sends it, one for both frames');
    assert.equal(b.used(TX_QUEUE).length, 1);
    // The driver asks to hear about the next completion (used_event = used.idx, §2.7.10): a lone frame's interrupt
    // comes at the event loop's next turn.
    const usedEvent = b.queues[TX_QUEUE].layout.avail + 4 + 2 * b.queues[TX_QUEUE].layout.size;
    b.u16(usedEvent, 2);
    send();
    assert.equal(txIrqs(), 1);
    await tick();
    assert.equal(txIrqs(), 2, 'sent at the next turn of the event loop');
    // A driver that wants no interrupt (used_event far ahead) gets none, held or not.
    b.u16(usedEvent, 100);
    send();
    send();
    await tick();
    assert.equal(txIrqs(), 2);
    // A data-sized frame's completion is not held (the sender's TCP small queues wait for it).
    b.u16(usedEvent, 5);
    const big = ethFrame(new Uint8Array(6).fill(0xff), MAC, 0x0800, new Uint8Array(1000).fill(9));
    const at = b.alloc(NET_HDR_BYTES + big.length);
    b.mem.write(at + NET_HDR_BYTES, big);
    b.addChain(TX_QUEUE, [[at, NET_HDR_BYTES + big.length, false]]);
    assert.equal(txIrqs(), 3, 'sent inside the notify');
    assert.equal(backend.sent.length, 6);
    assert.equal(net.counters.txFrames, 6);
  } finally { b.close(); }
});

test('RINGZERO_NET_TX_POLL: after a notify the driver\'s notifications stay off, later frames go between slices; on again after two empty looks', () => {
  const backend = new FakeBackend();
  let look: (() => void) | undefined;
  let armed = false;
  const net = new VirtioNet(backend, MAC, undefined, 'now', (callback) => {
    look = callback;
    return { arm: () => { armed = true; }, disarm: () => { armed = false; } };
  });
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true }); // EVENT_IDX negotiated
    const availEvent = () => { const { used, size } = b.queues[TX_QUEUE].layout; return b.mem.lowView.getUint16(used + 4 + 8 * size, true); };
    // The driver's side of §2.7.10 (Linux's virtqueue_kick_prepare): kick only when the new index passes avail_event.
    const needKick = (newIdx: number, oldIdx: number) => ((newIdx - availEvent() - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    const frame = ethFrame(new Uint8Array(6).fill(0xff), MAC, 0x0800, new Uint8Array(200).fill(5));
    let idx = 0;
    const send = (f = frame) => {
      const at = b.alloc(NET_HDR_BYTES + f.length);
      b.mem.write(at + NET_HDR_BYTES, f);
      const kick = needKick(idx + 1, idx);
      b.addChain(TX_QUEUE, [[at, NET_HDR_BYTES + f.length, false]], kick);
      idx++;
      return kick;
    };
    const slice = () => { assert.ok(armed, 'a look is due'); armed = false; look!(); };
    assert.equal(send(), true, 'the first frame kicks');
    assert.equal(backend.sent.length, 1, 'sent inside the notify');
    assert.equal(b.used(TX_QUEUE).length, 1);
    assert.ok(armed, 'polling');
    assert.equal(send(), false, 'avail_event left behind: no kick');
    assert.equal(send(), false);
    assert.equal(backend.sent.length, 1, 'waiting for the next look');
    slice();
    assert.equal(backend.sent.length, 3, 'both taken between slices');
    assert.equal(b.used(TX_QUEUE).length, 2);
    slice(); // empty
    assert.ok(armed);
    slice(); // empty again: notifications on
    assert.equal(armed, false, 'polling stopped');
    assert.equal(availEvent(), 3, 'avail_event = the next index (§2.7.10)');
    assert.equal(send(), true, 'the driver kicks again');
    assert.equal(backend.sent.length, 4);
    assert.ok(armed);
    // A reset stops the polling; the device works again after it (a kick, then polling).
    b.status = 0;
    assert.equal(armed, false, 'reset: no look due');
    b.bringUp({ msix: true });
    idx = 0;
    b.queues[TX_QUEUE].nextDesc = 0;
    // An ACK-sized frame (a guest that receives) does not start the polling: the host waits for it.
    const ack = ethFrame(new Uint8Array(6).fill(0xff), MAC, 0x0800, new Uint8Array(52).fill(1));
    assert.equal(send(ack), true);
    assert.equal(backend.sent.length, 5);
    assert.equal(armed, false, 'no polling after small frames');
    assert.equal(availEvent(), 1, 'notifications on at once');
    assert.equal(send(ack), true, 'the next ACK kicks');
    assert.equal(send(), true);
    assert.equal(backend.sent.length, 7);
    assert.ok(armed, 'a data frame starts it');
    assert.equal(net.counters.txFrames, 7);
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('RINGZERO_NET_TX_IRQ=rx: a completion\'s interrupt waits only when the same notify interrupted for a received answer, and goes if still wanted', async () => {
  // The host answers every frame inside write(2) while `answer` is set (an ACK to a data segment, as a TAP's stack does).
  class AnsweringBackend extends FakeBackend {
    answer = true;
    override write(frame: Uint8Array): boolean {
      super.write(frame);
      if (this.answer) this.inbound.push(Uint8Array.from(frame));
      return true;
    }
  }
  const backend = new AnsweringBackend();
  const net = new VirtioNet(backend, MAC, undefined, 'rx');
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true }); // EVENT_IDX; receive queue on vector 1 (MSI data 0x41), transmit on vector 2 (0x42)
    const rxIrqs = () => b.irqs.msis.filter((m) => m.data === 0x41).length;
    const txIrqs = () => b.irqs.msis.filter((m) => m.data === 0x42).length;
    const txUsedEvent = b.queues[TX_QUEUE].layout.avail + 4 + 2 * b.queues[TX_QUEUE].layout.size;
    const rxUsedEvent = b.queues[RX_QUEUE].layout.avail + 4 + 2 * b.queues[RX_QUEUE].layout.size;
    // A receive buffer posted, and the driver (its NAPI poll done) asking to hear of the next receive completion.
    const postRx = () => {
      const at = b.alloc(NET_HDR_BYTES + 1518);
      b.u16(rxUsedEvent, b.mem.lowView.getUint16(b.queues[RX_QUEUE].layout.used + 2, true)); // used_event = used.idx
      b.addChain(RX_QUEUE, [[at, NET_HDR_BYTES + 1518, true]]);
    };
    const send = (payload: number) => {
      const frame = ethFrame(MAC, Uint8Array.of(2, 0, 0, 0, 0, 1), 0x0800, new Uint8Array(payload).fill(5));
      const at = b.alloc(NET_HDR_BYTES + frame.length);
      b.mem.write(at + NET_HDR_BYTES, frame);
      b.addChain(TX_QUEUE, [[at, NET_HDR_BYTES + frame.length, false]]);
    };
    b.irqs.msis = [];
    // Nothing received (the host did not answer): the interrupt goes inside the notify, as without the switch (the
    // queue's first completion is always signalled, §2.7.10 as QEMU reads it).
    backend.answer = false;
    send(46);
    assert.equal(txIrqs(), 1, 'sent inside the notify');
    // A data-sized frame whose answer is received in the same notify: the receive interrupt goes, the transmit one waits.
    backend.answer = true;
    b.u16(txUsedEvent, 1); // the driver wants to hear of the next completion
    postRx();
    send(1400);
    assert.equal(b.used(TX_QUEUE).length, 2, 'transmitted and published inside the notify');
    assert.equal(b.used(RX_QUEUE).length, 1, 'the answer received inside it');
    assert.equal(rxIrqs(), 1);
    assert.equal(txIrqs(), 1, 'held');
    // The driver's receive poll frees the transmit buffer and asks for the next completion (used_event = used.idx):
    // at the next turn the held interrupt is no longer wanted.
    b.u16(txUsedEvent, 2);
    await tick();
    assert.equal(txIrqs(), 1, 'not wanted any more: not sent');
    // Held again, and this time the driver did not look (used_event stays at 2, passed by the third completion).
    postRx();
    send(46);
    assert.equal(rxIrqs(), 2);
    assert.equal(txIrqs(), 1);
    await tick();
    assert.equal(txIrqs(), 2, 'sent at the next turn of the event loop');
    // A held interrupt goes with the next notify that receives nothing, once for both completions.
    b.u16(txUsedEvent, 3);
    postRx();
    send(46);
    assert.equal(rxIrqs(), 3);
    assert.equal(txIrqs(), 2, 'held');
    backend.answer = false;
    send(46);
    assert.equal(txIrqs(), 3, 'the held interrupt goes with this notify');
    await tick();
    assert.equal(txIrqs(), 3, 'and not again');
    assert.equal(net.counters.txFrames, 5);
    assert.equal(net.counters.rxFrames, 3);
  } finally { b.close(); }
});

// ---- a real TAP device in a throw-away network namespace ----

function run(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** iputils ping, or busybox's. */
function pingCommand(): string[] {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (existsSync(`${dir}/ping`)) return [`${dir}/ping`];
  }
  return ['busybox', 'ping'];
}

function tapSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (CAP_NET_ADMIN) for a TAP device and a network namespace';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun on this host';
  try { run('ip', '-V'); } catch { return 'no iproute2 (ip) on this host'; }
  try { run(...pingCommand() as [string, ...string[]], '-c', '1', '-W', '1', '127.0.0.1'); } catch { return 'no ping (iputils or busybox) on this host'; }
  return undefined;
}

const tapSkip = tapSkipReason();
if (tapSkip) process.stderr.write(`virtio-net TAP test skipped: ${tapSkip}\n`);

for (const threaded of [false, true]) test(`a real TAP device${threaded ? ', its writes on a thread (RINGZERO_NET_TX_THREAD)' : ''}: ARP and ping both ways with the host kernel in a private network namespace`, { skip: tapSkip }, async () => {
  const ns = `rz-nettest-${process.pid}${threaded ? 't' : ''}`;
  const ifname = `rzt${process.pid % 100000}${threaded ? 't' : ''}`;
  run('ip', 'netns', 'add', ns);
  after(() => { try { run('ip', 'netns', 'del', ns); } catch { /* already gone */ } });
  // Created by this process (non-persistent: it goes away with the fd), then moved into the namespace;
  // the TAP fd stays attached across the move. Threaded, every frame goes through the thread (no direct writes).
  const tap = new Tap(ifname, { writerThread: threaded, writerDirectMax: 0 });
  const net = new VirtioNet(tap, MAC);
  const b = new TestBench(net);
  try {
    run('ip', 'link', 'set', ifname, 'netns', ns);
    run('ip', '-n', ns, 'addr', 'add', '10.0.2.1/24', 'dev', ifname);
    run('ip', '-n', ns, 'link', 'set', ifname, 'up');
    const hostMac = parseMac(run('ip', 'netns', 'exec', ns, 'cat', `/sys/class/net/${ifname}/address`).trim())!;
    b.bringUp({ msix: true });
    const RX_BUFFERS = 16;
    const rx = Array.from({ length: RX_BUFFERS }, () => b.alloc(NET_HDR_BYTES + 1518));
    const post = (i: number) => b.addChain(RX_QUEUE, [[rx[i], NET_HDR_BYTES + 1518, true]]);
    for (let i = 0; i < RX_BUFFERS; i++) post(i);
    const send = (frame: Uint8Array) => {
      const t = b.alloc(NET_HDR_BYTES + frame.length);
      b.mem.write(t + NET_HDR_BYTES, frame);
      b.addChain(TX_QUEUE, [[t, NET_HDR_BYTES + frame.length, false]]);
      b.used(TX_QUEUE);
    };
    const received: Uint8Array[] = [];
    const waitFor = async (what: string, match: (f: Uint8Array) => boolean): Promise<Uint8Array> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        for (const u of b.used(RX_QUEUE)) {
          // addChain used one descriptor per chain, so the head is the slot: map it back to its buffer.
          const i = u.id % RX_BUFFERS;
          received.push(b.mem.read(rx[i] + NET_HDR_BYTES, u.len - NET_HDR_BYTES));
          post(i);
        }
        const at = received.findIndex(match);
        if (at >= 0) return received.splice(at, 1)[0];
        if (Date.now() > deadline) throw new Error(`no ${what} within 5 s (${received.length} other frames: ${received.map((f) => Buffer.from(f.subarray(0, 42)).toString("hex")).join(" ")})`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const GUEST_IP = [10, 0, 2, 15], HOST_IP = [10, 0, 2, 1];
    const arpFrame = (op: number, dstMac: Uint8Array, targetMac: Uint8Array, targetIp: number[]) => {
      const arp = new Uint8Array(28);
      arp.set([0, 1, 8, 0, 6, 4, 0, op], 0); // Ethernet/IPv4, RFC 826
      arp.set(MAC, 8); arp.set(GUEST_IP, 14);
      arp.set(targetMac, 18); arp.set(targetIp, 24);
      return ethFrame(dstMac, MAC, 0x0806, arp);
    };
    const isArp = (op: number, targetIp: number[]) => (f: Uint8Array) =>
      f[12] === 0x08 && f[13] === 0x06 && f[21] === op && f.subarray(38, 42).every((x, i) => x === targetIp[i]);

    // Guest -> host: "who has 10.0.2.1? tell 10.0.2.15"; the host kernel answers.
    send(arpFrame(1, new Uint8Array(6).fill(0xff), new Uint8Array(6), HOST_IP));
    const reply = await waitFor('ARP reply from the host', isArp(2, GUEST_IP));
    assert.deepEqual(reply.subarray(0, 6), MAC, 'sent to our MAC');
    assert.deepEqual(reply.subarray(6, 12), hostMac, 'from the TAP\'s MAC');
    assert.deepEqual(reply.subarray(28, 32), Uint8Array.from(HOST_IP));

    // Host -> guest: ping 10.0.2.15 from the namespace; this test plays the guest's IP stack.
    const { spawn } = await import('node:child_process');
    const ping = spawn('ip', ['netns', 'exec', ns, ...pingCommand(), '-c', '1', '-W', '5', '10.0.2.15'], { stdio: 'ignore' });
    const pingDone = new Promise<number | null>((resolve) => ping.on('exit', resolve));
    // The host may still know our MAC from the exchange above; answer its ARP request if it asks.
    const isEcho = (f: Uint8Array) => f[12] === 0x08 && f[13] === 0x00 && f[23] === 1 && f[34] === 8;
    let echo = await waitFor('ICMP echo request or ARP request', (f) => isEcho(f) || isArp(1, GUEST_IP)(f));
    if (!isEcho(echo)) {
      send(arpFrame(2, echo.subarray(6, 12), echo.subarray(6, 12), HOST_IP));
      echo = await waitFor('ICMP echo request', isEcho);
    }
    // Echo reply (RFC 792): swap MACs and IPs, type 0, fix the ICMP checksum (type went 8 -> 0).
    const out = Uint8Array.from(echo);
    out.set(echo.subarray(6, 12), 0); out.set(MAC, 6);
    out.set(echo.subarray(30, 34), 26); out.set(echo.subarray(26, 30), 30);
    out[34] = 0;
    let sum = ((out[36] << 8) | out[37]) + 0x0800;
    sum = (sum & 0xffff) + (sum >> 16);
    out[36] = sum >> 8; out[37] = sum & 0xff;
    send(out);
    assert.equal(await pingDone, 0, 'ping in the namespace got its reply');
    assert.equal(net.counters.txDropped, 0);
    assert.ok(net.counters.rxFrames >= 2 && net.counters.txFrames >= 2);
    if (threaded) assert.ok(tap.writer!.counters.queued >= 2 && tap.writer!.counters.direct === 0);
  } finally {
    b.close();
  }
});

test('hostile rings: wrong-direction buffers, buffers in the MMIO hole; a reset and the device works again', async () => {
  const backend = new FakeBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  const frame = ethFrame(MAC, Uint8Array.of(2, 0, 0, 0, 0, 1), 0x0800, new Uint8Array(46));
  const works = async () => {
    b.bringUp({ msix: true });
    const r = b.alloc(NET_HDR_BYTES + 1518);
    b.addChain(RX_QUEUE, [[r, NET_HDR_BYTES + 1518, true]]);
    backend.deliver(frame);
    await tick();
    assert.equal(b.used(RX_QUEUE).length, 1, 'receives after the reset');
    assert.equal(b.status & NEEDS_RESET, 0);
  };
  try {
    const attacks: [string, () => void][] = [
      ['device-writable transmit buffer', () => { const t = b.alloc(64); b.addChain(TX_QUEUE, [[t, 64, true]]); }],
      ['device-readable receive buffer', () => { const r = b.alloc(2000); b.addChain(RX_QUEUE, [[r, 2000, false]]); backend.deliver(frame); }],
      ['transmit buffer in the MMIO hole', () => b.addChain(TX_QUEUE, [[0xfee0_0000, 64, false]])],
      ['receive buffer past the end of RAM', () => { b.addChain(RX_QUEUE, [[64 * 1024 * 1024 - 8, 2000, true]]); backend.deliver(frame); }],
    ];
    for (const [name, attack] of attacks) {
      b.bringUp({ msix: true });
      b.irqs.msis = [];
      assert.doesNotThrow(attack, name);
      await tick();
      assert.ok(b.status & NEEDS_RESET, `${name}: DEVICE_NEEDS_RESET (${b.fn.lastError})`);
      assert.ok(b.irqs.msis.some((m) => m.data === 0x40), `${name}: configuration interrupt`);
      backend.inbound = [];
      await works();
    }
    // A storm of kicks with nothing posted stays cheap and harmless.
    const start = Date.now();
    for (let i = 0; i < 50_000; i++) { b.kick(RX_QUEUE); b.kick(TX_QUEUE); }
    assert.ok(Date.now() - start < 2000);
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('TAP: attach again at once after close (a VM restarted on guest reboot); a TAP in use is refused', { skip: tapSkip }, () => {
  // A persistent TAP, as `ip tuntap add` makes for users; no address, deleted at the end.
  const name = `rzr${process.pid % 100000}`;
  run('ip', 'tuntap', 'add', 'dev', name, 'mode', 'tap');
  try {
    for (let i = 0; i < 10; i++) {
      const tap = new Tap(name);
      tap.whenReadable(() => {}); // a poll pending on the worker pool, as while a guest runs
      tap.close();
    }
    const held = new Tap(name);
    try {
      assert.throws(() => new Tap(name), /cannot attach to TAP .* \(EBUSY\): another process has it open/);
    } finally { held.close(); }
    assert.throws(() => new Tap('bad/name'), /invalid TAP interface name/);
  } finally {
    run('ip', 'tuntap', 'del', 'dev', name, 'mode', 'tap');
  }
});
