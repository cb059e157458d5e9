// The kernel paths' system instructions in translated code (issues 4/5, session 16): each form here is compared
// with the interpreter on a small guest program run to its end or to a fault (no Linux boot), and its block must run
// without replays (a form that is missing or emitted wrong fails one or the other).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, cpuState, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import * as C from '../src/cpu/soft/constants.ts';
import { Form } from '../src/cpu/soft/fast-forms.ts';
import { Lapic } from '../src/devices/irq/lapic.ts';
import { ApicBus } from '../src/devices/irq/apic-bus.ts';
import { S_PEND } from '../src/cpu/soft/wasm/layout.ts';

setHotThreshold(0);
setJitThreshold(0);

type Mode = 'interpreter' | 'wasm';
const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

// ---- SYSCALL / SYSRETQ (Form.Syscall, Form.Sysret: the helper `sy`, translate.ts)
//
//   CODE:        sysretq                        (CPL 0 -> USER, RFLAGS from R11)
//   K = +0x1000: pushfq / pop r14 / add r15,r14  (RFLAGS after SYSCALL's SFMASK)
//                mov r13,r11 / and r13d,0x8d5 / add rbx,r13   (the user's arithmetic flags SYSCALL saved in R11)
//                cmp r12,r8 / je trap / test r12,r12 / jz done / add rcx,r10 / sysretq
//   done:        hlt
//   trap:        mov r8,-1 / test r9,r9 / jnz badrcx
//                mov rdi,rcx / mov ecx,0xc0000080 / rdmsr / and eax,-2 / wrmsr / mov rcx,rdi / jmp K   (EFER.SCE off)
//   badrcx:      movabs r10,0x8000000000000000 / jmp K   (SYSRETQ's RCX becomes non-canonical)
//   USER = +0x2000: add eax,0x7fffff00 / dec r12 / syscall / jmp USER
// The trap paths go back through K's translated block, whose SYSRETQ then faults (#UD, #GP(0)).
const K_CODE = hexBytes(`9c 41 5e 4d 01 f7 4d 89 dd 41 81 e5 d5 08 00 00 4c 01 eb 4d 39 c4 74 0c 4d 85 e4 74 06 4c 01 d1 48 0f 07
  f4 49 c7 c0 ff ff ff ff 4d 85 c9 75 14 48 89 cf b9 80 00 00 c0 0f 32 83 e0 fe 0f 30 48 89 f9 eb bc 49 ba 00 00 00 00 00 00 00 80 eb b0`);
const USER_CODE = hexBytes('05 00 ff ff 7f 49 ff cc 0f 05 eb f4');
const K = CODE + 0x1000, USER = CODE + 0x2000, SYSRET_AT = K + 0x20;

/** Run the system-call loop (`passes` passes; at pass `trapAt` the kernel side breaks SYSRETQ: `badRcx` or EFER.SCE). */
function syscallLoop(mode: Mode, passes: number, trapAt = -1, badRcx = false, sfmask = 0x47700n) {
  const m = interpreterOrWasmMachine(mode, memories), cpu = m.cpu;
  cpu.msrs.set(0xc0000081, (0x23n << 48n) | (0x10n << 32n)); // STAR: SYSCALL CS 0x10, SYSRET CS 0x33 / SS 0x2b
  cpu.msrs.set(0xc0000082, BigInt(K)); // LSTAR
  cpu.msrs.set(0xc0000084, sfmask); // SFMASK (default as Linux sets it: TF DF IF IOPL NT AC)
  m.mem.write(CODE, Uint8Array.from(hexBytes('48 0f 07')));
  m.mem.write(K, Uint8Array.from(K_CODE));
  m.mem.write(USER, Uint8Array.from(USER_CODE));
  cpu.setGpr(1, BigInt(USER));
  cpu.setGpr(11, BigInt(C.IF | C.DF | C.FLAGS_FIXED)); // the user's RFLAGS: DF set, which SFMASK clears in the kernel
  cpu.setGpr(12, BigInt(passes));
  cpu.setGpr(8, BigInt(trapAt));
  cpu.setGpr(9, badRcx ? 1n : 0n);
  // (the local APIC known to have nothing to give, as after an STI that found nothing (Linux runs one per system call,
  // this kernel path none): SYSRETQ, whose R11 sets IF, then runs inline (translate.ts emitSyscall))
  if (mode === 'wasm') cpu.wasm!.i32[(cpu.wasmState + S_PEND) >> 2] = 0;
  const vector = runBlocksToHalt(m, 100_000);
  return { m, vector, s: { ...cpuState(m), cpl: cpu.cpl, cs: cpu.segSel[C.CS], ss: cpu.segSel[C.SS], efl: (cpu.getFlags() >>> 0).toString(16) } };
}

function agree(passes: number, trapAt = -1, badRcx = false, sfmask = 0x47700n): Machine {
  const [i, w] = (['interpreter', 'wasm'] as Mode[]).map((mode) => syscallLoop(mode, passes, trapAt, badRcx, sfmask));
  assert.equal(w.vector, i.vector, 'same fault (or none)');
  assert.deepEqual(w.s, i.s, 'translated code = interpreter');
  return w.m;
}

test('SYSCALL and SYSRETQ run in translated code without replays, exactly (RCX, R11, RFLAGS, CS/SS, CPL)', () => {
  const m = agree(2000);
  const c = m.cpu;
  assert.equal(c.cpl, 0);
  assert.equal(c.getGpr(12), 0n);
  // (r15 sums the kernel's RFLAGS (SFMASK applied) and rbx the user's arithmetic flags, pass by pass: compared above)
  assert.ok(c.jitInstructions > 20_000, `instructions run in wasm: ${c.jitInstructions}`);
  // (the translated blocks: USER's ends with the SYSCALL, K's (going on past its untaken JE/JZ) with the SYSRETQ)
  const t = c.codeCache.translated, user = t.get(USER * 16 + 8), k = t.get(K * 16 + 8);
  assert.ok(user?.wasm && k?.wasm, 'both blocks translated');
  assert.equal(user.entries.at(-1)!.form, Form.Syscall);
  assert.equal(k.entries.at(-1)!.form, Form.Sysret);
  // (a replay per SYSCALL and per SYSRETQ without the forms: ~4000)
  assert.ok(c.wasm!.stats.replays < 10, `replays: ${c.wasm!.stats.replays}`);
  // SYSCALL, SYSRETQ and PUSHFQ run inline (translate.ts emitSyscall, emitPushf): no helper calls (three a pass with
  // SYSCALL and SYSRETQ through the helper `sy` and PUSHFQ through `fl`)
  assert.ok(c.wasm!.stats.conds < 20, `helper calls: ${c.wasm!.stats.conds}`);
  // the chain goes on across both privilege changes: about one call per CHAIN_LIMIT instructions
  assert.ok(c.wasm!.stats.calls < 100, `calls into wasm: ${c.wasm!.stats.calls}`);
});

test('SYSCALL with an SFMASK that leaves IF set (the helper: an event check) and one that keeps DF, exactly', () => {
  agree(500, -1, false, 0x500n); // TF DF: IF stays set in the kernel
  const m = agree(500, -1, false, 0x200n); // IF only: DF stays set in the kernel
  assert.equal(m.cpu.getGpr(12), 0n);
});

test('a translated SYSRETQ setting IF with an interrupt waiting takes the helper, which ends the call after it, as the interpreter', () => {
  const out = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const { m } = syscallLoop(mode, 2000);
    const cpu = m.cpu;
    const bus = new ApicBus();
    const lapic = new Lapic({ clock: m.clock, bus, apicId: 0, hooks: { wake: () => cpu.notifyEvent(), init: () => {}, startup: () => {} } });
    (cpu.env as { lapic?: unknown }).lapic = lapic;
    lapic.mmioWrite(0xf0, 4, 0x1ff); // SVR: enabled
    lapic.mmioWrite(0x350, 4, 0x10000); // LINT0 masked
    const conds = cpu.wasm?.stats.conds ?? 0;
    // the loop ended at CPL 0 with IF clear (SFMASK); an MSI makes the local APIC wake the CPU
    bus.deliverMsi(0xfee00000, 0x40);
    assert.equal(cpu.eventPending, true);
    cpu.eventPending = false; // (as a run loop that found IF clear would leave it; S_PEND stays set)
    // K again, 5 passes to go: its translated block ends with the SYSRETQ, whose R11 sets IF
    cpu.setGpr(12, 5n);
    cpu.rip = K;
    cpu.halted = false;
    if (mode === 'wasm') cpu.execBlock(1_000_000);
    else for (let k = 0; k < 12; k++) cpu.step();
    return { rip: cpu.rip, cpl: cpu.cpl, pending: cpu.eventPending, IF: (cpu.getFlags() & C.IF) !== 0, r12: cpu.getGpr(12), conds };
  });
  const [i, w] = out;
  assert.equal(i.rip, USER + 10, 'the interpreter is after the SYSRETQ');
  assert.deepEqual({ ...w, conds: 0 }, { ...i, conds: 0 }, 'the call ended right after the SYSRETQ, the event check pending');
  assert.equal(w.pending, true);
  assert.equal(w.IF, true);
  assert.equal(w.cpl, 3);
  assert.ok(w.conds < 20, `helper calls while nothing was pending: ${w.conds}`);
});

test('a translated SYSRETQ with a non-canonical RCX raises #GP(0) at CPL 0 before changing anything', () => {
  const m = agree(300, 100, true);
  assert.equal(m.cpu.faultVector, C.EXC_GP);
  assert.equal(m.cpu.rip, SYSRET_AT);
  assert.ok(m.cpu.codeCache.translated.get(K * 16 + 8)?.wasm, 'the faulting block is translated');
  assert.equal(m.cpu.cpl, 0);
});

test('a translated SYSRETQ with EFER.SCE clear raises #UD, exactly', () => {
  const m = agree(300, 100);
  assert.equal(m.cpu.faultVector, C.EXC_UD);
  assert.equal(m.cpu.rip, SYSRET_AT);
  assert.ok(m.cpu.codeCache.translated.get(K * 16 + 8)?.wasm, 'the faulting block is translated');
});

// ---- ROL/ROR by CL (Form.ShiftCl with e.op 0/1: translate.ts emitRotateCl)
//
//   xor ebx,ebx / xor ecx,ecx
//   loop: movabs rax,0x8123456789abcdef / rol rax,cl / pushfq / pop rdx / add rbx,rdx / add rbx,rax   (flags before: unknown)
//         mov esi,0x80000001 / add edi,0x7fffffff / ror esi,cl / pushfq / pop rdx / add rbx,rdx / add rbx,rsi  (known)
//         mov r8,-0x7fffffff / rol r8d,cl / pushfq / pop rdx / add rbx,rdx / add rbx,r8      (a count of 0 mod 32 still clears the upper half)
//         movabs r9,0x0123456789abcdef / ror r9,cl / pushfq / adc rbx,r9 / pop rdx / add rbx,rdx   (CF, all flags)
//         ror r10d,cl / pushfq / pop rdx / xor rbx,rdx / rol r11,cl / pushfq / pop rdx / add rbx,rdx
//         inc ecx / cmp ecx,200 / jne loop
//   hlt
// Counts 0..199 (masked to 0..31 / 0..63, so 0 and the widths' edges come round several times).
const ROTATE_CL = hexBytes(`31 db 31 c9 48 b8 ef cd ab 89 67 45 23 81 48 d3 c0 9c 5a 48 01 d3 48 01 c3 be 01 00 00 80 81 c7 ff ff ff
  7f d3 ce 9c 5a 48 01 d3 48 01 f3 49 c7 c0 01 00 00 80 41 d3 c0 9c 5a 48 01 d3 4c 01 c3 49 b9 ef cd ab 89 67 45 23 01 49 d3 c9 9c
  4c 11 cb 5a 48 01 d3 41 d3 ca 9c 5a 48 31 d3 49 d3 c3 9c 5a 48 01 d3 ff c1 81 f9 c8 00 00 00 75 95 f4`);

test('ROL/ROR of 32- and 64-bit registers by CL run in translated code without replays, exactly (counts 0..199, CF/OF)', () => {
  const [i, w] = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories), cpu = m.cpu;
    m.mem.write(CODE, Uint8Array.from(ROTATE_CL));
    cpu.setGpr(7, 0x12345n);
    cpu.setGpr(10, 0xfedcba9876543210n);
    cpu.setGpr(11, 0x8000000000000001n);
    assert.equal(runBlocksToHalt(m, 100_000), -1);
    return { m, s: { ...cpuState(m), efl: (cpu.getFlags() >>> 0).toString(16) } };
  });
  assert.deepEqual(w.s, i.s, 'translated code = interpreter');
  const c = w.m.cpu;
  assert.ok(c.jitInstructions > 4000, `instructions run in wasm: ${c.jitInstructions}`);
  // (a replay per rotate without the emission: 5 per pass)
  assert.ok(c.wasm!.stats.replays < 10, `replays: ${c.wasm!.stats.replays}`);
});

// ---- a lone MOV Sreg,r/m block (8E ends its block; translate.ts blockOffsets): replayed inside wasm, the chain goes on
//
//   xor ecx,ecx
//   loop: mov eax,ecx / and eax,0 / jmp L1
//   L1:   mov fs,eax                (a block of its own: the null selector, as __switch_to loads it)
//         add ebx,ecx / inc ecx / cmp ecx,3000 / jne loop
//   hlt
const MOV_SREG = hexBytes('31 c9 89 c8 83 e0 00 eb 00 8e e0 01 cb ff c1 81 f9 b8 0b 00 00 75 eb f4');

test('a block of a lone MOV Sreg,r is translated: the dispatcher goes on past it, exactly', () => {
  const [i, w] = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories), cpu = m.cpu;
    m.mem.write(CODE, Uint8Array.from(MOV_SREG));
    cpu.segSel[C.FS] = 0x18;
    assert.equal(runBlocksToHalt(m, 100_000), -1);
    return { m, s: { ...cpuState(m), fs: cpu.segSel[C.FS], fsBase: cpu.segBase[C.FS] } };
  });
  assert.deepEqual(w.s, i.s, 'translated code = interpreter');
  const c = w.m.cpu;
  assert.equal(c.segSel[C.FS], 0);
  assert.ok(c.codeCache.translated.get((CODE + 9) * 16 + 8)?.wasm, 'the MOV FS block is translated');
  // (a return to JavaScript at every pass when it is not: 3000)
  assert.ok(c.wasm!.stats.calls < 100, `calls into wasm: ${c.wasm!.stats.calls}`);
});

// ---- lone MOV CR3 / FXRSTOR64 / IRETQ blocks (each ends its block; translate.ts blockOffsets LONE_SYS): replayed
// inside wasm, the chain goes on, as Linux's context switch reaches load_new_mm_cr3's `mov cr3,rdi`, restore_fpregs_
// from_fpstate's `fxrstor64` and native_irq_return_iret's `iretq` by a jump. The code and stack pages are global
// (CR4.PGE, PDE.G), as Linux's kernel text is: the CR3 load keeps them (SDM vol. 3A §4.10.4.1), so the dispatcher's
// fetch-TLB lookup after it still hits.
//
//   mov rax,cr3 / xor ecx,ecx
//   loop: add ebx,ecx / jmp L1
//   L1:   mov cr3,rax                                  (a block of its own)
//         inc ecx / jmp L2
//   L2:   fxrstor64 [rsi]                              (a block of its own: XMM0 from the image, which the loop's
//                                                      pass count then changes: pinsrd-free, through the image)
//         mov rdx,rsp / push 0x18 / push rdx / pushfq / push 0x10 / lea rdi,[rip+5] / push rdi / jmp L3
//   L3:   iretq                                        (a block of its own, to CPL 0: pops RIP, CS, RFLAGS, RSP, SS)
//         mov [rsi+160],ecx / cmp ecx,3000 / jne loop
//   hlt
const LONE_SYS = hexBytes(`0f 20 d8 31 c9 01 cb eb 00 0f 22 d8 ff c1 eb 00 48 0f ae 0e 48 89 e2 6a 18 52 9c 6a 10 48 8d 3d 05 00 00 00
  57 eb 00 48 cf 89 8e a0 00 00 00 81 f9 b8 0b 00 00 75 ce f4`);

test('lone MOV CR3, FXRSTOR64 and IRETQ blocks are translated: the dispatcher goes on past them, exactly, global pages kept', () => {
  const FX = 0x200000, GDT = 0x1000;
  const [i, w] = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories), cpu = m.cpu;
    m.mem.write(CODE, Uint8Array.from(LONE_SYS));
    // the 2 MiB pages of the code, the image and the stack global (PD at PAGE_TABLES + 8 KiB: setup.ts)
    for (let k = 0; k < 2; k++) { const pde = 0x10000 + 8192 + k * 8; cpu.ramView.setUint32(pde, cpu.ramView.getUint32(pde, true) | C.PTE_G, true); }
    cpu.cr4 |= C.CR4_PGE;
    cpu.flushTlb(true);
    // GDT: 0x10 64-bit code, 0x18 data (IRETQ loads CS and SS from it)
    cpu.ramView.setUint32(GDT + 0x10, 0xffff, true); cpu.ramView.setUint32(GDT + 0x14, 0x00af9b00, true);
    cpu.ramView.setUint32(GDT + 0x18, 0xffff, true); cpu.ramView.setUint32(GDT + 0x1c, 0x00cf9300, true);
    cpu.gdtrBase = GDT; cpu.gdtrLimit = 0x1f;
    // the FXSAVE image: FCW 0x37f, MXCSR 0x1f80, XMM0 (offset 160) = 0x11223344 in its low dword
    cpu.ramView.setUint16(FX, 0x37f, true); cpu.ramView.setUint32(FX + 24, 0x1f80, true); cpu.ramView.setUint32(FX + 160, 0x11223344, true);
    cpu.setGpr(6, BigInt(FX));
    assert.equal(runBlocksToHalt(m, 100_000), -1);
    return { m, s: { ...cpuState(m), cr3: cpu.cr3, xmm0: Array.from(cpu.xmm.subarray(0, 16)), cs: cpu.segSel[C.CS], ss: cpu.segSel[C.SS] } };
  });
  assert.deepEqual(w.s, i.s, 'translated code = interpreter');
  const c = w.m.cpu;
  assert.equal(c.getGpr(1), 3000n);
  assert.deepEqual(w.s.xmm0.slice(0, 4), [0xb7, 0x0b, 0, 0], 'XMM0 from the last pass\'s image (2999)');
  for (const at of [9, 0x10, 0x27]) assert.ok(c.codeCache.translated.get((CODE + at) * 16 + 8)?.wasm, `the lone block at +${at.toString(16)} is translated`);
  // (three returns to JavaScript per pass when they are not, or when the CR3 load drops the global code page: 9000)
  assert.ok(c.wasm!.stats.calls < 100, `calls into wasm: ${c.wasm!.stats.calls}`);
});

// ---- SWAPGS, CLI and STI at CPL 0 (session 17: inline in translated code, translate.ts emitSwapgs/emitCli)
//
//   loop: swapgs / add rbx,gs:[8] / cli / pushfq / pop rdx / add rbx,rdx / sti / pushfq / pop rdx / add rbx,rdx
//         swapgs / add rbx,gs:[8] / cli / sti / dec r12 / jnz loop
//   hlt
// GS base and IA32_KERNEL_GS_BASE point at two different quadwords, so each swap shows in RBX; PUSHFQ shows IF after
// the inline CLI and STI (the runtime copies S_EFL's IF to SoftCpu.flags before the helper that PUSHFQ calls).
const GS_CODE = hexBytes(`0f 01 f8 65 48 03 1c 25 08 00 00 00 fa 9c 5a 48 01 d3 fb 9c 5a 48 01 d3 0f 01 f8 65 48 03 1c 25 08 00 00 00
  fa fb 49 ff cc 75 d5 f4`);
const GS_USER = CODE + 0x3000, GS_KERNEL = CODE + 0x3100;

test('SWAPGS, CLI and STI run inline in translated code at CPL 0, exactly (GS bases, IF, no helper calls)', () => {
  const [i, w] = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories), cpu = m.cpu;
    m.mem.write(CODE, Uint8Array.from(GS_CODE));
    const q = (v: bigint) => new Uint8Array(BigUint64Array.of(v).buffer);
    m.mem.write(GS_USER + 8, q(0x1111_0000_0001n));
    m.mem.write(GS_KERNEL + 8, q(0x2222_0000_0100n));
    cpu.segBase[C.GS] = GS_USER;
    cpu.kernelGsBase = GS_KERNEL;
    cpu.setGpr(12, 3000n);
    assert.equal(runBlocksToHalt(m, 100_000), -1);
    return { m, s: { ...cpuState(m), efl: (cpu.getFlags() >>> 0).toString(16), gs: cpu.segBase[C.GS], kgs: cpu.kernelGsBase } };
  });
  assert.deepEqual(w.s, i.s, 'translated code = interpreter');
  assert.equal(w.s.gs, GS_USER);
  assert.equal(w.s.kgs, GS_KERNEL);
  assert.equal(w.m.cpu.getFlags() & C.IF, C.IF);
  const c = w.m.cpu;
  assert.ok(c.jitInstructions > 30_000, `instructions run in wasm: ${c.jitInstructions}`);
  // (helper calls: two PUSHFQ per pass (`fl`); SWAPGS, CLI and STI through `sy` would add six more per pass)
  const s = c.wasm!.stats;
  assert.ok(s.conds < 2 * 3000 + 100, `conditions and system helpers: ${s.conds}`);
  assert.ok(s.replays < 10, `replays: ${s.replays}`);
});

// ---- STI with an interrupt waiting (inline STI must not hide it: S_PEND, SoftCpu.notifyEvent)
//
//   loop: cli / sti / inc rax / inc rax / dec r12 / jnz loop
//   hlt
// Warmed up with nothing pending (the STIs then run inline), then an MSI makes the local APIC (the project's own)
// wake the CPU: the translated STI must open the interrupt shadow and end the call right after itself, so that the
// interrupt is taken after the next instruction, as the interpreter does.
const STI_CODE = hexBytes('fa fb 48 ff c0 48 ff c0 49 ff cc 75 f3 f4');

test('a translated STI with an interrupt waiting opens the shadow and ends the call after it, as the interpreter', () => {
  const out = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories), cpu = m.cpu;
    const bus = new ApicBus();
    const lapic = new Lapic({ clock: m.clock, bus, apicId: 0, hooks: { wake: () => cpu.notifyEvent(), init: () => {}, startup: () => {} } });
    (cpu.env as { lapic?: unknown }).lapic = lapic;
    lapic.mmioWrite(0xf0, 4, 0x1ff); // SVR: enabled
    lapic.mmioWrite(0x350, 4, 0x10000); // LINT0 masked (no 8259 virtual wire)
    m.mem.write(CODE, Uint8Array.from(STI_CODE));
    cpu.setGpr(12, 2000n);
    assert.equal(runBlocksToHalt(m, 100_000), -1);
    const conds = cpu.wasm?.stats.conds ?? 0;
    bus.deliverMsi(0xfee00000, 0x40); // fixed vector 0x40 to APIC 0: the LAPIC wakes the CPU
    assert.equal(cpu.eventPending, true);
    cpu.eventPending = false; // (as a run loop that found IF clear would leave it; S_PEND stays set)
    cpu.setGpr(12, 5n);
    cpu.rip = CODE;
    cpu.halted = false;
    if (mode === 'wasm') cpu.execBlock(1_000_000);
    else { cpu.step(); cpu.step(); }
    return { rip: cpu.rip, shadow: cpu.interruptShadow, pending: cpu.eventPending, IF: (cpu.getFlags() & C.IF) !== 0, rax: cpu.getGpr(0), conds, jit: cpu.jitInstructions };
  });
  const [i, w] = out;
  assert.equal(w.rip, CODE + 2, 'the call ended right after the STI');
  assert.deepEqual({ ...w, conds: 0, jit: 0 }, { ...i, conds: 0, jit: 0 }, 'translated code = interpreter');
  assert.equal(w.shadow, true);
  assert.equal(w.pending, true);
  assert.equal(w.IF, true);
  assert.ok(w.jit > 10_000, `instructions run in wasm: ${w.jit}`);
  // (while nothing was pending, the STIs and CLIs ran inline: a few helper calls for the first passes only)
  assert.ok(w.conds < 100, `helper calls while warming up: ${w.conds}`);
});
