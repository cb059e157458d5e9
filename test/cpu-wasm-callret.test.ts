// Guest CALL/RET as wasm call/return (src/cpu/soft/wasm/translate.ts CALLRET, Translator.callNest; runtime.ts
// dispatcherBody nested): a translated CALL rel32 calls its target's function and goes on at its return address when
// the callee comes back there. Each program runs on the interpreter and in wasm (final state compared), with the
// depth limit at 4, including the cases that must fall back: a callee that returns elsewhere, recursion deeper than
// the limit, a callee that rewrites the code at its return address, a callee that switches stacks.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, DATA, type Machine, bothToHalt } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setAsync, setBatchTail, setTail } from '../src/cpu/soft/wasm/runtime.ts';
import { setCallRet, setCallRetCount, setCallRetDepth, CALLRET_NEST } from '../src/cpu/soft/wasm/translate.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';

setHotThreshold(0);
setJitThreshold(3);
// (what this file tests builds on tail calls: RINGZERO_WASM_TAIL, off by default)
setTail(true);
setAsync(false);
setBatchTail(true);
setCallRetCount(true);
setCallRetDepth(4);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

const G = CODE + 0x1000;

/** Run `code` (at CODE) with `callee` at G on both engines (CALLRET `on` for wasm); returns wasm's machine. */
function both(code: string, callee: string, on = true, setup: (m: Machine) => void = () => {}): Machine {
  const old = setCallRet(on);
  try {
    const ms = bothToHalt(memories, (m) => {
      m.mem.write(CODE, Uint8Array.from(hexBytes(code)));
      m.mem.write(G, Uint8Array.from(hexBytes(callee)));
      setup(m);
    });
    return ms[1];
  } finally {
    setCallRet(old);
  }
}

/** The 4 bytes (hex) of the rel32 of a jump or call whose next instruction is at `from`, to `to`. */
function rel32(from: number, to: number): string {
  return Array.from(new Uint8Array(Int32Array.of(to - from).buffer), (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/** mov ecx,1500 / xor eax,eax / L: call G / <after> / dec ecx / jnz L / hlt (`after`: 2 or 3 bytes). */
function loop(after: string): string {
  const len = hexBytes(after).length;
  return `b9 dc 05 00 00 31 c0 e8 ${rel32(CODE + 12, G)} ${after} ff c9 75 ${(0x100 - (12 + len + 4 - 7)).toString(16)} f4`;
}

test('a CALL to a translated function is a wasm call, back at its return address', () => {
  // g: add eax,1 / ret
  const w = both(loop('83 c0 02'), '83 c0 01 c3');
  assert.equal(w.cpu.getGpr(0), 1500n * 3n);
  const [calls, hits] = w.cpu.wasm!.callRetCounts();
  assert.ok(calls >= 1000 && hits >= calls - 2, `calls ${calls}, back ${hits}`);
});

test('with CALLRET off, no CALL is a wasm call (what the test above measures)', () => {
  const w = both(loop('83 c0 02'), '83 c0 01 c3', false);
  assert.equal(w.cpu.getGpr(0), 1500n * 3n);
  assert.equal(w.cpu.wasm!.callRetCounts()[0], 0);
});

test('a callee that returns past its return address on every other pass: the caller does not go on there', () => {
  // g: add eax,1 / test cl,1 / jz 1f / add qword [rsp],2 / 1: ret; after the call: inc eax (2 bytes, skipped on odd ECX)
  const w = both(loop('ff c0'), '83 c0 01 f6 c1 01 74 05 48 83 04 24 02 c3');
  assert.equal(w.cpu.getGpr(0), 1500n + 750n);
  const [calls, hits, nests] = w.cpu.wasm!.callRetCounts();
  assert.ok(calls >= 500 && hits < calls && (nests > 0 || !CALLRET_NEST), `calls ${calls}, back ${hits}, nested dispatcher ${nests}`);
});

test('recursion deeper than the depth limit', () => {
  // caller: mov ecx,300 / xor eax,eax / L: mov edi,40 / call r / dec ecx / jnz L / hlt
  // r: test edi,edi / jz 1f / dec edi / call r / add eax,1 / 1: ret
  const code = `b9 2c 01 00 00 31 c0 bf 28 00 00 00 e8 ${rel32(CODE + 17, G)} ff c9 75 f2 f4`;
  const w = both(code, `85 ff 74 0a ff cf e8 ${rel32(G + 11, G)} 83 c0 01 c3`);
  assert.equal(w.cpu.getGpr(0), 300n * 40n);
  const [calls, hits] = w.cpu.wasm!.callRetCounts();
  assert.ok(calls >= 1000 && hits >= (CALLRET_NEST ? 1000 : 0), `calls ${calls}, back ${hits}`);
});

test('a callee that rewrites the instruction at its return address: the caller runs the new code', () => {
  // g: cmp ecx,100 / jne 1f / mov byte [rdi],3 / 1: ret, with RDI at the immediate of the caller's add eax,1
  const w = both(loop('83 c0 01'), '83 f9 64 75 03 c6 07 03 c3', true, (m) => m.cpu.setGpr(7, BigInt(CODE + 14)));
  assert.equal(w.cpu.getGpr(0), 1400n + 100n * 3n);
  assert.ok(w.cpu.wasm!.callRetCounts()[1] >= 500);
});

test('a callee that returns on another stack whose return address is the one pushed', () => {
  // g: add eax,1 / xchg rsp,rsi / ret: the caller's push went to one stack, the RET pops the same address from the
  // other (set up below); RSI then holds the first stack, and the next pass swaps back, each pass moving both by 8
  const w = both(loop('83 c0 02'), '83 c0 01 48 87 e6 c3', true, (m) => {
    const ret = new Uint8Array(8 * 1600);
    const v = new DataView(ret.buffer);
    for (let i = 0; i < 1600; i++) v.setBigUint64(8 * i, BigInt(CODE + 12), true);
    m.mem.write(DATA, ret);
    m.cpu.setGpr(6, BigInt(DATA + 8 * 800));
  });
  assert.equal(w.cpu.getGpr(0), 1500n * 3n);
});
