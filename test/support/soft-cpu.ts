// Test harness: a software CPU on a small machine (64 MiB RAM, empty buses) running hand-assembled code.
import test from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, MiB } from '../../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../../src/devices/bus.ts';
import { VmClock } from '../../src/vmm/clock.ts';
import { SoftCpu, setupFlatLongMode, CPU_FAULT } from '../../src/cpu/soft/index.ts';
import * as C from '../../src/cpu/soft/constants.ts';
import { tableSlot, setHotThreshold, setJitThreshold } from '../../src/cpu/soft/code-cache.ts';
import { setCountChains } from '../../src/cpu/soft/wasm/translate.ts';

export const CODE = 0x100000;
export const DATA = 0x200000;
export const STACK_TOP = 0x300000;
export const PAGE_TABLES = 0x10000;

export interface Machine {
  cpu: SoftCpu;
  mem: GuestMemory;
  ports: PortBus;
  mmio: MmioBus;
  clock: VmClock;
}

const machines: GuestMemory[] = [];

/** A fresh machine (memory is reused across calls in one test file to keep tests fast). */
export function makeMachine(memory = 64 * MiB): Machine {
  const mem = new GuestMemory(memory);
  machines.push(mem);
  const ports = new PortBus();
  const mmio = new MmioBus();
  const clock = new VmClock();
  const cpu = new SoftCpu({ mem, ports, mmio, clock });
  return { cpu, mem, ports, mmio, clock };
}

/** A machine in 64-bit mode (CPL 0 unless asked), identity-mapped, RSP at STACK_TOP. */
export function longModeMachine(cpl: 0 | 3 = 0): Machine {
  const m = makeMachine();
  setupFlatLongMode(m.cpu, { pml4: PAGE_TABLES, identityMapBytes: 1 << 30, cpl });
  m.cpu.setGpr(4, BigInt(STACK_TOP));
  return m;
}

/** The 2 MiB pages the memory-operand tests fault on (see protectFaultPages): read-only, and not present. */
export const RO_PAGE = 0x400000;
export const MISSING_PAGE = 0x600000;

/**
 * A 64-bit machine at CPL 0 (1 GiB identity-mapped) for the translator tests, its memory pushed on `memories` (the
 * file closes them after its tests). With `wasm` it runs through the decoded-block cache on the wasm translator,
 * which must be there; without, through the block cache's closures, or the plain interpreter when `interpreter`.
 */
export function translatorMachine(wasm: boolean, memories: GuestMemory[], opts: { interpreter?: boolean } = {}): Machine {
  const mem = new GuestMemory(64 * MiB, undefined, { wasm });
  memories.push(mem);
  const ports = new PortBus(), mmio = new MmioBus(), clock = new VmClock();
  const cpu = new SoftCpu({ mem, ports, mmio, clock, blockCache: wasm || !opts.interpreter, wasm });
  if (wasm) {
    assert.ok(mem.wasmMemory, 'low RAM is inside a WebAssembly.Memory');
    assert.ok(cpu.wasm, 'the CPU has the wasm translator');
  }
  setupFlatLongMode(cpu, { pml4: PAGE_TABLES, identityMapBytes: 1 << 30, cpl: 0 });
  return { cpu, mem, ports, mmio, clock };
}

/** A translatorMachine comparing the plain interpreter with the wasm translator: translation on with wasm, RSP at STACK_TOP. */
export function interpreterOrWasmMachine(mode: 'interpreter' | 'wasm', memories: GuestMemory[]): Machine {
  const wasm = mode === 'wasm';
  const m = translatorMachine(wasm, memories, { interpreter: true });
  m.cpu.jitEnabled = wasm;
  m.cpu.setGpr(4, BigInt(STACK_TOP));
  return m;
}

/** The form of the first instruction of the cached block at physical address `at` (the block must be cached and current). */
export function firstEntryForm(m: Machine, at: number): number {
  const cache = m.cpu.codeCache;
  const b = cache.table[tableSlot(at)];
  assert.ok(b && b.pa === at && b.gen === cache.pageGen[at >>> 12], 'the block is cached');
  return b.entries[0].form;
}

/** Make the 2 MiB page at RO_PAGE read-only and the one at MISSING_PAGE not present (PD at PAGE_TABLES + 8 KiB, setup.ts). */
export function protectFaultPages(m: Machine): void {
  const pde = (addr: number) => PAGE_TABLES + 8192 + (addr / (2 * MiB)) * 8;
  const ro = m.mem.read(pde(RO_PAGE), 8);
  ro[0] &= ~C.PTE_RW;
  m.mem.write(pde(RO_PAGE), ro);
  m.mem.write(pde(MISSING_PAGE), new Uint8Array(8));
  m.cpu.flushTlb(true);
}

/**
 * Copy `code` to CODE (or `at`) and execute until RIP reaches its end, an exception, HLT, or `maxSteps`.
 * Exceptions are not delivered: execution stops with `cpu.lastException`/`faultError` set and RIP at the
 * faulting instruction (use `cpu.run()` instead to test delivery through an IDT).
 */
export function runCode(m: Machine, code: number[] | Uint8Array, opts: { at?: number; maxSteps?: number } = {}): void {
  const at = opts.at ?? CODE;
  const bytes = Uint8Array.from(code);
  m.mem.write(at, bytes);
  m.cpu.rip = at;
  m.cpu.lastException = -1;
  const end = at + bytes.length;
  const max = opts.maxSteps ?? 100000;
  for (let i = 0; i < max && m.cpu.rip !== end; i++) {
    try {
      m.cpu.step();
    } catch (e) {
      if (e !== CPU_FAULT) throw e;
      m.cpu.rip = m.cpu.ripStart;
      return;
    }
    if (m.cpu.halted) break;
  }
}

/** Bytes from a hex string like "48 01 d8". */
export function hexBytes(s: string): number[] {
  return s.trim().split(/\s+/).filter(Boolean).map((b) => parseInt(b, 16));
}

/**
 * Run from CODE (or `start`) through the run loop's block path (execBlock: cached, translated or interpreted blocks, as the CPU
 * is set up) until HLT, a fault or `maxBlocks` calls; the fault is not delivered (there is no IDT): returns its
 * vector with RIP at the faulting instruction, or -1. The code must already be in memory.
 */
export function runBlocksToHalt(m: Machine, maxBlocks: number, start = CODE): number {
  const cpu = m.cpu;
  cpu.rip = start;
  cpu.halted = false;
  cpu.lastException = -1;
  for (let guard = 0; guard < maxBlocks && !cpu.halted; guard++) {
    try {
      cpu.eventPending = false; // (no interrupt source: nothing to deliver)
      if (cpu.blockCacheEnabled) cpu.execBlock(1_000_000);
      else cpu.step();
    } catch (e) {
      if (e !== CPU_FAULT) throw e;
      cpu.rip = cpu.ripStart;
      return cpu.faultVector;
    }
  }
  return -1;
}

/**
 * What comparisons of a run against the interpreter look at: the general registers, the arithmetic flags, RIP, the
 * instruction count, CR2 and the last fault with its error code (tests add their own memory ranges).
 */
export function cpuState(m: Machine) {
  const c = m.cpu;
  return {
    regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)),
    flags: (c.getFlags() & (C.CF | C.PF | C.AF | C.ZF | C.SF | C.OF)).toString(16),
    rip: c.rip.toString(16),
    instructions: c.instructions,
    cr2: c.cr2,
    fault: c.lastException,
    errorCode: c.faultError,
  };
}

/**
 * The setup translator test files share: every block recorded at its first run (hot threshold 0) and translated after
 * `jitThreshold` runs (0: the first; 3 lets a loop's blocks all be recorded first, so they are translated in one
 * batch), the chain counts kept (translate.ts COUNT_CHAINS counts them only when asked, and these tests check them),
 * and the machines' memories closed after the file's tests. Returns the list to hand interpreterOrWasmMachine.
 */
export function translatorTestFile(jitThreshold = 0): GuestMemory[] {
  setCountChains(true);
  setHotThreshold(0);
  setJitThreshold(jitThreshold);
  const memories: GuestMemory[] = [];
  test.after(() => { for (const m of memories) m.close(); });
  return memories;
}

/**
 * A new interpreter machine and a new wasm machine, each given to `prepare` (which writes the program and sets its
 * registers) and run from CODE to HLT; their end states must match. Returns [interpreter, wasm].
 */
export function bothToHalt(memories: GuestMemory[], prepare: (m: Machine) => void): [Machine, Machine] {
  const [i, w] = (['interpreter', 'wasm'] as const).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories);
    prepare(m);
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
    return m;
  });
  assert.deepEqual(cpuState(w), cpuState(i), 'translated code = interpreter');
  return [i, w];
}

/** cpuState and the data page's first 64 bytes (where the test programs store through RDI and RSI). */
export function cpuDataState(m: Machine) {
  return { ...cpuState(m), data: Buffer.from(m.mem.read(DATA, 64)).toString('hex') };
}

/**
 * The three checks the region tests (cpu-wasm-region-regs, cpu-wasm-dead-regs) make of a four-block loop that becomes
 * one region, for one setting: run to HLT with exact registers; a store that faults after the region's branches
 * (R8 unmapped) leaves exact registers with RIP at `faultRip`; and cpu.run with budgets of 1 to 61 instructions,
 * which end calls inside and between all blocks, leaves the same count, RIP and `traceRegs` after every call.
 * `both` runs its function on a fresh interpreter machine and a fresh wasm machine, in that order, with the setting.
 */
export function regionLoopTests(label: string, both: <T>(fn: (m: Machine) => T) => { m: Machine; r: T }[],
  opts: { faultRip: number; faultWhere: string; traceRegs: number[] }): void {
  test(`${label}: a loop through the region's branches ends with exact registers`, () => {
    const res = both((m) => {
      m.cpu.setGpr(8, BigInt(DATA + 32));
      assert.equal(runBlocksToHalt(m, 1_000_000), -1);
      return cpuDataState(m);
    });
    assert.deepEqual(res[1].r, res[0].r, 'translated code = interpreter');
    const w = res[1].m.cpu.wasm!.stats;
    assert.ok(w.regions >= 1 && w.intra > 40_000, `regions ${w.regions}, entries between their blocks ${w.intra}`);
    assert.ok(res[1].m.cpu.jitInstructions > 300_000, `instructions run in wasm: ${res[1].m.cpu.jitInstructions}`);
  });

  test(`${label}: a page fault after the region's branches sees the exact state`, () => {
    const res = both((m) => {
      m.cpu.setGpr(8, 0x7fff_0000_0000n); // not mapped (the identity map covers 1 GiB)
      assert.equal(runBlocksToHalt(m, 1_000_000), C.EXC_PF);
      return cpuDataState(m);
    });
    assert.deepEqual(res[1].r, res[0].r, 'translated code = interpreter');
    assert.equal(res[1].r.rip, (CODE + opts.faultRip).toString(16), `RIP at ${opts.faultWhere}`);
    assert.ok(res[1].m.cpu.wasm!.stats.intra > 40_000);
  });

  test(`${label}: calls ending at every instruction (small budgets) leave exact registers`, () => {
    // every member is entered through its dispatcher entry as well as by branches, and left on the paths to the
    // dispatcher (which must store what a branch kept in locals or left out)
    const res = both((m) => {
      const cpu = m.cpu;
      cpu.setGpr(8, BigInt(DATA + 32));
      cpu.rip = CODE;
      const trace: string[] = [];
      for (let i = 0; i < 200_000 && !cpu.halted; i++) {
        cpu.run(1 + (i * 7) % 61);
        trace.push(`${cpu.instructions}:${cpu.rip.toString(16)}:${opts.traceRegs.map((r) => cpu.getGpr(r).toString(16)).join(',')}`);
      }
      assert.ok(cpu.halted);
      return { trace, s: cpuDataState(m) };
    });
    assert.deepEqual(res[1].r.trace, res[0].r.trace, 'same instruction counts, RIPs and registers after every run');
    assert.deepEqual(res[1].r.s, res[0].r.s, 'translated code = interpreter');
    assert.ok(res[1].m.cpu.wasm!.stats.intra > 10_000, `entries between the region's blocks: ${res[1].m.cpu.wasm!.stats.intra}`);
  });
}

/**
 * A nested loop for the tier-up tests (seen, decay, boot budget): the inner loop (at +13) runs 900 instructions per
 * pass of the outer one, whose blocks (at +5) run once per pass; 1000 passes, EBX = 1000 * 45150 at the end.
 *   mov ecx,1000 / 1: add eax,1 / mov edx,300 / 2: add ebx,edx / dec edx / jnz 2b / dec ecx / jnz 1b / hlt
 */
export const NESTED_LOOP = hexBytes('b9 e8 03 00 00 83 c0 01 ba 2c 01 00 00 01 d3 ff ca 75 fa ff c9 75 ee f4');

/**
 * Run `code` from CODE to HLT (or a fault) on a new interpreter or wasm machine, with a translator setting applied
 * for the run (`set` takes the value and returns the old one, as the translator's setX functions do) and `prepare`
 * applied to the machine first. Returns the machine and runBlocksToHalt's result.
 */
export function runWithSetting<S>(mode: 'interpreter' | 'wasm', memories: GuestMemory[], set: (v: S) => S, value: S,
  code: number[] = NESTED_LOOP, prepare?: (m: Machine) => void): { m: Machine; end: number } {
  const old = set(value);
  try {
    const m = interpreterOrWasmMachine(mode, memories);
    prepare?.(m);
    m.mem.write(CODE, Uint8Array.from(code));
    return { m, end: runBlocksToHalt(m, 1_000_000) };
  } finally {
    set(old);
  }
}
