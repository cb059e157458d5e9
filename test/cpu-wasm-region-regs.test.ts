// Guest registers kept in wasm locals across a region's branches (src/cpu/soft/wasm/translate.ts REGION_REGS,
// RINGZERO_WASM_REGION_REGS=1: on; these tests switch it themselves): a member's entry registers arrive in their locals, clean or dirty, from the
// dispatcher (its entry loads) or from another member's branch. Whatever can read or write the state area in the
// middle of a region (a replay, the memory library's fault, the dispatcher at a budget's end) must see the exact
// registers: a kept register written back too late, or a local kept past a helper's write, fails these against the
// interpreter. Each program runs on the interpreter and in wasm, with the feature on (registers dirty across
// branches, then clean only) and off.
import test from 'node:test';
import { hexBytes, CODE, DATA, interpreterOrWasmMachine, translatorTestFile, regionLoopTests, type Machine } from './support/soft-cpu.ts';
import { setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setRegionRegs } from '../src/cpu/soft/wasm/translate.ts';

type Mode = 'interpreter' | 'wasm';
const memories = translatorTestFile();

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
  regionLoopTests(`region registers (${name})`, (fn) => both(on, dirty, fn),
    { faultRip: 0x31, faultWhere: 'the faulting store of block 4', traceRegs: [9, 2] });
}
