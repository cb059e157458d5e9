// The memory functions of translated code (src/cpu/soft/wasm/tlb-probe.ts memFnBody, the shared memory library) and
// the inline probes of loops: loads and stores of every size, on TLB hits and through the slow path (accesses
// straddling a page end, which the helpers rd/wr run), must leave what the interpreter leaves.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, CODE, DATA, MISSING_PAGE, PAGE_TABLES, protectFaultPages, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';
import { setInlineAll, setLoopInline, setLoopEntry, setLastPage, setSelfEdge, midSelfEdge, pageTargets, translateRegion, K_SHIFT } from '../src/cpu/soft/wasm/translate.ts';
import { disassemble } from '../src/cpu/soft/wasm/dump.ts';
import { memFnBody } from '../src/cpu/soft/wasm/tlb-probe.ts';
import { setReform } from '../src/cpu/soft/wasm/runtime.ts';

setHotThreshold(0);
setLoopInline(false);
setJitThreshold(0);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

// mov ecx,40
// 1: movzx eax,byte [rsi] / movzx ebx,word [rsi+2] / mov edx,[rsi+4] / mov r8,[rsi+8] / add r8,rcx
//    mov [rdi],al / mov [rdi+2],bx / mov [rdi+4],edx / mov [rdi+8],r8 / add rsi,1 / add rdi,1 / jmp 2f
// 2: dec ecx / jnz 1b / hlt
// (the jmp keeps the loop out of one self-looping block, whose accesses would probe inline; its two blocks become one
// region, whose loop probes inline too unless setLoopInline(false): the tests of the library turn that off)
const CODE_BYTES = hexBytes('b9 28 00 00 00 0f b6 06 0f b7 5e 02 8b 56 04 4c 8b 46 08 49 01 c8 88 07 66 89 5f 02 89 57 04 ' +
  '4c 89 47 08 48 83 c6 01 48 83 c7 01 eb 00 ff c9 75 d4 f4');
/** The loop walks its loads and stores across a page end: each size straddles it in some pass (slow path). */
const SRC = DATA + 0x1000 - 24, DST = DATA + 0x3000 - 24;

function run(mode: 'interpreter' | 'wasm'): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  const src = new Uint8Array(64);
  for (let i = 0; i < src.length; i++) src[i] = (i * 37 + 11) & 255;
  m.mem.write(SRC, src);
  m.mem.write(CODE, Uint8Array.from(CODE_BYTES));
  m.cpu.setGpr(6, BigInt(SRC));
  m.cpu.setGpr(7, BigInt(DST));
  runBlocksToHalt(m, 100_000);
  const c = m.cpu;
  return {
    m,
    state: {
      regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)),
      rip: c.rip.toString(16), instructions: c.instructions, fault: c.lastException,
      dst: Buffer.from(m.mem.read(DST - 8, 80)).toString('hex'),
    },
  };
}

test('loads and stores of every size, on TLB hits and straddling a page end, match the interpreter in translated code (the shared memory functions)', () => {
  const ref = run('interpreter'), w = run('wasm');
  assert.deepEqual(w.state, ref.state);
  const s = w.m.cpu.wasm!.stats;
  assert.ok(w.m.cpu.jitInstructions > 400, `instructions run in wasm: ${w.m.cpu.jitInstructions}`);
  assert.ok(s.slow >= 8, `slow accesses (page-straddling, through rd/wr): ${s.slow}`);
});

test('a loop over two blocks of a region probes the TLB inline (translateRegion onCycles): loads and stores of every size match the interpreter', (t) => {
  setLoopInline(true);
  // (the loop's blocks become hot in different batches: re-forming, off by default, puts them in one region)
  const reform = setReform(true);
  t.after(() => { setLoopInline(false); setReform(reform); });
  const ref = run('interpreter'), w = run('wasm');
  assert.deepEqual(w.state, ref.state);
  const s = w.m.cpu.wasm!.stats;
  // (the page-straddling accesses miss the inline probe and take the library's slow path, rd/wr)
  assert.ok(s.slow >= 8, `slow accesses: ${s.slow}`);
  const cache = w.m.cpu.codeCache;
  const b1 = cache.translated.get((CODE + 5) * 16 + 8)!, b2 = cache.translated.get((CODE + 0x2d) * 16 + 8)!;
  const table = (i: number) => i & ((1 << K_SHIFT) - 1);
  assert.equal(table(b1.wasm!.idx), table(b2.wasm!.idx), 'the loop\'s two blocks run as one region');
  const inl = translateRegion([b1, b2])!.body.code().length;
  const lone = translateRegion([b1])!.body.code().length;
  setLoopInline(false);
  const lib = translateRegion([b1, b2])!.body.code().length;
  assert.ok(inl > lib + 300, `loop with inline probes ${inl} bytes, through the library ${lib}`);
  assert.equal(translateRegion([b1])!.body.code().length, lone, 'a block on no cycle of its region is not changed');
});

test('inline loads through one base register after a probe of theirs compare page numbers, not the TLB (LAST_PAGE); across a page end they probe again, exactly', (t) => {
  setLoopInline(true);
  t.after(() => { setLoopInline(false); setLastPage(true); });
  for (const on of [true, false]) {
    setLastPage(on);
    const ref = run('interpreter'), w = run('wasm');
    assert.deepEqual(w.state, ref.state, `last page ${on ? 'on' : 'off'}`);
    assert.ok(w.m.cpu.wasm!.stats.slow >= 8, `slow accesses: ${w.m.cpu.wasm!.stats.slow}`);
  }
  setLastPage(true);
  const w = run('wasm');
  const cache = w.m.cpu.codeCache;
  const b1 = cache.translated.get((CODE + 5) * 16 + 8)!, b2 = cache.translated.get((CODE + 0x2d) * 16 + 8)!;
  // a page compare: the address's page (its last byte's, i64.and with -4096: tlb-probe.ts emitTlbKey) against a
  // remembered one (local.get), i64.ne (the TLB probe's compares with the entry's tag, loaded before the page)
  const compares = (): number => {
    const code = translateRegion([b1, b2])!.body.code();
    const ops = disassemble(code, 0, code.length).map((l) => l.trim());
    let n = 0;
    for (let i = 2; i < ops.length; i++) if (ops[i] === 'i64.ne' && ops[i - 2] === 'i64.and' && ops[i - 1].startsWith('local.get')) n++;
    return n;
  };
  // [rsi] probes the TLB; [rsi+2], [rsi+4], [rsi+8] compare with its page
  assert.equal(compares(), 3);
  setLastPage(false);
  assert.equal(compares(), 0);
});

// mov ecx,40
// 1: mov eax,[rsi] / xchg r11,r9 / mov [rdx],r9 / invlpg [rsi] / mov ebx,[rsi+4] / add r10,rbx / add r12,rax / jmp 2f
// 2: dec ecx / jnz 1b / hlt
// Each pass loads through RSI, points RSI's 2 MiB page at the other of two physical pages (its PDE rewritten), INVLPG,
// and loads through RSI again: the second load must read the new page. The PDE store alone need not take effect
// (the TLB may keep the old entry until INVLPG, SDM vol. 3A §4.10.4.3); after INVLPG it must. INVLPG ends its block
// (code-cache.ts, group 7) and a block's remembered pages start empty (translate.ts Translator.lpAt), so no page
// remembered before the INVLPG can serve the second load: this checks that end to end against the interpreter.
const REMAP_CODE = hexBytes('b9 28 00 00 00 8b 06 4d 87 cb 4c 89 0a 0f 01 3e 8b 5e 04 49 01 da 49 01 c4 eb 00 ff c9 75 e6 f4');
const REMAP_VA = 0x800000, PAGE_A = 0xa00000, PAGE_B = 0xc00000;

function runRemap(mode: 'interpreter' | 'wasm'): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  const pdeAddr = PAGE_TABLES + 8192 + (REMAP_VA / (2 << 20)) * 8; // setupFlatLongMode's PD: one entry per 2 MiB
  const pde = Buffer.from(m.mem.read(pdeAddr, 8)).readBigUInt64LE();
  const flags = pde & 0xfffn; // present, writable, 2 MiB page
  const pdeFor = (pa: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(pa) | flags); return b; };
  m.mem.write(pdeAddr, pdeFor(PAGE_A));
  m.cpu.flushTlb(true);
  const words = (a: number, b: number) => { const x = Buffer.alloc(8); x.writeUInt32LE(a, 0); x.writeUInt32LE(b, 4); return x; };
  m.mem.write(PAGE_A, words(0x11111111, 0x22222222));
  m.mem.write(PAGE_B, words(0x33333333, 0x44444444));
  m.mem.write(CODE, Uint8Array.from(REMAP_CODE));
  m.cpu.setGpr(6, BigInt(REMAP_VA));
  m.cpu.setGpr(2, BigInt(pdeAddr));
  m.cpu.setGpr(9, BigInt(PAGE_A) | flags);
  m.cpu.setGpr(11, BigInt(PAGE_B) | flags);
  runBlocksToHalt(m, 100_000);
  const c = m.cpu;
  return { m, state: { regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)), rip: c.rip.toString(16), instructions: c.instructions, fault: c.lastException } };
}

test('a load after its page is remapped (PDE rewritten, INVLPG) reads the new page in translated code, LAST_PAGE on or off', (t) => {
  setLoopInline(true);
  t.after(() => { setLoopInline(false); setLastPage(true); });
  for (const on of [true, false]) {
    setLastPage(on);
    const ref = runRemap('interpreter'), w = runRemap('wasm');
    assert.deepEqual(w.state, ref.state, `last page ${on ? 'on' : 'off'}`);
    assert.ok(w.m.cpu.jitInstructions > 200, `instructions run in wasm: ${w.m.cpu.jitInstructions}`);
  }
  // 20 passes each way: r10 sums the second loads, r12 the first
  const ref = runRemap('interpreter');
  const regs = (ref.state as { regs: string[] }).regs;
  assert.equal(regs[10], (20 * 0x44444444 + 20 * 0x22222222).toString(16));
  assert.equal(regs[12], (20 * 0x11111111 + 20 * 0x33333333).toString(16));
});

// mov ecx,1 / call f / mov ecx,2000 / call f / hlt / (nops)
// f: movzx eax,byte [rsi] / add rsi,1 / mov [rdi],al / add rdi,1 / dec ecx / jnz f / mov [rdi],rcx / ret
// f's block is recorded on the first call, whose jnz falls through, so it goes on past the jnz (SoftCpu.fellThrough):
// the loop's back edge is then a Jcc in the middle of the block to the block's own start (translate.ts SELF_EDGE),
// as in busybox's strcspn, not a self-looping block.
const EDGE_BYTES = hexBytes('b9 01 00 00 00 e8 16 00 00 00 b9 d0 07 00 00 e8 0c 00 00 00 f4 90 90 90 90 90 90 90 90 90 90 90 ' +
  '0f b6 06 48 83 c6 01 88 07 48 83 c7 01 ff c9 75 ef 48 89 0f c3');
const EDGE_F = CODE + 0x20;

/** What runEdge and runEntry compare: how the run ended, the registers, RIP, counts, the fault and `dstBytes` from DST - 8. */
function endState(m: Machine, vector: number, dstBytes: number) {
  const c = m.cpu;
  return {
    vector, regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)),
    rip: c.rip.toString(16), instructions: c.instructions, fault: c.lastException, cr2: c.cr2.toString(16),
    dst: Buffer.from(m.mem.read(DST - 8, dstBytes)).toString('hex'),
  };
}

function runEdge(mode: 'interpreter' | 'wasm', src0: number): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  protectFaultPages(m);
  const src = new Uint8Array(64);
  for (let i = 0; i < src.length; i++) src[i] = (i * 37 + 11) & 255;
  m.mem.write(SRC, src);
  m.mem.write(CODE, Uint8Array.from(EDGE_BYTES));
  m.cpu.setGpr(6, BigInt(src0));
  m.cpu.setGpr(7, BigInt(DST));
  return { m, state: endState(m, runBlocksToHalt(m, 100_000), 2016) };
}

test('a loop whose back edge is a Jcc in the middle of its block to the block\'s start probes the TLB inline (SELF_EDGE), with the same state and the same #PF as the interpreter', (t) => {
  setLoopInline(true);
  const old = setSelfEdge(true);
  t.after(() => { setLoopInline(false); setSelfEdge(old); });
  for (const on of [true, false]) {
    setSelfEdge(on);
    // from SRC the loads and stores cross a page end; from MISSING_PAGE - 1500 the 1502nd load (the first call made
    // one) faults (#PF, vector 14) on `movzx eax,byte [rsi]`, CR2 the missing page's first byte, with the loop in wasm
    for (const src of [SRC, MISSING_PAGE - 1500]) {
      const ref = runEdge('interpreter', src), w = runEdge('wasm', src);
      assert.deepEqual(w.state, ref.state, `self edge ${on ? 'on' : 'off'}, source ${src.toString(16)}`);
      if (src !== SRC) assert.equal((ref.state as { vector: number }).vector, 14);
      assert.ok(w.m.cpu.jitInstructions > 1000, `instructions run in wasm: ${w.m.cpu.jitInstructions}, source ${src.toString(16)}, self edge ${on}`);
    }
  }
  setSelfEdge(true);
  const w = runEdge('wasm', DST);
  const loop = w.m.cpu.codeCache.translated.get(EDGE_F * 16 + 8)!;
  assert.ok(loop, 'the loop\'s block is translated');
  assert.ok(midSelfEdge(loop), 'its jnz goes to its own start from the middle of the block');
  const inl = translateRegion([loop])!.body.code().length;
  setSelfEdge(false);
  assert.equal(midSelfEdge(loop), false);
  const lib = translateRegion([loop])!.body.code().length;
  assert.ok(inl > lib + 100, `loop with inline probes ${inl} bytes, through the library ${lib}`);
});

test('with INLINE_ALL every access probes the TLB inline, outside loops too: loads and stores of every size, page ends and a #PF match the interpreter', (t) => {
  // (loop probes and the self edge off: without INLINE_ALL these blocks call the memory library for every access)
  const old = setInlineAll(true), edge = setSelfEdge(false);
  t.after(() => { setInlineAll(old); setSelfEdge(edge); });
  const ref = run('interpreter'), w = run('wasm');
  assert.deepEqual(w.state, ref.state);
  assert.ok(w.m.cpu.jitInstructions > 400, `instructions run in wasm: ${w.m.cpu.jitInstructions}`);
  assert.ok(w.m.cpu.wasm!.stats.slow >= 8, `slow accesses (page-straddling, through rd/wr): ${w.m.cpu.wasm!.stats.slow}`);
  // from MISSING_PAGE - 1500 the 1502nd load faults (#PF) in translated code, with the registers the interpreter has
  for (const src of [SRC, MISSING_PAGE - 1500]) {
    const r = runEdge('interpreter', src), x = runEdge('wasm', src);
    assert.deepEqual(x.state, r.state, `source ${src.toString(16)}`);
    if (src !== SRC) assert.equal((r.state as { vector: number }).vector, 14);
    assert.ok(x.m.cpu.jitInstructions > 1000, `instructions run in wasm: ${x.m.cpu.jitInstructions}`);
  }
  const e = runEdge('wasm', DST);
  const f = e.m.cpu.codeCache.translated.get(EDGE_F * 16 + 8)!;
  assert.ok(f, 'the loop\'s block is translated');
  const inl = translateRegion([f])!.body.code().length;
  setInlineAll(false);
  const lib = translateRegion([f])!.body.code().length;
  assert.ok(inl > lib + 100, `with inline probes ${inl} bytes, through the library ${lib}`);
});

// f (at CODE): mov ecx,5
//   1: movzx eax,byte [rsi] / movzx ebx,word [rsi+2] / mov edx,[rsi+4] / mov r8,[rsi+8] / add r8,rcx
//      mov [rdi],al / mov [rdi+2],bx / mov [rdi+4],edx / mov [rdi+8],r8 / add rsi,1 / add rdi,1 / jmp 2f
//   2: dec ecx / jnz 1b / ret
// driver (at CODE + 0x1000, another page): mov r9d,8 / 3: mov r10,CODE / call r10 / dec r9d / jnz 3b / hlt
// f's first block (mov ecx,5 and the loop's body) runs each call's first pass: the loop's start is one of its
// instruction boundaries, and it is on no cycle of the region (it is entered by CALL, from another page), as
// busybox md5's round loops' first passes (translate.ts LOOP_ENTRY).
const ENTRY_F = hexBytes('b9 05 00 00 00 0f b6 06 0f b7 5e 02 8b 56 04 4c 8b 46 08 49 01 c8 88 07 66 89 5f 02 89 57 04 ' +
  '4c 89 47 08 48 83 c6 01 48 83 c7 01 eb 00 ff c9 75 d4 c3');
const ENTRY_DRIVER = hexBytes('41 b9 08 00 00 00 49 c7 c2 00 00 10 00 41 ff d2 41 ff c9 75 f1 f4');

function runEntry(mode: 'interpreter' | 'wasm', src0: number): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  protectFaultPages(m);
  const src = new Uint8Array(64);
  for (let i = 0; i < src.length; i++) src[i] = (i * 37 + 11) & 255;
  m.mem.write(src0 & ~0xfff, new Uint8Array(0x1000).fill(0x5a));
  if ((src0 & 0xfff) > 0x800) m.mem.write(src0 - 8, src);
  m.mem.write(CODE, Uint8Array.from(ENTRY_F));
  m.mem.write(CODE + 0x1000, Uint8Array.from(ENTRY_DRIVER));
  m.cpu.setGpr(6, BigInt(src0));
  m.cpu.setGpr(7, BigInt(DST));
  return { m, state: endState(m, runBlocksToHalt(m, 100_000, CODE + 0x1000), 80) };
}

test('a region block that runs into a loop\'s first block probes the TLB inline too (LOOP_ENTRY): loads and stores of every size, page ends and a #PF in its pass match the interpreter', (t) => {
  setLoopInline(true);
  const reform = setReform(true);
  const old = setLoopEntry(true);
  t.after(() => { setLoopInline(false); setReform(reform); setLoopEntry(old); });
  // from SRC (DST alike) the passes walk across a page end: the first pass of the 4th call (pass 15) loads [rsi+8]
  // and stores [rdi+8] across it, in f's first block; from MISSING_PAGE - 50 the first pass of the 8th call (pass 35)
  // loads [rsi+8] across into the missing page: #PF (vector 14) there, CR2 the missing page's first byte
  for (const on of [true, false]) {
    setLoopEntry(on);
    for (const src of [SRC, MISSING_PAGE - 50]) {
      const ref = runEntry('interpreter', src), w = runEntry('wasm', src);
      assert.deepEqual(w.state, ref.state, `loop entry ${on ? 'on' : 'off'}, source ${src.toString(16)}`);
      if (src !== SRC) assert.equal((ref.state as { vector: number }).vector, 14);
      else assert.ok(w.m.cpu.wasm!.stats.slow >= 4, `slow accesses: ${w.m.cpu.wasm!.stats.slow}`);
      assert.ok(w.m.cpu.jitInstructions > 300, `instructions run in wasm: ${w.m.cpu.jitInstructions} of ${w.m.cpu.instructions}, on ${on} src ${src.toString(16)}`);
    }
  }
  setLoopEntry(true);
  const w = runEntry('wasm', SRC);
  const cache = w.m.cpu.codeCache;
  const get = (pa: number) => cache.translated.get(pa * 16 + 8);
  const first = get(CODE)!, body = get(CODE + 5)!, tail = get(CODE + 0x2d)!;
  assert.ok(first && body && tail, 'f\'s three blocks are translated');
  const table = (i: number) => i & ((1 << K_SHIFT) - 1);
  assert.equal(table(first.wasm!.idx), table(body.wasm!.idx), 'f\'s first block is in the loop\'s region');
  const inl = translateRegion([first, body, tail])!.body.code().length;
  setLoopEntry(false);
  const lib = translateRegion([first, body, tail])!.body.code().length;
  assert.ok(inl > lib + 300, `with the first block's probes inline ${inl} bytes, through the library ${lib}`);
});

// mov r15d,40 / 1: lea rsi,[rbx+r15] / lea rdi,[rbx+0x800] / mov ecx,64 / rep movsb (ends its block, as in busybox
// md5_hash) / mov rax,[rdi-8] / add r9,rax / mov [rbx+r15*8+0x1000],rax / dec r15d / jnz 1b / hlt
const STRING_LOOP = hexBytes('41 bf 28 00 00 00 4a 8d 34 3b 48 8d bb 00 08 00 00 b9 40 00 00 00 f3 a4 48 8b 47 f8 49 01 c1 ' +
  '4a 89 84 fb 00 10 00 00 41 ff cf 75 da f4');

function runStringLoop(mode: 'interpreter' | 'wasm'): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  const src = new Uint8Array(0x100);
  for (let i = 0; i < src.length; i++) src[i] = (i * 37 + 11) & 255;
  m.mem.write(DATA, src);
  m.mem.write(CODE, Uint8Array.from(STRING_LOOP));
  m.cpu.setGpr(3, BigInt(DATA));
  runBlocksToHalt(m, 100_000);
  const c = m.cpu;
  return {
    m,
    state: {
      regs: Array.from({ length: 16 }, (_, i) => c.getGpr(i).toString(16)), rip: c.rip.toString(16), fault: c.lastException,
      data: Buffer.from(m.mem.read(DATA, 0x1200)).toString('hex'),
    },
  };
}

test('a loop of a block that ends with a MOVS/STOS run in wasm and the block after it matches the interpreter', (t) => {
  setLoopInline(true);
  const reform = setReform(true);
  t.after(() => { setLoopInline(false); setReform(reform); });
  const ref = runStringLoop('interpreter'), w = runStringLoop('wasm');
  assert.deepEqual(w.state, ref.state);
  assert.ok(w.m.cpu.jitInstructions > 200, `instructions run in wasm: ${w.m.cpu.jitInstructions}`);
});
