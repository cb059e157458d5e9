// Mode switches and event delivery outside 64-bit mode: real-mode interrupts, entering protected mode with a far
// jump, #GP/#PF through a 32-bit IDT, ring 3 <-> ring 0 through the TSS, #DF and triple fault, entering long mode
// the way Linux's trampoline does, sysenter/sysexit, virtual-8086 round trip. Programs are hand-assembled
// (bytes from GNU as, the source in comments). Only system instructions are used, so this file does not depend
// on the integer families; CR0/CR3/CR4/EFER writes that belong to MOV CR/WRMSR are done from the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import { VmClock } from '../src/vmm/clock.ts';
import { SoftCpu, RunExit } from '../src/cpu/soft/cpu.ts';
import '../src/cpu/soft/system/index.ts';
import * as C from '../src/cpu/soft/constants.ts';

const GDT = 0x1000, IDT = 0x2000, TSS = 0x3000;
const HANDLER_GP = 0x5000, HANDLER_80 = 0x5100, HANDLER_PF = 0x5200, HANDLER_DF = 0x5300, SYSENTER_EIP = 0x5400;
const USER_CODE = 0x6000, BOOT = 0x7c00, DATA = 0x7e00;
const RING0_STACK = 0x9000, RING3_STACK = 0x8000;

function makeCpu(): SoftCpu {
  return new SoftCpu({ mem: new GuestMemory(64 * MiB), ports: new PortBus(), mmio: new MmioBus(), clock: new VmClock() });
}

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
function put(cpu: SoftCpu, at: number, bytes: string): void { cpu.ram.set(hex(bytes), at); }
const w16 = (cpu: SoftCpu, at: number, v: number) => cpu.ramView.setUint16(at, v, true);
const w32 = (cpu: SoftCpu, at: number, v: number) => cpu.ramView.setUint32(at, v >>> 0, true);
const r16 = (cpu: SoftCpu, at: number) => cpu.ramView.getUint16(at, true);
const r32 = (cpu: SoftCpu, at: number) => cpu.ramView.getUint32(at, true);

/** An 8-byte code/data/system descriptor (SDM vol. 3A §3.4.5). `flags` is the G/DB/L/AVL nibble. */
function descriptor(cpu: SoftCpu, at: number, base: number, limit: number, access: number, flags: number): void {
  w32(cpu, at, (limit & 0xffff) | ((base & 0xffff) << 16));
  w32(cpu, at + 4, ((base >>> 16) & 0xff) | (access << 8) | (limit & 0xf0000) | (flags << 20) | (base & 0xff000000));
}

/** A 32-bit interrupt (0x8e) or trap (0x8f) gate, DPL in `dpl`. */
function gate32(cpu: SoftCpu, vector: number, sel: number, off: number, type: number, dpl = 0): void {
  w32(cpu, IDT + vector * 8, (off & 0xffff) | (sel << 16));
  w32(cpu, IDT + vector * 8 + 4, (off & 0xffff0000) | ((type | (dpl << 5)) << 8));
}

/** Step one instruction (delivering its exception, if any) with the run loop. */
function step(cpu: SoftCpu, n = 1): RunExit {
  let r = RunExit.Budget;
  for (let i = 0; i < n; i++) r = cpu.run(1);
  return r;
}

test('real mode: INT n through the IVT pushes FLAGS/CS/IP and clears IF; IRET returns; a fault returns to itself', () => {
  const cpu = makeCpu();
  assert.equal(cpu.segSel[C.CS], 0xf000);
  assert.equal(cpu.rip, 0xfff0);
  cpu.loadSegmentReal(C.CS, 0);
  cpu.rip = BOOT;
  cpu.loadSegmentReal(C.SS, 0);
  cpu.gpr[8] = 0x7000;
  cpu.setFlagsValue(C.IF | C.CF | C.TF);
  w16(cpu, 0x21 * 4, 0x0100); w16(cpu, 0x21 * 4 + 2, 0x0500); // IVT[0x21] = 0500:0100
  w16(cpu, 6 * 4, 0x0200); w16(cpu, 6 * 4 + 2, 0x0500); // IVT[6] (#UD) = 0500:0200
  put(cpu, BOOT, 'cd 21 8e c8'); // int $0x21; mov %ax,%cs (#UD)
  put(cpu, 0x5100, 'cf'); // iret
  step(cpu);
  assert.equal(cpu.segSel[C.CS], 0x500);
  assert.equal(cpu.segBase[C.CS], 0x5000);
  assert.equal(cpu.rip, 0x100);
  assert.equal(cpu.gpr[8], 0x6ffa);
  assert.equal(r16(cpu, 0x6ffa), BOOT + 2, 'return IP is the next instruction');
  assert.equal(r16(cpu, 0x6ffc), 0);
  assert.equal(r16(cpu, 0x6ffe), C.IF | C.CF | C.TF | C.FLAGS_FIXED);
  assert.equal(cpu.getFlags() & (C.IF | C.TF), 0);
  step(cpu);
  assert.equal(cpu.rip, BOOT + 2);
  assert.equal(cpu.segSel[C.CS], 0);
  assert.equal(cpu.gpr[8], 0x7000);
  assert.equal(cpu.getFlags() & (C.IF | C.CF), C.IF | C.CF);
  step(cpu);
  assert.equal(cpu.lastException, C.EXC_UD);
  assert.equal(cpu.rip, 0x200);
  assert.equal(r16(cpu, 0x6ffa), BOOT + 2, '#UD is a fault: its frame points at the faulting instruction');
});

/** GDT, IDT, TSS and the real-mode boot program; runs until protected mode with flat segments. */
function enterProtectedMode(cpu: SoftCpu): void {
  descriptor(cpu, GDT + 0x08, 0, 0xfffff, 0x9a, 0xc); // ring-0 code, 32-bit
  descriptor(cpu, GDT + 0x10, 0, 0xfffff, 0x92, 0xc); // ring-0 data
  descriptor(cpu, GDT + 0x18, 0, 0xfffff, 0xfa, 0xc); // ring-3 code
  descriptor(cpu, GDT + 0x20, 0, 0xfffff, 0xf2, 0xc); // ring-3 data
  descriptor(cpu, GDT + 0x28, TSS, 0x67, 0x89, 0); // 32-bit TSS, available
  descriptor(cpu, GDT + 0x30, 0, 0xfffff, 0x9a, 0xa); // ring-0 code, 64-bit (L)
  descriptor(cpu, GDT + 0x38, 0, 0xfffff, 0x12, 0xc); // data, not present
  w32(cpu, TSS + 4, RING0_STACK); w32(cpu, TSS + 8, 0x10); // ESP0, SS0
  w16(cpu, DATA, 0x3f); w32(cpu, DATA + 2, GDT); // GDTR image
  w16(cpu, DATA + 8, 0x7ff); w32(cpu, DATA + 10, IDT); // IDTR image
  w32(cpu, DATA + 0x10, RING0_STACK); w16(cpu, DATA + 0x14, 0x10); // m16:32 for lss
  w16(cpu, DATA + 0x18, 0x10); w16(cpu, DATA + 0x1a, 0x40); w16(cpu, DATA + 0x1c, 0x38);
  gate32(cpu, 13, 0x08, HANDLER_GP, 0x8e);
  gate32(cpu, 14, 0x08, HANDLER_PF, 0x8e);
  gate32(cpu, 8, 0x08, HANDLER_DF, 0x8e);
  gate32(cpu, 0x80, 0x08, HANDLER_80, 0x8f, 3);
  gate32(cpu, 0x81, 0x08, HANDLER_80, 0x8e, 0);
  put(cpu, HANDLER_80, 'cf'); // iret
  // 7c00: lgdtw 0x7e00; lidtw 0x7e08; lmsw %ax; ljmpl $0x08,$0x7c20
  put(cpu, BOOT, '0f 01 16 00 7e 0f 01 1e 08 7e 0f 01 f0 66 ea 20 7c 00 00 08 00');
  // 7c20: lss 0x7e10,%esp; mov 0x7e18,%ds
  put(cpu, BOOT + 0x20, '0f b2 25 10 7e 00 00 8e 1d 18 7e 00 00');
  cpu.loadSegmentReal(C.CS, 0);
  cpu.rip = BOOT;
  cpu.gpr[0] = 1; // AX for lmsw: PE
  step(cpu, 4);
  assert.equal(cpu.lastException, -1);
  assert.equal(cpu.rip, BOOT + 0x20);
  assert.ok(cpu.protectedMode);
  assert.equal(cpu.defOpsize, 4);
  assert.equal(cpu.segSel[C.CS], 0x08);
  step(cpu, 2);
  assert.equal(cpu.segSel[C.SS], 0x10);
  assert.equal(cpu.gpr[8], RING0_STACK);
  assert.equal(cpu.segSel[C.DS], 0x10);
  assert.equal(cpu.segLimit[C.DS], 0xffffffff);
  assert.equal(cpu.rip, BOOT + 0x2d);
}

test('protected mode: far jump after LMSW PE; loads set accessed bits; #GP and #NP through the IDT with selector error codes', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  assert.equal(cpu.ram[GDT + 0x10 + 5], 0x93, 'accessed bit written back');
  put(cpu, BOOT + 0x2d, '8e 05 1a 7e 00 00'); // mov 0x7e1a,%es  (selector 0x40: beyond the GDT limit)
  step(cpu);
  assert.equal(cpu.lastException, C.EXC_GP);
  assert.equal(cpu.rip, HANDLER_GP);
  assert.equal(cpu.gpr[8], RING0_STACK - 16);
  assert.equal(r32(cpu, RING0_STACK - 16), 0x40, 'error code = selector');
  assert.equal(r32(cpu, RING0_STACK - 12), BOOT + 0x2d);
  assert.equal(r32(cpu, RING0_STACK - 8), 0x08);
  assert.equal(cpu.segSel[C.ES], 0, 'ES unchanged');
  // A not-present data segment: #NP(selector).
  cpu.rip = BOOT + 0x2d; cpu.gpr[8] = RING0_STACK;
  put(cpu, BOOT + 0x2d, '8e 05 1c 7e 00 00'); // mov 0x7e1c,%es (selector 0x38)
  gate32(cpu, 11, 0x08, HANDLER_GP + 0x10, 0x8e);
  step(cpu);
  assert.equal(cpu.lastException, C.EXC_NP);
  assert.equal(cpu.rip, HANDLER_GP + 0x10);
  assert.equal(r32(cpu, RING0_STACK - 16), 0x38);
});

test('protected mode: LTR marks the TSS busy; IRET to ring 3; INT 0x80 switches to SS0:ESP0; gate DPL gives #GP(vector*8+2)', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  // 7c2d: ltr %ax; iret
  put(cpu, BOOT + 0x2d, '0f 00 d8 cf');
  cpu.gpr[0] = 0x28;
  step(cpu);
  assert.equal(cpu.ram[GDT + 0x28 + 5], 0x8b, 'busy TSS type');
  assert.equal(cpu.trBase, TSS);
  assert.equal(cpu.trSel, 0x28);
  const frame = RING0_STACK - 20;
  w32(cpu, frame, USER_CODE); w32(cpu, frame + 4, 0x1b); w32(cpu, frame + 8, C.IF | C.FLAGS_FIXED);
  w32(cpu, frame + 12, RING3_STACK); w32(cpu, frame + 16, 0x23);
  cpu.gpr[8] = frame;
  step(cpu);
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.rip, USER_CODE);
  assert.equal(cpu.segSel[C.CS], 0x1b);
  assert.equal(cpu.segSel[C.SS], 0x23);
  assert.equal(cpu.gpr[8], RING3_STACK);
  assert.equal(cpu.segSel[C.DS], 0, 'DS (DPL 0) is nulled on the way out to ring 3');
  assert.ok(cpu.getFlags() & C.IF);

  put(cpu, USER_CODE, 'cd 80 cd 81'); // int $0x80; int $0x81
  step(cpu);
  assert.equal(cpu.cpl, 0);
  assert.equal(cpu.rip, HANDLER_80);
  assert.equal(cpu.segSel[C.SS], 0x10);
  assert.equal(cpu.gpr[8], RING0_STACK - 20);
  assert.deepEqual([0, 4, 8, 12, 16].map((o) => r32(cpu, RING0_STACK - 20 + o)),
    [USER_CODE + 2, 0x1b, C.IF | C.FLAGS_FIXED, RING3_STACK, 0x23]);
  assert.ok(cpu.getFlags() & C.IF, 'a trap gate keeps IF');
  step(cpu); // iret
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.rip, USER_CODE + 2);
  assert.equal(cpu.gpr[8], RING3_STACK);
  step(cpu); // int $0x81: gate DPL 0 < CPL 3
  assert.equal(cpu.lastException, C.EXC_GP);
  assert.equal(cpu.rip, HANDLER_GP);
  assert.equal(cpu.cpl, 0);
  assert.equal(cpu.gpr[8], RING0_STACK - 24);
  assert.equal(r32(cpu, RING0_STACK - 24), 0x81 * 8 + 2, 'IDT error code, EXT clear for INT n');
  assert.equal(r32(cpu, RING0_STACK - 20), USER_CODE + 2, 'fault frame points at the INT');
  assert.equal(cpu.getFlags() & C.IF, 0, 'an interrupt gate clears IF');
});

test('protected mode: #PF under 32-bit paging pushes the error code and sets CR2', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  const pd = 0x10000;
  w32(cpu, pd, C.PTE_P | C.PTE_RW | C.PTE_US | C.PTE_PS); // 0-4 MiB identity; 4-8 MiB not present
  cpu.cr4 |= C.CR4_PSE; cpu.cr3 = pd; cpu.cr0 |= C.CR0_PG; cpu.updateMode();
  put(cpu, BOOT + 0x2d, '8e 1d 00 00 40 00'); // mov 0x400000,%ds
  step(cpu);
  assert.equal(cpu.lastException, C.EXC_PF);
  assert.equal(cpu.rip, HANDLER_PF);
  assert.equal(cpu.cr2, 0x400000);
  assert.equal(r32(cpu, RING0_STACK - 16), 0, 'supervisor read of a not-present page');
  assert.equal(r32(cpu, RING0_STACK - 12), BOOT + 0x2d);
});

test('a fault while delivering becomes #DF; a fault while delivering #DF is a triple fault', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  put(cpu, BOOT + 0x2d, '8e 05 1a 7e 00 00'); // mov 0x7e1a,%es -> #GP
  cpu.idtrLimit = 13 * 8 - 1; // vector 8 fits, vector 13 does not
  step(cpu);
  assert.equal(cpu.rip, HANDLER_DF);
  assert.equal(cpu.gpr[8], RING0_STACK - 16);
  assert.equal(r32(cpu, RING0_STACK - 16), 0, '#DF error code is 0');
  assert.equal(r32(cpu, RING0_STACK - 12), BOOT + 0x2d);
  assert.equal(cpu.segSel[C.CS], 0x08);

  const cpu2 = makeCpu();
  enterProtectedMode(cpu2);
  put(cpu2, BOOT + 0x2d, '8e 05 1a 7e 00 00');
  cpu2.idtrLimit = 0;
  const exit = step(cpu2);
  assert.equal(exit, RunExit.Shutdown);
  assert.ok(cpu2.shutdown);
});

test('long mode entry as Linux does it: PAE, EFER.LME, CR0.PG, then a far jump to a 64-bit code segment', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  const pml4 = 0x20000;
  w32(cpu, pml4, (pml4 + 0x1000) | C.PTE_P | C.PTE_RW);
  w32(cpu, pml4 + 0x1000, (pml4 + 0x2000) | C.PTE_P | C.PTE_RW);
  w32(cpu, pml4 + 0x2000, C.PTE_P | C.PTE_RW | C.PTE_PS); // 0-2 MiB
  cpu.cr4 |= C.CR4_PAE; cpu.cr3 = pml4; cpu.efer |= C.EFER_LME;
  cpu.cr0 |= C.CR0_PG; cpu.efer |= C.EFER_LMA; // what MOV CR0 does with LME set
  cpu.updateMode();
  assert.equal(cpu.mode64, false, 'compatibility mode until CS is reloaded');
  put(cpu, BOOT + 0x2d, 'ea 00 7d 00 00 30 00'); // ljmp $0x30,$0x7d00
  put(cpu, 0x7d00, '0f 01 f8'); // swapgs (64-bit mode only)
  step(cpu);
  assert.equal(cpu.lastException, -1);
  assert.ok(cpu.mode64);
  assert.equal(cpu.rip, 0x7d00);
  assert.equal(cpu.defAdsize, 8);
  cpu.segBase[C.GS] = 1; cpu.kernelGsBase = 2;
  step(cpu);
  assert.equal(cpu.segBase[C.GS], 2);
  assert.equal(cpu.kernelGsBase, 1);
});

test('sysenter/sysexit between ring 3 and ring 0 in 32-bit protected mode', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  cpu.msrs.set(0x174, 0x08n); cpu.msrs.set(0x175, BigInt(RING0_STACK)); cpu.msrs.set(0x176, BigInt(SYSENTER_EIP));
  // ltr %ax; then drop to ring 3 with a hand-built IRET frame.
  put(cpu, BOOT + 0x2d, '0f 00 d8 cf');
  cpu.gpr[0] = 0x28;
  step(cpu);
  const frame = RING0_STACK - 20;
  w32(cpu, frame, USER_CODE); w32(cpu, frame + 4, 0x1b); w32(cpu, frame + 8, C.IF | C.FLAGS_FIXED);
  w32(cpu, frame + 12, RING3_STACK); w32(cpu, frame + 16, 0x23);
  cpu.gpr[8] = frame;
  step(cpu);
  assert.equal(cpu.cpl, 3);
  put(cpu, USER_CODE, '0f 34'); // sysenter
  put(cpu, SYSENTER_EIP, '0f 35'); // sysexit
  step(cpu);
  assert.equal(cpu.cpl, 0);
  assert.equal(cpu.rip, SYSENTER_EIP);
  assert.equal(cpu.segSel[C.CS], 0x08);
  assert.equal(cpu.segSel[C.SS], 0x10);
  assert.equal(cpu.gpr[8], RING0_STACK);
  assert.equal(cpu.getFlags() & C.IF, 0);
  cpu.gpr[4] = USER_CODE + 2; cpu.gpr[2] = RING3_STACK - 4; // EDX, ECX
  step(cpu);
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.segSel[C.CS], 0x1b);
  assert.equal(cpu.segSel[C.SS], 0x23);
  assert.equal(cpu.rip, USER_CODE + 2);
  assert.equal(cpu.gpr[8], RING3_STACK - 4);
  // sysexit at ring 3 is #GP(0)
  put(cpu, USER_CODE + 2, '0f 35');
  step(cpu);
  assert.equal(cpu.lastException, C.EXC_GP);
  assert.equal(r32(cpu, RING0_STACK - 24), 0);
});

test('virtual-8086 mode: IRET with VM from ring 0, INT n back to ring 0 pushes the v86 segment registers', () => {
  const cpu = makeCpu();
  enterProtectedMode(cpu);
  put(cpu, BOOT + 0x2d, '0f 00 d8 cf'); // ltr %ax; iret
  cpu.gpr[0] = 0x28;
  step(cpu);
  const frame = RING0_STACK - 36;
  const v86Flags = C.VM | C.IF | C.IOPL | C.FLAGS_FIXED;
  [0x0010, 0x0600, v86Flags, 0x1000, 0x0700, 0x1111, 0x2222, 0x3333, 0x4444].forEach((v, i) => w32(cpu, frame + 4 * i, v));
  cpu.gpr[8] = frame;
  step(cpu);
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.protectedMode, false);
  assert.equal(cpu.segBase[C.CS], 0x6000);
  assert.equal(cpu.rip, 0x10);
  assert.equal(cpu.segSel[C.ES], 0x1111);
  assert.equal(cpu.segBase[C.GS], 0x44440);
  assert.equal(cpu.gpr[8], 0x1000);
  put(cpu, 0x6010, 'cd 80'); // int $0x80 (IOPL 3: allowed)
  step(cpu);
  assert.equal(cpu.cpl, 0);
  assert.ok(cpu.protectedMode);
  assert.equal(cpu.rip, HANDLER_80);
  assert.equal(cpu.gpr[8], RING0_STACK - 36);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => r32(cpu, RING0_STACK - 36 + 4 * i)),
    [0x12, 0x0600, v86Flags, 0x1000, 0x0700, 0x1111, 0x2222, 0x3333, 0x4444]);
  assert.equal(cpu.segSel[C.DS], 0);
  assert.equal(cpu.getFlags() & C.VM, 0);
  step(cpu); // iret back to v86
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.rip, 0x12);
  assert.equal(cpu.segSel[C.DS], 0x2222);
});
