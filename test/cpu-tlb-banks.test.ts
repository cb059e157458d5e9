// The first-level TLB's banks (src/cpu/soft/cpu.ts SoftCpu.tlb): read/write/fetch for the supervisor and for the
// user, each entry its own (tag, physical page). A user page and a supervisor page whose page numbers share their
// low 12 bits sit in the same slot of different banks: a program that crosses privilege on every iteration
// (SYSCALL/SYSRET) touching one of each must keep both cached (no refills), and INVLPG and CR3 loads must still reach
// every bank (SDM vol. 3A §4.10.4.1: INVLPG drops the page's translations whatever the privilege they were made
// for; MOV CR3 drops every non-global one). Run on the interpreter and in wasm (the inline probes, ./wasm/tlb-probe.ts).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, PAGE_TABLES, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import { tlbSlot } from '../src/cpu/soft/cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';

setHotThreshold(0);
setJitThreshold(0);

type Mode = 'interpreter' | 'wasm';
const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

/** setupFlatLongMode's page directory (2 MiB pages); two page tables we put under two of its entries. */
const PD = PAGE_TABLES + 8192;
const PT_A = 0x30000, PT_B = 0x31000;
/** The user page and the supervisor page: on the same first-level slot (cpu.ts tlbSlot; checked below). */
const VU = 0x1000000, VK = 0x9118000;
/** The 2 MiB regions PT_A and PT_B map (with 4 KiB pages). */
const VU_REGION = 0x1000000, VK_REGION = 0x9000000;
/** Physical pages: VU's, VK's, and the ones INVLPG and the CR3 load switch them to. */
const P_U = 0x500000, P_K = 0x501000, P_ALT = 0x502000, P_ALT2 = 0x503000;
const N = 400;

// At CPL 0: STAR (SYSCALL CS 0x10, SYSRET base 0x23 -> user CS 0x33, SS 0x2b), LSTAR = kentry, SFMASK 0; then N
// times: the kernel adds [VK] to r8 and increments it, SYSRETs to user code that adds [VU] to r9, increments it and
// SYSCALLs back (kentry: jmp r15, the kernel's continuation). Then: the kernel reads VU (r10: its supervisor banks
// hold it too), points VU's PTE at P_ALT, INVLPG [VU], reads VU (rbx) and lets the user read it (rsi); then points
// VK's PTE at P_ALT2, VU's back at P_U, reloads CR3, reads VK (rdi) and VU (rbp), lets the user read VU (rdx), HLT.
//   mov ecx,0xc0000081 / xor eax,eax / mov edx,0x230010 / wrmsr / mov ecx,0xc0000082 / lea rax,[rip+kentry]
//   mov rdx,rax / shr rdx,32 / wrmsr / mov ecx,0xc0000084 / xor eax,eax / xor edx,edx / wrmsr
//   mov r12d,400 / mov r13d,VU / mov r14d,VK / xor r8d,r8d / xor r9d,r9d
//   kloop: add r8,[r14] / inc qword [r14] / lea r15,[rip+kback] / lea rcx,[rip+u1] / mov r11d,2 / sysretq
//   u1: add r9,[r13] / inc qword [r13] / syscall
//   kback: dec r12 / jnz kloop / mov r10,[r13] / mov dword [PT_A],P_ALT|0x67 / invlpg [r13] / mov rbx,[r13]
//   lea r15,[rip+kb2] / lea rcx,[rip+u2] / mov r11d,2 / sysretq
//   u2: mov rsi,[r13] / syscall
//   kb2: mov dword [PT_B+0x118*8],P_ALT2|0x63 / mov dword [PT_A],P_U|0x67 / mov rax,cr3 / mov cr3,rax / mov rdi,[r14]
//   mov rbp,[r13] / lea r15,[rip+kb3] / lea rcx,[rip+u3] / mov r11d,2 / sysretq
//   u3: mov rdx,[r13] / syscall
//   kb3: hlt
//   kentry: jmp r15
const CODE_BYTES = hexBytes(`
  b9 81 00 00 c0 31 c0 ba 10 00 23 00 0f 30 b9 82 00 00 c0 48 8d 05 ce 00 00 00 48 89 c2 48 c1 ea 20 0f 30
  b9 84 00 00 c0 31 c0 31 d2 0f 30 41 bc 90 01 00 00 41 bd 00 00 00 01 41 be 00 80 11 09 45 31 c0 45 31 c9
  4d 03 06 49 ff 06 4c 8d 3d 1a 00 00 00 48 8d 0d 09 00 00 00 41 bb 02 00 00 00 48 0f 07
  4d 03 4d 00 49 ff 45 00 0f 05
  49 ff cc 75 d4 4d 8b 55 00 c7 04 25 00 00 03 00 67 20 50 00 41 0f 01 7d 00 49 8b 5d 00
  4c 8d 3d 16 00 00 00 48 8d 0d 09 00 00 00 41 bb 02 00 00 00 48 0f 07
  49 8b 75 00 0f 05
  c7 04 25 c0 18 03 00 63 30 50 00 c7 04 25 00 00 03 00 67 00 50 00 0f 20 d8 0f 22 d8 49 8b 3e
  49 8b 6d 00 4c 8d 3d 16 00 00 00 48 8d 0d 09 00 00 00 41 bb 02 00 00 00 48 0f 07
  49 8b 55 00 0f 05
  f4
  41 ff e7`);

test('the two pages share a first-level slot', () => {
  assert.equal(tlbSlot(VU / 4096), tlbSlot(VK / 4096));
});

function setup(mode: Mode): Machine {
  const m = interpreterOrWasmMachine(mode, memories);
  const v = m.cpu.ramView;
  m.mem.write(PT_A, new Uint8Array(4096));
  m.mem.write(PT_B, new Uint8Array(4096));
  v.setUint32(PD + (VU_REGION / 0x200000) * 8, PT_A | C.PTE_P | C.PTE_RW | C.PTE_US, true);
  v.setUint32(PD + (VK_REGION / 0x200000) * 8, PT_B | C.PTE_P | C.PTE_RW | C.PTE_US, true);
  const A_D = C.PTE_A | C.PTE_D;
  v.setUint32(PT_A + ((VU - VU_REGION) / 4096) * 8, P_U | C.PTE_P | C.PTE_RW | C.PTE_US | A_D, true); // user page
  v.setUint32(PT_B + ((VK - VK_REGION) / 4096) * 8, P_K | C.PTE_P | C.PTE_RW | A_D, true); // supervisor page
  for (const [pa, x] of [[P_U, 1000], [P_K, 2000], [P_ALT, 3000], [P_ALT2, 4000]]) v.setBigUint64(pa, BigInt(x), true);
  m.cpu.flushTlb(true);
  m.mem.write(CODE, Uint8Array.from(CODE_BYTES));
  return m;
}

test('a user page and a supervisor page on the same TLB slot both stay cached across privilege changes; INVLPG and CR3 loads reach both banks', () => {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = setup(mode);
    const c = m.cpu;
    assert.equal(runBlocksToHalt(m, 100_000), -1, `${mode}: runs to HLT`);
    assert.ok(c.halted && c.cpl === 0, `${mode}: halted in the kernel`);
    const regs = Object.fromEntries(([['r8', 8], ['r9', 9], ['r10', 10], ['rbx', 3], ['rsi', 6], ['rdi', 7], ['rbp', 5], ['rdx', 2]] as const)
      .map(([name, i]) => [name, Number(c.getGpr(i))]));
    const tri = (N * (N - 1)) / 2;
    assert.deepEqual(regs, {
      r8: N * 2000 + tri, r9: N * 1000 + tri, // every read saw the previous iteration's increment
      r10: 1000 + N, // the kernel's read of the user page
      rbx: 3000, rsi: 3000, // after INVLPG: the supervisor and the user bank both walk again
      rdi: 4000, rbp: 1000 + N, rdx: 1000 + N, // after the CR3 load: both pages, both privileges
    }, `${mode}: values`);
    assert.equal(c.ramView.getUint32(P_K, true), 2000 + N);
    assert.equal(c.ramView.getUint32(P_U, true), 1000 + N);
    // 2 x 400 privilege changes, each touching the other privilege's page on the same slot: while the banks of a slot
    // shared one physical page, each of them refilled from the second level (812 refills and walks on the
    // interpreter); now both pages stay. (The few left: the first touches, and the walks after INVLPG and CR3.)
    const refills = c.tlbL2Hits + c.tlbWalks;
    assert.ok(refills < 40, `${mode}: TLB refills and walks: ${refills}`);
    // and translated code's inline probe finds the entries where cpu.ts put them (tlbSlot = tlb-probe.ts emitTlbSlot):
    // a probe reading another slot would still be right (the tag is the whole page number) but go the slow way for
    // each of the loop's 1600 accesses
    if (mode === 'wasm') assert.ok(c.wasm!.stats.slow < 100, `slow accesses from wasm: ${c.wasm!.stats.slow}`);
    return { c, regs };
  });
  assert.ok(results[1].c.jitInstructions > 1000, `instructions run in wasm: ${results[1].c.jitInstructions}`);
});
