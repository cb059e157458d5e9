// bench/paravirt's engine-level half: the same bytes written by a tiny 64-bit guest program through ringzero's
// 16550A model (src/devices/serial.ts on port 0x3f8) and through its virtio-console behind the virtio 1.2 PCI
// transport (src/devices/virtio/console.ts + pci.ts), on the soft engine and on the KVM engine, with no kernel in
// between. The device models are the ones the machine uses; the host side plays the parts Linux's drivers play at
// probe time (test/support/virtio-driver.ts: BARs, feature negotiation, a transmit queue), the guest program does
// the per-byte or per-buffer work. Counted: the buses' accesses (src/devices/bus.ts), which on KVM are VM exits.
//
// UART (polled, as the kernel's 8250 console write does: wait for THRE in LSR, then write THR):
//   mov edx,0x3fd; 1: in al,dx; test al,0x20; jz 1b; mov dl,0xf8; lodsb; out dx,al; mov dl,0xfd; dec rcx; jnz 1b; hlt
// virtio-console (one 4 KiB descriptor per buffer, publish, notify, wait for the used index):
//   xor eax,eax; 1: mov edx,eax; and edx,r9d; mov r12,rdx; shl r12,4; mov [rdi+r12],rsi; mov [rdi+r12+8],r10d;
//   mov word [rdi+r12+12],0; mov [rbx+rdx*2+4],dx; inc eax; mov [rbx+2],ax; mov [r8],r11w;
//   2: cmp [rbp+2],ax; jne 2b; add rsi,r10; dec rcx; jnz 1b; hlt
// Registers in: rsi = buffer, rcx = bytes (UART) or buffers (virtio), rdi/rbx/rbp = descriptor table / available /
// used ring, r8 = the queue's notify address, r9 = queue size - 1, r10 = buffer bytes, r11 = queue index.
// (Assembled with GNU as --64, ld -Ttext=0x1000 --oformat binary.)
import { Serial16550, COM1_BASE } from '../../src/devices/serial.ts';
import { VirtioConsole } from '../../src/devices/virtio/console.ts';
import { createSoftEngine } from '../../src/cpu/soft-adapter.ts';
import { KvmEngine } from '../../src/cpu/kvm/engine.ts';
import { CODE64_AR, DATA_AR } from '../../src/boot/linux.ts';
import type { Engine, SpecialRegisters } from '../../src/cpu/engine.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { TestBench } from '../../test/support/virtio-driver.ts';

const UART_PROGRAM = 'bafd030000eca82074fbb2f8aceeb2fd48ffc975f0f4';
const VIRTQUEUE_PROGRAM = '31c089c24421ca4989d449c1e4044a89342746895427086642c744270c00006689545304ffc06689430266458918'
  + '6639450275fa4c01d648ffc975c6f4';

const CODE = 0x1000;
const GDT = 0x500;
const PML4 = 0x10000;
const STACK_TOP = 0x8000;
/** The text: well above the page tables and below the test driver's ring allocations (which start at 1 MiB + ...). */
const BUFFER = 0x40_0000;
const CHUNK = 4096;
const TRANSMIT_QUEUE = 1;
const VIRTIO_F_VERSION_1 = 1n << 32n;

/** bytesPerCpuS: per second of this process's CPU time (user + system: on KVM the guest's time in the kernel too). */
export interface PathResult { bytesPerS: number; bytesPerCpuS: number; pioPerKiB: number; mmioPerKiB: number; bytes: number }
export interface ProgramResults { engine: 'soft' | 'kvm'; uart: PathResult; virtio: PathResult }

/** Flat 64-bit mode: GDT (null, null, code64 0x10, data 0x18) and the low 4 GiB identity-mapped with 2 MiB pages. */
function longMode(mem: GuestMemory): SpecialRegisters {
  const gdt = mem.slice(GDT, 32);
  const g = new DataView(gdt.buffer, gdt.byteOffset, 32);
  g.setBigUint64(16, 0x00af9a000000ffffn, true); // code: P, DPL0, S, execute/read, L, G (SDM vol. 3A §3.4.5)
  g.setBigUint64(24, 0x00cf92000000ffffn, true); // data: P, DPL0, S, read/write, D/B, G
  const pt = mem.slice(PML4, 6 * 4096);
  pt.fill(0);
  const v = new DataView(pt.buffer, pt.byteOffset, pt.byteLength);
  const P_RW = 0x3, PS = 0x80;
  v.setUint32(0, (PML4 + 0x1000) | P_RW, true);
  for (let gi = 0; gi < 4; gi++) {
    v.setUint32(0x1000 + gi * 8, (PML4 + 0x2000 + gi * 0x1000) | P_RW, true);
    for (let e = 0; e < 512; e++) v.setUint32(0x2000 + gi * 0x1000 + e * 8, ((gi * 2 ** 30 + e * 2 ** 21) % 2 ** 32) | P_RW | PS, true);
  }
  const flat = (selector: number, accessRights: number) => ({ selector, base: 0, limit: 0xffffffff, accessRights });
  return {
    cs: flat(0x10, CODE64_AR), ds: flat(0x18, DATA_AR), es: flat(0x18, DATA_AR), fs: flat(0x18, DATA_AR),
    gs: flat(0x18, DATA_AR), ss: flat(0x18, DATA_AR),
    tr: { selector: 0, base: 0, limit: 0xffff, accessRights: 0x8b },
    ldtr: { selector: 0, base: 0, limit: 0, accessRights: 0x10000 },
    gdt: { base: BigInt(GDT), limit: 31 }, idt: { base: 0n, limit: 0 },
    cr0: 0x8000_0031n, cr2: 0n, cr3: BigInt(PML4), cr4: 0x20n, efer: 0x500n,
  };
}

/** 64-byte lines of text, `bytes` long. */
function text(bytes: number): Uint8Array {
  const line = Buffer.from('ringzero bench/paravirt: the same 64-byte line for both devices\n');
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += line.length) line.copy(out, i, 0, Math.min(line.length, bytes - i));
  return out;
}

/** Run one program on a fresh engine over the bench's memory and buses; returns the wall and CPU seconds it ran. */
async function runOn(kind: 'soft' | 'kvm', bench: TestBench, program: string, regs: Partial<Record<string, number>>): Promise<{ s: number; cpuS: number }> {
  let engine: Engine | undefined;
  try {
    engine = kind === 'kvm'
      ? await KvmEngine.create({ mem: bench.mem, ports: bench.ports, mmio: bench.mmio, inlineBoot: true })
      : createSoftEngine({ mem: bench.mem, ports: bench.ports, mmio: bench.mmio });
    const vcpu = engine.vcpus[0];
    bench.mem.write(CODE, Buffer.from(program, 'hex'));
    vcpu.setSpecialRegisters(longMode(bench.mem));
    const r = vcpu.getRegisters();
    for (const k of Object.keys(r) as (keyof typeof r)[]) r[k] = 0n;
    for (const [k, value] of Object.entries(regs)) (r as unknown as Record<string, bigint>)[k] = BigInt(value!);
    r.rip = BigInt(CODE);
    r.rsp = BigInt(STACK_TOP);
    r.rflags = 2n;
    vcpu.setRegisters(r);
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const exit = await vcpu.run();
    const c = process.cpuUsage(c0);
    const s = (performance.now() - t0) / 1000;
    if (exit.reason !== 'halt') throw new Error(`${kind} engine: the program ended with ${JSON.stringify(exit)}, not hlt`);
    return { s, cpuS: (c.user + c.system) / 1e6 };
  } finally {
    await engine?.close();
  }
}

/** The UART and virtio-console programs on `kind`, writing `bytes` (a multiple of 4 KiB) each. */
export async function runPrograms(kind: 'soft' | 'kvm', bytes: number): Promise<ProgramResults> {
  if (bytes % CHUNK !== 0) throw new Error(`bytes must be a multiple of ${CHUNK}`);
  let received = 0;
  const io = { write: (d: Uint8Array) => { received += d.length; }, onInput: () => () => {} };
  const bench = new TestBench(new VirtioConsole(io, { input: false }), 3, 64 * 1024 * 1024);
  try {
    const serial = new Serial16550({ set: () => {}, pulse: () => {} }, (d) => { received += d.length; });
    bench.ports.register(COM1_BASE, 8, serial, 'COM1');
    bench.bringUp({ features: VIRTIO_F_VERSION_1 });
    const q = bench.queues[TRANSMIT_QUEUE].layout;
    bench.mem.write(BUFFER, text(bytes));

    const measure = async (program: string, regs: Partial<Record<string, number>>): Promise<PathResult> => {
      received = 0;
      const pio0 = bench.ports.accesses, mmio0 = bench.mmio.accesses;
      const { s, cpuS } = await runOn(kind, bench, program, regs);
      serial.flush();
      if (received !== bytes) throw new Error(`${kind} engine: ${received} of ${bytes} bytes reached the host`);
      return { bytes, bytesPerS: bytes / s, bytesPerCpuS: bytes / cpuS, pioPerKiB: (bench.ports.accesses - pio0) / (bytes / 1024), mmioPerKiB: (bench.mmio.accesses - mmio0) / (bytes / 1024) };
    };
    const uart = await measure(UART_PROGRAM, { rsi: BUFFER, rcx: bytes });
    const virtio = await measure(VIRTQUEUE_PROGRAM, {
      rsi: BUFFER, rcx: bytes / CHUNK, rdi: q.desc, rbx: q.avail, rbp: q.used,
      r8: bench.caps.notify + TRANSMIT_QUEUE * bench.caps.notifyMultiplier, r9: q.size - 1, r10: CHUNK, r11: TRANSMIT_QUEUE,
    });
    return { engine: kind, uart, virtio };
  } finally {
    bench.close();
  }
}
