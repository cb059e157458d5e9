// Blocks translated again with a later batch of their page (src/cpu/soft/wasm/runtime.ts WasmEngine.reform): blocks of
// a loop that became hot one at a time (each its own batch, its own function) end up in one region, whose branches
// replace the dispatcher's trips between them, with the interpreter's exact state (a fault inside, budgets); the
// functions they were in before are reclaimed only once none of their blocks lives there any more.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, cpuState, CODE, DATA, interpreterOrWasmMachine, translatorTestFile, type Machine } from './support/soft-cpu.ts';
import { setReform, setReregion, reregionSettings, setTail, setBootRegion } from '../src/cpu/soft/wasm/runtime.ts';
import * as C from '../src/cpu/soft/constants.ts';
import { groupRegions, REGION_MAX, setRas, K_SHIFT } from '../src/cpu/soft/wasm/translate.ts';
import type { Block } from '../src/cpu/soft/code-cache.ts';
import { setSliceEnd } from '../src/cpu/soft/cpu.ts';

// threshold 0: every block is translated at its first replay, alone (a batch of one), as blocks that become hot at
// different times are
type Mode = 'interpreter' | 'wasm';
const memories = translatorTestFile();
// (its regions are checked to stop exactly at every budget: not with RINGZERO_WASM_SLICE_END, which may end a slice early)
setSliceEnd(false);

/** The CPU fields test/support/soft-cpu.ts compares, plus where the instruction began and the data the code writes. */
const state = (m: Machine) => ({ ...cpuState(m), ripStart: m.cpu.ripStart.toString(16), data: Buffer.from(m.mem.read(DATA, 64)).toString('hex') });

/** Run `code` at CODE to its HLT (or a fault) in `mode`, with REFORM set to `reform`. */
function run(mode: Mode, code: number[] | Uint8Array, reform: boolean, prep: (m: Machine) => void = () => {}, blocks = 1_000_000) {
  const old = setReform(reform);
  try {
    const m = interpreterOrWasmMachine(mode, memories);
    prep(m);
    m.mem.write(CODE, Uint8Array.from(code));
    const vector = runBlocksToHalt(m, blocks);
    return { m, vector, s: state(m) };
  } finally {
    setReform(old);
  }
}

// Three blocks of one page in a loop (1 -> 2 -> 3 -> 1), 20000 passes; on the last pass (ECX = 1) RSI becomes R8
// (CMOVE in the second block) and the load of the third block faults when R8 is an unmapped page.
//   mov ecx,20000 / 1: add eax,1 / jmp 2f / 2: add ebx,eax / cmp ecx,1 / cmove rsi,r8 / jmp 3f
//   3: mov rdx,[rsi] / add edx,ecx / mov [rsi+8],rdx / dec ecx / jnz 1b / hlt
const LOOP = hexBytes('b9 20 4e 00 00 83 c0 01 eb 00 01 c3 83 f9 01 49 0f 44 f0 eb 00 48 8b 16 01 ca 48 89 56 08 ff c9 75 e3 f4');

test('blocks of a loop translated one at a time become one region, exactly', () => {
  const prep = (m: Machine) => { m.cpu.setGpr(6, BigInt(DATA)); m.cpu.setGpr(8, BigInt(DATA + 32)); };
  const ref = run('interpreter', LOOP, true, prep);
  const off = run('wasm', LOOP, false, prep);
  const on = run('wasm', LOOP, true, prep);
  for (const r of [ref, off, on]) assert.equal(r.vector, -1);
  assert.deepEqual(off.s, ref.s, 'translated code = interpreter (no reform)');
  assert.deepEqual(on.s, ref.s, 'translated code = interpreter (reform)');
  const so = off.m.cpu.wasm!.stats, sn = on.m.cpu.wasm!.stats;
  // without: three functions, every pass enters two blocks from the dispatcher or by a tail call (plus the loop's back edge)
  assert.equal(so.intra, 0, `branches inside regions without reform: ${so.intra}`);
  assert.ok(so.direct + so.tails > 40_000, `entries between functions without reform: ${so.direct} + ${so.tails}`);
  // with: the third block's batch takes the first two again: one region, the passes branch inside it
  assert.ok(sn.reformed >= 2, `blocks translated again: ${sn.reformed}`);
  assert.ok(sn.intra > 40_000, `branches inside the region: ${sn.intra}`);
  assert.ok(sn.direct < 1000, `dispatcher entries left: ${sn.direct}`);
});

test('a page fault in a block of a region formed again leaves exact state', () => {
  const prep = (m: Machine) => { m.cpu.setGpr(6, BigInt(DATA)); m.cpu.setGpr(8, 0x7fff_0000_0000n); };
  const ref = run('interpreter', LOOP, true, prep);
  const on = run('wasm', LOOP, true, prep);
  assert.equal(ref.vector, C.EXC_PF);
  assert.equal(on.vector, C.EXC_PF);
  assert.deepEqual(on.s, ref.s, 'translated code = interpreter');
  assert.equal(on.s.rip, (CODE + 0x15).toString(16), 'RIP at the faulting load');
  assert.ok(on.m.cpu.wasm!.stats.reformed >= 2);
});

test('a region formed again stops exactly at every budget (run(n) with small n)', () => {
  const traces = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const old = setReform(true);
    try {
      const m = interpreterOrWasmMachine(mode, memories);
      m.cpu.setGpr(6, BigInt(DATA)); m.cpu.setGpr(8, BigInt(DATA + 32));
      m.mem.write(CODE, Uint8Array.from(LOOP));
      m.cpu.rip = CODE;
      const trace: string[] = [];
      for (let i = 0; i < 100_000 && !m.cpu.halted; i++) {
        m.cpu.run(1 + (i * 7) % 61);
        trace.push(`${m.cpu.instructions}:${m.cpu.rip.toString(16)}`);
      }
      assert.ok(m.cpu.halted);
      return { trace, m };
    } finally {
      setReform(old);
    }
  });
  assert.deepEqual(traces[1].trace, traces[0].trace, 'same instruction counts and RIPs after every run');
  assert.ok(traces[1].m.cpu.wasm!.stats.intra > 10_000);
});

test('flags a region branch does not store (its target overwrites them first) are exact where the region stops', () => {
  // Region members that end in a rotate (its flags pending) or a Jcc and branch to members starting with a flag
  // producer: the branch leaves the flags in locals, the exit stores them. run(n) with small n stops at every edge.
  //   mov ecx,3000 / 1: add eax,edx / rol eax,5 / jmp 2f / 2: add edx,eax / ror edx,3 / cmp ecx,1000 / jb 3f
  //   xor ebx,edx / rol ebx,1 / jmp 3f / 3: xor r8d,eax / rol r8d,7 / mov r9d,r8d / dec ecx / jnz 1b / hlt
  const code = hexBytes(`b9 b8 0b 00 00 01 d0 c1 c0 05 eb 00 01 c2 c1 ca 03 81 f9 e8 03 00 00 72 06 31 d3 d1 c3 eb 00 41
    31 c0 41 c1 c0 07 45 89 c1 ff c9 75 d8 f4`);
  const traces = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const old = setReform(true);
    try {
      const m = interpreterOrWasmMachine(mode, memories);
      m.cpu.setGpr(0, 0x9e3779b9n); m.cpu.setGpr(2, 0x7f4a7c15n);
      m.mem.write(CODE, Uint8Array.from(code));
      m.cpu.rip = CODE;
      const trace: string[] = [];
      for (let i = 0; i < 100_000 && !m.cpu.halted; i++) {
        m.cpu.run(1 + (i * 7) % 61);
        const s = cpuState(m);
        trace.push(`${s.instructions}:${s.rip}:${s.flags}:${s.regs.join(',')}`);
      }
      assert.ok(m.cpu.halted);
      return { trace, m };
    } finally {
      setReform(old);
    }
  });
  assert.deepEqual(traces[1].trace, traces[0].trace, 'same instruction counts, RIPs, flags and registers after every run');
  assert.ok(traces[1].m.cpu.wasm!.stats.intra > 3000, `branches inside regions: ${traces[1].m.cpu.wasm!.stats.intra}`);
});

test('functions whose blocks all live in later regions are reclaimed; the others keep running (table of 1024)', () => {
  // 1200 blocks `add eax,1 / jmp next` (two pages) in a loop of 3 passes: each translated alone, then again with
  // its successors' batches, so the function table (1024 entries at first) fills with functions whose blocks moved
  // on (reclaimed: every block of them lives elsewhere) and functions some block still runs in (kept: a freed one
  // would be a null table entry, which traps when entered, or a block left without its translation).
  //   mov ecx,3 / xor eax,eax / 1: (add eax,1 / jmp +0) x 1200 / dec ecx / jnz 1b / hlt
  const N = 1200, code: number[] = hexBytes('b9 03 00 00 00 31 c0');
  for (let i = 0; i < N; i++) code.push(0x83, 0xc0, 0x01, 0xeb, 0x00);
  const back = 7 - (code.length + 2 + 6);
  code.push(0xff, 0xc9, 0x0f, 0x85, back & 0xff, (back >> 8) & 0xff, (back >> 16) & 0xff, (back >>> 24) & 0xff, 0xf4);
  const ref = run('interpreter', code, true);
  const on = run('wasm', code, true);
  assert.equal(on.vector, -1);
  assert.deepEqual(on.s, ref.s, 'translated code = interpreter');
  assert.equal(on.m.cpu.getGpr(0), BigInt(3 * N));
  const w = on.m.cpu.wasm!;
  assert.ok(w.stats.reformed > N, `blocks translated again: ${w.stats.reformed}`);
  assert.ok(w.stats.freed > 0, `functions reclaimed: ${w.stats.freed}`);
  // every block still has its translation, in a live function
  let live = 0;
  for (const b of on.m.cpu.codeCache.translated.values()) { assert.ok(b.wasm !== null); live++; }
  assert.ok(live >= N, `translated blocks: ${live}`);
  assert.ok(on.m.cpu.jitInstructions > N, `instructions run in wasm: ${on.m.cpu.jitInstructions}`);
});

// WasmEngine.reregion: without reform (no later batch in the page takes them along), the loop's three functions
// chain through the dispatcher until the scan sees the entries named into their page and translates the three again
// together: one region, exact state, also for a page fault in its last pass.
for (const fault of [false, true]) {
  test(`a page whose blocks keep chaining through the dispatcher is translated again as one region${fault ? ' (page fault inside)' : ''}`, () => {
    const prep = (m: Machine) => { m.cpu.setGpr(6, BigInt(DATA)); m.cpu.setGpr(8, fault ? 0x7fff_0000_0000n : BigInt(DATA + 32)); };
    const ref = run('interpreter', LOOP, false, prep);
    const saved = reregionSettings();
    const without = setReregion(false);
    let off, on;
    try {
      off = run('wasm', LOOP, false, prep);
      setReregion(true, 20_000, 500);
      on = run('wasm', LOOP, false, prep);
    } finally {
      setReregion(without, saved.scan, saved.hits, saved.userHits);
    }
    for (const r of [ref, off, on]) assert.equal(r.vector, fault ? C.EXC_PF : -1);
    assert.deepEqual(off.s, ref.s, 'translated code = interpreter (no reregion)');
    assert.deepEqual(on.s, ref.s, 'translated code = interpreter (reregion)');
    const so = off.m.cpu.wasm!.stats, sn = on.m.cpu.wasm!.stats;
    assert.equal(so.reregioned, 0);
    assert.ok(so.direct > 40_000, `dispatcher entries without reregion: ${so.direct}`);
    assert.ok(sn.reregioned >= 3, `blocks translated again with their page: ${sn.reregioned}`);
    assert.ok(sn.intra > 30_000, `branches inside the region: ${sn.intra}`);
    assert.ok(sn.direct < 10_000, `dispatcher entries left: ${sn.direct}`);
  });
}

// User code (blocks queued at lower-half linear addresses, as CODE is) has its own threshold (USER_HITS): the loop's
// page is translated again as one region with only that threshold low, and not with both high.
test('reregion: pages of user code go by their own threshold', () => {
  const prep = (m: Machine) => { m.cpu.setGpr(6, BigInt(DATA)); m.cpu.setGpr(8, BigInt(DATA + 32)); };
  const ref = run('interpreter', LOOP, false, prep);
  const saved = reregionSettings();
  let user, neither;
  try {
    setReregion(true, 20_000, 1e9, 500);
    user = run('wasm', LOOP, false, prep);
    setReregion(true, 20_000, 1e9, 1e9);
    neither = run('wasm', LOOP, false, prep);
  } finally {
    setReregion(saved.on, saved.scan, saved.hits, saved.userHits);
  }
  for (const r of [user, neither]) assert.deepEqual(r.s, ref.s, 'translated code = interpreter');
  const su = user.m.cpu.wasm!.stats, sn = neither.m.cpu.wasm!.stats;
  assert.ok(su.reregioned >= 3, `user threshold 500: blocks translated again ${su.reregioned}`);
  assert.ok(su.intra > 30_000, `branches inside the region: ${su.intra}`);
  assert.equal(sn.reregioned, 0, 'both thresholds 1e9');
});

/**
 * mov ecx,50 / c0: add eax,1 / jmp c1 / ... / c(K-1): add eax,K / jmp cK (K = REGION_MAX - 2 blocks, address order
 * first) / cK: add ebx,1 / jmp l2 / l2: add edx,ebx / jmp l3 / l3: add esi,edx / jmp l4 / l4: dec ecx / jnz cK (a
 * loop of four blocks: in address order the cap fell between its second and third) / t0: add edi,1 / jmp t1 / ...
 * t3: add edi,4 / jmp t4 / t4: hlt: REGION_MAX + 7 blocks of one page, two instructions each, that branch to each
 * other; `head`: the loop's offset.
 */
function overCapCode(): { code: number[]; head: number } {
  const k = REGION_MAX - 2, code = [0xb9, 0x32, 0x00, 0x00, 0x00];
  for (let i = 0; i < k; i++) code.push(0x83, 0xc0, (i + 1) & 0x7f, 0xeb, 0x00);
  const head = code.length;
  code.push(0x83, 0xc3, 0x01, 0xeb, 0x00, 0x01, 0xda, 0xeb, 0x00, 0x01, 0xd6, 0xeb, 0x00, 0xff, 0xc9, 0x75, 0xef);
  for (let i = 0; i < 4; i++) code.push(0x83, 0xc7, i + 1, 0xeb, 0x00);
  code.push(0xf4);
  return { code, head };
}

/**
 * overCapCode run translated (checked against the interpreter when `check`): its blocks in address order and the
 * addresses of the loop's four.
 */
function overCap(check: boolean): { blocks: Block[]; loop: number[] } {
  const { code, head } = overCapCode();
  const w = run('wasm', code, true);
  if (check) assert.deepEqual(w.s, run('interpreter', code, true).s, 'translated code = interpreter');
  const blocks = w.m.cpu.codeCache.table.filter((b): b is Block => b !== undefined && (b.pa >>> 12) === (CODE >>> 12));
  blocks.sort((x, y) => x.pa - y.pa);
  return { blocks, loop: [0, 5, 9, 13].map((o) => CODE + head + o) };
}

test('a group of blocks over the region cap is cut between loops, not through one', () => {
  const { blocks, loop } = overCap(true);
  assert.ok(blocks.length >= REGION_MAX + 4, `blocks: ${blocks.length}`);
  const parts = groupRegions(blocks);
  assert.ok(parts.every((p) => p.length <= REGION_MAX), `parts: ${parts.map((p) => p.length)}`);
  const holding = parts.filter((p) => p.some((b) => loop.includes(b.pa)));
  assert.equal(holding.length, 1, 'the loop in one region');
  assert.equal(holding[0].filter((b) => loop.includes(b.pa)).length, 4);
});

test('groupRegions with an instruction cap (KERNEL_REGION) cuts regions by their instructions, not through a loop', () => {
  const { blocks, loop } = overCap(false);
  const instr = (p: Block[]) => p.reduce((n, b) => n + b.n, 0);
  const all = groupRegions(blocks).flat().map((b) => b.pa).sort();
  for (const cap of [10, 16]) {
    const parts = groupRegions(blocks, undefined, cap);
    assert.ok(parts.every((p) => instr(p) <= cap || p.length === 1), `cap ${cap}: parts of ${parts.map(instr)} instructions`);
    assert.ok(parts.length > groupRegions(blocks).length, `cap ${cap}: more regions than without it`);
    assert.deepEqual(parts.flat().map((b) => b.pa).sort(), all, `cap ${cap}: every block in one region`);
    const holding = parts.filter((p) => p.some((b) => loop.includes(b.pa)));
    assert.equal(holding.length, 1, `cap ${cap}: the loop (8 instructions) in one region`);
  }
  // (a cap below the loop's 8 instructions cuts it, unless wholeLoops (BOOT_REGION) keeps it in a region of its own)
  const holdingLoop = (parts: Block[][]) => parts.filter((p) => p.some((b) => loop.includes(b.pa)));
  assert.ok(holdingLoop(groupRegions(blocks, undefined, 4)).length > 1, 'cap 4: the loop cut');
  const whole = groupRegions(blocks, undefined, 4, true);
  assert.deepEqual(holdingLoop(whole).map((p) => p.map((b) => b.pa)), [loop], 'cap 4, wholeLoops: the loop alone in one region');
  assert.ok(whole.every((p) => instr(p) <= 4 || p.length === 1 || p.every((b) => loop.includes(b.pa))), `cap 4, wholeLoops: parts of ${whole.map(instr)}`);
  assert.deepEqual(whole.flat().map((b) => b.pa).sort(), all, 'cap 4, wholeLoops: every block in one region');
  // (firstOnly, KERNEL_REGION's: blocks the run translated are grouped as without a cap)
  const done = blocks.filter((b) => b.wasm !== null);
  const regions = (parts: Block[][]) => parts.map((p) => p.map((b) => b.pa));
  assert.ok(groupRegions(done, undefined, 4).length > groupRegions(done).length, `translated blocks: ${done.length}, capped without firstOnly`);
  assert.deepEqual(regions(groupRegions(done, undefined, 4, false, true)), regions(groupRegions(done)), 'firstOnly: translated blocks not capped');
});

test('BOOT_REGION: the engine cuts the regions it flushes before any user code at the instruction cap, exactly', () => {
  // (the program of the test above; the test machine runs at CPL 0 and never flushes from user code: the boot's case;
  // its batches hold a few blocks of two instructions, so a cap of 4 cuts them)
  const { code } = overCapCode();
  const ref = run('interpreter', code, true);
  const old = setBootRegion(4);
  let capped: ReturnType<typeof run>;
  try { capped = run('wasm', code, true); } finally { setBootRegion(old); }
  const plain = run('wasm', code, true);
  for (const r of [capped, plain]) assert.deepEqual(r.s, ref.s, 'translated code = interpreter');
  // (functions holding the page's blocks: the dispatch words' function-table index, below K_SHIFT)
  const fns = (r: ReturnType<typeof run>) => new Set([...r.m.cpu.codeCache.translated.values()]
    .filter((b) => (b.pa >>> 12) === (CODE >>> 12)).map((b) => b.wasm!.idx & ((1 << K_SHIFT) - 1))).size;
  assert.ok(fns(capped) > fns(plain), `functions with the cap ${fns(capped)}, without ${fns(plain)}`);
});
