// The decoded-block cache of the software CPU (src/cpu/soft/code-cache.ts): cached blocks are dropped when their
// code changes (self-modifying code in the same block and from another page, a REP MOVSB over a code page, a
// device's DMA write reported through GuestMemory.noteExternalWrite), the cache is physical (a remapped linear page runs the new
// physical code), and a change of decoding mode does not replay blocks decoded for another mode.
// Every block is recorded the first time it runs (hot threshold 0), so the second run of anything is a replay, and
// each test runs three ways: interpreter only, closure replay, and 64-bit blocks translated to JavaScript at their
// first replay (jit threshold 0).
import test from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine as cacheMachine, hexBytes, CODE, DATA, PAGE_TABLES, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, BlockEntry } from '../src/cpu/soft/code-cache.ts';
import { RunExit } from '../src/cpu/soft/index.ts';
import * as C from '../src/cpu/soft/constants.ts';

setHotThreshold(0);
setJitThreshold(0);

/** Run from `at` until HLT (CPL 0); fail on an exception (no IDT: it would be a triple fault). */
function runToHlt(m: Machine, at: number): void {
  m.cpu.rip = at;
  m.cpu.halted = false;
  m.cpu.lastException = -1;
  const r = m.cpu.run(1_000_000);
  assert.equal(r, RunExit.Halted, `stopped with ${r}, last exception ${m.cpu.lastException}`);
}

const eax = (m: Machine) => m.cpu.gpr[0];

for (const [cached, jit] of [[true, false], [false, false], [true, true]]) {
  const tag = !cached ? 'without the cache' : jit ? 'with generated code' : 'with the cache';
  const longModeMachine = () => { const m = cacheMachine(); m.cpu.jitEnabled = jit; return m; };

  test(`a store patching a later instruction of its own block is seen (${tag})`, () => {
    const m = longModeMachine();
    m.cpu.blockCacheEnabled = cached;
    // xor eax,eax / mov ecx,5 / 1: mov [rip+2],cl (the imm8 of the add) / add eax,0 / dec ecx / jnz 1b / hlt
    m.mem.write(CODE, Uint8Array.from(hexBytes('31 c0 b9 05 00 00 00 88 0d 02 00 00 00 83 c0 00 ff c9 75 f3 f4')));
    runToHlt(m, CODE);
    assert.equal(eax(m), 5 + 4 + 3 + 2 + 1);
    runToHlt(m, CODE);
    assert.equal(eax(m), 15, 'second run (replaying whatever was cached)');
  });

  test(`a store into another page's cached code drops its blocks (${tag})`, () => {
    const m = longModeMachine();
    m.cpu.blockCacheEnabled = cached;
    // CODE: xor eax,eax / mov ecx,5 / 1: mov [rip+0xff5],cl (imm8 of F's add) / call F / dec ecx / jnz 1b / hlt
    // F = CODE+0x1000: add eax,0 / ret
    m.mem.write(CODE, Uint8Array.from(hexBytes('31 c0 b9 05 00 00 00 88 0d f5 0f 00 00 e8 ee 0f 00 00 ff c9 75 f1 f4')));
    m.mem.write(CODE + 0x1000, Uint8Array.from(hexBytes('83 c0 00 c3')));
    runToHlt(m, CODE);
    assert.equal(eax(m), 15);
    if (cached) assert.ok(m.cpu.codeCache.stats.invalidations >= 4, `invalidations: ${m.cpu.codeCache.stats.invalidations}`);
  });

  test(`REP MOVSB over a cached function replaces it (${tag})`, () => {
    const m = longModeMachine();
    m.cpu.blockCacheEnabled = cached;
    const F = CODE + 0x2000;
    m.mem.write(F, Uint8Array.from(hexBytes('b8 01 00 00 00 c3'))); // mov eax,1 / ret
    m.mem.write(DATA, Uint8Array.from(hexBytes('b8 02 00 00 00 c3'))); // mov eax,2 / ret
    // call F / call F / mov ebx,eax / mov esi,DATA / mov edi,F / mov ecx,6 / rep movsb / call F / hlt
    m.mem.write(CODE, Uint8Array.from(hexBytes(
      'e8 fb 1f 00 00 e8 f6 1f 00 00 89 c3 be 00 00 20 00 bf 00 20 10 00 b9 06 00 00 00 f3 a4 e8 de 1f 00 00 f4')));
    runToHlt(m, CODE);
    assert.equal(m.cpu.gpr[6], 1, 'the original function ran first');
    assert.equal(eax(m), 2, 'the copied function ran after the copy');
  });

  test(`a device's DMA write into a code page is seen (${tag})`, () => {
    const m = longModeMachine();
    m.cpu.blockCacheEnabled = cached;
    m.mem.write(CODE, Uint8Array.from(hexBytes('b8 07 00 00 00 f4'))); // mov eax,7 / hlt
    runToHlt(m, CODE);
    runToHlt(m, CODE);
    assert.equal(eax(m), 7);
    // Behind the CPU's back, as a virtio device writes a guest buffer: straight into RAM, then reported.
    m.mem.slice(CODE + 1, 1)[0] = 9;
    m.mem.noteExternalWrite(CODE + 1, 1);
    runToHlt(m, CODE);
    assert.equal(eax(m), 9);
  });

  test(`a remapped code page runs the new physical code (${tag})`, () => {
    const m = longModeMachine();
    m.cpu.blockCacheEnabled = cached;
    const LIN = 0x400000; // PD entry 2, identity-mapped to physical 0x400000
    m.mem.write(0x400000, Uint8Array.from(hexBytes('b8 01 00 00 00 c3'))); // mov eax,1 / ret
    m.mem.write(0x600000, Uint8Array.from(hexBytes('b8 02 00 00 00 c3'))); // mov eax,2 / ret
    m.mem.write(CODE, Uint8Array.from(hexBytes('e8 fb ff 2f 00 f4'))); // call LIN / hlt
    runToHlt(m, CODE);
    runToHlt(m, CODE);
    assert.equal(eax(m), 1);
    // Point PD entry 2 at physical 0x600000 (a 2 MiB page) and flush the TLB entry, as the kernel would.
    const pde = new DataView(m.mem.slice(PAGE_TABLES + 8192 + 2 * 8, 8).slice().buffer);
    pde.setUint32(0, 0x600000 | C.PTE_P | C.PTE_RW | C.PTE_US | C.PTE_PS, true);
    m.mem.write(PAGE_TABLES + 8192 + 2 * 8, new Uint8Array(pde.buffer));
    m.cpu.invalidatePage(LIN);
    runToHlt(m, CODE);
    assert.equal(eax(m), 2);
  });

  test(`the same bytes decode per mode: 64-bit, then 32-bit compatibility mode (${tag})`, () => {
    const m = longModeMachine();
    m.cpu.blockCacheEnabled = cached;
    // 64-bit: xor eax,eax / inc rax / hlt.  32-bit: xor eax,eax / dec eax / inc eax / hlt.
    m.mem.write(CODE, Uint8Array.from(hexBytes('31 c0 48 ff c0 f4')));
    runToHlt(m, CODE);
    runToHlt(m, CODE);
    assert.equal(eax(m), 1);
    const code32 = C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | C.SEG_TYPE_READABLE | C.SEG_TYPE_ACCESSED | C.SEG_DB | C.SEG_G;
    m.cpu.loadSegmentRaw(C.CS, 0x08, 0, 0xffffffff, code32);
    assert.equal(m.cpu.mode64, false);
    runToHlt(m, CODE);
    runToHlt(m, CODE);
    assert.equal(eax(m), 0);
  });
}

test('statistics: blocks are recorded once and then replayed', () => {
  const m = cacheMachine();
  m.cpu.blockCacheEnabled = true;
  // mov ecx,1000 / 1: add eax,ebx / dec ecx / jnz 1b / hlt
  m.mem.write(CODE, Uint8Array.from(hexBytes('b9 e8 03 00 00 01 d8 ff c9 75 fa f4')));
  const before = m.cpu.codeCache.stats.blocks;
  runToHlt(m, CODE);
  assert.ok(m.cpu.codeCache.stats.blocks - before <= 4, `blocks recorded: ${m.cpu.codeCache.stats.blocks - before}`);
  assert.ok(m.cpu.blockInstructions >= 2900, `instructions replayed: ${m.cpu.blockInstructions}`);
  assert.equal(m.cpu.instructions, 1 + 3 * 1000 + 1);
});

test('BlockEntry keeps every legal value of its packed fields, independently, and refuses one it cannot hold', () => {
  // The small fields share three integers (code-cache.ts BlockEntry.pk/dec1/dec2): each must read back what was
  // written, whatever its neighbours hold, over the whole range the decoder and the fast forms give them.
  const ranges: Record<string, number[]> = {
    len: [0, 1, 7, 15], opLen: [0, 1, 4, 15], size: [0, 1, 2, 3, 4, 8], ash: [0, 8], bsh: [0, 8], scale: [1, 2, 4, 8],
    seg: [-1, 0, 3, 4, 5], form: [0, 1, 116, 511], opsize: [1, 2, 4, 8], adsize: [2, 4, 8], segOverride: [-1, 0, 5],
    rep: [0, 0xf2, 0xf3], opcode: [0, 0x0f, 0xff, 0x1af, 0x38f0, 0x3fff], rex: [0, 0x40, 0x4f, 0x48],
    rexR: [0, 8], rexX: [0, 8], rexB: [0, 8],
  };
  const flags = ['lock', 'p66', 'rexW'];
  const names = Object.keys(ranges);
  const e = new BlockEntry(() => {}) as unknown as Record<string, number | boolean>;
  // defaults (what a fresh entry held as plain fields)
  assert.deepEqual([e.len, e.opLen, e.size, e.ash, e.bsh, e.seg, e.form, e.opsize, e.adsize, e.segOverride, e.rep, e.rex, e.opcode, e.lock, e.p66, e.rexW],
    [0, 0, 4, 0, 0, -1, 0, 4, 8, -1, 0, 0, 0, false, false, false]);
  for (let round = 0; round < 200; round++) {
    const want: Record<string, number | boolean> = {};
    for (const n of names) { const r = ranges[n]; want[n] = r[(round * 7 + n.length * 3 + round * n.charCodeAt(0)) % r.length]; e[n] = want[n]; }
    for (const f of flags) { want[f] = ((round >> flags.indexOf(f)) & 1) === 1; e[f] = want[f]; }
    for (const n of [...names, ...flags]) assert.equal(e[n], want[n], `${n} in round ${round}`);
  }
  assert.throws(() => { e.len = 16; }, /len cannot hold 16/);
  assert.throws(() => { e.seg = 7; }, /seg cannot hold 7/);
  assert.throws(() => { e.form = 512; }, /form cannot hold 512/);
});
