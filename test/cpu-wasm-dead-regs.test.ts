// Write-backs left out on the way into code that overwrites the register first (src/cpu/soft/wasm/translate.ts
// DEAD_REGS, RINGZERO_WASM_DEAD_REGS=1: on; these tests switch it themselves). A branch between a region's blocks does
// not store a dirty register that the target block writes whole before anything can read it (deadRegs); the path
// that leaves for the dispatcher instead stores it. Whatever can look at the state area in the middle of the region
// (the memory library's fault, a replay, the end of a call at a small budget) must see exact registers: a register
// taken for dead past an instruction that can fault, or a leaving path that forgot it, fails these against the
// interpreter. Each program runs on the interpreter and in wasm, with DEAD_REGS on (with and without registers kept
// in locals across the region's branches: REGION_REGS) and off.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, DATA, interpreterOrWasmMachine, translatorTestFile, regionLoopTests, type Machine } from './support/soft-cpu.ts';
import { setJitThreshold, tableSlot } from '../src/cpu/soft/code-cache.ts';
import { setRegionRegs, setDeadRegs, deadRegs } from '../src/cpu/soft/wasm/translate.ts';

type Mode = 'interpreter' | 'wasm';
const memories = translatorTestFile();

// Four blocks of one page in a loop (1 -> 2 -> 3 -> 4 -> 1), one region once hot together; 20000 passes. Each block
// starts with register-only instructions that overwrite registers its predecessor left dirty (their dead sets:
// DEAD below). Block 2 overwrites R9, R10 and R11 before its store through RDI, and R12 (dirty from block 1) only
// after it: R12 must be in the state area when that store faults, which it does on the last pass (block 3 makes
// RDI = R8 at ECX = 2, and R8 is unmapped in the fault test). Block 4 replays a BSF (no fast form: the helper reads
// R13 from the state area) after overwriting RDX and R13.
//   mov ecx,20000
//   1: add eax,1 / lea r9,[rax+rbx] / add ebx,eax / mov r10,rbx / mov r12,rcx / jmp 2f
//   2: mov r10d,7 / xor r11d,r11d / lea r9,[rbx+8] / mov [rdi],ebx / mov r12,rax / add r11,r10 / add r9,r11 / jmp 3f
//   3: mov r9,r8 / mov edx,ecx / add edx,eax / cmp ecx,2 / cmove rdi,r8 / mov [rsi+8],r9 / jmp 4f
//   4: xor edx,edx / mov r13,r12 / add r10,rdx / bsf r14,r13 / add r14,r9 / sub r13,r13 / dec ecx / jnz 1b / hlt
const LOOP = hexBytes('b9 20 4e 00 00 83 c0 01 4c 8d 0c 18 01 c3 49 89 da 49 89 cc eb 00 41 ba 07 00 00 00 45 31 db' +
  ' 4c 8d 4b 08 89 1f 49 89 c4 4d 01 d3 4d 01 d9 eb 00 4d 89 c1 89 ca 01 c2 83 f9 02 49 0f 44 f8 4c 89 4e 08 eb 00' +
  ' 31 d2 4d 89 e5 49 01 d2 4d 0f bc f5 4d 01 ce 4d 29 ed ff c9 75 ab f4');
/** Each block's offset and the registers it overwrites before anything can read them (bit r). */
const DEAD: [number, number][] = [
  [0x05, (1 << 9) | (1 << 10) | (1 << 12)],
  [0x16, (1 << 9) | (1 << 10) | (1 << 11)],
  [0x30, (1 << 9) | (1 << 2)],
  [0x44, (1 << 2) | (1 << 13)],
];

/** The settings: DEAD_REGS with registers kept in locals across branches, without them, and off. */
const SETTINGS: [string, boolean, boolean][] = [['dead, region regs', true, true], ['dead', true, false], ['off', false, false]];

/** Run `fn` on a new machine per mode with the translation threshold at 20 (the loop's blocks batched together). */
function both<T>(dead: boolean, regs: boolean, fn: (m: Machine) => T): { m: Machine; r: T }[] {
  const oldDead = setDeadRegs(dead), oldRegs = setRegionRegs(regs, regs);
  setJitThreshold(20);
  try {
    return (['interpreter', 'wasm'] as Mode[]).map((mode) => {
      const m = interpreterOrWasmMachine(mode, memories);
      m.cpu.setGpr(7, BigInt(DATA));
      m.cpu.setGpr(6, BigInt(DATA + 16));
      m.mem.write(CODE, Uint8Array.from(LOOP));
      return { m, r: fn(m) };
    });
  } finally {
    setJitThreshold(0);
    setDeadRegs(oldDead);
    setRegionRegs(oldRegs[0], oldRegs[1]);
  }
}

test('deadRegs: the registers each block of the loop overwrites before an instruction that can read them or fault', () => {
  const [, w] = both(true, false, (m) => {
    m.cpu.setGpr(8, BigInt(DATA + 32));
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
  });
  const cache = w.m.cpu.codeCache;
  for (const [off, want] of DEAD) {
    const blk = cache.table[tableSlot(CODE + off)];
    assert.ok(blk && blk.pa === CODE + off, `block at +${off.toString(16)} cached`);
    assert.equal(deadRegs(blk).toString(2), want.toString(2), `dead registers of the block at +${off.toString(16)}`);
  }
});

for (const [name, dead, regs] of SETTINGS) {
  regionLoopTests(`dead registers (${name})`, (fn) => both(dead, regs, fn),
    { faultRip: 0x23, faultWhere: 'the faulting store of block 2', traceRegs: [2, 9, 10, 11, 12, 13] });
}
