// Blocks holding an instruction that straddles the end of its page (SoftCpu.recordBlock, Block.pfn2): the instruction
// runs inside the cached block (closures) and inside translated wasm, and whatever can make its recorded bytes stale
// is seen exactly as the interpreter sees it: a store into either page (self-modifying code), the next linear page
// remapped to another physical page (INVLPG, or a CR3 reload), and that page made not present (#PF on the fetch).
// Each program runs on the plain interpreter (the reference), on the block cache's closures (no translator), on
// the JavaScript translator's path and on the wasm translator; registers, flags, RIP, instruction counts, CR2, the
// fault and memory must agree. Blocks are recorded at their first visit (then the straddler, whose next page is not
// in the fetch TLB yet, starts a block of its own) or at their 4th (then it ends the block that leads to it).
//
// The loop (hand-assembled; GNU as, Intel syntax): CODE: mov ecx,N / jmp L; L = 0x101ff0: add rbx,rcx / call F /
// NOPs / the straddler S, ending in the page at 0x102000 / add r8,rax / dec ecx / jnz L / hlt. F (0x103000) is a
// variant (a store into one of S's pages, a remap, ...) then ret. The first 2 MiB are mapped with 4 KiB pages
// (page table at 0x20000) so one page can be remapped or removed.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, hexBytes, runBlocksToHalt, CODE, DATA, STACK_TOP, PAGE_TABLES, translatorMachine, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, type Block } from '../src/cpu/soft/code-cache.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';
import * as C from '../src/cpu/soft/constants.ts';

setJitThreshold(0);

type Mode = 'interpreter' | 'closures' | 'js' | 'wasm';
const MODES: Mode[] = ['closures', 'js', 'wasm'];
const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

const PT = 0x20000;
const L = 0x101ff0;
const PAGE2 = 0x102000;
const F = 0x103000;
const ALT = 0x104000; // the physical page the remap variants map PAGE2 to

function machine(mode: Mode): Machine {
  const m = translatorMachine(mode === 'wasm', memories, { interpreter: mode === 'interpreter' });
  m.cpu.jitEnabled = mode === 'wasm' || mode === 'js';
  m.cpu.setGpr(4, BigInt(STACK_TOP));
  // 4 KiB pages for the first 2 MiB: PDE 0 -> PT, PT[i] -> i * 4096
  const pt = new DataView(new ArrayBuffer(4096));
  for (let i = 0; i < 512; i++) pt.setUint32(i * 8, (i * 4096) | C.PTE_P | C.PTE_RW | C.PTE_US, true);
  m.mem.write(PT, new Uint8Array(pt.buffer));
  const pde = new DataView(new ArrayBuffer(8));
  pde.setUint32(0, PT | C.PTE_P | C.PTE_RW | C.PTE_US, true);
  m.mem.write(PAGE_TABLES + 8192, new Uint8Array(pde.buffer));
  m.cpu.flushTlb(true);
  return m;
}

/**
 * The program image from CODE: the loop with straddler `s` (ending `into` bytes into PAGE2) and F = `f`; `alt`
 * (when given) is what ALT holds: PAGE2's bytes with `alt` applied.
 */
function program(s: number[], into: number, f: number[], n = 200, alt?: (page: Uint8Array) => void): Map<number, Uint8Array> {
  const start = PAGE2 + into - s.length;
  const img = new Uint8Array(PAGE2 + 0x40 - CODE).fill(0x90);
  const put = (at: number, b: number[]) => img.set(b, at - CODE);
  // mov ecx,n / jmp L
  put(CODE, [0xb9, n & 0xff, (n >> 8) & 0xff, 0, 0, 0xe9, ...le32(L - (CODE + 10))]);
  put(L, [...hexBytes('48 01 cb'), 0xe8, ...le32(F - (L + 8))]); // add rbx,rcx / call F
  put(start, s);
  let p = PAGE2 + into;
  const tail = hexBytes('49 01 c0 ff c9 0f 85');
  put(p, tail);
  p += tail.length;
  put(p, [...le32(L - (p + 4)), 0xf4]);
  const out = new Map<number, Uint8Array>([[CODE, img], [F, Uint8Array.from([...f, 0xc3])]]);
  if (alt) {
    const page = img.slice(PAGE2 - CODE, PAGE2 - CODE + 0x40);
    alt(page);
    out.set(ALT, page);
  }
  return out;
}

function le32(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
}

function snapshot(m: Machine) {
  return {
    ...cpuState(m),
    code: Buffer.from(m.mem.read(L - 16, 0x80)).toString('hex'),
    pt: Buffer.from(m.mem.read(PT + 0x100 * 8, 64)).toString('hex'),
    data: Buffer.from(m.mem.read(DATA, 64)).toString('hex'),
  };
}

/** Run the image on the interpreter and in `mode` (blocks recorded at visit `hot` + 1); they must agree. */
function agree(image: Map<number, Uint8Array>, mode: Mode, hot: number): { m: Machine; fault: number } {
  setHotThreshold(hot);
  try {
    const run = (md: Mode) => {
      const m = machine(md);
      for (const [at, bytes] of image) m.mem.write(at, bytes);
      const fault = runBlocksToHalt(m, 2_000_000);
      return { m, fault, s: snapshot(m) };
    };
    const ref = run('interpreter');
    const got = run(mode);
    assert.deepEqual(got.s, ref.s, `${mode} = interpreter`);
    assert.equal(got.fault, ref.fault);
    return got;
  } finally {
    setHotThreshold(0);
  }
}

/** The straddling blocks in the cache (their page-2 dependency recorded). */
function straddlers(m: Machine): Block[] {
  return m.cpu.codeCache.table.filter((b): b is Block => b !== undefined && b.pfn2 >= 0);
}

// The straddlers: mov rax,imm64 (5 bytes in each page), lea rax,[rip+0x12345678] (md5's lea r10 in busybox is such a
// RIP-relative LEA: 4 bytes + 3), popcnt rax,rbx (no fast form: replayed through its handler; its 0F B8 opcode is
// in the next page).
const STRADDLERS: { name: string; s: number[]; into: number }[] = [
  { name: 'MOV r64, imm64', s: hexBytes('48 b8 88 77 66 55 44 33 22 11'), into: 5 },
  { name: 'RIP-relative LEA', s: hexBytes('48 8d 05 78 56 34 12'), into: 3 },
  { name: 'POPCNT (no fast form, opcode in the next page)', s: hexBytes('f3 48 0f b8 c3'), into: 2 },
];

for (const { name, s, into } of STRADDLERS) {
  for (const mode of MODES) {
    for (const hot of [0, 3]) {
      test(`${name} straddling a page end runs in its block (${mode}, recorded at visit ${hot + 1})`, () => {
        const { m } = agree(program(s, into, []), mode, hot);
        const c = m.cpu;
        assert.ok(straddlers(m).length >= 1, 'a block holds the straddler');
        if (hot === 3) {
          // recorded late: the straddler ends the block after the call (the next page was in the fetch TLB by then)
          const b = straddlers(m).find((x) => x.pa === L + 8);
          assert.ok(b && b.n > 1, 'the block from the return address ends with the straddler');
          assert.equal(b.pfn2, PAGE2 >>> 12);
        }
        // (before: the straddler was interpreted at every pass, 200; now only in the first passes)
        assert.ok(c.instructions - c.blockInstructions <= 100, `outside cached blocks: ${c.instructions - c.blockInstructions} of ${c.instructions}`);
        // (a block of POPCNT alone, as at the first visit, has nothing worth translating: it runs as closures)
        if (mode === 'wasm' && !(hot === 0 && name.startsWith('POPCNT'))) {
          assert.ok(c.instructions - c.jitInstructions <= 120, `outside wasm: ${c.instructions - c.jitInstructions} of ${c.instructions}`);
          if (!name.startsWith('POPCNT')) assert.ok(c.wasm!.stats.replays <= 5, `replays: ${c.wasm!.stats.replays}`);
        }
        assert.equal(c.straddleMisses, 0);
      });
    }
  }
}

// F variants (GNU as): stores, remaps, unmaps.
const SMC_PAGE2 = hexBytes('88 0c 25 01 20 10 00'); // mov [0x102001],cl: a byte of the imm64 in the next page
const SMC_PAGE1 = hexBytes('88 0c 25 fe 1f 10 00'); // mov [0x101ffe],cl: a byte of the imm64 in the block's page
// cmp ecx,25 / jne 1f / mov dword [PT + 0x102*8], 0x104007 / invlpg [0x102000] / 1:
const REMAP_INVLPG = hexBytes('83 f9 19 75 13 c7 04 25 10 08 02 00 07 40 10 00 0f 01 3c 25 00 20 10 00');
// cmp ecx,25 / jne 1f / mov dword [PT + 0x102*8], 0x104007 / mov rax,cr3 / mov cr3,rax / 1:
const REMAP_CR3 = hexBytes('83 f9 19 75 11 c7 04 25 10 08 02 00 07 40 10 00 0f 20 d8 0f 22 d8');
// cmp ecx,25 / jne 1f / mov dword [PT + 0x102*8], 0 / invlpg [0x102000] / 1:
const UNMAP = hexBytes('83 f9 19 75 13 c7 04 25 10 08 02 00 00 00 00 00 0f 01 3c 25 00 20 10 00');
const IMM64 = STRADDLERS[0];
/** ALT: PAGE2 with other imm64 bytes (the upper five) and popcnt's/lea's tails changed too. */
const altBytes = (page: Uint8Array) => { for (let k = 0; k < 5; k++) page[k] ^= 0x5a; };

for (const mode of MODES) {
  for (const hot of [0, 3]) {
    const tag = `${mode}, recorded at visit ${hot + 1}`;
    test(`a store into the straddler's next page each pass is seen (${tag})`, () => {
      const { m } = agree(program(IMM64.s, IMM64.into, SMC_PAGE2), mode, hot);
      assert.ok(m.cpu.codeCache.stats.invalidations >= 20, `invalidations: ${m.cpu.codeCache.stats.invalidations}`);
    });

    test(`a store into the straddler's own page each pass is seen (${tag})`, () => {
      agree(program(IMM64.s, IMM64.into, SMC_PAGE1), mode, hot);
    });

    for (const [how, f] of [['INVLPG', REMAP_INVLPG], ['a CR3 reload', REMAP_CR3]] as const) {
      for (const st of STRADDLERS) {
        test(`${st.name}: its next page remapped to another physical page (${how}) runs the new bytes (${tag})`, () => {
          const { m } = agree(program(st.s, st.into, f, 50, altBytes), mode, hot);
          if (mode !== 'closures' || hot === 3) assert.ok(m.cpu.straddleMisses >= 1, 'the guard saw the remap');
          // (after the remap the block's next page is another one: interpreted from then on, 25 passes)
          assert.ok(m.cpu.straddleMisses <= 26, `misses: ${m.cpu.straddleMisses}`);
        });
      }
    }

    test(`the straddler's next page made not present raises #PF on the fetch, exactly (${tag})`, () => {
      const { m, fault } = agree(program(IMM64.s, IMM64.into, UNMAP), mode, hot);
      assert.equal(fault, C.EXC_PF);
      assert.equal(m.cpu.cr2, PAGE2);
      assert.equal(m.cpu.rip, PAGE2 - 5, 'RIP at the straddler');
      assert.equal(m.cpu.getGpr(1), 25n);
    });
  }
}

test('a page-2 generation change re-records the block: the new block holds the straddler again', () => {
  // (every pass stores into the next page: the first run after each store interprets the straddler and drops the block)
  setHotThreshold(0);
  const m = machine('closures');
  for (const [at, bytes] of program(IMM64.s, IMM64.into, [])) m.mem.write(at, bytes);
  assert.equal(runBlocksToHalt(m, 100000), -1);
  const before = straddlers(m).length;
  assert.ok(before >= 1);
  m.mem.write(PAGE2 + 1, Uint8Array.of(0x99)); // (GuestMemory.write reports the write: the page's generation moves)
  m.cpu.setGpr(8, 0n);
  assert.equal(runBlocksToHalt(m, 100000), -1);
  const imm = 0x1122339955667788n;
  assert.equal(m.cpu.getGpr(8), (200n * imm) & 0xffff_ffff_ffff_ffffn);
  const cache = m.cpu.codeCache;
  const b = straddlers(m).find((x) => x.pa === L + 8)!;
  assert.ok(b && b.gen === cache.pageGen[b.pa >>> 12] && b.gen2 === cache.pageGen[b.pfn2], 'recorded again, current');
  assert.equal(m.cpu.straddleMisses, 1, 'interpreted once, then the new block ran');
});

test('a rotate whose flags a straddling ALU instruction overwrites keeps them for that instruction\'s #PF on the fetch (wasm)', () => {
  // or esi,-1 / rol esi,7 / add esi,ecx (straddling: its ModRM byte in the next page). Translated code skips a
  // rotate's flags when a later ALU form overwrites them (translate.ts flagsDead), but not for a straddler, which
  // may be replayed or fault on its fetch and then sees the rotate's CF (1; OR's was 0).
  const s = hexBytes('83 ce ff c1 c6 07 01 ce');
  for (const hot of [0, 3]) {
    const { m, fault } = agree(program(s, 1, UNMAP), 'wasm', hot);
    assert.equal(fault, C.EXC_PF);
    assert.equal(m.cpu.rip, PAGE2 - 1, 'RIP at the straddler');
    assert.equal(m.cpu.getFlags() & C.CF, C.CF, 'the rotate\'s CF');
  }
});

test('a RET into a page made not present: the fetch fault at the block start counts the instruction as the interpreter does', () => {
  // (before, SoftCpu.execBlock's refill of the fetch window faulted without counting the instruction: one fewer)
  // CODE: mov ecx,50 / jmp P; P = 0x102000: call F / dec ecx / jnz P / hlt; F = 0x103000: the UNMAP variant / ret
  const image = new Map<number, Uint8Array>([
    [CODE, Uint8Array.from(hexBytes('b9 32 00 00 00 e9 f6 1f 00 00'))],
    [PAGE2, Uint8Array.from(hexBytes('e8 fb 0f 00 00 ff c9 75 f5 f4'))],
    [F, Uint8Array.from([...UNMAP, 0xc3])],
  ]);
  for (const mode of MODES) {
    const { m, fault } = agree(image, mode, 0);
    assert.equal(fault, C.EXC_PF);
    assert.equal(m.cpu.cr2, PAGE2 + 5);
  }
});
