// Indirect exits predicted from the blocks that followed them before translation (src/cpu/soft/wasm/translate.ts
// Translator.predictExit): an indirect JMP through a pointer in memory (a PLT slot's `jmp [GOT]`) whose target was
// translated first tail-calls that translation while the pointer still points there and the target's page is
// unchanged, and goes through the dispatcher (so to the new code) once either changed. Each program runs on the
// interpreter and in wasm; translation happens after a warm-up (hot threshold 3, synchronous compiles), so the
// blocks know their successors when they are translated.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, DATA, type Machine, bothToHalt } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setAsync, setTail } from '../src/cpu/soft/wasm/runtime.ts';
import { setPredict, setRas, setRasUser, setIndJoin } from '../src/cpu/soft/wasm/translate.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import { setCountChains } from '../src/cpu/soft/wasm/translate.ts';

// (the chain counts these tests check are counted only when asked: translate.ts COUNT_CHAINS)
setCountChains(true);
setHotThreshold(0);
setJitThreshold(3);
// (what this file tests builds on tail calls: RINGZERO_WASM_TAIL, off by default)
setTail(true);
// (a RET's prediction is checked against the return-address stack's: RINGZERO_WASM_RAS)
setRas(true);
setRasUser(true);
setAsync(false);
// (off by default: translate.ts PREDICT)
setPredict(true);
// (the predicted tail calls this file counts: IND_JOIN, RINGZERO_WASM_IND_JOIN=1, would branch inside the region instead)
setIndJoin(false);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

const G = CODE + 0x1000, G2 = CODE + 0x1800;

/**
 * 500 calls of g (it gets translated), then 1500 passes calling P: `jmp [rbx]` (rbx = DATA, which holds g's address);
 * on the pass with ECX = 100 the 3-byte instruction `change` runs once. g: add eax,1 / ret; g2: add eax,3 / ret.
 *   mov ecx,500 / W: call g / dec ecx / jnz W / mov ecx,1500 / L: cmp ecx,100 / jne 1f / <change> / 1: call P
 *   dec ecx / jnz L / hlt / P: jmp [rbx]
 */
function run(change: string, setup: (m: Machine) => void): Machine[] {
  const code = hexBytes(`b9 f4 01 00 00 e8 f6 0f 00 00 ff c9 75 f7 b9 dc 05 00 00 83 f9 64 75 03 ${change} e8 05 00 00 00 ff c9 75 ef f4 ff 23`);
  const ms = bothToHalt(memories, (m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(G, Uint8Array.from(hexBytes('83 c0 01 c3')));
    m.mem.write(G2, Uint8Array.from(hexBytes('83 c0 03 c3')));
    const got = new Uint8Array(8);
    new DataView(got.buffer).setBigUint64(0, BigInt(G), true);
    m.mem.write(DATA, got);
    m.cpu.setGpr(3, BigInt(DATA));
    setup(m);
  });
  // (500 + 1400 passes through g's add eax,1, then 100 through an add eax,3)
  assert.equal(ms[1].cpu.getGpr(0), 2200n);
  return ms;
}

/** Dispatcher entries that went through the full path (fetch-TLB probe and table lookup). */
function fullLookups(m: Machine): number {
  const w = m.cpu.wasm!;
  return m.cpu.codeCache.stats.chainHits - w.stats.direct - w.stats.intra - w.stats.tails;
}

test('an indirect JMP tail-calls its predicted target until the pointer changes, then goes to the new target', () => {
  // the change: mov [rbx],rsi (rsi = g2): P's prediction (g) must fail from then on
  const [, w] = run('48 89 33', (m) => m.cpu.setGpr(6, BigInt(G2)));
  const s = w.cpu.wasm!.stats;
  // P is translated after ~400 of its runs; then each of the ~1000 passes to pass 100 tail-calls g from P
  assert.ok(s.tails >= 900, `tail calls: ${s.tails}`);
  // (without the prediction: 0 tail calls and ~2600 full lookups, every pass of P one of them)
  assert.ok(fullLookups(w) < 2000, `full dispatcher lookups: ${fullLookups(w)}`);
});

test('an indirect JMP stops tail-calling its predicted target once that target\'s page was rewritten', () => {
  // the change: mov byte [rdi],3 (rdi = g's immediate): g's old translation must not run again
  const [, w] = run('c6 07 03', (m) => m.cpu.setGpr(7, BigInt(G + 2)));
  assert.ok(w.cpu.wasm!.stats.tails >= 900, `tail calls: ${w.cpu.wasm!.stats.tails}`);
});

test('a RET that tail-calls its predicted return site leaves no stale dispatch entry for the exits after it', () => {
  // g's RET is predicted (the RIP its last run left to) and, through the return-address stack, also names its return
  // site's dispatch entry (S_NEXT); when it tail-calls the site, that name must go, or the next exit that names no
  // entry (here the indirect JMP, translated with the rest of the loop before anything was installed: no prediction)
  // sends the dispatcher back into the return site. g writes into its own page once (pass 500; in its own 64-byte
  // chunk, which RINGZERO_CODE_BYTES also sees as a write into code), so it is recorded and translated again after the
  // loop's blocks were installed, and then predicts its RET.
  //   mov ecx,1500 / W: call g / R: dec ecx / jz 9f / xchg rsi,rdx / jmp rdx / W2: call g / jmp R / 9: hlt
  //   g: cmp ecx,1000 / jne 1f / mov byte [rdi],0 / 1: add eax,1 / ret   (rdx = W2, rsi = W, rdi = g + 0x20)
  const code = hexBytes('b9 dc 05 00 00 e8 f6 0f 00 00 ff c9 74 0c 48 87 d6 ff e2 e8 e8 0f 00 00 eb f0 f4');
  const ms = bothToHalt(memories, (m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(G, Uint8Array.from(hexBytes('81 f9 e8 03 00 00 75 03 c6 07 00 83 c0 01 c3')));
    m.cpu.setGpr(2, BigInt(CODE + 0x13));
    m.cpu.setGpr(6, BigInt(CODE + 5));
    m.cpu.setGpr(7, BigInt(G + 0x20));
  });
  assert.equal(ms[1].cpu.getGpr(0), 1500n);
  assert.ok(ms[1].cpu.wasm!.stats.tails >= 200, `tail calls: ${ms[1].cpu.wasm!.stats.tails}`);
});
