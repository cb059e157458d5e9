// A hostile guest against virtio-blk (and rng, console) through the PCI transport. Each case: the device
// answers as the spec says (an error status, or DEVICE_NEEDS_RESET with a configuration interrupt), the
// VMM does not throw, the device comes back after a reset, and no host file but the disk image changes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestBench } from './support/virtio-driver.ts';
import { VirtioBlock, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK } from '../src/devices/virtio/blk.ts';
import { VirtioRng } from '../src/devices/virtio/rng.ts';
import { VirtioConsole } from '../src/devices/virtio/console.ts';
import { MiB } from '../src/memory/guest-memory.ts';

const dir = mkdtempSync(join(tmpdir(), 'ringzero-vhostile-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const imagePath = join(dir, 'disk.img');
const bystander = join(dir, 'bystander.txt');
writeFileSync(imagePath, Buffer.alloc(32 * 512, 0x33));
writeFileSync(bystander, 'must not change\n');
const bystanderMtime = statSync(bystander).mtimeMs;

const NEXT = 1, WRITE = 2, INDIRECT = 4;
const NEEDS_RESET = 0x40;
const QSIZE = 8;

/** A blk bench with MSI-X and queue size 8, plus a known-good request to prove it still works. */
function bench(): TestBench {
  const b = new TestBench(new VirtioBlock({ path: imagePath }));
  b.bringUp({ msix: true, sizes: [QSIZE] });
  return b;
}

function goodRead(b: TestBench): void {
  const h = b.alloc(16), d = b.alloc(512), s = b.alloc(1);
  b.u32(h, VIRTIO_BLK_T_IN); b.u32(h + 8, 1);
  b.mem.low[s] = 0xff;
  b.addChain(0, [[h, 16, false], [d, 512, true], [s, 1, true]]);
  const used = b.used(0);
  assert.equal(used.length, 1);
  assert.equal(b.mem.low[s], VIRTIO_BLK_S_OK);
  assert.equal(b.mem.low[d], 0x33);
}

/** Run `attack`, expect NEEDS_RESET plus the config interrupt (vector 0), silence afterwards, then recovery. */
function expectNeedsReset(name: string, attack: (b: TestBench) => void): void {
  const b = bench();
  try {
    goodRead(b);
    b.irqs.msis = [];
    assert.doesNotThrow(() => attack(b), name);
    assert.ok(b.status & NEEDS_RESET, `${name}: DEVICE_NEEDS_RESET (last error: ${b.fn.lastError})`);
    assert.ok(b.irqs.msis.some((m) => m.data === 0x40), `${name}: configuration change interrupt`);
    // While it needs a reset the device consumes nothing.
    const usedIdx = b.queues[0].layout.used + 2;
    if (b.mem.isRam(usedIdx, 2)) {
      const before = b.mem.lowView.getUint16(usedIdx, true);
      b.kick(0);
      assert.equal(b.mem.lowView.getUint16(usedIdx, true), before, `${name}: quiet until reset`);
    }
    // Reset and bring up again: the device works.
    b.bringUp({ msix: true, sizes: [QSIZE] });
    assert.equal(b.status & NEEDS_RESET, 0);
    goodRead(b);
  } finally {
    b.close();
  }
}

/** Reset and set the device up again with `setupQueue` in place of the normal queue setup, then DRIVER_OK. */
function rebuild(b: TestBench, setupQueue: () => void): void {
  b.status = 0;
  b.negotiate();
  b.w(0x10, 2, 0); // config vector 0
  setupQueue();
  b.driverOk();
}

function chainAt(b: TestBench, entries: [number, number, number, number][], head = 0): void {
  const table = b.queues[0].layout.desc;
  entries.forEach(([addr, len, flags, next], i) => b.writeDesc(table, i, addr, len, flags, next));
  b.makeAvailable(0, head);
}

function header(b: TestBench, type: number, sector: number): number {
  const h = b.alloc(16);
  b.u32(h, type); b.u32(h + 8, sector);
  return h;
}

test('descriptor loops and chains longer than the queue', () => {
  expectNeedsReset('two-descriptor loop', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0);
    chainAt(b, [[h, 16, NEXT, 1], [h, 16, NEXT, 0]]);
  });
  expectNeedsReset('chain through every descriptor and back', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0);
    chainAt(b, Array.from({ length: QSIZE }, (_, i) => [h, 16, NEXT, (i + 1) % QSIZE] as [number, number, number, number]));
  });
  expectNeedsReset('loop inside an indirect table', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0);
    const t = b.alloc(64, 16);
    b.writeDesc(t, 0, h, 16, NEXT, 1);
    b.writeDesc(t, 1, h, 16, NEXT, 2);
    b.writeDesc(t, 2, h, 16, NEXT, 0);
    chainAt(b, [[t, 64, INDIRECT, 0]]);
  });
});

test('addresses outside RAM, in the MMIO hole, over the device\'s own BAR', () => {
  const targets: [string, number][] = [
    ['past the end of RAM', 64 * MiB - 8],
    ['far beyond RAM', 2 ** 40],
    ['the PCI hole (own BAR 0)', 0xc000_0000],
    ['ECAM', 0xe000_0000],
    ['the LAPIC window', 0xfee0_0000],
    ['wrapping 2^64', 2 ** 64 - 4096],
  ];
  for (const [name, addr] of targets) {
    expectNeedsReset(`data buffer at ${name}`, (b) => {
      const h = header(b, VIRTIO_BLK_T_IN, 0), s = b.alloc(1);
      chainAt(b, [[h, 16, NEXT, 1], [addr, 512, NEXT | WRITE, 2], [s, 1, WRITE, 0]]);
    });
    expectNeedsReset(`ring at ${name}`, (b) => rebuild(b, () => b.setupQueue(0, { size: QSIZE, layout: { used: addr - (addr % 4) } })));
  }
});

test('zero lengths, missing header or status, writes into device-readable buffers', () => {
  expectNeedsReset('zero-length header', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0), s = b.alloc(1);
    chainAt(b, [[h, 0, NEXT, 1], [s, 1, WRITE, 0]]);
  });
  expectNeedsReset('zero-length status', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0), s = b.alloc(1);
    chainAt(b, [[h, 16, NEXT, 1], [s, 0, WRITE, 0]]);
  });
  const ro = { data: 0 };
  expectNeedsReset('status byte in a device-readable buffer', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0), d = b.alloc(512);
    b.mem.low.fill(0xab, d, d + 512);
    ro.data = d;
    chainAt(b, [[h, 16, NEXT, 1], [d, 512, 0, 0]]);
    assert.ok(b.mem.read(d, 512).every((x) => x === 0xab), 'the device wrote nothing into a readable buffer');
  });
  expectNeedsReset('read into device-readable data buffers', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0), d = b.alloc(512), s = b.alloc(1);
    b.mem.low.fill(0xab, d, d + 512);
    chainAt(b, [[h, 16, NEXT, 1], [d, 512, NEXT, 2], [s, 1, WRITE, 0]]);
    assert.ok(b.mem.read(d, 512).every((x) => x === 0xab));
  });
  expectNeedsReset('write whose data is device-writable', (b) => {
    const h = header(b, VIRTIO_BLK_T_OUT, 0), d = b.alloc(512), s = b.alloc(1);
    chainAt(b, [[h, 16, NEXT, 1], [d, 512, NEXT | WRITE, 2], [s, 1, WRITE, 0]]);
  });
  expectNeedsReset('header in a device-writable buffer', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0), s = b.alloc(1);
    chainAt(b, [[h, 16, NEXT | WRITE, 1], [s, 1, WRITE, 0]]);
  });
  // A zero-length data buffer in an otherwise fine read is just an empty read: OK, not a reset.
  const b = bench();
  try {
    const h = header(b, VIRTIO_BLK_T_IN, 0), s = b.alloc(1);
    chainAt(b, [[h, 16, NEXT, 1], [0, 0, NEXT | WRITE, 2], [s, 1, WRITE, 0]]);
    assert.deepEqual(b.used(0), [{ id: 0, len: 1 }]);
    assert.equal(b.mem.low[s], VIRTIO_BLK_S_OK);
    assert.equal(b.status & NEEDS_RESET, 0);
  } finally { b.close(); }
});

test('misaligned rings, size 0, sizes that are not powers of two or above the maximum', () => {
  const setups: [string, (b: TestBench) => void][] = [
    ['descriptor table misaligned', (b) => b.setupQueue(0, { size: QSIZE, layout: { desc: 0x200008 } })],
    ['available ring misaligned', (b) => b.setupQueue(0, { size: QSIZE, layout: { avail: 0x200001 } })],
    ['used ring misaligned', (b) => b.setupQueue(0, { size: QSIZE, layout: { used: 0x200002 } })],
    ['size 0', (b) => b.setupQueue(0, { size: 0 })],
    ['size 6', (b) => b.setupQueue(0, { size: 6 })],
    ['size above the maximum', (b) => b.setupQueue(0, { size: 1024 })],
  ];
  for (const [name, setup] of setups) {
    expectNeedsReset(name, (b) => rebuild(b, () => setup(b)));
  }
});

test('available index racing ahead, heads and next indices out of the table, bad indirect tables', () => {
  expectNeedsReset('avail.idx jumps by more than the queue size', (b) => {
    b.u16(b.queues[0].layout.avail + 2, (b.queues[0].availIdx + QSIZE + 1) & 0xffff);
    b.kick(0);
  });
  expectNeedsReset('head index past the table', (b) => b.makeAvailable(0, QSIZE + 3));
  expectNeedsReset('next index past the table', (b) => {
    const h = header(b, VIRTIO_BLK_T_IN, 0);
    chainAt(b, [[h, 16, NEXT, 200]]);
  });
  expectNeedsReset('indirect table of 20 bytes', (b) => chainAt(b, [[b.alloc(32, 16), 20, INDIRECT, 0]]));
  expectNeedsReset('indirect table in the MMIO hole', (b) => chainAt(b, [[0xc000_0000, 64, INDIRECT, 0]]));
  expectNeedsReset('nested indirect', (b) => {
    const t = b.alloc(16, 16);
    b.writeDesc(t, 0, t, 16, INDIRECT, 0);
    chainAt(b, [[t, 16, INDIRECT, 0]]);
  });
  expectNeedsReset('indirect without VIRTIO_F_INDIRECT_DESC', (b) => {
    b.bringUp({ msix: true, sizes: [QSIZE], features: 1n << 32n });
    b.irqs.msis = [];
    const t = b.alloc(16, 16);
    chainAt(b, [[t, 16, INDIRECT, 0]]);
  });
});

test('notification storms: kicks with nothing to do, kicks to absent queues, stay cheap and harmless', () => {
  const b = bench();
  try {
    const start = process.hrtime.bigint();
    for (let i = 0; i < 100_000; i++) b.kick(0);
    for (let i = 0; i < 1000; i++) b.mmio.write(b.caps.notify + 4 * 50, 2, 50); // past the notify region
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.ok(ms < 2000, `100k empty kicks took ${ms.toFixed(0)} ms`);
    assert.equal(b.status & NEEDS_RESET, 0);
    goodRead(b);
    // A storm of real requests: every one answered, in order.
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < QSIZE / 2; i++) goodRead(b);
    }
  } finally { b.close(); }
});

test('rng and console: wrong-direction buffers need a reset; the devices stay usable', () => {
  for (const make of [() => new VirtioRng(), () => new VirtioConsole({ write() {}, onInput: () => () => {} }, { input: false })]) {
    const b = new TestBench(make());
    try {
      b.bringUp({ msix: true });
      const q = b.fn.device instanceof VirtioRng ? 0 : 1;
      const buf = b.alloc(16);
      // rng wants writable buffers; console transmit wants readable ones: give each the opposite.
      b.addChain(q, [[buf, 16, q === 0 ? false : true]]);
      assert.ok(b.status & NEEDS_RESET);
      b.bringUp({ msix: true });
      b.addChain(q, [[buf, 16, q === 0]]);
      assert.equal(b.used(q).length, 1);
    } finally { b.close(); }
  }
});

test('no host file but the disk image was touched', () => {
  assert.deepEqual(readdirSync(dir).sort(), ['bystander.txt', 'disk.img']);
  assert.equal(readFileSync(bystander, 'utf8'), 'must not change\n');
  assert.equal(statSync(bystander).mtimeMs, bystanderMtime);
  assert.equal(statSync(imagePath).size, 32 * 512);
  assert.ok(readFileSync(imagePath).every((x) => x === 0x33), 'no attack wrote into the image either');
});
