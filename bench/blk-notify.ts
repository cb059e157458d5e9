// bench/blk-notify (issue 5): the virtio-blk device's own cost per request, without a guest. A TestBench (the PCI
// transport driven from JavaScript, test/support/virtio-driver.ts) puts a read (or write) of PAGES scattered 4 KiB
// pages on the queue and kicks it, as Linux's O_DIRECT `dd bs=1M` does (one request per 512 KiB in the guest's
// scattered mode: seg_max 254, README bench/io session 24/26); each notify is timed. Printed: the first --cold
// notifies (what bench/io's 64 requests of a cold pass see: V8 has not optimized the device's JavaScript yet), then
// the median of --hot more, and the same preadv/pwritev of those pages done alone (the host kernel's copy: the floor).
//
//   node --import tsx bench/blk-notify.ts [--pages 128] [--cold 64] [--hot 2000] [--write]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchArgs } from './support/common.ts';
import { TestBench } from '../test/support/virtio-driver.ts';
import { VirtioBlock, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../src/devices/virtio/blk.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    pages: { type: 'string', default: '128' },
    cold: { type: 'string', default: '64' },
    hot: { type: 'string', default: '2000' },
    write: { type: 'boolean', default: false },
  },
});
const pages = Number(values.pages), cold = Number(values.cold), hot = Number(values.hot);
const MiB = 1 << 20;
const diskBytes = 64 * MiB;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-blk-notify-'));
const disk = path.join(dir, 'disk.raw');
fs.writeFileSync(disk, Buffer.alloc(diskBytes, 0x5a));
const b = new TestBench(new VirtioBlock({ path: disk }), 3, 128 * MiB);
b.bringUp({ msix: true });
const header = b.alloc(16), status = b.alloc(1);
// (every other page, so no two buffers are adjacent: Linux's scattered case)
const data = b.alloc(2 * pages * 4096, 4096);
const chain: [number, number, boolean][] = [[header, 16, false]];
for (let i = 0; i < pages; i++) chain.push([data + 2 * i * 4096, 4096, !values.write]);
chain.push([status, 1, true]);
const requestBytes = pages * 4096;
let sector = 0;
function one(): number {
  b.u32(header, values.write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
  b.u32(header + 8, sector);
  b.u32(header + 12, 0);
  sector = (sector + requestBytes / 512) % (diskBytes / 512 - requestBytes / 512);
  b.addChain(0, chain, false);
  const t0 = process.hrtime.bigint();
  b.kick(0);
  const t1 = process.hrtime.bigint();
  const used = b.used(0);
  if (used.length !== 1 || b.mem.low[status] !== 0) throw new Error('request failed');
  return Number(t1 - t0) / 1000;
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const coldUs = Array.from({ length: cold }, one);
const hotUs = Array.from({ length: hot }, one);
// The same system call alone, on the same pages.
const fd = fs.openSync(disk, 'r+');
const bufs = Array.from({ length: pages }, (_, i) => b.mem.slice(data + 2 * i * 4096, 4096));
const sysUs: number[] = [];
for (let i = 0; i < hot; i++) {
  const t0 = process.hrtime.bigint();
  if (values.write) fs.writevSync(fd, bufs, (i * requestBytes) % (diskBytes - requestBytes)); else fs.readvSync(fd, bufs, (i * requestBytes) % (diskBytes - requestBytes));
  sysUs.push(Number(process.hrtime.bigint() - t0) / 1000);
}
fs.closeSync(fd);
b.close();
fs.rmSync(dir, { recursive: true, force: true });
const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
console.log(`${values.write ? 'write' : 'read'} of ${pages} pages (${requestBytes / 1024} KiB) per request:`);
console.log(`  first ${cold} notifies: mean ${(sum(coldUs) / cold).toFixed(1)} us, median ${median(coldUs).toFixed(1)} us (first ${coldUs[0].toFixed(0)} us, last 16 median ${median(coldUs.slice(-16)).toFixed(1)} us)`);
console.log(`  next ${hot}: median ${median(hotUs).toFixed(1)} us`);
console.log(`  ${values.write ? 'pwritev' : 'preadv'} alone (fs.${values.write ? 'writev' : 'readv'}Sync): median ${median(sysUs).toFixed(1)} us`);
console.log(JSON.stringify({ bench: 'blk-notify', write: values.write, pages, coldMeanUs: sum(coldUs) / cold, coldMedianUs: median(coldUs), coldLast16Us: median(coldUs.slice(-16)), hotMedianUs: median(hotUs), syscallMedianUs: median(sysUs) }));
