// Translated forms against the interpreter (src/cpu/soft/wasm/translate.ts): INC/DEC whose carry-in stays lazy
// (Translator.cfLazy: CF read later by ADC, SETC, JB, in the next block, or by a fault), the exit after an inline
// access's slow path that writes back only what changed after it (SLOW_WB: a stack run and a store into the page of
// the running code, which stops the chain), and a RET's canonical check folded into its pop's slow path
// (FOLD_CHECKS: #GP with RSP unchanged). Each program runs hot on both engines; final states are compared.
import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuState, runBlocksToHalt, CODE, DATA, STACK_TOP, MISSING_PAGE, interpreterOrWasmMachine, protectFaultPages, type Machine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import * as C from '../src/cpu/soft/constants.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';

setHotThreshold(0);
setJitThreshold(0);

const memories: GuestMemory[] = [];
test.after(() => { for (const m of memories) m.close(); });

/** A tiny assembler: byte chunks with labels and rel8 jumps to labels (`j(opcode, label)`). */
function assemble(parts: (number[] | string | { j: number; to: string })[]): Uint8Array {
  const at = new Map<string, number>();
  let o = 0;
  for (const p of parts) {
    if (typeof p === 'string') at.set(p, o);
    else if (Array.isArray(p)) o += p.length;
    else o += 2;
  }
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'string') continue;
    if (Array.isArray(p)) { out.push(...p); continue; }
    const d = at.get(p.to)! - (out.length + 2);
    assert.ok(d >= -128 && d < 128, `rel8 to ${p.to}`);
    out.push(p.j, d & 255);
  }
  return Uint8Array.from(out);
}

/** Run `code` at CODE `passes` times on both engines (setup before each), comparing the final state of each pass. */
function both(what: string, code: Uint8Array, passes: number, setup: (m: Machine, pass: number) => void, fault = (_pass: number) => -1,
  mem: (m: Machine) => string = () => '', start = CODE): void {
  const ms = (['interpreter', 'wasm'] as const).map((mode) => {
    const m = interpreterOrWasmMachine(mode, memories);
    protectFaultPages(m);
    m.mem.write(CODE, code);
    return m;
  });
  for (let pass = 0; pass < passes; pass++) {
    const s = ms.map((m) => {
      setup(m, pass);
      const r = runBlocksToHalt(m, 100_000, start);
      return { r, state: { ...cpuState(m), cr2: m.cpu.cr2 }, mem: mem(m) };
    });
    assert.equal(s[0].r, fault(pass), `${what}, pass ${pass}: the interpreter's outcome`);
    assert.deepEqual(s[1], s[0], `${what}, pass ${pass}: translated code = interpreter`);
  }
  assert.ok(ms[1].cpu.jitInstructions > 0, `${what}: translated code ran`);
}

test('INC/DEC keep CF lazily: ADC, SETC and JB read the CF from before them, in the block and after its exit', () => {
  // L1: cmp ecx,100 (CF = ecx < 100) / jmp n1 / n1: dec ecx / adc edx,0 / inc eax / setc bl / add esi,ebx /
  // test ecx,ecx / jnz L1; L2: cmp ecx,50 / jmp n2 / n2: dec edi / inc edi / jmp n3 (the exit stores the INC's
  // record: its CF from the CMP) / n3: jb +2 / inc ebp / dec r9 / jnz L2 / inc r10d / dec r10d / adc r11d,0 / hlt
  const code = assemble([
    [0xb9, 0xc8, 0, 0, 0], [0x31, 0xd2], [0x31, 0xf6], [0x31, 0xdb],
    'L1', [0x81, 0xf9, 100, 0, 0, 0], { j: 0xeb, to: 'n1' }, 'n1',
    [0xff, 0xc9], [0x83, 0xd2, 0x00], [0xff, 0xc0], [0x0f, 0x92, 0xc3], [0x01, 0xde], [0x85, 0xc9], { j: 0x75, to: 'L1' },
    [0xb9, 0x78, 0, 0, 0], [0x41, 0xb9, 0x78, 0, 0, 0],
    'L2', [0x81, 0xf9, 50, 0, 0, 0], [0xff, 0xc9], { j: 0xeb, to: 'n2' }, 'n2',
    [0xff, 0xcf], [0xff, 0xc7], { j: 0xeb, to: 'n3' }, 'n3',
    { j: 0x72, to: 'skip' }, [0xff, 0xc5], 'skip', [0x41, 0xff, 0xc9], { j: 0x75, to: 'L2' },
    [0x41, 0xff, 0xc2], [0x41, 0xff, 0xca], [0x41, 0x83, 0xd3, 0x00], [0xf4],
  ]);
  both('lazy CF', code, 4, (m) => { for (const r of [0, 5, 7, 9, 10, 11]) m.cpu.setGpr(r, 0n); m.cpu.setGpr(7, 1000n); });
});

test('a #PF after an INC whose CF is lazy sees the CF from before it', () => {
  // L: cmp eax,ebx / jmp n / n: inc ecx / mov edx,[rsi] / add rsi,8 / dec r8 / jnz L / hlt; the last pass reads a
  // page that is not there right after the INC (in the loop's block: CF still lazy there)
  const code = assemble([
    'L', [0x39, 0xd8], { j: 0xeb, to: 'n' }, 'n',
    [0xff, 0xc1], [0x8b, 0x16], [0x48, 0x83, 0xc6, 0x08], [0x41, 0xff, 0xc8], { j: 0x75, to: 'L' }, [0xf4],
  ]);
  both('INC then #PF', code, 5, (m, pass) => {
    m.cpu.setGpr(0, 1n); m.cpu.setGpr(3, 2n); m.cpu.setGpr(8, 50n);
    m.cpu.setGpr(6, BigInt(pass === 4 ? MISSING_PAGE - 8 * 20 : DATA));
  }, (pass) => (pass === 4 ? C.EXC_PF : -1));
});

test('a slow path that stops the chain exits with what the instruction changed after it written back', () => {
  // L: add rax,1 / push rax / push rbx / pop rcx / pop rsi / add rbx,rcx / mov [rdi],eax / dec r8 / jnz L / hlt: a
  // self-loop (inline accesses) whose stack or store is in an MMIO page whose device raises an event (as an
  // interrupt controller would) at every 7th access: the slow path that saw it stops the chain, and the exit after
  // that instruction must write back RSP and the popped register, which changed after the slow path's write-backs
  const code = assemble([
    'L', [0x48, 0x83, 0xc0, 0x01], [0x50], [0x53], [0x59], [0x5e], [0x48, 0x01, 0xcb], [0x89, 0x07], [0x41, 0xff, 0xc8],
    { j: 0x75, to: 'L' }, [0xf4],
  ]);
  const MMIO = 0x3000_0000;
  const cases: [string, number, number][] = [
    ['stack in MMIO', MMIO + 0x800, DATA],
    ['store into MMIO', STACK_TOP, MMIO + 0x900],
    ['both in MMIO', MMIO + 0x800, MMIO + 0x900],
  ];
  for (const [what, rsp, rdi] of cases) {
    let exits = 0;
    both(what, code, 3, (m, pass) => {
      if (pass === 0) {
        let n = 0;
        const tick = () => { if (++n % 7 === 0) { m.cpu.notifyEvent(); exits++; } };
        m.mmio.register(MMIO, 4096, { mmioRead: () => { tick(); return 0x1234 + n; }, mmioWrite: () => tick() }, 'irq');
      }
      m.cpu.setGpr(0, 5n); m.cpu.setGpr(3, 7n); m.cpu.setGpr(8, 300n);
      m.cpu.setGpr(4, BigInt(rsp)); m.cpu.setGpr(7, BigInt(rdi));
    });
    assert.ok(exits > 100, `${what}: events raised`);
  }
});

test('a RET to a non-canonical address raises #GP with RSP unchanged, its check on the pop\'s slow path', () => {
  // L: add rax,1 / add rbx,rax / add rcx,rbx / push rdx / ret (to rdx) / f: dec r8 / jnz L / hlt. The pushed address is f, or a non-canonical one on the last pass.
  const code = assemble([
    'L', [0x48, 0x83, 0xc0, 0x01], [0x48, 0x01, 0xc3], [0x48, 0x01, 0xd9], [0x52], [0xc3],
    'f', [0x41, 0xff, 0xc8], { j: 0x75, to: 'L' }, [0xf4],
  ]);
  const f = CODE + 12;
  both('RET #GP', code, 5, (m, pass) => {
    m.cpu.setGpr(0, 1n); m.cpu.setGpr(3, 2n); m.cpu.setGpr(1, 3n); m.cpu.setGpr(8, 40n); m.cpu.setGpr(4, BigInt(STACK_TOP));
    m.cpu.setGpr(2, pass === 4 ? 0x0000_8000_0000_1000n : BigInt(f));
  }, (pass) => (pass === 4 ? C.EXC_GP : -1), (m) => Buffer.from(m.mem.read(STACK_TOP - 16, 16)).toString('hex'));
});

test('a load straight into its register leaves it unchanged when the load faults, its address register too', () => {
  // L: mov rsi,[rsi] / movzx edi,byte [rsi+8] / mov eax,[rsi+12] / add rbx,rax / dec r8 / jnz L / hlt: a list walk in
  // a self-loop (inline loads into the address's own register); the last pass's first node points at a missing page
  const code = assemble([
    'L', [0x48, 0x8b, 0x36], [0x0f, 0xb6, 0x7e, 0x08], [0x8b, 0x46, 0x0c], [0x48, 0x01, 0xc3], [0x41, 0xff, 0xc8],
    { j: 0x75, to: 'L' }, [0xf4],
  ]);
  both('list walk', code, 5, (m, pass) => {
    // nodes at DATA + 32k: next, then a byte at +8 and a dword at +12; the ring's last points back to the first
    for (let k = 0; k < 16; k++) {
      const node = DATA + 32 * k, nextNode = k === 15 ? DATA : node + 32;
      const bytes = new Uint8Array(32);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(pass === 4 && k === 3 ? MISSING_PAGE + 64 : nextNode), true);
      bytes[8] = k * 7; new DataView(bytes.buffer).setUint32(12, 0x1000 + k, true);
      m.mem.write(node, bytes);
    }
    m.cpu.setGpr(6, BigInt(DATA)); m.cpu.setGpr(3, 0n); m.cpu.setGpr(8, 200n);
  }, (pass) => (pass === 4 ? C.EXC_PF : -1));
});
