// Zero-extension facts (src/cpu/soft/wasm/translate.ts ZX, RINGZERO_WASM_ZX=0: off; these tests switch it
// themselves): a cached register whose last write was a 32-bit one is read at 32 bits without a mask, and AND/OR/XOR/
// TEST results are not masked again. A fact kept past a 64-bit write (ADD/LEA/MOV/NOT/NEG of the full register)
// would feed a value with its high half set into a 32-bit operation; each program runs on the interpreter and in
// wasm with the facts on and off and must end in the same state.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, hexBytes, runBlocksToHalt, CODE, DATA, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setZx } from '../src/cpu/soft/wasm/translate.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';

setHotThreshold(0);
setJitThreshold(0);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

const state = (m: Machine) => ({ ...cpuState(m), data: Buffer.from(m.mem.read(DATA, 64)).toString('hex') });

// 20000 passes of a self-looping block that alternates 32- and 64-bit writes of the same registers between 32-bit
// reads (the ALU forms, TEST, CMP/ADC, NOT/NEG, a 32-bit load and an ALU store):
//   mov ecx,20000 / mov rbx,0x123456789abcdef1 / mov rdx,0xfedcba9876543210
//   top: mov eax,ecx / add rax,rbx / and eax,edx / mov r8,rax / add r8,rdx / or r8d,eax / lea r9,[r8+rbx] /
//   xor r9d,ecx / add r9,rbx / test r9d,r9d / mov r10,r9 / sub r10d,eax / add r10,rdx / cmp r10d,ecx / adc r11,r10 /
//   not r10d / add r10,r9 / and r10d,r10d / add r12,r10 / neg r9d / add r9,rbx / or r13,r9 / mov esi,[rdi] /
//   add rsi,rdx / xor esi,ebx / add [rdi+8],rsi / dec ecx / jnz top / hlt
const PROGRAM = hexBytes('b9 20 4e 00 00 48 bb f1 de bc 9a 78 56 34 12 48 ba 10 32 54 76 98 ba dc fe 89 c8 48 01 d8 21' +
  ' d0 49 89 c0 49 01 d0 41 09 c0 4d 8d 0c 18 41 31 c9 49 01 d9 45 85 c9 4d 89 ca 41 29 c2 49 01 d2 41 39 ca 4d 11 d3' +
  ' 41 f7 d2 4d 01 ca 45 21 d2 4d 01 d4 41 f7 d9 49 01 d9 4d 09 cd 8b 37 48 01 d6 31 de 48 01 77 08 ff c9 75 b0 f4');

function run(on: boolean, mode: 'interpreter' | 'wasm'): Machine {
  const old = setZx(on);
  setJitThreshold(20);
  try {
    const m = interpreterOrWasmMachine(mode, memories);
    m.mem.write(CODE, Uint8Array.from(PROGRAM));
    m.mem.write(DATA, Uint8Array.from({ length: 64 }, (_, i) => (i * 53 + 7) & 0xff));
    m.cpu.setGpr(7, BigInt(DATA));
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
    return m;
  } finally {
    setJitThreshold(0);
    setZx(old);
  }
}

for (const on of [true, false]) {
  test(`zero-extension facts (${on ? 'on' : 'off'}): 32-bit reads after 32- and 64-bit writes match the interpreter`, () => {
    const a = run(on, 'interpreter'), b = run(on, 'wasm');
    assert.deepEqual(state(b), state(a), 'translated code = interpreter');
    assert.ok(b.cpu.jitInstructions > 200_000, `instructions run in wasm: ${b.cpu.jitInstructions}`);
  });
}
