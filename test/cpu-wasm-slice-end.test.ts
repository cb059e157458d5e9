// SLICE_END (src/cpu/soft/cpu.ts, RINGZERO_WASM_SLICE_END, on unless =0): SoftCpu.run ends its slice before a translated block that
// does not fit what is left of the budget, instead of replaying that block's first instructions in JavaScript (and
// then the rest of it from a mid-block address). A loop of one 10-instruction block runs in slices of 37
// instructions (never a whole number of blocks): with the switch the guest instructions run outside wasm stay at the
// few of the warm-up, without it every slice's end replays part of a block; either way the end state is the
// interpreter's.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, interpreterOrWasmMachine, translatorTestFile, cpuState, type Machine } from './support/soft-cpu.ts';
import { RunExit, setSliceEnd } from '../src/cpu/soft/cpu.ts';

const memories = translatorTestFile();

//   mov ecx,3000 / 1: add eax,1 / add ebx,eax / xor edx,ebx / add esi,edx / sub edi,eax / inc r8d / add r9d,esi
//   xor r10d,edi / dec ecx / jnz 1b / hlt
const LOOP = hexBytes('b9 b8 0b 00 00 83 c0 01 01 c3 31 da 01 d6 29 c7 41 ff c0 41 01 f1 41 31 fa ff c9 75 e8 f4');
const PASSES = 3000;

/** Run LOOP to its HLT in slices of `slice` instructions; returns the machine. */
function runSliced(mode: 'interpreter' | 'wasm', slice: number): Machine {
  const m = interpreterOrWasmMachine(mode, memories);
  m.mem.write(CODE, Uint8Array.from(LOOP));
  m.cpu.rip = CODE;
  for (let guard = 0; guard < 10_000; guard++) {
    m.cpu.eventPending = false; // (no interrupt source: as runBlocksToHalt)
    const r = m.cpu.run(slice);
    if (r === RunExit.Halted) return m;
    assert.equal(r, RunExit.Budget, `slice ${guard} ended with ${r}`);
  }
  assert.fail('the loop did not reach its HLT');
}

for (const on of [true, false]) {
  test(`slices of 37 instructions over a 10-instruction translated block, SLICE_END ${on ? 'on' : 'off'}`, () => {
    const old = setSliceEnd(on);
    try {
      const ref = runSliced('interpreter', 37);
      const m = runSliced('wasm', 37);
      assert.deepEqual(cpuState(m), cpuState(ref), 'translated = interpreter');
      const total = 1 + PASSES * 10 + 1;
      assert.equal(m.cpu.instructions, total, 'every instruction counted once');
      const outside = m.cpu.instructions - m.cpu.jitInstructions;
      if (on) assert.ok(outside < 40, `instructions outside wasm with SLICE_END: ${outside}`);
      else assert.ok(outside > 1000, `instructions outside wasm without it (each slice end replays part of a block): ${outside}`);
    } finally {
      setSliceEnd(old);
    }
  });
}
