// RINGZERO_WASM_WRITE_TLB_CODE (./src/cpu/soft/wasm/tlb-probe.ts WRITE_TLB_CODE): translated stores probe the TLB
// without the code-page byte, because the write banks of translated code's TLB view never hold a page that holds
// decoded code or is armed for the dirty-page log. These tests fill a write entry while its page is plain data, then
// make the page hold code (or arm the log) and store through translated code: the store must not hit the stale entry
// (the new bytes run; the log sees the page), and once the page is plain data again its stores hit inline again.
// Machine code from GNU as (`as --64`, Intel syntax in the comments).
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, hexBytes, runBlocksToHalt, CODE, DATA, STACK_TOP, PAGE_TABLES, interpreterOrWasmMachine, translatorTestFile, type Machine } from './support/soft-cpu.ts';
import { setWriteTlbCode } from '../src/cpu/soft/wasm/tlb-probe.ts';
import { setInlineAll } from '../src/cpu/soft/wasm/translate.ts';
import { TLB_BANK } from '../src/cpu/soft/wasm/layout.ts';

const memories = translatorTestFile();
const old = setWriteTlbCode(true);
test.after(() => setWriteTlbCode(old));

/** No write entry of translated code's TLB view (both privileges) maps a page whose codePages byte is set. */
function assertNoCodeWriteEntry(m: Machine): void {
  const wt = m.cpu.wtlb!, pages = m.cpu.codePages;
  const first = (2 * TLB_BANK) / 4, end = (4 * TLB_BANK) / 4;
  for (let k = first; k < end; k += 4) {
    if (wt[k] !== -1) assert.equal(pages[wt[k + 3]], 0, `write entry ${(k - first) / 4} maps page ${wt[k + 3]}, which holds code`);
  }
}

/** Whether a write entry of the view maps physical page `pfn`. */
function writeEntryOf(m: Machine, pfn: number): boolean {
  const wt = m.cpu.wtlb!;
  for (let k = (2 * TLB_BANK) / 4; k < (4 * TLB_BANK) / 4; k += 4) if (wt[k] !== -1 && wt[k + 3] === pfn) return true;
  return false;
}

/** Run `code` at CODE, with `f` at DATA + 0x800, on the interpreter and in wasm (after `prepare`); both must agree. Returns the wasm machine. */
function agree(code: number[], f: number[], prepare: (m: Machine) => void = () => {}): Machine {
  const results = (['interpreter', 'wasm'] as const).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories);
    assert.equal(m.cpu.wtlbNoCode, mode === 'wasm');
    prepare(m);
    m.mem.write(DATA + 0x800, Uint8Array.from(f));
    m.mem.write(CODE, Uint8Array.from(code));
    assert.equal(runBlocksToHalt(m, 1_000_000), -1);
    return { m, s: { ...cpuState(m), f: Buffer.from(m.mem.read(DATA + 0x800, 16)).toString('hex'), stack: Buffer.from(m.mem.read(STACK_TOP - 64, 64)).toString('hex') } };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  const m = results[1].m;
  assert.ok(m.cpu.jitInstructions > 300, `instructions run in wasm: ${m.cpu.jitInstructions}`);
  return m;
}

// Each program stores into the function at DATA + 0x800 (its immediate) and then calls it, 300 times: the first
// store (interpreted) fills the write entry of DATA's page while it holds no code; the call records the function
// there, which must drop that entry, so that every later store (translated) takes the helper and drops the stale
// function (until the page thrashes: 64 invalidations). `sum`: what rbx must hold (each call returns what was just stored).
const MOV_EAX = hexBytes('b8 00 00 00 00 c3'); // mov eax,0 / ret
const MOV_RAX = hexBytes('48 b8 00 00 00 00 00 00 00 00 c3'); // movabs rax,0 / ret
const programs: [string, number[], number[], bigint][] = [
  // mov ecx,300 / xor ebx,ebx / mov edi,0x200800 / 1: mov [rdi+1],ecx / jmp 2f / 2: call rdi / add ebx,eax
  // dec ecx / jnz 1b / hlt
  ['a MOV store (memory library)', hexBytes('b9 2c 01 00 00 31 db bf 00 08 20 00 89 4f 01 eb 00 ff d7 01 c3 ff c9 75 f3 f4'), MOV_EAX, 45150n],
  // mov r8d,300 / xor ebx,ebx / 1: mov edi,0x200801 / mov eax,r8d / mov ecx,4 / rep stosb / jmp 2f
  // 2: mov edx,0x200800 / call rdx / add ebx,eax / dec r8d / jnz 1b / hlt
  ['REP STOSB (bulk fill)', hexBytes(`41 b8 2c 01 00 00 31 db bf 01 08 20 00 44 89 c0 b9 04 00 00 00 f3 aa eb 00 ba 00 08 20 00
    ff d2 01 c3 41 ff c8 75 e1 f4`), MOV_EAX,
    BigInt(Array.from({ length: 300 }, (_, k) => ((k + 1) & 255) * 0x01010101).reduce((a, b) => (a + b) >>> 0, 0))],
  // mov ecx,300 / xor ebx,ebx / 1: mov rbp,rsp / mov esp,0x20080a / push rcx / pop rax / mov rsp,rbp / jmp 2f
  // 2: mov edx,0x200800 / call rdx / add rbx,rax / dec ecx / jnz 1b / hlt
  ['PUSH (a stack run)', hexBytes(`b9 2c 01 00 00 31 db 48 89 e5 bc 0a 08 20 00 51 58 48 89 ec eb 00 ba 00 08 20 00 ff d2
    48 01 c3 ff c9 75 e3 f4`), MOV_RAX, 45150n],
];

for (const inline of [false, true]) {
  for (const [what, code, f, sum] of programs) {
    test(`${what}${inline ? ' from inline-probed code' : ''} into a page that came to hold code after its write entry was filled runs the new bytes`, () => {
      const was = setInlineAll(inline);
      try {
        const m = agree(code, f);
        assert.equal(m.cpu.getGpr(3), sum, 'every call ran the bytes just stored');
        const cache = m.cpu.codeCache;
        // (the page thrashes after 64 invalidations, code-cache.ts THRASH_LIMIT: the function is interpreted from then on)
        assert.ok(cache.stats.invalidations >= 60, `invalidations: ${cache.stats.invalidations}`);
        // (one write entry maps the page: the cache knows which, CodeCache.wslot)
        assert.ok(cache.writeLooks >= 60 && cache.writeDrops >= 60, `write entries looked at ${cache.writeLooks}, entries dropped ${cache.writeDrops}`);
        assertNoCodeWriteEntry(m);
      } finally {
        setInlineAll(was);
      }
    });
  }
}

test('stores through two linear aliases of a page that came to hold code after both write entries were filled run the new bytes', () => {
  // mov ecx,300 / xor ebx,ebx / mov edi,0x200800 / mov esi,0x800800 / 1: mov [rdi+8],ecx / mov [rsi+1],ecx / jmp 2f
  // 2: call rdi / add ebx,eax / dec ecx / jnz 1b / hlt
  // The 2 MiB page at 0x800000 is mapped to DATA's too: the page has two write entries (CodeCache.wmapped 2: a scan).
  const code = hexBytes('b9 2c 01 00 00 31 db bf 00 08 20 00 be 00 08 80 00 89 4f 08 89 4e 01 eb 00 ff d7 01 c3 ff c9 75 f0 f4');
  const m = agree(code, MOV_EAX, (mm) => {
    const pde = (addr: number) => PAGE_TABLES + 8192 + (addr / (2 << 20)) * 8;
    mm.mem.write(pde(0x800000), mm.mem.read(pde(DATA), 8));
    mm.cpu.flushTlb(true);
  });
  assert.equal(m.cpu.getGpr(3), 45150n, 'every call ran the immediate just stored through the alias');
  const cache = m.cpu.codeCache;
  assert.ok(cache.writeScans >= 60 && cache.writeDrops >= 120, `write-bank scans ${cache.writeScans}, entries dropped ${cache.writeDrops}`);
  assertNoCodeWriteEntry(m);
});

test('a page whose code was dropped by a store gets its write entry back: its next stores from translated code hit inline', () => {
  // mov edx,0x200800 / call rdx / mov ecx,1000 / mov edi,0x200010 / 1: mov [rdi],ecx / dec ecx / jnz 1b / hlt
  // The call records `mov eax,0 / ret` in DATA's page; the loop's first store drops it (and refills the entry).
  const code = hexBytes('ba 00 08 20 00 ff d2 b9 e8 03 00 00 bf 10 00 20 00 89 0f ff c9 75 fa f4');
  const m = agree(code, MOV_EAX);
  assert.equal(m.cpu.codePages[DATA >>> 12], 0, 'the page no longer holds code');
  assert.ok(writeEntryOf(m, DATA >>> 12), 'the page has its write entry again');
  const slow = m.cpu.wasm!.stats.slow;
  assert.ok(slow < 20, `stores through the helper: ${slow} (of ~1000)`);
  assertNoCodeWriteEntry(m);
});

test('a page whose code was dropped by a REP MOVSB in JavaScript gets its write entry back: the next copies into it run as bulk copies', () => {
  // mov edx,0x200800 / call rdx / mov r8d,50 / 1: mov esi,0x100000 / mov edi,0x200100 / mov ecx,100 / rep movsb
  // jmp 2f / 2: dec r8d / jnz 1b / hlt
  // The first copy (interpreted: ../src/cpu/soft/ops/flow-string.ts) drops the function's block; 100 bytes is more
  // than translated code copies element by element, so a copy that missed the TLB would be a replay every pass.
  const code = hexBytes('ba 00 08 20 00 ff d2 41 b8 32 00 00 00 be 00 00 10 00 bf 00 01 20 00 b9 64 00 00 00 f3 a4 eb 00 41 ff c8 75 e8 f4');
  const m = agree(code, MOV_EAX);
  assert.equal(m.cpu.codePages[DATA >>> 12], 0, 'the page no longer holds code');
  assert.ok(writeEntryOf(m, DATA >>> 12), 'the page has its write entry again');
  const replays = m.cpu.wasm!.stats.replays;
  assert.ok(replays < 5, `replays: ${replays} (of 49 translated copies)`);
});

test('the dirty log sees a translated store into a page whose write entry was filled before the log was armed', () => {
  // mov ecx,100 / mov edi,0x200000 / 1: mov [rdi],ecx / dec ecx / jnz 1b / hlt
  const code = hexBytes('b9 64 00 00 00 bf 00 00 20 00 89 0f ff c9 75 fa f4');
  const m = interpreterOrWasmMachine('wasm', memories);
  m.mem.write(CODE, Uint8Array.from(code));
  for (let r = 0; r < 2; r++) assert.equal(runBlocksToHalt(m, 1000), -1);
  assert.ok(m.cpu.jitInstructions >= 100, `instructions run in wasm: ${m.cpu.jitInstructions}`);
  assert.ok(writeEntryOf(m, DATA >>> 12), 'the data page has a write entry before the log is armed');
  const slow0 = m.cpu.wasm!.stats.slow;
  m.mem.startDirtyLog();
  try {
    assert.ok(!writeEntryOf(m, DATA >>> 12), 'arming the log dropped it');
    assertNoCodeWriteEntry(m);
    for (let round = 0; round < 3; round++) {
      const jit = m.cpu.jitInstructions;
      assert.equal(runBlocksToHalt(m, 1000), -1);
      assert.ok(m.cpu.jitInstructions - jit >= 300, 'the loop ran in wasm');
      const log = m.mem.harvestDirtyLog();
      assert.equal(log[DATA >>> 12], 1, `round ${round}: the data page is dirty`);
      assert.equal(log[(DATA >>> 12) + 1], 0, `round ${round}: the page after it is clean`);
      assertNoCodeWriteEntry(m);
    }
    // (each round: the first store of the page through the helper, the rest inline after the refill)
    const slow = m.cpu.wasm!.stats.slow - slow0;
    assert.ok(slow >= 3 && slow < 30, `stores through the helper over three rounds: ${slow}`);
  } finally {
    m.mem.stopDirtyLog();
  }
});
