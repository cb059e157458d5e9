// The decompressed-kernel cache (src/boot/vmlinux-cache.ts) and the LZ4 decoder's copy paths (src/boot/vmlinux.ts),
// on synthetic payloads: an LZ4 legacy frame holding a small ELF64 vmlinux. The real kernel goes through both in the
// boot tests (and test/boot-linux's loadLinux test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeVmlinuxByIdentity, decodeVmlinuxCached, fileIdentity, MAX_ENTRIES, RACY_MS, vmlinuxCacheDir } from '../src/boot/vmlinux-cache.ts';
import { loadLinux } from '../src/boot/linux.ts';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { decompressLz4Legacy, KernelFormatError } from '../src/boot/vmlinux.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';

interface Seq { lit: Uint8Array; offset?: number; len?: number }

/** LZ4 length field: the nibble, then 255s and a remainder (lz4 doc/lz4_Block_format.md). */
function lenBytes(n: number): number[] {
  const out: number[] = [];
  for (; n >= 255; n -= 255) out.push(255);
  out.push(n);
  return out;
}

function encodeBlock(seqs: Seq[]): number[] {
  const out: number[] = [];
  for (const s of seqs) {
    const litN = Math.min(s.lit.length, 15);
    const m = s.len === undefined ? 0 : Math.min(s.len - 4, 15);
    out.push((litN << 4) | m);
    if (litN === 15) out.push(...lenBytes(s.lit.length - 15));
    out.push(...s.lit);
    if (s.len === undefined) break;
    out.push(s.offset! & 0xff, s.offset! >> 8);
    if (m === 15) out.push(...lenBytes(s.len - 19));
  }
  return out;
}

/** The reference: LZ4 sequences applied one byte at a time. */
function reference(seqs: Seq[]): Uint8Array {
  const out: number[] = [];
  for (const s of seqs) {
    out.push(...s.lit);
    if (s.len !== undefined) for (let k = 0; k < s.len; k++) out.push(out[out.length - s.offset!]);
  }
  return Uint8Array.from(out);
}

function frame(blocks: number[][], total: number): Uint8Array {
  const out: number[] = [0x02, 0x21, 0x4c, 0x18];
  for (const b of blocks) out.push(b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24, ...b);
  out.push(total & 0xff, (total >> 8) & 0xff, (total >> 16) & 0xff, total >>> 24);
  return Uint8Array.from(out);
}

/** A 32-bit xorshift, so the test's data is the same every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}

test('the LZ4 decoder: short and long literals, non-overlapping matches, overlapping ones at offset 1 and longer periods', () => {
  const r = rng(7);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => r() & 0xff);
  const seqs: Seq[] = [{ lit: bytes(40), offset: 40, len: 4 }];
  let produced = 44;
  for (let k = 0; k < 400; k++) {
    const litLen = [0, 1, 5, 15, 16, 17, 300][r() % 7];
    produced += litLen;
    // Offsets 1..8 overlap any match longer than them; large ones do not.
    const offset = [1, 2, 3, 7, 8, 16, 33, produced][r() % 8];
    const len = [4, 5, 15, 16, 18, 19, 20, 64, 273, 1000][r() % 10];
    seqs.push({ lit: bytes(litLen), offset: Math.min(offset, produced, 65535), len });
    produced += len;
  }
  seqs.push({ lit: bytes(9) });
  const expect = reference(seqs);
  assert.deepEqual(decompressLz4Legacy(frame([encodeBlock(seqs)], expect.length)), expect);
});

/** An ELF64 x86-64 vmlinux with two PT_LOAD segments (the second with a BSS tail), and its LZ4 payload. */
function kernel(seed: number): { payload: Uint8Array; elf: Uint8Array } {
  const elf = new Uint8Array(0x3000);
  const v = new DataView(elf.buffer);
  v.setUint32(0, 0x7f454c46, false);
  elf[4] = 2; elf[5] = 1; v.setUint16(18, 62, true);
  v.setBigUint64(24, 0x1000000n, true); // entry
  v.setBigUint64(32, 64n, true); // phoff
  v.setUint16(54, 56, true); v.setUint16(56, 2, true);
  const ph = (at: number, offset: number, paddr: number, filesz: number, memsz: number) => {
    v.setUint32(at, 1, true);
    v.setBigUint64(at + 8, BigInt(offset), true);
    v.setBigUint64(at + 24, BigInt(paddr), true);
    v.setBigUint64(at + 32, BigInt(filesz), true);
    v.setBigUint64(at + 40, BigInt(memsz), true);
  };
  ph(64, 0x1000, 0x1000000, 0x1000, 0x1000);
  ph(120, 0x2000, 0x1200000, 0x800, 0x4000);
  const r = rng(seed);
  for (let k = 0x1000; k < elf.length; k++) elf[k] = r() & 0xff;
  return { payload: frame([encodeBlock([{ lit: elf }])], elf.length), elf };
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(join(tmpdir(), 'rz-vmlinux-cache-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function assertKernel(got: ReturnType<typeof decodeVmlinuxCached>, elf: Uint8Array): void {
  assert.equal(got.vmlinux.entry, 0x1000000);
  assert.deepEqual(got.vmlinux.segments.map((s) => [s.paddr, s.data.length, s.memsz]), [[0x1000000, 0x1000, 0x1000], [0x1200000, 0x800, 0x4000]]);
  assert.deepEqual(got.vmlinux.segments[0].data, elf.subarray(0x1000, 0x2000));
  assert.deepEqual(got.vmlinux.segments[1].data, elf.subarray(0x2000, 0x2800));
}

test('the kernel cache: a miss decodes and stores, the next load reads it back', (t) => {
  const dir = join(tempDir(t), 'vmlinux'); // not yet created: the cache makes it
  const { payload, elf } = kernel(1);
  const first = decodeVmlinuxCached(payload, dir);
  assert.equal(first.source, 'miss');
  assertKernel(first, elf);
  const files = fs.readdirSync(dir);
  assert.equal(files.length, 1, 'one entry and no temporary left');
  assert.match(files[0], /^[0-9a-f]{32}\.vmlinux$/);
  assert.equal(fs.statSync(join(dir, files[0])).size, 128 + 2 * 24 + 0x1800, 'header, segment table, the file bytes (not the BSS)');
  const second = decodeVmlinuxCached(payload, dir);
  assert.equal(second.source, 'hit');
  assertKernel(second, elf);
  // Another kernel is another entry.
  const other = kernel(2);
  assert.equal(decodeVmlinuxCached(other.payload, dir).source, 'miss');
  assertKernel(decodeVmlinuxCached(other.payload, dir), other.elf);
  assertKernel(decodeVmlinuxCached(payload, dir), elf);
  assert.equal(fs.readdirSync(dir).length, 2);
});

test('the kernel cache: a hit reads the segments into their destinations; a refused destination decodes', (t) => {
  const dir = join(tempDir(t), 'vmlinux');
  const { payload, elf } = kernel(3);
  decodeVmlinuxCached(payload, dir);
  const ram = new Uint8Array(0x400000).fill(0xee); // stands for guest RAM from 0x1000000
  const asked: number[][] = [];
  const into = (paddr: number, memsz: number): Uint8Array | undefined => {
    asked.push([paddr, memsz]);
    return ram.subarray(paddr - 0x1000000, paddr - 0x1000000 + memsz);
  };
  const hit = decodeVmlinuxCached(payload, dir, into);
  assert.equal(hit.source, 'hit');
  assertKernel(hit, elf);
  assert.deepEqual(asked, [[0x1000000, 0x1000], [0x1200000, 0x4000]]);
  assert.equal(hit.vmlinux.segments[1].data.buffer, ram.buffer, 'the data are views of the destination');
  assert.deepEqual(ram.subarray(0x200000, 0x200800), elf.subarray(0x2000, 0x2800));
  assert.equal(ram[0x200800], 0xee, 'the BSS is left to the caller');
  // A destination the caller refuses: as if there were no entry, the kernel is decoded (and the entry rewritten).
  const refused = decodeVmlinuxCached(payload, dir, (paddr, memsz) => (paddr === 0x1200000 ? undefined : into(paddr, memsz)));
  assert.equal(refused.source, 'miss');
  assertKernel(refused, elf);
  assert.notEqual(refused.vmlinux.segments[0].data.buffer, ram.buffer);
});

test('the kernel cache: a hit read into guest RAM through its memfd (GuestMemory.readFile), and through a private mapping', (t) => {
  const dir = join(tempDir(t), 'vmlinux');
  const { payload, elf } = kernel(5);
  decodeVmlinuxCached(payload, dir);
  const image = join(tempDir(t), 'ram.img');
  fs.writeFileSync(image, new Uint8Array(64 * MiB).fill(0xee, 0x1000000, 0x1300000));
  for (const mem of [new GuestMemory(64 * MiB), new GuestMemory(64 * MiB, { file: image })]) {
    t.after(() => mem.close());
    if (!mem.privateFile) mem.slice(0x1000000, 0x300000).fill(0xee);
    const read: number[][] = [];
    const hit = decodeVmlinuxCached(payload, dir, (paddr, memsz) => mem.slice(paddr, memsz), (paddr, fd, position, length) => {
      read.push([paddr, length]);
      return mem.readFile(paddr, fd, position, length);
    });
    assert.equal(hit.source, 'hit');
    assertKernel(hit, elf);
    assert.deepEqual(read, [[0x1000000, 0x1000], [0x1200000, 0x800]]);
    assert.equal(hit.vmlinux.segments[1].data.buffer, mem.low.buffer, 'the data are views of RAM');
    assert.deepEqual(mem.slice(0x1200000, 0x800), elf.subarray(0x2000, 0x2800));
    assert.equal(mem.slice(0x1200800, 1)[0], 0xee, 'the BSS is left to the caller');
  }
  // The file ends first: false, and the cache treats the entry as absent.
  const mem = new GuestMemory(64 * MiB);
  t.after(() => mem.close());
  const fd = fs.openSync(image, 'r');
  t.after(() => fs.closeSync(fd));
  assert.equal(mem.readFile(0, fd, 64 * MiB - 0x1000, 0x2000), false);
  assert.equal(mem.readFile(0, fd, 0x1000000, 0x2000), true);
  assert.equal(mem.slice(0x1fff, 1)[0], 0xee);
  assert.throws(() => mem.readFile(64 * MiB - 0x1000, fd, 0, 0x2000), RangeError);
});

test('the kernel cache: a damaged, truncated or foreign entry is decoded again and replaced', (t) => {
  const dir = tempDir(t);
  const { payload, elf } = kernel(3);
  decodeVmlinuxCached(payload, dir);
  const file = join(dir, fs.readdirSync(dir)[0]);
  const good = fs.readFileSync(file);

  const flipped = Buffer.from(good);
  flipped[good.length - 100] ^= 1; // one bit of the data
  fs.writeFileSync(file, flipped);
  const again = decodeVmlinuxCached(payload, dir);
  assert.equal(again.source, 'miss', 'the data no longer matches its digest');
  assertKernel(again, elf);
  assert.deepEqual(fs.readFileSync(file), good, 'rewritten');
  assert.equal(decodeVmlinuxCached(payload, dir).source, 'hit');

  fs.writeFileSync(file, good.subarray(0, good.length - 1));
  assert.equal(decodeVmlinuxCached(payload, dir).source, 'miss', 'truncated');
  fs.writeFileSync(file, good.subarray(0, 50));
  assert.equal(decodeVmlinuxCached(payload, dir).source, 'miss', 'shorter than a header');

  // The entry of another kernel under this kernel's name (as a hash-prefix collision would leave).
  const other = kernel(4);
  decodeVmlinuxCached(other.payload, dir);
  const otherFile = fs.readdirSync(dir).map((n) => join(dir, n)).find((p) => p !== file)!;
  fs.copyFileSync(otherFile, file);
  const foreign = decodeVmlinuxCached(payload, dir);
  assert.equal(foreign.source, 'miss');
  assertKernel(foreign, elf);

  const badHeader = Buffer.from(good);
  badHeader.writeUInt32LE(0xffff, 24); // segment count
  fs.writeFileSync(file, badHeader);
  assertKernel(decodeVmlinuxCached(payload, dir), elf);
});

test('the kernel cache: an unwritable or unusable directory only means no cache', (t) => {
  const base = tempDir(t);
  const notADir = join(base, 'file');
  fs.writeFileSync(notADir, 'x');
  const { payload, elf } = kernel(5);
  for (let k = 0; k < 2; k++) {
    const got = decodeVmlinuxCached(payload, join(notADir, 'vmlinux'));
    assert.equal(got.source, 'miss');
    assertKernel(got, elf);
  }
  assert.equal(decodeVmlinuxCached(payload, undefined).source, 'off');
  assertKernel(decodeVmlinuxCached(payload, undefined), elf);
  // A damaged payload is still refused as the decoder refuses it, cache or not.
  const damaged = payload.slice(0, payload.length - 4);
  assert.throws(() => decodeVmlinuxCached(damaged, join(base, 'c')), KernelFormatError);
  assert.deepEqual(fs.existsSync(join(base, 'c')) ? fs.readdirSync(join(base, 'c')) : [], [], 'nothing stored for it');
});

test('the kernel cache keeps the most recently used entries and removes stale temporaries', (t) => {
  const dir = tempDir(t);
  const kernels = Array.from({ length: MAX_ENTRIES + 1 }, (_, k) => kernel(10 + k));
  const names: string[] = [];
  kernels.forEach((kern, k) => {
    const before = new Set(fs.readdirSync(dir));
    decodeVmlinuxCached(kern.payload, dir);
    const added = fs.readdirSync(dir).filter((n) => !before.has(n));
    if (added.length === 1) names.push(added[0]);
    // Distinct, ordered mtimes without sleeping; entry 0 is then used again, so entry 1 is the least recent.
    const when = new Date(Date.now() - (100 - k) * 1000);
    fs.utimesSync(join(dir, names[k]), when, when);
  });
  assert.equal(names.length, MAX_ENTRIES + 1);
  // The last write pruned down to MAX_ENTRIES: the oldest (entry 0) went.
  assert.deepEqual(new Set(fs.readdirSync(dir)), new Set(names.slice(1)));
  // A hit refreshes an entry's age: touch entry 1, add another kernel, entry 2 is now the one to go.
  assert.equal(decodeVmlinuxCached(kernels[1].payload, dir).source, 'hit');
  const stale = join(dir, `${names[3]}.tmp-1-deadbeef`);
  fs.writeFileSync(stale, 'partial');
  const old = new Date(Date.now() - 2 * 3600_000);
  fs.utimesSync(stale, old, old);
  decodeVmlinuxCached(kernel(99).payload, dir);
  const left = new Set(fs.readdirSync(dir));
  assert.equal(left.size, MAX_ENTRIES);
  assert.ok(left.has(names[1]) && !left.has(names[2]) && !left.has(stale.slice(dir.length + 1)));
});

test('the kernel cache lives under the image cache root', () => {
  assert.equal(vmlinuxCacheDir({ RINGZERO_CACHE: '/x/rz' }), '/x/rz/vmlinux');
  assert.equal(vmlinuxCacheDir({ XDG_CACHE_HOME: '/x/c' }), '/x/c/ringzero/vmlinux');
});

test('the kernel cache: a kernel file seen before is found by its identity alone; a changed file is not', (t) => {
  const dir = join(tempDir(t), 'vmlinux');
  const { payload, elf } = kernel(6);
  assert.equal(decodeVmlinuxByIdentity('file-A', dir), undefined, 'no memo yet');
  assert.equal(decodeVmlinuxCached(payload, dir, undefined, undefined, 'file-A').source, 'miss');
  assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.key')).length, 1, 'the miss wrote a memo beside its entry');
  assertKernel(decodeVmlinuxByIdentity('file-A', dir)!, elf);
  assert.equal(decodeVmlinuxByIdentity('file-B', dir), undefined, 'another identity has no memo');
  // A hit through the payload also writes the memo of a new identity.
  assert.equal(decodeVmlinuxCached(payload, dir, undefined, undefined, 'file-B').source, 'hit');
  assertKernel(decodeVmlinuxByIdentity('file-B', dir)!, elf);
  // A damaged entry is no hit by identity either (the caller then reads the file and decodes it again).
  const entry = join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.vmlinux'))!);
  const good = fs.readFileSync(entry);
  const flipped = Buffer.from(good);
  flipped[good.length - 1] ^= 1;
  fs.writeFileSync(entry, flipped);
  assert.equal(decodeVmlinuxByIdentity('file-A', dir), undefined);
  assert.equal(decodeVmlinuxCached(payload, dir, undefined, undefined, 'file-A').source, 'miss');
  assertKernel(decodeVmlinuxByIdentity('file-A', dir)!, elf);
  // Its entry gone (evicted): no hit.
  fs.rmSync(entry);
  assert.equal(decodeVmlinuxByIdentity('file-A', dir), undefined);

});

test('the kernel cache: identities vouch only for files settled RACY_MS; a settled entry is not hashed again, a changed one is', async (t) => {
  const dir = join(tempDir(t), 'vmlinux');
  const { payload, elf } = kernel(9);
  const file = join(tempDir(t), 'bzImage');
  fs.writeFileSync(file, new Uint8Array(8192).fill(1));
  const id = (path: string): string | undefined => { const fd = fs.openSync(path, 'r'); try { return fileIdentity(fd); } finally { fs.closeSync(fd); } };
  assert.equal(id(file), undefined, 'just written: its timestamps could not tell a second write in the same tick apart');
  decodeVmlinuxCached(payload, dir, undefined, undefined, 'kernel-9');
  const entry = join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.vmlinux'))!);
  const memo = join(dir, fs.readdirSync(dir).find((n) => n.endsWith('.key'))!);
  assert.equal(fs.readFileSync(memo).length, 32, 'a new entry: the memo holds the payload key alone');
  await new Promise((resolve) => setTimeout(resolve, RACY_MS + 200));
  const before = id(file);
  assert.ok(before !== undefined && id(file) === before, 'settled: the same identity each time');
  // A by-identity hit checks the entry's data (its identity was not recorded) and records the entry's identity.
  assertKernel(decodeVmlinuxByIdentity('kernel-9', dir)!, elf);
  assert.equal(fs.readFileSync(memo).subarray(32).toString(), id(entry), 'the settled entry\'s identity, next to the key');
  assertKernel(decodeVmlinuxByIdentity('kernel-9', dir)!, elf);
  // Any change to the entry changes its identity, so its data is checked again: a flipped bit is found.
  const good = fs.readFileSync(entry);
  const flipped = Buffer.from(good);
  flipped[good.length - 2] ^= 4;
  fs.writeFileSync(entry, flipped);
  assert.equal(decodeVmlinuxByIdentity('kernel-9', dir), undefined);
  // The kernel file rewritten with other bytes of the same size and its modification time set back: no identity yet.
  const { mtime } = fs.statSync(file);
  fs.writeFileSync(file, new Uint8Array(8192).fill(2));
  fs.utimesSync(file, mtime, mtime);
  assert.equal(id(file), undefined);
});

test('the kernel cache: a hit read into guest RAM is checked against the file\'s bytes; a damaged entry is decoded again', (t) => {
  const dir = join(tempDir(t), 'vmlinux');
  const { payload, elf } = kernel(7);
  decodeVmlinuxCached(payload, dir);
  const entry = join(dir, fs.readdirSync(dir)[0]);
  const good = fs.readFileSync(entry);
  const mem = new GuestMemory(64 * MiB);
  t.after(() => mem.close());
  const load = () => decodeVmlinuxCached(payload, dir, (paddr, memsz) => mem.slice(paddr, memsz), (paddr, fd, position, length) => mem.readFile(paddr, fd, position, length));
  assert.equal(load().source, 'hit');
  const flipped = Buffer.from(good);
  flipped[good.length - 3] ^= 0x40; // in the second segment's data
  fs.writeFileSync(entry, flipped);
  const again = load();
  assert.equal(again.source, 'miss', 'the bytes read into RAM did not match the entry\'s digest');
  assertKernel(again, elf);
  assert.deepEqual(fs.readFileSync(entry), good, 'rewritten');
});

test('loadLinux from an open kernel file: the same machine as from its bytes; a second load by the file\'s identity does not read the payload', (t) => {
  const dir = join(tempDir(t), 'vmlinux');
  const { payload, elf } = kernel(8);
  // (padded to syssize's 16-byte paragraphs; payload_length says where the frame ends)
  const padded = new Uint8Array(Math.ceil(payload.length / 16) * 16);
  padded.set(payload);
  const image = makeBzImage({ payload: padded, initSize: 0x400000 });
  const hv = new DataView(image.buffer);
  hv.setUint32(0x248, 0, true); // payload_offset: the payload is the whole protected-mode part
  hv.setUint32(0x24c, payload.length, true); // payload_length
  const file = join(tempDir(t), 'bzImage');
  fs.writeFileSync(file, image);
  const fromBytes = new GuestMemory(64 * MiB);
  t.after(() => fromBytes.close());
  const a = loadLinux(fromBytes, image, undefined, 'console=ttyS0', { cpus: 1, kernelCache: dir, rngSeed: false });
  assert.equal(a.entry64, 0x1000000, 'vmlinux entered at its ELF entry');
  assert.deepEqual(fromBytes.read(0x1200000, 0x800), elf.subarray(0x2000, 0x2800));
  const fd = fs.openSync(file, 'r');
  t.after(() => fs.closeSync(fd));
  const identity = 'kernel-8'; // (as Machine.loadKernel passes fileIdentity's, once the file is settled)
  const fromFile = new GuestMemory(64 * MiB);
  t.after(() => fromFile.close());
  const b = loadLinux(fromFile, { fd, size: image.length, identity }, undefined, 'console=ttyS0', { cpus: 1, kernelCache: dir, rngSeed: false });
  assert.equal(b.entry64, a.entry64);
  assert.deepEqual(fromFile.read(0, 2 * MiB), fromBytes.read(0, 2 * MiB), 'zero page, command line, tables and page tables');
  assert.deepEqual(fromFile.read(0x1000000, 0x204000), fromBytes.read(0x1000000, 0x204000), 'the kernel');
  // The same setup part before a payload of zeros under that identity: the cached kernel is loaded, so the file's
  // payload was never read (a read of it would have found no LZ4 frame and loaded the zeros for the guest to run).
  const blank = new Uint8Array(image);
  blank.fill(0, image.length - padded.length);
  const blankFile = join(tempDir(t), 'blank');
  fs.writeFileSync(blankFile, blank);
  const bfd = fs.openSync(blankFile, 'r');
  t.after(() => fs.closeSync(bfd));
  const byIdentity = new GuestMemory(64 * MiB);
  t.after(() => byIdentity.close());
  const c = loadLinux(byIdentity, { fd: bfd, size: blank.length, identity }, undefined, 'console=ttyS0', { cpus: 1, kernelCache: dir, rngSeed: false });
  assert.equal(c.entry64, 0x1000000);
  assert.deepEqual(byIdentity.read(0x1200000, 0x800), elf.subarray(0x2000, 0x2800));
  // Under its own identity the same file is read: not LZ4, so it is loaded as it is, entered at its 0x200.
  const plain = new GuestMemory(64 * MiB);
  t.after(() => plain.close());
  const d = loadLinux(plain, { fd: bfd, size: blank.length, identity: 'blank-8' }, undefined, 'console=ttyS0', { cpus: 1, kernelCache: dir, rngSeed: false });
  assert.equal(d.entry64, 0x1000000 + 0x200);
  assert.throws(() => loadLinux(plain, { fd: bfd, size: blank.length + 4096 }, undefined, '', { cpus: 1, kernelCache: false }), /ended before/);
});
