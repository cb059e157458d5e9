// From the options of `ringzero run` to a validated VmConfig.

import { findDefaultImage } from '../image/build.ts';
import type { VmConfig } from '../vmm/config.ts';
import { chooseEngine, ENGINE_REQUESTS, type EngineRequest, type HostInfo } from './host.ts';
import { checkBzImage, checkInitrd, parseCpuCount, parseMemorySize, UsageError } from './validate.ts';

/** panic=-1: reboot at once on a kernel panic, which ends ringzero under the default --on-reboot exit. */
export const DEFAULT_CMDLINE = 'console=ttyS0 panic=-1';
export const DEFAULT_MEMORY = '256M';

export interface RunOptions {
  engine: string;
  kernel?: string;
  initrd?: string;
  cmdline: string;
  cpus: string;
  memory: string;
  onReboot: string;
}

/** Turn the `run` options into a VmConfig, or throw a UsageError. */
export function buildVmConfig(options: RunOptions, host: HostInfo, log: (line: string) => void,
  defaultImage: () => { kernel: string; initrd: string } | undefined = findDefaultImage): VmConfig {
  if (!(ENGINE_REQUESTS as readonly string[]).includes(options.engine)) {
    throw new UsageError(`unknown engine '${options.engine}': use ${ENGINE_REQUESTS.join(', ')}`);
  }
  if (options.onReboot !== 'restart' && options.onReboot !== 'exit') {
    throw new UsageError(`invalid --on-reboot '${options.onReboot}': use restart or exit`);
  }
  const cpus = parseCpuCount(options.cpus);
  const memory = parseMemorySize(options.memory);

  let kernel = options.kernel;
  let initrd = options.initrd;
  if (kernel === undefined) {
    const image = defaultImage();
    if (image === undefined) throw new UsageError('no default image built yet: run `ringzero image build` first, or pass --kernel');
    kernel = image.kernel;
    // The default initramfs carries modules of the default kernel, so it only goes with it.
    initrd ??= image.initrd;
  }
  checkBzImage(kernel);
  if (initrd !== undefined) checkInitrd(initrd);

  const choice = chooseEngine(host, options.engine as EngineRequest);
  if (!choice.ok) throw new UsageError(choice.error);
  if (options.engine === 'auto') log(`engine auto picks ${choice.engine}: ${choice.reason}`);

  return { engine: choice.engine, kernel, initrd, cmdline: options.cmdline, cpus, memory, onReboot: options.onReboot };
}
