// Exits to blocks translated in the same batch (src/cpu/soft/wasm/runtime.ts BATCH_TAIL, WasmEngine.planBatch):
// every function of a batch gets its function-table index before the module is built, so a static exit to a block
// of the same batch tail-calls that function inside the module, where it went through the dispatcher before (the target was not installed when its caller was built). Blocks are translated
// after a warm-up (hot threshold 3, synchronous compiles), so a loop's blocks become hot, and are translated,
// together. Each program runs on the interpreter and in wasm.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, DATA, type Machine, bothToHalt } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setAsync, setBatchTail, setTail } from '../src/cpu/soft/wasm/runtime.ts';
import { setIndJoin } from '../src/cpu/soft/wasm/translate.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import { setCountChains } from '../src/cpu/soft/wasm/translate.ts';

// (the chain counts these tests check are counted only when asked: translate.ts COUNT_CHAINS)
setCountChains(true);
setHotThreshold(0);
setJitThreshold(3);
// (what this file tests builds on tail calls: RINGZERO_WASM_TAIL, off by default)
setTail(true);
// (the predicted tail calls this file counts: IND_JOIN, RINGZERO_WASM_IND_JOIN=1, would branch inside the region instead)
setIndJoin(false);
setAsync(false);
setBatchTail(true);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

const G = CODE + 0x1000, G2 = CODE + 0x1800;

/** Run `code` (at CODE) with g (add eax,1 / ret) at G and g2 (add eax,3 / ret) at G2 on both engines; returns wasm's machine. */
function both(code: number[], setup: (m: Machine) => void): Machine {
  const ms = bothToHalt(memories, (m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(G, Uint8Array.from(hexBytes('83 c0 01 c3')));
    m.mem.write(G2, Uint8Array.from(hexBytes('83 c0 03 c3')));
    setup(m);
  });
  return ms[1];
}

/**
 * A loop of 43 blocks in one page, more than a region holds (translate.ts REGION_MAX: groupRegions cuts it), all
 * hot together: the exits between the parts go to functions of the same batch. On the pass with ECX = 100 the loop
 * writes into its own page (the last `add eax,1` becomes `add eax,3`): the chain must leave and run the new code.
 *   mov ecx,1500 / xor eax,eax / L: cmp ecx,100 / jne 1f / mov byte [rdi],3 / 1: 40 x (add eax,1 / jmp +0)
 *   dec ecx / jnz L (rel32) / hlt
 */
function bigLoop(): number[] {
  const body: string[] = [];
  for (let k = 0; k < 40; k++) body.push('83 c0 01 eb 00');
  return hexBytes(`b9 dc 05 00 00 31 c0 83 f9 64 75 03 c6 07 03 ${body.join(' ')} ff c9 0f 85 ${hexRel(CODE + 223, CODE + 7)} f4`);
}
const LAST_IMM = CODE + 15 + 5 * 39 + 2;

test('exits between the parts of a loop cut into several functions of one batch are tail calls, exact after a write into the page', () => {
  const w = both(bigLoop(), (m) => m.cpu.setGpr(7, BigInt(LAST_IMM)));
  assert.equal(w.cpu.getGpr(0), 1400n * 40n + 100n * 42n);
  // (the batch is built after ~400 passes; from then to pass 100 each pass tail-calls from one part into the next at
  // least once: ~1000; without the plan the parts were not installed when their callers were built, and each such
  // exit went through the dispatcher: 0)
  assert.ok(w.cpu.wasm!.stats.tails >= 900, `tail calls: ${w.cpu.wasm!.stats.tails}`);
});

test('with BATCH_TAIL off, the same exits go through the dispatcher (what the test above measures)', () => {
  const old = setBatchTail(false);
  try {
    const w = both(bigLoop(), (m) => m.cpu.setGpr(7, BigInt(LAST_IMM)));
    assert.equal(w.cpu.getGpr(0), 1400n * 40n + 100n * 42n);
    assert.ok(w.cpu.wasm!.stats.tails < 100, `tail calls: ${w.cpu.wasm!.stats.tails}`);
  } finally {
    setBatchTail(old);
  }
});

/** The 4 bytes (hex) of the rel32 of a jump whose next instruction is at `from`, to `to`. */
function hexRel(from: number, to: number): string {
  return Array.from(new Uint8Array(Int32Array.of(to - from).buffer), (x) => x.toString(16).padStart(2, '0')).join(' ');
}
