// virtio-balloon through the Linux-like test driver: the target in the configuration with a configuration
// interrupt, inflated pages released to the host (the memfd's blocks go, the pages read zero), deflate,
// the statistics queue (the buffer held, returned to ask for fresh numbers), and hostile page lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fstatSync } from 'node:fs';
import { TestBench } from './support/virtio-driver.ts';
import {
  VirtioBalloon, INFLATE_QUEUE, DEFLATE_QUEUE, STATS_QUEUE, BALLOON_PAGE, VIRTIO_BALLOON_F_STATS_VQ,
  VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_MUST_TELL_HOST,
} from '../src/devices/virtio/balloon.ts';

const NEEDS_RESET = 0x40;

function bench(): { b: TestBench; balloon: VirtioBalloon } {
  const balloon = new VirtioBalloon(() => {});
  return { b: new TestBench(balloon), balloon };
}

function pfnList(b: TestBench, pfns: number[]): number {
  const at = b.alloc(4 * pfns.length, 4);
  pfns.forEach((p, i) => b.u32(at + 4 * i, p));
  return at;
}

const allocatedBytes = (b: TestBench) => fstatSync(b.mem.fd).blocks * 512;

test('features: statistics queue offered; deflate-on-OOM and must-tell-host not', () => {
  const { b } = bench();
  try {
    const f = b.deviceFeatures();
    assert.ok(f & (1n << VIRTIO_BALLOON_F_STATS_VQ));
    assert.equal(f & (1n << VIRTIO_BALLOON_F_DEFLATE_ON_OOM), 0n);
    assert.equal(f & (1n << VIRTIO_BALLOON_F_MUST_TELL_HOST), 0n);
    b.bringUp({ msix: true });
    assert.equal(b.r(0x12, 2), 3);
  } finally { b.close(); }
});

test('target: set at run time, seen in num_pages with a configuration interrupt; actual is the driver\'s', () => {
  const { b, balloon } = bench();
  try {
    b.bringUp({ msix: true });
    b.irqs.msis = [];
    balloon.setTarget(1000);
    assert.equal(b.mmio.read(b.caps.device, 4), 1000);
    assert.ok(b.irqs.msis.some((m) => m.data === 0x40), 'configuration change interrupt');
    b.mmio.write(b.caps.device + 4, 4, 600);
    b.mmio.write(b.caps.device, 4, 5); // num_pages is the device's: the write is ignored
    assert.deepEqual([balloon.stats().targetPages, balloon.stats().actualPages], [1000, 600]);
    balloon.setTarget(10 ** 9);
    assert.equal(balloon.stats().targetPages, (64 << 20) / BALLOON_PAGE, 'capped at the size of RAM');
    assert.throws(() => balloon.setTarget(-1), RangeError);
  } finally { b.close(); }
});

test('inflate releases the pages to the host (memfd blocks freed, pages read zero); deflate gives them back', () => {
  const { b, balloon } = bench();
  try {
    b.bringUp({ msix: true });
    const first = 0x800; // 8 MiB in
    const count = 512; // 2 MiB
    b.mem.low.fill(0x5a, first * BALLOON_PAGE, (first + count) * BALLOON_PAGE);
    const before = allocatedBytes(b);
    // Two requests, one with a gap and the pages out of order, as Linux's list may be.
    const pfns = Array.from({ length: count }, (_, i) => first + i);
    const list1 = pfnList(b, pfns.slice(0, 256).reverse());
    const list2 = pfnList(b, pfns.slice(256));
    b.addChain(INFLATE_QUEUE, [[list1, 4 * 256, false]]);
    b.addChain(INFLATE_QUEUE, [[list2, 4 * 256, false]]);
    assert.equal(b.used(INFLATE_QUEUE).length, 2);
    assert.equal(balloon.stats().inflatedPages, count);
    const after = allocatedBytes(b);
    assert.ok(before - after >= count * BALLOON_PAGE, `memfd shrank by ${(before - after) >> 10} KiB`);
    assert.ok(b.mem.read(first * BALLOON_PAGE, count * BALLOON_PAGE).every((x) => x === 0), 'released pages read zero');
    const list3 = pfnList(b, pfns.slice(0, 100));
    b.addChain(DEFLATE_QUEUE, [[list3, 400, false]]);
    assert.equal(b.used(DEFLATE_QUEUE).length, 1);
    assert.equal(balloon.stats().inflatedPages, count - 100);
    b.mem.low[first * BALLOON_PAGE] = 7; // the guest uses a deflated page again
    assert.equal(b.mem.low[first * BALLOON_PAGE], 7);
  } finally { b.close(); }
});

test('statistics: the driver\'s buffer is read and held; refreshStats returns it and waits for the next', async () => {
  const { b, balloon } = bench();
  try {
    b.bringUp({ msix: true });
    const writeStats = (at: number, free: number) => {
      const v = new DataView(b.mem.low.buffer, b.mem.low.byteOffset + at, 30);
      v.setUint16(0, 4, true); v.setBigUint64(2, BigInt(free), true); // free-memory
      v.setUint16(10, 5, true); v.setBigUint64(12, 64n << 20n, true); // total-memory
      v.setUint16(20, 77, true); v.setBigUint64(22, 1n, true); // a tag from a newer spec
    };
    const buf = b.alloc(30);
    writeStats(buf, 1000);
    b.addChain(STATS_QUEUE, [[buf, 30, false]]);
    assert.equal(b.used(STATS_QUEUE).length, 0, 'the buffer stays with the device');
    assert.deepEqual(balloon.stats().guest, { 'free-memory': 1000, 'total-memory': 64 << 20, 'tag-77': 1 });
    // The host asks for fresh numbers: the buffer comes back; the driver refills and reposts it.
    const fresh = balloon.refreshStats(1000);
    const used = b.used(STATS_QUEUE);
    assert.equal(used.length, 1);
    writeStats(buf, 2000);
    b.makeAvailable(STATS_QUEUE, used[0].id);
    const s = await fresh;
    assert.equal(s.guest['free-memory'], 2000);
    // No driver answer: the refresh resolves with the last numbers after the timeout.
    const stale = await (async () => { const p = balloon.refreshStats(50); b.used(STATS_QUEUE); return p; })();
    assert.equal(stale.guest['free-memory'], 2000);
  } finally { b.close(); }
});

test('hostile page lists: frames outside RAM are ignored, odd lengths and wrong directions', () => {
  const { b, balloon } = bench();
  try {
    b.bringUp({ msix: true });
    const mmioHole = 0xc000_0000 / BALLOON_PAGE, beyond = 0xffff_ffff;
    const list = pfnList(b, [mmioHole, beyond, (64 << 20) / BALLOON_PAGE, 0x900]);
    b.addChain(INFLATE_QUEUE, [[list, 16, false]]);
    assert.equal(b.used(INFLATE_QUEUE).length, 1);
    assert.equal(balloon.stats().inflatedPages, 1, 'only the page in RAM counts');
    b.addChain(INFLATE_QUEUE, [[list, 7, false]]); // not a whole number of PFNs: the tail is ignored
    assert.equal(b.used(INFLATE_QUEUE).length, 1);
    b.addChain(DEFLATE_QUEUE, [[list, 16 * 1024, false]]); // deflating more than was inflated
    assert.equal(balloon.stats().inflatedPages, 0);
    assert.equal(b.status & NEEDS_RESET, 0);
    b.addChain(INFLATE_QUEUE, [[list, 16, true]]);
    assert.ok(b.status & NEEDS_RESET, 'a device-writable page list needs a reset');
    b.bringUp({ msix: true });
    const stats = b.alloc(10);
    b.addChain(STATS_QUEUE, [[stats, 10, true]]);
    assert.ok(b.status & NEEDS_RESET, 'device-writable statistics need a reset');
  } finally { b.close(); }
});
