// RET_BRANCH (src/cpu/soft/wasm/translate.ts): a RET whose return address the return-address stack predicted, into a
// block of the region function it runs in, branches to that member instead of leaving for the dispatcher. Each
// program runs on the interpreter and in wasm (translation after a warm-up: JIT threshold 3, synchronous compiles, so
// the loop's blocks are translated in one batch and form one region); the wasm run must match the interpreter's
// state, and the dispatcher's named entries (a predicted RET names its return block to it) show whether the RETs
// branched.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, type Machine, translatorTestFile, bothToHalt } from './support/soft-cpu.ts';
import { setAsync } from '../src/cpu/soft/wasm/runtime.ts';
import { setRas, setRasUser, setRetBranch } from '../src/cpu/soft/wasm/translate.ts';

const memories = translatorTestFile(3);
setRas(true);
setRasUser(true);
setAsync(false);

const G = CODE + 0x40;

/**
 * 2000 calls of g, in the same page as its caller:
 *   mov ecx,2000 / L: call g / R: add eax,1 / dec ecx / jnz L / hlt
 * and g (at CODE + 0x40) as given. Returns the interpreter's machine and the wasm one (states checked equal).
 */
function run(g: string, setup: (m: Machine) => void = () => {}): Machine[] {
  // (call rel32 to G: from CODE + 10, the byte after the call)
  const code = hexBytes('b9 d0 07 00 00 e8 36 00 00 00 83 c0 01 ff c9 75 f4 f4');
  const ms = bothToHalt(memories, (m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(G, Uint8Array.from(hexBytes(g)));
    setup(m);
  });
  return ms;
}

/** Run `f` with RET_BRANCH set to `on`, restored after. */
function withRetBranch<T>(on: boolean, f: () => T): T {
  const old = setRetBranch(on);
  try { return f(); } finally { setRetBranch(old); }
}

// g: add eax,2 / ret
const PLAIN = '83 c0 02 c3';

test('a predicted RET into its own region function branches there, not through the dispatcher', () => {
  const [, on] = withRetBranch(true, () => run(PLAIN));
  const [, off] = withRetBranch(false, () => run(PLAIN));
  assert.equal(on.cpu.getGpr(0), 6000n);
  // off: every translated pass's RET names its return block to the dispatcher (~2000 named entries); on: they branch
  assert.ok(off.cpu.wasm!.stats.direct > 1500, `named dispatcher entries without: ${off.cpu.wasm!.stats.direct}`);
  assert.ok(on.cpu.wasm!.stats.direct < 100, `named dispatcher entries with RET_BRANCH: ${on.cpu.wasm!.stats.direct}`);
  assert.ok(on.cpu.wasm!.stats.intra > off.cpu.wasm!.stats.intra + 1500, `region branches: ${on.cpu.wasm!.stats.intra} vs ${off.cpu.wasm!.stats.intra}`);
});

test('a RET after its callee rewrote the return block goes to the new code', () => {
  // g: cmp ecx,1000 / jne 1f / mov byte [rdi],3 / 1: add eax,2 / ret, rdi = R + 2 (the add's immediate): from the
  // pass with ECX = 1000 on, R adds 3. The RET after the store must not branch into R's old translation (the store
  // into code ends the function and the dispatcher call, which empties the return-address stack; the branch also
  // requires the chain, which the invalidation clears).
  const [, w] = withRetBranch(true, () => run('81 f9 e8 03 00 00 75 03 c6 07 03 83 c0 02 c3', (m) => m.cpu.setGpr(7, BigInt(CODE + 12))));
  // (1000 passes of +1 +2, then 1000 of +3 +2)
  assert.equal(w.cpu.getGpr(0), 8000n);
});
