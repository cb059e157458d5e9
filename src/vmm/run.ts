// Run one VM to completion on the engine its config names: the entry point of `ringzero run` (and of
// `ringzero run --restore DIR`, which starts from a snapshot instead of the kernel).
import type { VmConfig, ConsoleIo } from './config.ts';
import { Machine, type MachineOptions } from './machine.ts';

/**
 * Boot the VM and run it until the guest powers off (status 0), or resets with `onReboot: 'exit'`
 * (status 0); with `onReboot: 'restart'` a reset boots a fresh machine from the same config.
 */
export async function runVm(cfg: VmConfig, io: ConsoleIo, options: MachineOptions = {}): Promise<number> {
  return runMachines(cfg, io, options, undefined);
}

/**
 * Start the VM saved in the snapshot directory `dir` (soft engine) and run it as runVm does; a reset afterwards
 * boots a fresh machine from the saved configuration. Throws SnapshotError for a damaged or foreign snapshot.
 */
export async function restoreVm(dir: string, io: ConsoleIo, options: MachineOptions & { controlSocket?: string } = {}): Promise<number> {
  const machine = Machine.restore(dir, io, options);
  return runMachines(machine.config, io, options, machine);
}

async function runMachines(cfg: VmConfig, io: ConsoleIo, options: MachineOptions, restored: Machine | undefined): Promise<number> {
  let next = restored;
  for (;;) {
    const machine = next ?? new Machine(cfg, io, options);
    const fresh = next === undefined;
    next = undefined;
    try {
      if (fresh) machine.loadKernel();
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
