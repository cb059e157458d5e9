// virtio-blk on a raw image, driven through the PCI transport with requests built in guest RAM.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync, truncateSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestBench } from './support/virtio-driver.ts';
import {
  VirtioBlock, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, BLK_SEG_MAX, BLK_SIZE_MAX,
  blkQueueSizeFromEnv,
} from '../src/devices/virtio/blk.ts';

const dir = mkdtempSync(join(tmpdir(), 'ringzero-vblk-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function image(bytes: number, fill?: (b: Buffer) => void): string {
  const path = join(dir, `disk${n++}.img`);
  const b = Buffer.alloc(bytes);
  fill?.(b);
  writeFileSync(path, b);
  return path;
}

/** A bench with a disk, brought up with MSI-X; `req` issues one request and returns [status, usedLen]. */
function blkBench(path: string, opts: { readonly?: boolean; serial?: string; queueSize?: number } = {}) {
  const b = new TestBench(new VirtioBlock({ path, ...opts }));
  b.bringUp({ msix: true });
  const header = b.alloc(16);
  const status = b.alloc(1);
  const req = (type: number, sector: number, data: [number, number, boolean][] = []): [number, number] => {
    b.u32(header, type);
    b.u32(header + 4, 0);
    b.u32(header + 8, sector % 2 ** 32);
    b.u32(header + 12, Math.floor(sector / 2 ** 32));
    b.mem.low[status] = 0xee;
    b.addChain(0, [[header, 16, false], ...data, [status, 1, true]]);
    const used = b.used(0);
    assert.equal(used.length, 1, 'one completion');
    return [b.mem.low[status], used[0].len];
  };
  return { b, req };
}

test('configuration: capacity, size_max, seg_max, blk_size; features of a writable and a read-only disk', () => {
  const path = image(3 * 512 + 100);
  const { b } = blkBench(path);
  try {
    const cfg = (o: number, s: 1 | 2 | 4) => b.mmio.read(b.caps.device + o, s);
    assert.equal(cfg(0, 4), 3, 'capacity in sectors, partial sector dropped');
    assert.equal(cfg(4, 4), 0);
    assert.equal(cfg(8, 4), BLK_SIZE_MAX);
    assert.equal(cfg(12, 4), BLK_SEG_MAX);
    assert.equal(cfg(20, 4), 512);
    const f = b.deviceFeatures();
    assert.ok(f & (1n << 9n), 'FLUSH');
    assert.ok(f & (1n << 13n), 'DISCARD');
    assert.equal(f & (1n << 5n), 0n, 'not RO');
  } finally { b.close(); }
  const ro = new TestBench(new VirtioBlock({ path, readonly: true }));
  try {
    const f = ro.deviceFeatures();
    assert.ok(f & (1n << 5n), 'RO');
    assert.equal(f & (1n << 13n), 0n, 'no DISCARD on a read-only disk');
  } finally { ro.close(); }
});

test('RINGZERO_BLK_QUEUE_SIZE: a 1024-entry queue offers seg_max 1022, and a 1 MiB read in 256 single pages plus header and status fits one chain', () => {
  assert.equal(blkQueueSizeFromEnv(undefined), 256);
  assert.equal(blkQueueSizeFromEnv(''), 256);
  assert.equal(blkQueueSizeFromEnv('1024'), 1024);
  for (const bad of ['300', '2048', '128', 'x', '-256']) assert.throws(() => blkQueueSizeFromEnv(bad), /RINGZERO_BLK_QUEUE_SIZE/);
  const pages = 256;
  const path = image(pages * 4096, (x) => { for (let i = 0; i < x.length; i += 4096) x.writeUInt32LE(i / 4096 + 1, i); });
  const { b, req } = blkBench(path, { queueSize: 1024 });
  try {
    const cfg = (o: number, s: 1 | 2 | 4) => b.mmio.read(b.caps.device + o, s);
    assert.equal(cfg(12, 4), 1022, 'seg_max: the queue size minus header and status');
    assert.equal(b.queues[0].layout.size, 1024, 'the driver took the offered size');
    // Pages in descending guest-physical order, as a buffer faulted in from the page allocator's per-CPU list is.
    const base = b.alloc(pages * 4096, 4096);
    const data: [number, number, boolean][] = [];
    for (let p = 0; p < pages; p++) data.push([base + (pages - 1 - p) * 4096, 4096, true]);
    assert.deepEqual(req(VIRTIO_BLK_T_IN, 0, data), [VIRTIO_BLK_S_OK, pages * 4096 + 1]);
    for (let p = 0; p < pages; p++) assert.equal(b.mem.lowView.getUint32(base + (pages - 1 - p) * 4096, true), p + 1, `page ${p}`);
    assert.equal(b.status & 0x40, 0);
  } finally { b.close(); }
});

test('write then read back across scattered buffers; the file holds the data; the byte counters follow', () => {
  const path = image(64 * 1024);
  const { b, req } = blkBench(path);
  try {
    const a = b.alloc(1024), c = b.alloc(512);
    for (let i = 0; i < 1024; i++) b.mem.low[a + i] = i & 0xff;
    for (let i = 0; i < 512; i++) b.mem.low[c + i] = 0xa5;
    assert.deepEqual(req(VIRTIO_BLK_T_OUT, 4, [[a, 1024, false], [c, 512, false]]), [VIRTIO_BLK_S_OK, 1]);
    const file = readFileSync(path);
    assert.equal(file[4 * 512 + 3], 3);
    assert.equal(file[4 * 512 + 1024], 0xa5);
    assert.equal(file[4 * 512 - 1], 0, 'nothing before');
    assert.equal(file[7 * 512], 0, 'nothing after');
    const r1 = b.alloc(512), r2 = b.alloc(1024);
    assert.deepEqual(req(VIRTIO_BLK_T_IN, 4, [[r1, 512, true], [r2, 1024, true]]), [VIRTIO_BLK_S_OK, 1537]);
    assert.equal(b.mem.low[r1 + 511], 511 & 0xff);
    assert.equal(b.mem.low[r2 + 511], 1023 & 0xff);
    assert.equal(b.mem.low[r2 + 512], 0xa5);
    assert.deepEqual((b.fn.device as VirtioBlock).counters, { readBytes: 1536, writeBytes: 1536 });
    // Two requests, two notifications (Machine.stats() virtio, bench/io per unit of work); one MSI-X message: this
    // driver leaves used_event at 0 (EVENT_IDX), so only used.idx's first step past it interrupts (§2.7.7.2); one
    // chain per request.
    assert.deepEqual(b.fn.counters, { notifies: 2, interrupts: 1, chains: 2 });
  } finally { b.close(); }
});

test('a request scattered over 128 separate pages each way lands page by page (the iovec path: host addresses from the walk)', () => {
  const pages = 128;
  const path = image(2 * pages * 4096, (x) => { for (let i = 0; i < x.length; i += 4) x.writeUInt32LE(i, i); });
  const { b, req } = blkBench(path);
  try {
    // (every other page, in reverse order: no two buffers adjacent, and the request's order is not memory order)
    const area = b.alloc(2 * pages * 4096, 4096);
    const page = (i: number) => area + 2 * (pages - 1 - i) * 4096;
    const data: [number, number, boolean][] = Array.from({ length: pages }, (_, i) => [page(i), 4096, true]);
    assert.deepEqual(req(VIRTIO_BLK_T_IN, 8, data), [VIRTIO_BLK_S_OK, pages * 4096 + 1]);
    for (let i = 0; i < pages; i++) {
      assert.equal(b.mem.lowView.getUint32(page(i), true), 4096 + i * 4096, `page ${i} first word`);
      assert.equal(b.mem.lowView.getUint32(page(i) + 4092, true), 4096 + i * 4096 + 4092, `page ${i} last word`);
      assert.equal(b.mem.low[page(i) + 4096], 0, `the gap after page ${i} untouched`);
    }
    for (let i = 0; i < pages; i++) b.mem.low.fill(i + 1, page(i), page(i) + 4096);
    assert.deepEqual(req(VIRTIO_BLK_T_OUT, 1024, data.map(([a, l]) => [a, l, false])), [VIRTIO_BLK_S_OK, 1]);
    const file = readFileSync(path);
    for (let i = 0; i < pages; i++) {
      const at = 1024 * 512 + i * 4096;
      assert.ok(file.subarray(at, at + 4096).every((x) => x === i + 1), `file page ${i}`);
    }
    assert.equal(file.readUInt32LE(1024 * 512 - 4), 1024 * 512 - 4, 'nothing before');
    assert.deepEqual((b.fn.device as VirtioBlock).counters, { readBytes: pages * 4096, writeBytes: pages * 4096 });
  } finally { b.close(); }
});

test('an image that shrank under the device: what is no longer in the file reads as zeros (a short preadv)', () => {
  const path = image(16 * 512, (x) => x.fill(0x3c));
  const { b, req } = blkBench(path);
  try {
    truncateSync(path, 12 * 512);
    const r1 = b.alloc(1024), r2 = b.alloc(1024);
    b.mem.low.fill(0xee, r1, r1 + 1024);
    b.mem.low.fill(0xee, r2, r2 + 1024);
    // sectors 10..13: two still in the file, two past its end (the disk's capacity is fixed at open)
    assert.deepEqual(req(VIRTIO_BLK_T_IN, 10, [[r1, 1024, true], [r2, 1024, true]]), [VIRTIO_BLK_S_OK, 2049]);
    assert.ok(b.mem.low.subarray(r1, r1 + 1024).every((x) => x === 0x3c));
    assert.ok(b.mem.low.subarray(r2, r2 + 1024).every((x) => x === 0));
  } finally { b.close(); }
});

test('requests beyond the capacity or not whole sectors get IOERR and touch nothing', () => {
  const path = image(8 * 512, (x) => x.fill(0x11));
  const { b, req } = blkBench(path);
  try {
    const buf = b.alloc(1024);
    b.mem.low.fill(0x77, buf, buf + 1024);
    assert.equal(req(VIRTIO_BLK_T_OUT, 7, [[buf, 1024, false]])[0], VIRTIO_BLK_S_IOERR, 'last sector + 1');
    assert.equal(req(VIRTIO_BLK_T_OUT, 2 ** 53, [[buf, 512, false]])[0], VIRTIO_BLK_S_IOERR, 'huge sector');
    assert.equal(req(VIRTIO_BLK_T_OUT, 0xffffffff * 2 ** 32, [[buf, 512, false]])[0], VIRTIO_BLK_S_IOERR, 'sector 2^64-2^32');
    assert.equal(req(VIRTIO_BLK_T_OUT, 0, [[buf, 100, false]])[0], VIRTIO_BLK_S_IOERR, 'partial sector');
    assert.equal(req(VIRTIO_BLK_T_IN, 8, [[buf, 512, true]])[0], VIRTIO_BLK_S_IOERR, 'read at capacity');
    assert.equal(req(VIRTIO_BLK_T_IN, 7, [[buf, 512, true]])[0], VIRTIO_BLK_S_OK, 'last sector reads');
    assert.ok(readFileSync(path).every((x) => x === 0x11));
    assert.equal(statSync(path).size, 8 * 512);
    assert.equal(b.status & 0x40, 0, 'no reset needed: these are well-formed requests');
  } finally { b.close(); }
});

test('read-only disk: writes, discards and write-zeroes get IOERR, reads and flush work', () => {
  const path = image(4 * 512, (x) => x.fill(0x42));
  const { b, req } = blkBench(path, { readonly: true });
  try {
    const buf = b.alloc(512);
    assert.equal(req(VIRTIO_BLK_T_OUT, 0, [[buf, 512, false]])[0], VIRTIO_BLK_S_IOERR);
    const seg = b.alloc(16);
    b.u32(seg, 0); b.u32(seg + 8, 1);
    assert.equal(req(VIRTIO_BLK_T_DISCARD, 0, [[seg, 16, false]])[0], VIRTIO_BLK_S_IOERR);
    assert.equal(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [[seg, 16, false]])[0], VIRTIO_BLK_S_IOERR);
    assert.equal(req(VIRTIO_BLK_T_IN, 1, [[buf, 512, true]])[0], VIRTIO_BLK_S_OK);
    assert.equal(b.mem.low[buf], 0x42);
    assert.equal(req(VIRTIO_BLK_T_FLUSH, 0)[0], VIRTIO_BLK_S_OK);
    assert.ok(readFileSync(path).every((x) => x === 0x42));
  } finally { b.close(); }
});

test('GET_ID returns the serial, NUL-padded to 20 bytes; unknown types are UNSUPP', () => {
  const path = image(512);
  const { b, req } = blkBench(path, { serial: 'rz-disk-1' });
  try {
    const id = b.alloc(20);
    b.mem.low.fill(0xff, id, id + 20);
    assert.deepEqual(req(VIRTIO_BLK_T_GET_ID, 0, [[id, 20, true]]), [VIRTIO_BLK_S_OK, 21]);
    assert.equal(Buffer.from(b.mem.read(id, 9)).toString('latin1'), 'rz-disk-1');
    assert.ok(b.mem.read(id + 9, 11).every((x) => x === 0));
    assert.equal(req(10, 0)[0], VIRTIO_BLK_S_UNSUPP, 'GET_LIFETIME is not offered');
    assert.equal(req(0x7fffffff, 0)[0], VIRTIO_BLK_S_UNSUPP);
  } finally { b.close(); }
});

test('DISCARD and WRITE_ZEROES make the ranges read as zeros; unmap on discard is UNSUPP', () => {
  const path = image(64 * 512, (x) => x.fill(0x5a));
  const { b, req } = blkBench(path);
  try {
    const seg = b.alloc(32);
    b.u32(seg, 8); b.u32(seg + 4, 0); b.u32(seg + 8, 16); b.u32(seg + 12, 0);
    b.u32(seg + 16, 40); b.u32(seg + 20, 0); b.u32(seg + 24, 2); b.u32(seg + 28, 0);
    assert.equal(req(VIRTIO_BLK_T_DISCARD, 0, [[seg, 32, false]])[0], VIRTIO_BLK_S_OK);
    let file = readFileSync(path);
    assert.ok(file.subarray(8 * 512, 24 * 512).every((x) => x === 0));
    assert.ok(file.subarray(40 * 512, 42 * 512).every((x) => x === 0));
    assert.equal(file[8 * 512 - 1], 0x5a);
    assert.equal(file[24 * 512], 0x5a);
    assert.equal(file.length, 64 * 512, 'size kept');
    b.u32(seg + 12, 1); // unmap flag on a discard
    assert.equal(req(VIRTIO_BLK_T_DISCARD, 0, [[seg, 16, false]])[0], VIRTIO_BLK_S_UNSUPP);
    b.u32(seg, 60); b.u32(seg + 8, 4); b.u32(seg + 12, 1);
    assert.equal(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [[seg, 16, false]])[0], VIRTIO_BLK_S_OK);
    b.u32(seg, 62); b.u32(seg + 8, 4); b.u32(seg + 12, 0);
    assert.equal(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [[seg, 16, false]])[0], VIRTIO_BLK_S_IOERR, 'past the end');
    file = readFileSync(path);
    assert.ok(file.subarray(60 * 512).every((x) => x === 0));
    assert.equal(req(VIRTIO_BLK_T_DISCARD, 0, [[seg, 8, false]])[0], VIRTIO_BLK_S_IOERR, 'half a segment');
  } finally { b.close(); }
});

test('a request in an indirect descriptor table', () => {
  const path = image(4 * 512);
  const { b } = blkBench(path);
  try {
    const header = b.alloc(16), data = b.alloc(512), status = b.alloc(1), table = b.alloc(48, 16);
    b.u32(header, VIRTIO_BLK_T_OUT); b.u32(header + 8, 2);
    b.mem.low.fill(0x3c, data, data + 512);
    b.writeDesc(table, 0, header, 16, 1, 1);
    b.writeDesc(table, 1, data, 512, 1, 2);
    b.writeDesc(table, 2, status, 1, 2, 0);
    b.writeDesc(b.queues[0].layout.desc, 0, table, 48, 4, 0);
    b.makeAvailable(0, 0);
    assert.deepEqual(b.used(0), [{ id: 0, len: 1 }]);
    assert.equal(b.mem.low[status], VIRTIO_BLK_S_OK);
    assert.equal(readFileSync(path)[2 * 512 + 7], 0x3c);
  } finally { b.close(); }
});

test('a request scattered over more buffers than one preadv/pwritev takes (an indirect table of 1300), in order', () => {
  const path = image(1300 * 512);
  const { b } = blkBench(path);
  try {
    const n = 1300;
    const header = b.alloc(16), data = b.alloc(n * 512), status = b.alloc(1), table = b.alloc(16 * (n + 2), 16);
    b.u32(header, VIRTIO_BLK_T_OUT); b.u32(header + 8, 0);
    for (let i = 0; i < n; i++) b.mem.low.fill(i & 0xff, data + i * 512, data + (i + 1) * 512);
    // Buffers in reverse order of their addresses, so the file shows the order in which they were written.
    b.writeDesc(table, 0, header, 16, 1, 1);
    for (let i = 0; i < n; i++) b.writeDesc(table, 1 + i, data + (n - 1 - i) * 512, 512, 1, 2 + i);
    b.writeDesc(table, n + 1, status, 1, 2, 0);
    b.writeDesc(b.queues[0].layout.desc, 0, table, 16 * (n + 2), 4, 0);
    b.makeAvailable(0, 0);
    assert.deepEqual(b.used(0), [{ id: 0, len: 1 }]);
    assert.equal(b.mem.low[status], VIRTIO_BLK_S_OK);
    const file = readFileSync(path);
    for (let i = 0; i < n; i++) assert.equal(file[i * 512 + 100], (n - 1 - i) & 0xff, `sector ${i}`);
    // And back, into the same buffers zeroed: each gets its own sector again.
    b.mem.low.fill(0, data, data + n * 512);
    b.u32(header, VIRTIO_BLK_T_IN);
    for (let i = 0; i < n; i++) b.writeDesc(table, 1 + i, data + (n - 1 - i) * 512, 512, 3, 2 + i);
    b.writeDesc(b.queues[0].layout.desc, 1, table, 16 * (n + 2), 4, 0);
    b.makeAvailable(0, 1);
    assert.deepEqual(b.used(0), [{ id: 1, len: n * 512 + 1 }]);
    for (let i = 0; i < n; i++) assert.equal(b.mem.low[data + i * 512 + 511], i & 0xff, `buffer ${i}`);
  } finally { b.close(); }
});

test('a probed raw disk refuses a qcow2 magic written to sector 0 even when split over buffers', () => {
  const path = image(8 * 512);
  const { b, req } = blkBench(path);
  try {
    const q = b.alloc(1), rest = b.alloc(511);
    b.mem.low[q] = 0x51; // 'Q'
    b.mem.low.set([0x46, 0x49, 0xfb], rest); // 'F', 'I', 0xfb
    assert.equal(req(VIRTIO_BLK_T_OUT, 0, [[q, 1, false], [rest, 511, false]])[0], VIRTIO_BLK_S_IOERR);
    assert.ok(readFileSync(path).every((x) => x === 0), 'nothing written');
    assert.equal(req(VIRTIO_BLK_T_OUT, 1, [[q, 1, false], [rest, 511, false]])[0], VIRTIO_BLK_S_OK, 'elsewhere it is data');
  } finally { b.close(); }
});

test('an acknowledged (flushed) write survives the VMM being killed right after', () => {
  const path = image(16 * 512);
  const script = `
    import { TestBench } from ${JSON.stringify(new URL('./support/virtio-driver.ts', import.meta.url).href)};
    import { VirtioBlock } from ${JSON.stringify(new URL('../src/devices/virtio/blk.ts', import.meta.url).href)};
    const b = new TestBench(new VirtioBlock({ path: ${JSON.stringify(path)} }));
    b.bringUp();
    const h = b.alloc(16), d = b.alloc(512), s = b.alloc(1);
    b.u32(h, 1); b.u32(h + 8, 5);
    b.mem.low.fill(0xd7, d, d + 512);
    b.addChain(0, [[h, 16, false], [d, 512, false], [s, 1, true]]);
    b.u32(h, 4);
    b.addChain(0, [[h, 16, false], [s, 1, true]]);
    if (b.used(0).length === 2 && b.mem.low[s] === 0) process.stdout.write('acked\\n');
    process.kill(process.pid, 'SIGKILL');
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.equal(r.stdout, 'acked\n');
  const file = readFileSync(path);
  assert.ok(file.subarray(5 * 512, 6 * 512).every((x) => x === 0xd7));
});
