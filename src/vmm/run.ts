// Run one VM to completion on the engine its config names: the entry point of `ringzero run`.
import type { VmConfig, ConsoleIo } from './config.ts';
import { Machine, type MachineOptions } from './machine.ts';

/**
 * Boot the VM and run it until the guest powers off (status 0), or resets with `onReboot: 'exit'`
 * (status 0); with `onReboot: 'restart'` a reset boots a fresh machine from the same config.
 */
export async function runVm(cfg: VmConfig, io: ConsoleIo, options: MachineOptions = {}): Promise<number> {
  for (;;) {
    const machine = new Machine(cfg, io, options);
    try {
      machine.loadKernel();
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
