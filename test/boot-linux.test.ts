import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestMemory, MiB, GiB } from '../src/memory/guest-memory.ts';
import { BootError, BOOT_CS, BOOT_DS, buildE820, decodeAccessRights, E820_RAM, E820_RESERVED, loadLinux, type BootState } from '../src/boot/linux.ts';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { parseBzImage } from '../src/boot/bzimage.ts';
import { decompressLz4Legacy, isLz4Legacy, parseVmlinux } from '../src/boot/vmlinux.ts';
import { findRealKernel, REAL_KERNEL_MISSING } from './support/real-kernel.ts';

const memories: GuestMemory[] = [];
after(() => memories.forEach((m) => m.close()));
function memory(size: number): GuestMemory {
  const m = new GuestMemory(size);
  memories.push(m);
  return m;
}

function u32(mem: GuestMemory, gpa: number): number {
  const b = mem.read(gpa, 4);
  return new DataView(b.buffer).getUint32(0, true);
}
function u64(mem: GuestMemory, gpa: number): bigint {
  const b = mem.read(gpa, 8);
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** Walk the 4-level page tables from cr3 like the CPU would (SDM Vol. 3A §4.5); undefined when not present. */
function translate(mem: GuestMemory, cr3: number, va: number): { pa: number; writable: boolean } | undefined {
  const v = BigInt(va);
  const pml4e = u64(mem, cr3 + Number((v >> 39n) & 511n) * 8);
  if (!(pml4e & 1n)) return undefined;
  const pdpte = u64(mem, Number(pml4e & 0x000ffffffffff000n) + Number((v >> 30n) & 511n) * 8);
  if (!(pdpte & 1n)) return undefined;
  assert.equal(pdpte & 0x80n, 0n, 'no 1 GiB pages expected');
  const pde = u64(mem, Number(pdpte & 0x000ffffffffff000n) + Number((v >> 21n) & 511n) * 8);
  if (!(pde & 1n)) return undefined;
  assert.equal(pde & 0x80n, 0x80n, 'PD entries map 2 MiB pages');
  const writable = Boolean(pml4e & pdpte & pde & 2n);
  return { pa: Number((pde & 0x000fffffffe00000n) | (v & 0x1fffffn)), writable };
}

const PAYLOAD = new Uint8Array(64 * 1024).map((_, i) => (i * 7) & 0xff);

function boot(mem: GuestMemory, opts: Parameters<typeof makeBzImage>[0] = {}, initrd?: Uint8Array, cmdline = 'console=ttyS0 quiet'): BootState {
  return loadLinux(mem, makeBzImage({ payload: PAYLOAD, ...opts }), initrd, cmdline, { cpus: 2 });
}

test('kernel, command line and zero page', () => {
  const mem = memory(256 * MiB);
  const initrd = new Uint8Array(3 * MiB + 123).fill(0x5a);
  const st = boot(mem, {}, initrd);
  assert.equal(st.kernelLoadAddress, 0x1000000);
  assert.equal(st.entry64, 0x1000200);
  assert.deepEqual(mem.read(0x1000000, PAYLOAD.length), PAYLOAD);

  const zp = st.zeroPage;
  assert.equal(zp, 0x7000);
  assert.equal(st.rsi, zp);
  const zpv = new DataView(mem.read(zp, 4096).buffer);
  assert.equal(zpv.getUint16(0x1fe, true), 0xaa55, 'setup header copied at 0x1F1');
  assert.equal(zpv.getUint32(0x202, true), 0x53726448);
  assert.equal(zpv.getUint16(0x206, true), 0x020f);
  assert.equal(zpv.getUint8(0x1ef), 0, 'sentinel stays zero');
  assert.equal(zpv.getUint8(0x210), 0xff, 'type_of_loader');
  assert.equal(zpv.getUint8(0x211) & 1, 1, 'LOADED_HIGH kept');
  assert.equal(zpv.getUint32(0x228, true), st.cmdlineAddress);
  assert.equal(zpv.getUint32(0x0c8, true), 0, 'ext_cmd_line_ptr');
  assert.equal(new TextDecoder().decode(mem.read(st.cmdlineAddress, 19)), 'console=ttyS0 quiet');
  assert.equal(mem.read(st.cmdlineAddress + 19, 1)[0], 0, 'NUL-terminated');
  assert.equal(zpv.getUint32(0x218, true), st.initrd!.address);
  assert.equal(zpv.getUint32(0x21c, true), initrd.length);
  assert.equal(zpv.getBigUint64(0x070, true), BigInt(st.acpi.rsdp), 'acpi_rsdp_addr');
  assert.equal(new TextDecoder().decode(mem.read(st.acpi.rsdp, 8)), 'RSD PTR ');
  // 64-bit boot state.
  assert.equal((st.cr0 & 0x80000001) >>> 0, 0x80000001, 'PE and PG');
  assert.equal(st.cr4 & 0x20, 0x20, 'PAE');
  assert.equal(st.efer, 0x500, 'LME | LMA');
  assert.equal(st.rflags, 2);
  assert.equal(st.cr3, 0x9000);
});

test('e820 map: low RAM, BIOS area, ECAM, high RAM', () => {
  const mem = memory(256 * MiB);
  const st = boot(mem);
  const zpv = new DataView(mem.read(st.zeroPage, 4096).buffer);
  const n = zpv.getUint8(0x1e8);
  const table = [];
  for (let i = 0; i < n; i++) {
    const at = 0x2d0 + 20 * i;
    table.push({ addr: Number(zpv.getBigUint64(at, true)), size: Number(zpv.getBigUint64(at + 8, true)), type: zpv.getUint32(at + 16, true) });
  }
  assert.deepEqual(table, [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820_RESERVED },
    { addr: 0x100000, size: 255 * MiB, type: E820_RAM },
    { addr: 0xe0000000, size: 256 * MiB, type: E820_RESERVED },
  ]);
  assert.deepEqual(st.e820, table);
  // With more than 3 GiB the rest of RAM appears at 4 GiB.
  assert.deepEqual(buildE820({ lowSize: 3 * GiB, highSize: 2 * GiB }), [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820_RESERVED },
    { addr: 0x100000, size: 3 * GiB - MiB, type: E820_RAM },
    { addr: 0xe0000000, size: 256 * MiB, type: E820_RESERVED },
    { addr: 4 * GiB, size: 2 * GiB, type: E820_RAM },
  ]);
});

test('an initrd given as an open file is read into RAM where the bytes would go; a file shorter than said is refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rz-initrd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const initrd = new Uint8Array(3 * MiB + 123).map((_, i) => (i * 13) & 0xff);
  writeFileSync(join(dir, 'initrd'), initrd);
  const fd = openSync(join(dir, 'initrd'), 'r');
  t.after(() => closeSync(fd));
  const mem = memory(256 * MiB);
  const fromBytes = boot(mem, {}, initrd);
  const other = memory(256 * MiB);
  const fromFile = loadLinux(other, makeBzImage({ payload: PAYLOAD }), { fd, length: initrd.length }, 'console=ttyS0 quiet', { cpus: 2 });
  assert.deepEqual(fromFile.initrd, fromBytes.initrd);
  assert.deepEqual(other.read(fromFile.initrd!.address, initrd.length), initrd);
  assert.throws(() => loadLinux(other, makeBzImage({ payload: PAYLOAD }), { fd, length: initrd.length + 4096 }, '', { cpus: 2 }), /initrd file ended/);
});

test('initrd goes page-aligned to the top of low RAM, below initrd_addr_max', () => {
  const mem = memory(256 * MiB);
  const initrd = new Uint8Array(5 * MiB + 1).fill(0xa5);
  let st = boot(mem, {}, initrd);
  assert.equal(st.initrd!.address % 4096, 0);
  assert.equal(st.initrd!.address, Math.floor((256 * MiB - initrd.length) / 4096) * 4096);
  assert.deepEqual(mem.read(st.initrd!.address, initrd.length), initrd);

  st = boot(mem, { initrdAddrMax: 100 * MiB - 1 }, initrd);
  assert.ok(st.initrd!.address + initrd.length <= 100 * MiB);
  assert.ok(st.initrd!.address + initrd.length > 100 * MiB - 4096);
  assert.ok(st.initrd!.address >= st.kernelAreaEnd);

  // No initrd: the fields stay zero.
  st = boot(mem);
  assert.equal(st.initrd, undefined);
  assert.equal(u32(mem, st.zeroPage + 0x218), 0);
  assert.equal(u32(mem, st.zeroPage + 0x21c), 0);
});

test('initrd avoids the kernel area: below it when there is no room above, an error when nowhere', () => {
  const mem = memory(256 * MiB);
  // Kernel at 16 MiB using 234 MiB: 6 MiB remain above it, 15 MiB between 1 MiB and the kernel.
  const opts = { initSize: 234 * MiB };
  const st = boot(mem, opts, new Uint8Array(10 * MiB));
  assert.equal(st.kernelAreaEnd, 250 * MiB);
  assert.ok(st.initrd!.address + 10 * MiB <= st.kernelLoadAddress);
  assert.ok(st.initrd!.address >= 1 * MiB);
  assert.throws(() => boot(mem, opts, new Uint8Array(20 * MiB)), (e: unknown) => e instanceof BootError && /initrd \(20971520 bytes\) does not fit/.test(e.message));
  // Too big for all of RAM.
  assert.throws(() => boot(mem, {}, new Uint8Array(300 * MiB)), BootError);
});

test('a kernel whose init_size does not fit in RAM is refused', () => {
  const mem = memory(64 * MiB);
  assert.throws(() => boot(mem, { initSize: 51 * MiB }), (e: unknown) => e instanceof BootError && /kernel needs RAM up to 0x4300000/.test(e.message));
  assert.doesNotThrow(() => boot(mem, { initSize: 40 * MiB }));
});

test('more than 3 GiB: RAM above 4 GiB in e820, initrd still below initrd_addr_max', () => {
  const mem = memory(4 * GiB);
  const st = boot(mem, {}, new Uint8Array(MiB));
  assert.deepEqual(st.e820.at(-1), { addr: 4 * GiB, size: GiB, type: E820_RAM });
  assert.equal(st.initrd!.address + MiB, 2 * GiB, 'initrd_addr_max 0x7fffffff caps it at 2 GiB');
  assert.throws(() => loadLinux(mem, makeBzImage(), undefined, '', { cpus: 0 }), BootError);
});

test('command line: at most cmdline_size bytes', () => {
  const mem = memory(128 * MiB);
  assert.doesNotThrow(() => boot(mem, { cmdlineSize: 10 }, undefined, 'x'.repeat(10)));
  assert.throws(() => boot(mem, { cmdlineSize: 10 }, undefined, 'x'.repeat(11)), (e: unknown) => e instanceof BootError && /11 bytes, longer than the 10/.test(e.message));
  assert.throws(() => boot(mem, {}, undefined, 'a\0b'), /NUL/);
});

test('identity page tables map the first 4 GiB with 2 MiB pages and nothing above', () => {
  const mem = memory(128 * MiB);
  const st = boot(mem);
  for (const va of [0, 0x7000, 0x1000200, 0x7ffffff, 0xe0000, 0xc0000000, 0xfec00000, 0xfee00000, 0xffffffff]) {
    const t = translate(mem, st.cr3, va);
    assert.ok(t, `0x${va.toString(16)} mapped`);
    assert.equal(t.pa, va);
    assert.ok(t.writable);
  }
  assert.equal(translate(mem, st.cr3, 4 * GiB), undefined);
  assert.equal(translate(mem, st.cr3, 2 ** 39), undefined);
  // PML4 at 0x9000, PDPT at 0xa000, PDs at 0xb000-0xefff: all below the EBDA.
  assert.equal(u64(mem, 0x9000) & ~0xfffn, 0xa000n);
  for (let g = 0; g < 4; g++) assert.equal(u64(mem, 0xa000 + 8 * g) & ~0xfffn, BigInt(0xb000 + g * 0x1000));
});

/** Decode a GDT descriptor into base, effective limit and VMCS-format access rights (SDM Vol. 3A §3.4.5). */
function decodeDescriptor(d: bigint): { base: number; limit: number; ar: number } {
  const limit20 = Number((d & 0xffffn) | (((d >> 48n) & 0xfn) << 16n));
  const base = Number(((d >> 16n) & 0xffffffn) | (((d >> 56n) & 0xffn) << 24n));
  const access = Number((d >> 40n) & 0xffn);
  const flags = Number((d >> 52n) & 0xfn);
  const g = (flags & 8) !== 0;
  return { base, limit: g ? limit20 * 4096 + 4095 : limit20, ar: access | (flags << 12) };
}

test('GDT holds __BOOT_CS (64-bit code) and __BOOT_DS matching the returned segment state', () => {
  const mem = memory(128 * MiB);
  const st = boot(mem);
  assert.equal(st.gdtBase, 0x500);
  assert.equal(st.gdtLimit, 4 * 8 - 1);
  assert.equal(st.cs.selector, BOOT_CS);
  assert.equal(st.ds.selector, BOOT_DS);
  assert.equal(u64(mem, 0x500), 0n);
  const cs = decodeDescriptor(u64(mem, st.gdtBase + st.cs.selector));
  const ds = decodeDescriptor(u64(mem, st.gdtBase + st.ds.selector));
  assert.deepEqual(cs, { base: st.cs.base, limit: st.cs.limit, ar: st.cs.accessRights });
  assert.deepEqual(ds, { base: st.ds.base, limit: st.ds.limit, ar: st.ds.accessRights });
  // Code: present, S, type execute/read, L=1 and D=0 (SDM: D must be 0 when L is 1), DPL 0.
  assert.equal(cs.ar & 0x9f, 0x9b);
  assert.equal(cs.ar & 0x6000, 0x2000);
  assert.equal((cs.ar >> 5) & 3, 0);
  // Data: present, S, read/write.
  assert.equal(ds.ar & 0x9f, 0x93);
  assert.equal(st.tr.accessRights & 0x8f, 0x8b, 'TR is a present busy 64-bit TSS');
  assert.deepEqual(decodeAccessRights(st.cs.accessRights), { type: 0xb, s: 1, dpl: 0, present: 1, avl: 0, l: 1, db: 0, g: 1, unusable: 0 });
  assert.deepEqual(decodeAccessRights(st.ds.accessRights), { type: 0x3, s: 1, dpl: 0, present: 1, avl: 0, l: 0, db: 1, g: 1, unusable: 0 });
  assert.equal(decodeAccessRights(st.ldtr.accessRights).unusable, 1);
});

test('boot structures do not overlap and sit in the right kind of memory', () => {
  const mem = memory(256 * MiB);
  const st = boot(mem, {}, new Uint8Array(MiB), 'console=ttyS0');
  const regions: [string, number, number][] = [
    ['gdt', st.gdtBase, st.gdtLimit + 1],
    ['zero page', st.zeroPage, 4096],
    ['stack', st.rsp - 0x800, 0x800],
    ['page tables', st.cr3, 6 * 4096],
    ['cmdline', st.cmdlineAddress, 14],
    ['kernel', st.kernelLoadAddress, st.kernelAreaEnd - st.kernelLoadAddress],
    ['initrd', st.initrd!.address, st.initrd!.size],
    ['setup_data', Number(new DataView(mem.read(st.zeroPage + 0x250, 8).buffer).getBigUint64(0, true)), 16 + 32],
  ];
  for (const [name, at, len] of regions) {
    const e = st.e820.find((x) => at >= x.addr && at + len <= x.addr + x.size);
    assert.equal(e?.type, E820_RAM, `${name} is in e820 RAM`);
  }
  for (let i = 0; i < regions.length; i++) {
    for (let j = i + 1; j < regions.length; j++) {
      const [a, as, al] = regions[i];
      const [b, bs, bl] = regions[j];
      assert.ok(as + al <= bs || bs + bl <= as, `${a} and ${b} overlap`);
    }
  }
  for (const [sig, t] of Object.entries(st.acpi.tables)) {
    const e = st.e820.find((x) => t.address >= x.addr && t.address + t.length <= x.addr + x.size);
    assert.equal(e?.type, E820_RESERVED, `${sig} is in reserved memory`);
  }
});

test('setup_data carries a fresh SETUP_RNG_SEED; rngSeed gives its bytes or turns it off', () => {
  const mem = memory(64 * MiB);
  const setupData = () => Number(new DataView(mem.read(0x7000 + 0x250, 8).buffer).getBigUint64(0, true));
  const entry = () => {
    const at = setupData();
    const v = new DataView(mem.read(at, 16).buffer);
    return { next: v.getBigUint64(0, true), type: v.getUint32(8, true), len: v.getUint32(12, true), data: mem.read(at + 16, v.getUint32(12, true)) };
  };
  boot(mem);
  const first = entry();
  assert.ok(setupData() > 0 && setupData() < 0x100000, 'in the first MiB, which Linux reserves early');
  assert.deepEqual([first.next, first.type, first.len], [0n, 9, 32], 'one SETUP_RNG_SEED entry of 256 bits');
  assert.ok(first.data.some((b) => b !== 0));
  boot(mem);
  assert.notDeepEqual(entry().data, first.data, 'a new seed on every load (a reboot too)');
  const seed = Uint8Array.from({ length: 40 }, (_, i) => i + 1);
  loadLinux(mem, makeBzImage({ payload: PAYLOAD }), undefined, '', { cpus: 1, rngSeed: seed });
  assert.deepEqual(entry().data, seed);
  loadLinux(mem, makeBzImage({ payload: PAYLOAD }), undefined, '', { cpus: 1, rngSeed: false });
  assert.equal(setupData(), 0, 'no setup_data');
  assert.throws(() => loadLinux(mem, makeBzImage({ payload: PAYLOAD }), undefined, '', { cpus: 1, rngSeed: new Uint8Array(5000) }), /does not fit/);
});

test('the real kernel (if cached) loads into 256 MiB', (t) => {
  const path = findRealKernel();
  if (!path) {
    t.skip(REAL_KERNEL_MISSING);
    return;
  }
  const img = new Uint8Array(readFileSync(path));
  const h = parseBzImage(img);
  const mem = memory(256 * MiB);
  const st = loadLinux(mem, img, new Uint8Array(8 * MiB), 'console=ttyS0', { cpus: 1, decompressInVmm: false });
  assert.equal(st.entry64, h.prefAddress + 0x200);
  assert.deepEqual(mem.read(st.kernelLoadAddress, 4096), h.kernel.subarray(0, 4096));
  assert.ok(st.initrd!.address >= st.kernelAreaEnd);
});

test('the real kernel (if cached, LZ4) is decompressed by the loader: vmlinux at its physical address, entered at startup_64', (t) => {
  const path = findRealKernel();
  if (!path) {
    t.skip(REAL_KERNEL_MISSING);
    return;
  }
  const img = new Uint8Array(readFileSync(path));
  const h = parseBzImage(img);
  const payload = h.kernel.subarray(new DataView(img.buffer).getUint32(0x248, true));
  if (!isLz4Legacy(payload)) {
    t.skip('this kernel\'s payload is not LZ4: the guest decompresses it');
    return;
  }
  const vmlinux = parseVmlinux(decompressLz4Legacy(payload.subarray(0, new DataView(img.buffer).getUint32(0x24c, true))));
  const mem = memory(256 * MiB);
  const st = loadLinux(mem, img, new Uint8Array(8 * MiB), 'console=ttyS0', { cpus: 1 });
  assert.equal(st.entry64, vmlinux.entry, 'vmlinux\'s ELF entry (startup_64)');
  assert.equal(st.entry64, h.prefAddress, 'linked at the preferred load address');
  for (const seg of vmlinux.segments) {
    assert.deepEqual(mem.read(seg.paddr, 4096), seg.data.subarray(0, 4096), `segment at 0x${seg.paddr.toString(16)}`);
    assert.ok(seg.paddr + seg.memsz <= st.kernelAreaEnd && st.initrd!.address >= st.kernelAreaEnd);
  }
});

test('the LZ4 legacy decoder: literals, an overlapping match, the trailing size; damaged input is refused', () => {
  // "abc", then a 9-byte match at offset 3 (overlapping its own output), then the literal-only last sequence "x".
  const block = [0x35, 0x61, 0x62, 0x63, 0x03, 0x00, 0x10, 0x78];
  const frame = (blk: number[], size: number) => Uint8Array.from([0x02, 0x21, 0x4c, 0x18, blk.length, 0, 0, 0, ...blk, size, 0, 0, 0]);
  assert.ok(isLz4Legacy(frame(block, 13)));
  assert.equal(new TextDecoder().decode(decompressLz4Legacy(frame(block, 13))), 'abcabcabcabcx');
  assert.throws(() => decompressLz4Legacy(frame(block, 14)), /decoded to 13 bytes/);
  assert.throws(() => decompressLz4Legacy(frame([0x35, 0x61, 0x62, 0x63, 0x09, 0x00], 12)), /match outside the output/);
  assert.throws(() => parseVmlinux(new Uint8Array(64)), /not an ELF file/);
});
