// Boot phases (issue 4: where the soft engine's boot time goes, phase by phase): RINGZERO_BOOT_PHASES=FILE appends one
// JSON line to FILE for every line the guest prints on its serial console (and for the shell's prompt, which ends
// no line), with the engine's counters at that moment: host ms since the process started, the process's and the main
// thread's CPU, the run loop's sleeps with every vCPU halted (count, ms), guest instructions (all, from cached blocks, in translated code), blocks recorded and translated,
// modules, the main thread's build/compile ms and, with RINGZERO_TIER_STATS=1, the instructions replayed in
// JavaScript by why they were not in wasm (warming, queued, in flight, never, too long). bench/boot-phases.ts reads
// the file and splits the boot at the kernel's own messages. The serial console hands its bytes on in a microtask,
// which runs at the end of the run loop's slice: a row holds the counters there, up to one slice (SLICE instructions)
// after the guest printed the line. With
// --profile-guest, the guest profile of each phase (up to each of PHASE_ENDS) goes to FILE.N.json, unnamed (resolve
// its addresses against the guest's kallsyms), and the profile restarts.
import { appendFileSync, readdirSync } from 'node:fs';
import type { SoftCpu } from '../cpu/soft/cpu.ts';
import { mainThreadCpuSeconds } from '../cpu/soft/code-cache.ts';
import { readProcStat, statCpuSeconds } from '../sys/proc-stat.ts';
import type { GuestProfile } from './guest-profile.ts';

const FILE = process.env.RINGZERO_BOOT_PHASES ?? '';

/** The kernel's and init's lines that end the boot's phases (their rows also get every thread's CPU). */
export const PHASE_ENDS = /smpboot: Total of|Trying to unpack rootfs|Freeing initrd memory|Run \/init|~ # $/;

/** CPU seconds of each of this process's threads by name (/proc/self/task/TID: comm, utime + stime), summed by name. */
function threadCpu(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readProcStat(`/proc/self/task/${tid}/stat`);
      if (stat === undefined) continue; // ended meanwhile
      const name = tid === String(process.pid) ? 'main' : stat.comm;
      out[name] = (out[name] ?? 0) + statCpuSeconds(stat);
    }
  } catch { /* gone meanwhile */ }
  return out;
}

/** A tap on the console's bytes that records the counters at each line, or null when RINGZERO_BOOT_PHASES is unset. */
export function bootPhaseTap(cpus: () => SoftCpu[], more: () => Record<string, number>, profile?: GuestProfile): ((bytes: Uint8Array) => void) | null {
  if (FILE === '') return null;
  let line = '';
  let prompted = false;
  let phase = 0;
  const record = (text: string) => {
    const cs = cpus();
    const sum = (f: (c: SoftCpu) => number) => cs.reduce((n, c) => n + f(c), 0);
    const w = cs[0]?.wasm ?? null;
    const cpu = process.cpuUsage();
    const row = {
      ms: Math.round(performance.now()),
      // (the monotonic clock in µs, as V8's --cpu-prof stamps its samples)
      mono: Number(process.hrtime.bigint() / 1000n),
      cpu: (cpu.user + cpu.system) / 1e6,
      main: mainThreadCpuSeconds(),
      instr: sum((c) => c.instructions),
      block: sum((c) => c.blockInstructions),
      jit: sum((c) => c.jitInstructions),
      blocks: cs[0]?.codeCache.stats.blocks ?? 0,
      inval: cs[0]?.codeCache.stats.invalidations ?? 0,
      compiled: w?.stats.compiled ?? 0,
      modules: w?.stats.modules ?? 0,
      calls: w?.stats.calls ?? 0,
      tableCalls: w?.stats.tableCalls ?? 0,
      replays: w?.stats.replays ?? 0,
      slow: w?.stats.slow ?? 0,
      walks: sum((c) => c.tlbWalks),
      buildMs: Math.round(w?.stats.buildMs ?? 0),
      compileMs: Math.round(w?.stats.compileMs ?? 0),
      tier: w !== null ? [...w.tierInstr] : [],
      ...more(),
      text: text.slice(0, 100),
      ...(PHASE_ENDS.test(text) ? { threads: threadCpu() } : {}),
    };
    appendFileSync(FILE, `${JSON.stringify(row)}\n`);
    if (profile !== undefined && PHASE_ENDS.test(text)) {
      profile.write(`${FILE}.${phase++}.json`);
      profile.reset();
    }
  };
  return (bytes) => {
    for (const b of bytes) {
      if (b === 10) { record(line.replace(/\r$/, '')); line = ''; prompted = false; continue; }
      line += String.fromCharCode(b);
    }
    // (busybox's ash asks the terminal for the cursor position, ESC [ 6 n, right after its prompt)
    if (!prompted && /# (\x1b\[6n)?$/.test(line)) { prompted = true; record(line.replace('\x1b[6n', '')); }
  };
}
