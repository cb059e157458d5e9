// Guest registers kept in wasm locals across a region's branches (src/cpu/soft/wasm/translate.ts REGION_REGS,
// RINGZERO_WASM_REGION_REGS=1: on; these tests switch it themselves): a member's entry registers arrive in their locals, clean or dirty, from the
// dispatcher (its entry loads) or from another member's branch. Whatever can read or write the state area in the
// middle of a region (a replay, the memory library's fault, the dispatcher at a budget's end) must see the exact
// registers: a kept register written back too late, or a local kept past a helper's write, fails these against the
// interpreter. Each program runs on the interpreter and in wasm, with the feature on (registers dirty across
// branches, then clean only) and off.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, DATA, interpreterOrWasmMachine, translatorTestFile, cpuDataState, type Machine } from './support/soft-cpu.ts';
import { setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setRegionRegs } from '../src/cpu/soft/wasm/translate.ts';
import * as C from '../src/cpu/soft/constants.ts';

type Mode = 'interpreter' | 'wasm';
const memories = translatorTestFile();

const state = cpuDataState;

// Four blocks of one page in a loop (1 -> 2 -> 3 -> 4 -> 1), one region once they are hot together; 20000 passes.
// Block 1 leaves EAX, EBX and R9 dirty; block 2 reads EAX and R9 (its entry registers) and has a replayed BSF (no
// fast form) that reads EAX from the state area and writes EDX there, after EDX was cached and made dirty by an ADD;
// block 3 stores EBX (the memory library) and on the last pass (ECX = 1) makes RDI = R8; block 4's store through RDI
// then faults when R8 is unmapped, with R9 dirty from block 3 and EAX from block 4 itself.
//   mov ecx,20000
//   1: add eax,1 / lea r9,[rax+rbx] / add ebx,eax / jmp 2f
//   2: add esi,eax / add r9,rsi / add edx,1 / bsf edx,eax / add esi,edx / add ebx,edx / jmp 3f
//   3: mov [rdi],ebx / add r9d,ebx / cmp ecx,1 / cmove rdi,r8 / jmp 4f
//   4: add eax,ebx / mov [rdi+8],eax / add r9,rax / dec ecx / jnz 1b / hlt
const LOOP = hexBytes('b9 20 4e 00 00 83 c0 01 4c 8d 0c 18 01 c3 eb 00 01 c6 49 01 f1 83 c2 01 0f bc d0 01 d6 01 d3 eb 00' +
  ' 89 1f 41 01 d9 83 f9 01 49 0f 44 f8 eb 00 01 d8 89 47 08 49 01 c1 ff c9 75 ca f4');

/** The three settings: registers kept dirty across branches, kept clean only, not kept. */
const SETTINGS: [string, boolean, boolean][] = [['dirty', true, true], ['clean', true, false], ['off', false, false]];

/** Run `fn` on a new machine per mode with the translation threshold at 20 (the loop's blocks batched together). */
function both<T>(on: boolean, dirty: boolean, fn: (m: Machine) => T): { m: Machine; r: T }[] {
  const old = setRegionRegs(on, dirty);
  setJitThreshold(20);
  try {
    return (['interpreter', 'wasm'] as Mode[]).map((mode) => {
      const m = interpreterOrWasmMachine(mode, memories);
      m.cpu.setGpr(7, BigInt(DATA));
      m.mem.write(CODE, Uint8Array.from(LOOP));
      return { m, r: fn(m) };
    });
  } finally {
    setJitThreshold(0);
    setRegionRegs(old[0], old[1]);
  }
}

for (const [name, on, dirty] of SETTINGS) {
  test(`region registers (${name}): a replay and the memory library between branches see exact registers`, () => {
    const res = both(on, dirty, (m) => {
      m.cpu.setGpr(8, BigInt(DATA + 32));
      assert.equal(runBlocksToHalt(m, 1_000_000), -1);
      return state(m);
    });
    assert.deepEqual(res[1].r, res[0].r, 'translated code = interpreter');
    const w = res[1].m.cpu.wasm!.stats;
    assert.ok(w.regions >= 1 && w.intra > 40_000, `regions ${w.regions}, entries between their blocks ${w.intra}`);
    assert.ok(res[1].m.cpu.jitInstructions > 300_000, `instructions run in wasm: ${res[1].m.cpu.jitInstructions}`);
  });

  test(`region registers (${name}): a page fault after a branch leaves the registers kept dirty in the state`, () => {
    const res = both(on, dirty, (m) => {
      m.cpu.setGpr(8, 0x7fff_0000_0000n); // not mapped (the identity map covers 1 GiB)
      assert.equal(runBlocksToHalt(m, 1_000_000), C.EXC_PF);
      return state(m);
    });
    assert.deepEqual(res[1].r, res[0].r, 'translated code = interpreter');
    assert.equal(res[1].r.rip, (CODE + 0x31).toString(16), 'RIP at the faulting store');
    assert.ok(res[1].m.cpu.wasm!.stats.intra > 40_000);
  });

  test(`region registers (${name}): entered from the dispatcher at every member (small budgets), exactly`, () => {
    // cpu.run with budgets of 1 to 61 instructions: calls end, and start again, inside each of the four blocks, so
    // every member is entered through its dispatcher entry (its registers loaded there) as well as by branches.
    const res = both(on, dirty, (m) => {
      const cpu = m.cpu;
      cpu.setGpr(8, BigInt(DATA + 32));
      cpu.rip = CODE;
      const trace: string[] = [];
      for (let i = 0; i < 200_000 && !cpu.halted; i++) {
        cpu.run(1 + (i * 7) % 61);
        trace.push(`${cpu.instructions}:${cpu.rip.toString(16)}:${cpu.getGpr(9).toString(16)}:${cpu.getGpr(2).toString(16)}`);
      }
      assert.ok(cpu.halted);
      return { trace, s: state(m) };
    });
    assert.deepEqual(res[1].r.trace, res[0].r.trace, 'same instruction counts, RIPs and registers after every run');
    assert.deepEqual(res[1].r.s, res[0].r.s, 'translated code = interpreter');
    assert.ok(res[1].m.cpu.wasm!.stats.intra > 10_000, `entries between the region's blocks: ${res[1].m.cpu.wasm!.stats.intra}`);
  });
}
