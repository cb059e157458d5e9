// RINGZERO_CODE_BYTES (src/cpu/soft/code-cache.ts CODE_BYTES): a store into a page holding decoded code drops the page's
// blocks only when it writes a 64-byte chunk holding bytes of a recorded block. Stores beside the code keep the
// blocks (translated ones included); stores into code, a function patched after it ran and a block patching its
// own first instruction while it is recorded, still take effect: the interpreter, closures and wasm agree.
// Machine code from GNU as (`as --64`, Intel syntax in the comments).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, setCodeBytes } from '../src/cpu/soft/code-cache.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';

setHotThreshold(0);
setJitThreshold(0);
const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

/** Run `code` at CODE to HLT with CODE_BYTES `on`, on the interpreter and in wasm; check RBX in both, return both. */
function run(code: Uint8Array, on: boolean, rbx: bigint): Machine[] {
  const old = setCodeBytes(on);
  try {
    return (['interpreter', 'wasm'] as const).map((mode) => {
      const m = interpreterOrWasmMachine(mode, memories);
      m.mem.write(CODE, code);
      assert.equal(runBlocksToHalt(m, 2_000_000), -1);
      assert.equal(m.cpu.getGpr(3), rbx, `${mode}, CODE_BYTES ${on}: rbx`);
      return m;
    });
  } finally {
    setCodeBytes(old);
  }
}

/** `hex` at offset 0, and `more` at offset `at`, of a zeroed page. */
function page(hex: string, at = 0, more = ''): Uint8Array {
  const p = new Uint8Array(4096);
  p.set(hexBytes(hex), 0);
  if (more !== '') p.set(hexBytes(more), at);
  return p;
}

test('stores into another chunk of a code page keep its blocks', () => {
  //   mov ecx,50 / lea rsi,[rip+0x7f4] (CODE+0x800) / 1: mov [rsi],ecx / add ebx,ecx / dec ecx / jnz 1b / hlt
  const code = page('b9 32 00 00 00 48 8d 35 f4 07 00 00 89 0e 01 cb ff c9 75 f8 f4');
  const [, w] = run(code, true, 1275n);
  assert.equal(w.cpu.codeCache.stats.invalidations, 0);
  assert.ok(w.cpu.codeCache.stats.spared >= 49, `spared: ${w.cpu.codeCache.stats.spared}`);
  assert.ok(w.cpu.jitInstructions > 100, `in wasm: ${w.cpu.jitInstructions}`);
  // (as before without it: the first store drops the page's blocks)
  const [, w0] = run(code, false, 1275n);
  assert.ok(w0.cpu.codeCache.stats.invalidations >= 1);
  assert.equal(w0.cpu.codeCache.stats.spared, 0);
});

test('a function patched after it ran (another chunk than its caller) runs its new code', () => {
  //   mov ecx,3 / 2: call f / add ebx,eax / dec ecx / jnz 2b / mov dword [rip+f+1],5 / call f / add ebx,eax / hlt
  //   .org 0x80: f: mov eax,1 / ret
  const code = page('b9 03 00 00 00 e8 76 00 00 00 01 c3 ff c9 75 f5 c7 05 67 00 00 00 05 00 00 00 e8 61 00 00 00 01 c3 f4',
    0x80, 'b8 01 00 00 00 c3');
  for (const on of [true, false]) {
    const [, w] = run(code, on, 8n);
    assert.ok(w.cpu.codeCache.stats.invalidations >= 1);
  }
});

test('a block patching its own first instruction is recorded again', () => {
  // (the loop's head starts its block: the pass that patches it is the one that records it)
  //   mov ecx,3 / jmp 3f / 3: mov eax,1 / mov byte [rip+3b+1],7 / add ebx,eax / dec ecx / jnz 3b / hlt   (1 + 7 + 7)
  const code = page('b9 03 00 00 00 eb 00 b8 01 00 00 00 c6 05 f5 ff ff ff 07 01 c3 ff c9 75 ee f4');
  for (const on of [true, false]) run(code, on, 15n);
});
