// The KVM user-space ABI on x86-64: ioctl numbers, struct layouts and their encoding to and from bytes.
// Sources: include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h (Linux), include/uapi/asm-generic/ioctl.h
// for the _IO/_IOR/_IOW/_IOWR encoding. Nothing here touches the kernel: test/kvm-abi.test.ts checks every number
// against the C headers.
import type { SegmentState } from '../boot/linux.ts';
import type { Registers, SpecialRegisters, DescriptorTable } from '../cpu/engine.ts';

export type { Registers, SpecialRegisters, DescriptorTable };
export { zeroRegisters } from '../cpu/engine.ts';

// ---- ioctl number encoding (asm-generic/ioctl.h): nr in bits 0-7, type in 8-15, size in 16-29, direction in 30-31.
const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;
/** The ioctl "type" byte of every KVM ioctl. */
export const KVMIO = 0xae;

function ioc(dir: number, nr: number, size: number): number {
  if (size >= 1 << 14) throw new RangeError(`ioctl argument size ${size} does not fit the 14-bit size field`);
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number) => ioc(IOC_NONE, nr, 0);
const ior = (nr: number, size: number) => ioc(IOC_READ, nr, size);
const iow = (nr: number, size: number) => ioc(IOC_WRITE, nr, size);
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, nr, size);

// ---- struct sizes (bytes), from the uapi headers; the flexible-array structs count their header only.
export const SIZE = {
  kvm_regs: 18 * 8,
  kvm_segment: 24,
  kvm_dtable: 16,
  /** 8 segments, 2 dtables, cr0 cr2 cr3 cr4 cr8 efer apic_base, interrupt_bitmap[4]. */
  kvm_sregs: 8 * 24 + 2 * 16 + 7 * 8 + 4 * 8,
  kvm_fpu: 416,
  kvm_msrs: 8,
  kvm_msr_entry: 16,
  kvm_cpuid2: 8,
  kvm_cpuid_entry2: 40,
  kvm_lapic_state: 1024,
  kvm_userspace_memory_region: 32,
  kvm_irq_level: 8,
  kvm_msi: 32,
  kvm_ioeventfd: 64,
  kvm_irqfd: 32,
  kvm_pit_config: 64,
  kvm_dirty_log: 16,
  kvm_mp_state: 4,
  kvm_signal_mask: 4,
  kvm_vcpu_events: 64,
  kvm_debugregs: 128,
  kvm_xsave: 4096,
  kvm_irqchip: 520,
  kvm_pit_state2: 112,
  kvm_clock_data: 48,
  kvm_msr_list: 4,
  kvm_irq_routing: 8,
  kvm_irq_routing_entry: 48,
  u64: 8,
} as const;

/** ioctl request numbers (kvm.h). System ioctls go to /dev/kvm, VM ioctls to a VM fd, vCPU ioctls to a vCPU fd. */
export const IOCTL = {
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_MSR_INDEX_LIST: iowr(0x02, SIZE.kvm_msr_list),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, SIZE.kvm_cpuid2),
  KVM_CREATE_VCPU: io(0x41),
  KVM_GET_DIRTY_LOG: iow(0x42, SIZE.kvm_dirty_log),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, SIZE.kvm_userspace_memory_region),
  KVM_SET_TSS_ADDR: io(0x47),
  KVM_SET_IDENTITY_MAP_ADDR: iow(0x48, SIZE.u64),
  KVM_CREATE_IRQCHIP: io(0x60),
  KVM_IRQ_LINE: iow(0x61, SIZE.kvm_irq_level),
  KVM_GET_IRQCHIP: iowr(0x62, SIZE.kvm_irqchip),
  // The kernel declares SET_IRQCHIP with _IOR although it reads the struct (kvm.h): the number is what counts.
  KVM_SET_IRQCHIP: ior(0x63, SIZE.kvm_irqchip),
  KVM_IRQ_LINE_STATUS: iowr(0x67, SIZE.kvm_irq_level),
  KVM_SET_GSI_ROUTING: iow(0x6a, SIZE.kvm_irq_routing),
  KVM_SET_CLOCK: iow(0x7b, SIZE.kvm_clock_data),
  KVM_GET_CLOCK: ior(0x7c, SIZE.kvm_clock_data),
  KVM_GET_PIT2: ior(0x9f, SIZE.kvm_pit_state2),
  KVM_SET_PIT2: iow(0xa0, SIZE.kvm_pit_state2),
  KVM_IRQFD: iow(0x76, SIZE.kvm_irqfd),
  KVM_CREATE_PIT2: iow(0x77, SIZE.kvm_pit_config),
  KVM_IOEVENTFD: iow(0x79, SIZE.kvm_ioeventfd),
  KVM_SIGNAL_MSI: iow(0xa5, SIZE.kvm_msi),
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, SIZE.kvm_regs),
  KVM_SET_REGS: iow(0x82, SIZE.kvm_regs),
  KVM_GET_SREGS: ior(0x83, SIZE.kvm_sregs),
  KVM_SET_SREGS: iow(0x84, SIZE.kvm_sregs),
  KVM_GET_MSRS: iowr(0x88, SIZE.kvm_msrs),
  KVM_SET_MSRS: iow(0x89, SIZE.kvm_msrs),
  KVM_SET_SIGNAL_MASK: iow(0x8b, SIZE.kvm_signal_mask),
  KVM_GET_FPU: ior(0x8c, SIZE.kvm_fpu),
  KVM_SET_FPU: iow(0x8d, SIZE.kvm_fpu),
  KVM_GET_LAPIC: ior(0x8e, SIZE.kvm_lapic_state),
  KVM_SET_LAPIC: iow(0x8f, SIZE.kvm_lapic_state),
  KVM_SET_CPUID2: iow(0x90, SIZE.kvm_cpuid2),
  KVM_GET_MP_STATE: ior(0x98, SIZE.kvm_mp_state),
  KVM_SET_MP_STATE: iow(0x99, SIZE.kvm_mp_state),
  KVM_GET_VCPU_EVENTS: ior(0x9f, SIZE.kvm_vcpu_events),
  KVM_SET_VCPU_EVENTS: iow(0xa0, SIZE.kvm_vcpu_events),
  KVM_GET_DEBUGREGS: ior(0xa1, SIZE.kvm_debugregs),
  KVM_SET_DEBUGREGS: iow(0xa2, SIZE.kvm_debugregs),
  KVM_GET_XSAVE: ior(0xa4, SIZE.kvm_xsave),
  KVM_SET_XSAVE: iow(0xa5, SIZE.kvm_xsave),
} as const;

export type IoctlName = keyof typeof IOCTL;

/** KVM_GET_API_VERSION returns this on every kernel since 2.6.22; anything else is an incompatible ABI. */
export const KVM_API_VERSION = 12;

/** KVM_CHECK_EXTENSION capability numbers used here (kvm.h). */
export const CAP = {
  IRQCHIP: 0,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  MP_STATE: 14,
  IRQFD: 32,
  PIT2: 33,
  IOEVENTFD: 36,
  VCPU_EVENTS: 41,
  IRQ_ROUTING: 25,
  DEBUGREGS: 50,
  XSAVE: 55,
  ADJUST_CLOCK: 39,
  SIGNAL_MSI: 77,
  IMMEDIATE_EXIT: 136,
} as const;

/** kvm_run.exit_reason values (kvm.h KVM_EXIT_*). */
export const EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26,
} as const;

export const EXIT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(EXIT).map(([k, v]) => [v, k]));

export const IO_IN = 0;
export const IO_OUT = 1;

/** kvm_run layout (kvm.h struct kvm_run): the fixed header, then the exit union at offset 32. */
export const RUN = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  // union members, all at 32
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  mmio_phys_addr: 32,
  mmio_data: 40,
  mmio_len: 48,
  mmio_is_write: 52,
  fail_entry_reason: 32,
  fail_entry_cpu: 40,
  internal_suberror: 32,
  internal_ndata: 36,
  internal_data: 40,
  system_event_type: 32,
  system_event_ndata: 36,
  system_event_data: 40,
} as const;

export const SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3, WAKEUP: 4, SUSPEND: 5 } as const;
export const MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;
export const IOEVENTFD_FLAG = { DATAMATCH: 1, PIO: 2, DEASSIGN: 4 } as const;
export const KVM_PIT_SPEAKER_DUMMY = 1;

// =====================================================================================================
// Register structs

/** Field order of struct kvm_regs (not the instruction encoding's numbering: see GPR_BY_NUMBER). */
export const REGS_ORDER = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const satisfies readonly (keyof Registers)[];

export function encodeRegs(r: Registers, buf: Buffer = Buffer.alloc(SIZE.kvm_regs)): Buffer {
  REGS_ORDER.forEach((k, i) => buf.writeBigUInt64LE(BigInt.asUintN(64, r[k]), i * 8));
  return buf;
}

export function decodeRegs(buf: Buffer): Registers {
  const r = {} as Registers;
  REGS_ORDER.forEach((k, i) => { r[k] = buf.readBigUInt64LE(i * 8); });
  return r;
}

/** The extra fields of struct kvm_sregs that only KVM has. */
export interface KvmSregsExtra {
  cr8: bigint;
  apicBase: bigint;
  /** interrupt_bitmap: a pending external interrupt, one bit per vector (at most one set). */
  interruptBitmap: bigint[];
}

export const SEGMENT_ORDER = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldtr'] as const;
const SREGS_DTABLES = 8 * 24;
const SREGS_CR0 = SREGS_DTABLES + 32;

/** struct kvm_segment <- SegmentState: the access-rights word split into KVM's one-byte fields. */
function encodeSegment(s: SegmentState, buf: Buffer, off: number): void {
  const ar = s.accessRights;
  buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(s.base)), off);
  buf.writeUInt32LE(s.limit >>> 0, off + 8);
  buf.writeUInt16LE(s.selector & 0xffff, off + 12);
  buf[off + 14] = ar & 0xf; // type
  buf[off + 15] = (ar >> 7) & 1; // present
  buf[off + 16] = (ar >> 5) & 3; // dpl
  buf[off + 17] = (ar >> 14) & 1; // db
  buf[off + 18] = (ar >> 4) & 1; // s
  buf[off + 19] = (ar >> 13) & 1; // l
  buf[off + 20] = (ar >> 15) & 1; // g
  buf[off + 21] = (ar >> 12) & 1; // avl
  buf[off + 22] = (ar >> 16) & 1; // unusable
  buf[off + 23] = 0;
}

function decodeSegment(buf: Buffer, off: number): SegmentState {
  const ar = (buf[off + 14] & 0xf) | ((buf[off + 18] & 1) << 4) | ((buf[off + 16] & 3) << 5) | ((buf[off + 15] & 1) << 7)
    | ((buf[off + 21] & 1) << 12) | ((buf[off + 19] & 1) << 13) | ((buf[off + 17] & 1) << 14) | ((buf[off + 20] & 1) << 15)
    | ((buf[off + 22] & 1) << 16);
  const base = buf.readBigUInt64LE(off);
  return {
    selector: buf.readUInt16LE(off + 12),
    // SegmentState.base is a number: a canonical base (sign-extended 48-bit) is exact as a signed double.
    base: Number(BigInt.asIntN(64, base)),
    limit: buf.readUInt32LE(off + 8),
    accessRights: ar,
  };
}

export function encodeSregs(s: SpecialRegisters, extra: KvmSregsExtra, buf: Buffer = Buffer.alloc(SIZE.kvm_sregs)): Buffer {
  SEGMENT_ORDER.forEach((k, i) => encodeSegment(s[k], buf, i * 24));
  for (const [i, t] of [s.gdt, s.idt].entries()) {
    buf.writeBigUInt64LE(BigInt.asUintN(64, t.base), SREGS_DTABLES + i * 16);
    buf.writeUInt16LE(t.limit & 0xffff, SREGS_DTABLES + i * 16 + 8);
    buf.fill(0, SREGS_DTABLES + i * 16 + 10, SREGS_DTABLES + i * 16 + 16);
  }
  const u64 = [s.cr0, s.cr2, s.cr3, s.cr4, extra.cr8, s.efer, extra.apicBase];
  u64.forEach((v, i) => buf.writeBigUInt64LE(BigInt.asUintN(64, v), SREGS_CR0 + i * 8));
  for (let i = 0; i < 4; i++) buf.writeBigUInt64LE(extra.interruptBitmap[i] ?? 0n, SREGS_CR0 + 56 + i * 8);
  return buf;
}

export function decodeSregs(buf: Buffer): { sregs: SpecialRegisters; extra: KvmSregsExtra } {
  const seg = {} as Record<(typeof SEGMENT_ORDER)[number], SegmentState>;
  SEGMENT_ORDER.forEach((k, i) => { seg[k] = decodeSegment(buf, i * 24); });
  const dt = (i: number): DescriptorTable => ({
    base: buf.readBigUInt64LE(SREGS_DTABLES + i * 16),
    limit: buf.readUInt16LE(SREGS_DTABLES + i * 16 + 8),
  });
  const u = (i: number) => buf.readBigUInt64LE(SREGS_CR0 + i * 8);
  return {
    sregs: { ...seg, gdt: dt(0), idt: dt(1), cr0: u(0), cr2: u(1), cr3: u(2), cr4: u(3), efer: u(5) },
    extra: { cr8: u(4), apicBase: u(6), interruptBitmap: [0, 1, 2, 3].map((i) => u(7 + i)) },
  };
}

/** One CPUID leaf (struct kvm_cpuid_entry2). */
export interface CpuidEntry {
  function: number;
  index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX (1): the leaf depends on ECX. */
  flags: number;
  eax: number; ebx: number; ecx: number; edx: number;
}

export function decodeCpuid2(buf: Buffer): CpuidEntry[] {
  const n = buf.readUInt32LE(0);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = SIZE.kvm_cpuid2 + i * SIZE.kvm_cpuid_entry2;
    out.push({
      function: buf.readUInt32LE(o), index: buf.readUInt32LE(o + 4), flags: buf.readUInt32LE(o + 8),
      eax: buf.readUInt32LE(o + 12), ebx: buf.readUInt32LE(o + 16), ecx: buf.readUInt32LE(o + 20), edx: buf.readUInt32LE(o + 24),
    });
  }
  return out;
}

export function encodeCpuid2(entries: readonly CpuidEntry[]): Buffer {
  const buf = Buffer.alloc(SIZE.kvm_cpuid2 + entries.length * SIZE.kvm_cpuid_entry2);
  buf.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => {
    const o = SIZE.kvm_cpuid2 + i * SIZE.kvm_cpuid_entry2;
    buf.writeUInt32LE(e.function >>> 0, o);
    buf.writeUInt32LE(e.index >>> 0, o + 4);
    buf.writeUInt32LE(e.flags >>> 0, o + 8);
    buf.writeUInt32LE(e.eax >>> 0, o + 12);
    buf.writeUInt32LE(e.ebx >>> 0, o + 16);
    buf.writeUInt32LE(e.ecx >>> 0, o + 20);
    buf.writeUInt32LE(e.edx >>> 0, o + 24);
  });
  return buf;
}

export function encodeMsrs(entries: readonly { index: number; data: bigint }[]): Buffer {
  const buf = Buffer.alloc(SIZE.kvm_msrs + entries.length * SIZE.kvm_msr_entry);
  buf.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => {
    buf.writeUInt32LE(e.index >>> 0, SIZE.kvm_msrs + i * 16);
    buf.writeBigUInt64LE(BigInt.asUintN(64, e.data), SIZE.kvm_msrs + i * 16 + 8);
  });
  return buf;
}

export function decodeMsrs(buf: Buffer, count: number): { index: number; data: bigint }[] {
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push({ index: buf.readUInt32LE(SIZE.kvm_msrs + i * 16), data: buf.readBigUInt64LE(SIZE.kvm_msrs + i * 16 + 8) });
  }
  return out;
}
