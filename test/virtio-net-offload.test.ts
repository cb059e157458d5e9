// virtio-net's receive checksum offload (GUEST_CSUM): offered only with a backend that can be told what to hand
// over, the backend told exactly what the driver negotiated (and nothing after a reset), the host's checksum flags
// and offsets passed to a guest that negotiated it and zeroed for one that did not, GSO frames (never asked for)
// dropped instead of delivered wrong, a backend that refuses handled. As root with /dev/net/tun, the TAP's
// TUNSETOFFLOAD itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { TestBench } from './support/virtio-driver.ts';
import {
  VirtioNet, NET_HDR_BYTES, RX_QUEUE, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_GUEST_UFO,
  VIRTIO_NET_F_HOST_UFO, TX_QUEUE, parseNetFeatures, OFFLOAD_CSUM, OFFLOAD_TSO4, OFFLOAD_TSO6, parseMac, type NetBackend,
} from '../src/devices/virtio/net.ts';
import { VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX } from '../src/devices/virtio/device.ts';
import { Tap, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../src/net/tap.ts';

const MAC = parseMac('52:54:00:12:34:56')!;
const NEEDS_RESET = 0x40;
const bit = (n: bigint) => 1n << n;
const BASE = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS);

/** A backend that can be told what to hand over, and records it. */
class OffloadBackend implements NetBackend {
  inbound: Uint8Array[] = [];
  offloads: number[] = [];
  refuse = false;
  waiting: (() => void) | undefined;
  read(into: Uint8Array): number | undefined {
    const f = this.inbound.shift();
    if (!f) return undefined;
    into.set(f.subarray(0, Math.min(f.length, into.length)));
    return Math.min(f.length, into.length);
  }
  sent: Uint8Array[] = [];
  write(frame: Uint8Array): boolean { this.sent.push(Uint8Array.from(frame)); return true; }
  whenReadable(cb: () => void): void { this.waiting = cb; }
  close(): void {}
  setOffload(flags: number): void {
    if (this.refuse && flags !== 0) throw new Error('EINVAL');
    this.offloads.push(flags);
  }
  /** The host hands over a frame with this header (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset). */
  deliver(frameBytes: number, hdr: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number } = {}): Uint8Array {
    const f = new Uint8Array(NET_HDR_BYTES + frameBytes);
    const v = new DataView(f.buffer);
    f[0] = hdr.flags ?? 0; f[1] = hdr.gsoType ?? 0;
    v.setUint16(2, hdr.hdrLen ?? 0, true); v.setUint16(4, hdr.gsoSize ?? 0, true);
    v.setUint16(6, hdr.csumStart ?? 0, true); v.setUint16(8, hdr.csumOffset ?? 0, true);
    f[10] = 0x77; f[11] = 0x77; // junk num_buffers: the device sets it
    for (let i = 0; i < frameBytes; i++) f[NET_HDR_BYTES + i] = (i * 7) & 0xff;
    this.inbound.push(f);
    const cb = this.waiting;
    this.waiting = undefined;
    cb?.();
    return f;
  }
}

const tick = () => new Promise<void>((r) => setImmediate(r));
/** A receive chain of the header and 17 pages (as Linux's "big packets" mode posts them, §5.1.6.3.1). */
function postBig(b: TestBench): number {
  const at = b.alloc(NET_HDR_BYTES + 17 * 4096, 4096);
  b.addChain(RX_QUEUE, [[at, NET_HDR_BYTES, true], [at + NET_HDR_BYTES, 17 * 4096, true]]);
  return at;
}

test('offloads are offered only with a backend that can be told about them', () => {
  const plain: NetBackend = { read: () => undefined, write: () => true, whenReadable: () => {}, close: () => {} };
  const b1 = new TestBench(new VirtioNet(plain, MAC));
  const b2 = new TestBench(new VirtioNet(new OffloadBackend(), MAC));
  try {
    assert.equal(b1.deviceFeatures() & bit(VIRTIO_NET_F_GUEST_CSUM), 0n);
    for (const x of [VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6]) {
      assert.equal(b1.deviceFeatures() & bit(x), 0n, `feature ${x} not offered on a plain backend`);
    }
    const f2 = b2.deviceFeatures();
    for (const x of [VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MRG_RXBUF]) {
      assert.notEqual(f2 & bit(x), 0n, `feature ${x} offered`);
    }
    // ECN and UFO are not implemented, so never offered.
    for (const x of [VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_UFO]) assert.equal(f2 & bit(x), 0n);
  } finally { b1.close(); b2.close(); }
});

test('GUEST_CSUM: the backend is told, checksum flags and offsets reach the guest; GSO frames are dropped', async () => {
  const backend = new OffloadBackend();
  const b = new TestBench(new VirtioNet(backend, MAC));
  try {
    b.bringUp({ msix: true, features: BASE | bit(VIRTIO_NET_F_GUEST_CSUM) });
    assert.deepEqual(backend.offloads, [0, OFFLOAD_CSUM], 'none at the driver\'s reset, then the checksum at DRIVER_OK');
    const small = () => { const at = b.alloc(NET_HDR_BYTES + 1518); b.addChain(RX_QUEUE, [[at, NET_HDR_BYTES + 1518, true]]); return at; };
    const at = small();
    const frame = backend.deliver(1514, { flags: 1 | 0x80, csumStart: 34, csumOffset: 16 });
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + 1514]);
    assert.deepEqual(Array.from(b.mem.read(at, NET_HDR_BYTES)), [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 1, 0],
      'NEEDS_CSUM kept (undefined flag bits cleared), checksum offsets, num_buffers 1');
    assert.deepEqual(b.mem.read(at + NET_HDR_BYTES, 1514), frame.subarray(NET_HDR_BYTES));
    // DATA_VALID passes too (the host verified the checksum).
    const at2 = small();
    backend.deliver(1514, { flags: 2 });
    await tick();
    assert.equal(b.used(RX_QUEUE).length, 1);
    assert.equal(b.mem.read(at2, 1)[0], 2);
    // A GSO frame, even one that fits, was never asked for (no GUEST_TSO4): dropped without using the buffer,
    // which the next frame gets.
    const big = postBig(b);
    backend.deliver(9000, { flags: 1, gsoType: 1, gsoSize: 1448 });
    await tick();
    assert.deepEqual(b.used(RX_QUEUE), []);
    const net = b.fn.device as VirtioNet;
    assert.equal(net.counters.rxDropped, 1);
    backend.deliver(600, { flags: 2 });
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + 600]);
    assert.equal(b.mem.read(big, 1)[0], 2);
    assert.equal(b.status & NEEDS_RESET, 0);
    // A reset takes the offload back before the next driver comes.
    b.status = 0;
    assert.deepEqual(backend.offloads.at(-1), 0);
  } finally { b.close(); }
});

test('without GUEST_CSUM the backend hands over plain frames only, headers are zeroed, GSO leftovers are dropped', async () => {
  const backend = new OffloadBackend();
  const b = new TestBench(new VirtioNet(backend, MAC));
  try {
    b.bringUp({ msix: true, features: BASE });
    assert.deepEqual(backend.offloads, [0, 0]);
    const small = () => { const at = b.alloc(NET_HDR_BYTES + 1518); b.addChain(RX_QUEUE, [[at, NET_HDR_BYTES + 1518, true]]); return at; };
    const r1 = small();
    backend.deliver(1514, { flags: 2 }); // DATA_VALID is meaningless to this guest: zeroed
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + 1514]);
    assert.deepEqual(Array.from(b.mem.read(r1, NET_HDR_BYTES)), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    small();
    backend.deliver(1514, { gsoType: 1, gsoSize: 1448 }); // a TCP segment left in the TAP from an earlier driver
    await tick();
    assert.deepEqual(b.used(RX_QUEUE), [], 'dropped without using a buffer');
    assert.equal((b.fn.device as VirtioNet).counters.rxDropped, 1);
  } finally { b.close(); }
});

test('a backend that refuses the offloads: plain frames, and the device keeps working', async () => {
  const backend = new OffloadBackend();
  backend.refuse = true;
  const b = new TestBench(new VirtioNet(backend, MAC));
  try {
    b.bringUp({ msix: true, features: BASE | bit(VIRTIO_NET_F_GUEST_CSUM) });
    assert.deepEqual(backend.offloads, [0, 0], 'fell back to none');
    assert.equal(b.status & NEEDS_RESET, 0);
    const at = postBig(b);
    backend.deliver(1514);
    await tick();
    assert.deepEqual(b.used(RX_QUEUE).map((u) => u.len), [NET_HDR_BYTES + 1514]);
    assert.equal(b.mem.read(at + 10, 1)[0], 1, 'num_buffers');
  } finally { b.close(); }
});

/** A transmit header (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers) and frame. */
function txFrame(frameBytes: number, hdr: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number; numBuffers?: number } = {}): Uint8Array {
  const f = new Uint8Array(NET_HDR_BYTES + frameBytes);
  const v = new DataView(f.buffer);
  f[0] = hdr.flags ?? 0; f[1] = hdr.gsoType ?? 0;
  v.setUint16(2, hdr.hdrLen ?? 0, true); v.setUint16(4, hdr.gsoSize ?? 0, true);
  v.setUint16(6, hdr.csumStart ?? 0, true); v.setUint16(8, hdr.csumOffset ?? 0, true);
  v.setUint16(10, hdr.numBuffers ?? 0, true);
  for (let i = 0; i < frameBytes; i++) f[NET_HDR_BYTES + i] = (i * 5 + 1) & 0xff;
  return f;
}

const ALL_TX = BASE | bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6);

test('CSUM and HOST_TSO4/6: the guest\'s checksum and segmentation requests reach the backend, checked and cleaned', () => {
  const backend = new OffloadBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  try {
    b.bringUp({ msix: true, features: ALL_TX });
    const send = (f: Uint8Array) => {
      const at = b.alloc(f.length);
      b.mem.write(at, f);
      b.addChain(TX_QUEUE, [[at, f.length, false]]);
    };
    // A partial TCP checksum (§5.1.6.2 point 3: csum_start 34, csum_offset 16); DATA_VALID and an unknown flag from
    // the guest are cleared, hdr_len/gso_size without GSO and num_buffers zeroed.
    send(txFrame(1514, { flags: 1 | 2 | 0x40, hdrLen: 54, gsoSize: 9, csumStart: 34, csumOffset: 16, numBuffers: 3 }));
    // A 64 KiB-class TCPv4 segment and a TCPv6 one, passed whole with their GSO fields.
    send(txFrame(30000, { flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 }));
    send(txFrame(65535 + 14, { flags: 1, gsoType: 4, hdrLen: 86, gsoSize: 1428, csumStart: 54, csumOffset: 16 }));
    // A plain frame: header all zero to the host.
    send(txFrame(60, { flags: 2, csumStart: 7, csumOffset: 7 }));
    assert.equal(backend.sent.length, 4);
    const hdr = (i: number) => Array.from(backend.sent[i].subarray(0, NET_HDR_BYTES));
    assert.deepEqual(hdr(0), [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0]);
    assert.deepEqual(hdr(1), [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
    assert.deepEqual(hdr(2), [1, 4, 86, 0, 0x94, 0x05, 54, 0, 16, 0, 0, 0]);
    assert.deepEqual(hdr(3), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(backend.sent[1].subarray(NET_HDR_BYTES), txFrame(30000).subarray(NET_HDR_BYTES), 'the frame itself untouched');
    assert.equal(backend.sent[2].length, NET_HDR_BYTES + 65535 + 14);
    assert.equal(net.counters.txFrames, 4);
    assert.equal(net.counters.txDropped, 0);
    // What the negotiated features do not cover, or offsets that lie, is dropped (and counted), never sent.
    const bad: [string, Uint8Array][] = [
      ['checksum beyond the frame', txFrame(100, { flags: 1, csumStart: 90, csumOffset: 9 })],
      ['GSO without NEEDS_CSUM', txFrame(3000, { gsoType: 1, gsoSize: 1448 })],
      ['GSO with gso_size 0', txFrame(3000, { flags: 1, gsoType: 1, csumStart: 34, csumOffset: 16 })],
      ['UDP fragmentation (UFO, not offered)', txFrame(3000, { flags: 1, gsoType: 3, gsoSize: 1472, csumStart: 34, csumOffset: 6 })],
      ['TCP with ECN (HOST_ECN, not offered)', txFrame(3000, { flags: 1, gsoType: 0x81, gsoSize: 1448, csumStart: 34, csumOffset: 16 })],
      ['an unknown GSO type', txFrame(3000, { flags: 1, gsoType: 5, gsoSize: 1448, csumStart: 34, csumOffset: 16 })],
      ['a plain frame past 65535 bytes', txFrame(65536)],
    ];
    for (const [, f] of bad) send(f);
    assert.equal(backend.sent.length, 4, bad.map(([n]) => n).join(', '));
    assert.equal(net.counters.txDropped, bad.length);
    assert.equal(b.used(TX_QUEUE).length, 4 + bad.length, 'every chain returned');
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('transmit offloads follow what was negotiated: TSO6 without TSO4, TSO without CSUM, nothing at all', () => {
  for (const [features, gsoType, expectSent] of [
    [BASE | bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO6), 1, false],
    [BASE | bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO6), 4, true],
    // A driver breaking §5.1.3.1 (TSO accepted without CSUM): no segmentation, and no checksum either.
    [BASE | bit(VIRTIO_NET_F_HOST_TSO4), 1, false],
    [BASE, 4, false],
  ] as const) {
    const backend = new OffloadBackend();
    const b = new TestBench(new VirtioNet(backend, MAC));
    try {
      b.bringUp({ msix: true, features });
      const f = txFrame(5000, { flags: 1, gsoType, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
      const at = b.alloc(f.length);
      b.mem.write(at, f);
      b.addChain(TX_QUEUE, [[at, f.length, false]]);
      assert.equal(backend.sent.length, expectSent ? 1 : 0, `features ${features.toString(16)}, gso_type ${gsoType}`);
    } finally { b.close(); }
  }
});

test('GUEST_TSO4/6 with MRG_RXBUF: the TAP is asked for TCP segments, which reach the guest whole over mergeable buffers', async () => {
  const backend = new OffloadBackend();
  const net = new VirtioNet(backend, MAC);
  const b = new TestBench(net);
  try {
    const features = BASE | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    b.bringUp({ msix: true, features });
    assert.deepEqual(backend.offloads.at(-1), OFFLOAD_CSUM | OFFLOAD_TSO4, 'checksum and TSO4, not TSO6');
    const bufs: number[] = [];
    for (let i = 0; i < 40; i++) { const at = b.alloc(4096); bufs.push(at); b.addChain(RX_QUEUE, [[at, 4096, true]]); }
    const sent = backend.deliver(60000, { flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    await tick();
    const used = b.used(RX_QUEUE);
    const need = Math.ceil((NET_HDR_BYTES + 60000) / 4096);
    assert.equal(used.length, need);
    assert.ok(used.slice(0, -1).every((u) => u.len === 4096));
    assert.deepEqual(Array.from(b.mem.read(bufs[0], NET_HDR_BYTES)), [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, need, 0],
      'NEEDS_CSUM, GSO TCPv4, hdr_len, gso_size, checksum offsets, num_buffers');
    const joined = new Uint8Array(used.reduce((n, u) => n + u.len, 0));
    let o = 0;
    for (const u of used) { joined.set(b.mem.read(bufs[u.id], u.len), o); o += u.len; }
    assert.deepEqual(joined.subarray(NET_HDR_BYTES), sent.subarray(NET_HDR_BYTES));
    // TCPv6 (not negotiated) and ECN segments (GUEST_ECN not offered) are dropped without using a buffer.
    backend.deliver(3000, { flags: 1, gsoType: 4, gsoSize: 1428, csumStart: 54, csumOffset: 16 });
    backend.deliver(3000, { flags: 1, gsoType: 0x81, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    await tick();
    assert.deepEqual(b.used(RX_QUEUE), []);
    assert.equal(net.counters.rxDropped, 2);
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('RINGZERO_NET_FEATURES narrows the offer; an unknown name is refused with the known ones', () => {
  const offered = (text: string | undefined) => {
    const b = new TestBench(new VirtioNet(new OffloadBackend(), MAC, parseNetFeatures(text)));
    try { return b.deviceFeatures(); } finally { b.close(); }
  };
  const none = offered('none');
  for (const x of [VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_CSUM]) assert.equal(none & bit(x), 0n);
  assert.notEqual(none & bit(VIRTIO_NET_F_MAC), 0n);
  const csumOnly = offered('guest_csum');
  assert.notEqual(csumOnly & bit(VIRTIO_NET_F_GUEST_CSUM), 0n);
  for (const x of [VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_CSUM]) assert.equal(csumOnly & bit(x), 0n);
  // A dependent feature alone is not offered without what it needs (§5.1.3.1).
  const tsoAlone = offered('guest_tso,host_tso');
  for (const x of [VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4]) assert.equal(tsoAlone & bit(x), 0n);
  assert.equal(offered(undefined), offered('mrg_rxbuf,guest_csum,guest_tso,csum,host_tso'));
  assert.throws(() => parseNetFeatures('mrg_rxbuf,tso'), /unknown feature 'tso' \(known: mrg_rxbuf, guest_csum, guest_tso, csum, host_tso, or none\)/);
});

const tapSkip = process.getuid?.() !== 0 ? 'needs root' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : undefined;

test('TAP: TUNSETOFFLOAD takes checksum + TSO and none; TSO without the checksum is refused by the kernel', { skip: tapSkip }, () => {
  const tap = new Tap(`rzoff${process.pid % 100000}`);
  try {
    tap.setOffload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    tap.setOffload(0);
    assert.throws(() => tap.setOffload(TUN_F_TSO4), /TUNSETOFFLOAD/);
    assert.equal(TUN_F_CSUM, OFFLOAD_CSUM);
    assert.equal(TUN_F_TSO4, OFFLOAD_TSO4);
    assert.equal(TUN_F_TSO6, OFFLOAD_TSO6);
  } finally { tap.close(); }
});

test('TAP: a TSO segment with a partial checksum from the guest is taken by the host kernel as one packet (header layout as the kernel reads it)', { skip: tapSkip }, () => {
  const sh = (...args: string[]) => execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const ns = `rz-offl-${process.pid}`;
  const name = `rzo${process.pid % 100000}`;
  sh('ip', 'netns', 'add', ns);
  const tap = new Tap(name);
  const net = new VirtioNet(tap, MAC);
  const b = new TestBench(net);
  try {
    sh('ip', 'link', 'set', name, 'netns', ns);
    sh('ip', '-n', ns, 'addr', 'add', '10.0.4.1/24', 'dev', name);
    sh('ip', '-n', ns, 'link', 'set', name, 'up');
    const hostMac = parseMac(sh('ip', 'netns', 'exec', ns, 'cat', `/sys/class/net/${name}/address`).trim())!;
    const rxPackets = () => Number(sh('ip', 'netns', 'exec', ns, 'cat', `/sys/class/net/${name}/statistics/rx_packets`));
    const rxBytes = () => Number(sh('ip', 'netns', 'exec', ns, 'cat', `/sys/class/net/${name}/statistics/rx_bytes`));
    b.bringUp({ msix: true, features: ALL_TX });
    // Ethernet + IPv4 + TCP (to the discard port) + 20000 bytes, as Linux's driver hands a TSO segment over
    // (§5.1.6.2): the TCP checksum field holds the pseudo-header sum, NEEDS_CSUM at 34/16, GSO TCPv4, MSS 1448.
    const payload = 20000;
    const ipLen = 20 + 20 + payload;
    const f = new Uint8Array(NET_HDR_BYTES + 14 + ipLen);
    const v = new DataView(f.buffer);
    f[0] = 1; f[1] = 1; v.setUint16(2, 54, true); v.setUint16(4, 1448, true); v.setUint16(6, 34, true); v.setUint16(8, 16, true);
    const e = NET_HDR_BYTES;
    f.set(hostMac, e); f.set(MAC, e + 6); v.setUint16(e + 12, 0x0800);
    const ip = e + 14;
    f.set([0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 4, 2, 10, 0, 4, 1], ip);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += v.getUint16(ip + i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
    v.setUint16(ip + 10, ~sum & 0xffff);
    const tcp = ip + 20;
    v.setUint16(tcp, 40000); v.setUint16(tcp + 2, 9); v.setUint32(tcp + 4, 1); v.setUint32(tcp + 8, 0);
    f[tcp + 12] = 5 << 4; f[tcp + 13] = 0x18; v.setUint16(tcp + 14, 65535);
    let pseudo = 0x0a00 + 0x0402 + 0x0a00 + 0x0401 + 6 + (20 + payload);
    while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >> 16);
    v.setUint16(tcp + 16, pseudo);
    for (let i = 0; i < payload; i++) f[tcp + 20 + i] = i & 0xff;
    // The namespace's TCP counters (/proc/net/snmp): a segment whose partial checksum the kernel did not know about
    // would count as a checksum error; known, it is taken as valid and answered with a RST (nobody listens on 9).
    const tcpStats = () => {
      const lines = sh('ip', 'netns', 'exec', ns, 'cat', '/proc/net/snmp').split('\n').filter((l) => l.startsWith('Tcp:'));
      const names = lines[0].split(/\s+/).slice(1), values = lines[1].split(/\s+/).slice(1).map(Number);
      return Object.fromEntries(names.map((n, i) => [n, values[i]])) as Record<string, number>;
    };
    const tcp0 = tcpStats();
    const packets0 = rxPackets(), bytes0 = rxBytes();
    const at = b.alloc(f.length);
    b.mem.write(at, f);
    b.addChain(TX_QUEUE, [[at, f.length, false]]);
    assert.equal(net.counters.txFrames, 1, `the kernel took it (dropped: ${net.counters.txDropped})`);
    assert.equal(rxPackets() - packets0, 1, 'one packet on the host side, not one per segment');
    assert.equal(rxBytes() - bytes0, 14 + ipLen, 'of the whole segment\'s size');
    const tcp1 = tcpStats();
    assert.equal(tcp1.InCsumErrors - tcp0.InCsumErrors, 0, 'no checksum error: the kernel knew the checksum was partial');
    assert.equal(tcp1.InSegs - tcp0.InSegs, 1, 'the segment reached TCP');
    assert.equal(tcp1.OutRsts - tcp0.OutRsts, 1, 'and was answered');
    // The same segment claiming a checksum field past its end is refused by the device before the kernel sees it.
    v.setUint16(6, 14 + ipLen - 1, true);
    b.mem.write(at, f);
    b.addChain(TX_QUEUE, [[at, f.length, false]]);
    assert.equal(net.counters.txDropped, 1);
    assert.equal(rxPackets() - packets0, 1);
  } finally {
    b.close();
    try { sh('ip', 'netns', 'del', ns); } catch { /* gone */ }
  }
});
