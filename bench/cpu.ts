// Micro benchmarks of the software CPU: small 64-bit guest loops run in-process, each reporting guest MIPS.
//
//   node --import tsx bench/cpu.ts            (REPS=5 runs of each, the best is kept; ONLY=alu,mem to pick;
//                                              ENGINES=interp,closures,jit to pick)
//
// Times are the process's CPU time (user + system), not wall time. Each loop runs on three engines in the same run:
// the plain interpreter (what RINGZERO_TRANSLATE=0 / --no-translate gives), the decoded-block cache replaying
// closures (RINGZERO_JIT=0), the default, hot blocks translated to JavaScript (src/cpu/soft/jit), and hot blocks
// translated to WebAssembly (RINGZERO_JIT=wasm, src/cpu/soft/wasm); the ratios are against the interpreter.
//
// The machine is shared and noisy: compare figures from the same run (or several runs) rather than across days.
// The last line is one JSON object of the figures, for scripts.
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import { VmClock } from '../src/vmm/clock.ts';
import { SoftCpu, setupFlatLongMode } from '../src/cpu/soft/index.ts';

const CODE = 0x100000;
const DATA = 0x200000;
const STACK_TOP = 0x300000;

interface Bench {
  name: string;
  what: string;
  /** Machine code (assembled with `as --64 -msyntax=intel`; the assembly is in the comment). */
  code: string;
  setup?: (mem: GuestMemory) => void;
  /** Extra figure: bytes moved per run, reported as MB/s. */
  bytes?: number;
}

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));

const BENCHES: Bench[] = [
  {
    name: 'alu',
    what: 'add eax,ebx; dec ecx; jnz (10M iterations)',
    // mov ecx,10000000 / 1: add eax,ebx / dec ecx / jnz 1b / hlt
    code: 'b9 80 96 98 00 01 d8 ff c9 75 fa f4',
  },
  {
    name: 'mem',
    what: 'mov rax,[rsi]; add rax,1; mov [rsi+8],rax; mov edx,[rsi+16]; mov [rsi],rax; dec; jnz (5M)',
    // mov ecx,5000000 / mov rsi,0x200000 / 1: mov rax,[rsi] / add rax,1 / mov [rsi+8],rax / mov edx,[rsi+16]
    // mov [rsi],rax / dec ecx / jnz 1b / hlt
    code: 'b9 40 4b 4c 00 48 c7 c6 00 00 20 00 48 8b 06 48 83 c0 01 48 89 46 08 8b 56 10 48 89 06 ff c9 75 eb f4',
  },
  {
    name: 'callret',
    what: 'call f; dec ecx; jnz / f: push rbx; pop rbx; ret (3M)',
    // mov ecx,3000000 / 1: call 2f / dec ecx / jnz 1b / hlt / 2: push rbx / pop rbx / ret
    code: 'b9 c0 c6 2d 00 e8 05 00 00 00 ff c9 75 f7 f4 53 5b c3',
  },
  {
    name: 'strlen',
    what: 'movzx eax,byte [rsi]; inc rsi; test al,al; jnz over 99 bytes (20k)',
    // mov edx,20000 / 1: mov rsi,0x200000 / 2: movzx eax,byte [rsi] / inc rsi / test al,al / jnz 2b
    // cmp rsi,0x200000 / dec edx / jnz 1b / hlt
    code: 'ba 20 4e 00 00 48 c7 c6 00 00 20 00 0f b6 06 48 ff c6 84 c0 75 f6 48 81 fe 00 00 20 00 ff ca 75 e4 f4',
    setup: (mem) => { const s = new Uint8Array(100).fill(0x61); s[99] = 0; mem.write(DATA, s); },
  },
  {
    name: 'repmovsb',
    what: 'rep movsb of 4 KiB (20k)',
    // mov edx,20000 / 1: mov rsi,0x200000 / mov rdi,0x240000 / mov ecx,4096 / rep movsb / dec edx / jnz 1b / hlt
    code: 'ba 20 4e 00 00 48 c7 c6 00 00 20 00 48 c7 c7 00 00 24 00 b9 00 10 00 00 f3 a4 ff ca 75 e7 f4',
    bytes: 20000 * 4096,
  },
];

type Engine = 'interp' | 'closures' | 'jit' | 'wasm';

function runOnce(b: Bench, engine: Engine): { instructions: number; ms: number } {
  // A fresh memory per run: the block cache belongs to the memory, so no run inherits another's blocks.
  const wasm = engine === 'wasm';
  const mem = new GuestMemory(64 * MiB, undefined, { wasm });
  const cpu = new SoftCpu({ mem, ports: new PortBus(), mmio: new MmioBus(), clock: new VmClock(), blockCache: engine !== 'interp', wasm });
  cpu.jitEnabled = engine === 'jit' || wasm;
  if (wasm && cpu.wasm === null) throw new Error('the wasm engine could not be set up');
  setupFlatLongMode(cpu, { pml4: 0x10000, identityMapBytes: 1 << 30, cpl: 0 });
  cpu.setGpr(4, BigInt(STACK_TOP));
  b.setup?.(mem);
  mem.write(CODE, hex(b.code));
  cpu.rip = CODE;
  // CPU time of this process rather than wall time: less sensitive to other processes on a shared machine.
  const c0 = process.cpuUsage();
  while (!cpu.halted) cpu.run(1_000_000);
  const c = process.cpuUsage(c0);
  const ms = (c.user + c.system) / 1000;
  if (cpu.lastException !== -1) throw new Error(`${b.name}: guest exception ${cpu.lastException}`);
  return { instructions: cpu.instructions, ms };
}

const reps = Number(process.env.REPS ?? 5);
const only = process.env.ONLY?.split(',');
const engines = (process.env.ENGINES?.split(',') ?? ['interp', 'closures', 'jit', 'wasm']) as Engine[];
const figures: Record<string, number> = {};
for (const b of BENCHES) {
  if (only && !only.includes(b.name)) continue;
  console.log(`${b.name}: ${b.what}`);
  let base = 0;
  for (const engine of engines) {
    let best = Infinity, instructions = 0;
    for (let r = 0; r < reps; r++) {
      const res = runOnce(b, engine);
      instructions = res.instructions;
      best = Math.min(best, res.ms);
    }
    const mips = instructions / best / 1000;
    if (engine === engines[0]) base = mips;
    figures[`${b.name}_${engine}`] = Number(mips.toFixed(2));
    let line = `  ${engine.padEnd(9)} ${mips.toFixed(2).padStart(7)} MIPS  ${best.toFixed(0).padStart(6)} ms  ${(mips / base).toFixed(2)}x ${engines[0]}`;
    if (b.bytes) {
      const mbs = b.bytes / best / 1000;
      figures[`${b.name}_${engine}_MBs`] = Number(mbs.toFixed(1));
      line += `  (${mbs.toFixed(0)} MB/s)`;
    }
    console.log(line);
  }
}
console.log(JSON.stringify(figures));
