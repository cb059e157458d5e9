import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BootError, HDR, MAX_SETUP_BYTES, parseBzImage, parseBzImageHead, XLF_KERNEL_64 } from '../src/boot/bzimage.ts';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { findRealKernel, REAL_KERNEL_MISSING } from './support/real-kernel.ts';

function refused(image: Uint8Array, message: RegExp): void {
  assert.throws(() => parseBzImage(image), (e: unknown) => e instanceof BootError && message.test(e.message));
}

function patched(edit: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = makeBzImage();
  edit(new DataView(b.buffer), b);
  return b;
}

test('a good synthetic image is accepted with its fields', () => {
  const payload = new Uint8Array(10000).map((_, i) => i & 0xff);
  const img = makeBzImage({ payload, setupSects: 6, prefAddress: 0x2000000, initSize: 0x300000, cmdlineSize: 1000, initrdAddrMax: 0x37ffffff });
  const h = parseBzImage(img);
  assert.equal(h.protocol, 0x020f);
  assert.equal(h.setupSects, 6);
  assert.equal(h.kernel.length, payload.length);
  assert.deepEqual(Array.from(h.kernel.subarray(0, 4)), [0, 1, 2, 3]);
  assert.equal(h.relocatable, true);
  assert.equal(h.kernelAlignment, 0x200000);
  assert.equal(h.prefAddress, 0x2000000);
  assert.equal(h.initSize, 0x300000);
  assert.equal(h.cmdlineSize, 1000);
  assert.equal(h.initrdAddrMax, 0x37ffffff);
  assert.ok(h.xloadflags & XLF_KERNEL_64);
  // The setup header runs from 0x1F1 to 0x202 + the jump offset.
  assert.equal(h.setupHeader.length, 0x202 + img[0x201] - 0x1f1);
  assert.equal(h.setupHeader[0], 6);
});

test('setup_sects 0 means 4', () => {
  const img = makeBzImage({ setupSects: 0 });
  const h = parseBzImage(img);
  assert.equal(h.setupSects, 4);
  assert.equal(h.kernel.length, img.length - 5 * 512);
});

test('each bad field is refused with its message', () => {
  refused(new Uint8Array(100), /not a bzImage: 100 bytes is too small/);
  refused(patched((v) => v.setUint16(HDR.boot_flag, 0x1234, true)), /not a bzImage: boot_flag is 0x1234/);
  refused(patched((v) => v.setUint32(HDR.header, 0x12345678, true)), /not a bzImage: no "HdrS"/);
  refused(makeBzImage({ protocol: 0x0206 }), /boot protocol 2\.06 is too old/);
  refused(makeBzImage({ protocol: 0x020b }), /boot protocol 2\.11 is too old/);
  refused(makeBzImage({ loadflags: 0 }), /LOADED_HIGH is clear/);
  refused(makeBzImage({ xloadflags: 0 }), /XLF_KERNEL_64 is clear/);
  refused(makeBzImage({ kernelAlignment: 0x300000 }), /kernel_alignment 0x300000 is not a power of two/);
  refused(makeBzImage({ kernelAlignment: 0 }), /kernel_alignment 0x0 is not a power of two/);
  refused(makeBzImage({ prefAddress: 0x1100000 }), /pref_address 0x1100000 is not a multiple of kernel_alignment/);
  refused(makeBzImage({ prefAddress: 0x80000 }), /pref_address 0x80000 is below 1 MiB/);
  refused(makeBzImage({ payload: new Uint8Array(8192), initSize: 4096 }), /init_size 0x1000 is smaller than the 0x2000-byte kernel/);
  // Truncated: the file ends inside the setup sectors, or before syssize's worth of kernel.
  refused(makeBzImage({ setupSects: 4 }).subarray(0, 5 * 512), /truncated, 2560 bytes but the setup part alone takes 2560/);
  refused(makeBzImage().subarray(0, 5 * 512 + 100), /truncated, syssize says 4096 bytes of kernel but only 100/);
});

test('the head of an image and its size give what the whole image gives, the kernel bytes aside', () => {
  const img = makeBzImage({ payload: new Uint8Array(MAX_SETUP_BYTES * 2), setupSects: 6, initSize: 0x300000 });
  const { kernel, ...whole } = parseBzImage(img);
  assert.equal(kernel.length, img.length - 7 * 512);
  assert.deepEqual(parseBzImageHead(img.subarray(0, MAX_SETUP_BYTES), img.length), whole);
  // The size, not the head's length, is what the truncation and init_size checks see.
  assert.throws(() => parseBzImageHead(img.subarray(0, MAX_SETUP_BYTES), 7 * 512 + 100), /truncated, syssize says \d+ bytes of kernel but only 100/);
  assert.throws(() => parseBzImageHead(img.subarray(0, MAX_SETUP_BYTES), 0x400000), /init_size 0x300000 is smaller/);
  // A head shorter than the setup part can be (of a longer image) is refused, not read past.
  assert.throws(() => parseBzImageHead(img.subarray(0, 4096), img.length), /too small to hold a setup header/);
});

test('a non-relocatable kernel does not need an aligned pref_address', () => {
  const h = parseBzImage(makeBzImage({ relocatable: false, kernelAlignment: 0, prefAddress: 0x100000 }));
  assert.equal(h.relocatable, false);
  assert.equal(h.prefAddress, 0x100000);
});

test('the real kernel (if cached) parses', (t) => {
  const path = findRealKernel();
  if (!path) {
    t.skip(REAL_KERNEL_MISSING);
    return;
  }
  const img = new Uint8Array(readFileSync(path));
  const h = parseBzImage(img);
  assert.ok(h.protocol >= 0x020c);
  assert.ok(h.xloadflags & XLF_KERNEL_64);
  assert.equal(h.relocatable, true);
  assert.ok(h.initSize > h.kernel.length);
  assert.ok(h.cmdlineSize >= 255);
  assert.equal(h.prefAddress % h.kernelAlignment, 0);
});
