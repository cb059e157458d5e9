// The KVM ioctl boundary: /dev/kvm, a VM, its vCPUs. Thin typed wrappers over the ioctls of
// Documentation/virt/kvm/api.rst; every failure is a KvmError naming the ioctl and errno.
// File descriptors and mappings are process-wide: a vCPU created here can be run from a worker thread that
// attaches to it with KvmVcpu.attach (which maps kvm_run again in that thread's isolate).
import fs from 'node:fs';
import { mmap, munmap, close as closeFd, PROT_READ, PROT_WRITE, MAP_SHARED } from '../sys/libc.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import {
  CAP, IOCTL, KVM_API_VERSION, SIZE, IOEVENTFD_FLAG, decodeCpuid2, encodeCpuid2, decodeRegs, encodeRegs, decodeSregs,
  encodeSregs, encodeMsrs, decodeMsrs, type CpuidEntry, type Registers, type SpecialRegisters, type KvmSregsExtra,
} from './abi.ts';
import { KvmError, kvmIoctl, kvmIoctlInt, ioctlInt, ioctlPtr, lastErrno, koffi } from './sys.ts';

export { KvmError };

const E2BIG = 7;
/** struct kvm_userspace_memory_region.flags bit 0 (kvm.h): log writes to this slot for KVM_GET_DIRTY_LOG. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
const EINTR = 4;
const EAGAIN = 11;

export class Kvm {
  private constructor(readonly fd: number) {}

  /** Open /dev/kvm and check the API version (12: the only stable KVM ABI). */
  static open(path = '/dev/kvm'): Kvm {
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR) // Node opens every file close-on-exec;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new KvmError(`open(${path})`, -(err.errno ?? 0), err.code);
    }
    const kvm = new Kvm(fd);
    const version = kvm.apiVersion();
    if (version !== KVM_API_VERSION) {
      kvm.close();
      throw new KvmError('KVM_GET_API_VERSION', 0, `API version ${version}, expected ${KVM_API_VERSION}`);
    }
    return kvm;
  }

  apiVersion(): number {
    return kvmIoctlInt(this.fd, 'KVM_GET_API_VERSION');
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, else 1 or a capability-specific number. */
  checkExtension(cap: number): number {
    return kvmIoctlInt(this.fd, 'KVM_CHECK_EXTENSION', cap);
  }

  vcpuMmapSize(): number {
    return kvmIoctlInt(this.fd, 'KVM_GET_VCPU_MMAP_SIZE');
  }

  /** The CPUID leaves KVM can virtualize on this host (grows the buffer while KVM answers E2BIG). */
  supportedCpuid(): CpuidEntry[] {
    for (let n = 64; n <= 4096; n *= 2) {
      const buf = Buffer.alloc(SIZE.kvm_cpuid2 + n * SIZE.kvm_cpuid_entry2);
      buf.writeUInt32LE(n, 0);
      const r = ioctlPtr(this.fd, IOCTL.KVM_GET_SUPPORTED_CPUID, buf);
      if (r >= 0) return decodeCpuid2(buf);
      const e = lastErrno();
      if (e !== E2BIG) throw new KvmError('KVM_GET_SUPPORTED_CPUID', e);
    }
    throw new KvmError('KVM_GET_SUPPORTED_CPUID', E2BIG, 'more than 4096 entries');
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores for a vCPU (the ones a snapshot must carry). */
  msrIndexList(): number[] {
    for (let n = 256; n <= 16384; n *= 2) {
      const buf = Buffer.alloc(SIZE.kvm_msr_list + 4 * n);
      buf.writeUInt32LE(n, 0);
      const r = ioctlPtr(this.fd, IOCTL.KVM_GET_MSR_INDEX_LIST, buf);
      if (r >= 0) {
        const count = buf.readUInt32LE(0);
        return Array.from({ length: count }, (_, i) => buf.readUInt32LE(4 + 4 * i));
      }
      const e = lastErrno();
      if (e !== E2BIG) throw new KvmError('KVM_GET_MSR_INDEX_LIST', e);
    }
    throw new KvmError('KVM_GET_MSR_INDEX_LIST', E2BIG, 'more than 16384 MSRs');
  }

  createVm(): KvmVm {
    return new KvmVm(this, kvmIoctlInt(this.fd, 'KVM_CREATE_VM', 0));
  }

  close(): void {
    closeFd(this.fd);
  }
}

export interface IoEventFdOptions {
  /** Port number (pio) or guest-physical address (MMIO). */
  addr: number | bigint;
  /** 1, 2, 4 or 8 bytes, or 0 to match any length (MMIO only). */
  len: number;
  fd: number;
  pio: boolean;
  /** Only writes of this value signal the eventfd. */
  datamatch?: bigint;
  deassign?: boolean;
}

/** One entry of KVM_SET_GSI_ROUTING: a GSI wired to an irqchip pin, or a GSI that sends an MSI (irqfd targets). */
export type GsiRoutingEntry =
  | { gsi: number; kind: 'irqchip'; irqchip: number; pin: number }
  | { gsi: number; kind: 'msi'; addressLo: number; addressHi: number; data: number };

/** KVM_IRQ_ROUTING_IRQCHIP / KVM_IRQ_ROUTING_MSI (kvm.h). */
const IRQ_ROUTING_IRQCHIP = 1;
const IRQ_ROUTING_MSI = 2;

/**
 * struct kvm_irq_routing { u32 nr, flags; struct kvm_irq_routing_entry entries[] } with 48-byte entries
 * { u32 gsi, type, flags, pad; union u (32 bytes): irqchip { u32 irqchip, pin } | msi { u32 address_lo, address_hi,
 * data, pad } }.
 */
export function encodeGsiRoutingTable(routes: readonly GsiRoutingEntry[]): Buffer {
  const b = Buffer.alloc(SIZE.kvm_irq_routing + routes.length * SIZE.kvm_irq_routing_entry);
  b.writeUInt32LE(routes.length, 0);
  routes.forEach((r, i) => {
    const at = SIZE.kvm_irq_routing + i * SIZE.kvm_irq_routing_entry;
    b.writeUInt32LE(r.gsi, at);
    if (r.kind === 'irqchip') {
      b.writeUInt32LE(IRQ_ROUTING_IRQCHIP, at + 4);
      b.writeUInt32LE(r.irqchip, at + 16);
      b.writeUInt32LE(r.pin, at + 20);
    } else {
      b.writeUInt32LE(IRQ_ROUTING_MSI, at + 4);
      b.writeUInt32LE(r.addressLo >>> 0, at + 16);
      b.writeUInt32LE(r.addressHi >>> 0, at + 20);
      b.writeUInt32LE(r.data >>> 0, at + 24);
    }
  });
  return b;
}

export class KvmVm {
  private readonly slots: { slot: number; guestBase: number; size: number; hostAddress: bigint; flags: number }[] = [];

  constructor(readonly kvm: Kvm, readonly fd: number) {}

  /** KVM_SET_USER_MEMORY_REGION: guest-physical [gpa, gpa+size) backed by host memory at `hostAddress`. */
  setUserMemoryRegion(slot: number, gpa: number | bigint, size: number, hostAddress: bigint, flags = 0): void {
    const b = Buffer.alloc(SIZE.kvm_userspace_memory_region);
    b.writeUInt32LE(slot, 0);
    b.writeUInt32LE(flags, 4);
    b.writeBigUInt64LE(BigInt(gpa), 8);
    b.writeBigUInt64LE(BigInt(size), 16);
    b.writeBigUInt64LE(hostAddress, 24);
    kvmIoctl(this.fd, 'KVM_SET_USER_MEMORY_REGION', b);
  }

  /**
   * Register every RAM region of `mem` as a memory slot, backed by the mapping GuestMemory already made of its memfd
   * (process-wide, so the vCPU threads need not map RAM to run the guest). `dirtyLog` sets KVM_MEM_LOG_DIRTY_PAGES.
   */
  mapGuestMemory(mem: GuestMemory, dirtyLog = false): void {
    for (const r of mem.regions) {
      const slot = this.slots.length;
      const flags = dirtyLog ? KVM_MEM_LOG_DIRTY_PAGES : 0;
      this.setUserMemoryRegion(slot, r.guestBase, r.size, r.hostAddress, flags);
      this.slots.push({ slot, guestBase: r.guestBase, size: r.size, hostAddress: r.hostAddress, flags });
    }
  }

  /**
   * Turn dirty-page logging of every RAM slot on or off while the VM exists (vCPUs may be running): the slots are
   * registered again with KVM_MEM_LOG_DIRTY_PAGES set or cleared, which api.rst allows for an existing slot (only
   * its flags change). Turning it on starts a clean bitmap; KVM_GET_DIRTY_LOG then reads and clears it.
   */
  setDirtyLogging(on: boolean): void {
    for (const s of this.slots) {
      const flags = on ? s.flags | KVM_MEM_LOG_DIRTY_PAGES : s.flags & ~KVM_MEM_LOG_DIRTY_PAGES;
      if (flags === s.flags) continue;
      this.setUserMemoryRegion(s.slot, s.guestBase, s.size, s.hostAddress, flags);
      s.flags = flags;
    }
  }

  /** Whether the slots log dirty pages now. */
  get dirtyLogging(): boolean {
    return this.slots.length > 0 && this.slots.every((s) => (s.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0);
  }

  get memorySlots(): readonly { slot: number; guestBase: number; size: number; hostAddress: bigint; flags: number }[] {
    return this.slots;
  }

  /** KVM_SET_TSS_ADDR: three pages in the guest-physical hole that Intel's real-mode emulation needs. */
  setTssAddr(addr: number): void {
    kvmIoctlInt(this.fd, 'KVM_SET_TSS_ADDR', addr);
  }

  /** KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map used while the guest runs unpaged (Intel). */
  setIdentityMapAddr(addr: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(addr));
    kvmIoctl(this.fd, 'KVM_SET_IDENTITY_MAP_ADDR', b);
  }

  /** KVM_CREATE_IRQCHIP: the in-kernel 8259 pair, IOAPIC and a LAPIC per vCPU (create before the vCPUs). */
  createIrqchip(): void {
    kvmIoctlInt(this.fd, 'KVM_CREATE_IRQCHIP', 0);
  }

  /** KVM_CREATE_PIT2: the in-kernel 8254 (flags: KVM_PIT_SPEAKER_DUMMY emulates port 0x61 too). */
  createPit2(flags = 0): void {
    const b = Buffer.alloc(SIZE.kvm_pit_config);
    b.writeUInt32LE(flags, 0);
    kvmIoctl(this.fd, 'KVM_CREATE_PIT2', b);
  }

  /** KVM_IRQ_LINE: drive GSI `gsi` (PIC 0-15 and IOAPIC 0-23 together) to `level`. */
  irqLine(gsi: number, level: boolean): void {
    const b = Buffer.alloc(SIZE.kvm_irq_level);
    b.writeUInt32LE(gsi, 0);
    b.writeUInt32LE(level ? 1 : 0, 4);
    kvmIoctl(this.fd, 'KVM_IRQ_LINE', b);
  }

  /** KVM_SIGNAL_MSI: inject one message-signalled interrupt. Returns >0 if delivered, 0 if blocked by the guest. */
  signalMsi(address: bigint, data: number): number {
    const b = Buffer.alloc(SIZE.kvm_msi);
    b.writeUInt32LE(Number(address & 0xffffffffn), 0);
    b.writeUInt32LE(Number(address >> 32n), 4);
    b.writeUInt32LE(data >>> 0, 8);
    return kvmIoctl(this.fd, 'KVM_SIGNAL_MSI', b);
  }

  /** KVM_IOEVENTFD: guest writes to `addr` signal `fd` in the kernel instead of exiting to user space. */
  ioeventfd(o: IoEventFdOptions): void {
    const b = Buffer.alloc(SIZE.kvm_ioeventfd);
    b.writeBigUInt64LE(o.datamatch ?? 0n, 0);
    b.writeBigUInt64LE(BigInt(o.addr), 8);
    b.writeUInt32LE(o.len, 16);
    b.writeInt32LE(o.fd, 20);
    const flags = (o.datamatch !== undefined ? IOEVENTFD_FLAG.DATAMATCH : 0) | (o.pio ? IOEVENTFD_FLAG.PIO : 0)
      | (o.deassign ? IOEVENTFD_FLAG.DEASSIGN : 0);
    b.writeUInt32LE(flags, 24);
    kvmIoctl(this.fd, 'KVM_IOEVENTFD', b);
  }

  /** KVM_IRQFD: a write to eventfd `fd` raises GSI `gsi` (edge) in the in-kernel irqchip. */
  irqfd(fd: number, gsi: number, deassign = false): void {
    const b = Buffer.alloc(SIZE.kvm_irqfd);
    b.writeUInt32LE(fd, 0);
    b.writeUInt32LE(gsi, 4);
    b.writeUInt32LE(deassign ? 1 : 0, 8);
    kvmIoctl(this.fd, 'KVM_IRQFD', b);
  }

  /** KVM_GET_DIRTY_LOG: one bit per page of `slot` written since the last call (needs dirtyLog in mapGuestMemory). */
  getDirtyLog(slot: number): Uint8Array {
    const s = this.slots.find((x) => x.slot === slot);
    if (!s) throw new RangeError(`no memory slot ${slot}`);
    const pages = Math.ceil(s.size / 4096);
    // The kernel writes whole longs: round the bitmap up to 64 bits.
    const bitmap = Buffer.alloc(Math.ceil(pages / 64) * 8);
    const b = Buffer.alloc(SIZE.kvm_dirty_log);
    b.writeUInt32LE(slot, 0);
    b.writeBigUInt64LE(BigInt(addressOf(bitmap)), 8);
    kvmIoctl(this.fd, 'KVM_GET_DIRTY_LOG', b);
    return new Uint8Array(bitmap.buffer, bitmap.byteOffset, Math.ceil(pages / 8));
  }

  /** KVM_GET_IRQCHIP: chip 0/1 (8259 master/slave, struct kvm_pic_state) or 2 (IOAPIC), raw 512-byte union. */
  getIrqchip(chip: number): Buffer {
    const b = Buffer.alloc(SIZE.kvm_irqchip);
    b.writeUInt32LE(chip, 0);
    kvmIoctl(this.fd, 'KVM_GET_IRQCHIP', b);
    return b.subarray(8);
  }

  setIrqchip(chip: number, state: Buffer): void {
    if (state.length !== SIZE.kvm_irqchip - 8) throw new RangeError(`irqchip state is ${state.length} bytes, not ${SIZE.kvm_irqchip - 8}`);
    const b = Buffer.alloc(SIZE.kvm_irqchip);
    b.writeUInt32LE(chip, 0);
    state.copy(b, 8);
    kvmIoctl(this.fd, 'KVM_SET_IRQCHIP', b);
  }

  /** KVM_GET_PIT2: the in-kernel 8254's three channels and flags (struct kvm_pit_state2), raw. */
  getPit2(): Buffer {
    const b = Buffer.alloc(SIZE.kvm_pit_state2);
    kvmIoctl(this.fd, 'KVM_GET_PIT2', b);
    return b;
  }

  setPit2(state: Buffer): void {
    if (state.length !== SIZE.kvm_pit_state2) throw new RangeError(`PIT state is ${state.length} bytes, not ${SIZE.kvm_pit_state2}`);
    kvmIoctl(this.fd, 'KVM_SET_PIT2', state);
  }

  /** KVM_GET_CLOCK: kvm-clock's value (ns) for the guest now, and its flags. */
  getClock(): { clock: bigint; flags: number } {
    const b = Buffer.alloc(SIZE.kvm_clock_data);
    kvmIoctl(this.fd, 'KVM_GET_CLOCK', b);
    return { clock: b.readBigUInt64LE(0), flags: b.readUInt32LE(8) };
  }

  /** KVM_SET_CLOCK: kvm-clock continues from `clock` ns (flags 0: no realtime adjustment). */
  setClock(clock: bigint): void {
    const b = Buffer.alloc(SIZE.kvm_clock_data);
    b.writeBigUInt64LE(clock, 0);
    kvmIoctl(this.fd, 'KVM_SET_CLOCK', b);
  }

  /** KVM_SET_GSI_ROUTING: the whole routing table at once (irqchip pins and MSI messages). */
  setGsiRouting(routes: readonly GsiRoutingEntry[]): void {
    kvmIoctl(this.fd, 'KVM_SET_GSI_ROUTING', encodeGsiRoutingTable(routes));
  }

  createVcpu(id: number): KvmVcpu {
    const fd = kvmIoctlInt(this.fd, 'KVM_CREATE_VCPU', id);
    return KvmVcpu.attach(fd, id, this.kvm.vcpuMmapSize());
  }

  close(): void {
    closeFd(this.fd);
  }
}

function addressOf(buf: Buffer): bigint {
  const a = koffi.address(buf) as unknown;
  return typeof a === 'bigint' ? a : BigInt(a as number);
}

/** A vCPU: its fd and its kvm_run page mapped in the calling thread. */
export class KvmVcpu {
  /** kvm_run (and the PIO data page after it), live. */
  readonly run: Uint8Array;
  readonly runView: DataView;
  private readonly runAddress: bigint;
  private readonly regsBuf = Buffer.alloc(SIZE.kvm_regs);
  private readonly sregsBuf = Buffer.alloc(SIZE.kvm_sregs);

  private constructor(readonly fd: number, readonly id: number, readonly mmapSize: number) {
    const m = mmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    this.runAddress = m.address;
    this.run = new Uint8Array(m.buffer);
    this.runView = new DataView(m.buffer);
  }

  /** Map kvm_run of an existing vCPU fd in this thread (a worker running the vCPU does this). */
  static attach(fd: number, id: number, mmapSize: number): KvmVcpu {
    return new KvmVcpu(fd, id, mmapSize);
  }

  /** One KVM_RUN. Returns 0, or -EINTR / -EAGAIN when a signal or immediate_exit ended it; throws otherwise. */
  runOnce(): number {
    const r = ioctlInt(this.fd, IOCTL.KVM_RUN, 0);
    if (r >= 0) return 0;
    const e = lastErrno();
    if (e === EINTR || e === EAGAIN) return -e;
    throw new KvmError('KVM_RUN', e);
  }

  getRegs(): Registers {
    kvmIoctl(this.fd, 'KVM_GET_REGS', this.regsBuf);
    return decodeRegs(this.regsBuf);
  }

  setRegs(r: Registers): void {
    kvmIoctl(this.fd, 'KVM_SET_REGS', encodeRegs(r, this.regsBuf));
  }

  getSregs(): { sregs: SpecialRegisters; extra: KvmSregsExtra } {
    kvmIoctl(this.fd, 'KVM_GET_SREGS', this.sregsBuf);
    return decodeSregs(this.sregsBuf);
  }

  /** Set the special registers; KVM-only fields (cr8, APIC base, pending interrupt) are kept unless given. */
  setSregs(s: SpecialRegisters, extra?: KvmSregsExtra): void {
    const keep = extra ?? this.getSregs().extra;
    kvmIoctl(this.fd, 'KVM_SET_SREGS', encodeSregs(s, keep, this.sregsBuf));
  }

  getMsrs(indices: readonly number[]): { index: number; data: bigint }[] {
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = kvmIoctl(this.fd, 'KVM_GET_MSRS', buf);
    return decodeMsrs(buf, n);
  }

  /** KVM_SET_MSRS; throws if KVM accepted fewer than all of them (it stops at the first it rejects). */
  setMsrs(entries: readonly { index: number; data: bigint }[]): void {
    const n = kvmIoctl(this.fd, 'KVM_SET_MSRS', encodeMsrs(entries));
    if (n !== entries.length) {
      throw new KvmError('KVM_SET_MSRS', 0, `MSR 0x${entries[n].index.toString(16)} rejected (${n} of ${entries.length} set)`);
    }
  }

  setCpuid(entries: readonly CpuidEntry[]): void {
    kvmIoctl(this.fd, 'KVM_SET_CPUID2', encodeCpuid2(entries));
  }

  /** struct kvm_fpu, raw (x87/SSE state in FXSAVE-like layout). */
  getFpu(): Buffer {
    const b = Buffer.alloc(SIZE.kvm_fpu);
    kvmIoctl(this.fd, 'KVM_GET_FPU', b);
    return b;
  }

  setFpu(b: Buffer): void {
    kvmIoctl(this.fd, 'KVM_SET_FPU', b);
  }

  /** The in-kernel LAPIC's 1 KiB register page (needs KVM_CREATE_IRQCHIP). */
  getLapic(): Buffer {
    const b = Buffer.alloc(SIZE.kvm_lapic_state);
    kvmIoctl(this.fd, 'KVM_GET_LAPIC', b);
    return b;
  }

  setLapic(b: Buffer): void {
    kvmIoctl(this.fd, 'KVM_SET_LAPIC', b);
  }

  getMpState(): number {
    const b = Buffer.alloc(SIZE.kvm_mp_state);
    kvmIoctl(this.fd, 'KVM_GET_MP_STATE', b);
    return b.readUInt32LE(0);
  }

  setMpState(state: number): void {
    const b = Buffer.alloc(SIZE.kvm_mp_state);
    b.writeUInt32LE(state, 0);
    kvmIoctl(this.fd, 'KVM_SET_MP_STATE', b);
  }

  /** struct kvm_vcpu_events, raw (pending exception, interrupt, NMI, shadow, SIPI vector, SMM). */
  getVcpuEvents(): Buffer {
    const b = Buffer.alloc(SIZE.kvm_vcpu_events);
    kvmIoctl(this.fd, 'KVM_GET_VCPU_EVENTS', b);
    return b;
  }

  setVcpuEvents(b: Buffer): void {
    kvmIoctl(this.fd, 'KVM_SET_VCPU_EVENTS', b);
  }

  /** struct kvm_debugregs, raw (DR0-3, DR6, DR7). */
  getDebugRegs(): Buffer {
    const b = Buffer.alloc(SIZE.kvm_debugregs);
    kvmIoctl(this.fd, 'KVM_GET_DEBUGREGS', b);
    return b;
  }

  setDebugRegs(b: Buffer): void {
    kvmIoctl(this.fd, 'KVM_SET_DEBUGREGS', b);
  }

  /** struct kvm_xsave: the XSAVE image (legacy region = FXSAVE layout, then the header and extended components). */
  getXsave(): Buffer {
    const b = Buffer.alloc(SIZE.kvm_xsave);
    kvmIoctl(this.fd, 'KVM_GET_XSAVE', b);
    return b;
  }

  setXsave(b: Buffer): void {
    kvmIoctl(this.fd, 'KVM_SET_XSAVE', b);
  }

  /** KVM_SET_SIGNAL_MASK: the signal mask in force while KVM_RUN executes guest code (8-byte kernel sigset). */
  setSignalMask(sigset: Buffer): void {
    const b = Buffer.alloc(SIZE.kvm_signal_mask + sigset.length);
    b.writeUInt32LE(sigset.length, 0);
    sigset.copy(b, 4);
    kvmIoctl(this.fd, 'KVM_SET_SIGNAL_MASK', b);
  }

  /** Unmap kvm_run in this thread (the fd stays open: the VM's owner closes it with close()). */
  detach(): void {
    munmap(this.runAddress, this.mmapSize);
  }

  close(): void {
    this.detach();
    closeFd(this.fd);
  }
}

export { CAP };
