// Translated code with inline TLB probes on every memory operand (translate.ts EmitOpts.inline: what runtime.ts
// INLINE_LATE gives code translated once user code runs; INLINE_ALL, set here, gives it to every function). The
// loops below must leave exactly what the interpreter leaves where the inline fast path must not be taken: a store
// into a page holding code (self-modifying code), TLB misses, MMIO, accesses straddling a page end, and faults
// (dirty cached registers and a deferred flag record committed first).
// Machine code from GNU as (`as --64`, Intel syntax in the comments).
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, hexBytes, runBlocksToHalt, CODE, DATA, STACK_TOP, interpreterOrWasmMachine, protectFaultPages, RO_PAGE, MISSING_PAGE, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';
import { disassemble } from '../src/cpu/soft/wasm/dump.ts';
import { translateBody, TIER1, setInlineAll } from '../src/cpu/soft/wasm/translate.ts';

setHotThreshold(0);
setJitThreshold(0);
const inlineAll = setInlineAll(true);
test.after(() => setInlineAll(inlineAll));

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

type Mode = 'interpreter' | 'wasm';

/** Run `code` from CODE on the interpreter and in wasm (after `prepare`); both must agree (registers, flags, RIP, counts, fault, memory). */
function agree(code: number[], prepare: (m: Machine) => void = () => {}, dataBytes = 4096): Machine {
  const results = (['interpreter', 'wasm'] as Mode[]).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories);
    prepare(m);
    m.mem.write(CODE, Uint8Array.from(code));
    const fault = runBlocksToHalt(m, 1_000_000);
    return {
      m,
      s: {
        ...cpuState(m), fault,
        code: Buffer.from(m.mem.read(CODE, code.length)).toString('hex'),
        data: Buffer.from(m.mem.read(DATA, dataBytes)).toString('hex'),
        stack: Buffer.from(m.mem.read(STACK_TOP - 256, 256)).toString('hex'),
      },
    };
  });
  assert.deepEqual(results[1].s, results[0].s, 'translated code = interpreter');
  const c = results[1].m.cpu;
  assert.ok(c.jitInstructions > 100, `instructions run in wasm: ${c.jitInstructions}`);
  return results[1].m;
}

const fill = (m: Machine) => {
  const d = new Uint8Array(8192);
  let x = 0x2468ace1;
  for (let i = 0; i < d.length; i++) { x = (Math.imul(x, 1103515245) + 12345) | 0; d[i] = x >>> 24; }
  m.mem.write(DATA, d);
};

{
  test(`a store from inline-probed code into a page holding translated code takes the helper: the patched instruction runs`, () => {
    //   mov ecx,300 / xor ebx,ebx / mov edi,0x200000 / lea rsi,[rip+patch+2]
    //   1: patch: add ebx,1 / jmp 2f / 2: mov rax,rdi / cmp ecx,100 / cmove rax,rsi / mov byte [rax],5 / add rdi,1
    //   dec ecx / jnz 1b / hlt
    // Every pass stores a byte through the same instruction, into the data page, except at ecx = 100, into the
    // immediate of `add ebx,1` (its own code page): from then on each pass adds 5.
    const code = hexBytes(`b9 2c 01 00 00 31 db bf 00 00 20 00 48 8d 35 02 00 00 00 83 c3 01 eb 00 48 89 f8 83 f9 64 48
      0f 44 c6 c6 00 05 48 83 c7 01 ff c9 75 e6 f4`);
    const m = agree(code);
    assert.equal(m.cpu.getGpr(3), 201n + 99n * 5n, 'the patched immediate is used from the pass after the store');
    assert.ok(m.cpu.codeCache.stats.invalidations >= 1);
  });

  test(`a store from inline-probed code that hits the write TLB in a page that now holds code takes the helper`, () => {
    //   mov ecx,300 / xor ebx,ebx / mov edi,0x200800 / 1: mov [rdi+1],ecx / jmp 2f / 2: call rdi / add ebx,eax
    //   dec ecx / jnz 1b / hlt
    // and at 0x200800 (the data page): mov eax,0 / ret. Each pass stores ecx into that MOV's immediate, then calls
    // it: from the second pass on the store hits the write TLB (filled by the first), into a page holding decoded
    // code; only the code-page byte sends it to the helper, which drops the stale block.
    const code = hexBytes('b9 2c 01 00 00 31 db bf 00 08 20 00 89 4f 01 eb 00 ff d7 01 c3 ff c9 75 f3 f4');
    const m = agree(code, (mm) => mm.mem.write(DATA + 0x800, Uint8Array.from(hexBytes('b8 00 00 00 00 c3'))));
    assert.equal(m.cpu.getGpr(3), 45150n, 'every call ran the immediate just stored');
    assert.ok(m.cpu.codeCache.stats.invalidations >= 32, `invalidations: ${m.cpu.codeCache.stats.invalidations}`);
  });

  test(`loads and stores of every size from inline-probed code, on TLB hits, misses and straddling a page end, match the interpreter`, () => {
    // mov ecx,40
    // 1: movzx eax,byte [rsi] / movzx ebx,word [rsi+2] / mov edx,[rsi+4] / mov r8,[rsi+8] / add r8,rcx
    //    mov [rdi],al / mov [rdi+2],bx / mov [rdi+4],edx / mov [rdi+8],r8 / add rsi,1 / add rdi,1 / jmp 2f
    // 2: dec ecx / jnz 1b / hlt
    // (as test/cpu-wasm-memfn: the loop walks its loads and stores across a page end, so each size straddles it)
    const code = hexBytes(`b9 28 00 00 00 0f b6 06 0f b7 5e 02 8b 56 04 4c 8b 46 08 49 01 c8 88 07 66 89 5f 02 89 57 04
      4c 89 47 08 48 83 c6 01 48 83 c7 01 eb 00 ff c9 75 d4 f4`);
    const m = agree(code, (mm) => {
      fill(mm);
      mm.cpu.setGpr(6, BigInt(DATA + 0x1000 - 24));
      mm.cpu.setGpr(7, BigInt(DATA + 0x800 - 24));
      mm.cpu.flushTlb(true);
    });
    assert.ok(m.cpu.wasm!.stats.slow >= 8, `slow accesses: ${m.cpu.wasm!.stats.slow}`);
  });

  test(`TLB misses and MMIO accesses from inline-probed code go through the helpers with exact results`, () => {
    //   mov ecx,200 / mov esi,0x200000
    //   1: mov eax,[rsi] / add eax,ecx / mov [rdx],eax / mov ebx,[rdx+4] / add [rsi+4],ebx / jmp 2f
    //   2: mov [rsi],eax / add rsi,4104 / dec ecx / jnz 1b / hlt
    // rdx points at an MMIO page whose device records stores and answers loads with a count; rsi moves to a new page
    // every pass (a first-level TLB miss each time).
    const code = hexBytes(`b9 c8 00 00 00 be 00 00 20 00 8b 06 01 c8 89 02 8b 5a 04 01 5e 04 eb 00 89 06 48 81 c6 08 10
      00 00 ff c9 75 e5 f4`);
    const MMIO = 0x3000_0000; // inside the 1 GiB identity map, above RAM
    const logs: number[][] = [];
    const m = agree(code, (mm) => {
      fill(mm);
      const log: number[] = [];
      logs.push(log);
      let reads = 0;
      mm.mmio.register(MMIO, 4096, { mmioRead: () => 0x100 + reads++, mmioWrite: (_off, _size, v) => { log.push(v); } }, 'probe');
      mm.cpu.setGpr(2, BigInt(MMIO + 8));
      mm.cpu.flushTlb(true);
    });
    assert.equal(logs[1].length, 200);
    assert.deepEqual(logs[1], logs[0]);
    assert.ok(m.cpu.wasm!.stats.slow >= 400, `slow accesses: ${m.cpu.wasm!.stats.slow}`);
  });

  for (const [what, page] of [['not present (load)', MISSING_PAGE], ['read-only (store)', RO_PAGE]] as const) {
    test(`a fault in inline-probed code on a page ${what} sees every earlier instruction's registers and flags`, () => {
        //   mov ecx,200 / mov esi,0x200000 / xor ebx,ebx / xor edx,edx
      //   1: add rbx,rcx / lea rdx,[rdx+rbx*2] / mov rax,[rsi] / add rax,rdx / mov [rsi+8],rax / sub r8d,ecx / jmp 2f
      //   2: cmp ecx,20 / jne 3f / mov esi,PAGE-16 / 3: add rsi,16 / mov r9,[rsi] / xor r9,rbx / mov [rsi],r9d
      //   dec ecx / jnz 1b / hlt
      // Registers change between the accesses (cached in locals, dirty) and the flags of `add rsi,16` are deferred
      // when the load after it faults: the helper's fault must find them stored.
      const imm = page - 16;
      const code = hexBytes(`b9 c8 00 00 00 be 00 00 20 00 31 db 31 d2 48 01 cb 48 8d 14 5a 48 8b 06 48 01 d0 48 89 46 08 41
        29 c8 eb 00 83 f9 14 75 05 be ${[0, 8, 16, 24].map((s) => ((imm >>> s) & 255).toString(16)).join(' ')} 48 83 c6 10
        4c 8b 0e 49 31 d9 44 89 0e ff c9 75 cf f4`);
      const m = agree(code, (mm) => { fill(mm); protectFaultPages(mm); });
      assert.equal(m.cpu.faultVector, 14, 'page fault');
      assert.equal(m.cpu.cr2, page);
    });
  }

  test('an inline-probed body holds TLB probes, the default one none: it calls the memory library', () => {
    // the loop of the first test above, without the patch (cmp ecx,1000: the cmove is never taken)
    const code = hexBytes(`b9 2c 01 00 00 31 db bf 00 00 20 00 48 8d 35 02 00 00 00 83 c3 01 eb 00 48 89 f8 81 f9 e8 03
      00 00 48 0f 44 c6 c6 00 05 48 83 c7 01 ff c9 75 e3 f4`);
    const m = interpreterOrWasmMachine('wasm', memories);
    m.mem.write(CODE, Uint8Array.from(code));
    runBlocksToHalt(m, 1_000_000);
    assert.equal(m.cpu.getGpr(3), 300n);
    // (the loop's second block, with the store: translated alone, at the threshold of 0)
    const loop = m.cpu.codeCache.translated.get((CODE + 0x18) * 16 + 8)!;
    assert.ok(loop, 'the block with the store is translated');
    // an inline probe: a TLB tag compared with the access's page (../src/cpu/soft/wasm/tlb-probe.ts: i64.and by
    // -4096, then i64.ne)
    const probes = (code: Uint8Array): number => {
      const ops = disassemble(code, 0, code.length).map((l) => l.trim());
      let n = 0;
      for (let i = 2; i < ops.length; i++) if (ops[i] === 'i64.ne' && (ops[i - 1] === 'i64.and' || (ops[i - 1].startsWith('local.tee') && ops[i - 2] === 'i64.and'))) n++;
      return n;
    };
    const t2 = translateBody(loop, undefined, { inline: true })!;
    setInlineAll(false);
    try {
      const t1 = translateBody(loop, undefined, TIER1)!;
      assert.equal(probes(t1.body.code()), 0, 'default: no inline probe');
      assert.ok(probes(t2.body.code()) >= 1, 'inline: probes');
      assert.ok(t2.body.code().length > t1.body.code().length, `inline bigger: ${t2.body.code().length} against ${t1.body.code().length} bytes`);
    } finally {
      setInlineAll(true);
    }
  });
}
