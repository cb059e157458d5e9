// A migration's destination warms up V8 on the VMM's own JavaScript before it takes the VM (issue 7).
//
// Why: the destination is a new VMM process. The hot-block list (src/cpu/soft/hot-list.ts) gives it the source's
// translated code, but the emulator's JavaScript (the interpreter, the block cache's recording and replays, the wasm
// runtime's glue and helpers, page walks, interrupt delivery, the APIC, PIT and UART models) has never run in it: the
// guest's first instructions there run it in V8's interpreter until V8 has compiled it, ~1.4-2 us a guest instruction
// against ~20-30 ns at the source (session 24; session 25: in its first 100 ms 60-140k instructions in 65-100 ms of
// main-thread CPU whenever the guest ran code the list did not hold).
//
// What: a scratch machine of its own boots the migrating VM's kernel and initramfs (the definition the source's hello
// carries: the same guest code, so V8 collects type feedback like the guest's) on one vCPU, with no disks, NICs,
// vsock, balloon or control socket, a console that drops its output, and RAM of its own (a separate memfd: nothing
// of the guest's), in short steps with a turn of the event loop between them, for a bounded amount of the main
// thread's CPU and of wall time, or until its guest idles (halted for IDLE_MS in all: nothing more to warm). It is
// then dropped; V8 keeps the compiled code of the functions it ran, which the guest's machine runs through the same
// classes. The destination does this between the source's hello and its "ready" (src/migration/destination.ts):
// the source's guest runs on meanwhile, and none of its pages are being tracked yet, so the downtime is untouched;
// the migration takes that much longer in all. RINGZERO_MIGRATE_WARMUP_MS sets the main-thread CPU it may take (0:
// no warm-up), RINGZERO_MIGRATE_WARMUP_WALL_MS its wall time.
import { Machine } from '../vmm/machine.ts';
import type { ConsoleIo, VmConfig } from '../vmm/config.ts';
import { RunExit } from '../cpu/soft/index.ts';
import { forgetUartByte } from '../vmm/console-stamps.ts';
import { threadCpuClock } from '../sys/thread-cpu.ts';

/** Main-thread CPU the warm-up may take (ms; RINGZERO_MIGRATE_WARMUP_MS, 0: none). */
export const WARMUP_MS = Number(process.env.RINGZERO_MIGRATE_WARMUP_MS ?? 0);

/** Wall time of the warm-up at most (ms; RINGZERO_MIGRATE_WARMUP_WALL_MS): a loaded host's share of the cores stretches its CPU. */
export const WARMUP_WALL_MS = Number(process.env.RINGZERO_MIGRATE_WARMUP_WALL_MS ?? 6000);

/**
 * Added to the scratch guest's command line: its kernel prints through the 8250 UART from its first steps on
 * (Documentation/admin-guide/kernel-parameters.txt, earlycon=uart8250,io,ADDR), so the UART's port paths, which the
 * guest's console output takes, run during the warm-up too, not only once its serial driver is up (tens of millions
 * of instructions into the boot, more than a warm-up on a loaded host gets to).
 */
const EARLYCON = 'earlycon=uart8250,io,0x3f8';

/** Wall time of one step (ms): the event loop's I/O waits at most about this long behind it. */
const STEP_MS = 4;
/** A scratch guest halted this long in all (ms of wall time) has booted as far as it goes: the warm-up ends. */
const IDLE_MS = 500;
/** Instructions per run() call within a step: small while cold (~2 us each), so a step ends near STEP_MS. */
const BUDGET = 2000;

/** What the warm-up did. */
export interface WarmUpReport {
  /** Main-thread CPU of its steps (ms, ../sys/thread-cpu.ts), its wall time from the start, the scratch guest's instructions, steps. */
  ms: number;
  wallMs: number;
  instructions: number;
  steps: number;
  /** Bytes the scratch guest wrote to its console (dropped): its kernel got as far as printing. */
  consoleBytes: number;
  /** It used up its CPU or wall time, or its guest idled (true), or it was stopped (false). */
  done: boolean;
  /** Wall time (ms) the scratch guest was halted. */
  haltedMs: number;
  /** Why it ended early: the scratch machine could not be built, or its guest stopped (reset, triple fault). */
  failed?: string;
}

/**
 * Boot a scratch copy of `config`'s kernel for at most `ms` of main-thread CPU and `wallMs` of wall time, in steps of
 * STEP_MS with a turn of the event loop between them (`rest` times the step's time, 0: setImmediate); onDone is told
 * when it ends, also by stop() (before its next step: a step never overlaps the caller's own work, all on one thread).
 */
export function warmUp(config: VmConfig, onDone?: (r: WarmUpReport) => void, opts: { ms?: number; wallMs?: number; rest?: number } = {}): { report: WarmUpReport; stop(): void; released: Promise<void> } {
  const ms = opts.ms ?? WARMUP_MS, wallMs = opts.wallMs ?? WARMUP_WALL_MS, rest = opts.rest ?? 0;
  const started = performance.now();
  const report: WarmUpReport = { ms: 0, wallMs: 0, instructions: 0, steps: 0, consoleBytes: 0, done: false, haltedMs: 0 };
  const quiet: ConsoleIo = { write(data) { report.consoleBytes += data.length; }, onInput() { return () => {}; } };
  let machine: Machine | undefined;
  let stopped = false;
  // (resolved once the scratch machine is closed, after the end: its garbage is then garbage)
  let onReleased = () => {};
  const released = new Promise<void>((resolve) => { onReleased = resolve; });
  let timer: NodeJS.Timeout | undefined;
  const end = () => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    onDone?.(report);
    release();
  };
  // (its RAM goes once no module of its translator is still compiling: an install writes into that RAM's wasm memory)
  const release = () => {
    if ((machine?.vcpus[0]?.cpu.wasm?.compiling ?? 0) > 0) { setTimeout(release, 20).unref(); return; }
    machine?.close();
    machine = undefined;
    onReleased();
  };
  if (!(ms > 0) || config.engine === 'kvm') { queueMicrotask(end); return { report, stop: end, released }; }
  try {
    // (the guest's kernel, initramfs and command line on one vCPU; nothing that reaches outside this process)
    const scratch: VmConfig = {
      engine: 'soft', kernel: config.kernel, cmdline: `${config.cmdline} ${EARLYCON}`, cpus: 1, memory: config.memory, onReboot: 'exit',
      ...(config.initrd !== undefined ? { initrd: config.initrd } : {}),
      ...(config.rng ? { rng: true } : {}), ...(config.virtioConsole ? { virtioConsole: true } : {}),
      ...(config.translate !== undefined ? { translate: config.translate } : {}),
    };
    machine = new Machine(scratch, quiet);
    machine.loadKernel();
  } catch (error) {
    report.failed = (error as Error).message;
    queueMicrotask(end);
    return { report, stop: end, released };
  }
  const cpu = machine.vcpus[0].cpu, clock = machine.clock, threadCpuMs = threadCpuClock();
  const step = () => {
    timer = undefined;
    if (stopped) return;
    const t = performance.now(), c0 = threadCpuMs(), i0 = cpu.instructions;
    let exit: RunExit = RunExit.Budget;
    // (as the run loop does: a slice, then the timers due; a halted guest waits for the next step, its clock running)
    do {
      exit = cpu.run(BUDGET);
      clock.runDue();
    } while (exit === RunExit.Budget && performance.now() - t < STEP_MS);
    const took = performance.now() - t;
    report.steps++;
    report.wallMs = performance.now() - started;
    report.ms += threadCpuMs() - c0;
    report.instructions += cpu.instructions - i0;
    // (its UART's bytes are no console output of this VMM's guest: src/vmm/console-stamps.ts)
    forgetUartByte();
    if (exit === RunExit.Shutdown || machine?.exitRequested !== undefined) { report.failed = 'the scratch guest stopped'; end(); return; }
    if (report.ms >= ms || report.wallMs >= wallMs || report.haltedMs >= IDLE_MS) { report.done = true; end(); return; }
    if (exit === RunExit.Halted) {
      // (a halted scratch guest waits for its next timer, as the run loop sleeps: up to 20 ms, its clock running)
      const wait = Math.max(1, Math.min(20, (clock.nextDeadline() - clock.now()) / 1e6));
      report.haltedMs += wait;
      timer = setTimeout(step, wait);
    } else if (rest > 0) {
      timer = setTimeout(step, Math.min(rest * took, 50));
    } else {
      setImmediate(step);
    }
  };
  setImmediate(step);
  return { report, stop: end, released };
}
