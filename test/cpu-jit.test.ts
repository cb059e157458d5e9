// The JavaScript translator of the software CPU (src/cpu/soft/jit/translate.ts) and block chaining
// (SoftCpu.runChain): generated code must leave exactly what the interpreter leaves — registers, flags, memory,
// instruction counts — also when a memory operand faults in the middle of a generated block, when the block
// patches its own code, and when an MMIO store raises an interrupt inside a self-looping block.
// Every block is recorded the first time it runs and translated at its first replay (thresholds 0).
// Machine code from GNU as (`as --64`, Intel syntax in the comments).
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, longModeMachine, hexBytes, runBlocksToHalt, CODE, PAGE_TABLES, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, CHAIN_LIMIT, MAX_BLOCK } from '../src/cpu/soft/code-cache.ts';
import { RunExit, type LocalApic } from '../src/cpu/soft/index.ts';
import { SoftCpu } from '../src/cpu/soft/cpu.ts';
import { setupFlatLongMode } from '../src/cpu/soft/setup.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import { VmClock } from '../src/vmm/clock.ts';
import * as C from '../src/cpu/soft/constants.ts';
import { setCountChains } from '../src/cpu/soft/wasm/translate.ts';

// (the chain counts these tests check are counted only when asked: translate.ts COUNT_CHAINS)
setCountChains(true);
setHotThreshold(0);
setJitThreshold(0);

type Mode = 'interpreter' | 'closures' | 'jit';
const MODES: Mode[] = ['interpreter', 'closures', 'jit'];

function machine(mode: Mode): Machine {
  const m = longModeMachine();
  m.cpu.blockCacheEnabled = mode !== 'interpreter';
  m.cpu.jitEnabled = mode === 'jit';
  return m;
}

/** Run from CODE until HLT or a fault (not delivered: there is no IDT); returns the fault vector or -1. */
function runToEnd(m: Machine, code: string): number {
  m.mem.write(CODE, Uint8Array.from(hexBytes(code)));
  return runBlocksToHalt(m, 1_000_000);
}

/** Everything a comparison looks at. */
const snapshot = cpuState;

/** Run `code` in every mode (after `prepare`) and check they agree; returns the JIT machine. */
function agree(code: string, prepare: (m: Machine) => void = () => {}): Machine {
  const results = MODES.map((mode) => {
    const m = machine(mode);
    prepare(m);
    runToEnd(m, code);
    return { m, s: snapshot(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'closure replay = interpreter');
  assert.deepEqual(results[2].s, results[0].s, 'generated code = interpreter');
  return results[2].m;
}

test('a self-looping block runs in generated code with exact results and instruction counts', () => {
  // mov ecx,1000 / mov ebx,3 / 1: add eax,ebx / dec ecx / jnz 1b / hlt
  const m = agree('b9 e8 03 00 00 bb 03 00 00 00 01 d8 ff c9 75 fa f4');
  assert.equal(m.cpu.gpr[0], 3000);
  assert.equal(m.cpu.instructions, 2 + 3 * 1000 + 1);
  assert.ok(m.cpu.codeCache.stats.compiled >= 1, `compiled: ${m.cpu.codeCache.stats.compiled}`);
  assert.ok(m.cpu.jitInstructions >= 2900, `instructions in generated code: ${m.cpu.jitInstructions}`);
});

test('blocks chain across a call, the function and the return (no table lookups in the loop)', () => {
  // mov ecx,3000 / xor edx,edx / 1: call 2f / dec ecx / jnz 1b / hlt / 2: add rdx,rcx / push rbx / pop rbx / ret
  const m = agree('b9 b8 0b 00 00 31 d2 e8 05 00 00 00 ff c9 75 f7 f4 48 01 ca 53 5b c3');
  assert.equal(m.cpu.gpr[4], (3000 * 3001) / 2);
  assert.ok(m.cpu.codeCache.stats.chainHits > 2 * 2900, `chain hits: ${m.cpu.codeCache.stats.chainHits}`);
  assert.ok(m.cpu.jitInstructions > 5 * 2900);
});

/** Make the 2 MiB page at `lin` (identity map of longModeMachine) not present, or read-only. */
function editPde(m: Machine, lin: number, clear: number): void {
  const at = PAGE_TABLES + 8192 + (lin >>> 21) * 8;
  const pde = m.mem.slice(at, 4);
  const v = (pde[0] | (pde[1] << 8) | (pde[2] << 16) | (pde[3] << 24)) & ~clear;
  m.mem.write(at, Uint8Array.of(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24));
  m.cpu.invalidatePage(lin);
}

test('a page fault on a load in the middle of a generated block: state precise, flags of the instruction before', () => {
  // mov ecx,10 / mov rsi,0x200000 / mov edi,0x200000 / xor ebx,ebx
  // 1: add rbx,rax / mov rax,[rsi] / add rsi,rdi / dec ecx / jnz 1b / hlt      ([rsi] faults at 0x800000)
  const code = 'b9 0a 00 00 00 48 c7 c6 00 00 20 00 bf 00 00 20 00 31 db 48 01 c3 48 8b 06 48 01 fe ff c9 75 f3 f4';
  const m = agree(code, (mm) => {
    for (const [a, v] of [[0x200000, 0x7fffffff], [0x400000, 0x7fffffff], [0x600000, -5]]) mm.cpu.writeLin(a, 8, v, v >> 31);
    mm.cpu.setGpr(0, 0xffff_ffff_ffff_fff0n);
    editPde(mm, 0x800000, C.PTE_P);
  });
  assert.equal(m.cpu.lastException, C.EXC_PF);
  assert.equal(m.cpu.cr2, 0x800000);
  assert.equal(m.cpu.rip, CODE + 22, 'RIP at the faulting mov');
  assert.equal(m.cpu.gpr[2], 7, 'three iterations done');
  assert.ok(m.cpu.jitInstructions > 0);
});

test('a page fault on a store (read-only page, CR0.WP) in a generated block leaves memory and registers as before it', () => {
  // mov ecx,10 / mov rsi,0x200000 / mov edi,0x200000 / xor ebx,ebx
  // 1: add rbx,rcx / mov [rsi],rbx / add rsi,rdi / dec ecx / jnz 1b / hlt    (the store faults at 0x800000)
  const code = 'b9 0a 00 00 00 48 c7 c6 00 00 20 00 bf 00 00 20 00 31 db 48 01 cb 48 89 1e 48 01 fe ff c9 75 f3 f4';
  const m = agree(code, (mm) => editPde(mm, 0x800000, C.PTE_RW));
  assert.equal(m.cpu.lastException, C.EXC_PF);
  assert.equal(m.cpu.faultError & (C.PFEC_P | C.PFEC_W), C.PFEC_P | C.PFEC_W);
  assert.equal(m.cpu.gpr[6], 10 + 9 + 8 + 7);
  assert.equal(m.cpu.readLin(0x600000, 4), 10 + 9 + 8);
});

test('a store into the next instruction of the same generated block is seen at once (self-modifying code)', () => {
  // xor eax,eax / mov ecx,5 / 1: mov [rip+2],ecx (the imm32 of the add) / add eax,0 (81 c0 imm32) / dec ecx / jnz 1b / hlt
  const m = agree('31 c0 b9 05 00 00 00 89 0d 02 00 00 00 81 c0 00 00 00 00 ff c9 75 f0 f4');
  assert.equal(m.cpu.gpr[0], 5 + 4 + 3 + 2 + 1);
  assert.ok(m.cpu.codeCache.stats.invalidations >= 4);
});

test('the run loop regains control within the chain bound, and run(n) executes exactly n instructions', () => {
  const m = machine('jit');
  // 1: add eax,ebx / dec ecx / jnz 1b (ecx = 0 first: 2^32 iterations)
  m.mem.write(CODE, Uint8Array.from(hexBytes('01 d8 ff c9 75 fa f4')));
  m.cpu.rip = CODE;
  for (let i = 0; i < 20; i++) {
    const before = m.cpu.instructions;
    const n = m.cpu.execBlock(10_000_000);
    assert.equal(m.cpu.instructions - before, n);
    assert.ok(n <= CHAIN_LIMIT + MAX_BLOCK, `execBlock ran ${n} instructions`);
  }
  const before = m.cpu.instructions;
  assert.equal(m.cpu.run(100_001), RunExit.Budget);
  assert.equal(m.cpu.instructions - before, 100_001);
  assert.ok(m.cpu.jitInstructions > 90_000);
});

test('an interrupt raised by an MMIO store inside a generated self-loop is taken right after that store', () => {
  const GDT = 0x1000, IDT = 0x2000, HANDLER = CODE + 0x10, MMIO = 0x8000000;
  const pending: number[] = [];
  const lapic = {
    hasInterrupt: () => pending.length > 0, acknowledge: () => pending.shift()!,
    readApicBaseMsr: () => 0xfee00900n, writeApicBaseMsr: () => {}, mmioRead: () => 0, mmioWrite: () => {},
  } as unknown as LocalApic;
  const mem = new GuestMemory(64 * MiB);
  const mmio = new MmioBus();
  const cpu = new SoftCpu({ mem, ports: new PortBus(), mmio, clock: new VmClock(), lapic });
  cpu.jitEnabled = true;
  cpu.blockCacheEnabled = true;
  setupFlatLongMode(cpu, { pml4: PAGE_TABLES, identityMapBytes: 1 << 30, cpl: 0 });
  cpu.setReg64Num(4, 0x300000);
  // GDT: 0x10 64-bit kernel code, 0x18 data; IDT vector 0x40: 64-bit interrupt gate to HANDLER.
  const w32 = (at: number, v: number) => cpu.ramView.setUint32(at, v >>> 0, true);
  w32(GDT + 0x10, 0xffff); w32(GDT + 0x14, 0x00af9b00);
  w32(GDT + 0x18, 0xffff); w32(GDT + 0x1c, 0x00cf9300);
  cpu.gdtrBase = GDT; cpu.gdtrLimit = 0x1f;
  w32(IDT + 0x40 * 16, (HANDLER & 0xffff) | (0x10 << 16));
  w32(IDT + 0x40 * 16 + 4, (HANDLER & 0xffff0000) | (0x8e << 8));
  cpu.idtrBase = IDT; cpu.idtrLimit = 0xfff;
  let stores = 0;
  mmio.register(MMIO, 0x1000, {
    mmioRead: () => 0,
    mmioWrite: () => { if (++stores === 7) { pending.push(0x40); cpu.notifyEvent(); } },
  }, 'test');
  // mov ecx,20 / xor eax,eax / 1: mov [rdi],eax / inc eax / dec ecx / jnz 1b / hlt
  // HANDLER: mov r14,rax / mov r13,[rsp] / inc r15 / iretq
  mem.write(CODE, Uint8Array.from(hexBytes('b9 14 00 00 00 31 c0 89 07 ff c0 ff c9 75 f8 f4 49 89 c6 4c 8b 2c 24 49 ff c7 48 cf')));
  cpu.rip = CODE;
  cpu.setReg64Num(7, MMIO);
  cpu.setFlagsValue(C.IF | C.FLAGS_FIXED);
  let guard = 0;
  while (!cpu.halted && guard++ < 1000) assert.notEqual(cpu.run(1000), RunExit.Shutdown, `shutdown, exception ${cpu.lastException}`);
  assert.equal(cpu.gpr[30], 1, 'the handler ran once');
  assert.equal(cpu.gpr[28], 6, 'EAX when the interrupt was taken: right after the 7th store (of 6)');
  assert.equal(cpu.getReg64Num(13), CODE + 9, 'the frame returns to the instruction after the store');
  assert.equal(cpu.gpr[0], 20);
  assert.equal(stores, 20);
  assert.equal(cpu.instructions, 2 + 4 * 20 + 1 + 4, 'loop, hlt and the handler counted exactly');
  assert.ok(cpu.jitInstructions > 40, `instructions in generated code: ${cpu.jitInstructions}`);
});

test('RINGZERO_JIT off (jitEnabled false) compiles nothing; translation off runs no blocks at all', () => {
  for (const mode of ['closures', 'interpreter'] as Mode[]) {
    const m = machine(mode);
    runToEnd(m, 'b9 e8 03 00 00 bb 03 00 00 00 01 d8 ff c9 75 fa f4');
    assert.equal(m.cpu.gpr[0], 3000);
    assert.equal(m.cpu.jitInstructions, 0, mode);
    if (mode === 'interpreter') assert.equal(m.cpu.blockInstructions, 0);
    else assert.ok(m.cpu.blockInstructions > 2900);
  }
});
