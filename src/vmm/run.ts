// Run one VM to completion on the engine its config names: the entry point of `ringzero run` (and of
// `ringzero run --restore DIR`, which starts from a snapshot instead of the kernel).
import type { VmConfig, ConsoleIo } from './config.ts';
import { Machine, type MachineOptions } from './machine.ts';
import type { ReadSnapshotOptions } from './snapshot.ts';
import { threadCpuClock } from '../sys/thread-cpu.ts';
import { profileResume, startResumeProfile } from './resume-profile.ts';
import { favourMainThread, favourSession, groupBoosted, OTHERS_NICE, RESUME_BOOST, RESUME_NICE_S } from './resume-priority.ts';

/**
 * Boot the VM and run it until the guest powers off (status 0), or resets with `onReboot: 'exit'`
 * (status 0); with `onReboot: 'restart'` a reset boots a fresh machine from the same config.
 */
export async function runVm(cfg: VmConfig, io: ConsoleIo, options: MachineOptions = {}): Promise<number> {
  return runMachines(cfg, io, options, undefined);
}

/**
 * Start the VM saved in the snapshot directory `dir` (on the engine it names) and run it as runVm does; a reset
 * afterwards boots a fresh machine from the saved configuration. Throws SnapshotError for a damaged or foreign
 * snapshot (with `verifyMemory`, also for a memory image that does not match its SHA-256).
 */
export async function restoreVm(dir: string, io: ConsoleIo, options: MachineOptions & ReadSnapshotOptions & { controlSocket?: string } = {}): Promise<number> {
  const timing = process.env.RINGZERO_RESTORE_TIMING === '1' ? restoreTiming() : undefined;
  startResumeProfile();
  const machine = Machine.restore(dir, io, options);
  timing?.();
  // RINGZERO_RESTORE_HOT=before: the snapshot's hot blocks translated before the guest runs (Machine RestoreHotOptions)
  if (machine.hotBeforeRun) await machine.pretranslateRestored(0);
  // The guest's thread first while V8 compiles what this new process has not, as at a migration's destination
  // (src/vmm/resume-priority.ts): soft engine only (KVM's vCPUs may run on worker threads)
  if (machine.config.engine !== 'kvm') {
    // (this VMM's own session, as the daemon starts it, first: against other sessions the threads' nice values do not count)
    favourSession();
    const lowered = favourMainThread();
    if (process.env.RINGZERO_RESTORE_TIMING === '1') process.stderr.write(`ringzero: restore: for ${RESUME_NICE_S} s this thread at nice ${RESUME_BOOST}, ${lowered} others at ${OTHERS_NICE}${groupBoosted ? `, its session's autogroup at nice ${groupBoosted.now} (was ${groupBoosted.was})` : ''}\n`);
  }
  profileResume();
  return runMachines(machine.config, io, options, machine);
}

/**
 * RINGZERO_RESTORE_TIMING=1 (bench/snapshot): where a new-process restore's time goes, as one line on stderr once
 * Machine.restore has returned: when it began (ms since this process's time origin), how long it took, and the
 * main thread's CPU time at both points (clock_gettime's thread CPU clock; the whole process's elsewhere). CPU time
 * is what a loaded host disturbs least.
 */
function restoreTiming(): () => void {
  const mainCpuMs = threadCpuClock();
  const startMs = performance.now(), startCpuMs = mainCpuMs();
  return () => {
    const endMs = performance.now(), endCpuMs = mainCpuMs();
    const r = (x: number) => Math.round(x * 100) / 100;
    process.stderr.write(`ringzero: restore timing ${JSON.stringify({
      timeOrigin: performance.timeOrigin, startMs: r(startMs), restoreMs: r(endMs - startMs), startCpuMs: r(startCpuMs), restoreCpuMs: r(endCpuMs - startCpuMs),
    })}\n`);
  };
}

/**
 * RINGZERO_BOOT_BOOST (a nice value, -20 to -1; default 0: off): a soft-engine boot runs its main thread (the guest's)
 * at that nice value for its first RINGZERO_BOOT_BOOST_S seconds (default 20), as a restore does after its resume
 * (./resume-priority.ts favourMainThread; the other threads keep theirs, the session's autogroup is left alone, so only
 * this process's own threads are put behind it). Why (issue 4, session 26): a boot's V8 background threads (TurboFan
 * tiering up translated wasm ~27% of the process's CPU samples, TurboFan on the VMM's JavaScript ~16%, the compile
 * thread's Liftoff ~5%, perf cpu-clock per thread) outnumber the 2-core host's cores, and at nice 0 they take them
 * from the guest's thread as often as it takes them: the main thread got ~45% of the process's CPU. Needs
 * CAP_SYS_NICE (or RLIMIT_NICE) to go below 0: without it nothing changes.
 * Off: it is slower. bench/engines --paired --only boot, -10 for the whole boot (RINGZERO_BOOT_BOOST_S=600) against
 * off, same build, load ~15-20: wall 1.36x (1.21-1.36), process CPU 1.29x, guest thread CPU 1.72x (9.6-9.7 against
 * 5.6-6.2 s): with its one core held by the guest's thread, TurboFan's tier-ups (wasm and JavaScript) came late and
 * the guest's thread ran Liftoff code and unoptimized JavaScript for longer. The background compiles pay for themselves.
 * The other way (the main thread at nice +5 against V8's threads at 0, renice from a wrapper, same bench, load ~5-10):
 * wall 1.01x, process CPU 0.98x, guest thread CPU 0.98x: no gain either.
 */
const BOOT_BOOST = Math.max(-20, Math.min(0, Number(process.env.RINGZERO_BOOT_BOOST || 0)));
const BOOT_BOOST_S = Number(process.env.RINGZERO_BOOT_BOOST_S || 20);

async function runMachines(cfg: VmConfig, io: ConsoleIo, options: MachineOptions, restored: Machine | undefined): Promise<number> {
  let next = restored;
  for (;;) {
    const machine = next ?? new Machine(cfg, io, options);
    const fresh = next === undefined;
    next = undefined;
    try {
      if (fresh) machine.loadKernel();
      if (fresh && BOOT_BOOST < 0 && machine.config.engine !== 'kvm') favourMainThread(BOOT_BOOST_S, BOOT_BOOST, 0);
      const exit = await machine.run();
      if (exit.kind === 'poweroff') return 0;
      if (exit.kind === 'error') {
        process.stderr.write(`ringzero: ${exit.message}\n`);
        return 1;
      }
      if (cfg.onReboot === 'exit') return 0;
      process.stderr.write('ringzero: guest reset: restarting\n');
    } finally {
      machine.close();
    }
  }
}
