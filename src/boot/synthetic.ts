// A minimal, well-formed bzImage built in memory: for tests of the loader and of CPU engines that
// want to "boot" a tiny 64-bit program through the real Linux boot path. The payload's byte 0x200
// is the 64-bit entry point (startup_64 in a real kernel).
import { HDR, HDRS_MAGIC, LOADED_HIGH, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64 } from './bzimage.ts';

export interface SyntheticBzImageOptions {
  /** Protected-mode kernel bytes; default 4 KiB of `hlt` with the entry at 0x200. */
  payload?: Uint8Array;
  /** Number of setup sectors written in the header (0 means 4, as boot.rst says). Default 4. */
  setupSects?: number;
  protocol?: number;
  loadflags?: number;
  xloadflags?: number;
  relocatable?: boolean;
  kernelAlignment?: number;
  prefAddress?: number;
  /** Default: the payload size rounded up to 1 MiB. */
  initSize?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
}

/** Build a bzImage: boot sector + setup sectors (header filled in) + payload. */
export function makeBzImage(o: SyntheticBzImageOptions = {}): Uint8Array {
  const payload = o.payload ?? new Uint8Array(4096).fill(0xf4);
  const headerSects = o.setupSects ?? 4;
  const realSects = headerSects === 0 ? 4 : headerSects;
  const setupBytes = (realSects + 1) * 512;
  const image = new Uint8Array(setupBytes + payload.length);
  const v = new DataView(image.buffer);
  image[HDR.setup_sects] = headerSects;
  v.setUint32(HDR.syssize, Math.ceil(payload.length / 16), true);
  v.setUint16(HDR.boot_flag, 0xaa55, true);
  // jump: a short jmp over the header; byte 0x201 gives the header's end (0x202 + offset).
  image[HDR.jump] = 0xeb;
  image[HDR.jump + 1] = 0x6a; // header ends at 0x26c, after kernel_info_offset
  v.setUint32(HDR.header, HDRS_MAGIC, true);
  v.setUint16(HDR.version, o.protocol ?? 0x020f, true);
  image[HDR.loadflags] = o.loadflags ?? LOADED_HIGH;
  v.setUint32(HDR.code32_start, 0x100000, true);
  v.setUint32(HDR.initrd_addr_max, o.initrdAddrMax ?? 0x7fffffff, true);
  v.setUint32(HDR.kernel_alignment, o.kernelAlignment ?? 0x200000, true);
  image[HDR.relocatable_kernel] = (o.relocatable ?? true) ? 1 : 0;
  image[HDR.min_alignment] = 21;
  v.setUint16(HDR.xloadflags, o.xloadflags ?? (XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G), true);
  v.setUint32(HDR.cmdline_size, o.cmdlineSize ?? 2047, true);
  v.setBigUint64(HDR.pref_address, BigInt(o.prefAddress ?? 0x1000000), true);
  v.setUint32(HDR.init_size, o.initSize ?? Math.ceil(payload.length / 0x100000) * 0x100000, true);
  image.set(payload, setupBytes);
  return image;
}
