// Write-backs hoisted before a leaving branch (src/cpu/soft/wasm/translate.ts HOIST_FLUSH, RINGZERO_WASM_HOIST_FLUSH=0:
// off; these tests switch it themselves): a side exit (a Jcc in the middle of a block) and the chain check after a
// memory instruction write the dirty registers and the deferred flag record back once before their branch, when the
// code that goes on writes them back anyway at its next memory-library call. A register or flag record written back
// too early (then changed before that call), or left out, makes the state differ from the interpreter's at the side
// exits, at the chain stop of a store into the code's own page and at a page fault after them.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, hexBytes, runBlocksToHalt, CODE, DATA, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setHoistFlush, hoistStats } from '../src/cpu/soft/wasm/translate.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import * as C from '../src/cpu/soft/constants.ts';

setHotThreshold(0);
setJitThreshold(0);

type Mode = 'interpreter' | 'wasm';
const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

const state = (m: Machine) => ({ ...cpuState(m), data: Buffer.from(m.mem.read(DATA, 64)).toString('hex'), scratch: Buffer.from(m.mem.read(CODE + 0x80, 8)).toString('hex') });

// A loop calling f 3000 times (ECX counts down). At ECX = 100 the loop points RDI at `scratch`, in the code's own
// page (f's `mov [rdi],edx` then stops the chain: a store into a page with decoded code), at 90 back at DATA + 8;
// at 1 RBX at an unmapped address (f's last load faults, with the registers and the CMP's flags dirty before it).
//   mov ecx,3000
//   loop: cmp ecx,100 / jne 1f / lea rdi,[rip+scratch]
//   1: cmp ecx,90 / jne 2f / mov rdi,r14
//   2: cmp ecx,1 / jne 3f / mov rbx,r15
//   3: call f / dec ecx / jnz loop / hlt
//   f: add eax,1 / mov r8,rax / cmp ecx,7 / je side / mov rdx,[rsi] / add edx,eax / mov [rdi],edx / add r9,rdx /
//      xor r11d,ecx / mov r10,[rsi+16] / lea r12,[r10+rax] / sub r12,5 / test cl,1 / jne odd / mov r13,[rbx] /
//      add r13,r12 / ret
//   side: sub r8,3 / ret
//   odd: add r13,1 / cmp r13,r9 / mov rdx,[rbx+8] / adc r13,rdx / ret
//   (.balign 64) scratch: dq 0
const PROGRAM = hexBytes('b9 b8 0b 00 00 83 f9 64 75 07 48 8d 3d 6f 00 00 00 83 f9 5a 75 03 4c 89 f7 83 f9 01 75 03 4c' +
  ' 89 fb e8 05 00 00 00 ff c9 75 db f4 83 c0 01 49 89 c0 83 f9 07 74 25 48 8b 16 01 c2 89 17 49 01 d1 41 31 cb 4c' +
  ' 8b 56 10 4d 8d 24 02 49 83 ec 05 f6 c1 01 75 0c 4c 8b 2b 4d 01 e5 c3 49 83 e8 03 c3 49 83 c5 01 4d 39 cd 48 8b' +
  ' 53 08 49 11 d5 c3');

function run(on: boolean, mode: Mode, unmapped: bigint): { m: Machine; vector: number } {
  const old = setHoistFlush(on);
  setJitThreshold(20);
  try {
    const m = interpreterOrWasmMachine(mode, memories);
    m.mem.write(CODE, Uint8Array.from(PROGRAM));
    m.mem.write(DATA, Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
    m.cpu.setGpr(6, BigInt(DATA));
    m.cpu.setGpr(7, BigInt(DATA + 8));
    m.cpu.setGpr(14, BigInt(DATA + 8));
    m.cpu.setGpr(3, BigInt(DATA + 32));
    m.cpu.setGpr(15, unmapped);
    return { m, vector: runBlocksToHalt(m, 1_000_000) };
  } finally {
    setJitThreshold(0);
    setHoistFlush(old);
  }
}

for (const on of [true, false]) {
  test(`hoisted write-backs (${on ? 'on' : 'off'}): side exits and a chain stop leave the interpreter's state`, () => {
    const before = hoistStats.n;
    const a = run(on, 'interpreter', BigInt(DATA + 40)), b = run(on, 'wasm', BigInt(DATA + 40));
    assert.equal(a.vector, -1);
    assert.equal(b.vector, -1);
    assert.deepEqual(state(b.m), state(a.m), 'translated code = interpreter');
    assert.ok(b.m.cpu.jitInstructions > 15_000, `instructions run in wasm: ${b.m.cpu.jitInstructions}`);
    if (on) assert.ok(hoistStats.n > before, 'the translation hoisted write-backs');
    else assert.equal(hoistStats.n, before, 'nothing hoisted while off');
  });

  test(`hoisted write-backs (${on ? 'on' : 'off'}): a page fault after a hoisting branch sees exact registers and flags`, () => {
    const a = run(on, 'interpreter', 0x7fff_0000_0000n), b = run(on, 'wasm', 0x7fff_0000_0000n);
    assert.equal(a.vector, C.EXC_PF);
    assert.equal(b.vector, C.EXC_PF);
    assert.deepEqual(state(b.m), state(a.m), 'translated code = interpreter');
    assert.ok(b.m.cpu.jitInstructions > 15_000, `instructions run in wasm: ${b.m.cpu.jitInstructions}`);
  });
}
