// bench/exits: the cost of one port-I/O exit round trip (guest `out` in a loop, N iterations) through ringzero's
// KVM engine, against a minimal C program doing the same ioctl sequence (./exits.c, compiled here with gcc).
// Variants, interleaved round by round because this host is noisy (compare within one run, read the ratios):
//   c       ./exits.c: KVM_RUN loop in C, the exit handled inline
//   inline  the engine with the vCPU on the main thread (KvmEngineOptions.inlineBoot), dispatch to a PortBus device
//   worker  the engine with the vCPU on a worker thread, each exit handed to the main thread and back
//   posted  the worker with port 0x80 as a posted port (KvmEngineOptions.postedPorts): the worker completes the OUT
//           itself and the main thread gets the values in batches (what the POST port and the debug console use)
// Two measures per variant: wall time per exit, and CPU time per exit (user + system of the whole process, every
// thread; for C the loop's getrusage). Wall time includes being descheduled on this shared 2-vCPU host, which swings
// the wall ratio from 0.8x to 1.8x between runs; CPU time is what the exit path itself costs, so the CPU ratio is
// the stable one. Ratios are taken round by round (each engine round against the C round just before it), then
// the median over rounds. One warm-up round of each variant runs first and is not counted.
// Usage: node --import tsx bench/exits/exits.ts [N=20000] [rounds=5]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvmEngine } from '../../src/cpu/kvm/engine.ts';
import { GuestMemory, MiB } from '../../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../../src/devices/bus.ts';
import { detectKvm } from '../../src/kvm/host.ts';

const N = Number(process.argv[2] ?? 20000);
const ROUNDS = Number(process.argv[3] ?? 5);
const CODE_AT = 0x1000;

/** Real mode: mov ecx, N; l: out 0x80, al; dec ecx; jnz l; hlt (the same bytes as exits.c). */
function guestCode(n: number): Uint8Array {
  return Uint8Array.from([0x66, 0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff, 0xe6, 0x80, 0x66, 0x49, 0x75, 0xfa, 0xf4]);
}

interface Sample { wall: number; cpu: number } // ns per exit

type Variant = 'c' | 'inline' | 'worker' | 'posted';

async function runEngine(inline: boolean, posted = false): Promise<Sample> {
  const mem = new GuestMemory(64 * MiB);
  const ports = new PortBus();
  let sink = 0;
  ports.register(0x80, 1, { ioRead: () => 0xff, ioWrite: (_p, _s, v) => { sink += v; } }, 'bench');
  const engine = await KvmEngine.create({ mem, ports, mmio: new MmioBus(), inlineBoot: inline, postedPorts: posted ? [0x80] : undefined });
  try {
    mem.write(CODE_AT, guestCode(N));
    const v = engine.vcpus[0];
    const s = v.getSpecialRegisters();
    s.cs = { ...s.cs, selector: 0, base: 0 };
    v.setSpecialRegisters(s);
    const r = v.getRegisters();
    r.rip = BigInt(CODE_AT);
    v.setRegisters(r);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const exit = await v.run();
    const ns = Number(process.hrtime.bigint() - t0);
    const cpu = process.cpuUsage(cpu0);
    if (exit.reason !== 'halt' || v.exits + v.postedExits !== N + 1) throw new Error(`unexpected end: ${JSON.stringify(exit)} after ${v.exits} exits`);
    // The device saw every write (the guest writes AL = 0 each time; count the writes through the posted path).
    if (posted && v.postedExits !== N) throw new Error(`posted: ${v.postedExits} of ${N} writes delivered`);
    return { wall: ns / N, cpu: ((cpu.user + cpu.system) * 1000) / N };
  } finally {
    await engine.close();
    mem.close();
  }
}

function runC(binary: string): Sample {
  const [, , exits, ns, cpu] = execFileSync(binary, [String(N)], { encoding: 'utf8' }).trim().split(' ');
  if (Number(exits) !== N) throw new Error(`C reference: ${exits} exits`);
  return { wall: Number(ns) / N, cpu: Number(cpu) / N };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const host = detectKvm();
  if (host.verdict === 'none') {
    console.log(`bench/exits: no usable KVM (${host.reason})`);
    console.log(JSON.stringify({ bench: 'exits', skipped: host.reason }));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'rz-exits-'));
  const binary = join(dir, 'exits');
  try {
    execFileSync('gcc', ['-O2', '-o', binary, fileURLToPath(new URL('./exits.c', import.meta.url))]);
    const t: Record<Variant, Sample[]> = { c: [], inline: [], worker: [], posted: [] };
    for (let round = -1; round < ROUNDS; round++) {
      const c = runC(binary);
      const inline = await runEngine(true);
      const worker = await runEngine(false);
      const posted = await runEngine(false, true);
      if (round < 0) continue; // warm-up: JIT, page cache, first KVM_RUN of a fresh process
      t.c.push(c);
      t.inline.push(inline);
      t.worker.push(worker);
      t.posted.push(posted);
    }
    const med = (v: Variant, k: keyof Sample) => median(t[v].map((s) => s[k]));
    const ratio = (v: Exclude<Variant, 'c'>, k: keyof Sample) => median(t[v].map((s, i) => s[k] / t.c[i][k]));
    const us = (ns: number) => (ns / 1000).toFixed(2).padStart(7);
    const line = (name: string, v: Variant) =>
      `  ${name.padEnd(17)} wall ${us(med(v, 'wall'))} µs` + (v === 'c' ? '        ' : ` ${ratio(v, 'wall').toFixed(2)}x`) +
      `   cpu ${us(med(v, 'cpu'))} µs` + (v === 'c' ? '' : ` ${ratio(v, 'cpu').toFixed(2)}x`);
    console.log(`KVM: ${host.verdict} (${host.reason})`);
    console.log(`port-I/O exit round trip, ${N} exits, median of ${ROUNDS} interleaved rounds (ratios: per round against C):`);
    console.log(line('C reference', 'c'));
    console.log(line('ringzero inline', 'inline'));
    console.log(line('ringzero worker', 'worker'));
    console.log(line('ringzero posted', 'posted'));
    const all = (v: Variant, k: keyof Sample) => t[v].map((s) => Math.round(s[k]));
    console.log(JSON.stringify({
      bench: 'exits', kvm: host.verdict, n: N, rounds: ROUNDS,
      c_ns: Math.round(med('c', 'wall')), inline_ns: Math.round(med('inline', 'wall')), worker_ns: Math.round(med('worker', 'wall')),
      posted_ns: Math.round(med('posted', 'wall')),
      inline_ratio: +ratio('inline', 'wall').toFixed(3), worker_ratio: +ratio('worker', 'wall').toFixed(3),
      posted_ratio: +ratio('posted', 'wall').toFixed(3), posted_cpu_ratio: +ratio('posted', 'cpu').toFixed(3),
      c_cpu_ns: Math.round(med('c', 'cpu')), inline_cpu_ns: Math.round(med('inline', 'cpu')), worker_cpu_ns: Math.round(med('worker', 'cpu')),
      inline_cpu_ratio: +ratio('inline', 'cpu').toFixed(3), worker_cpu_ratio: +ratio('worker', 'cpu').toFixed(3),
      c_all_ns: all('c', 'wall'), inline_all_ns: all('inline', 'wall'), worker_all_ns: all('worker', 'wall'),
      c_all_cpu_ns: all('c', 'cpu'), inline_all_cpu_ns: all('inline', 'cpu'), worker_all_cpu_ns: all('worker', 'cpu'),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
