// CALLEES (src/cpu/soft/wasm/runtime.ts WasmEngine.pullCallees, RINGZERO_WASM_CALLEES=N): a batch whose user blocks
// CALL a block of another page translated before brings that block (and what it reaches in its page) into the batch,
// so the caller's region holds the callee: the CALL becomes a cross-page branch (translate.ts crossBranch) and, with
// RET_BRANCH, the RET a branch back. Each program runs on the interpreter and in wasm (JIT threshold 3, synchronous
// compiles); the wasm run must match the interpreter's state.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, DATA, type Machine, translatorTestFile, bothToHalt } from './support/soft-cpu.ts';
import { setAsync, setCallees } from '../src/cpu/soft/wasm/runtime.ts';
import { setRas, setRasUser, setRetBranch } from '../src/cpu/soft/wasm/translate.ts';

const memories = translatorTestFile(3);
setRas(true);
setRasUser(true);
setAsync(false);
setRetBranch(true);

/** g, in the next page: add eax,1 / ret. */
const G = CODE + 0x1000;

/**
 * 500 calls of g from one loop (g gets translated, alone in its page), then 1500 from a second loop, whose blocks
 * are translated later, with g installed; that loop stores a byte at [rdi] when ECX = 1000, before its call:
 *   mov ecx,500 / W: call g / dec ecx / jnz W / mov ecx,1500 / L: cmp ecx,1000 / jne 1f / mov byte [rdi],3
 *   1: call g / dec ecx / jnz L / hlt
 */
function run(rdi: number): Machine[] {
  const code = hexBytes('b9 f4 01 00 00 e8 f6 0f 00 00 ff c9 75 f7 b9 dc 05 00 00 81 f9 e8 03 00 00 75 03 c6 07 03 e8 dd 0f 00 00 ff c9 75 ec f4');
  const ms = bothToHalt(memories, (m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(G, Uint8Array.from(hexBytes('83 c0 01 c3')));
    m.cpu.setGpr(7, BigInt(rdi));
  });
  return ms;
}

/** Run `f` with CALLEES at `n` blocks (0: off), restored after. */
function withCallees<T>(n: number, f: () => T): T {
  const old = setCallees(n);
  try { return f(); } finally { setCallees(old); }
}

/** Entries into translated code that left a function: the dispatcher's named entries and tail calls. */
function leaves(m: Machine): number {
  const s = m.cpu.wasm!.stats;
  return s.direct + s.tails;
}

test('a callee translated before joins its later caller\'s region: its CALL and RET become branches', () => {
  const [, on] = withCallees(16, () => run(DATA));
  const [, off] = withCallees(0, () => run(DATA));
  assert.equal(on.cpu.getGpr(0), 2000n);
  // off: each of the second loop's translated passes (~1100) leaves its function twice (the CALL's tail call, the
  // RET's named dispatcher entry); on: neither (the first loop and g, translated together, branch either way)
  assert.ok(leaves(off) > 1500, `leaves without: ${leaves(off)}`);
  assert.ok(leaves(on) < 200, `leaves with CALLEES: ${leaves(on)}, without ${leaves(off)}`);
});

test('the caller\'s copy of a callee stops once the callee\'s page is rewritten', () => {
  // rdi = g's immediate: from the pass with ECX = 1000 on, g adds 3 (500 + 500 passes of 1, then 1000 of 3)
  const [, w] = withCallees(16, () => run(G + 2));
  assert.equal(w.cpu.getGpr(0), 4000n);
});
