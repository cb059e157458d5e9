// System instructions of the software CPU: CPUID, RDMSR/WRMSR, RDTSC, MOV CR/DR (paging and mode switches, TLB
// flushes, CR8 = TPR). Hand-assembled snippets (GNU as, Intel syntax, in the comments); expectations from the SDM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, makeMachine, runCode, hexBytes, CODE, PAGE_TABLES, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';
import type { LocalApic } from '../src/cpu/soft/cpu.ts';
import { TSC_HZ, readTsc } from '../src/cpu/soft/system/control.ts';
import { Lapic } from '../src/devices/irq/lapic.ts';
import { ApicBus } from '../src/devices/irq/apic-bus.ts';
import { MSR, setTscDeadline } from '../src/cpu/soft/system/msr.ts';

const RAX = 0, RCX = 1, RDX = 2, RBX = 3;
const CPUID = hexBytes('0f a2');
const RDMSR = hexBytes('0f 32');
const WRMSR = hexBytes('0f 30');
const RDTSC = hexBytes('0f 31');

function reg(m: Machine, i: number): bigint {
  return m.cpu.getGpr(i);
}
function setReg(m: Machine, i: number, v: bigint | number): void {
  m.cpu.setGpr(i, BigInt.asUintN(64, BigInt(v)));
}

function cpuid(m: Machine, leaf: number, sub = 0): [number, number, number, number] {
  setReg(m, RAX, leaf);
  setReg(m, RCX, sub);
  runCode(m, CPUID);
  assert.equal(m.cpu.lastException, -1);
  return [Number(reg(m, RAX)), Number(reg(m, RBX)), Number(reg(m, RCX)), Number(reg(m, RDX))];
}

function text(...regs: number[]): string {
  let s = '';
  for (const r of regs) for (let k = 0; k < 4; k++) s += String.fromCharCode((r >>> (8 * k)) & 0xff);
  return s;
}

/** RDMSR; returns the value or undefined after an exception. */
function rdmsr(m: Machine, index: number): bigint | undefined {
  setReg(m, RCX, index);
  runCode(m, RDMSR);
  if (m.cpu.lastException !== -1) return undefined;
  return (reg(m, RDX) << 32n) | reg(m, RAX);
}

/** WRMSR; returns the exception vector or -1. */
function wrmsr(m: Machine, index: number, value: bigint): number {
  setReg(m, RCX, index);
  setReg(m, RAX, value & 0xffffffffn);
  setReg(m, RDX, (value >> 32n) & 0xffffffffn);
  runCode(m, WRMSR);
  return m.cpu.lastException;
}

test('CPUID: vendor, signature, feature bits, APIC ID', () => {
  const m = longModeMachine();
  m.cpu.env.cpuIndex = 3;
  const [max, b0, c0, d0] = cpuid(m, 0);
  assert.equal(text(b0, d0, c0), 'GenuineIntel');
  assert.ok(max >= 0xb, 'leaves up to 0Bh at least');
  const [a1, b1, c1, d1] = cpuid(m, 1);
  assert.equal((a1 >> 8) & 0xf, 6, 'family 6');
  assert.equal(b1 >>> 24, 3, 'initial APIC ID in EBX[31:24]');
  assert.equal((b1 >> 8) & 0xff, 8, 'CLFLUSH line 64 bytes');
  // FPU TSC MSR PAE CX8 SEP PGE CMOV PAT PSE CLFLUSH MMX FXSR SSE SSE2
  for (const bit of [0, 3, 4, 5, 6, 8, 11, 13, 15, 16, 19, 23, 24, 25, 26]) assert.ok(d1 & (1 << bit), `leaf 1 EDX bit ${bit}`);
  assert.equal(d1 & (1 << 9), 0, 'no APIC without a local APIC');
  assert.equal(d1 & (1 << 28), 0, 'no HTT with one vCPU');
  assert.ok(c1 & (1 << 31), 'hypervisor');
  assert.ok(c1 & (1 << 13) && c1 & (1 << 23), 'CX16 and POPCNT (implemented by the integer family)');
  for (const bit of [21, 24, 26, 27, 28]) assert.equal(c1 & (1 << bit), 0, `leaf 1 ECX bit ${bit} (x2APIC/TSC-deadline/XSAVE/OSXSAVE/AVX) off`);
  assert.deepEqual(cpuid(m, 7), [0, 0, 0, 1 << 14], 'leaf 7: only SERIALIZE (EDX bit 14), one subleaf');
  assert.deepEqual(cpuid(m, 7, 1), [0, 0, 0, 0], 'leaf 7 subleaf 1: nothing');
  const [, , c81, d81] = cpuid(m, 0x80000001);
  for (const bit of [11, 20, 27, 29]) assert.ok(d81 & (1 << bit), `80000001h EDX bit ${bit} (SYSCALL/NX/RDTSCP/LM)`);
  assert.ok(c81 & 1, 'LAHF/SAHF in 64-bit mode');
  assert.equal(cpuid(m, 0x80000000)[0] >>> 0, 0x80000008);
  assert.equal(cpuid(m, 0x80000008)[0], (48 << 8) | 40);
  const brand = text(...cpuid(m, 0x80000002), ...cpuid(m, 0x80000003), ...cpuid(m, 0x80000004));
  assert.match(brand, /^ringzero/);
  const [hmax, hb, hc, hd] = cpuid(m, 0x40000000);
  assert.ok(hmax >= 0x40000000);
  assert.equal(text(hb, hc, hd).replace(/\0+$/, ''), 'ringzero');
  // Intel: a leaf beyond the maximum returns the highest basic leaf's data
  assert.deepEqual(cpuid(m, max + 5), cpuid(m, max));
  // the TSC frequency from leaf 15h
  const [den, num, crystal] = cpuid(m, 0x15);
  assert.equal((crystal * num) / den, TSC_HZ);
});

test('CPUID: topology and HTT/APIC with several vCPUs and a local APIC', () => {
  const m = longModeMachine();
  m.cpu.env.cpuIndex = 2;
  m.cpu.env.cpuCount = 4;
  m.cpu.env.lapic = fakeLapic();
  const [, b1, , d1] = cpuid(m, 1);
  assert.ok(d1 & (1 << 28), 'HTT');
  assert.ok(d1 & (1 << 9), 'APIC');
  assert.equal((b1 >> 16) & 0xff, 4);
  const smt = cpuid(m, 0xb, 0), core = cpuid(m, 0xb, 1), end = cpuid(m, 0xb, 2);
  assert.equal(smt[1], 1);
  assert.equal((smt[2] >> 8) & 0xff, 1, 'level type SMT');
  assert.equal(core[1], 4, '4 logical processors in the package');
  assert.equal((core[2] >> 8) & 0xff, 2, 'level type core');
  assert.equal(core[0], 2, 'APIC ID shift');
  assert.equal(core[3], 2, 'x2APIC ID');
  assert.equal((end[2] >> 8) & 0xff, 0, 'no further levels');
  assert.equal(cpuid(m, 4, 0)[0] >>> 26, 3, 'leaf 4: 4 cores per package');
});

test('RDMSR/WRMSR: round trips, canonical checks, #GP for unknown MSRs and at CPL 3', () => {
  const m = longModeMachine();
  assert.equal(wrmsr(m, MSR.LSTAR, 0xffffffff81000000n), -1);
  assert.equal(rdmsr(m, MSR.LSTAR), 0xffffffff81000000n);
  assert.equal(wrmsr(m, MSR.LSTAR, 0x0000800000000000n), C.EXC_GP, 'non-canonical LSTAR');
  assert.equal(rdmsr(m, MSR.LSTAR), 0xffffffff81000000n);
  assert.equal(wrmsr(m, MSR.STAR, 0x0023001000000000n), -1);
  assert.equal(rdmsr(m, MSR.STAR), 0x0023001000000000n);
  assert.equal(wrmsr(m, MSR.SFMASK, 0x47700n), -1);
  assert.equal(rdmsr(m, MSR.SFMASK), 0x47700n);
  assert.equal(wrmsr(m, MSR.SYSENTER_EIP, 0xffffffff81001000n), -1);
  assert.equal(rdmsr(m, MSR.SYSENTER_EIP), 0xffffffff81001000n);
  // unknown MSR: #GP(0) both ways
  assert.equal(rdmsr(m, 0x12345), undefined);
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(m.cpu.faultError, 0);
  assert.equal(wrmsr(m, 0x12345, 0n), C.EXC_GP);
  // SPEC_CTRL / ARCH_CAPABILITIES are not advertised, so they do not exist
  assert.equal(rdmsr(m, 0x48), undefined);
  assert.equal(rdmsr(m, 0x10a), undefined);
  // PAT: round trip, and #GP for a reserved memory type (2)
  assert.equal(rdmsr(m, MSR.PAT), 0x0007040600070406n);
  assert.equal(wrmsr(m, MSR.PAT, 0x0007010600070106n), -1);
  assert.equal(rdmsr(m, MSR.PAT), 0x0007010600070106n);
  assert.equal(wrmsr(m, MSR.PAT, 0x0000000000000002n), C.EXC_GP);
  // MTRRs: the capability register says 8 variable ranges + fixed + WC and is read-only
  assert.equal(rdmsr(m, MSR.MTRRCAP), 0x508n);
  assert.equal(wrmsr(m, MSR.MTRRCAP, 0n), C.EXC_GP);
  assert.equal(wrmsr(m, MSR.MTRR_PHYSBASE0 + 2, 0xc0000000n), -1); // base 3 GiB, UC
  assert.equal(wrmsr(m, MSR.MTRR_PHYSBASE0 + 3, 0xffc0000800n), -1); // 1 GiB mask, valid
  assert.equal(rdmsr(m, MSR.MTRR_PHYSBASE0 + 3), 0xffc0000800n);
  assert.equal(wrmsr(m, MSR.MTRR_PHYSBASE0 + 3, 0x10000000800n), C.EXC_GP, 'mask beyond MAXPHYADDR');
  assert.equal(wrmsr(m, MSR.MTRR_FIX64K_00000, 0x0606060606060606n), -1);
  assert.equal(rdmsr(m, MSR.MTRR_FIX64K_00000), 0x0606060606060606n);
  // misc
  assert.equal((rdmsr(m, MSR.MISC_ENABLE) ?? 0n) & 1n, 1n, 'fast strings enabled');
  assert.equal(rdmsr(m, MSR.MCG_CAP), 0n, 'no machine-check banks');
  assert.equal(rdmsr(m, MSR.APIC_BASE), 0xfee00900n);

  const u = longModeMachine(3);
  assert.equal(rdmsr(u, MSR.EFER), undefined);
  assert.equal(u.cpu.lastException, C.EXC_GP);
  assert.equal(wrmsr(u, MSR.STAR, 0n), C.EXC_GP);
});

test('FS_BASE/GS_BASE/KERNEL_GS_BASE MSRs set the segment bases', () => {
  const m = longModeMachine();
  const base = 0x300000;
  m.cpu.writeLin(base, 8, 0x0badf00d, 0x12345678);
  assert.equal(wrmsr(m, MSR.FS_BASE, BigInt(base)), -1);
  assert.equal(m.cpu.segBase[C.FS], base);
  // push qword ptr fs:[0]; pop rax
  runCode(m, hexBytes('64 ff 34 25 00 00 00 00 58'));
  assert.equal(reg(m, RAX), 0x123456780badf00dn);
  assert.equal(wrmsr(m, MSR.GS_BASE, 0xffff888000000000n), -1);
  assert.equal(m.cpu.segBase[C.GS], Number(BigInt.asIntN(64, 0xffff888000000000n)));
  assert.equal(rdmsr(m, MSR.GS_BASE), 0xffff888000000000n);
  assert.equal(wrmsr(m, MSR.KERNEL_GS_BASE, 0xffff888000001000n), -1);
  assert.equal(m.cpu.kernelGsBase, Number(BigInt.asIntN(64, 0xffff888000001000n)));
  assert.equal(wrmsr(m, MSR.FS_BASE, 0x8000000000000000n), C.EXC_GP, 'non-canonical');
});

test('EFER: NXE round trip, reserved bits and LME changes under paging fault', () => {
  const m = longModeMachine();
  const efer = rdmsr(m, MSR.EFER)!;
  assert.equal(efer, BigInt(C.EFER_SCE | C.EFER_LME | C.EFER_LMA | C.EFER_NXE));
  assert.equal(wrmsr(m, MSR.EFER, efer & ~BigInt(C.EFER_NXE)), -1);
  assert.equal(m.cpu.efer & C.EFER_NXE, 0);
  assert.equal(wrmsr(m, MSR.EFER, efer & ~BigInt(C.EFER_LME)), C.EXC_GP, 'LME cannot change with CR0.PG = 1');
  assert.equal(wrmsr(m, MSR.EFER, efer | (1n << 20n)), C.EXC_GP, 'reserved bit');
  assert.equal(m.cpu.efer & C.EFER_LMA, C.EFER_LMA);
});

test('RDTSC counts guest time at TSC_HZ; WRMSR TSC moves it; CR4.TSD makes it CPL 0 only', () => {
  const m = longModeMachine();
  m.clock.pause();
  m.clock.set(1_000_000); // 1 ms of guest time
  runCode(m, RDTSC);
  const t0 = (reg(m, RDX) << 32n) | reg(m, RAX);
  assert.equal(t0, BigInt(TSC_HZ / 1000));
  assert.equal(wrmsr(m, MSR.TSC, 0x100000000n), -1);
  m.clock.set(1_000_500);
  runCode(m, RDTSC);
  assert.equal((reg(m, RDX) << 32n) | reg(m, RAX), 0x100000000n + BigInt((500 * TSC_HZ) / 1e9));
  assert.equal(rdmsr(m, MSR.TSC), 0x100000000n + BigInt((500 * TSC_HZ) / 1e9));

  const u = longModeMachine(3);
  runCode(u, RDTSC);
  assert.equal(u.cpu.lastException, -1);
  u.cpu.cr4 |= C.CR4_TSD;
  runCode(u, RDTSC);
  assert.equal(u.cpu.lastException, C.EXC_GP);
});

test('MOV CR3 flushes non-global translations; toggling CR4.PGE flushes global ones', () => {
  const m = longModeMachine();
  // A 4 KiB page table for 0x400000-0x5fffff; page 0x400000 maps to physical 0x400000.
  const flags = C.PTE_P | C.PTE_RW | C.PTE_US;
  const ptAt = 0x30000;
  const dv = m.mem.lowView;
  for (let i = 0; i < 512; i++) dv.setUint32(ptAt + i * 8, (0x400000 + i * 4096) | flags, true);
  dv.setUint32(PAGE_TABLES + 8192 + 2 * 8, ptAt | flags, true);
  m.cpu.flushTlb(true);
  m.mem.write(0x400000, Uint8Array.of(0xaa));
  m.mem.write(0x500000, Uint8Array.of(0xbb));
  // push qword ptr [0x400000]; pop rbx
  const read = hexBytes('ff 34 25 00 00 40 00 5b');
  runCode(m, read);
  assert.equal(reg(m, RBX) & 0xffn, 0xaan);
  // Point the PTE at 0x500000 without invalidating: the cached translation still answers.
  dv.setUint32(ptAt, 0x500000 | flags, true);
  runCode(m, read);
  assert.equal(reg(m, RBX) & 0xffn, 0xaan, 'stale TLB entry until the flush');
  // mov rax, cr3; mov cr3, rax
  runCode(m, hexBytes('0f 20 d8 0f 22 d8'));
  runCode(m, read);
  assert.equal(reg(m, RBX) & 0xffn, 0xbbn, 'new mapping after MOV CR3');

  // A global page survives MOV CR3 with CR4.PGE = 1, and a CR4.PGE change flushes it.
  setReg(m, RAX, m.cpu.cr4 | C.CR4_PGE);
  runCode(m, hexBytes('0f 22 e0')); // mov cr4, rax
  dv.setUint32(ptAt, 0x400000 | flags | C.PTE_G, true);
  m.cpu.flushTlb(true);
  runCode(m, read);
  assert.equal(reg(m, RBX) & 0xffn, 0xaan);
  dv.setUint32(ptAt, 0x500000 | flags | C.PTE_G, true);
  runCode(m, hexBytes('0f 20 d8 0f 22 d8'));
  runCode(m, read);
  assert.equal(reg(m, RBX) & 0xffn, 0xaan, 'global entry kept across MOV CR3');
  setReg(m, RAX, m.cpu.cr4 & ~C.CR4_PGE);
  runCode(m, hexBytes('0f 22 e0'));
  runCode(m, read);
  assert.equal(reg(m, RBX) & 0xffn, 0xbbn, 'CR4.PGE change flushed it');
});

test('CR0.PG with EFER.LME activates IA-32e mode (LMA); the #GP cases', () => {
  const m = makeMachine();
  for (const s of [C.CS, C.DS, C.ES, C.SS]) m.cpu.loadSegmentReal(s, 0);
  // Identity map of the first 2 MiB: PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000 (one 2 MiB page).
  const dv = m.mem.lowView;
  dv.setUint32(0x10000, 0x11000 | 3, true);
  dv.setUint32(0x11000, 0x12000 | 3, true);
  dv.setUint32(0x12000, 0 | 0x83, true);
  const at = { at: 0x1000 };
  // 16-bit code: mov cr3, eax
  setReg(m, RAX, 0x10000);
  runCode(m, hexBytes('0f 22 d8'), at);
  // wrmsr EFER.LME
  setReg(m, RCX, MSR.EFER);
  setReg(m, RAX, C.EFER_LME);
  setReg(m, RDX, 0);
  runCode(m, WRMSR, at);
  assert.equal(m.cpu.lastException, -1);
  // mov cr0, eax with PE|PG but CR4.PAE clear: #GP
  setReg(m, RAX, (C.CR0_PE | C.CR0_PG | C.CR0_ET) >>> 0);
  runCode(m, hexBytes('0f 22 c0'), at);
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(m.cpu.cr0 & C.CR0_PG, 0);
  // PG without PE: #GP
  setReg(m, RAX, (C.CR0_PG | C.CR0_ET) >>> 0);
  runCode(m, hexBytes('0f 22 c0'), at);
  assert.equal(m.cpu.lastException, C.EXC_GP);
  // mov cr4, eax (PAE); mov cr0, eax (PE|PG)
  setReg(m, RAX, C.CR4_PAE);
  runCode(m, hexBytes('0f 22 e0'), at);
  setReg(m, RAX, (C.CR0_PE | C.CR0_PG | C.CR0_ET) >>> 0);
  runCode(m, hexBytes('0f 22 c0'), at);
  assert.equal(m.cpu.lastException, -1);
  assert.equal(m.cpu.efer & C.EFER_LMA, C.EFER_LMA, 'EFER.LMA set');
  assert.equal(m.cpu.pagingLevels, 4);
  assert.equal(m.cpu.mode64, false, 'compatibility mode until a 64-bit CS is loaded');
  setReg(m, RCX, MSR.EFER);
  runCode(m, RDMSR, at);
  assert.equal(Number(reg(m, RAX)) & C.EFER_LMA, C.EFER_LMA, 'RDMSR shows LMA');
  // Clearing PAE while IA-32e mode is active: #GP
  setReg(m, RAX, 0);
  runCode(m, hexBytes('0f 22 e0'), at);
  assert.equal(m.cpu.lastException, C.EXC_GP);
  // Clearing PG outside 64-bit mode leaves IA-32e mode
  setReg(m, RAX, (C.CR0_PE | C.CR0_ET) >>> 0);
  runCode(m, hexBytes('0f 22 c0'), at);
  assert.equal(m.cpu.lastException, -1);
  assert.equal(m.cpu.efer & C.EFER_LMA, 0);
  assert.equal(m.cpu.pagingLevels, 0);

  // In 64-bit mode, clearing CR0.PG is #GP.
  const l = longModeMachine();
  setReg(l, RAX, l.cpu.cr0 & ~C.CR0_PG);
  runCode(l, hexBytes('0f 22 c0'));
  assert.equal(l.cpu.lastException, C.EXC_GP);
  // Unsupported CR4 bits (OSXSAVE, bit 18) are #GP; CR1 is #UD; MOV CR at CPL 3 is #GP.
  setReg(l, RAX, l.cpu.cr4 | (1 << 18));
  runCode(l, hexBytes('0f 22 e0'));
  assert.equal(l.cpu.lastException, C.EXC_GP);
  runCode(l, hexBytes('0f 20 c8')); // mov rax, cr1
  assert.equal(l.cpu.lastException, C.EXC_UD);
  const u = longModeMachine(3);
  runCode(u, hexBytes('0f 20 d8'));
  assert.equal(u.cpu.lastException, C.EXC_GP);
});

test('IA32_TSC_DEADLINE: offered with a LAPIC (CPUID.01H:ECX[24], RINGZERO_TSC_DEADLINE=1), else #GP; in TSC-deadline mode it arms one interrupt at a TSC value, reads back until it fires, and is ignored outside that mode (SDM 11.5.4.1)', (t) => {
  const was = setTscDeadline(true);
  t.after(() => setTscDeadline(was));
  const none = longModeMachine();
  assert.equal(rdmsr(none, MSR.TSC_DEADLINE), undefined, 'no LAPIC: no such MSR (#GP)');
  assert.equal(none.cpu.lastException, C.EXC_GP);
  const m = longModeMachine();
  m.clock.pause();
  m.clock.set(1_000_000);
  const lapic = new Lapic({ clock: m.clock, bus: new ApicBus(), apicId: 0, hooks: { wake() {}, init() {}, startup() {} } });
  m.cpu.env.lapic = lapic;
  // Not offered (the default): CPUID's bit is clear and the MSR raises #GP(0) both ways, as on hardware without it.
  setTscDeadline(false);
  assert.equal((cpuid(m, 1)[2] >>> 24) & 1, 0);
  assert.equal(rdmsr(m, MSR.TSC_DEADLINE), undefined, 'not offered: RDMSR #GP');
  assert.equal(m.cpu.lastException, C.EXC_GP);
  assert.equal(wrmsr(m, MSR.TSC_DEADLINE, 1n), C.EXC_GP, 'not offered: WRMSR #GP');
  setTscDeadline(true);
  assert.equal((cpuid(m, 1)[2] >>> 24) & 1, 1);
  lapic.mmioWrite(0xf0, 4, 0x1ff); // software-enabled
  const at = (ns: number): boolean => { m.clock.set(ns); m.clock.runDue(); return m.cpu.env.lapic!.hasInterrupt(); };
  // One-shot mode: the MSR reads 0 and a write does nothing.
  lapic.mmioWrite(0x320, 4, 0x40);
  assert.equal(wrmsr(m, MSR.TSC_DEADLINE, BigInt(readTsc(m.cpu) + 2000)), -1);
  assert.equal(rdmsr(m, MSR.TSC_DEADLINE), 0n);
  assert.equal(at(2_000_000), false);
  // TSC-deadline mode: 2 GHz, so 2000 ticks ahead is 1 µs.
  lapic.mmioWrite(0x320, 4, (2 << 17) | 0x40);
  const deadline = BigInt(readTsc(m.cpu) + 2000);
  assert.equal(wrmsr(m, MSR.TSC_DEADLINE, deadline), -1);
  assert.equal(rdmsr(m, MSR.TSC_DEADLINE), deadline);
  lapic.mmioWrite(0x380, 4, 5); // the initial count is ignored in this mode, the current count reads 0
  assert.equal(lapic.mmioRead(0x380, 4), 0);
  assert.equal(lapic.mmioRead(0x390, 4), 0);
  assert.equal(at(2_000_999), false);
  assert.equal(at(2_001_000), true, 'fires when the TSC reaches the deadline');
  assert.equal(lapic.acknowledge(), 0x40);
  lapic.mmioWrite(0xb0, 4, 0);
  assert.equal(rdmsr(m, MSR.TSC_DEADLINE), 0n, 'disarmed once fired');
  assert.equal(at(3_000_000), false, 'once');
  // A deadline already past fires at the next look at the timers; writing 0 disarms.
  assert.equal(wrmsr(m, MSR.TSC_DEADLINE, BigInt(readTsc(m.cpu) - 10)), -1);
  assert.equal(at(3_000_000), true);
  assert.equal(lapic.acknowledge(), 0x40);
  lapic.mmioWrite(0xb0, 4, 0);
  wrmsr(m, MSR.TSC_DEADLINE, BigInt(readTsc(m.cpu) + 2000));
  wrmsr(m, MSR.TSC_DEADLINE, 0n);
  assert.equal(at(4_000_000), false, 'disarmed by 0');
  // Leaving the mode disarms it too.
  wrmsr(m, MSR.TSC_DEADLINE, BigInt(readTsc(m.cpu) + 2000));
  lapic.mmioWrite(0x320, 4, 0x40);
  lapic.mmioWrite(0x320, 4, (2 << 17) | 0x40);
  assert.equal(rdmsr(m, MSR.TSC_DEADLINE), 0n);
  assert.equal(at(5_000_000), false, 'a mode change disarms the deadline');
  // A snapshot carries it among the vCPU's MSRs; the LAPIC restored with it fires at the same instant.
  const armed = BigInt(readTsc(m.cpu) + 4000);
  wrmsr(m, MSR.TSC_DEADLINE, armed);
  const saved = lapic.saveState();
  const copy = new Lapic({ clock: m.clock, bus: new ApicBus(), apicId: 0, hooks: { wake() {}, init() {}, startup() {} } });
  m.cpu.env.lapic = copy;
  lapic.mmioWrite(0x320, 4, 0x10040); // (the original quiet: masked)
  copy.restoreState(saved, { tsc: armed, ns: 5_002_000 });
  assert.equal(rdmsr(m, MSR.TSC_DEADLINE), armed);
  assert.equal(at(5_001_999), false);
  assert.equal(at(5_002_000), true);
});

function fakeLapic(): LocalApic & { tpr: number } {
  return {
    tpr: 0,
    mmioRead(offset: number) { return offset === 0x80 ? this.tpr : 0; },
    mmioWrite(offset: number, _size: 1 | 2 | 4, value: number) { if (offset === 0x80) this.tpr = value & 0xff; },
    hasInterrupt: () => false,
    acknowledge: () => 0,
    readApicBaseMsr: () => 0xfee00900n,
    writeApicBaseMsr: () => {},
  };
}

test('CR8 is the local APIC TPR[7:4]; CR2 and debug registers round trip', () => {
  const m = longModeMachine();
  const lapic = fakeLapic();
  m.cpu.env.lapic = lapic;
  // mov cr8, rax; mov rbx, cr8
  setReg(m, RAX, 0x9);
  runCode(m, hexBytes('44 0f 22 c0 44 0f 20 c3'));
  assert.equal(lapic.tpr, 0x90);
  assert.equal(reg(m, RBX), 9n);
  lapic.tpr = 0x5f;
  runCode(m, hexBytes('44 0f 20 c3'));
  assert.equal(reg(m, RBX), 5n);
  setReg(m, RAX, 0x10);
  runCode(m, hexBytes('44 0f 22 c0'));
  assert.equal(m.cpu.lastException, C.EXC_GP, 'CR8 bits 63:4 are reserved');
  // mov cr2, rax; mov rbx, cr2
  setReg(m, RAX, 0xffff888012345678n);
  runCode(m, hexBytes('0f 22 d0 0f 20 d3'));
  assert.equal(reg(m, RBX), 0xffff888012345678n);
  // mov dr7, rax; mov rbx, dr7 (bit 10 reads as 1); mov rbx, dr4 aliases DR6 while CR4.DE = 0
  setReg(m, RAX, 0x3);
  runCode(m, hexBytes('0f 23 f8 0f 21 fb'));
  assert.equal(reg(m, RBX), 0x403n);
  runCode(m, hexBytes('0f 21 e3'));
  assert.equal(reg(m, RBX), 0xffff0ff0n);
  setReg(m, RAX, 0xffffffff81000000n);
  runCode(m, hexBytes('0f 23 c0 0f 21 c3')); // mov dr0, rax; mov rbx, dr0
  assert.equal(reg(m, RBX), 0xffffffff81000000n);
  setReg(m, RAX, 1n << 32n);
  runCode(m, hexBytes('0f 23 f8'));
  assert.equal(m.cpu.lastException, C.EXC_GP, 'DR7[63:32] must be 0');
  m.cpu.cr4 |= C.CR4_DE;
  runCode(m, hexBytes('0f 21 e3'));
  assert.equal(m.cpu.lastException, C.EXC_UD, 'DR4 with CR4.DE');
  // CLTS clears CR0.TS
  m.cpu.cr0 |= C.CR0_TS;
  runCode(m, hexBytes('0f 06'));
  assert.equal(m.cpu.cr0 & C.CR0_TS, 0);
  assert.equal(m.cpu.rip, CODE + 2);
});
