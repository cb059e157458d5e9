// 64-bit system behaviour: LGDT/LIDT/LTR, IRETQ to ring 3, INT n through 64-bit gates with RSP0 and IST stacks,
// #PF from ring 3, SYSCALL/SYSRET with SWAPGS, segment loads with 64-bit null rules, far transfers between
// 64-bit and compatibility mode, descriptor-table instructions, #DF through an IST stack and triple fault.
// The GDT follows Linux's x86-64 layout (kernel CS 0x10, DS 0x18, user32 CS 0x23, user DS 0x2b, user CS 0x33).
// Bytes come from GNU as (source in comments); only system instructions run, so the file does not depend on the
// integer instruction families.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import { VmClock } from '../src/vmm/clock.ts';
import { SoftCpu, RunExit, CPU_FAULT, type LocalApic } from '../src/cpu/soft/cpu.ts';
import { setupFlatLongMode } from '../src/cpu/soft/setup.ts';
import '../src/cpu/soft/system/index.ts';
import * as C from '../src/cpu/soft/constants.ts';

const GDT = 0x1000, IDT = 0x2000, TSS = 0x3000;
const H_GP = 0x5000, H_80 = 0x5100, H_PF = 0x5200, H_BP = 0x5300, H_SYSCALL = 0x5400, H_DF = 0x5500, H_NP = 0x5600;
const USER = 0x6000, KCODE = 0x7000, DATA = 0x7e00;
const RSP0 = 0x90000, IST1 = 0xa0008, USER_STACK = 0x70000, KSTACK = 0x80000;

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
function put(cpu: SoftCpu, at: number, bytes: string): void { cpu.ram.set(hex(bytes), at); }
const w16 = (cpu: SoftCpu, at: number, v: number) => cpu.ramView.setUint16(at, v, true);
const w32 = (cpu: SoftCpu, at: number, v: number) => cpu.ramView.setUint32(at, v >>> 0, true);
const w64 = (cpu: SoftCpu, at: number, v: number) => { w32(cpu, at, v % 2 ** 32); w32(cpu, at + 4, Math.floor(v / 2 ** 32)); };
const r64 = (cpu: SoftCpu, at: number) => Number(cpu.ramView.getBigUint64(at, true));

function descriptor(cpu: SoftCpu, at: number, base: number, limit: number, access: number, flags: number): void {
  w32(cpu, at, (limit & 0xffff) | ((base & 0xffff) << 16));
  w32(cpu, at + 4, ((base >>> 16) & 0xff) | (access << 8) | (limit & 0xf0000) | (flags << 20) | (base & 0xff000000));
}

/** A 64-bit IDT gate (SDM vol. 3A §6.14.1): type 0x8e interrupt / 0x8f trap, with DPL and IST. */
function gate64(cpu: SoftCpu, vector: number, off: number, type: number, dpl = 0, ist = 0, sel = 0x10): void {
  const at = IDT + vector * 16;
  w32(cpu, at, (off & 0xffff) | (sel << 16));
  w32(cpu, at + 4, (off & 0xffff0000) | ((type | (dpl << 5)) << 8) | ist);
  w32(cpu, at + 8, Math.floor(off / 2 ** 32));
  w32(cpu, at + 12, 0);
}

function machine(cpl: 0 | 3 = 0, lapic?: LocalApic): SoftCpu {
  const cpu = new SoftCpu({ mem: new GuestMemory(64 * MiB), ports: new PortBus(), mmio: new MmioBus(), clock: new VmClock(), lapic });
  setupFlatLongMode(cpu, { pml4: 0x100000, identityMapBytes: 1 << 30, cpl }); // 0-1 GiB; 1 GiB up is not present
  descriptor(cpu, GDT + 0x08, 0, 0xfffff, 0x9b, 0xc); // kernel code 32
  descriptor(cpu, GDT + 0x10, 0, 0xfffff, 0x9b, 0xa); // kernel code 64
  descriptor(cpu, GDT + 0x18, 0, 0xfffff, 0x93, 0xc); // kernel data
  descriptor(cpu, GDT + 0x20, 0, 0xfffff, 0xfb, 0xc); // user code 32
  descriptor(cpu, GDT + 0x28, 0, 0xfffff, 0xf3, 0xc); // user data
  descriptor(cpu, GDT + 0x30, 0, 0xfffff, 0xfb, 0xa); // user code 64
  descriptor(cpu, GDT + 0x38, 0, 0xfffff, 0x13, 0xc); // data, not present
  descriptor(cpu, GDT + 0x40, TSS, 0x67, 0x89, 0); // 64-bit TSS (16 bytes: upper base dword at +8 is 0)
  w16(cpu, DATA, 0x4f); w64(cpu, DATA + 2, GDT);
  w16(cpu, DATA + 0x10, 0xfff); w64(cpu, DATA + 0x12, IDT);
  w64(cpu, TSS + 4, RSP0);
  w64(cpu, TSS + 0x24, IST1);
  gate64(cpu, 13, H_GP, 0x8e);
  gate64(cpu, 14, H_PF, 0x8e);
  gate64(cpu, 11, H_NP, 0x8e);
  gate64(cpu, 8, H_DF, 0x8e, 0, 1);
  gate64(cpu, 3, H_BP, 0x8e, 3, 1);
  gate64(cpu, 0x80, H_80, 0x8e, 3);
  gate64(cpu, 0x81, H_80, 0x8e, 0);
  put(cpu, H_80, '48 cf'); // iretq
  put(cpu, H_BP, '48 cf'); // iretq
  put(cpu, H_SYSCALL, '0f 01 f8 48 0f 07'); // swapgs; sysretq
  cpu.setReg64Num(4, cpl === 3 ? USER_STACK : KSTACK);
  return cpu;
}

/** A local APIC that delivers the vectors queued in `pending`, first in first out. */
function queueLapic(pending: number[]): LocalApic {
  return {
    hasInterrupt: () => pending.length > 0,
    acknowledge: () => pending.shift()!,
    readApicBaseMsr: () => 0xfee00900n,
    writeApicBaseMsr: () => {},
    mmioRead: () => 0,
    mmioWrite: () => {},
  } as unknown as LocalApic;
}

function step(cpu: SoftCpu, n = 1): RunExit {
  let r = RunExit.Budget;
  for (let i = 0; i < n; i++) r = cpu.run(1);
  return r;
}

/** Execute one instruction without delivery: returns the exception vector (error in cpu.faultError) or -1. */
function exec(cpu: SoftCpu, at: number, bytes: string): number {
  put(cpu, at, bytes);
  cpu.rip = at;
  try {
    cpu.step();
  } catch (e) {
    if (e !== CPU_FAULT) throw e;
    cpu.rip = cpu.ripStart;
    return cpu.faultVector;
  }
  return -1;
}

/** lgdt 0x7e00; lidt 0x7e10; ltr %ax (AX = 0x40): the kernel's own table setup. */
function loadTables(cpu: SoftCpu): void {
  put(cpu, KCODE, '0f 01 14 25 00 7e 00 00 0f 01 1c 25 10 7e 00 00 0f 00 d8');
  cpu.rip = KCODE;
  cpu.gpr[0] = 0x40;
  step(cpu, 3);
  assert.equal(cpu.lastException, -1);
  assert.equal(cpu.rip, KCODE + 19);
}

test('LGDT/LIDT/LTR in 64-bit mode; IRETQ to ring 3; INT 0x80 on RSP0 with a null SS; IRETQ back', () => {
  const cpu = machine(0);
  loadTables(cpu);
  assert.equal(cpu.gdtrBase, GDT);
  assert.equal(cpu.gdtrLimit, 0x4f);
  assert.equal(cpu.idtrBase, IDT);
  assert.equal(cpu.trBase, TSS);
  assert.equal(cpu.trAttr & 0xf, 0xb, 'TR holds a busy TSS');
  assert.equal(cpu.ram[GDT + 0x40 + 5], 0x8b, 'busy bit written to the GDT');
  // iretq with a frame: RIP, CS, RFLAGS, RSP, SS
  const frame = KSTACK - 40;
  [USER, 0x33, C.IF | C.FLAGS_FIXED, USER_STACK, 0x2b].forEach((v, i) => w64(cpu, frame + 8 * i, v));
  cpu.setReg64Num(4, frame);
  put(cpu, KCODE + 19, '48 cf');
  step(cpu);
  assert.equal(cpu.cpl, 3);
  assert.ok(cpu.mode64);
  assert.equal(cpu.rip, USER);
  assert.equal(cpu.segSel[C.SS], 0x2b);
  assert.equal(cpu.getReg64Num(4), USER_STACK);

  put(cpu, USER, 'cd 80 cc 8e 1c 25 00 00 00 40'); // int $0x80; int3; mov 0x40000000,%ds
  step(cpu);
  assert.equal(cpu.cpl, 0);
  assert.equal(cpu.rip, H_80);
  assert.equal(cpu.segSel[C.SS], 0, 'privilege change loads a null SS (RPL = new CPL)');
  assert.equal(cpu.getReg64Num(4), RSP0 - 40);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => r64(cpu, RSP0 - 40 + 8 * i)),
    [USER + 2, 0x33, C.IF | C.FLAGS_FIXED, USER_STACK, 0x2b]);
  assert.equal(cpu.getFlags() & C.IF, 0);
  step(cpu); // iretq
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.rip, USER + 2);
  assert.equal(cpu.segSel[C.SS], 0x2b);
  assert.equal(cpu.getReg64Num(4), USER_STACK);
  assert.ok(cpu.getFlags() & C.IF);

  // int3 through a DPL-3 gate with IST1: the IST pointer (…08) is aligned down to 16.
  step(cpu);
  assert.equal(cpu.rip, H_BP);
  assert.equal(cpu.getReg64Num(4), 0xa0000 - 40);
  assert.equal(r64(cpu, 0xa0000 - 40), USER + 3, '#BP is a trap: the frame points after INT3');
  step(cpu); // iretq
  assert.equal(cpu.rip, USER + 3);

  // #PF from ring 3: error code U (not present, read), CR2, frame on RSP0.
  step(cpu);
  assert.equal(cpu.lastException, C.EXC_PF);
  assert.equal(cpu.rip, H_PF);
  assert.equal(cpu.cr2, 0x40000000);
  assert.equal(cpu.getReg64Num(4), RSP0 - 48);
  assert.equal(r64(cpu, RSP0 - 48), C.PFEC_U);
  assert.equal(r64(cpu, RSP0 - 40), USER + 3);
  assert.equal(r64(cpu, RSP0 - 32), 0x33);
});

test('INT n: gate DPL below CPL is #GP(vector*8+2); INT 0x0d never pushes an error code', () => {
  const cpu = machine(3);
  loadTablesFromRing3(cpu);
  put(cpu, USER, 'cd 81');
  cpu.rip = USER;
  step(cpu);
  assert.equal(cpu.rip, H_GP);
  assert.equal(r64(cpu, RSP0 - 48), 0x81 * 8 + 2);
  assert.equal(r64(cpu, RSP0 - 40), USER);

  const k = machine(0);
  loadTables(k);
  put(k, KCODE + 19, 'cd 0d');
  step(k);
  assert.equal(k.rip, H_GP);
  assert.equal(k.getReg64Num(4), KSTACK - 48 + 8, 'five qwords: no error code for INT n');
  assert.equal(r64(k, KSTACK - 40), KCODE + 21);
  assert.equal(k.segSel[C.SS], 0x18, 'no privilege change: SS kept');
});

/** Ring-3 machines get their tables without running privileged instructions. */
function loadTablesFromRing3(cpu: SoftCpu): void {
  cpu.gdtrBase = GDT; cpu.gdtrLimit = 0x4f;
  cpu.idtrBase = IDT; cpu.idtrLimit = 0xfff;
  cpu.trSel = 0x40; cpu.trBase = TSS; cpu.trLimit = 0x67; cpu.trAttr = 0x8b;
}

test('SYSCALL/SYSRET round trip with SFMASK and SWAPGS; SYSRET to a non-canonical RCX is #GP at CPL 0', () => {
  const cpu = machine(3);
  loadTablesFromRing3(cpu);
  cpu.msrs.set(0xc0000081, (0x23n << 48n) | (0x10n << 32n)); // STAR
  cpu.msrs.set(0xc0000082, BigInt(H_SYSCALL)); // LSTAR
  cpu.msrs.set(0xc0000084, BigInt(C.IF | C.TF | C.DF)); // SFMASK
  cpu.segBase[C.GS] = 0x1234; cpu.kernelGsBase = 0x5678;
  cpu.setFlagsValue(C.IF | C.DF | C.CF);
  put(cpu, USER, '0f 05'); // syscall
  cpu.rip = USER;
  step(cpu);
  assert.equal(cpu.cpl, 0);
  assert.equal(cpu.rip, H_SYSCALL);
  assert.equal(cpu.segSel[C.CS], 0x10);
  assert.equal(cpu.segSel[C.SS], 0x18);
  assert.equal(cpu.getReg64Num(1), USER + 2, 'RCX = return RIP');
  assert.equal(cpu.gpr[22], C.IF | C.DF | C.CF | C.FLAGS_FIXED, 'R11 = RFLAGS');
  assert.equal(cpu.getFlags(), C.CF | C.FLAGS_FIXED, 'SFMASK bits cleared');
  step(cpu); // swapgs
  assert.equal(cpu.segBase[C.GS], 0x5678);
  step(cpu); // sysretq
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.rip, USER + 2);
  assert.equal(cpu.segSel[C.CS], 0x33);
  assert.equal(cpu.segSel[C.SS], 0x2b);
  assert.ok(cpu.mode64);
  assert.equal(cpu.getFlags(), C.IF | C.DF | C.CF | C.FLAGS_FIXED);

  // 32-bit SYSRET goes to compatibility mode with CS = STAR[63:48].
  put(cpu, USER + 2, '0f 05');
  put(cpu, H_SYSCALL, '0f 07'); // sysretl
  step(cpu, 2);
  assert.equal(cpu.segSel[C.CS], 0x23);
  assert.equal(cpu.mode64, false);
  assert.equal(cpu.defOpsize, 4);

  const k = machine(0);
  loadTables(k);
  k.setReg64Num(1, 2 ** 47); // non-canonical
  put(k, KCODE + 19, '48 0f 07');
  step(k);
  assert.equal(k.rip, H_GP);
  assert.equal(k.cpl, 0);
  // SYSCALL with EFER.SCE clear is #UD
  const u = machine(3);
  u.efer &= ~C.EFER_SCE;
  assert.equal(exec(u, USER, '0f 05'), C.EXC_UD);
  // SWAPGS at CPL 3 is #GP(0)
  assert.equal(exec(u, USER, '0f 01 f8'), C.EXC_GP);
});

test('SYSCALL/SYSRET follow STAR, LSTAR and SFMASK as they change (the decoded values are cached per vCPU)', () => {
  const cpu = machine(3);
  loadTablesFromRing3(cpu);
  cpu.msrs.set(0xc0000081, (0x23n << 48n) | (0x10n << 32n)); // STAR
  cpu.msrs.set(0xc0000082, BigInt(H_SYSCALL)); // LSTAR
  cpu.msrs.set(0xc0000084, BigInt(C.IF)); // SFMASK
  cpu.setFlagsValue(C.IF | C.DF);
  put(cpu, USER, '0f 05 0f 05 0f 05'); // syscall x3
  put(cpu, H_SYSCALL, '48 0f 07'); // sysretq
  put(cpu, H_SYSCALL + 0x100, '48 0f 07'); // sysretq
  cpu.rip = USER;
  step(cpu);
  assert.equal(cpu.rip, H_SYSCALL);
  assert.equal(cpu.getFlags(), C.DF | C.FLAGS_FIXED);
  step(cpu);
  assert.equal(cpu.segSel[C.CS], 0x33);
  // WRMSR (or a restore) writes cpu.msrs: the next SYSCALL and SYSRET use the new values
  cpu.msrs.set(0xc0000082, BigInt(H_SYSCALL + 0x100));
  cpu.msrs.set(0xc0000084, BigInt(C.DF));
  cpu.msrs.set(0xc0000081, (0x43n << 48n) | (0x10n << 32n));
  step(cpu);
  assert.equal(cpu.rip, H_SYSCALL + 0x100);
  assert.equal(cpu.getFlags(), C.IF | C.FLAGS_FIXED);
  step(cpu);
  assert.equal(cpu.segSel[C.CS], 0x53, 'SYSRET CS from the new STAR');
  assert.equal(cpu.rip, USER + 4);
  // an MSR back at its reset value (no entry in cpu.msrs): SFMASK 0 masks nothing (SYSRET restored IF and DF)
  cpu.msrs.delete(0xc0000084);
  step(cpu);
  assert.equal(cpu.getFlags(), C.IF | C.DF | C.FLAGS_FIXED);
});

test('SYSRET that sets IF asks for an event check only when the local APIC has an interrupt (or one was asked)', () => {
  // (ops/interrupt-flag.ts settleRestoredIf: the check would find nothing; the translated chain goes on past SYSRET)
  const pending: number[] = [];
  const lapic = queueLapic(pending);
  const cpu = machine(0, lapic);
  cpu.msrs.set(0xc0000081, (0x23n << 48n) | (0x10n << 32n)); // STAR
  put(cpu, KCODE, '48 0f 07 48 0f 07 48 0f 07'); // sysretq x3
  const sysret = (at: number, r11: number) => {
    cpu.loadSegmentRaw(C.CS, 0x10, 0, 0xffffffff, C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | C.SEG_TYPE_READABLE | C.SEG_L | C.SEG_G);
    cpu.setFlagsValue(C.FLAGS_FIXED);
    cpu.eventPending = false;
    cpu.setReg64Num(1, USER);
    cpu.setReg64Num(11, r11);
    cpu.rip = at;
    step(cpu);
    assert.equal(cpu.rip, USER);
    assert.equal(cpu.cpl, 3);
  };
  sysret(KCODE, C.IF | C.FLAGS_FIXED);
  assert.ok(cpu.getFlags() & C.IF);
  assert.equal(cpu.eventPending, false, 'IF set, nothing to deliver: no check');
  pending.push(0x81);
  sysret(KCODE + 3, C.IF | C.FLAGS_FIXED);
  assert.equal(cpu.eventPending, true, 'IF set with an interrupt waiting: checked at the next boundary');
  pending.length = 0;
  sysret(KCODE + 6, C.FLAGS_FIXED);
  assert.equal(cpu.eventPending, false, 'IF clear');
});

test('segment loads in 64-bit mode: null rules for SS, privilege and presence checks, accessed bit', () => {
  const u = machine(3);
  loadTablesFromRing3(u);
  u.gpr[0] = 0;
  assert.equal(exec(u, USER, '8e d0'), C.EXC_GP, 'mov %ax,%ss with null at CPL 3'); // mov %eax,%ss
  assert.equal(u.faultError, 0);
  assert.equal(exec(u, USER, '8e d8'), -1, 'null DS is fine'); // mov %eax,%ds
  assert.equal(u.segSel[C.DS], 0);
  assert.ok(u.segAttr[C.DS] & C.SEG_UNUSABLE);
  u.gpr[0] = 0x18;
  assert.equal(exec(u, USER, '8e d8'), C.EXC_GP, 'DPL 0 data at CPL 3');
  assert.equal(u.faultError, 0x18);
  u.gpr[0] = 0x2b;
  assert.equal(exec(u, USER, '8e c0'), -1); // mov %eax,%es
  assert.equal(u.segSel[C.ES], 0x2b);
  u.gpr[0] = 0x50;
  assert.equal(exec(u, USER, '8e c0'), C.EXC_GP, 'beyond the GDT limit');
  assert.equal(u.faultError, 0x50);

  const k = machine(0);
  loadTablesFromRing3(k);
  k.gpr[0] = 0;
  assert.equal(exec(k, KCODE, '8e d0'), -1, 'null SS at CPL 0 in 64-bit mode');
  assert.equal(k.segSel[C.SS], 0);
  assert.ok(k.interruptShadow, 'MOV SS opens an interrupt shadow');
  k.gpr[0] = 0x38;
  assert.equal(exec(k, KCODE, '8e d8'), C.EXC_NP);
  assert.equal(k.faultError, 0x38);
  k.gpr[0] = 0x18;
  k.ram[GDT + 0x18 + 5] = 0x92;
  assert.equal(exec(k, KCODE, '8e d8'), -1);
  assert.equal(k.ram[GDT + 0x18 + 5], 0x93, 'accessed bit set');
  // mov %fs,%eax zero-extends; push %fs / pop %gs move a selector through the stack (8 bytes in 64-bit mode).
  k.gpr[0] = 0x18;
  exec(k, KCODE, '8e e0'); // mov %eax,%fs
  k.setReg64Num(0, -1);
  assert.equal(exec(k, KCODE, '8c e0'), -1);
  assert.equal(k.getReg64Num(0), 0x18);
  const rsp = k.getReg64Num(4);
  assert.equal(exec(k, KCODE, '0f a0'), -1);
  assert.equal(k.getReg64Num(4), rsp - 8);
  assert.equal(exec(k, KCODE, '0f a9'), -1);
  assert.equal(k.segSel[C.GS], 0x18);
  assert.equal(k.getReg64Num(4), rsp);
  // push %es and les are #UD in 64-bit mode
  assert.equal(exec(k, KCODE, '06'), C.EXC_UD);
  assert.equal(exec(k, KCODE, 'c4 05 00 7e 00 00'), C.EXC_UD);
});

test('far transfers: 64-bit -> compatibility mode by ljmp m16:32, back by ljmp ptr16:32, lcall/lretq', () => {
  const k = machine(0);
  loadTablesFromRing3(k);
  w32(k, DATA + 0x20, 0x7100); w16(k, DATA + 0x24, 0x08);
  assert.equal(exec(k, KCODE, 'ff 2c 25 20 7e 00 00'), -1); // ljmp *0x7e20
  assert.equal(k.mode64, false);
  assert.equal(k.defOpsize, 4);
  assert.equal(k.segSel[C.CS], 0x08);
  assert.equal(k.rip, 0x7100);
  assert.equal(exec(k, 0x7100, 'ea 00 72 00 00 10 00'), -1); // ljmp $0x10,$0x7200
  assert.ok(k.mode64);
  assert.equal(k.rip, 0x7200);
  // lcall *0x7e20 pushes CS and the return EIP as 4-byte values (32-bit operand size), then lret returns.
  const rsp = k.getReg64Num(4);
  w32(k, DATA + 0x20, 0x7300); w16(k, DATA + 0x24, 0x10);
  assert.equal(exec(k, KCODE, 'ff 1c 25 20 7e 00 00'), -1);
  assert.equal(k.rip, 0x7300);
  assert.equal(k.getReg64Num(4), rsp - 8);
  assert.equal(k.ramView.getUint32(rsp - 8, true), KCODE + 7);
  assert.equal(k.ramView.getUint32(rsp - 4, true), 0x10);
  assert.equal(exec(k, 0x7300, 'cb'), -1); // lret
  assert.equal(k.rip, KCODE + 7);
  assert.equal(k.getReg64Num(4), rsp);
  // lretq, as Linux's startup code uses it to reload CS
  w64(k, rsp - 16, 0x7400); w64(k, rsp - 8, 0x10);
  k.setReg64Num(4, rsp - 16);
  assert.equal(exec(k, KCODE, '48 cb'), -1);
  assert.equal(k.rip, 0x7400);
  assert.equal(k.getReg64Num(4), rsp);
  // a far jump to ring-3 code from ring 0 is #GP(selector); EA is #UD in 64-bit mode
  w32(k, DATA + 0x20, 0x7100); w16(k, DATA + 0x24, 0x33);
  assert.equal(exec(k, KCODE, 'ff 2c 25 20 7e 00 00'), C.EXC_GP);
  assert.equal(k.faultError, 0x30);
  assert.equal(exec(k, KCODE, 'ea 00 72 00 00 10 00'), C.EXC_UD);
});

test('descriptor-table instructions: sgdt/sidt, str/sldt, lar/lsl/verr/verw, smsw, lldt, rdtscp, invlpg privilege', () => {
  const k = machine(0);
  loadTables(k);
  assert.equal(exec(k, KCODE, '0f 01 04 25 20 7e 00 00'), -1); // sgdt 0x7e20
  assert.equal(k.ramView.getUint16(DATA + 0x20, true), 0x4f);
  assert.equal(r64(k, DATA + 0x22), GDT);
  assert.equal(exec(k, KCODE, '0f 01 0c 25 30 7e 00 00'), -1); // sidt 0x7e30
  assert.equal(r64(k, DATA + 0x32), IDT);
  k.setReg64Num(0, -1);
  assert.equal(exec(k, KCODE, '0f 00 c8'), -1); // str %eax
  assert.equal(k.getReg64Num(0), 0x40);
  k.gpr[0] = 0x2b;
  assert.equal(exec(k, KCODE, '0f 02 c8'), -1); // lar %eax,%ecx
  assert.ok(k.getZF());
  assert.equal(k.gpr[2] & ~0xf0000, 0x00c0f300, 'access rights (bits 19:16 are undefined)');
  assert.equal(exec(k, KCODE, '0f 03 c8'), -1); // lsl %eax,%ecx
  assert.ok(k.getZF());
  assert.equal(k.gpr[2] >>> 0, 0xffffffff);
  k.gpr[0] = 0x58; // beyond the limit: ZF = 0, ECX unchanged
  exec(k, KCODE, '0f 03 c8');
  assert.equal(k.getZF(), false);
  k.gpr[0] = 0x10;
  exec(k, KCODE, '0f 00 e0'); // verr %ax: readable code
  assert.ok(k.getZF());
  exec(k, KCODE, '0f 00 e8'); // verw %ax: code is never writable
  assert.equal(k.getZF(), false);
  assert.equal(exec(k, KCODE, '48 0f 01 e0'), -1); // smsw %rax
  assert.equal(k.getReg64Num(0), k.cr0 >>> 0);
  k.gpr[0] = 0;
  assert.equal(exec(k, KCODE, '0f 00 d0'), -1); // lldt %ax (null)
  k.msrs.set(0xc0000103, 7n);
  assert.equal(exec(k, KCODE, '0f 01 f9'), -1); // rdtscp
  assert.equal(k.gpr[2], 7);
  // serialize (0F 01 E8) is offered and does nothing else, at any CPL; F3 0F 01 E8 (XRESLDTRK) is not
  const rsp = k.getReg64Num(4), flags = k.getFlags();
  assert.equal(exec(k, KCODE, '0f 01 e8'), -1);
  assert.equal(k.rip, KCODE + 3);
  assert.equal(k.getReg64Num(4), rsp);
  assert.equal(k.getFlags(), flags);
  assert.equal(exec(k, KCODE, 'f3 0f 01 e8'), C.EXC_UD);
  // monitor, xgetbv and clac are not offered: #UD
  assert.equal(exec(k, KCODE, '0f 01 c8'), C.EXC_UD);
  assert.equal(exec(k, KCODE, '0f 01 d0'), C.EXC_UD);
  assert.equal(exec(k, KCODE, '0f 01 ca'), C.EXC_UD);
  const u = machine(3);
  loadTablesFromRing3(u);
  assert.equal(exec(u, USER, '0f 01 14 25 00 7e 00 00'), C.EXC_GP, 'lgdt at CPL 3');
  assert.equal(exec(u, USER, '0f 01 3c 25 00 7e 00 00'), C.EXC_GP, 'invlpg at CPL 3');
  assert.equal(exec(u, USER, '0f 01 04 25 00 7e 00 00'), -1, 'sgdt at CPL 3 without UMIP');
  assert.equal(exec(u, USER, '0f 01 e8'), -1, 'serialize at CPL 3');
});

test('#DF through an IST stack when the #GP gate is not present; triple fault when #DF cannot be delivered', () => {
  const k = machine(0);
  loadTables(k);
  k.ram[IDT + 13 * 16 + 5] &= 0x7f; // #GP gate not present
  k.ram[IDT + 11 * 16 + 5] &= 0x7f; // nor #NP
  k.gpr[0] = 0x50;
  put(k, KCODE + 19, '8e d8'); // mov %eax,%ds -> #GP(0x50) -> #NP on its gate -> #DF
  step(k);
  assert.equal(k.rip, H_DF);
  assert.equal(k.getReg64Num(4), 0xa0000 - 48, '#DF on IST1');
  assert.equal(r64(k, 0xa0000 - 48), 0);
  assert.equal(r64(k, 0xa0000 - 40), KCODE + 19);
  assert.equal(k.segSel[C.DS], 0x18, 'DS untouched');

  const t = machine(0);
  loadTables(t);
  t.idtrLimit = 0x7f; // vectors 8 and 13 both beyond the limit
  t.gpr[0] = 0x50;
  put(t, KCODE + 19, '8e d8');
  assert.equal(step(t), RunExit.Shutdown);
  assert.ok(t.shutdown);
});

test('external interrupts: taken at a boundary with IF=1, wake HLT, skip the gate DPL check, set EXT in error codes', () => {
  const pending: number[] = [];
  const lapic = queueLapic(pending);
  const cpu = machine(3, lapic);
  loadTablesFromRing3(cpu);
  put(cpu, USER, 'cd 80');
  cpu.rip = USER;
  cpu.setFlagsValue(C.FLAGS_FIXED); // IF = 0: the interrupt waits
  pending.push(0x81);
  cpu.notifyEvent();
  step(cpu);
  assert.equal(cpu.rip, H_80, 'int $0x80 ran; the masked interrupt did not');
  step(cpu); // iretq
  cpu.setFlagsValue(C.IF | C.FLAGS_FIXED);
  cpu.halted = true;
  // run(1) takes the interrupt at the boundary, then executes one instruction: the handler's iretq.
  assert.equal(cpu.run(1), RunExit.Budget);
  assert.equal(cpu.halted, false);
  assert.equal(pending.length, 0);
  assert.equal(r64(cpu, RSP0 - 40), USER + 2, 'vector 0x81 (DPL-0 gate) delivered; frame points at the next instruction');
  assert.equal(r64(cpu, RSP0 - 32), 0x33);
  assert.equal(cpu.rip, USER + 2);
  assert.equal(cpu.cpl, 3);
  assert.ok(cpu.getFlags() & C.IF);
  pending.push(0x90); // an empty IDT entry
  cpu.notifyEvent();
  put(cpu, H_GP, 'f4'); // hlt
  step(cpu);
  assert.equal(cpu.rip, H_GP + 1);
  assert.equal(r64(cpu, RSP0 - 48), 0x90 * 8 + 2 + 1, 'IDT error code with EXT');
  assert.equal(r64(cpu, RSP0 - 40), USER + 2);
});

test('IRET with NT set is #GP(0) in IA-32e mode; IRETQ to a non-canonical RIP is #GP(0) and changes nothing', () => {
  const k = machine(0);
  loadTablesFromRing3(k);
  k.setFlagsValue(C.NT | C.FLAGS_FIXED);
  assert.equal(exec(k, KCODE, '48 cf'), C.EXC_GP);
  k.setFlagsValue(C.FLAGS_FIXED);
  const frame = KSTACK - 40;
  [2 ** 47, 0x33, C.FLAGS_FIXED, USER_STACK, 0x2b].forEach((v, i) => w64(k, frame + 8 * i, v));
  k.setReg64Num(4, frame);
  assert.equal(exec(k, KCODE, '48 cf'), C.EXC_GP);
  assert.equal(k.faultError, 0);
  assert.equal(k.cpl, 0);
  assert.equal(k.getReg64Num(4), frame);
  assert.equal(k.segSel[C.CS], 0x10);
});
