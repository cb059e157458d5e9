// qcow2 read/write (src/storage/qcow2.ts), checked against QEMU's own tools both ways: images ringzero writes pass
// `qemu-img check` and read back identically through `qemu-img convert -O raw`; images qemu-img and qemu-io make
// (with and without a backing file, with zero clusters, with small clusters) read identically through ringzero and
// take ringzero's writes. A killed writer leaves at worst leaked clusters. Bad files fail with stable codes.
// Needs Debian's qemu-utils for the interop half (skipped with a loud line without it).
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StorageError, detectFormat } from '../src/storage/backend.ts';
import { createQcow2, imageInfo, openImage, Qcow2Image } from '../src/storage/qcow2.ts';
import { TestBench } from './support/virtio-driver.ts';
import { VirtioBlock, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK } from '../src/devices/virtio/blk.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-qcow2-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const file = (ext = 'qcow2') => path.join(dir, `img${counter++}.${ext}`);

const haveQemuImg = spawnSync('qemu-img', ['--version']).status === 0 && spawnSync('qemu-io', ['--version']).status === 0;
if (!haveQemuImg) process.stderr.write('\n*** storage-qcow2: qemu-img/qemu-io NOT FOUND (apt-get install qemu-utils): the qemu interop tests are SKIPPED ***\n\n');
const interop = { skip: haveQemuImg ? false : 'qemu-img is not installed (qemu-utils)' };

function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `qemu-img check`: 0 clean, 3 leaks only, 2 corruption (qemu-img(1)). */
function qemuCheck(image: string): { status: number | null; out: string } {
  const r = run('qemu-img', ['check', image]);
  return { status: r.status, out: r.stdout + r.stderr };
}

function qemuRaw(image: string): Buffer {
  const out = file('raw');
  const r = run('qemu-img', ['convert', '-O', 'raw', image, out]);
  assert.equal(r.status, 0, r.stderr);
  return fs.readFileSync(out);
}

function readAll(image: string): Buffer {
  const disk = openImage(image, { readonly: true });
  try {
    const out = Buffer.alloc(disk.size);
    disk.read(0, out);
    return out;
  } finally {
    disk.close();
  }
}

/** Random writes of random sizes (some crossing clusters) applied to the image and to a model. */
function scribble(image: string, model: Buffer, seed: number, count: number): void {
  const disk = openImage(image);
  let x = seed;
  const rand = (n: number) => { x = (x * 1103515245 + 12345) % 2 ** 31; return x % n; };
  try {
    for (let i = 0; i < count; i++) {
      const len = 512 * (1 + rand(300));
      const at = 512 * rand((model.length - len) / 512);
      const data = crypto.randomBytes(len);
      disk.write(at, data);
      data.copy(model, at);
      if (i % 7 === 3) {
        const zat = 512 * rand((model.length - 65536 * 3) / 512);
        const zlen = 512 * (1 + rand(65536 * 3 / 512 - 1));
        disk.writeZeroes(zat, zlen);
        model.fill(0, zat, zat + zlen);
      }
    }
    disk.flush();
  } finally {
    disk.close();
  }
}

function assertStorageError(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof StorageError, `a StorageError, not ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

test('a new image: empty, reads zeros, header as the spec says; detected by magic', () => {
  const f = file();
  createQcow2(f, { size: 10 * 2 ** 20 });
  assert.equal(detectFormat(f), 'qcow2');
  const info = imageInfo(f);
  assert.equal(info.format, 'qcow2');
  assert.equal(info.virtualSize, 10 * 2 ** 20);
  assert.equal(info.clusterSize, 65536);
  const head = fs.readFileSync(f).subarray(0, 112);
  assert.equal(head.toString('latin1', 0, 4), 'QFI\xfb');
  assert.equal(head.readUInt32BE(4), 3, 'version 3');
  assert.equal(head.readUInt32BE(100), 112, 'header_length');
  assert.ok(readAll(f).every((b) => b === 0));
  assert.throws(() => createQcow2(f, { size: 2 ** 20 }), /EEXIST/, 'never overwrites');
  assertStorageError(() => createQcow2(file(), { size: 1000 }), 'range', /multiple of 512/);
  assertStorageError(() => createQcow2(file(), { size: 0 }), 'range');
});

test('writes, zeroes and discards read back exactly (model check), also after reopening', () => {
  const f = file();
  const size = 8 * 2 ** 20;
  createQcow2(f, { size });
  const model = Buffer.alloc(size);
  scribble(f, model, 1, 60);
  assert.ok(readAll(f).equals(model));
  scribble(f, model, 2, 30);
  assert.ok(readAll(f).equals(model));
  const disk = openImage(f);
  try {
    disk.discard(65536, 3 * 65536);
    const back = Buffer.alloc(3 * 65536);
    disk.read(65536, back);
    assert.ok(back.every((b) => b === 0), 'a discarded whole cluster reads as zeros');
    assertStorageError(() => disk.read(size - 512, Buffer.alloc(1024)), 'range');
    assertStorageError(() => disk.write(-512, Buffer.alloc(512)), 'range');
  } finally {
    disk.close();
  }
  const ro = openImage(f, { readonly: true });
  assertStorageError(() => ro.write(0, Buffer.alloc(512)), 'readonly');
  ro.close();
});

test('ringzero-written images pass qemu-img check and read back identically through qemu-img', interop, () => {
  const f = file();
  const size = 12 * 2 ** 20 + 512 * 3; // a last cluster that is only partly inside the disk
  createQcow2(f, { size });
  const model = Buffer.alloc(size);
  scribble(f, model, 3, 80);
  const check = qemuCheck(f);
  assert.equal(check.status, 0, check.out);
  assert.match(check.out, /No errors were found/);
  const info = JSON.parse(run('qemu-img', ['info', '--output=json', f]).stdout);
  assert.equal(info.format, 'qcow2');
  assert.equal(info['virtual-size'], size);
  assert.equal(info['format-specific'].data.compat, '1.1');
  assert.ok(qemuRaw(f).equals(model), 'qemu-img sees what ringzero wrote');

  // And qemu can keep writing to it.
  const io = run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1m 200k', f]);
  assert.equal(io.status, 0, io.stderr);
  model.fill(0x5a, 2 ** 20, 2 ** 20 + 200 * 1024);
  assert.ok(readAll(f).equals(model));
});

test('linked overlay: ringzero writes over a raw and a qcow2 backing file; qemu-img agrees and the base is untouched', interop, () => {
  for (const baseFormat of ['raw', 'qcow2'] as const) {
    const base = file(baseFormat);
    const size = 4 * 2 ** 20;
    const baseData = crypto.randomBytes(size);
    if (baseFormat === 'raw') fs.writeFileSync(base, baseData);
    else {
      const raw = file('raw');
      fs.writeFileSync(raw, baseData);
      assert.equal(run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, base]).status, 0);
    }
    const baseBefore = crypto.createHash('sha256').update(fs.readFileSync(base)).digest('hex');
    const overlay = path.join(dir, `ov-${baseFormat}-${counter++}.qcow2`);
    createQcow2(overlay, { backingFile: path.basename(base), backingFormat: baseFormat }); // relative: from the overlay's directory
    assert.equal(imageInfo(overlay).virtualSize, size, 'size taken from the backing file');
    assert.ok(readAll(overlay).equals(baseData), 'unwritten clusters show the backing file');
    const model = Buffer.from(baseData);
    scribble(overlay, model, 4, 40);
    assert.ok(readAll(overlay).equals(model));
    const check = qemuCheck(overlay);
    assert.equal(check.status, 0, check.out);
    const info = JSON.parse(run('qemu-img', ['info', '--output=json', overlay]).stdout);
    assert.equal(info['backing-filename'], path.basename(base));
    assert.equal(info['backing-filename-format'], baseFormat);
    assert.ok(qemuRaw(overlay).equals(model), `qemu-img reads the overlay (${baseFormat} base) as ringzero wrote it`);
    assert.equal(crypto.createHash('sha256').update(fs.readFileSync(base)).digest('hex'), baseBefore, 'the backing file is never written');
  }
});

test('images qemu-img made: plain, 4 KiB clusters, overlays with zero clusters; read identically and take writes', interop, () => {
  const size = 6 * 2 ** 20;
  const data = crypto.randomBytes(size);
  data.fill(0, 2 ** 20, 2 * 2 ** 20); // a zero run qemu-img convert leaves unallocated
  const raw = file('raw');
  fs.writeFileSync(raw, data);
  for (const clusterSize of ['65536', '4096', '2M']) {
    const q = file();
    assert.equal(run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${clusterSize}`, raw, q]).status, 0);
    assert.ok(readAll(q).equals(data), `cluster_size=${clusterSize}: same bytes`);
    const model = Buffer.from(data);
    scribble(q, model, 5, 30);
    const check = qemuCheck(q);
    assert.equal(check.status, 0, `${clusterSize}: ${check.out}`);
    assert.ok(qemuRaw(q).equals(model));
  }

  // An overlay made by qemu-img over a raw base, written by qemu-io, with zero clusters (write -z) hiding the base.
  const overlay = file();
  assert.equal(run('qemu-img', ['create', '-f', 'qcow2', '-b', raw, '-F', 'raw', overlay]).status, 0);
  const io = run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x77 64k 64k', '-c', 'write -z 512k 128k', '-c', 'write -P 0x33 5000 1000', overlay]);
  assert.equal(io.status, 0, io.stderr);
  const model = Buffer.from(data);
  model.fill(0x77, 65536, 131072);
  model.fill(0, 512 * 1024, 640 * 1024);
  model.fill(0x33, 5000, 6000);
  assert.ok(readAll(overlay).equals(model), 'qemu-made overlay: data, zero clusters, backing');
  const qi = imageInfo(overlay);
  assert.equal(qi.backingPath, raw);
  assert.equal(qi.backingFormat, 'raw');
  // ringzero writes into qemu's zero clusters and unallocated ones.
  const disk = openImage(overlay);
  disk.write(512 * 1024 + 4096, Buffer.alloc(4096, 0x44));
  disk.close();
  model.fill(0x44, 512 * 1024 + 4096, 512 * 1024 + 8192);
  assert.ok(qemuRaw(overlay).equals(model));
  assert.equal(qemuCheck(overlay).status, 0);
});

test('refused with a clear code: compressed clusters, encryption, external data, not qcow2, corrupt tables, backing loops', interop, () => {
  const raw = file('raw');
  fs.writeFileSync(raw, Buffer.from('compressible text '.repeat(60000)).subarray(0, 2 ** 20)); // random bytes would be stored uncompressed
  const compressed = file();
  assert.equal(run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, compressed]).status, 0);
  const c = openImage(compressed, { readonly: true });
  assertStorageError(() => c.read(0, Buffer.alloc(512)), 'unsupported', /compress/);
  c.close();

  const good = file();
  createQcow2(good, { size: 2 ** 20 });
  const patched = (mutate: (b: Buffer) => void): string => {
    const f = file();
    const bytes = fs.readFileSync(good);
    mutate(bytes);
    fs.writeFileSync(f, bytes);
    return f;
  };
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(1, 32))), 'unsupported', /encrypted/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(4, 76))), 'unsupported', /external/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(0x100, 76))), 'unsupported', /unknown incompatible/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(7, 4))), 'unsupported', /version 7/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(40, 20))), 'corrupt', /cluster_bits/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(0x7777, 44))), 'corrupt', /L1 table/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(0, 36))), 'corrupt', /L1 table of 0 entries cannot map/);
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(2, 72 + 4))), 'corrupt', /marked corrupt/);
  // An L1 entry that is not cluster-aligned.
  assertStorageError(() => openImage(patched((b) => b.writeUInt32BE(0x12345, 3 * 65536 + 4)), { readonly: true }), 'corrupt', /L1 entry 0 points at/);
  // Truncated, and not qcow2 at all.
  const truncated = file();
  fs.writeFileSync(truncated, fs.readFileSync(good).subarray(0, 200));
  assertStorageError(() => openImage(truncated), 'corrupt');
  const notQcow2 = file('img');
  fs.writeFileSync(notQcow2, Buffer.alloc(4096, 1));
  assertStorageError(() => new Qcow2Image(notQcow2, true), 'not_qcow2', /not a qcow2 image/);
  assert.equal(detectFormat(notQcow2), 'raw');
  // A backing chain that loops, and a missing backing file.
  const a = path.join(dir, 'loop-a.qcow2'), b = path.join(dir, 'loop-b.qcow2');
  createQcow2(a, { size: 2 ** 20 });
  createQcow2(b, { backingFile: a, backingFormat: 'qcow2' });
  fs.rmSync(a);
  createQcow2(a, { size: 2 ** 20 }); // then point a at b by hand: a -> b -> a
  const withBacking = fs.readFileSync(a);
  const name = Buffer.from(b);
  withBacking.writeUInt32BE(0, 8); withBacking.writeUInt32BE(200, 12); withBacking.writeUInt32BE(name.length, 16);
  name.copy(withBacking, 200);
  fs.writeFileSync(a, withBacking);
  assertStorageError(() => openImage(b), 'backing', /loops/);
  const orphan = file();
  createQcow2(orphan, { backingFile: raw, backingFormat: 'raw' });
  fs.rmSync(raw);
  assertStorageError(() => openImage(orphan), 'backing', /cannot be opened/);
  assertStorageError(() => openImage(path.join(dir, 'nope.qcow2')), 'not_found');
});

test('a writer killed at a random instant leaves an image qemu-img check finds at worst leaky, with every completed write', interop, async () => {
  for (let round = 0; round < 3; round++) {
    const base = file('raw');
    fs.writeFileSync(base, Buffer.alloc(4 * 2 ** 20, 0x99));
    const f = file();
    createQcow2(f, { size: 4 * 2 ** 20, backingFile: base, backingFormat: 'raw' });
    // The child writes 4 KiB blocks at random places (each block's bytes = its sequence number) and prints each
    // sequence number once the write returned.
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', `
      const { openImage } = await import(${JSON.stringify(path.join(root, 'src/storage/qcow2.ts'))});
      const disk = openImage(${JSON.stringify(f)});
      for (let i = 1; ; i++) {
        const at = 4096 * Math.floor(Math.random() * 1024);
        disk.write(at, Buffer.alloc(4096, i % 256));
        process.stdout.write(i + ' ' + at + '\\n');
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }`], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + 20_000;
    while (out.split('\n').length < 300 + round * 400 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    const completed = out.split('\n').filter((l) => /^\d+ \d+$/.test(l)).map((l) => l.split(' ').map(Number));
    assert.ok(completed.length > 100, `the writer ran: ${err.slice(-500)}`);
    const check = qemuCheck(f);
    assert.ok(check.status === 0 || check.status === 3, `no corruption, leaks at most (status ${check.status}): ${check.out.slice(0, 1000)}`);
    assert.doesNotMatch(check.out, /ERROR/);
    const last = new Map<number, number>();
    for (const [i, at] of completed) last.set(at, i % 256);
    const disk = readAll(f);
    for (const [at, value] of last) {
      const block = disk.subarray(at, at + 4096);
      // The write after the last one printed may have completed too (killed before printing): then it is newer.
      const ok = block.every((b) => b === value) || block.every((b) => b === block[0]);
      assert.ok(ok, `block at ${at} holds its last completed write (${value}), got ${block[0]}`);
    }
    assert.equal(fs.readFileSync(base)[0], 0x99);
    // The next writer gives the leaked reservation back: clean again, same content.
    openImage(f).close();
    const again = qemuCheck(f);
    assert.equal(again.status, 0, `reclaimed on the next open: ${again.out.slice(0, 500)}`);
    assert.ok(readAll(f).equals(disk));
  }
});

test('virtio-blk serves a qcow2 overlay (detected by magic): guest reads see the backing file, writes land in the overlay', () => {
  const base = file('raw');
  fs.writeFileSync(base, Buffer.alloc(2 ** 20, 0x61));
  const overlay = file();
  createQcow2(overlay, { backingFile: base, backingFormat: 'raw' });
  const b = new TestBench(new VirtioBlock({ path: overlay }));
  b.bringUp({ msix: true });
  try {
    assert.equal(b.mmio.read(b.caps.device, 4), 2 ** 20 / 512, 'capacity from the virtual size, not the file size');
    const header = b.alloc(16), status = b.alloc(1), data = b.alloc(4096);
    const req = (type: number, sector: number, writable: boolean): number => {
      b.u32(header, type); b.u32(header + 4, 0); b.u32(header + 8, sector); b.u32(header + 12, 0);
      b.addChain(0, [[header, 16, false], [data, 4096, writable], [status, 1, true]]);
      b.used(0);
      return b.mem.low[status];
    };
    assert.equal(req(VIRTIO_BLK_T_IN, 8, true), VIRTIO_BLK_S_OK);
    assert.ok(b.mem.low.subarray(data, data + 4096).every((x) => x === 0x61));
    b.mem.low.fill(0x62, data, data + 4096);
    assert.equal(req(VIRTIO_BLK_T_OUT, 8, false), VIRTIO_BLK_S_OK);
  } finally {
    b.close();
  }
  const back = readAll(overlay);
  assert.ok(back.subarray(4096, 8192).every((x) => x === 0x62));
  assert.ok(back.subarray(0, 4096).every((x) => x === 0x61));
  assert.ok(fs.readFileSync(base).every((x) => x === 0x61), 'the base is untouched');
});

test('a raw disk whose format was probed refuses a qcow2 magic in sector 0 (the guest cannot make it a qcow2 image)', () => {
  const raw = file('raw');
  fs.writeFileSync(raw, Buffer.alloc(2 ** 20));
  const header = Buffer.alloc(512);
  header.writeUInt32BE(0x514649fb, 0);
  const probed = openImage(raw);
  try {
    assertStorageError(() => probed.write(0, header), 'readonly', /qcow2 magic/);
    probed.write(512, header); // elsewhere it is just data
  } finally {
    probed.close();
  }
  assert.equal(detectFormat(raw), 'raw');
  // Opened as raw on purpose (the format stated), the same write is the guest's business.
  const stated = openImage(raw, { format: 'raw' });
  stated.write(0, header);
  stated.close();
  assert.equal(detectFormat(raw), 'qcow2');
});
