// KERNEL_CALLEES (src/cpu/soft/wasm/runtime.ts): once user code has run, regions translated in the kernel's half of
// the address space get RET_BRANCH too (translate.ts EmitOpts.kret): a predicted RET into a block of its own region
// function branches there instead of leaving for the dispatcher. The program runs at an upper-half linear address
// (PML4 entry 511 maps 0xffffff8000000000 + x to x, as entry 0 maps x) on the interpreter and in wasm (translation
// after a warm-up: JIT threshold 3, synchronous compiles, so the loop's blocks form one region); the wasm run must
// match the interpreter's state, and the dispatcher's named entries (a predicted RET names its return block to it)
// show whether the RETs branched.
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, CODE, PAGE_TABLES, cpuState, interpreterOrWasmMachine, runBlocksToHalt, translatorTestFile, type Machine } from './support/soft-cpu.ts';
import { setAsync, setKernelCallees } from '../src/cpu/soft/wasm/runtime.ts';
import { setRas, setRetBranch } from '../src/cpu/soft/wasm/translate.ts';

const memories = translatorTestFile(3);
setRas(true);
setRetBranch(true);
setAsync(false);

/** The kernel-half alias of physical (and identity-mapped) address 0. */
const KBASE = -(2 ** 39);

/**
 * 2000 calls of g (at CODE + 0x40, the caller's page), run at KBASE + CODE:
 *   mov ecx,2000 / L: call g / R: add eax,1 / dec ecx / jnz L / hlt
 * `late`: the engine has seen user code (its flag set as a batch flushed from CPL 3 sets it). Returns the interpreter's
 * machine and the wasm one (states checked equal).
 */
function run(g: string, kernelCallees: boolean, late = true): Machine[] {
  const code = hexBytes('b9 d0 07 00 00 e8 36 00 00 00 83 c0 01 ff c9 75 f4 f4');
  const old = setKernelCallees(kernelCallees);
  try {
    const ms = (['interpreter', 'wasm'] as const).map((mode) => {
      const m = interpreterOrWasmMachine(mode, memories);
      // (PML4[511] = PML4[0]: the same PDPT, so KBASE + x maps to x)
      m.mem.write(PAGE_TABLES + 511 * 8, m.mem.read(PAGE_TABLES, 8));
      m.cpu.flushTlb(true);
      m.mem.write(CODE, Uint8Array.from(code));
      m.mem.write(CODE + 0x40, Uint8Array.from(hexBytes(g)));
      if (mode === 'wasm' && late) (m.cpu.wasm as unknown as { sawUser: boolean }).sawUser = true;
      assert.equal(runBlocksToHalt(m, 1_000_000, KBASE + CODE), -1);
      return m;
    });
    assert.deepEqual(cpuState(ms[1]), cpuState(ms[0]), 'translated code = interpreter');
    assert.equal(ms[1].cpu.rip, KBASE + CODE + 18, 'stopped after the HLT, in the upper half');
    return ms;
  } finally {
    setKernelCallees(old);
  }
}

// g: add eax,2 / ret
const PLAIN = '83 c0 02 c3';

test('kernel-half code: a predicted RET branches within its region with KERNEL_CALLEES, after the boot only', () => {
  const [, on] = run(PLAIN, true);
  const [, off] = run(PLAIN, false);
  const [, boot] = run(PLAIN, true, false);
  for (const m of [on, off, boot]) assert.equal(m.cpu.getGpr(0), 6000n);
  // off (and during the boot): every translated pass's RET names its return block to the dispatcher; on: they branch
  assert.ok(off.cpu.wasm!.stats.direct > 1500, `named dispatcher entries without: ${off.cpu.wasm!.stats.direct}`);
  assert.ok(boot.cpu.wasm!.stats.direct > 1500, `named dispatcher entries before user code ran: ${boot.cpu.wasm!.stats.direct}`);
  assert.ok(on.cpu.wasm!.stats.direct < 100, `named dispatcher entries with KERNEL_CALLEES: ${on.cpu.wasm!.stats.direct}`);
  assert.ok(on.cpu.wasm!.stats.intra > off.cpu.wasm!.stats.intra + 1500, `region branches: ${on.cpu.wasm!.stats.intra} vs ${off.cpu.wasm!.stats.intra}`);
});

test('kernel-half code: a RET to an address other than the CALL pushed does not branch to the predicted block', () => {
  // g: cmp ecx,1000 / jne 1f / add qword [rsp],3 / 1: add eax,2 / ret: at the pass with ECX = 1000 the return address
  // moves past R's ADD (to the DEC): that RET must go there, not to the member the token names
  const [, w] = run('81 f9 e8 03 00 00 75 05 48 83 04 24 03 83 c0 02 c3', true);
  // (2000 passes of +2, all but one of +1)
  assert.equal(w.cpu.getGpr(0), 5999n);
});

test('kernel-half code: a RET after its callee rewrote the return block goes to the new code', () => {
  // g: cmp ecx,1000 / jne 1f / mov byte [rdi],3 / 1: add eax,2 / ret, rdi = R + 2 (the add's immediate): from the
  // pass with ECX = 1000 on, R adds 3 (the store into code ends the function and the dispatcher call)
  const [, w] = (() => {
    const old = setKernelCallees(true);
    try {
      const code = hexBytes('b9 d0 07 00 00 e8 36 00 00 00 83 c0 01 ff c9 75 f4 f4');
      const ms = (['interpreter', 'wasm'] as const).map((mode) => {
        const m = interpreterOrWasmMachine(mode, memories);
        m.mem.write(PAGE_TABLES + 511 * 8, m.mem.read(PAGE_TABLES, 8));
        m.cpu.flushTlb(true);
        m.mem.write(CODE, Uint8Array.from(code));
        m.mem.write(CODE + 0x40, Uint8Array.from(hexBytes('81 f9 e8 03 00 00 75 03 c6 07 03 83 c0 02 c3')));
        m.cpu.setGpr(7, BigInt(KBASE + CODE + 12));
        if (mode === 'wasm') (m.cpu.wasm as unknown as { sawUser: boolean }).sawUser = true;
        assert.equal(runBlocksToHalt(m, 1_000_000, KBASE + CODE), -1);
        return m;
      });
      assert.deepEqual(cpuState(ms[1]), cpuState(ms[0]), 'translated code = interpreter');
      return ms;
    } finally {
      setKernelCallees(old);
    }
  })();
  // (1000 passes of +1 +2, then 1000 of +3 +2)
  assert.equal(w.cpu.getGpr(0), 8000n);
});
