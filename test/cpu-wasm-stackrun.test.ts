// Stack runs of the WebAssembly translator (src/cpu/soft/wasm/translate.ts stackRun) with loads from elsewhere and
// PUSH memory inside them: the run's stack accesses still take its single probe (counted: RINGZERO_WASM_EXIT_STATS,
// set before the translator is loaded, so this file imports it dynamically), and a #PF on any access of the run (an
// interleaved load, PUSH memory's read or its push) leaves the interpreter's registers, RSP, CR2 and memory.
import test from 'node:test';
import assert from 'node:assert/strict';

process.env.RINGZERO_WASM_EXIT_STATS = '1';
const { cpuState, hexBytes, runBlocksToHalt, CODE, DATA, STACK_TOP, interpreterOrWasmMachine, RO_PAGE, MISSING_PAGE, protectFaultPages } = await import('./support/soft-cpu.ts');
const { setHotThreshold, setJitThreshold } = await import('../src/cpu/soft/code-cache.ts');
const C = await import('../src/cpu/soft/constants.ts');
const { GuestMemory, MiB } = await import('../src/memory/guest-memory.ts');
type Machine = ReturnType<typeof interpreterOrWasmMachine>;

setHotThreshold(0);
setJitThreshold(0);

const memories: InstanceType<typeof GuestMemory>[] = [];
test.after(() => { for (const m of memories) m.close(); });

// add rbx,1 / push rax / push rcx / mov rdx,[rsi] / push rdx / push qword [rdi] / add rbx,[rsi+8] / push rbx /
// mov r9d,[rdi+4] / mov r8,[rsp+8] / pop r10 / pop r11 / hlt: one block, seven stack accesses and four loads elsewhere
const CODE_HEX = '48 83 c3 01 50 51 48 8b 16 52 ff 37 48 03 5e 08 53 44 8b 4f 04 4c 8b 44 24 08 41 5a 41 5b f4';

function libraryCalls(m: Machine): number {
  const line = m.cpu.wasm!.statsLine();
  const k = /library calls (\d+)/.exec(line);
  assert.ok(k, 'EXIT_STATS counts library calls');
  return Number(k[1]);
}

function run(m: Machine, rsp: number, rsi: number, rdi: number, write: boolean): number {
  m.cpu.setGpr(4, BigInt(rsp)); m.cpu.setGpr(6, BigInt(rsi)); m.cpu.setGpr(7, BigInt(rdi));
  m.cpu.setGpr(0, 0x1122_3344_5566_7788n); m.cpu.setGpr(1, 0x0102_0304_0506_0708n);
  if (write) m.mem.write(CODE, Uint8Array.from(hexBytes(CODE_HEX)));
  return runBlocksToHalt(m, 1000);
}

test('a stack run goes on over loads from elsewhere and PUSH memory: its stack accesses still probe once', () => {
  const m = interpreterOrWasmMachine('wasm', memories);
  const pattern = Uint8Array.from({ length: 64 }, (_, k) => (k * 13 + 5) & 255);
  m.mem.write(DATA, pattern);
  for (let k = 0; k < 4; k++) assert.equal(run(m, STACK_TOP, DATA, DATA + 16, k === 0), -1);
  const before = libraryCalls(m), ran = m.cpu.jitInstructions;
  assert.equal(run(m, STACK_TOP, DATA, DATA + 16, false), -1);
  assert.equal(m.cpu.jitInstructions - ran, 13, 'the block ran translated (with its HLT)');
  // the four loads elsewhere (mov rdx,[rsi], push [rdi]'s read, add rbx,[rsi+8], mov r9d,[rdi+4]); none for the
  // seven stack accesses (before: the loads split the run, seven calls)
  assert.equal(libraryCalls(m) - before, 4, 'library calls of one pass');
});

test('a #PF on a load, a PUSH memory read or a push inside a stack run, or a load of the run\'s own bytes, matches the interpreter', () => {
  const top = MISSING_PAGE + 2 * MiB;
  const cases: [string, number, number, number, number][] = [
    ['all mapped, one page', top + 0x800, DATA, DATA + 16, -1],
    ['the loads read the bytes the run just pushed', top + 0x800, top + 0x800 - 16, top + 0x800 - 24, -1],
    ['#PF on mov rdx,[rsi] after two pushes', top + 0x800, MISSING_PAGE + 64, DATA, C.EXC_PF],
    ['#PF on push [rdi]\'s read', top + 0x800, DATA, MISSING_PAGE + 8, C.EXC_PF],
    ['#PF on push [rdi]\'s push (the page below)', top + 24, DATA, DATA + 16, C.EXC_PF],
    ['#PF on push rbx over the page end', top + 32, DATA, DATA + 16, C.EXC_PF],
    ['#PF on add rbx,[rsi+8] after four pushes', top + 0x800, MISSING_PAGE - 8, DATA, C.EXC_PF],
    ['the run in a read-only page', RO_PAGE + 0x1000, DATA, DATA + 16, C.EXC_PF],
    ['over a page end, all mapped', top + 0x1000 + 16, DATA, DATA + 16, -1],
  ];
  for (const [what, rsp, rsi, rdi, fault] of cases) {
    const results = (['interpreter', 'wasm'] as const).map((mode) => {
      const m = interpreterOrWasmMachine(mode, memories);
      protectFaultPages(m);
      const pattern = Uint8Array.from({ length: 256 }, (_, k) => (k * 7 + 3) & 255);
      m.mem.write(DATA, pattern); m.mem.write(top + 0x780, pattern); m.mem.write(MISSING_PAGE - 128, pattern.subarray(0, 128));
      for (let k = 0; k < 3; k++) assert.equal(run(m, STACK_TOP, DATA, DATA + 16, k === 0), -1, `${what}: run ${k}`);
      const ran = m.cpu.jitInstructions;
      assert.equal(run(m, rsp, rsi, rdi, false), fault, what);
      const around = (a: number) => Buffer.from(m.mem.read(a - 64, 128)).toString('hex');
      return { ran: m.cpu.jitInstructions - ran, s: { ...cpuState(m), cr2: m.cpu.cr2, mem: [around(rsp), around(top), around(top + 0x1000), around(STACK_TOP)] } };
    });
    assert.deepEqual(results[1].s, results[0].s, `${what}: translated code = interpreter`);
    assert.ok(results[1].ran > 0, `${what}: the faulting pass was translated`);
  }
});
