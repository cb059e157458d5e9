// Loading a Linux bzImage for its 64-bit entry point (Documentation/arch/x86/boot.rst, "64-bit BOOT
// PROTOCOL"): the loader copies the protected-mode kernel, the command line and the initrd into RAM,
// fills struct boot_params (the "zero page", arch/x86/include/uapi/asm/bootparam.h) with the setup
// header, the e820 memory map and the ACPI RSDP address, writes the ACPI tables, a GDT and identity
// page tables, and returns the CPU state to start from: 64-bit mode, paging on, %rsi = zero page.
//
// Low memory map (all below the EBDA at 0x9FC00, except the ACPI tables):
//   0x00500  GDT                     0x07000  zero page (boot_params, 4 KiB)
//   0x08000-0x08ff0 initial stack    0x09000  PML4   0x0a000 PDPT   0x0b000-0x0efff four PDs
//   0x20000  command line            0xe0000  RSDP, then the other ACPI tables
//   pref_address (16 MiB for Debian's kernel) the kernel; the initrd at the top of low RAM.
import { randomBytes } from 'node:crypto';
import type { GuestMemory } from '../memory/guest-memory.ts';
import { GiB, HIGH_RAM_START, MiB } from '../memory/guest-memory.ts';
import { writeAcpiTables, type AcpiTables } from './acpi.ts';
import { BootError, HDR, MAX_SETUP_BYTES, SECTOR, parseBzImage, parseBzImageHead, type BzImage } from './bzimage.ts';
import { isLz4Legacy, KernelFormatError, type Vmlinux } from './vmlinux.ts';
import { decodeVmlinuxByIdentity, decodeVmlinuxCached, vmlinuxCacheDir, type SegmentDestination, type SegmentReader } from './vmlinux-cache.ts';
import { preadFully } from '../sys/file-io.ts';
import {
  BIOS_AREA_END, BOOT_GDT_ADDR, BOOT_STACK_TOP, CMDLINE_ADDR, CMDLINE_AREA_END, EBDA_START, PCI_ECAM_BASE,
  PCI_ECAM_SIZE, PDPT_ADDR, PD_ADDR, PML4_ADDR, SETUP_DATA_ADDR, ZERO_PAGE_ADDR,
} from './platform.ts';

export { BootError };

/** A segment register as the CPU holds it after loading a descriptor (the "hidden part"). */
export interface SegmentState {
  selector: number;
  base: number;
  /** Effective byte limit (already scaled by the G bit): 0xFFFFFFFF for a flat 4 GiB segment. */
  limit: number;
  /**
   * Access rights in the layout of the Intel SDM Vol. 3C §24.4.1 (VMCS guest segment AR):
   * bits 3-0 type, 4 S (code/data), 6-5 DPL, 7 P, 12 AVL, 13 L (64-bit code), 14 D/B, 15 G,
   * 16 "segment unusable". Bits 7-0 and 15-12 are the descriptor's bytes 5 and 6 (high nibble).
   */
  accessRights: number;
}

/** The bits of SegmentState.accessRights, one by one (the fields of KVM's struct kvm_segment). */
export interface AccessRightsFields {
  type: number;
  /** 1 for code/data, 0 for system segments (TSS, LDT). */
  s: number;
  dpl: number;
  present: number;
  avl: number;
  /** 64-bit code segment. */
  l: number;
  /** Default operand size (32-bit) / big. */
  db: number;
  /** Limit granularity: 4 KiB units. */
  g: number;
  unusable: number;
}

export function decodeAccessRights(ar: number): AccessRightsFields {
  return {
    type: ar & 0xf,
    s: (ar >> 4) & 1,
    dpl: (ar >> 5) & 3,
    present: (ar >> 7) & 1,
    avl: (ar >> 12) & 1,
    l: (ar >> 13) & 1,
    db: (ar >> 14) & 1,
    g: (ar >> 15) & 1,
    unusable: (ar >> 16) & 1,
  };
}

/** One e820 entry (boot_params.e820_table, struct boot_e820_entry). */
export interface E820Entry {
  addr: number;
  size: number;
  /** E820_TYPE_RAM (1) or E820_TYPE_RESERVED (2). */
  type: number;
}

export const E820_RAM = 1;
export const E820_RESERVED = 2;

/**
 * The CPU state in which to enter the kernel (boot.rst, "64-bit BOOT PROTOCOL": long mode with
 * paging, the loaded kernel, zero page and command line identity-mapped, a GDT with __BOOT_CS and
 * __BOOT_DS, interrupts disabled, %rsi = boot_params), plus where the loader put everything.
 * The CPU engine applies it; nothing here is engine-specific.
 */
export interface BootState {
  /** %rip: the 64-bit entry point, protected-mode load address + 0x200 (startup_64). */
  entry64: number;
  /** Address of struct boot_params (the zero page). */
  zeroPage: number;
  /** %rsi: must hold the zero page address. Every other general-purpose register starts at 0. */
  rsi: number;
  /** %rsp: a small stack below the page tables (startup_64 soon switches to its own). */
  rsp: number;
  /** RFLAGS: only the always-one bit 1; IF clear because the protocol wants interrupts disabled. */
  rflags: number;
  /** CR0: PE (bit 0) | ET (bit 4) | NE (bit 5) | PG (bit 31). */
  cr0: number;
  /** CR3: physical address of the PML4. */
  cr3: number;
  /** CR4: PAE (bit 5), required for long mode. */
  cr4: number;
  /** IA32_EFER: LME (bit 8) | LMA (bit 10): long mode enabled and active. */
  efer: number;
  /** GDTR. */
  gdtBase: number;
  gdtLimit: number;
  /** IDTR: empty; interrupts are off until the kernel loads its own IDT. */
  idtBase: number;
  idtLimit: number;
  /** CS = __BOOT_CS (0x10): 64-bit code, DPL 0, execute/read. */
  cs: SegmentState;
  /** DS = ES = SS = FS = GS = __BOOT_DS (0x18): flat 4 GiB data, read/write. */
  ds: SegmentState;
  /** TR: selector 0 with a busy 64-bit TSS type, which hardware virtualization insists on; Linux loads its own. */
  tr: SegmentState;
  /** LDTR: unusable (null). */
  ldtr: SegmentState;
  /** Where the protected-mode kernel was copied. */
  kernelLoadAddress: number;
  /** End of the memory the kernel uses while decompressing: max(load address, pref_address) + init_size. */
  kernelAreaEnd: number;
  cmdlineAddress: number;
  /** The initrd's place in guest memory, when there is one. */
  initrd?: { address: number; size: number };
  /** The e820 map given to the kernel. */
  e820: E820Entry[];
  acpi: AcpiTables;
  /** The parsed image header. */
  image: Omit<BzImage, 'kernel'>;
}

export interface LoadLinuxOptions {
  /** vCPUs: APIC IDs 0..cpus-1 in the MADT. */
  cpus: number;
  /** Whether the machine has the 8259 pair (MADT PCAT_COMPAT); default true. */
  dual8259?: boolean;
  /**
   * Decompress an LZ4 payload here and enter vmlinux directly (src/boot/vmlinux.ts), instead of letting the
   * guest run the bzImage's decompressor. Default true; other payload formats always take the bzImage path.
   */
  decompressInVmm?: boolean;
  /**
   * Where decompressed kernels are cached (src/boot/vmlinux-cache.ts): a directory, or false for none.
   * Default ${RINGZERO_CACHE:-~/.cache/ringzero}/vmlinux.
   */
  kernelCache?: string | false;
  /**
   * Bytes for the guest's random number generator, handed over as a SETUP_RNG_SEED setup_data entry (Linux 6.0+;
   * older kernels skip unknown types), or false for none. Default: 32 fresh random bytes. A kernel that trusts its
   * boot loader (RANDOM_TRUST_BOOTLOADER, Debian's default) credits them, so its RNG is ready at boot: getrandom()
   * does not block and the periodic retries waiting for it stop (the %p hashing key's, every 2 s of an idle guest).
   * This is what QEMU's x86 loader does.
   */
  rngSeed?: Uint8Array | false;
}

// Selectors of the 64-bit boot protocol: "__BOOT_CS(0x10) ... __BOOT_DS(0x18)" (boot.rst).
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
/** Access rights (see SegmentState): type 0xB (code, execute/read, accessed) | S | P | L | G. */
export const CODE64_AR = 0xb | 0x10 | 0x80 | 0x2000 | 0x8000;
/** Type 0x3 (data, read/write, accessed) | S | P | D/B (32-bit) | G. */
export const DATA_AR = 0x3 | 0x10 | 0x80 | 0x4000 | 0x8000;
/** Type 0xB (busy 64-bit TSS) | P; a system segment (S = 0). */
const TSS_BUSY_AR = 0xb | 0x80;
const UNUSABLE_AR = 0x10000;

const CR0_PE = 1 << 0;
const CR0_ET = 1 << 4;
const CR0_NE = 1 << 5;
const CR0_PG = 0x8000_0000;
const CR4_PAE = 1 << 5;
const EFER_LME = 1 << 8;
const EFER_LMA = 1 << 10;

// Page-table entry bits (Intel SDM Vol. 3A §4.5, Tables 4-15 to 4-18).
const PTE_PRESENT = 1 << 0;
const PTE_WRITABLE = 1 << 1;
const PTE_LARGE = 1 << 7; // in a PD entry: maps a 2 MiB page
const LARGE_PAGE = 2 * MiB;
/** GiB the identity map covers: all of the 32-bit space (kernel, zero page, command line, initrd, ACPI, MMIO). */
const IDENTITY_GIB = 4;

const PAGE = 4096;

// Offsets in struct boot_params (bootparam.h; Documentation/arch/x86/zero-page.rst).
const BP_ACPI_RSDP_ADDR = 0x070;
const BP_EXT_RAMDISK_IMAGE = 0x0c0;
const BP_EXT_RAMDISK_SIZE = 0x0c4;
const BP_EXT_CMD_LINE_PTR = 0x0c8;
const BP_E820_ENTRIES = 0x1e8;
const BP_E820_TABLE = 0x2d0;
/** E820_MAX_ENTRIES_ZEROPAGE: room for 128 entries of 20 bytes. */
const BP_E820_MAX = 128;
/** boot.rst, type_of_loader: 0xFF means "undefined" loader, the right value for one without an assigned ID. */
const LOADER_TYPE_UNDEFINED = 0xff;
/** hdr.setup_data (protocol 2.09+): physical address of the first struct setup_data, 0 for none. */
const HDR_SETUP_DATA = 0x250;
/** setup_data type of a random seed (bootparam.h SETUP_RNG_SEED). */
const SETUP_RNG_SEED = 9;
const SETUP_DATA_HEADER = 16;
/** 256 bits: what the kernel needs credited for its RNG to count as initialized (drivers/char/random.c). */
const RNG_SEED_BYTES = 32;

/** A GDT descriptor (Intel SDM Vol. 3A §3.4.5) from base, 20-bit limit, access byte and flags nibble. */
function gdtDescriptor(base: number, limit20: number, access: number, flags: number): bigint {
  const b = BigInt(base >>> 0);
  const l = BigInt(limit20 & 0xfffff);
  return (l & 0xffffn) | ((b & 0xffffffn) << 16n) | (BigInt(access & 0xff) << 40n) | (((l >> 16n) & 0xfn) << 48n) |
    (BigInt(flags & 0xf) << 52n) | (((b >> 24n) & 0xffn) << 56n);
}

/** The boot GDT: null, null, __BOOT_CS, __BOOT_DS; the descriptor bytes match CODE64_AR / DATA_AR. */
export function bootGdt(): bigint[] {
  const code64 = gdtDescriptor(0, 0xfffff, CODE64_AR & 0xff, CODE64_AR >> 12); // 0x00af9b000000ffff
  const data = gdtDescriptor(0, 0xfffff, DATA_AR & 0xff, DATA_AR >> 12); // 0x00cf93000000ffff
  return [0n, 0n, code64, data];
}

/**
 * vmlinux from a bzImage whose payload is LZ4 (undefined for other formats: the guest decompresses those), and whether
 * its segments' data already are in place (read by the cache into into(paddr, memsz), the guest's RAM).
 */
function uncompressedKernel(image: KernelImage, cache: string | false | undefined, into: SegmentDestination, read: SegmentReader): { vmlinux: Vmlinux; inPlace: boolean } | undefined {
  if (image.setupHeader.length < 0x250 - HDR.setup_sects) return undefined;
  const dir = cache === false ? undefined : cache ?? vmlinuxCacheDir();
  // (a kernel file seen before: its cached decode found by the file's identity, without reading the file)
  if (dir !== undefined && image.identity !== undefined) {
    const hit = decodeVmlinuxByIdentity(image.identity, dir, into, read);
    if (hit) return { vmlinux: hit.vmlinux, inPlace: true };
  }
  const hv = new DataView(image.setupHeader.buffer, image.setupHeader.byteOffset, image.setupHeader.byteLength);
  // payload_offset/payload_length (boot.rst, protocol 2.08+): relative to the protected-mode code.
  const offset = hv.getUint32(0x248 - HDR.setup_sects, true);
  const length = hv.getUint32(0x24c - HDR.setup_sects, true);
  if (length === 0 || offset + length > image.kernelLength) return undefined;
  const payload = image.kernel().subarray(offset, offset + length);
  if (!isLz4Legacy(payload)) return undefined;
  try {
    const { vmlinux, source } = decodeVmlinuxCached(payload, dir, into, read, image.identity);
    return { vmlinux, inPlace: source === 'hit' };
  } catch (e) {
    if (e instanceof KernelFormatError) throw new BootError(`the kernel's LZ4 payload is damaged: ${e.message}`);
    throw e;
  }
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

function alignDown(x: number, a: number): number {
  return Math.floor(x / a) * a;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The e820 map of ringzero's PC for a given amount of RAM. */
export function buildE820(mem: Pick<GuestMemory, 'lowSize' | 'highSize'>): E820Entry[] {
  const map: E820Entry[] = [
    // Conventional memory up to the EBDA.
    { addr: 0, size: EBDA_START, type: E820_RAM },
    // EBDA, VGA hole and BIOS ROM area: where firmware tables live on a PC, the ACPI tables here.
    { addr: EBDA_START, size: BIOS_AREA_END - EBDA_START, type: E820_RESERVED },
    { addr: BIOS_AREA_END, size: mem.lowSize - BIOS_AREA_END, type: E820_RAM },
    // The ECAM window must be reserved in e820 or Linux refuses MMCONFIG (arch/x86/pci/mmconfig-shared.c).
    { addr: PCI_ECAM_BASE, size: PCI_ECAM_SIZE, type: E820_RESERVED },
  ];
  if (mem.highSize > 0) map.push({ addr: HIGH_RAM_START, size: mem.highSize, type: E820_RAM });
  return map;
}

/**
 * An initrd read from an open file straight into guest RAM (GuestMemory.readFile: through the memfd, without a page
 * fault per page and without a buffer of its own), rather than passed as bytes.
 */
export interface InitrdFile {
  fd: number;
  length: number;
}

/**
 * A bzImage read from an open file (`size` bytes) as it is needed: its setup part at once, its protected-mode kernel
 * only when that is loaded or its payload decoded. `identity` (vmlinux-cache.ts fileIdentity) lets a kernel decoded
 * before be found in the cache without reading the file at all.
 */
export interface KernelFile {
  fd: number;
  size: number;
  identity?: string;
}

/** A parsed bzImage whose protected-mode kernel (kernelLength bytes) is read on demand. */
interface KernelImage extends Omit<BzImage, 'kernel'> {
  kernelLength: number;
  kernel(): Uint8Array;
  identity?: string;
}

function kernelImage(kernel: Uint8Array | KernelFile): KernelImage {
  if (kernel instanceof Uint8Array) {
    const image = parseBzImage(kernel);
    return { ...image, kernelLength: image.kernel.length, kernel: () => image.kernel };
  }
  const { fd, size, identity } = kernel;
  const head = new Uint8Array(Math.min(size, MAX_SETUP_BYTES));
  if (preadFully(fd, head, 0) !== head.length) throw new BootError('the kernel file ended before its setup header');
  const parsed = parseBzImageHead(head, size);
  const start = (parsed.setupSects + 1) * SECTOR;
  let bytes: Uint8Array | undefined;
  return {
    ...parsed, identity, kernelLength: size - start,
    kernel: () => {
      if (bytes === undefined) {
        const b = new Uint8Array(size - start);
        if (preadFully(fd, b, start) !== b.length) throw new BootError('the kernel file ended before its protected-mode code');
        bytes = b;
      }
      return bytes;
    },
  };
}

/**
 * Load `kernel` (a bzImage, or an open bzImage file) with `initrd` and `cmdline` into `mem` and return the CPU state
 * that enters it. Throws BootError when the image is unusable or something does not fit.
 */
export function loadLinux(mem: GuestMemory, kernel: Uint8Array | KernelFile, initrd: Uint8Array | InitrdFile | undefined, cmdline: string, opts: LoadLinuxOptions): BootState {
  const image = kernelImage(kernel);
  const lowEnd = mem.lowSize;
  // APIC IDs are 8 bits and the IOAPIC takes the ID after the last vCPU (see acpi.ts).
  if (!Number.isInteger(opts.cpus) || opts.cpus < 1 || opts.cpus > 254) throw new BootError(`cannot boot with ${opts.cpus} vCPUs (1-254)`);

  // --- The protected-mode kernel ---
  // A relocatable kernel may sit at any kernel_alignment-aligned address, but its 64-bit entry never
  // decompresses below LOAD_PHYSICAL_ADDR (= pref_address; arch/x86/boot/compressed/head_64.S,
  // startup_64), so loading lower would not save memory: pref_address is used for both kinds.
  const load = image.prefAddress;
  const kernelAreaEnd = Math.max(load, image.prefAddress) + image.initSize;
  if (kernelAreaEnd > lowEnd) {
    throw new BootError(`the kernel needs RAM up to ${hex(kernelAreaEnd)} (${Math.ceil(kernelAreaEnd / MiB)} MiB: loaded at ${hex(load)}, init_size ${hex(image.initSize)}) but RAM below 3 GiB ends at ${hex(lowEnd)}: give the VM more memory`);
  }
  if (image.relocatable && load % image.kernelAlignment !== 0) {
    throw new BootError(`kernel load address ${hex(load)} is not aligned to kernel_alignment ${hex(image.kernelAlignment)}`);
  }

  // --- The command line ---
  if (cmdline.includes('\0')) throw new BootError('the kernel command line contains a NUL character');
  const cmdlineBytes = new TextEncoder().encode(cmdline);
  if (cmdlineBytes.length > image.cmdlineSize) {
    throw new BootError(`the kernel command line is ${cmdlineBytes.length} bytes, longer than the ${image.cmdlineSize} this kernel accepts (cmdline_size)`);
  }
  if (CMDLINE_ADDR + cmdlineBytes.length + 1 > CMDLINE_AREA_END) throw new BootError('the kernel command line does not fit below 0x80000');

  // --- The initrd: page-aligned, as high as possible, never in the kernel's area ---
  let initrdPlace: { address: number; size: number } | undefined;
  if (initrd && initrd.length > 0) {
    const ceiling = Math.min(image.initrdAddrMax + 1, lowEnd);
    let address = alignDown(ceiling - initrd.length, PAGE);
    if (address < kernelAreaEnd) {
      // Not above the kernel: try the gap between 1 MiB and the kernel.
      address = alignDown(Math.min(ceiling, load) - initrd.length, PAGE);
      if (address < BIOS_AREA_END) {
        throw new BootError(`the initrd (${initrd.length} bytes) does not fit in RAM: it must end below ${hex(ceiling)} (initrd_addr_max and the end of low RAM) outside the kernel's ${hex(load)}-${hex(kernelAreaEnd)}: give the VM more memory`);
      }
    }
    initrdPlace = { address, size: initrd.length };
  }

  // --- Copy everything in ---
  // Clear what a previous run of the guest may have left where firmware structures are searched
  // for (IVT/BDA page, BIOS area), so a reboot starts from the same memory as a cold boot.
  mem.slice(0, PAGE).fill(0);
  mem.slice(EBDA_START, BIOS_AREA_END - EBDA_START).fill(0);
  let entry64 = load + 0x200;
  const inKernelArea = (paddr: number, memsz: number): boolean => paddr >= load && paddr + memsz <= kernelAreaEnd;
  // A cached kernel is read straight into RAM, only where the checks below would let it go.
  const into = (paddr: number, memsz: number): Uint8Array | undefined => inKernelArea(paddr, memsz) ? mem.slice(paddr, memsz) : undefined;
  const decoded = opts.decompressInVmm !== false ? uncompressedKernel(image, opts.kernelCache, into, mem.readFile.bind(mem)) : undefined;
  if (decoded) {
    const { vmlinux, inPlace } = decoded;
    for (const seg of vmlinux.segments) {
      if (!inKernelArea(seg.paddr, seg.memsz)) {
        throw new BootError(`vmlinux segment ${hex(seg.paddr)}+${hex(seg.memsz)} is outside the kernel's ${hex(load)}-${hex(kernelAreaEnd)}`);
      }
      if (inPlace) mem.noteExternalWrite(seg.paddr, seg.data.length);
      else mem.write(seg.paddr, seg.data);
      mem.slice(seg.paddr + seg.data.length, seg.memsz - seg.data.length).fill(0);
    }
    entry64 = vmlinux.entry; // startup_64, a physical address: the identity map covers it
  } else {
    mem.write(load, image.kernel());
  }
  const cmdlineArea = mem.slice(CMDLINE_ADDR, cmdlineBytes.length + 1);
  cmdlineArea.set(cmdlineBytes);
  cmdlineArea[cmdlineBytes.length] = 0;
  if (initrd && initrdPlace) {
    if (initrd instanceof Uint8Array) mem.write(initrdPlace.address, initrd);
    else {
      if (!mem.readFile(initrdPlace.address, initrd.fd, 0, initrd.length)) throw new BootError(`the initrd file ended before its ${initrd.length} bytes`);
      mem.noteExternalWrite(initrdPlace.address, initrd.length);
    }
  }

  const acpi = writeAcpiTables(mem, { cpus: opts.cpus, dual8259: opts.dual8259, highRamEnd: HIGH_RAM_START + mem.highSize });
  const e820 = buildE820(mem);

  // --- The zero page ---
  // boot.rst, 64-bit protocol: allocate boot_params, zero it, copy the setup header into it at 0x1F1,
  // then fill the loader's fields.
  const zp = new Uint8Array(PAGE);
  const zv = new DataView(zp.buffer);
  zp.set(image.setupHeader, HDR.setup_sects);
  zp[HDR.type_of_loader] = LOADER_TYPE_UNDEFINED;
  zv.setUint32(HDR.code32_start, load, true);
  zv.setUint32(HDR.cmd_line_ptr, CMDLINE_ADDR, true);
  zv.setUint32(BP_EXT_CMD_LINE_PTR, 0, true);
  zv.setUint32(HDR.ramdisk_image, initrdPlace?.address ?? 0, true);
  zv.setUint32(HDR.ramdisk_size, initrdPlace?.size ?? 0, true);
  zv.setUint32(BP_EXT_RAMDISK_IMAGE, 0, true);
  zv.setUint32(BP_EXT_RAMDISK_SIZE, 0, true);
  zv.setBigUint64(BP_ACPI_RSDP_ADDR, BigInt(acpi.rsdp), true);
  const seed = opts.rngSeed === undefined ? randomBytes(RNG_SEED_BYTES) : opts.rngSeed;
  if (seed && seed.length > 0) {
    if (seed.length > PAGE - SETUP_DATA_HEADER) throw new BootError(`an RNG seed of ${seed.length} bytes does not fit in a page`);
    // struct setup_data { u64 next; u32 type; u32 len; u8 data[]; } (arch/x86/include/uapi/asm/bootparam.h).
    const sd = new Uint8Array(SETUP_DATA_HEADER + seed.length);
    const sv = new DataView(sd.buffer);
    sv.setBigUint64(0, 0n, true);
    sv.setUint32(8, SETUP_RNG_SEED, true);
    sv.setUint32(12, seed.length, true);
    sd.set(seed, SETUP_DATA_HEADER);
    mem.write(SETUP_DATA_ADDR, sd);
    zv.setBigUint64(HDR_SETUP_DATA, BigInt(SETUP_DATA_ADDR), true);
  } else {
    zv.setBigUint64(HDR_SETUP_DATA, 0n, true);
  }
  if (e820.length > BP_E820_MAX) throw new BootError('too many e820 entries');
  zp[BP_E820_ENTRIES] = e820.length;
  e820.forEach((e, i) => {
    const at = BP_E820_TABLE + 20 * i;
    zv.setBigUint64(at, BigInt(e.addr), true);
    zv.setBigUint64(at + 8, BigInt(e.size), true);
    zv.setUint32(at + 16, e.type, true);
  });
  mem.write(ZERO_PAGE_ADDR, zp);

  // --- GDT ---
  const gdt = bootGdt();
  const gdtBytes = new Uint8Array(gdt.length * 8);
  gdt.forEach((d, i) => new DataView(gdtBytes.buffer).setBigUint64(8 * i, d, true));
  mem.write(BOOT_GDT_ADDR, gdtBytes);

  // --- Identity page tables: 4 GiB with 2 MiB pages ---
  writeIdentityPageTables(mem);

  return {
    entry64,
    zeroPage: ZERO_PAGE_ADDR,
    rsi: ZERO_PAGE_ADDR,
    rsp: BOOT_STACK_TOP,
    rflags: 0x2,
    cr0: (CR0_PE | CR0_ET | CR0_NE | CR0_PG) >>> 0,
    cr3: PML4_ADDR,
    cr4: CR4_PAE,
    efer: EFER_LME | EFER_LMA,
    gdtBase: BOOT_GDT_ADDR,
    gdtLimit: gdtBytes.length - 1,
    idtBase: 0,
    idtLimit: 0,
    cs: { selector: BOOT_CS, base: 0, limit: 0xffff_ffff, accessRights: CODE64_AR },
    ds: { selector: BOOT_DS, base: 0, limit: 0xffff_ffff, accessRights: DATA_AR },
    tr: { selector: 0, base: 0, limit: 0xffff, accessRights: TSS_BUSY_AR },
    ldtr: { selector: 0, base: 0, limit: 0, accessRights: UNUSABLE_AR },
    kernelLoadAddress: load,
    kernelAreaEnd,
    cmdlineAddress: CMDLINE_ADDR,
    initrd: initrdPlace,
    e820,
    acpi,
    image,
  };
}

/** PML4[0] -> PDPT; PDPT[0..3] -> four PDs; each PD maps 1 GiB with 512 2-MiB pages, identity. */
function writeIdentityPageTables(mem: GuestMemory): void {
  const pml4 = mem.slice(PML4_ADDR, PAGE);
  const pdpt = mem.slice(PDPT_ADDR, PAGE);
  pml4.fill(0);
  pdpt.fill(0);
  new DataView(pml4.buffer, pml4.byteOffset, PAGE).setBigUint64(0, BigInt(PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE), true);
  const pdptView = new DataView(pdpt.buffer, pdpt.byteOffset, PAGE);
  for (let g = 0; g < IDENTITY_GIB; g++) {
    const pdAddr = PD_ADDR + g * PAGE;
    pdptView.setBigUint64(8 * g, BigInt(pdAddr | PTE_PRESENT | PTE_WRITABLE), true);
    const pd = mem.slice(pdAddr, PAGE);
    const pdView = new DataView(pd.buffer, pd.byteOffset, PAGE);
    for (let i = 0; i < 512; i++) {
      const phys = g * GiB + i * LARGE_PAGE;
      pdView.setBigUint64(8 * i, BigInt(phys) | BigInt(PTE_PRESENT | PTE_WRITABLE | PTE_LARGE), true);
    }
  }
}
