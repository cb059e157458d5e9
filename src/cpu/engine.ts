// The engine-independent vCPU interface: what the VMM sees of a vCPU whether it runs on the software engine
// (src/cpu/soft) or on KVM (src/cpu/kvm). Registers in one common shape (struct kvm_regs's fields as bigint; segments
// in the VMCS access-rights layout of src/boot/linux.ts SegmentState), and a run() that executes guest code until an
// exit the VMM must see. Port I/O and MMIO are dispatched to the machine's PortBus / MmioBus by the engine itself.
import type { SegmentState } from '../boot/linux.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import type { PortBus, MmioBus } from '../devices/bus.ts';

export type { SegmentState };

/** The general registers, rip and rflags (the fields of struct kvm_regs). */
export interface Registers {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}

export interface DescriptorTable { base: bigint; limit: number }

/** Control registers, EFER, the segment registers' hidden parts, GDTR and IDTR. */
export interface SpecialRegisters {
  cs: SegmentState; ds: SegmentState; es: SegmentState; fs: SegmentState; gs: SegmentState; ss: SegmentState;
  tr: SegmentState; ldtr: SegmentState;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; efer: bigint;
}

/** General registers in the instruction encoding's numbering (ModRM.reg 0-15). */
export const GPR_BY_NUMBER = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const satisfies readonly (keyof Registers)[];

/** Why run() returned. */
export type VcpuExit =
  /** HLT with nothing to wake the vCPU in the engine (KVM with the in-kernel irqchip never reports this: it sleeps). */
  | { reason: 'halt' }
  /** stop() was called. */
  | { reason: 'stopped' }
  /** Triple fault: the machine should reset. */
  | { reason: 'shutdown' }
  /** A system event from KVM (PSCI-style shutdown/reset/crash). */
  | { reason: 'system-event'; type: number }
  /** The engine cannot go on: entry failure, emulation failure, an unexpected exit. */
  | { reason: 'error'; message: string };

export type EngineKind = 'soft' | 'kvm';

export interface Vcpu {
  readonly engine: EngineKind;
  readonly index: number;
  /** Only while run() is not in progress (throws otherwise). */
  getRegisters(): Registers;
  setRegisters(r: Registers): void;
  getSpecialRegisters(): SpecialRegisters;
  setSpecialRegisters(s: SpecialRegisters): void;
  /** Run guest code until an exit the VMM must see. At most one run() at a time per vCPU. */
  run(): Promise<VcpuExit>;
  /** Make a run() in progress (or the next one) return { reason: 'stopped' } soon. Safe from anywhere, any time. */
  stop(): void;
}

/** What an engine needs of the machine. */
export interface EngineMachine {
  mem: GuestMemory;
  ports: PortBus;
  mmio: MmioBus;
}

export interface Engine {
  readonly kind: EngineKind;
  readonly vcpus: readonly Vcpu[];
  /** Stop every vCPU and release threads, file descriptors and mappings. */
  close(): Promise<void>;
}

export function zeroRegisters(): Registers {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: 0n, rflags: 2n,
  };
}
