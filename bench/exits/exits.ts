// bench/exits: the cost of one port-I/O exit round trip (guest `out` in a loop, N iterations) through ringzero's
// KVM engine, against a minimal C program doing the same ioctl sequence (./exits.c, compiled here with gcc).
// Variants, interleaved round by round because this host is noisy (compare within one run, read the ratios):
//   c       ./exits.c: KVM_RUN loop in C, the exit handled inline
//   inline  the engine with the vCPU on the main thread (KvmEngineOptions.inlineBoot), dispatch to a PortBus device
//   worker  the engine with the vCPU on a worker thread, each exit handed to the main thread and back
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

async function runEngine(inline: boolean): Promise<number> {
  const mem = new GuestMemory(64 * MiB);
  const ports = new PortBus();
  let sink = 0;
  ports.register(0x80, 1, { ioRead: () => 0xff, ioWrite: (_p, _s, v) => { sink += v; } }, 'bench');
  const engine = await KvmEngine.create({ mem, ports, mmio: new MmioBus(), inlineBoot: inline });
  try {
    mem.write(CODE_AT, guestCode(N));
    const v = engine.vcpus[0];
    const s = v.getSpecialRegisters();
    s.cs = { ...s.cs, selector: 0, base: 0 };
    v.setSpecialRegisters(s);
    const r = v.getRegisters();
    r.rip = BigInt(CODE_AT);
    v.setRegisters(r);
    const t0 = process.hrtime.bigint();
    const exit = await v.run();
    const ns = Number(process.hrtime.bigint() - t0);
    if (exit.reason !== 'halt' || v.exits !== N + 1) throw new Error(`unexpected end: ${JSON.stringify(exit)} after ${v.exits} exits`);
    return ns / N;
  } finally {
    await engine.close();
    mem.close();
  }
}

function runC(binary: string): number {
  const [, , exits, ns] = execFileSync(binary, [String(N)], { encoding: 'utf8' }).trim().split(' ');
  if (Number(exits) !== N) throw new Error(`C reference: ${exits} exits`);
  return Number(ns) / N;
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
    const t: Record<'c' | 'inline' | 'worker', number[]> = { c: [], inline: [], worker: [] };
    for (let round = 0; round < ROUNDS; round++) {
      t.c.push(runC(binary));
      t.inline.push(await runEngine(true));
      t.worker.push(await runEngine(false));
    }
    const c = median(t.c), inline = median(t.inline), worker = median(t.worker);
    const us = (ns: number) => (ns / 1000).toFixed(2).padStart(7);
    console.log(`KVM: ${host.verdict} (${host.reason})`);
    console.log(`port-I/O exit round trip, ${N} exits, median of ${ROUNDS} interleaved rounds:`);
    console.log(`  C reference        ${us(c)} µs/exit`);
    console.log(`  ringzero inline    ${us(inline)} µs/exit   ${(inline / c).toFixed(2)}x C`);
    console.log(`  ringzero worker    ${us(worker)} µs/exit   ${(worker / c).toFixed(2)}x C`);
    console.log(JSON.stringify({
      bench: 'exits', kvm: host.verdict, n: N, rounds: ROUNDS,
      c_ns: Math.round(c), inline_ns: Math.round(inline), worker_ns: Math.round(worker),
      inline_ratio: +(inline / c).toFixed(3), worker_ratio: +(worker / c).toFixed(3),
      c_all_ns: t.c.map(Math.round), inline_all_ns: t.inline.map(Math.round), worker_all_ns: t.worker.map(Math.round),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
