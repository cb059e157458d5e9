// The bzImage format: a real-mode setup part followed by the protected-mode kernel, with the
// "setup header" at offset 0x1F1 telling a boot loader how to load it (Linux
// Documentation/arch/x86/boot.rst, "THE REAL-MODE KERNEL HEADER"). ringzero enters the kernel
// through its 64-bit entry point, so it accepts only images that have one.

export class BootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootError';
  }
}

// Offsets of setup header fields in the image (boot.rst, "THE REAL-MODE KERNEL HEADER").
export const HDR = {
  setup_sects: 0x1f1,
  syssize: 0x1f4,
  vid_mode: 0x1fa,
  boot_flag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  type_of_loader: 0x210,
  loadflags: 0x211,
  code32_start: 0x214,
  ramdisk_image: 0x218,
  ramdisk_size: 0x21c,
  heap_end_ptr: 0x224,
  cmd_line_ptr: 0x228,
  initrd_addr_max: 0x22c,
  kernel_alignment: 0x230,
  relocatable_kernel: 0x234,
  min_alignment: 0x235,
  xloadflags: 0x236,
  cmdline_size: 0x238,
  pref_address: 0x258,
  init_size: 0x260,
  handover_offset: 0x264,
  kernel_info_offset: 0x268,
} as const;

/** The smallest image that holds every field we read (through kernel_info_offset). */
const MIN_HEADER_END = 0x26c;
export const BOOT_FLAG = 0xaa55;
/** "HdrS" read as a little-endian 32-bit number. */
export const HDRS_MAGIC = 0x53726448;
/** 2.12 added xloadflags and with it XLF_KERNEL_64, which announces the 64-bit entry point. */
export const MIN_PROTOCOL = 0x020c;
/** loadflags bit 0: the protected-mode code is loaded at 0x100000 (a bzImage, not a zImage). */
export const LOADED_HIGH = 1 << 0;
/** xloadflags bit 0: the kernel has the legacy 64-bit entry point at load address + 0x200. */
export const XLF_KERNEL_64 = 1 << 0;
/** xloadflags bit 1: kernel, boot_params, command line and ramdisk may be above 4 GiB. */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** Sector size of the setup part. */
export const SECTOR = 512;

export interface BzImage {
  /** Boot protocol version, e.g. 0x020f for 2.15. */
  protocol: number;
  /** Number of 512-byte setup sectors after the boot sector (0 in the image means 4). */
  setupSects: number;
  /** The setup header bytes [0x1F1, 0x202 + byte at 0x201): what a loader copies into boot_params. */
  setupHeader: Uint8Array;
  /** The protected-mode kernel: the image after the (setupSects + 1) sectors of real-mode code. */
  kernel: Uint8Array;
  loadflags: number;
  xloadflags: number;
  /** Whether the protected-mode kernel may be loaded at any kernelAlignment-aligned address. */
  relocatable: boolean;
  /** Alignment a relocatable kernel must be loaded at (a power of two). */
  kernelAlignment: number;
  /** Where the kernel prefers to be loaded (its LOAD_PHYSICAL_ADDR); it never decompresses below it. */
  prefAddress: number;
  /** Bytes of memory the kernel needs from its load address until it has set up its own memory map. */
  initSize: number;
  /** Highest address the initrd's last byte may occupy. */
  initrdAddrMax: number;
  /** Longest command line the kernel accepts, without the terminating NUL. */
  cmdlineSize: number;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Parse and check a bzImage's setup header; throws BootError saying what is wrong. */
export function parseBzImage(image: Uint8Array): BzImage {
  const head = parseBzImageHead(image, image.length);
  return { ...head, kernel: image.subarray((head.setupSects + 1) * SECTOR) };
}

/** The most a setup part can take: setup_sects is one byte, plus the boot sector. */
export const MAX_SETUP_BYTES = (255 + 1) * SECTOR;

/**
 * parseBzImage's checks and fields but the kernel's bytes, from the image's first bytes (`head`: at least
 * MAX_SETUP_BYTES of them, or the whole image when it is shorter) and its length: what validating a kernel file
 * needs without reading its megabytes.
 */
export function parseBzImageHead(image: Uint8Array, size: number): Omit<BzImage, 'kernel'> {
  if (size < MIN_HEADER_END || image.length < Math.min(size, MAX_SETUP_BYTES)) {
    throw new BootError(`not a bzImage: ${size} bytes is too small to hold a setup header`);
  }
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const bootFlag = v.getUint16(HDR.boot_flag, true);
  if (bootFlag !== BOOT_FLAG) throw new BootError(`not a bzImage: boot_flag is ${hex(bootFlag)}, expected 0xaa55`);
  if (v.getUint32(HDR.header, true) !== HDRS_MAGIC) throw new BootError('not a bzImage: no "HdrS" signature at offset 0x202');
  const protocol = v.getUint16(HDR.version, true);
  const protoText = `${protocol >> 8}.${(protocol & 0xff).toString().padStart(2, '0')}`;
  if (protocol < MIN_PROTOCOL) {
    throw new BootError(`not a usable bzImage: boot protocol ${protoText} is too old (2.12 or later is needed for the 64-bit entry point)`);
  }
  const loadflags = image[HDR.loadflags];
  if (!(loadflags & LOADED_HIGH)) throw new BootError('not a bzImage: LOADED_HIGH is clear in loadflags (a zImage loads below 1 MiB)');
  const xloadflags = v.getUint16(HDR.xloadflags, true);
  if (!(xloadflags & XLF_KERNEL_64)) throw new BootError('not a usable bzImage: XLF_KERNEL_64 is clear in xloadflags (no 64-bit entry point)');

  const setupSects = image[HDR.setup_sects] === 0 ? 4 : image[HDR.setup_sects];
  const setupBytes = (setupSects + 1) * SECTOR;
  if (size <= setupBytes) {
    throw new BootError(`not a bzImage: truncated, ${size} bytes but the setup part alone takes ${setupBytes}`);
  }
  const kernelLength = size - setupBytes;
  // syssize counts 16-byte paragraphs of protected-mode code (boot.rst, field "syssize").
  const syssize = v.getUint32(HDR.syssize, true);
  if (syssize * 16 > kernelLength) {
    throw new BootError(`not a bzImage: truncated, syssize says ${syssize * 16} bytes of kernel but only ${kernelLength} follow the setup part`);
  }
  const headerEnd = 0x202 + image[0x201];
  if (headerEnd > setupBytes) throw new BootError(`not a bzImage: setup header end ${hex(headerEnd)} is past the setup part`);

  const relocatable = image[HDR.relocatable_kernel] !== 0;
  const kernelAlignment = v.getUint32(HDR.kernel_alignment, true);
  if (relocatable && (kernelAlignment === 0 || (kernelAlignment & (kernelAlignment - 1)) !== 0)) {
    throw new BootError(`not a usable bzImage: kernel_alignment ${hex(kernelAlignment)} is not a power of two`);
  }
  const prefAddress = Number(v.getBigUint64(HDR.pref_address, true));
  if (!Number.isSafeInteger(prefAddress) || prefAddress < 0x100000) {
    throw new BootError(`not a usable bzImage: pref_address ${hex(prefAddress)} is below 1 MiB or out of range`);
  }
  if (relocatable && prefAddress % kernelAlignment !== 0) {
    throw new BootError(`not a usable bzImage: pref_address ${hex(prefAddress)} is not a multiple of kernel_alignment ${hex(kernelAlignment)}`);
  }
  const initSize = v.getUint32(HDR.init_size, true);
  if (initSize < kernelLength) {
    throw new BootError(`not a usable bzImage: init_size ${hex(initSize)} is smaller than the ${hex(kernelLength)}-byte kernel`);
  }
  return {
    protocol,
    setupSects,
    setupHeader: image.subarray(HDR.setup_sects, headerEnd),
    loadflags,
    xloadflags,
    relocatable,
    kernelAlignment,
    prefAddress,
    initSize,
    initrdAddrMax: v.getUint32(HDR.initrd_addr_max, true),
    cmdlineSize: v.getUint32(HDR.cmdline_size, true),
  };
}
