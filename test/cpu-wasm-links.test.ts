// Direct links (src/cpu/soft/wasm/translate.ts LINKS, runtime.ts WasmEngine.linkModule/linkWaiting): a static exit to
// a block of its own page whose translation was not installed when the exit was built gets a link slot in its module,
// which the runtime fills once a translation of the target (same address and page generation) is installed; the exit
// then tail-calls it instead of naming its dispatch entry to the dispatcher. Blocks are translated after a warm-up
// (hot threshold 3, synchronous compiles). Each program runs on the interpreter and in wasm, with links on and off:
// the same state, and with links on the exits counted as tail calls, not as dispatcher entries.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, type Machine, translatorTestFile, bothToHalt } from './support/soft-cpu.ts';
import { setAsync, setTail } from '../src/cpu/soft/wasm/runtime.ts';
import { setLinks } from '../src/cpu/soft/wasm/translate.ts';

const memories = translatorTestFile(3);
setTail(true);
setAsync(false);
// (exits to blocks of their own batch are links too: the second test)

/** Run `code` (at CODE) on both engines with LINKS `on`; returns wasm's machine. */
function both(code: number[], on: boolean, setup: (m: Machine) => void = () => {}): Machine {
  const old = setLinks(on);
  try {
    const ms = bothToHalt(memories, (m) => {
      m.mem.write(CODE, Uint8Array.from(code));
      setup(m);
    });
    return ms[1];
  } finally {
    setLinks(old);
  }
}

test('an exit to a block of its page translated later is linked when that block is installed', () => {
  // L's exit to B is built before B ever ran (B becomes hot after pass 500, in a batch of its own): a link slot,
  // filled when B is installed; from then on L tail-calls B (as B tail-calls L: ~600 of the last 999 passes, the rest
  // begin a dispatcher call or follow a return to JavaScript), where it went through the dispatcher.
  //   mov ecx,1500 / xor eax,eax / L: add eax,1 / cmp ecx,1000 / jb B / dec ecx / jnz L / hlt
  //   B: add eax,2 / dec ecx / jnz L / hlt
  const code = hexBytes('b9 dc 05 00 00 31 c0 83 c0 01 81 f9 e8 03 00 00 72 05 ff c9 75 f1 f4 83 c0 02 ff c9 75 e9 f4');
  const [off, on] = [false, true].map((x) => both(code, x));
  for (const w of [off, on]) assert.equal(w.cpu.getGpr(0), 501n + 999n * 3n);
  const a = off.cpu.wasm!, b = on.cpu.wasm!;
  assert.ok(b.linkStats.linked >= 1 && a.linkStats.linked === 0, `links filled: ${a.linkStats.linked} -> ${b.linkStats.linked}`);
  assert.ok(b.stats.tails - a.stats.tails >= 500, `tail calls: ${a.stats.tails} -> ${b.stats.tails}`);
  assert.ok(a.stats.direct - b.stats.direct >= 500, `dispatcher entries from a named entry: ${a.stats.direct} -> ${b.stats.direct}`);
});

/** The same program as cpu-wasm-batch-tail's: 43 blocks of one page in one loop, cut into several functions. */
function bigLoop(): number[] {
  const body: string[] = [];
  for (let k = 0; k < 40; k++) body.push('83 c0 01 eb 00');
  const rel = Array.from(new Uint8Array(Int32Array.of(7 - 223).buffer)).map((x) => x.toString(16).padStart(2, '0')).join(' ');
  return hexBytes(`b9 dc 05 00 00 31 c0 83 f9 64 75 03 c6 07 03 ${body.join(' ')} ff c9 0f 85 ${rel} f4`);
}
const LAST_IMM = CODE + 15 + 5 * 39 + 2;

test('exits between functions of one batch are linked at install; a write into the page leaves the linked chain', () => {
  // On the pass with ECX = 100 the loop writes into its own page (the last `add eax,1` becomes `add eax,3`): the
  // linked functions' page generation is gone, nothing enters them again, and the new code runs (exact state).
  const [off, on] = [false, true].map((x) => both(bigLoop(), x, (m) => m.cpu.setGpr(7, BigInt(LAST_IMM))));
  for (const w of [off, on]) assert.equal(w.cpu.getGpr(0), 1400n * 40n + 100n * 42n);
  const a = off.cpu.wasm!, b = on.cpu.wasm!;
  assert.ok(b.linkStats.atInstall >= 1, `links filled at install: ${b.linkStats.atInstall}`);
  assert.ok(b.stats.tails - a.stats.tails >= 900, `tail calls: ${a.stats.tails} -> ${b.stats.tails}`);
});

test('a linked target whose page is written runs its new bytes (the link is not followed at the old generation)', () => {
  // As the first program, but B rewrites its own immediate once (pass with ECX = 500: `add eax,2` -> `add eax,5`):
  // L's linked exit to B must run the new B (page generation changed: L and B are translated again).
  //   mov ecx,1500 / xor eax,eax / L: add eax,1 / cmp ecx,1000 / jb B / dec ecx / jnz L / hlt
  //   B: add eax,2 / cmp ecx,500 / jne 1f / mov byte [rdi],5 / 1: dec ecx / jnz L / hlt
  const code = hexBytes('b9 dc 05 00 00 31 c0 83 c0 01 81 f9 e8 03 00 00 72 05 ff c9 75 f1 f4 83 c0 02 81 f9 f4 01 00 00 75 03 c6 07 05 ff c9 75 de f4');
  const B_IMM = CODE + 0x17 + 2;
  const [off, on] = [false, true].map((x) => both(code, x, (m) => m.cpu.setGpr(7, BigInt(B_IMM))));
  // (passes ECX 1500..1000: +1; 999..500: +3; 499..1: +6)
  for (const w of [off, on]) assert.equal(w.cpu.getGpr(0), 501n + 500n * 3n + 499n * 6n);
  assert.ok(on.cpu.wasm!.linkStats.linked >= 2, `links filled: ${on.cpu.wasm!.linkStats.linked}`);
});
