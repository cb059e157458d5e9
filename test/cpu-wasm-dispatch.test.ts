// The wasm translator's dispatch path (src/cpu/soft/wasm/runtime.ts buildDispatcher, WasmEngine.enter/run, and
// SoftCpu.execBlock's entry straight from the dispatch table): a translated block is entered only while its page
// generation is current, a fault in a block chained after others leaves exact state, and an event raised in a
// chained block is seen at the next instruction boundary; blocks that go on past a conditional jump (side exits,
// SoftCpu.fellThrough) leave exactly where the interpreter goes. Each program runs on the interpreter and in wasm.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, DATA, interpreterOrWasmMachine, translatorTestFile, type Machine } from './support/soft-cpu.ts';
import { setJitThreshold, CHAIN_LIMIT } from '../src/cpu/soft/code-cache.ts';
import { SoftCpu, setSliceEnd } from '../src/cpu/soft/cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';
import { Form } from '../src/cpu/soft/fast-forms.ts';
import { dispatchEntry } from '../src/cpu/soft/wasm/layout.ts';
import { setTail } from '../src/cpu/soft/wasm/runtime.ts';
import { setCountChains, setRas, setRasUser } from '../src/cpu/soft/wasm/translate.ts';

type Mode = 'interpreter' | 'wasm';
const memories = translatorTestFile();
// (some tests here check that run(n) stops exactly at n: not with RINGZERO_WASM_SLICE_END, which may end a slice early)
setSliceEnd(false);
// (the return-address stack's tests below, and the chains the others count, are written with it on, in the user-half
// addresses the programs run at: RINGZERO_WASM_RAS, RINGZERO_WASM_RAS_USER)
setRas(true);
setRasUser(true);

const machine = (mode: Mode): Machine => interpreterOrWasmMachine(mode, memories);
/** The 4 bytes of a rel32 displacement (little endian) of a jump at `from` (its next instruction's address) to `to`. */
const rel32 = (from: number, to: number) => Array.from(new Uint8Array(Int32Array.of(to - from).buffer));

function state(m: Machine) {
  const c = m.cpu;
  return {
    regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)),
    flags: (c.getFlags() & (C.CF | C.PF | C.AF | C.ZF | C.SF | C.OF)).toString(16),
    rip: c.rip.toString(16),
    ripStart: c.ripStart.toString(16),
    instructions: c.instructions,
    cr2: c.cr2,
    fault: c.lastException,
    data: Buffer.from(m.mem.read(DATA, 64)).toString('hex'),
  };
}

test('a translated block whose page another block rewrote is not entered again (dispatch table and chains)', () => {
  // Block A stores into block B's immediate (same page) once, half-way: from then on B's new bytes must run, whether
  // B is reached from the chain or from SoftCpu.execBlock's dispatch-table probe (both compare the page generation).
  // (1500 + CHAIN_LIMIT passes of ~6 instructions: more than one dispatcher call, CHAIN_LIMIT instructions at most,
  // so execBlock enters A or B again.)
  //   mov ecx,passes / xor eax,eax / lea rdi,[rip+B+2] / A: dec ecx / jz 9f / cmp ecx,100 / jne B / mov byte [rdi],3
  //   jmp B / B: add eax,1 / jmp A / 9: hlt
  const passes = 1500 + CHAIN_LIMIT;
  const code = hexBytes('b9 00 00 00 00 31 c0 48 8d 3d 10 00 00 00 ff c9 74 0f 83 f9 64 75 05 c6 07 03 eb 00 83 c0 01 eb ed f4');
  code[1] = passes & 255; code[2] = (passes >> 8) & 255;
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode);
    m.mem.write(CODE, Uint8Array.from(code));
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
    return { m, s: state(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.equal(results[1].m.cpu.getGpr(0), BigInt(passes - 101) + 100n * 3n, 'the patched immediate runs from the pass after the store');
  const w = results[1].m.cpu.wasm!;
  assert.ok(w.stats.tableCalls >= 2, `calls from the dispatch table: ${w.stats.tableCalls}`);
  assert.ok(results[1].m.cpu.codeCache.stats.invalidations >= 1);
});

test('a page fault in a block chained after others leaves exact state (RIP, instruction count, earlier stores)', () => {
  // Four blocks chained through static exits, 300 passes; on the last pass the third block's load faults.
  //   mov ecx,300 / 1: add eax,1 / jmp 2f / 2: add ebx,eax / jmp 3f / 3: cmp ecx,1 / jne 4f / mov rsi,r8
  //   4: mov rdx,[rsi] / add edx,ecx / mov [rsi+8],rdx / jmp 5f / 5: dec ecx / jnz 1b / hlt
  const code = hexBytes('b9 2c 01 00 00 83 c0 01 eb 00 01 c3 eb 00 83 f9 01 75 03 4c 89 c6 48 8b 16 01 ca 48 89 56 08 eb 00 ff c9 75 e0 f4');
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode);
    m.cpu.setGpr(6, BigInt(DATA));
    m.cpu.setGpr(8, 0x7fff_0000_0000n); // not mapped (the identity map covers 1 GiB)
    m.mem.write(CODE, Uint8Array.from(code));
    const vector = runBlocksToHalt(m, 100_000);
    assert.equal(vector, C.EXC_PF);
    return { m, s: state(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.equal(results[1].s.rip, (CODE + 0x16).toString(16), 'RIP at the faulting load');
  const c = results[1].m.cpu;
  assert.ok(c.jitInstructions > 1000, `instructions run in wasm: ${c.jitInstructions}`);
  assert.ok(c.wasm!.stats.direct + c.wasm!.stats.tails > 500, `chained entries: ${c.wasm!.stats.direct} + ${c.wasm!.stats.tails} tail calls`);
});

/**
 * Run `code` from CODE to its HLT on `m`, with RDX pointing at an MMIO page whose device raises an event (as an
 * interrupt controller would) at every `every`th store, in at most `maxRuns` calls of cpu.run. Returns the stores
 * and where the CPU checked for events after the first store (offsets from CODE).
 */
function runWithMmioEvents(m: Machine, code: number[], every: number, maxRuns: number): { stores: number; seen: number[] } {
  const MMIO = 0x3000_0000;
  const cpu = m.cpu;
  let stores = 0;
  m.mmio.register(MMIO, 4096, { mmioRead: () => 0, mmioWrite: () => { stores++; if (stores % every === 0) cpu.notifyEvent(); } }, 'irq');
  cpu.setGpr(2, BigInt(MMIO));
  m.mem.write(CODE, Uint8Array.from(code));
  const seen: number[] = [];
  const check = cpu.checkEvents.bind(cpu);
  cpu.checkEvents = () => { if (stores > 0) seen.push(cpu.rip - CODE); return check(); };
  cpu.rip = CODE;
  for (let guard = 0; guard < maxRuns && !cpu.halted; guard++) cpu.run(100_000);
  assert.ok(cpu.halted);
  return { stores, seen };
}

test('an event raised by a store in a chained block is seen at the next instruction boundary', () => {
  // Each pass stores to an MMIO page whose device raises an event (as an interrupt controller would); the store is
  // in the third block of a chain. The event check must come right after the store, before the next instruction,
  // in translated code as in the interpreter.
  //   mov ecx,200 / 1: add eax,1 / jmp 2f / 2: add ebx,eax / jmp 3f / 3: mov [rdx],ecx / add edi,1 / jmp 4f
  //   4: dec ecx / jnz 1b / hlt
  const code = hexBytes('b9 c8 00 00 00 83 c0 01 eb 00 01 c3 eb 00 89 0a 83 c7 01 eb 00 ff c9 75 ec f4');
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode);
    const { stores, seen } = runWithMmioEvents(m, code, 1, 10_000);
    assert.equal(stores, 200);
    return { m, seen, s: state(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.deepEqual(results[1].seen, results[0].seen, 'event checks at the same boundaries');
  assert.deepEqual(results[1].seen, new Array(200).fill(0x10), 'each right after the store');
  const c = results[1].m.cpu;
  assert.ok(c.jitInstructions > 500, `instructions run in wasm: ${c.jitInstructions}`);
  assert.ok(c.wasm!.stats.direct + c.wasm!.stats.intra > 200, `chained entries: ${c.wasm!.stats.direct} + ${c.wasm!.stats.intra}`);
});

/** Blocks of the cache with a conditional jump before their last instruction (side exits). */
function sideExitBlocks(m: Machine): number {
  let n = 0;
  for (const b of m.cpu.codeCache.table) if (b !== undefined && b.entries.slice(0, -1).some((e) => e.form === Form.Jcc)) n++;
  return n;
}

// A loop whose top block was recorded falling through two conditional jumps (JE on odd/even passes, JB in the second
// half): each is a side exit taken on some passes, with instructions after them (an ALU op, a store) in the same
// block. At the pass after ECX = 600, RSI becomes R8, and the store after the two not-taken jumps uses it.
//   mov ecx,999 / xor eax,eax / xor ebx,ebx / jmp 1f / 1: test ecx,1 / jz 2f / add eax,ecx / cmp ecx,500 / jb 3f
//   add ebx,3 / mov [rsi],eax / 2: sub ebx,1 / 3: cmp ecx,600 / jne 4f / mov rsi,r8 / 4: dec ecx / jnz 1b / hlt
const SIDE_EXITS = hexBytes(`b9 e7 03 00 00 31 c0 31 db eb 00 f7 c1 01 00 00 00 74 0f 01 c8 81 f9 f4 01 00 00 72 08 83 c3 03
  89 06 83 eb 01 81 f9 58 02 00 00 75 03 4c 89 c6 ff c9 75 d7 f4`);

test('a block that goes on past conditional jumps leaves through them when they are taken, exactly', () => {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode);
    m.cpu.setGpr(6, BigInt(DATA));
    m.cpu.setGpr(8, BigInt(DATA + 64));
    m.mem.write(CODE, Uint8Array.from(SIDE_EXITS));
    assert.equal(runBlocksToHalt(m, 100_000), -1);
    return { m, s: state(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  const m = results[1].m;
  assert.ok(sideExitBlocks(m) >= 1, 'the top block of the loop has side exits');
  assert.ok(m.cpu.jitInstructions > 5000, `instructions run in wasm: ${m.cpu.jitInstructions}`);
});

test('a page fault after a side exit that was not taken leaves exact state', () => {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode);
    m.cpu.setGpr(6, BigInt(DATA));
    m.cpu.setGpr(8, 0x7fff_0000_0000n);
    m.mem.write(CODE, Uint8Array.from(SIDE_EXITS));
    assert.equal(runBlocksToHalt(m, 100_000), C.EXC_PF);
    return { m, s: state(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.equal(results[1].s.rip, (CODE + 0x20).toString(16), 'RIP at the store');
  assert.equal(results[1].m.cpu.getGpr(1), 599n);
  assert.ok(sideExitBlocks(results[1].m) >= 1);
  assert.ok(results[1].m.cpu.jitInstructions > 2000);
});

/**
 * L (CODE+5) and B (at `bPa`, in another page) alternate 3000 times, each jumping to the other's page, so neither
 * names its successor's entry (exitStatic: same page only) and the dispatcher looks the other up on every pass.
 * Runs it on the interpreter and in wasm, checks they agree and that it stayed in wasm: 3000 passes of 5
 * instructions are about 15 dispatcher calls of CHAIN_LIMIT (1024) instructions when both blocks are in the table,
 * about 3000 when one of them is not. Returns the wasm machine.
 *   CODE: mov ecx,3000 / L: add eax,1 / dec ecx / jz 9f / jmp B / 9: hlt      B: add ebx,eax / jmp L
 */
function alternateBetweenPages(bPa: number): Machine {
  const L_PA = CODE + 5;
  const code = [...hexBytes('b9 b8 0b 00 00 83 c0 01 ff c9 74 05 e9'), ...rel32(CODE + 17, bPa), 0xf4];
  const codeB = [...hexBytes('01 c3 e9'), ...rel32(bPa + 7, L_PA)];
  const m = agreeToHalt((m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(bPa, Uint8Array.from(codeB));
  });
  assert.equal(m.cpu.getGpr(3), 2999n * 3000n / 2n);
  assert.ok(m.cpu.jitInstructions > 14_000, `instructions run in wasm: ${m.cpu.jitInstructions}`);
  assert.ok(m.cpu.wasm!.stats.calls < 200, `calls into wasm: ${m.cpu.wasm!.stats.calls}`);
  return m;
}

test('two hot blocks whose slots collided in 2^16-entry tables are translated and both chain inside wasm', () => {
  // L (CODE+5) and B (0x1031134) had the same slot when the table had 2^16 entries ((pa ^ pa >>> 12) & 0xffff =
  // 0x105): the newer translation took it, and every entry of the other block left the dispatcher for JavaScript and
  // came back (one call into wasm per pass). Each jumps to the other's page, so neither names its successor's entry
  // (exitStatic: same page only): the dispatcher looks B and L up in the table on every pass. SoftCpu's block table
  // (code-cache.ts) had the same 2^16-slot hash: there the two evicted each other before either was translated, so
  // both were recorded again at every pass and never translated (no instruction ran in wasm).
  const L_PA = CODE + 5, B_PA = 0x1031134;
  const slot = (pa: number, bits: number) => (pa ^ (pa >>> 12)) & ((1 << bits) - 1);
  assert.equal(slot(L_PA, 16), slot(B_PA, 16), 'the two blocks collided in the old table');
  const m = alternateBetweenPages(B_PA);
  assert.equal(m.cpu.getGpr(0), 3000n);
});

test('two hot blocks of one block-table slot both reach the translation threshold (CodeCache.displaced)', () => {
  // L (CODE+5) and B (0x1001104) share a slot of SoftCpu's 2^18-entry block table ((pa ^ pa >>> 12) & 0x3ffff =
  // 0x105) and alternate, with a translation threshold of 20 runs: each recording pushed the other out of the slot,
  // which was then recorded anew at its next visit with its run count back at 0, so neither was ever translated
  // (no instruction in wasm, ~3000 returns to JavaScript). A pushed-out block is now found again in
  // CodeCache.displaced with its count.
  const L_PA = CODE + 5, B_PA = 0x1001104;
  const slot18 = (pa: number) => (pa ^ (pa >>> 12)) & 0x3ffff;
  assert.equal(slot18(L_PA), slot18(B_PA), 'one block-table slot');
  // (30000 passes of L and B, 5 instructions each: the batch waits up to WASM_BATCH_WAIT runs to be translated, then
  // ASYNC_WAIT visits for its module, as in a real run)
  //   CODE: mov ecx,30000 / L: add eax,1 / dec ecx / jz 9f / jmp B / 9: hlt      B: add ebx,eax / jmp L
  const code = [...hexBytes('b9 30 75 00 00 83 c0 01 ff c9 74 05 e9'), ...rel32(CODE + 17, B_PA), 0xf4];
  const codeB = [...hexBytes('01 c3 e9'), ...rel32(B_PA + 7, L_PA)];
  const m = withThreshold(20, () => agreeToHalt((m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(B_PA, Uint8Array.from(codeB));
  }, CODE, 1_000_000));
  assert.equal(m.cpu.getGpr(3), 29999n * 30000n / 2n);
  assert.ok(m.cpu.jitInstructions > 75_000, `instructions run in wasm: ${m.cpu.jitInstructions} of ~150000`);
  assert.ok(m.cpu.codeCache.stats.blocks <= 6, `blocks recorded: ${m.cpu.codeCache.stats.blocks}`);
});

test('two hot blocks that share a set of the 2-way dispatch table are both found there', () => {
  // L (CODE+5) and B (0x1021124) are in one DISPATCH set ((pa ^ pa >>> 12) mod 2^DISPATCH_BITS = 0x105: one slot of a
  // direct-mapped table of that size) but not in one slot of SoftCpu's 2^18-entry block table (which would keep them
  // from being translated at all). L and B alternate: each jumps to the other's page, so the dispatcher looks the
  // other up in the set on every pass (a lookup of way 0 only, or an install that drops the other's entry, sends one
  // of them back through JavaScript at every pass: ~3000 calls into wasm instead of ~15).
  const L_PA = CODE + 5, B_PA = 0x1021124;
  const set = (pa: number) => dispatchEntry(pa);
  const slot18 = (pa: number) => (pa ^ (pa >>> 12)) & 0x3ffff;
  assert.equal(set(L_PA), set(B_PA), 'one dispatch set');
  assert.notEqual(slot18(L_PA), slot18(B_PA), 'two block-table slots');
  const I = alternateBetweenPages(B_PA).cpu.wasm!.i32, s = dispatchEntry(L_PA) >> 2;
  assert.deepEqual([I[s], I[s + 4]].sort(), [L_PA, B_PA].sort(), 'both ways hold one of the two');
});

test('a translated block whose dispatch entry was dropped gets it back when JavaScript enters it', () => {
  // A third block of a 2-way set takes one of its ways (WasmEngine.setEntry), or the entry goes with a function the
  // block was translated into before: the block stays translated, but the dispatcher no longer finds it and returned
  // to JavaScript before it on every pass (Linux: __alloc_pages+0x162 and __switch_to+0x292, ~2.5 times per context
  // switch). WasmEngine.exec puts the entry back when JavaScript runs the block.
  //   CODE: mov ecx,3000 / L: add eax,1 / dec ecx / jz 9f / jmp rdx (B: looked up on every pass) / 9: hlt
  //   B:    add ebx,eax / jmp L
  const L_PA = CODE + 5, B_PA = 0x1021124;
  const code = hexBytes('b9 b8 0b 00 00 83 c0 01 ff c9 74 02 ff e2 f4');
  const codeB = [...hexBytes('01 c3 e9'), ...rel32(B_PA + 7, L_PA)];
  const m = agreeToHalt((m) => {
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(B_PA, Uint8Array.from(codeB));
    m.cpu.setGpr(2, BigInt(B_PA));
  });
  const c = m.cpu, w = c.wasm!, I = w.i32, s = dispatchEntry(B_PA) >> 2;
  assert.equal(c.getGpr(3), 2999n * 3000n / 2n);
  assert.ok(I[s] === B_PA || I[s + 4] === B_PA, 'B has a dispatch entry');
  // B's entry gone, as a third block's install would drop it; the loop again
  for (let e = s; e <= s + 4; e += 4) if (I[e] === B_PA) I.fill(0, e, e + 4);
  const calls = w.stats.calls;
  c.setGpr(3, 0n);
  assert.equal(runBlocksToHalt(m, 100_000), -1);
  assert.equal(c.getGpr(3), 13_495_500n, 'EBX: EAX 3001..5999 added (EAX goes on from the first loop)');
  assert.ok(I[s] === B_PA || I[s + 4] === B_PA, 'B has its dispatch entry back');
  // (without: a return to JavaScript before B on each of the 3000 passes)
  assert.ok(w.stats.calls - calls < 100, `calls into wasm: ${w.stats.calls - calls}`);
});

// ---- regions (translate.ts Region): blocks of one page translated in one batch that branch to each other are one
// wasm function; a static exit to another of its blocks is a branch inside it. The tests below let blocks get hot
// and queue together (translation threshold 20: a batch holds every block of the loop), then compare with the
// interpreter.

/** Run `fn` with the translation threshold at `hot` (blocks are batched as in a real run), then back to 0. */
function withThreshold<T>(hot: number, fn: () => T): T {
  setJitThreshold(hot);
  try { return fn(); } finally { setJitThreshold(0); }
}

/** Regions the engine built and the branches between their blocks. */
function regionStats(m: Machine): { regions: number; intra: number } {
  const s = m.cpu.wasm!.stats;
  return { regions: s.regions, intra: s.intra };
}

// Three blocks of one page in a loop (1 -> 2 -> 3 -> 1), 20000 passes; on the last pass (ECX = 1) RSI becomes R8
// (CMOVE in the second block) and the load of the third block, entered from the second inside the region, faults
// when R8 is an unmapped page (the fault test).
//   mov ecx,20000 / 1: add eax,1 / jmp 2f / 2: add ebx,eax / cmp ecx,1 / cmove rsi,r8 / jmp 3f
//   3: mov rdx,[rsi] / add edx,ecx / mov [rsi+8],rdx / dec ecx / jnz 1b / hlt
const REGION_LOOP = hexBytes('b9 20 4e 00 00 83 c0 01 eb 00 01 c3 83 f9 01 49 0f 44 f0 eb 00 48 8b 16 01 ca 48 89 56 08 ff c9 75 e3 f4');

/** REGION_LOOP on the interpreter and on wasm, their states compared; returns the wasm machine and its region stats. */
function runRegionLoop() {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => withThreshold(20, () => {
    const m = machine(mode);
    m.cpu.setGpr(6, BigInt(DATA));
    m.cpu.setGpr(8, BigInt(DATA + 32));
    m.mem.write(CODE, Uint8Array.from(REGION_LOOP));
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
    return { m, s: state(m) };
  }));
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  const m = results[1].m;
  return { m, r: regionStats(m) };
}

test('a region of three blocks runs its loop inside one function, exactly', () => {
  const { m, r } = runRegionLoop();
  assert.ok(r.regions >= 1, `regions: ${r.regions}`);
  // most passes are two branches inside the region (1 -> 2 -> 3) and one back to its first block
  assert.ok(r.intra > 20_000, `entries between the region's blocks: ${r.intra}`);
  assert.ok(m.cpu.jitInstructions > 100_000, `instructions run in wasm: ${m.cpu.jitInstructions}`);
});

test('uncounted (COUNT_CHAINS off, the default): the same loop, exactly, with no branch counted', () => {
  const old = setCountChains(false);
  try {
    const { m, r } = runRegionLoop();
    assert.ok(r.regions >= 1, `regions: ${r.regions}`);
    assert.equal(r.intra, 0, 'no branch between the region\'s blocks counted');
    assert.equal(m.cpu.wasm!.stats.tails, 0);
    assert.ok(m.cpu.jitInstructions > 100_000, `instructions run in wasm: ${m.cpu.jitInstructions}`);
  } finally {
    setCountChains(old);
  }
});

test('a page fault in the third block of a region leaves exact state (RIP, instruction count, earlier stores)', () => {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => withThreshold(20, () => {
    const m = machine(mode);
    m.cpu.setGpr(6, BigInt(DATA));
    m.cpu.setGpr(8, 0x7fff_0000_0000n);
    m.mem.write(CODE, Uint8Array.from(REGION_LOOP));
    assert.equal(runBlocksToHalt(m, 1_000_000), C.EXC_PF);
    return { m, s: state(m) };
  }));
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.equal(results[1].s.rip, (CODE + 0x15).toString(16), 'RIP at the faulting load');
  assert.ok(regionStats(results[1].m).intra > 20_000);
});

test('a region stops exactly at the budget (run(n) with small n) and at CHAIN_LIMIT', () => {
  // The same loop under cpu.run with budgets of 1 to 61 instructions: after every run the instruction count and
  // RIP are the interpreter's (a region that ran a block past its budget, or counted one wrongly, fails this).
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => withThreshold(20, () => {
    const m = machine(mode);
    const cpu = m.cpu;
    cpu.setGpr(6, BigInt(DATA));
    cpu.setGpr(8, BigInt(DATA + 32));
    m.mem.write(CODE, Uint8Array.from(REGION_LOOP));
    cpu.rip = CODE;
    const trace: string[] = [];
    for (let i = 0; i < 100_000 && !cpu.halted; i++) {
      cpu.run(1 + (i * 7) % 61);
      trace.push(`${cpu.instructions}:${cpu.rip.toString(16)}`);
    }
    // and long runs (the chain stops at CHAIN_LIMIT instructions per call, inside regions too)
    return { m, trace, s: state(m) };
  }));
  assert.ok(results[0].m.cpu.halted);
  assert.deepEqual(results[1].trace, results[0].trace, 'same instruction counts and RIPs after every run');
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.ok(regionStats(results[1].m).intra > 10_000, `entries between the region's blocks: ${regionStats(results[1].m).intra}`);
});

test('a region whose page one of its blocks rewrites runs the new code from the next instruction on', () => {
  // As the first test of this file, with 20000 passes and the store at ECX = 100: A and B are one region (A's
  // JNE/JMP to B, B's JMP back to A); the store into B's immediate must stop the region (its page's generation
  // changes: S_CHAIN), and B's new bytes run from the next pass.
  //   mov ecx,20000 / xor eax,eax / lea rdi,[rip+B+2] / A: dec ecx / jz 9f / cmp ecx,100 / jne B / mov byte [rdi],3
  //   jmp B / B: add eax,1 / jmp A / 9: hlt
  const code = hexBytes('b9 20 4e 00 00 31 c0 48 8d 3d 10 00 00 00 ff c9 74 0f 83 f9 64 75 05 c6 07 03 eb 00 83 c0 01 eb ed f4');
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => withThreshold(20, () => {
    const m = machine(mode);
    m.mem.write(CODE, Uint8Array.from(code));
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
    return { m, s: state(m) };
  }));
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.equal(results[1].m.cpu.getGpr(0), 19899n + 100n * 3n, 'the patched immediate runs from the pass after the store');
  const r = regionStats(results[1].m);
  assert.ok(r.regions >= 1 && r.intra > 10_000, `regions ${r.regions}, entries between their blocks ${r.intra}`);
  assert.ok(results[1].m.cpu.codeCache.stats.invalidations >= 1);
});

test('an event raised by a store in a region block is seen at the next instruction boundary', () => {
  // The MMIO test above inside one region: the store is the last of the third block's 32 instructions (MAX_BLOCK),
  // which falls through into the fourth: that static exit must not branch on inside the region (S_CHAIN).
  //   mov ecx,20000 / 1: add eax,1 / jmp 2f / 2: add ebx,eax / jmp 3f / 3: 31 x add edi,1 / mov [rdx],ecx
  //   4: dec ecx / jnz 1b / hlt
  const code = [...hexBytes('b9 20 4e 00 00 83 c0 01 eb 00 01 c3 eb 00'), ...new Array(31).fill(hexBytes('83 c7 01')).flat(),
    ...hexBytes('89 0a ff c9 75 94 f4')];
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => withThreshold(20, () => {
    const m = machine(mode);
    const { stores, seen } = runWithMmioEvents(m, code, 3, 100_000);
    assert.equal(stores, 20000);
    return { m, seen, s: state(m) };
  }));
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  assert.deepEqual(results[1].seen, results[0].seen, 'event checks at the same boundaries');
  assert.equal(results[1].seen.length, Math.floor(20000 / 3));
  assert.ok(results[1].seen.every((at) => at === 0x6d), 'each right after the store');
  const r = regionStats(results[1].m);
  assert.ok(r.regions >= 1 && r.intra > 10_000, `regions ${r.regions}, entries between their blocks ${r.intra}`);
});

// ---- the return-address stack (translate.ts Translator.rasPush/rasPop): a RET names its predicted successor's
// dispatch entry only when the popped address is the one its CALL pushed, within one dispatcher call and mapping.

/**
 * Run the program `setup` writes (from `start`, to its HLT) on the interpreter and in wasm, check they agree and that
 * wasm ran most of it; returns the wasm machine.
 */
function agreeToHalt(setup: (m: Machine) => void, start = CODE, steps = 100_000): Machine {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode);
    setup(m);
    assert.equal(runBlocksToHalt(m, steps, start), -1);
    return { m, s: state(m) };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  const w = results[1].m;
  assert.ok(w.cpu.jitInstructions > 1000, `instructions run in wasm: ${w.cpu.jitInstructions}`);
  return w;
}

/** Dispatcher entries that went through the full path (fetch-TLB probe and table lookup) in machine `m`. */
function fullLookups(m: Machine): number {
  const w = m.cpu.wasm!;
  return m.cpu.codeCache.stats.chainHits - w.stats.direct - w.stats.intra - w.stats.tails;
}

test('CALL/RET pairs chain through the return-address stack; a RET whose return address was rewritten goes there', () => {
  // f adds 5 to its return address on the stack for the last 100 passes: the RET then lands on `add eax,5`, not on
  // the block its CALL predicted.
  //   mov ecx,300 / xor eax,eax / L: call f / add eax,1 / jmp M / add eax,5 / M: dec ecx / jnz L / hlt
  //   f: cmp ecx,100 / ja 1f / add qword [rsp],5 / 1: ret
  const code = hexBytes('b9 2c 01 00 00 31 c0 e8 0d 00 00 00 83 c0 01 eb 03 83 c0 05 ff c9 75 ef f4 83 f9 64 77 05 48 83 04 24 05 c3');
  const w = agreeToHalt((m) => {
    m.mem.write(CODE, Uint8Array.from(code));
  });
  assert.equal(w.cpu.getGpr(0), 200n + 100n * 5n);
  // (every RET of the first 200 passes is predicted: ~300 RETs would otherwise go through the full lookup)
  assert.ok(fullLookups(w) < 150, `full dispatcher lookups: ${fullLookups(w)}`);
});

test('RAS_USER off: user code (lower-half addresses, as CODE) keeps no return-address stack; the RETs are looked up', () => {
  const code = hexBytes('b9 2c 01 00 00 31 c0 e8 0d 00 00 00 83 c0 01 eb 03 83 c0 05 ff c9 75 ef f4 83 f9 64 77 05 48 83 04 24 05 c3');
  const old = setRasUser(false);
  try {
    const w = agreeToHalt((m) => { m.mem.write(CODE, Uint8Array.from(code)); });
    assert.equal(w.cpu.getGpr(0), 200n + 100n * 5n);
    // (every one of the 300 RETs goes through the full lookup, which the stack spared 200 of above)
    assert.ok(fullLookups(w) >= 290, `full dispatcher lookups: ${fullLookups(w)}`);
  } finally {
    setRasUser(old);
  }
});

test('recursion deeper than the return-address stack (40 CALLs, RAS_N 16 entries, the ring wraps): exact', () => {
  //   mov ecx,300 / xor eax,eax / L: mov edi,40 / call r / dec ecx / jnz L / hlt
  //   r: test edi,edi / jz 1f / dec edi / call r / add eax,1 / 1: ret
  // (the outer RETs pop entries that deeper CALLs overwrote: predictions for other return addresses, not taken)
  const code = hexBytes('b9 2c 01 00 00 31 c0 bf 28 00 00 00 e8 05 00 00 00 ff c9 75 f2 f4 85 ff 74 0a ff cf e8 f5 ff ff ff 83 c0 01 c3');
  const w = agreeToHalt((m) => { m.mem.write(CODE, Uint8Array.from(code)); }, CODE, 1_000_000);
  assert.equal(w.cpu.getGpr(0), 300n * 40n);
});

/**
 * The remapping tests run at CODE2 (the 2 MiB page 8, away from the page tables and the stack); ALT (page 4) holds
 * the same code with `add eax,2` after the CALL.
 */
const CODE2 = 0x1000000, ALT = 0x800000;
function remapCode(m: Machine, code: number[]): void {
  m.mem.write(CODE2, Uint8Array.from(code));
  const alt = code.slice();
  alt[0xe] = 2;
  m.mem.write(ALT, Uint8Array.from(alt));
}

test('a RET after a CR3 load that maps its return address elsewhere returns to the new mapping (every pass)', () => {
  // A second set of page tables maps CODE2's 2 MiB page to ALT; f switches between the two at every
  // call, between the CALL (which predicted the physical block after it) and its RET: pass 1 returns into ALT's copy
  // (add eax,2), pass 2 into CODE2's, ...
  //   mov ecx,300 / xor eax,eax / L: call f / add eax,1 / dec ecx / jnz L / hlt / f: mov cr3,rbx / xchg rbx,rbp / ret
  const code = hexBytes('b9 2c 01 00 00 31 c0 e8 08 00 00 00 83 c0 01 ff c9 75 f4 f4 0f 22 db 48 87 eb c3');
  const w = agreeToHalt((m) => {
    const PT2 = 0x20000;
    for (let k = 0; k < 3; k++) m.mem.write(PT2 + k * 4096, m.mem.read(0x10000 + k * 4096, 4096));
    const link = (at: number, to: number) => {
      const old = m.mem.read(at, 8), dv = new DataView(new ArrayBuffer(8));
      dv.setUint32(0, (to & ~0xfff) | ((old[0] | (old[1] << 8)) & 0xfff), true);
      m.mem.write(at, new Uint8Array(dv.buffer));
    };
    link(PT2, PT2 + 4096); link(PT2 + 4096, PT2 + 8192); link(PT2 + 8192 + 8 * 8, ALT);
    m.cpu.setGpr(3, BigInt(PT2));
    m.cpu.setGpr(5, BigInt(m.cpu.cr3));
    remapCode(m, code);
  }, CODE2);
  assert.equal(w.cpu.getGpr(0), 150n * 2n + 150n * 1n, 'each RET runs the code its new mapping holds');
});

test('a RET after its return address page was remapped and INVLPG returns to the new mapping (every pass)', () => {
  // f, in the next 2 MiB page (its own translation stays: the RET is entered through the fetch TLB as usual), swaps
  // the page-directory entry of CODE2's page between CODE2 and ALT and invalidates it at every call: the RET's
  // prediction, made by the CALL under the old mapping, must be dropped (SoftCpu.invalidateFetch).
  //   mov ecx,300 / xor eax,eax / L: call f / add eax,1 / dec ecx / jnz L / hlt
  //   f (CODE2 + 2 MiB): mov [rsi],rdx / xchg rdx,rbp / invlpg [rdi] / ret
  const code = hexBytes('b9 2c 01 00 00 31 c0 e8 f4 ff 1f 00 83 c0 01 ff c9 75 f4 f4');
  const f = hexBytes('48 89 16 48 87 ea 0f 01 3f c3');
  const w = agreeToHalt((m) => {
    const PDE = 0x10000 + 8192 + 8 * 8, old = m.mem.read(PDE, 8), low = (old[0] | (old[1] << 8)) & 0xfff;
    m.cpu.setGpr(6, BigInt(PDE));
    m.cpu.setGpr(2, BigInt(ALT | low));
    m.cpu.setGpr(5, BigInt(CODE2 | low));
    m.cpu.setGpr(7, BigInt(CODE2));
    remapCode(m, code);
    m.mem.write(CODE2 + 0x200000, Uint8Array.from(f));
  }, CODE2);
  assert.equal(w.cpu.getGpr(0), 150n * 2n + 150n * 1n, 'each RET runs the code its new mapping holds');
});

// ---- static exits to another page: the dispatcher finds the target through the fetch TLB (this mapping) and the
// dispatch table (this page generation), never from what an earlier entry found.

/** g's address (CODE2 + 4 MiB) in the programs of swapsCalleePage. */
const G = CODE2 + 0x400000;

/**
 * The set-up of the two tests below whose loop calls g (at G) and f (CODE2 + 2 MiB) each pass, f swapping the
 * page-directory entry of g's 2 MiB page between g (add eax,1) and ALT's copy (add eax,2) every fourth pass and
 * invalidating it; `movEcx` is the loop count's `mov ecx, imm32`.
 */
function swapsCalleePage(movEcx: string): (m: Machine) => void {
  const code = hexBytes(`${movEcx} 31 c0 e8 f4 ff 3f 00 e8 ef ff 1f 00 ff c9 75 f2 f4`);
  const f = hexBytes('f6 c1 03 75 09 48 89 16 48 87 ea 0f 01 3f c3');
  const g = hexBytes('83 c0 01 c3'), galt = hexBytes('83 c0 02 c3');
  return (m) => {
    const PDE = 0x10000 + 8192 + 10 * 8, old = m.mem.read(PDE, 8), low = (old[0] | (old[1] << 8)) & 0xfff;
    m.cpu.setGpr(6, BigInt(PDE));
    m.cpu.setGpr(2, BigInt(ALT | low));
    m.cpu.setGpr(5, BigInt(G | low));
    m.cpu.setGpr(7, BigInt(G));
    m.mem.write(CODE2, Uint8Array.from(code));
    m.mem.write(CODE2 + 0x200000, Uint8Array.from(f));
    m.mem.write(G, Uint8Array.from(g));
    m.mem.write(ALT, Uint8Array.from(galt));
  };
}

test('a CALL into another page whose mapping changed (page-directory entry rewritten, INVLPG) enters the new code', () => {
  // g (CODE2 + 4 MiB) is called every pass; every fourth pass f (CODE2 + 2 MiB) then swaps the page-directory entry of
  // g's 2 MiB page between g's and ALT (add eax,2 there) and invalidates it (between two swaps the dispatcher finds g
  // through the fetch TLB): every call of g must run what its page maps now.
  //   mov ecx,300 / xor eax,eax / L: call g / call f / dec ecx / jnz L / hlt
  //   f: test cl,3 / jnz 1f / mov [rsi],rdx / xchg rdx,rbp / invlpg [rdi] / 1: ret; g: add eax,1 / ret
  const w = agreeToHalt(swapsCalleePage('b9 2c 01 00 00'), CODE2);
  // (passes 300..297 run g, 296..293 ALT's copy, ...: 151 passes of one, 149 of two)
  assert.equal(w.cpu.getGpr(0), 451n, 'each call runs the code g\'s page maps then');
});

test('a CALL into another page runs the new code once that page was rewritten', () => {
  // On the pass with ECX = 100 the loop rewrites g's immediate (another page): the dispatcher must not enter g's old
  // translation (its page generation changed).
  //   mov ecx,300 / xor eax,eax / L: cmp ecx,100 / jne 1f / mov byte [rdi],3 / 1: call g / dec ecx / jnz L / hlt
  //   g (CODE + 0x1000): add eax,1 / ret
  const code = hexBytes('b9 2c 01 00 00 31 c0 83 f9 64 75 03 c6 07 03 e8 ec 0f 00 00 ff c9 75 ef f4');
  const w = agreeToHalt((m) => {
    m.cpu.setGpr(7, BigInt(CODE + 0x1002));
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(CODE + 0x1000, Uint8Array.from(hexBytes('83 c0 01 c3')));
  });
  assert.equal(w.cpu.getGpr(0), 200n + 100n * 3n);
});

test('a static exit tail-calls a translation of another page until that page is rewritten, then runs the new code', () => {
  // g (CODE + 0x1000) runs, and is translated, before the block `1: call g` (threshold 0: blocks are translated at
  // their first run), whose CALL then tail-calls g's translation (translate.ts Translator.tailExit). On the pass with
  // ECX = 100 the loop rewrites g's immediate: the tail call's check of g's page generation must fail from then on.
  //   mov ecx,300 / xor eax,eax / call g / L: cmp ecx,100 / jne 1f / mov byte [rdi],3 / 1: call g / dec ecx / jnz L
  //   hlt; g: add eax,1 / ret
  const code = hexBytes('b9 2c 01 00 00 31 c0 e8 f4 0f 00 00 83 f9 64 75 03 c6 07 03 e8 e7 0f 00 00 ff c9 75 ef f4');
  const old = setTail(true);
  let w: Machine;
  try {
    w = agreeToHalt((m) => {
      m.cpu.setGpr(7, BigInt(CODE + 0x1002));
      m.mem.write(CODE, Uint8Array.from(code));
      m.mem.write(CODE + 0x1000, Uint8Array.from(hexBytes('83 c0 01 c3')));
    });
  } finally {
    setTail(old);
  }
  assert.equal(w.cpu.getGpr(0), 1n + 200n + 100n * 3n);
  assert.ok(w.cpu.wasm!.stats.tails >= 150, `tail calls: ${w.cpu.wasm!.stats.tails}`);
});

// ---- privilege changes inside a chain (runtime.ts WasmEngine.replay, layout.ts S_USER): a replayed SYSCALL or
// SYSRET in 64-bit mode ends its block but not the dispatcher's call, which goes on in the new privilege's
// fetch-TLB bank; a lone SYSRETQ block is translated (translate.ts blockOffsets).

test('a SYSCALL/SYSRET loop between user code and a kernel page stays in wasm, exactly', () => {
  // STAR: SYSCALL CS 0x10, SYSRET CS 0x33 / SS 0x2b; LSTAR = K (another page); SFMASK clears IF. The program starts
  // at CPL 0 with SYSRETQ into USER (RCX), IF set from R11; 3000 system calls, the kernel side adding EAX to EBX.
  //   CODE: sysretq
  //   USER: add eax,1 / dec r12 / syscall / jmp USER
  //   K: add ebx,eax / test r12,r12 / jz 1f / sysretq / 1: hlt
  const K = CODE + 0x1000, USER = CODE + 0x2000;
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = machine(mode), cpu = m.cpu;
    cpu.msrs.set(0xc0000081, (0x23n << 48n) | (0x10n << 32n)); // STAR
    cpu.msrs.set(0xc0000082, BigInt(K)); // LSTAR
    cpu.msrs.set(0xc0000084, BigInt(C.IF)); // SFMASK
    m.mem.write(CODE, Uint8Array.from(hexBytes('48 0f 07')));
    m.mem.write(USER, Uint8Array.from(hexBytes('83 c0 01 49 ff cc 0f 05 eb f6')));
    m.mem.write(K, Uint8Array.from(hexBytes('01 c3 4d 85 e4 74 03 48 0f 07 f4')));
    cpu.setGpr(1, BigInt(USER));
    cpu.setGpr(11, BigInt(C.IF | C.FLAGS_FIXED));
    cpu.setGpr(12, 3000n);
    cpu.rip = CODE;
    // through the run loop (its event checks): IF comes back at every SYSRET, with no interrupt controller to ask
    for (let guard = 0; guard < 10_000 && !cpu.halted; guard++) cpu.run(100_000);
    assert.ok(cpu.halted);
    return { m, s: { ...state(m), cpl: cpu.cpl, cs: cpu.segSel[C.CS] } };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  const c = results[1].m.cpu;
  assert.equal(c.getGpr(3), 3000n * 3001n / 2n);
  assert.equal(c.cpl, 0);
  // 3000 passes of 8 instructions: ~24 calls of CHAIN_LIMIT instructions when the chain goes on across the
  // privilege changes, about two per pass when a SYSCALL or SYSRET ends it
  assert.ok(c.jitInstructions > 20_000, `instructions run in wasm: ${c.jitInstructions}`);
  assert.ok(c.wasm!.stats.calls < 300, `calls into wasm: ${c.wasm!.stats.calls}`);
});

// ---- regions spanning pages (translate.ts Translator.crossBranch): a static exit into another page branches to the
// region's block queued at the target's linear address, after checking that block's page generation and that the
// fetch TLB maps the target to its physical page; else it leaves through the dispatcher. Threshold 20 (withThreshold)
// so that the blocks of each loop are translated in one batch.

/** Whether the translated blocks at physical addresses `a` and `b` are in one function (one region). */
function oneFunction(m: Machine, a: number, b: number): boolean {
  const t = m.cpu.codeCache.translated, wa = t.get(a * 16 + 8)?.wasm, wb = t.get(b * 16 + 8)?.wasm;
  return wa != null && wb != null && ((wa.idx ^ wb.idx) & ((1 << 20) - 1)) === 0;
}

test('a region spanning two pages branches between them inside one function, exactly', () => {
  // L (CODE + 7) jumps to B in the next page, B loops back to L, 20000 passes.
  //   mov ecx,20000 / xor eax,eax / L: add eax,1 / jmp B      B (CODE + 0x1007): add ebx,eax / dec ecx / jnz L / hlt
  const B = CODE + 0x1007;
  const w = withThreshold(20, () => agreeToHalt((m) => {
    m.mem.write(CODE, Uint8Array.from(hexBytes('b9 20 4e 00 00 31 c0 83 c0 01 e9 f8 0f 00 00')));
    m.mem.write(B, Uint8Array.from(hexBytes('01 c3 ff c9 0f 85 f6 ef ff ff f4')));
  }, CODE, 1_000_000));
  assert.equal(w.cpu.getGpr(3), 20000n * 20001n / 2n);
  assert.ok(oneFunction(w, CODE + 7, B), 'L and B are one region');
  // (every pass is two branches between the pages once the region is installed)
  assert.ok(regionStats(w).intra > 20_000, `entries between the region's blocks: ${regionStats(w).intra}`);
});

test('a branch of a region into another page whose mapping changed (PDE rewritten, INVLPG) runs the new code', () => {
  // The test of the same name for static exits above, 20000 passes: the CALL to g and g (or ALT's copy) are one
  // region, and each fourth pass f swaps g's 2 MiB page between g and ALT's copy (add eax,2): the region's branch
  // must check the fetch TLB, and leave through the dispatcher (to the other translation) when it no longer maps
  // its target's page.
  //   mov ecx,20000 / xor eax,eax / L: call g / call f / dec ecx / jnz L / hlt
  //   f: test cl,3 / jnz 1f / mov [rsi],rdx / xchg rdx,rbp / invlpg [rdi] / 1: ret; g: add eax,1 / ret
  const w = withThreshold(20, () => agreeToHalt(swapsCalleePage('b9 20 4e 00 00'), CODE2, 1_000_000));
  // (pass 20000 runs g; then blocks of four passes alternate ALT, g, ... down to the three passes 3..1 (g):
  // 10000 passes of each)
  assert.equal(w.cpu.getGpr(0), 10000n + 2n * 10000n, 'each call runs the code g\'s page maps then');
  // (g and ALT's copy were both queued at g's linear address: the region holds one of them)
  assert.ok(oneFunction(w, CODE2 + 7, G) || oneFunction(w, CODE2 + 7, ALT), 'the CALL to g and g (or its copy) are one region');
});

test('a branch of a region into another page runs the new code once that page was rewritten', () => {
  // On the pass with ECX = 100 the loop rewrites g's immediate (the next page; the CALL and g are one region): the
  // region's branch must see g's page generation change.
  //   mov ecx,20000 / xor eax,eax / L: cmp ecx,100 / jne 1f / mov byte [rdi],3 / 1: call g / dec ecx / jnz L / hlt
  //   g (CODE + 0x1000): add eax,1 / ret
  const code = hexBytes('b9 20 4e 00 00 31 c0 83 f9 64 75 03 c6 07 03 e8 ec 0f 00 00 ff c9 75 ef f4');
  const w = withThreshold(20, () => agreeToHalt((m) => {
    m.cpu.setGpr(7, BigInt(CODE + 0x1002));
    m.mem.write(CODE, Uint8Array.from(code));
    m.mem.write(CODE + 0x1000, Uint8Array.from(hexBytes('83 c0 01 c3')));
  }, CODE, 1_000_000));
  assert.equal(w.cpu.getGpr(0), 19900n + 100n * 3n);
  assert.ok(regionStats(w).intra > 10_000, `entries between the region's blocks: ${regionStats(w).intra}`);
});
