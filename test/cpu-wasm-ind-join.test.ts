// IND_JOIN (src/cpu/soft/wasm/translate.ts): an indirect JMP (a PLT slot's `jmp [GOT]`) joins the region of the
// block its last run in the JavaScript tier went to, and branches there while the pointer still points there and that
// page is unchanged (Translator.indBranch). With RET_BRANCH the callee's RET branches back too, so a call through the
// slot stays inside one function. Each program runs on the interpreter and in wasm (JIT threshold 3, synchronous
// compiles); the wasm run must match the interpreter's state.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, DATA, type Machine, translatorTestFile, bothToHalt } from './support/soft-cpu.ts';
import { setAsync } from '../src/cpu/soft/wasm/runtime.ts';
import { setRas, setRasUser, setRetBranch, setIndJoin } from '../src/cpu/soft/wasm/translate.ts';

const memories = translatorTestFile(3);
setRas(true);
setRasUser(true);
setAsync(false);
setRetBranch(true);

/** The slot P (`jmp [rbx]`, rbx = DATA holding G), g (add eax,1 / ret) and g2 (add eax,3 / ret), each in a page of its own. */
const P = CODE + 0x800, G = CODE + 0x1000, G2 = CODE + 0x2000;

/**
 * 1500 passes calling P; on the pass with ECX = 100 `mov [rbx],rsi` runs once:
 *   mov ecx,1500 / L: cmp ecx,100 / jne 1f / mov [rbx],rsi / 1: call P / dec ecx / jnz L / hlt
 */
function run(rsi: number, indJoin: boolean): Machine[] {
  const code = hexBytes('b9 dc 05 00 00 83 f9 64 75 03 48 89 33 e8 ee 07 00 00 ff c9 75 ef f4');
  const old = setIndJoin(indJoin);
  try {
    const ms = bothToHalt(memories, (m) => {
      m.mem.write(CODE, Uint8Array.from(code));
      m.mem.write(P, Uint8Array.from(hexBytes('ff 23')));
      m.mem.write(G, Uint8Array.from(hexBytes('83 c0 01 c3')));
      m.mem.write(G2, Uint8Array.from(hexBytes('83 c0 03 c3')));
      const got = new Uint8Array(8);
      new DataView(got.buffer).setBigUint64(0, BigInt(G), true);
      m.mem.write(DATA, got);
      m.cpu.setGpr(3, BigInt(DATA));
      m.cpu.setGpr(6, BigInt(rsi));
    });
    return ms;
  } finally {
    setIndJoin(old);
  }
}

test('a call through a PLT slot stays in its function: the slot\'s JMP and the callee\'s RET branch', () => {
  // (rsi = g: the store leaves the slot as it was)
  const [, on] = run(G, true);
  const [, off] = run(G, false);
  assert.equal(on.cpu.getGpr(0), 1500n);
  // off: each translated pass (~1100) leaves at the JMP (looked up) and at g's RET (named); on: both branch
  const [a, b] = [on.cpu.wasm!.stats, off.cpu.wasm!.stats];
  assert.ok(b.direct > 900, `named dispatcher entries without: ${b.direct}`);
  assert.ok(a.direct + a.tails < 50, `named entries and tail calls with IND_JOIN: ${a.direct + a.tails}`);
  assert.ok(a.intra > b.intra + 1800, `region branches: ${a.intra} with, ${b.intra} without`);
});

test('once the slot points elsewhere the JMP goes there', () => {
  // (rsi = g2: from the pass with ECX = 100 on, the slot jumps to g2: 1400 passes of 1, then 100 of 3)
  const [, w] = run(G2, true);
  assert.equal(w.cpu.getGpr(0), 1700n);
});
